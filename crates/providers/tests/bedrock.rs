//! Bedrock Converse translation: fixture in, canonical and rendered snapshots out, round trips,
//! ConverseStream framed into event stream bytes and fed back in every split, streamed and
//! buffered answers that agree, and decoders that survive random bytes.

// Test helpers may panic: a failure is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use providers::bedrock::eventstream::{self, Message};
use providers::bedrock::{error, request, response, stream};
use providers::canonical::{Accumulator, ChatResponse, Part, StreamEvent};
use serde_json::{json, Value};

/// The upstream model the requests are rendered for (its family picks `top_k`'s spelling).
const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/bedrock/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn snap(name: &str, value: &impl serde::Serialize) {
    insta::with_settings!({ sort_maps => true, prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!(format!("bedrock_{name}"), value);
    });
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// A stream fixture (a list of `{event, payload}`) framed as ConverseStream sends it.
fn framed(name: &str) -> Vec<u8> {
    let events: Vec<Value> = serde_json::from_slice(&fixture(name)).unwrap();
    let mut out = Vec::new();
    for e in events {
        let payload = serde_json::to_vec(&e["payload"]).unwrap();
        out.extend(eventstream::event(e["event"].as_str().unwrap(), &payload));
    }
    out
}

fn messages_in_chunks(bytes: &[u8], chunk: usize) -> Vec<Message> {
    let mut d = eventstream::Decoder::new();
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk) {
        d.push(piece);
        while let Some(m) = d.next_message().unwrap() {
            out.push(m);
        }
    }
    assert_eq!(d.pending(), 0);
    out
}

fn decode_in_chunks(bytes: &[u8], chunk: usize) -> Vec<StreamEvent> {
    let mut decoder = stream::Decoder::new();
    let mut events = Vec::new();
    for m in messages_in_chunks(bytes, chunk) {
        decoder.decode(&m, &mut events).unwrap();
    }
    events
}

fn decode_all(bytes: &[u8]) -> Vec<StreamEvent> {
    decode_in_chunks(bytes, bytes.len().max(1))
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

/// Encoded messages as readable JSON: headers and payload.
fn readable(bytes: &[u8]) -> Value {
    let messages = messages_in_chunks(bytes, bytes.len().max(1));
    Value::Array(
        messages
            .iter()
            .map(|m| {
                let headers: serde_json::Map<String, Value> = m
                    .headers
                    .iter()
                    .map(|h| (h.name.clone(), json!(format!("{:?}", h.value))))
                    .collect();
                json!({"headers": headers, "payload": json(&m.payload)})
            })
            .collect(),
    )
}

fn accumulate(events: &[StreamEvent]) -> ChatResponse {
    let mut acc = Accumulator::new();
    events.iter().for_each(|e| acc.push(e));
    acc.finish()
}

#[test]
fn requests_parse_render_and_round_trip() {
    let mut canonical = request::parse(&fixture("request_tools.json")).unwrap();
    canonical.model = MODEL.into();
    snap("request_tools.canonical", &canonical);
    let rendered = request::render(&canonical).unwrap();
    snap("request_tools.rendered", &json(&rendered));
    let mut again = request::parse(&rendered).unwrap();
    again.model = MODEL.into();
    assert_eq!(again, canonical, "parse(render(parse(x))) == parse(x)");
}

#[test]
fn tool_results_and_user_text_share_one_turn() {
    let canonical = request::parse(&fixture("request_tools.json")).unwrap();
    let roles: Vec<_> = canonical.messages.iter().map(|m| m.role).collect();
    use providers::canonical::Role::*;
    assert_eq!(roles, vec![System, User, Assistant, Tool, User]);
    let mut with_model = canonical;
    with_model.model = MODEL.into();
    let rendered = json(&request::render(&with_model).unwrap());
    let turns = rendered["messages"].as_array().unwrap();
    assert_eq!(turns.len(), 3, "Converse turns alternate");
    assert!(turns[2]["content"][0]["toolResult"].is_object());
    assert_eq!(turns[2]["content"][1]["text"], "And is it raining?");
}

#[test]
fn responses_parse_render_and_round_trip() {
    for name in ["response_text", "response_tool_use"] {
        let canonical = response::parse(&fixture(&format!("{name}.json"))).unwrap();
        snap(&format!("{name}.canonical"), &canonical);
        let rendered = response::render(&canonical).unwrap();
        snap(&format!("{name}.rendered"), &json(&rendered));
        assert_eq!(
            json(&rendered),
            json(&fixture(&format!("{name}.json"))),
            "{name}: bytes"
        );
        assert_eq!(response::parse(&rendered).unwrap(), canonical, "{name}");
    }
}

#[test]
fn streams_decode_in_any_split_accumulate_and_encode() {
    for name in ["stream_text", "stream_tool_use"] {
        let bytes = framed(&format!("{name}.json"));
        let events = decode_all(&bytes);
        for chunk in 1..=bytes.len() {
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
        snap(&format!("{name}.encoded"), &readable(&encoded));
        assert_eq!(
            decode_all(&encoded),
            events,
            "{name}: decode(encode(e)) == e"
        );
    }
}

/// Tool call arguments as JSON values: a stream's fragments keep the model's spacing.
fn normalized(mut r: ChatResponse) -> ChatResponse {
    for c in &mut r.choices {
        for p in &mut c.message.content {
            if let Part::ToolCall(call) = p {
                call.arguments = serde_json::from_str::<Value>(&call.arguments)
                    .unwrap()
                    .to_string();
            }
        }
        c.extra = None;
    }
    r.extra = None;
    r
}

#[test]
fn streamed_and_buffered_answers_agree() {
    for (stream_name, buffered_name) in [
        ("stream_text", "response_text"),
        ("stream_tool_use", "response_tool_use"),
    ] {
        let streamed = accumulate(&decode_all(&framed(&format!("{stream_name}.json"))));
        let buffered = response::parse(&fixture(&format!("{buffered_name}.json"))).unwrap();
        assert!(streamed.usage.is_some());
        assert_eq!(streamed.usage, buffered.usage, "{stream_name}: usage");
        assert_eq!(normalized(streamed), normalized(buffered), "{stream_name}");
    }
}

#[test]
fn upstream_error_body_parses() {
    let e = error::parse(
        &fixture("error_throttling.json"),
        Some("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
    )
    .unwrap();
    assert_eq!(e.kind, "ThrottlingException");
    assert_eq!(
        json(&error::render(&e.message)),
        json(&fixture("error_throttling.json"))
    );
}

#[test]
fn stream_errors_round_trip_as_exceptions() {
    let event = StreamEvent::Error(providers::canonical::ApiError {
        kind: "throttlingException".into(),
        message: "Too many tokens".into(),
        ..Default::default()
    });
    let bytes = encode_all(std::slice::from_ref(&event));
    let messages = messages_in_chunks(&bytes, 7);
    assert_eq!(messages[0].message_type(), Some("exception"));
    assert_eq!(messages[0].exception_type(), Some("throttlingException"));
    assert_eq!(decode_all(&bytes), vec![event]);
}

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
fn decoders_survive_random_payloads() {
    let mut rng = Rng(7);
    let seeds = [
        fixture("response_tool_use.json"),
        fixture("request_tools.json"),
        br#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{"}}}"#.to_vec(),
    ];
    let kinds = [
        "messageStart",
        "contentBlockStart",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ];
    for round in 0..3000 {
        let mut payload = if round % 2 == 0 {
            (0..rng.below(200))
                .map(|_| rng.next() as u8)
                .collect::<Vec<_>>()
        } else {
            seeds[rng.below(seeds.len())].clone()
        };
        for _ in 0..rng.below(6) {
            if payload.is_empty() {
                break;
            }
            let at = rng.below(payload.len());
            payload[at] = rng.next() as u8;
        }
        let mut decoder = stream::Decoder::new();
        let mut out = Vec::new();
        let _ = decoder.decode_event(kinds[rng.below(kinds.len())], &payload, &mut out);
        let _ = response::parse(&payload);
        let _ = request::parse(&payload);
        let _ = error::parse(&payload, None);
    }
}

/// Found by fuzzing (fuzz/corpus/requests/bedrock-message-without-content.json): a request
/// whose messages all lack content renders to an explicit error, not `"messages":[]`.
#[test]
fn a_request_without_any_content_is_refused_not_rendered_empty() {
    let mut canonical = request::parse(br#"{"messages":[{"role":"user"}]}"#).unwrap();
    canonical.model = MODEL.into();
    let e = request::render(&canonical).unwrap_err();
    assert_eq!(e.param(), Some("messages"), "{e:?}");
}

/// Found by fuzzing (fuzz/corpus/responses/bedrock-stop-sequence-with-unknown-reason.json): a
/// stop sequence beside an unknown stop reason renders as `stop_sequence`, never `end_turn`,
/// and the rendering round-trips.
#[test]
fn a_stop_sequence_never_renders_beside_end_turn() {
    let body = br#"{"output":{"message":{"role":"assistant","content":[]}},"stopReason":"x","additionalModelResponseFields":{"stop_sequence":"END"}}"#;
    let rendered = response::render(&response::parse(body).unwrap()).unwrap();
    let wire = json(&rendered);
    assert_eq!(wire["stopReason"], "stop_sequence");
    assert_eq!(
        wire["additionalModelResponseFields"]["stop_sequence"],
        "END"
    );
    let again = response::render(&response::parse(&rendered).unwrap()).unwrap();
    assert_eq!(json(&again), wire);
}
