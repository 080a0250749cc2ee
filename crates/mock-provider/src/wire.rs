//! Turns a protocol's answer ([`Reply`]) into bytes on the wire, with the wire-level faults
//! (malformed body, cut stream, slow chunks) applied.
//!
//! Reference: server-sent events framing as OpenAI streams it — each event is
//! `data: {json}\n\n` and the stream ends with `data: [DONE]\n\n`, content type
//! `text/event-stream` (OpenAI API reference, "Streaming" / `stream` parameter; the
//! `openai-python` SDK's `_streaming.py` stops at `[DONE]`). This module knows no provider
//! fields: it must not look inside the JSON it frames.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::Value;

/// The error type of response bodies; yielding one aborts the connection mid-body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response the mock sends.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Extra response headers (kept as a list so a [`Reply`] stays small).
pub type Headers = Vec<(HeaderName, HeaderValue)>;

/// What a protocol handler answers, before wire faults are applied.
#[derive(Debug)]
pub enum Reply {
    /// One JSON document.
    Json {
        status: StatusCode,
        headers: Headers,
        body: Value,
    },
    /// A 200 server-sent-events stream of JSON events, terminated by `data: [DONE]`.
    Sse {
        headers: Headers,
        events: Vec<Value>,
    },
}

impl Reply {
    pub fn json(status: StatusCode, body: Value) -> Reply {
        Reply::Json {
            status,
            headers: Headers::new(),
            body,
        }
    }

    pub fn sse(events: Vec<Value>) -> Reply {
        Reply::Sse {
            headers: Headers::new(),
            events,
        }
    }

    /// Adds a header; values that are not valid header text are skipped.
    pub fn with_header(mut self, name: &'static str, value: &str) -> Reply {
        if let Ok(value) = HeaderValue::from_str(value) {
            let headers = match &mut self {
                Reply::Json { headers, .. } | Reply::Sse { headers, .. } => headers,
            };
            let name = HeaderName::from_static(name);
            headers.retain(|(n, _)| *n != name);
            headers.push((name, value));
        }
        self
    }
}

/// Wire-level faults for one response.
#[derive(Clone, Debug, Default)]
pub struct Shape {
    pub chunk_delay: Duration,
    pub cut_after: Option<u32>,
    pub malformed: bool,
}

/// One piece of a response body: bytes to send, or the point where the connection is cut.
enum Step {
    Data(Bytes),
    Cut,
}

/// The bytes of a body that is not valid JSON: a chat completion object cut mid-string.
const MALFORMED: &str =
    "{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion\",\"choices\":[{\"mes";

/// Renders a reply with its wire faults.
pub fn render(reply: Reply, shape: &Shape) -> Response<Body> {
    match reply {
        Reply::Json {
            status,
            headers,
            body,
        } => render_json(status, headers, &body, shape),
        Reply::Sse { headers, events } => render_sse(headers, events, shape),
    }
}

fn header_map(headers: Headers) -> HeaderMap {
    headers.into_iter().collect()
}

fn render_json(
    status: StatusCode,
    headers: Headers,
    body: &Value,
    shape: &Shape,
) -> Response<Body> {
    let text = if shape.malformed {
        MALFORMED.to_string()
    } else {
        body.to_string()
    };
    let full_len = text.len();
    let steps = match shape.cut_after {
        Some(_) => {
            let mut half = full_len / 2;
            while !text.is_char_boundary(half) {
                half -= 1;
            }
            vec![Step::Data(Bytes::from(text[..half].to_string())), Step::Cut]
        }
        None => vec![Step::Data(Bytes::from(text))],
    };
    let status = if shape.malformed {
        StatusCode::OK
    } else {
        status
    };
    let mut response = Response::new(body_of(steps, Duration::ZERO));
    *response.status_mut() = status;
    *response.headers_mut() = header_map(headers);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(full_len));
    response
}

fn render_sse(headers: Headers, events: Vec<Value>, shape: &Shape) -> Response<Body> {
    let mut frames: Vec<Bytes> = events
        .iter()
        .map(|e| Bytes::from(format!("data: {e}\n\n")))
        .collect();
    if shape.malformed {
        // Keep the first event, then one `data:` line whose JSON is cut short.
        frames.truncate(1);
        frames.push(Bytes::from_static(
            b"data: {\"id\":\"chatcmpl-mock\",\"choices\":[{\"delta\":{\"content\":\n\n",
        ));
    }
    let mut steps: Vec<Step> = frames.into_iter().map(Step::Data).collect();
    match shape.cut_after {
        Some(n) => {
            steps.truncate(n as usize);
            steps.push(Step::Cut);
        }
        None => steps.push(Step::Data(Bytes::from_static(b"data: [DONE]\n\n"))),
    }
    let mut response = Response::new(body_of(steps, shape.chunk_delay));
    *response.headers_mut() = header_map(headers);
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(
        HeaderName::from_static("cache-control"),
        HeaderValue::from_static("no-cache"),
    );
    response
}

/// A body that yields its steps one by one, pausing `gap` between them (or at least
/// yielding to the runtime, so hyper flushes each event on its own).
fn body_of(steps: Vec<Step>, gap: Duration) -> Body {
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
                Step::Data(bytes) => Ok(Frame::data(bytes)),
                Step::Cut => Err(BoxError::from("mock-provider: connection cut on purpose")),
            };
            Some((item, (rest, false)))
        },
    );
    StreamBody::new(frames).boxed_unsync()
}
