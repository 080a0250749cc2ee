//! Gemini `streamGenerateContent?alt=sse` streams to and from canonical [`StreamEvent`]s, one
//! chunk at a time.
//!
//! Every `data:` line of a Gemini stream is a whole `GenerateContentResponse` holding the new
//! parts only; function calls arrive whole, in one chunk, and there is no `[DONE]`. The
//! [`Decoder`] reads the JSON payload of one `data:` line (splitting bytes into events is
//! `crate::sse`'s job). The [`Encoder`] writes `data: {chunk}\r\n\r\n` frames as Google does,
//! holding tool calls until they are complete and the finish reason until the usage that
//! follows it, so the last chunk carries both as Gemini's does. This module must not do IO.

use serde_json::{Map, Value};

use crate::canonical::{ApiError, FinishReason, StreamEvent, Usage};
use crate::gemini::response::{
    finish_reason_from_wire, finish_reason_to_wire, seed, usage_from_wire, usage_to_wire,
};
use crate::gemini::{error, request, types};
use crate::wire::{self, WireError};

/// Turns the payloads of a Gemini stream's `data:` lines into canonical events.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    started: bool,
    id: String,
    /// Per choice: how many function calls it has made.
    calls: Vec<u32>,
    last_usage: Option<Usage>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Decodes the payload of one `data:` line, appending its events to `out`.
    pub fn decode(&mut self, data: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), WireError> {
        let data = data.trim_ascii();
        if data.is_empty() {
            return Ok(());
        }
        let chunk: types::Response = wire::from_json(data)?;
        if let Some(e) = &chunk.error {
            let wrapped = serde_json::json!({ "error": e });
            out.push(StreamEvent::Error(
                error::from_value(&wrapped).unwrap_or_else(|| ApiError {
                    kind: "UNKNOWN".into(),
                    message: e.to_string(),
                    ..ApiError::default()
                }),
            ));
            return Ok(());
        }
        if !self.started {
            self.started = true;
            self.id = chunk.response_id.clone().unwrap_or_default();
            out.push(StreamEvent::Start {
                id: self.id.clone(),
                model: chunk.model_version.clone().unwrap_or_default(),
                created: 0,
            });
        }
        let no_candidates = chunk.candidates.is_empty();
        for (i, c) in chunk.candidates.into_iter().enumerate() {
            let choice = c.index.unwrap_or(i as u32);
            if choice >= crate::canonical::MAX_CHOICES {
                return Err(WireError::field(
                    "candidates[].index",
                    format_args!("{choice} is not a plausible candidate index"),
                ));
            }
            let parts = c.content.map(|c| c.parts).unwrap_or_default();
            for part in parts {
                self.part(choice, part, out)?;
            }
            if let Some(reason) = c.finish_reason.as_deref() {
                let has_calls = self.calls.get(choice as usize).is_some_and(|n| *n > 0);
                out.push(StreamEvent::Finish {
                    choice,
                    reason: finish_reason_from_wire(reason, has_calls),
                    stop_sequence: None,
                });
            }
        }
        let blocked = chunk
            .prompt_feedback
            .as_ref()
            .is_some_and(|f| f.get("blockReason").is_some());
        if no_candidates && blocked {
            out.push(StreamEvent::Finish {
                choice: 0,
                reason: FinishReason::ContentFilter,
                stop_sequence: None,
            });
        }
        if let Some(u) = &chunk.usage_metadata {
            let usage = usage_from_wire(u);
            if self.last_usage != Some(usage) {
                self.last_usage = Some(usage);
                out.push(StreamEvent::Usage(usage));
            }
        }
        Ok(())
    }

    fn part(
        &mut self,
        choice: u32,
        mut part: types::Part,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), WireError> {
        if let Some(call) = part.function_call.take() {
            if let Some(signature) = part.thought_signature {
                out.push(StreamEvent::ReasoningSignature { choice, signature });
            }
            let slot = choice as usize;
            if self.calls.len() <= slot {
                self.calls.resize(slot + 1, 0);
            }
            let index = self.calls[slot];
            self.calls[slot] += 1;
            let call = request::tool_call_from_wire(call, &seed(&self.id, choice), index as usize);
            out.push(StreamEvent::ToolCallStart {
                choice,
                index,
                id: call.id,
                name: call.name,
            });
            out.push(StreamEvent::ToolCallDelta {
                choice,
                index,
                arguments: call.arguments,
            });
            return Ok(());
        }
        let signature = part.thought_signature.take();
        if part.thought == Some(true) {
            if let Some(text) = part.text.filter(|t| !t.is_empty()) {
                out.push(StreamEvent::ReasoningDelta { choice, text });
            }
            if let Some(signature) = signature {
                out.push(StreamEvent::ReasoningSignature { choice, signature });
            }
            return Ok(());
        }
        if let Some(signature) = signature {
            out.push(StreamEvent::ReasoningSignature { choice, signature });
        }
        if let Some(text) = part.text.filter(|t| !t.is_empty()) {
            out.push(StreamEvent::TextDelta { choice, text });
        }
        // Inline data and other parts have no stream event; a function response here is a
        // malformed chunk.
        if part.function_response.is_some() {
            return Err(WireError::field(
                "candidates.content.parts",
                "function responses are not allowed in a model turn",
            ));
        }
        Ok(())
    }
}

/// Turns canonical events into Gemini SSE frames.
#[derive(Debug, Clone, Default)]
pub struct Encoder {
    id: String,
    model: String,
    /// Tool calls started but not yet written: `(choice, name, arguments, signature)`.
    calls: Vec<(u32, String, String, Option<String>)>,
    /// Per choice, a signature waiting for the next part.
    signatures: Vec<(u32, String)>,
    /// Finish reasons waiting for the usage that follows them.
    finishes: Vec<(u32, FinishReason)>,
    /// Choices whose last written part is a thought, which a signature that follows belongs to.
    after_thought: Vec<u32>,
    done: bool,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Appends the frames `event` completes to `out` (often none: calls and finishes wait).
    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match event {
            StreamEvent::Start { id, model, .. } => {
                self.id.clone_from(id);
                self.model.clone_from(model);
            }
            StreamEvent::TextDelta { choice, text }
            | StreamEvent::RefusalDelta { choice, text } => {
                self.flush_calls(out);
                let part = self.with_signature(*choice, text_part(text, false));
                self.write(vec![candidate(*choice, vec![part], None)], None, out);
            }
            StreamEvent::ReasoningDelta { choice, text } => {
                self.flush_calls(out);
                let part = text_part(text, true);
                self.write(vec![candidate(*choice, vec![part], None)], None, out);
                self.after_thought.push(*choice);
            }
            StreamEvent::ReasoningSignature { choice, signature } => {
                self.flush_calls(out);
                if self.after_thought.contains(choice) {
                    // The signature of the thought just written: it goes on a thought part.
                    let mut part = text_part("", true);
                    part.thought_signature = Some(signature.clone());
                    self.write(vec![candidate(*choice, vec![part], None)], None, out);
                    self.after_thought.retain(|c| c != choice);
                } else {
                    self.signatures.retain(|(c, _)| c != choice);
                    self.signatures.push((*choice, signature.clone()));
                }
            }
            StreamEvent::ToolCallStart { choice, name, .. } => {
                let signature = self.take_signature(*choice);
                self.calls
                    .push((*choice, name.clone(), String::new(), signature));
            }
            StreamEvent::ToolCallDelta {
                choice, arguments, ..
            } => {
                if let Some(call) = self.calls.iter_mut().rev().find(|c| c.0 == *choice) {
                    call.2.push_str(arguments);
                }
            }
            StreamEvent::Finish { choice, reason, .. } => {
                self.flush_calls(out);
                self.finishes.push((*choice, reason.clone()));
            }
            StreamEvent::Usage(usage) => {
                self.flush_calls(out);
                self.flush_finishes(Some(usage), out);
            }
            StreamEvent::Error(e) => {
                self.flush_calls(out);
                self.flush_finishes(None, out);
                let status = e
                    .code
                    .as_deref()
                    .and_then(|c| c.parse::<u16>().ok())
                    .unwrap_or(500);
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&error::render(status, &e.message));
                out.extend_from_slice(b"\r\n\r\n");
            }
        }
    }

    /// Writes whatever is still held back (tool calls, a finish without usage). Gemini streams
    /// have no end marker, so this writes no frame of its own.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.done {
            self.flush_calls(out);
            self.flush_finishes(None, out);
            self.done = true;
        }
    }

    fn take_signature(&mut self, choice: u32) -> Option<String> {
        let at = self.signatures.iter().position(|(c, _)| *c == choice)?;
        Some(self.signatures.remove(at).1)
    }

    fn with_signature(&mut self, choice: u32, mut part: types::Part) -> types::Part {
        part.thought_signature = self.take_signature(choice);
        part
    }

    /// Writes the held calls, one chunk per choice, all calls of a choice together.
    fn flush_calls(&mut self, out: &mut Vec<u8>) {
        while let Some(&(choice, ..)) = self.calls.first() {
            let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.calls)
                .into_iter()
                .partition(|c| c.0 == choice);
            self.calls = rest;
            let parts = mine
                .into_iter()
                .map(|(_, name, arguments, signature)| types::Part {
                    function_call: Some(types::FunctionCall {
                        id: None,
                        name,
                        args: Some(arguments_value(&arguments)),
                    }),
                    thought_signature: signature,
                    ..types::Part::default()
                })
                .collect();
            self.write(vec![candidate(choice, parts, None)], None, out);
        }
    }

    fn flush_finishes(&mut self, usage: Option<&Usage>, out: &mut Vec<u8>) {
        let finishes = std::mem::take(&mut self.finishes);
        if finishes.is_empty() && usage.is_none() {
            return;
        }
        let candidates = finishes
            .into_iter()
            .map(|(choice, reason)| {
                let part = self.with_signature(choice, text_part("", false));
                candidate(choice, vec![part], Some(&reason))
            })
            .collect();
        self.write(candidates, usage, out);
    }

    fn write(
        &mut self,
        candidates: Vec<types::Candidate>,
        usage: Option<&Usage>,
        out: &mut Vec<u8>,
    ) {
        for c in &candidates {
            if let Some(choice) = c.index {
                self.after_thought.retain(|x| *x != choice);
            }
        }
        let chunk = types::Response {
            candidates,
            prompt_feedback: None,
            usage_metadata: usage.map(usage_to_wire),
            model_version: (!self.model.is_empty()).then(|| self.model.clone()),
            response_id: (!self.id.is_empty()).then(|| self.id.clone()),
            error: None,
            extra: Map::new(),
        };
        out.extend_from_slice(b"data: ");
        wire::write_json(out, &chunk);
        out.extend_from_slice(b"\r\n\r\n");
    }
}

fn text_part(text: &str, thought: bool) -> types::Part {
    types::Part {
        text: Some(text.to_string()),
        thought: thought.then_some(true),
        ..types::Part::default()
    }
}

fn candidate(
    choice: u32,
    parts: Vec<types::Part>,
    reason: Option<&FinishReason>,
) -> types::Candidate {
    types::Candidate {
        content: Some(types::Content {
            role: Some("model".into()),
            parts,
        }),
        finish_reason: reason.map(|r| finish_reason_to_wire(r).to_string()),
        index: Some(choice),
        extra: Map::new(),
    }
}

/// Streamed arguments as the object Gemini's `args` is; text that is not a JSON object (a
/// model's broken output) is kept under `_raw` rather than lost.
fn arguments_value(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(Map::new());
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(map)) => Value::Object(map),
        _ => {
            let mut map = Map::new();
            map.insert("_raw".into(), Value::String(arguments.to_string()));
            Value::Object(map)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_error_chunks() {
        let mut dec = Decoder::new();
        let mut out = Vec::new();
        dec.decode(
            br#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#,
            &mut out,
        )
        .unwrap();
        assert!(matches!(&out[0], StreamEvent::Error(e) if e.kind == "UNAVAILABLE"));
    }

    #[test]
    fn repeated_usage_is_reported_once() {
        let mut dec = Decoder::new();
        let mut out = Vec::new();
        for chunk in [
            r#"{"candidates":[{"content":{"parts":[{"text":"a"}],"role":"model"}}],"usageMetadata":{"promptTokenCount":3,"totalTokenCount":3}}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"b"}],"role":"model"}}],"usageMetadata":{"promptTokenCount":3,"totalTokenCount":3}}"#,
        ] {
            dec.decode(chunk.as_bytes(), &mut out).unwrap();
        }
        let usages = out
            .iter()
            .filter(|e| matches!(e, StreamEvent::Usage(_)))
            .count();
        assert_eq!(usages, 1);
    }

    #[test]
    fn encoder_holds_calls_until_complete() {
        let mut enc = Encoder::new();
        let mut out = Vec::new();
        for e in [
            StreamEvent::ToolCallStart {
                choice: 0,
                index: 0,
                id: "c".into(),
                name: "f".into(),
            },
            StreamEvent::ToolCallDelta {
                choice: 0,
                index: 0,
                arguments: "{\"a\":".into(),
            },
        ] {
            enc.encode(&e, &mut out);
        }
        assert!(out.is_empty());
        enc.encode(
            &StreamEvent::ToolCallDelta {
                choice: 0,
                index: 0,
                arguments: "1}".into(),
            },
            &mut out,
        );
        enc.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(r#""functionCall":{"name":"f","args":{"a":1}}"#),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n"));
    }
}
