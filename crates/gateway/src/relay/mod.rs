//! Relaying an upstream OpenAI event stream to the client, event by event, as it arrives.
//!
//! Owns: cutting the upstream bytes into whole SSE events (never merging events that arrived
//! apart, never holding one back), reading the usage chunk to price the request and adding
//! `usage.cost` to it, dropping that chunk when only the gateway asked for it, and ending every
//! stream properly: an upstream that breaks, stalls or closes before `[DONE]` yields an error
//! event and `data: [DONE]`, never a silent clean end. The usage record is finished when the
//! stream ends or the client goes away, whichever comes first.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use providers::openai::peek;
use providers::sse;
use tokio::time::Sleep;

use crate::config::Price;
use crate::cost::{self, Tokens};
use crate::upstream::UpstreamBody;
use crate::usage;

pub mod translate;

pub struct Relay {
    upstream: UpstreamBody,
    framer: sse::Framer,
    first: Option<Bytes>,
    /// The client asked for the usage chunk (`stream_options.include_usage`).
    client_wants_usage: bool,
    price: Option<Price>,
    /// Longest silence tolerated from the upstream between two chunks.
    idle: Duration,
    /// Armed for `idle` after the last relayed bytes; it may fire early (it is not moved on
    /// every chunk, see `idle_elapsed`).
    idle_timer: Pin<Box<Sleep>>,
    /// When bytes were last relayed.
    last: tokio::time::Instant,
    saw_done: bool,
    finished: bool,
    record: Option<Box<usage::Record>>,
    /// The limits reservation, settled with the real usage when the record is finished.
    reservation: Option<crate::limits::Reservation>,
}

impl Relay {
    pub fn new(
        upstream: UpstreamBody,
        first: Option<Bytes>,
        client_wants_usage: bool,
        price: Option<Price>,
        idle: Duration,
        record: Box<usage::Record>,
    ) -> Self {
        Relay {
            upstream,
            framer: sse::Framer::new(),
            first,
            client_wants_usage,
            price,
            idle,
            idle_timer: Box::pin(tokio::time::sleep(idle)),
            last: tokio::time::Instant::now(),
            saw_done: false,
            finished: false,
            record: Some(record),
            reservation: None,
        }
    }

    /// Settles `reservation` with the real usage when the stream ends.
    pub fn settling(mut self, reservation: Option<crate::limits::Reservation>) -> Self {
        self.reservation = reservation;
        self
    }

    /// The complete events buffered so far, edited where needed, as one frame.
    fn drain(&mut self) -> Option<Bytes> {
        let mut single: Option<Bytes> = None;
        let mut joined: Option<BytesMut> = None;
        while let Some(event) = self.framer.next_event() {
            let Some(event) = self.inspect(event) else {
                continue;
            };
            match (&mut single, &mut joined) {
                (None, None) => single = Some(event),
                (Some(first), None) => {
                    let mut buf = BytesMut::with_capacity(first.len() + event.len());
                    buf.extend_from_slice(first);
                    buf.extend_from_slice(&event);
                    single = None;
                    joined = Some(buf);
                }
                (_, Some(buf)) => buf.extend_from_slice(&event),
            }
        }
        joined.map(BytesMut::freeze).or(single)
    }

    /// Reads one event: `[DONE]`, usage, in-stream errors. Returns what to send (or nothing).
    fn inspect(&mut self, event: Bytes) -> Option<Bytes> {
        let Some(data) = sse::data(&event) else {
            return Some(event);
        };
        let data: &[u8] = &data;
        if data == b"[DONE]" {
            self.saw_done = true;
            return Some(event);
        }
        if let Some(message) = peek::error_message(data) {
            if let Some(r) = self.record.as_mut() {
                r.error.get_or_insert(message);
            }
            return Some(event);
        }
        if !has_usage(data) {
            if let Some(r) = self.record.as_mut() {
                r.first_token.get_or_insert_with(|| r.started.elapsed());
                if r.keeps_bodies() {
                    providers::openai::stream::chunk_text(data, |t| r.completion_text(t));
                }
            }
            return Some(event);
        }
        let Ok(Some((u, span))) = peek::usage(data) else {
            return Some(event);
        };
        let tokens = Tokens::from_openai(&u);
        let usd = self.price.map(|p| cost::usd(&p, &tokens));
        if let Some(r) = self.record.as_mut() {
            r.tokens = tokens;
            r.cost = usd;
        }
        if !self.client_wants_usage && is_usage_only(data) {
            return None;
        }
        if let Some(r) = self.record.as_mut().filter(|r| r.keeps_bodies()) {
            // A chunk may carry the last delta and the usage together.
            providers::openai::stream::chunk_text(data, |t| r.completion_text(t));
        }
        // An unknown cost is left out, never shown as 0.
        let Some(usd) = usd else {
            return Some(event);
        };
        let value = cost::format(usd);
        let edited = peek::add_member(data, span, "cost", value.as_bytes());
        let mut out = BytesMut::with_capacity(edited.len() + 8);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&edited);
        out.extend_from_slice(b"\n\n");
        Some(out.freeze())
    }

    /// Ends the stream with an error event (and `[DONE]`), recording why.
    fn fail(&mut self, message: &str, code: &str) -> Bytes {
        self.finished = true;
        if let Some(r) = self.record.as_mut() {
            r.error.get_or_insert_with(|| message.to_string());
            r.status = 502;
        }
        let err = serde_json::json!({
            "error": { "message": message, "type": "api_error", "param": null, "code": code }
        });
        let mut out = BytesMut::with_capacity(160);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&serde_json::to_vec(&err).unwrap_or_default());
        out.extend_from_slice(b"\n\ndata: [DONE]\n\n");
        self.finish();
        out.freeze()
    }

    fn finish(&mut self) {
        self.finished = true;
        if let Some(mut r) = self.record.take() {
            r.completed = self.saw_done;
            finish_record(r, self.reservation.take());
        }
    }

    /// Whether the upstream has been silent for `idle` since the last relayed bytes. The timer
    /// is re-armed here when it fires early, once per `idle` rather than once per chunk.
    fn idle_elapsed(&mut self, cx: &mut Context<'_>) -> bool {
        if self.idle_timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        let deadline = self.last + self.idle;
        if tokio::time::Instant::now() >= deadline {
            return true;
        }
        self.idle_timer.as_mut().reset(deadline);
        self.idle_timer.as_mut().poll(cx).is_ready()
    }

    fn on_bytes(&mut self, data: Bytes) -> Option<Bytes> {
        // Not copied: whole events are cut from the chunk as it is.
        self.framer.push_bytes(data);
        let out = self.drain();
        if out.is_some() {
            // A clock read, not a timer-wheel update per chunk: the timer catches up when it
            // fires.
            self.last = tokio::time::Instant::now();
        }
        out
    }
}

/// Settles the request's reservation with what its record says was used, then hands the record
/// on. Both happen off the request path.
pub(crate) fn finish_record(
    r: Box<usage::Record>,
    reservation: Option<crate::limits::Reservation>,
) {
    if let Some(res) = reservation {
        res.settle_in_background(r.tokens.total(), r.cost.unwrap_or(0.0));
    }
    usage::emit(r);
}

/// Whether a chunk carries a non-null `usage` (cheap byte test first: `"usage":` can only
/// appear unescaped as a key).
fn has_usage(data: &[u8]) -> bool {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    // Built once: building a searcher costs more than searching an event.
    static USAGE_COLON: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\":"));
    static USAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
    match USAGE_COLON.find(data) {
        Some(i) => !data[i + 8..].trim_ascii_start().starts_with(b"null"),
        None => USAGE.find(data).is_some(),
    }
}

/// The final usage chunk OpenAI sends when asked: `choices` empty.
fn is_usage_only(data: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Chunk {
        #[serde(default)]
        choices: Vec<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Chunk>(data).is_ok_and(|c| c.choices.is_empty())
}

impl Body for Relay {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        if let Some(first) = this.first.take() {
            if let Some(out) = this.on_bytes(first) {
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
        }
        loop {
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if let Some(out) = this.on_bytes(data) {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
                Poll::Ready(Some(Err(_))) => {
                    let out = this.fail(
                        "The upstream connection broke before the stream completed.",
                        "upstream_stream_broken",
                    );
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                Poll::Ready(None) => {
                    // A last event without its blank line still counts.
                    let tail = this.framer.take_pending();
                    let mut out = BytesMut::new();
                    if !tail.trim_ascii().is_empty() {
                        let mut ev = BytesMut::from(&tail[..]);
                        ev.extend_from_slice(b"\n\n");
                        if let Some(e) = this.inspect(ev.freeze()) {
                            out.extend_from_slice(&e);
                        }
                    }
                    if this.saw_done {
                        this.finish();
                    } else {
                        out.extend_from_slice(&this.fail(
                            "The upstream stream ended before it completed.",
                            "upstream_stream_incomplete",
                        ));
                    }
                    return if out.is_empty() {
                        Poll::Ready(None)
                    } else {
                        Poll::Ready(Some(Ok(Frame::data(out.freeze()))))
                    };
                }
                Poll::Pending => {
                    if this.idle_elapsed(cx) {
                        let out = this.fail(
                            "The upstream stopped sending before the stream completed.",
                            "upstream_timeout",
                        );
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }
}

impl Drop for Relay {
    /// The client went away mid-stream: the record still gets written, saying so.
    fn drop(&mut self) {
        if let Some(mut r) = self.record.take() {
            r.completed = self.saw_done;
            if !self.saw_done {
                r.error.get_or_insert_with(|| {
                    "client disconnected before the stream completed".into()
                });
                r.client_gone = true;
            }
            finish_record(r, self.reservation.take());
        }
    }
}

use std::future::Future as _;
