//! The Anthropic Messages routes: `/v1/messages` for every model of every provider, and
//! `/v1/messages/count_tokens`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;
use providers::anthropic;

use crate::app::App;
use crate::auth;
use crate::config::ProviderKind;
use crate::error::{Error, Kind, Protocol};
use crate::pipeline;
use crate::routing;

pub async fn messages(State(app): State<Arc<App>>, req: http::Request<Body>) -> Response {
    pipeline::anthropic(&app, req).await
}

/// `POST /v1/messages/count_tokens`: asked of the provider when it is Anthropic, counted by the
/// mock's own rule for the mock, estimated (four characters a token) otherwise.
pub async fn count_tokens(State(app): State<Arc<App>>, req: http::Request<Body>) -> Response {
    match count(&app, req).await {
        Ok(n) => {
            let mut resp = Response::new(Body::from(anthropic::response::render_token_count(n)));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => e.into_response(Protocol::Anthropic),
    }
}

async fn count(app: &App, req: http::Request<Body>) -> Result<u64, Error> {
    let config = app.config();
    let (parts, body) = req.into_parts();
    let caller = auth::authenticate(&config, &app.directory, &parts.headers)?;
    let limit = config.server.max_body_bytes;
    let body = tokio::time::timeout(
        Duration::from_secs(60),
        http_body_util::Limited::new(body, limit).collect(),
    )
    .await
    .map_err(|_| Error::invalid("The request body was not received in time.", None))?
    .map_err(|_| {
        Error::new(
            Kind::PayloadTooLarge,
            format!("The request body is larger than the gateway's limit of {limit} bytes."),
        )
    })?
    .to_bytes();
    let mut req = anthropic::request::parse_count_tokens(&body)
        .map_err(|e| Error::invalid(e.message().to_string(), None))?;
    let route = routing::resolve(&config, &req.model, None)?;
    auth::allow(&caller, &route.model)?;
    let Some(target) = route
        .version
        .targets
        .iter()
        .find(|t| t.stats.healthy())
        .or(route.version.targets.first())
    else {
        return Err(Error::new(
            Kind::NoHealthyTarget,
            "No target is available for this model.",
        ));
    };
    req.model.clear();
    req.model.push_str(&target.model);
    match &target.provider.kind {
        ProviderKind::Mock(_) => Ok(providers::mock::input_tokens(&req)),
        ProviderKind::Anthropic { version } => {
            let body = anthropic::request::render_count_tokens(&req)
                .map_err(|e| Error::invalid(e.message().to_string(), None))?;
            let mut up = http::Request::new(http_body_util::Full::new(Bytes::from(body)));
            *up.method_mut() = http::Method::POST;
            *up.uri_mut() = format!("{}/v1/messages/count_tokens", target.provider.base_url)
                .parse()
                .map_err(|_| Error::new(Kind::Internal, "bad provider URL"))?;
            let h = up.headers_mut();
            h.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            if let Some((n, v)) = &target.provider.auth_header {
                h.insert(n.clone(), v.clone());
            }
            if let Ok(v) = http::HeaderValue::try_from(version.as_str()) {
                h.insert("anthropic-version", v);
            }
            let deadline = Instant::now() + target_timeout(&route);
            let resp = tokio::time::timeout(deadline - Instant::now(), app.client.request(up))
                .await
                .map_err(|_| {
                    Error::new(
                        Kind::UpstreamTimeout,
                        format!(
                            "Provider '{}' did not answer in time.",
                            target.provider.name
                        ),
                    )
                })?
                .map_err(|_| {
                    Error::new(
                        Kind::NoHealthyTarget,
                        format!("Provider '{}' could not be reached.", target.provider.name),
                    )
                })?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|_| Error::new(Kind::UpstreamBad, "The provider's answer broke off."))?
                .to_bytes();
            if !status.is_success() {
                return Err(Error::new(
                    Kind::UpstreamBad,
                    format!(
                        "Provider '{}' failed to count tokens (HTTP {status}).",
                        target.provider.name
                    ),
                ));
            }
            anthropic::response::parse_token_count(&bytes).map_err(|_| {
                Error::new(
                    Kind::UpstreamBad,
                    "The provider's token count was malformed.",
                )
            })
        }
        _ => Ok(estimate(&req)),
    }
}

fn target_timeout(route: &routing::Route) -> Duration {
    route.version.timeout.min(Duration::from_secs(60))
}

/// About four characters a token, over every text of the request.
fn estimate(req: &providers::canonical::ChatRequest) -> u64 {
    let chars: usize = req
        .messages
        .iter()
        .map(|m| m.text_content().len())
        .sum::<usize>()
        + req
            .tools
            .iter()
            .map(|t| t.name.len() + t.description.as_deref().map_or(0, str::len))
            .sum::<usize>();
    (chars as u64).div_ceil(4).max(1)
}
