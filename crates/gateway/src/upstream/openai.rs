//! HTTP requests for OpenAI-format providers: `openai`, `azure` and every OpenAI-compatible host.
//!
//! The client's body is forwarded with only `model` rewritten (and usage requested on streams);
//! it is never re-serialised.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use providers::openai::peek::{self, Endpoint};

use super::{Call, Failure};
use crate::config::{ProviderKind, Target};

static USER_AGENT: HeaderValue =
    HeaderValue::from_static(concat!("switchyard/", env!("CARGO_PKG_VERSION")));
static JSON: HeaderValue = HeaderValue::from_static("application/json");
static IDENTITY: HeaderValue = HeaderValue::from_static("identity");

fn path(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Chat => "/chat/completions",
        Endpoint::Completions => "/completions",
        Endpoint::Embeddings => "/embeddings",
    }
}

/// The URL of `endpoint` for this target.
pub fn url(target: &Target, endpoint: Endpoint) -> String {
    let p = &target.provider;
    match &p.kind {
        ProviderKind::Azure { api_version } => format!(
            "{}/openai/deployments/{}{}?api-version={}",
            p.base_url,
            target.model,
            path(endpoint),
            api_version
        ),
        _ => format!("{}{}", p.base_url, path(endpoint)),
    }
}

pub fn request(
    target: &Target,
    call: &Call<'_>,
    peek: &peek::Request<'_>,
) -> Result<Request<Full<Bytes>>, Failure> {
    let uri: Uri = url(target, call.endpoint)
        .parse()
        .map_err(|_| Failure::Connect)?;
    // Byte-identical forward when nothing needs changing.
    let body = if !peek.needs_rewrite(&target.model, true) {
        call.body.clone()
    } else {
        Bytes::from(peek.rewrite(call.body, &target.model, true))
    };
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    h.insert(header::CONTENT_TYPE, JSON.clone());
    h.insert(header::USER_AGENT, USER_AGENT.clone());
    // The gateway reads usage from the body; a compressed answer would have to be inflated.
    h.insert(header::ACCEPT_ENCODING, IDENTITY.clone());
    if let Some((name, value)) = &target.provider.auth_header {
        h.insert(name.clone(), value.clone());
    }
    for (name, value) in &target.provider.extra_headers {
        h.insert(name.clone(), value.clone());
    }
    Ok(req)
}
