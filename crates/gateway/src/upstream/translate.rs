//! Calls whose client format differs from the provider's: the canonical request rendered in the
//! provider's wire format (with its URL, credentials and, for Bedrock, a SigV4 signature), and
//! the provider's answers and streams read back into canonical types.
//!
//! What each format looks like is `providers`' business; this module only picks the right one
//! and does the HTTP parts.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use providers::canonical::{ChatRequest, ChatResponse, StreamEvent};
use providers::openai::peek::Endpoint;
use providers::{anthropic, bedrock, gemini, openai, sse};

use super::Failure;
use crate::config::{ProviderKind, Target};

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Anthropic,
    Gemini,
    Bedrock,
}

impl Wire {
    pub fn of(kind: &ProviderKind) -> Wire {
        match kind {
            ProviderKind::OpenAi
            | ProviderKind::Azure { .. }
            | ProviderKind::OpenAiCompatible { .. }
            | ProviderKind::Mock(_) => Wire::OpenAi,
            ProviderKind::Anthropic { .. } => Wire::Anthropic,
            ProviderKind::Gemini => Wire::Gemini,
            ProviderKind::Bedrock(_) => Wire::Bedrock,
        }
    }
}

static JSON: HeaderValue = HeaderValue::from_static("application/json");
static IDENTITY: HeaderValue = HeaderValue::from_static("identity");
static ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");

/// The HTTP request for `target` carrying `req` (already addressed to the target's model).
pub fn request(target: &Target, req: &ChatRequest) -> Result<Request<Full<Bytes>>, Failure> {
    let p = &target.provider;
    let unsupported = |e: providers::wire::WireError| {
        Failure::Unsupported(
            format!("Provider '{}' cannot take this request: {e}", p.name),
            e.param().map(str::to_string),
        )
    };
    let (url, body) = match &p.kind {
        ProviderKind::Anthropic { .. } => (
            format!("{}/v1/messages", p.base_url),
            anthropic::request::render(req).map_err(unsupported)?,
        ),
        ProviderKind::Gemini => (
            format!("{}{}", p.base_url, gemini::path(&target.model, req.stream)),
            gemini::request::render(req).map_err(unsupported)?,
        ),
        ProviderKind::Bedrock(_) => (
            format!("{}{}", p.base_url, bedrock::path(&target.model, req.stream)),
            bedrock::request::render(req).map_err(unsupported)?,
        ),
        _ => (
            super::openai::url(target, Endpoint::Chat),
            openai::request::render(req),
        ),
    };
    let uri: Uri = url.parse().map_err(|_| Failure::Connect)?;
    let mut out = Request::new(Full::new(Bytes::new()));
    *out.method_mut() = Method::POST;
    *out.uri_mut() = uri;
    let h = out.headers_mut();
    h.insert(header::CONTENT_TYPE, JSON.clone());
    h.insert(header::ACCEPT_ENCODING, IDENTITY.clone());
    if let Some((name, value)) = &p.auth_header {
        h.insert(name.clone(), value.clone());
    }
    for (name, value) in &p.extra_headers {
        h.insert(name.clone(), value.clone());
    }
    match &p.kind {
        ProviderKind::Anthropic { version } => {
            if let Ok(v) = HeaderValue::try_from(version.as_str()) {
                h.insert(ANTHROPIC_VERSION.clone(), v);
            }
        }
        ProviderKind::Bedrock(b) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let creds = bedrock::sigv4::Credentials {
                access_key_id: b.access_key_id.expose(),
                secret_access_key: b.secret_access_key.expose(),
                session_token: b.session_token.as_ref().map(|t| t.expose()),
            };
            let signed = bedrock::sigv4::sign(
                "POST",
                &url,
                &[("content-type", "application/json")],
                &body,
                &b.region,
                "bedrock",
                &creds,
                now,
            )
            .map_err(|_| Failure::Connect)?;
            for (name, value) in signed {
                if let (Ok(n), Ok(mut v)) =
                    (HeaderName::try_from(name), HeaderValue::try_from(value))
                {
                    v.set_sensitive(true);
                    h.insert(n, v);
                }
            }
        }
        _ => {}
    }
    *out.body_mut() = Full::new(Bytes::from(body));
    Ok(out)
}

/// A buffered answer in the provider's format, read into canonical types.
pub fn response(wire: Wire, body: &[u8]) -> Result<ChatResponse, String> {
    match wire {
        Wire::OpenAi => openai::response::parse(body),
        Wire::Anthropic => anthropic::response::parse(body),
        Wire::Gemini => gemini::response::parse(body),
        Wire::Bedrock => bedrock::response::parse(body),
    }
    .map_err(|e| e.to_string())
}

/// Reads a provider's stream incrementally: bytes in, canonical events out.
pub enum Decoder {
    OpenAi(sse::Framer, openai::stream::Decoder),
    Anthropic(sse::Framer, anthropic::stream::Decoder),
    Gemini(sse::Framer, gemini::stream::Decoder),
    Bedrock(bedrock::eventstream::Decoder, bedrock::stream::Decoder),
}

impl Decoder {
    pub fn new(wire: Wire) -> Decoder {
        match wire {
            Wire::OpenAi => Decoder::OpenAi(sse::Framer::new(), openai::stream::Decoder::new()),
            Wire::Anthropic => {
                Decoder::Anthropic(sse::Framer::new(), anthropic::stream::Decoder::new())
            }
            Wire::Gemini => Decoder::Gemini(sse::Framer::new(), gemini::stream::Decoder::new()),
            Wire::Bedrock => Decoder::Bedrock(
                bedrock::eventstream::Decoder::new(),
                bedrock::stream::Decoder::new(),
            ),
        }
    }

    /// Feeds bytes; appends the events they complete.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), String> {
        match self {
            Decoder::OpenAi(f, d) => {
                f.push(bytes);
                while let Some(ev) = f.next_event() {
                    if let Some(data) = sse::data(&ev) {
                        if &*data != b"[DONE]" {
                            d.decode(&data, out).map_err(|e| e.to_string())?;
                        }
                    }
                }
            }
            Decoder::Anthropic(f, d) => {
                f.push(bytes);
                while let Some(ev) = f.next_event() {
                    if let Some(data) = sse::data(&ev) {
                        d.decode(sse::event_name(&ev), &data, out)
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
            Decoder::Gemini(f, d) => {
                f.push(bytes);
                while let Some(ev) = f.next_event() {
                    if let Some(data) = sse::data(&ev) {
                        d.decode(&data, out).map_err(|e| e.to_string())?;
                    }
                }
            }
            Decoder::Bedrock(es, d) => {
                es.push(bytes);
                while let Some(msg) = es.next_message().map_err(|e| format!("{e:?}"))? {
                    d.decode(&msg, out).map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// At the upstream's end: decodes a last SSE event that lacked its blank line.
    pub fn end(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), String> {
        let tail = match self {
            Decoder::OpenAi(f, _) | Decoder::Anthropic(f, _) | Decoder::Gemini(f, _) => {
                f.take_pending()
            }
            Decoder::Bedrock(..) => return Ok(()),
        };
        if tail.trim_ascii().is_empty() {
            return Ok(());
        }
        let mut terminated = tail.to_vec();
        terminated.extend_from_slice(b"\n\n");
        self.push(&terminated, out)
    }
}
