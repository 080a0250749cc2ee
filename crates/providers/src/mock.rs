//! The deterministic brain of the built-in `mock` provider: canonical request in, canonical answer
//! out, the same every time.
//!
//! The gateway wraps these functions with the latency and failures a demo or load test asks for;
//! this module must not sleep, fail at random, read the clock or do any other IO.
//!
//! # Rules
//!
//! - **Text.** The last user message's text, with `[image]`, `[audio]` and `[file]` standing for
//!   those parts (parts joined by one space), is the *user text*. The reply is
//!   `echo: <user text>`.
//! - **Tool call.** When the request has tools, `tool_choice` is not `none`, and the last message
//!   is a user message, the answer is a call to the chosen tool (the named one, the first allowed
//!   one, or else the first tool) with arguments `{"input":"<user text>"}` (compact JSON), id
//!   `call_mock_<choice>`, finish reason `ToolCalls`.
//! - **Tool result.** When the last message is a tool message, the reply is
//!   `tool said: <result text>` (results joined by one space).
//! - **JSON.** With a `json_object` or `json_schema` response format, a text reply is the compact
//!   JSON object `{"echo":"<subject>"}`, where the subject is the user text, or
//!   `tool said: <result text>` after a tool result.
//! - **Choices.** `n` identical choices (clamped to 1..=128), indexes 0..n.
//! - **Length.** With `max_tokens`, a reply (or tool call arguments) longer than that many words is
//!   cut after the last allowed word and finishes with `Length`; otherwise `Stop` (or
//!   `ToolCalls`).
//! - **Usage.** A word is a whitespace-separated run. Input tokens are the words of every message
//!   (text, refusals, reasoning, tool call arguments, tool result text, one per image, audio or
//!   file part) plus one per tool. Output tokens are the reply's words (a tool call's: its
//!   arguments' words) times `n`. No cache or reasoning tokens. [`answer`] and [`stream`] report
//!   the same usage.
//! - **Ids.** `chatcmpl-mock-<16 hex digits>` from a hash of the model and messages; `created` is
//!   0 (the gateway stamps the time); `model` is the request's.

use serde_json::{Map, Value};

use crate::canonical::{
    ChatRequest, ChatResponse, Choice, FinishReason, Message, Part, Role, StreamEvent, ToolCall,
    ToolChoice, Usage,
};

/// The most choices the mock generates, OpenAI's own limit.
const MAX_CHOICES: u32 = 128;

/// The buffered answer to `req`.
pub fn answer(req: &ChatRequest) -> ChatResponse {
    let plan = Plan::of(req);
    let choices = (0..plan.n)
        .map(|index| {
            let part = match &plan.reply {
                Reply::Text(text) => Part::Text { text: text.clone() },
                Reply::ToolCall { name, arguments } => Part::ToolCall(ToolCall {
                    id: call_id(index),
                    name: name.clone(),
                    arguments: arguments.clone(),
                }),
            };
            let message = Message {
                role: Role::Assistant,
                content: vec![part],
                name: None,
                extra: None,
            };
            Choice {
                index,
                message,
                finish_reason: Some(plan.finish.clone()),
                stop_sequence: None,
                extra: None,
            }
        })
        .collect();
    ChatResponse {
        id: plan.id.clone(),
        model: req.model.clone(),
        created: 0,
        choices,
        usage: Some(plan.usage()),
        system_fingerprint: None,
        extra: None,
    }
}

/// The streamed answer to `req`: `Start`, then per choice the reply in pieces of
/// `words_per_chunk` words (at least 1) and its `Finish`, then `Usage`. The pieces concatenate to
/// exactly the text (or arguments) of [`answer`].
pub fn stream(req: &ChatRequest, words_per_chunk: usize) -> Vec<StreamEvent> {
    let plan = Plan::of(req);
    let words_per_chunk = words_per_chunk.max(1);
    let mut events = vec![StreamEvent::Start {
        id: plan.id.clone(),
        model: req.model.clone(),
        created: 0,
    }];
    for choice in 0..plan.n {
        match &plan.reply {
            Reply::Text(text) => {
                for piece in pieces(text, words_per_chunk) {
                    events.push(StreamEvent::TextDelta {
                        choice,
                        text: piece.to_string(),
                    });
                }
            }
            Reply::ToolCall { name, arguments } => {
                events.push(StreamEvent::ToolCallStart {
                    choice,
                    index: 0,
                    id: call_id(choice),
                    name: name.clone(),
                });
                for piece in pieces(arguments, words_per_chunk) {
                    events.push(StreamEvent::ToolCallDelta {
                        choice,
                        index: 0,
                        arguments: piece.to_string(),
                    });
                }
            }
        }
        events.push(StreamEvent::Finish {
            choice,
            reason: plan.finish.clone(),
            stop_sequence: None,
        });
    }
    events.push(StreamEvent::Usage(plan.usage()));
    events
}

/// The input tokens the mock counts for `req` (for `count_tokens`).
pub fn input_tokens(req: &ChatRequest) -> u64 {
    let words: u64 = req.messages.iter().map(|m| words(&message_text(m))).sum();
    words + req.tools.len() as u64
}

/// A deterministic unit-length vector of `dims` dimensions for `text`: the same text always gets
/// the same vector, different texts almost surely different ones.
pub fn embed(text: &str, dims: usize) -> Vec<f32> {
    let mut state = fnv1a(FNV_OFFSET, text.as_bytes());
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            // The top 24 bits of a splitmix64 step, as a float in [-1, 1).
            let bits = (splitmix64(&mut state) >> 40) as f32;
            bits / (1u32 << 23) as f32 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    } else if let Some(first) = v.first_mut() {
        *first = 1.0;
    }
    v
}

enum Reply {
    Text(String),
    ToolCall { name: String, arguments: String },
}

/// Everything [`answer`] and [`stream`] share, computed once.
struct Plan {
    id: String,
    n: u32,
    reply: Reply,
    finish: FinishReason,
    input_tokens: u64,
    /// Per choice.
    output_tokens: u64,
}

impl Plan {
    fn of(req: &ChatRequest) -> Plan {
        let last = req.messages.last();
        let user_text = req
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(message_text)
            .unwrap_or_default();
        let json = req.response_format.as_ref().is_some_and(|f| f.is_json());
        let (reply, natural_finish) = match last {
            Some(m) if m.role == Role::Tool => {
                let subject = format!("tool said: {}", message_text(m));
                let text = if json {
                    json_object("echo", &subject)
                } else {
                    subject
                };
                (Reply::Text(text), FinishReason::Stop)
            }
            Some(m) if m.role == Role::User && wants_tool(req).is_some() => {
                let name = wants_tool(req).unwrap_or_default().to_string();
                let arguments = json_object("input", &user_text);
                (Reply::ToolCall { name, arguments }, FinishReason::ToolCalls)
            }
            _ => {
                let text = if json {
                    json_object("echo", &user_text)
                } else {
                    format!("echo: {user_text}")
                };
                (Reply::Text(text), FinishReason::Stop)
            }
        };
        let (reply, finish) = truncate(reply, natural_finish, req.max_tokens);
        let output_tokens = match &reply {
            Reply::Text(text) => words(text),
            Reply::ToolCall { arguments, .. } => words(arguments),
        };
        let mut hash = fnv1a(FNV_OFFSET, req.model.as_bytes());
        for m in &req.messages {
            hash = fnv1a(hash, message_text(m).as_bytes());
            hash = fnv1a(hash, &[0xff]);
        }
        Plan {
            id: format!("chatcmpl-mock-{hash:016x}"),
            n: req.n.unwrap_or(1).clamp(1, MAX_CHOICES),
            reply,
            finish,
            input_tokens: input_tokens(req),
            output_tokens,
        }
    }

    fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens * u64::from(self.n),
            ..Usage::default()
        }
    }
}

/// The tool to call, when the rules say to call one.
fn wants_tool(req: &ChatRequest) -> Option<&str> {
    let first = req.tools.first()?;
    match &req.tool_choice {
        Some(ToolChoice::None) => None,
        Some(ToolChoice::Tool { name }) => Some(name),
        Some(ToolChoice::Allowed { names, .. }) => Some(names.first().unwrap_or(&first.name)),
        _ => Some(&first.name),
    }
}

fn truncate(reply: Reply, finish: FinishReason, max_tokens: Option<u32>) -> (Reply, FinishReason) {
    let Some(max) = max_tokens else {
        return (reply, finish);
    };
    let max = max as usize;
    match reply {
        Reply::Text(text) => match cut_after_words(&text, max) {
            Some(cut) => (Reply::Text(cut.to_string()), FinishReason::Length),
            None => (Reply::Text(text), finish),
        },
        Reply::ToolCall { name, arguments } => match cut_after_words(&arguments, max) {
            Some(cut) => (
                Reply::ToolCall {
                    name,
                    arguments: cut.to_string(),
                },
                FinishReason::Length,
            ),
            None => (Reply::ToolCall { name, arguments }, finish),
        },
    }
}

/// `text` up to the end of its `max`-th word, when it has more words than that.
fn cut_after_words(text: &str, max: usize) -> Option<&str> {
    let mut count = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_word = false;
        } else if !in_word {
            in_word = true;
            count += 1;
            if count > max {
                return Some(text[..i].trim_end());
            }
        }
    }
    None
}

/// Splits `text` before every `n`-th word, so the pieces concatenate to `text` exactly.
fn pieces(text: &str, n: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut count = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_word = false;
        } else if !in_word {
            in_word = true;
            if count > 0 && count % n == 0 {
                out.push(&text[start..i]);
                start = i;
            }
            count += 1;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// The text the rules read from a message: its parts joined by one space.
fn message_text(m: &Message) -> String {
    let mut out = String::new();
    for part in &m.content {
        push_part_text(part, &mut out);
    }
    out
}

fn push_part_text(part: &Part, out: &mut String) {
    let text = match part {
        Part::Text { text } | Part::Refusal { text } | Part::Reasoning { text, .. } => {
            text.as_str()
        }
        Part::Image { .. } => "[image]",
        Part::Audio { .. } => "[audio]",
        Part::File { .. } => "[file]",
        Part::ToolCall(call) => call.arguments.as_str(),
        Part::ToolResult(result) => {
            for inner in &result.content {
                push_part_text(inner, out);
            }
            return;
        }
        Part::RedactedReasoning { .. } | Part::CacheBreakpoint(_) | Part::Opaque(_) => return,
    };
    if text.is_empty() {
        return;
    }
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(text);
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn json_object(key: &str, value: &str) -> String {
    let mut map = Map::new();
    map.insert(key.to_string(), Value::String(value.to_string()));
    Value::Object(map).to_string()
}

fn call_id(choice: u32) -> String {
    format!("call_mock_{choice}")
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// 64-bit FNV-1a, continued from `hash`; stable across platforms and Rust versions.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_concatenate_to_the_text() {
        let text = "  echo:  one two\nthree four ";
        for n in 1..6 {
            assert_eq!(pieces(text, n).concat(), text, "n = {n}");
        }
        assert_eq!(pieces("a b c d e", 2), vec!["a b ", "c d ", "e"]);
        assert!(pieces("", 3).is_empty());
    }

    #[test]
    fn cuts_after_words() {
        assert_eq!(cut_after_words("a  b c", 2), Some("a  b"));
        assert_eq!(cut_after_words("a b", 2), None);
        assert_eq!(cut_after_words("a b ", 2), None);
        assert_eq!(cut_after_words("a b", 0), Some(""));
    }

    #[test]
    fn embeddings_are_unit_and_deterministic() {
        let a = embed("hello", 64);
        assert_eq!(a, embed("hello", 64));
        assert_ne!(a, embed("hellp", 64));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(embed("x", 1)[0].abs(), 1.0);
        assert!(embed("x", 0).is_empty());
    }
}
