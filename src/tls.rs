//! TLS termination with rustls (ring), for `wss://` and `https://` without a
//! proxy in front. Certificates and keys are PEM files; the certificate file
//! may hold the whole chain.
//!
//! The certificate is served through a [`CertSwap`] resolver, so a reload
//! (SIGHUP, `resonance reload`) can replace certificate and key for new
//! handshakes — a Let's Encrypt renewal — while established connections
//! keep the session they negotiated.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

/// Builds the acceptor from PEM files, or says which file is wrong and why.
pub fn acceptor(
    cert_path: &str,
    key_path: &str,
    chain_path: Option<&str>,
) -> Result<TlsAcceptor, String> {
    acceptor_with_swap(cert_path, key_path, chain_path).map(|(acceptor, _)| acceptor)
}

/// The acceptor and the handle that swaps its certificate.
pub fn acceptor_with_swap(
    cert_path: &str,
    key_path: &str,
    chain_path: Option<&str>,
) -> Result<(TlsAcceptor, Arc<CertSwap>), String> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let key = load(&provider, cert_path, key_path, chain_path)?;
    let swap = Arc::new(CertSwap {
        current: ArcSwap::from_pointee(key),
        provider: provider.clone(),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(swap.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), swap))
}

/// Reads certificate chain and key, checking that they belong together.
fn load(
    provider: &CryptoProvider,
    cert_path: &str,
    key_path: &str,
    chain_path: Option<&str>,
) -> Result<CertifiedKey, String> {
    let mut certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| format!("server.tls_cert: cannot read {cert_path}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("server.tls_cert: {cert_path} is not PEM certificates: {e}"))?;
    if let Some(chain) = chain_path.filter(|c| !c.is_empty()) {
        let more: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(chain)
            .map_err(|e| format!("server.tls_chain: cannot read {chain}: {e}"))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("server.tls_chain: {chain} is not PEM certificates: {e}"))?;
        certs.extend(more);
    }
    if certs.is_empty() {
        return Err(format!("server.tls_cert: {cert_path} holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        format!("server.tls_key: cannot read a PEM private key from {key_path}: {e}")
    })?;
    CertifiedKey::from_der(certs, key, provider).map_err(|e| {
        format!("server.tls_key: does not match the certificate or is unsupported: {e}")
    })
}

/// Serves the current certificate to every new handshake; [`CertSwap::reload`]
/// replaces it atomically.
pub struct CertSwap {
    current: ArcSwap<CertifiedKey>,
    provider: Arc<CryptoProvider>,
}

impl CertSwap {
    /// Loads new PEM files and, if they are valid and match, serves them to
    /// new handshakes. On error the current certificate stays.
    pub fn reload(
        &self,
        cert_path: &str,
        key_path: &str,
        chain_path: Option<&str>,
    ) -> Result<(), String> {
        let key = self.prepare(cert_path, key_path, chain_path)?;
        self.store(key);
        Ok(())
    }

    /// Loads and checks new PEM files without serving them yet.
    pub fn prepare(
        &self,
        cert_path: &str,
        key_path: &str,
        chain_path: Option<&str>,
    ) -> Result<CertifiedKey, String> {
        load(&self.provider, cert_path, key_path, chain_path)
    }

    /// Serves `key` to new handshakes from now on.
    pub fn store(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }
}

impl std::fmt::Debug for CertSwap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertSwap")
    }
}

impl ResolvesServerCert for CertSwap {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
