//! The Anthropic Messages API surface: `POST /v1/messages` (streamed and not) and
//! `POST /v1/messages/count_tokens`, with Anthropic's headers, validation, error bodies and
//! named-event SSE framing.
//!
//! References followed:
//! * Anthropic API reference "Messages" / "Count tokens" and the `anthropic-sdk-python` types
//!   `message_create_params.py` (the known request keys, `max_tokens` required),
//!   `message_count_tokens_params.py`, `message.py`, `usage.py`, `message_delta_usage.py`,
//!   `raw_message_*_event.py`, `shared/error_response.py` (`request_id` in error bodies).
//! * "Streaming Messages": `event: <type>\ndata: {json}` frames, `message_start` (usage with the
//!   input counts), per block `content_block_start` / `content_block_delta` /
//!   `content_block_stop`, `ping`, `message_delta` (stop reason, cumulative usage),
//!   `message_stop`; no `[DONE]`. Tool input streams as `input_json_delta`, the first one
//!   empty, as in recorded streams (vercel/ai `anthropic-json-tool.1.chunks.txt`).
//! * "Errors": the `type` for each status; error texts quoted verbatim in public issues
//!   (`x-api-key header is required`, `invalid x-api-key`, `anthropic-version: header is
//!   required`, `<field>: Field required`, `<field>: Extra inputs are not permitted`,
//!   `prompt is too long: N tokens > M maximum`).
//!
//! The answer rule mirrors the OpenAI emulation (`openai/chat.rs`):
//! * last message `user` with `tool_result` blocks → text `"tool said: " + <their text>`;
//! * else `tools` non-empty, `tool_choice` not `none`, last message `user` → one `tool_use` of
//!   the first tool (or the one `tool_choice` names) with input `{"input": "<user text>"}`,
//!   stop reason `tool_use`;
//! * else text `"echo: " + <text of the last user message>` (`{"reply": ...}` JSON with
//!   `output_config.format`); `stop_sequences` cut it (stop reason `stop_sequence`),
//!   `max_tokens` keeps that many words (stop reason `max_tokens`).
//!
//! Tokens are words (`tokens.rs`): prompt = tools (one each) + system + message text, one per
//! image. Prompt caching is deterministic and stateless: the prompt up to the first
//! `cache_control` breakpoint (tools, then system, then messages; a top-level `cache_control`
//! marks the end) is reported as `cache_read_input_tokens`, from there to the last breakpoint
//! as `cache_creation_input_tokens` (in the TTL bucket of the last breakpoint), the rest as
//! `input_tokens`. `count_tokens` answers the sum.
//!
//! This module must not do IO beyond building the response body stream it hands back.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Map, Value};

use crate::faults;
use crate::openai::{self, Call, Outcome};
use crate::tokens;
use crate::wire::{self, Body, BoxError, Reply, Shape};

/// The Anthropic endpoints the mock serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Messages,
    CountTokens,
}

/// Request keys `/v1/messages` accepts; anything else is rejected as Anthropic does.
const KNOWN: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_k",
    "top_p",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "output_format",
    "service_tier",
    "container",
    "context_management",
    "mcp_servers",
    "cache_control",
    "inference_geo",
];

/// Request keys `/v1/messages/count_tokens` accepts.
const KNOWN_COUNT: &[&str] = &[
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "cache_control",
    "context_management",
    "mcp_servers",
];

/// Content block types a request message may hold.
const BLOCK_TYPES: &[&str] = &[
    "text",
    "image",
    "document",
    "search_result",
    "thinking",
    "redacted_thinking",
    "tool_use",
    "tool_result",
    "server_tool_use",
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "tool_search_tool_result",
    "container_upload",
    "mcp_tool_use",
    "mcp_tool_result",
];

/// The context window the `context_length` directive pretends to exceed.
const CONTEXT_WINDOW: u64 = 200_000;

/// Maps a method and path to an Anthropic endpoint.
pub fn route(method: &Method, path: &str) -> Option<Endpoint> {
    match (method, path.trim_end_matches('/')) {
        (&Method::POST, "/v1/messages") => Some(Endpoint::Messages),
        (&Method::POST, "/v1/messages/count_tokens") => Some(Endpoint::CountTokens),
        _ => None,
    }
}

/// Serves one Anthropic request after routing: auth, version header, validation, answer.
pub fn serve(endpoint: &Endpoint, call: &Call<'_>) -> Outcome {
    let request_id = request_id(call.seq);
    let plain = |reply: Reply| Outcome::plain(reply);
    if let Some(expected) = call.api_key {
        match header(call.headers, "x-api-key") {
            Some(key) if key == expected => {}
            Some(_) => return plain(error(401, "invalid x-api-key", &request_id)),
            None => return plain(error(401, "x-api-key header is required", &request_id)),
        }
    }
    if header(call.headers, "anthropic-version").is_none() {
        return plain(invalid(
            "anthropic-version: header is required",
            &request_id,
        ));
    }
    let body = match call.body.and_then(Value::as_object) {
        Some(body) => body,
        None => return plain(invalid(
            "There was an error parsing the body of your request. Please ensure it is valid JSON.",
            &request_id,
        )),
    };
    if let Err(message) = validate(endpoint, body) {
        return plain(invalid(&message, &request_id));
    }
    let raw_model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (model, mut plan) = match faults::parse_model(raw_model) {
        Ok(parsed) => parsed,
        Err(message) => return plain(invalid(&format!("model: {message}"), &request_id)),
    };
    let prompt = Prompt::of(body);
    let reply = if plan.context_length {
        // Answered here, in Anthropic's words, rather than by the OpenAI-shaped default.
        plan.context_length = false;
        invalid(
            &format!(
                "prompt is too long: {} tokens > {CONTEXT_WINDOW} maximum",
                CONTEXT_WINDOW + 1 + prompt.total()
            ),
            &request_id,
        )
    } else {
        match endpoint {
            Endpoint::CountTokens => {
                Reply::json(StatusCode::OK, json!({"input_tokens": prompt.total()}))
            }
            Endpoint::Messages => {
                let answer = Answer::of(body, call.seq);
                if body.get("stream").and_then(Value::as_bool) == Some(true) {
                    Reply::sse(events(&answer, &prompt, &model, call.seq))
                } else {
                    Reply::json(StatusCode::OK, message(&answer, &prompt, &model, call.seq))
                }
            }
        }
    };
    Outcome {
        reply: reply.with_header("request-id", &request_id),
        plan,
        model,
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn request_id(seq: u64) -> String {
    format!("req_mock{seq:020}")
}

/// The 400s Anthropic answers before generating (messages phrased like Anthropic's).
fn validate(endpoint: &Endpoint, body: &Map<String, Value>) -> Result<(), String> {
    let known = match endpoint {
        Endpoint::Messages => KNOWN,
        Endpoint::CountTokens => KNOWN_COUNT,
    };
    if let Some(key) = body.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!("{key}: Extra inputs are not permitted"));
    }
    match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        Some(_) => return Err("model: Input should be a valid string".into()),
        None => return Err("model: Field required".into()),
    }
    if *endpoint == Endpoint::Messages {
        match body.get("max_tokens") {
            None => return Err("max_tokens: Field required".into()),
            Some(v) if v.as_u64().is_none() => {
                return Err("max_tokens: Input should be a valid integer".into())
            }
            Some(_) => {}
        }
    }
    let messages = match body.get("messages") {
        None => return Err("messages: Field required".into()),
        Some(Value::Array(m)) => m,
        Some(_) => return Err("messages: Input should be a valid list".into()),
    };
    if messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    for (i, m) in messages.iter().enumerate() {
        match m.get("role").and_then(Value::as_str) {
            Some("user" | "assistant") => {}
            _ => {
                return Err(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                ))
            }
        }
        match m.get("content") {
            Some(Value::String(_)) => {}
            Some(Value::Array(blocks)) => {
                validate_blocks(blocks, &format!("messages.{i}.content"))?
            }
            _ => return Err(format!("messages.{i}.content: Field required")),
        }
    }
    for (i, tool) in tools(body).iter().enumerate() {
        match tool.get("type").and_then(Value::as_str) {
            None | Some("custom") => {
                for field in ["name", "input_schema"] {
                    if tool.get(field).is_none() {
                        return Err(format!("tools.{i}.custom.{field}: Field required"));
                    }
                }
            }
            Some(kind) if is_server_tool(kind) => {}
            Some(kind) => {
                return Err(format!(
                    "tools.{i}: Input tag '{kind}' found using 'type' does not match any of the expected tags"
                ))
            }
        }
    }
    Ok(())
}

fn validate_blocks(blocks: &[Value], path: &str) -> Result<(), String> {
    for (j, block) in blocks.iter().enumerate() {
        match block.get("type").and_then(Value::as_str) {
            None => return Err(format!("{path}.{j}.type: Field required")),
            Some(kind) if !BLOCK_TYPES.contains(&kind) => {
                return Err(format!(
                    "{path}.{j}: Input tag '{kind}' found using 'type' does not match any of the expected tags"
                ))
            }
            Some("text") if block.get("text").and_then(Value::as_str) == Some("") => {
                return Err("messages: text content blocks must be non-empty".into())
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Server tools are versioned by date: `web_search_20250305`, `bash_20250124`, ...
fn is_server_tool(kind: &str) -> bool {
    kind.rsplit_once('_').is_some_and(|(name, date)| {
        !name.is_empty() && date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit())
    })
}

fn tools(body: &Map<String, Value>) -> &[Value] {
    body.get("tools")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// An Anthropic error body with its status.
fn error(status: u16, message: &str, request_id: &str) -> Reply {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    };
    let mut body = json!({"type": "error", "error": {"type": kind, "message": message}});
    if !request_id.is_empty() {
        body["request_id"] = json!(request_id);
    }
    Reply::json(code, body)
}

fn invalid(message: &str, request_id: &str) -> Reply {
    error(400, message, request_id)
}

/// The error answer for an injected fault status, as Anthropic words it.
pub fn status_error(status: u16, retry_after: Option<u64>, model: &str) -> Reply {
    let message = match status {
        400 => "Mock-provider injected this client error.".to_string(),
        401 => "invalid x-api-key".into(),
        403 => "Your API key does not have permission to use the specified resource.".into(),
        404 => format!("model: {model}"),
        413 => "Request exceeds the maximum allowed number of bytes.".into(),
        429 => format!(
            "This request would exceed the rate limit for your organization of 50 requests per \
             minute for {model}. For details, refer to: \
             https://docs.claude.com/en/api/rate-limits."
        ),
        529 => "Overloaded".into(),
        504 => "Request timed out.".into(),
        500..=599 => "Internal server error".into(),
        _ => "Mock-provider injected this client error.".into(),
    };
    let reply = error(status, &message, "");
    match retry_after {
        Some(secs) => reply.with_header("retry-after", &secs.to_string()),
        None => reply,
    }
}

/// The prompt's token counts, split the way Anthropic reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Prompt {
    input: u64,
    cache_read: u64,
    cache_write: u64,
    /// The cache writes that asked for the one-hour TTL.
    cache_write_1h: u64,
}

impl Prompt {
    fn of(body: &Map<String, Value>) -> Prompt {
        // Every cacheable segment in prefix order: (tokens, cache_control of its end).
        let mut segments: Vec<(u64, Option<&Value>)> = Vec::new();
        for tool in tools(body) {
            segments.push((1, tool.get("cache_control")));
        }
        match body.get("system") {
            Some(Value::String(s)) => segments.push((tokens::count(s), None)),
            Some(Value::Array(blocks)) => {
                for b in blocks {
                    segments.push((block_tokens(b), b.get("cache_control")));
                }
            }
            _ => {}
        }
        for m in body
            .get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match m.get("content") {
                Some(Value::String(s)) => segments.push((tokens::count(s), None)),
                Some(Value::Array(blocks)) => {
                    for b in blocks {
                        segments.push((block_tokens(b), b.get("cache_control")));
                    }
                }
                _ => {}
            }
        }
        if let (Some(cc), Some(last)) = (body.get("cache_control"), segments.last_mut()) {
            last.1 = Some(cc);
        }
        let mut total = 0;
        let mut first = None;
        let mut last = None;
        for (tokens, cc) in &segments {
            total += tokens;
            if let Some(cc) = cc.filter(|cc| !cc.is_null()) {
                first.get_or_insert(total);
                last = Some((total, cc));
            }
        }
        let Some((last_end, last_cc)) = last else {
            return Prompt {
                input: total,
                ..Prompt::default()
            };
        };
        let first_end = first.unwrap_or(last_end);
        let cache_write = last_end - first_end;
        let one_hour = last_cc.get("ttl").and_then(Value::as_str) == Some("1h");
        Prompt {
            input: total - last_end,
            cache_read: first_end,
            cache_write,
            cache_write_1h: if one_hour { cache_write } else { 0 },
        }
    }

    fn total(&self) -> u64 {
        self.input + self.cache_read + self.cache_write
    }

    /// The full `usage` object with `output` tokens.
    fn usage(&self, output: u64) -> Value {
        json!({
            "input_tokens": self.input,
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_write - self.cache_write_1h,
                "ephemeral_1h_input_tokens": self.cache_write_1h
            },
            "output_tokens": output,
            "service_tier": "standard"
        })
    }
}

/// Tokens of one content block: its text, one per image, and a tool result's content.
fn block_tokens(block: &Value) -> u64 {
    match block.get("type").and_then(Value::as_str) {
        Some("tool_result") => match block.get("content") {
            Some(Value::String(s)) => tokens::count(s),
            Some(content) => {
                let (text, images) = tokens::content_text(content);
                tokens::count(&text) + images
            }
            None => 0,
        },
        _ => {
            let (text, images) = tokens::content_text(&Value::Array(vec![block.clone()]));
            tokens::count(&text) + images
        }
    }
}

/// What the mock "model" decided to say.
#[derive(Clone, Debug, PartialEq)]
enum Answer {
    Text {
        text: String,
        stop_reason: &'static str,
        stop_sequence: Option<String>,
    },
    Tool {
        id: String,
        name: String,
        input: Value,
    },
}

impl Answer {
    fn of(body: &Map<String, Value>, seq: u64) -> Answer {
        let messages = body
            .get("messages")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let last = messages.last();
        let last_is_user = last.and_then(|m| m.get("role")).and_then(Value::as_str) == Some("user");
        let results: Vec<String> = last
            .and_then(|m| m.get("content"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            .map(|b| match b.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(content) => tokens::content_text(content).0,
                None => String::new(),
            })
            .collect();
        let user_text = messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .map(|m| match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(content) => tokens::content_text(content).0,
                None => String::new(),
            })
            .unwrap_or_default();

        if last_is_user && results.is_empty() {
            if let Some(name) = chosen_tool(body) {
                let input = json!({ "input": user_text });
                let seed = tokens::hash64(format!("{seq}/{name}/{input}").as_bytes());
                return Answer::Tool {
                    id: format!("toolu_01{}", tokens::alnum_suffix(seed, 22)),
                    name,
                    input,
                };
            }
        }
        let text = if last_is_user && !results.is_empty() {
            format!("tool said: {}", results.join(" "))
        } else {
            format!("echo: {user_text}")
        };
        let json_mode = body
            .get("output_config")
            .and_then(|c| c.get("format"))
            .or_else(|| body.get("output_format"))
            .is_some_and(|f| !f.is_null());
        let text = if json_mode {
            json!({ "reply": text }).to_string()
        } else {
            text
        };
        let stops: Vec<String> = body
            .get("stop_sequences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let stop = stops
            .iter()
            .filter_map(|s| text.find(s.as_str()).map(|i| (i, s)))
            .min_by_key(|(i, _)| *i);
        let (text, stop_sequence) = match stop {
            Some((i, s)) => (text[..i].to_string(), Some(s.clone())),
            None => (text, None),
        };
        let max = body.get("max_tokens").and_then(Value::as_u64);
        let (text, cut) = openai::apply_max_tokens(&text, max);
        let stop_reason = match (&stop_sequence, cut) {
            (_, true) => "max_tokens",
            (Some(_), false) => "stop_sequence",
            (None, false) => "end_turn",
        };
        Answer::Text {
            text,
            stop_reason,
            stop_sequence: if cut { None } else { stop_sequence },
        }
    }

    fn output_tokens(&self) -> u64 {
        match self {
            Answer::Text { text, .. } => tokens::count(text),
            Answer::Tool { input, .. } => tokens::count(&input.to_string()),
        }
    }

    fn stop(&self) -> (&'static str, Option<&str>) {
        match self {
            Answer::Text {
                stop_reason,
                stop_sequence,
                ..
            } => (stop_reason, stop_sequence.as_deref()),
            Answer::Tool { .. } => ("tool_use", None),
        }
    }

    /// The content block as the final message holds it.
    fn block(&self) -> Value {
        match self {
            Answer::Text { text, .. } => json!({"type": "text", "text": text}),
            Answer::Tool { id, name, input } => {
                json!({"type": "tool_use", "id": id, "name": name, "input": input})
            }
        }
    }
}

/// The tool to call, when the request lets the model call one.
fn chosen_tool(body: &Map<String, Value>) -> Option<String> {
    let first = tools(body)
        .iter()
        .find_map(|t| t.get("name").and_then(Value::as_str))?
        .to_string();
    let choice = body.get("tool_choice");
    match choice.and_then(|c| c.get("type")).and_then(Value::as_str) {
        Some("none") => None,
        Some("tool") => Some(
            choice
                .and_then(|c| c.get("name"))
                .and_then(Value::as_str)
                .map_or(first, str::to_string),
        ),
        _ => Some(first),
    }
}

fn message_id(seq: u64) -> String {
    format!(
        "msg_01{}",
        tokens::alnum_suffix(tokens::hash64(format!("msg/{seq}").as_bytes()), 22)
    )
}

/// The non-streamed `message` object.
fn message(answer: &Answer, prompt: &Prompt, model: &str, seq: u64) -> Value {
    let (stop_reason, stop_sequence) = answer.stop();
    json!({
        "id": message_id(seq),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [answer.block()],
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": prompt.usage(answer.output_tokens())
    })
}

/// The events of a streamed answer, in Anthropic's order.
fn events(answer: &Answer, prompt: &Prompt, model: &str, seq: u64) -> Vec<Value> {
    let output = answer.output_tokens();
    let mut start = message(answer, prompt, model, seq);
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["stop_sequence"] = Value::Null;
    start["usage"] = prompt.usage(output.min(1));
    let mut out = vec![json!({"type": "message_start", "message": start})];
    let (first_block, deltas) = match answer {
        Answer::Text { text, .. } => (
            json!({"type": "text", "text": ""}),
            tokens::pieces(text)
                .into_iter()
                .map(|p| json!({"type": "text_delta", "text": p}))
                .collect::<Vec<_>>(),
        ),
        Answer::Tool { id, name, input } => {
            let text = input.to_string();
            let mut deltas = vec![json!({"type": "input_json_delta", "partial_json": ""})];
            deltas.extend(
                fragments(&text, 4)
                    .into_iter()
                    .map(|f| json!({"type": "input_json_delta", "partial_json": f})),
            );
            (
                json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                deltas,
            )
        }
    };
    out.push(json!({"type": "content_block_start", "index": 0, "content_block": first_block}));
    out.push(json!({"type": "ping"}));
    out.extend(
        deltas
            .into_iter()
            .map(|d| json!({"type": "content_block_delta", "index": 0, "delta": d})),
    );
    out.push(json!({"type": "content_block_stop", "index": 0}));
    let (stop_reason, stop_sequence) = answer.stop();
    out.push(json!({
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
        "usage": {
            "input_tokens": prompt.input,
            "cache_creation_input_tokens": prompt.cache_write,
            "cache_read_input_tokens": prompt.cache_read,
            "output_tokens": output
        }
    }));
    out.push(json!({"type": "message_stop"}));
    out
}

/// Splits `s` into `parts` nearly equal pieces on character boundaries.
fn fragments(s: &str, parts: usize) -> Vec<&str> {
    let starts: Vec<usize> = s.char_indices().map(|(i, _)| i).collect();
    let per = starts.len().div_ceil(parts).max(1);
    let mut out = Vec::new();
    let mut k = 0;
    while k < starts.len() {
        let end = starts.get(k + per).copied().unwrap_or(s.len());
        out.push(&s[starts[k]..end]);
        k += per;
    }
    out
}

/// Renders an Anthropic reply with its wire faults: JSON as every protocol does, streams as
/// named SSE events without a `[DONE]` terminator. Every answer carries Anthropic's
/// `request-id` header.
pub fn render(reply: Reply, shape: &Shape) -> http::Response<Body> {
    let (headers, events) = match reply {
        Reply::Sse { headers, events } => (headers, events),
        json => {
            let mut response = wire::render(json, shape);
            copy_request_id(&mut response);
            return response;
        }
    };
    let mut frames: Vec<Bytes> = events
        .iter()
        .map(|e| {
            let name = e.get("type").and_then(Value::as_str).unwrap_or("message");
            Bytes::from(format!("event: {name}\ndata: {e}\n\n"))
        })
        .collect();
    if shape.malformed {
        // Keep the first event, then one whose JSON is cut short.
        frames.truncate(1);
        frames.push(Bytes::from_static(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\n\n",
        ));
    }
    let cut = shape.cut_after.is_some();
    if let Some(n) = shape.cut_after {
        frames.truncate(n as usize);
    }
    let mut response = Response::new(sse_body(frames, cut, shape.chunk_delay));
    *response.headers_mut() = headers.into_iter().collect();
    let h = response.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(
        HeaderName::from_static("cache-control"),
        HeaderValue::from_static("no-cache"),
    );
    copy_request_id(&mut response);
    response
}

/// Anthropic names its request id header `request-id`; the server stamps `x-request-id`.
fn copy_request_id(response: &mut http::Response<Body>) {
    if let Some(id) = response.headers().get("x-request-id").cloned() {
        response
            .headers_mut()
            .entry(HeaderName::from_static("request-id"))
            .or_insert(id);
    }
}

/// A body yielding `frames` one by one, `gap` apart (or at least yielding to the runtime so
/// each event is flushed on its own), then failing the connection when `cut`.
fn sse_body(frames: Vec<Bytes>, cut: bool, gap: Duration) -> Body {
    let mut steps: Vec<Result<Bytes, ()>> = frames.into_iter().map(Ok).collect();
    if cut {
        steps.push(Err(()));
    }
    let frames = stream::unfold(
        (steps.into_iter(), true),
        move |(mut rest, first)| async move {
            let step = rest.next()?;
            if !first {
                if gap.is_zero() {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(gap).await;
                }
            }
            let item = match step {
                Ok(bytes) => Ok(Frame::data(bytes)),
                Err(()) => Err(BoxError::from("mock-provider: connection cut on purpose")),
            };
            Some((item, (rest, false)))
        },
    );
    StreamBody::new(frames).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn fragments_cover_the_string() {
        let s = r#"{"input":"héllo wörld"}"#;
        let f = fragments(s, 4);
        assert!(f.len() >= 3, "{f:?}");
        assert_eq!(f.concat(), s);
        assert_eq!(fragments("ab", 4).concat(), "ab");
    }

    #[test]
    fn cache_breakpoints_split_the_prompt() {
        let b = body(json!({
            "model": "m", "max_tokens": 5,
            "tools": [{"name": "t", "input_schema": {}}],
            "system": [{"type": "text", "text": "one two three", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "four five", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
                {"role": "user", "content": "six"}
            ]
        }));
        let p = Prompt::of(&b);
        assert_eq!(
            p,
            Prompt {
                input: 1,
                cache_read: 4,
                cache_write: 2,
                cache_write_1h: 2
            }
        );
        assert_eq!(p.total(), 7);
        let plain = body(json!({"messages": [{"role": "user", "content": "a b"}]}));
        assert_eq!(Prompt::of(&plain).input, 2);
    }

    #[test]
    fn server_tool_types() {
        assert!(is_server_tool("web_search_20250305"));
        assert!(!is_server_tool("function"));
        assert!(!is_server_tool("web_search_2025"));
    }

    #[test]
    fn stop_sequences_and_max_tokens() {
        let b = body(json!({"max_tokens": 100, "stop_sequences": ["d"],
            "messages": [{"role": "user", "content": "a b c d"}]}));
        assert_eq!(
            Answer::of(&b, 1),
            Answer::Text {
                text: "echo: a b c ".into(),
                stop_reason: "stop_sequence",
                stop_sequence: Some("d".into())
            }
        );
        let b =
            body(json!({"max_tokens": 2, "messages": [{"role": "user", "content": "a b c d"}]}));
        assert!(matches!(
            Answer::of(&b, 1),
            Answer::Text {
                stop_reason: "max_tokens",
                ..
            }
        ));
    }
}
