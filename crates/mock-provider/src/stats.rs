//! What the mock has been asked: request counters and the last request, verbatim.
//!
//! Reference: none — this is the mock's own control surface (`GET /_mock/stats`), not an
//! emulated provider format. Tests use it to assert what the gateway sent upstream (rewritten
//! model, auth header, injected `stream_options`). It must not decide anything about a
//! response; it only records.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// A snapshot of the counters, serialised as the body of `GET /_mock/stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Every request to a provider path (control paths under `/_mock/` are not counted).
    pub requests: u64,
    /// Requests per path, without the query string.
    pub by_path: BTreeMap<String, u64>,
    /// Requests per model as sent: the body's `model` for OpenAI paths, the deployment name
    /// from the URL for Azure paths; directives (`+status=503`) included.
    pub by_model: BTreeMap<String, u64>,
    /// The most recent request, `null` before the first one.
    pub last: Option<LastRequest>,
}

/// One request as it arrived.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LastRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, `null` when there is none.
    pub query: Option<String>,
    /// Lower-cased header names; repeated headers are joined with `", "`.
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON when it is JSON, else the body as a (lossy UTF-8) string;
    /// `null` when empty.
    pub body: Value,
}

impl Stats {
    /// Counts one request and remembers it as the last.
    pub(crate) fn record(&mut self, request: LastRequest, model: Option<&str>) {
        self.requests += 1;
        *self.by_path.entry(request.path.clone()).or_default() += 1;
        if let Some(model) = model {
            *self.by_model.entry(model.to_string()).or_default() += 1;
        }
        self.last = Some(request);
    }
}

impl LastRequest {
    /// Captures a request from its parts and raw body.
    pub(crate) fn capture(parts: &http::request::Parts, body: &[u8]) -> LastRequest {
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in &parts.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str().to_ascii_lowercase())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
        };
        LastRequest {
            method: parts.method.as_str().to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers,
            body,
        }
    }
}
