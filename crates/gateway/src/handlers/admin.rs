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
