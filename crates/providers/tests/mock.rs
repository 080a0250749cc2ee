//! The mock provider: deterministic, and streamed answers equal buffered ones.

// Test helpers may panic: a failure is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use providers::canonical::{Accumulator, ChatRequest, StreamEvent};
use providers::mock;
use providers::openai::{request, response, stream};
use serde_json::Value;

fn req(body: &str) -> ChatRequest {
    request::parse(body.as_bytes()).unwrap()
}

fn cases() -> Vec<(&'static str, ChatRequest)> {
    vec![
        (
            "text",
            req(r#"{"model":"demo","messages":[
                {"role":"system","content":"Be brief."},
                {"role":"user","content":"Hello   there,\nmock world"}]}"#),
        ),
        (
            "image",
            req(r#"{"model":"demo","messages":[{"role":"user","content":[
                {"type":"text","text":"What is this?"},
                {"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}]}"#),
        ),
        (
            "tool_call",
            req(
                r#"{"model":"demo","messages":[{"role":"user","content":"weather in Paris"}],
                "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}},
                         {"type":"function","function":{"name":"get_time"}}]}"#,
            ),
        ),
        (
            "tool_call_chosen",
            req(
                r#"{"model":"demo","messages":[{"role":"user","content":"what time is it"}],
                "tools":[{"type":"function","function":{"name":"get_weather"}},
                         {"type":"function","function":{"name":"get_time"}}],
                "tool_choice":{"type":"function","function":{"name":"get_time"}}}"#,
            ),
        ),
        (
            "tool_choice_none",
            req(
                r#"{"model":"demo","messages":[{"role":"user","content":"just talk"}],
                "tools":[{"type":"function","function":{"name":"get_weather"}}],"tool_choice":"none"}"#,
            ),
        ),
        (
            "tool_result",
            req(r#"{"model":"demo","messages":[
                {"role":"user","content":"weather in Paris"},
                {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
                    "function":{"name":"get_weather","arguments":"{\"input\":\"weather in Paris\"}"}}]},
                {"role":"tool","tool_call_id":"call_1","content":"sunny, 21C"}],
                "tools":[{"type":"function","function":{"name":"get_weather"}}]}"#),
        ),
        (
            "json",
            req(
                r#"{"model":"demo","messages":[{"role":"user","content":"say \"hi\""}],
                "response_format":{"type":"json_object"}}"#,
            ),
        ),
        (
            "n_and_max_tokens",
            req(r#"{"model":"demo","n":3,"max_tokens":3,
                "messages":[{"role":"user","content":"one two three four five"}]}"#),
        ),
    ]
}

fn accumulate(events: &[StreamEvent]) -> providers::canonical::ChatResponse {
    let mut acc = Accumulator::new();
    events.iter().for_each(|e| acc.push(e));
    acc.finish()
}

#[test]
fn answers_are_deterministic_and_snapshotted() {
    for (name, request) in cases() {
        let answer = mock::answer(&request);
        assert_eq!(answer, mock::answer(&request.clone()), "{name}");
        let rendered: Value = serde_json::from_slice(&response::render(&answer)).unwrap();
        insta::with_settings!({ sort_maps => true, prepend_module_to_snapshot => false }, {
            insta::assert_json_snapshot!(format!("mock_{name}"), rendered);
        });
    }
}

#[test]
fn streamed_answers_equal_buffered_ones() {
    for (name, request) in cases() {
        let answer = mock::answer(&request);
        for words_per_chunk in [0, 1, 2, 3, 7, 100] {
            let events = mock::stream(&request, words_per_chunk);
            assert_eq!(
                accumulate(&events),
                answer,
                "{name}, {words_per_chunk} words per chunk"
            );
            let usage = events.iter().rev().find_map(|e| match e {
                StreamEvent::Usage(u) => Some(*u),
                _ => None,
            });
            assert_eq!(usage, answer.usage, "{name}: the same usage");
        }
    }
}

#[test]
fn rules_hold() {
    let cases = cases();
    let text = |name: &str| {
        let (_, request) = cases.iter().find(|(n, _)| *n == name).unwrap();
        mock::answer(request)
    };
    let a = text("text");
    assert_eq!(
        a.choices[0].message.text_content(),
        "echo: Hello   there,\nmock world"
    );
    let usage = a.usage.unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (6, 5));

    assert_eq!(
        text("image").choices[0].message.text_content(),
        "echo: What is this? [image]"
    );

    let call = text("tool_call");
    let calls: Vec<_> = call.choices[0].message.tool_calls().collect();
    assert_eq!(
        (calls[0].name.as_str(), calls[0].arguments.as_str()),
        ("get_weather", r#"{"input":"weather in Paris"}"#)
    );
    assert_eq!(call.usage.unwrap().input_tokens, 3 + 2);
    assert_eq!(
        text("tool_call_chosen").choices[0]
            .message
            .tool_calls()
            .next()
            .unwrap()
            .name,
        "get_time"
    );
    assert_eq!(
        text("tool_choice_none").choices[0].message.text_content(),
        "echo: just talk"
    );
    assert_eq!(
        text("tool_result").choices[0].message.text_content(),
        "tool said: sunny, 21C"
    );
    assert_eq!(
        text("json").choices[0].message.text_content(),
        r#"{"echo":"say \"hi\""}"#
    );

    let cut = text("n_and_max_tokens");
    assert_eq!(cut.choices.len(), 3);
    assert!(cut
        .choices
        .iter()
        .all(|c| c.message.text_content() == "echo: one two"));
    assert!(cut
        .choices
        .iter()
        .all(|c| c.finish_reason == Some(providers::canonical::FinishReason::Length)));
    assert_eq!(cut.usage.unwrap().output_tokens, 9);
}

#[test]
fn mock_stream_encodes_as_openai_sse() {
    let (_, request) = cases()
        .into_iter()
        .find(|(n, _)| *n == "tool_call")
        .unwrap();
    let mut encoder = stream::Encoder::new(true);
    let mut out = Vec::new();
    for event in mock::stream(&request, 2) {
        encoder.encode(&event, &mut out);
    }
    encoder.finish(&mut out);
    insta::with_settings!({ prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!("mock_tool_call_stream", String::from_utf8(out).unwrap());
    });
}

#[test]
fn embeddings_are_deterministic_unit_vectors() {
    let a = mock::embed("the quick brown fox", 256);
    assert_eq!(a.len(), 256);
    assert_eq!(a, mock::embed("the quick brown fox", 256));
    assert_ne!(a, mock::embed("the quick brown cat", 256));
    let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "{norm}");
}
