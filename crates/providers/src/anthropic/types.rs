//! Anthropic's JSON shapes: the Messages request (and its `count_tokens` twin), the `message`
//! response, the stream events and the error body, spelled exactly as the API reference and the
//! `anthropic-sdk-python` types (`message_create_params.py`, `message.py`, `usage.py`,
//! `raw_message_*_event.py`, `shared/error_response.py`) spell them.
//!
//! These are plain serde types with no behaviour; translation to and from the canonical model
//! lives in `request`, `response` and `stream`. Fields the canonical model does not know are
//! kept in `extra` maps, and content blocks of kinds this crate does not model (server tool
//! results, search results, ...) are kept whole as [`ContentBlock::Other`], so that nothing a
//! client sends is silently lost. This module must not translate, validate or do IO.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

// ---------------------------------------------------------------------------------------------
// Messages request
// ---------------------------------------------------------------------------------------------

/// `POST /v1/messages` body; also `POST /v1/messages/count_tokens`, which has no `max_tokens`,
/// `stream`, sampling parameters, `stop_sequences` or `metadata`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Request {
    pub model: String,
    pub messages: Vec<Message>,
    /// Required by `/v1/messages` (checked by `request::parse`), absent from `count_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<System>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Thinking>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig>,
    /// Everything else (`service_tier`, `container`, `cache_control`, `context_management`,
    /// `mcp_servers`, `inference_geo`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `system` prompt: a string or text blocks (which may carry `cache_control`).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum System {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
    /// Accepted by the newest API revisions inside `messages`; the canonical model treats it
    /// like the top-level `system`.
    System,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Content,
}

/// A message's (or a tool result's) `content`: a string, shorthand for one text block, or an
/// array of blocks.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

/// `{"type": "ephemeral", "ttl": "5m" | "1h"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheControl {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CacheControl {
    /// `{"type": "ephemeral"}` with an optional TTL.
    pub fn ephemeral(ttl: Option<String>) -> CacheControl {
        CacheControl {
            kind: "ephemeral".into(),
            ttl,
            extra: Map::new(),
        }
    }
}

/// One content block of a request or response message.
///
/// Known kinds are typed; any other kind (`server_tool_use`, `web_search_tool_result`,
/// `search_result`, `container_upload`, ...) is kept verbatim in [`ContentBlock::Other`].
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text(TextBlock),
    Image(ImageBlock),
    Document(DocumentBlock),
    ToolUse(ToolUseBlock),
    ToolResult(ToolResultBlock),
    Thinking(ThinkingBlock),
    RedactedThinking(RedactedThinkingBlock),
    #[serde(untagged)]
    Other(Value),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TextBlock {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    /// Citations of a response text block (`null` when there are none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub citations: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageBlock {
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocumentBlock {
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub citations: Option<Value>,
}

/// An image or document `source`, flat: `type` says which fields are set.
///
/// * `base64`: `media_type`, `data` (images: `image/jpeg|png|gif|webp`; documents:
///   `application/pdf`);
/// * `url`: `url`;
/// * `text` (documents): `media_type` `text/plain`, `data` is the plain text;
/// * `content` (documents): `content`, a string or blocks;
/// * `file` (Files API): `file_id`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Source {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolUseBlock {
    pub id: String,
    pub name: String,
    /// Always an object on the wire.
    #[serde(default)]
    pub input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    /// `caller` (programmatic tool calling) and whatever comes next.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolResultBlock {
    pub tool_use_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ThinkingBlock {
    pub thinking: String,
    /// Required by the API when the block is sent back; always present in responses.
    #[serde(default)]
    pub signature: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedactedThinkingBlock {
    pub data: String,
}

/// An entry of `tools`. A custom (client) tool has no `type` or `type: "custom"`; server tools
/// (`web_search_20250305`, `bash_20250124`, ...) have their own `type` and are kept whole by
/// the translation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tool {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    /// Strict tool use (schema-validated inputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// `defer_loading`, `input_examples`, server tool settings, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `tool_choice`: `{"type": "auto" | "any" | "none"}` or `{"type": "tool", "name"}`, each but
/// `none` with an optional `disable_parallel_tool_use`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ToolChoice {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_parallel_tool_use: Option<bool>,
}

/// `thinking`: `{"type": "enabled", "budget_tokens"}`, `{"type": "disabled"}` or
/// `{"type": "adaptive"}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Thinking {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u32>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `output_config`: structured output `format` and reasoning `effort`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OutputConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<OutputFormat>,
    /// `low`, `medium`, `high`, `xhigh` or `max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `{"type": "json_schema", "schema": {...}}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OutputFormat {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
}

/// The answer of `POST /v1/messages/count_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCount {
    pub input_tokens: u64,
}

// ---------------------------------------------------------------------------------------------
// Response and stream
// ---------------------------------------------------------------------------------------------

/// A `message` object: the non-streamed answer, and the skeleton of `message_start`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    pub id: String,
    /// `message`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// `assistant`.
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    #[serde(default)]
    pub model: String,
    /// `end_turn`, `max_tokens`, `stop_sequence`, `tool_use`, `pause_turn`, `refusal`,
    /// `model_context_window_exceeded`; `null` in `message_start`.
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
    #[serde(default)]
    pub usage: Usage,
    /// `stop_details`, `container`, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `usage` of a message. `input_tokens` excludes the cache reads and writes; the prompt total is
/// the sum of the three.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_details: Option<OutputTokensDetails>,
    /// `cache_creation` (5m / 1h split), `server_tool_use`, `service_tier`, `inference_geo`.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct OutputTokensDetails {
    #[serde(default)]
    pub thinking_tokens: u64,
}

/// `usage` of `message_delta`: cumulative counts; every field but `output_tokens` may be absent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeltaUsage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_details: Option<OutputTokensDetails>,
}

/// One stream event's JSON, flat: `type` says which other fields are set. Unknown event types
/// deserialize too, so a stream survives new kinds of events.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Event {
    /// `message_start`, `content_block_start`, `content_block_delta`, `content_block_stop`,
    /// `message_delta`, `message_stop`, `ping` or `error`; empty when the payload has none
    /// (the SSE event name then says).
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Response>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_block: Option<ContentBlock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<DeltaUsage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorObject>,
}

/// The `delta` of `content_block_delta` (`text_delta`, `input_json_delta`, `thinking_delta`,
/// `signature_delta`, `citations_delta`) and of `message_delta` (`stop_reason`,
/// `stop_sequence`), flat.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Delta {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_json: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequence: Option<String>,
    /// `citation`, `stop_details`, `container`, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// `{"type": "error", "error": {"type", "message"}, "request_id"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// `error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub error: ErrorObject,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `invalid_request_error`, `authentication_error`, `billing_error`, `permission_error`,
/// `not_found_error`, `request_too_large`, `rate_limit_error`, `timeout_error`, `api_error`,
/// `overloaded_error`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ErrorObject {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// Deserializers for the string-or-structure fields and the open set of content blocks
// ---------------------------------------------------------------------------------------------

/// Reads a string or an array of content blocks; `what` names the array in messages.
struct TextOrBlocks(&'static str);

impl<'de> Visitor<'de> for TextOrBlocks {
    type Value = Result<String, Vec<ContentBlock>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a string or an array of {}", self.0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Ok(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Ok(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut blocks = Vec::with_capacity(seq.size_hint().unwrap_or(1));
        while let Some(block) = seq.next_element()? {
            blocks.push(block);
        }
        Ok(Err(blocks))
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(
            match deserializer.deserialize_any(TextOrBlocks("content blocks"))? {
                Ok(text) => Content::Text(text),
                Err(blocks) => Content::Blocks(blocks),
            },
        )
    }
}

impl<'de> Deserialize<'de> for System {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(
            match deserializer.deserialize_any(TextOrBlocks("text blocks"))? {
                Ok(text) => System::Text(text),
                Err(blocks) => System::Blocks(blocks),
            },
        )
    }
}

impl<'de> Deserialize<'de> for ContentBlock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let kind = match value.get("type") {
            Some(Value::String(kind)) => kind.clone(),
            Some(_) => return Err(de::Error::custom("`type` must be a string")),
            None if value.is_object() => return Err(de::Error::missing_field("type")),
            None => {
                return Err(de::Error::invalid_type(
                    unexpected(&value),
                    &"a content block object",
                ))
            }
        };
        Ok(match kind.as_str() {
            "text" => ContentBlock::Text(typed(value)?),
            "image" => ContentBlock::Image(typed(value)?),
            "document" => ContentBlock::Document(typed(value)?),
            "tool_use" => ContentBlock::ToolUse(typed(value)?),
            "tool_result" => ContentBlock::ToolResult(typed(value)?),
            "thinking" => ContentBlock::Thinking(typed(value)?),
            "redacted_thinking" => ContentBlock::RedactedThinking(typed(value)?),
            _ => ContentBlock::Other(value),
        })
    }
}

/// Deserializes one block's fields, prefixing an error with the path inside the block.
fn typed<T: de::DeserializeOwned, E: de::Error>(mut value: Value) -> Result<T, E> {
    if let Value::Object(fields) = &mut value {
        fields.remove("type");
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            E::custom(inner)
        } else {
            E::custom(format_args!("{path}: {inner}"))
        }
    })
}

fn unexpected(value: &Value) -> de::Unexpected<'_> {
    match value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("number"),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}
