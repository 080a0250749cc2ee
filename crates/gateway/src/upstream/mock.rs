//! The built-in `mock` provider: deterministic answers produced in-process, for demos and load
//! tests, with configurable latency, failure rate and stream pacing.
//!
//! What it answers is `providers::mock`'s business (rendered in OpenAI's format, as a real
//! upstream would send it); this module adds the IO around it.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http::StatusCode;
use providers::canonical::StreamEvent;
use providers::openai::peek::Endpoint;
use providers::{mock, openai};
use serde_json::{json, Value};

use super::body::Paced;
use super::{Call, Failure, UpstreamBody};
use crate::config::{Mock, Target};

pub async fn call(
    m: &Mock,
    target: &Target,
    call: &Call<'_>,
    timeout: Duration,
) -> Result<(http::Response<UpstreamBody>, Option<Bytes>), Failure> {
    if !m.latency.is_zero() {
        if m.latency > timeout {
            tokio::time::sleep(timeout).await;
            return Err(Failure::Timeout);
        }
        tokio::time::sleep(m.latency).await;
    }
    if m.failure_rate > 0.0 && fastrand::f64() < m.failure_rate {
        return Err(Failure::Status {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            retry_after: None,
            message: Some("The mock provider failed on purpose (failure_rate).".into()),
            code: None,
            param: None,
        });
    }
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let body = match call.endpoint {
        Endpoint::Chat => {
            let mut req = match call.canonical() {
                Ok(r) => r.clone(),
                Err(Failure::Unsupported(m, _)) => return Err(invalid(m)),
                Err(f) => return Err(f),
            };
            req.model.clear();
            req.model.push_str(&target.model);
            if call.stream {
                let mut events = mock::stream(&req, m.chunk_words);
                for e in &mut events {
                    if let StreamEvent::Start { created: c, .. } = e {
                        *c = created;
                    }
                }
                let mut encoder = openai::stream::Encoder::new(true);
                let mut chunks = VecDeque::with_capacity(events.len() + 1);
                for e in &events {
                    let mut out = Vec::new();
                    encoder.encode(e, &mut out);
                    if !out.is_empty() {
                        chunks.push_back(Bytes::from(out));
                    }
                }
                let mut out = Vec::new();
                encoder.finish(&mut out);
                chunks.push_back(Bytes::from(out));
                let body = UpstreamBody::Paced(Paced::new(chunks, m.chunk_delay, None));
                return Ok((event_stream(body), None));
            }
            let mut resp = mock::answer(&req);
            resp.created = created;
            openai::response::render(&resp)
        }
        Endpoint::Completions => completion(call.body, &target.model, created, call.stream)?,
        Endpoint::Embeddings => embeddings(call.body, &target.model)?,
    };
    let mut resp = http::Response::new(UpstreamBody::Full(Some(Bytes::from(body))));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok((resp, None))
}

fn invalid(message: String) -> Failure {
    Failure::Status {
        status: StatusCode::BAD_REQUEST,
        retry_after: None,
        message: Some(message),
        code: None,
        param: None,
    }
}

fn event_stream(body: UpstreamBody) -> http::Response<UpstreamBody> {
    let mut resp = http::Response::new(body);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    resp
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Legacy completions: the reply is `echo: <prompt>` (the first prompt when several).
fn completion(body: &[u8], model: &str, created: u64, stream: bool) -> Result<Vec<u8>, Failure> {
    let v: Value = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    let prompt = match &v["prompt"] {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .first()
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    };
    let text = format!("echo: {prompt}");
    let usage = json!({
        "prompt_tokens": words(&prompt),
        "completion_tokens": words(&text),
        "total_tokens": words(&prompt) + words(&text),
    });
    let id = format!("cmpl-mock-{:016x}", fastrand::u64(..));
    if !stream {
        let out = json!({
            "id": id, "object": "text_completion", "created": created, "model": model,
            "choices": [{ "text": text, "index": 0, "logprobs": null, "finish_reason": "stop" }],
            "usage": usage,
        });
        return Ok(serde_json::to_vec(&out).unwrap_or_default());
    }
    // Streamed legacy completions are produced in one piece: nobody load-tests them.
    let mut out = Vec::new();
    for w in text.split_inclusive(' ') {
        let chunk = json!({
            "id": id, "object": "text_completion", "created": created, "model": model,
            "choices": [{ "text": w, "index": 0, "logprobs": null, "finish_reason": null }],
        });
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&serde_json::to_vec(&chunk).unwrap_or_default());
        out.extend_from_slice(b"\n\n");
    }
    let last = json!({
        "id": id, "object": "text_completion", "created": created, "model": model,
        "choices": [{ "text": "", "index": 0, "logprobs": null, "finish_reason": "stop" }],
    });
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&serde_json::to_vec(&last).unwrap_or_default());
    out.extend_from_slice(b"\n\ndata: ");
    let usage_chunk = json!({
        "id": id, "object": "text_completion", "created": created, "model": model,
        "choices": [], "usage": usage,
    });
    out.extend_from_slice(&serde_json::to_vec(&usage_chunk).unwrap_or_default());
    out.extend_from_slice(b"\n\ndata: [DONE]\n\n");
    Ok(out)
}

/// Embeddings: deterministic unit vectors (`dimensions`, default 8), float or base64.
fn embeddings(body: &[u8], model: &str) -> Result<Vec<u8>, Failure> {
    let v: Value = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    let inputs: Vec<String> = match &v["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        _ => return Err(invalid("'input' must be a string or an array".into())),
    };
    let dims = v["dimensions"].as_u64().unwrap_or(8).clamp(1, 4096) as usize;
    let base64 = v["encoding_format"].as_str() == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let vector = mock::embed(text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({ "object": "embedding", "index": i, "embedding": embedding })
        })
        .collect();
    let tokens: u64 = inputs.iter().map(|s| words(s)).sum();
    let out = json!({
        "object": "list", "data": data, "model": model,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    });
    Ok(serde_json::to_vec(&out).unwrap_or_default())
}
