//! Verification of signed HTTP API requests (reference §5).

use percent_encoding::percent_decode_str;

use super::ApiError;
use crate::core::app::AppConfig;
use crate::signing;

/// How far `auth_timestamp` may be from the server's clock, in seconds.
pub const MAX_CLOCK_SKEW: u64 = 600;

/// Decodes a query string into (lowercased key, value) pairs. `+` is a
/// space, as in the form encoding SDKs use.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k).to_ascii_lowercase(), decode(v))
        })
        .collect()
}

/// Checks `auth_key`, `auth_timestamp`, `body_md5` and `auth_signature`.
/// `now` is the current UNIX time in seconds.
pub fn verify(
    app: &AppConfig,
    method: &str,
    path: &str,
    params: &[(String, String)],
    body: &[u8],
    now: u64,
) -> Result<(), ApiError> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let unauthorized = |msg: String| Err(ApiError::new(401, msg));

    let Some(key) = get("auth_key") else {
        return unauthorized(
            "missing auth_key: sign the request with your app key and secret".into(),
        );
    };
    if !signing::same(key, &app.key) {
        return unauthorized(format!(
            "auth_key {key:?} does not belong to app {}",
            app.id
        ));
    }
    let Some(timestamp) = get("auth_timestamp") else {
        return unauthorized("missing auth_timestamp".into());
    };
    let Ok(timestamp) = timestamp.parse::<u64>() else {
        return unauthorized("auth_timestamp must be UNIX seconds".into());
    };
    if timestamp.abs_diff(now) > MAX_CLOCK_SKEW {
        return unauthorized(format!(
            "auth_timestamp is {}s away from the server's clock (limit {MAX_CLOCK_SKEW}s); check the clocks",
            timestamp.abs_diff(now)
        ));
    }
    if !body.is_empty() {
        match get("body_md5") {
            Some(md5) if signing::same(&md5.to_ascii_lowercase(), &signing::md5_hex(body)) => {}
            Some(_) => return unauthorized("body_md5 does not match the request body".into()),
            None => return unauthorized("missing body_md5 for a request with a body".into()),
        }
    }
    let Some(signature) = get("auth_signature") else {
        return unauthorized("missing auth_signature".into());
    };
    let mut signed: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "auth_signature")
        .collect();
    signed.sort();
    let query = signed
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let to_sign = format!("{method}\n{path}\n{query}");
    if !signing::same(
        &signature.to_ascii_lowercase(),
        &signing::hmac_sha256_hex(&app.secret, to_sign.as_bytes()),
    ) {
        return unauthorized(format!(
            "invalid signature: expected HMAC-SHA256 of {to_sign:?} with the app secret"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppConfig {
        AppConfig {
            id: "3".into(),
            key: "278d425bdf160c739803".into(),
            secret: "7ad3773142a6692b25b8".into(),
            ..AppConfig::default()
        }
    }
    const BODY: &str = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
    const QUERY: &str = "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";

    #[test]
    fn reference_vector_verifies() {
        let params = parse_query(QUERY);
        verify(
            &app(),
            "POST",
            "/apps/3/events",
            &params,
            BODY.as_bytes(),
            1353088179 + 5,
        )
        .unwrap();
    }

    #[test]
    fn refusals() {
        let params = parse_query(QUERY);
        let status = |r: Result<(), ApiError>| r.unwrap_err().status;
        // stale timestamp
        assert_eq!(
            status(verify(
                &app(),
                "POST",
                "/apps/3/events",
                &params,
                BODY.as_bytes(),
                1353088179 + 601
            )),
            401
        );
        // tampered body
        assert_eq!(
            status(verify(
                &app(),
                "POST",
                "/apps/3/events",
                &params,
                b"{}",
                1353088179
            )),
            401
        );
        // other path
        assert_eq!(
            status(verify(
                &app(),
                "POST",
                "/apps/4/events",
                &params,
                BODY.as_bytes(),
                1353088179
            )),
            401
        );
        // other secret
        let other = AppConfig {
            secret: "another-secret".into(),
            ..app()
        };
        assert_eq!(
            status(verify(
                &other,
                "POST",
                "/apps/3/events",
                &params,
                BODY.as_bytes(),
                1353088179
            )),
            401
        );
    }

    #[test]
    fn query_decoding() {
        let p =
            parse_query("info=user_count%2Csubscription_count&filter_by_prefix=presence-&X=a+b");
        assert_eq!(
            p[0],
            ("info".into(), "user_count,subscription_count".into())
        );
        assert_eq!(p[2], ("x".into(), "a b".into()));
    }
}
