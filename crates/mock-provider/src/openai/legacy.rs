//! Legacy Completions (`POST /v1/completions`): the `text_completion` object and its stream.
//!
//! References followed: OpenAI API reference "Completions" ("The completion object":
//! `id`, `object: "text_completion"`, `created`, `model`, `system_fingerprint`,
//! `choices[{text, index, logprobs, finish_reason}]`, `usage`; `max_tokens` defaults to 16;
//! `prompt` may be a string, an array of strings, an array of tokens or an array of token
//! arrays; streamed chunks are the same object with partial `text`), and `openai-python`
//! `types/completion.py`, `completion_choice.py`.
//!
//! The answer rule: each prompt gets `n` choices with text `"echo: " + prompt` (a token array
//! is rendered as its numbers joined by spaces), cut by `stop` and `max_tokens` like chat.
//! Choice `index` is `prompt_index * n + j`, as OpenAI orders them.

use serde_json::{json, Map, Value};

use super::{Flavor, Meta};
use crate::openai;
use crate::tokens;
use crate::wire::Reply;

/// Request keys Completions accepts.
const KNOWN: &[&str] = &[
    "model",
    "prompt",
    "best_of",
    "echo",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "max_tokens",
    "n",
    "presence_penalty",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "suffix",
    "temperature",
    "top_p",
    "user",
];

/// OpenAI's default `max_tokens` for legacy completions.
const DEFAULT_MAX_TOKENS: u64 = 16;

struct Choice {
    text: String,
    finish: &'static str,
}

/// Builds the answer to a completions request, or the 400 it deserves.
pub fn respond(body: &Map<String, Value>, meta: &Meta) -> Result<Reply, Reply> {
    openai::reject_unknown(body, KNOWN)?;
    let prompts = prompts(body.get("prompt")).ok_or_else(|| openai::missing("prompt"))?;
    let n = openai::choice_count(body)?;
    let (stream, include_usage) = openai::stream_flags(body)?;
    let stops = openai::stop_sequences(body);
    let max = match body.get("max_tokens") {
        None | Some(Value::Null) => Some(DEFAULT_MAX_TOKENS),
        Some(v) => v.as_u64(),
    };

    let mut choices = Vec::new();
    let mut prompt_tokens = 0;
    for (prompt, count) in &prompts {
        prompt_tokens += count;
        let text = openai::apply_stop(&format!("echo: {prompt}"), &stops);
        let (text, cut) = openai::apply_max_tokens(&text, max);
        let finish = if cut { "length" } else { "stop" };
        choices.extend((0..n).map(|_| Choice {
            text: text.clone(),
            finish,
        }));
    }
    let completion_tokens: u64 = choices.iter().map(|c| tokens::count(&c.text)).sum();
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens
    });

    Ok(if stream {
        Reply::sse(chunks(&choices, meta, include_usage.then_some(usage)))
    } else {
        Reply::json(http::StatusCode::OK, completion(&choices, meta, usage))
    })
}

/// The prompts with their token counts; `None` when `prompt` is missing or of a wrong type.
fn prompts(prompt: Option<&Value>) -> Option<Vec<(String, u64)>> {
    let tokens_text = |items: &[Value]| -> Option<(String, u64)> {
        let numbers: Option<Vec<String>> = items
            .iter()
            .map(|t| t.as_i64().map(|n| n.to_string()))
            .collect();
        numbers.map(|n| (n.join(" "), items.len() as u64))
    };
    match prompt? {
        Value::String(s) => Some(vec![(s.clone(), tokens::count(s))]),
        Value::Array(items) if items.iter().all(Value::is_string) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(|s| (s.to_string(), tokens::count(s)))
                .collect(),
        ),
        Value::Array(items) if items.iter().all(Value::is_number) => {
            tokens_text(items).map(|p| vec![p])
        }
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_array().and_then(|a| tokens_text(a)))
            .collect(),
        _ => None,
    }
}

fn with_filters(mut choice: Value, meta: &Meta, filtered: bool) -> Value {
    if meta.flavor == Flavor::Azure {
        choice["content_filter_results"] = if filtered {
            crate::azure::filter_results()
        } else {
            json!({})
        };
    }
    choice
}

fn completion(choices: &[Choice], meta: &Meta, usage: Value) -> Value {
    let choices: Vec<Value> = choices
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let choice =
                json!({"text": c.text, "index": i, "logprobs": null, "finish_reason": c.finish});
            with_filters(choice, meta, true)
        })
        .collect();
    let mut object = json!({
        "id": format!("cmpl-mock{:019}", meta.seq),
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": "fp_mock",
        "choices": choices,
        "usage": usage
    });
    if meta.flavor == Flavor::Azure {
        object["prompt_filter_results"] = crate::azure::prompt_filter_results();
    }
    object
}

fn chunks(choices: &[Choice], meta: &Meta, usage: Option<Value>) -> Vec<Value> {
    let with_usage = usage.is_some();
    let chunk = |choice: Value| {
        let mut c = json!({
            "id": format!("cmpl-mock{:019}", meta.seq),
            "object": "text_completion",
            "created": meta.created,
            "model": meta.model,
            "system_fingerprint": "fp_mock",
            "choices": [choice]
        });
        if with_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let mut events = Vec::new();
    if meta.flavor == Flavor::Azure {
        events.push(crate::azure::prompt_filter_chunk());
    }
    let pieces: Vec<Vec<&str>> = choices.iter().map(|c| tokens::pieces(&c.text)).collect();
    let steps = pieces.iter().map(Vec::len).max().unwrap_or(0);
    for step in 0..steps {
        for (i, list) in pieces.iter().enumerate() {
            if let Some(piece) = list.get(step) {
                let choice =
                    json!({"text": piece, "index": i, "logprobs": null, "finish_reason": null});
                events.push(chunk(with_filters(choice, meta, true)));
            }
        }
    }
    for (i, c) in choices.iter().enumerate() {
        let choice = json!({"text": "", "index": i, "logprobs": null, "finish_reason": c.finish});
        events.push(chunk(with_filters(choice, meta, false)));
    }
    if let Some(usage) = usage {
        let mut last = chunk(Value::Null);
        last["choices"] = json!([]);
        last["usage"] = usage;
        events.push(last);
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_shapes() {
        assert_eq!(
            prompts(Some(&json!("a b"))).unwrap(),
            vec![("a b".into(), 2)]
        );
        assert_eq!(
            prompts(Some(&json!([1, 2, 3]))).unwrap(),
            vec![("1 2 3".into(), 3)]
        );
        assert_eq!(prompts(Some(&json!([[1], [2, 3]]))).unwrap().len(), 2);
        assert!(prompts(Some(&json!({}))).is_none());
        assert!(prompts(None).is_none());
    }
}
