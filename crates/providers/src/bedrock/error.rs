//! Bedrock's errors: an HTTP error is a `{"message": ...}` body with its type in the
//! `x-amzn-errortype` header (`ThrottlingException:http://internal.amazon.com/coral/...`); a
//! stream error is an event stream message of type `exception` with an `:exception-type` header
//! (`throttlingException`, `modelStreamErrorException`, ...) and the same body.
//!
//! It must not choose statuses (the gateway's error module does) and must not do IO.

use serde_json::Value;

use crate::bedrock::types::ErrorBody;
use crate::canonical::ApiError;
use crate::wire;

/// The suffix Bedrock puts after the type in `x-amzn-errortype`.
const ERROR_TYPE_SUFFIX: &str = ":http://internal.amazon.com/coral/com.amazon.bedrock/";

/// The body of a Bedrock error.
pub fn render(message: &str) -> Vec<u8> {
    wire::to_json(&ErrorBody {
        message: message.to_string(),
    })
}

/// The exception name Bedrock answers an HTTP status with.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 => "ValidationException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        401..=499 => "ValidationException",
        _ => "InternalServerException",
    }
}

/// The `x-amzn-errortype` header value for an exception name.
pub fn error_type_header(error_type: &str) -> String {
    format!("{error_type}{ERROR_TYPE_SUFFIX}")
}

/// The `:exception-type` of a stream exception for a canonical error kind: Bedrock's own names
/// are kept (in the stream's lowerCamelCase), anything else is an internal server exception.
pub fn exception_type(kind: &str) -> String {
    let known = [
        "internalServerException",
        "modelStreamErrorException",
        "validationException",
        "throttlingException",
        "serviceUnavailableException",
    ];
    let mut lower = kind.to_string();
    if let Some(first) = lower.get_mut(..1) {
        first.make_ascii_lowercase();
    }
    if known.contains(&lower.as_str()) {
        lower
    } else {
        "internalServerException".to_string()
    }
}

/// The error of an HTTP error answer: its type from `x-amzn-errortype` (or the body's
/// `__type`), its message from the body's `message` (or `Message`). `None` when the body says
/// nothing usable.
pub fn parse(body: &[u8], error_type_header: Option<&str>) -> Option<ApiError> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let message = value
        .get("message")
        .or_else(|| value.get("Message"))?
        .as_str()?
        .to_string();
    let kind = error_type_header
        .map(|h| h.split(':').next().unwrap_or(h).to_string())
        .or_else(|| {
            value
                .get("__type")
                .and_then(Value::as_str)
                .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
        })
        .unwrap_or_else(|| "UnknownError".to_string());
    Some(ApiError {
        kind,
        message,
        param: None,
        code: None,
    })
}

/// The error of a stream exception message.
pub fn from_exception(exception_type: &str, payload: &[u8]) -> ApiError {
    let message = serde_json::from_slice::<Value>(payload)
        .ok()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("Message"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(payload).into_owned());
    ApiError {
        kind: exception_type.to_string(),
        message,
        param: None,
        code: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_and_body() {
        let e = parse(
            br#"{"message":"Too many requests, please wait before trying again."}"#,
            Some("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
        )
        .unwrap();
        assert_eq!(e.kind, "ThrottlingException");
        let e = parse(
            br#"{"__type":"com.amazon.coral.service#UnrecognizedClientException","Message":"The security token included in the request is invalid."}"#,
            None,
        )
        .unwrap();
        assert_eq!(e.kind, "UnrecognizedClientException");
        assert_eq!(parse(b"nope", None), None);
    }

    #[test]
    fn exception_names() {
        assert_eq!(exception_type("ThrottlingException"), "throttlingException");
        assert_eq!(
            exception_type("rate_limit_error"),
            "internalServerException"
        );
        assert_eq!(error_type(429), "ThrottlingException");
        assert_eq!(
            String::from_utf8(render("x")).unwrap(),
            r#"{"message":"x"}"#
        );
    }
}
