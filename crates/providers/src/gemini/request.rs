//! Gemini `generateContent` requests to and from the canonical model.
//!
//! Owns the mapping of contents and parts, `systemInstruction`, function declarations and
//! calling config, `generationConfig` and JSON mode. It must not decide routing or policy and
//! must not do IO. The model is not in a Gemini body (it is in the path): [`parse`] leaves it
//! empty and [`render`] does not write it; see [`crate::gemini::path`].
//!
//! What Gemini cannot do is refused on render with an error naming the parameter (image URLs of
//! other providers' file stores, audio formats, more than 5 stop sequences, non-text tool
//! results, unparseable tool call arguments). Hints Gemini has no switch for are dropped:
//! `parallel_tool_calls`, `user`, cache breakpoints (Gemini caches implicitly), redacted
//! reasoning and opaque data of other formats.

use serde_json::{Map, Value};

use crate::canonical::{
    self, Extra, Format, Opaque, Part, ResponseFormat, Role, Source, ToolCall, ToolChoice,
    ToolResult,
};
use crate::gemini::{call_id, schema, types};
use crate::wire::{self, WireError};

/// Gemini's limit on `stopSequences`.
const MAX_STOP_SEQUENCES: usize = 5;

/// Parses a `generateContent` body. `stream` is false and `model` empty: both come from the
/// path.
pub fn parse(body: &[u8]) -> Result<canonical::ChatRequest, WireError> {
    from_wire(wire::from_json(body)?)
}

/// Renders a `generateContent` / `streamGenerateContent` body, or the error naming the first
/// parameter Gemini cannot honour.
pub fn render(req: &canonical::ChatRequest) -> Result<Vec<u8>, WireError> {
    Ok(wire::to_json(&to_wire(req)?))
}

/// The canonical request of a parsed wire request.
pub fn from_wire(w: types::Request) -> Result<canonical::ChatRequest, WireError> {
    let mut messages = Vec::with_capacity(w.contents.len() + 1);
    if let Some(system) = w.system_instruction {
        let mut content = Vec::new();
        for (j, p) in system.parts.into_iter().enumerate() {
            parts_from_wire(p, &format!("systemInstruction.parts[{j}]"), &mut content)?;
        }
        if !content.is_empty() {
            messages.push(message(Role::System, content));
        }
    }
    // The calls of the latest model turn, to give each function response its call's id.
    let mut pending: Vec<(String, String)> = Vec::new();
    for (i, content) in w.contents.into_iter().enumerate() {
        let path = format!("contents[{i}]");
        match content.role.as_deref() {
            Some("model") => {
                let seed = format!("contents[{i}]");
                let parts = model_parts(content.parts, &seed, &path)?;
                pending = parts
                    .iter()
                    .filter_map(|p| match p {
                        Part::ToolCall(c) => Some((c.id.clone(), c.name.clone())),
                        _ => None,
                    })
                    .collect();
                messages.push(message(Role::Assistant, parts));
            }
            None | Some("user" | "function") => {
                user_contents(content.parts, &path, &mut pending, &mut messages)?;
            }
            Some(other) => {
                return Err(WireError::field(
                    format!("{path}.role"),
                    format_args!("unknown role `{other}`, expected `user` or `model`"),
                ))
            }
        }
    }
    if messages.iter().all(|m| m.role == Role::System) {
        return Err(WireError::field(
            "contents",
            "must contain at least one content",
        ));
    }

    let mut tools = Vec::new();
    let mut provider_tools = Vec::new();
    for (i, tool) in w.tools.unwrap_or_default().into_iter().enumerate() {
        for (j, f) in tool
            .function_declarations
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            if !f.extra.is_empty() {
                return Err(WireError::field(
                    format!("tools[{i}].functionDeclarations[{j}]"),
                    "only `name`, `description`, `parameters` and `parametersJsonSchema` are supported",
                ));
            }
            tools.push(canonical::Tool {
                name: f.name,
                description: f.description,
                parameters: f
                    .parameters_json_schema
                    .or_else(|| f.parameters.as_ref().map(schema::from_gemini)),
                strict: None,
                cache_breakpoint: None,
            });
        }
        if !tool.extra.is_empty() {
            provider_tools.push(Opaque {
                format: Format::Gemini,
                value: Value::Object(tool.extra),
            });
        }
    }

    let mut extra = w.extra;
    let tool_choice = match w.tool_config {
        Some(mut config) => {
            let choice = config
                .function_calling_config
                .take()
                .map(tool_choice_from_wire)
                .transpose()?;
            if !config.extra.is_empty() {
                extra.insert("toolConfig".into(), Value::Object(config.extra));
            }
            choice
        }
        None => None,
    };

    let mut req = canonical::ChatRequest {
        messages,
        tools,
        provider_tools,
        tool_choice,
        // Gemini always reports usage, streamed or not.
        include_usage: true,
        ..canonical::ChatRequest::default()
    };
    if let Some(g) = w.generation_config {
        generation_from_wire(g, &mut req, &mut extra)?;
    }
    req.extra = Extra::new(Format::Gemini, extra);
    Ok(req)
}

/// The wire request of a canonical request, or the error naming what Gemini cannot honour.
pub fn to_wire(req: &canonical::ChatRequest) -> Result<types::Request, WireError> {
    let mut extra = Extra::fields_for(req.extra.as_ref(), Format::Gemini)
        .cloned()
        .unwrap_or_default();
    let mut system_parts = Vec::new();
    let mut contents: Vec<types::Content> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let (role, parts) = match m.role {
            Role::System | Role::Developer => {
                for (j, p) in m.content.iter().enumerate() {
                    match p {
                        Part::Text { text } => system_parts.push(text_part(text)),
                        Part::CacheBreakpoint(_) => {}
                        _ => {
                            return Err(WireError::field(
                                format!("{path}.content[{j}]"),
                                "Gemini system instructions hold text only",
                            ))
                        }
                    }
                }
                continue;
            }
            Role::User => ("user", parts_to_wire(&m.content, &path)?),
            Role::Assistant => ("model", parts_to_wire(&m.content, &path)?),
            Role::Tool => ("user", tool_results_to_wire(req, i, &m.content, &path)?),
        };
        if parts.is_empty() {
            continue;
        }
        // Gemini wants turns to alternate: a tool turn and the user text after it are one turn.
        match contents.last_mut() {
            Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
            _ => contents.push(types::Content {
                role: Some(role.to_string()),
                parts,
            }),
        }
    }

    let mut tools: Vec<types::Tool> = Vec::new();
    let allowed_only = match &req.tool_choice {
        Some(ToolChoice::Allowed {
            names,
            required: false,
        }) => Some(names),
        _ => None,
    };
    let declarations: Vec<types::FunctionDeclaration> = req
        .tools
        .iter()
        .filter(|t| allowed_only.is_none_or(|names| names.contains(&t.name)))
        .map(|t| types::FunctionDeclaration {
            name: t.name.clone(),
            description: t.description.clone(),
            parameters: t.parameters.as_ref().and_then(parameters_to_wire),
            parameters_json_schema: None,
            extra: Map::new(),
        })
        .collect();
    if !declarations.is_empty() {
        tools.push(types::Tool {
            function_declarations: Some(declarations),
            extra: Map::new(),
        });
    }
    for tool in req
        .provider_tools
        .iter()
        .filter(|t| t.format == Format::Gemini)
    {
        if let Value::Object(fields) = &tool.value {
            tools.push(types::Tool {
                function_declarations: None,
                extra: fields.clone(),
            });
        }
    }

    let mut tool_config = match extra.remove("toolConfig") {
        Some(Value::Object(fields)) => Some(types::ToolConfig {
            function_calling_config: None,
            extra: fields,
        }),
        _ => None,
    };
    if let Some(choice) = &req.tool_choice {
        tool_config
            .get_or_insert_with(types::ToolConfig::default)
            .function_calling_config = Some(tool_choice_to_wire(choice));
    }

    let generation_config = generation_to_wire(req, &mut extra)?;
    Ok(types::Request {
        contents,
        system_instruction: (!system_parts.is_empty()).then_some(types::Content {
            role: None,
            parts: system_parts,
        }),
        tools: (!tools.is_empty()).then_some(tools),
        tool_config,
        generation_config,
        extra,
    })
}

fn message(role: Role, content: Vec<Part>) -> canonical::Message {
    canonical::Message {
        role,
        content,
        name: None,
        extra: None,
    }
}

/// The canonical parts of a model turn. Calls without an id get one from `seed` and their
/// position.
pub(crate) fn model_parts(
    parts: Vec<types::Part>,
    seed: &str,
    path: &str,
) -> Result<Vec<Part>, WireError> {
    let mut out = Vec::with_capacity(parts.len());
    let mut calls = 0;
    for (j, mut p) in parts.into_iter().enumerate() {
        match p.function_call.take() {
            Some(call) => {
                if let Some(signature) = p.thought_signature.take() {
                    out.push(Part::Reasoning {
                        text: String::new(),
                        signature: Some(signature),
                    });
                }
                out.push(Part::ToolCall(tool_call_from_wire(call, seed, calls)));
                calls += 1;
            }
            None => parts_from_wire(p, &format!("{path}.parts[{j}]"), &mut out)?,
        }
    }
    Ok(out)
}

/// The canonical call of a Gemini function call, the `position`-th call of its turn.
pub(crate) fn tool_call_from_wire(
    call: types::FunctionCall,
    seed: &str,
    position: usize,
) -> ToolCall {
    let arguments = match &call.args {
        Some(args) => args.to_string(),
        None => "{}".to_string(),
    };
    let id = match call.id {
        Some(id) if !id.is_empty() => id,
        _ => call_id(seed, position, &call.name, &arguments),
    };
    ToolCall {
        id,
        name: call.name,
        arguments,
    }
}

/// Appends the messages of one user turn: runs of function responses become tool messages,
/// everything else user messages, in order.
fn user_contents(
    parts: Vec<types::Part>,
    path: &str,
    pending: &mut Vec<(String, String)>,
    messages: &mut Vec<canonical::Message>,
) -> Result<(), WireError> {
    let push = |role: Role, part: Part, messages: &mut Vec<canonical::Message>| match messages
        .last_mut()
    {
        Some(last) if last.role == role => last.content.push(part),
        _ => messages.push(message(role, vec![part])),
    };
    for (j, mut p) in parts.into_iter().enumerate() {
        let at = format!("{path}.parts[{j}]");
        match p.function_response.take() {
            Some(response) => {
                let tool_call_id = match response.id {
                    Some(id) if !id.is_empty() => {
                        pending.retain(|(pid, _)| *pid != id);
                        id
                    }
                    _ => match pending.iter().position(|(_, name)| *name == response.name) {
                        Some(k) => pending.remove(k).0,
                        None => call_id(&at, 0, &response.name, ""),
                    },
                };
                let (text, is_error) = response_text(&response.response);
                let result = ToolResult {
                    tool_call_id,
                    name: Some(response.name),
                    content: vec![Part::Text { text }],
                    is_error,
                };
                push(Role::Tool, Part::ToolResult(result), messages);
            }
            None => {
                let mut converted = Vec::new();
                parts_from_wire(p, &at, &mut converted)?;
                for part in converted {
                    push(Role::User, part, messages);
                }
            }
        }
    }
    Ok(())
}

/// The text of a function response: `{"output": "..."}` and `{"error": "..."}` (Gemini's
/// documented keys) give their string, anything else its compact JSON.
fn response_text(response: &Value) -> (String, bool) {
    if let Value::Object(map) = response {
        if map.len() == 1 {
            if let Some(Value::String(s)) = map.get("output") {
                return (s.clone(), false);
            }
            if let Some(Value::String(s)) = map.get("error") {
                return (s.clone(), true);
            }
        }
    }
    (response.to_string(), false)
}

/// Appends the canonical parts of one non-function part (a thought signature becomes a
/// signature-only reasoning part before it).
pub(crate) fn parts_from_wire(
    p: types::Part,
    path: &str,
    out: &mut Vec<Part>,
) -> Result<(), WireError> {
    if p.thought == Some(true) {
        out.push(Part::Reasoning {
            text: p.text.unwrap_or_default(),
            signature: p.thought_signature,
        });
        return Ok(());
    }
    let signature = p.thought_signature.clone();
    let part = if let Some(text) = p.text {
        (!text.is_empty()).then_some(Part::Text { text })
    } else if let Some(blob) = p.inline_data {
        Some(inline_from_wire(blob))
    } else if let Some(file) = p.file_data {
        let is_image = file
            .mime_type
            .as_deref()
            .is_some_and(|m| m.starts_with("image/"));
        let source = Source::Url { url: file.file_uri };
        Some(if is_image {
            Part::Image {
                source,
                detail: None,
            }
        } else {
            Part::File {
                source,
                filename: None,
            }
        })
    } else if p.function_call.is_some() || p.function_response.is_some() {
        return Err(WireError::field(
            path,
            "function parts are not allowed in this turn",
        ));
    } else if !p.extra.is_empty() {
        Some(Part::Opaque(Opaque {
            format: Format::Gemini,
            value: Value::Object(p.extra),
        }))
    } else {
        None
    };
    if let Some(signature) = signature {
        out.push(Part::Reasoning {
            text: String::new(),
            signature: Some(signature),
        });
    }
    out.extend(part);
    Ok(())
}

fn inline_from_wire(blob: types::Blob) -> Part {
    let types::Blob { mime_type, data } = blob;
    if mime_type.starts_with("image/") {
        Part::Image {
            source: Source::Base64 {
                media_type: mime_type,
                data,
            },
            detail: None,
        }
    } else if let Some(subtype) = mime_type.strip_prefix("audio/") {
        let format = match subtype {
            "mpeg" | "mp3" => "mp3",
            "wav" | "x-wav" | "wave" => "wav",
            other => other,
        };
        Part::Audio {
            data,
            format: format.to_string(),
        }
    } else {
        Part::File {
            source: Source::Base64 {
                media_type: mime_type,
                data,
            },
            filename: None,
        }
    }
}

fn text_part(text: &str) -> types::Part {
    types::Part {
        text: Some(text.to_string()),
        ..types::Part::default()
    }
}

/// Gemini parts of a user or model message.
pub(crate) fn parts_to_wire(content: &[Part], path: &str) -> Result<Vec<types::Part>, WireError> {
    let mut out: Vec<types::Part> = Vec::with_capacity(content.len());
    // A signature-only reasoning part belongs on the part that follows it.
    let mut signature: Option<String> = None;
    for (j, part) in content.iter().enumerate() {
        let at = || format!("{path}.content[{j}]");
        let mut w = match part {
            Part::Text { text } | Part::Refusal { text } => text_part(text),
            Part::Reasoning {
                text,
                signature: sig,
            } => {
                if text.is_empty() {
                    if sig.is_some() {
                        signature.clone_from(sig);
                    }
                    continue;
                }
                types::Part {
                    text: Some(text.clone()),
                    thought: Some(true),
                    thought_signature: sig.clone(),
                    ..types::Part::default()
                }
            }
            Part::Image { source, .. } => media_to_wire(source, "image/jpeg", &at)?,
            Part::File { source, .. } => media_to_wire(source, "application/pdf", &at)?,
            Part::Audio { data, format } => {
                let mime_type = match format.as_str() {
                    "mp3" => "audio/mp3".to_string(),
                    "wav" => "audio/wav".to_string(),
                    other => format!("audio/{other}"),
                };
                types::Part {
                    inline_data: Some(types::Blob {
                        mime_type,
                        data: data.clone(),
                    }),
                    ..types::Part::default()
                }
            }
            Part::ToolCall(call) => types::Part {
                function_call: Some(types::FunctionCall {
                    id: None,
                    name: call.name.clone(),
                    args: Some(arguments_to_wire(&call.arguments, &at)?),
                }),
                ..types::Part::default()
            },
            Part::Opaque(o) if o.format == Format::Gemini => match &o.value {
                Value::Object(fields) => types::Part {
                    extra: fields.clone(),
                    ..types::Part::default()
                },
                _ => continue,
            },
            Part::ToolResult(_) => {
                return Err(WireError::field(
                    at(),
                    "tool results belong in tool messages",
                ))
            }
            Part::RedactedReasoning { .. } | Part::CacheBreakpoint(_) | Part::Opaque(_) => continue,
        };
        if w.thought_signature.is_none() {
            w.thought_signature = signature.take();
        }
        out.push(w);
    }
    if let Some(signature) = signature {
        out.push(types::Part {
            text: Some(String::new()),
            thought_signature: Some(signature),
            ..types::Part::default()
        });
    }
    Ok(out)
}

fn media_to_wire(
    source: &Source,
    default_mime: &str,
    at: &dyn Fn() -> String,
) -> Result<types::Part, WireError> {
    Ok(match source {
        Source::Base64 { media_type, data } => types::Part {
            inline_data: Some(types::Blob {
                mime_type: media_type.clone(),
                data: data.clone(),
            }),
            ..types::Part::default()
        },
        Source::Url { url } => types::Part {
            file_data: Some(types::FileData {
                mime_type: Some(guess_mime(url).unwrap_or(default_mime).to_string()),
                file_uri: url.clone(),
            }),
            ..types::Part::default()
        },
        Source::FileId { id }
            if id.starts_with("https://")
                || id.starts_with("files/")
                || id.starts_with("gs://") =>
        {
            types::Part {
                file_data: Some(types::FileData {
                    mime_type: Some(guess_mime(id).unwrap_or(default_mime).to_string()),
                    file_uri: id.clone(),
                }),
                ..types::Part::default()
            }
        }
        Source::FileId { .. } => {
            return Err(WireError::field(
                at(),
                "Gemini cannot read a file uploaded to another provider; send the data inline",
            ))
        }
    })
}

/// The media type a URL's extension implies.
fn guess_mime(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        _ => return None,
    })
}

/// A call's arguments as the JSON object Gemini's `args` must be.
fn arguments_to_wire(arguments: &str, at: &dyn Fn() -> String) -> Result<Value, WireError> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(map)) => Ok(Value::Object(map)),
        _ => Err(WireError::field(
            format!("{}.arguments", at()),
            "Gemini needs tool call arguments that are a JSON object",
        )),
    }
}

/// The `functionResponse` parts of a tool message; each result's function name is its own or
/// that of the call with the same id in an earlier assistant message.
fn tool_results_to_wire(
    req: &canonical::ChatRequest,
    index: usize,
    content: &[Part],
    path: &str,
) -> Result<Vec<types::Part>, WireError> {
    let mut out = Vec::with_capacity(content.len());
    for (j, part) in content.iter().enumerate() {
        let Part::ToolResult(result) = part else {
            continue;
        };
        let at = format!("{path}.content[{j}]");
        let name = match &result.name {
            Some(name) => name.clone(),
            None => req.messages[..index]
                .iter()
                .rev()
                .flat_map(|m| m.tool_calls())
                .find(|c| c.id == result.tool_call_id)
                .map(|c| c.name.clone())
                .ok_or_else(|| {
                    WireError::field(
                        format!("{at}.tool_call_id"),
                        format_args!(
                            "no earlier tool call has id `{}`, and Gemini needs the function's name",
                            result.tool_call_id
                        ),
                    )
                })?,
        };
        if result
            .content
            .iter()
            .any(|p| !matches!(p, Part::Text { .. }))
        {
            return Err(WireError::field(
                format!("{at}.content"),
                "Gemini tool results hold text only",
            ));
        }
        let text = result.text_content();
        let response = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) if !result.is_error => Value::Object(map),
            _ => {
                let key = if result.is_error { "error" } else { "output" };
                let mut map = Map::new();
                map.insert(key.into(), Value::String(text));
                Value::Object(map)
            }
        };
        out.push(types::Part {
            function_response: Some(types::FunctionResponse {
                id: None,
                name,
                response,
            }),
            ..types::Part::default()
        });
    }
    Ok(out)
}

fn parameters_to_wire(parameters: &Value) -> Option<Value> {
    // Gemini rejects an object schema without properties; a function without parameters has
    // none at all.
    let empty_object = parameters.get("type").and_then(Value::as_str) == Some("object")
        && parameters
            .get("properties")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty);
    (!empty_object).then(|| schema::to_gemini(parameters))
}

fn tool_choice_from_wire(c: types::FunctionCallingConfig) -> Result<ToolChoice, WireError> {
    let names = c.allowed_function_names.unwrap_or_default();
    match c.mode.as_deref().unwrap_or("AUTO") {
        "AUTO" | "MODE_UNSPECIFIED" | "VALIDATED" => Ok(ToolChoice::Auto),
        "NONE" => Ok(ToolChoice::None),
        "ANY" => Ok(match names.as_slice() {
            [] => ToolChoice::Required,
            [one] => ToolChoice::Tool { name: one.clone() },
            _ => ToolChoice::Allowed {
                names,
                required: true,
            },
        }),
        other => Err(WireError::field(
            "toolConfig.functionCallingConfig.mode",
            format_args!("unknown mode `{other}`, expected `AUTO`, `ANY`, `NONE` or `VALIDATED`"),
        )),
    }
}

fn tool_choice_to_wire(choice: &ToolChoice) -> types::FunctionCallingConfig {
    let (mode, names) = match choice {
        ToolChoice::Auto => ("AUTO", None),
        ToolChoice::None => ("NONE", None),
        ToolChoice::Required => ("ANY", None),
        ToolChoice::Tool { name } => ("ANY", Some(vec![name.clone()])),
        // Without `required`, the declarations are narrowed to `names` instead.
        ToolChoice::Allowed {
            required: false, ..
        } => ("AUTO", None),
        ToolChoice::Allowed {
            names,
            required: true,
        } => ("ANY", Some(names.clone())),
    };
    types::FunctionCallingConfig {
        mode: Some(mode.to_string()),
        allowed_function_names: names,
    }
}

fn generation_from_wire(
    g: types::GenerationConfig,
    req: &mut canonical::ChatRequest,
    extra: &mut Map<String, Value>,
) -> Result<(), WireError> {
    req.temperature = g.temperature;
    req.top_p = g.top_p;
    req.top_k = g.top_k;
    req.max_tokens = g.max_output_tokens;
    req.stop = g.stop_sequences.unwrap_or_default();
    req.n = g.candidate_count;
    req.seed = g.seed;
    req.presence_penalty = g.presence_penalty;
    req.frequency_penalty = g.frequency_penalty;
    let mut rest = g.extra;
    req.response_format = match g.response_mime_type.as_deref() {
        None | Some("text/plain") => None,
        Some("application/json") => Some(
            match g
                .response_json_schema
                .or_else(|| g.response_schema.as_ref().map(schema::from_gemini))
            {
                Some(schema) => ResponseFormat::JsonSchema {
                    name: "response".into(),
                    description: None,
                    schema,
                    strict: None,
                },
                None => ResponseFormat::JsonObject,
            },
        ),
        Some(other) => {
            // `text/x.enum` and the like have no canonical form: keep them for Gemini.
            rest.insert("responseMimeType".into(), Value::String(other.to_string()));
            if let Some(s) = g.response_schema {
                rest.insert("responseSchema".into(), s);
            }
            None
        }
    };
    if let Some(t) = g.thinking_config {
        req.reasoning = reasoning_from_wire(&t);
        rest.insert(
            "thinkingConfig".into(),
            serde_json::to_value(&t).map_err(|e| WireError::field("generationConfig", e))?,
        );
    }
    if !rest.is_empty() {
        extra.insert("generationConfig".into(), Value::Object(rest));
    }
    Ok(())
}

fn reasoning_from_wire(t: &types::ThinkingConfig) -> Option<canonical::Reasoning> {
    let budget = t.thinking_budget.filter(|b| *b >= 0);
    let effort = match (&t.thinking_level, t.thinking_budget) {
        (Some(level), _) => Some(level.to_ascii_lowercase()),
        (None, Some(0)) => Some("none".to_string()),
        _ => None,
    };
    (budget.is_some() || effort.is_some()).then(|| canonical::Reasoning {
        effort,
        budget_tokens: budget.and_then(|b| u32::try_from(b).ok()),
    })
}

fn generation_to_wire(
    req: &canonical::ChatRequest,
    extra: &mut Map<String, Value>,
) -> Result<Option<types::GenerationConfig>, WireError> {
    if req.stop.len() > MAX_STOP_SEQUENCES {
        return Err(WireError::field(
            "stop",
            format_args!("Gemini accepts at most {MAX_STOP_SEQUENCES} stop sequences"),
        ));
    }
    let mut rest = match extra.remove("generationConfig") {
        Some(Value::Object(fields)) => fields,
        _ => Map::new(),
    };
    let kept_thinking = rest.remove("thinkingConfig");
    let (response_mime_type, response_schema) = match &req.response_format {
        None | Some(ResponseFormat::Text) => (None, None),
        Some(ResponseFormat::JsonObject) => (Some("application/json".to_string()), None),
        Some(ResponseFormat::JsonSchema { schema: s, .. }) => (
            Some("application/json".to_string()),
            Some(schema::to_gemini(s)),
        ),
    };
    let thinking_config = match (kept_thinking, &req.reasoning) {
        (Some(kept), _) => Some(
            serde_json::from_value::<types::ThinkingConfig>(kept)
                .map_err(|e| WireError::field("generationConfig.thinkingConfig", e))?,
        ),
        (None, Some(r)) => reasoning_to_wire(r),
        (None, None) => None,
    };
    let g = types::GenerationConfig {
        stop_sequences: (!req.stop.is_empty()).then(|| req.stop.clone()),
        response_mime_type,
        response_schema,
        response_json_schema: None,
        candidate_count: req.n,
        max_output_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        seed: req.seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        thinking_config,
        extra: rest,
    };
    let empty = serde_json::to_value(&g)
        .ok()
        .and_then(|v| v.as_object().map(Map::is_empty))
        .unwrap_or(false);
    Ok((!empty).then_some(g))
}

/// Gemini's thinking config: a budget is sent as is; an effort word becomes a budget
/// (`none` 0, `minimal` 512, `low` 1024, `medium` 8192, `high` 24576).
fn reasoning_to_wire(r: &canonical::Reasoning) -> Option<types::ThinkingConfig> {
    let budget = match (r.budget_tokens, r.effort.as_deref()) {
        (Some(b), _) => i64::from(b),
        (None, Some("none")) => 0,
        (None, Some("minimal")) => 512,
        (None, Some("low")) => 1024,
        (None, Some("medium")) => 8192,
        (None, Some(_)) => 24576,
        (None, None) => return None,
    };
    Some(types::ThinkingConfig {
        include_thoughts: (budget > 0).then_some(true),
        thinking_budget: Some(budget),
        thinking_level: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        parse(body.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            err(r#"{"contents":[]}"#),
            "contents: must contain at least one content"
        );
        assert_eq!(
            err(r#"{"contents":[{"role":"bot","parts":[{"text":"x"}]}]}"#),
            "contents[0].role: unknown role `bot`, expected `user` or `model`"
        );
        assert_eq!(
            err(
                r#"{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"temperature":"hot"}}"#
            ),
            "generationConfig.temperature: invalid type: string \"hot\", expected f64"
        );
    }

    #[test]
    fn unsupported_is_refused_by_name() {
        let mut req = parse(br#"{"contents":[{"parts":[{"text":"x"}]}]}"#).unwrap();
        req.stop = (0..6).map(|i| i.to_string()).collect();
        assert_eq!(render(&req).unwrap_err().param(), Some("stop"));
        req.stop.clear();
        req.messages.push(canonical::Message {
            role: Role::Tool,
            content: vec![Part::ToolResult(ToolResult {
                tool_call_id: "nope".into(),
                name: None,
                content: vec![],
                is_error: false,
            })],
            name: None,
            extra: None,
        });
        assert_eq!(
            render(&req).unwrap_err().param(),
            Some("messages[1].content[0].tool_call_id")
        );
    }

    #[test]
    fn snake_case_fields_are_accepted() {
        let req = parse(
            br#"{"system_instruction":{"parts":[{"text":"s"}]},"contents":[{"role":"user","parts":[{"inline_data":{"mime_type":"image/png","data":"AA=="}}]}],"generation_config":{"max_output_tokens":5}}"#,
        )
        .unwrap();
        assert_eq!(req.messages[0].role, Role::System);
        assert!(matches!(req.messages[1].content[0], Part::Image { .. }));
        assert_eq!(req.max_tokens, Some(5));
    }
}
