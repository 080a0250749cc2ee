//! Reading usage: `GET /v1/generation?id=` (one request's record, OpenRouter's field names where
//! they exist; the caller's own requests only), `GET /admin/v1/usage` (aggregates) and
//! `GET /admin/v1/requests` (recent records, newest first).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use http::HeaderMap;
use serde_json::{json, Value};

use crate::app::App;
use crate::auth::{self, Caller};
use crate::error::{Error, Kind, Protocol};
use crate::keys::store_error;
use crate::pipeline;

fn store(app: &App) -> Result<&store::Store, Error> {
    app.store
        .as_ref()
        .ok_or_else(|| Error::new(Kind::NoHealthyTarget, "This gateway runs without a store."))
}

/// A time bound: unix seconds, or a date (`2026-11-21`, RFC 3339); as unix milliseconds.
fn bound(q: &HashMap<String, String>, name: &'static str) -> Result<Option<i64>, Error> {
    q.get(name)
        .filter(|v| !v.is_empty())
        .map(|v| crate::config::units::timestamp_ms(v).map_err(|m| Error::invalid(m, Some(name))))
        .transpose()
}

/// `GET /v1/generation?id=`.
pub async fn generation(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let run = async {
        let config = app.config();
        let caller = auth::authenticate(&config, &app.directory, &headers)?;
        let id = q
            .get("id")
            .filter(|i| !i.is_empty())
            .ok_or_else(|| Error::invalid("Missing required parameter: 'id'.", Some("id")))?;
        let r = store(&app)?
            .usage()
            .get(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| {
                Error::new(
                    Kind::NotFound,
                    format!("No generation '{id}' (records are written within a second)."),
                )
            })?;
        // A key sees only its own requests.
        if let Caller::Key(k) = &caller {
            if r.key_id.as_deref() != Some(k.id.as_str()) {
                return Err(Error::new(Kind::NotFound, format!("No generation '{id}'.")));
            }
        }
        Ok::<_, Error>(json!({ "data": generation_view(&r) }))
    };
    match run.await {
        Ok(v) => pipeline::json(&v),
        Err(e) => e.into_response(Protocol::OpenAi),
    }
}

/// A record with OpenRouter's generation field names where they exist.
pub fn generation_view(r: &store::usage::Record) -> Value {
    json!({
        "id": r.request_id,
        "created_at": r.ts / 1000,
        "model": r.model,
        "version": r.version,
        "provider_name": r.provider,
        "upstream_model": r.upstream_model,
        "endpoint": r.endpoint,
        "status": r.status,
        "streamed": r.streamed,
        "completed": r.completed,
        "client_gone": r.client_gone,
        "tokens_prompt": r.input_tokens + r.cache_read_tokens + r.cache_write_tokens,
        "tokens_completion": r.output_tokens,
        "native_tokens_prompt": r.input_tokens + r.cache_read_tokens + r.cache_write_tokens,
        "native_tokens_completion": r.output_tokens,
        "native_tokens_reasoning": r.reasoning_tokens,
        "native_tokens_cached": r.cache_read_tokens,
        "native_tokens_cache_write": r.cache_write_tokens,
        // `null` when no price is known for the target (OpenRouter always knows one).
        "total_cost": r.cost_usd,
        "usage": r.cost_usd,
        "latency": r.latency_ms,
        "generation_time": r.latency_ms - r.ttft_ms.unwrap_or(0.0),
        "time_to_first_token": r.ttft_ms,
        "gateway_overhead_ms": r.overhead_ms,
        "api_key_id": r.key_id,
        "team_id": r.team_id,
        "attempts": r.attempts,
        "error": r.error,
        "request_body": r.request_body,
        "completion": r.completion,
    })
}

/// `GET /admin/v1/usage?group_by=key|team|model|version|provider|day&since=&until=`.
pub async fn usage(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let run = async {
        auth::admin(&app.config(), &headers)?;
        let group_by: store::usage::GroupBy = q
            .get("group_by")
            .map_or("model", String::as_str)
            .parse()
            .map_err(|e: store::Error| Error::invalid(e.to_string(), Some("group_by")))?;
        let mut query = store::usage::Query::new(group_by);
        query.since = bound(&q, "since")?;
        query.until = bound(&q, "until")?;
        query.model = q.get("model").cloned();
        query.key_id = q.get("key").cloned();
        query.team_id = q.get("team").cloned();
        let rows = store(&app)?
            .usage()
            .aggregate(&query)
            .await
            .map_err(store_error)?;
        Ok::<_, Error>(
            json!({ "object": "list", "group_by": q.get("group_by").map_or("model", String::as_str), "data": rows }),
        )
    };
    match run.await {
        Ok(v) => pipeline::json(&v),
        Err(e) => e.into_response(Protocol::OpenAi),
    }
}

/// `GET /admin/v1/requests?key=&model=&status=&limit=&since=&until=`.
pub async fn requests(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let run = async {
        auth::admin(&app.config(), &headers)?;
        let filter = store::usage::Filter {
            key_id: q.get("key").cloned(),
            team_id: q.get("team").cloned(),
            model: q.get("model").cloned(),
            status: q
                .get("status")
                .map(|s| {
                    s.parse()
                        .map_err(|e: store::Error| Error::invalid(e.to_string(), Some("status")))
                })
                .transpose()?,
            since: bound(&q, "since")?,
            until: bound(&q, "until")?,
            before: None,
            limit: q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100),
        };
        let rows = store(&app)?
            .usage()
            .recent(&filter)
            .await
            .map_err(store_error)?;
        let data: Vec<Value> = rows.iter().map(generation_view).collect();
        Ok::<_, Error>(json!({ "object": "list", "data": data }))
    };
    match run.await {
        Ok(v) => pipeline::json(&v),
        Err(e) => e.into_response(Protocol::OpenAi),
    }
}
