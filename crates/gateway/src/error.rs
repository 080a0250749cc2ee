//! The one error type of the request path, its status mapping, and its rendering in the
//! client's protocol.
//!
//! Messages name the problem for the client; they never carry a credential or an internal
//! detail such as a socket error's text.

use std::borrow::Cow;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};

/// Which wire protocol an error is rendered in: the one of the endpoint the client called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    OpenAi,
    Anthropic,
    Oip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 400: malformed JSON, wrong types, missing fields, unsupported parameters.
    InvalidRequest,
    /// 401: missing, unknown, expired or revoked key.
    Unauthorized,
    /// 403: the key may not use this model.
    Forbidden,
    /// 404: unknown model or path.
    NotFound,
    /// 405
    MethodNotAllowed,
    /// 413: body over `server.max_body_bytes`.
    PayloadTooLarge,
    /// 429 from a limit (ours or, after retries, the upstream's).
    RateLimited,
    /// 429 from a budget.
    BudgetExceeded,
    /// 502: the upstream answered with an error or something that is not its protocol.
    UpstreamBad,
    /// 503: no target could be reached.
    NoHealthyTarget,
    /// 504: the upstream did not answer in time.
    UpstreamTimeout,
    /// 500: a bug of ours.
    Internal,
}

#[derive(Debug, Clone)]
pub struct Error {
    pub kind: Kind,
    pub message: Cow<'static, str>,
    pub param: Option<Cow<'static, str>>,
    /// Overrides the default `code` of the kind (e.g. an upstream's own code on a passed-through
    /// 400).
    pub code: Option<Cow<'static, str>>,
    pub retry_after: Option<Duration>,
    /// A status other than the kind's default, for upstream client errors passed through
    /// (e.g. 422).
    pub status: Option<StatusCode>,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<Cow<'static, str>>) -> Self {
        Error {
            kind,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
            status: None,
        }
    }

    pub fn invalid(message: impl Into<Cow<'static, str>>, param: Option<&'static str>) -> Self {
        Error {
            param: param.map(Cow::Borrowed),
            ..Error::new(Kind::InvalidRequest, message)
        }
    }

    pub fn with_retry_after(mut self, d: Option<Duration>) -> Self {
        self.retry_after = d;
        self
    }

    pub fn status(&self) -> StatusCode {
        if let Some(s) = self.status {
            return s;
        }
        match self.kind {
            Kind::InvalidRequest => StatusCode::BAD_REQUEST,
            Kind::Unauthorized => StatusCode::UNAUTHORIZED,
            Kind::Forbidden => StatusCode::FORBIDDEN,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Kind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::RateLimited | Kind::BudgetExceeded => StatusCode::TOO_MANY_REQUESTS,
            Kind::UpstreamBad => StatusCode::BAD_GATEWAY,
            Kind::NoHealthyTarget => StatusCode::SERVICE_UNAVAILABLE,
            Kind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `type` and default `code` for this error.
    fn openai_type_code(&self) -> (&'static str, Option<&'static str>) {
        match self.kind {
            Kind::InvalidRequest => ("invalid_request_error", None),
            Kind::Unauthorized => ("invalid_request_error", Some("invalid_api_key")),
            Kind::Forbidden => ("permission_error", Some("model_not_allowed")),
            Kind::NotFound => ("invalid_request_error", Some("model_not_found")),
            Kind::MethodNotAllowed => ("invalid_request_error", Some("method_not_allowed")),
            Kind::PayloadTooLarge => ("invalid_request_error", Some("request_too_large")),
            Kind::RateLimited => ("rate_limit_error", Some("rate_limit_exceeded")),
            Kind::BudgetExceeded => ("rate_limit_error", Some("budget_exceeded")),
            Kind::UpstreamBad => ("api_error", Some("upstream_error")),
            Kind::NoHealthyTarget => ("api_error", Some("no_healthy_target")),
            Kind::UpstreamTimeout => ("api_error", Some("upstream_timeout")),
            Kind::Internal => ("api_error", Some("internal_error")),
        }
    }

    fn anthropic_type(&self) -> &'static str {
        match self.kind {
            Kind::InvalidRequest | Kind::MethodNotAllowed => "invalid_request_error",
            Kind::Unauthorized => "authentication_error",
            Kind::Forbidden => "permission_error",
            Kind::NotFound => "not_found_error",
            Kind::PayloadTooLarge => "request_too_large",
            Kind::RateLimited | Kind::BudgetExceeded => "rate_limit_error",
            Kind::UpstreamTimeout => "timeout_error",
            Kind::NoHealthyTarget => "overloaded_error",
            Kind::UpstreamBad | Kind::Internal => "api_error",
        }
    }

    /// The error object of the OpenAI protocol: `{"error": {message, type, param, code}}`.
    pub fn openai_json(&self) -> serde_json::Value {
        let (kind, code) = self.openai_type_code();
        let code = self.code.as_deref().or(code);
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": kind,
                "param": self.param,
                "code": code,
            }
        })
    }

    /// The body in the client's protocol.
    pub fn body(&self, protocol: Protocol) -> Bytes {
        let value = match protocol {
            Protocol::OpenAi => self.openai_json(),
            Protocol::Anthropic => serde_json::json!({
                "type": "error",
                "error": { "type": self.anthropic_type(), "message": self.message },
            }),
            Protocol::Oip => serde_json::json!({ "error": self.message }),
        };
        Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
    }

    pub fn into_response(self, protocol: Protocol) -> Response {
        let mut resp = (self.status(), self.body(protocol)).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(d) = self.retry_after {
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_protocol() {
        let e = Error::invalid("bad 'stream'", Some("stream"));
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let v: serde_json::Value = serde_json::from_slice(&e.body(Protocol::OpenAi)).unwrap();
        assert_eq!(v["error"]["param"], "stream");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let v: serde_json::Value = serde_json::from_slice(&e.body(Protocol::Anthropic)).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let v: serde_json::Value = serde_json::from_slice(&e.body(Protocol::Oip)).unwrap();
        assert_eq!(v["error"], "bad 'stream'");
    }

    #[test]
    fn retry_after_rounds_up() {
        let r = Error::new(Kind::RateLimited, "slow down")
            .with_retry_after(Some(Duration::from_millis(1500)))
            .into_response(Protocol::OpenAi);
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    }
}
