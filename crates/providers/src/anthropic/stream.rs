//! Anthropic Messages streams to and from canonical [`StreamEvent`]s, one event at a time.
//!
//! An Anthropic stream is named SSE events: `message_start` (the message skeleton with the
//! input usage), then per content block `content_block_start`, `content_block_delta`s
//! (`text_delta`, `input_json_delta`, `thinking_delta`, `signature_delta`) and
//! `content_block_stop`, then `message_delta` (stop reason and cumulative usage) and
//! `message_stop`; `ping` may come at any time and `error` ends the stream.
//!
//! The [`Encoder`] writes `event: <type>\ndata: {json}\n\n` frames. Canonical streams carry the
//! usage at the end, so `message_start` reports zero tokens and `message_delta` carries the
//! whole usage (input and cache counts included, which the official SDKs copy into the final
//! message); that is also why `message_delta` waits for [`Encoder::finish`]. Only choice 0 is
//! written: Anthropic has no choices. The [`Decoder`] reads one event's `data` (the event name
//! is only a fallback for a payload without `type`) and emits `Usage` once, at `message_delta`,
//! merging it with the counts of `message_start`. Blocks with no canonical stream event
//! (`redacted_thinking`, server tool blocks, citations) are skipped. Splitting a byte stream
//! into SSE events is the job of `crate::sse`, and this module must not do IO.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::anthropic::response::{finish_reason_from_wire, finish_reason_to_wire};
use crate::anthropic::types::{self, ContentBlock, Delta, DeltaUsage};
use crate::canonical::{ApiError, FinishReason, StreamEvent, Usage};
use crate::wire::{self, WireError};

/// What a content block of the stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    /// A tool call, with its canonical tool call index.
    Tool(u32),
    /// A block with no canonical stream event.
    Other,
}

/// Turns canonical events into Anthropic SSE frames.
#[derive(Debug, Clone, Default)]
pub struct Encoder {
    started: bool,
    /// The open content block: its wire index and kind.
    open: Option<(u32, Block)>,
    next_index: u32,
    /// Wire block index of each tool call started, by canonical tool call index.
    tools: Vec<(u32, u32)>,
    finish: Option<(FinishReason, Option<String>)>,
    usage: Option<Usage>,
    done: bool,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Appends the frames of `event` to `out` (nothing for events written later or never).
    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match event {
            StreamEvent::Start { id, model, .. } => self.start(id, model, out),
            StreamEvent::TextDelta { choice: 0, text }
            | StreamEvent::RefusalDelta { choice: 0, text }
                if !text.is_empty() =>
            {
                let index = self.block(Block::Text, out);
                self.delta(index, "text_delta", "text", text, out);
            }
            StreamEvent::ReasoningDelta { choice: 0, text } if !text.is_empty() => {
                let index = self.block(Block::Thinking, out);
                self.delta(index, "thinking_delta", "thinking", text, out);
            }
            StreamEvent::ReasoningSignature {
                choice: 0,
                signature,
            } => {
                let index = self.block(Block::Thinking, out);
                self.delta(index, "signature_delta", "signature", signature, out);
            }
            StreamEvent::ToolCallStart {
                choice: 0,
                index,
                id,
                name,
            } => {
                self.tool_start(*index, id, name, out);
            }
            StreamEvent::ToolCallDelta {
                choice: 0,
                index,
                arguments,
            } => {
                let block = match self.open {
                    Some((block, Block::Tool(i))) if i == *index => block,
                    _ => match self.tools.iter().find(|(i, _)| i == index) {
                        Some((_, block)) => *block,
                        None => self.tool_start(*index, "", "", out),
                    },
                };
                if !arguments.is_empty() {
                    self.delta(block, "input_json_delta", "partial_json", arguments, out);
                }
            }
            StreamEvent::Finish {
                choice: 0,
                reason,
                stop_sequence,
            } => {
                self.close(out);
                self.finish = Some((reason.clone(), stop_sequence.clone()));
            }
            StreamEvent::Usage(usage) => self.usage = Some(*usage),
            StreamEvent::Error(e) => {
                self.done = true;
                write_event(out, "error", &wire_error(e));
            }
            _ => {}
        }
    }

    /// Ends the stream: closes the open block, then writes `message_delta` (stop reason, usage)
    /// and `message_stop`, once. After an `Error` event it writes nothing.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start("", "", out);
        self.close(out);
        self.done = true;
        let (stop_reason, stop_sequence) = match &self.finish {
            Some((reason, sequence)) => (
                finish_reason_to_wire(reason, sequence.as_deref()),
                sequence.as_deref(),
            ),
            None => ("end_turn", None),
        };
        let usage = match &self.usage {
            Some(u) => DeltaUsage {
                input_tokens: Some(u.input_tokens),
                cache_creation_input_tokens: Some(u.cache_write_tokens),
                cache_read_input_tokens: Some(u.cache_read_tokens),
                output_tokens: u.output_tokens,
                output_tokens_details: (u.reasoning_tokens > 0).then_some(
                    types::OutputTokensDetails {
                        thinking_tokens: u.reasoning_tokens,
                    },
                ),
            },
            None => DeltaUsage::default(),
        };
        #[derive(Serialize)]
        struct MessageDelta<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            delta: StopDelta<'a>,
            usage: DeltaUsage,
        }
        #[derive(Serialize)]
        struct StopDelta<'a> {
            stop_reason: &'a str,
            stop_sequence: Option<&'a str>,
        }
        let delta = MessageDelta {
            kind: "message_delta",
            delta: StopDelta {
                stop_reason,
                stop_sequence,
            },
            usage,
        };
        write_event(out, "message_delta", &delta);
        write_event(out, "message_stop", &Kind::of("message_stop"));
    }

    fn start(&mut self, id: &str, model: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let message = types::Response {
            id: id.to_string(),
            kind: "message".into(),
            role: "assistant".into(),
            content: Vec::new(),
            model: model.to_string(),
            stop_reason: None,
            stop_sequence: None,
            usage: types::Usage {
                cache_creation_input_tokens: Some(0),
                cache_read_input_tokens: Some(0),
                ..types::Usage::default()
            },
            extra: Map::new(),
        };
        #[derive(Serialize)]
        struct MessageStart {
            #[serde(rename = "type")]
            kind: &'static str,
            message: types::Response,
        }
        let event = MessageStart {
            kind: "message_start",
            message,
        };
        write_event(out, "message_start", &event);
    }

    /// The wire index of an open block of `kind`, opening one (and closing another) if needed.
    fn block(&mut self, kind: Block, out: &mut Vec<u8>) -> u32 {
        if let Some((index, open)) = self.open {
            if open == kind {
                return index;
            }
        }
        let content_block = match kind {
            Block::Thinking => ContentBlock::Thinking(types::ThinkingBlock::default()),
            _ => ContentBlock::Text(types::TextBlock::default()),
        };
        self.open_block(kind, content_block, out)
    }

    fn tool_start(&mut self, tool: u32, id: &str, name: &str, out: &mut Vec<u8>) -> u32 {
        let content_block = ContentBlock::ToolUse(types::ToolUseBlock {
            id: id.to_string(),
            name: name.to_string(),
            input: Value::Object(Map::new()),
            cache_control: None,
            extra: Map::new(),
        });
        let index = self.open_block(Block::Tool(tool), content_block, out);
        self.tools.push((tool, index));
        index
    }

    fn open_block(&mut self, kind: Block, content_block: ContentBlock, out: &mut Vec<u8>) -> u32 {
        self.start("", "", out);
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((index, kind));
        #[derive(Serialize)]
        struct BlockStart {
            #[serde(rename = "type")]
            kind: &'static str,
            index: u32,
            content_block: ContentBlock,
        }
        let event = BlockStart {
            kind: "content_block_start",
            index,
            content_block,
        };
        write_event(out, "content_block_start", &event);
        index
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            #[derive(Serialize)]
            struct BlockStop {
                #[serde(rename = "type")]
                kind: &'static str,
                index: u32,
            }
            let event = BlockStop {
                kind: "content_block_stop",
                index,
            };
            write_event(out, "content_block_stop", &event);
        }
    }

    fn delta(&self, index: u32, kind: &str, field: &str, value: &str, out: &mut Vec<u8>) {
        #[derive(Serialize)]
        struct BlockDelta<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            index: u32,
            delta: DeltaOut<'a>,
        }
        #[derive(Serialize)]
        struct DeltaOut<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            text: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            partial_json: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            thinking: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            signature: Option<&'a str>,
        }
        let pick = |name: &str| (field == name).then_some(value);
        let event = BlockDelta {
            kind: "content_block_delta",
            index,
            delta: DeltaOut {
                kind,
                text: pick("text"),
                partial_json: pick("partial_json"),
                thinking: pick("thinking"),
                signature: pick("signature"),
            },
        };
        write_event(out, "content_block_delta", &event);
    }
}

/// `{"type": "..."}`, the whole payload of `message_stop` and `ping`.
#[derive(Serialize)]
struct Kind {
    #[serde(rename = "type")]
    kind: &'static str,
}

impl Kind {
    fn of(kind: &'static str) -> Kind {
        Kind { kind }
    }
}

fn wire_error(e: &ApiError) -> types::ErrorBody {
    types::ErrorBody {
        kind: "error".into(),
        error: types::ErrorObject {
            kind: e.kind.clone(),
            message: e.message.clone(),
        },
        request_id: None,
    }
}

fn write_event<T: Serialize>(out: &mut Vec<u8>, name: &str, data: &T) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    wire::write_json(out, data);
    out.extend_from_slice(b"\n\n");
}

/// Turns the events of an Anthropic stream into canonical events.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    started: bool,
    done: bool,
    /// Wire block index and kind of every block started.
    blocks: Vec<(u32, Block)>,
    tool_calls: u32,
    usage: Usage,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Decodes one event: its `event:` name, if any, and its `data`. Appends the canonical
    /// events to `out`; `ping`, `content_block_stop` and unknown events yield nothing.
    pub fn decode(
        &mut self,
        event_name: Option<&[u8]>,
        data: &[u8],
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), WireError> {
        let data = data.trim_ascii();
        if data.is_empty() {
            return Ok(());
        }
        let mut event: types::Event = wire::from_json(data)?;
        if event.kind.is_empty() {
            event.kind = String::from_utf8_lossy(event_name.unwrap_or_default()).into_owned();
        }
        match event.kind.as_str() {
            "message_start" => {
                let message = event.message.unwrap_or_default();
                self.usage = crate::anthropic::response::usage_from_wire(&message.usage);
                if !self.started {
                    self.started = true;
                    out.push(StreamEvent::Start {
                        id: message.id,
                        model: message.model,
                        created: 0,
                    });
                }
            }
            "content_block_start" => {
                self.ensure_started(out);
                let index = event.index.unwrap_or_default();
                if let Some(block) = event.content_block {
                    self.block_start(index, block, out);
                }
            }
            "content_block_delta" => {
                self.ensure_started(out);
                if let Some(delta) = event.delta {
                    self.block_delta(event.index.unwrap_or_default(), delta, out);
                }
            }
            "message_delta" => {
                self.ensure_started(out);
                let delta = event.delta.unwrap_or_default();
                if let Some(reason) = delta.stop_reason {
                    out.push(StreamEvent::Finish {
                        choice: 0,
                        reason: finish_reason_from_wire(&reason),
                        stop_sequence: delta.stop_sequence,
                    });
                }
                if let Some(u) = event.usage {
                    self.merge_usage(&u);
                    out.push(StreamEvent::Usage(self.usage));
                }
            }
            "message_stop" => self.done = true,
            "error" => {
                let error = event.error.unwrap_or_default();
                out.push(StreamEvent::Error(ApiError {
                    kind: error.kind,
                    message: error.message,
                    param: None,
                    code: None,
                }));
            }
            _ => {}
        }
        Ok(())
    }

    /// `true` once `message_stop` was decoded.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn ensure_started(&mut self, out: &mut Vec<StreamEvent>) {
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: String::new(),
                model: String::new(),
                created: 0,
            });
        }
    }

    fn block_start(&mut self, index: u32, block: ContentBlock, out: &mut Vec<StreamEvent>) {
        let kind = match block {
            ContentBlock::Text(b) => {
                if !b.text.is_empty() {
                    out.push(StreamEvent::TextDelta {
                        choice: 0,
                        text: b.text,
                    });
                }
                Block::Text
            }
            ContentBlock::Thinking(b) => {
                if !b.thinking.is_empty() {
                    out.push(StreamEvent::ReasoningDelta {
                        choice: 0,
                        text: b.thinking,
                    });
                }
                if !b.signature.is_empty() {
                    out.push(StreamEvent::ReasoningSignature {
                        choice: 0,
                        signature: b.signature,
                    });
                }
                Block::Thinking
            }
            ContentBlock::ToolUse(b) => {
                let tool = self.new_tool(b.id, b.name, out);
                // Some compatible servers send the whole input here instead of deltas.
                if matches!(&b.input, Value::Object(fields) if !fields.is_empty()) {
                    out.push(StreamEvent::ToolCallDelta {
                        choice: 0,
                        index: tool,
                        arguments: b.input.to_string(),
                    });
                }
                Block::Tool(tool)
            }
            _ => Block::Other,
        };
        self.blocks.push((index, kind));
    }

    fn block_delta(&mut self, index: u32, delta: Delta, out: &mut Vec<StreamEvent>) {
        let block = self
            .blocks
            .iter()
            .rev()
            .find(|(i, _)| *i == index)
            .map(|(_, kind)| *kind);
        match delta.kind.as_deref() {
            Some("text_delta") => {
                if let Some(text) = delta.text.filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::TextDelta { choice: 0, text });
                }
            }
            Some("thinking_delta") => {
                if let Some(text) = delta.thinking.filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::ReasoningDelta { choice: 0, text });
                }
            }
            Some("signature_delta") => {
                if let Some(signature) = delta.signature {
                    out.push(StreamEvent::ReasoningSignature {
                        choice: 0,
                        signature,
                    });
                }
            }
            Some("input_json_delta") => {
                let tool = match block {
                    Some(Block::Tool(tool)) => tool,
                    // A delta without a start: keep the arguments under an unnamed call.
                    _ => {
                        let tool = self.new_tool(String::new(), String::new(), out);
                        self.blocks.push((index, Block::Tool(tool)));
                        tool
                    }
                };
                if let Some(arguments) = delta.partial_json.filter(|a| !a.is_empty()) {
                    out.push(StreamEvent::ToolCallDelta {
                        choice: 0,
                        index: tool,
                        arguments,
                    });
                }
            }
            _ => {}
        }
    }

    fn new_tool(&mut self, id: String, name: String, out: &mut Vec<StreamEvent>) -> u32 {
        let tool = self.tool_calls;
        self.tool_calls += 1;
        out.push(StreamEvent::ToolCallStart {
            choice: 0,
            index: tool,
            id,
            name,
        });
        tool
    }

    /// `message_delta` counts are cumulative: each one present replaces the known count.
    fn merge_usage(&mut self, u: &DeltaUsage) {
        self.usage.output_tokens = u.output_tokens;
        if let Some(n) = u.input_tokens {
            self.usage.input_tokens = n;
        }
        if let Some(n) = u.cache_creation_input_tokens {
            self.usage.cache_write_tokens = n;
        }
        if let Some(n) = u.cache_read_input_tokens {
            self.usage.cache_read_tokens = n;
        }
        if let Some(d) = u.output_tokens_details {
            self.usage.reasoning_tokens = d.thinking_tokens;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(out: Vec<u8>) -> String {
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn encodes_a_text_stream_with_usage_at_the_end() {
        let mut enc = Encoder::new();
        let mut out = Vec::new();
        for event in [
            StreamEvent::Start {
                id: "msg_1".into(),
                model: "m".into(),
                created: 9,
            },
            StreamEvent::TextDelta {
                choice: 0,
                text: "Hi".into(),
            },
            StreamEvent::TextDelta {
                choice: 1,
                text: "ignored".into(),
            },
            StreamEvent::Finish {
                choice: 0,
                reason: FinishReason::Stop,
                stop_sequence: None,
            },
            StreamEvent::Usage(Usage {
                input_tokens: 3,
                output_tokens: 1,
                ..Usage::default()
            }),
        ] {
            enc.encode(&event, &mut out);
        }
        enc.finish(&mut out);
        enc.finish(&mut out);
        assert_eq!(
            text(out),
            concat!(
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"m\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":0,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":0}}}\n\n",
                "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
                "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
                "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":3,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}}\n\n",
                "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            )
        );
    }

    #[test]
    fn errors_end_the_stream() {
        let mut enc = Encoder::new();
        let mut out = Vec::new();
        enc.encode(
            &StreamEvent::Error(ApiError {
                kind: "overloaded_error".into(),
                message: "Overloaded".into(),
                ..ApiError::default()
            }),
            &mut out,
        );
        enc.finish(&mut out);
        assert_eq!(
            text(out),
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
        );
        let mut dec = Decoder::new();
        let mut events = Vec::new();
        dec.decode(
            Some(b"error"),
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            &mut events,
        )
        .unwrap();
        assert!(matches!(&events[0], StreamEvent::Error(e) if e.kind == "overloaded_error"));
    }

    #[test]
    fn decoder_tolerates_pings_unknown_events_and_missing_type() {
        let mut dec = Decoder::new();
        let mut events = Vec::new();
        dec.decode(Some(b"ping"), br#"{"type": "ping"}"#, &mut events)
            .unwrap();
        dec.decode(
            Some(b"future_event"),
            br#"{"type": "future_event", "x": 1}"#,
            &mut events,
        )
        .unwrap();
        dec.decode(Some(b"message_stop"), b"{}", &mut events)
            .unwrap();
        assert!(events.is_empty());
        assert!(dec.is_done());
        assert!(dec.decode(None, b"{not json", &mut events).is_err());
    }
}
