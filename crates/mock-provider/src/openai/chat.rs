//! Chat Completions (`POST /v1/chat/completions`): the deterministic answer, the
//! `chat.completion` object and the `chat.completion.chunk` stream.
//!
//! References followed: OpenAI API reference "The chat completion object" and "The chat
//! completion chunk object"; `openai-python` `types/chat/chat_completion.py`,
//! `chat_completion_chunk.py` (usage on every chunk is `null` except the last when
//! `stream_options.include_usage` is set; that last chunk has `"choices": []`),
//! `chat_completion_message.py`, `completion_create_params.py` (the known request keys);
//! a captured OpenAI tool-call stream (alexbrowng/aiomodels
//! `tests/openai/chat_completion_chunks/get_weather.py`) for the shape of tool-call deltas:
//! first `index`, `id`, `type`, `function.name` with empty `arguments`, then argument
//! fragments carrying only `index` and `function.arguments`. Azure additions follow
//! `azure.rs`.
//!
//! The answer rule (what tests assert):
//! * last message `tool` → text `"tool said: " + <its content>`;
//! * else `tools` non-empty, `tool_choice` not `"none"`, last message `user` → one call of the
//!   first tool (or the one `tool_choice` names) with arguments `{"input": "<user text>"}`,
//!   finish reason `tool_calls`;
//! * else text `"echo: " + <text of the last user message>`; with `response_format`
//!   `json_object`/`json_schema` the content is `{"reply": "<that text>"}`;
//! * `stop` cuts the text at the first stop sequence; `max_tokens` /
//!   `max_completion_tokens` keep that many words and set finish reason `length`.

use serde_json::{json, Map, Value};

use super::{Flavor, Meta};
use crate::openai;
use crate::tokens;
use crate::wire::Reply;

/// Request keys Chat Completions accepts (OpenAI's `CompletionCreateParams`, plus Azure's
/// `data_sources`); anything else is rejected as OpenAI does.
const KNOWN: &[&str] = &[
    "messages",
    "model",
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "metadata",
    "modalities",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "prompt_cache_retention",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "verbosity",
    "web_search_options",
    "data_sources",
];

/// What the mock "model" decided to say in one choice.
#[derive(Clone, Debug, PartialEq)]
enum Answer {
    Text {
        content: String,
        finish: &'static str,
    },
    Tool {
        id: String,
        name: String,
        arguments: String,
    },
}

impl Answer {
    fn tokens(&self) -> u64 {
        match self {
            Answer::Text { content, .. } => tokens::count(content),
            Answer::Tool { arguments, .. } => tokens::count(arguments),
        }
    }

    fn finish(&self) -> &'static str {
        match self {
            Answer::Text { finish, .. } => finish,
            Answer::Tool { .. } => "tool_calls",
        }
    }
}

/// Builds the answer to a chat completion request, or the 400 it deserves.
pub fn respond(body: &Map<String, Value>, meta: &Meta) -> Result<Reply, Reply> {
    openai::reject_unknown(body, KNOWN)?;
    let messages = match body.get("messages") {
        None | Some(Value::Null) => return Err(openai::missing("messages")),
        Some(Value::Array(m)) if m.is_empty() => {
            return Err(openai::invalid(
                "messages",
                "[] is too short - 'messages'",
                None,
            ))
        }
        Some(Value::Array(m)) => m,
        Some(_) => {
            return Err(openai::invalid(
                "messages",
                "Invalid type for 'messages': expected an array of objects.",
                Some("invalid_type"),
            ))
        }
    };
    let n = openai::choice_count(body)?;
    let (stream, include_usage) = openai::stream_flags(body)?;
    let tools: Vec<Value> = body
        .get("tools")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();

    let prompt_tokens = tokens::prompt_tokens(messages, &tools);
    let answers: Vec<Answer> = (0..n)
        .map(|i| answer(body, messages, &tools, meta.seq, i))
        .collect();
    let completion_tokens = answers.iter().map(Answer::tokens).sum();
    let usage = openai::usage(prompt_tokens, completion_tokens);

    Ok(if stream {
        Reply::sse(chunks(&answers, meta, include_usage.then_some(usage)))
    } else {
        Reply::json(http::StatusCode::OK, completion(&answers, meta, usage))
    })
}

/// The deterministic answer for choice `index`.
fn answer(
    body: &Map<String, Value>,
    messages: &[Value],
    tools: &[Value],
    seq: u64,
    index: u64,
) -> Answer {
    let last = messages.last();
    let last_role = last.and_then(|m| m.get("role")).and_then(Value::as_str);
    let user_text = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| tokens::content_text(m.get("content").unwrap_or(&Value::Null)).0)
        .unwrap_or_default();

    if last_role == Some("user") {
        if let Some(name) = chosen_tool(body, tools) {
            let arguments = json!({ "input": user_text }).to_string();
            let seed = tokens::hash64(format!("{seq}/{index}/{name}/{arguments}").as_bytes());
            return Answer::Tool {
                id: format!("call_{}", tokens::alnum_suffix(seed, 24)),
                name,
                arguments,
            };
        }
    }

    let text = if last_role == Some("tool") {
        let content = last.and_then(|m| m.get("content")).unwrap_or(&Value::Null);
        format!("tool said: {}", tokens::content_text(content).0)
    } else {
        format!("echo: {user_text}")
    };
    let json_mode = matches!(
        body.get("response_format")
            .and_then(|f| f.get("type"))
            .and_then(Value::as_str),
        Some("json_object" | "json_schema")
    );
    let text = if json_mode {
        json!({ "reply": text }).to_string()
    } else {
        text
    };
    let text = openai::apply_stop(&text, &openai::stop_sequences(body));
    let max = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_u64));
    let (content, cut) = openai::apply_max_tokens(&text, max);
    Answer::Text {
        content,
        finish: if cut { "length" } else { "stop" },
    }
}

/// The name of the tool to call, when the request lets the model call one.
fn chosen_tool(body: &Map<String, Value>, tools: &[Value]) -> Option<String> {
    let tool_name = |t: &Value| {
        t.get("function")
            .and_then(|f| f.get("name"))
            .or_else(|| t.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let first = tools.iter().find_map(tool_name)?;
    match body.get("tool_choice") {
        Some(Value::String(s)) if s == "none" => None,
        Some(Value::Object(choice)) => Some(
            choice
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .map_or(first, str::to_string),
        ),
        _ => Some(first),
    }
}

fn completion_id(meta: &Meta) -> String {
    format!("chatcmpl-mock{:019}", meta.seq)
}

/// The non-streamed `chat.completion` object.
fn completion(answers: &[Answer], meta: &Meta, usage: Value) -> Value {
    let choices: Vec<Value> = answers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let message = match a {
                Answer::Text { content, .. } => json!({
                    "role": "assistant",
                    "content": content,
                    "refusal": null,
                    "annotations": []
                }),
                Answer::Tool {
                    id,
                    name,
                    arguments,
                } => json!({
                    "role": "assistant",
                    "content": null,
                    "refusal": null,
                    "annotations": [],
                    "tool_calls": [{
                        "id": id,
                        "type": "function",
                        "function": {"name": name, "arguments": arguments}
                    }]
                }),
            };
            let mut choice = json!({
                "index": i,
                "message": message,
                "logprobs": null,
                "finish_reason": a.finish()
            });
            if meta.flavor == Flavor::Azure {
                choice["content_filter_results"] = crate::azure::filter_results();
            }
            choice
        })
        .collect();
    let mut object = json!({
        "id": completion_id(meta),
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": choices,
        "usage": usage,
        "system_fingerprint": "fp_mock"
    });
    match meta.flavor {
        Flavor::OpenAi => object["service_tier"] = json!("default"),
        Flavor::Azure => object["prompt_filter_results"] = crate::azure::prompt_filter_results(),
    }
    object
}

/// The deltas of one choice, in order, excluding the final finish-reason chunk.
fn deltas(answer: &Answer) -> Vec<(Value, bool)> {
    match answer {
        Answer::Text { content, .. } => {
            let mut out = vec![(
                json!({"role": "assistant", "content": "", "refusal": null}),
                false,
            )];
            out.extend(
                tokens::pieces(content)
                    .into_iter()
                    .map(|p| (json!({ "content": p }), true)),
            );
            out
        }
        Answer::Tool {
            id,
            name,
            arguments,
        } => {
            let mut out = vec![(
                json!({
                    "role": "assistant",
                    "content": null,
                    "refusal": null,
                    "tool_calls": [{
                        "index": 0,
                        "id": id,
                        "type": "function",
                        "function": {"name": name, "arguments": ""}
                    }]
                }),
                false,
            )];
            out.extend(fragments(arguments, 4).into_iter().map(|f| {
                (
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": f}}]}),
                    false,
                )
            }));
            out
        }
    }
}

/// Splits `s` into `parts` nearly equal pieces on character boundaries.
fn fragments(s: &str, parts: usize) -> Vec<&str> {
    let chars: Vec<usize> = s.char_indices().map(|(i, _)| i).collect();
    let per = chars.len().div_ceil(parts).max(1);
    let mut out = Vec::new();
    let mut k = 0;
    while k < chars.len() {
        let end = chars.get(k + per).copied().unwrap_or(s.len());
        out.push(&s[chars[k]..end]);
        k += per;
    }
    out
}

/// The `chat.completion.chunk` events of a streamed answer.
fn chunks(answers: &[Answer], meta: &Meta, usage: Option<Value>) -> Vec<Value> {
    let with_usage = usage.is_some();
    let azure = meta.flavor == Flavor::Azure;
    let chunk = |choices: Value| {
        let mut c = json!({
            "id": completion_id(meta),
            "object": "chat.completion.chunk",
            "created": meta.created,
            "model": meta.model,
            "system_fingerprint": "fp_mock",
            "choices": choices
        });
        if !azure {
            c["service_tier"] = json!("default");
        }
        if with_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let choice = |index: usize, delta: Value, finish: Option<&str>, filtered: bool| {
        let mut c =
            json!({"index": index, "delta": delta, "logprobs": null, "finish_reason": finish});
        if azure {
            c["content_filter_results"] = if filtered {
                crate::azure::filter_results()
            } else {
                json!({})
            };
        }
        c
    };

    let mut events = Vec::new();
    if azure {
        events.push(crate::azure::prompt_filter_chunk());
    }
    let per_choice: Vec<Vec<(Value, bool)>> = answers.iter().map(deltas).collect();
    let steps = per_choice.iter().map(Vec::len).max().unwrap_or(0);
    for step in 0..steps {
        for (i, list) in per_choice.iter().enumerate() {
            if let Some((delta, filtered)) = list.get(step) {
                events.push(chunk(json!([choice(i, delta.clone(), None, *filtered)])));
            }
        }
    }
    for (i, a) in answers.iter().enumerate() {
        events.push(chunk(json!([choice(
            i,
            json!({}),
            Some(a.finish()),
            false
        )])));
    }
    if let Some(usage) = usage {
        let mut last = chunk(json!([]));
        last["usage"] = usage;
        events.push(last);
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            seq: 7,
            created: 1,
            model: "m".into(),
            flavor: Flavor::OpenAi,
        }
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn fragments_cover_the_string() {
        let s = r#"{"input":"héllo"}"#;
        let f = fragments(s, 4);
        assert!(f.len() >= 3);
        assert_eq!(f.concat(), s);
    }

    #[test]
    fn echo_with_stop_and_length() {
        let b = body(
            json!({"model": "m", "messages": [{"role": "user", "content": "a b c d"}],
            "stop": [" d"], "max_tokens": 2}),
        );
        let a = answer(&b, b["messages"].as_array().unwrap(), &[], 1, 0);
        assert_eq!(
            a,
            Answer::Text {
                content: "echo: a".into(),
                finish: "length"
            }
        );
    }

    #[test]
    fn unknown_arguments_are_rejected() {
        let b = body(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "provider": {"order": ["a"]}}),
        );
        assert!(respond(&b, &meta()).is_err());
    }
}
