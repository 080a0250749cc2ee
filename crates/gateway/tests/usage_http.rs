//! Usage accounting through the real binary against the in-process mock:
//! `server.usage_log_bodies` keeping prompts and completions in the store only — never in the
//! log line, and never a secret.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{eventually, runtime, write, Gateway, ADMIN};
use mock_provider::{MockServer, Options};
use serde_json::{json, Value};

const UPSTREAM_KEY: &str = "sk-upstream-secret-4d1f0c";
const CLIENT_KEY: &str = "sk-sy-client-secret-8e2a9b77c1";

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

fn chat(model: &str, stream: bool, text: &str) -> Value {
    let mut body = json!({ "model": model, "messages": [{ "role": "user", "content": text }] });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({ "include_usage": true });
    }
    body
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
    let rt = runtime();
    let mock = rt
        .block_on(MockServer::start(Options {
            api_key: Some(UPSTREAM_KEY.into()),
        }))
        .unwrap();
    for bodies in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let gw = Gateway::start(
            &config(dir.path(), &mock.url(), bodies),
            dir.path(),
            dir.path().join("gw.log"),
        );
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
