//! Anthropic content blocks to and from canonical parts, shared by requests and responses.
//!
//! Owns the block-level mapping (text, image, document, tool use, tool result, thinking,
//! redacted thinking, `cache_control`) and keeps blocks it does not model as opaque parts. It
//! must not know message roles or request parameters (that is `request`), and must not do IO.
//!
//! A `cache_control` on a block becomes a [`Part::CacheBreakpoint`] right after that block's
//! part; on a `tool_result` block it becomes the last part of the result's content. Rendering
//! puts each breakpoint on the block that ends where the breakpoint is, which caches the same
//! prompt prefix.

use serde_json::{Map, Value};

use crate::anthropic::types::{
    self, CacheControl, Content, ContentBlock, DocumentBlock, ImageBlock, Source, TextBlock,
    ToolResultBlock, ToolUseBlock,
};
use crate::canonical::{self, CacheBreakpoint, Format, Opaque, Part, ToolCall, ToolResult};
use crate::wire::WireError;

/// The canonical parts of wire blocks; `path` names the block array in errors.
pub(crate) fn parts_from_wire(
    blocks: Vec<ContentBlock>,
    path: &str,
) -> Result<Vec<Part>, WireError> {
    let mut out = Vec::with_capacity(blocks.len());
    for (j, block) in blocks.into_iter().enumerate() {
        block_to_parts(block, &format!("{path}[{j}]"), &mut out)?;
    }
    Ok(out)
}

/// Appends the canonical parts of one wire block (the block's part, then its cache breakpoint);
/// `at` names the block in errors.
pub(crate) fn block_to_parts(
    block: ContentBlock,
    at: &str,
    out: &mut Vec<Part>,
) -> Result<(), WireError> {
    let cache_control = match block {
        ContentBlock::Text(b) => {
            out.push(Part::Text { text: b.text });
            b.cache_control
        }
        ContentBlock::Image(b) => match source_from_wire(&b.source, at)? {
            Some(source) => {
                out.push(Part::Image {
                    source,
                    detail: None,
                });
                b.cache_control
            }
            None => {
                out.push(opaque(&ContentBlock::Image(b)));
                None
            }
        },
        ContentBlock::Document(b) => {
            let plain = b.context.is_none() && b.citations.is_none();
            match source_from_wire(&b.source, at)? {
                Some(source) if plain => {
                    out.push(Part::File {
                        source,
                        filename: b.title,
                    });
                    b.cache_control
                }
                _ => {
                    out.push(opaque(&ContentBlock::Document(b)));
                    None
                }
            }
        }
        ContentBlock::ToolUse(b) => {
            out.push(Part::ToolCall(ToolCall {
                id: b.id,
                name: b.name,
                arguments: match b.input {
                    Value::Null => "{}".to_string(),
                    input => input.to_string(),
                },
            }));
            b.cache_control
        }
        ContentBlock::ToolResult(b) => {
            let mut content = match b.content {
                None => Vec::new(),
                Some(Content::Text(text)) => vec![Part::Text { text }],
                Some(Content::Blocks(blocks)) => parts_from_wire(blocks, &format!("{at}.content"))?,
            };
            if let Some(cc) = b.cache_control {
                content.push(Part::CacheBreakpoint(breakpoint_from_wire(cc)));
            }
            out.push(Part::ToolResult(ToolResult {
                tool_call_id: b.tool_use_id,
                name: None,
                content,
                is_error: b.is_error.unwrap_or(false),
            }));
            None
        }
        ContentBlock::Thinking(b) => {
            out.push(Part::Reasoning {
                text: b.thinking,
                signature: Some(b.signature),
            });
            None
        }
        ContentBlock::RedactedThinking(b) => {
            out.push(Part::RedactedReasoning { data: b.data });
            None
        }
        ContentBlock::Other(value) => {
            out.push(Part::Opaque(Opaque {
                format: Format::Anthropic,
                value,
            }));
            None
        }
    };
    if let Some(cc) = cache_control {
        out.push(Part::CacheBreakpoint(breakpoint_from_wire(cc)));
    }
    Ok(())
}

/// The wire blocks of the parts of one request message, and the cache markers that came before
/// any block (they belong to the end of the previous message). `path` names the message.
pub(crate) fn blocks_to_wire(
    parts: &[Part],
    path: &str,
) -> Result<(Vec<CacheControl>, Vec<ContentBlock>), WireError> {
    let mut leading = Vec::new();
    let mut out: Vec<ContentBlock> = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let at = || format!("{path}.content[{j}]");
        let block = match part {
            // Anthropic rejects empty text blocks.
            Part::Text { text } | Part::Refusal { text } if text.is_empty() => continue,
            Part::Text { text } | Part::Refusal { text } => text_block(text),
            Part::Image { source, .. } => ContentBlock::Image(ImageBlock {
                source: source_to_wire(source),
                cache_control: None,
            }),
            Part::File { source, filename } => ContentBlock::Document(DocumentBlock {
                source: source_to_wire(source),
                cache_control: None,
                title: filename.clone(),
                context: None,
                citations: None,
            }),
            Part::Audio { .. } => {
                return Err(WireError::field(
                    at(),
                    "Anthropic models do not accept audio input",
                ))
            }
            // Another provider's thinking cannot be replayed without Anthropic's signature.
            Part::Reasoning {
                signature: None, ..
            } => continue,
            Part::Reasoning {
                text,
                signature: Some(signature),
            } => ContentBlock::Thinking(types::ThinkingBlock {
                thinking: text.clone(),
                signature: signature.clone(),
            }),
            Part::RedactedReasoning { data } => {
                ContentBlock::RedactedThinking(types::RedactedThinkingBlock { data: data.clone() })
            }
            Part::ToolCall(call) => ContentBlock::ToolUse(ToolUseBlock {
                id: call.id.clone(),
                name: call.name.clone(),
                input: arguments_to_input(&call.arguments).ok_or_else(|| {
                    WireError::field(
                        at(),
                        format_args!(
                            "the arguments of tool call `{}` are not a JSON object",
                            call.id
                        ),
                    )
                })?,
                cache_control: None,
                extra: Map::new(),
            }),
            Part::ToolResult(result) => tool_result_to_wire(result, &at())?,
            Part::CacheBreakpoint(b) => {
                if !attach_cache_control(&mut out, cache_control(b)) {
                    leading.push(cache_control(b));
                }
                continue;
            }
            Part::Opaque(o) if o.format == Format::Anthropic => {
                ContentBlock::Other(o.value.clone())
            }
            Part::Opaque(_) => continue,
        };
        out.push(block);
    }
    Ok((leading, out))
}

fn tool_result_to_wire(result: &ToolResult, path: &str) -> Result<ContentBlock, WireError> {
    let (inner, cache) = match result.content.split_last() {
        Some((Part::CacheBreakpoint(b), rest)) => (rest, Some(cache_control(b))),
        _ => (result.content.as_slice(), None),
    };
    let content = match inner {
        [] => None,
        [Part::Text { text }] => Some(Content::Text(text.clone())),
        parts => {
            let (_, blocks) = blocks_to_wire(parts, path)?;
            Some(Content::Blocks(blocks))
        }
    };
    Ok(ContentBlock::ToolResult(ToolResultBlock {
        tool_use_id: result.tool_call_id.clone(),
        content,
        is_error: result.is_error.then_some(true),
        cache_control: cache,
    }))
}

/// The content blocks of an assistant answer (responses and streams): only what a model
/// generates. Never fails: tool call arguments that are not a JSON object become `{}`.
pub(crate) fn response_blocks(parts: &[Part]) -> Vec<ContentBlock> {
    let only_text = parts.iter().all(|p| matches!(p, Part::Text { .. }));
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        let block = match part {
            Part::Text { text } | Part::Refusal { text } if text.is_empty() && !only_text => {
                continue
            }
            Part::Text { text } | Part::Refusal { text } => text_block(text),
            Part::Reasoning { text, signature } => ContentBlock::Thinking(types::ThinkingBlock {
                thinking: text.clone(),
                signature: signature.clone().unwrap_or_default(),
            }),
            Part::RedactedReasoning { data } => {
                ContentBlock::RedactedThinking(types::RedactedThinkingBlock { data: data.clone() })
            }
            Part::ToolCall(call) => ContentBlock::ToolUse(ToolUseBlock {
                id: call.id.clone(),
                name: call.name.clone(),
                input: arguments_to_input(&call.arguments)
                    .unwrap_or_else(|| Value::Object(Map::new())),
                cache_control: None,
                extra: Map::new(),
            }),
            Part::Opaque(o) if o.format == Format::Anthropic => {
                ContentBlock::Other(o.value.clone())
            }
            _ => continue,
        };
        out.push(block);
    }
    out
}

/// A tool call's JSON text as a `tool_use` `input` object; empty text is `{}`.
pub(crate) fn arguments_to_input(arguments: &str) -> Option<Value> {
    if arguments.trim().is_empty() {
        return Some(Value::Object(Map::new()));
    }
    match serde_json::from_str(arguments) {
        Ok(value @ Value::Object(_)) => Some(value),
        _ => None,
    }
}

/// Sets `cache_control` on the last block that can carry it (thinking blocks cannot); `false`
/// when there is none.
pub(crate) fn attach_cache_control(blocks: &mut [ContentBlock], cc: CacheControl) -> bool {
    for block in blocks.iter_mut().rev() {
        let slot = match block {
            ContentBlock::Text(b) => &mut b.cache_control,
            ContentBlock::Image(b) => &mut b.cache_control,
            ContentBlock::Document(b) => &mut b.cache_control,
            ContentBlock::ToolUse(b) => &mut b.cache_control,
            ContentBlock::ToolResult(b) => &mut b.cache_control,
            ContentBlock::Thinking(_) | ContentBlock::RedactedThinking(_) => continue,
            ContentBlock::Other(Value::Object(fields)) => {
                let value = serde_json::to_value(&cc).unwrap_or_default();
                fields.insert("cache_control".into(), value);
                return true;
            }
            ContentBlock::Other(_) => continue,
        };
        *slot = Some(cc);
        return true;
    }
    false
}

/// A message's content: a string when it is one plain text block, blocks otherwise.
pub(crate) fn collapse(blocks: Vec<ContentBlock>) -> Content {
    match blocks.as_slice() {
        [] => Content::Text(String::new()),
        [ContentBlock::Text(t)] if t.cache_control.is_none() && t.citations.is_none() => {
            Content::Text(t.text.clone())
        }
        _ => Content::Blocks(blocks),
    }
}

pub(crate) fn text_block(text: &str) -> ContentBlock {
    ContentBlock::Text(TextBlock {
        text: text.to_string(),
        cache_control: None,
        citations: None,
    })
}

pub(crate) fn cache_control(b: &CacheBreakpoint) -> CacheControl {
    CacheControl::ephemeral(b.ttl.clone())
}

pub(crate) fn breakpoint_from_wire(cc: CacheControl) -> CacheBreakpoint {
    CacheBreakpoint { ttl: cc.ttl }
}

fn opaque(block: &ContentBlock) -> Part {
    Part::Opaque(Opaque {
        format: Format::Anthropic,
        value: serde_json::to_value(block).unwrap_or_default(),
    })
}

/// The canonical source of an image or document source; `None` for kinds the canonical model
/// has no home for (a document made of content blocks, new kinds).
fn source_from_wire(s: &Source, path: &str) -> Result<Option<canonical::Source>, WireError> {
    let need = |field: Option<&String>, name: &str| {
        field.cloned().ok_or_else(|| {
            WireError::field(
                format!("{path}.source"),
                format_args!("missing field `{name}`"),
            )
        })
    };
    Ok(Some(match s.kind.as_str() {
        "base64" => canonical::Source::Base64 {
            media_type: need(s.media_type.as_ref(), "media_type")?,
            data: need(s.data.as_ref(), "data")?,
        },
        "url" => canonical::Source::Url {
            url: need(s.url.as_ref(), "url")?,
        },
        "file" => canonical::Source::FileId {
            id: need(s.file_id.as_ref(), "file_id")?,
        },
        "text" => canonical::Source::Base64 {
            media_type: s.media_type.clone().unwrap_or_else(|| "text/plain".into()),
            data: base64_encode(need(s.data.as_ref(), "data")?.as_bytes()),
        },
        _ => return Ok(None),
    }))
}

/// The wire source of a canonical source: `text/plain` inline data is sent as a `text` source,
/// the only way Anthropic takes plain text documents.
fn source_to_wire(s: &canonical::Source) -> Source {
    match s {
        canonical::Source::Url { url } => Source {
            kind: "url".into(),
            url: Some(url.clone()),
            ..Source::default()
        },
        canonical::Source::FileId { id } => Source {
            kind: "file".into(),
            file_id: Some(id.clone()),
            ..Source::default()
        },
        canonical::Source::Base64 { media_type, data } => {
            let text = (media_type == "text/plain")
                .then(|| base64_decode(data))
                .flatten()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            match text {
                Some(text) => Source {
                    kind: "text".into(),
                    media_type: Some(media_type.clone()),
                    data: Some(text),
                    ..Source::default()
                },
                None => Source {
                    kind: "base64".into(),
                    media_type: Some(media_type.clone()),
                    data: Some(data.clone()),
                    ..Source::default()
                },
            }
        }
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (k, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if k <= chunk.len() {
                out.push(char::from(BASE64[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The inverse of [`base64_encode`]; `None` for text that is not standard base64.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = BASE64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for text in [
            "",
            "f",
            "fo",
            "foo",
            "foob",
            "fooba",
            "foobar",
            "héllo wörld",
        ] {
            let encoded = base64_encode(text.as_bytes());
            assert_eq!(base64_decode(&encoded).unwrap(), text.as_bytes(), "{text}");
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_decode("not base64!"), None);
    }

    #[test]
    fn breakpoints_skip_thinking_and_reach_opaque_blocks() {
        let mut blocks = vec![
            text_block("a"),
            ContentBlock::Thinking(types::ThinkingBlock::default()),
        ];
        assert!(attach_cache_control(
            &mut blocks,
            CacheControl::ephemeral(None)
        ));
        assert!(matches!(&blocks[0], ContentBlock::Text(t) if t.cache_control.is_some()));
        let mut other = vec![ContentBlock::Other(
            serde_json::json!({"type": "search_result"}),
        )];
        assert!(attach_cache_control(
            &mut other,
            CacheControl::ephemeral(Some("1h".into()))
        ));
        assert_eq!(
            serde_json::to_value(&other[0]).unwrap()["cache_control"],
            serde_json::json!({"type": "ephemeral", "ttl": "1h"})
        );
        assert!(!attach_cache_control(
            &mut [],
            CacheControl::ephemeral(None)
        ));
    }
}
