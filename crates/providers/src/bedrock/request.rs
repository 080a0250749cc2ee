//! Bedrock Converse requests to and from the canonical model.
//!
//! Owns the mapping of messages and content blocks, the system prompt, tools and tool choice,
//! inference config, cache points and the model-specific fields (`top_k`, Anthropic `thinking`)
//! Converse takes in `additionalModelRequestFields`. It must not decide routing or policy and
//! must not do IO. The model id is in the path, not the body: [`parse`] leaves `model` empty;
//! [`render`] reads `model` only to choose model-specific fields.
//!
//! What Converse cannot do is refused on render with an error naming the parameter: `n` > 1,
//! `response_format` JSON modes, non-zero presence or frequency penalties, image URLs and file
//! ids (Converse takes inline bytes), audio, more than 4 stop sequences, `top_k` and `reasoning`
//! on models whose extra fields are not known, `tool_choice: none` once the conversation has
//! tool blocks. Dropped as hints: `seed` (best effort everywhere), `parallel_tool_calls`, `user`,
//! and opaque data of other formats.

use serde_json::{Map, Value};

use crate::bedrock::types;
use crate::canonical::{
    self, CacheBreakpoint, Extra, Format, Opaque, Part, ResponseFormat, Role, Source, ToolCall,
    ToolChoice, ToolResult,
};
use crate::wire::{self, WireError};

/// Converse's limit on `stopSequences`.
const MAX_STOP_SEQUENCES: usize = 4;

/// Parses a `Converse` / `ConverseStream` body. `model` is empty and `stream` false: both come
/// from the path.
pub fn parse(body: &[u8]) -> Result<canonical::ChatRequest, WireError> {
    from_wire(wire::from_json(body)?)
}

/// Renders a `Converse` / `ConverseStream` body, or the error naming the first parameter
/// Bedrock cannot honour.
pub fn render(req: &canonical::ChatRequest) -> Result<Vec<u8>, WireError> {
    Ok(wire::to_json(&to_wire(req)?))
}

pub fn from_wire(w: types::Request) -> Result<canonical::ChatRequest, WireError> {
    let mut messages = Vec::with_capacity(w.messages.len() + 1);
    if let Some(system) = w.system {
        let mut content = Vec::with_capacity(system.len());
        for block in system {
            if let Some(text) = block.text {
                content.push(Part::Text { text });
            } else if let Some(point) = block.cache_point {
                content.push(Part::CacheBreakpoint(cache_from_wire(point)));
            } else {
                content.push(opaque(block.extra));
            }
        }
        if !content.is_empty() {
            messages.push(message(Role::System, content));
        }
    }
    if w.messages.is_empty() {
        return Err(WireError::field(
            "messages",
            "must contain at least one message",
        ));
    }
    for (i, m) in w.messages.into_iter().enumerate() {
        let path = format!("messages[{i}]");
        match m.role.as_str() {
            "assistant" => {
                let content = blocks_from_wire(m.content, &path)?;
                messages.push(message(Role::Assistant, content));
            }
            "user" => user_from_wire(m.content, &path, &mut messages)?,
            other => {
                return Err(WireError::field(
                    format!("{path}.role"),
                    format_args!("unknown role `{other}`, expected `user` or `assistant`"),
                ))
            }
        }
    }

    let mut req = canonical::ChatRequest {
        messages,
        // Bedrock always reports usage, streamed or not.
        include_usage: true,
        ..canonical::ChatRequest::default()
    };
    let mut extra = w.extra;
    if let Some(config) = w.tool_config {
        for (i, tool) in config.tools.into_iter().enumerate() {
            if let Some(spec) = tool.tool_spec {
                req.tools.push(canonical::Tool {
                    name: spec.name,
                    description: spec.description,
                    parameters: Some(spec.input_schema.json),
                    strict: None,
                    cache_breakpoint: None,
                });
            } else if let Some(point) = tool.cache_point {
                match req.tools.last_mut() {
                    Some(last) => last.cache_breakpoint = Some(cache_from_wire(point)),
                    None => {
                        return Err(WireError::field(
                            format!("toolConfig.tools[{i}]"),
                            "a cache point must follow a tool",
                        ))
                    }
                }
            } else {
                req.provider_tools.push(Opaque {
                    format: Format::Bedrock,
                    value: Value::Object(tool.extra),
                });
            }
        }
        req.tool_choice = config.tool_choice.map(|c| {
            if let Some(tool) = c.tool {
                ToolChoice::Tool { name: tool.name }
            } else if c.any.is_some() {
                ToolChoice::Required
            } else {
                ToolChoice::Auto
            }
        });
    }
    if let Some(config) = w.inference_config {
        req.max_tokens = config.max_tokens;
        req.temperature = config.temperature;
        req.top_p = config.top_p;
        req.stop = config.stop_sequences.unwrap_or_default();
        if !config.extra.is_empty() {
            extra.insert("inferenceConfig".into(), Value::Object(config.extra));
        }
    }
    if let Some(mut fields) = w.additional_model_request_fields {
        if let Some(k) = fields.get("top_k").and_then(Value::as_u64) {
            req.top_k = u32::try_from(k).ok();
            fields.remove("top_k");
        }
        let budget = fields
            .get("thinking")
            .filter(|t| t.get("type").and_then(Value::as_str) == Some("enabled"))
            .and_then(|t| t.get("budget_tokens"))
            .and_then(Value::as_u64);
        if let Some(budget) = budget {
            req.reasoning = Some(canonical::Reasoning {
                effort: None,
                budget_tokens: u32::try_from(budget).ok(),
            });
            fields.remove("thinking");
        }
        if !fields.is_empty() {
            extra.insert("additionalModelRequestFields".into(), Value::Object(fields));
        }
    }
    req.extra = Extra::new(Format::Bedrock, extra);
    Ok(req)
}

pub fn to_wire(req: &canonical::ChatRequest) -> Result<types::Request, WireError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(WireError::field("n", "Bedrock Converse returns one choice"));
    }
    if req
        .response_format
        .as_ref()
        .is_some_and(ResponseFormat::is_json)
    {
        return Err(WireError::field(
            "response_format",
            "Bedrock Converse has no JSON mode",
        ));
    }
    for (name, value) in [
        ("presence_penalty", req.presence_penalty),
        ("frequency_penalty", req.frequency_penalty),
    ] {
        if value.is_some_and(|v| v != 0.0) {
            return Err(WireError::field(
                name,
                "Bedrock Converse has no such parameter",
            ));
        }
    }
    if req.stop.len() > MAX_STOP_SEQUENCES {
        return Err(WireError::field(
            "stop",
            format_args!("Bedrock accepts at most {MAX_STOP_SEQUENCES} stop sequences"),
        ));
    }
    let mut extra = Extra::fields_for(req.extra.as_ref(), Format::Bedrock)
        .cloned()
        .unwrap_or_default();

    let mut system = Vec::new();
    let mut messages: Vec<types::Message> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let (role, blocks) = match m.role {
            Role::System | Role::Developer => {
                for (j, part) in m.content.iter().enumerate() {
                    system.push(match part {
                        Part::Text { text } => types::SystemBlock {
                            text: Some(text.clone()),
                            ..types::SystemBlock::default()
                        },
                        Part::CacheBreakpoint(b) => types::SystemBlock {
                            cache_point: Some(cache_to_wire(b)),
                            ..types::SystemBlock::default()
                        },
                        Part::Opaque(o) if o.format == Format::Bedrock => types::SystemBlock {
                            extra: object(&o.value),
                            ..types::SystemBlock::default()
                        },
                        _ => {
                            return Err(WireError::field(
                                format!("{path}.content[{j}]"),
                                "Bedrock system prompts hold text only",
                            ))
                        }
                    });
                }
                continue;
            }
            Role::User | Role::Tool => ("user", blocks_to_wire(&m.content, &path)?),
            Role::Assistant => ("assistant", blocks_to_wire(&m.content, &path)?),
        };
        if blocks.is_empty() {
            continue;
        }
        // Converse wants turns to alternate: tool results and the user text after them are
        // one user turn.
        match messages.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => messages.push(types::Message {
                role: role.to_string(),
                content: blocks,
            }),
        }
    }
    // Converse refuses an empty `messages`: say so here rather than send it.
    if messages.is_empty() {
        return Err(WireError::field(
            "messages",
            "Bedrock needs at least one message with content",
        ));
    }

    let tool_config = tool_config_to_wire(req)?;

    let mut inference = types::InferenceConfig {
        max_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        stop_sequences: (!req.stop.is_empty()).then(|| req.stop.clone()),
        extra: match extra.remove("inferenceConfig") {
            Some(Value::Object(fields)) => fields,
            _ => Map::new(),
        },
    };
    let mut fields = match extra.remove("additionalModelRequestFields") {
        Some(Value::Object(fields)) => fields,
        _ => Map::new(),
    };
    let family = Family::of(&req.model);
    if let Some(k) = req.top_k {
        match family {
            Family::Anthropic => {
                fields.insert("top_k".into(), Value::from(k));
            }
            Family::Nova => {
                inference.extra.insert("topK".into(), Value::from(k));
            }
            Family::Other => {
                return Err(WireError::field(
                    "top_k",
                    "Bedrock Converse has no top_k for this model",
                ))
            }
        }
    }
    if let Some(budget) = req.reasoning.as_ref().and_then(thinking_budget) {
        if family != Family::Anthropic {
            return Err(WireError::field(
                "reasoning",
                "Bedrock Converse takes a reasoning budget only for Anthropic models",
            ));
        }
        let mut thinking = Map::new();
        thinking.insert("type".into(), Value::String("enabled".into()));
        thinking.insert("budget_tokens".into(), Value::from(budget));
        fields.insert("thinking".into(), Value::Object(thinking));
    }
    let inference_empty = inference.max_tokens.is_none()
        && inference.temperature.is_none()
        && inference.top_p.is_none()
        && inference.stop_sequences.is_none()
        && inference.extra.is_empty();
    Ok(types::Request {
        messages,
        system: (!system.is_empty()).then_some(system),
        inference_config: (!inference_empty).then_some(inference),
        tool_config,
        additional_model_request_fields: (!fields.is_empty()).then_some(fields),
        extra,
    })
}

/// Model families whose `additionalModelRequestFields` are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Anthropic,
    Nova,
    Other,
}

impl Family {
    fn of(model: &str) -> Family {
        if model.contains("anthropic.") || model.contains("claude") {
            Family::Anthropic
        } else if model.contains("nova") {
            Family::Nova
        } else {
            Family::Other
        }
    }
}

/// Anthropic's thinking budget for a canonical reasoning setting; `None` turns thinking off.
/// Effort words map to 1024 (`minimal`, `low`), 8192 (`medium`) and 24576 (`high`).
fn thinking_budget(r: &canonical::Reasoning) -> Option<u32> {
    match (r.budget_tokens, r.effort.as_deref()) {
        (Some(0), _) | (None, Some("none")) | (None, None) => None,
        (Some(b), _) => Some(b),
        (None, Some("minimal" | "low")) => Some(1024),
        (None, Some("medium")) => Some(8192),
        (None, Some(_)) => Some(24576),
    }
}

fn tool_config_to_wire(
    req: &canonical::ChatRequest,
) -> Result<Option<types::ToolConfig>, WireError> {
    let (names, choice) = match &req.tool_choice {
        None => (None, None),
        Some(ToolChoice::Auto) => (None, Some(auto())),
        Some(ToolChoice::Required) => (None, Some(any())),
        Some(ToolChoice::Tool { name }) => (
            None,
            Some(types::ToolChoice {
                tool: Some(types::SpecificTool { name: name.clone() }),
                ..types::ToolChoice::default()
            }),
        ),
        // The declarations are narrowed to the allowed tools instead.
        Some(ToolChoice::Allowed { names, required }) => {
            (Some(names), Some(if *required { any() } else { auto() }))
        }
        Some(ToolChoice::None) => {
            let has_tool_blocks = req.messages.iter().any(|m| {
                m.content
                    .iter()
                    .any(|p| matches!(p, Part::ToolCall(_) | Part::ToolResult(_)))
            });
            if has_tool_blocks {
                return Err(WireError::field(
                    "tool_choice",
                    "Bedrock Converse cannot forbid tool calls once the conversation has them",
                ));
            }
            // Without tools the model cannot call one.
            return Ok(None);
        }
    };
    let mut tools = Vec::with_capacity(req.tools.len());
    for t in req
        .tools
        .iter()
        .filter(|t| names.is_none_or(|names| names.contains(&t.name)))
    {
        tools.push(types::Tool {
            tool_spec: Some(types::ToolSpec {
                name: t.name.clone(),
                description: t.description.clone(),
                input_schema: types::InputSchema {
                    json: t.parameters.clone().unwrap_or_else(empty_object_schema),
                },
            }),
            ..types::Tool::default()
        });
        if let Some(b) = &t.cache_breakpoint {
            tools.push(types::Tool {
                cache_point: Some(cache_to_wire(b)),
                ..types::Tool::default()
            });
        }
    }
    for t in req
        .provider_tools
        .iter()
        .filter(|t| t.format == Format::Bedrock)
    {
        tools.push(types::Tool {
            extra: object(&t.value),
            ..types::Tool::default()
        });
    }
    if tools.is_empty() {
        return Ok(None);
    }
    Ok(Some(types::ToolConfig {
        tools,
        tool_choice: choice,
    }))
}

fn auto() -> types::ToolChoice {
    types::ToolChoice {
        auto: Some(Map::new()),
        ..types::ToolChoice::default()
    }
}

fn any() -> types::ToolChoice {
    types::ToolChoice {
        any: Some(Map::new()),
        ..types::ToolChoice::default()
    }
}

fn empty_object_schema() -> Value {
    let mut m = Map::new();
    m.insert("type".into(), Value::String("object".into()));
    m.insert("properties".into(), Value::Object(Map::new()));
    Value::Object(m)
}

fn message(role: Role, content: Vec<Part>) -> canonical::Message {
    canonical::Message {
        role,
        content,
        name: None,
        extra: None,
    }
}

fn opaque(fields: Map<String, Value>) -> Part {
    Part::Opaque(Opaque {
        format: Format::Bedrock,
        value: Value::Object(fields),
    })
}

fn object(value: &Value) -> Map<String, Value> {
    match value {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    }
}

fn cache_from_wire(point: types::CachePoint) -> CacheBreakpoint {
    CacheBreakpoint {
        ttl: point
            .extra
            .get("ttl")
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

fn cache_to_wire(b: &CacheBreakpoint) -> types::CachePoint {
    let mut extra = Map::new();
    if let Some(ttl) = &b.ttl {
        extra.insert("ttl".into(), Value::String(ttl.clone()));
    }
    types::CachePoint {
        kind: "default".into(),
        extra,
    }
}

/// Appends a user turn: runs of tool results become tool messages, the rest user messages.
fn user_from_wire(
    blocks: Vec<types::ContentBlock>,
    path: &str,
    messages: &mut Vec<canonical::Message>,
) -> Result<(), WireError> {
    let mut push = |role: Role, part: Part| match messages.last_mut() {
        Some(last) if last.role == role => last.content.push(part),
        _ => messages.push(message(role, vec![part])),
    };
    for (j, mut block) in blocks.into_iter().enumerate() {
        let at = format!("{path}.content[{j}]");
        match block.tool_result.take() {
            Some(result) => {
                let mut content = Vec::with_capacity(result.content.len());
                for (k, c) in result.content.into_iter().enumerate() {
                    let at = format!("{at}.toolResult.content[{k}]");
                    if let Some(text) = c.text {
                        content.push(Part::Text { text });
                    } else if let Some(json) = c.json {
                        content.push(Part::Text {
                            text: json.to_string(),
                        });
                    } else if let Some(image) = c.image {
                        content.push(image_from_wire(image, &at)?);
                    } else {
                        content.push(opaque(c.extra));
                    }
                }
                push(
                    Role::Tool,
                    Part::ToolResult(ToolResult {
                        tool_call_id: result.tool_use_id,
                        name: None,
                        content,
                        is_error: result.status.as_deref() == Some("error"),
                    }),
                );
            }
            None => {
                for part in block_from_wire(block, &at)? {
                    push(Role::User, part);
                }
            }
        }
    }
    Ok(())
}

/// The canonical parts of an assistant turn (or of a response's message).
pub(crate) fn blocks_from_wire(
    blocks: Vec<types::ContentBlock>,
    path: &str,
) -> Result<Vec<Part>, WireError> {
    let mut out = Vec::with_capacity(blocks.len());
    for (j, block) in blocks.into_iter().enumerate() {
        out.extend(block_from_wire(block, &format!("{path}.content[{j}]"))?);
    }
    Ok(out)
}

fn block_from_wire(block: types::ContentBlock, at: &str) -> Result<Vec<Part>, WireError> {
    let part = if let Some(text) = block.text {
        Part::Text { text }
    } else if let Some(image) = block.image {
        image_from_wire(image, at)?
    } else if let Some(doc) = block.document {
        match (
            doc.source.bytes,
            doc.format.as_deref().and_then(doc_media_type),
        ) {
            (Some(data), Some(media_type)) if doc.extra.is_empty() => Part::File {
                source: Source::Base64 {
                    media_type: media_type.to_string(),
                    data,
                },
                filename: Some(doc.name),
            },
            (bytes, _) => {
                // S3 documents, citations config: only Bedrock can read them back.
                let mut source = doc.source.extra;
                if let Some(b) = bytes {
                    source.insert("bytes".into(), Value::String(b));
                }
                let mut d = doc.extra;
                d.insert("name".into(), Value::String(doc.name));
                if let Some(f) = doc.format {
                    d.insert("format".into(), Value::String(f));
                }
                d.insert("source".into(), Value::Object(source));
                let mut fields = Map::new();
                fields.insert("document".into(), Value::Object(d));
                opaque(fields)
            }
        }
    } else if let Some(call) = block.tool_use {
        Part::ToolCall(ToolCall {
            id: call.tool_use_id,
            name: call.name,
            arguments: match call.input {
                Value::Null => "{}".to_string(),
                input => input.to_string(),
            },
        })
    } else if block.tool_result.is_some() {
        return Err(WireError::field(at, "tool results belong in user messages"));
    } else if let Some(r) = block.reasoning_content {
        match (r.reasoning_text, r.redacted_content) {
            (Some(t), _) => Part::Reasoning {
                text: t.text,
                signature: t.signature,
            },
            (None, Some(data)) => Part::RedactedReasoning { data },
            (None, None) => return Ok(Vec::new()),
        }
    } else if let Some(point) = block.cache_point {
        Part::CacheBreakpoint(cache_from_wire(point))
    } else {
        opaque(block.extra)
    };
    Ok(vec![part])
}

fn image_from_wire(image: types::ImageBlock, at: &str) -> Result<Part, WireError> {
    match image.source.bytes {
        Some(data) => Ok(Part::Image {
            source: Source::Base64 {
                media_type: format!("image/{}", image.format),
                data,
            },
            detail: None,
        }),
        None if !image.source.extra.is_empty() => {
            let mut img = Map::new();
            img.insert("format".into(), Value::String(image.format));
            img.insert("source".into(), Value::Object(image.source.extra));
            let mut fields = Map::new();
            fields.insert("image".into(), Value::Object(img));
            Ok(opaque(fields))
        }
        None => Err(WireError::field(
            format!("{at}.image.source"),
            "needs `bytes` or `s3Location`",
        )),
    }
}

/// Converse content blocks of canonical parts (tool results included).
pub(crate) fn blocks_to_wire(
    content: &[Part],
    path: &str,
) -> Result<Vec<types::ContentBlock>, WireError> {
    let mut out = Vec::with_capacity(content.len());
    for (j, part) in content.iter().enumerate() {
        let at = format!("{path}.content[{j}]");
        let block = match part {
            Part::Text { text } | Part::Refusal { text } => types::ContentBlock {
                text: Some(text.clone()),
                ..types::ContentBlock::default()
            },
            Part::Image { source, .. } => types::ContentBlock {
                image: Some(image_to_wire(source, &at)?),
                ..types::ContentBlock::default()
            },
            Part::File { source, filename } => {
                let Source::Base64 { media_type, data } = source else {
                    return Err(WireError::field(
                        at,
                        "Bedrock takes documents as inline bytes only",
                    ));
                };
                let format = doc_format(media_type).ok_or_else(|| {
                    WireError::field(
                        at.clone(),
                        format_args!("Bedrock cannot read documents of type `{media_type}`"),
                    )
                })?;
                types::ContentBlock {
                    document: Some(types::DocumentBlock {
                        format: Some(format.to_string()),
                        name: document_name(filename.as_deref(), j),
                        source: types::MediaSource {
                            bytes: Some(data.clone()),
                            extra: Map::new(),
                        },
                        extra: Map::new(),
                    }),
                    ..types::ContentBlock::default()
                }
            }
            Part::Audio { .. } => {
                return Err(WireError::field(at, "Bedrock Converse takes no audio"))
            }
            Part::Reasoning { text, signature } => types::ContentBlock {
                reasoning_content: Some(types::ReasoningBlock {
                    reasoning_text: Some(types::ReasoningText {
                        text: text.clone(),
                        signature: signature.clone(),
                    }),
                    redacted_content: None,
                }),
                ..types::ContentBlock::default()
            },
            Part::RedactedReasoning { data } => types::ContentBlock {
                reasoning_content: Some(types::ReasoningBlock {
                    reasoning_text: None,
                    redacted_content: Some(data.clone()),
                }),
                ..types::ContentBlock::default()
            },
            Part::ToolCall(call) => types::ContentBlock {
                tool_use: Some(types::ToolUseBlock {
                    tool_use_id: call.id.clone(),
                    name: call.name.clone(),
                    input: arguments_to_wire(&call.arguments, &at)?,
                }),
                ..types::ContentBlock::default()
            },
            Part::ToolResult(result) => types::ContentBlock {
                tool_result: Some(tool_result_to_wire(result, &at)?),
                ..types::ContentBlock::default()
            },
            Part::CacheBreakpoint(b) => types::ContentBlock {
                cache_point: Some(cache_to_wire(b)),
                ..types::ContentBlock::default()
            },
            Part::Opaque(o) if o.format == Format::Bedrock => types::ContentBlock {
                extra: object(&o.value),
                ..types::ContentBlock::default()
            },
            Part::Opaque(_) => continue,
        };
        out.push(block);
    }
    Ok(out)
}

fn tool_result_to_wire(result: &ToolResult, at: &str) -> Result<types::ToolResultBlock, WireError> {
    let mut content = Vec::with_capacity(result.content.len());
    for (k, part) in result.content.iter().enumerate() {
        let at = format!("{at}.content[{k}]");
        content.push(match part {
            Part::Text { text } => types::ToolResultContent {
                text: Some(text.clone()),
                ..types::ToolResultContent::default()
            },
            Part::Image { source, .. } => types::ToolResultContent {
                image: Some(image_to_wire(source, &at)?),
                ..types::ToolResultContent::default()
            },
            Part::Opaque(o) if o.format == Format::Bedrock => types::ToolResultContent {
                extra: object(&o.value),
                ..types::ToolResultContent::default()
            },
            _ => {
                return Err(WireError::field(
                    at,
                    "Bedrock tool results hold text and images only",
                ))
            }
        });
    }
    Ok(types::ToolResultBlock {
        tool_use_id: result.tool_call_id.clone(),
        content,
        status: result.is_error.then(|| "error".to_string()),
    })
}

fn image_to_wire(source: &Source, at: &str) -> Result<types::ImageBlock, WireError> {
    let Source::Base64 { media_type, data } = source else {
        return Err(WireError::field(
            at,
            "Bedrock takes images as inline bytes only, not URLs or file ids",
        ));
    };
    let format = match media_type.as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        other => {
            return Err(WireError::field(
                at,
                format_args!("Bedrock cannot read images of type `{other}`"),
            ))
        }
    };
    Ok(types::ImageBlock {
        format: format.to_string(),
        source: types::MediaSource {
            bytes: Some(data.clone()),
            extra: Map::new(),
        },
    })
}

/// A call's arguments as the JSON value Converse's `input` is.
fn arguments_to_wire(arguments: &str, at: &str) -> Result<Value, WireError> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_str::<Value>(arguments).map_err(|_| {
        WireError::field(
            format!("{at}.arguments"),
            "Bedrock needs tool call arguments that are JSON",
        )
    })
}

const DOCUMENT_TYPES: &[(&str, &str)] = &[
    ("pdf", "application/pdf"),
    ("csv", "text/csv"),
    ("doc", "application/msword"),
    (
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    ("xls", "application/vnd.ms-excel"),
    (
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    ("html", "text/html"),
    ("txt", "text/plain"),
    ("md", "text/markdown"),
];

fn doc_media_type(format: &str) -> Option<&'static str> {
    DOCUMENT_TYPES
        .iter()
        .find(|(f, _)| *f == format)
        .map(|(_, m)| *m)
}

fn doc_format(media_type: &str) -> Option<&'static str> {
    DOCUMENT_TYPES
        .iter()
        .find(|(_, m)| *m == media_type)
        .map(|(f, _)| *f)
}

/// A document name Bedrock accepts: letters, digits, single spaces, hyphens, parentheses and
/// square brackets; anything else becomes a hyphen.
fn document_name(filename: Option<&str>, position: usize) -> String {
    let mut name = String::new();
    for c in filename.unwrap_or("").chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '-' | '(' | ')' | '[' | ']') {
            c
        } else if c == ' ' && !name.ends_with(' ') {
            ' '
        } else {
            '-'
        };
        name.push(c);
    }
    let name = name.trim().to_string();
    if name.is_empty() {
        format!("document-{position}")
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> canonical::ChatRequest {
        parse(br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#).unwrap()
    }

    #[test]
    fn unsupported_is_refused_by_name() {
        let mut r = base();
        r.n = Some(2);
        assert_eq!(render(&r).unwrap_err().param(), Some("n"));
        let mut r = base();
        r.response_format = Some(ResponseFormat::JsonObject);
        assert_eq!(render(&r).unwrap_err().param(), Some("response_format"));
        let mut r = base();
        r.frequency_penalty = Some(0.5);
        assert_eq!(render(&r).unwrap_err().param(), Some("frequency_penalty"));
        r.frequency_penalty = Some(0.0);
        assert!(render(&r).is_ok());
        let mut r = base();
        r.top_k = Some(5);
        r.model = "meta.llama3-70b-instruct-v1:0".into();
        assert_eq!(render(&r).unwrap_err().param(), Some("top_k"));
        r.model = "anthropic.claude-3-haiku-20240307-v1:0".into();
        let v: Value = serde_json::from_slice(&render(&r).unwrap()).unwrap();
        assert_eq!(v["additionalModelRequestFields"]["top_k"], 5);
        let mut r = base();
        r.messages[0].content.push(Part::Image {
            source: Source::Url {
                url: "https://x/y.png".into(),
            },
            detail: None,
        });
        assert_eq!(
            render(&r).unwrap_err().param(),
            Some("messages[0].content[1]")
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse(br#"{"messages":[{"role":"system","content":[]}]}"#).unwrap_err();
        assert_eq!(e.param(), Some("messages[0].role"));
        let e = parse(br#"{"messages":[]}"#).unwrap_err();
        assert_eq!(e.to_string(), "messages: must contain at least one message");
    }

    #[test]
    fn document_names() {
        assert_eq!(
            document_name(Some("report.final v2.pdf"), 0),
            "report-final v2-pdf"
        );
        assert_eq!(document_name(None, 3), "document-3");
    }
}
