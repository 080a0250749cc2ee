//! The usage record every request produces, and where it goes.
//!
//! Exactly one record per request, emitted when the request is finished: answered, failed,
//! streamed to the end, or abandoned by the client. [`emit`] always updates the metrics and
//! writes one structured log line (off the request path, through the non-blocking log writer);
//! when a [`Writer`] is [`install`]ed it also hands the record to it, which batches records into
//! the store and spools them to disk while the store is unavailable ([`writer`], [`spool`]).
//! Nothing here awaits or takes a lock on the request path.

pub mod spool;
pub mod writer;

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cost::Tokens;
use crate::upstream::{Attempt, Outcome};

pub use writer::{Options, Stats, Writer};

#[derive(Debug)]
pub struct Record {
    pub request_id: String,
    pub started: Instant,
    /// Wall-clock time of `started`, the record's `ts` in the store.
    pub time: SystemTime,
    pub endpoint: &'static str,
    /// The key's name (keys defined in the config file have no other id).
    pub key: Option<String>,
    /// The key's store id, when the key comes from the store; stored in preference to `key`.
    pub key_id: Option<String>,
    pub team_id: Option<String>,
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
    /// The request's trace, when traces are exported: its spans are built from this record.
    pub trace: Option<crate::telemetry::Trace>,
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
            time: SystemTime::now()
                .checked_sub(started.elapsed())
                .unwrap_or_else(SystemTime::now),
            endpoint,
            key: None,
            key_id: None,
            team_id: None,
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
            trace: None,
        }
    }

    /// Time spent upstream, summed over attempts: the rest of the latency is the gateway's own.
    fn upstream_time(&self) -> Duration {
        self.attempts.iter().map(|a| a.elapsed).sum()
    }

    /// The store's form of this record, `latency` being the request's total time.
    ///
    /// The store has no columns for `endpoint`, `completed` and `client_gone`: a request the
    /// client abandoned carries it in `error` (the relay sets that text; a record flagged
    /// `client_gone` without one gets a generic one here).
    pub fn to_store(self, latency: Duration) -> store::usage::Record {
        let overhead = latency.saturating_sub(self.upstream_time());
        let error = match self.error {
            Some(e) => Some(e),
            None if self.client_gone && !self.completed => {
                Some("client disconnected before the response completed".to_owned())
            }
            None => None,
        };
        store::usage::Record {
            request_id: self.request_id,
            ts: unix_ms(self.time),
            key_id: self.key_id.or(self.key),
            team_id: self.team_id,
            model: self.model,
            version: self.version,
            provider: self.provider,
            upstream_model: self.upstream_model,
            status: self.status,
            streamed: self.streamed,
            input_tokens: self.tokens.input,
            cache_read_tokens: self.tokens.cache_read,
            cache_write_tokens: self.tokens.cache_write,
            reasoning_tokens: self.tokens.reasoning,
            output_tokens: self.tokens.output,
            cost_usd: self.cost.unwrap_or(0.0),
            latency_ms: ms(latency),
            ttft_ms: self.first_token.map(ms),
            overhead_ms: ms(overhead),
            attempts: self.attempts.into_iter().map(attempt).collect(),
            error,
        }
    }
}

/// One upstream attempt as the store keeps it: the HTTP status when there was one, and a short
/// word for what went wrong otherwise.
fn attempt(a: Attempt) -> store::usage::Attempt {
    let (status, error) = match a.outcome {
        Outcome::Ok(s) => (Some(s.as_u16()), None),
        Outcome::Status(s) => (Some(s.as_u16()), Some("status")),
        Outcome::Connect => (None, Some("connect")),
        Outcome::Timeout => (None, Some("timeout")),
        Outcome::Malformed => (None, Some("malformed")),
        Outcome::Cancelled => (None, Some("cancelled")),
        Outcome::Unsupported => (None, Some("unsupported")),
    };
    store::usage::Attempt {
        provider: a.provider,
        upstream_model: a.model,
        status,
        latency_ms: ms(a.elapsed),
        error: error.map(str::to_owned),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The process's writer, once [`install`]ed.
static WRITER: OnceLock<Writer> = OnceLock::new();

/// Makes [`emit`] hand every record to `writer` from now on, for the rest of the process. A
/// process has at most one: a second call gives its writer back.
///
/// A process-wide slot rather than a field of the app state, because records are emitted from
/// places that hold no app handle (the relay's body streams, finished even after the client has
/// gone). The gateway installs the writer at start-up and, after its graceful drain, awaits
/// `usage::installed()`'s [`Writer::shutdown`], so queued and spooled records reach the store
/// before exit. Records emitted after that still go to the spool, for the next start to replay.
pub fn install(writer: Writer) -> Result<(), Writer> {
    WRITER.set(writer)
}

/// The writer [`install`] put in place, if any.
pub fn installed() -> Option<&'static Writer> {
    WRITER.get()
}

/// Hands a finished record on: metrics, one log line, the request's spans when it is traced
/// and, when a writer is [`install`]ed, the store. Never blocks: the log writer is non-blocking
/// and bounded, and neither [`Writer::send`] nor the trace exporter's queue ever waits.
pub fn emit(mut r: Record) {
    let latency = r.started.elapsed();
    if let Some(t) = r.trace.take() {
        t.finish(&r, latency);
    }
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
    if let Some(w) = WRITER.get() {
        w.send(r.to_store(latency));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn every_field_reaches_the_store_record() {
        let started = Instant::now();
        let mut r = Record::new("req-1".into(), "chat", started);
        r.time = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        r.key = Some("ci".into());
        r.team_id = Some("team_a".into());
        r.model = "gpt".into();
        r.version = "v2".into();
        r.provider = "openai".into();
        r.upstream_model = "gpt-4o".into();
        r.status = 200;
        r.streamed = true;
        r.tokens = Tokens {
            input: 10,
            output: 20,
            cache_read: 3,
            cache_write: 4,
            reasoning: 5,
        };
        r.cost = Some(0.25);
        r.first_token = Some(Duration::from_millis(40));
        r.attempts = vec![
            Attempt {
                provider: "anthropic".into(),
                model: "claude".into(),
                outcome: Outcome::Status(StatusCode::TOO_MANY_REQUESTS),
                started,
                elapsed: Duration::from_millis(30),
                span: None,
            },
            Attempt {
                provider: "openai".into(),
                model: "gpt-4o".into(),
                outcome: Outcome::Ok(StatusCode::OK),
                started,
                elapsed: Duration::from_millis(50),
                span: None,
            },
            Attempt {
                provider: "gemini".into(),
                model: "flash".into(),
                outcome: Outcome::Timeout,
                started,
                elapsed: Duration::from_millis(20),
                span: None,
            },
        ];
        r.client_gone = true;
        let s = r.to_store(Duration::from_millis(130));
        assert_eq!(
            s,
            store::usage::Record {
                request_id: "req-1".into(),
                ts: 1_700_000_000_123,
                key_id: Some("ci".into()),
                team_id: Some("team_a".into()),
                model: "gpt".into(),
                version: "v2".into(),
                provider: "openai".into(),
                upstream_model: "gpt-4o".into(),
                status: 200,
                streamed: true,
                input_tokens: 10,
                cache_read_tokens: 3,
                cache_write_tokens: 4,
                reasoning_tokens: 5,
                output_tokens: 20,
                cost_usd: 0.25,
                latency_ms: 130.0,
                ttft_ms: Some(40.0),
                overhead_ms: 30.0,
                attempts: vec![
                    store::usage::Attempt {
                        provider: "anthropic".into(),
                        upstream_model: "claude".into(),
                        status: Some(429),
                        latency_ms: 30.0,
                        error: Some("status".into()),
                    },
                    store::usage::Attempt {
                        provider: "openai".into(),
                        upstream_model: "gpt-4o".into(),
                        status: Some(200),
                        latency_ms: 50.0,
                        error: None,
                    },
                    store::usage::Attempt {
                        provider: "gemini".into(),
                        upstream_model: "flash".into(),
                        status: None,
                        latency_ms: 20.0,
                        error: Some("timeout".into()),
                    },
                ],
                error: Some("client disconnected before the response completed".into()),
            }
        );
    }

    #[test]
    fn a_store_key_id_wins_over_the_name_and_errors_pass_through() {
        let mut r = Record::new("req-2".into(), "chat", Instant::now());
        r.key = Some("name".into());
        r.key_id = Some("key_abc".into());
        r.error = Some("upstream broke".into());
        r.client_gone = true;
        let s = r.to_store(Duration::ZERO);
        assert_eq!(s.key_id.as_deref(), Some("key_abc"));
        assert_eq!(s.error.as_deref(), Some("upstream broke"));
        assert_eq!(s.cost_usd, 0.0);
        assert!(s.ts > 1_700_000_000_000, "wall clock of the start");
    }
}
