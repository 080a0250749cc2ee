//! Gemini translation: fixture in, canonical and rendered snapshots out, round trips, streams
//! fed in every chunk split, streamed and buffered answers that agree, and decoders that survive
//! random bytes.

// Test helpers may panic: a failure is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use providers::canonical::{Accumulator, ChatResponse, StreamEvent};
use providers::gemini::{error, request, response, stream};
use providers::sse;
use serde_json::Value;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/gemini/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Snapshots with maps sorted, so a serde_json feature elsewhere cannot reorder them.
fn snap(name: &str, value: &impl serde::Serialize) {
    insta::with_settings!({ sort_maps => true, prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!(format!("gemini_{name}"), value);
    });
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// Decodes an SSE byte stream delivered in pieces of `chunk` bytes.
fn decode_in_chunks(sse_bytes: &[u8], chunk: usize) -> Vec<StreamEvent> {
    let mut framer = sse::Framer::new();
    let mut decoder = stream::Decoder::new();
    let mut events = Vec::new();
    for piece in sse_bytes.chunks(chunk) {
        framer.push(piece);
        while let Some(event) = framer.next_event() {
            if let Some(data) = sse::data(&event) {
                decoder.decode(&data, &mut events).unwrap();
            }
        }
    }
    assert!(framer.pending().is_empty(), "a whole number of events");
    events
}

fn decode_all(sse_bytes: &[u8]) -> Vec<StreamEvent> {
    decode_in_chunks(sse_bytes, sse_bytes.len().max(1))
}

fn encode_all(events: &[StreamEvent]) -> Vec<u8> {
    let mut encoder = stream::Encoder::new();
    let mut out = Vec::new();
    for event in events {
        encoder.encode(event, &mut out);
    }
    encoder.finish(&mut out);
    out
}

fn accumulate(events: &[StreamEvent]) -> ChatResponse {
    let mut acc = Accumulator::new();
    events.iter().for_each(|e| acc.push(e));
    acc.finish()
}

#[test]
fn requests_parse_render_and_round_trip() {
    for name in ["request_tools", "request_json_schema"] {
        let canonical = request::parse(&fixture(&format!("{name}.json"))).unwrap();
        snap(&format!("{name}.canonical"), &canonical);
        let rendered = request::render(&canonical).unwrap();
        snap(&format!("{name}.rendered"), &json(&rendered));
        let again = request::parse(&rendered).unwrap();
        assert_eq!(
            again, canonical,
            "{name}: parse(render(parse(x))) == parse(x)"
        );
    }
}

#[test]
fn tool_results_find_their_calls() {
    let canonical = request::parse(&fixture("request_tools.json")).unwrap();
    let calls: Vec<_> = canonical.messages[2]
        .tool_calls()
        .map(|c| c.id.clone())
        .collect();
    let results: Vec<_> = canonical.messages[3]
        .content
        .iter()
        .filter_map(|p| match p {
            providers::canonical::Part::ToolResult(r) => Some(r.tool_call_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls, results,
        "results are matched to calls by name, in order"
    );
    assert_ne!(calls[0], calls[1]);
}

#[test]
fn results_without_names_render_with_their_calls_name() {
    // An OpenAI client's tool message carries only the call id.
    let mut canonical = request::parse(&fixture("request_tools.json")).unwrap();
    for part in &mut canonical.messages[3].content {
        if let providers::canonical::Part::ToolResult(r) = part {
            r.name = None;
        }
    }
    let rendered = json(&request::render(&canonical).unwrap());
    let parts = &rendered["contents"][2]["parts"];
    assert_eq!(parts[0]["functionResponse"]["name"], "get_weather");
    assert_eq!(parts[1]["functionResponse"]["name"], "get_weather");
}

#[test]
fn responses_parse_render_and_round_trip() {
    for name in ["response_text", "response_tool_call"] {
        let canonical = response::parse(&fixture(&format!("{name}.json"))).unwrap();
        snap(&format!("{name}.canonical"), &canonical);
        let rendered = response::render(&canonical).unwrap();
        snap(&format!("{name}.rendered"), &json(&rendered));
        assert_eq!(response::parse(&rendered).unwrap(), canonical, "{name}");
    }
}

#[test]
fn streams_decode_in_any_split_accumulate_and_encode() {
    for name in ["stream_text", "stream_tool_call"] {
        let bytes = fixture(&format!("{name}.sse"));
        let events = decode_all(&bytes);
        for chunk in 1..bytes.len() {
            assert_eq!(
                decode_in_chunks(&bytes, chunk),
                events,
                "{name}: chunk {chunk}"
            );
        }
        snap(&format!("{name}.events"), &events);
        let accumulated = accumulate(&events);
        snap(
            &format!("{name}.accumulated"),
            &json(&response::render(&accumulated).unwrap()),
        );
        let encoded = encode_all(&events);
        insta::with_settings!({ prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!(format!("gemini_{name}.encoded"), String::from_utf8(encoded.clone()).unwrap());
        });
        assert_eq!(
            accumulate(&decode_all(&encoded)),
            accumulated,
            "{name}: the encoded stream says the same"
        );
    }
}

#[test]
fn streamed_and_buffered_answers_agree() {
    for (stream_name, buffered_name) in [
        ("stream_text", "response_text"),
        ("stream_tool_call", "response_tool_call"),
    ] {
        let streamed = accumulate(&decode_all(&fixture(&format!("{stream_name}.sse"))));
        let buffered = response::parse(&fixture(&format!("{buffered_name}.json"))).unwrap();
        assert_eq!(streamed.usage, buffered.usage, "{stream_name}: usage");
        assert!(streamed.usage.is_some());
        assert_eq!(
            (&streamed.id, &streamed.model),
            (&buffered.id, &buffered.model)
        );
        assert_eq!(streamed.choices.len(), buffered.choices.len());
        for (s, b) in streamed.choices.iter().zip(&buffered.choices) {
            assert_eq!(s.message, b.message, "{stream_name}: content and call ids");
            assert_eq!(s.finish_reason, b.finish_reason);
        }
    }
}

#[test]
fn upstream_error_body_parses_and_renders() {
    let e = error::parse(&fixture("error_quota.json")).unwrap();
    assert_eq!(e.kind, "RESOURCE_EXHAUSTED");
    assert_eq!(e.code.as_deref(), Some("429"));
    let rendered = json(&error::render(429, &e.message));
    let original = json(&fixture("error_quota.json"));
    for field in ["code", "message", "status"] {
        assert_eq!(
            rendered["error"][field], original["error"][field],
            "{field}"
        );
    }
}

/// A tiny deterministic PRNG (SplitMix64), so random tests repeat exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn decoders_survive_random_and_mutated_input() {
    let mut rng = Rng(42);
    let seeds = [
        fixture("stream_text.sse"),
        fixture("stream_tool_call.sse"),
        fixture("response_tool_call.json"),
    ];
    for round in 0..3000 {
        let mut bytes = if round % 3 == 0 {
            (0..rng.below(300))
                .map(|_| rng.next() as u8)
                .collect::<Vec<_>>()
        } else {
            seeds[rng.below(seeds.len())].clone()
        };
        for _ in 0..rng.below(8) {
            if bytes.is_empty() {
                break;
            }
            let at = rng.below(bytes.len());
            bytes[at] = rng.next() as u8;
        }
        let mut framer = sse::Framer::new();
        let mut decoder = stream::Decoder::new();
        let mut out = Vec::new();
        framer.push(&bytes);
        while let Some(event) = framer.next_event() {
            if let Some(data) = sse::data(&event) {
                let _ = decoder.decode(&data, &mut out);
            }
        }
        let _ = response::parse(&bytes);
        let _ = request::parse(&bytes);
        let _ = error::parse(&bytes);
    }
}
