//! Gemini `GenerateContentResponse` to and from the canonical model, with the finish reason and
//! usage conversions the stream shares.
//!
//! It must not price usage or rewrite ids and model names (the gateway does), and must not do IO.
//! Gemini answers carry `responseId` and `modelVersion`, which become the canonical id and model;
//! `created` is left 0 for the gateway to stamp.

use serde_json::Map;

use crate::canonical::{self, Extra, FinishReason, Format, Part, Role};
use crate::gemini::{request, types};
use crate::wire::{self, WireError};

/// Parses an upstream `generateContent` body.
pub fn parse(body: &[u8]) -> Result<canonical::ChatResponse, WireError> {
    from_wire(wire::from_json(body)?)
}

/// Renders a `generateContent` body, or the error naming what Gemini cannot express (tool call
/// arguments that are not a JSON object).
pub fn render(resp: &canonical::ChatResponse) -> Result<Vec<u8>, WireError> {
    Ok(wire::to_json(&to_wire(resp)?))
}

pub fn from_wire(w: types::Response) -> Result<canonical::ChatResponse, WireError> {
    let id = w.response_id.unwrap_or_default();
    let mut choices = Vec::with_capacity(w.candidates.len().max(1));
    for (i, c) in w.candidates.into_iter().enumerate() {
        let index = c.index.unwrap_or(i as u32);
        let parts = c.content.map(|c| c.parts).unwrap_or_default();
        let content = request::model_parts(
            parts,
            &seed(&id, index),
            &format!("candidates[{i}].content"),
        )?;
        let has_calls = content.iter().any(|p| matches!(p, Part::ToolCall(_)));
        choices.push(canonical::Choice {
            index,
            message: canonical::Message {
                role: Role::Assistant,
                content,
                name: None,
                extra: None,
            },
            finish_reason: c
                .finish_reason
                .as_deref()
                .map(|r| finish_reason_from_wire(r, has_calls)),
            stop_sequence: None,
            extra: Extra::new(Format::Gemini, c.extra),
        });
    }
    let mut extra = w.extra;
    if let Some(feedback) = w.prompt_feedback {
        if choices.is_empty() && feedback.get("blockReason").is_some() {
            // The prompt was blocked: no candidate, nothing generated.
            choices.push(canonical::Choice {
                index: 0,
                message: canonical::Message {
                    role: Role::Assistant,
                    content: Vec::new(),
                    name: None,
                    extra: None,
                },
                finish_reason: Some(FinishReason::ContentFilter),
                stop_sequence: None,
                extra: None,
            });
        }
        extra.insert("promptFeedback".into(), feedback);
    }
    Ok(canonical::ChatResponse {
        id,
        model: w.model_version.unwrap_or_default(),
        created: 0,
        choices,
        usage: w.usage_metadata.as_ref().map(usage_from_wire),
        system_fingerprint: None,
        extra: Extra::new(Format::Gemini, extra),
    })
}

pub fn to_wire(resp: &canonical::ChatResponse) -> Result<types::Response, WireError> {
    let mut extra = Extra::fields_for(resp.extra.as_ref(), Format::Gemini)
        .cloned()
        .unwrap_or_default();
    let prompt_feedback = extra.remove("promptFeedback");
    let blocked = prompt_feedback.is_some();
    let mut candidates = Vec::with_capacity(resp.choices.len());
    for c in &resp.choices {
        if blocked && c.message.content.is_empty() {
            continue;
        }
        let parts = request::parts_to_wire(&c.message.content, &format!("choices[{}]", c.index))?;
        candidates.push(types::Candidate {
            content: Some(types::Content {
                role: Some("model".into()),
                parts,
            }),
            finish_reason: c
                .finish_reason
                .as_ref()
                .map(|r| finish_reason_to_wire(r).to_string()),
            index: Some(c.index),
            extra: Extra::fields_for(c.extra.as_ref(), Format::Gemini)
                .cloned()
                .unwrap_or_default(),
        });
    }
    Ok(types::Response {
        candidates,
        prompt_feedback,
        usage_metadata: resp.usage.as_ref().map(usage_to_wire),
        model_version: (!resp.model.is_empty()).then(|| resp.model.clone()),
        response_id: (!resp.id.is_empty()).then(|| resp.id.clone()),
        error: None,
        extra,
    })
}

/// The seed of synthesized call ids for one candidate of one response.
pub(crate) fn seed(response_id: &str, choice: u32) -> String {
    format!("{response_id}/{choice}")
}

/// The canonical reason of a Gemini `finishReason`; `STOP` is `ToolCalls` when the candidate
/// called functions.
pub fn finish_reason_from_wire(reason: &str, has_calls: bool) -> FinishReason {
    match reason {
        "STOP" if has_calls => FinishReason::ToolCalls,
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        other => FinishReason::Other(other.to_string()),
    }
}

/// Gemini's `finishReason`. Gemini's own other words (`MALFORMED_FUNCTION_CALL`, `OTHER`, ...)
/// stay; other formats' words become `STOP`.
pub fn finish_reason_to_wire(reason: &FinishReason) -> &str {
    match reason {
        FinishReason::Stop | FinishReason::ToolCalls => "STOP",
        FinishReason::Length => "MAX_TOKENS",
        FinishReason::ContentFilter => "SAFETY",
        FinishReason::Other(word) if is_gemini_word(word) => word,
        FinishReason::Other(_) => "STOP",
    }
}

fn is_gemini_word(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit())
}

/// Canonical usage of Gemini's (see [`canonical::Usage`]): cached tokens leave the prompt count,
/// tool-use prompt tokens join it, thoughts join the output.
pub fn usage_from_wire(u: &types::UsageMetadata) -> canonical::Usage {
    let prompt = u.prompt_token_count.unwrap_or(0);
    let cached = u.cached_content_token_count.unwrap_or(0).min(prompt);
    let thoughts = u.thoughts_token_count.unwrap_or(0);
    canonical::Usage {
        input_tokens: prompt - cached + u.tool_use_prompt_token_count.unwrap_or(0),
        output_tokens: u
            .candidates_token_count
            .unwrap_or(0)
            .saturating_add(thoughts),
        cache_read_tokens: cached,
        cache_write_tokens: 0,
        reasoning_tokens: thoughts,
        cost: None,
    }
}

/// Gemini usage of canonical usage: `promptTokenCount` counts every prompt token, cached
/// included; `candidatesTokenCount` excludes thoughts.
pub fn usage_to_wire(u: &canonical::Usage) -> types::UsageMetadata {
    let reasoning = u.reasoning_tokens.min(u.output_tokens);
    types::UsageMetadata {
        prompt_token_count: Some(u.prompt_tokens()),
        cached_content_token_count: (u.cache_read_tokens > 0).then_some(u.cache_read_tokens),
        candidates_token_count: Some(u.output_tokens - reasoning),
        tool_use_prompt_token_count: None,
        thoughts_token_count: (reasoning > 0).then_some(reasoning),
        total_token_count: Some(u.total_tokens()),
        extra: Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_kinds_are_disjoint() {
        let w: types::UsageMetadata = serde_json::from_str(
            r#"{"promptTokenCount":100,"cachedContentTokenCount":60,"candidatesTokenCount":10,
                "thoughtsTokenCount":5,"toolUsePromptTokenCount":3,"totalTokenCount":118}"#,
        )
        .unwrap();
        let u = usage_from_wire(&w);
        assert_eq!((u.input_tokens, u.cache_read_tokens), (43, 60));
        assert_eq!((u.output_tokens, u.reasoning_tokens), (15, 5));
        assert_eq!(u.total_tokens(), 118);
        let back = usage_to_wire(&u);
        assert_eq!(back.candidates_token_count, Some(10));
        assert_eq!(back.thoughts_token_count, Some(5));
    }

    #[test]
    fn finish_reasons() {
        assert_eq!(
            finish_reason_from_wire("STOP", true),
            FinishReason::ToolCalls
        );
        assert_eq!(
            finish_reason_from_wire("RECITATION", false),
            FinishReason::ContentFilter
        );
        let other = finish_reason_from_wire("MALFORMED_FUNCTION_CALL", false);
        assert_eq!(finish_reason_to_wire(&other), "MALFORMED_FUNCTION_CALL");
        assert_eq!(
            finish_reason_to_wire(&FinishReason::Other("pause_turn".into())),
            "STOP"
        );
    }

    #[test]
    fn blocked_prompt_is_a_content_filter_finish() {
        let r = parse(br#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":4,"totalTokenCount":4}}"#).unwrap();
        assert_eq!(
            r.choices[0].finish_reason,
            Some(FinishReason::ContentFilter)
        );
        let again = parse(&render(&r).unwrap()).unwrap();
        assert_eq!(again, r);
    }
}
