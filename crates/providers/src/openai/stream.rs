//! OpenAI Chat Completions streams to and from canonical [`StreamEvent`]s, one chunk at a time.
//!
//! The [`Encoder`] writes `data: {chunk}\n\n` frames (and `data: [DONE]\n\n` at the end); the
//! [`Decoder`] reads the JSON payload of one `data:` line. Both keep only the small state a
//! stream needs (ids, which tool calls started). Splitting a byte stream into SSE events is the
//! job of `crate::sse`, not this module, and this module must not do IO.

use crate::canonical::{ApiError, StreamEvent, Usage};
use crate::openai::error;
use crate::openai::response::{
    finish_reason_from_wire, finish_reason_to_wire, usage_from_wire, usage_to_wire,
};
use crate::openai::types::{self, ChunkChoice, Delta, DeltaFunction, DeltaToolCall};
use crate::wire::{self, WireError};

/// Turns canonical events into OpenAI chunk frames.
#[derive(Debug, Clone)]
pub struct Encoder {
    /// `data: {"id":...,"object":"chat.completion.chunk","created":...,"model":...,` — the part
    /// every chunk repeats, written once at `Start`.
    prefix: Vec<u8>,
    include_usage: bool,
    /// Per choice: whether its first delta (carrying `role`) was sent.
    role_sent: Vec<bool>,
    done: bool,
}

impl Encoder {
    /// `include_usage`: the client asked for `stream_options.include_usage`; without it `Usage`
    /// events are not written (the gateway still sees them).
    pub fn new(include_usage: bool) -> Encoder {
        let mut encoder = Encoder {
            prefix: Vec::new(),
            include_usage,
            role_sent: Vec::new(),
            done: false,
        };
        encoder.set_prefix("", "", 0);
        encoder
    }

    /// Appends the frame of `event` to `out` (nothing for events OpenAI has no chunk for).
    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match event {
            StreamEvent::Start { id, model, created } => self.set_prefix(id, model, *created),
            StreamEvent::TextDelta { choice, text } => {
                let delta = Delta {
                    content: Some(text.clone()),
                    ..Delta::default()
                };
                self.write_delta(*choice, delta, None, out);
            }
            StreamEvent::RefusalDelta { choice, text } => {
                let delta = Delta {
                    refusal: Some(text.clone()),
                    ..Delta::default()
                };
                self.write_delta(*choice, delta, None, out);
            }
            StreamEvent::ReasoningDelta { choice, text } => {
                let delta = Delta {
                    reasoning: Some(text.clone()),
                    ..Delta::default()
                };
                self.write_delta(*choice, delta, None, out);
            }
            StreamEvent::ReasoningSignature { .. } => {}
            StreamEvent::ToolCallStart {
                choice,
                index,
                id,
                name,
            } => {
                let call = DeltaToolCall {
                    index: Some(*index),
                    id: Some(id.clone()),
                    kind: Some("function".into()),
                    function: Some(DeltaFunction {
                        name: Some(name.clone()),
                        arguments: Some(String::new()),
                    }),
                };
                let delta = Delta {
                    tool_calls: Some(vec![call]),
                    ..Delta::default()
                };
                self.write_delta(*choice, delta, None, out);
            }
            StreamEvent::ToolCallDelta {
                choice,
                index,
                arguments,
            } => {
                let call = DeltaToolCall {
                    index: Some(*index),
                    function: Some(DeltaFunction {
                        name: None,
                        arguments: Some(arguments.clone()),
                    }),
                    ..DeltaToolCall::default()
                };
                let delta = Delta {
                    tool_calls: Some(vec![call]),
                    ..Delta::default()
                };
                self.write_delta(*choice, delta, None, out);
            }
            StreamEvent::Finish { choice, reason, .. } => {
                let reason = finish_reason_to_wire(reason).to_string();
                self.write_delta(*choice, Delta::default(), Some(reason), out);
            }
            StreamEvent::Usage(usage) => {
                if self.include_usage {
                    self.write_usage(usage, out);
                }
            }
            StreamEvent::Error(e) => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&error::render(
                    &e.kind,
                    &e.message,
                    e.param.as_deref(),
                    e.code.as_deref(),
                ));
                out.extend_from_slice(b"\n\n");
            }
        }
    }

    /// Appends the `data: [DONE]` frame that ends every OpenAI stream, once.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.done {
            self.done = true;
            out.extend_from_slice(b"data: [DONE]\n\n");
        }
    }

    fn set_prefix(&mut self, id: &str, model: &str, created: u64) {
        let mut buf = itoa::Buffer::new();
        self.prefix.clear();
        self.prefix.extend_from_slice(b"data: {\"id\":");
        wire::write_json(&mut self.prefix, id);
        self.prefix
            .extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        self.prefix
            .extend_from_slice(buf.format(created).as_bytes());
        self.prefix.extend_from_slice(b",\"model\":");
        wire::write_json(&mut self.prefix, model);
        self.prefix.extend_from_slice(b",\"choices\":");
    }

    fn write_delta(
        &mut self,
        choice: u32,
        mut delta: Delta,
        finish_reason: Option<String>,
        out: &mut Vec<u8>,
    ) {
        if choice >= crate::canonical::MAX_CHOICES {
            return;
        }
        let slot = choice as usize;
        if self.role_sent.len() <= slot {
            self.role_sent.resize(slot + 1, false);
        }
        if !self.role_sent[slot] {
            self.role_sent[slot] = true;
            delta.role = Some(types::Role::Assistant);
        }
        let choice = ChunkChoice {
            index: choice,
            delta,
            logprobs: None,
            finish_reason,
        };
        out.extend_from_slice(&self.prefix);
        out.push(b'[');
        wire::write_json(out, &choice);
        out.push(b']');
        if self.include_usage {
            out.extend_from_slice(b",\"usage\":null");
        }
        out.extend_from_slice(b"}\n\n");
    }

    fn write_usage(&self, usage: &Usage, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(b"[],\"usage\":");
        wire::write_json(out, &usage_to_wire(usage));
        out.extend_from_slice(b"}\n\n");
    }
}

/// Turns the payloads of an OpenAI stream's `data:` lines into canonical events.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    started: bool,
    done: bool,
    /// Per choice: the tool call indexes already started, and the id of the last one (for
    /// servers that omit `index`).
    tool_calls: Vec<ChoiceCalls>,
}

#[derive(Debug, Clone, Default)]
struct ChoiceCalls {
    started: Vec<u32>,
    last_id: Option<String>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Decodes the payload of one `data:` line, appending its events to `out`. `[DONE]` ends
    /// the stream and yields nothing.
    pub fn decode(&mut self, data: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), WireError> {
        let data = data.trim_ascii();
        if data == b"[DONE]" {
            self.done = true;
            return Ok(());
        }
        let chunk: types::Chunk = wire::from_json(data)?;
        if let Some(e) = chunk.error {
            out.push(StreamEvent::Error(error::from_value(&e).unwrap_or_else(
                || ApiError {
                    kind: "api_error".into(),
                    message: e.to_string(),
                    ..ApiError::default()
                },
            )));
            return Ok(());
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: chunk.id,
                model: chunk.model,
                created: chunk.created,
            });
        }
        for c in chunk.choices {
            let choice = c.index;
            if choice >= crate::canonical::MAX_CHOICES {
                return Err(WireError::field(
                    "choices[].index",
                    format_args!("{choice} is not a plausible choice index"),
                ));
            }
            let delta = c.delta;
            if let Some(text) = delta
                .reasoning_content
                .or(delta.reasoning)
                .filter(|t| !t.is_empty())
            {
                out.push(StreamEvent::ReasoningDelta { choice, text });
            }
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                out.push(StreamEvent::TextDelta { choice, text });
            }
            if let Some(text) = delta.refusal.filter(|t| !t.is_empty()) {
                out.push(StreamEvent::RefusalDelta { choice, text });
            }
            for call in delta.tool_calls.unwrap_or_default() {
                self.tool_call(choice, call, out);
            }
            if let Some(reason) = c.finish_reason.as_deref().and_then(finish_reason_from_wire) {
                out.push(StreamEvent::Finish {
                    choice,
                    reason,
                    stop_sequence: None,
                });
            }
        }
        if let Some(usage) = chunk.usage {
            out.push(StreamEvent::Usage(usage_from_wire(&usage)));
        }
        Ok(())
    }

    /// `true` once `[DONE]` was decoded.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn tool_call(&mut self, choice: u32, call: DeltaToolCall, out: &mut Vec<StreamEvent>) {
        let slot = choice as usize;
        if self.tool_calls.len() <= slot {
            self.tool_calls.resize_with(slot + 1, ChoiceCalls::default);
        }
        let calls = &mut self.tool_calls[slot];
        let is_new_id = call
            .id
            .as_ref()
            .is_some_and(|id| calls.last_id.as_ref() != Some(id));
        let index = match call.index {
            Some(index) => index,
            None if is_new_id || calls.started.is_empty() => calls.started.len() as u32,
            None => calls.started.last().copied().unwrap_or(0),
        };
        let (name, arguments) = match call.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        if !calls.started.contains(&index) {
            calls.started.push(index);
            calls.last_id.clone_from(&call.id);
            out.push(StreamEvent::ToolCallStart {
                choice,
                index,
                id: call.id.unwrap_or_default(),
                name: name.unwrap_or_default(),
            });
        }
        if let Some(arguments) = arguments.filter(|a| !a.is_empty()) {
            out.push(StreamEvent::ToolCallDelta {
                choice,
                index,
                arguments,
            });
        }
    }
}

/// The text one stream chunk's JSON adds (`choices[].delta.content`, or `choices[].text` for
/// legacy completions), handed to `f` piece by piece; nothing for other chunks or bad JSON. For
/// keeping completions in the usage record without decoding the whole chunk.
pub fn chunk_text(data: &[u8], mut f: impl FnMut(&str)) {
    use std::borrow::Cow;
    #[derive(serde::Deserialize)]
    struct Chunk<'a> {
        #[serde(default, borrow)]
        choices: Vec<Choice<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Choice<'a> {
        #[serde(default, borrow)]
        delta: Option<Piece<'a>>,
        #[serde(default, borrow)]
        text: Option<Cow<'a, str>>,
    }
    #[derive(serde::Deserialize)]
    struct Piece<'a> {
        #[serde(default, borrow)]
        content: Option<Cow<'a, str>>,
    }
    let Ok(chunk) = serde_json::from_slice::<Chunk<'_>>(data) else {
        return;
    };
    for c in chunk.choices {
        if let Some(t) = c.delta.and_then(|d| d.content) {
            f(&t);
        }
        if let Some(t) = c.text {
            f(&t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::FinishReason;

    #[test]
    fn encodes_one_frame_per_event() {
        let mut enc = Encoder::new(true);
        let mut out = Vec::new();
        enc.encode(
            &StreamEvent::Start {
                id: "c1".into(),
                model: "m".into(),
                created: 9,
            },
            &mut out,
        );
        assert!(out.is_empty());
        enc.encode(
            &StreamEvent::TextDelta {
                choice: 0,
                text: "Hi \"you\"".into(),
            },
            &mut out,
        );
        enc.encode(
            &StreamEvent::Finish {
                choice: 0,
                reason: FinishReason::Stop,
                stop_sequence: None,
            },
            &mut out,
        );
        enc.finish(&mut out);
        enc.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            concat!(
                "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":9,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi \\\"you\\\"\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
                "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":9,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
                "data: [DONE]\n\n",
            )
        );
    }

    #[test]
    fn decodes_error_payloads() {
        let mut dec = Decoder::new();
        let mut out = Vec::new();
        dec.decode(
            br#"{"error":{"message":"overloaded","type":"server_error","param":null,"code":null}}"#,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out,
            vec![StreamEvent::Error(ApiError {
                kind: "server_error".into(),
                message: "overloaded".into(),
                param: None,
                code: None
            })]
        );
        dec.decode(b" [DONE]\n", &mut out).unwrap();
        assert!(dec.is_done());
    }

    #[test]
    fn tool_calls_without_index_are_numbered_by_id() {
        let mut dec = Decoder::new();
        let mut out = Vec::new();
        for data in [
            r#"{"id":"x","choices":[{"index":0,"delta":{"tool_calls":[{"id":"a","function":{"name":"f","arguments":"{}"}}]}}]}"#,
            r#"{"id":"x","choices":[{"index":0,"delta":{"tool_calls":[{"id":"b","function":{"name":"g","arguments":"{"}}]}}]}"#,
            r#"{"id":"x","choices":[{"index":0,"delta":{"tool_calls":[{"function":{"arguments":"}"}}]}}]}"#,
        ] {
            dec.decode(data.as_bytes(), &mut out).unwrap();
        }
        let starts: Vec<_> = out
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCallStart { index, id, .. } => Some((*index, id.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(starts, vec![(0, "a"), (1, "b")]);
        assert_eq!(
            out.last(),
            Some(&StreamEvent::ToolCallDelta {
                choice: 0,
                index: 1,
                arguments: "}".into()
            })
        );
    }

    #[test]
    fn chunk_text_reads_deltas() {
        let mut out = String::new();
        super::chunk_text(
            br#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"he\nllo"}}]}"#,
            |t| out.push_str(t),
        );
        super::chunk_text(br#"{"choices":[{"index":0,"text":" world"}]}"#, |t| {
            out.push_str(t)
        });
        super::chunk_text(br#"{"choices":[],"usage":{"prompt_tokens":1}}"#, |t| {
            out.push_str(t)
        });
        super::chunk_text(b"{broken", |t| out.push_str(t));
        assert_eq!(out, "he\nllo world");
    }
}
