//! The Anthropic surface: `/v1/messages` (plain, streamed, tools), `/v1/messages/count_tokens`,
//! headers, validation, auth, prompt-cache usage, faults and stats.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{exchange, parse, post, send, Resp};
use mock_provider::{MockServer, Options};
use serde_json::{json, Value};

const VERSION: (&str, &str) = ("anthropic-version", "2023-06-01");

async fn server() -> MockServer {
    MockServer::start(Options::default()).await.unwrap()
}

fn messages(model: &str, text: &str) -> Value {
    json!({"model": model, "max_tokens": 1024, "messages": [{"role": "user", "content": text}]})
}

async fn create(s: &MockServer, body: &Value) -> Resp {
    post(s.addr, "/v1/messages", &[VERSION], body).await
}

/// The `(event name, data)` pairs of an Anthropic SSE body; the name must equal `data.type`.
fn events(r: &Resp) -> Vec<(String, Value)> {
    let text = r.text();
    assert!(text.ends_with("\n\n"), "{text}");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let mut lines = e.lines();
            let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            assert_eq!(lines.next(), None, "one data line per event");
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], name, "event name matches the payload type");
            (name.to_string(), data)
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

#[tokio::test]
async fn message_has_anthropic_shape_and_deterministic_content() {
    let s = server().await;
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 1024,
        "system": "be brief",
        "messages": [{"role": "user", "content": "hello world"}]});
    let r = create(&s, &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.header("request-id").unwrap().starts_with("req_"));
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("msg_01"));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "echo: hello world"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["stop_sequence"], Value::Null);
    let u = &v["usage"];
    assert_eq!(u["input_tokens"], 4);
    assert_eq!(u["output_tokens"], 3);
    assert_eq!(u["cache_creation_input_tokens"], 0);
    assert_eq!(u["cache_read_input_tokens"], 0);
    assert_eq!(u["service_tier"], "standard");
}

#[tokio::test]
async fn auth_and_version_headers() {
    let s = MockServer::start(Options {
        api_key: Some("sk-ant-test".into()),
    })
    .await
    .unwrap();
    let body = messages("m", "x");
    let r = post(s.addr, "/v1/messages", &[VERSION], &body).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"type": "error", "error": {"type": "authentication_error",
            "message": "x-api-key header is required"}, "request_id": r.json()["request_id"]})
    );
    let r = post(
        s.addr,
        "/v1/messages",
        &[VERSION, ("Authorization", "Bearer sk-ant-test")],
        &body,
    )
    .await;
    assert_eq!(r.status, 401, "Bearer is not how Anthropic takes API keys");
    let r = post(
        s.addr,
        "/v1/messages",
        &[VERSION, ("x-api-key", "nope")],
        &body,
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["message"], "invalid x-api-key");
    let r = post(
        s.addr,
        "/v1/messages",
        &[VERSION, ("x-api-key", "sk-ant-test")],
        &body,
    )
    .await;
    assert_eq!(r.status, 200);

    let r = post(
        s.addr,
        "/v1/messages",
        &[("x-api-key", "sk-ant-test")],
        &body,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"],
        json!({"type": "invalid_request_error", "message": "anthropic-version: header is required"})
    );
}

#[tokio::test]
async fn validation_answers_like_anthropic() {
    let s = server().await;
    let cases = [
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens: Field required",
        ),
        (
            json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
            "model: Field required",
        ),
        (
            json!({"model": "m", "max_tokens": 5}),
            "messages: Field required",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": []}),
            "messages: at least one message is required",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "n": 2, "messages": [{"role": "user", "content": "x"}]}),
            "n: Extra inputs are not permitted",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}),
            "messages.0.content.0: Input tag 'image_url' found using 'type' does not match any of the expected tags",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
                {"type": "text", "text": ""}]}]}),
            "messages: text content blocks must be non-empty",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
                "tools": [{"name": "f", "description": "no schema"}]}),
            "tools.0.custom.input_schema: Field required",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "f"}}]}),
            "tools.0: Input tag 'function' found using 'type' does not match any of the expected tags",
        ),
    ];
    for (body, message) in cases {
        let r = create(&s, &body).await;
        assert_eq!(r.status, 400, "{body}");
        let v = r.json();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["message"], message, "{body}");
        assert!(v["request_id"].as_str().unwrap().starts_with("req_"));
    }
    let r = send(s.addr, "POST", "/v1/messages", &[VERSION], "{not json").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn tool_use_tool_results_and_tool_choice() {
    let s = server().await;
    let tools = json!([
        {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"input": {"type": "string"}}}},
        {"name": "get_time", "input_schema": {"type": "object"}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 1}
    ]);
    let mut body = messages("m", "weather in Paris");
    body["tools"] = tools.clone();
    let v = create(&s, &body).await.json();
    assert_eq!(v["stop_reason"], "tool_use");
    let block = &v["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert!(block["id"].as_str().unwrap().starts_with("toolu_01"));
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({"input": "weather in Paris"}));
    assert_eq!(
        v["usage"]["input_tokens"],
        3 + 3,
        "three words and three tools"
    );
    assert_eq!(
        v["usage"]["output_tokens"], 3,
        "the words of the input JSON"
    );

    body["tool_choice"] = json!({"type": "tool", "name": "get_time"});
    assert_eq!(
        create(&s, &body).await.json()["content"][0]["name"],
        "get_time"
    );
    body["tool_choice"] = json!({"type": "none"});
    let v = create(&s, &body).await.json();
    assert_eq!(v["content"][0]["text"], "echo: weather in Paris");
    assert_eq!(v["stop_reason"], "end_turn");

    let id = block["id"].clone();
    let body = json!({"model": "m", "max_tokens": 100, "tools": tools, "messages": [
        {"role": "user", "content": "weather in Paris"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "get_weather", "input": {"input": "weather in Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_other", "content": [{"type": "text", "text": "and warm"}], "is_error": true}
        ]}
    ]});
    let v = create(&s, &body).await.json();
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "tool said: sunny and warm"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
}

#[tokio::test]
async fn stop_sequences_max_tokens_and_structured_output() {
    let s = server().await;
    let mut body = messages("m", "one two three four");
    body["stop_sequences"] = json!(["three"]);
    let v = create(&s, &body).await.json();
    assert_eq!(v["content"][0]["text"], "echo: one two ");
    assert_eq!(v["stop_reason"], "stop_sequence");
    assert_eq!(v["stop_sequence"], "three");

    let mut body = messages("m", "one two three four");
    body["max_tokens"] = json!(2);
    let v = create(&s, &body).await.json();
    assert_eq!(v["content"][0]["text"], "echo: one");
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["usage"]["output_tokens"], 2);

    let mut body = messages("m", "hi");
    body["output_config"] =
        json!({"format": {"type": "json_schema", "schema": {"type": "object"}}});
    let v = create(&s, &body).await.json();
    let text: Value = serde_json::from_str(v["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(text, json!({"reply": "echo: hi"}));
}

#[tokio::test]
async fn text_stream_has_the_real_event_sequence() {
    let s = server().await;
    let mut body = messages("claude-haiku-4-5", "tell me a story");
    body["stream"] = json!(true);
    let r = create(&s, &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert!(r.header("request-id").is_some());
    assert!(!r.text().contains("[DONE]"));
    let ev = events(&r);
    let n = names(&ev);
    assert_eq!(n[0], "message_start");
    assert_eq!(n[1], "content_block_start");
    assert_eq!(n[2], "ping");
    assert!(n[3..n.len() - 3]
        .iter()
        .all(|e| *e == "content_block_delta"));
    assert_eq!(
        &n[n.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );

    let start = &ev[0].1["message"];
    assert!(start["id"].as_str().unwrap().starts_with("msg_01"));
    assert_eq!(start["model"], "claude-haiku-4-5");
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    assert_eq!(start["usage"]["input_tokens"], 4);
    assert_eq!(
        ev[1].1["content_block"],
        json!({"type": "text", "text": ""})
    );
    let text: String = ev
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["index"], 0);
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(text, "echo: tell me a story");
    let delta = &ev[ev.len() - 2].1;
    assert_eq!(
        delta["delta"],
        json!({"stop_reason": "end_turn", "stop_sequence": null})
    );

    // Streamed and buffered usage agree.
    body["stream"] = json!(false);
    let buffered = create(&s, &body).await.json()["usage"].clone();
    for field in [
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    ] {
        assert_eq!(delta["usage"][field], buffered[field], "{field}");
    }
}

#[tokio::test]
async fn tool_stream_sends_input_json_in_pieces() {
    let s = server().await;
    let mut body = messages("m", "weather in Paris today");
    body["tools"] = json!([{"name": "get_weather", "input_schema": {"type": "object"}}]);
    body["stream"] = json!(true);
    let ev = events(&create(&s, &body).await);
    let start = &ev[1].1["content_block"];
    assert_eq!(start["type"], "tool_use");
    assert_eq!(start["name"], "get_weather");
    assert_eq!(start["input"], json!({}));
    let pieces: Vec<String> = ev
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        pieces[0], "",
        "the first input delta is empty, as Anthropic sends it"
    );
    assert!(pieces.iter().filter(|p| !p.is_empty()).count() >= 3);
    let input: Value = serde_json::from_str(&pieces.concat()).unwrap();
    assert_eq!(input, json!({"input": "weather in Paris today"}));
    let delta = &ev[ev.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["output_tokens"], 4);
}

#[tokio::test]
async fn prompt_cache_breakpoints_report_cache_tokens() {
    let s = server().await;
    let body = json!({"model": "m", "max_tokens": 50,
    "system": [{"type": "text", "text": "a long system prompt", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "earlier turn here", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "new question"}
    ]});
    let u = create(&s, &body).await.json()["usage"].clone();
    assert_eq!(u["cache_read_input_tokens"], 4);
    assert_eq!(u["cache_creation_input_tokens"], 3);
    assert_eq!(
        u["cache_creation"],
        json!({"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 3})
    );
    assert_eq!(u["input_tokens"], 3, "ok + new question");

    let mut count = body.clone();
    count.as_object_mut().unwrap().remove("max_tokens");
    let r = post(s.addr, "/v1/messages/count_tokens", &[VERSION], &count).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"input_tokens": 10}));
}

#[tokio::test]
async fn count_tokens_validates_like_anthropic() {
    let s = server().await;
    let body = json!({"model": "m", "system": "You are a scientist",
        "messages": [{"role": "user", "content": "Hello, Claude"}],
        "tools": [{"name": "t", "input_schema": {"type": "object"}}]});
    let r = post(s.addr, "/v1/messages/count_tokens", &[VERSION], &body).await;
    assert_eq!(r.json(), json!({"input_tokens": 4 + 2 + 1}));
    let mut with_max = body.clone();
    with_max["max_tokens"] = json!(10);
    let r = post(s.addr, "/v1/messages/count_tokens", &[VERSION], &with_max).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"]["message"],
        "max_tokens: Extra inputs are not permitted"
    );
    let r = post(s.addr, "/v1/messages/count_tokens", &[], &body).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn fault_directives_answer_in_anthropic_shape() {
    let s = server().await;
    let r = create(&s, &messages("claude-x+status=429+retry_after=2", "x")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("2"));
    assert!(r.header("request-id").is_some());
    let v = r.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("claude-x"));

    let r = create(&s, &messages("m+status=529", "x")).await;
    assert_eq!(r.status, 529);
    assert_eq!(
        r.json()["error"],
        json!({"type": "overloaded_error", "message": "Overloaded"})
    );
    let r = create(&s, &messages("m+status=500", "x")).await;
    assert_eq!(r.json()["error"]["type"], "api_error");

    let r = create(&s, &messages("m+context_length", "x")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("prompt is too long: "));

    let r = create(&s, &messages("m+bogus", "x")).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown mock directive"));

    // The echoed model drops the directives.
    let v = create(&s, &messages("m+fail_rate=0", "x")).await.json();
    assert_eq!(v["model"], "m");
}

#[tokio::test]
async fn stream_faults_cut_and_malform_named_events() {
    let s = server().await;
    let mut body = messages("m+cut_after=3", "one two three four five");
    body["stream"] = json!(true);
    let ex = exchange(
        s.addr,
        "POST",
        "/v1/messages",
        &[VERSION],
        &body.to_string(),
    )
    .await;
    let r = parse(&ex.raw);
    assert_eq!(r.status, 200);
    assert!(!r.complete, "the body is cut before its end");
    let text = r.text();
    assert_eq!(text.matches("event: ").count(), 3, "{text}");
    assert!(!text.contains("message_stop"));

    body["model"] = json!("m+malformed");
    let r = create(&s, &body).await;
    let text = r.text();
    assert!(text.starts_with("event: message_start\n"));
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let data = last.lines().nth(1).unwrap().strip_prefix("data: ").unwrap();
    assert!(serde_json::from_str::<Value>(data).is_err(), "{data}");
}

#[tokio::test]
async fn stats_record_anthropic_requests() {
    let s = server().await;
    create(&s, &messages("claude-sonnet-4-5", "a")).await;
    create(&s, &messages("claude-sonnet-4-5+status=529", "a")).await;
    post(
        s.addr,
        "/v1/messages/count_tokens",
        &[VERSION, ("anthropic-beta", "token-counting-2024-11-01")],
        &json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "a"}]}),
    )
    .await;
    let v = send(s.addr, "GET", "/_mock/stats", &[], "").await.json();
    assert_eq!(v["requests"], 3);
    assert_eq!(v["by_path"]["/v1/messages"], 2);
    assert_eq!(v["by_path"]["/v1/messages/count_tokens"], 1);
    assert_eq!(v["by_model"]["claude-sonnet-4-5"], 2);
    assert_eq!(v["by_model"]["claude-sonnet-4-5+status=529"], 1);
    assert_eq!(v["last"]["headers"]["anthropic-version"], "2023-06-01");
    assert_eq!(
        v["last"]["headers"]["anthropic-beta"],
        "token-counting-2024-11-01"
    );
}
