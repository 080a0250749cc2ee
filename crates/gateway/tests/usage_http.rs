//! Usage accounting through the real binary against the in-process mock: the built-in price
//! catalogue (and a configured price winning over it), unknown prices staying `null`, and
//! `server.usage_log_bodies` keeping prompts and completions in the store only — never in the
//! log line, and never a secret.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{eventually, runtime, write, Answer, Gateway, ADMIN};
use mock_provider::{MockServer, Options};
use serde_json::{json, Value};

const UPSTREAM_KEY: &str = "sk-upstream-secret-4d1f0c";
const CLIENT_KEY: &str = "sk-sy-client-secret-8e2a9b77c1";

/// gpt-4o-mini's list price (USD per million tokens), as the catalogue has it.
const MINI_IN: f64 = 0.15;
const MINI_OUT: f64 = 0.60;

fn config(dir: &Path, mock: &str, bodies: bool) -> std::path::PathBuf {
    write(
        dir,
        "switchyard.yaml",
        &format!(
            r#"listen: 127.0.0.1:0
store: "sqlite://{db}/sy.db"
admin_key: {ADMIN}
providers_from_env: true
server: {{ usage_log_bodies: {bodies} }}
keys:
  - {{ name: tester, secret: {CLIENT_KEY} }}
providers:
  openai: {{ type: openai, base_url: "{mock}/v1", api_key: {UPSTREAM_KEY} }}
  local: {{ type: openai-compatible, base_url: "{mock}/v1", api_key: {UPSTREAM_KEY} }}
models:
  mini: {{ targets: [{{ provider: openai, model: gpt-4o-mini }}] }}
  mini-priced: {{ targets: [{{ provider: openai, model: gpt-4o-mini }}], price: {{ input: 1, output: 2 }} }}
  self-hosted: {{ targets: [{{ provider: local, model: gpt-4o-mini }}] }}
"#,
            db = dir.display(),
        ),
    )
}

/// The in-process mock (it wants `UPSTREAM_KEY`) and the runtime it runs on.
fn start_mock() -> (tokio::runtime::Runtime, MockServer) {
    let rt = runtime();
    let mock = rt
        .block_on(MockServer::start(Options {
            api_key: Some(UPSTREAM_KEY.into()),
        }))
        .unwrap();
    (rt, mock)
}

/// A gateway on [`config`] in a directory of its own (removed when dropped).
fn start_gateway(mock: &MockServer, bodies: bool) -> (tempfile::TempDir, Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        &config(dir.path(), &mock.url(), bodies),
        dir.path(),
        dir.path().join("gw.log"),
    );
    (dir, gw)
}

fn chat(model: &str, stream: bool, text: &str) -> Value {
    let mut body = json!({ "model": model, "messages": [{ "role": "user", "content": text }] });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({ "include_usage": true });
    }
    body
}

/// (prompt, completion) tokens and `usage.cost` of a buffered or streamed answer.
fn usage_of(a: &Answer, stream: bool) -> (u64, u64, Option<f64>) {
    assert_eq!(a.status, 200, "{}", a.body);
    let usage = if stream {
        a.events()
            .into_iter()
            .rev()
            .find(|e| e["usage"].is_object())
            .expect("a usage chunk")["usage"]
            .clone()
    } else {
        a.json()["usage"].clone()
    };
    (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
        usage["cost"].as_f64(),
    )
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// The record of request `id`, once the writer has stored it.
fn generation(gw: &Gateway, id: &str) -> Value {
    eventually(Duration::from_secs(10), || {
        let a = gw.get(&format!("/v1/generation?id={id}"), Some(CLIENT_KEY));
        (a.status == 200).then(|| a.json()["data"].clone())
    })
    .unwrap_or_else(|| panic!("no record for {id}"))
}

#[test]
fn the_catalogue_prices_a_target_without_a_price_and_a_configured_price_wins() {
    let (_rt, mock) = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &mock.url(), false);

    // `switchyard check` accepts the configuration: no price is required.
    let out = std::process::Command::new(common::BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let gw = Gateway::start(&path, dir.path(), dir.path().join("gw.log"));
    let catalogue = |p: u64, c: u64| (p as f64 * MINI_IN + c as f64 * MINI_OUT) / 1e6;

    // A direct route and a configured model without `price:`, buffered and streamed: the
    // catalogue's list price, in the body, the header and the stored record.
    for model in ["openai/gpt-4o-mini", "mini"] {
        for stream in [false, true] {
            let a = gw.post(
                "/v1/chat/completions",
                Some(CLIENT_KEY),
                &chat(model, stream, "price me please"),
            );
            let (p, c, cost) = usage_of(&a, stream);
            assert!(p > 0 && c > 0);
            let expected = catalogue(p, c);
            let cost = cost.unwrap_or_else(|| panic!("{model}: no usage.cost: {}", a.body));
            assert!(
                close(cost, expected),
                "{model} stream={stream}: {cost} != {expected}"
            );
            if !stream {
                let header: f64 = a.header("x-switchyard-cost").unwrap().parse().unwrap();
                assert!(close(header, expected), "{header}");
            }
            let g = generation(&gw, a.header("x-request-id").unwrap());
            assert!(close(g["total_cost"].as_f64().unwrap(), expected), "{g}");
            assert_eq!(g["upstream_model"], "gpt-4o-mini");
            assert_eq!(g["endpoint"], "chat.completions");
            assert_eq!(g["completed"], true);
            assert_eq!(g["client_gone"], false);
        }
    }

    // A configured price wins over the catalogue.
    let a = gw.post(
        "/v1/chat/completions",
        Some(CLIENT_KEY),
        &chat("mini-priced", false, "hi"),
    );
    let (p, c, cost) = usage_of(&a, false);
    let expected = (p as f64 * 1.0 + c as f64 * 2.0) / 1e6;
    assert!(close(cost.unwrap(), expected), "{}", a.body);
    let g = generation(&gw, a.header("x-request-id").unwrap());
    assert!(close(g["total_cost"].as_f64().unwrap(), expected), "{g}");

    // The same model name on a self-hosted, OpenAI-compatible server has no list price: the
    // cost is unknown — absent from the answer, `null` in the record — never a made-up 0.
    for stream in [false, true] {
        let a = gw.post(
            "/v1/chat/completions",
            Some(CLIENT_KEY),
            &chat("self-hosted", stream, "hi"),
        );
        let (p, _, cost) = usage_of(&a, stream);
        assert!(p > 0);
        assert_eq!(cost, None, "{}", a.body);
        assert!(a.header("x-switchyard-cost").is_none());
        let g = generation(&gw, a.header("x-request-id").unwrap());
        assert!(g["total_cost"].is_null(), "{g}");
        assert!(g["tokens_prompt"].as_u64().unwrap() > 0);
    }

    // The admin API says where each target's price comes from.
    let models = gw.get("/admin/v1/models", Some(ADMIN)).json();
    let source = |name: &str| {
        let m = models["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap();
        let t = &m["versions"]["default"]["targets"][0];
        (
            t["price_source"].as_str().unwrap().to_owned(),
            t["price"].clone(),
        )
    };
    let (src, price) = source("mini");
    assert_eq!(src, "catalogue");
    assert_eq!(
        (price["input"].as_f64(), price["output"].as_f64()),
        (Some(MINI_IN), Some(MINI_OUT))
    );
    assert_eq!(source("mini-priced").0, "version");
    assert_eq!(source("self-hosted"), ("none".to_owned(), Value::Null));
    drop(mock);
}

/// Sends the same three requests (buffered, streamed, and through `/v1/messages`) and returns
/// their request ids with the prompt each carried.
fn three_requests(gw: &Gateway, marker: &str) -> Vec<(String, String)> {
    let mut sent = Vec::new();
    for stream in [false, true] {
        let prompt = format!("remember {marker} stream {stream}");
        let a = gw.post(
            "/v1/chat/completions",
            Some(CLIENT_KEY),
            &chat("mini", stream, &prompt),
        );
        assert_eq!(a.status, 200, "{}", a.body);
        sent.push((a.header("x-request-id").unwrap().to_owned(), prompt));
    }
    let prompt = format!("remember {marker} via messages");
    let a = gw.post(
        "/v1/messages",
        Some(CLIENT_KEY),
        &json!({ "model": "mini", "max_tokens": 50, "stream": true,
                 "messages": [{ "role": "user", "content": prompt }] }),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    sent.push((a.header("x-request-id").unwrap().to_owned(), prompt));
    sent
}

/// The records of `ids` from `GET /admin/v1/requests`, once all are stored.
fn records(gw: &Gateway, ids: &[(String, String)]) -> Vec<Value> {
    eventually(Duration::from_secs(10), || {
        let all = gw.get("/admin/v1/requests?limit=100", Some(ADMIN)).json()["data"]
            .as_array()
            .unwrap()
            .clone();
        let found: Vec<Value> = ids
            .iter()
            .filter_map(|(id, _)| all.iter().find(|r| r["id"] == id.as_str()).cloned())
            .collect();
        (found.len() == ids.len()).then_some(found)
    })
    .expect("every record stored")
}

#[test]
fn bodies_are_stored_only_when_asked_and_never_logged() {
    let (_rt, mock) = start_mock();
    for bodies in [true, false] {
        let (_dir, gw) = start_gateway(&mock, bodies);
        let marker = format!("zebra-{:08x}", fastrand::u32(..));
        let sent = three_requests(&gw, &marker);
        for (r, (id, prompt)) in records(&gw, &sent).iter().zip(&sent) {
            if bodies {
                let body: Value =
                    serde_json::from_str(r["request_body"].as_str().unwrap()).unwrap();
                assert_eq!(body["messages"][0]["content"], prompt.as_str(), "{id}: {r}");
                // The mock echoes the last user message.
                assert_eq!(r["completion"], format!("echo: {prompt}"), "{id}: {r}");
            } else {
                assert!(
                    r["request_body"].is_null() && r["completion"].is_null(),
                    "{r}"
                );
            }
            let text = r.to_string();
            assert!(
                !text.contains(CLIENT_KEY) && !text.contains(UPSTREAM_KEY),
                "{text}"
            );
        }
        // The one log line per request never carries a body, nor a secret, either way.
        let log = gw.log_text();
        assert!(log.contains(&sent[0].0), "no request line logged:\n{log}");
        assert!(!log.contains(&marker), "a body reached the log:\n{log}");
        for secret in [CLIENT_KEY, UPSTREAM_KEY, ADMIN] {
            assert!(!log.contains(secret), "a secret reached the log:\n{log}");
        }
    }
    drop(mock);
}

#[test]
fn a_streamed_openai_answer_is_charged_to_the_budget() {
    let (_rt, mock) = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "switchyard.yaml",
        &format!(
            r#"listen: 127.0.0.1:0
store: "sqlite://{db}/sy.db"
admin_key: {ADMIN}
keys:
  - {{ name: spender, secret: {CLIENT_KEY}, budget: 2 }}
providers:
  openai: {{ type: openai, base_url: "{mock}/v1", api_key: {UPSTREAM_KEY} }}
models:
  dear: {{ targets: [{{ provider: openai, model: gpt-4o-mini }}], price: {{ input: 10000, output: 0 }} }}
"#,
            db = dir.path().display(),
            mock = mock.url(),
        ),
    );
    let gw = Gateway::start(&path, dir.path(), dir.path().join("gw.log"));
    // 40 prompt tokens at $0.01 (output free, so admission's estimate stays close to the real
    // cost): each answer costs $0.40 and the $2 budget runs out after a few — only because each
    // stream settles its real cost when it ends.
    let body = chat("dear", true, &"a ".repeat(40));
    let mut answered = 0;
    let denied = (0..30).find_map(|_| {
        let a = gw.post("/v1/chat/completions", Some(CLIENT_KEY), &body);
        if a.status != 200 {
            return Some(a);
        }
        assert!(a.body.ends_with("data: [DONE]\n\n"), "{}", a.body);
        answered += 1;
        None
    });
    let denied = denied.expect("streamed answers were never charged to the budget");
    assert_eq!(denied.status, 429, "{}", denied.body);
    assert_eq!(denied.json()["error"]["code"], "budget_exceeded");
    assert!(
        (1..=5).contains(&answered),
        "{answered} answers within a $2 budget"
    );
    drop(mock);
}

/// A client's own `x-request-id` never keys the usage record: requests that reuse one (a
/// retrying client, or one hoping to merge its requests into one record and slip past its
/// budget) each leave their own record under an id of the gateway's, and the client's id is in
/// their log lines for correlation.
#[test]
fn a_reused_client_request_id_still_leaves_one_record_per_request() {
    let (_rt, mock) = start_mock();
    let (_dir, gw) = start_gateway(&mock, false);
    let client_id = format!("client-{:08x}", fastrand::u32(..));
    let mut ids = Vec::new();
    for stream in [false, true, false] {
        let a = gw.post_with(
            "/v1/chat/completions",
            Some(CLIENT_KEY),
            &chat("mini", stream, "the same id"),
            &[("x-request-id", &client_id)],
        );
        assert_eq!(a.status, 200, "{}", a.body);
        let id = a.header("x-request-id").unwrap().to_owned();
        assert!(id.starts_with("req_") && id != client_id, "{id}");
        ids.push(id);
    }
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{ids:?}");
    for id in &ids {
        let g = generation(&gw, id);
        assert_eq!(g["id"], id.as_str(), "{g}");
        assert!(g["tokens_prompt"].as_u64().unwrap() > 0, "{g}");
    }
    let log = gw.log_text();
    for id in &ids {
        let line = log
            .lines()
            .find(|l| l.contains(id.as_str()))
            .unwrap_or_else(|| panic!("no line for {id}:\n{log}"));
        assert!(line.contains(&client_id), "{line}");
    }
    drop(mock);
}
