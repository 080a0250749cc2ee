//! The error every parser returns, and the JSON reading and writing helpers all formats share.
//!
//! A [`WireError`] is a client's or an upstream's malformed body, described for a human with the
//! path of the offending field. This module must not know any provider's shapes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A body that is not valid for its format. The message names the offending field (for example
/// `messages[2].content[0].image_url: missing field `url``) and is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    message: String,
    param: Option<String>,
}

impl WireError {
    /// An error about the field at `path` (`messages[0].role`); `path` becomes the `param`.
    pub fn field(path: impl Into<String>, problem: impl fmt::Display) -> WireError {
        let path = path.into();
        WireError {
            message: format!("{path}: {problem}"),
            param: Some(path),
        }
    }

    /// An error about the body as a whole.
    pub fn body(problem: impl Into<String>) -> WireError {
        WireError {
            message: problem.into(),
            param: None,
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The path of the offending field, for OpenAI's `param`.
    pub fn param(&self) -> Option<&str> {
        self.param.as_deref()
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WireError {}

/// Deserializes `body`, naming the path of the field that did not fit.
pub fn from_json<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<T, WireError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            WireError::body(format!("the body is not valid JSON: {inner}"))
        } else if path == "." {
            WireError::body(strip_position(&inner.to_string()))
        } else {
            WireError::field(path, strip_position(&inner.to_string()))
        }
    })?;
    de.end()
        .map_err(|e| WireError::body(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

/// Serializes `value` to JSON bytes.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_json(&mut out, value);
    out
}

/// Appends the JSON of `value` to `out`.
#[expect(
    clippy::expect_used,
    reason = "the wire types serialize only strings, numbers, maps with string keys and JSON values, which cannot fail"
)]
pub fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("wire types always serialize");
}

/// serde_json appends "at line 1 column 52" to data errors; the path already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Splits a `data:<media type>;base64,<data>` URL into its media type and data.
pub fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type, data))
}

/// The `data:` URL of base64 `data` of `media_type`.
pub fn data_url(media_type: &str, data: &str) -> String {
    let mut url = String::with_capacity(media_type.len() + data.len() + 13);
    url.push_str("data:");
    url.push_str(media_type);
    url.push_str(";base64,");
    url.push_str(data);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        items: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    #[test]
    fn errors_name_the_field() {
        let err = from_json::<Outer>(br#"{"items":[{"n":1},{"n":"x"}]}"#).unwrap_err();
        assert_eq!(
            err.message(),
            "items[1].n: invalid type: string \"x\", expected u32"
        );
        assert_eq!(err.param(), Some("items[1].n"));
        let err = from_json::<Outer>(b"{}").unwrap_err();
        assert_eq!(err.message(), "missing field `items`");
        let err = from_json::<Outer>(b"{").unwrap_err();
        assert!(
            err.message().starts_with("the body is not valid JSON"),
            "{err}"
        );
        let err = from_json::<Outer>(br#"{"items":[]} x"#).unwrap_err();
        assert!(
            err.message().starts_with("the body is not valid JSON"),
            "{err}"
        );
    }

    #[test]
    fn data_urls() {
        assert_eq!(
            parse_data_url("data:image/png;base64,AAAA"),
            Some(("image/png", "AAAA"))
        );
        assert_eq!(parse_data_url("https://x/y.png"), None);
        assert_eq!(data_url("image/png", "AAAA"), "data:image/png;base64,AAAA");
    }
}
