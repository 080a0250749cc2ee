//! Anthropic `message` responses (and `count_tokens` answers) to and from the canonical model,
//! with the stop reason and usage conversions the stream shares.
//!
//! Anthropic answers with one message, so a canonical response renders its first choice only.
//! Usage needs no arithmetic: Anthropic's `input_tokens` already excludes the cache reads and
//! writes, as the canonical convention does. Usage details the canonical model has no home for
//! (the 5m / 1h split of `cache_creation`, `server_tool_use`, `service_tier`) are kept in the
//! response's extra fields under `usage` and written back only to Anthropic clients. It must
//! not price usage or rewrite ids and model names (the gateway does), and must not do IO.

use serde_json::{Map, Value};

use crate::anthropic::content;
use crate::anthropic::types;
use crate::canonical::{self, Extra, FinishReason, Format, Role};
use crate::wire::{self, WireError};

/// The stop reasons Anthropic defines; any other canonical word is rendered as `end_turn`.
const STOP_REASONS: &[&str] = &[
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
    "model_context_window_exceeded",
];

/// Parses an upstream `message` body.
pub fn parse(body: &[u8]) -> Result<canonical::ChatResponse, WireError> {
    from_wire(wire::from_json(body)?)
}

/// Renders a `message` body.
pub fn render(resp: &canonical::ChatResponse) -> Vec<u8> {
    wire::to_json(&to_wire(resp))
}

/// Parses a `count_tokens` answer: `{"input_tokens": N}`.
pub fn parse_token_count(body: &[u8]) -> Result<u64, WireError> {
    wire::from_json::<types::TokenCount>(body).map(|c| c.input_tokens)
}

/// Renders a `count_tokens` answer.
pub fn render_token_count(input_tokens: u64) -> Vec<u8> {
    wire::to_json(&types::TokenCount { input_tokens })
}

pub fn from_wire(w: types::Response) -> Result<canonical::ChatResponse, WireError> {
    let parts = content::parts_from_wire(w.content, "content")?;
    let mut extra = w.extra;
    let usage_extra = &w.usage.extra;
    if !usage_extra.is_empty() {
        extra.insert("usage".into(), Value::Object(usage_extra.clone()));
    }
    let choice = canonical::Choice {
        index: 0,
        message: canonical::Message {
            role: Role::Assistant,
            content: parts,
            name: None,
            extra: None,
        },
        finish_reason: w.stop_reason.as_deref().map(finish_reason_from_wire),
        stop_sequence: w.stop_sequence,
        extra: None,
    };
    Ok(canonical::ChatResponse {
        id: w.id,
        model: w.model,
        created: 0,
        choices: vec![choice],
        usage: Some(usage_from_wire(&w.usage)),
        system_fingerprint: None,
        extra: Extra::new(Format::Anthropic, extra),
    })
}

pub fn to_wire(resp: &canonical::ChatResponse) -> types::Response {
    let mut extra = Extra::fields_for(resp.extra.as_ref(), Format::Anthropic)
        .cloned()
        .unwrap_or_default();
    let usage_extra = match extra.remove("usage") {
        Some(Value::Object(fields)) => fields,
        _ => Map::new(),
    };
    let mut usage = usage_to_wire(&resp.usage.unwrap_or_default());
    usage.extra = usage_extra;
    let choice = resp
        .choices
        .iter()
        .find(|c| c.index == 0)
        .or(resp.choices.first());
    let (content, stop_reason, stop_sequence) = match choice {
        Some(c) => (
            content::response_blocks(&c.message.content),
            match &c.finish_reason {
                Some(r) => finish_reason_to_wire(r, c.stop_sequence.as_deref()),
                // A stop sequence is only reported when it ended the answer.
                None if c.stop_sequence.is_some() => "stop_sequence",
                None => "end_turn",
            },
            c.stop_sequence.clone(),
        ),
        None => (Vec::new(), "end_turn", None),
    };
    types::Response {
        id: resp.id.clone(),
        kind: "message".into(),
        role: "assistant".into(),
        content,
        model: resp.model.clone(),
        stop_reason: Some(stop_reason.to_string()),
        stop_sequence,
        usage,
        extra,
    }
}

/// The canonical reason of an Anthropic `stop_reason` (table on [`FinishReason`]).
pub fn finish_reason_from_wire(reason: &str) -> FinishReason {
    match reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_string()),
    }
}

/// Anthropic's `stop_reason`: `Stop` is `stop_sequence` when a stop sequence ended the answer,
/// `end_turn` otherwise; words of other formats Anthropic does not define become `end_turn`.
pub fn finish_reason_to_wire<'a>(reason: &'a FinishReason, stop_sequence: Option<&str>) -> &'a str {
    match reason {
        FinishReason::Stop if stop_sequence.is_some() => "stop_sequence",
        FinishReason::Stop => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
        FinishReason::Other(word) if STOP_REASONS.contains(&word.as_str()) => word,
        // Never `end_turn` beside a stop sequence: that would contradict it.
        FinishReason::Other(_) if stop_sequence.is_some() => "stop_sequence",
        FinishReason::Other(_) => "end_turn",
    }
}

/// Canonical usage of Anthropic's (already disjoint; see [`canonical::Usage`]).
pub fn usage_from_wire(u: &types::Usage) -> canonical::Usage {
    canonical::Usage {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        cache_read_tokens: u.cache_read_input_tokens.unwrap_or(0),
        cache_write_tokens: u.cache_creation_input_tokens.unwrap_or(0),
        reasoning_tokens: u.output_tokens_details.map_or(0, |d| d.thinking_tokens),
        cost: None,
    }
}

/// Anthropic usage of canonical usage; the cache counts are always written, as Anthropic does.
pub fn usage_to_wire(u: &canonical::Usage) -> types::Usage {
    types::Usage {
        input_tokens: u.input_tokens,
        cache_creation_input_tokens: Some(u.cache_write_tokens),
        cache_read_input_tokens: Some(u.cache_read_tokens),
        output_tokens: u.output_tokens,
        output_tokens_details: (u.reasoning_tokens > 0).then_some(types::OutputTokensDetails {
            thinking_tokens: u.reasoning_tokens,
        }),
        extra: Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reasons_map_both_ways() {
        for (wire, canonical) in [
            ("end_turn", FinishReason::Stop),
            ("max_tokens", FinishReason::Length),
            ("tool_use", FinishReason::ToolCalls),
            ("refusal", FinishReason::ContentFilter),
            ("pause_turn", FinishReason::Other("pause_turn".into())),
        ] {
            assert_eq!(finish_reason_from_wire(wire), canonical);
            assert_eq!(finish_reason_to_wire(&canonical, None), wire);
        }
        assert_eq!(finish_reason_from_wire("stop_sequence"), FinishReason::Stop);
        assert_eq!(
            finish_reason_to_wire(&FinishReason::Stop, Some("###")),
            "stop_sequence"
        );
        assert_eq!(
            finish_reason_to_wire(&FinishReason::Other("function_call".into()), None),
            "end_turn"
        );
    }

    #[test]
    fn usage_is_already_disjoint() {
        let w: types::Usage = serde_json::from_str(
            r#"{"input_tokens":10,"cache_creation_input_tokens":30,"cache_read_input_tokens":60,
                "output_tokens":7,"output_tokens_details":{"thinking_tokens":4}}"#,
        )
        .unwrap();
        let u = usage_from_wire(&w);
        assert_eq!(
            (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens),
            (10, 60, 30)
        );
        assert_eq!((u.prompt_tokens(), u.reasoning_tokens), (100, 4));
        let back = usage_to_wire(&u);
        assert_eq!(
            (
                back.input_tokens,
                back.cache_read_input_tokens,
                back.output_tokens
            ),
            (10, Some(60), 7)
        );
    }

    #[test]
    fn token_counts() {
        assert_eq!(parse_token_count(br#"{"input_tokens":42}"#).unwrap(), 42);
        assert_eq!(render_token_count(7), br#"{"input_tokens":7}"#);
    }
}
