//! Bedrock `Converse` responses to and from the canonical model, with the stop reason and usage
//! conversions the stream shares.
//!
//! A Converse body has no id, model or time (the request id is the `x-amzn-requestid` header):
//! the canonical ones are left empty for the gateway to fill. `metrics` and
//! `additionalModelResponseFields` are kept for Bedrock; a `stop_sequence` among the latter
//! (Anthropic models, when asked for with `additionalModelResponseFieldPaths`) becomes the
//! choice's stop sequence. It must not do IO.

use serde_json::{Map, Value};

use crate::bedrock::{request, types};
use crate::canonical::{self, Extra, FinishReason, Format, Role};
use crate::wire::{self, WireError};

/// Parses an upstream `Converse` body.
pub fn parse(body: &[u8]) -> Result<canonical::ChatResponse, WireError> {
    from_wire(wire::from_json(body)?)
}

/// Renders a `Converse` body, or the error naming what Converse cannot express (a tool call's
/// arguments that are not JSON, content Converse has no block for).
pub fn render(resp: &canonical::ChatResponse) -> Result<Vec<u8>, WireError> {
    Ok(wire::to_json(&to_wire(resp)?))
}

pub fn from_wire(w: types::Response) -> Result<canonical::ChatResponse, WireError> {
    let content = match w.output.message {
        Some(m) => request::blocks_from_wire(m.content, "output.message")?,
        None => Vec::new(),
    };
    let mut fields = w.additional_model_response_fields.unwrap_or_default();
    let stop_sequence = match fields.remove("stop_sequence") {
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            fields.insert("stop_sequence".into(), other);
            None
        }
        None => None,
    };
    let mut choice_extra = Map::new();
    if !fields.is_empty() {
        choice_extra.insert(
            "additionalModelResponseFields".into(),
            Value::Object(fields),
        );
    }
    let mut extra = w.extra;
    if let Some(metrics) = w.metrics {
        extra.insert("metrics".into(), metrics);
    }
    Ok(canonical::ChatResponse {
        id: String::new(),
        model: String::new(),
        created: 0,
        choices: vec![canonical::Choice {
            index: 0,
            message: canonical::Message {
                role: Role::Assistant,
                content,
                name: None,
                extra: None,
            },
            finish_reason: Some(stop_reason_from_wire(&w.stop_reason)),
            stop_sequence,
            extra: Extra::new(Format::Bedrock, choice_extra),
        }],
        usage: w.usage.as_ref().map(usage_from_wire),
        system_fingerprint: None,
        extra: Extra::new(Format::Bedrock, extra),
    })
}

/// The Converse response of a canonical one: its first choice (Converse has one).
pub fn to_wire(resp: &canonical::ChatResponse) -> Result<types::Response, WireError> {
    let mut extra = Extra::fields_for(resp.extra.as_ref(), Format::Bedrock)
        .cloned()
        .unwrap_or_default();
    let metrics = extra
        .remove("metrics")
        .unwrap_or_else(|| serde_json::json!({ "latencyMs": 0 }));
    let choice = resp.choices.iter().min_by_key(|c| c.index);
    let (content, stop_reason, fields) = match choice {
        Some(c) => {
            let mut fields = match Extra::fields_for(c.extra.as_ref(), Format::Bedrock)
                .and_then(|e| e.get("additionalModelResponseFields"))
            {
                Some(Value::Object(f)) => f.clone(),
                _ => Map::new(),
            };
            if let Some(s) = &c.stop_sequence {
                fields.insert("stop_sequence".into(), Value::String(s.clone()));
            }
            let reason = match &c.finish_reason {
                Some(r) => stop_reason_to_wire(r, c.stop_sequence.is_some()),
                // A stop sequence is only reported when it ended the answer.
                None if c.stop_sequence.is_some() => "stop_sequence",
                None => "end_turn",
            };
            (
                request::blocks_to_wire(
                    &c.message.content,
                    &format!("choices[{}].message", c.index),
                )?,
                reason,
                fields,
            )
        }
        None => (Vec::new(), "end_turn", Map::new()),
    };
    Ok(types::Response {
        output: types::Output {
            message: Some(types::Message {
                role: "assistant".into(),
                content,
            }),
        },
        stop_reason: stop_reason.to_string(),
        usage: resp.usage.as_ref().map(usage_to_wire),
        metrics: Some(metrics),
        additional_model_response_fields: (!fields.is_empty()).then_some(fields),
        extra,
    })
}

/// The canonical reason of a Converse `stopReason`.
pub fn stop_reason_from_wire(reason: &str) -> FinishReason {
    match reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "tool_use" => FinishReason::ToolCalls,
        "max_tokens" => FinishReason::Length,
        "guardrail_intervened" | "content_filtered" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_string()),
    }
}

/// Converse's `stopReason`; `Stop` is `stop_sequence` when a stop sequence ended the answer.
/// Bedrock's own other words stay; other formats' words become `end_turn`.
pub fn stop_reason_to_wire(reason: &FinishReason, stopped_by_sequence: bool) -> &str {
    match reason {
        FinishReason::Stop if stopped_by_sequence => "stop_sequence",
        FinishReason::Stop => "end_turn",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::Length => "max_tokens",
        FinishReason::ContentFilter => "content_filtered",
        FinishReason::Other(word) if is_bedrock_word(word) => word,
        // Never `end_turn` beside a stop sequence: that would contradict it.
        FinishReason::Other(_) if stopped_by_sequence => "stop_sequence",
        FinishReason::Other(_) => "end_turn",
    }
}

/// Bedrock's words are snake_case; OpenAI's and Anthropic's unknown ones are too, so only the
/// ones Bedrock documents beyond the canonical table are kept.
fn is_bedrock_word(word: &str) -> bool {
    matches!(
        word,
        "model_context_window_exceeded" | "malformed_model_output" | "malformed_tool_use"
    )
}

/// Canonical usage of Converse's: the kinds are already disjoint.
pub fn usage_from_wire(u: &types::TokenUsage) -> canonical::Usage {
    canonical::Usage {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        cache_read_tokens: u.cache_read_input_tokens.unwrap_or(0),
        cache_write_tokens: u.cache_write_input_tokens.unwrap_or(0),
        reasoning_tokens: 0,
        cost: None,
    }
}

/// Converse usage of canonical usage; `totalTokens` counts every kind.
pub fn usage_to_wire(u: &canonical::Usage) -> types::TokenUsage {
    types::TokenUsage {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        total_tokens: u.total_tokens(),
        cache_read_input_tokens: (u.cache_read_tokens > 0).then_some(u.cache_read_tokens),
        cache_write_input_tokens: (u.cache_write_tokens > 0).then_some(u.cache_write_tokens),
        extra: Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reasons() {
        assert_eq!(stop_reason_from_wire("stop_sequence"), FinishReason::Stop);
        assert_eq!(
            stop_reason_to_wire(&FinishReason::Stop, true),
            "stop_sequence"
        );
        assert_eq!(
            stop_reason_to_wire(&FinishReason::Other("pause_turn".into()), false),
            "end_turn"
        );
        let r = stop_reason_from_wire("malformed_tool_use");
        assert_eq!(stop_reason_to_wire(&r, false), "malformed_tool_use");
    }

    #[test]
    fn cache_usage_is_disjoint_and_totals_hold() {
        let w: types::TokenUsage = serde_json::from_str(
            r#"{"inputTokens":10,"outputTokens":5,"totalTokens":115,"cacheReadInputTokens":80,"cacheWriteInputTokens":20}"#,
        )
        .unwrap();
        let u = usage_from_wire(&w);
        assert_eq!(u.total_tokens(), 115);
        assert_eq!(usage_to_wire(&u), w);
    }
}
