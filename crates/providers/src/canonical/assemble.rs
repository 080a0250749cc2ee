//! Folding a canonical stream into a canonical response, and unfolding a response into a stream.
//!
//! Used where the gateway needs the whole answer of a stream (usage log bodies, cache, shadow
//! comparison) or must stream a buffered answer (cache hits, non-streaming upstreams). It must
//! not know any wire format.

use super::{ApiError, ChatResponse, Choice, Message, Part, Role, StreamEvent, ToolCall};

/// Folds stream events into the response they describe, for logging, caching, shadow comparison
/// and tests.
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    response: ChatResponse,
    /// Per choice: the content position of each tool call, by tool call index.
    tool_calls: Vec<Vec<(u32, usize)>>,
    error: Option<ApiError>,
}

impl Accumulator {
    pub fn new() -> Accumulator {
        Accumulator::default()
    }

    pub fn push(&mut self, event: &StreamEvent) {
        match event {
            StreamEvent::Start { id, model, created } => {
                self.response.id.clone_from(id);
                self.response.model.clone_from(model);
                self.response.created = *created;
            }
            StreamEvent::TextDelta { choice, text } => {
                let content = &mut self.choice(*choice).message.content;
                match content.last_mut() {
                    Some(Part::Text { text: last }) => last.push_str(text),
                    _ => content.push(Part::Text { text: text.clone() }),
                }
            }
            StreamEvent::RefusalDelta { choice, text } => {
                let content = &mut self.choice(*choice).message.content;
                match content.last_mut() {
                    Some(Part::Refusal { text: last }) => last.push_str(text),
                    _ => content.push(Part::Refusal { text: text.clone() }),
                }
            }
            StreamEvent::ReasoningDelta { choice, text } => {
                let content = &mut self.choice(*choice).message.content;
                match content.last_mut() {
                    Some(Part::Reasoning {
                        text: last,
                        signature: None,
                    }) => last.push_str(text),
                    _ => content.push(Part::Reasoning {
                        text: text.clone(),
                        signature: None,
                    }),
                }
            }
            StreamEvent::ReasoningSignature { choice, signature } => {
                let content = &mut self.choice(*choice).message.content;
                match content.last_mut() {
                    Some(Part::Reasoning {
                        signature: last, ..
                    }) => *last = Some(signature.clone()),
                    _ => content.push(Part::Reasoning {
                        text: String::new(),
                        signature: Some(signature.clone()),
                    }),
                }
            }
            StreamEvent::ToolCallStart {
                choice,
                index,
                id,
                name,
            } => {
                let content = &mut self.choice(*choice).message.content;
                let position = content.len();
                content.push(Part::ToolCall(ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                }));
                let slot = (*choice).min(crate::canonical::MAX_CHOICES) as usize;
                if self.tool_calls.len() <= slot {
                    self.tool_calls.resize_with(slot + 1, Vec::new);
                }
                self.tool_calls[slot].push((*index, position));
            }
            StreamEvent::ToolCallDelta {
                choice,
                index,
                arguments,
            } => {
                let position = self
                    .tool_calls
                    .get(*choice as usize)
                    .and_then(|calls| calls.iter().rev().find(|(i, _)| i == index))
                    .map(|(_, position)| *position);
                let content = &mut self.choice(*choice).message.content;
                match position.and_then(|p| content.get_mut(p)) {
                    Some(Part::ToolCall(call)) => call.arguments.push_str(arguments),
                    // A delta without a start: keep the arguments under an unnamed call.
                    _ => content.push(Part::ToolCall(ToolCall {
                        id: String::new(),
                        name: String::new(),
                        arguments: arguments.clone(),
                    })),
                }
            }
            StreamEvent::Finish {
                choice,
                reason,
                stop_sequence,
            } => {
                let c = self.choice(*choice);
                c.finish_reason = Some(reason.clone());
                c.stop_sequence.clone_from(stop_sequence);
            }
            StreamEvent::Usage(usage) => self.response.usage = Some(*usage),
            StreamEvent::Error(error) => self.error = Some(error.clone()),
        }
    }

    /// The error that ended the stream, if one did.
    pub fn error(&self) -> Option<&ApiError> {
        self.error.as_ref()
    }

    /// The response so far, choices in index order.
    pub fn finish(self) -> ChatResponse {
        self.response
    }

    fn choice(&mut self, index: u32) -> &mut Choice {
        let choices = &mut self.response.choices;
        let position = match choices.binary_search_by_key(&index, |c| c.index) {
            Ok(position) => position,
            Err(position) => {
                let message = Message {
                    role: Role::Assistant,
                    content: Vec::new(),
                    name: None,
                    extra: None,
                };
                let choice = Choice {
                    index,
                    message,
                    finish_reason: None,
                    stop_sequence: None,
                    extra: None,
                };
                choices.insert(position, choice);
                position
            }
        };
        &mut choices[position]
    }
}

impl ChatResponse {
    /// The events that stream this response: one delta per part, then finishes, then usage.
    /// For serving a buffered answer (a cache hit, a non-streaming upstream) to a streaming
    /// client.
    pub fn to_events(&self) -> Vec<StreamEvent> {
        let mut events = vec![StreamEvent::Start {
            id: self.id.clone(),
            model: self.model.clone(),
            created: self.created,
        }];
        for c in &self.choices {
            let choice = c.index;
            let mut tool_index = 0;
            for part in &c.message.content {
                match part {
                    Part::Text { text } => events.push(StreamEvent::TextDelta {
                        choice,
                        text: text.clone(),
                    }),
                    Part::Refusal { text } => events.push(StreamEvent::RefusalDelta {
                        choice,
                        text: text.clone(),
                    }),
                    Part::Reasoning { text, signature } => {
                        if !text.is_empty() {
                            events.push(StreamEvent::ReasoningDelta {
                                choice,
                                text: text.clone(),
                            });
                        }
                        if let Some(signature) = signature {
                            events.push(StreamEvent::ReasoningSignature {
                                choice,
                                signature: signature.clone(),
                            });
                        }
                    }
                    Part::ToolCall(call) => {
                        events.push(StreamEvent::ToolCallStart {
                            choice,
                            index: tool_index,
                            id: call.id.clone(),
                            name: call.name.clone(),
                        });
                        if !call.arguments.is_empty() {
                            events.push(StreamEvent::ToolCallDelta {
                                choice,
                                index: tool_index,
                                arguments: call.arguments.clone(),
                            });
                        }
                        tool_index += 1;
                    }
                    _ => {}
                }
            }
            if let Some(reason) = &c.finish_reason {
                events.push(StreamEvent::Finish {
                    choice,
                    reason: reason.clone(),
                    stop_sequence: c.stop_sequence.clone(),
                });
            }
        }
        if let Some(usage) = self.usage {
            events.push(StreamEvent::Usage(usage));
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{FinishReason, Usage};

    #[test]
    fn accumulator_inverts_to_events() {
        let response = ChatResponse {
            id: "r1".into(),
            model: "m".into(),
            created: 7,
            choices: vec![Choice {
                index: 0,
                message: Message {
                    role: Role::Assistant,
                    content: vec![
                        Part::Reasoning {
                            text: "hmm".into(),
                            signature: Some("sig".into()),
                        },
                        Part::Text {
                            text: "Let me look.".into(),
                        },
                        Part::ToolCall(ToolCall {
                            id: "c1".into(),
                            name: "f".into(),
                            arguments: "{}".into(),
                        }),
                        Part::ToolCall(ToolCall {
                            id: "c2".into(),
                            name: "g".into(),
                            arguments: "{\"a\":1}".into(),
                        }),
                    ],
                    name: None,
                    extra: None,
                },
                finish_reason: Some(FinishReason::ToolCalls),
                stop_sequence: None,
                extra: None,
            }],
            usage: Some(Usage {
                input_tokens: 3,
                output_tokens: 4,
                ..Usage::default()
            }),
            system_fingerprint: None,
            extra: None,
        };
        let mut acc = Accumulator::new();
        for event in response.to_events() {
            acc.push(&event);
        }
        assert_eq!(acc.finish(), response);
    }
}
