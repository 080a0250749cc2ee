//! Fault injection: every model directive and the control API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use common::{chat, exchange, exchange_within, parse, post, send};
use mock_provider::{Fault, FaultMode, MockServer, Options};
use serde_json::{json, Value};

async fn server() -> MockServer {
    MockServer::start(Options::default()).await.unwrap()
}

fn streamed(model: &str) -> Value {
    let mut body = chat(model, "one two three four five");
    body["stream"] = json!(true);
    body
}

#[tokio::test]
async fn status_directive_answers_openai_error_with_retry_after() {
    let s = server().await;
    let r = post(
        s.addr,
        "/v1/chat/completions",
        &[],
        &chat("gpt-4o-mini+status=429+retry_after=2", "x"),
    )
    .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("2"));
    let e = &r.json()["error"];
    assert_eq!(e["type"], "requests");
    assert_eq!(e["code"], "rate_limit_exceeded");
    assert!(e["message"].as_str().unwrap().contains("gpt-4o-mini"));

    let r = post(
        s.addr,
        "/v1/chat/completions",
        &[],
        &chat("m+status=503", "x"),
    )
    .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), None);
    assert_eq!(r.json()["error"]["type"], "server_error");

    // The echoed model drops the directives.
    let v = post(
        s.addr,
        "/v1/chat/completions",
        &[],
        &chat("m+fail_rate=0", "x"),
    )
    .await
    .json();
    assert_eq!(v["model"], "m");
    let r = post(
        s.addr,
        "/v1/chat/completions",
        &[],
        &chat("m+fail_rate=1", "x"),
    )
    .await;
    assert_eq!(r.status, 500);
    let r = post(s.addr, "/v1/chat/completions", &[], &chat("m+bogus", "x")).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn reset_drops_the_connection_without_a_response() {
    let s = server().await;
    let body = chat("m+reset", "x").to_string();
    let ex = exchange(s.addr, "POST", "/v1/chat/completions", &[], &body).await;
    assert!(ex.raw.is_empty(), "{:?}", String::from_utf8_lossy(&ex.raw));
    assert_eq!(ex.error, Some(ErrorKind::ConnectionReset));
}

#[tokio::test]
async fn cut_after_aborts_the_stream_before_done() {
    let s = server().await;
    let body = streamed("m+cut_after=3").to_string();
    let ex = exchange(s.addr, "POST", "/v1/chat/completions", &[], &body).await;
    let r = parse(&ex.raw);
    assert_eq!(r.status, 200);
    assert!(!r.complete, "the chunked body must not be terminated");
    let data = r.sse_data();
    assert_eq!(data.len(), 3, "{data:?}");
    assert!(!data.contains(&"[DONE]".to_string()));

    // Not streamed: headers promise the whole body, half of it arrives.
    let body = chat("m+cut_after=1", "x").to_string();
    let r = parse(
        &exchange(s.addr, "POST", "/v1/chat/completions", &[], &body)
            .await
            .raw,
    );
    assert_eq!(r.status, 200);
    assert!(!r.complete);
}

#[tokio::test]
async fn malformed_bodies_are_not_json() {
    let s = server().await;
    let r = post(
        s.addr,
        "/v1/chat/completions",
        &[],
        &chat("m+malformed", "x"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.complete);
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());

    let r = post(
        s.addr,
        "/v1/chat/completions",
        &[],
        &streamed("m+malformed"),
    )
    .await;
    let data = r.sse_data();
    assert!(data
        .iter()
        .any(|d| d != "[DONE]" && serde_json::from_str::<Value>(d).is_err()));
}

#[tokio::test]
async fn delays_hang_and_drip() {
    let s = server().await;
    let start = Instant::now();
    let r = post(
        s.addr,
        "/v1/chat/completions",
        &[],
        &chat("m+delay_ms=200", "x"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(200));

    let start = Instant::now();
    let r = post(
        s.addr,
        "/v1/chat/completions",
        &[],
        &streamed("m+chunk_delay_ms=40"),
    )
    .await;
    assert!(r.complete);
    // 9 events after the first, 40 ms apart.
    assert!(start.elapsed() >= Duration::from_millis(300));

    let body = chat("m+hang", "x").to_string();
    let limit = Duration::from_millis(300);
    let hung = exchange_within(limit, s.addr, "POST", "/v1/chat/completions", &[], &body).await;
    assert!(hung.is_none(), "a hung request must not answer");
}

#[tokio::test]
async fn control_api_faults_the_next_requests() {
    let s = server().await;
    let set = json!({"status": 503, "count": 2, "retry_after": 1});
    let r = post(s.addr, "/_mock/fault", &[], &set).await;
    assert_eq!(r.status, 200);
    for _ in 0..2 {
        let r = post(s.addr, "/v1/chat/completions", &[], &chat("any", "x")).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    let r = post(s.addr, "/v1/chat/completions", &[], &chat("any", "x")).await;
    assert_eq!(r.status, 200);

    post(
        s.addr,
        "/_mock/fault",
        &[],
        &json!({"mode": "cut_after", "n": 2}),
    )
    .await;
    let r = post(s.addr, "/v1/chat/completions", &[], &streamed("m")).await;
    assert!(!r.complete);
    assert_eq!(r.sse_data().len(), 2);
    let r = send(s.addr, "DELETE", "/_mock/fault", &[], "").await;
    assert_eq!(r.status, 200);
    let r = post(s.addr, "/v1/chat/completions", &[], &streamed("m")).await;
    assert!(r.complete);

    // The library call is the same switch.
    s.set_fault(Some(Fault::new(FaultMode::Reset).times(1)));
    let body = chat("m", "x").to_string();
    let ex = exchange(s.addr, "POST", "/v1/chat/completions", &[], &body).await;
    assert!(ex.raw.is_empty());
    let r = post(s.addr, "/v1/chat/completions", &[], &chat("m", "x")).await;
    assert_eq!(r.status, 200);

    let r = post(s.addr, "/_mock/fault", &[], &json!({"mode": "explode"})).await;
    assert_eq!(r.status, 400);
}
