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

use bytes::Bytes;

use crate::config::Name;
use crate::cost::Tokens;
use crate::upstream::{Attempt, Outcome};

pub use writer::{Options, Stats, Writer};

#[derive(Debug)]
pub struct Record {
    /// Minted by the gateway for every request: unique, so it keys the usage record.
    pub request_id: String,
    /// The client's own `x-request-id`, when it sent a sane one: logged and traced beside ours
    /// for correlation, never used as the record's key (a reused one would merge records).
    pub client_request_id: Option<String>,
    pub started: Instant,
    /// Wall-clock time of `started`, the record's `ts` in the store.
    pub time: SystemTime,
    pub endpoint: &'static str,
    /// The key's name (keys defined in the config file have no other id).
    pub key: Option<String>,
    /// The key's store id, when the key comes from the store; stored in preference to `key`.
    pub key_id: Option<String>,
    pub team_id: Option<String>,
    pub model: Name,
    pub version: Name,
    pub provider: Name,
    pub upstream_model: Name,
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
    /// The request and the generated text, kept for the store only with
    /// `server.usage_log_bodies: true`; `None` (one null pointer, nothing else) otherwise.
    pub bodies: Option<Box<Bodies>>,
}

/// The most bytes of a request body, and of a completion, a record keeps; the rest is cut and
/// a marker says how much there was.
pub const BODY_CAP: usize = 1 << 20;

/// The request as the client sent it and the text generated for it (`server.usage_log_bodies`).
/// Never written to the log line: only to the store.
#[derive(Debug, Default)]
pub struct Bodies {
    pub request: Bytes,
    pub completion: Capture,
}

/// Text gathered as it is generated (deltas of a stream, or a whole answer), kept up to
/// [`BODY_CAP`] bytes; what comes after is counted, not kept.
#[derive(Debug, Default)]
pub struct Capture {
    text: String,
    total: usize,
}

impl Capture {
    pub fn push(&mut self, s: &str) {
        self.total += s.len();
        let room = BODY_CAP.saturating_sub(self.text.len());
        if s.len() <= room {
            self.text.push_str(s);
        } else {
            let mut cut = room;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            self.text.push_str(&s[..cut]);
        }
    }

    /// The text, or `None` when nothing was generated.
    fn finish(self) -> Option<String> {
        if self.total == 0 {
            return None;
        }
        let mut text = self.text;
        if self.total > text.len() {
            truncated(&mut text, self.total);
        }
        Some(text)
    }
}

/// Appends the marker of a body cut at `text.len()` bytes out of `total`.
fn truncated(text: &mut String, total: usize) {
    use std::fmt::Write as _;
    let _ = write!(
        text,
        "\n[truncated by switchyard: {total} bytes, the first {} kept]",
        text.len()
    );
}

/// A request body as text for the store: lossy UTF-8, capped at [`BODY_CAP`] bytes.
fn request_text(body: &[u8]) -> String {
    let kept = &body[..body.len().min(BODY_CAP)];
    let mut text = String::from_utf8_lossy(kept).into_owned();
    if body.len() > kept.len() {
        truncated(&mut text, body.len());
    }
    text
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
        let time = SystemTime::now()
            .checked_sub(started.elapsed())
            .unwrap_or_else(SystemTime::now);
        Record::at(request_id, endpoint, started, time)
    }

    /// A record of a request that started at `started`, wall-clock `time` (read by the caller
    /// at the same moment: a clock read costs ~50 ns on a VM, and a request reads it often).
    pub fn at(
        request_id: String,
        endpoint: &'static str,
        started: Instant,
        time: SystemTime,
    ) -> Self {
        Record {
            request_id,
            client_request_id: None,
            started,
            time,
            endpoint,
            key: None,
            key_id: None,
            team_id: None,
            model: Name::Borrowed(""),
            version: Name::Borrowed(""),
            provider: Name::Borrowed(""),
            upstream_model: Name::Borrowed(""),
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
            bodies: None,
        }
    }

    /// Keeps `request` and, from now on, the generated text (`server.usage_log_bodies`).
    pub fn keep_bodies(&mut self, request: Bytes) {
        self.bodies = Some(Box::new(Bodies {
            request,
            completion: Capture::default(),
        }));
    }

    /// Whether generated text is being kept: callers skip reading it otherwise.
    pub fn keeps_bodies(&self) -> bool {
        self.bodies.is_some()
    }

    /// Adds generated text, if bodies are kept.
    pub fn completion_text(&mut self, text: &str) {
        if let Some(b) = self.bodies.as_mut() {
            b.completion.push(text);
        }
    }

    /// Time spent upstream, summed over attempts: the rest of the latency is the gateway's own.
    fn upstream_time(&self) -> Duration {
        self.attempts.iter().map(|a| a.elapsed).sum()
    }

    /// The store's form of this record, `latency` being the request's total time.
    ///
    /// A request the client abandoned is flagged `client_gone` and also carries it in `error`
    /// (the relay sets that text; a record flagged without one gets a generic one here), so
    /// error counts include it. An unknown cost stays `None`.
    pub fn to_store(self, latency: Duration) -> store::usage::Record {
        let overhead = latency.saturating_sub(self.upstream_time());
        let (request_body, completion) = match self.bodies {
            Some(b) => (Some(request_text(&b.request)), b.completion.finish()),
            None => (None, None),
        };
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
            endpoint: Name::Borrowed(self.endpoint),
            model: self.model,
            version: self.version,
            provider: self.provider,
            upstream_model: self.upstream_model,
            status: self.status,
            streamed: self.streamed,
            completed: Some(self.completed),
            client_gone: Some(self.client_gone),
            input_tokens: self.tokens.input,
            cache_read_tokens: self.tokens.cache_read,
            cache_write_tokens: self.tokens.cache_write,
            reasoning_tokens: self.tokens.reasoning,
            output_tokens: self.tokens.output,
            cost_usd: self.cost,
            latency_ms: ms(latency),
            ttft_ms: self.first_token.map(ms),
            overhead_ms: ms(overhead),
            attempts: self.attempts.into_iter().map(attempt).collect(),
            error,
            request_body,
            completion,
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

/// Milliseconds, as whole nanoseconds divided once (a single rounding): the store can then
/// tell an attempt's latency from the request's latency and overhead exactly
/// (`store::usage`'s implied attempt), which `as_secs_f64() * 1000.0` (two roundings) breaks.
/// The nanoseconds as a `u64` (584 years), whose conversion is one instruction where
/// `as_nanos()`'s `u128` calls a software routine.
fn ms(d: Duration) -> f64 {
    let nanos = d
        .as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()));
    nanos as f64 / 1e6
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
pub fn emit(mut r: Box<Record>) {
    let latency = r.started.elapsed();
    if let Some(t) = r.trace.take() {
        t.finish(&r, latency);
    }
    let overhead = latency.saturating_sub(r.upstream_time());
    crate::metrics::global().finished(&crate::metrics::Finished {
        model: &r.model,
        version: &r.version,
        provider: &r.provider,
        status: status_label(r.status),
        latency,
        first_token: r.first_token,
        overhead,
        tokens: [
            r.tokens.input,
            r.tokens.output,
            r.tokens.cache_read,
            r.tokens.cache_write,
            r.tokens.reasoning,
        ],
        cost: r.cost,
    });
    let failed_attempts = r
        .attempts
        .iter()
        .filter(|a| !matches!(a.outcome, Outcome::Ok(_)))
        .count();
    tracing::info!(
        target: "switchyard::request",
        request_id = %r.request_id,
        client_request_id = r.client_request_id.as_deref(),
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
        cost_usd = r.cost,
        latency_ms = latency.as_secs_f64() * 1000.0,
        ttft_ms = r.first_token.map(|d| d.as_secs_f64() * 1000.0),
        overhead_ms = overhead.as_secs_f64() * 1000.0,
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

    /// A request answered by its first attempt yields a record the store can keep without
    /// the attempts' JSON: its attempt's latency follows from the request's latency and
    /// overhead exactly, whatever the durations (from nanoseconds to hours).
    #[test]
    fn one_successful_attempt_is_implied_by_the_record() {
        let started = Instant::now();
        // A request answered by `up`/`m` with 200, after one attempt that ended with `outcome`.
        let one = |outcome: Outcome, elapsed: Duration| {
            let mut r = Record::new("req-1".into(), "chat.completions", started);
            r.provider = "up".into();
            r.upstream_model = "m".into();
            r.status = 200;
            r.attempts = vec![Attempt {
                provider: "up".into(),
                model: "m".into(),
                outcome,
                started,
                elapsed,
                span: None,
            }];
            r
        };
        let mut rng = fastrand::Rng::with_seed(7);
        for i in 0..20_000u32 {
            let scale = 10u64.pow(i % 13);
            let elapsed = Duration::from_nanos(rng.u64(0..scale.max(2)));
            let latency = elapsed + Duration::from_nanos(rng.u64(0..scale.max(2)));
            let s = one(Outcome::Ok(StatusCode::OK), elapsed).to_store(latency);
            assert!(
                s.attempts_implied(),
                "{elapsed:?} of {latency:?}: {} - {} vs {}",
                s.latency_ms,
                s.overhead_ms,
                s.attempts[0].latency_ms
            );
        }
        // An attempt that failed (its record carries its error word) is not implied.
        let failed = one(Outcome::Timeout, Duration::from_millis(3));
        assert!(!failed.to_store(Duration::from_millis(5)).attempts_implied());
    }

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
                endpoint: "chat".into(),
                model: "gpt".into(),
                version: "v2".into(),
                provider: "openai".into(),
                upstream_model: "gpt-4o".into(),
                status: 200,
                streamed: true,
                completed: Some(false),
                client_gone: Some(true),
                input_tokens: 10,
                cache_read_tokens: 3,
                cache_write_tokens: 4,
                reasoning_tokens: 5,
                output_tokens: 20,
                cost_usd: Some(0.25),
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
                request_body: None,
                completion: None,
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
        assert_eq!(s.cost_usd, None, "no price known: no cost, not 0");
        assert!(s.ts > 1_700_000_000_000, "wall clock of the start");
    }

    #[test]
    fn bodies_are_kept_only_when_asked_and_capped() {
        let mut r = Record::new("req-3".into(), "chat", Instant::now());
        r.completion_text("ignored: bodies are off");
        let s = r.to_store(Duration::ZERO);
        assert_eq!((s.request_body, s.completion), (None, None));

        let mut r = Record::new("req-4".into(), "chat", Instant::now());
        r.keep_bodies(Bytes::from_static(br#"{"model":"m"}"#));
        r.completion_text("hello ");
        r.completion_text("world");
        let s = r.to_store(Duration::ZERO);
        assert_eq!(s.request_body.as_deref(), Some(r#"{"model":"m"}"#));
        assert_eq!(s.completion.as_deref(), Some("hello world"));

        // Over the cap: cut on a character boundary, with a marker saying how much there was.
        let mut r = Record::new("req-5".into(), "chat", Instant::now());
        r.keep_bodies(Bytes::from(vec![b'x'; BODY_CAP + 10]));
        let piece = "é".repeat(1000);
        for _ in 0..(BODY_CAP / piece.len() + 2) {
            r.completion_text(&piece);
        }
        let s = r.to_store(Duration::ZERO);
        let body = s.request_body.unwrap();
        assert!(body.starts_with("xxx"));
        assert!(body.ends_with(&format!(
            "[truncated by switchyard: {} bytes, the first {BODY_CAP} kept]",
            BODY_CAP + 10
        )));
        let completion = s.completion.unwrap();
        let (kept, marker) = completion.split_once("\n[truncated").unwrap();
        assert!(kept.len() <= BODY_CAP && kept.chars().all(|c| c == 'é'));
        assert!(
            marker.contains(&format!("the first {} kept", kept.len())),
            "{marker}"
        );
    }
}
