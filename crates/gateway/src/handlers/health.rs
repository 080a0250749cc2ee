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

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let config = app.config();
    let mut healthy = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for m in config.models.values() {
        for v in m.versions.values() {
            for t in &v.targets {
                if seen.insert((&*t.provider.name, &*t.model)) {
                    healthy.push(crate::metrics::Gauge {
                        labels: vec![("provider", &*t.provider.name), ("target", &*t.model)],
                        value: if t.stats.healthy() { 1.0 } else { 0.0 },
                    });
                }
            }
        }
    }
    let text = crate::metrics::global().render(&healthy);
    let mut resp = Response::new(axum::body::Body::from(text));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
