//! The framing of pusher-js's HTTP transports (SockJS-style): every
//! receive response is a series of lines, each starting with one letter —
//! `o` open, `a[...]` an array of JSON-encoded Pusher messages, `h`
//! heartbeat, `c[code,"reason"]` close.

use bytes::{BufMut, Bytes, BytesMut};

/// The session is open (first line of a session's first receive).
pub const OPEN: &[u8] = b"o\n";
/// A heartbeat: streaming clients answer it with an empty send.
pub const HEARTBEAT: &[u8] = b"h\n";

/// Appends `a[...]\n` carrying `frames` (each a Pusher message in JSON) as
/// JSON strings. Frames that are not UTF-8 (never produced by the Pusher
/// wire) are skipped.
pub fn push_array<'a>(out: &mut BytesMut, frames: impl IntoIterator<Item = &'a [u8]>) {
    out.put_slice(b"a[");
    let mut first = true;
    for frame in frames {
        let Ok(text) = std::str::from_utf8(frame) else {
            continue;
        };
        if !first {
            out.put_u8(b',');
        }
        first = false;
        push_json_string(out, text);
    }
    out.put_slice(b"]\n");
}

/// Appends `c[code,"reason"]\n`.
pub fn push_close(out: &mut BytesMut, code: u16, reason: &str) {
    out.put_slice(b"c[");
    out.put_slice(itoa::Buffer::new().format(code).as_bytes());
    out.put_u8(b',');
    push_json_string(out, reason);
    out.put_slice(b"]\n");
}

/// A whole close response body: `c[code,"reason"]\n`.
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut out = BytesMut::new();
    push_close(&mut out, code, reason);
    out.freeze()
}

fn push_json_string(out: &mut BytesMut, text: &str) {
    // Writing JSON into a BytesMut cannot fail.
    let _ = serde_json::to_writer(out.writer(), text);
}

/// Parses an `xhr_send` body: a JSON array of strings, each a Pusher
/// message (`[]` is a heartbeat).
pub fn parse_send(body: &[u8]) -> Result<Vec<String>, String> {
    serde_json::from_slice::<Vec<String>>(body)
        .map_err(|e| format!("expected a JSON array of strings (Pusher messages): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_carry_messages_as_json_strings() {
        let mut out = BytesMut::new();
        push_array(
            &mut out,
            [&br#"{"event":"a","data":"x\"y"}"#[..], &b"{}"[..]],
        );
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            concat!(r#"a["{\"event\":\"a\",\"data\":\"x\\\"y\"}","{}"]"#, "\n")
        );
        let lines: Vec<String> = serde_json::from_slice(&out[1..out.len() - 1]).unwrap();
        assert_eq!(lines[0], r#"{"event":"a","data":"x\"y"}"#);
    }

    #[test]
    fn close_and_send_bodies() {
        assert_eq!(
            &close(4200, "bye \"now\"")[..],
            b"c[4200,\"bye \\\"now\\\"\"]\n"
        );
        assert_eq!(parse_send(b"[]").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_send(br#"["{\"event\":\"pusher:ping\"}"]"#)
                .unwrap()
                .len(),
            1
        );
        assert!(parse_send(b"{}").is_err());
        assert!(parse_send(b"[1]").is_err());
        assert!(parse_send(b"").is_err());
    }
}
