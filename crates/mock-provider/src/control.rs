//! The mock's control API under `/_mock/`: set and clear the fault, read and zero the stats.
//!
//! Reference: none — this is the mock's own surface, not an emulated provider. Bodies are
//! small JSON objects; errors use OpenAI's error shape so every client can read them.
//! Control requests are never counted in the stats and never faulted.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::faults::Fault;
use crate::openai;
use crate::wire::Reply;
use crate::State;

/// Serves `METHOD /_mock/<rest>`.
pub fn handle(state: &State, method: &Method, path: &str, body: &[u8]) -> Reply {
    match (method, path.trim_end_matches('/')) {
        (&Method::POST, "/_mock/fault") => {
            let parsed = serde_json::from_slice::<Value>(body)
                .map_err(|e| format!("invalid JSON: {e}"))
                .and_then(|v| Fault::from_json(&v));
            match parsed {
                Ok(fault) => {
                    let shown = fault.to_json();
                    state.fault.set(Some(fault));
                    Reply::json(StatusCode::OK, json!({"ok": true, "fault": shown}))
                }
                Err(message) => openai::error(
                    StatusCode::BAD_REQUEST,
                    &message,
                    "invalid_request_error",
                    None,
                    None,
                ),
            }
        }
        (&Method::DELETE, "/_mock/fault") => {
            state.fault.set(None);
            Reply::json(StatusCode::OK, json!({"ok": true, "fault": null}))
        }
        (&Method::GET, "/_mock/fault") => {
            let fault = state.fault.get().map(|f| f.to_json());
            Reply::json(StatusCode::OK, json!({ "fault": fault }))
        }
        (&Method::GET, "/_mock/stats") => {
            let stats = serde_json::to_value(state.stats()).unwrap_or(Value::Null);
            Reply::json(StatusCode::OK, stats)
        }
        (&Method::POST, "/_mock/reset-stats") => {
            state.reset_stats();
            Reply::json(StatusCode::OK, json!({"ok": true}))
        }
        _ => openai::not_found(method, path),
    }
}
