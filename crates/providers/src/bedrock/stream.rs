//! Bedrock ConverseStream events to and from canonical [`StreamEvent`]s, one event stream
//! message at a time.
//!
//! A ConverseStream answer is `messageStart`, then per content block an optional
//! `contentBlockStart` (tool use only), `contentBlockDelta`s (text, tool input JSON fragments,
//! reasoning text or signature) and `contentBlockStop`, then `messageStop` with the stop reason,
//! then `metadata` with the usage; errors arrive as `exception` messages. Cutting bytes into
//! messages is `eventstream`'s job; this module reads and writes the messages' JSON payloads
//! and must not do IO. Converse has one choice: the [`Encoder`] writes choice 0 only.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::bedrock::eventstream::{self, Message};
use crate::bedrock::response::{
    stop_reason_from_wire, stop_reason_to_wire, usage_from_wire, usage_to_wire,
};
use crate::bedrock::{error, types};
use crate::canonical::{ApiError, StreamEvent};
use crate::wire::{self, WireError};

/// Turns ConverseStream messages into canonical events.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    started: bool,
    /// Content block index to tool call index, for the blocks that are tool calls.
    tool_blocks: Vec<(u32, u32)>,
    tools: u32,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Decodes one message, appending its events to `out`. Unknown event types are skipped.
    pub fn decode(
        &mut self,
        message: &Message,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), WireError> {
        match message.message_type() {
            Some("exception") => {
                let kind = message
                    .exception_type()
                    .unwrap_or("internalServerException");
                out.push(StreamEvent::Error(error::from_exception(
                    kind,
                    &message.payload,
                )));
                Ok(())
            }
            Some("error") => {
                out.push(StreamEvent::Error(ApiError {
                    kind: message
                        .header_str(":error-code")
                        .unwrap_or("error")
                        .to_string(),
                    message: message
                        .header_str(":error-message")
                        .unwrap_or("the event stream reported an error")
                        .to_string(),
                    ..ApiError::default()
                }));
                Ok(())
            }
            _ => match message.event_type() {
                Some(event_type) => self.decode_event(event_type, &message.payload, out),
                None => Err(WireError::body(
                    "an event stream message has no `:event-type` header",
                )),
            },
        }
    }

    /// Decodes the JSON payload of one event of type `event_type`.
    pub fn decode_event(
        &mut self,
        event_type: &str,
        payload: &[u8],
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), WireError> {
        match event_type {
            "messageStart" => {
                let _: types::MessageStart = wire::from_json(payload)?;
                self.start(out);
            }
            "contentBlockStart" => {
                let e: types::ContentBlockStart = wire::from_json(payload)?;
                self.start(out);
                if let Some(tool) = e.start.tool_use {
                    let index = self.new_tool(e.content_block_index);
                    out.push(StreamEvent::ToolCallStart {
                        choice: 0,
                        index,
                        id: tool.tool_use_id,
                        name: tool.name,
                    });
                }
            }
            "contentBlockDelta" => {
                let e: types::ContentBlockDelta = wire::from_json(payload)?;
                self.start(out);
                let d = e.delta;
                if let Some(text) = d.text.filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::TextDelta { choice: 0, text });
                }
                if let Some(tool) = d.tool_use {
                    let index = match self.tool_index(e.content_block_index) {
                        Some(index) => index,
                        None => {
                            // Input without a start: keep the invariant with an unnamed call.
                            let index = self.new_tool(e.content_block_index);
                            out.push(StreamEvent::ToolCallStart {
                                choice: 0,
                                index,
                                id: String::new(),
                                name: String::new(),
                            });
                            index
                        }
                    };
                    if !tool.input.is_empty() {
                        out.push(StreamEvent::ToolCallDelta {
                            choice: 0,
                            index,
                            arguments: tool.input,
                        });
                    }
                }
                if let Some(r) = d.reasoning_content {
                    if let Some(text) = r.text.filter(|t| !t.is_empty()) {
                        out.push(StreamEvent::ReasoningDelta { choice: 0, text });
                    }
                    if let Some(signature) = r.signature {
                        out.push(StreamEvent::ReasoningSignature {
                            choice: 0,
                            signature,
                        });
                    }
                }
            }
            "contentBlockStop" => {
                let _: types::ContentBlockStop = wire::from_json(payload)?;
            }
            "messageStop" => {
                let e: types::MessageStop = wire::from_json(payload)?;
                self.start(out);
                let stop_sequence = e
                    .additional_model_response_fields
                    .as_ref()
                    .and_then(|f| f.get("stop_sequence"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                out.push(StreamEvent::Finish {
                    choice: 0,
                    reason: stop_reason_from_wire(&e.stop_reason),
                    stop_sequence,
                });
            }
            "metadata" => {
                let e: types::Metadata = wire::from_json(payload)?;
                if let Some(u) = &e.usage {
                    out.push(StreamEvent::Usage(usage_from_wire(u)));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn start(&mut self, out: &mut Vec<StreamEvent>) {
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: String::new(),
                model: String::new(),
                created: 0,
            });
        }
    }

    fn new_tool(&mut self, block: u32) -> u32 {
        let index = self.tools;
        self.tools += 1;
        self.tool_blocks.push((block, index));
        index
    }

    fn tool_index(&self, block: u32) -> Option<u32> {
        self.tool_blocks
            .iter()
            .rev()
            .find(|(b, _)| *b == block)
            .map(|(_, i)| *i)
    }
}

/// What the open content block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Reasoning,
    Tool(u32),
}

/// Turns canonical events into ConverseStream event stream messages.
#[derive(Debug, Clone, Default)]
pub struct Encoder {
    open: Option<(u32, Block)>,
    next_block: u32,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Appends the messages of `event` to `out`.
    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match event {
            StreamEvent::Start { .. } => {
                emit(
                    out,
                    "messageStart",
                    &types::MessageStart {
                        role: "assistant".into(),
                    },
                );
            }
            StreamEvent::TextDelta { choice: 0, text }
            | StreamEvent::RefusalDelta { choice: 0, text } => {
                let index = self.block(Block::Text, out);
                self.delta(
                    index,
                    types::Delta {
                        text: Some(text.clone()),
                        ..types::Delta::default()
                    },
                    out,
                );
            }
            StreamEvent::ReasoningDelta { choice: 0, text } => {
                let index = self.block(Block::Reasoning, out);
                self.delta(index, reasoning(Some(text.clone()), None), out);
            }
            StreamEvent::ReasoningSignature {
                choice: 0,
                signature,
            } => {
                let index = self.block(Block::Reasoning, out);
                self.delta(index, reasoning(None, Some(signature.clone())), out);
            }
            StreamEvent::ToolCallStart {
                choice: 0,
                index,
                id,
                name,
            } => {
                self.close(out);
                let block = self.next_block;
                self.next_block += 1;
                self.open = Some((block, Block::Tool(*index)));
                emit(
                    out,
                    "contentBlockStart",
                    &types::ContentBlockStart {
                        start: types::BlockStart {
                            tool_use: Some(types::ToolUseStart {
                                tool_use_id: id.clone(),
                                name: name.clone(),
                            }),
                            extra: Map::new(),
                        },
                        content_block_index: block,
                    },
                );
            }
            StreamEvent::ToolCallDelta {
                choice: 0,
                index,
                arguments,
            } => {
                let block = self.block(Block::Tool(*index), out);
                self.delta(
                    block,
                    types::Delta {
                        tool_use: Some(types::ToolUseDelta {
                            input: arguments.clone(),
                        }),
                        ..types::Delta::default()
                    },
                    out,
                );
            }
            StreamEvent::Finish {
                choice: 0,
                reason,
                stop_sequence,
            } => {
                self.close(out);
                let fields = stop_sequence.as_ref().map(|s| {
                    let mut m = Map::new();
                    m.insert("stop_sequence".into(), Value::String(s.clone()));
                    m
                });
                emit(
                    out,
                    "messageStop",
                    &types::MessageStop {
                        stop_reason: stop_reason_to_wire(reason, stop_sequence.is_some())
                            .to_string(),
                        additional_model_response_fields: fields,
                    },
                );
            }
            StreamEvent::Usage(usage) => {
                emit(
                    out,
                    "metadata",
                    &types::Metadata {
                        usage: Some(usage_to_wire(usage)),
                        metrics: Some(serde_json::json!({ "latencyMs": 0 })),
                        extra: Map::new(),
                    },
                );
            }
            StreamEvent::Error(e) => {
                self.close(out);
                out.extend_from_slice(&eventstream::exception(
                    &error::exception_type(&e.kind),
                    &error::render(&e.message),
                ));
            }
            // Converse has one choice.
            _ => {}
        }
    }

    /// Closes the open content block, if any. Converse streams have no end marker of their
    /// own.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.close(out);
    }

    /// The index of an open block of `kind`, opening one (and closing another) as needed.
    fn block(&mut self, kind: Block, out: &mut Vec<u8>) -> u32 {
        if let Some((index, open)) = self.open {
            if open == kind {
                return index;
            }
        }
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some((index, kind));
        index
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            emit(
                out,
                "contentBlockStop",
                &types::ContentBlockStop {
                    content_block_index: index,
                },
            );
        }
    }

    fn delta(&self, index: u32, delta: types::Delta, out: &mut Vec<u8>) {
        emit(
            out,
            "contentBlockDelta",
            &types::ContentBlockDelta {
                delta,
                content_block_index: index,
            },
        );
    }
}

fn reasoning(text: Option<String>, signature: Option<String>) -> types::Delta {
    types::Delta {
        reasoning_content: Some(types::ReasoningDelta {
            text,
            signature,
            redacted_content: None,
        }),
        ..types::Delta::default()
    }
}

fn emit<T: Serialize>(out: &mut Vec<u8>, event_type: &str, payload: &T) {
    out.extend_from_slice(&eventstream::event(event_type, &wire::to_json(payload)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exceptions_become_errors() {
        let bytes = eventstream::exception(
            "throttlingException",
            br#"{"message":"Too many tokens, please wait before trying again."}"#,
        );
        let mut d = eventstream::Decoder::new();
        d.push(&bytes);
        let message = d.next_message().unwrap().unwrap();
        let mut out = Vec::new();
        Decoder::new().decode(&message, &mut out).unwrap();
        assert_eq!(
            out,
            vec![StreamEvent::Error(ApiError {
                kind: "throttlingException".into(),
                message: "Too many tokens, please wait before trying again.".into(),
                ..ApiError::default()
            })]
        );
    }
}
