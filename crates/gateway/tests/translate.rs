//! Every model through every door: OpenAI clients reaching Anthropic, Gemini and Bedrock
//! upstreams, Anthropic clients reaching OpenAI-format ones — streamed and buffered, tools
//! included — against the repository's mock provider speaking each wire format.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use mock_provider::{MockServer, Options};
use serde_json::{json, Value};
use switchyard::app::{self, App};
use tower::ServiceExt;

const K: &str = "upstream-key-0001";

async fn gateway() -> (Router, MockServer) {
    let mock = MockServer::start(Options {
        api_key: Some(K.into()),
    })
    .await
    .unwrap();
    let u = mock.url();
    let text = format!(
        r#"
auth: none
providers:
  oa: {{ type: openai, base_url: "{u}/v1", api_key: {K} }}
  an: {{ type: anthropic, base_url: "{u}", api_key: {K} }}
  ge: {{ type: gemini, base_url: "{u}", api_key: {K} }}
  br: {{ type: bedrock, base_url: "{u}", region: us-east-1, access_key_id: {K}, secret_access_key: s3cr3t }}
  demo: {{ type: mock }}
models:
  gpt:    {{ targets: [{{ provider: oa, model: gpt-4o-mini }}], price: {{ input: 1, output: 2 }} }}
  claude: {{ targets: [{{ provider: an, model: claude-3-5-haiku-latest }}], price: {{ input: 1, output: 2 }} }}
  gemini: {{ targets: [{{ provider: ge, model: gemini-2.0-flash }}], price: {{ input: 1, output: 2 }} }}
  nova:   {{ targets: [{{ provider: br, model: "amazon.nova-pro-v1:0" }}], price: {{ input: 1, output: 2 }} }}
  demo:   {{ targets: [{{ provider: demo, model: demo }}] }}
  claude-cut: {{ targets: [{{ provider: an, model: "claude+cut_after=3" }}], retries: 0 }}
  gpt-cut:    {{ targets: [{{ provider: oa, model: "gpt+cut_after=2" }}], retries: 0 }}
"#
    );
    let c = switchyard::config::parse(&text, "t.yaml", &|_| None).unwrap_or_else(|e| panic!("{e}"));
    (app::router(App::new(c)), mock)
}

async fn post(router: &Router, path: &str, body: &Value) -> (StatusCode, http::HeaderMap, String) {
    let req = Request::post(path)
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = tokio::time::timeout(Duration::from_secs(20), resp.into_body().collect())
        .await
        .expect("body never ended")
        .unwrap()
        .to_bytes();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

fn openai_chunks(text: &str) -> Vec<Value> {
    assert!(text.ends_with("data: [DONE]\n\n"), "no [DONE]: {text}");
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

const UPSTREAMS: [&str; 4] = ["gpt", "claude", "gemini", "nova"];

#[tokio::test]
async fn openai_clients_reach_every_provider_buffered_and_streamed_with_equal_usage() {
    let (gw, mock) = gateway().await;
    for model in UPSTREAMS {
        let body = json!({ "model": model, "messages": [
            { "role": "system", "content": "be brief" },
            { "role": "user", "content": "hello there world" }
        ] });
        let (status, headers, text) = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(status, 200, "{model}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["object"], "chat.completion", "{model}: {v}");
        assert_eq!(
            v["choices"][0]["message"]["content"], "echo: hello there world",
            "{model}: {v}"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "stop", "{model}");
        let buffered = (
            v["usage"]["prompt_tokens"].as_u64().unwrap(),
            v["usage"]["completion_tokens"].as_u64().unwrap(),
        );
        let cost = v["usage"]["cost"].as_f64().unwrap();
        assert!(
            (cost - (buffered.0 as f64 + 2.0 * buffered.1 as f64) / 1e6).abs() < 1e-12,
            "{model}: {v}"
        );
        assert!(!headers["x-switchyard-cost"].is_empty());

        let mut sbody = body.clone();
        sbody["stream"] = json!(true);
        sbody["stream_options"] = json!({ "include_usage": true });
        let (status, _, text) = post(&gw, "/v1/chat/completions", &sbody).await;
        assert_eq!(status, 200, "{model}: {text}");
        let chunks = openai_chunks(&text);
        let content: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(content, "echo: hello there world", "{model}: {text}");
        assert!(
            chunks
                .iter()
                .any(|c| c["choices"][0]["finish_reason"] == "stop"),
            "{model}: {text}"
        );
        let usage = &chunks
            .iter()
            .rev()
            .find(|c| c["usage"].is_object())
            .expect("usage chunk")["usage"];
        let streamed = (
            usage["prompt_tokens"].as_u64().unwrap(),
            usage["completion_tokens"].as_u64().unwrap(),
        );
        assert_eq!(
            streamed, buffered,
            "{model}: streamed and buffered usage differ"
        );
        assert_eq!(usage["cost"].as_f64().unwrap(), cost, "{model}");
    }
    // Each provider got its own wire format.
    let paths = mock.stats().by_path;
    assert!(paths.contains_key("/v1/messages"), "{paths:?}");
    assert!(
        paths.keys().any(|p| p.contains(":generateContent")),
        "{paths:?}"
    );
    assert!(
        paths.keys().any(|p| p.contains(":streamGenerateContent")),
        "{paths:?}"
    );
    assert!(paths.keys().any(|p| p.ends_with("/converse")), "{paths:?}");
    assert!(
        paths.keys().any(|p| p.ends_with("/converse-stream")),
        "{paths:?}"
    );
}

#[tokio::test]
async fn tool_calls_survive_every_translation_streamed_and_not() {
    let (gw, _mock) = gateway().await;
    let tools = json!([{ "type": "function", "function": {
        "name": "lookup", "description": "find a thing",
        "parameters": { "type": "object", "properties": { "input": { "type": "string" } }, "required": ["input"] }
    } }]);
    for model in UPSTREAMS {
        let body = json!({ "model": model, "tools": tools, "messages": [{ "role": "user", "content": "find cats" }] });
        let (status, _, text) = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(status, 200, "{model}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        let call = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "lookup", "{model}: {v}");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({ "input": "find cats" }), "{model}");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{model}");

        let mut sbody = body.clone();
        sbody["stream"] = json!(true);
        let (_, _, text) = post(&gw, "/v1/chat/completions", &sbody).await;
        let chunks = openai_chunks(&text);
        let mut name = String::new();
        let mut arguments = String::new();
        for c in &chunks {
            if let Some(tc) = c["choices"][0]["delta"]["tool_calls"].get(0) {
                name.push_str(tc["function"]["name"].as_str().unwrap_or(""));
                arguments.push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
            }
        }
        assert_eq!(name, "lookup", "{model}: {text}");
        assert_eq!(
            serde_json::from_str::<Value>(&arguments).unwrap(),
            json!({ "input": "find cats" }),
            "{model}"
        );
        assert!(
            chunks
                .iter()
                .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"),
            "{model}: {text}"
        );

        // And the tool's result goes back in the provider's own format.
        let id = call["id"].as_str().unwrap();
        let body = json!({ "model": model, "tools": tools, "messages": [
            { "role": "user", "content": "find cats" },
            { "role": "assistant", "content": null, "tool_calls": [call] },
            { "role": "tool", "tool_call_id": id, "content": "three cats" }
        ] });
        let (status, _, text) = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(status, 200, "{model}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["choices"][0]["message"]["content"], "tool said: three cats",
            "{model}: {v}"
        );
    }
}

fn anthropic_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("")
                .to_string();
            let data = e
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or("null");
            (
                name,
                serde_json::from_str(data).unwrap_or_else(|err| panic!("{err}: {data}")),
            )
        })
        .collect()
}

#[tokio::test]
async fn anthropic_clients_reach_every_provider() {
    let (gw, _mock) = gateway().await;
    for model in ["gpt", "claude", "gemini", "nova", "demo"] {
        let body = json!({ "model": model, "max_tokens": 100, "system": "be brief",
            "messages": [{ "role": "user", "content": "hello there world" }] });
        let (status, _, text) = post(&gw, "/v1/messages", &body).await;
        assert_eq!(status, 200, "{model}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "message", "{model}: {v}");
        assert_eq!(
            v["content"][0]["text"], "echo: hello there world",
            "{model}: {v}"
        );
        assert_eq!(v["stop_reason"], "end_turn", "{model}: {v}");
        let buffered = (
            v["usage"]["input_tokens"].as_u64().unwrap(),
            v["usage"]["output_tokens"].as_u64().unwrap(),
        );

        let mut sbody = body.clone();
        sbody["stream"] = json!(true);
        let (status, _, text) = post(&gw, "/v1/messages", &sbody).await;
        assert_eq!(status, 200, "{model}: {text}");
        let events = anthropic_events(&text);
        assert_eq!(
            events.first().unwrap().0,
            "message_start",
            "{model}: {text}"
        );
        assert_eq!(events.last().unwrap().0, "message_stop", "{model}: {text}");
        let content: String = events
            .iter()
            .filter(|(n, _)| n == "content_block_delta")
            .filter_map(|(_, d)| d["delta"]["text"].as_str())
            .collect();
        assert_eq!(content, "echo: hello there world", "{model}: {text}");
        let delta = &events.iter().find(|(n, _)| n == "message_delta").unwrap().1;
        assert_eq!(delta["delta"]["stop_reason"], "end_turn", "{model}");
        let streamed = (
            delta["usage"]["input_tokens"].as_u64().unwrap_or(0),
            delta["usage"]["output_tokens"].as_u64().unwrap(),
        );
        assert_eq!(
            streamed, buffered,
            "{model}: streamed and buffered usage differ"
        );
    }
}

#[tokio::test]
async fn anthropic_tool_use_through_an_openai_upstream() {
    let (gw, _mock) = gateway().await;
    let body = json!({ "model": "gpt", "max_tokens": 100, "stream": true,
        "tools": [{ "name": "lookup", "description": "find", "input_schema": { "type": "object", "properties": { "input": { "type": "string" } } } }],
        "messages": [{ "role": "user", "content": "find cats" }] });
    let (status, _, text) = post(&gw, "/v1/messages", &body).await;
    assert_eq!(status, 200, "{text}");
    let events = anthropic_events(&text);
    let start = events
        .iter()
        .find(|(n, d)| n == "content_block_start" && d["content_block"]["type"] == "tool_use")
        .expect(&text);
    assert_eq!(start.1["content_block"]["name"], "lookup");
    let json: String = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap(),
        json!({ "input": "find cats" })
    );
    let delta = &events.iter().find(|(n, _)| n == "message_delta").unwrap().1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn broken_translated_streams_end_with_an_error_in_the_clients_format() {
    let (gw, _mock) = gateway().await;
    let body = json!({ "model": "claude-cut", "stream": true, "messages": [{ "role": "user", "content": "one two three four five six" }] });
    let (_, _, text) = post(&gw, "/v1/chat/completions", &body).await;
    let chunks = openai_chunks(&text);
    assert_eq!(
        chunks.last().unwrap()["error"]["code"],
        "upstream_stream_broken",
        "{text}"
    );

    let body = json!({ "model": "gpt-cut", "max_tokens": 50, "stream": true, "messages": [{ "role": "user", "content": "one two three four five" }] });
    let (_, _, text) = post(&gw, "/v1/messages", &body).await;
    let events = anthropic_events(&text);
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error", "{text}");
    assert_eq!(data["type"], "error");
}

#[tokio::test]
async fn what_a_provider_cannot_do_is_a_clear_400() {
    let (gw, mock) = gateway().await;
    let before = mock.stats().requests;
    let body =
        json!({ "model": "nova", "n": 2, "messages": [{ "role": "user", "content": "hi" }] });
    let (status, _, text) = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(status, 400, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["param"], "n", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("one choice"),
        "{v}"
    );
    assert_eq!(mock.stats().requests, before, "nothing was sent");
    // Anthropic clients get Anthropic's error format.
    let (status, _, text) = post(
        &gw,
        "/v1/messages",
        &json!({ "model": "gpt", "messages": [] }),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn count_tokens_for_mock_and_anthropic_models() {
    let (gw, _mock) = gateway().await;
    for model in ["demo", "claude"] {
        let body =
            json!({ "model": model, "messages": [{ "role": "user", "content": "one two three" }] });
        let (status, _, text) = post(&gw, "/v1/messages/count_tokens", &body).await;
        assert_eq!(status, 200, "{model}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["input_tokens"], 3, "{model}: {v}");
    }
}
