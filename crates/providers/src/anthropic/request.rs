//! Anthropic Messages requests (and `count_tokens` requests) to and from the canonical model.
//!
//! Owns the mapping of the system prompt, messages, tools, tool choice, thinking, structured
//! output and sampling parameters, and the messages naming the offending field when a body does
//! not fit. Content blocks are converted by `super::content`. It must not decide routing or
//! policy, and must not do IO.
//!
//! # Rendering a canonical request
//!
//! - `max_tokens` is required by Anthropic; a request without one gets [`DEFAULT_MAX_TOKENS`]
//!   (4096, the default the official SDK examples and most clients use).
//! - Every system and developer message is hoisted into `system` (a string when it is one plain
//!   text, text blocks otherwise). Tool messages become `user` messages of `tool_result` blocks;
//!   consecutive tool messages, and a user message right after them, share one `user` message,
//!   tool results first, as Anthropic requires.
//! - `response_format` `json_schema` becomes `output_config.format` (structured outputs);
//!   reasoning `effort` becomes `output_config.effort` (`minimal` as `low`, `none` as
//!   `thinking: disabled`), a thinking budget becomes `thinking: enabled`.
//! - `tool_choice` `allowed_tools` keeps only the allowed tools (Anthropic has no allow-list),
//!   `parallel_tool_calls: false` becomes `disable_parallel_tool_use: true`.
//! - What Anthropic cannot honour is an error naming the parameter, never dropped silently:
//!   `n` above 1, `response_format` `json_object`, non-zero `presence_penalty` or
//!   `frequency_penalty`, audio input, non-text system content, tool call arguments that are
//!   not a JSON object, and tools of another format. `seed` is a best-effort hint with no
//!   Anthropic equivalent and is not sent.
//! - Dropped because Anthropic could not use them anyway: reasoning parts without a signature
//!   (another provider's thinking cannot be replayed), image `detail`, message `name`, and
//!   opaque data of other formats.
//!
//! # Parsing
//!
//! `system` becomes the first message; a `user` message is split into tool messages (runs of
//! `tool_result` blocks) and user messages (everything else), in order. `thinking: enabled`
//! becomes a reasoning budget and `output_config.effort` an effort; `thinking` `disabled` or
//! `adaptive` has no canonical equivalent and is kept as an Anthropic-only extra field, as are
//! `service_tier`, `container`, the top-level `cache_control` and the rest. An
//! `output_config.format` schema becomes `response_format` `json_schema` named
//! [`OUTPUT_SCHEMA_NAME`].

use serde_json::{Map, Value};

use crate::anthropic::content::{self, attach_cache_control};
use crate::anthropic::types::{self, ContentBlock};
use crate::canonical::{
    self, Extra, Format, Message, Opaque, Part, Reasoning, ResponseFormat, Role, ToolChoice,
};
use crate::wire::{self, WireError};

/// `max_tokens` sent when the canonical request has none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// The name given to an Anthropic `output_config.format` schema, which has no name of its own.
pub const OUTPUT_SCHEMA_NAME: &str = "output";

/// Top-level fields `count_tokens` accepts besides the ones the canonical model carries.
const COUNT_TOKENS_EXTRA: &[&str] = &["cache_control"];

/// Parses a `/v1/messages` body.
pub fn parse(body: &[u8]) -> Result<canonical::ChatRequest, WireError> {
    let w: types::Request = wire::from_json(body)?;
    if w.max_tokens.is_none() {
        return Err(WireError::field("max_tokens", "Field required"));
    }
    from_wire(w)
}

/// Parses a `/v1/messages/count_tokens` body (no `max_tokens`).
pub fn parse_count_tokens(body: &[u8]) -> Result<canonical::ChatRequest, WireError> {
    from_wire(wire::from_json(body)?)
}

/// Renders a `/v1/messages` body, or the error naming what Anthropic cannot honour.
pub fn render(req: &canonical::ChatRequest) -> Result<Vec<u8>, WireError> {
    Ok(wire::to_json(&to_wire(req)?))
}

/// Renders a `/v1/messages/count_tokens` body: the messages request without `max_tokens`,
/// `stream`, sampling parameters, `stop_sequences` and `metadata`.
pub fn render_count_tokens(req: &canonical::ChatRequest) -> Result<Vec<u8>, WireError> {
    let mut w = to_wire(req)?;
    w.max_tokens = None;
    w.stream = None;
    w.temperature = None;
    w.top_p = None;
    w.top_k = None;
    w.stop_sequences = None;
    w.metadata = None;
    w.extra
        .retain(|key, _| COUNT_TOKENS_EXTRA.contains(&key.as_str()));
    Ok(wire::to_json(&w))
}

/// The canonical request of a parsed wire request.
pub fn from_wire(w: types::Request) -> Result<canonical::ChatRequest, WireError> {
    if w.messages.is_empty() {
        return Err(WireError::field(
            "messages",
            "must contain at least one message",
        ));
    }
    let mut extra = w.extra;
    let mut messages = Vec::with_capacity(w.messages.len() + 1);
    if let Some(system) = w.system {
        let content = match system {
            types::System::Text(text) => vec![Part::Text { text }],
            types::System::Blocks(blocks) => content::parts_from_wire(blocks, "system")?,
        };
        messages.push(canonical_message(Role::System, content));
    }
    for (i, m) in w.messages.into_iter().enumerate() {
        messages_from_wire(m, &format!("messages[{i}].content"), &mut messages)?;
    }

    let mut tools = Vec::new();
    let mut provider_tools = Vec::new();
    for t in w.tools.unwrap_or_default() {
        match t.kind.as_deref() {
            None | Some("custom") => tools.push(canonical::Tool {
                name: t.name,
                description: t.description,
                parameters: t.input_schema,
                strict: t.strict,
                cache_breakpoint: t.cache_control.map(content::breakpoint_from_wire),
            }),
            Some(_) => provider_tools.push(Opaque {
                format: Format::Anthropic,
                value: serde_json::to_value(&t).unwrap_or_default(),
            }),
        }
    }

    let (tool_choice, parallel_tool_calls) = match w.tool_choice {
        None => (None, None),
        Some(c) => {
            let choice = match c.kind.as_str() {
                "auto" => ToolChoice::Auto,
                "any" => ToolChoice::Required,
                "none" => ToolChoice::None,
                "tool" => match c.name {
                    Some(name) => ToolChoice::Tool { name },
                    None => return Err(WireError::field("tool_choice", "missing field `name`")),
                },
                other => {
                    return Err(WireError::field(
                        "tool_choice.type",
                        format_args!(
                        "unknown tool choice `{other}`, expected `auto`, `any`, `tool` or `none`"
                    ),
                    ))
                }
            };
            (Some(choice), c.disable_parallel_tool_use.map(|d| !d))
        }
    };

    let mut reasoning = Reasoning::default();
    let mut response_format = None;
    if let Some(mut config) = w.output_config {
        match config.format.take() {
            Some(types::OutputFormat {
                kind,
                schema: Some(schema),
            }) if kind == "json_schema" => {
                response_format = Some(ResponseFormat::JsonSchema {
                    name: OUTPUT_SCHEMA_NAME.into(),
                    description: None,
                    schema,
                    strict: None,
                });
            }
            other => config.format = other,
        }
        reasoning.effort = config.effort.take();
        if config.format.is_some() || !config.extra.is_empty() {
            extra.insert("output_config".into(), to_value(&config));
        }
    }
    // `disabled` (Anthropic's default) and `adaptive` have no canonical equivalent: reading
    // `disabled` as effort `none` would make OpenAI reject the request for non-reasoning models.
    if let Some(thinking) = w.thinking {
        match (thinking.kind.as_str(), thinking.budget_tokens) {
            ("enabled", Some(budget)) if thinking.extra.is_empty() => {
                reasoning.budget_tokens = Some(budget);
            }
            _ => {
                extra.insert("thinking".into(), to_value(&thinking));
            }
        }
    }
    let reasoning = (reasoning != Reasoning::default()).then_some(reasoning);

    let mut user = None;
    if let Some(mut metadata) = w.metadata {
        user = metadata.user_id.take();
        if !metadata.extra.is_empty() {
            extra.insert("metadata".into(), Value::Object(metadata.extra));
        }
    }
    let stream = w.stream.unwrap_or(false);
    Ok(canonical::ChatRequest {
        model: w.model,
        messages,
        tools,
        provider_tools,
        tool_choice,
        parallel_tool_calls,
        response_format,
        temperature: w.temperature,
        top_p: w.top_p,
        top_k: w.top_k,
        max_tokens: w.max_tokens,
        stop: w.stop_sequences.unwrap_or_default(),
        n: None,
        seed: None,
        presence_penalty: None,
        frequency_penalty: None,
        reasoning,
        stream,
        // Anthropic streams always carry usage.
        include_usage: stream,
        user,
        extra: Extra::new(Format::Anthropic, extra),
    })
}

/// Appends the canonical messages of one wire message: a user message is split into runs of
/// tool results (tool messages) and other content (user messages), in order. `path` names the
/// message's content in errors.
fn messages_from_wire(
    m: types::Message,
    path: &str,
    out: &mut Vec<Message>,
) -> Result<(), WireError> {
    let role = match m.role {
        types::Role::User => Role::User,
        types::Role::Assistant => Role::Assistant,
        types::Role::System => Role::System,
    };
    let blocks = match m.content {
        types::Content::Text(text) => {
            out.push(canonical_message(role, vec![Part::Text { text }]));
            return Ok(());
        }
        types::Content::Blocks(blocks) => blocks,
    };
    if role != Role::User {
        out.push(canonical_message(
            role,
            content::parts_from_wire(blocks, path)?,
        ));
        return Ok(());
    }
    // Runs of tool results and of other blocks, each converted with its blocks' own indexes.
    let mut parts: Vec<(bool, Vec<Part>)> = Vec::new();
    for (j, block) in blocks.into_iter().enumerate() {
        let is_tool = matches!(block, ContentBlock::ToolResult(_));
        if parts
            .last()
            .is_none_or(|(run_is_tool, _)| *run_is_tool != is_tool)
        {
            parts.push((is_tool, Vec::new()));
        }
        if let Some((_, run)) = parts.last_mut() {
            content::block_to_parts(block, &format!("{path}[{j}]"), run)?;
        }
    }
    if parts.is_empty() {
        out.push(canonical_message(Role::User, Vec::new()));
    }
    for (is_tool, content) in parts {
        let role = if is_tool { Role::Tool } else { Role::User };
        out.push(canonical_message(role, content));
    }
    Ok(())
}

fn canonical_message(role: Role, content: Vec<Part>) -> Message {
    Message {
        role,
        content,
        name: None,
        extra: None,
    }
}

/// The wire request of a canonical request, or the error naming what Anthropic cannot honour.
pub fn to_wire(req: &canonical::ChatRequest) -> Result<types::Request, WireError> {
    reject_unsupported(req)?;
    let mut extra = Extra::fields_for(req.extra.as_ref(), Format::Anthropic)
        .cloned()
        .unwrap_or_default();

    let (system, messages) = messages_to_wire(&req.messages)?;

    let allowed: Option<&[String]> = match &req.tool_choice {
        Some(ToolChoice::Allowed { names, .. }) => Some(names),
        _ => None,
    };
    let mut tools: Vec<types::Tool> = req
        .tools
        .iter()
        .filter(|t| allowed.is_none_or(|names| names.contains(&t.name)))
        .map(|t| types::Tool {
            kind: None,
            name: t.name.clone(),
            description: t.description.clone(),
            input_schema: Some(t.parameters.clone().unwrap_or_else(empty_schema)),
            cache_control: t.cache_breakpoint.as_ref().map(content::cache_control),
            strict: t.strict,
            extra: Map::new(),
        })
        .collect();
    for (i, tool) in req.provider_tools.iter().enumerate() {
        if tool.format != Format::Anthropic {
            return Err(WireError::field(
                "tools",
                format_args!(
                    "tool {i} is a built-in tool of another provider, which Anthropic models cannot use"
                ),
            ));
        }
        let parsed = serde_json::from_value(tool.value.clone())
            .map_err(|e| WireError::field("tools", format_args!("built-in tool {i}: {e}")))?;
        tools.push(parsed);
    }

    let disable_parallel = req.parallel_tool_calls.map(|p| !p);
    let tool_choice = match &req.tool_choice {
        None if tools.is_empty() => None,
        None => disable_parallel.map(|d| choice("auto", None, Some(d))),
        Some(ToolChoice::None) => Some(choice("none", None, None)),
        Some(ToolChoice::Auto) => Some(choice("auto", None, disable_parallel)),
        Some(ToolChoice::Required) => Some(choice("any", None, disable_parallel)),
        Some(ToolChoice::Tool { name }) => Some(choice("tool", Some(name), disable_parallel)),
        Some(ToolChoice::Allowed { names, required }) => Some(match (names.as_slice(), required) {
            ([only], true) => choice("tool", Some(only), disable_parallel),
            (_, true) => choice("any", None, disable_parallel),
            (_, false) => choice("auto", None, disable_parallel),
        }),
    };

    let mut output_config: types::OutputConfig = match extra.remove("output_config") {
        Some(v) => serde_json::from_value(v).unwrap_or_default(),
        None => types::OutputConfig::default(),
    };
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            output_config.format = Some(types::OutputFormat {
                kind: "json_schema".into(),
                schema: Some(schema.clone()),
            });
        }
        // Rejected by `reject_unsupported`.
        Some(ResponseFormat::JsonObject) => {}
    }
    let reasoning = req.reasoning.as_ref();
    let effort = reasoning.and_then(|r| r.effort.as_deref());
    if let Some(effort) = effort.filter(|e| *e != "none") {
        output_config.effort = Some(if effort == "minimal" { "low" } else { effort }.into());
    }
    let thinking = match extra.remove("thinking") {
        Some(v) => serde_json::from_value(v).ok(),
        None => match (reasoning.and_then(|r| r.budget_tokens), effort) {
            (Some(0), _) | (None, Some("none")) => Some(thinking("disabled", None)),
            (Some(budget), _) => Some(thinking("enabled", Some(budget))),
            (None, _) => None,
        },
    };
    let output_config = (output_config.format.is_some()
        || output_config.effort.is_some()
        || !output_config.extra.is_empty())
    .then_some(output_config);

    let mut metadata: types::Metadata = match extra.remove("metadata") {
        Some(Value::Object(fields)) => types::Metadata {
            user_id: None,
            extra: fields,
        },
        _ => types::Metadata::default(),
    };
    metadata.user_id.clone_from(&req.user);
    let metadata = (metadata.user_id.is_some() || !metadata.extra.is_empty()).then_some(metadata);

    Ok(types::Request {
        model: req.model.clone(),
        messages,
        max_tokens: Some(req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
        system,
        metadata,
        stop_sequences: (!req.stop.is_empty()).then(|| req.stop.clone()),
        stream: req.stream.then_some(true),
        temperature: req.temperature,
        top_k: req.top_k,
        top_p: req.top_p,
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice,
        thinking,
        output_config,
        extra,
    })
}

/// Errors for the parameters Anthropic cannot honour (see the module docs).
fn reject_unsupported(req: &canonical::ChatRequest) -> Result<(), WireError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(WireError::field(
            "n",
            "Anthropic models generate one choice per request; `n` must be 1",
        ));
    }
    if matches!(req.response_format, Some(ResponseFormat::JsonObject)) {
        return Err(WireError::field(
            "response_format",
            "Anthropic models have no JSON object mode; use `json_schema` with a schema",
        ));
    }
    for (name, value) in [
        ("presence_penalty", req.presence_penalty),
        ("frequency_penalty", req.frequency_penalty),
    ] {
        if value.is_some_and(|v| v != 0.0) {
            return Err(WireError::field(name, "not supported by Anthropic models"));
        }
    }
    Ok(())
}

fn choice(kind: &str, name: Option<&String>, disable_parallel: Option<bool>) -> types::ToolChoice {
    types::ToolChoice {
        kind: kind.into(),
        name: name.cloned(),
        disable_parallel_tool_use: if kind == "none" {
            None
        } else {
            disable_parallel
        },
    }
}

fn thinking(kind: &str, budget_tokens: Option<u32>) -> types::Thinking {
    types::Thinking {
        kind: kind.into(),
        budget_tokens,
        extra: Map::new(),
    }
}

fn empty_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// One wire message being built.
struct Turn {
    role: types::Role,
    blocks: Vec<ContentBlock>,
    /// A user turn opened by tool results that has taken nothing else yet: more tool results
    /// may join it.
    takes_results: bool,
    /// A user turn opened by tool results: user content may follow the results in it.
    takes_user: bool,
}

/// `system` and `messages` of the canonical messages.
fn messages_to_wire(
    messages: &[Message],
) -> Result<(Option<types::System>, Vec<types::Message>), WireError> {
    let mut system: Vec<ContentBlock> = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        if matches!(m.role, Role::System | Role::Developer) {
            for (j, part) in m.content.iter().enumerate() {
                match part {
                    Part::Text { text } => system.push(content::text_block(text)),
                    Part::CacheBreakpoint(b) => {
                        attach_cache_control(&mut system, content::cache_control(b));
                    }
                    Part::Opaque(_) => {}
                    _ => {
                        return Err(WireError::field(
                            format!("{path}.content[{j}]"),
                            "Anthropic system prompts hold only text",
                        ))
                    }
                }
            }
            continue;
        }
        let (leading, blocks) = content::blocks_to_wire(&m.content, &path)?;
        // A breakpoint that opens a message marks the end of the previous one.
        for cc in leading {
            match turns.last_mut() {
                Some(turn) => {
                    attach_cache_control(&mut turn.blocks, cc);
                }
                None => {
                    attach_cache_control(&mut system, cc);
                }
            }
        }
        let last = turns.last_mut();
        match m.role {
            Role::Tool => match last {
                Some(turn) if turn.takes_results => turn.blocks.extend(blocks),
                _ => turns.push(Turn {
                    role: types::Role::User,
                    blocks,
                    takes_results: true,
                    takes_user: true,
                }),
            },
            Role::User => match last {
                Some(turn) if turn.takes_user => {
                    turn.blocks.extend(blocks);
                    turn.takes_results = false;
                }
                _ => turns.push(Turn {
                    role: types::Role::User,
                    blocks,
                    takes_results: false,
                    takes_user: false,
                }),
            },
            _ => turns.push(Turn {
                role: types::Role::Assistant,
                blocks,
                takes_results: false,
                takes_user: false,
            }),
        }
    }
    let system = match system.as_slice() {
        [] => None,
        [ContentBlock::Text(t)] if t.cache_control.is_none() => {
            Some(types::System::Text(t.text.clone()))
        }
        _ => Some(types::System::Blocks(system)),
    };
    let messages = turns
        .into_iter()
        .map(|turn| types::Message {
            role: turn.role,
            content: content::collapse(turn.blocks),
        })
        .collect();
    Ok((system, messages))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(body: &str) -> String {
        parse(body.as_bytes()).unwrap_err().to_string()
    }

    fn rendered(req: &canonical::ChatRequest) -> Value {
        serde_json::from_slice(&render(req).unwrap()).unwrap()
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            err(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#),
            "max_tokens: Field required"
        );
        assert_eq!(
            err(r#"{"model":"m","max_tokens":5,"messages":[]}"#),
            "messages: must contain at least one message"
        );
        assert_eq!(
            err(r#"{"model":"m","max_tokens":5,"messages":[{"role":"robot","content":"x"}]}"#),
            "messages[0].role: unknown variant `robot`, expected one of `user`, `assistant`, `system`"
        );
        assert_eq!(
            err(r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":5}]}"#),
            "messages[0].content: invalid type: integer `5`, expected a string or an array of content blocks"
        );
        assert_eq!(
            err(
                r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","data":"AA"}}]}]}"#
            ),
            "messages[0].content[0].source: missing field `media_type`"
        );
        assert_eq!(
            err(
                r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"kind":"x"}}]}]}"#
            ),
            "messages[0].content[0]: source: missing field `type`"
        );
        assert_eq!(
            err(
                r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"text":"x"}]}]}"#
            ),
            "messages[0].content[0]: missing field `type`"
        );
        assert_eq!(
            err(
                r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_use","id":"a","input":{}}]}]}"#
            ),
            "messages[0].content[0]: missing field `name`"
        );
        assert_eq!(
            err(
                r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"always"}}"#
            ),
            "tool_choice.type: unknown tool choice `always`, expected `auto`, `any`, `tool` or `none`"
        );
    }

    #[test]
    fn unsupported_parameters_are_errors() {
        let base = canonical::ChatRequest {
            model: "m".into(),
            messages: vec![Message::text(Role::User, "hi")],
            ..Default::default()
        };
        let e = render(&canonical::ChatRequest {
            response_format: Some(ResponseFormat::JsonObject),
            ..base.clone()
        })
        .unwrap_err();
        assert_eq!(e.param(), Some("response_format"));
        let e = render(&canonical::ChatRequest {
            n: Some(2),
            ..base.clone()
        })
        .unwrap_err();
        assert_eq!(e.param(), Some("n"));
        let e = render(&canonical::ChatRequest {
            frequency_penalty: Some(0.5),
            ..base.clone()
        })
        .unwrap_err();
        assert_eq!(e.param(), Some("frequency_penalty"));
        assert!(render(&canonical::ChatRequest {
            frequency_penalty: Some(0.0),
            seed: Some(3),
            ..base.clone()
        })
        .is_ok());
        let mut audio = base.clone();
        audio.messages[0].content.push(Part::Audio {
            data: "AAAA".into(),
            format: "wav".into(),
        });
        assert_eq!(
            render(&audio).unwrap_err().param(),
            Some("messages[0].content[1]")
        );
        let mut openai_tool = base.clone();
        openai_tool.provider_tools.push(Opaque {
            format: Format::OpenAi,
            value: json!({"type": "custom", "name": "x"}),
        });
        assert_eq!(render(&openai_tool).unwrap_err().param(), Some("tools"));
    }

    #[test]
    fn defaults_and_reasoning() {
        let req = canonical::ChatRequest {
            model: "m".into(),
            messages: vec![Message::text(Role::User, "hi")],
            reasoning: Some(Reasoning {
                effort: Some("minimal".into()),
                budget_tokens: None,
            }),
            ..Default::default()
        };
        let v = rendered(&req);
        assert_eq!(v["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(v["output_config"], json!({"effort": "low"}));
        assert!(v.get("thinking").is_none());
        let none = canonical::ChatRequest {
            reasoning: Some(Reasoning {
                effort: Some("none".into()),
                budget_tokens: None,
            }),
            ..req.clone()
        };
        assert_eq!(rendered(&none)["thinking"], json!({"type": "disabled"}));
        let budget = canonical::ChatRequest {
            reasoning: Some(Reasoning {
                effort: None,
                budget_tokens: Some(2048),
            }),
            ..req
        };
        assert_eq!(
            rendered(&budget)["thinking"],
            json!({"type": "enabled", "budget_tokens": 2048})
        );
    }

    #[test]
    fn allowed_tools_filter_and_parallel_flag() {
        let tool = |name: &str| canonical::Tool {
            name: name.into(),
            description: None,
            parameters: None,
            strict: None,
            cache_breakpoint: None,
        };
        let req = canonical::ChatRequest {
            model: "m".into(),
            messages: vec![Message::text(Role::User, "hi")],
            tools: vec![tool("a"), tool("b"), tool("c")],
            tool_choice: Some(ToolChoice::Allowed {
                names: vec!["b".into()],
                required: true,
            }),
            parallel_tool_calls: Some(false),
            ..Default::default()
        };
        let v = rendered(&req);
        assert_eq!(v["tools"].as_array().unwrap().len(), 1);
        assert_eq!(v["tools"][0]["name"], "b");
        assert_eq!(v["tools"][0]["input_schema"]["type"], "object");
        assert_eq!(
            v["tool_choice"],
            json!({"type": "tool", "name": "b", "disable_parallel_tool_use": true})
        );
    }

    #[test]
    fn breakpoints_land_on_the_block_that_ends_there() {
        let breakpoint = Part::CacheBreakpoint(canonical::CacheBreakpoint::default());
        let req = canonical::ChatRequest {
            model: "m".into(),
            messages: vec![
                Message {
                    role: Role::Developer,
                    content: vec![
                        Part::Text {
                            text: "rules".into(),
                        },
                        breakpoint.clone(),
                    ],
                    name: None,
                    extra: None,
                },
                Message::text(Role::User, "first"),
                Message {
                    role: Role::Assistant,
                    content: vec![
                        breakpoint,
                        Part::Reasoning {
                            text: "unsigned thoughts of another model".into(),
                            signature: None,
                        },
                        Part::Text {
                            text: "second".into(),
                        },
                    ],
                    name: None,
                    extra: None,
                },
            ],
            ..Default::default()
        };
        let v = rendered(&req);
        let cc = json!({"type": "ephemeral"});
        assert_eq!(
            v["system"],
            json!([{"type": "text", "text": "rules", "cache_control": cc}])
        );
        assert_eq!(
            v["messages"][0]["content"],
            json!([{"type": "text", "text": "first", "cache_control": cc}])
        );
        assert_eq!(v["messages"][1]["content"], "second");
    }

    #[test]
    fn tool_results_share_a_turn_with_following_text() {
        let body = br#"{"model":"m","max_tokens":9,"messages":[
            {"role":"user","content":"weather?"},
            {"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"w","input":{"c":"x"}},
                                           {"type":"tool_use","id":"t2","name":"w","input":{}}]},
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"sun"},
                                      {"type":"tool_result","tool_use_id":"t2","content":[{"type":"text","text":"rain"}],"is_error":true},
                                      {"type":"text","text":"and now?"}]}]}"#;
        let req = parse(body).unwrap();
        let roles: Vec<Role> = req.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            vec![Role::User, Role::Assistant, Role::Tool, Role::User]
        );
        let v = rendered(&req);
        assert_eq!(v["messages"].as_array().unwrap().len(), 3);
        let last = &v["messages"][2]["content"];
        assert_eq!(last[0]["type"], "tool_result");
        assert_eq!(last[1]["is_error"], true);
        assert_eq!(last[2], json!({"type": "text", "text": "and now?"}));
        assert_eq!(parse(&render(&req).unwrap()).unwrap(), req);
    }
}
