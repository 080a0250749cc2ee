//! OpenTelemetry traces end to end: the app in-process with `telemetry.otlp_endpoint` pointing
//! at a local OTLP/HTTP receiver (a small axum server in this file that keeps every body POSTed
//! to `/v1/traces`), upstreams served by the repository's mock provider.
//!
//! The receiver is read after `services::stop`, which flushes the exporter: no sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use mock_provider::{MockServer, Options};
use serde_json::{json, Value};
use switchyard::app::{self, App};
use tower::ServiceExt;

const KEY: &str = "sk-sy-trace-0123456789abcdefghijklmnopqrs";
const UPSTREAM_KEY: &str = "sk-upstream-trace-secret-0042";
const PROMPT: &str = "tell me about lighthouses";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// What the receiver got: one (headers, body) per POST to `/v1/traces`.
type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A local OTLP/HTTP receiver answering `answer` to every export.
async fn receiver(answer: StatusCode) -> (String, Received, tokio::task::JoinHandle<()>) {
    let got: Received = Arc::default();
    let router = Router::new()
        .route(
            "/v1/traces",
            post(
                move |State(got): State<Received>, headers: HeaderMap, body: Bytes| async move {
                    got.lock().unwrap().push((headers, body));
                    (answer, [("content-type", "application/json")], "{}")
                },
            ),
        )
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, got, task)
}

fn config(mock: &str, telemetry: &str) -> String {
    format!(
        r#"
auth: keys
{telemetry}
providers:
  up: {{ type: openai, base_url: {mock}/v1, api_key: {UPSTREAM_KEY} }}
models:
  assistant: {{ targets: [{{ provider: up, model: gpt-4o-mini }}], price: {{ input: 0.15, output: 0.60 }} }}
  flaky:     {{ targets: [{{ provider: up, model: "m+status=500" }}], retries: 0, fallbacks: [assistant] }}
keys:
  - {{ name: tracer, secret: {KEY}, models: ["*"] }}
"#
    )
}

/// The gateway (in process) in front of a fresh mock provider; `telemetry` is the config's
/// `telemetry:` line, or empty.
async fn gateway(telemetry: &str) -> (Arc<App>, Router, MockServer) {
    let mock = MockServer::start(Options {
        api_key: Some(UPSTREAM_KEY.into()),
    })
    .await
    .unwrap();
    let c =
        switchyard::config::parse(&config(&mock.url(), telemetry), "t.yaml", &|_| None).unwrap();
    let app = App::new(c);
    let router = app::router(app.clone());
    (app, router, mock)
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

async fn send(router: &Router, body: Value, traceparent: Option<&str>) -> Answer {
    let mut req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {KEY}"));
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let resp = router
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
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

fn chat(model: &str, stream: bool) -> Value {
    let mut v = json!({ "model": model, "messages": [{ "role": "user", "content": PROMPT }] });
    if stream {
        v["stream"] = json!(true);
        v["stream_options"] = json!({ "include_usage": true });
    }
    v
}

/// Every span of every export, and the resource of each.
fn spans(got: &Received) -> (Vec<Value>, Vec<Value>) {
    let mut spans = Vec::new();
    let mut resources = Vec::new();
    for (headers, body) in got.lock().unwrap().iter() {
        assert_eq!(headers["content-type"], "application/json");
        let v: Value = serde_json::from_slice(body).unwrap();
        for rs in v["resourceSpans"].as_array().unwrap() {
            resources.push(rs["resource"].clone());
            for ss in rs["scopeSpans"].as_array().unwrap() {
                assert_eq!(ss["scope"]["name"], "switchyard");
                assert!(ss["scope"]["version"].is_string());
                spans.extend(ss["spans"].as_array().unwrap().iter().cloned());
            }
        }
    }
    (spans, resources)
}

/// A span's attributes by key, each value as its OTLP `AnyValue` object.
fn attrs(span: &Value) -> HashMap<String, Value> {
    span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| (kv["key"].as_str().unwrap().to_string(), kv["value"].clone()))
        .collect()
}

fn string(a: &HashMap<String, Value>, key: &str) -> String {
    a.get(key)
        .and_then(|v| v["stringValue"].as_str())
        .unwrap_or_else(|| panic!("no string attribute {key}: {a:?}"))
        .to_string()
}

/// An `intValue`, which OTLP/JSON writes as a decimal string.
fn int(a: &HashMap<String, Value>, key: &str) -> u64 {
    a.get(key)
        .and_then(|v| v["intValue"].as_str())
        .unwrap_or_else(|| panic!("no int attribute {key}: {a:?}"))
        .parse()
        .unwrap()
}

fn nanos(span: &Value, key: &str) -> u128 {
    span[key].as_str().unwrap().parse().unwrap()
}

fn children<'a>(spans: &'a [Value], parent: &Value) -> Vec<&'a Value> {
    let mut c: Vec<&Value> = spans
        .iter()
        .filter(|s| s["parentSpanId"] == parent["spanId"])
        .collect();
    c.sort_by_key(|s| int(&attrs(s), "switchyard.attempt"));
    c
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[tokio::test]
async fn requests_and_attempts_are_exported_as_genai_spans() {
    let (otlp, got, _receiver) = receiver(StatusCode::OK).await;
    let telemetry = format!("telemetry: {{ otlp_endpoint: {otlp}, service_name: sy-test, otlp_headers: {{ x-tenant: team-a }} }}");
    let (app, router, mock) = gateway(&telemetry).await;

    // 1. Buffered, inside the caller's trace.
    let caller = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let one = send(&router, chat("assistant", false), Some(&caller)).await;
    assert_eq!(one.status, 200, "{:?}", one.body);
    let one_id = one.headers["x-request-id"].to_str().unwrap().to_string();
    let one_usage = serde_json::from_slice::<Value>(&one.body).unwrap()["usage"].clone();
    let one_upstream_tp = mock.stats().last.unwrap().headers["traceparent"].clone();

    // 2. Streamed, a new trace; the first model fails (HTTP 500), its fallback answers.
    let two = send(&router, chat("flaky", true), None).await;
    assert_eq!(two.status, 200);
    assert_eq!(two.headers["x-switchyard-attempts"], "2");
    let text = String::from_utf8_lossy(&two.body).into_owned();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let two_id = two.headers["x-request-id"].to_str().unwrap().to_string();
    let two_usage: Value = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .find(|e| e["usage"].is_object())
        .expect("a usage chunk")["usage"]
        .clone();
    let two_upstream_tp = mock.stats().last.unwrap().headers["traceparent"].clone();

    // Shutdown flushes what is queued.
    switchyard::services::stop(&app).await;

    let bodies: Vec<String> = got
        .lock()
        .unwrap()
        .iter()
        .map(|(h, b)| {
            assert_eq!(h["x-tenant"], "team-a");
            String::from_utf8(b.to_vec()).unwrap()
        })
        .collect();
    assert!(!bodies.is_empty(), "nothing was exported");
    for b in &bodies {
        for secret in [UPSTREAM_KEY, KEY, PROMPT, "lighthouses", "echo:"] {
            assert!(!b.contains(secret), "an export contains {secret:?}: {b}");
        }
    }
    let (spans, resources) = spans(&got);
    for r in &resources {
        let a = attrs(r);
        assert_eq!(string(&a, "service.name"), "sy-test");
        assert!(!string(&a, "service.version").is_empty());
    }
    for s in &spans {
        assert!(is_hex(s["traceId"].as_str().unwrap(), 32), "{s}");
        assert!(is_hex(s["spanId"].as_str().unwrap(), 16), "{s}");
        assert!(
            nanos(s, "startTimeUnixNano") <= nanos(s, "endTimeUnixNano"),
            "{s}"
        );
    }
    let server = |id: &str| {
        spans
            .iter()
            .find(|s| s["kind"] == 2 && string(&attrs(s), "switchyard.request_id") == id)
            .unwrap_or_else(|| panic!("no span for {id} in {spans:#?}"))
    };

    // Request 1: the caller's trace and parent; one attempt.
    let s1 = server(&one_id);
    assert_eq!(s1["name"], "chat assistant");
    assert_eq!(s1["traceId"], TRACE_ID);
    assert_eq!(s1["parentSpanId"], CALLER_SPAN);
    assert_eq!(s1["status"]["code"], 1);
    let a = attrs(s1);
    assert_eq!(string(&a, "gen_ai.operation.name"), "chat");
    assert_eq!(string(&a, "gen_ai.request.model"), "assistant");
    assert_eq!(string(&a, "gen_ai.response.model"), "gpt-4o-mini");
    assert_eq!(string(&a, "gen_ai.provider.name"), "openai");
    assert_eq!(string(&a, "gen_ai.system"), "openai");
    assert_eq!(
        int(&a, "gen_ai.usage.input_tokens"),
        one_usage["prompt_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        int(&a, "gen_ai.usage.output_tokens"),
        one_usage["completion_tokens"].as_u64().unwrap()
    );
    assert!(int(&a, "gen_ai.usage.output_tokens") > 0);
    assert_eq!(int(&a, "http.response.status_code"), 200);
    assert_eq!(string(&a, "switchyard.target"), "up/gpt-4o-mini");
    assert_eq!(string(&a, "switchyard.version"), "default");
    let cost = a["switchyard.cost_usd"]["doubleValue"].as_f64().unwrap();
    assert!((cost - one_usage["cost"].as_f64().unwrap()).abs() < 1e-12);
    assert!(!a.contains_key("error.type"));
    let c1 = children(&spans, s1);
    assert_eq!(c1.len(), 1, "{c1:#?}");
    let at = c1[0];
    assert_eq!(at["kind"], 3);
    assert_eq!(at["name"], "chat gpt-4o-mini");
    assert_eq!(at["traceId"], TRACE_ID);
    assert_eq!(at["status"]["code"], 1);
    assert!(nanos(at, "startTimeUnixNano") >= nanos(s1, "startTimeUnixNano"));
    assert!(nanos(at, "endTimeUnixNano") <= nanos(s1, "endTimeUnixNano"));
    let a = attrs(at);
    assert_eq!(string(&a, "gen_ai.request.model"), "gpt-4o-mini");
    assert_eq!(string(&a, "gen_ai.provider.name"), "openai");
    assert_eq!(string(&a, "server.address"), "127.0.0.1");
    let mock_port: u64 = mock.url().rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(int(&a, "server.port"), mock_port);
    assert_eq!(int(&a, "http.response.status_code"), 200);
    assert_eq!(int(&a, "switchyard.attempt"), 1);
    assert_eq!(
        int(&a, "gen_ai.usage.input_tokens"),
        one_usage["prompt_tokens"].as_u64().unwrap()
    );
    // The upstream was told which span called it.
    assert_eq!(
        one_upstream_tp,
        format!("00-{TRACE_ID}-{}-01", at["spanId"].as_str().unwrap())
    );

    // Request 2: a new trace, two attempts, the first an error.
    let s2 = server(&two_id);
    assert_eq!(s2["name"], "chat flaky");
    assert_ne!(s2["traceId"], TRACE_ID);
    assert!(s2.get("parentSpanId").is_none(), "{s2}");
    assert_eq!(s2["status"]["code"], 1);
    let a = attrs(s2);
    assert_eq!(a["switchyard.streamed"]["boolValue"], true);
    assert_eq!(int(&a, "switchyard.attempts"), 2);
    assert_eq!(
        int(&a, "gen_ai.usage.input_tokens"),
        two_usage["prompt_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        int(&a, "gen_ai.usage.output_tokens"),
        two_usage["completion_tokens"].as_u64().unwrap()
    );
    let c2 = children(&spans, s2);
    assert_eq!(c2.len(), 2, "{c2:#?}");
    let (failed, ok) = (c2[0], c2[1]);
    assert_eq!(failed["name"], "chat m+status=500");
    assert_eq!(failed["traceId"], s2["traceId"]);
    assert_eq!(failed["status"]["code"], 2);
    let a = attrs(failed);
    assert_eq!(string(&a, "error.type"), "500");
    assert_eq!(int(&a, "http.response.status_code"), 500);
    assert!(!a.contains_key("gen_ai.usage.output_tokens"));
    assert_eq!(ok["name"], "chat gpt-4o-mini");
    assert_eq!(ok["status"]["code"], 1);
    assert_eq!(int(&attrs(ok), "switchyard.attempt"), 2);
    assert!(nanos(ok, "startTimeUnixNano") >= nanos(failed, "endTimeUnixNano"));
    assert_eq!(
        two_upstream_tp,
        format!(
            "00-{}-{}-01",
            s2["traceId"].as_str().unwrap(),
            ok["spanId"].as_str().unwrap()
        )
    );
    assert_eq!(spans.len(), 5, "{spans:#?}");
}

#[tokio::test]
async fn an_unsampled_caller_is_not_exported_and_tracestate_is_passed_on() {
    let (otlp, got, _receiver) = receiver(StatusCode::OK).await;
    let telemetry = format!("telemetry: {{ otlp_endpoint: {otlp} }}");
    let (app, router, mock) = gateway(&telemetry).await;

    // The caller decided not to sample (flags 00) and carries vendor state.
    let unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {KEY}"))
        .header("traceparent", unsampled)
        .header("tracestate", "congo=t61rcWkgMzE")
        .header("tracestate", "rojo=00f067aa0ba902b7")
        .body(Body::from(chat("assistant", false).to_string()))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await.unwrap();
    let last = mock.stats().last.unwrap();
    let tp = last.headers["traceparent"].clone();
    assert!(
        tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-") && tp.ends_with("-00"),
        "the upstream continues the trace, unsampled: {tp}"
    );
    assert_eq!(
        last.headers["tracestate"],
        "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    );

    // A sampled request after it: exported. The exporter keeps order, so once shutdown has
    // flushed it, anything of the unsampled request would have been exported too.
    let sampled = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let a = send(&router, chat("assistant", false), Some(&sampled)).await;
    assert_eq!(a.status, 200);
    assert!(!mock
        .stats()
        .last
        .unwrap()
        .headers
        .contains_key("tracestate"));
    switchyard::services::stop(&app).await;
    let (spans, _) = spans(&got);
    let traces: Vec<&str> = spans
        .iter()
        .map(|s| s["traceId"].as_str().unwrap())
        .collect();
    assert!(traces.contains(&TRACE_ID), "{traces:?}");
    assert!(
        !traces.contains(&"0af7651916cd43dd8448eb211c80319c"),
        "an unsampled request was exported: {traces:?}"
    );
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_traced() {
    let (app, router, mock) = gateway("").await;
    assert!(app.tracer.is_none());
    let caller = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let a = send(&router, chat("assistant", false), Some(&caller)).await;
    assert_eq!(a.status, 200);
    let last = mock.stats().last.unwrap();
    assert!(!last.headers.contains_key("traceparent"), "{last:?}");
}

#[tokio::test]
async fn a_failing_collector_never_fails_a_request_and_drops_are_counted() {
    let (otlp, got, _receiver) = receiver(StatusCode::BAD_REQUEST).await;
    let telemetry = format!("telemetry: {{ otlp_endpoint: {otlp} }}");
    let (app, router, _mock) = gateway(&telemetry).await;
    let dropped = || {
        let text = switchyard::metrics::global().render(&[]);
        text.lines()
            .find_map(|l| l.strip_prefix("switchyard_trace_spans_dropped_total "))
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let before = dropped();
    for _ in 0..3 {
        let a = send(&router, chat("assistant", false), None).await;
        assert_eq!(a.status, 200);
    }
    switchyard::services::stop(&app).await;
    assert!(!got.lock().unwrap().is_empty(), "the collector was asked");
    // 3 requests × (1 request span + 1 attempt span), refused with a 400 (not retried).
    assert!(dropped() >= before + 6, "{} -> {}", before, dropped());
}
