//! OpenAI `chat.completion` responses to and from the canonical model, with the finish reason and
//! usage conversions the stream shares.
//!
//! It must not price usage or rewrite ids and model names (the gateway does), and must not do IO.

use serde_json::Value;

use crate::canonical::{self, Extra, FinishReason, Format, Role};
use crate::openai::request;
use crate::openai::types;
use crate::wire::{self, WireError};

/// Parses an upstream `chat.completion` body.
pub fn parse(body: &[u8]) -> Result<canonical::ChatResponse, WireError> {
    from_wire(wire::from_json(body)?)
}

/// Renders a `chat.completion` body.
pub fn render(resp: &canonical::ChatResponse) -> Vec<u8> {
    wire::to_json(&to_wire(resp))
}

pub fn from_wire(w: types::ChatResponse) -> Result<canonical::ChatResponse, WireError> {
    let mut choices = Vec::with_capacity(w.choices.len());
    for (i, c) in w.choices.into_iter().enumerate() {
        let mut message = request::message_from_wire(c.message, &format!("choices[{i}].message"))?;
        message.role = Role::Assistant;
        let mut extra = serde_json::Map::new();
        if let Some(logprobs) = c.logprobs.filter(|v| !v.is_null()) {
            extra.insert("logprobs".into(), logprobs);
        }
        choices.push(canonical::Choice {
            index: c.index,
            message,
            finish_reason: c.finish_reason.as_deref().and_then(finish_reason_from_wire),
            stop_sequence: None,
            extra: Extra::new(Format::OpenAi, extra),
        });
    }
    let mut extra = w.extra;
    if let Some(tier) = w.service_tier {
        extra.insert("service_tier".into(), Value::String(tier));
    }
    Ok(canonical::ChatResponse {
        id: w.id,
        model: w.model,
        created: w.created,
        choices,
        usage: w.usage.as_ref().map(usage_from_wire),
        system_fingerprint: w.system_fingerprint,
        extra: Extra::new(Format::OpenAi, extra),
    })
}

pub fn to_wire(resp: &canonical::ChatResponse) -> types::ChatResponse {
    let choices = resp
        .choices
        .iter()
        .map(|c| {
            let (content, refusal, tool_calls) =
                request::assistant_to_wire(&c.message.content, false);
            let reasoning: String = c
                .message
                .content
                .iter()
                .filter_map(|p| match p {
                    canonical::Part::Reasoning { text, .. } => Some(text.as_str()),
                    _ => None,
                })
                .collect();
            let choice_extra = Extra::fields_for(c.extra.as_ref(), Format::OpenAi);
            types::Choice {
                index: c.index,
                message: types::Message {
                    role: types::Role::Assistant,
                    content,
                    name: None,
                    refusal,
                    tool_calls,
                    tool_call_id: None,
                    reasoning: (!reasoning.is_empty()).then_some(reasoning),
                    reasoning_content: None,
                    extra: Extra::fields_for(c.message.extra.as_ref(), Format::OpenAi)
                        .cloned()
                        .unwrap_or_default(),
                },
                logprobs: choice_extra.and_then(|e| e.get("logprobs")).cloned(),
                finish_reason: c
                    .finish_reason
                    .as_ref()
                    .map(|r| finish_reason_to_wire(r).to_string()),
            }
        })
        .collect();
    let mut extra = Extra::fields_for(resp.extra.as_ref(), Format::OpenAi)
        .cloned()
        .unwrap_or_default();
    let service_tier = match extra.remove("service_tier") {
        Some(Value::String(tier)) => Some(tier),
        _ => None,
    };
    types::ChatResponse {
        id: resp.id.clone(),
        object: "chat.completion".into(),
        created: resp.created,
        model: resp.model.clone(),
        choices,
        usage: resp.usage.as_ref().map(usage_to_wire),
        service_tier,
        system_fingerprint: resp.system_fingerprint.clone(),
        extra,
    }
}

/// The canonical reason of an OpenAI `finish_reason`; `None` for the empty string some
/// compatible servers send mid-stream.
pub fn finish_reason_from_wire(reason: &str) -> Option<FinishReason> {
    if reason.is_empty() {
        return None;
    }
    Some(FinishReason::from_name(reason))
}

/// OpenAI's `finish_reason`. Other formats' words that OpenAI does not know become `stop`, the
/// only value its clients expect besides the four named ones; OpenAI's own `function_call` stays.
pub fn finish_reason_to_wire(reason: &FinishReason) -> &str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::Other(word) if word == "function_call" => "function_call",
        FinishReason::Other(_) => "stop",
    }
}

/// Canonical usage of OpenAI's: cached tokens are taken out of `prompt_tokens` (see
/// [`canonical::Usage`]).
pub fn usage_from_wire(u: &types::Usage) -> canonical::Usage {
    let details = u.prompt_tokens_details.as_ref();
    let cache_read = details.and_then(|d| d.cached_tokens).unwrap_or(0);
    let cache_write = details.and_then(|d| d.cache_write_tokens).unwrap_or(0);
    let cache_read = cache_read.min(u.prompt_tokens);
    let cache_write = cache_write.min(u.prompt_tokens - cache_read);
    canonical::Usage {
        input_tokens: u.prompt_tokens - cache_read - cache_write,
        output_tokens: u.completion_tokens,
        cache_read_tokens: cache_read,
        cache_write_tokens: cache_write,
        reasoning_tokens: u
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0),
        cost: u.cost,
    }
}

/// OpenAI usage of canonical usage: `prompt_tokens` counts every prompt token, cached included.
pub fn usage_to_wire(u: &canonical::Usage) -> types::Usage {
    types::Usage {
        prompt_tokens: u.prompt_tokens(),
        completion_tokens: u.output_tokens,
        total_tokens: u.total_tokens(),
        prompt_tokens_details: Some(types::PromptTokensDetails {
            cached_tokens: Some(u.cache_read_tokens),
            cache_write_tokens: (u.cache_write_tokens > 0).then_some(u.cache_write_tokens),
            audio_tokens: None,
        }),
        completion_tokens_details: Some(types::CompletionTokensDetails {
            reasoning_tokens: Some(u.reasoning_tokens),
            ..Default::default()
        }),
        cost: u.cost,
    }
}

/// The generated text of a `chat.completion` (`choices[].message.content`) or legacy
/// `text_completion` (`choices[].text`) body, choices in order; `None` when the body is neither.
/// For keeping completions in the usage record: it reads only the text, borrowing where it can.
pub fn text(body: &[u8]) -> Option<String> {
    use std::borrow::Cow;
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(default, borrow)]
        choices: Vec<Choice<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Choice<'a> {
        #[serde(default, borrow)]
        message: Option<Msg<'a>>,
        #[serde(default, borrow)]
        text: Option<Cow<'a, str>>,
    }
    #[derive(serde::Deserialize)]
    struct Msg<'a> {
        #[serde(default, borrow)]
        content: Option<Content<'a>>,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Content<'a> {
        Text(#[serde(borrow)] Cow<'a, str>),
        Parts(Vec<Value>),
    }
    let b: Body<'_> = serde_json::from_slice(body).ok()?;
    let mut out = String::new();
    for c in b.choices {
        match (c.message.and_then(|m| m.content), c.text) {
            (Some(Content::Text(t)), _) | (None, Some(t)) => out.push_str(&t),
            (Some(Content::Parts(parts)), _) => {
                for p in parts {
                    if let Some(t) = p.get("text").and_then(Value::as_str) {
                        out.push_str(t);
                    }
                }
            }
            (None, None) => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_tokens_leave_input() {
        let w: types::Usage = serde_json::from_str(
            r#"{"prompt_tokens":100,"completion_tokens":10,"total_tokens":110,
                "prompt_tokens_details":{"cached_tokens":60,"cache_write_tokens":30},
                "completion_tokens_details":{"reasoning_tokens":4}}"#,
        )
        .unwrap();
        let u = usage_from_wire(&w);
        assert_eq!(
            (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens),
            (10, 60, 30)
        );
        assert_eq!((u.output_tokens, u.reasoning_tokens), (10, 4));
        let back = usage_to_wire(&u);
        assert_eq!((back.prompt_tokens, back.total_tokens), (100, 110));
    }

    #[test]
    fn inconsistent_cache_counts_do_not_underflow() {
        let w: types::Usage = serde_json::from_str(
            r#"{"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":60}}"#,
        )
        .unwrap();
        let u = usage_from_wire(&w);
        assert_eq!((u.input_tokens, u.cache_read_tokens), (0, 5));
    }

    #[test]
    fn unknown_reasons_render_as_stop() {
        assert_eq!(
            finish_reason_to_wire(&FinishReason::Other("pause_turn".into())),
            "stop"
        );
        assert_eq!(finish_reason_from_wire(""), None);
    }

    #[test]
    fn text_reads_chat_and_legacy_completions() {
        let chat = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"a \"b\""}},{"index":1,"message":{"role":"assistant","content":[{"type":"text","text":"c"}]}}]}"#;
        assert_eq!(super::text(chat).as_deref(), Some("a \"b\"c"));
        let legacy = br#"{"object":"text_completion","choices":[{"index":0,"text":"xyz"}]}"#;
        assert_eq!(super::text(legacy).as_deref(), Some("xyz"));
        assert_eq!(
            super::text(br#"{"data":[{"embedding":[0.1]}]}"#).as_deref(),
            Some("")
        );
        assert_eq!(super::text(b"not json"), None);
    }
}
