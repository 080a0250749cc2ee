//! Helpers shared by the fuzz targets in `fuzz_targets/`: cutting an input into chunks the way a
//! network would, driving the SSE framer, and the invariants every decoded stream must keep.
//!
//! Everything here panics on a broken invariant: a panic is what libFuzzer reports as a crash.

use std::collections::HashSet;
use std::sync::OnceLock;

use providers::bedrock::eventstream;
use providers::canonical::{Accumulator, StreamEvent};
use providers::sse;

/// How many leading input bytes choose the chunk sizes.
pub const CHUNK_HEADER: usize = 4;

/// Splits `input` into its chunk-size header and the bytes to feed, then cuts those bytes into
/// chunks: the header's bytes are the sizes, used in turn (a 0 means "all the rest at once").
/// Inputs shorter than the header are fed one byte at a time.
pub fn chunks(input: &[u8]) -> Vec<&[u8]> {
    if input.len() < CHUNK_HEADER {
        return input.chunks(1).collect();
    }
    let (header, rest) = input.split_at(CHUNK_HEADER);
    chunks_with(header, rest)
}

/// Cuts `rest` into chunks whose sizes are the bytes of `header` in turn (0: all the rest).
pub fn chunks_with<'a>(header: &[u8], mut rest: &'a [u8]) -> Vec<&'a [u8]> {
    if header.is_empty() {
        return vec![rest];
    }
    let mut out = Vec::new();
    let mut i = 0;
    while !rest.is_empty() {
        let size = match header[i % header.len()] {
            0 => rest.len(),
            n => usize::from(n).min(rest.len()),
        };
        let (head, tail) = rest.split_at(size);
        out.push(head);
        rest = tail;
        i += 1;
    }
    out
}

/// The bytes the chunks of `input` carry (the input without its chunk-size header).
pub fn payload(input: &[u8]) -> &[u8] {
    if input.len() < CHUNK_HEADER {
        input
    } else {
        &input[CHUNK_HEADER..]
    }
}

/// Feeds `pieces` through an SSE framer, as the gateway does with an upstream body, and returns
/// the whole events followed by the unterminated tail (if any), checking the framer's
/// invariants on the way: no byte is lost, duplicated or reordered, every event ends with a
/// blank line, and the tail holds no blank line.
pub fn frame(pieces: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut framer = sse::Framer::new();
    let mut events = Vec::new();
    let mut fed = Vec::new();
    for piece in pieces {
        framer.push(piece);
        fed.extend_from_slice(piece);
        while let Some(event) = framer.next_event() {
            assert!(
                ends_with_terminator(&event),
                "an SSE event does not end with a blank line: {event:?}"
            );
            events.push(event.to_vec());
        }
    }
    let tail = framer.take_pending().to_vec();
    assert!(framer.pending().is_empty(), "take_pending left bytes behind");
    let mut joined: Vec<u8> = events.concat();
    joined.extend_from_slice(&tail);
    assert_eq!(joined, fed, "SSE events + pending tail differ from the bytes pushed");
    for event in &events {
        let body = &event[..event.len() - terminator_len(event)];
        assert!(
            first_terminator(body).is_none(),
            "an SSE event holds a blank line before its end: {event:?}"
        );
    }
    assert!(
        first_terminator(&tail).is_none(),
        "the SSE framer kept a whole event as pending: {tail:?}"
    );
    (events, tail)
}

/// The terminators the framer recognises, longest first.
const TERMINATORS: [&[u8]; 4] = [b"\r\n\r\n", b"\n\r\n", b"\n\n", b"\r\r"];

fn ends_with_terminator(event: &[u8]) -> bool {
    terminator_len(event) > 0
}

fn terminator_len(event: &[u8]) -> usize {
    TERMINATORS
        .iter()
        .find(|t| event.ends_with(t))
        .map_or(0, |t| t.len())
}

/// Where the first terminator (of any kind) starts in `bytes`. (Byte patterns, not `memcmp`:
/// libFuzzer traces every `memcmp`, which made this the hot spot.)
fn first_terminator(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find(|&i| {
        matches!(
            &bytes[i..],
            [b'\n', b'\n', ..] | [b'\r', b'\r', ..] | [b'\r', b'\n', b'\r', b'\n', ..] | [b'\n', b'\r', b'\n', ..]
        )
    })
}

/// Every SSE event of `input` (chunked as [`chunks`] says), the unterminated tail last, as the
/// gateway sees them at the end of an upstream body.
pub fn sse_events(input: &[u8]) -> Vec<Vec<u8>> {
    let (mut events, tail) = frame(&chunks(input));
    if !tail.is_empty() {
        events.push(tail);
    }
    events
}

/// The invariants of a canonical stream (see `providers::canonical::StreamEvent`): at most one
/// `Start`, no content before it, and every `ToolCallDelta` after the `ToolCallStart` of its
/// call. `Usage` and `Error` may come at any point.
pub fn check_stream(events: &[StreamEvent]) {
    let mut started = false;
    let mut calls: HashSet<(u32, u32)> = HashSet::new();
    for (at, event) in events.iter().enumerate() {
        match event {
            StreamEvent::Start { .. } => {
                assert!(!started, "a second Start at event {at}: {events:#?}");
                started = true;
            }
            StreamEvent::Usage(_) | StreamEvent::Error(_) => {}
            _ => assert!(started, "content before Start at event {at}: {events:#?}"),
        }
        match event {
            StreamEvent::ToolCallStart { choice, index, .. } => {
                calls.insert((*choice, *index));
            }
            StreamEvent::ToolCallDelta { choice, index, .. } => assert!(
                calls.contains(&(*choice, *index)),
                "ToolCallDelta before its ToolCallStart at event {at}: {events:#?}"
            ),
            _ => {}
        }
    }
}

/// Folds `events` into a response and writes them back out in every format, checking that each
/// encoder writes well-formed frames whose payloads are JSON.
pub fn reencode(events: &[StreamEvent]) {
    let mut acc = Accumulator::new();
    for e in events {
        acc.push(e);
    }
    let _ = acc.error();
    let response = acc.finish();
    let _ = response.to_events();

    let mut out = Vec::new();
    let mut openai = providers::openai::stream::Encoder::new(true);
    for e in events {
        openai.encode(e, &mut out);
    }
    openai.finish(&mut out);
    check_sse_json(&out, "openai");

    let mut out = Vec::new();
    let mut anthropic = providers::anthropic::stream::Encoder::new();
    for e in events {
        anthropic.encode(e, &mut out);
    }
    anthropic.finish(&mut out);
    check_sse_json(&out, "anthropic");

    let mut out = Vec::new();
    let mut gemini = providers::gemini::stream::Encoder::new();
    for e in events {
        gemini.encode(e, &mut out);
    }
    gemini.finish(&mut out);
    check_sse_json(&out, "gemini");

    let mut out = Vec::new();
    let mut bedrock = providers::bedrock::stream::Encoder::new();
    for e in events {
        bedrock.encode(e, &mut out);
    }
    bedrock.finish(&mut out);
    let mut d = eventstream::Decoder::new();
    d.push(&out);
    loop {
        match d.next_message() {
            Ok(Some(m)) => assert!(
                m.payload.is_empty()
                    || serde_json::from_slice::<serde_json::Value>(&m.payload).is_ok(),
                "the bedrock encoder wrote a payload that is not JSON: {m:?}"
            ),
            Ok(None) => break,
            Err(e) => panic!("the bedrock encoder wrote an unreadable event stream: {e}"),
        }
    }
    assert_eq!(d.pending(), 0, "the bedrock encoder wrote a partial message");
}

/// `bytes` (an encoder's output) is whole SSE events, each `data` JSON or `[DONE]`.
fn check_sse_json(bytes: &[u8], format: &str) {
    let (events, tail) = frame(&[bytes]);
    assert!(
        tail.is_empty(),
        "the {format} encoder wrote an unterminated event: {:?}",
        String::from_utf8_lossy(&tail)
    );
    for event in &events {
        if let Some(data) = sse::data(event) {
            assert!(
                &data[..] == b"[DONE]" || serde_json::from_slice::<serde_json::Value>(&data).is_ok(),
                "the {format} encoder wrote data that is not JSON: {:?}",
                String::from_utf8_lossy(event)
            );
        }
    }
}

/// Rewrites the prelude and message CRCs of every message in `bytes` whose lengths fit, so the
/// fuzzer can reach the header and payload parsing behind the checksums.
pub fn repair_crcs(bytes: &mut [u8]) {
    let mut at = 0;
    while bytes.len() - at >= 12 {
        let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let total = be32(&bytes[at..at + 4]) as usize;
        let prelude = eventstream::crc32(&bytes[at..at + 8]);
        bytes[at + 8..at + 12].copy_from_slice(&prelude.to_be_bytes());
        if total < 16 || total > bytes.len() - at {
            return;
        }
        let end = at + total - 4;
        let crc = eventstream::crc32(&bytes[at..end]);
        bytes[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        at += total;
    }
}

/// Runs an event stream decoder over `pieces`, returning every message and how it ended: the
/// sticky error, or the count of bytes left pending.
pub fn decode_eventstream(
    pieces: &[&[u8]],
) -> (Vec<eventstream::Message>, Result<usize, eventstream::Error>) {
    let mut d = eventstream::Decoder::new();
    let mut messages = Vec::new();
    for piece in pieces {
        d.push(piece);
        loop {
            match d.next_message() {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => break,
                Err(e) => {
                    // The error is sticky: every later call returns it again.
                    d.push(b"more");
                    assert_eq!(d.next_message(), Err(e.clone()), "event stream error not sticky");
                    return (messages, Err(e));
                }
            }
        }
    }
    (messages, Ok(d.pending()))
}

/// Whether the round-trip checks of `requests` and `responses` are on: set `FUZZ_ROUNDTRIP=1`.
/// They are off by default because known, low-severity translation inconsistencies (see
/// README.md) trip them within seconds and would hide everything else.
pub fn roundtrip() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FUZZ_ROUNDTRIP").is_some_and(|v| v != "0" && !v.is_empty()))
}
