//! Embeddings (`POST /v1/embeddings`): deterministic unit vectors derived from a hash of
//! each input.
//!
//! References followed: OpenAI API reference "Embeddings" ("The embedding object":
//! `{"object": "embedding", "index", "embedding"}` inside `{"object": "list", "data",
//! "model", "usage": {"prompt_tokens", "total_tokens"}}`; `input` is a string, an array of
//! strings, an array of tokens or an array of token arrays; `encoding_format` is `float` or
//! `base64`; `dimensions`), and `openai-python` `resources/embeddings.py`, which sends
//! `encoding_format: "base64"` when the caller gives none and decodes the string with
//! `np.frombuffer(base64.b64decode(data), dtype="float32")` — little-endian `f32` bytes.
//!
//! Vectors: `dimensions` values (default 8), each from SplitMix64 of the input's FNV-1a hash
//! and the position, mapped to [-1, 1] and normalised to length 1 (OpenAI's are unit length).
//! Token count: words of a text input, or the number of tokens of a token-array input.

use serde_json::{json, Map, Value};

use super::Meta;
use crate::openai;
use crate::tokens;
use crate::wire::Reply;

const KNOWN: &[&str] = &["input", "model", "dimensions", "encoding_format", "user"];

/// Dimensions when the request does not ask for a number.
pub const DEFAULT_DIMENSIONS: usize = 8;

/// Builds the answer to an embeddings request, or the 400 it deserves.
pub fn respond(body: &Map<String, Value>, meta: &Meta) -> Result<Reply, Reply> {
    openai::reject_unknown(body, KNOWN)?;
    let inputs = inputs(body.get("input"))?;
    let base64 = match body.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(other) => {
            return Err(openai::invalid(
                "encoding_format",
                &format!(
                    "Invalid value for 'encoding_format': {other}. Supported values are: \
                     'float' and 'base64'."
                ),
                Some("invalid_value"),
            ))
        }
    };
    let dimensions = match body.get("dimensions") {
        None | Some(Value::Null) => DEFAULT_DIMENSIONS,
        Some(v) => match v.as_u64() {
            Some(d @ 1..=65536) => d as usize,
            _ => {
                return Err(openai::invalid(
                    "dimensions",
                    "Invalid 'dimensions': expected a positive integer.",
                    Some("invalid_value"),
                ))
            }
        },
    };

    let prompt_tokens: u64 = inputs.iter().map(|(_, t)| t).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, (text, _))| {
            let v = vector(text, dimensions);
            let embedding = if base64 {
                Value::String(encode_base64(&v))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Reply::json(
        http::StatusCode::OK,
        json!({
            "object": "list",
            "data": data,
            "model": meta.model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
        }),
    ))
}

/// The inputs as (text to hash, token count).
fn inputs(input: Option<&Value>) -> Result<Vec<(String, u64)>, Reply> {
    let invalid = || {
        openai::invalid(
            "input",
            "'$.input' is invalid. Please check the API reference: \
             https://platform.openai.com/docs/api-reference.",
            None,
        )
    };
    let token_array = |items: &[Value]| -> Option<(String, u64)> {
        let numbers: Option<Vec<String>> = items
            .iter()
            .map(|t| t.as_u64().map(|n| n.to_string()))
            .collect();
        numbers
            .filter(|n| !n.is_empty())
            .map(|n| (n.join(" "), items.len() as u64))
    };
    let text = |s: &str| (!s.is_empty()).then(|| (s.to_string(), tokens::count(s)));
    let parsed = match input {
        None | Some(Value::Null) => return Err(openai::missing("input")),
        Some(Value::String(s)) => text(s).map(|t| vec![t]),
        Some(Value::Array(items)) if items.is_empty() => None,
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => {
            token_array(items).map(|t| vec![t])
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => text(s),
                Value::Array(a) => token_array(a),
                _ => None,
            })
            .collect(),
        Some(_) => None,
    };
    parsed.ok_or_else(invalid)
}

/// The deterministic unit vector of `text`.
pub fn vector(text: &str, dimensions: usize) -> Vec<f32> {
    let seed = tokens::hash64(text.as_bytes());
    let raw: Vec<f64> = (0..dimensions as u64)
        .map(|j| {
            let bits = tokens::mix64(seed ^ j.wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 11;
            (bits as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    raw.iter().map(|x| (x / norm) as f32).collect()
}

/// Standard base64 (with padding) of the little-endian bytes of `values`.
pub fn encode_base64(values: &[f32]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextets = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for (k, s) in sextets.iter().enumerate() {
            if k <= chunk.len() {
                out.push(char::from(TABLE[*s as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_unit_length() {
        let a = vector("hello", 8);
        assert_eq!(a, vector("hello", 8));
        assert_ne!(a, vector("hullo", 8));
        let len: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((len - 1.0).abs() < 1e-5);
    }

    #[test]
    fn base64_matches_known_values() {
        // 1.0f32 little-endian is 00 00 80 3F.
        assert_eq!(encode_base64(&[1.0]), "AACAPw==");
        assert_eq!(encode_base64(&[1.0, 1.0]), "AACAPwAAgD8=");
        assert_eq!(encode_base64(&[1.0, 1.0, 1.0]), "AACAPwAAgD8AAIA/");
    }
}
