//! OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`, written for clients
//! and read from upstreams.
//!
//! It must not choose statuses or error types (the gateway's error module does) and must not do
//! IO.

use serde_json::Value;

use crate::canonical::ApiError;
use crate::openai::types::{ErrorBody, ErrorObject};
use crate::wire;

/// The body of an OpenAI error; `param` and `code` are `null` when absent.
pub fn render(err_type: &str, message: &str, param: Option<&str>, code: Option<&str>) -> Vec<u8> {
    wire::to_json(&ErrorBody {
        error: ErrorObject {
            message: message.to_string(),
            kind: err_type.to_string(),
            param: param.map(str::to_string),
            code: code.map(str::to_string),
        },
    })
}

/// The error in an upstream's error body, or `None` when the body says nothing usable (not
/// JSON, no message).
///
/// Reads OpenAI's shape, and the shapes OpenAI-compatible servers use instead:
/// `{"error": "text"}` (Ollama), `{"message": ..., "type": ...}` (vLLM) and `{"detail": ...}`
/// (FastAPI servers). A numeric `code` becomes its decimal text.
pub fn parse(body: &[u8]) -> Option<ApiError> {
    let value: Value = serde_json::from_slice(body).ok()?;
    from_value(&value)
}

/// [`parse`] of an already parsed value: the whole body or its `error` member.
pub fn from_value(value: &Value) -> Option<ApiError> {
    let object = value.as_object()?;
    match object.get("error") {
        Some(Value::Object(inner)) => from_object(inner),
        Some(Value::String(message)) => Some(ApiError {
            kind: "api_error".into(),
            message: message.clone(),
            ..ApiError::default()
        }),
        _ => from_object(object),
    }
}

fn from_object(object: &serde_json::Map<String, Value>) -> Option<ApiError> {
    let message = match object.get("message").or_else(|| object.get("detail"))? {
        Value::String(s) => s.clone(),
        Value::Null => return None,
        other => other.to_string(),
    };
    Some(ApiError {
        kind: text(object.get("type")).unwrap_or_else(|| "api_error".into()),
        message,
        param: text(object.get("param")),
        code: text(object.get("code")),
    })
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_nulls_like_openai() {
        let body = render(
            "invalid_request_error",
            "messages: required",
            Some("messages"),
            None,
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"error":{"message":"messages: required","type":"invalid_request_error","param":"messages","code":null}}"#
        );
    }

    #[test]
    fn parses_openai_and_compatible_shapes() {
        let e = parse(
            br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
        )
        .unwrap();
        assert_eq!(
            e,
            ApiError {
                kind: "requests".into(),
                message: "Rate limit reached".into(),
                param: None,
                code: Some("rate_limit_exceeded".into()),
            }
        );
        assert_eq!(
            parse(br#"{"error":"model not found"}"#).unwrap().message,
            "model not found"
        );
        let vllm = parse(br#"{"object":"error","message":"bad","type":"BadRequestError","param":null,"code":400}"#).unwrap();
        assert_eq!(
            (vllm.kind.as_str(), vllm.code.as_deref()),
            ("BadRequestError", Some("400"))
        );
        assert_eq!(
            parse(br#"{"detail":"Not Found"}"#).unwrap().message,
            "Not Found"
        );
        assert_eq!(parse(b"<html>502 Bad Gateway</html>"), None);
        assert_eq!(parse(br#"{"ok":true}"#), None);
    }
}
