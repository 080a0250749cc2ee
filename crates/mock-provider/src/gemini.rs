//! Google Gemini (Google AI `generativelanguage`): `POST /v1beta/models/{model}:generateContent`
//! and `:streamGenerateContent` (`?alt=sse` for server-sent events, else one JSON array of
//! chunks), authenticated by `x-goog-api-key` or `?key=`, errors in Google's shape.
//!
//! References followed: the Gemini API reference (`models.generateContent`,
//! `GenerateContentResponse`, `Candidate`, `UsageMetadata`, `FinishReason`), Google's error body
//! `{"error": {"code", "message", "status", "details"}}` with the messages Google sends, quoted
//! verbatim in public issues (400 `API key not valid. Please pass a valid API key.` with an
//! `API_KEY_INVALID` `ErrorInfo`; 403 for a call without a key; 429 `RESOURCE_EXHAUSTED`; 503
//! `The model is overloaded.`), and Google's SSE framing: `data: {chunk}\r\n\r\n`, no `[DONE]`.
//!
//! The answer follows the OpenAI emulation's rules: `echo: <last user text>`; a call of the
//! first declared function (or the one `allowedFunctionNames` names) with args
//! `{"input": "<last user text>"}` when tools are declared, the mode is not `NONE` and the last
//! turn is the user's; `tool said: <responses>` after function responses; `{"reply": ...}` in
//! JSON mode; `stopSequences` cut, `maxOutputTokens` keeps that many words (`MAX_TOKENS`);
//! `candidateCount` candidates; words are tokens. This module must not do IO; [`render`] only
//! builds the response body (pacing and cuts happen as the body is sent).

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Map, Value};

use crate::faults;
use crate::openai::{self, Call, Outcome};
use crate::tokens;
use crate::wire::{self, Body, BoxError, Headers, Reply, Shape};

/// The Gemini endpoints the mock serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Generate,
    Stream,
}

/// Maps `POST /v1beta/models/{model}:{method}` (or `/v1/...`) to the model and endpoint.
pub fn route(method: &Method, path: &str) -> Option<(String, Endpoint)> {
    if method != Method::POST {
        return None;
    }
    let rest = path
        .strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))?;
    let (model, op) = rest.rsplit_once(':')?;
    let endpoint = match op {
        "generateContent" => Endpoint::Generate,
        "streamGenerateContent" => Endpoint::Stream,
        _ => return None,
    };
    (!model.is_empty() && !model.contains('/')).then(|| (model.to_string(), endpoint))
}

/// Serves one request after routing: auth, validation, then the answer.
pub fn serve(raw_model: &str, endpoint: &Endpoint, call: &Call<'_>) -> Outcome {
    if let Some(expected) = call.api_key {
        let presented = call
            .headers
            .get("x-goog-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| query_param(call.query, "key"));
        match presented {
            Some(key) if key == expected => {}
            Some(_) => return Outcome::plain(invalid_key()),
            None => {
                return Outcome::plain(error(
                    StatusCode::FORBIDDEN,
                    "Method doesn't allow unregistered callers (callers without established \
                     identity). Please use API Key or other form of API consumer identity to call \
                     this API.",
                ))
            }
        }
    }
    let (model, plan) = match faults::parse_model(raw_model) {
        Ok(parsed) => parsed,
        Err(message) => return Outcome::plain(error(StatusCode::BAD_REQUEST, &message)),
    };
    let reply = match call.body.and_then(Value::as_object) {
        None => error(
            StatusCode::BAD_REQUEST,
            "Invalid JSON payload received. Expected a JSON object.",
        ),
        Some(body) => {
            let sse = query_param(call.query, "alt").as_deref() == Some("sse");
            respond(body, &model, call.seq, endpoint, sse).unwrap_or_else(|reply| reply)
        }
    };
    Outcome { reply, plan, model }
}

/// Google's error body for `status`.
pub fn error(status: StatusCode, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": {"code": status.as_u16(), "message": message, "status": status_name(status.as_u16())}}),
    )
}

fn status_name(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        402..=499 => "FAILED_PRECONDITION",
        _ => "INTERNAL",
    }
}

fn invalid_key() -> Reply {
    let message = "API key not valid. Please pass a valid API key.";
    Reply::json(
        StatusCode::BAD_REQUEST,
        json!({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT", "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
             "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message}
        ]}}),
    )
}

/// The error answer for an injected fault status, as Google words it.
pub fn status_error(status: u16, retry_after: Option<u64>, model: &str) -> Reply {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reply = match status {
        400 => invalid_key(),
        404 => error(
            code,
            &format!(
                "models/{model} is not found for API version v1beta, or is not supported for \
                 generateContent. Call ListModels to see the list of available models and their \
                 supported methods."
            ),
        ),
        429 => error(code, "Resource has been exhausted (e.g. check quota)."),
        503 => error(code, "The model is overloaded. Please try again later."),
        500..=599 => error(
            code,
            "An internal error has occurred. Please retry or report in \
             https://developers.generativeai.google/guide/troubleshooting",
        ),
        _ => error(code, "Mock-provider injected this client error."),
    };
    match retry_after {
        Some(secs) => reply.with_header("retry-after", &secs.to_string()),
        None => reply,
    }
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// What the mock "model" says in each candidate.
#[derive(Clone, Debug, PartialEq)]
enum Answer {
    Text { text: String, finish: &'static str },
    Call { name: String, args: Value },
}

impl Answer {
    fn tokens(&self) -> u64 {
        match self {
            Answer::Text { text, .. } => tokens::count(text),
            Answer::Call { args, .. } => tokens::count(&args.to_string()),
        }
    }
}

fn respond(
    body: &Map<String, Value>,
    model: &str,
    seq: u64,
    endpoint: &Endpoint,
    sse: bool,
) -> Result<Reply, Reply> {
    let contents = match body.get("contents") {
        Some(Value::Array(c)) if !c.is_empty() => c,
        _ => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "* GenerateContentRequest.contents: contents is not specified\n",
            ))
        }
    };
    let config = body.get("generationConfig").cloned().unwrap_or(Value::Null);
    let n = config
        .get("candidateCount")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    if !(1..=8).contains(&n) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "* GenerateContentRequest.generation_config.candidate_count: must be between 1 and 8\n",
        ));
    }
    let functions: Vec<&Value> = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("functionDeclarations").and_then(Value::as_array))
        .flatten()
        .collect();
    let prompt = prompt_tokens(body) + functions.len() as u64;
    let answer = answer(body, contents, &functions, &config);
    let output = answer.tokens() * n;
    let usage = json!({
        "promptTokenCount": prompt,
        "candidatesTokenCount": output,
        "totalTokenCount": prompt + output,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]
    });
    let response_id = format!("mock{:020}", seq);
    let chunk = |candidates: Value, usage: Value| json!({"candidates": candidates, "usageMetadata": usage, "modelVersion": model, "responseId": response_id});
    let candidate = |i: u64, parts: Value, finish: Option<&str>| {
        let mut c = json!({"content": {"parts": parts, "role": "model"}, "index": i});
        if let Some(f) = finish {
            c["finishReason"] = json!(f);
        }
        c
    };
    let finish = match &answer {
        Answer::Text { finish, .. } => *finish,
        Answer::Call { .. } => "STOP",
    };
    if *endpoint == Endpoint::Generate {
        let parts = match &answer {
            Answer::Text { text, .. } => json!([{"text": text}]),
            Answer::Call { name, args } => json!([{"functionCall": {"name": name, "args": args}}]),
        };
        let candidates: Vec<Value> = (0..n)
            .map(|i| candidate(i, parts.clone(), Some(finish)))
            .collect();
        return Ok(Reply::json(StatusCode::OK, chunk(json!(candidates), usage)));
    }
    // A stream: text word by word, a function call whole; the last chunk carries the finish
    // reason and the full usage, the others the prompt count only (as Gemini sends them).
    let interim = json!({"promptTokenCount": prompt, "totalTokenCount": prompt});
    let steps: Vec<Value> = match &answer {
        Answer::Text { text, .. } => tokens::pieces(text)
            .into_iter()
            .map(|p| json!([{"text": p}]))
            .collect(),
        Answer::Call { name, args } => {
            vec![json!([{"functionCall": {"name": name, "args": args}}])]
        }
    };
    let steps = if steps.is_empty() {
        vec![json!([{"text": ""}])]
    } else {
        steps
    };
    let last = steps.len() - 1;
    let chunks: Vec<Value> = steps
        .iter()
        .enumerate()
        .map(|(k, parts)| {
            let done = k == last;
            let candidates: Vec<Value> = (0..n)
                .map(|i| candidate(i, parts.clone(), done.then_some(finish)))
                .collect();
            chunk(
                json!(candidates),
                if done { usage.clone() } else { interim.clone() },
            )
        })
        .collect();
    Ok(if sse {
        Reply::sse(chunks)
    } else {
        Reply::json(StatusCode::OK, Value::Array(chunks))
    })
}

fn texts(parts: &Value) -> Vec<&str> {
    parts
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect()
}

/// The text a function response stands for: its `output` (or `result`, `content`) string, else
/// its JSON.
fn response_text(response: &Value) -> String {
    ["output", "result", "content"]
        .iter()
        .find_map(|k| response.get(*k).and_then(Value::as_str))
        .map_or_else(|| response.to_string(), str::to_string)
}

fn answer(
    body: &Map<String, Value>,
    contents: &[Value],
    functions: &[&Value],
    config: &Value,
) -> Answer {
    let last = contents.last();
    let last_parts = last.and_then(|c| c.get("parts")).unwrap_or(&Value::Null);
    let responses: Vec<String> = last_parts
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("functionResponse"))
        .map(|r| response_text(r.get("response").unwrap_or(&Value::Null)))
        .collect();
    let last_is_user = last
        .and_then(|c| c.get("role"))
        .and_then(Value::as_str)
        .is_none_or(|r| r == "user");
    let user_text = contents
        .iter()
        .rev()
        .filter(|c| {
            c.get("role")
                .and_then(Value::as_str)
                .is_none_or(|r| r == "user")
        })
        .map(|c| texts(c.get("parts").unwrap_or(&Value::Null)))
        .find(|t| !t.is_empty())
        .map(|t| t.join(" "))
        .unwrap_or_default();

    if last_is_user && responses.is_empty() {
        let calling = body
            .get("toolConfig")
            .and_then(|t| t.get("functionCallingConfig"));
        let mode = calling
            .and_then(|c| c.get("mode"))
            .and_then(Value::as_str)
            .unwrap_or("AUTO");
        let named = calling
            .and_then(|c| c.get("allowedFunctionNames"))
            .and_then(Value::as_array)
            .and_then(|n| n.first())
            .and_then(Value::as_str);
        let first = functions
            .first()
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str);
        if mode != "NONE" {
            if let Some(name) = named.or(first) {
                return Answer::Call {
                    name: name.to_string(),
                    args: json!({ "input": user_text }),
                };
            }
        }
    }
    let text = if responses.is_empty() {
        format!("echo: {user_text}")
    } else {
        format!("tool said: {}", responses.join(" "))
    };
    let text = if config.get("responseMimeType").and_then(Value::as_str) == Some("application/json")
    {
        json!({ "reply": text }).to_string()
    } else {
        text
    };
    let stops: Vec<String> = config
        .get("stopSequences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let text = openai::apply_stop(&text, &stops);
    let max = config.get("maxOutputTokens").and_then(Value::as_u64);
    let (text, cut) = openai::apply_max_tokens(&text, max);
    Answer::Text {
        text,
        finish: if cut { "MAX_TOKENS" } else { "STOP" },
    }
}

/// Prompt tokens: the words of every text part (system instruction included), one per inline
/// or file part, and the words of function calls' args and function responses.
fn prompt_tokens(body: &Map<String, Value>) -> u64 {
    let mut parts: Vec<&Value> = Vec::new();
    if let Some(p) = body
        .get("systemInstruction")
        .and_then(|s| s.get("parts"))
        .and_then(Value::as_array)
    {
        parts.extend(p);
    }
    for content in body
        .get("contents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        parts.extend(
            content
                .get("parts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
    }
    parts
        .iter()
        .map(|p| {
            if let Some(t) = p.get("text").and_then(Value::as_str) {
                tokens::count(t)
            } else if let Some(c) = p.get("functionCall") {
                tokens::count(&c.get("args").unwrap_or(&Value::Null).to_string())
            } else if let Some(r) = p.get("functionResponse") {
                tokens::count(&response_text(r.get("response").unwrap_or(&Value::Null)))
            } else if p.get("inlineData").is_some() || p.get("fileData").is_some() {
                1
            } else {
                0
            }
        })
        .sum()
}

/// Renders a Gemini reply: JSON as `wire` renders it; a stream as Google frames it,
/// `data: {chunk}\r\n\r\n` with no end marker, with the wire faults applied.
pub fn render(reply: Reply, shape: &Shape) -> Response<Body> {
    match reply {
        Reply::Sse { headers, events } => {
            let frames = events
                .iter()
                .map(|e| Bytes::from(format!("data: {e}\r\n\r\n")))
                .collect();
            let malformed = Bytes::from_static(
                b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \r\n\r\n",
            );
            framed_stream("text/event-stream", headers, frames, malformed, shape)
        }
        json => wire::render(json, shape),
    }
}

/// One piece of a streamed body: bytes, or the point where the connection is cut.
enum Step {
    Data(Bytes),
    Cut,
}

/// A 200 response streaming pre-framed events with the faults `wire.rs` applies to SSE:
/// `malformed` keeps the first frame and then sends `malformed`, `cut_after` sends that many
/// frames and aborts, `chunk_delay` paces the frames. Shared by the Gemini and Bedrock
/// emulations, whose frames are not OpenAI's `data:` lines.
pub fn framed_stream(
    content_type: &'static str,
    headers: Headers,
    mut frames: Vec<Bytes>,
    malformed: Bytes,
    shape: &Shape,
) -> Response<Body> {
    if shape.malformed {
        frames.truncate(1);
        frames.push(malformed);
    }
    let mut steps: Vec<Step> = frames.into_iter().map(Step::Data).collect();
    if let Some(n) = shape.cut_after {
        steps.truncate(n as usize);
        steps.push(Step::Cut);
    }
    let gap = shape.chunk_delay;
    let body = stream::unfold(
        (steps.into_iter(), true),
        move |(mut rest, first)| async move {
            let step = rest.next()?;
            if !first {
                pause(gap).await;
            }
            let item = match step {
                Step::Data(bytes) => Ok(Frame::data(bytes)),
                Step::Cut => Err(BoxError::from("mock-provider: connection cut on purpose")),
            };
            Some((item, (rest, false)))
        },
    );
    let mut response = Response::new(StreamBody::new(body).boxed_unsync());
    *response.headers_mut() = headers.into_iter().collect();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Waits between frames, or at least yields so each frame is flushed on its own.
async fn pause(gap: Duration) {
    if gap.is_zero() {
        tokio::task::yield_now().await;
    } else {
        tokio::time::sleep(gap).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route(
                &Method::POST,
                "/v1beta/models/gemini-2.0-flash:generateContent"
            ),
            Some(("gemini-2.0-flash".into(), Endpoint::Generate))
        );
        assert_eq!(
            route(
                &Method::POST,
                "/v1beta/models/m+status=503:streamGenerateContent"
            ),
            Some(("m+status=503".into(), Endpoint::Stream))
        );
        assert_eq!(
            route(&Method::GET, "/v1beta/models/m:generateContent"),
            None
        );
        assert_eq!(route(&Method::POST, "/v1beta/models/m:embedContent"), None);
    }
}
