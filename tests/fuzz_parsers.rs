//! Property tests for every parser that sees network input: the lean
//! WebSocket codec, Pusher client frames and their data shapes, Socket.IO
//! packets, the HTTP API (query strings, signatures, trigger and batch
//! bodies), Redis ingestion messages and cluster messages.
//!
//! Each parser first replays its kept corpus (`tests/fuzz_corpus/<parser>/`,
//! seeds and every input that once broke something), then runs a bounded
//! number of deterministic random mutations of it: a few seconds in CI.
//! `RESONANCE_FUZZ_CASES` raises the count and `RESONANCE_FUZZ_SEED` changes
//! the seed for a longer local run; a failure prints the input, to be added
//! to the corpus once fixed.
//!
//! Why not cargo-fuzz: it needs a nightly toolchain and a sanitizer build
//! that CI does not have; a seeded generator on `rand` (already a
//! dependency) runs under plain `cargo test`.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use resonance::core::adapter::LocalAdapter;
use resonance::core::app::AppConfig;
use resonance::core::node::Node;
use resonance::http_api::{self, ApiRequest};
use resonance::ws::lean::{Codec, Incoming, Step};

fn cases() -> usize {
    std::env::var("RESONANCE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000)
}

fn rng(salt: u64) -> StdRng {
    let seed = std::env::var("RESONANCE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED_u64);
    StdRng::seed_from_u64(seed ^ salt)
}

/// The kept inputs of one parser.
fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_corpus")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let inputs: Vec<Vec<u8>> = files.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    assert!(!inputs.is_empty(), "empty corpus {name}");
    inputs
}

/// Tokens that tend to reach corners of JSON and protocol parsers.
const DICT: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b":",
    b",",
    b"null",
    b"1e999999",
    b"-0",
    b"\"event\"",
    b"\"data\"",
    b"\"channel\"",
    b"presence-",
    b"private-",
    b"private-encrypted-",
    b"#server-to-user-",
    b"\xC3",
    b"\xE2\x82",
    b"\xF0\x9F\x98",
    b"\xFF",
    b"%",
    b"%zz",
    b"%C3%28",
    b"&",
    b"=",
    b"+",
    b"/",
    b"2[",
    b"42/",
    b"0/admin,",
    b"\x00",
    b"\r\n",
    b"\xD7\xA9",
    b"channel_data",
    b"user_id",
    b"auth",
    b"socket_id",
    b"channels",
    b"batch",
    b"name",
    b"info",
];

/// One random mutation of `input` (possibly spliced with `other`).
fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = if out.is_empty() {
            0
        } else {
            rng.random_range(0..=out.len())
        };
        match rng.random_range(0..8) {
            0 if !out.is_empty() => {
                let i = rng.random_range(0..out.len());
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !out.is_empty() => {
                let i = rng.random_range(0..out.len());
                out[i] = rng.random();
            }
            2 => {
                let token = DICT[rng.random_range(0..DICT.len())];
                out.splice(at..at, token.iter().copied());
            }
            3 if at < out.len() => {
                let end = rng.random_range(at..=out.len());
                out.drain(at..end);
            }
            4 => out.truncate(at),
            5 if at < out.len() => {
                // Repeat a slice (nesting, long strings).
                let end = rng.random_range(at..=out.len().min(at + 16));
                let piece = out[at..end].to_vec();
                for _ in 0..rng.random_range(1..64) {
                    out.splice(at..at, piece.iter().copied());
                }
            }
            6 if !other.is_empty() => {
                let from = rng.random_range(0..other.len());
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
            _ => out.push(rng.random()),
        }
    }
    out
}

/// Runs `check` on the corpus, then on `cases()` mutations of it.
fn fuzz(name: &str, salt: u64, mut check: impl FnMut(&[u8])) {
    let seeds = corpus(name);
    for input in &seeds {
        check(input);
    }
    let mut rng = rng(salt);
    for _ in 0..cases() {
        let a = &seeds[rng.random_range(0..seeds.len())];
        let b = &seeds[rng.random_range(0..seeds.len())];
        let input = mutate(&mut rng, a, b);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&input)));
        if outcome.is_err() {
            panic!(
                "{name}: panicked on input (add it to tests/fuzz_corpus/{name}/): {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}

// ---------------------------------------------------------------- codec

#[derive(Debug, PartialEq, Eq)]
enum Got {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

/// Feeds `input` in the given chunk sizes (cycled) as `LeanSocket` does.
fn run_codec(input: &[u8], chunks: &[usize]) -> (Vec<Got>, Option<Step>, usize) {
    let mut codec = Codec::new(4096);
    let mut got = Vec::new();
    let mut on = |m: Incoming<'_>| {
        got.push(match m {
            Incoming::Text(t) => Got::Text(t.to_owned()),
            Incoming::Binary(b) => Got::Binary(b.to_vec()),
            Incoming::Ping(b) => Got::Ping(b.to_vec()),
            Incoming::Pong(b) => Got::Pong(b.to_vec()),
        })
    };
    let mut pending = Vec::new();
    let mut rest = input;
    let mut step = None;
    for &size in chunks.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(size.clamp(1, rest.len()));
        rest = tail;
        pending.extend_from_slice(piece);
        let (used, s) = codec.feed(&mut pending, &mut on);
        assert!(used <= pending.len(), "codec used more than it was given");
        if s.is_some() {
            step = s;
            break;
        }
        pending.drain(..used);
    }
    codec.queue_owed_close();
    let out = codec.pending_output().len();
    (got, step, out)
}

/// A client frame, masked, with the header fields given.
fn frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A stream of plausible frames: fragments, controls, close, bad UTF-8.
fn frames(rng: &mut StdRng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.random_range(1..8) {
        let opcode = [0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3][rng.random_range(0..7)];
        let fin = if rng.random_bool(0.7) { 0x80 } else { 0 };
        let len = [0, 1, 2, 5, 125, 126, 200, 5000][rng.random_range(0..8)];
        let payload: Vec<u8> = match rng.random_range(0..3) {
            0 => "é€😀a".bytes().cycle().take(len).collect(),
            1 => (0..len).map(|_| rng.random()).collect(),
            _ => vec![b'x'; len],
        };
        out.extend(frame(fin | opcode, &payload, rng.random()));
    }
    out
}

#[test]
fn codec_never_panics_and_any_chunking_gives_the_same_result() {
    let mut generated = rng(1);
    fuzz("ws_codec", 2, |input| {
        // Mix the mutated corpus input with freshly generated frames.
        let mut input = input.to_vec();
        if generated.random_bool(0.5) {
            input.extend(frames(&mut generated));
        }
        let whole = run_codec(&input, &[input.len().max(1)]);
        let chunks: Vec<usize> = (0..4).map(|_| generated.random_range(1..64)).collect();
        let split = run_codec(&input, &chunks);
        let bytes = run_codec(&input, &[1]);
        assert_eq!(whole.0, split.0, "messages differ with chunks {chunks:?}");
        assert_eq!(whole.1, split.1, "end state differs with chunks {chunks:?}");
        assert_eq!(whole.0, bytes.0, "messages differ byte by byte");
        assert_eq!(whole.1, bytes.1, "end state differs byte by byte");
        for m in &whole.0 {
            let len = match m {
                Got::Text(t) => t.len(),
                Got::Binary(b) | Got::Ping(b) | Got::Pong(b) => b.len(),
            };
            assert!(len <= 4096, "a message over the limit was delivered");
        }
    });
}

// --------------------------------------------------------------- pusher

#[test]
fn pusher_frames_and_their_data_never_panic() {
    use resonance::core::channel::ChannelSpec;
    use resonance::pusher::protocol::{ClientFrame, SubscribeData};
    fuzz("pusher", 3, |input| {
        let Ok(text) = std::str::from_utf8(input) else {
            return;
        };
        let Ok(frame) = ClientFrame::parse(text) else {
            return;
        };
        if let Ok(sub) = frame.data_as::<SubscribeData>() {
            let _ = ChannelSpec::parse(&sub.channel);
            if let Some(cd) = &sub.channel_data {
                let _ = serde_json::from_str::<serde_json::Value>(cd);
            }
        }
        let _ = frame.data_as::<serde_json::Value>();
        if let Some(channel) = &frame.channel {
            let _ = ChannelSpec::parse(channel);
        }
    });
}

// ------------------------------------------------------------- socket.io

#[test]
fn socketio_packets_never_panic() {
    fuzz("socketio", 4, |input| {
        if let Ok(text) = std::str::from_utf8(input) {
            let _ = resonance::socketio::protocol::parse(text);
        }
    });
}

// -------------------------------------------------------------- HTTP API

fn signed_query(method: &str, path: &str, body: &[u8], extra: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut query = format!("auth_key=resonance-key&auth_timestamp={now}&auth_version=1.0");
    if !body.is_empty() {
        query.push_str(&format!("&body_md5={}", resonance::signing::md5_hex(body)));
    }
    query.push_str(extra);
    let signature = resonance::signing::hmac_sha256_hex(
        "resonance-secret",
        format!("{method}\n{path}\n{query}").as_bytes(),
    );
    format!("{query}&auth_signature={signature}")
}

#[tokio::test]
async fn api_bodies_and_query_strings_never_panic() {
    let node = Node::new(vec![AppConfig::default()], Arc::new(LocalAdapter));
    let seeds = corpus("http_api");
    let mut rng = rng(5);
    let paths = [
        ("POST", "/apps/100000/events"),
        ("POST", "/apps/100000/batch_events"),
        ("GET", "/apps/100000/channels"),
        ("GET", "/apps/100000/channels/presence-a%20b/users"),
        ("POST", "/apps/100000/users/u%2F1/terminate_connections"),
        ("GET", "/apps/100000/status"),
    ];
    for i in 0..cases() + seeds.len() {
        let input = match seeds.get(i) {
            Some(seed) => seed.clone(),
            None => {
                let a = &seeds[rng.random_range(0..seeds.len())];
                let b = &seeds[rng.random_range(0..seeds.len())];
                mutate(&mut rng, a, b)
            }
        };
        let (method, path) = paths[rng.random_range(0..paths.len())];
        let body = Bytes::from(input.clone());
        // Signed, so the body parsers are reached; the mutated input also
        // serves as a raw query string and as extra query parameters.
        let lossy = String::from_utf8_lossy(&input).into_owned();
        let signed = signed_query(method, path, &input, "&info=user_count,subscription_count");
        for query in [signed.as_str(), lossy.as_str()] {
            let request = ApiRequest {
                method,
                path,
                query,
                body: &body,
                bearer: None,
                app_rate: None,
            };
            let _ = http_api::handle(&node, &request).await;
        }
        let _ = http_api::signature::parse_query(&lossy);
    }
}

// ----------------------------------------------------------------- redis

#[test]
fn redis_ingestion_messages_never_panic() {
    fuzz("ingress", 6, |input| {
        for channel in ["private-orders.1", "presence-room", "bad channel\u{0}", ""] {
            let _ = resonance::ingress::redis::parse_message(channel, input, 10 * 1024);
        }
    });
}

#[test]
fn cluster_messages_never_panic() {
    use resonance::adapter::cluster::message::{
        Message, member_of, parse_stored_member, split_presence_field,
    };
    fuzz("cluster", 7, |input| {
        if let Ok(msg) = serde_json::from_slice::<Message>(input) {
            let _ = member_of(&msg);
            let _ = serde_json::to_string(&msg);
        }
        if let Ok(text) = std::str::from_utf8(input) {
            let _ = parse_stored_member(text);
            let _ = split_presence_field(text);
        }
    });
}
