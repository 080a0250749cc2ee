//! Routing and resilience under injected faults: failover, circuit breaking, fallbacks,
//! hedging, capabilities, OpenRouter's controls and per-request knobs. The upstreams are the
//! repository's mock provider, told to misbehave.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use mock_provider::{Fault, FaultMode, MockServer, Options};
use serde_json::{json, Value};
use switchyard::app::{self, App};
use tower::ServiceExt;

struct Gw {
    router: Router,
    a: MockServer,
    b: MockServer,
}

/// Two mock upstreams, `a` and `b`, and a gateway configured with `models` (YAML under
/// `models:`, where `A` and `B` stand for the two providers).
async fn gateway(models: &str) -> Gw {
    let a = MockServer::start(Options::default()).await.unwrap();
    let b = MockServer::start(Options::default()).await.unwrap();
    let text = format!(
        "auth: none\nadmin_key: admin-key-for-tests\nproviders:\n  pa: {{ type: openai-compatible, base_url: \"{}/v1\" }}\n  pb: {{ type: openai-compatible, base_url: \"{}/v1\" }}\nmodels:\n{}",
        a.url(),
        b.url(),
        models
    );
    let c =
        switchyard::config::parse(&text, "test.yaml", &|_| None).unwrap_or_else(|e| panic!("{e}"));
    Gw {
        router: app::router(App::new(c)),
        a,
        b,
    }
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    json: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }
}

async fn send(gw: &Gw, body: Value, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::post("/v1/chat/completions").header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    // No request may hang: every one of them must be answered well within this bound.
    let resp = tokio::time::timeout(Duration::from_secs(20), gw.router.clone().oneshot(req))
        .await
        .expect("a request hung")
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        json,
    }
}

fn chat(model: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": "hello there" }] })
}

fn count(m: &MockServer, model: &str) -> u64 {
    m.stats().by_model.get(model).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_target_failing_30_percent_costs_no_client_errors() {
    let gw = gateway(
        "  m:\n    targets:\n      - { provider: pa, model: \"x+fail_rate=0.3\" }\n      - { provider: pb, model: y }\n    retries: 0\n",
    )
    .await;
    let gw = std::sync::Arc::new(gw);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..16 {
        let gw = gw.clone();
        tasks.spawn(async move {
            let (mut ok, mut attempts) = (0u64, 0u64);
            for _ in 0..125 {
                let a = send(&gw, chat("m"), &[]).await;
                attempts += a.header("x-switchyard-attempts").parse::<u64>().unwrap();
                if a.status == 200 {
                    ok += 1;
                } else {
                    eprintln!("worker {w}: {} {}", a.status, a.json);
                }
            }
            (ok, attempts)
        });
    }
    let (mut ok, mut attempts) = (0, 0);
    while let Some(n) = tasks.join_next().await {
        let (o, a) = n.unwrap();
        ok += o;
        attempts += a;
    }
    // 2,000 requests; at least 99.9% succeed.
    assert!(ok >= 1998, "{ok} of 2000 succeeded");
    // The flaky target was tried and failed: its breaker opens only after three failures in a
    // row, so at least three requests failed over to the healthy target (how many more depends
    // on how fast the requests run against the breaker's cool-down, so no share is asserted).
    let failed_over = attempts - 2000;
    assert!(failed_over >= 3, "only {failed_over} requests failed over");
    // The attempts the gateway reports are the requests the upstreams saw.
    let (x, y) = (count(&gw.a, "x+fail_rate=0.3"), count(&gw.b, "y"));
    assert_eq!(x + y, attempts, "x {x}, y {y}");
}

#[tokio::test]
async fn a_dead_target_gets_only_probes_once_its_breaker_opens_and_recovers() {
    let gw = gateway("  m:\n    targets: [{ provider: pa, model: x }, { provider: pb, model: y }]\n    retries: 0\n").await;
    gw.a.set_fault(Some(Fault::new(FaultMode::Status {
        status: 503,
        retry_after: None,
    })));
    for _ in 0..300 {
        let a = send(&gw, chat("m"), &[]).await;
        assert_eq!(a.status, 200, "{}", a.json);
        assert_eq!(a.header("x-switchyard-provider"), "pb");
    }
    // Three failures open the breaker; afterwards at most a probe per cool-down.
    let dead = count(&gw.a, "x");
    assert!(
        (3..=6).contains(&dead),
        "the dead target got {dead} requests"
    );
    // Health is visible to operators.
    let metrics = get(&gw, "/metrics").await;
    assert!(
        metrics.contains("switchyard_target_healthy{provider=\"pa\",target=\"x\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_target_healthy{provider=\"pb\",target=\"y\"} 1"),
        "{metrics}"
    );
    let models: Value = serde_json::from_str(&get(&gw, "/admin/v1/models").await).unwrap();
    assert_eq!(
        models["data"][0]["versions"]["default"]["targets"][0]["healthy"],
        false
    );

    // The provider comes back: after the cool-down a probe succeeds and traffic returns.
    gw.a.set_fault(None);
    let start = Instant::now();
    loop {
        send(&gw, chat("m"), &[]).await;
        let served_by_a = count(&gw.a, "x") > dead && models_healthy(&gw).await;
        if served_by_a {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the target never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = count(&gw.a, "x");
    for _ in 0..100 {
        send(&gw, chat("m"), &[]).await;
    }
    assert!(
        count(&gw.a, "x") - before > 20,
        "traffic did not return to the recovered target"
    );
}

async fn models_healthy(gw: &Gw) -> bool {
    let models: Value = serde_json::from_str(&get(gw, "/admin/v1/models").await).unwrap();
    models["data"][0]["versions"]["default"]["targets"][0]["healthy"] == true
}

async fn get(gw: &Gw, path: &str) -> String {
    let req = Request::get(path)
        .header("authorization", "Bearer admin-key-for-tests")
        .body(Body::empty())
        .unwrap();
    let resp = gw.router.clone().oneshot(req).await.unwrap();
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

#[tokio::test]
async fn fallbacks_serve_when_every_target_failed_but_not_for_client_errors() {
    let gw = gateway(
        "  main:\n    targets: [{ provider: pa, model: \"x+status=500\" }]\n    retries: 0\n    fallbacks: [backup]\n  backup:\n    targets: [{ provider: pb, model: y }]\n  strict:\n    targets: [{ provider: pa, model: \"x+status=422\" }]\n    fallbacks: [backup]\n",
    )
    .await;
    let a = send(&gw, chat("main"), &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-switchyard-fallback"), "backup");
    assert_eq!(a.header("x-switchyard-model"), "backup");
    assert_eq!(a.header("x-switchyard-provider"), "pb");
    assert_eq!(a.header("x-switchyard-attempts"), "2");
    assert!(get(&gw, "/metrics")
        .await
        .contains("switchyard_fallbacks_total{model=\"main\"}"));
    // The client's own mistake is answered, not retried on another model.
    let a = send(&gw, chat("strict"), &[]).await;
    assert_eq!(a.status, 422, "{}", a.json);
    assert_eq!(count(&gw.b, "y"), 1);
    // The client's `models` list replaces the configured fallbacks, and is not sent upstream.
    let mut body = chat("main");
    body["models"] = json!(["backup"]);
    let a = send(&gw, body, &[]).await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert!(gw.b.stats().last.unwrap().body.get("models").is_none());
}

#[tokio::test]
async fn a_context_length_error_moves_to_a_larger_model() {
    let gw = gateway(
        "  small:\n    targets: [{ provider: pa, model: \"s+context_length\", context_window: 8192 }]\n    fallbacks: [same, large]\n  same:\n    targets: [{ provider: pb, model: same, context_window: 8192 }]\n  large:\n    targets: [{ provider: pb, model: large, context_window: 128000 }]\n  tiny:\n    targets: [{ provider: pa, model: t, context_window: 5 }]\n    fallbacks: [large]\n",
    )
    .await;
    let a = send(&gw, chat("small"), &[]).await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(
        a.header("x-switchyard-model"),
        "large",
        "skips the fallback that is no larger"
    );
    assert_eq!(count(&gw.b, "same"), 0);
    // A prompt known to be too long for a target's window is not even sent to it.
    let a = send(&gw, chat("tiny"), &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-switchyard-model"), "large");
    assert_eq!(count(&gw.a, "t"), 0);
}

#[tokio::test]
async fn hedging_answers_from_the_second_target_when_the_first_is_slow() {
    let gw = gateway(
        "  m:\n    targets: [{ provider: pa, model: \"x+delay_ms=5000\" }, { provider: pb, model: y, weight: 0 }]\n    hedge_after: 100ms\n    retries: 0\n",
    )
    .await;
    let started = Instant::now();
    let a = send(&gw, chat("m"), &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-switchyard-provider"), "pb");
    assert_eq!(a.header("x-switchyard-attempts"), "2");
    // The slow attempt was cancelled, not awaited (a bound, not a timing measurement).
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn requests_go_only_to_targets_that_can_serve_them() {
    let gw = gateway(
        "  m:\n    targets:\n      - { provider: pa, model: plain, capabilities: [] }\n      - { provider: pb, model: tools, capabilities: [tools, json_schema] }\n  none:\n    targets: [{ provider: pa, model: plain, capabilities: [] }]\n",
    )
    .await;
    let mut body = chat("m");
    body["tools"] = json!([{ "type": "function", "function": { "name": "f", "parameters": { "type": "object" } } }]);
    for _ in 0..10 {
        let a = send(&gw, body.clone(), &[]).await;
        assert_eq!(a.status, 200, "{}", a.json);
        assert_eq!(a.header("x-switchyard-provider"), "pb");
    }
    body["model"] = json!("none");
    let a = send(&gw, body, &[]).await;
    assert_eq!(a.status, 400);
    assert!(
        a.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tools"),
        "{}",
        a.json
    );
    assert_eq!(count(&gw.a, "plain"), 0);
}

#[tokio::test]
async fn openrouter_provider_preferences_and_suffixes() {
    let gw = gateway(
        "  m:\n    targets:\n      - { provider: pa, model: x, price: { input: 5, output: 5 } }\n      - { provider: pb, model: y, price: { input: 1, output: 1 } }\n",
    )
    .await;
    let with = |prefs: Value| {
        let mut b = chat("m");
        b["provider"] = prefs;
        b
    };
    for _ in 0..10 {
        assert_eq!(
            send(&gw, with(json!({ "order": ["pa", "pb"] })), &[])
                .await
                .header("x-switchyard-provider"),
            "pa"
        );
        assert_eq!(
            send(&gw, with(json!({ "only": ["pb"] })), &[])
                .await
                .header("x-switchyard-provider"),
            "pb"
        );
        assert_eq!(
            send(&gw, with(json!({ "ignore": ["pb"] })), &[])
                .await
                .header("x-switchyard-provider"),
            "pa"
        );
        assert_eq!(
            send(&gw, with(json!({ "sort": "price" })), &[])
                .await
                .header("x-switchyard-provider"),
            "pb"
        );
        assert_eq!(
            send(&gw, with(json!({ "max_price": { "prompt": 2 } })), &[])
                .await
                .header("x-switchyard-provider"),
            "pb"
        );
        assert_eq!(
            send(&gw, chat("m:floor"), &[])
                .await
                .header("x-switchyard-provider"),
            "pb"
        );
    }
    // The preferences never reach the upstream (a real OpenAI refuses unknown arguments).
    assert!(gw.a.stats().last.unwrap().body.get("provider").is_none());
    let a = send(&gw, with(json!({ "only": ["nobody"] })), &[]).await;
    assert_eq!(a.status, 400);
    // No fallbacks: a failing preferred provider is not replaced by another.
    gw.a.set_fault(Some(Fault::new(FaultMode::Status {
        status: 500,
        retry_after: None,
    })));
    let a = send(
        &gw,
        with(json!({ "order": ["pa"], "allow_fallbacks": false })),
        &[],
    )
    .await;
    assert_eq!(a.status, 502);
    assert_eq!(a.header("x-switchyard-provider"), "");
}

#[tokio::test]
async fn per_request_timeout_and_retries() {
    let gw = gateway(
        "  slow:\n    targets: [{ provider: pa, model: \"x+delay_ms=3000\" }]\n    timeout: 60s\n    retries: 0\n  flaky:\n    targets: [{ provider: pa, model: \"f+status=503\" }]\n    retries: 0\n",
    )
    .await;
    let a = send(&gw, chat("slow"), &[("x-switchyard-timeout", "200ms")]).await;
    assert_eq!(a.status, 504);
    send(&gw, chat("flaky"), &[("x-switchyard-retries", "2")]).await;
    assert_eq!(count(&gw.a, "f+status=503"), 3);
    let a = send(&gw, chat("flaky"), &[("x-switchyard-retries", "lots")]).await;
    assert_eq!(a.status, 400);
}

#[tokio::test]
async fn retry_after_is_honoured_and_a_saturated_target_is_skipped() {
    let gw = gateway(
        "  limited:\n    targets: [{ provider: pa, model: \"x+status=429+retry_after=30\" }, { provider: pb, model: y, weight: 0 }]\n    retries: 3\n  capped:\n    targets: [{ provider: pa, model: c, rpm: 2 }, { provider: pb, model: d, weight: 0 }]\n",
    )
    .await;
    // A 429 with Retry-After: 30 is not retried on the same target within those 30 seconds.
    for _ in 0..5 {
        let a = send(&gw, chat("limited"), &[]).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("x-switchyard-provider"), "pb");
    }
    assert_eq!(count(&gw.a, "x+status=429+retry_after=30"), 1);
    // A target's own rpm: beyond it, the next target serves.
    let providers: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(
                send(&gw, chat("capped"), &[])
                    .await
                    .header("x-switchyard-provider")
                    .to_string(),
            );
        }
        v
    };
    assert_eq!(providers, ["pa", "pa", "pb", "pb"]);
}
