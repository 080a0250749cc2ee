//! Anthropic's error body: `{"type": "error", "error": {"type", "message"}}`, written for
//! clients (also as the `data` of an `event: error` stream event) and read from upstreams.
//!
//! It must not choose statuses (the gateway's error module does) and must not do IO; it only
//! knows which error `type` Anthropic uses for which status.

use serde_json::Value;

use crate::anthropic::types::{ErrorBody, ErrorObject};
use crate::canonical::ApiError;
use crate::wire;

/// The body of an Anthropic error.
pub fn render(kind: &str, message: &str) -> Vec<u8> {
    wire::to_json(&ErrorBody {
        kind: "error".into(),
        error: ErrorObject {
            kind: kind.to_string(),
            message: message.to_string(),
        },
        request_id: None,
    })
}

/// The error `type` Anthropic answers with for an HTTP status (Anthropic's "Errors" reference):
/// 400 `invalid_request_error` (also every other 4xx), 401 `authentication_error`, 402
/// `billing_error`, 403 `permission_error`, 404 `not_found_error`, 413 `request_too_large`,
/// 429 `rate_limit_error`, 504 `timeout_error`, 503 and 529 `overloaded_error`, every other
/// 5xx `api_error`.
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The error in an upstream's error body, or `None` when the body says nothing usable (not
/// JSON, no message).
///
/// Reads Anthropic's shape, the same without the outer `type`, and `{"error": "text"}` or a
/// top-level `message` as some Anthropic-compatible servers send.
pub fn parse(body: &[u8]) -> Option<ApiError> {
    let value: Value = serde_json::from_slice(body).ok()?;
    from_value(&value)
}

/// [`parse`] of an already parsed value (a body, or the `data` of an `error` stream event).
pub fn from_value(value: &Value) -> Option<ApiError> {
    let object = value.as_object()?;
    let inner = match object.get("error") {
        Some(Value::Object(inner)) => inner,
        Some(Value::String(message)) => {
            return Some(ApiError {
                kind: "api_error".into(),
                message: message.clone(),
                ..ApiError::default()
            })
        }
        _ => object,
    };
    let message = match inner.get("message")? {
        Value::String(s) => s.clone(),
        Value::Null => return None,
        other => other.to_string(),
    };
    let kind = match inner.get("type") {
        Some(Value::String(kind)) if kind != "error" => kind.clone(),
        _ => "api_error".into(),
    };
    Some(ApiError {
        kind,
        message,
        param: None,
        code: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_anthropic_shape() {
        assert_eq!(
            String::from_utf8(render("overloaded_error", "Overloaded")).unwrap(),
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
        );
    }

    #[test]
    fn parses_anthropic_and_compatible_shapes() {
        let e = parse(
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"},"request_id":"req_1"}"#,
        )
        .unwrap();
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("rate_limit_error", "slow down")
        );
        assert_eq!(
            parse(br#"{"error":"model not found"}"#).unwrap().message,
            "model not found"
        );
        assert_eq!(parse(br#"{"message":"bad"}"#).unwrap().kind, "api_error");
        assert_eq!(parse(b"<html>502</html>"), None);
    }

    #[test]
    fn statuses_have_types() {
        assert_eq!(error_type(400), "invalid_request_error");
        assert_eq!(error_type(422), "invalid_request_error");
        assert_eq!(error_type(429), "rate_limit_error");
        assert_eq!(error_type(529), "overloaded_error");
        assert_eq!(error_type(502), "api_error");
    }
}
