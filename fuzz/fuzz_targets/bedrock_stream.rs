//! A Bedrock ConverseStream answer: event stream messages → `providers::bedrock::stream::Decoder`,
//! then the canonical events through every encoder.
//!
//! Input (text, so the fuzzer mutates the JSON payloads rather than fighting the CRCs): the 4-byte
//! chunk-size header, then one message per line:
//!   `eventType {json payload}`   an event (`messageStart`, `contentBlockDelta`, ...)
//!   `!exceptionType {payload}`    an exception message
//!   `?errorCode message`          an error message
//!   `-payload`                    a message without headers
//! The messages are framed with `eventstream::encode`, cut into chunks and decoded back; the
//! decoded messages must equal the framed ones.
#![no_main]

use libfuzzer_sys::fuzz_target;
use providers::bedrock::eventstream::{self, Header, Message};
use providers::bedrock::stream::Decoder;
use switchyard_fuzz::{check_stream, chunks_with, decode_eventstream, reencode, CHUNK_HEADER};

fn message(line: &[u8]) -> Message {
    let (head, payload) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[][..]),
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (headers, payload) = match head.first() {
        Some(b'!') => (
            vec![
                Header::string(":message-type", "exception"),
                Header::string(":exception-type", text(&head[1..])),
                Header::string(":content-type", "application/json"),
            ],
            payload.to_vec(),
        ),
        Some(b'?') => (
            vec![
                Header::string(":message-type", "error"),
                Header::string(":error-code", text(&head[1..])),
                Header::string(":error-message", text(payload)),
            ],
            Vec::new(),
        ),
        Some(b'-') => (Vec::new(), line[1..].to_vec()),
        _ => (
            vec![
                Header::string(":event-type", text(head)),
                Header::string(":content-type", "application/json"),
                Header::string(":message-type", "event"),
            ],
            payload.to_vec(),
        ),
    };
    Message { headers, payload }
}

fuzz_target!(|input: &[u8]| {
    let (header, body) = input.split_at(input.len().min(CHUNK_HEADER));
    let sent: Vec<Message> = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(message)
        .collect();
    let mut wire = Vec::new();
    for m in &sent {
        wire.extend_from_slice(&eventstream::encode(&m.headers, &m.payload));
    }
    let (received, end) = decode_eventstream(&chunks_with(header, &wire));
    assert_eq!(end, Ok(0), "an event stream we framed did not decode");
    assert_eq!(received, sent, "framed messages came back different");

    let mut decoder = Decoder::new();
    let mut out = Vec::new();
    for m in &received {
        let _ = decoder.decode(m, &mut out);
    }
    check_stream(&out);
    reencode(&out);
});
