//! Talking to providers: each provider type's HTTP request, the pooled client, and the attempt
//! loop (retries with backoff, failover to the next target, failure classification).
//!
//! This module decides *whether* to try again; which target comes next is `routing`'s business.
//! It never parses a body it forwards: it reads only what it must to classify a failure.

pub mod body;
mod budget;
pub mod client;
mod http1;
mod mock;
mod openai;
pub mod translate;

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use providers::openai::peek::{self, Endpoint};

use std::sync::OnceLock;

use providers::canonical::ChatRequest;

use crate::config::{Provider, ProviderKind, Target, TargetStats, Version};
use crate::error::{Error, Kind};
use crate::routing::health::Gate;
use crate::telemetry::{self, SpanId};

pub use body::UpstreamBody;
pub use budget::RetryBudget;

/// What the pipeline asks of the upstream layer.
pub struct Call<'a> {
    pub endpoint: Endpoint,
    pub body: &'a Bytes,
    /// Present when the client spoke OpenAI: the pass-through reader of its body.
    pub peek: Option<&'a peek::Request<'a>>,
    /// The request in canonical form, made on first need (translation, the mock); set from the
    /// start when the client spoke another format.
    pub canonical: &'a OnceLock<Result<ChatRequest, String>>,
    pub stream: bool,
    /// Absolute deadline of the whole request (server `request_timeout`).
    pub deadline: Instant,
    /// The request's trace, when traces are exported: each attempt gets a span and sends its
    /// `traceparent` upstream.
    pub trace: Option<telemetry::Context>,
    /// The caller's `tracestate`, sent on with each attempt's `traceparent`.
    pub tracestate: Option<http::HeaderValue>,
}

/// A response whose status is a success, with its body still to be read or relayed.
pub struct Success {
    /// Index of the target that answered, in its version's `targets`.
    pub target: usize,
    pub response: http::Response<UpstreamBody>,
    /// For streams: the first body bytes, already read (they proved the stream started).
    pub first: Option<Bytes>,
    pub attempts: Vec<Attempt>,
}

/// One try of one target, for the usage record and the `x-switchyard-attempts` header.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub provider: crate::config::Name,
    pub model: crate::config::Name,
    pub outcome: Outcome,
    /// When it was sent.
    pub started: Instant,
    pub elapsed: Duration,
    /// Its span, when the request is traced.
    pub span: Option<telemetry::AttemptSpan>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ok(StatusCode),
    /// Could not connect, or the connection broke before an answer.
    Connect,
    Timeout,
    Status(StatusCode),
    /// A success status with a body that is not the provider's protocol.
    Malformed,
    /// A hedged attempt that lost the race.
    Cancelled,
    /// Not sent: the target cannot take this request.
    Unsupported,
}

/// Why an attempt failed, with what the client may be told.
#[derive(Debug)]
pub enum Failure {
    Connect,
    Timeout,
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
        message: Option<String>,
        code: Option<String>,
        param: Option<String>,
    },
    Malformed,
    /// The target cannot honour the request (a parameter its format lacks): the message and
    /// the parameter.
    Unsupported(String, Option<String>),
}

impl<'a> Call<'a> {
    /// The canonical form of the request, parsed from the OpenAI body on first use.
    pub fn canonical(&self) -> Result<&ChatRequest, Failure> {
        self.canonical
            .get_or_init(|| providers::openai::request::parse(self.body).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Failure::Unsupported(e.clone(), None))
    }

    /// A new span id for an attempt, when the request is traced.
    fn span(&self) -> Option<SpanId> {
        self.trace.map(|cx| cx.child())
    }

    /// The canonical request addressed to `target`: its model, streaming as asked, usage wanted.
    fn for_target(&self, target: &Target) -> Result<ChatRequest, Failure> {
        let mut req = self.canonical()?.clone();
        req.model.clear();
        req.model.push_str(&target.model);
        req.stream = self.stream;
        req.include_usage = true;
        Ok(req)
    }
}

impl Outcome {
    /// The bounded `outcome` label of `switchyard_upstream_attempts_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok(_) => "ok",
            Outcome::Connect => "connect_error",
            Outcome::Timeout => "timeout",
            Outcome::Status(s) if s.as_u16() == 429 => "http_429",
            Outcome::Status(s) if s.is_server_error() => "http_5xx",
            Outcome::Status(_) => "http_4xx",
            Outcome::Malformed => "malformed",
            Outcome::Cancelled => "cancelled",
            Outcome::Unsupported => "unsupported",
        }
    }
}

impl Failure {
    fn outcome(&self) -> Outcome {
        match self {
            Failure::Connect => Outcome::Connect,
            Failure::Timeout => Outcome::Timeout,
            Failure::Status { status, .. } => Outcome::Status(*status),
            Failure::Malformed => Outcome::Malformed,
            Failure::Unsupported(..) => Outcome::Unsupported,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Try this target again (after a backoff), while its retries last.
    Retry,
    /// Go to the next target.
    Failover,
    /// The request itself is wrong: answer the client now.
    Stop,
}

fn classify(f: &Failure) -> Next {
    match f {
        Failure::Connect | Failure::Timeout | Failure::Malformed => Next::Retry,
        // Another target may be able to; if none is, the client hears why.
        Failure::Unsupported(..) => Next::Failover,
        Failure::Status {
            status,
            code,
            message,
            ..
        } => {
            let s = status.as_u16();
            if s == 429 || s >= 500 {
                Next::Retry
            } else if s == 401 || s == 403 || s == 404 {
                // The provider's configuration (credential, model name), not the client's request.
                Next::Failover
            } else if is_context_length(code.as_deref(), message.as_deref()) {
                Next::Failover
            } else {
                Next::Stop
            }
        }
    }
}

fn is_context_length(code: Option<&str>, message: Option<&str>) -> bool {
    code == Some("context_length_exceeded")
        || message.is_some_and(|m| {
            m.contains("context length")
                || m.contains("context window")
                || m.contains("maximum context")
        })
}

/// How to send one request to one version: the targets in order and the per-request knobs.
pub struct Plan<'v> {
    pub version: &'v Version,
    pub order: Vec<usize>,
    /// Per target (`retries`, or `x-switchyard-retries`).
    pub retries: u32,
    /// Per attempt (`timeout`, or `x-switchyard-timeout`).
    pub timeout: Duration,
    /// Estimated tokens, for targets' own `tpm`.
    pub tokens: u64,
}

/// Every attempt failed (or none could be made).
pub struct Failed {
    pub error: Error,
    pub attempts: Vec<Attempt>,
    /// The failure is the providers' (not the client's): fallbacks may be tried.
    pub can_fall_back: bool,
    /// The last failure was the prompt being too long for the model.
    pub context_length: bool,
}

/// Sends `call` to the targets of `plan` in order, each tried up to `1 + retries` times, until
/// one answers with a success status. Targets whose breaker is open or whose own limits are
/// reached are skipped; every try after the first spends the retry budget.
pub async fn send<'v>(
    client: &client::Client,
    budget: &RetryBudget,
    plan: &Plan<'v>,
    call: &Call<'_>,
) -> Result<Success, Failed> {
    let version = plan.version;
    let mut attempts = Vec::new();
    let mut last: Option<(Failure, &Provider)> = None;
    let mut tried = false;
    let mut budget_spent = false;
    'targets: for (pos, &i) in plan.order.iter().enumerate() {
        let target = &version.targets[i];
        for retry in 0..=plan.retries {
            let now = Instant::now();
            if now >= call.deadline {
                break 'targets;
            }
            let Some(ticket) = admit(target, now, plan.tokens) else {
                continue 'targets;
            };
            if tried && !budget.withdraw(now) {
                budget_spent = true;
                ticket.release();
                break 'targets;
            }
            tried = true;
            let timeout = plan.timeout.min(call.deadline - now);
            // Hedging: the first try of the first target races a second target if it is slow.
            let partner = match version.hedge_after {
                Some(after) if pos == 0 && retry == 0 && after < timeout => plan.order[1..]
                    .iter()
                    .map(|&j| &version.targets[j])
                    .find_map(|t| admit(t, now, plan.tokens).map(|tk| (t, tk, after))),
                _ => None,
            };
            let (served, result) = match partner {
                None => (
                    target,
                    try_target(client, target, ticket, call, timeout, &mut attempts).await,
                ),
                // Boxed: two attempts in flight make a large future, and every request's
                // future would carry (and move) that size while only hedged tries need it.
                Some((other, other_ticket, after)) => {
                    Box::pin(hedge(
                        client,
                        (target, ticket),
                        (other, other_ticket),
                        after,
                        call,
                        timeout,
                        &mut attempts,
                    ))
                    .await
                }
            };
            match result {
                Ok((response, first)) => {
                    return Ok(Success {
                        target: version
                            .targets
                            .iter()
                            .position(|t| std::ptr::eq(t, served))
                            .unwrap_or(i),
                        response,
                        first,
                        attempts,
                    })
                }
                Err(failure) => {
                    let next = classify(&failure);
                    let retry_after = match &failure {
                        Failure::Status { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    last = Some((failure, &served.provider));
                    match next {
                        Next::Stop => break 'targets,
                        Next::Failover => continue 'targets,
                        Next::Retry if retry == plan.retries => continue 'targets,
                        Next::Retry => {
                            let wait = backoff(retry).max(retry_after.unwrap_or_default());
                            // A Retry-After beyond the deadline or too long to wait: move on.
                            if wait > Duration::from_secs(10)
                                || Instant::now() + wait >= call.deadline
                            {
                                continue 'targets;
                            }
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
            }
        }
    }
    let can_fall_back = !matches!(
        last.as_ref().map(|(f, _)| (classify(f), f)),
        Some((Next::Stop, _)) | Some((_, Failure::Unsupported(..)))
    );
    let context_length = matches!(
        &last,
        Some((Failure::Status { code, message, .. }, _)) if is_context_length(code.as_deref(), message.as_deref())
    );
    let mut error = final_error(last, call.deadline);
    if budget_spent && attempts.is_empty() {
        error = Error::new(
            Kind::NoHealthyTarget,
            "No healthy target: the retry budget is spent.",
        );
    }
    Err(Failed {
        error,
        attempts,
        can_fall_back,
        context_length,
    })
}

/// A target's permission for one attempt: in flight counted, a half-open probe marked.
struct Ticket<'t> {
    stats: &'t TargetStats,
    probe: bool,
    done: bool,
}

impl Ticket<'_> {
    fn release(mut self) {
        self.done = true;
        self.stats.in_flight.fetch_sub(1, Relaxed);
        if self.probe {
            self.stats.release_probe();
        }
    }
}

impl Drop for Ticket<'_> {
    /// A cancelled attempt (the losing hedge, a client gone) says nothing about the target.
    fn drop(&mut self) {
        if !self.done {
            self.stats.in_flight.fetch_sub(1, Relaxed);
            if self.probe {
                self.stats.release_probe();
            }
        }
    }
}

/// May `target` take one more attempt now? Checks its breaker, `max_concurrency`, `rpm`, `tpm`.
fn admit(target: &Target, now: Instant, tokens: u64) -> Option<Ticket<'_>> {
    let stats = &*target.stats;
    let gate = stats.gate(now);
    if gate == Gate::Skip {
        return None;
    }
    let probe = gate == Gate::Probe;
    let busy = target
        .max_concurrency
        .is_some_and(|m| stats.in_flight.load(Relaxed) >= m);
    if busy || !stats.take(now, target.rpm, target.tpm, tokens) {
        if probe {
            stats.release_probe();
        }
        return None;
    }
    stats.in_flight.fetch_add(1, Relaxed);
    Some(Ticket {
        stats,
        probe,
        done: false,
    })
}

type Answer = Result<(http::Response<UpstreamBody>, Option<Bytes>), Failure>;

/// One attempt on one target, recorded in `attempts` and in the target's health.
async fn try_target(
    client: &client::Client,
    target: &Target,
    ticket: Ticket<'_>,
    call: &Call<'_>,
    timeout: Duration,
    attempts: &mut Vec<Attempt>,
) -> Answer {
    let span = call.span();
    let started = Instant::now();
    let result = attempt(client, target, call, timeout, span).await;
    finish(target, ticket, &result, (started, span), attempts);
    result
}

/// When an attempt started, and its span id if traced.
type Began = (Instant, Option<SpanId>);

fn finish(
    target: &Target,
    mut ticket: Ticket<'_>,
    result: &Answer,
    (started, span): Began,
    attempts: &mut Vec<Attempt>,
) {
    let elapsed = started.elapsed();
    ticket.done = true;
    let stats = ticket.stats;
    stats.in_flight.fetch_sub(1, Relaxed);
    let outcome = match result {
        Ok((resp, _)) => {
            stats.observe(elapsed);
            stats.success();
            Outcome::Ok(resp.status())
        }
        Err(failure) => {
            // Failures weigh as slow answers in the latency average.
            stats.observe(elapsed + Duration::from_secs(1));
            match failure {
                Failure::Status {
                    status,
                    retry_after,
                    ..
                } if status.as_u16() == 429 => stats.failure(Instant::now(), *retry_after),
                Failure::Status {
                    status,
                    code,
                    message,
                    ..
                } if status.is_client_error() && !matches!(status.as_u16(), 401 | 403 | 404)
                    || is_context_length(code.as_deref(), message.as_deref()) =>
                {
                    // The request's fault, not the target's.
                    if ticket.probe {
                        stats.release_probe();
                    }
                }
                _ => stats.failure(Instant::now(), None),
            }
            tracing::debug!(provider = %target.provider.name, model = %target.model, outcome = ?failure.outcome(), "upstream attempt failed");
            failure.outcome()
        }
    };
    crate::metrics::global()
        .upstream_attempts
        .inc(&[&target.provider.name, outcome.label()]);
    attempts.push(Attempt {
        provider: target.provider.name.clone(),
        model: target.model.clone(),
        outcome,
        started,
        elapsed,
        span: attempt_span(target, span),
    });
}

fn attempt_span(target: &Target, span: Option<SpanId>) -> Option<telemetry::AttemptSpan> {
    span.map(|id| telemetry::AttemptSpan {
        id,
        provider: target.provider.clone(),
    })
}

/// Races `a` against `b` started `after` later; the first success wins and the other is
/// cancelled. When both fail, the later failure is returned.
#[allow(clippy::too_many_arguments)]
async fn hedge<'v>(
    client: &client::Client,
    (a, ta): (&'v Target, Ticket<'_>),
    (b, tb): (&'v Target, Ticket<'_>),
    after: Duration,
    call: &Call<'_>,
    timeout: Duration,
    attempts: &mut Vec<Attempt>,
) -> (&'v Target, Answer) {
    let began_a = (Instant::now(), call.span());
    let fa = attempt(client, a, call, timeout, began_a.1);
    tokio::pin!(fa);
    tokio::select! {
        r = &mut fa => {
            finish(a, ta, &r, began_a, attempts);
            drop(tb);
            return (a, r);
        }
        () = tokio::time::sleep(after) => {}
    }
    let began_b = (Instant::now(), call.span());
    let fb = attempt(client, b, call, timeout.saturating_sub(after), began_b.1);
    tokio::pin!(fb);
    tokio::select! {
        r = &mut fa => {
            finish(a, ta, &r, began_a, attempts);
            if r.is_ok() {
                cancelled(b, tb, began_b, attempts);
                return (a, r);
            }
            let rb = fb.await;
            finish(b, tb, &rb, began_b, attempts);
            (b, rb)
        }
        r = &mut fb => {
            finish(b, tb, &r, began_b, attempts);
            if r.is_ok() {
                cancelled(a, ta, began_a, attempts);
                return (b, r);
            }
            let ra = fa.await;
            finish(a, ta, &ra, began_a, attempts);
            (a, ra)
        }
    }
}

fn cancelled(
    target: &Target,
    ticket: Ticket<'_>,
    (started, span): Began,
    attempts: &mut Vec<Attempt>,
) {
    drop(ticket);
    attempts.push(Attempt {
        provider: target.provider.name.clone(),
        model: target.model.clone(),
        outcome: Outcome::Cancelled,
        started,
        elapsed: started.elapsed(),
        span: attempt_span(target, span),
    });
}

/// Exponential backoff with jitter: 100 ms, 200 ms, 400 ms … capped at 2 s, each scaled by a
/// random factor in [0.5, 1).
fn backoff(retry: u32) -> Duration {
    let base = Duration::from_millis(100)
        .saturating_mul(1 << retry.min(5))
        .min(Duration::from_secs(2));
    base.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// The client's error after every attempt failed: the last failure decides the status.
fn final_error(last: Option<(Failure, &Provider)>, deadline: Instant) -> Error {
    let Some((failure, provider)) = last else {
        return if Instant::now() >= deadline {
            Error::new(
                Kind::UpstreamTimeout,
                "The request timed out before any provider answered.",
            )
        } else {
            Error::new(
                Kind::NoHealthyTarget,
                "No target is available for this model.",
            )
        };
    };
    let p = &provider.name;
    match failure {
        Failure::Connect => Error::new(
            Kind::NoHealthyTarget,
            format!("No healthy target: provider '{p}' could not be reached."),
        ),
        Failure::Timeout => Error::new(
            Kind::UpstreamTimeout,
            format!("Provider '{p}' did not answer in time."),
        ),
        Failure::Malformed => Error::new(
            Kind::UpstreamBad,
            format!("Provider '{p}' answered with a malformed response."),
        ),
        Failure::Unsupported(message, param) => {
            let mut e = Error::invalid(message, None);
            e.param = param.map(Into::into);
            e
        }
        Failure::Status {
            status,
            retry_after,
            message,
            code,
            param,
        } => {
            let s = status.as_u16();
            if s == 429 {
                Error::new(
                    Kind::RateLimited,
                    format!("Provider '{p}' is rate limiting requests; retry later."),
                )
                .with_retry_after(retry_after.or(Some(Duration::from_secs(1))))
            } else if s == 401 || s == 403 {
                Error::new(Kind::UpstreamBad, format!("Provider '{p}' refused the gateway's credentials (HTTP {s}); check its api_key."))
            } else if s == 404 {
                Error::new(
                    Kind::UpstreamBad,
                    format!("Provider '{p}' does not know the requested model (HTTP 404)."),
                )
            } else if s >= 500 {
                Error::new(
                    Kind::UpstreamBad,
                    format!("Provider '{p}' failed with HTTP {s}."),
                )
            } else {
                // The client's own mistake, as the provider described it.
                let mut e = Error::new(
                    Kind::InvalidRequest,
                    message.unwrap_or_else(|| {
                        format!("Provider '{p}' rejected the request (HTTP {s}).")
                    }),
                );
                e.status = Some(status);
                e.code = code.map(Into::into);
                e.param = param.map(Into::into);
                e
            }
        }
    }
}

/// One try of one target; `span` is the attempt's span when traced.
async fn attempt(
    client: &client::Client,
    target: &Target,
    call: &Call<'_>,
    timeout: Duration,
    span: Option<SpanId>,
) -> Result<(http::Response<UpstreamBody>, Option<Bytes>), Failure> {
    let traced = |mut req: http::Request<http_body_util::Full<Bytes>>| {
        if let (Some(cx), Some(span)) = (call.trace, span) {
            req.headers_mut()
                .insert(telemetry::TRACEPARENT.clone(), cx.traceparent(span));
            if let Some(state) = &call.tracestate {
                req.headers_mut()
                    .insert(telemetry::TRACESTATE.clone(), state.clone());
            }
        }
        req
    };
    match (&target.provider.kind, call.peek) {
        (ProviderKind::Mock(m), _) => mock::call(m, target, call, timeout).await,
        (
            ProviderKind::OpenAi
            | ProviderKind::Azure { .. }
            | ProviderKind::OpenAiCompatible { .. },
            Some(peek),
        ) => {
            let req = traced(openai::request(target, call, peek)?);
            exchange(client, req, call.stream, timeout, &target.provider).await
        }
        _ if call.endpoint != Endpoint::Chat => Err(Failure::Unsupported(
            format!(
                "Provider '{}' does not serve this endpoint.",
                target.provider.name
            ),
            None,
        )),
        _ => {
            let req = traced(translate::request(target, &call.for_target(target)?)?);
            exchange(client, req, call.stream, timeout, &target.provider).await
        }
    }
}

/// Sends `req` and waits, within `timeout`, for a success status and then the whole body
/// (buffered calls) or the first body bytes (streams).
async fn exchange(
    client: &client::Client,
    req: http::Request<http_body_util::Full<Bytes>>,
    stream: bool,
    timeout: Duration,
    provider: &Provider,
) -> Result<(http::Response<UpstreamBody>, Option<Bytes>), Failure> {
    use http_body_util::BodyExt;

    let work = async {
        let resp = client.request(req).await.map_err(|_| Failure::Connect)?;
        let (parts, mut incoming) = resp.into_parts();
        if !parts.status.is_success() {
            let body = read_limited(&mut incoming, 1 << 20)
                .await
                .unwrap_or_default();
            return Err(status_failure(
                parts.status,
                &parts.headers,
                &body,
                provider,
            ));
        }
        if stream {
            let first = loop {
                match incoming.frame().await {
                    Some(Ok(f)) => match f.into_data() {
                        Ok(d) if !d.is_empty() => break Some(d),
                        _ => continue,
                    },
                    Some(Err(_)) => return Err(Failure::Connect),
                    None => break None,
                }
            };
            Ok((
                http::Response::from_parts(parts, UpstreamBody::Http(incoming)),
                first,
            ))
        } else {
            let body = read_limited(&mut incoming, 256 << 20)
                .await
                .map_err(|_| Failure::Connect)?;
            Ok((
                http::Response::from_parts(parts, UpstreamBody::Full(Some(body))),
                None,
            ))
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| Failure::Timeout)?
}

async fn read_limited(body: &mut client::Body, limit: usize) -> Result<Bytes, ()> {
    use http_body_util::BodyExt;
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ())?;
        if let Ok(d) = frame.into_data() {
            if out.len() + d.len() > limit {
                return Err(());
            }
            if out.is_empty() && body.is_end_stream() {
                return Ok(d);
            }
            out.extend_from_slice(&d);
        }
    }
    Ok(out.freeze())
}

use http_body::Body as _;

/// Reads an upstream error answer: its Retry-After and, in OpenAI's error shape, its message,
/// with the provider's credential scrubbed should it be echoed.
fn status_failure(
    status: StatusCode,
    headers: &http::HeaderMap,
    body: &[u8],
    provider: &Provider,
) -> Failure {
    #[derive(serde::Deserialize)]
    struct Outer {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        message: Option<String>,
        code: Option<serde_json::Value>,
        param: Option<String>,
    }
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
        .or_else(|| {
            headers
                .get("retry-after-ms")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_millis)
        });
    let parsed = serde_json::from_slice::<Outer>(body).ok();
    let (message, code, param) = match parsed {
        Some(o) => (
            o.error.message.map(|m| scrub(m, provider)),
            o.error.code.and_then(|c| match c {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }),
            o.error.param,
        ),
        None => (None, None, None),
    };
    Failure::Status {
        status,
        retry_after,
        message,
        code,
        param,
    }
}

/// Removes the provider's credential from an upstream message, should it be echoed.
fn scrub(message: String, provider: &Provider) -> String {
    match &provider.api_key {
        Some(k) if k.expose().len() >= 4 && message.contains(k.expose()) => {
            message.replace(k.expose(), "***")
        }
        _ => message,
    }
}

/// The `x-switchyard-attempts` value.
pub fn attempts_header(n: usize) -> HeaderValue {
    HeaderValue::from(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: u16, code: Option<&str>) -> Failure {
        Failure::Status {
            status: StatusCode::from_u16(s).unwrap(),
            retry_after: None,
            message: None,
            code: code.map(String::from),
            param: None,
        }
    }

    #[test]
    fn classifies_failures() {
        assert_eq!(classify(&Failure::Connect), Next::Retry);
        assert_eq!(classify(&Failure::Timeout), Next::Retry);
        assert_eq!(classify(&status(500, None)), Next::Retry);
        assert_eq!(classify(&status(429, None)), Next::Retry);
        assert_eq!(classify(&status(401, None)), Next::Failover);
        assert_eq!(
            classify(&status(400, Some("context_length_exceeded"))),
            Next::Failover
        );
        assert_eq!(classify(&status(400, None)), Next::Stop);
        assert_eq!(classify(&status(422, None)), Next::Stop);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for r in 0..10 {
            let b = backoff(r);
            assert!(b <= Duration::from_secs(2));
            assert!(b >= Duration::from_millis(50));
        }
        assert!(backoff(0) < Duration::from_millis(100));
    }
}
