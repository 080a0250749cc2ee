//! Amazon Bedrock Converse: `POST /model/{modelId}/converse` and `/converse-stream`, the
//! latter in the binary `application/vnd.amazon.eventstream` framing.
//!
//! References followed: the Bedrock Runtime API reference and the botocore service model
//! (`bedrock-runtime/2023-09-30/service-2.json`: `ConverseResponse`, `TokenUsage`,
//! `ConverseStreamOutput` events `messageStart`, `contentBlockStart`, `contentBlockDelta`,
//! `contentBlockStop`, `messageStop`, `metadata`, and the exceptions with their HTTP statuses);
//! the AWS event stream encoding (prelude with two big-endian lengths and a CRC32, string headers
//! `:event-type`, `:content-type`, `:message-type`, payload, message CRC32); Bedrock's error body
//! `{"message": ...}` with the type in `x-amzn-errortype`. A request must carry a SigV4
//! `authorization` header (`AWS4-HMAC-SHA256 Credential=...`) and `x-amz-date`, else 403
//! `MissingAuthenticationTokenException`; the signature itself is not checked, but when the server
//! has a key, the credential's access key id must be that key.
//!
//! The answer follows the OpenAI emulation's rules (`echo: <last user text>`, a call of the first
//! tool with `{"input": "<last user text>"}`, `tool said: <results>`, words are tokens), with
//! Converse's stop reasons (`end_turn`, `tool_use`, `max_tokens`, `stop_sequence`). The event
//! stream encoder here is written independently of `providers::bedrock::eventstream`, so each
//! checks the other in tests. This module must not do IO.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::faults;
use crate::gemini::framed_stream;
use crate::openai::{self, Call, Outcome};
use crate::tokens;
use crate::wire::{self, Body, Reply, Shape};

/// The Bedrock endpoints the mock serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Converse,
    ConverseStream,
}

/// Maps `POST /model/{modelId}/converse[-stream]` to the (percent-decoded) model id and
/// endpoint.
pub fn route(method: &Method, path: &str) -> Option<(String, Endpoint)> {
    if method != Method::POST {
        return None;
    }
    let rest = path.strip_prefix("/model/")?;
    let (model, op) = rest.rsplit_once('/')?;
    let endpoint = match op {
        "converse" => Endpoint::Converse,
        "converse-stream" => Endpoint::ConverseStream,
        _ => return None,
    };
    let model = percent_decode(model);
    (!model.is_empty()).then_some((model, endpoint))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Serves one request after routing: SigV4 presence, validation, then the answer.
pub fn serve(raw_model: &str, endpoint: &Endpoint, call: &Call<'_>) -> Outcome {
    if let Err(reply) = check_auth(call) {
        return Outcome::plain(reply);
    }
    let (model, plan) = match faults::parse_model(raw_model) {
        Ok(parsed) => parsed,
        Err(message) => {
            return Outcome::plain(error(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                &message,
            ))
        }
    };
    let reply = match call.body.and_then(Value::as_object) {
        None => error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "Unexpected token in the request body; the body must be a JSON object.",
        ),
        Some(body) => respond(body, endpoint).unwrap_or_else(|reply| reply),
    };
    let reply = reply.with_header(
        "x-amzn-requestid",
        &format!("00000000-0000-4000-8000-{:012x}", call.seq),
    );
    Outcome { reply, plan, model }
}

fn check_auth(call: &Call<'_>) -> Result<(), Reply> {
    let authorization = call
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let credential = authorization.and_then(|a| a.strip_prefix("AWS4-HMAC-SHA256 Credential="));
    let dated = call.headers.contains_key("x-amz-date");
    let Some(credential) = credential.filter(|_| dated) else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    if let Some(expected) = call.api_key {
        let key_id = credential.split('/').next().unwrap_or_default();
        if key_id != expected {
            return Err(error(
                StatusCode::FORBIDDEN,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ));
        }
    }
    Ok(())
}

/// Bedrock's error: `{"message"}` with `x-amzn-errortype: <type>:<namespace>`.
pub fn error(status: StatusCode, kind: &str, message: &str) -> Reply {
    Reply::json(status, json!({ "message": message })).with_header(
        "x-amzn-errortype",
        &format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
    )
}

/// The error answer for an injected fault status, as Bedrock words it.
pub fn status_error(status: u16, retry_after: Option<u64>) -> Reply {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (kind, message) = match status {
        400 => ("ValidationException", "The provided request is not valid."),
        403 => (
            "AccessDeniedException",
            "You don't have access to the model with the specified model ID.",
        ),
        404 => (
            "ResourceNotFoundException",
            "Could not resolve the foundation model from the provided model identifier.",
        ),
        408 => (
            "ModelTimeoutException",
            "Model has timed out in processing the request.",
        ),
        429 => (
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        ),
        503 => (
            "ServiceUnavailableException",
            "Bedrock is unable to process your request.",
        ),
        500..=599 => (
            "InternalServerException",
            "The server encountered an internal error while processing the request.",
        ),
        _ => (
            "ValidationException",
            "Mock-provider injected this client error.",
        ),
    };
    let reply = error(code, kind, message);
    match retry_after {
        Some(secs) => reply.with_header("retry-after", &secs.to_string()),
        None => reply,
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Answer {
    Text {
        text: String,
        stop: &'static str,
    },
    Call {
        id: String,
        name: String,
        input: Value,
    },
}

fn respond(body: &Map<String, Value>, endpoint: &Endpoint) -> Result<Reply, Reply> {
    let messages = match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        _ => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                "A conversation must start with a user message. Try again with a conversation \
                 that starts with a user message.",
            ))
        }
    };
    let tools: Vec<&Value> = body
        .get("toolConfig")
        .and_then(|t| t.get("tools"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("toolSpec"))
        .collect();
    let prompt = prompt_tokens(body) + tools.len() as u64;
    let answer = answer(body, messages, &tools);
    let output = match &answer {
        Answer::Text { text, .. } => tokens::count(text),
        Answer::Call { input, .. } => tokens::count(&input.to_string()),
    };
    let usage =
        json!({"inputTokens": prompt, "outputTokens": output, "totalTokens": prompt + output});
    let stop = match &answer {
        Answer::Text { stop, .. } => *stop,
        Answer::Call { .. } => "tool_use",
    };
    if *endpoint == Endpoint::Converse {
        let block = match &answer {
            Answer::Text { text, .. } => json!({ "text": text }),
            Answer::Call { id, name, input } => {
                json!({"toolUse": {"toolUseId": id, "name": name, "input": input}})
            }
        };
        return Ok(Reply::json(
            StatusCode::OK,
            json!({
                "output": {"message": {"role": "assistant", "content": [block]}},
                "stopReason": stop,
                "usage": usage,
                "metrics": {"latencyMs": 1}
            }),
        ));
    }
    let mut events = vec![event("messageStart", json!({"role": "assistant"}))];
    match &answer {
        Answer::Text { text, .. } => {
            for piece in tokens::pieces(text) {
                events.push(event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"text": piece}}),
                ));
            }
        }
        Answer::Call { id, name, input } => {
            events.push(event(
                "contentBlockStart",
                json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": id, "name": name}}}),
            ));
            let text = input.to_string();
            let mid = text
                .char_indices()
                .nth(text.chars().count() / 2)
                .map_or(0, |(i, _)| i);
            for fragment in [&text[..mid], &text[mid..]] {
                events.push(event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": fragment}}}),
                ));
            }
        }
    }
    events.push(event("contentBlockStop", json!({"contentBlockIndex": 0})));
    events.push(event("messageStop", json!({ "stopReason": stop })));
    events.push(event(
        "metadata",
        json!({"usage": usage, "metrics": {"latencyMs": 1}}),
    ));
    Ok(Reply::sse(events))
}

/// One stream event, to be framed by [`render`].
fn event(kind: &str, payload: Value) -> Value {
    json!({ "event": kind, "payload": payload })
}

fn texts(content: &Value) -> Vec<&str> {
    content
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect()
}

fn answer(body: &Map<String, Value>, messages: &[Value], tools: &[&Value]) -> Answer {
    let last = messages.last();
    let last_content = last.and_then(|m| m.get("content")).unwrap_or(&Value::Null);
    let results: Vec<String> = last_content
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b.get("toolResult"))
        .map(|r| {
            r.get("content")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| match c.get("text").and_then(Value::as_str) {
                    Some(t) => t.to_string(),
                    None => c.get("json").map(Value::to_string).unwrap_or_default(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let last_is_user = last.and_then(|m| m.get("role")).and_then(Value::as_str) == Some("user");
    let user_text = messages
        .iter()
        .rev()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| texts(m.get("content").unwrap_or(&Value::Null)))
        .find(|t| !t.is_empty())
        .map(|t| t.join(" "))
        .unwrap_or_default();
    if last_is_user && results.is_empty() {
        let chosen = body
            .get("toolConfig")
            .and_then(|t| t.get("toolChoice"))
            .and_then(|c| c.get("tool"))
            .and_then(|t| t.get("name"))
            .and_then(Value::as_str);
        let first = tools
            .first()
            .and_then(|t| t.get("name"))
            .and_then(Value::as_str);
        if let Some(name) = chosen.or(first) {
            let input = json!({ "input": user_text });
            let seed = tokens::hash64(format!("{name}/{input}").as_bytes());
            return Answer::Call {
                id: format!("tooluse_{}", tokens::alnum_suffix(seed, 22)),
                name: name.to_string(),
                input,
            };
        }
    }
    let text = if results.is_empty() {
        format!("echo: {user_text}")
    } else {
        format!("tool said: {}", results.join(" "))
    };
    let config = body.get("inferenceConfig").unwrap_or(&Value::Null);
    let stops: Vec<String> = config
        .get("stopSequences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let stopped = openai::apply_stop(&text, &stops);
    let by_sequence = stopped.len() < text.len();
    let max = config.get("maxTokens").and_then(Value::as_u64);
    let (text, cut) = openai::apply_max_tokens(&stopped, max);
    let stop = if cut {
        "max_tokens"
    } else if by_sequence {
        "stop_sequence"
    } else {
        "end_turn"
    };
    Answer::Text { text, stop }
}

/// Prompt tokens: the words of system and message text, tool use input and tool result text,
/// one per image or document.
fn prompt_tokens(body: &Map<String, Value>) -> u64 {
    let mut blocks: Vec<&Value> = body
        .get("system")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    for m in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        blocks.extend(
            m.get("content")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
    }
    blocks
        .iter()
        .map(|b| {
            if let Some(t) = b.get("text").and_then(Value::as_str) {
                tokens::count(t)
            } else if let Some(u) = b.get("toolUse") {
                tokens::count(&u.get("input").unwrap_or(&Value::Null).to_string())
            } else if let Some(r) = b.get("toolResult") {
                tokens::count(&texts(r.get("content").unwrap_or(&Value::Null)).join(" "))
            } else if b.get("image").is_some() || b.get("document").is_some() {
                1
            } else {
                0
            }
        })
        .sum()
}

/// Renders a Bedrock reply: JSON as `wire` renders it; a stream as event stream messages, with
/// the wire faults applied (`malformed`: a well-framed event whose JSON payload is cut short).
pub fn render(reply: Reply, shape: &Shape) -> Response<Body> {
    match reply {
        Reply::Sse { headers, events } => {
            let frames = events
                .iter()
                .map(|e| {
                    let kind = e.get("event").and_then(Value::as_str).unwrap_or("metadata");
                    let payload = e.get("payload").unwrap_or(&Value::Null).to_string();
                    Bytes::from(frame(kind, payload.as_bytes()))
                })
                .collect();
            let malformed = Bytes::from(frame(
                "contentBlockDelta",
                b"{\"contentBlockIndex\":0,\"delta\":{\"te",
            ));
            framed_stream(
                "application/vnd.amazon.eventstream",
                headers,
                frames,
                malformed,
                shape,
            )
        }
        json => wire::render(json, shape),
    }
}

/// One event stream message with Bedrock's three string headers.
fn frame(event_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut headers = Vec::new();
    for (name, value) in [
        (":event-type", event_type),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ] {
        headers.push(name.len() as u8);
        headers.extend_from_slice(name.as_bytes());
        headers.push(7);
        headers.extend_from_slice(&(value.len() as u16).to_be_bytes());
        headers.extend_from_slice(value.as_bytes());
    }
    let total = 16 + headers.len() + payload.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    let prelude_crc = crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&headers);
    out.extend_from_slice(payload);
    let message_crc = crc32(&out);
    out.extend_from_slice(&message_crc.to_be_bytes());
    out
}

/// CRC-32 (IEEE, reflected 0xEDB88320), bit by bit.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_decode_the_model_id() {
        assert_eq!(
            route(
                &Method::POST,
                "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
            ),
            Some((
                "anthropic.claude-3-haiku-20240307-v1:0".into(),
                Endpoint::Converse
            ))
        );
        assert_eq!(
            route(&Method::POST, "/model/m/converse-stream"),
            Some(("m".into(), Endpoint::ConverseStream))
        );
        assert_eq!(route(&Method::POST, "/model/m/invoke"), None);
    }

    #[test]
    fn frames_match_the_published_vector_shape() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        let f = frame("x", b"{}");
        assert_eq!(
            u32::from_be_bytes([f[0], f[1], f[2], f[3]]) as usize,
            f.len()
        );
    }
}
