//! Amazon Bedrock Converse JSON shapes (`bedrock-runtime` 2023-09-30): the `Converse` and
//! `ConverseStream` request, the `Converse` response, the payloads of ConverseStream events and
//! the error body, spelled as the API reference (and the botocore service model) spell them.
//!
//! Unions (`ContentBlock`, `ToolChoice`, ...) are flat structs with one field set. Blob fields
//! (`bytes`, `redactedContent`) are base64 text in JSON. Fields the canonical model does not know
//! are kept in `extra` maps. This module must not translate, validate or do IO.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /model/{modelId}/converse` (and `/converse-stream`) body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Vec<SystemBlock>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_config: Option<InferenceConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig>,
    /// Model-specific parameters (`top_k`, `thinking`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_model_request_fields: Option<Map<String, Value>>,
    /// `guardrailConfig`, `additionalModelResponseFieldPaths`, `promptVariables`,
    /// `requestMetadata`, `performanceConfig`, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A turn: `role` is `user` or `assistant`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Vec<ContentBlock>,
}

/// A `ContentBlock` union.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlock {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageBlock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentBlock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use: Option<ToolUseBlock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_result: Option<ToolResultBlock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<ReasoningBlock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_point: Option<CachePoint>,
    /// `guardContent`, `video`, `citationsContent`, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `format` is `png`, `jpeg`, `gif` or `webp`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageBlock {
    pub format: String,
    pub source: MediaSource,
}

/// `{"bytes": base64}` or `{"s3Location": {...}}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `format` is `pdf`, `csv`, `doc`, `docx`, `xls`, `xlsx`, `html`, `txt` or `md`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DocumentBlock {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    pub name: String,
    pub source: MediaSource,
    /// `context`, `citations`, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseBlock {
    pub tool_use_id: String,
    pub name: String,
    #[serde(default)]
    pub input: Value,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolResultBlock {
    pub tool_use_id: String,
    #[serde(default)]
    pub content: Vec<ToolResultContent>,
    /// `success` or `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// A `ToolResultContentBlock` union.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ToolResultContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageBlock>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A `ReasoningContentBlock` union.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningBlock {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_text: Option<ReasoningText>,
    /// Base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted_content: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReasoningText {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// `{"type": "default"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CachePoint {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A `SystemContentBlock` union.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemBlock {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_point: Option<CachePoint>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig {
    #[serde(default)]
    pub tools: Vec<Tool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
}

/// A `Tool` union: a tool spec, or a cache point after the tools before it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_spec: Option<ToolSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_point: Option<CachePoint>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub input_schema: InputSchema,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InputSchema {
    pub json: Value,
}

/// A `ToolChoice` union: `{"auto": {}}`, `{"any": {}}` or `{"tool": {"name": ...}}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ToolChoice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<SpecificTool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SpecificTool {
    pub name: String,
}

/// The `Converse` response.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    #[serde(default)]
    pub output: Output,
    /// `end_turn`, `tool_use`, `max_tokens`, `stop_sequence`, `guardrail_intervened`,
    /// `content_filtered`, ...
    pub stop_reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TokenUsage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_model_response_fields: Option<Map<String, Value>>,
    /// `trace`, `performanceConfig`, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `ConverseOutput` union.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Output {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
}

/// `inputTokens` excludes cache reads and writes, which are counted apart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_input_tokens: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `messageStart` payload.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MessageStart {
    #[serde(default)]
    pub role: String,
}

/// `contentBlockStart` payload.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlockStart {
    #[serde(default)]
    pub start: BlockStart,
    #[serde(default)]
    pub content_block_index: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockStart {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use: Option<ToolUseStart>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseStart {
    pub tool_use_id: String,
    pub name: String,
}

/// `contentBlockDelta` payload.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlockDelta {
    #[serde(default)]
    pub delta: Delta,
    #[serde(default)]
    pub content_block_index: u32,
}

/// A `ContentBlockDelta` union.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use: Option<ToolUseDelta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<ReasoningDelta>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A fragment of a tool call's input JSON text.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ToolUseDelta {
    #[serde(default)]
    pub input: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted_content: Option<String>,
}

/// `contentBlockStop` payload.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlockStop {
    #[serde(default)]
    pub content_block_index: u32,
}

/// `messageStop` payload.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageStop {
    pub stop_reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_model_response_fields: Option<Map<String, Value>>,
}

/// `metadata` payload.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TokenUsage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The body of an HTTP error and the payload of a stream exception.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
}
