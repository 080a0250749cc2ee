//! Relaying a stream whose provider format differs from the client's: upstream bytes are decoded
//! into canonical events (SSE or AWS event-stream), priced when the usage arrives, and encoded in
//! the client's format as they come — never buffered to the end.
//!
//! The stream ends properly whatever the upstream does: a break, a stall, an end before the
//! finish, or undecodable bytes become an error event in the client's format (OpenAI: an error
//! chunk then `[DONE]`; Anthropic: `event: error`).

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use providers::canonical::StreamEvent;
use providers::{anthropic, openai};
use tokio::time::Sleep;

use crate::config::Price;
use crate::cost::{self, Tokens};
use crate::error::Protocol;
use crate::upstream::translate::Decoder;
use crate::upstream::UpstreamBody;
use crate::usage;

use super::finish_record;

/// The client's stream format.
pub enum Encoder {
    OpenAi(openai::stream::Encoder),
    Anthropic(anthropic::stream::Encoder),
}

impl Encoder {
    pub fn new(protocol: Protocol, include_usage: bool) -> Encoder {
        match protocol {
            Protocol::Anthropic => Encoder::Anthropic(anthropic::stream::Encoder::new()),
            _ => Encoder::OpenAi(openai::stream::Encoder::new(include_usage)),
        }
    }

    fn encode(&mut self, e: &StreamEvent, out: &mut Vec<u8>) {
        match self {
            Encoder::OpenAi(enc) => enc.encode(e, out),
            Encoder::Anthropic(enc) => enc.encode(e, out),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        match self {
            Encoder::OpenAi(enc) => enc.finish(out),
            Encoder::Anthropic(enc) => enc.finish(out),
        }
    }

    /// An error event that ends the stream.
    fn error(&mut self, message: &str, code: &str, out: &mut Vec<u8>) {
        match self {
            Encoder::OpenAi(_) => {
                let err = serde_json::json!({
                    "error": { "message": message, "type": "api_error", "param": null, "code": code }
                });
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&serde_json::to_vec(&err).unwrap_or_default());
                out.extend_from_slice(b"\n\ndata: [DONE]\n\n");
            }
            Encoder::Anthropic(_) => {
                let err = serde_json::json!({ "type": "error", "error": { "type": "api_error", "message": message } });
                out.extend_from_slice(b"event: error\ndata: ");
                out.extend_from_slice(&serde_json::to_vec(&err).unwrap_or_default());
                out.extend_from_slice(b"\n\n");
            }
        }
    }
}

pub struct Translate {
    upstream: UpstreamBody,
    first: Option<Bytes>,
    decoder: Decoder,
    encoder: Encoder,
    events: Vec<StreamEvent>,
    price: Option<Price>,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    finished_choice: bool,
    ended: bool,
    /// Providers may report usage several times (Gemini, as it grows); only the last counts and
    /// it is written once, at the end.
    usage: Option<StreamEvent>,
    /// Filled into the stream's start when the provider leaves them empty.
    stamp: Stamp,
    /// Same protocol on both sides (Anthropic to Anthropic): whole events are forwarded byte for
    /// byte and only decoded for accounting.
    raw: Option<providers::sse::Framer>,
    record: Option<Box<usage::Record>>,
    /// The limits reservation, settled with the real usage when the record is finished.
    reservation: Option<crate::limits::Reservation>,
}

/// What a translated answer must carry when the provider does not say: an id, the model, the
/// creation time.
#[derive(Debug, Clone)]
pub struct Stamp {
    pub id: String,
    pub model: String,
    pub created: u64,
}

impl Stamp {
    pub fn fill(&self, id: &mut String, model: &mut String, created: &mut u64) {
        if id.is_empty() {
            id.clone_from(&self.id);
        }
        if model.is_empty() {
            model.clone_from(&self.model);
        }
        if *created == 0 {
            *created = self.created;
        }
    }
}

impl Translate {
    #[expect(
        clippy::too_many_arguments,
        reason = "each part of the relay is distinct; a builder would only rename them"
    )]
    pub fn new(
        upstream: UpstreamBody,
        first: Option<Bytes>,
        decoder: Decoder,
        encoder: Encoder,
        price: Option<Price>,
        idle: Duration,
        stamp: Stamp,
        record: Box<usage::Record>,
    ) -> Self {
        Translate {
            upstream,
            first,
            decoder,
            encoder,
            events: Vec::new(),
            price,
            idle,
            idle_timer: Box::pin(tokio::time::sleep(idle)),
            finished_choice: false,
            ended: false,
            usage: None,
            stamp,
            raw: None,
            record: Some(record),
            reservation: None,
        }
    }

    /// Settles `reservation` with the real usage when the stream ends.
    pub fn settling(mut self, reservation: Option<crate::limits::Reservation>) -> Self {
        self.reservation = reservation;
        self
    }

    /// Forwards the provider's own events instead of re-encoding them (same protocol).
    pub fn forward_original(mut self) -> Self {
        self.raw = Some(providers::sse::Framer::new());
        self
    }

    /// Decodes `bytes` and encodes what they complete; `None` when they complete nothing.
    fn on_bytes(&mut self, bytes: &[u8]) -> Option<Bytes> {
        let mut out = Vec::new();
        if let Some(raw) = self.raw.as_mut() {
            raw.push(bytes);
            let complete: Vec<Bytes> = std::iter::from_fn(|| raw.next_event()).collect();
            for event in complete {
                if let Err(e) = self.decoder.push(&event, &mut self.events) {
                    self.fail(
                        &format!("The upstream stream could not be read: {e}"),
                        "upstream_stream_malformed",
                        &mut out,
                    );
                    return Some(Bytes::from(out));
                }
                self.account();
                out.extend_from_slice(&event);
            }
            if out.is_empty() {
                return None;
            }
            let deadline = tokio::time::Instant::now() + self.idle;
            self.idle_timer.as_mut().reset(deadline);
            return Some(Bytes::from(out));
        }
        if let Err(e) = self.decoder.push(bytes, &mut self.events) {
            self.fail(
                &format!("The upstream stream could not be read: {e}"),
                "upstream_stream_malformed",
                &mut out,
            );
            return Some(Bytes::from(out));
        }
        self.encode_events(&mut out);
        if out.is_empty() {
            return None;
        }
        let deadline = tokio::time::Instant::now() + self.idle;
        self.idle_timer.as_mut().reset(deadline);
        Some(Bytes::from(out))
    }

    fn encode_events(&mut self, out: &mut Vec<u8>) {
        let mut events = std::mem::take(&mut self.events);
        for mut e in events.drain(..) {
            match &mut e {
                StreamEvent::Usage(u) => {
                    let tokens = Tokens {
                        input: u.input_tokens,
                        output: u.output_tokens,
                        cache_read: u.cache_read_tokens,
                        cache_write: u.cache_write_tokens,
                        reasoning: u.reasoning_tokens,
                    };
                    let usd = self.price.map(|p| cost::usd(&p, &tokens));
                    // An unknown cost is left out, never shown as 0.
                    u.cost = usd;
                    if let Some(r) = self.record.as_mut() {
                        r.tokens = tokens;
                        r.cost = usd;
                    }
                    self.usage = Some(e);
                    continue;
                }
                StreamEvent::Start { id, model, created } => self.stamp.fill(id, model, created),
                StreamEvent::Finish { .. } => self.finished_choice = true,
                StreamEvent::Error(err) => {
                    if let Some(r) = self.record.as_mut() {
                        r.error.get_or_insert_with(|| err.message.clone());
                    }
                }
                StreamEvent::TextDelta { text, .. } => {
                    if let Some(r) = self.record.as_mut() {
                        r.first_token.get_or_insert_with(|| r.started.elapsed());
                        r.completion_text(text);
                    }
                }
                StreamEvent::ToolCallStart { .. } => {
                    if let Some(r) = self.record.as_mut() {
                        r.first_token.get_or_insert_with(|| r.started.elapsed());
                    }
                }
                _ => {}
            }
            if self.raw.is_none() {
                self.encoder.encode(&e, out);
            }
        }
        self.events = events;
    }

    /// Reads the decoded events for the record only (pass-through mode).
    fn account(&mut self) {
        let mut sink = Vec::new();
        let raw = self.raw.take();
        self.encode_events(&mut sink);
        self.raw = raw;
        // The usage was taken for the record; nothing is re-encoded in this mode.
        self.usage = None;
    }

    fn fail(&mut self, message: &str, code: &str, out: &mut Vec<u8>) {
        if let Some(r) = self.record.as_mut() {
            r.error.get_or_insert_with(|| message.to_string());
            r.status = 502;
        }
        self.encoder.error(message, code, out);
        self.end(false);
    }

    fn end(&mut self, completed: bool) {
        self.ended = true;
        if let Some(mut r) = self.record.take() {
            r.completed = completed;
            finish_record(r, self.reservation.take());
        }
    }
}

impl Body for Translate {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(first) = this.first.take() {
            if let Some(out) = this.on_bytes(&first) {
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
        }
        loop {
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if let Some(out) = this.on_bytes(&data) {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
                Poll::Ready(Some(Err(_))) => {
                    let mut out = Vec::new();
                    this.fail(
                        "The upstream connection broke before the stream completed.",
                        "upstream_stream_broken",
                        &mut out,
                    );
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                }
                Poll::Ready(None) => {
                    let mut out = Vec::new();
                    if let Some(raw) = this.raw.as_mut() {
                        let tail = raw.take_pending();
                        if !tail.trim_ascii().is_empty() {
                            let mut ev = tail.to_vec();
                            ev.extend_from_slice(b"\n\n");
                            if this.decoder.push(&ev, &mut this.events).is_ok() {
                                this.account();
                                out.extend_from_slice(&ev);
                            }
                        }
                    }
                    match this.decoder.end(&mut this.events) {
                        Err(e) => this.fail(
                            &format!("The upstream stream could not be read: {e}"),
                            "upstream_stream_malformed",
                            &mut out,
                        ),
                        Ok(()) => {
                            this.encode_events(&mut out);
                            if this.finished_choice {
                                if let Some(u) = this.usage.take() {
                                    this.encoder.encode(&u, &mut out);
                                }
                                if this.raw.is_none() {
                                    this.encoder.finish(&mut out);
                                }
                                this.end(true);
                            } else {
                                this.fail(
                                    "The upstream stream ended before it completed.",
                                    "upstream_stream_incomplete",
                                    &mut out,
                                );
                            }
                        }
                    }
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                }
                Poll::Pending => {
                    if this.idle_timer.as_mut().poll(cx).is_ready() {
                        let mut out = Vec::new();
                        this.fail(
                            "The upstream stopped sending before the stream completed.",
                            "upstream_timeout",
                            &mut out,
                        );
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

impl Drop for Translate {
    /// The client went away mid-stream: the record still gets written, saying so.
    fn drop(&mut self) {
        if let Some(mut r) = self.record.take() {
            r.error
                .get_or_insert_with(|| "client disconnected before the stream completed".into());
            r.client_gone = true;
            finish_record(r, self.reservation.take());
        }
    }
}
