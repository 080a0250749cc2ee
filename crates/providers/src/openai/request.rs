//! OpenAI Chat Completions requests to and from the canonical model.
//!
//! Owns the mapping of messages, content parts, tools, tool choice, response format and sampling
//! parameters, and the messages naming the offending field when a client's body does not fit.
//! It must not decide routing or policy, and must not do IO.
//!
//! What OpenAI Chat cannot express is dropped on render: reasoning parts, cache breakpoints, tool
//! result `is_error` and non-text tool result parts, image/file sources it has no spelling for,
//! and opaque data of other formats.

use serde_json::{Map, Value};

use crate::canonical::{
    self, Extra, Format, Opaque, Part, ResponseFormat, Role, Source, ToolCall, ToolChoice,
    ToolResult,
};
use crate::openai::types;
use crate::wire::{self, WireError};

/// Which OpenAI-compatible dialect to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// api.openai.com and Azure OpenAI: `max_completion_tokens`, no `top_k`.
    #[default]
    OpenAi,
    /// vLLM, Ollama, Mistral, Groq, Together, ...: `max_tokens`, and `top_k` when set.
    Compatible,
}

/// Parses a `/v1/chat/completions` body.
pub fn parse(body: &[u8]) -> Result<canonical::ChatRequest, WireError> {
    from_wire(wire::from_json(body)?)
}

/// Renders a body for api.openai.com.
pub fn render(req: &canonical::ChatRequest) -> Vec<u8> {
    render_as(req, Flavor::OpenAi)
}

/// Renders a body in the given dialect.
pub fn render_as(req: &canonical::ChatRequest, flavor: Flavor) -> Vec<u8> {
    wire::to_json(&to_wire(req, flavor))
}

/// The canonical request of a parsed wire request.
pub fn from_wire(w: types::ChatRequest) -> Result<canonical::ChatRequest, WireError> {
    if w.messages.is_empty() {
        return Err(WireError::field(
            "messages",
            "must contain at least one message",
        ));
    }
    let mut messages = Vec::with_capacity(w.messages.len());
    for (i, m) in w.messages.into_iter().enumerate() {
        messages.push(message_from_wire(m, &format!("messages[{i}]"))?);
    }
    let mut tools = Vec::new();
    let mut provider_tools = Vec::new();
    for (i, t) in w.tools.unwrap_or_default().into_iter().enumerate() {
        match (t.kind.as_str(), t.function) {
            ("function", Some(f)) => tools.push(canonical::Tool {
                name: f.name,
                description: f.description,
                parameters: f.parameters,
                strict: f.strict,
                cache_breakpoint: None,
            }),
            ("function", None) => {
                return Err(WireError::field(
                    format!("tools[{i}]"),
                    "missing field `function`",
                ))
            }
            (kind, _) => {
                let mut value = t.extra;
                value.insert("type".into(), Value::String(kind.to_string()));
                provider_tools.push(Opaque {
                    format: Format::OpenAi,
                    value: Value::Object(value),
                });
            }
        }
    }
    let tool_choice = w.tool_choice.map(tool_choice_from_wire).transpose()?;
    let response_format = w
        .response_format
        .map(response_format_from_wire)
        .transpose()?;
    let stop = match w.stop {
        None => Vec::new(),
        Some(types::Stop::One(s)) => vec![s],
        Some(types::Stop::Many(v)) => v,
    };
    let stream = w.stream.unwrap_or(false);
    let include_usage = w
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    Ok(canonical::ChatRequest {
        model: w.model,
        messages,
        tools,
        provider_tools,
        tool_choice,
        parallel_tool_calls: w.parallel_tool_calls,
        response_format,
        temperature: w.temperature,
        top_p: w.top_p,
        top_k: w.top_k,
        max_tokens: w.max_completion_tokens.or(w.max_tokens),
        stop,
        n: w.n,
        seed: w.seed,
        presence_penalty: w.presence_penalty,
        frequency_penalty: w.frequency_penalty,
        reasoning: w.reasoning_effort.map(|effort| canonical::Reasoning {
            effort: Some(effort),
            budget_tokens: None,
        }),
        stream,
        include_usage,
        user: w.user,
        extra: Extra::new(Format::OpenAi, w.extra),
    })
}

/// The wire request of a canonical request.
pub fn to_wire(req: &canonical::ChatRequest, flavor: Flavor) -> types::ChatRequest {
    let mut messages = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        message_to_wire(m, &mut messages);
    }
    let mut tools: Vec<types::ToolDef> = req
        .tools
        .iter()
        .map(|t| types::ToolDef {
            kind: "function".into(),
            function: Some(types::FunctionDef {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters: t.parameters.clone(),
                strict: t.strict,
            }),
            extra: Map::new(),
        })
        .collect();
    for tool in req
        .provider_tools
        .iter()
        .filter(|t| t.format == Format::OpenAi)
    {
        if let Value::Object(fields) = &tool.value {
            let mut extra = fields.clone();
            let kind = match extra.remove("type") {
                Some(Value::String(kind)) => kind,
                _ => continue,
            };
            tools.push(types::ToolDef {
                kind,
                function: None,
                extra,
            });
        }
    }
    let max_tokens = req.max_tokens;
    let (max_tokens, max_completion_tokens) = match flavor {
        Flavor::OpenAi => (None, max_tokens),
        Flavor::Compatible => (max_tokens, None),
    };
    let stream_options = (req.stream && req.include_usage).then(|| types::StreamOptions {
        include_usage: Some(true),
        extra: Map::new(),
    });
    types::ChatRequest {
        model: req.model.clone(),
        messages,
        frequency_penalty: req.frequency_penalty,
        max_tokens,
        max_completion_tokens,
        n: req.n,
        parallel_tool_calls: req.parallel_tool_calls,
        presence_penalty: req.presence_penalty,
        reasoning_effort: req.reasoning.as_ref().and_then(effort_to_wire),
        response_format: req.response_format.as_ref().map(response_format_to_wire),
        seed: req.seed,
        stop: (!req.stop.is_empty()).then(|| types::Stop::Many(req.stop.clone())),
        stream: req.stream.then_some(true),
        stream_options,
        temperature: req.temperature,
        tool_choice: req.tool_choice.as_ref().map(tool_choice_to_wire),
        tools: (!tools.is_empty()).then_some(tools),
        top_k: if flavor == Flavor::Compatible {
            req.top_k
        } else {
            None
        },
        top_p: req.top_p,
        user: req.user.clone(),
        extra: Extra::fields_for(req.extra.as_ref(), Format::OpenAi)
            .cloned()
            .unwrap_or_default(),
    }
}

/// A canonical message from a wire message; `path` names it in errors.
pub(crate) fn message_from_wire(
    m: types::Message,
    path: &str,
) -> Result<canonical::Message, WireError> {
    let role = match m.role {
        types::Role::System => Role::System,
        types::Role::Developer => Role::Developer,
        types::Role::User => Role::User,
        types::Role::Assistant => Role::Assistant,
        types::Role::Tool => Role::Tool,
    };
    let extra = Extra::new(Format::OpenAi, m.extra);
    let content = match m.content {
        Some(content) => parts_from_wire(content, &format!("{path}.content"))?,
        None if role == Role::Assistant => Vec::new(),
        None => {
            return Err(WireError::field(
                format!("{path}.content"),
                "required for this role",
            ))
        }
    };
    if role == Role::Tool {
        let Some(tool_call_id) = m.tool_call_id else {
            return Err(WireError::field(
                format!("{path}.tool_call_id"),
                "required for a tool message",
            ));
        };
        let result = ToolResult {
            tool_call_id,
            name: None,
            content,
            is_error: false,
        };
        return Ok(canonical::Message {
            role,
            content: vec![Part::ToolResult(result)],
            name: m.name,
            extra,
        });
    }
    let mut parts = Vec::with_capacity(content.len() + 2);
    if let Some(text) = m
        .reasoning_content
        .or(m.reasoning)
        .filter(|t| !t.is_empty())
    {
        parts.push(Part::Reasoning {
            text,
            signature: None,
        });
    }
    parts.extend(content);
    if let Some(text) = m.refusal {
        parts.push(Part::Refusal { text });
    }
    if role != Role::Assistant && m.tool_calls.is_some() {
        return Err(WireError::field(
            format!("{path}.tool_calls"),
            "only assistant messages may have tool calls",
        ));
    }
    for (j, call) in m.tool_calls.unwrap_or_default().into_iter().enumerate() {
        if call.kind != "function" {
            return Err(WireError::field(
                format!("{path}.tool_calls[{j}].type"),
                format_args!(
                    "unsupported tool call type `{}`, expected `function`",
                    call.kind
                ),
            ));
        }
        parts.push(Part::ToolCall(ToolCall {
            id: call.id,
            name: call.function.name,
            arguments: call.function.arguments,
        }));
    }
    Ok(canonical::Message {
        role,
        content: parts,
        name: m.name,
        extra,
    })
}

fn parts_from_wire(content: types::Content, path: &str) -> Result<Vec<Part>, WireError> {
    let parts = match content {
        types::Content::Text(text) => return Ok(vec![Part::Text { text }]),
        types::Content::Parts(parts) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.into_iter().enumerate() {
        let at = |field: &str| format!("{path}[{j}].{field}");
        let missing = |field: &str| {
            WireError::field(
                format!("{path}[{j}]"),
                format_args!("missing field `{field}`"),
            )
        };
        let part = match p.kind.as_str() {
            "text" => Part::Text { text: p.text.ok_or_else(|| missing("text"))? },
            "refusal" => Part::Refusal { text: p.refusal.ok_or_else(|| missing("refusal"))? },
            "image_url" => {
                let image = p.image_url.ok_or_else(|| missing("image_url"))?;
                Part::Image { source: source_from_url(image.url), detail: image.detail }
            }
            "input_audio" => {
                let audio = p.input_audio.ok_or_else(|| missing("input_audio"))?;
                Part::Audio { data: audio.data, format: audio.format }
            }
            "file" => {
                let file = p.file.ok_or_else(|| missing("file"))?;
                let source = match (file.file_id, file.file_data) {
                    (Some(id), _) => Source::FileId { id },
                    (None, Some(data)) => match wire::parse_data_url(&data) {
                        Some((media_type, b64)) => {
                            Source::Base64 { media_type: media_type.to_string(), data: b64.to_string() }
                        }
                        None => Source::Base64 { media_type: "application/octet-stream".into(), data },
                    },
                    (None, None) => {
                        return Err(WireError::field(at("file"), "needs `file_id` or `file_data`"))
                    }
                };
                Part::File { source, filename: file.filename }
            }
            other => {
                return Err(WireError::field(
                    at("type"),
                    format_args!(
                        "unknown content part type `{other}`, expected one of `text`, `image_url`, `input_audio`, `file`, `refusal`"
                    ),
                ))
            }
        };
        out.push(part);
    }
    Ok(out)
}

fn source_from_url(url: String) -> Source {
    match wire::parse_data_url(&url) {
        Some((media_type, data)) => Source::Base64 {
            media_type: media_type.to_string(),
            data: data.to_string(),
        },
        None => Source::Url { url },
    }
}

fn tool_choice_from_wire(choice: types::ToolChoice) -> Result<ToolChoice, WireError> {
    match choice {
        types::ToolChoice::Mode(mode) => Ok(match mode.as_str() {
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => ToolChoice::Auto,
        }),
        types::ToolChoice::Object(o) => match (o.kind.as_str(), o.function, o.allowed_tools) {
            ("function", Some(f), _) => Ok(ToolChoice::Tool { name: f.name }),
            ("function", None, _) => {
                Err(WireError::field("tool_choice", "missing field `function`"))
            }
            ("allowed_tools", _, Some(a)) => Ok(ToolChoice::Allowed {
                names: a.tools.into_iter().map(|t| t.function.name).collect(),
                required: match a.mode.as_str() {
                    "auto" => false,
                    "required" => true,
                    other => {
                        return Err(WireError::field(
                            "tool_choice.allowed_tools.mode",
                            format_args!("unknown mode `{other}`, expected `auto` or `required`"),
                        ))
                    }
                },
            }),
            ("allowed_tools", _, None) => Err(WireError::field(
                "tool_choice",
                "missing field `allowed_tools`",
            )),
            (other, _, _) => Err(WireError::field(
                "tool_choice.type",
                format_args!(
                    "unknown tool choice type `{other}`, expected `function` or `allowed_tools`"
                ),
            )),
        },
    }
}

fn response_format_from_wire(f: types::ResponseFormat) -> Result<ResponseFormat, WireError> {
    match f.kind.as_str() {
        "text" => Ok(ResponseFormat::Text),
        "json_object" => Ok(ResponseFormat::JsonObject),
        "json_schema" => {
            let Some(s) = f.json_schema else {
                return Err(WireError::field("response_format", "missing field `json_schema`"));
            };
            Ok(ResponseFormat::JsonSchema {
                name: s.name,
                description: s.description,
                schema: s.schema.unwrap_or_else(|| Value::Object(Map::new())),
                strict: s.strict,
            })
        }
        other => Err(WireError::field(
            "response_format.type",
            format_args!("unknown response format `{other}`, expected `text`, `json_object` or `json_schema`"),
        )),
    }
}

/// Appends the wire messages of one canonical message: a tool message becomes one wire message
/// per result.
pub(crate) fn message_to_wire(m: &canonical::Message, out: &mut Vec<types::Message>) {
    let extra = Extra::fields_for(m.extra.as_ref(), Format::OpenAi)
        .cloned()
        .unwrap_or_default();
    let blank = |role| types::Message {
        role,
        content: None,
        name: m.name.clone(),
        refusal: None,
        tool_calls: None,
        tool_call_id: None,
        reasoning: None,
        reasoning_content: None,
        extra: extra.clone(),
    };
    match m.role {
        Role::Tool => {
            for part in &m.content {
                if let Part::ToolResult(result) = part {
                    let mut w = blank(types::Role::Tool);
                    w.tool_call_id = Some(result.tool_call_id.clone());
                    w.content = Some(text_content_to_wire(&result.content));
                    out.push(w);
                }
            }
        }
        Role::Assistant => {
            let mut w = blank(types::Role::Assistant);
            let (content, refusal, tool_calls) = assistant_to_wire(&m.content, true);
            w.content = content;
            w.refusal = refusal;
            w.tool_calls = tool_calls;
            out.push(w);
        }
        role => {
            let mut w = blank(match role {
                Role::System => types::Role::System,
                Role::Developer => types::Role::Developer,
                _ => types::Role::User,
            });
            w.content = Some(content_to_wire(&m.content));
            out.push(w);
        }
    }
}

/// An assistant message's content, refusal and tool calls. With `allow_parts`, several text
/// parts stay an array (requests); otherwise they are joined (responses).
pub(crate) fn assistant_to_wire(
    content: &[Part],
    allow_parts: bool,
) -> (
    Option<types::Content>,
    Option<String>,
    Option<Vec<types::ToolCall>>,
) {
    let texts: Vec<&str> = content
        .iter()
        .filter_map(|p| match p {
            Part::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let text = match texts.as_slice() {
        [] => None,
        [one] => Some(types::Content::Text((*one).to_string())),
        many if allow_parts => Some(types::Content::Parts(
            many.iter().map(|t| text_part(t)).collect(),
        )),
        many => Some(types::Content::Text(many.concat())),
    };
    let refusals: Vec<&str> = content
        .iter()
        .filter_map(|p| match p {
            Part::Refusal { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let refusal = (!refusals.is_empty()).then(|| refusals.concat());
    let calls: Vec<types::ToolCall> = content
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall(call) => Some(types::ToolCall {
                id: call.id.clone(),
                kind: "function".into(),
                function: types::FunctionCall {
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                },
            }),
            _ => None,
        })
        .collect();
    (text, refusal, (!calls.is_empty()).then_some(calls))
}

fn text_part(text: &str) -> types::ContentPart {
    types::ContentPart {
        kind: "text".into(),
        text: Some(text.to_string()),
        ..Default::default()
    }
}

/// Content of a system, developer or user message: a string when it is one text part.
fn content_to_wire(parts: &[Part]) -> types::Content {
    if let [Part::Text { text }] = parts {
        return types::Content::Text(text.clone());
    }
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        let w = match part {
            Part::Text { text } => text_part(text),
            Part::Image { source, detail } => {
                let url = match source {
                    Source::Url { url } => url.clone(),
                    Source::Base64 { media_type, data } => wire::data_url(media_type, data),
                    Source::FileId { .. } => continue,
                };
                types::ContentPart {
                    kind: "image_url".into(),
                    image_url: Some(types::ImageUrl {
                        url,
                        detail: detail.clone(),
                    }),
                    ..Default::default()
                }
            }
            Part::Audio { data, format } => types::ContentPart {
                kind: "input_audio".into(),
                input_audio: Some(types::InputAudio {
                    data: data.clone(),
                    format: format.clone(),
                }),
                ..Default::default()
            },
            Part::File { source, filename } => {
                let mut file = types::FilePart {
                    filename: filename.clone(),
                    ..Default::default()
                };
                match source {
                    Source::FileId { id } => file.file_id = Some(id.clone()),
                    Source::Base64 { media_type, data } => {
                        file.file_data = Some(wire::data_url(media_type, data));
                    }
                    Source::Url { .. } => continue,
                }
                types::ContentPart {
                    kind: "file".into(),
                    file: Some(file),
                    ..Default::default()
                }
            }
            _ => continue,
        };
        out.push(w);
    }
    types::Content::Parts(out)
}

/// Content of a tool result: its text parts.
fn text_content_to_wire(parts: &[Part]) -> types::Content {
    let texts: Vec<&str> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    match texts.as_slice() {
        [] => types::Content::Text(String::new()),
        [one] => types::Content::Text((*one).to_string()),
        many => types::Content::Parts(many.iter().map(|t| text_part(t)).collect()),
    }
}

fn tool_choice_to_wire(choice: &ToolChoice) -> types::ToolChoice {
    match choice {
        ToolChoice::Auto => types::ToolChoice::Mode("auto".into()),
        ToolChoice::None => types::ToolChoice::Mode("none".into()),
        ToolChoice::Required => types::ToolChoice::Mode("required".into()),
        ToolChoice::Tool { name } => types::ToolChoice::Object(types::ToolChoiceObject {
            kind: "function".into(),
            function: Some(types::FunctionName { name: name.clone() }),
            allowed_tools: None,
        }),
        ToolChoice::Allowed { names, required } => {
            types::ToolChoice::Object(types::ToolChoiceObject {
                kind: "allowed_tools".into(),
                function: None,
                allowed_tools: Some(types::AllowedTools {
                    mode: if *required { "required" } else { "auto" }.into(),
                    tools: names
                        .iter()
                        .map(|name| types::AllowedTool {
                            kind: "function".into(),
                            function: types::FunctionName { name: name.clone() },
                        })
                        .collect(),
                }),
            })
        }
    }
}

fn response_format_to_wire(f: &ResponseFormat) -> types::ResponseFormat {
    match f {
        ResponseFormat::Text => types::ResponseFormat {
            kind: "text".into(),
            json_schema: None,
        },
        ResponseFormat::JsonObject => types::ResponseFormat {
            kind: "json_object".into(),
            json_schema: None,
        },
        ResponseFormat::JsonSchema {
            name,
            description,
            schema,
            strict,
        } => types::ResponseFormat {
            kind: "json_schema".into(),
            json_schema: Some(types::JsonSchema {
                name: name.clone(),
                description: description.clone(),
                schema: Some(schema.clone()),
                strict: *strict,
            }),
        },
    }
}

/// OpenAI's effort word; a bare token budget (Anthropic, Gemini) maps to the nearest effort.
fn effort_to_wire(r: &canonical::Reasoning) -> Option<String> {
    if let Some(effort) = &r.effort {
        return Some(effort.clone());
    }
    let effort = match r.budget_tokens? {
        0 => "none",
        1..=2048 => "low",
        2049..=8192 => "medium",
        _ => "high",
    };
    Some(effort.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        parse(body.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(err(r#"{"messages":[]}"#), "missing field `model`");
        assert_eq!(
            err(r#"{"model":"m","messages":[]}"#),
            "messages: must contain at least one message"
        );
        assert_eq!(
            err(r#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#),
            "messages[0].role: unknown variant `robot`, expected one of `system`, `developer`, `user`, `assistant`, `tool`"
        );
        assert_eq!(
            err(r#"{"model":"m","messages":[{"role":"user","content":5}]}"#),
            "messages[0].content: invalid type: integer `5`, expected a string or an array of content parts"
        );
        assert_eq!(
            err(
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}"#
            ),
            "messages[0].content[0].image_url: missing field `url`"
        );
        assert_eq!(
            err(r#"{"model":"m","messages":[{"role":"user","content":[{"type":"video"}]}]}"#),
            "messages[0].content[0].type: unknown content part type `video`, expected one of `text`, `image_url`, `input_audio`, `file`, `refusal`"
        );
        assert_eq!(
            err(r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#),
            "messages[0].tool_call_id: required for a tool message"
        );
        assert_eq!(
            err(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#),
            "temperature: invalid type: string \"hot\", expected f64"
        );
        assert_eq!(
            err(
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":"always"}"#
            ),
            "tool_choice: unknown variant `always`, expected one of `none`, `auto`, `required`"
        );
        assert_eq!(
            err(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"yaml"}}"#),
            "response_format.type: unknown response format `yaml`, expected `text`, `json_object` or `json_schema`"
        );
    }

    #[test]
    fn param_is_the_path() {
        let e = parse(br#"{"model":"m","messages":[{"role":"user"}]}"#).unwrap_err();
        assert_eq!(e.param(), Some("messages[0].content"));
    }

    #[test]
    fn max_tokens_spellings() {
        let r =
            parse(br#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":5}"#)
                .unwrap();
        assert_eq!(r.max_tokens, Some(5));
        let openai: Value = serde_json::from_slice(&render(&r)).unwrap();
        assert_eq!(openai["max_completion_tokens"], 5);
        assert!(openai.get("max_tokens").is_none());
        let compatible: Value = serde_json::from_slice(&render_as(&r, Flavor::Compatible)).unwrap();
        assert_eq!(compatible["max_tokens"], 5);
    }
}
