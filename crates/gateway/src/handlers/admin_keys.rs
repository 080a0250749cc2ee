//! The admin API for virtual keys and teams (`/admin/v1/keys`, `/admin/v1/teams`): create (the
//! secret shown once), list and inspect (never a secret; with current spend and limits), change,
//! revoke. Every change is refreshed into this replica's key directory at once; the others see
//! it within a second or two.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use crate::app::App;
use crate::auth;
use crate::error::{Error, Kind, Protocol};
use crate::keys::{self, store_error};
use crate::limits::{self, Scope};
use crate::pipeline;

/// Runs an admin action: the admin key checked, the store present, errors in OpenAI's format.
async fn admin<F, Fut>(app: &Arc<App>, headers: &HeaderMap, f: F) -> Response
where
    F: FnOnce(store::Store) -> Fut,
    Fut: std::future::Future<Output = Result<(StatusCode, Value), Error>>,
{
    if let Err(e) = auth::admin(&app.config(), headers) {
        return e.into_response(Protocol::OpenAi);
    }
    let Some(store) = app.store.clone() else {
        return Error::new(Kind::NoHealthyTarget, "This gateway runs without a store.")
            .into_response(Protocol::OpenAi);
    };
    match f(store.clone()).await {
        Ok((status, body)) => {
            // Reads change nothing; a refresh costs two counter reads when nothing changed.
            if let Err(e) = app.directory.refresh(&store).await {
                tracing::warn!(error = %e, "could not refresh keys after an admin change");
            }
            pipeline::json_status(status, &body)
        }
        Err(e) => e.into_response(Protocol::OpenAi),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::invalid(format!("Invalid body: {e}"), None))
}

pub async fn create_key(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    admin(&app, &headers, |store| async move {
        let b: keys::Body = parse(&body)?;
        let (key, secret) = keys::create(&store, &b).await?;
        let mut v = keys::view(&key);
        v["key"] = json!(secret);
        Ok((StatusCode::CREATED, v))
    })
    .await
}

pub async fn list_keys(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    admin(&app, &headers, |store| async move {
        let filter = store::keys::Filter {
            team_id: None,
            include_revoked: true,
        };
        let list = store.keys().list(&filter).await.map_err(store_error)?;
        let data: Vec<Value> = list.iter().map(keys::view).collect();
        Ok((StatusCode::OK, json!({ "object": "list", "data": data })))
    })
    .await
}

pub async fn get_key(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let limiter = app.limiter.clone();
    admin(&app, &headers, |store| async move {
        let k = store
            .keys()
            .get(&id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| Error::new(Kind::NotFound, format!("No key '{id}'.")))?;
        let mut v = keys::view(&k);
        v["usage"] = usage(
            &limiter,
            Scope::key(k.id.as_str()),
            &crate::auth::directory::from_store(&k.limits),
        )
        .await;
        Ok((StatusCode::OK, v))
    })
    .await
}

pub async fn patch_key(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    admin(&app, &headers, |store| async move {
        let mut v: Value = parse(&body)?;
        rename(&mut v, "budget", "budget_usd");
        if let Some(team) = v.get("team").cloned() {
            let team_id = match team {
                Value::String(t) => json!(keys::find_team(&store, &t).await?.id),
                _ => Value::Null,
            };
            if let Some(o) = v.as_object_mut() {
                o.remove("team");
                o.insert("team_id".into(), team_id);
            }
        }
        if let Some(e) = v.get("expires_at").cloned() {
            let b = keys::Body {
                expires_at: Some(e),
                ..Default::default()
            };
            v["expires_at"] = json!(b.expires_at_ms()?);
        }
        let patch: store::keys::Patch = serde_json::from_value(v)
            .map_err(|e| Error::invalid(format!("Invalid body: {e}"), None))?;
        let k = store
            .keys()
            .update(&id, &patch)
            .await
            .map_err(store_error)?;
        Ok((StatusCode::OK, keys::view(&k)))
    })
    .await
}

pub async fn revoke_key(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    admin(&app, &headers, |store| async move {
        let k = store.keys().revoke(&id).await.map_err(store_error)?;
        Ok((StatusCode::OK, keys::view(&k)))
    })
    .await
}

pub async fn create_team(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    admin(&app, &headers, |store| async move {
        let b: keys::Body = parse(&body)?;
        let name = b
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| Error::invalid("A team needs a name.", Some("name")))?;
        let new = store::teams::New {
            name,
            limits: b.limits()?,
            metadata: b.metadata.clone().unwrap_or_default(),
        };
        let t = store.teams().create(&new).await.map_err(store_error)?;
        Ok((StatusCode::CREATED, keys::team_view(&t)))
    })
    .await
}

pub async fn list_teams(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    admin(&app, &headers, |store| async move {
        let list = store.teams().list(false).await.map_err(store_error)?;
        let data: Vec<Value> = list.iter().map(keys::team_view).collect();
        Ok((StatusCode::OK, json!({ "object": "list", "data": data })))
    })
    .await
}

pub async fn get_team(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let limiter = app.limiter.clone();
    admin(&app, &headers, |store| async move {
        let t = keys::find_team(&store, &id).await?;
        let mut v = keys::team_view(&t);
        v["usage"] = usage(
            &limiter,
            Scope::team(t.id.as_str()),
            &crate::auth::directory::from_store(&t.limits),
        )
        .await;
        Ok((StatusCode::OK, v))
    })
    .await
}

pub async fn patch_team(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    admin(&app, &headers, |store| async move {
        let mut v: Value = parse(&body)?;
        rename(&mut v, "budget", "budget_usd");
        let patch: store::teams::Patch = serde_json::from_value(v)
            .map_err(|e| Error::invalid(format!("Invalid body: {e}"), None))?;
        let t = keys::find_team(&store, &id).await?;
        let t = store
            .teams()
            .update(&t.id, &patch)
            .await
            .map_err(store_error)?;
        Ok((StatusCode::OK, keys::team_view(&t)))
    })
    .await
}

pub async fn delete_team(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    admin(&app, &headers, |store| async move {
        let t = keys::find_team(&store, &id).await?;
        store.teams().delete(&t.id).await.map_err(store_error)?;
        Ok((StatusCode::OK, json!({ "id": t.id, "deleted": true })))
    })
    .await
}

fn rename(v: &mut Value, from: &str, to: &str) {
    if let Some(o) = v.as_object_mut() {
        if let Some(x) = o.remove(from) {
            o.insert(to.into(), x);
        }
    }
}

/// Current spend and limits of a scope, as the limiter sees them.
async fn usage(limiter: &limits::Limiter, scope: Scope, l: &limits::Limits) -> Value {
    match limiter.snapshot(&scope, l, limiter.now_ms()).await {
        Ok(u) => json!({
            "requests_last_minute": u.requests.map(|r| r.used),
            "tokens_last_minute": u.tokens.map(|t| t.used),
            "in_flight": u.concurrency.map(|c| c.in_flight),
            "spend": u.budget.map(|b| b.spent_usd),
            "budget_remaining": u.budget.map(|b| b.remaining_usd),
        }),
        Err(e) => json!({ "error": e.to_string() }),
    }
}
