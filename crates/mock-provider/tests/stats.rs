//! Stats recording, and the binary's start-up contract.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Stdio;

use common::{chat, post, send};
use mock_provider::{MockServer, Options};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn stats_record_counts_and_the_last_request() {
    let s = MockServer::start(Options::default()).await.unwrap();
    post(
        s.addr,
        "/v1/chat/completions",
        &[],
        &chat("gpt-4o-mini", "a"),
    )
    .await;
    post(
        s.addr,
        "/v1/chat/completions",
        &[],
        &chat("m+status=503", "a"),
    )
    .await;
    let mut body = chat("gpt-4o-mini", "b");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    post(
        s.addr,
        "/openai/deployments/dep/chat/completions?api-version=2024-10-21",
        &[("Authorization", "Bearer upstream-key"), ("X-Custom", "1")],
        &body,
    )
    .await;

    let v = send(s.addr, "GET", "/_mock/stats", &[], "").await.json();
    assert_eq!(v["requests"], 3);
    assert_eq!(v["by_path"]["/v1/chat/completions"], 2);
    assert_eq!(v["by_path"]["/openai/deployments/dep/chat/completions"], 1);
    assert_eq!(v["by_model"]["gpt-4o-mini"], 1);
    assert_eq!(v["by_model"]["m+status=503"], 1);
    assert_eq!(v["by_model"]["dep"], 1);
    let last = &v["last"];
    assert_eq!(last["method"], "POST");
    assert_eq!(last["path"], "/openai/deployments/dep/chat/completions");
    assert_eq!(last["query"], "api-version=2024-10-21");
    assert_eq!(last["headers"]["authorization"], "Bearer upstream-key");
    assert_eq!(last["headers"]["x-custom"], "1");
    assert_eq!(last["body"]["stream_options"]["include_usage"], true);

    // The library snapshot is the same document.
    assert_eq!(serde_json::to_value(s.stats()).unwrap(), v);

    let r = send(s.addr, "POST", "/_mock/reset-stats", &[], "").await;
    assert_eq!(r.status, 200);
    let v = send(s.addr, "GET", "/_mock/stats", &[], "").await.json();
    assert_eq!(v["requests"], 0);
    assert_eq!(v["last"], Value::Null);
    assert_eq!(v["by_path"], json!({}));
}

#[tokio::test]
async fn binary_prints_its_url_and_serves() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mock-provider"))
        .args(["--port", "0", "--api-key", "k"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await.unwrap();
    let url = line
        .trim_end()
        .strip_prefix("mock-provider listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let addr = url.parse().unwrap();
    let r = send(
        addr,
        "GET",
        "/v1/models",
        &[("authorization", "Bearer k")],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    child.kill().await.unwrap();
}
