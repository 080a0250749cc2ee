//! The OpenAI API surface: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`,
//! `/v1/models`, and OpenAI's error objects. The Azure flavour (`azure.rs`) reuses the bodies
//! built here.
//!
//! References followed:
//! * OpenAI API reference, "The chat completion object" / "The chat completion chunk object"
//!   and the `openai-python` SDK types `types/chat/chat_completion.py`,
//!   `chat_completion_chunk.py`, `chat_completion_message.py`, `completion_usage.py`,
//!   `completion.py`, `completion_choice.py`, `create_embedding_response.py`, `embedding.py`,
//!   `model.py`, and `resources/embeddings.py` (base64 = little-endian `float32`).
//! * Error object `{"error": {"message", "type", "param", "code"}}` and the messages OpenAI
//!   sends, taken from OpenAI's "Error codes" guide and from error bodies quoted verbatim in
//!   public issue threads (429 `type: "requests"`, `code: "rate_limit_exceeded"`;
//!   500/503 `type: "server_error"`; 401 `code: "invalid_api_key"`; invalid JSON,
//!   missing `model` / `messages`, unrecognized argument, `stream_options` without `stream`).
//!
//! This module must not do IO or apply faults: it turns a parsed request into a [`Reply`].

pub mod chat;
pub mod embeddings;
pub mod legacy;
pub mod models;

use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::faults::{self, Plan};
use crate::wire::Reply;

/// Which provider's dialect of the OpenAI format to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    OpenAi,
    Azure,
}

/// The OpenAI endpoints the mock serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    ListModels,
    GetModel(String),
}

/// Facts about the answer being built that do not come from the request body.
#[derive(Clone, Debug)]
pub struct Meta {
    /// A per-server sequence number, used to make ids unique and deterministic.
    pub seq: u64,
    /// Unix seconds.
    pub created: u64,
    /// The model name to echo (directives stripped; Azure: the deployment's model).
    pub model: String,
    pub flavor: Flavor,
}

/// A handler's answer plus the faults the request's model directives asked for.
#[derive(Debug)]
pub struct Outcome {
    pub reply: Reply,
    pub plan: Plan,
    /// The base model name, for error messages that mention it.
    pub model: String,
}

impl Outcome {
    /// An answer with no faults, typically an error found before the model was known.
    pub fn plain(reply: Reply) -> Outcome {
        Outcome {
            reply,
            plan: Plan::default(),
            model: String::new(),
        }
    }
}

/// Maps a method and path under `/v1` to an endpoint.
pub fn route(method: &Method, path: &str) -> Option<Endpoint> {
    let path = path.trim_end_matches('/');
    match (method, path) {
        (&Method::POST, "/v1/chat/completions") => Some(Endpoint::Chat),
        (&Method::POST, "/v1/completions") => Some(Endpoint::Completions),
        (&Method::POST, "/v1/embeddings") => Some(Endpoint::Embeddings),
        (&Method::GET, "/v1/models") => Some(Endpoint::ListModels),
        (&Method::GET, p) => p
            .strip_prefix("/v1/models/")
            .filter(|id| !id.is_empty())
            .map(|id| Endpoint::GetModel(id.to_string())),
        _ => None,
    }
}

/// One request as the protocol handlers see it.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    /// The body parsed as JSON; `None` when it is empty or not JSON.
    pub body: Option<&'a Value>,
    /// The key clients must present, when the server was started with one.
    pub api_key: Option<&'a str>,
    pub seq: u64,
    pub created: u64,
}

/// Serves one OpenAI request (`/v1/...`) after routing: auth, validation, then the answer.
pub fn serve(endpoint: Endpoint, call: &Call<'_>) -> Outcome {
    if let Some(expected) = call.api_key {
        if let Err(reply) = check_bearer(call.headers, expected) {
            return Outcome::plain(reply);
        }
    }
    match endpoint {
        Endpoint::ListModels => Outcome::plain(models::list()),
        Endpoint::GetModel(id) => Outcome::plain(models::retrieve(&id)),
        Endpoint::Chat | Endpoint::Completions | Endpoint::Embeddings => {
            let body = match parse_object(call.body) {
                Ok(b) => b,
                Err(reply) => return Outcome::plain(reply),
            };
            let raw_model = match required_model(body) {
                Ok(m) => m,
                Err(reply) => return Outcome::plain(reply),
            };
            generate(&endpoint, body, raw_model, Flavor::OpenAi, call)
        }
    }
}

/// Splits directives off `raw_model` and builds the answer for a generating endpoint.
pub fn generate(
    endpoint: &Endpoint,
    body: &Map<String, Value>,
    raw_model: &str,
    flavor: Flavor,
    call: &Call<'_>,
) -> Outcome {
    let (model, plan) = match faults::parse_model(raw_model) {
        Ok(parsed) => parsed,
        Err(message) => {
            return Outcome::plain(error(
                StatusCode::BAD_REQUEST,
                &message,
                "invalid_request_error",
                Some("model"),
                None,
            ))
        }
    };
    let meta = Meta {
        seq: call.seq,
        created: call.created,
        model: model.clone(),
        flavor,
    };
    let result = match endpoint {
        Endpoint::Chat => chat::respond(body, &meta),
        Endpoint::Completions => legacy::respond(body, &meta),
        Endpoint::Embeddings => embeddings::respond(body, &meta),
        Endpoint::ListModels | Endpoint::GetModel(_) => Ok(models::list()),
    };
    let reply = result.unwrap_or_else(|reply| reply);
    Outcome { reply, plan, model }
}

/// Requires `Authorization: Bearer <expected>`; the error never echoes the presented key.
fn check_bearer(headers: &HeaderMap, expected: &str) -> Result<(), Reply> {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim());
    match presented {
        Some(key) if key == expected => Ok(()),
        Some(key) if !key.is_empty() => Err(error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided. You can find your API key at \
             https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        )),
        _ => Err(error(
            StatusCode::UNAUTHORIZED,
            "You didn't provide an API key. You need to provide your API key in an \
             Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or \
             as the password field (with blank username) if you're accessing the API from your \
             browser and are prompted for a username and password. You can obtain an API key \
             from https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        )),
    }
}

/// The body as a JSON object, or OpenAI's 400 for a body it cannot parse.
pub fn parse_object(body: Option<&Value>) -> Result<&Map<String, Value>, Reply> {
    body.and_then(Value::as_object).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request. (HINT: This likely means you \
             aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, \
             but what was sent was not valid JSON. If you have trouble figuring out how to fix \
             this, please contact us through our help center at help.openai.com.)",
            "invalid_request_error",
            None,
            None,
        )
    })
}

/// The body's `model`, or OpenAI's 400 when it is missing.
pub fn required_model(body: &Map<String, Value>) -> Result<&str, Reply> {
    match body.get("model").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => Ok(m),
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            "you must provide a model parameter",
            "invalid_request_error",
            None,
            None,
        )),
    }
}

/// An OpenAI error object: `{"error": {"message", "type", "param", "code"}}`.
pub fn error(
    status: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Reply {
    Reply::json(
        status,
        json!({"error": {"message": message, "type": kind, "param": param, "code": code}}),
    )
}

/// A 400 for a required parameter that is missing.
pub fn missing(param: &str) -> Reply {
    error(
        StatusCode::BAD_REQUEST,
        &format!("Missing required parameter: '{param}'."),
        "invalid_request_error",
        Some(param),
        Some("missing_required_parameter"),
    )
}

/// A 400 for a parameter whose value is wrong.
pub fn invalid(param: &str, message: &str, code: Option<&str>) -> Reply {
    error(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        Some(param),
        code,
    )
}

/// Rejects body keys OpenAI does not know, as OpenAI does.
pub fn reject_unknown(body: &Map<String, Value>, known: &[&str]) -> Result<(), Reply> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(error(
            StatusCode::BAD_REQUEST,
            &format!("Unrecognized request argument supplied: {key}"),
            "invalid_request_error",
            None,
            None,
        )),
        None => Ok(()),
    }
}

/// OpenAI's answer to a prompt longer than the model's context window.
pub fn context_length_error() -> Reply {
    error(
        StatusCode::BAD_REQUEST,
        "This model's maximum context length is 8192 tokens. However, your messages resulted in \
         9000 tokens. Please reduce the length of the messages.",
        "invalid_request_error",
        Some("messages"),
        Some("context_length_exceeded"),
    )
}

/// The error answer for an injected fault status, as OpenAI words it.
pub fn status_error(status: u16, retry_after: Option<u64>, model: &str) -> Reply {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let wait = retry_after.unwrap_or(1);
    let reply = match status {
        401 => error(
            code,
            "Incorrect API key provided. You can find your API key at \
             https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        ),
        404 => error(
            code,
            &format!("The model `{model}` does not exist or you do not have access to it."),
            "invalid_request_error",
            None,
            Some("model_not_found"),
        ),
        429 => error(
            code,
            &format!(
                "Rate limit reached for {model} in organization org-mock on requests per min \
                 (RPM): Limit 3, Used 3, Requested 1. Please try again in {wait}s. Visit \
                 https://platform.openai.com/account/rate-limits to learn more."
            ),
            "requests",
            None,
            Some("rate_limit_exceeded"),
        ),
        503 => error(
            code,
            "That model is currently overloaded with other requests. You can retry your \
             request, or contact us through our help center at help.openai.com if the error \
             persists.",
            "server_error",
            None,
            None,
        ),
        500..=599 => error(
            code,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        ),
        _ => error(
            code,
            "Mock-provider injected this client error.",
            "invalid_request_error",
            None,
            None,
        ),
    };
    match retry_after {
        Some(secs) => reply.with_header("retry-after", &secs.to_string()),
        None => reply,
    }
}

/// OpenAI's answer for a path it does not serve.
pub fn not_found(method: &Method, path: &str) -> Reply {
    error(
        StatusCode::NOT_FOUND,
        &format!("Invalid URL ({method} {path})"),
        "invalid_request_error",
        None,
        None,
    )
}

/// The `usage` object of chat completions, details included (OpenAI always sends them).
pub fn usage(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

/// `stop` as a list: a string, an array of strings, or nothing.
pub fn stop_sequences(body: &Map<String, Value>) -> Vec<String> {
    match body.get("stop") {
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Validates `n` (1..=128) and returns it; absent or `null` means 1.
pub fn choice_count(body: &Map<String, Value>) -> Result<u64, Reply> {
    let n = match body.get("n") {
        None | Some(Value::Null) => return Ok(1),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| invalid("n", "Invalid type for 'n': expected an integer.", None))?,
    };
    if n < 1 {
        return Err(invalid(
            "n",
            &format!("Invalid 'n': integer below minimum value. Expected a value >= 1, but got {n} instead."),
            Some("integer_below_min_value"),
        ));
    }
    if n > 128 {
        return Err(invalid(
            "n",
            &format!("Invalid 'n': integer above maximum value. Expected a value <= 128, but got {n} instead."),
            Some("integer_above_max_value"),
        ));
    }
    Ok(n as u64)
}

/// Streaming switches: `(stream, include_usage)`; `stream_options` without `stream` is a 400,
/// as OpenAI answers it.
pub fn stream_flags(body: &Map<String, Value>) -> Result<(bool, bool), Reply> {
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let options = body.get("stream_options").filter(|v| !v.is_null());
    if options.is_some() && !stream {
        return Err(invalid(
            "stream_options",
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            None,
        ));
    }
    let include_usage = options
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok((stream, include_usage))
}

/// Cuts `text` at the earliest stop sequence, if any occurs.
pub fn apply_stop(text: &str, stops: &[String]) -> String {
    let cut = stops.iter().filter_map(|s| text.find(s.as_str())).min();
    match cut {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// Keeps at most `max` words of `text`; returns the text and whether it was cut.
pub fn apply_max_tokens(text: &str, max: Option<u64>) -> (String, bool) {
    let pieces = crate::tokens::pieces(text);
    match max {
        Some(max) if (pieces.len() as u64) > max => (pieces[..max as usize].concat(), true),
        _ => (text.to_string(), false),
    }
}
