//! The admin API (`Authorization: Bearer <admin_key>`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode};

use crate::app::App;
use crate::auth;
use crate::error::{Error, Kind, Protocol};
use crate::pipeline;

/// `POST /admin/v1/reload`: re-read the configuration; an invalid file is refused with every
/// problem, and the running configuration kept.
pub async fn reload(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(e) = auth::admin(&app.config(), &headers) {
        return e.into_response(Protocol::OpenAi);
    }
    match app.reload().await {
        Ok(c) => pipeline::json(&serde_json::json!({
            "status": "reloaded",
            "models": c.models.len(),
            "providers": c.providers.len(),
        })),
        Err(problems) => {
            let mut body = Error::new(
                Kind::InvalidRequest,
                format!("The configuration was not reloaded:\n{problems}"),
            )
            .openai_json();
            body["error"]["problems"] = problems
                .problems
                .iter()
                .map(
                    |p| serde_json::json!({ "path": p.path, "line": p.line, "message": p.message }),
                )
                .collect();
            pipeline::json_status(StatusCode::BAD_REQUEST, &body)
        }
    }
}

/// `GET /admin/v1/models`: the effective models, versions and targets, with each target's
/// health and load.
pub async fn models(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let config = app.config();
    if let Err(e) = auth::admin(&config, &headers) {
        return e.into_response(Protocol::OpenAi);
    }
    use std::sync::atomic::Ordering::Relaxed;
    let mut names: Vec<&String> = config.models.keys().collect();
    names.sort();
    let data: Vec<serde_json::Value> = names
        .into_iter()
        .map(|name| {
            let m = &config.models[name];
            let versions: serde_json::Map<String, serde_json::Value> = m
                .versions
                .iter()
                .map(|(vn, v)| {
                    let targets: Vec<serde_json::Value> = v
                        .targets
                        .iter()
                        .map(|t| {
                            serde_json::json!({
                                "provider": t.provider.name,
                                "model": t.model,
                                "weight": t.weight,
                                "price": t.price.map(|p| serde_json::json!({
                                    "input": p.input,
                                    "output": p.output,
                                    "cache_read": p.cache_read,
                                    "cache_write": p.cache_write,
                                    "reasoning": p.reasoning,
                                })),
                                "price_source": t.price_source.name(),
                                "healthy": t.stats.healthy(),
                                "in_flight": t.stats.in_flight.load(Relaxed),
                                "latency_ewma_ms": t.stats.ewma_us.load(Relaxed) as f64 / 1000.0,
                            })
                        })
                        .collect();
                    (
                        vn.clone(),
                        serde_json::json!({
                            "routing": v.routing.name(),
                            "retries": v.retries,
                            "timeout_ms": v.timeout.as_millis() as u64,
                            "fallbacks": v.fallbacks,
                            "targets": targets,
                        }),
                    )
                })
                .collect();
            serde_json::json!({ "name": name, "stable": m.stable, "versions": versions })
        })
        .collect();
    pipeline::json(&serde_json::json!({ "object": "list", "data": data }))
}
