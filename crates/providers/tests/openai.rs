//! OpenAI translation: fixture in, canonical and rendered snapshots out, and round trips.

// Test helpers may panic: a failure is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use providers::canonical::{Accumulator, StreamEvent};
use providers::openai::{error, request, response, stream};
use serde_json::Value;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/openai/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Snapshots with maps sorted, so a serde_json feature elsewhere cannot reorder them.
fn snap(name: &str, value: &impl serde::Serialize) {
    insta::with_settings!({ sort_maps => true, prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!(name, value);
    });
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// The payloads of the `data:` lines of an SSE text.
fn data_lines(sse: &[u8]) -> Vec<Vec<u8>> {
    std::str::from_utf8(sse)
        .unwrap()
        .split("\n\n")
        .filter_map(|event| event.trim().strip_prefix("data:"))
        .map(|data| data.trim_start().as_bytes().to_vec())
        .collect()
}

fn decode_all(sse: &[u8]) -> Vec<StreamEvent> {
    let mut decoder = stream::Decoder::new();
    let mut events = Vec::new();
    for data in data_lines(sse) {
        decoder.decode(&data, &mut events).unwrap();
    }
    assert!(decoder.is_done(), "the stream ends with [DONE]");
    events
}

fn encode_all(events: &[StreamEvent], include_usage: bool) -> Vec<u8> {
    let mut encoder = stream::Encoder::new(include_usage);
    let mut out = Vec::new();
    for event in events {
        encoder.encode(event, &mut out);
    }
    encoder.finish(&mut out);
    out
}

#[test]
fn requests_parse_render_and_round_trip() {
    for name in [
        "chat_request_basic",
        "chat_request_tools",
        "chat_request_vision",
        "chat_request_json_schema",
    ] {
        let canonical = request::parse(&fixture(&format!("{name}.json"))).unwrap();
        snap(&format!("{name}.canonical"), &canonical);
        let rendered = request::render(&canonical);
        snap(&format!("{name}.rendered"), &json(&rendered));
        let again = request::parse(&rendered).unwrap();
        assert_eq!(
            again, canonical,
            "{name}: parse(render(parse(x))) == parse(x)"
        );
    }
}

#[test]
fn responses_parse_render_and_round_trip() {
    for name in ["chat_response_text", "chat_response_tool_calls"] {
        let canonical = response::parse(&fixture(&format!("{name}.json"))).unwrap();
        snap(&format!("{name}.canonical"), &canonical);
        let rendered = response::render(&canonical);
        snap(&format!("{name}.rendered"), &json(&rendered));
        assert_eq!(response::parse(&rendered).unwrap(), canonical, "{name}");
    }
}

#[test]
fn response_usage_keeps_openai_totals() {
    let original = json(&fixture("chat_response_text.json"));
    let rendered = json(&response::render(
        &response::parse(&fixture("chat_response_text.json")).unwrap(),
    ));
    for field in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(
            rendered["usage"][field], original["usage"][field],
            "{field}"
        );
    }
    assert_eq!(
        rendered["usage"]["prompt_tokens_details"]["cached_tokens"],
        original["usage"]["prompt_tokens_details"]["cached_tokens"]
    );
}

#[test]
fn streams_decode_accumulate_encode_and_round_trip() {
    for name in ["chat_stream_text", "chat_stream_tool_calls"] {
        let events = decode_all(&fixture(&format!("{name}.sse")));
        snap(&format!("{name}.events"), &events);

        let mut acc = Accumulator::new();
        events.iter().for_each(|e| acc.push(e));
        snap(
            &format!("{name}.accumulated"),
            &json(&response::render(&acc.finish())),
        );

        let encoded = encode_all(&events, true);
        insta::with_settings!({ prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!(format!("{name}.encoded"), String::from_utf8(encoded.clone()).unwrap());
        });
        assert_eq!(
            decode_all(&encoded),
            events,
            "{name}: decode(encode(e)) == e"
        );
    }
}

#[test]
fn usage_chunk_only_when_asked() {
    let events = decode_all(&fixture("chat_stream_text.sse"));
    let without = String::from_utf8(encode_all(&events, false)).unwrap();
    assert!(!without.contains("usage"), "{without}");
    assert!(without.ends_with("data: [DONE]\n\n"));
}

#[test]
fn upstream_error_body_parses() {
    let e = error::parse(&fixture("error_rate_limit.json")).unwrap();
    assert_eq!(e.kind, "tokens");
    assert_eq!(e.code.as_deref(), Some("rate_limit_exceeded"));
    assert!(e.message.starts_with("Rate limit reached"));
    let rendered = error::render(&e.kind, &e.message, e.param.as_deref(), e.code.as_deref());
    assert_eq!(json(&rendered), json(&fixture("error_rate_limit.json")));
}

/// Found by the openai_stream fuzz target: an upstream's choice index sized a buffer (4 billion
/// entries aborted the process). Now the chunk is refused.
#[test]
fn an_absurd_choice_index_is_refused_not_allocated() {
    let mut d = providers::openai::stream::Decoder::new();
    let mut out = Vec::new();
    let chunk = br#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":4294967295,"delta":{"tool_calls":[{"index":0,"id":"t","type":"function","function":{"name":"f","arguments":""}}]},"finish_reason":null}]}"#;
    assert!(d.decode(chunk, &mut out).is_err());
    let mut e = providers::openai::stream::Encoder::new(true);
    let mut bytes = Vec::new();
    e.encode(
        &providers::canonical::StreamEvent::TextDelta {
            choice: u32::MAX,
            text: "x".into(),
        },
        &mut bytes,
    );
    assert!(bytes.is_empty());
}
