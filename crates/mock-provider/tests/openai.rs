//! The OpenAI surface: shapes of chat (plain, streamed, tools), legacy completions,
//! embeddings, models, validation and auth.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{chat, post, send};
use mock_provider::{MockServer, Options};
use serde_json::{json, Value};

async fn server() -> MockServer {
    MockServer::start(Options::default()).await.unwrap()
}

#[tokio::test]
async fn chat_completion_has_openai_shape_and_deterministic_content() {
    let s = server().await;
    let body = json!({"model": "gpt-4o-mini", "user": "u1", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello world"}
    ]});
    let r = post(s.addr, "/v1/chat/completions", &[], &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.header("x-request-id").is_some());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], "gpt-4o-mini");
    assert!(v["system_fingerprint"].as_str().unwrap().starts_with("fp_"));
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "echo: hello world");
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], 7);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        0
    );
}

#[tokio::test]
async fn content_parts_n_max_tokens_and_json_mode() {
    let s = server().await;
    let body = json!({"model": "m", "n": 2, "max_completion_tokens": 2, "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "look at"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "text", "text": "this picture"}
        ]}
    ]});
    let v = post(s.addr, "/v1/chat/completions", &[], &body)
        .await
        .json();
    assert_eq!(v["choices"].as_array().unwrap().len(), 2);
    for (i, c) in v["choices"].as_array().unwrap().iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["message"]["content"], "echo: look");
        assert_eq!(c["finish_reason"], "length");
    }
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["completion_tokens"], 4);

    let body = json!({"model": "m", "response_format": {"type": "json_object"},
        "messages": [{"role": "user", "content": "hi"}]});
    let v = post(s.addr, "/v1/chat/completions", &[], &body)
        .await
        .json();
    let content: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content, json!({"reply": "echo: hi"}));
}

#[tokio::test]
async fn stream_frames_chunks_usage_and_done() {
    let s = server().await;
    let mut body = chat("gpt-4o-mini", "hello big world");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post(s.addr, "/v1/chat/completions", &[], &body).await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert!(r.complete);
    assert!(r.text().ends_with("data: [DONE]\n\n"));
    assert_eq!(r.sse_data().last().unwrap(), "[DONE]");

    let events = r.sse_json();
    let first = &events[0]["choices"][0]["delta"];
    assert_eq!(first["role"], "assistant");
    assert_eq!(first["content"], "");
    let words: Vec<&str> = events
        .iter()
        .skip(1)
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(words, vec!["echo:", " hello", " big", " world"]);
    for e in &events {
        assert_eq!(e["object"], "chat.completion.chunk");
        assert_eq!(e["id"], events[0]["id"]);
    }
    let finish = &events[events.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    for e in &events[..events.len() - 1] {
        assert_eq!(e["usage"], Value::Null);
        assert!(e.as_object().unwrap().contains_key("usage"));
    }
    let last = events.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 3);
    assert_eq!(last["usage"]["completion_tokens"], 4);
    assert_eq!(last["usage"]["total_tokens"], 7);

    // Without include_usage, no chunk carries a usage key at all.
    let mut body = chat("gpt-4o-mini", "hello");
    body["stream"] = json!(true);
    let r = post(s.addr, "/v1/chat/completions", &[], &body).await;
    for e in r.sse_json() {
        assert!(!e.as_object().unwrap().contains_key("usage"), "{e}");
        assert_eq!(e["choices"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn tool_calls_stream_like_openai() {
    let s = server().await;
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "get_time"}}
    ]);
    let body = json!({"model": "m", "stream": true, "tools": tools,
        "tool_choice": {"type": "function", "function": {"name": "get_time"}},
        "messages": [{"role": "user", "content": "what now"}]});
    let events = post(s.addr, "/v1/chat/completions", &[], &body)
        .await
        .sse_json();

    let first = &events[0]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(first["index"], 0);
    assert!(first["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(first["type"], "function");
    assert_eq!(first["function"]["name"], "get_time");
    assert_eq!(first["function"]["arguments"], "");

    let fragments: Vec<&str> = events[1..]
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert!(fragments.len() >= 3, "{fragments:?}");
    for e in &events[1..events.len() - 1] {
        let call = &e["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(call["index"], 0);
        assert!(call.get("id").is_none() && call["function"].get("name").is_none());
    }
    let args: Value = serde_json::from_str(&fragments.concat()).unwrap();
    assert_eq!(args, json!({"input": "what now"}));
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );

    // Not streamed: content null, one call of the first tool.
    let body =
        json!({"model": "m", "tools": tools, "messages": [{"role": "user", "content": "x"}]});
    let v = post(s.addr, "/v1/chat/completions", &[], &body)
        .await
        .json();
    let message = &v["choices"][0]["message"];
    assert_eq!(message["content"], Value::Null);
    assert_eq!(message["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        r#"{"input":"x"}"#
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");

    // A tool result is answered in text; tool_choice "none" means text too.
    let body = json!({"model": "m", "tools": tools, "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": null, "tool_calls": message["tool_calls"]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    ]});
    let v = post(s.addr, "/v1/chat/completions", &[], &body)
        .await
        .json();
    assert_eq!(v["choices"][0]["message"]["content"], "tool said: sunny");
    let body = json!({"model": "m", "tools": tools, "tool_choice": "none",
        "messages": [{"role": "user", "content": "x"}]});
    let v = post(s.addr, "/v1/chat/completions", &[], &body)
        .await
        .json();
    assert_eq!(v["choices"][0]["message"]["content"], "echo: x");
}

#[tokio::test]
async fn validation_errors_use_openai_error_shape() {
    let s = server().await;
    let r = send(s.addr, "POST", "/v1/chat/completions", &[], "{not json").await;
    assert_eq!(r.status, 400);
    let e = &r.json()["error"];
    assert_eq!(e["type"], "invalid_request_error");
    for key in ["message", "type", "param", "code"] {
        assert!(e.as_object().unwrap().contains_key(key), "{key}");
    }
    let r = post(
        s.addr,
        "/v1/chat/completions",
        &[],
        &json!({"messages": []}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("model"));
    let r = post(s.addr, "/v1/chat/completions", &[], &json!({"model": "m"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "messages");
    let mut body = chat("m", "x");
    body["stream_options"] = json!({"include_usage": true});
    let r = post(s.addr, "/v1/chat/completions", &[], &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "stream_options");
    let r = send(s.addr, "POST", "/v1/nope", &[], "{}").await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn auth_requires_the_bearer_key_and_never_echoes_it() {
    let s = MockServer::start(Options {
        api_key: Some("sk-right".into()),
    })
    .await
    .unwrap();
    for headers in [vec![], vec![("authorization", "Bearer sk-wrong-secret")]] {
        let r = post(s.addr, "/v1/chat/completions", &headers, &chat("m", "x")).await;
        assert_eq!(r.status, 401);
        let e = &r.json()["error"];
        assert_eq!(e["type"], "invalid_request_error");
        assert_eq!(e["code"], "invalid_api_key");
        assert!(!r.text().contains("sk-wrong"));
    }
    let ok = [("authorization", "Bearer sk-right")];
    let r = post(s.addr, "/v1/chat/completions", &ok, &chat("m", "x")).await;
    assert_eq!(r.status, 200);
    assert_eq!(send(s.addr, "GET", "/v1/models", &ok, "").await.status, 200);
}

#[tokio::test]
async fn legacy_completions_plain_and_streamed() {
    let s = server().await;
    let body =
        json!({"model": "gpt-3.5-turbo-instruct", "prompt": ["one two", "three"], "max_tokens": 3});
    let v = post(s.addr, "/v1/completions", &[], &body).await.json();
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(v["choices"][0]["text"], "echo: one two");
    assert_eq!(v["choices"][1]["text"], "echo: three");
    assert_eq!(v["choices"][1]["index"], 1);
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    assert_eq!(v["usage"]["completion_tokens"], 5);

    let body = json!({"model": "i", "prompt": "a b c", "max_tokens": 2, "stream": true,
        "stream_options": {"include_usage": true}});
    let r = post(s.addr, "/v1/completions", &[], &body).await;
    let events = r.sse_json();
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "echo: a");
    assert_eq!(
        events[events.len() - 2]["choices"][0]["finish_reason"],
        "length"
    );
    assert_eq!(events.last().unwrap()["usage"]["completion_tokens"], 2);
    assert_eq!(r.sse_data().last().unwrap(), "[DONE]");
}

#[tokio::test]
async fn embeddings_float_and_base64_agree() {
    let s = server().await;
    let body = json!({"model": "text-embedding-3-small", "input": ["alpha beta", "gamma"]});
    let v = post(s.addr, "/v1/embeddings", &[], &body).await.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-3-small");
    assert_eq!(v["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
    let floats: Vec<f32> = v["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(floats.len(), 8);
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["object"], "embedding");

    let body = json!({"model": "e", "input": "alpha beta", "encoding_format": "base64"});
    let v = post(s.addr, "/v1/embeddings", &[], &body).await.json();
    let decoded = decode_f32(v["data"][0]["embedding"].as_str().unwrap());
    assert_eq!(decoded, floats);

    let body = json!({"model": "e", "input": [[1, 2, 3]], "dimensions": 3});
    let v = post(s.addr, "/v1/embeddings", &[], &body).await.json();
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 3);
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    let r = post(
        s.addr,
        "/v1/embeddings",
        &[],
        &json!({"model": "e", "input": ""}),
    )
    .await;
    assert_eq!(r.status, 400);
}

fn decode_f32(b64: &str) -> Vec<f32> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            _ => 63,
        }
    };
    let clean: Vec<u8> = b64.bytes().filter(|c| *c != b'=').collect();
    let mut bytes = Vec::new();
    for group in clean.chunks(4) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, c)| acc | (value(*c) << (18 - 6 * i)));
        let take = group.len() - 1;
        bytes.extend_from_slice(&n.to_be_bytes()[1..=take]);
    }
    bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[tokio::test]
async fn models_list_and_retrieve() {
    let s = server().await;
    let v = send(s.addr, "GET", "/v1/models", &[], "").await.json();
    assert_eq!(v["object"], "list");
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["object"] == "model" && m["owned_by"].is_string()));
    let v = send(s.addr, "GET", "/v1/models/gpt-4o", &[], "")
        .await
        .json();
    assert_eq!(v["id"], "gpt-4o");
    assert_eq!(v["object"], "model");
}
