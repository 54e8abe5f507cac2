//! TLS termination with rustls (ring), for `wss://` and `https://` without a
//! proxy in front. Certificates and keys are PEM files; the certificate file
//! may hold the whole chain.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

/// Builds the acceptor from PEM files, or says which file is wrong and why.
pub fn acceptor(
    cert_path: &str,
    key_path: &str,
    chain_path: Option<&str>,
) -> Result<TlsAcceptor, String> {
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
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!("server.tls_key: does not match the certificate or is unsupported: {e}")
        })?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
