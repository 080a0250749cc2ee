//! The HTTP surface in-process: the app's router called with `oneshot`, upstreams served by the
//! repository's mock provider (OpenAI and Azure wire formats, fault injection).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use mock_provider::{MockServer, Options};
use serde_json::{json, Value};
use switchyard::app::{self, App};
use tower::ServiceExt;

const KEY: &str = "sk-sy-test-0123456789abcdefghijklmnopqrstuv";
const UPSTREAM_KEY: &str = "sk-upstream-very-secret-0001";

fn config(mock: &str) -> String {
    format!(
        r#"
auth: keys
admin_key: admin-secret-key
server: {{ max_body_bytes: 2KiB, request_timeout: 20s }}
providers:
  up:    {{ type: openai, base_url: {mock}/v1, api_key: {UPSTREAM_KEY} }}
  az:    {{ type: azure, base_url: {mock}, api_key: {UPSTREAM_KEY}, api_version: "2024-10-21" }}
  dead:  {{ type: openai-compatible, base_url: "http://127.0.0.1:1/v1" }}
  demo:  {{ type: mock }}
models:
  chat:     {{ targets: [{{ provider: up, model: gpt-4o-mini }}], price: {{ input: 0.15, output: 0.60 }} }}
  azchat:   {{ targets: [{{ provider: az, model: prod-4o-mini }}], price: {{ input: 1, output: 2 }} }}
  failover: {{ targets: [{{ provider: dead, model: x }}, {{ provider: up, model: gpt-4o-mini }}], retries: 0 }}
  flaky:    {{ targets: [{{ provider: up, model: "m+status=500" }}], retries: 1 }}
  limited:  {{ targets: [{{ provider: up, model: "m+status=429+retry_after=1" }}], retries: 0 }}
  bad:      {{ targets: [{{ provider: up, model: "m+malformed" }}], retries: 0 }}
  badreq:   {{ targets: [{{ provider: up, model: "m+status=400" }}, {{ provider: up, model: "other", weight: 0 }}], retries: 2 }}
  down:     {{ targets: [{{ provider: dead, model: x }}], retries: 0 }}
  slow:     {{ targets: [{{ provider: up, model: "m+delay_ms=5000" }}], timeout: 300ms, retries: 0 }}
  cut:      {{ targets: [{{ provider: up, model: "m+cut_after=2" }}], retries: 0 }}
  drip:     {{ targets: [{{ provider: up, model: "m+drip_ms=30000" }}], retries: 0 }}
  emb:      {{ targets: [{{ provider: up, model: text-embedding-3-small }}] }}
  demo:     {{ targets: [{{ provider: demo, model: demo }}] }}
  secret:   {{ targets: [{{ provider: up, model: gpt-4o-mini }}] }}
keys:
  - {{ name: test, secret: {KEY}, models: ["*"] }}
  - {{ name: narrow, secret: sk-sy-narrow-0123456789abcdefghijklmnopq, models: ["chat"] }}
"#
    )
}

struct Gw {
    router: Router,
    mock: MockServer,
}

async fn gateway() -> Gw {
    let mock = MockServer::start(Options {
        api_key: Some(UPSTREAM_KEY.into()),
    })
    .await
    .unwrap();
    let c = switchyard::config::parse(&config(&mock.url()), "test.yaml", &|_| None).unwrap();
    Gw {
        router: app::router(App::new(c)),
        mock,
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn post_raw(gw: &Gw, path: &str, key: Option<&str>, body: impl Into<Body>) -> Answer {
    let mut req = Request::post(path).header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let resp = gw
        .router
        .clone()
        .oneshot(req.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(Duration::from_secs(15), resp.into_body().collect())
        .await
        .expect("the body did not end")
        .unwrap()
        .to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

async fn post(gw: &Gw, path: &str, body: Value) -> Answer {
    post_raw(gw, path, Some(KEY), serde_json::to_vec(&body).unwrap()).await
}

fn chat(model: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": "hello there world" }] })
}

fn assert_openai_error(a: &Answer, status: u16, code: Option<&str>) {
    assert_eq!(a.status.as_u16(), status, "{}", a.text());
    let v = a.json();
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
    if let Some(code) = code {
        assert_eq!(e["code"], code, "{v}");
    }
    assert!(!a.header("x-request-id").is_empty());
    assert!(!a.text().contains(UPSTREAM_KEY));
}

#[tokio::test]
async fn forwards_the_body_with_only_the_model_rewritten() {
    let gw = gateway().await;
    let body = json!({
        "model": "chat",
        "messages": [{ "role": "user", "content": "hello there world" }],
        "temperature": 0.25,
        "tools": [],
        "user": "u-1",
    });
    let a = post(&gw, "/v1/chat/completions", body.clone()).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "echo: hello there world"
    );
    let last = gw.mock.stats().last.unwrap();
    let mut expected = body;
    expected["model"] = json!("gpt-4o-mini");
    assert_eq!(last.body, expected);
    assert_eq!(
        last.headers["authorization"],
        format!("Bearer {UPSTREAM_KEY}")
    );
    assert_eq!(last.path, "/v1/chat/completions");
    // Headers of every answer.
    assert_eq!(a.header("x-switchyard-model"), "chat");
    assert_eq!(a.header("x-switchyard-version"), "default");
    assert_eq!(a.header("x-switchyard-provider"), "up");
    assert_eq!(a.header("x-switchyard-upstream-model"), "gpt-4o-mini");
    assert_eq!(a.header("x-switchyard-attempts"), "1");
    assert!(a.header("x-request-id").starts_with("req_"));
    // Cost from the mock's usage: 3 prompt words, 4 reply words.
    let (p, c) = (
        v["usage"]["prompt_tokens"].as_f64().unwrap(),
        v["usage"]["completion_tokens"].as_f64().unwrap(),
    );
    assert_eq!((p, c), (3.0, 4.0));
    let expected_cost = (p * 0.15 + c * 0.60) / 1e6;
    assert!(
        (v["usage"]["cost"].as_f64().unwrap() - expected_cost).abs() < 1e-12,
        "{v}"
    );
    assert!((a.header("x-switchyard-cost").parse::<f64>().unwrap() - expected_cost).abs() < 1e-12);
}

#[tokio::test]
async fn streams_ask_upstream_for_usage_and_price_it() {
    let gw = gateway().await;
    // Without include_usage: the gateway asks the upstream anyway, and hides the usage chunk.
    let mut body = chat("chat");
    body["stream"] = json!(true);
    let a = post(&gw, "/v1/chat/completions", body.clone()).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), "text/event-stream");
    let sent = gw.mock.stats().last.unwrap().body;
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let text = a.text();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(!text.contains("\"cost\""), "{text}");
    let content: String = events(&text)
        .iter()
        .filter_map(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(content, "echo: hello there world");

    // With include_usage: the final chunk carries usage and its cost.
    body["stream_options"] = json!({ "include_usage": true });
    let a = post(&gw, "/v1/chat/completions", body).await;
    let evs = events(&a.text());
    let usage = evs
        .iter()
        .rev()
        .find(|e| e["usage"].is_object())
        .expect("a usage chunk");
    assert_eq!(usage["choices"], json!([]));
    let cost = usage["usage"]["cost"].as_f64().unwrap();
    assert!(
        (cost - (3.0 * 0.15 + 4.0 * 0.60) / 1e6).abs() < 1e-12,
        "{usage}"
    );
    assert!(a.text().ends_with("data: [DONE]\n\n"));
}

fn events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test]
async fn azure_gets_its_deployment_url_and_api_key_header() {
    let gw = gateway().await;
    let a = post(&gw, "/v1/chat/completions", chat("azchat")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let last = gw.mock.stats().last.unwrap();
    assert_eq!(
        last.path,
        "/openai/deployments/prod-4o-mini/chat/completions"
    );
    assert_eq!(last.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(last.headers["api-key"], UPSTREAM_KEY);
    assert!(!last.headers.contains_key("authorization"));
}

#[tokio::test]
async fn a_dead_target_fails_over_to_a_live_one() {
    let gw = gateway().await;
    for _ in 0..20 {
        let a = post(&gw, "/v1/chat/completions", chat("failover")).await;
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(a.header("x-switchyard-provider"), "up");
        let attempts: u32 = a.header("x-switchyard-attempts").parse().unwrap();
        assert!((1..=2).contains(&attempts));
    }
    assert_eq!(gw.mock.stats().by_model["gpt-4o-mini"], 20);
}

#[tokio::test]
async fn upstream_failures_map_to_their_statuses() {
    let gw = gateway().await;
    // 5xx: retried (retries: 1) then 502.
    let a = post(&gw, "/v1/chat/completions", chat("flaky")).await;
    assert_openai_error(&a, 502, Some("upstream_error"));
    assert_eq!(a.header("x-switchyard-attempts"), "2");
    assert_eq!(gw.mock.stats().by_model["m+status=500"], 2);
    // Malformed body: 502.
    let a = post(&gw, "/v1/chat/completions", chat("bad")).await;
    assert_openai_error(&a, 502, Some("upstream_error"));
    // Nothing reachable: 503.
    let a = post(&gw, "/v1/chat/completions", chat("down")).await;
    assert_openai_error(&a, 503, Some("no_healthy_target"));
    // No answer in time: 504.
    let a = post(&gw, "/v1/chat/completions", chat("slow")).await;
    assert_openai_error(&a, 504, Some("upstream_timeout"));
    // Rate limited upstream: 429 with Retry-After.
    let a = post(&gw, "/v1/chat/completions", chat("limited")).await;
    assert_openai_error(&a, 429, Some("rate_limit_exceeded"));
    assert_eq!(a.header("retry-after"), "1");
}

#[tokio::test]
async fn a_client_error_is_answered_at_once_not_retried_elsewhere() {
    let gw = gateway().await;
    let a = post(&gw, "/v1/chat/completions", chat("badreq")).await;
    assert_openai_error(&a, 400, None);
    let stats = gw.mock.stats();
    assert_eq!(stats.requests, 1, "{:?}", stats.by_model);
}

#[tokio::test]
async fn requests_are_checked_before_anything_is_sent() {
    let gw = gateway().await;
    let a = post_raw(
        &gw,
        "/v1/chat/completions",
        Some(KEY),
        "{\"model\": \"chat\", ",
    )
    .await;
    assert_openai_error(&a, 400, None);
    assert!(a.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("JSON"));
    let a = post(
        &gw,
        "/v1/chat/completions",
        json!({ "model": "chat", "messages": "hi" }),
    )
    .await;
    assert_openai_error(&a, 400, None);
    assert_eq!(a.json()["error"]["param"], "messages");
    let a = post(
        &gw,
        "/v1/chat/completions",
        json!({ "model": "chat", "messages": [{"role": "user", "content": "x"}], "n": "two" }),
    )
    .await;
    assert_eq!(a.json()["error"]["param"], "n");
    let a = post(
        &gw,
        "/v1/chat/completions",
        json!({ "messages": [{"role": "user", "content": "x"}] }),
    )
    .await;
    assert_eq!(a.json()["error"]["param"], "model");
    let a = post(&gw, "/v1/embeddings", json!({ "model": "emb" })).await;
    assert_eq!(a.json()["error"]["param"], "input");
    // Unknown model.
    let a = post(&gw, "/v1/chat/completions", chat("chatt")).await;
    assert_openai_error(&a, 404, Some("model_not_found"));
    assert!(a.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Did you mean 'chat'?"));
    // Keys.
    let a = post_raw(
        &gw,
        "/v1/chat/completions",
        None,
        serde_json::to_vec(&chat("chat")).unwrap(),
    )
    .await;
    assert_openai_error(&a, 401, Some("invalid_api_key"));
    let a = post_raw(
        &gw,
        "/v1/chat/completions",
        Some("sk-sy-wrong"),
        serde_json::to_vec(&chat("chat")).unwrap(),
    )
    .await;
    assert_openai_error(&a, 401, Some("invalid_api_key"));
    assert!(!a.text().contains("sk-sy-wrong"));
    let narrow = "sk-sy-narrow-0123456789abcdefghijklmnopq";
    let a = post_raw(
        &gw,
        "/v1/chat/completions",
        Some(narrow),
        serde_json::to_vec(&chat("azchat")).unwrap(),
    )
    .await;
    assert_openai_error(&a, 403, Some("model_not_allowed"));
    let a = post_raw(
        &gw,
        "/v1/chat/completions",
        Some(narrow),
        serde_json::to_vec(&chat("chat")).unwrap(),
    )
    .await;
    assert_eq!(a.status, 200);
    // Too large.
    let big =
        json!({ "model": "chat", "messages": [{"role": "user", "content": "x".repeat(4096)}] });
    let a = post(&gw, "/v1/chat/completions", big).await;
    assert_openai_error(&a, 413, Some("request_too_large"));
    // None of these reached the upstream except the one allowed request.
    assert_eq!(gw.mock.stats().requests, 1);
}

#[tokio::test]
async fn a_stream_cut_upstream_ends_with_an_error_event_and_done() {
    let gw = gateway().await;
    let mut body = chat("cut");
    body["stream"] = json!(true);
    let a = post(&gw, "/v1/chat/completions", body).await;
    assert_eq!(a.status, 200);
    let text = a.text();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let evs = events(&text);
    let last = evs.last().unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_broken", "{text}");
    assert!(
        evs.len() >= 2,
        "the events before the cut are delivered: {text}"
    );
}

#[tokio::test]
async fn stream_events_are_relayed_as_they_arrive() {
    let gw = gateway().await;
    let mut body = chat("drip");
    body["stream"] = json!(true);
    let req = Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {KEY}"))
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    let resp = gw.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    // The upstream sends its next chunk only 30 s later: if the relay buffered, this would hang.
    let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("the first event was held back")
        .unwrap()
        .unwrap();
    let data = frame.into_data().unwrap();
    assert!(data.starts_with(b"data: {"), "{data:?}");
    assert!(!data.windows(6).any(|w| w == b"[DONE]"));
}

#[tokio::test]
async fn embeddings_and_models() {
    let gw = gateway().await;
    let a = post(
        &gw,
        "/v1/embeddings",
        json!({ "model": "emb", "input": ["a b", "c"] }),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        gw.mock.stats().last.unwrap().body["model"],
        "text-embedding-3-small"
    );

    let req = Request::get("/v1/models")
        .header(
            "authorization",
            "Bearer sk-sy-narrow-0123456789abcdefghijklmnopq",
        )
        .body(Body::empty())
        .unwrap();
    let resp = gw.router.clone().oneshot(req).await.unwrap();
    let v: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["chat"], "a key sees only its models");
}

#[tokio::test]
async fn the_built_in_mock_answers_chat_streams_and_embeddings() {
    let gw = gateway().await;
    let a = post(&gw, "/v1/chat/completions", chat("demo")).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.json()["choices"][0]["message"]["content"],
        "echo: hello there world"
    );
    let mut body = chat("demo");
    body["stream"] = json!(true);
    body["stream_options"] = json!({ "include_usage": true });
    let a = post(&gw, "/v1/chat/completions", body).await;
    let evs = events(&a.text());
    let text: String = evs
        .iter()
        .filter_map(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(text, "echo: hello there world");
    assert_eq!(evs.last().unwrap()["usage"]["completion_tokens"], 4);
    let a = post(
        &gw,
        "/v1/embeddings",
        json!({ "model": "demo", "input": "x", "encoding_format": "base64" }),
    )
    .await;
    assert!(a.json()["data"][0]["embedding"].is_string());
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_in_openai_format() {
    let gw = gateway().await;
    let resp = gw
        .router
        .clone()
        .oneshot(Request::get("/v1/nothing").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = gw
        .router
        .clone()
        .oneshot(
            Request::get("/v1/chat/completions")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let v: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(v["error"]["message"].is_string());
}

#[tokio::test]
async fn reload_swaps_a_valid_file_and_keeps_the_running_one_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sy.yaml");
    let base = "admin_key: admin-secret-key\nauth: none\nproviders:\n  demo: { type: mock }\nmodels:\n  one: { targets: [{ provider: demo, model: m }] }\n";
    std::fs::write(&path, base).unwrap();
    let app = App::new(switchyard::config::load(&path).unwrap());
    let router = app::router(app);
    let call = |path: &'static str, auth: &'static str, body: Value| {
        let router = router.clone();
        async move {
            let req = Request::post(path)
                .header("authorization", format!("Bearer {auth}"))
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap();
            let resp = router.oneshot(req).await.unwrap();
            let status = resp.status();
            let v: Value =
                serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes())
                    .unwrap();
            (status, v)
        }
    };
    assert_eq!(call("/v1/chat/completions", "x", chat("two")).await.0, 404);
    std::fs::write(
        &path,
        format!("{base}  two: {{ targets: [{{ provider: demo, model: m }}] }}\n"),
    )
    .unwrap();
    // The admin API refuses anything but the admin key.
    assert_eq!(call("/admin/v1/reload", "wrong", json!({})).await.0, 401);
    let (status, v) = call("/admin/v1/reload", "admin-secret-key", json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(call("/v1/chat/completions", "x", chat("two")).await.0, 200);
    // A broken file is refused with its problems; the running configuration keeps serving.
    std::fs::write(
        &path,
        format!("{base}  three: {{ targets: [{{ provider: nope, model: m }}] }}\n"),
    )
    .unwrap();
    let (status, v) = call("/admin/v1/reload", "admin-secret-key", json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"]["problems"][0]["path"], "models.three.targets[0].provider",
        "{v}"
    );
    assert_eq!(v["error"]["problems"][0]["line"], 7, "{v}");
    assert_eq!(call("/v1/chat/completions", "x", chat("two")).await.0, 200);
}
