//! The usage record every request produces, and where it goes.
//!
//! Exactly one record per request, emitted when the request is finished: answered, failed,
//! streamed to the end, or abandoned by the client. Today a record becomes one structured log
//! line (off the request path, through the non-blocking log writer); the batching store writer
//! plugs in here.

use std::time::{Duration, Instant};

use crate::cost::Tokens;
use crate::upstream::{Attempt, Outcome};

#[derive(Debug)]
pub struct Record {
    pub request_id: String,
    pub started: Instant,
    pub endpoint: &'static str,
    pub key: Option<String>,
    pub model: String,
    pub version: String,
    pub provider: String,
    pub upstream_model: String,
    pub status: u16,
    pub streamed: bool,
    pub tokens: Tokens,
    pub cost: Option<f64>,
    pub first_token: Option<Duration>,
    pub attempts: Vec<Attempt>,
    pub error: Option<String>,
    /// A stream reached its `[DONE]` (buffered calls: the answer was produced).
    pub completed: bool,
    pub client_gone: bool,
}

/// A status code as a label without allocating.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        413 => "413",
        429 => "429",
        499 => "499",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        s if (200..300).contains(&s) => "2xx",
        s if (400..500).contains(&s) => "4xx",
        _ => "5xx",
    }
}

impl Record {
    pub fn new(request_id: String, endpoint: &'static str, started: Instant) -> Self {
        Record {
            request_id,
            started,
            endpoint,
            key: None,
            model: String::new(),
            version: String::new(),
            provider: String::new(),
            upstream_model: String::new(),
            status: 0,
            streamed: false,
            tokens: Tokens::default(),
            cost: None,
            first_token: None,
            attempts: Vec::new(),
            error: None,
            completed: false,
            client_gone: false,
        }
    }

    /// Time spent upstream, summed over attempts: the rest of the latency is the gateway's own.
    fn upstream_time(&self) -> Duration {
        self.attempts.iter().map(|a| a.elapsed).sum()
    }
}

/// Hands a finished record on. Never blocks: the log writer is non-blocking and bounded.
pub fn emit(r: Record) {
    let latency = r.started.elapsed();
    let m = crate::metrics::global();
    let status = status_label(r.status);
    m.requests.inc(&[&r.model, &r.version, &r.provider, status]);
    m.request_duration
        .observe(&[&r.model, &r.version, &r.provider], latency);
    if let Some(t) = r.first_token {
        m.time_to_first_token.observe(&[&r.model, &r.provider], t);
    }
    m.overhead
        .observe(&[], latency.saturating_sub(r.upstream_time()));
    for (kind, n) in [
        ("input", r.tokens.input),
        ("output", r.tokens.output),
        ("cache_read", r.tokens.cache_read),
        ("cache_write", r.tokens.cache_write),
        ("reasoning", r.tokens.reasoning),
    ] {
        m.tokens.add(&[&r.model, &r.provider, kind], n);
    }
    if let Some(c) = r.cost {
        m.cost_usd.add_f64(&[&r.model, &r.provider], c);
    }
    let failed_attempts = r
        .attempts
        .iter()
        .filter(|a| !matches!(a.outcome, Outcome::Ok(_)))
        .count();
    tracing::info!(
        target: "switchyard::request",
        request_id = %r.request_id,
        endpoint = r.endpoint,
        key = r.key.as_deref().unwrap_or(""),
        model = %r.model,
        version = %r.version,
        provider = %r.provider,
        upstream_model = %r.upstream_model,
        status = r.status,
        streamed = r.streamed,
        input_tokens = r.tokens.input,
        output_tokens = r.tokens.output,
        cache_read_tokens = r.tokens.cache_read,
        reasoning_tokens = r.tokens.reasoning,
        cost_usd = r.cost.unwrap_or(0.0),
        latency_ms = latency.as_secs_f64() * 1000.0,
        ttft_ms = r.first_token.map(|d| d.as_secs_f64() * 1000.0),
        overhead_ms = latency.saturating_sub(r.upstream_time()).as_secs_f64() * 1000.0,
        attempts = r.attempts.len(),
        failed_attempts,
        completed = r.completed,
        client_gone = r.client_gone,
        error = r.error.as_deref(),
        "request"
    );
}
