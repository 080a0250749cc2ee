//! Anthropic translation: fixture in, canonical and rendered snapshots out, round trips, and the
//! translations to and from OpenAI through the canonical model.

// Test helpers may panic: a failure is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use providers::anthropic::{error, request, response, stream};
use providers::canonical::{Accumulator, ChatResponse, FinishReason, StreamEvent, Usage};
use providers::{openai, sse};
use serde_json::{json, Value};

fn fixture(dir: &str, name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{dir}/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn anthropic(name: &str) -> Vec<u8> {
    fixture("anthropic", name)
}

/// Snapshots with maps sorted, so a serde_json feature elsewhere cannot reorder them.
fn snap(name: &str, value: &impl serde::Serialize) {
    insta::with_settings!({ sort_maps => true, prepend_module_to_snapshot => false }, {
        insta::assert_json_snapshot!(format!("anthropic_{name}"), value);
    });
}

fn snap_text(name: &str, text: &[u8]) {
    insta::with_settings!({ prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!(format!("anthropic_{name}"), String::from_utf8(text.to_vec()).unwrap());
    });
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// Decodes an Anthropic SSE text, cut into events by the crate's own framer.
fn decode_all(sse_text: &[u8]) -> Vec<StreamEvent> {
    let mut framer = sse::Framer::new();
    framer.push(sse_text);
    let mut decoder = stream::Decoder::new();
    let mut events = Vec::new();
    while let Some(event) = framer.next_event() {
        if let Some(data) = sse::data(&event) {
            decoder
                .decode(sse::event_name(&event), &data, &mut events)
                .unwrap();
        }
    }
    assert!(framer.pending().is_empty());
    assert!(decoder.is_done(), "the stream ends with message_stop");
    events
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
    for name in [
        "messages_request_basic",
        "messages_request_tools",
        "messages_request_json_schema",
    ] {
        let canonical = request::parse(&anthropic(&format!("{name}.json"))).unwrap();
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
fn rendering_keeps_what_anthropic_clients_sent() {
    let original = json(&anthropic("messages_request_tools.json"));
    let rendered = json(
        &request::render(&request::parse(&anthropic("messages_request_tools.json")).unwrap())
            .unwrap(),
    );
    for field in [
        "system",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        "service_tier",
        "metadata",
        "max_tokens",
    ] {
        assert_eq!(rendered[field], original[field], "{field}");
    }
    // Same turns, same blocks, in the same order.
    assert_eq!(rendered["messages"], original["messages"]);
}

#[test]
fn count_tokens_requests_have_no_generation_parameters() {
    let canonical = request::parse_count_tokens(&anthropic("count_tokens_request.json")).unwrap();
    assert_eq!(canonical.max_tokens, None);
    let rendered = request::render_count_tokens(&canonical).unwrap();
    snap("count_tokens_request.rendered", &json(&rendered));
    assert_eq!(
        json(&rendered),
        json(&anthropic("count_tokens_request.json"))
    );
    assert_eq!(request::parse_count_tokens(&rendered).unwrap(), canonical);
    // A messages request counted: its generation parameters are left out.
    let full = request::parse(&anthropic("messages_request_basic.json")).unwrap();
    let counted = json(&request::render_count_tokens(&full).unwrap());
    for field in [
        "max_tokens",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "metadata",
    ] {
        assert!(counted.get(field).is_none(), "{field}");
    }
    assert_eq!(response::render_token_count(14), br#"{"input_tokens":14}"#);
}

#[test]
fn responses_parse_render_and_round_trip() {
    for name in ["messages_response_tool_use", "messages_response_thinking"] {
        let canonical = response::parse(&anthropic(&format!("{name}.json"))).unwrap();
        snap(&format!("{name}.canonical"), &canonical);
        let rendered = response::render(&canonical);
        snap(&format!("{name}.rendered"), &json(&rendered));
        assert_eq!(response::parse(&rendered).unwrap(), canonical, "{name}");
        assert_eq!(
            json(&rendered)["usage"],
            json(&anthropic(&format!("{name}.json")))["usage"],
            "{name}: usage survives whole"
        );
    }
}

#[test]
fn response_usage_follows_the_canonical_convention() {
    let r = response::parse(&anthropic("messages_response_tool_use.json")).unwrap();
    let u = r.usage.unwrap();
    assert_eq!(
        (
            u.input_tokens,
            u.cache_read_tokens,
            u.cache_write_tokens,
            u.output_tokens
        ),
        (472, 2048, 1536, 89)
    );
    assert_eq!(u.prompt_tokens(), 472 + 2048 + 1536);
    let c = &r.choices[0];
    assert_eq!(c.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(
        c.message.tool_calls().next().unwrap().arguments,
        r#"{"location":"San Francisco, CA","unit":"fahrenheit"}"#
    );
    let thinking = response::parse(&anthropic("messages_response_thinking.json")).unwrap();
    assert_eq!(thinking.usage.unwrap().reasoning_tokens, 250);
    assert_eq!(thinking.choices[0].stop_sequence.as_deref(), Some("END"));
}

#[test]
fn streams_decode_accumulate_encode_and_round_trip() {
    for name in ["messages_stream_tool_use", "messages_stream_thinking"] {
        let events = decode_all(&anthropic(&format!("{name}.sse")));
        snap(&format!("{name}.events"), &events);
        snap(
            &format!("{name}.accumulated"),
            &json(&response::render(&accumulate(&events))),
        );
        let encoded = encode_all(&events);
        snap_text(&format!("{name}.encoded"), &encoded);
        assert_eq!(
            decode_all(&encoded),
            events,
            "{name}: decode(encode(e)) == e"
        );
    }
}

#[test]
fn streamed_and_buffered_answers_agree() {
    for (stream_name, response_name) in [
        (
            "messages_stream_tool_use.sse",
            "messages_response_tool_use.json",
        ),
        (
            "messages_stream_thinking.sse",
            "messages_response_thinking.json",
        ),
    ] {
        let streamed = accumulate(&decode_all(&anthropic(stream_name)));
        let buffered = response::parse(&anthropic(response_name)).unwrap();
        assert_eq!(streamed.usage, buffered.usage, "{stream_name}: usage");
        assert_eq!(streamed.id, buffered.id);
        assert_eq!(streamed.model, buffered.model);
        let (s, b) = (&streamed.choices[0], &buffered.choices[0]);
        assert_eq!(s.finish_reason, b.finish_reason);
        assert_eq!(s.stop_sequence, b.stop_sequence);
        assert_eq!(s.message.text_content(), b.message.text_content());
        let args = |r: &ChatResponse| -> Vec<(String, Value)> {
            r.choices[0]
                .message
                .tool_calls()
                .map(|c| (c.name.clone(), serde_json::from_str(&c.arguments).unwrap()))
                .collect()
        };
        assert_eq!(
            args(&streamed),
            args(&buffered),
            "{stream_name}: tool calls"
        );

        // A buffered answer served as a stream (cache hit) reports the same usage.
        let replayed = accumulate(&decode_all(&encode_all(&buffered.to_events())));
        assert_eq!(
            replayed.usage, buffered.usage,
            "{response_name}: replayed usage"
        );
    }
}

#[test]
fn openai_request_to_anthropic() {
    let canonical = openai::request::parse(&fixture("openai", "chat_request_tools.json")).unwrap();
    let rendered = json(&request::render(&canonical).unwrap());
    snap("from_openai_chat_request_tools.rendered", &rendered);
    assert_eq!(rendered["system"], "You can look up the weather.");
    assert_eq!(rendered["max_tokens"], request::DEFAULT_MAX_TOKENS);
    assert_eq!(
        rendered["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    assert_eq!(rendered["tools"][1]["strict"], true);
    let messages = rendered["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 5, "both tool results share one user turn");
    assert_eq!(
        messages[1]["content"][1],
        json!({"type": "tool_use", "id": "call_def456", "name": "get_current_weather",
               "input": {"location": "Paris, France", "unit": "celsius"}})
    );
    assert_eq!(messages[2]["role"], "user");
    assert_eq!(messages[2]["content"][0]["tool_use_id"], "call_abc123");
    assert_eq!(messages[2]["content"][1]["tool_use_id"], "call_def456");

    // What Anthropic cannot honour is a 400 naming the parameter.
    let vision = openai::request::parse(&fixture("openai", "chat_request_vision.json")).unwrap();
    let e = request::render(&vision).unwrap_err();
    assert_eq!(e.param(), Some("messages[0].content[3]"), "{e}");
    let basic = openai::request::parse(&fixture("openai", "chat_request_basic.json")).unwrap();
    assert_eq!(request::render(&basic).unwrap_err().param(), Some("n"));
    let schema =
        openai::request::parse(&fixture("openai", "chat_request_json_schema.json")).unwrap();
    let rendered = json(&request::render(&schema).unwrap());
    assert_eq!(rendered["output_config"]["format"]["type"], "json_schema");
}

#[test]
fn anthropic_request_to_openai() {
    let canonical = request::parse(&anthropic("messages_request_tools.json")).unwrap();
    let rendered = json(&openai::request::render(&canonical));
    snap("to_openai_messages_request_tools.rendered", &rendered);
    let roles: Vec<&str> = rendered["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "system",
            "user",
            "assistant",
            "tool",
            "tool",
            "user",
            "assistant",
            "user"
        ]
    );
    assert_eq!(rendered["parallel_tool_calls"], false);
    assert_eq!(rendered["user"], "user-42");
}

#[test]
fn anthropic_stream_to_openai_stream() {
    let events = decode_all(&anthropic("messages_stream_tool_use.sse"));
    let mut encoder = openai::stream::Encoder::new(true);
    let mut out = Vec::new();
    for event in &events {
        encoder.encode(event, &mut out);
    }
    encoder.finish(&mut out);
    snap_text("messages_stream_tool_use.to_openai", &out);

    let chunks: Vec<Value> = String::from_utf8(out.clone())
        .unwrap()
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let tool_start = chunks
        .iter()
        .find(|c| c["choices"][0]["delta"]["tool_calls"][0]["id"].is_string())
        .unwrap();
    assert_eq!(
        tool_start["choices"][0]["delta"]["tool_calls"][0],
        json!({"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
               "function": {"name": "get_weather", "arguments": ""}})
    );
    let finish = chunks
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str())
        .unwrap();
    assert_eq!(finish, "tool_calls");
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["prompt_tokens"], 472 + 2048 + 1536);
    assert_eq!(usage["completion_tokens"], 89);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 2048);
    assert_eq!(usage["prompt_tokens_details"]["cache_write_tokens"], 1536);

    // And back: the OpenAI stream decodes to the same answer.
    let mut decoder = openai::stream::Decoder::new();
    let mut back = Vec::new();
    for chunk in String::from_utf8(out).unwrap().split("\n\n") {
        if let Some(data) = chunk.strip_prefix("data: ") {
            decoder.decode(data.as_bytes(), &mut back).unwrap();
        }
    }
    let (a, b) = (accumulate(&events), accumulate(&back));
    assert_eq!(a.usage, b.usage);
    assert_eq!(a.choices, b.choices);
}

#[test]
fn openai_stream_to_anthropic_stream() {
    let mut decoder = openai::stream::Decoder::new();
    let mut events = Vec::new();
    let text = String::from_utf8(fixture("openai", "chat_stream_tool_calls.sse")).unwrap();
    for chunk in text.split("\n\n") {
        if let Some(data) = chunk.trim().strip_prefix("data: ") {
            decoder.decode(data.as_bytes(), &mut events).unwrap();
        }
    }
    let encoded = encode_all(&events);
    snap_text("from_openai_chat_stream_tool_calls.encoded", &encoded);
    let back = decode_all(&encoded);
    let (a, b) = (accumulate(&events), accumulate(&back));
    assert_eq!(a.usage, b.usage, "usage survives the Anthropic stream");
    assert_eq!(a.choices, b.choices);
}

#[test]
fn usage_only_at_the_end_of_an_encoded_stream() {
    let usage = Usage {
        input_tokens: 5,
        output_tokens: 2,
        cache_read_tokens: 7,
        ..Usage::default()
    };
    let events = vec![
        StreamEvent::Start {
            id: "chatcmpl-1".into(),
            model: "gpt-4o".into(),
            created: 1,
        },
        StreamEvent::TextDelta {
            choice: 0,
            text: "hi".into(),
        },
        StreamEvent::Finish {
            choice: 0,
            reason: FinishReason::Length,
            stop_sequence: None,
        },
        StreamEvent::Usage(usage),
    ];
    let decoded = decode_all(&encode_all(&events));
    assert_eq!(decoded.last(), Some(&StreamEvent::Usage(usage)));
    assert!(decoded.contains(&StreamEvent::Finish {
        choice: 0,
        reason: FinishReason::Length,
        stop_sequence: None
    }));
}

#[test]
fn upstream_error_body_parses_and_renders() {
    let e = error::parse(&anthropic("error_overloaded.json")).unwrap();
    assert_eq!(
        (e.kind.as_str(), e.message.as_str()),
        ("overloaded_error", "Overloaded")
    );
    let rendered = json(&error::render(&e.kind, &e.message));
    let mut original = json(&anthropic("error_overloaded.json"));
    original.as_object_mut().unwrap().remove("request_id");
    assert_eq!(rendered, original);
    assert_eq!(error::error_type(529), e.kind);
}

/// Found by fuzzing (fuzz/corpus/responses/anthropic-stop-sequence-without-reason.json): a stop
/// sequence without a stop reason renders as `stop_sequence`, never `end_turn`, and round-trips.
#[test]
fn a_stop_sequence_without_a_reason_renders_as_stop_sequence() {
    let body = br#"{"id":"m","type":"message","role":"assistant","model":"c","content":[],"stop_reason":null,"stop_sequence":"END","usage":{"input_tokens":1,"output_tokens":1}}"#;
    let rendered = response::render(&response::parse(body).unwrap());
    let wire: Value = serde_json::from_slice(&rendered).unwrap();
    assert_eq!(wire["stop_reason"], "stop_sequence");
    assert_eq!(wire["stop_sequence"], "END");
    let again = response::render(&response::parse(&rendered).unwrap());
    assert_eq!(serde_json::from_slice::<Value>(&again).unwrap(), wire);
}
