//! The OpenAI-protocol routes.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use providers::openai::peek::Endpoint;

use crate::app::App;
use crate::auth::{self, Caller};
use crate::error::Protocol;
use crate::pipeline;

pub async fn chat(State(app): State<Arc<App>>, req: http::Request<Body>) -> Response {
    pipeline::openai(&app, req, Endpoint::Chat).await
}

pub async fn completions(State(app): State<Arc<App>>, req: http::Request<Body>) -> Response {
    pipeline::openai(&app, req, Endpoint::Completions).await
}

pub async fn embeddings(State(app): State<Arc<App>>, req: http::Request<Body>) -> Response {
    pipeline::openai(&app, req, Endpoint::Embeddings).await
}

/// `GET /v1/models`: the public models this caller may use.
pub async fn models(State(app): State<Arc<App>>, headers: http::HeaderMap) -> Response {
    let config = app.config();
    let caller = match auth::authenticate(&config, &app.directory, &headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(Protocol::OpenAi),
    };
    let mut names: Vec<&str> = config
        .models
        .keys()
        .map(String::as_str)
        .filter(|m| match &caller {
            Caller::Anonymous => true,
            Caller::Key(k) => k.allows(m),
        })
        .collect();
    names.sort_unstable();
    let data: Vec<serde_json::Value> = names
        .into_iter()
        .map(|id| serde_json::json!({ "id": id, "object": "model", "created": 0, "owned_by": "switchyard" }))
        .collect();
    pipeline::json(&serde_json::json!({ "object": "list", "data": data }))
}
