//! The binary `application/vnd.amazon.eventstream` decoder (`providers::bedrock::eventstream`).
//!
//! Input: a flags byte (bit 0: fix up the CRCs so the header parser is reached), the 4-byte
//! chunk-size header, then the stream. Checks that the chunking does not change the result,
//! that errors are sticky, that no byte is lost (messages + pending = input) and that every
//! message re-encodes to exactly the bytes it was decoded from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use providers::bedrock::eventstream;
use switchyard_fuzz::{chunks_with, decode_eventstream, repair_crcs, CHUNK_HEADER};

fuzz_target!(|input: &[u8]| {
    let Some((&flags, rest)) = input.split_first() else {
        return;
    };
    let (header, body) = rest.split_at(rest.len().min(CHUNK_HEADER));
    let mut body = body.to_vec();
    if flags & 1 == 1 {
        repair_crcs(&mut body);
    }
    let (messages, end) = decode_eventstream(&chunks_with(header, &body));
    let (whole, whole_end) = decode_eventstream(&[&body]);
    assert_eq!(messages, whole, "the chunking changed the decoded messages");
    assert_eq!(end, whole_end, "the chunking changed how the stream ended");

    let mut reencoded = Vec::with_capacity(body.len());
    for m in &messages {
        let _ = (m.message_type(), m.event_type(), m.exception_type(), m.content_type());
        reencoded.extend_from_slice(&eventstream::encode(&m.headers, &m.payload));
    }
    assert!(
        body.starts_with(&reencoded),
        "decoded messages do not re-encode to the bytes they came from"
    );
    if let Ok(pending) = end {
        assert_eq!(reencoded.len() + pending, body.len(), "bytes lost by the decoder");
    }
});
