use super::*;

/// A masked client frame.
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xFA, 0x21, 0x3D];
    let mut out = vec![b0];
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

#[derive(Debug, PartialEq, Eq)]
enum Got {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

/// Feeds `input` in pieces of `chunk` bytes, as a socket would deliver
/// it, keeping unconsumed bytes like `LeanSocket` does.
fn run(codec: &mut Codec, input: &[u8], chunk: usize) -> (Vec<Got>, Option<Step>) {
    let mut got = Vec::new();
    let mut on = |m: Incoming<'_>| {
        got.push(match m {
            Incoming::Text(t) => Got::Text(t.to_owned()),
            Incoming::Binary(b) => Got::Binary(b.to_vec()),
            Incoming::Ping(b) => Got::Ping(b.to_vec()),
            Incoming::Pong(b) => Got::Pong(b.to_vec()),
        })
    };
    let mut pending: Vec<u8> = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        pending.extend_from_slice(piece);
        let (used, step) = codec.feed(&mut pending, &mut on);
        if step.is_some() {
            codec.queue_owed_close();
            return (got, step);
        }
        pending.drain(..used);
    }
    (got, None)
}

fn all(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

#[test]
fn unmasks_text_and_binary_in_any_chunking() {
    let long = "x".repeat(70_000);
    let input = all(&[
        client_frame(0x81, b"hello"),
        client_frame(0x82, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
        client_frame(0x81, long.as_bytes()),
    ]);
    for chunk in [1, 2, 3, 7, 100, 1 << 20] {
        let mut codec = Codec::new(1 << 20);
        let (got, step) = run(&mut codec, &input, chunk);
        assert_eq!(step, None);
        assert_eq!(
            got,
            vec![
                Got::Text("hello".into()),
                Got::Binary((0..10).collect()),
                Got::Text(long.clone()),
            ],
            "chunk {chunk}"
        );
    }
}

#[test]
fn unmasked_client_frames_are_refused() {
    let mut codec = Codec::new(1024);
    let (_, step) = run(&mut codec, &[0x81, 0x02, b'h', b'i'], 64);
    assert_eq!(step, Some(Step::Failed(PROTOCOL_ERROR)));
    assert_eq!(codec.pending_output(), &[0x88, 0x02, 0x03, 0xEA]);
}

#[test]
fn reserved_bits_and_opcodes_are_refused() {
    for b0 in [0xC1, 0xA1, 0x91, 0x83, 0x87, 0x8B, 0x8F] {
        let mut codec = Codec::new(1024);
        let (_, step) = run(&mut codec, &client_frame(b0, b"x"), 64);
        assert_eq!(step, Some(Step::Failed(PROTOCOL_ERROR)), "b0 {b0:#x}");
    }
}

#[test]
fn fragments_are_reassembled_with_control_frames_between() {
    let input = all(&[
        client_frame(0x01, b"Hel"),
        client_frame(0x89, b"p1"),
        client_frame(0x00, b"lo, "),
        client_frame(0x8A, b"p2"),
        client_frame(0x80, b"world"),
        client_frame(0x02, &[1]),
        client_frame(0x80, &[2]),
    ]);
    for chunk in [1, 5, 1000] {
        let mut codec = Codec::new(1024);
        let (got, step) = run(&mut codec, &input, chunk);
        assert_eq!(step, None);
        assert_eq!(
            got,
            vec![
                Got::Ping(b"p1".to_vec()),
                Got::Pong(b"p2".to_vec()),
                Got::Text("Hello, world".into()),
                Got::Binary(vec![1, 2]),
            ]
        );
        // The ping was answered with a pong carrying its payload.
        assert_eq!(codec.pending_output(), &[0x8A, 0x02, b'p', b'1']);
    }
}

#[test]
fn fragment_sequencing_errors() {
    // Continuation with nothing open.
    let mut codec = Codec::new(1024);
    let (_, step) = run(&mut codec, &client_frame(0x80, b"x"), 64);
    assert_eq!(step, Some(Step::Failed(PROTOCOL_ERROR)));
    // A new data frame while a message is open.
    let mut codec = Codec::new(1024);
    let input = all(&[client_frame(0x01, b"a"), client_frame(0x81, b"b")]);
    let (_, step) = run(&mut codec, &input, 64);
    assert_eq!(step, Some(Step::Failed(PROTOCOL_ERROR)));
}

#[test]
fn control_frame_rules() {
    // Fragmented ping.
    let mut codec = Codec::new(1024);
    let (_, step) = run(&mut codec, &client_frame(0x09, b"x"), 64);
    assert_eq!(step, Some(Step::Failed(PROTOCOL_ERROR)));
    // Ping over 125 bytes.
    let mut codec = Codec::new(1024);
    let (_, step) = run(&mut codec, &client_frame(0x89, &[0; 126]), 64);
    assert_eq!(step, Some(Step::Failed(PROTOCOL_ERROR)));
    // Ping of exactly 125 bytes is fine and answered.
    let mut codec = Codec::new(1024);
    let (got, step) = run(&mut codec, &client_frame(0x89, &[7; 125]), 64);
    assert_eq!(step, None);
    assert_eq!(got, vec![Got::Ping(vec![7; 125])]);
    assert_eq!(codec.pending_output().len(), 127);
}

#[test]
fn close_frames() {
    // Echoes the code and stops reading.
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    let input = all(&[client_frame(0x88, &payload), client_frame(0x81, b"late")]);
    let mut codec = Codec::new(1024);
    let (got, step) = run(&mut codec, &input, 64);
    assert_eq!((got, step), (vec![], Some(Step::Closed)));
    assert_eq!(codec.pending_output(), &[0x88, 0x02, 0x03, 0xE8]);
    // Empty close: empty answer.
    let mut codec = Codec::new(1024);
    assert_eq!(
        run(&mut codec, &client_frame(0x88, &[]), 64).1,
        Some(Step::Closed)
    );
    assert_eq!(codec.pending_output(), &[0x88, 0x00]);
    // One-byte payload, bad codes, bad UTF-8 reason.
    for (payload, code) in [
        (vec![0x03], PROTOCOL_ERROR),
        (999u16.to_be_bytes().to_vec(), PROTOCOL_ERROR),
        (1005u16.to_be_bytes().to_vec(), PROTOCOL_ERROR),
        (1016u16.to_be_bytes().to_vec(), PROTOCOL_ERROR),
        (5000u16.to_be_bytes().to_vec(), PROTOCOL_ERROR),
        (vec![0x03, 0xE8, 0xFF], INVALID_DATA),
    ] {
        let mut codec = Codec::new(1024);
        let (_, step) = run(&mut codec, &client_frame(0x88, &payload), 64);
        assert_eq!(step, Some(Step::Failed(code)), "{payload:?}");
    }
    for code in [1000u16, 1001, 1003, 1007, 1011, 3000, 4999] {
        let mut codec = Codec::new(1024);
        let (_, step) = run(&mut codec, &client_frame(0x88, &code.to_be_bytes()), 64);
        assert_eq!(step, Some(Step::Closed), "{code}");
    }
}

#[test]
fn utf8_is_checked_across_fragments() {
    // "€" (E2 82 AC) split over three fragments is fine.
    let input = all(&[
        client_frame(0x01, &[b'a', 0xE2]),
        client_frame(0x00, &[0x82]),
        client_frame(0x80, &[0xAC, b'b']),
    ]);
    let mut codec = Codec::new(1024);
    let (got, step) = run(&mut codec, &input, 3);
    assert_eq!(step, None);
    assert_eq!(got, vec![Got::Text("a€b".into())]);
    // An invalid byte fails as soon as its fragment arrives.
    let input = all(&[client_frame(0x01, b"ok"), client_frame(0x00, &[0xC0, 0x80])]);
    let mut codec = Codec::new(1024);
    assert_eq!(
        run(&mut codec, &input, 64).1,
        Some(Step::Failed(INVALID_DATA))
    );
    // A sequence still cut at the final fragment is invalid.
    let input = all(&[client_frame(0x01, b"ok"), client_frame(0x80, &[0xE2, 0x82])]);
    let mut codec = Codec::new(1024);
    assert_eq!(
        run(&mut codec, &input, 64).1,
        Some(Step::Failed(INVALID_DATA))
    );
    // Unfragmented invalid text.
    let mut codec = Codec::new(1024);
    assert_eq!(
        run(&mut codec, &client_frame(0x81, &[0xFF]), 64).1,
        Some(Step::Failed(INVALID_DATA))
    );
    // Binary is not checked.
    let mut codec = Codec::new(1024);
    assert_eq!(run(&mut codec, &client_frame(0x82, &[0xFF]), 64).1, None);
}

#[test]
fn message_size_limit() {
    let mut codec = Codec::new(10);
    assert_eq!(
        run(&mut codec, &client_frame(0x81, &[b'a'; 10]), 64).1,
        None
    );
    let mut codec = Codec::new(10);
    let (_, step) = run(&mut codec, &client_frame(0x81, &[b'a'; 11]), 64);
    assert_eq!(step, Some(Step::Failed(MESSAGE_TOO_BIG)));
    assert_eq!(codec.pending_output(), &[0x88, 0x02, 0x03, 0xF1]);
    // Refused from the header alone, before the payload arrives.
    let mut codec = Codec::new(10);
    let frame = client_frame(0x81, &[b'a'; 1000]);
    let (_, step) = run(&mut codec, &frame[..8], 64);
    assert_eq!(step, Some(Step::Failed(MESSAGE_TOO_BIG)));
    // The limit applies to the reassembled message.
    let input = all(&[
        client_frame(0x01, &[b'a'; 6]),
        client_frame(0x80, &[b'a'; 6]),
    ]);
    let mut codec = Codec::new(10);
    assert_eq!(
        run(&mut codec, &input, 64).1,
        Some(Step::Failed(MESSAGE_TOO_BIG))
    );
    // 64-bit length with the top bit set.
    let mut codec = Codec::new(10);
    let mut frame = vec![0x82, 0xFF];
    frame.extend_from_slice(&u64::MAX.to_be_bytes());
    frame.extend_from_slice(&[0; 4]);
    assert_eq!(
        run(&mut codec, &frame, 64).1,
        Some(Step::Failed(PROTOCOL_ERROR))
    );
}

#[test]
fn server_frame_headers() {
    for (len, header) in [
        (0usize, vec![0x81, 0]),
        (125, vec![0x81, 125]),
        (126, vec![0x81, 126, 0, 126]),
        (65535, vec![0x81, 126, 0xFF, 0xFF]),
        (65536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
    ] {
        let mut out = Vec::new();
        push_frame(&mut out, OP_TEXT, &vec![b'a'; len]);
        assert_eq!(&out[..header.len()], &header[..], "{len}");
        assert_eq!(out.len(), header.len() + len);
        assert_eq!(header_len(len), header.len());
    }
}

#[test]
fn close_reason_is_truncated_on_a_char_boundary() {
    let mut codec = Codec::new(10);
    codec.queue_close(4100, &"é".repeat(100));
    let out = codec.pending_output();
    assert_eq!(out[0], 0x88);
    let len = out[1] as usize;
    assert!(len <= 125);
    assert!(std::str::from_utf8(&out[4..2 + len]).is_ok());
    assert!(codec.close_sent());
}

#[test]
fn unmask_matches_bytewise() {
    let mask = [1, 2, 3, 4];
    for n in 0..40 {
        let mut data: Vec<u8> = (0..n as u8).collect();
        unmask(&mut data, mask);
        let want: Vec<u8> = (0..n as u8).map(|b| b ^ mask[b as usize % 4]).collect();
        assert_eq!(data, want);
    }
}
