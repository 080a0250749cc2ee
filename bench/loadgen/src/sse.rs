//! An incremental server-sent-events counter: counts events across arbitrary frame splits and
//! remembers whether the last event was `data: [DONE]`.

/// Keeps only what it needs: the start of the current line, whether the current event has data,
/// and whether that data is `[DONE]`.
#[derive(Debug, Default, Clone)]
pub struct SseCounter {
    /// Events completed so far (an event is ended by an empty line and has at least one `data:`).
    pub events: u64,
    /// Whether the most recent complete event was `data: [DONE]`.
    pub last_was_done: bool,
    /// Events that came after a `[DONE]` event (a protocol error).
    pub after_done: u64,
    seen_done: bool,
    line: Vec<u8>,
    line_overflow: bool,
    event_has_data: bool,
    event_is_done: bool,
}

const KEEP: usize = 16;

impl SseCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds body bytes; returns how many events this call completed.
    pub fn feed(&mut self, mut data: &[u8]) -> u64 {
        let before = self.events;
        while !data.is_empty() {
            match memchr::memchr(b'\n', data) {
                Some(i) => {
                    self.push_partial(&data[..i]);
                    self.end_line();
                    data = &data[i + 1..];
                }
                None => {
                    self.push_partial(data);
                    break;
                }
            }
        }
        self.events - before
    }

    /// Whether bytes of an unfinished line or event are pending.
    pub fn has_partial(&self) -> bool {
        !self.line.is_empty() || self.line_overflow || self.event_has_data
    }

    fn push_partial(&mut self, part: &[u8]) {
        if self.line.len() < KEEP {
            let room = KEEP - self.line.len();
            let take = room.min(part.len());
            self.line.extend_from_slice(&part[..take]);
            if take < part.len() {
                self.line_overflow = true;
            }
        } else if !part.is_empty() {
            self.line_overflow = true;
        }
    }

    fn end_line(&mut self) {
        let mut line: &[u8] = &self.line;
        let complete = !self.line_overflow;
        if complete {
            if let Some(stripped) = line.strip_suffix(b"\r") {
                line = stripped;
            }
        }
        if complete && line.is_empty() {
            if self.event_has_data {
                self.events += 1;
                if self.seen_done {
                    self.after_done += 1;
                }
                self.last_was_done = self.event_is_done;
                if self.event_is_done {
                    self.seen_done = true;
                }
            }
            self.event_has_data = false;
            self.event_is_done = false;
        } else if let Some(value) = line.strip_prefix(b"data:") {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            // A second data line in the same event makes it a multi-line event, never [DONE].
            self.event_is_done = !self.event_has_data && complete && value == b"[DONE]";
            self.event_has_data = true;
        }
        self.line.clear();
        self.line_overflow = false;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::fixtures::stream_events;

    fn whole_stream() -> Vec<u8> {
        stream_events(20).iter().flat_map(|b| b.to_vec()).collect()
    }

    #[test]
    fn counts_whole_stream() {
        let mut c = SseCounter::new();
        assert_eq!(c.feed(&whole_stream()), 22);
        assert!(c.last_was_done);
        assert!(!c.has_partial());
        assert_eq!(c.after_done, 0);
    }

    #[test]
    fn any_split_gives_same_result() {
        let all = whole_stream();
        for step in [1, 2, 3, 7, 13, 64, 500] {
            let mut c = SseCounter::new();
            for part in all.chunks(step) {
                c.feed(part);
            }
            assert_eq!(c.events, 22, "step {step}");
            assert!(c.last_was_done, "step {step}");
        }
    }

    #[test]
    fn crlf_comments_and_missing_done() {
        let mut c = SseCounter::new();
        c.feed(b": keep-alive\r\n\r\ndata: {}\r\n\r\nevent: x\ndata: [DONE]\r\n\r\n");
        assert_eq!(c.events, 2);
        assert!(c.last_was_done);

        let mut c = SseCounter::new();
        c.feed(b"data: {}\n\ndata: [DONE]x\n\n");
        assert_eq!(c.events, 2);
        assert!(!c.last_was_done);

        let mut c = SseCounter::new();
        c.feed(b"data: [DONE]\n\ndata: {}\n\n");
        assert!(!c.last_was_done);
        assert_eq!(c.after_done, 1);

        let mut c = SseCounter::new();
        c.feed(b"data: [DONE]");
        assert_eq!(c.events, 0);
        assert!(c.has_partial());
    }
}
