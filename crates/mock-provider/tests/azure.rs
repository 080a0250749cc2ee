//! The Azure OpenAI surface: deployment paths, `api-version`, `api-key`, Azure's additions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::post;
use mock_provider::{MockServer, Options};
use serde_json::json;

const CHAT: &str = "/openai/deployments/prod-4o-mini/chat/completions?api-version=2024-10-21";

async fn server() -> MockServer {
    MockServer::start(Options {
        api_key: Some("azure-key".into()),
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn chat_on_a_deployment_with_api_key() {
    let s = server().await;
    let key = [("api-key", "azure-key")];
    let body = json!({"messages": [{"role": "user", "content": "hi there"}]});
    let r = post(s.addr, CHAT, &key, &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "prod-4o-mini");
    assert_eq!(v["choices"][0]["message"]["content"], "echo: hi there");
    assert_eq!(
        v["choices"][0]["content_filter_results"]["hate"]["filtered"],
        false
    );
    assert_eq!(v["prompt_filter_results"][0]["prompt_index"], 0);

    // Streams open with Azure's prompt-filter chunk that has no choices.
    let body = json!({"stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = post(s.addr, CHAT, &key, &body).await;
    let events = r.sse_json();
    assert_eq!(events[0]["choices"], json!([]));
    assert_eq!(events[0]["object"], "");
    assert!(events[0]["prompt_filter_results"].is_array());
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "echo: hi");
    assert_eq!(r.sse_data().last().unwrap(), "[DONE]");

    let embed = "/openai/deployments/emb/embeddings?api-version=2024-10-21";
    let v = post(s.addr, embed, &key, &json!({"input": "x"}))
        .await
        .json();
    assert_eq!(v["model"], "emb");
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn azure_auth_and_api_version_errors() {
    let s = server().await;
    let body = json!({"messages": [{"role": "user", "content": "x"}]});
    // A bearer token is not an api-key.
    let r = post(
        s.addr,
        CHAT,
        &[("authorization", "Bearer azure-key")],
        &body,
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "401");
    let r = post(s.addr, CHAT, &[("api-key", "wrong-secret")], &body).await;
    assert_eq!(r.status, 401);
    assert!(!r.text().contains("wrong-secret"));
    // Azure answers a missing api-version with 404 "Resource not found".
    let r = post(
        s.addr,
        "/openai/deployments/prod/chat/completions",
        &[("api-key", "azure-key")],
        &body,
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["message"], "Resource not found");
}

#[tokio::test]
async fn deployment_directives_fault_azure_style() {
    let s = server().await;
    let path =
        "/openai/deployments/prod+status=429+retry_after=3/chat/completions?api-version=2024-10-21";
    let body = json!({"messages": [{"role": "user", "content": "x"}]});
    let r = post(s.addr, path, &[("api-key", "azure-key")], &body).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("3"));
    let e = &r.json()["error"];
    assert_eq!(e["code"], "429");
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("retry after 3 seconds"));
}
