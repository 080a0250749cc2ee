//! Traces: one OpenTelemetry span per request (kind SERVER) and one per upstream attempt (kind
//! CLIENT, a child of the request's), named and described by the GenAI semantic conventions,
//! exported over OTLP/HTTP with the JSON encoding when `telemetry.otlp_endpoint` is set.
//!
//! Nothing here runs without an endpoint: the pipeline makes a [`Trace`] only when the app has
//! an [`Exporter`]. A traced request continues the caller's W3C `traceparent` (or starts a new
//! trace), sends each upstream attempt its own `traceparent`, and, when its usage record is
//! emitted, has its spans encoded once ([`span`]) and handed to the exporter's bounded queue
//! without waiting ([`export`]). Spans carry names, ids, timings, statuses, token counts and
//! cost — never prompts, completions, credentials or virtual keys.

mod export;
mod span;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

pub use export::Exporter;

use crate::config::Provider;
use crate::usage::Record;

/// The W3C Trace Context header.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// W3C Trace Context: a `tracestate` longer than this may be dropped rather than propagated.
const MAX_TRACESTATE: usize = 512;

/// A 16-byte trace id, never all zeroes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id, never all zeroes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    fn random() -> TraceId {
        TraceId(fastrand::u128(1..).to_be_bytes())
    }

    /// Lowercase hex, as OTLP/JSON and `traceparent` write it.
    pub fn hex(&self) -> String {
        let mut out = Vec::with_capacity(32);
        push_hex(&mut out, &self.0);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl SpanId {
    fn random() -> SpanId {
        SpanId(fastrand::u64(1..).to_be_bytes())
    }

    pub fn hex(&self) -> String {
        let mut out = Vec::with_capacity(16);
        push_hex(&mut out, &self.0);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Appends `bytes` as lowercase hex.
fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
}

/// Where a request's spans hang: its trace and its own span, the parent of its attempts.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// The caller's sampling decision (`traceparent` flags), or `true` for a new trace. An
    /// unsampled request exports no span and tells its upstreams it is not sampled.
    pub sampled: bool,
}

impl Context {
    /// A new span id for an upstream attempt.
    pub fn child(&self) -> SpanId {
        SpanId::random()
    }

    /// The `traceparent` an upstream receives for the attempt whose span is `span`.
    pub fn traceparent(&self, span: SpanId) -> HeaderValue {
        let mut v = Vec::with_capacity(55);
        v.extend_from_slice(b"00-");
        push_hex(&mut v, &self.trace_id.0);
        v.push(b'-');
        push_hex(&mut v, &span.0);
        v.extend_from_slice(if self.sampled { b"-01" } else { b"-00" });
        HeaderValue::from_bytes(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// A traced request: its context, the caller's span when it sent a `traceparent`, and where
/// its spans go.
#[derive(Debug)]
pub struct Trace {
    pub context: Context,
    pub parent: Option<SpanId>,
    /// The caller's `tracestate`, passed on to upstreams unchanged with their `traceparent`.
    pub state: Option<HeaderValue>,
    sink: export::Sink,
}

impl Trace {
    /// Starts the request's span: in the caller's trace when its `traceparent` is valid, else in
    /// a new one.
    pub fn start(exporter: &Exporter, headers: &HeaderMap) -> Trace {
        let caller = headers
            .get(&TRACEPARENT)
            .and_then(|v| parse_traceparent(v.as_bytes()));
        let (trace_id, parent, sampled) = match caller {
            Some((t, p, flags)) => (t, Some(p), flags & 1 == 1),
            None => (TraceId::random(), None, true),
        };
        // Only with a valid `traceparent` (W3C: a `tracestate` alone is ignored); several
        // header lines are one list.
        let state = caller.and_then(|_| {
            let mut lines = headers.get_all(&TRACESTATE).iter();
            let first = lines.next()?.clone();
            let joined = lines.try_fold(first, |acc, v| {
                let mut b = acc.as_bytes().to_vec();
                b.push(b',');
                b.extend_from_slice(v.as_bytes());
                HeaderValue::from_bytes(&b).ok()
            })?;
            (!joined.is_empty() && joined.len() <= MAX_TRACESTATE).then_some(joined)
        });
        Trace {
            context: Context {
                trace_id,
                span_id: SpanId::random(),
                sampled,
            },
            parent,
            state,
            sink: exporter.sink(),
        }
    }

    /// Encodes the request's spans from its finished record (`latency` after its start) and
    /// queues them for export. Never waits: a full queue drops them, counted.
    pub fn finish(self, record: &Record, latency: Duration) {
        if !self.context.sampled {
            return;
        }
        let mut json = Vec::with_capacity(1024 + 768 * record.attempts.len());
        let count = span::encode(&mut json, &self, record, latency);
        self.sink.send(json, count);
    }
}

/// An upstream attempt's span: its id, and the provider it went to (for `server.address` and
/// `gen_ai.provider.name`).
#[derive(Debug, Clone)]
pub struct AttemptSpan {
    pub id: SpanId,
    pub provider: Arc<Provider>,
}

/// Reads a W3C `traceparent` (`00-<trace id>-<parent id>-<flags>`, lowercase hex): the trace id,
/// the caller's span id and the flags, or `None` when it is not valid (a new trace is started
/// then).
/// Versions above 00 are read by their first four fields, as the W3C recommends.
pub fn parse_traceparent(v: &[u8]) -> Option<(TraceId, SpanId, u8)> {
    if v.len() < 55 || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    let version = unhex::<1>(&v[0..2])?;
    if version[0] == 0xff || (version[0] == 0 && v.len() != 55) {
        return None;
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let trace = unhex::<16>(&v[3..35])?;
    let span = unhex::<8>(&v[36..52])?;
    let flags = unhex::<1>(&v[53..55])?[0];
    if trace == [0; 16] || span == [0; 8] {
        return None;
    }
    Some((TraceId(trace), SpanId(span), flags))
}

/// `N` bytes from `2N` lowercase hex digits.
fn unhex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_a_valid_traceparent() {
        let (t, s, flags) = parse_traceparent(VALID.as_bytes()).unwrap();
        assert_eq!(t.hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s.hex(), "00f067aa0ba902b7");
        assert_eq!(flags, 1);
        let unsampled = VALID.replace("-01", "-00");
        assert_eq!(parse_traceparent(unsampled.as_bytes()).unwrap().2, 0);
        // A future version may append fields.
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what";
        assert!(parse_traceparent(future.as_bytes()).is_some());
    }

    #[test]
    fn refuses_invalid_traceparents() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn an_attempt_gets_its_own_span_in_the_same_trace() {
        let mut cx = Context {
            trace_id: TraceId([0xab; 16]),
            span_id: SpanId([1; 8]),
            sampled: true,
        };
        let child = cx.child();
        assert_ne!(child, cx.span_id);
        let tp = cx.traceparent(child);
        let (t, s, flags) = parse_traceparent(tp.as_bytes()).unwrap();
        assert_eq!((t, s, flags), (cx.trace_id, child, 1));
        cx.sampled = false;
        assert!(cx.traceparent(child).to_str().unwrap().ends_with("-00"));
    }
}
