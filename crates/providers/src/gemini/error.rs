//! Gemini's error body: `{"error": {"code", "message", "status", "details"}}` (Google's
//! `google.rpc.Status` as JSON), written for clients and read from upstreams.
//!
//! It must not choose statuses (the gateway's error module does) and must not do IO.

use serde_json::Value;

use crate::canonical::ApiError;
use crate::gemini::types::{ErrorBody, ErrorObject};
use crate::wire;

/// The body of a Gemini error for HTTP `status`, with the matching `google.rpc.Code` name.
pub fn render(status: u16, message: &str) -> Vec<u8> {
    wire::to_json(&ErrorBody {
        error: ErrorObject {
            code: status,
            message: message.to_string(),
            status: status_name(status).to_string(),
            details: Vec::new(),
        },
    })
}

/// The `google.rpc.Code` name Google uses for an HTTP status.
pub fn status_name(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        402..=498 => "FAILED_PRECONDITION",
        _ => "INTERNAL",
    }
}

/// The error in an upstream's error body, or `None` when the body says nothing usable. Reads
/// the object form and the one-element array form `streamGenerateContent` without `alt=sse`
/// uses. `kind` is the `status` name, `code` the numeric code as text.
pub fn parse(body: &[u8]) -> Option<ApiError> {
    let value: Value = serde_json::from_slice(body).ok()?;
    from_value(&value)
}

/// [`parse`] of an already parsed value.
pub fn from_value(value: &Value) -> Option<ApiError> {
    let value = match value {
        Value::Array(items) => items.first()?,
        other => other,
    };
    let inner = value.get("error")?.as_object()?;
    let message = inner.get("message")?.as_str()?.to_string();
    let code = match inner.get("code") {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    Some(ApiError {
        kind: inner
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("UNKNOWN")
            .to_string(),
        message,
        param: None,
        code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_googles_shape() {
        assert_eq!(
            String::from_utf8(render(
                429,
                "Resource has been exhausted (e.g. check quota)."
            ))
            .unwrap(),
            r#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#
        );
    }

    #[test]
    fn parses_object_and_array_forms() {
        let body = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}"#;
        let e = parse(body).unwrap();
        assert_eq!(e.kind, "INVALID_ARGUMENT");
        assert_eq!(e.code.as_deref(), Some("400"));
        let array = br#"[{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}]"#;
        assert_eq!(parse(array).unwrap().kind, "UNAVAILABLE");
        assert_eq!(parse(b"<html>"), None);
        assert_eq!(parse(br#"{"candidates":[]}"#), None);
    }
}
