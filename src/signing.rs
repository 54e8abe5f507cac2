//! Pusher's HMAC signatures (reference §4 and §5), shared by channel auth,
//! user sign-in, the HTTP API and webhooks.
//!
//! Comparisons are constant-time so that a client cannot learn a valid
//! signature byte by byte from response timing.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Hex HMAC-SHA256 of `message` under `secret`.
pub fn hmac_sha256_hex(secret: &str, message: &[u8]) -> String {
    // A HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// Hex MD5 of `body` (the HTTP API's `body_md5`).
pub fn md5_hex(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// Constant-time equality of two ASCII strings.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The string a private channel signature covers.
pub fn channel_auth_string(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// The string a user sign-in signature covers.
pub fn signin_string(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

/// Checks an `auth` field of the form `key:hexsignature` over `signed`.
pub fn verify_auth(key: &str, secret: &str, auth: &str, signed: &str) -> bool {
    let Some((given_key, signature)) = auth.split_once(':') else {
        return false;
    };
    same(given_key, key) && same(signature, &hmac_sha256_hex(secret, signed.as_bytes()))
}

/// `key:signature` as an app's auth endpoint would produce it.
pub fn sign_auth(key: &str, secret: &str, signed: &str) -> String {
    format!("{key}:{}", hmac_sha256_hex(secret, signed.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    #[test]
    fn private_channel_vector() {
        let signed = channel_auth_string("1234.1234", "private-foobar", None);
        let expected =
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4";
        assert_eq!(sign_auth(KEY, SECRET, &signed), expected);
        assert!(verify_auth(KEY, SECRET, expected, &signed));
        assert!(!verify_auth(
            KEY,
            SECRET,
            &expected.replace("58df", "58dd"),
            &signed
        ));
        assert!(!verify_auth("otherkey", SECRET, expected, &signed));
        assert!(!verify_auth(KEY, SECRET, "no-colon", &signed));
    }

    #[test]
    fn presence_signature_covers_channel_data() {
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        let signed = channel_auth_string("1234.1234", "presence-foobar", Some(data));
        assert_eq!(signed, format!("1234.1234:presence-foobar:{data}"));
        let auth = sign_auth(KEY, SECRET, &signed);
        assert!(verify_auth(KEY, SECRET, &auth, &signed));
        let tampered = channel_auth_string(
            "1234.1234",
            "presence-foobar",
            Some(&data.replace("10", "11")),
        );
        assert!(!verify_auth(KEY, SECRET, &auth, &tampered));
    }

    #[test]
    fn http_api_vector() {
        let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(md5_hex(body.as_bytes()), "ec365a775a4cd0599faeb73354201b6f");
        let to_sign = "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f";
        assert_eq!(
            hmac_sha256_hex(SECRET, to_sign.as_bytes()),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    #[test]
    fn signin_string_shape() {
        assert_eq!(
            signin_string("1.2", "{\"id\":\"7\"}"),
            "1.2::user::{\"id\":\"7\"}"
        );
    }
}
