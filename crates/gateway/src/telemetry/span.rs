//! A finished request as OTLP/JSON spans: the request's SERVER span and one CLIENT span per
//! upstream attempt, written straight into one buffer (no intermediate tree).
//!
//! The encoding is the OTLP/JSON mapping of `opentelemetry.proto.trace.v1.Span`: lowerCamelCase
//! keys, ids as lowercase hex, 64-bit integers (times, `intValue`) as decimal strings, enums
//! (`kind`, `status.code`) as integers. Names and attributes follow the GenAI semantic
//! conventions (span name `{gen_ai.operation.name} {gen_ai.request.model}`); the `switchyard.*`
//! attributes are the gateway's own. Nothing from a request or response body is written but
//! token counts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{Provider, ProviderKind};
use crate::upstream::{Attempt, Outcome};
use crate::usage::Record;

use super::{push_hex, SpanId, Trace, TraceId};

/// `Span.SpanKind`.
const SERVER: u8 = 2;
const CLIENT: u8 = 3;

/// `Status.StatusCode` with the status message for errors.
enum Status<'a> {
    Unset,
    Ok,
    Error(&'a str),
}

/// Appends the spans of `r` to `out`, comma-separated; returns how many.
pub(super) fn encode(out: &mut Vec<u8>, trace: &Trace, r: &Record, latency: Duration) -> usize {
    let op = operation(r.endpoint);
    let start = unix_nanos(r.time);
    let served = r
        .attempts
        .iter()
        .rev()
        .find(|a| matches!(a.outcome, Outcome::Ok(_)));
    let status = if r.status >= 500 {
        Status::Error(r.error.as_deref().unwrap_or(""))
    } else if r.status >= 400 || r.error.is_some() {
        Status::Unset
    } else {
        Status::Ok
    };
    let head = Head {
        trace_id: trace.context.trace_id,
        span_id: trace.context.span_id,
        parent: trace.parent,
        name: &span_name(op, &r.model),
        kind: SERVER,
        start,
        end: start.saturating_add(nanos(latency)),
    };
    span(out, &head, status, |a| {
        a.str("gen_ai.operation.name", op);
        if !r.model.is_empty() {
            a.str("gen_ai.request.model", &r.model);
        }
        if let Some(p) = served.and_then(|s| s.span.as_ref()) {
            let name = provider_name(&p.provider.kind);
            a.str("gen_ai.provider.name", name);
            a.str("gen_ai.system", name);
        }
        if served.is_some() {
            a.str("gen_ai.response.model", &r.upstream_model);
            usage(a, r);
        }
        if r.status != 0 {
            a.int("http.response.status_code", u64::from(r.status));
        }
        if r.status >= 500 {
            let status = http::StatusCode::from_u16(r.status);
            a.str("error.type", status.as_ref().map_or("5xx", |s| s.as_str()));
        } else if r.client_gone && !r.completed {
            a.str("error.type", "client_disconnected");
        }
        a.str("switchyard.request_id", &r.request_id);
        if let Some(id) = &r.client_request_id {
            a.str("switchyard.client_request_id", id);
        }
        a.str("switchyard.endpoint", r.endpoint);
        if !r.version.is_empty() {
            a.str("switchyard.version", &r.version);
        }
        if served.is_some() {
            a.target("switchyard.target", &r.provider, &r.upstream_model);
        }
        if let Some(c) = r.cost {
            a.double("switchyard.cost_usd", c);
        }
        a.bool("switchyard.streamed", r.streamed);
        a.int("switchyard.attempts", r.attempts.len() as u64);
    });
    let mut count = 1;
    for (i, at) in r.attempts.iter().enumerate() {
        let Some(s) = &at.span else { continue };
        out.push(b',');
        let begin = start.saturating_add(nanos(at.started.saturating_duration_since(r.started)));
        let head = Head {
            trace_id: trace.context.trace_id,
            span_id: s.id,
            parent: Some(trace.context.span_id),
            name: &span_name(op, &at.model),
            kind: CLIENT,
            start: begin,
            end: begin.saturating_add(nanos(at.elapsed)),
        };
        span(out, &head, attempt_status(&at.outcome), |a| {
            attempt_attributes(a, op, i, at, &s.provider, r);
        });
        count += 1;
    }
    count
}

fn attempt_attributes(
    a: &mut Attrs<'_>,
    op: &str,
    i: usize,
    at: &Attempt,
    provider: &Provider,
    r: &Record,
) {
    a.str("gen_ai.operation.name", op);
    let name = provider_name(&provider.kind);
    a.str("gen_ai.provider.name", name);
    a.str("gen_ai.system", name);
    a.str("gen_ai.request.model", &at.model);
    server(a, &provider.base_url);
    match &at.outcome {
        Outcome::Ok(s) => {
            a.int("http.response.status_code", u64::from(s.as_u16()));
            a.str("gen_ai.response.model", &at.model);
            usage(a, r);
        }
        Outcome::Status(s) => {
            a.int("http.response.status_code", u64::from(s.as_u16()));
            a.str("error.type", s.as_str());
        }
        other => a.str("error.type", error_type(other)),
    }
    a.int("switchyard.attempt", i as u64 + 1);
    a.str("switchyard.provider", &at.provider);
    a.target("switchyard.target", &at.provider, &at.model);
}

fn usage(a: &mut Attrs<'_>, r: &Record) {
    let t = &r.tokens;
    // The whole prompt, cached or not (OpenAI's `prompt_tokens`).
    a.int(
        "gen_ai.usage.input_tokens",
        t.input + t.cache_read + t.cache_write,
    );
    a.int("gen_ai.usage.output_tokens", t.output);
}

fn attempt_status(o: &Outcome) -> Status<'_> {
    match o {
        Outcome::Ok(_) => Status::Ok,
        // The losing hedge did nothing wrong.
        Outcome::Cancelled => Status::Unset,
        Outcome::Status(s) => Status::Error(s.as_str()),
        other => Status::Error(error_type(other)),
    }
}

/// `error.type` of an attempt that got no HTTP status.
fn error_type(o: &Outcome) -> &'static str {
    match o {
        Outcome::Connect => "connect_error",
        Outcome::Timeout => "timeout",
        Outcome::Malformed => "malformed_response",
        Outcome::Unsupported => "unsupported_request",
        Outcome::Cancelled => "cancelled",
        Outcome::Ok(_) | Outcome::Status(_) => "",
    }
}

/// `gen_ai.operation.name` of an endpoint.
fn operation(endpoint: &str) -> &'static str {
    match endpoint {
        "completions" => "text_completion",
        "embeddings" => "embeddings",
        _ => "chat",
    }
}

/// `gen_ai.provider.name`: the well-known values of the conventions where one applies, else the
/// provider's configured `type`.
fn provider_name(kind: &ProviderKind) -> &'static str {
    match kind {
        ProviderKind::OpenAi => "openai",
        ProviderKind::Azure { .. } => "azure.ai.openai",
        ProviderKind::Anthropic { .. } => "anthropic",
        ProviderKind::Gemini => "gcp.gemini",
        ProviderKind::Bedrock(_) => "aws.bedrock",
        ProviderKind::OpenAiCompatible {
            preset: Some("mistral"),
        } => "mistral_ai",
        other => other.type_name(),
    }
}

/// `server.address` and `server.port` of a provider's base URL (none for the built-in mock).
fn server(a: &mut Attrs<'_>, base_url: &str) {
    let Ok(uri) = base_url.parse::<http::Uri>() else {
        return;
    };
    let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
        return;
    };
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    a.str(
        "server.address",
        host.trim_start_matches('[').trim_end_matches(']'),
    );
    a.int("server.port", u64::from(port));
}

fn span_name(op: &str, model: &str) -> String {
    if model.is_empty() {
        op.to_string()
    } else {
        format!("{op} {model}")
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, nanos)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What every span has besides its status and attributes.
struct Head<'a> {
    trace_id: TraceId,
    span_id: SpanId,
    parent: Option<SpanId>,
    name: &'a str,
    kind: u8,
    start: u64,
    end: u64,
}

fn span(out: &mut Vec<u8>, h: &Head<'_>, status: Status<'_>, attrs: impl FnOnce(&mut Attrs<'_>)) {
    out.extend_from_slice(b"{\"traceId\":\"");
    push_hex(out, &h.trace_id.0);
    out.extend_from_slice(b"\",\"spanId\":\"");
    push_hex(out, &h.span_id.0);
    out.push(b'"');
    if let Some(p) = h.parent {
        out.extend_from_slice(b",\"parentSpanId\":\"");
        push_hex(out, &p.0);
        out.push(b'"');
    }
    // Sampled (W3C trace flags in the low byte).
    out.extend_from_slice(b",\"flags\":1,\"name\":");
    string(out, h.name);
    out.extend_from_slice(b",\"kind\":");
    out.push(b'0' + h.kind);
    out.extend_from_slice(b",\"startTimeUnixNano\":\"");
    out.extend_from_slice(itoa::Buffer::new().format(h.start).as_bytes());
    out.extend_from_slice(b"\",\"endTimeUnixNano\":\"");
    out.extend_from_slice(itoa::Buffer::new().format(h.end.max(h.start)).as_bytes());
    out.extend_from_slice(b"\",\"attributes\":[");
    attrs(&mut Attrs { out, first: true });
    out.extend_from_slice(b"],\"status\":{");
    match status {
        Status::Unset => {}
        Status::Ok => out.extend_from_slice(b"\"code\":1"),
        Status::Error(message) => {
            out.extend_from_slice(b"\"message\":");
            string(out, message);
            out.extend_from_slice(b",\"code\":2");
        }
    }
    out.extend_from_slice(b"}}");
}

/// A JSON string, quoted and escaped.
fn string(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Writes `KeyValue`s into a span's `attributes` array. Keys are this file's constants (plain
/// ASCII); values are escaped.
pub(super) struct Attrs<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Attrs<'_> {
    fn key(&mut self, key: &str, kind: &[u8]) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.extend_from_slice(b"{\"key\":\"");
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\",\"value\":{\"");
        self.out.extend_from_slice(kind);
        self.out.extend_from_slice(b"\":");
    }

    pub(super) fn str(&mut self, key: &str, v: &str) {
        self.key(key, b"stringValue");
        string(self.out, v);
        self.out.extend_from_slice(b"}}");
    }

    /// `provider/model`.
    fn target(&mut self, key: &str, provider: &str, model: &str) {
        self.str(key, &format!("{provider}/{model}"));
    }

    /// An `int64`, written as a decimal string.
    fn int(&mut self, key: &str, v: u64) {
        self.key(key, b"intValue");
        self.out.push(b'"');
        self.out.extend_from_slice(
            itoa::Buffer::new()
                .format(v.min(i64::MAX as u64))
                .as_bytes(),
        );
        self.out.extend_from_slice(b"\"}}");
    }

    fn double(&mut self, key: &str, v: f64) {
        if v.is_finite() {
            self.key(key, b"doubleValue");
            let _ = serde_json::to_writer(&mut *self.out, &v);
            self.out.extend_from_slice(b"}}");
        }
    }

    fn bool(&mut self, key: &str, v: bool) {
        self.key(key, b"boolValue");
        self.out
            .extend_from_slice(if v { b"true}}" } else { b"false}}" });
    }
}

/// The resource's and the scope's attributes, once per export.
pub(super) fn resource_attributes(out: &mut Vec<u8>, service_name: &str) {
    let mut a = Attrs { out, first: true };
    a.str("service.name", service_name);
    a.str("service.version", env!("CARGO_PKG_VERSION"));
    a.str("telemetry.sdk.name", "switchyard");
    a.str("telemetry.sdk.language", "rust");
    a.str("telemetry.sdk.version", env!("CARGO_PKG_VERSION"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_address_and_port_come_from_the_base_url() {
        let attrs = |url: &str| {
            let mut out = vec![b'['];
            server(
                &mut Attrs {
                    out: &mut out,
                    first: true,
                },
                url,
            );
            out.push(b']');
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            v.as_array()
                .unwrap()
                .iter()
                .map(|kv| {
                    let v = &kv["value"];
                    v["stringValue"]
                        .as_str()
                        .or(v["intValue"].as_str())
                        .unwrap()
                        .to_string()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            attrs("https://api.openai.com/v1"),
            ["api.openai.com", "443"]
        );
        assert_eq!(attrs("http://127.0.0.1:8000/v1"), ["127.0.0.1", "8000"]);
        assert_eq!(attrs("http://[::1]:11434/v1"), ["::1", "11434"]);
        assert!(attrs("").is_empty());
    }

    #[test]
    fn attributes_are_valid_otlp_json() {
        let mut out = Vec::new();
        let mut a = Attrs {
            out: &mut out,
            first: true,
        };
        a.str("k", "a \"quoted\"\nvalue");
        a.int("n", 42);
        a.double("d", 0.000125);
        a.bool("b", false);
        out.insert(0, b'[');
        out.push(b']');
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[0]["value"]["stringValue"], "a \"quoted\"\nvalue");
        assert_eq!(v[1]["value"]["intValue"], "42");
        assert_eq!(v[2]["value"]["doubleValue"], 0.000125);
        assert_eq!(v[3]["value"]["boolValue"], false);
    }
}
