//! Server-sent events framing: splits a byte stream into whole events, incrementally.
//!
//! Owns only the framing of `text/event-stream` (events end at a blank line). It never buffers
//! more than one incomplete event and never interprets payloads; what an event means is each
//! provider's `stream` module's business.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

/// Cuts a stream of byte chunks into whole SSE events, each returned with its terminating blank
/// line, so an event can be forwarded byte for byte.
///
/// A chunk given with [`Framer::push_bytes`] while nothing is pending is not copied: its whole
/// events are cut from it as they are; only an incomplete tail is copied, to wait for the rest.
#[derive(Debug, Default)]
pub struct Framer {
    buf: BytesMut,
    /// How far `buf` has already been searched for a boundary, so a slow drip is not rescanned.
    scanned: usize,
    /// A chunk still to be cut, not copied; only ever set while `buf` is empty.
    chunk: Bytes,
}

impl Framer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a chunk read from the upstream.
    pub fn push(&mut self, chunk: &[u8]) {
        self.spill();
        self.buf.extend_from_slice(chunk);
    }

    /// Appends a chunk read from the upstream, without copying it when nothing is pending.
    pub fn push_bytes(&mut self, chunk: Bytes) {
        if self.buf.is_empty() && self.chunk.is_empty() {
            self.chunk = chunk;
        } else {
            self.spill();
            self.buf.extend_from_slice(&chunk);
        }
    }

    /// Moves what is left of `chunk` into `buf` (searched already: nothing complete in it).
    fn spill(&mut self) {
        if !self.chunk.is_empty() {
            self.buf.extend_from_slice(&self.chunk);
            self.chunk = Bytes::new();
            self.scanned = self.buf.len();
        }
    }

    /// Returns the next complete event (including its blank-line terminator), if one is buffered.
    pub fn next_event(&mut self) -> Option<Bytes> {
        if !self.chunk.is_empty() {
            if let Some(end) = boundary(&self.chunk) {
                return Some(self.chunk.split_to(end));
            }
            // An incomplete event: keep it (copied) until the rest arrives.
            self.spill();
            return None;
        }
        let from = self.scanned.saturating_sub(3);
        match boundary(&self.buf[from..]) {
            Some(end) => {
                self.scanned = 0;
                Some(self.buf.split_to(from + end).freeze())
            }
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }

    /// Bytes received that do not (yet) form a whole event.
    pub fn pending(&self) -> &[u8] {
        if self.chunk.is_empty() {
            &self.buf
        } else {
            &self.chunk
        }
    }

    /// Takes whatever incomplete event is left, e.g. when the upstream closed without a final
    /// blank line.
    pub fn take_pending(&mut self) -> Bytes {
        self.scanned = 0;
        if !self.chunk.is_empty() {
            return std::mem::take(&mut self.chunk);
        }
        self.buf.split().freeze()
    }
}

/// The index just past the first event terminator (`\n\n`, `\r\n\r\n` or `\r\r`) in `buf`.
fn boundary(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(i) = memchr::memchr2(b'\n', b'\r', &buf[at..]) {
        let i = at + i;
        let rest = &buf[i..];
        if rest.starts_with(b"\n\n") || rest.starts_with(b"\r\r") {
            return Some(i + 2);
        }
        if rest.starts_with(b"\r\n\r\n") {
            return Some(i + 4);
        }
        if rest.starts_with(b"\n\r\n") {
            return Some(i + 3);
        }
        at = i + 1;
    }
    None
}

/// The `data` of an event: its `data:` lines joined by `\n` (one leading space stripped from
/// each, per the SSE specification). `None` when the event has no data line (a comment or a
/// bare `event:`).
pub fn data(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut found: Option<Cow<'_, [u8]>> = None;
    for line in event.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(value) = line.strip_prefix(b"data:") else {
            continue;
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        found = Some(match found {
            None => Cow::Borrowed(value),
            Some(prev) => {
                let mut joined = prev.into_owned();
                joined.push(b'\n');
                joined.extend_from_slice(value);
                Cow::Owned(joined)
            }
        });
    }
    found
}

/// The value of the event's `event:` field, if any.
pub fn event_name(event: &[u8]) -> Option<&[u8]> {
    event.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let v = line.strip_prefix(b"event:")?;
        Some(v.strip_prefix(b" ").unwrap_or(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(framer: &mut Framer) -> Vec<Bytes> {
        std::iter::from_fn(|| framer.next_event()).collect()
    }

    #[test]
    fn splits_events_across_arbitrary_chunks() {
        let stream = b"data: {\"a\":1}\n\ndata: {\"b\":2}\r\n\r\n: comment\n\nevent: x\ndata: 1\ndata: 2\n\n";
        for cut in 1..stream.len() {
            let mut f = Framer::new();
            let mut events = Vec::new();
            for piece in stream.chunks(cut) {
                f.push(piece);
                events.extend(all(&mut f));
            }
            assert_eq!(events.len(), 4, "chunk size {cut}");
            assert_eq!(&events[0][..], b"data: {\"a\":1}\n\n");
            assert_eq!(data(&events[1]).as_deref(), Some(&b"{\"b\":2}"[..]));
            assert_eq!(data(&events[2]), None);
            assert_eq!(data(&events[3]).as_deref(), Some(&b"1\n2"[..]));
            assert_eq!(event_name(&events[3]), Some(&b"x"[..]));
            assert!(f.pending().is_empty());
        }
    }

    #[test]
    fn cuts_owned_chunks_the_same_way() {
        let stream = b"data: {\"a\":1}\n\ndata: {\"b\":2}\r\n\r\n: comment\n\nevent: x\ndata: 1\ndata: 2\n\n";
        for cut in 1..stream.len() {
            let mut copied = Framer::new();
            let mut owned = Framer::new();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for (i, piece) in stream.chunks(cut).enumerate() {
                copied.push(piece);
                // Mix both ways of pushing.
                if i % 3 == 2 {
                    owned.push(piece);
                } else {
                    owned.push_bytes(Bytes::copy_from_slice(piece));
                }
                a.extend(all(&mut copied));
                b.extend(all(&mut owned));
                assert_eq!(copied.pending(), owned.pending(), "chunk size {cut}");
            }
            assert_eq!(a, b, "chunk size {cut}");
        }
        let mut f = Framer::new();
        f.push_bytes(Bytes::from_static(b"data: 1\n\ndata: 2"));
        assert_eq!(&f.next_event().unwrap_or_default()[..], b"data: 1\n\n");
        assert_eq!(f.next_event(), None);
        assert_eq!(f.pending(), b"data: 2");
        f.push_bytes(Bytes::from_static(b"\n\n"));
        assert_eq!(&f.next_event().unwrap_or_default()[..], b"data: 2\n\n");
        f.push_bytes(Bytes::from_static(b"data: [DONE]"));
        assert_eq!(&f.take_pending()[..], b"data: [DONE]");
        assert!(f.pending().is_empty());
    }

    #[test]
    fn keeps_incomplete_tail() {
        let mut f = Framer::new();
        f.push(b"data: [DONE]\n\ndata: {\"trunc");
        assert_eq!(&f.next_event().unwrap_or_default()[..], b"data: [DONE]\n\n");
        assert_eq!(f.next_event(), None);
        assert_eq!(&f.take_pending()[..], b"data: {\"trunc");
    }
}
