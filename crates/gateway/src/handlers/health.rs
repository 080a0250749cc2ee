//! Liveness and readiness.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;

use crate::app::App;
use crate::pipeline;

pub async fn live() -> Response {
    pipeline::json(&serde_json::json!({ "status": "ok" }))
}

/// Ready when a configuration is loaded (and, once the gateway has a store, when it answers).
pub async fn ready(State(app): State<Arc<App>>) -> Response {
    let config = app.config();
    pipeline::json(&serde_json::json!({
        "status": "ready",
        "models": config.models.len(),
        "providers": config.providers.len(),
    }))
}
