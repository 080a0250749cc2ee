//! The canonical chat model: the hub every provider format translates to and from.
//!
//! Each provider folder parses its wire format into these types and renders these types into its
//! wire format (hub and spoke, never pairwise). This module owns the shapes and their invariants;
//! it must not know any provider's field spelling (beyond the mapping notes in doc comments) and
//! must not do IO.
//!
//! # Invariants
//!
//! - System prompts are messages with [`Role::System`] or [`Role::Developer`], in the order the
//!   client gave them. Formats with a separate system field (Anthropic, Gemini, Bedrock) put it
//!   first on parse and hoist every system message on render.
//! - Tool calls are [`Part::ToolCall`] parts of [`Role::Assistant`] messages, in the order the
//!   model produced them (interleaved with text where the format allows it).
//! - Tool results are [`Part::ToolResult`] parts of [`Role::Tool`] messages, and such a message
//!   holds nothing else. One tool message may carry several results (Anthropic and Bedrock send
//!   them together in one user turn; OpenAI renders one `tool` message per result).
//! - Token counts follow the convention documented on [`Usage`]: the kinds are disjoint and add
//!   up to the total.

/// The most choices (candidates) an answer may have; a larger index from an upstream is refused
/// rather than used to size a buffer.
pub const MAX_CHOICES: u32 = 128;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

mod assemble;

pub use assemble::Accumulator;

/// A provider wire format, used to tag data only that format can read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[serde(rename = "openai")]
    OpenAi,
    Anthropic,
    Gemini,
    Bedrock,
}

/// Fields of the source format the canonical model has no home for, kept verbatim.
///
/// A renderer writes them back only when `format` is its own format and drops them otherwise,
/// so an OpenAI `logit_bias` survives OpenAI to OpenAI-compatible translation but never reaches
/// Anthropic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extra {
    pub format: Format,
    pub fields: Map<String, Value>,
}

impl Extra {
    /// The fields, if they were written in `format`.
    pub fn fields_for(extra: Option<&Extra>, format: Format) -> Option<&Map<String, Value>> {
        extra.filter(|e| e.format == format).map(|e| &e.fields)
    }

    /// `Some` when `fields` is not empty.
    pub fn new(format: Format, fields: Map<String, Value>) -> Option<Extra> {
        (!fields.is_empty()).then_some(Extra { format, fields })
    }
}

/// A value of one format the canonical model cannot describe (a server-side tool, a content block
/// of a kind only that provider knows). Only a renderer of `format` writes it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opaque {
    pub format: Format,
    pub value: Value,
}

/// One chat request, whatever the client's format.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model as the client named it; the gateway replaces it with the upstream's name.
    pub model: String,
    pub messages: Vec<Message>,
    /// Function tools the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    /// Tools the canonical model cannot describe (server tools such as web search, OpenAI custom
    /// tools). Only a renderer of their format writes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provider_tools: Vec<Opaque>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// `false` forbids more than one tool call per turn (Anthropic `disable_parallel_tool_use`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Upper bound on generated tokens, reasoning included (OpenAI `max_completion_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Number of choices to generate; `None` means one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Reasoning>,
    #[serde(default)]
    pub stream: bool,
    /// The client wants the usage at the end of a stream (OpenAI `stream_options.include_usage`).
    /// Parsers of formats that always stream usage set it; the gateway always asks upstreams.
    #[serde(default)]
    pub include_usage: bool,
    /// The end user (OpenAI `user`, Anthropic `metadata.user_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Extra>,
}

/// How hard the model should think before answering.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reasoning {
    /// `none`, `minimal`, `low`, `medium`, `high` (OpenAI `reasoning_effort`); `none` disables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    /// A token budget for thinking (Anthropic `thinking.budget_tokens`, Gemini `thinkingBudget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    /// OpenAI's newer name for system instructions; other formats treat it as system.
    Developer,
    User,
    Assistant,
    Tool,
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Part>,
    /// A participant name (OpenAI `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Extra>,
}

impl Message {
    /// A message holding one text part.
    pub fn text(role: Role, text: impl Into<String>) -> Message {
        Message {
            role,
            content: vec![Part::Text { text: text.into() }],
            name: None,
            extra: None,
        }
    }

    /// The concatenated text parts (not refusals, reasoning or tool data).
    pub fn text_content(&self) -> String {
        let mut out = String::new();
        for part in &self.content {
            if let Part::Text { text } = part {
                out.push_str(text);
            }
        }
        out
    }

    /// The tool calls of an assistant message, in order.
    pub fn tool_calls(&self) -> impl Iterator<Item = &ToolCall> {
        self.content.iter().filter_map(|p| match p {
            Part::ToolCall(call) => Some(call),
            _ => None,
        })
    }
}

/// One piece of a message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    Text {
        text: String,
    },
    Image {
        source: Source,
        /// OpenAI's `auto` / `low` / `high`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Base64 audio with its format (`wav`, `mp3`, ...).
    Audio {
        data: String,
        format: String,
    },
    /// A document (PDF, text, ...): OpenAI `file`, Anthropic `document`, Bedrock `document`,
    /// Gemini inline or file data that is not an image or audio.
    File {
        source: Source,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filename: Option<String>,
    },
    /// The model declined to answer (OpenAI `refusal`).
    Refusal {
        text: String,
    },
    /// The model's visible thinking. `signature` is the provider's proof to send back with it
    /// (Anthropic `thinking.signature`, Bedrock `reasoningText.signature`). Gemini's
    /// `thoughtSignature` on a part becomes an empty-text reasoning part right before that part.
    Reasoning {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// Encrypted thinking to send back untouched (Anthropic `redacted_thinking`).
    RedactedReasoning {
        data: String,
    },
    ToolCall(ToolCall),
    ToolResult(ToolResult),
    /// Everything before this point may be cached by the provider (Anthropic `cache_control` on
    /// the preceding block, Bedrock `cachePoint`).
    CacheBreakpoint(CacheBreakpoint),
    Opaque(Opaque),
}

/// Where an image or file's bytes are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    Url {
        url: String,
    },
    /// Inline bytes; OpenAI's `data:` URLs are split into these two fields.
    Base64 {
        media_type: String,
        data: String,
    },
    /// A file uploaded to the provider beforehand.
    FileId {
        id: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheBreakpoint {
    /// Anthropic's `5m` or `1h`; `None` is the provider's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// A function call made by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Formats without ids (Gemini) get synthesized ones on parse.
    pub id: String,
    pub name: String,
    /// The arguments as JSON text, exactly as the model produced them (possibly invalid JSON).
    pub arguments: String,
}

/// The answer to a tool call, sent back by the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    pub tool_call_id: String,
    /// The function's name, when the format carries it (Gemini `functionResponse.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Text, and images where the format allows them.
    pub content: Vec<Part>,
    #[serde(default)]
    pub is_error: bool,
}

impl ToolResult {
    /// The concatenated text parts.
    pub fn text_content(&self) -> String {
        let mut out = String::new();
        for part in &self.content {
            if let Part::Text { text } = part {
                out.push_str(text);
            }
        }
        out
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON schema of the arguments; `None` means no parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// OpenAI structured-outputs `strict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// Cache the prompt up to and including this tool (Anthropic `cache_control` on a tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_breakpoint: Option<CacheBreakpoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides (OpenAI `auto`, Anthropic `auto`, Gemini `AUTO`).
    Auto,
    /// No tool calls (OpenAI `none`, Anthropic `none`, Gemini `NONE`).
    None,
    /// At least one tool call (OpenAI `required`, Anthropic `any`, Gemini `ANY`).
    Required,
    /// This function must be called.
    Tool { name: String },
    /// Only these functions may be called (OpenAI `allowed_tools`, Gemini
    /// `allowedFunctionNames`); `required` forces a call.
    Allowed { names: Vec<String>, required: bool },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    /// Any valid JSON object.
    JsonObject,
    /// JSON matching `schema`.
    JsonSchema {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        schema: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
    },
}

impl ResponseFormat {
    /// `true` for JSON object and JSON schema formats.
    pub fn is_json(&self) -> bool {
        !matches!(self, ResponseFormat::Text)
    }
}

/// One chat answer, not streamed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub id: String,
    pub model: String,
    /// Unix seconds; 0 when the source format has none (the gateway stamps it).
    pub created: u64,
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Extra>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub index: u32,
    /// Always [`Role::Assistant`].
    pub message: Message,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    /// The stop sequence that ended the answer, when the format says (Anthropic, Bedrock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequence: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Extra>,
}

/// Why the model stopped.
///
/// Mapping from the providers:
///
/// | canonical | OpenAI | Anthropic | Gemini | Bedrock |
/// | --- | --- | --- | --- | --- |
/// | `Stop` | `stop` | `end_turn`, `stop_sequence` | `STOP` (without function calls) | `end_turn`, `stop_sequence` |
/// | `Length` | `length` | `max_tokens` | `MAX_TOKENS` | `max_tokens` |
/// | `ToolCalls` | `tool_calls` | `tool_use` | `STOP` with function call parts | `tool_use` |
/// | `ContentFilter` | `content_filter` | `refusal` | `SAFETY`, `RECITATION`, `BLOCKLIST`, `PROHIBITED_CONTENT`, `SPII`, `IMAGE_SAFETY` | `guardrail_intervened`, `content_filtered` |
/// | `Other(s)` | `function_call`, anything new | `pause_turn`, anything new | `MALFORMED_FUNCTION_CALL`, `OTHER`, ... | anything new |
///
/// `Other` keeps the provider's word verbatim; renderers of another format map it to their
/// closest "stop".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    Other(String),
}

impl FinishReason {
    /// The canonical name: `stop`, `length`, `tool_calls`, `content_filter`, or the other word.
    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Other(s) => s,
        }
    }

    /// The inverse of [`FinishReason::as_str`].
    pub fn from_name(name: &str) -> FinishReason {
        match name {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            "tool_calls" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            other => FinishReason::Other(other.to_string()),
        }
    }
}

impl Serialize for FinishReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FinishReason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(FinishReason::from_name(&name))
    }
}

/// Token counts of one request, all choices together.
///
/// **Convention: the kinds are disjoint.** `input_tokens` counts only prompt tokens that were
/// neither read from nor written to a cache; `cache_read_tokens` and `cache_write_tokens` are
/// the cached ones. The prompt total is `input + cache_read + cache_write`, and each kind is
/// priced at its own rate with no subtraction. `output_tokens` includes `reasoning_tokens`
/// (reasoning is a subset of output, as every provider bills it).
///
/// Conversions:
///
/// - OpenAI: `input = prompt_tokens - cached_tokens - cache_write_tokens`, `cache_read =
///   prompt_tokens_details.cached_tokens`, `output = completion_tokens`, `reasoning =
///   completion_tokens_details.reasoning_tokens`. Rendering adds the cached kinds back.
/// - Anthropic: `input = input_tokens`, `cache_read = cache_read_input_tokens`, `cache_write =
///   cache_creation_input_tokens` (already disjoint).
/// - Gemini: `input = promptTokenCount - cachedContentTokenCount`, `cache_read =
///   cachedContentTokenCount`, `output = candidatesTokenCount + thoughtsTokenCount`,
///   `reasoning = thoughtsTokenCount`.
/// - Bedrock: `input = inputTokens`, `cache_read = cacheReadInputTokens`, `cache_write =
///   cacheWriteInputTokens` (already disjoint).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_tokens: u64,
    #[serde(default)]
    pub cache_write_tokens: u64,
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// USD, when the gateway has priced the request; rendered as OpenRouter's `usage.cost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

impl Usage {
    /// Every prompt token: `input + cache_read + cache_write`.
    pub fn prompt_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.cache_read_tokens)
            .saturating_add(self.cache_write_tokens)
    }

    /// Prompt plus output tokens.
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens().saturating_add(self.output_tokens)
    }
}

/// An error reported by a provider, in the body of a failed response or inside a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// The provider's error type (`invalid_request_error`, `overloaded_error`, ...).
    pub kind: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// One step of a streamed answer.
///
/// A stream is `Start`, then deltas, then one `Finish` per choice, then usually `Usage`. `choice`
/// is the choice index; `index` is the tool call's position among that choice's tool calls
/// (from 0), whatever content-block numbering the provider uses. A `ToolCallStart` comes before
/// any `ToolCallDelta` of the same call. When a stream carries `Usage` more than once, each one
/// holds the totals known so far and the last one wins. `Error` ends the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    Start {
        id: String,
        model: String,
        created: u64,
    },
    TextDelta {
        choice: u32,
        text: String,
    },
    RefusalDelta {
        choice: u32,
        text: String,
    },
    ReasoningDelta {
        choice: u32,
        text: String,
    },
    /// The signature of the reasoning streamed so far (Anthropic `signature_delta`).
    ReasoningSignature {
        choice: u32,
        signature: String,
    },
    ToolCallStart {
        choice: u32,
        index: u32,
        id: String,
        name: String,
    },
    ToolCallDelta {
        choice: u32,
        index: u32,
        arguments: String,
    },
    Finish {
        choice: u32,
        reason: FinishReason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop_sequence: Option<String>,
    },
    Usage(Usage),
    Error(ApiError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_reason_names_round_trip() {
        for name in [
            "stop",
            "length",
            "tool_calls",
            "content_filter",
            "pause_turn",
        ] {
            assert_eq!(FinishReason::from_name(name).as_str(), name);
        }
        assert_eq!(
            FinishReason::from_name("pause_turn"),
            FinishReason::Other("pause_turn".into())
        );
    }

    #[test]
    fn usage_kinds_add_up() {
        let u = Usage {
            input_tokens: 10,
            cache_read_tokens: 80,
            cache_write_tokens: 5,
            output_tokens: 7,
            ..Usage::default()
        };
        assert_eq!(u.prompt_tokens(), 95);
        assert_eq!(u.total_tokens(), 102);
    }
}
