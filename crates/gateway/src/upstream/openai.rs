//! HTTP requests for OpenAI-format providers: `openai`, `azure` and every OpenAI-compatible host.
//!
//! The client's body is forwarded with only `model` rewritten (and usage requested on streams);
//! it is never re-serialised.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use providers::openai::peek::{self, Endpoint};

use super::{Call, Failure};
use crate::config::{Provider, ProviderKind, Target};

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

/// A parsed upstream URL and, for plain `http://`, the `Host` header the pooled client would
/// otherwise format on every request.
struct Endpointed {
    /// The provider it was built for; a `Weak` keeps the address from being reused while the
    /// entry exists, so pointer equality identifies the provider (a reload makes new ones).
    provider: Weak<Provider>,
    endpoint: Endpoint,
    /// Azure URLs carry the deployment (the target's model).
    model: Option<String>,
    uri: Uri,
    host: Option<HeaderValue>,
}

/// Entries per thread; beyond it the oldest is dropped (providers replaced by reloads).
const CACHED_ENDPOINTS: usize = 64;

thread_local! {
    static ENDPOINTS: RefCell<Vec<Endpointed>> = const { RefCell::new(Vec::new()) };
}

/// The upstream URI of `endpoint` for `target` (and the `Host` header for plain HTTP), parsed
/// once per provider, endpoint and thread rather than formatted and parsed per request.
fn endpoint_uri(target: &Target, endpoint: Endpoint) -> Option<(Uri, Option<HeaderValue>)> {
    let provider = &target.provider;
    let model = match provider.kind {
        ProviderKind::Azure { .. } => Some(&*target.model),
        _ => None,
    };
    let hit = ENDPOINTS.try_with(|cache| {
        cache
            .borrow()
            .iter()
            .find(|e| {
                std::ptr::eq(e.provider.as_ptr(), Arc::as_ptr(provider))
                    && e.endpoint == endpoint
                    && e.model.as_deref() == model
            })
            .map(|e| (e.uri.clone(), e.host.clone()))
    });
    if let Ok(Some(found)) = hit {
        return Some(found);
    }
    let uri: Uri = url(target, endpoint).parse().ok()?;
    let host = host_header(&uri);
    let _ = ENDPOINTS.try_with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len() >= CACHED_ENDPOINTS {
            cache.remove(0);
        }
        cache.push(Endpointed {
            provider: Arc::downgrade(provider),
            endpoint,
            model: model.map(str::to_string),
            uri: uri.clone(),
            host: host.clone(),
        });
    });
    Some((uri, host))
}

/// The `Host` header of a plain-HTTP URI, exactly as the pooled client would set it (host, and
/// the port unless it is 80). `None` for other schemes: for HTTPS the connection may turn out
/// to be HTTP/2, where the client sends `:authority` instead.
fn host_header(uri: &Uri) -> Option<HeaderValue> {
    if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
        return None;
    }
    let host = uri.host()?;
    let value = match uri.port_u16() {
        Some(80) | None => HeaderValue::from_str(host),
        Some(port) => HeaderValue::from_str(&format!("{host}:{port}")),
    };
    value.ok()
}

pub fn request(
    target: &Target,
    call: &Call<'_>,
    peek: &peek::Request<'_>,
) -> Result<Request<Full<Bytes>>, Failure> {
    let (uri, host) = endpoint_uri(target, call.endpoint).ok_or(Failure::Connect)?;
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
    if let Some(host) = host {
        h.insert(header::HOST, host);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_matches_the_pooled_client() {
        let h = |u: &str| host_header(&u.parse::<Uri>().unwrap());
        assert_eq!(
            h("http://127.0.0.1:8080/v1"),
            Some(HeaderValue::from_static("127.0.0.1:8080"))
        );
        assert_eq!(
            h("http://example.com/v1"),
            Some(HeaderValue::from_static("example.com"))
        );
        assert_eq!(
            h("http://example.com:80/v1"),
            Some(HeaderValue::from_static("example.com"))
        );
        assert_eq!(
            h("http://[::1]:9000/v1"),
            Some(HeaderValue::from_static("[::1]:9000"))
        );
        assert_eq!(h("https://api.openai.com/v1"), None);
    }
}
