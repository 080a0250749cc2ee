//! Deterministic "tokenizer" and text helpers shared by every emulated protocol.
//!
//! Reference: none is needed — real tokenizers are not emulated. The rule is our own and
//! deliberately simple so tests can compute expected numbers by hand:
//!
//! * one token = one whitespace-separated word (`str::split_whitespace`);
//! * an image content part counts as one token (as if it were the word `[image]`);
//! * each tool definition counts as one token (its name);
//! * completion tokens are the words of the generated reply, summed over all choices.
//!
//! This module must not know about HTTP or about any provider's JSON field names beyond
//! OpenAI-style message content parts.

use serde_json::Value;

/// Counts tokens in `text`: the number of whitespace-separated words.
pub fn count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Splits `text` into stream pieces without losing a byte: every piece is one word with the
/// whitespace that precedes it, so `pieces(t).concat() == t` and `pieces(t).len()` equals
/// `count(t)` (trailing whitespace rides on the last piece).
pub fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut gap_start = None;
    let mut seen_word = false;
    let mut prev_ws = true;
    for (i, c) in text.char_indices() {
        let ws = c.is_whitespace();
        if ws && !prev_ws {
            gap_start = Some(i);
        } else if !ws && prev_ws {
            if let (true, Some(gap)) = (seen_word, gap_start) {
                out.push(&text[start..gap]);
                start = gap;
            }
            seen_word = true;
        }
        prev_ws = ws;
    }
    if !text.is_empty() {
        out.push(&text[start..]);
    }
    out
}

/// The text of one OpenAI-style `content` value and the number of image parts in it.
///
/// A string is taken as is; an array of parts yields its `text` parts joined with one space
/// (image parts are left out of the text and counted instead); anything else is empty.
pub fn content_text(content: &Value) -> (String, u64) {
    match content {
        Value::String(s) => (s.clone(), 0),
        Value::Array(parts) => {
            let mut texts = Vec::new();
            let mut images = 0;
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = part.get("text").and_then(Value::as_str) {
                            texts.push(t);
                        }
                    }
                    Some("image_url") | Some("input_image") | Some("image") => images += 1,
                    _ => {}
                }
            }
            (texts.join(" "), images)
        }
        _ => (String::new(), 0),
    }
}

/// Prompt tokens of an OpenAI-style `messages` array plus `tools` definitions.
pub fn prompt_tokens(messages: &[Value], tools: &[Value]) -> u64 {
    let in_messages: u64 = messages
        .iter()
        .map(|m| {
            let (text, images) = content_text(m.get("content").unwrap_or(&Value::Null));
            count(&text) + images
        })
        .sum();
    in_messages + tools.len() as u64
}

/// A stable 64-bit FNV-1a hash, used for deterministic ids and embedding vectors.
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The SplitMix64 step: turns a seed into a well-mixed 64-bit value.
pub fn mix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A deterministic alphanumeric suffix of `len` characters derived from `seed`.
pub fn alnum_suffix(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = mix64(state);
            let i = (state % ALPHABET.len() as u64) as usize;
            char::from(ALPHABET[i])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pieces_are_lossless_and_one_per_word() {
        for text in ["echo: hello world", "  lead", "a  b\nc ", "one", "", "x y"] {
            let p = pieces(text);
            assert_eq!(p.concat(), text, "{text:?}");
            assert_eq!(p.len() as u64, count(text).max(u64::from(!text.is_empty())));
        }
        assert_eq!(pieces("echo: hi there"), vec!["echo:", " hi", " there"]);
    }

    #[test]
    fn content_parts_join_text_and_count_images() {
        let content = json!([
            {"type": "text", "text": "look at"},
            {"type": "image_url", "image_url": {"url": "data:,"}},
            {"type": "text", "text": "this"}
        ]);
        assert_eq!(content_text(&content), ("look at this".to_string(), 1));
        let messages = vec![json!({"role": "user", "content": content})];
        assert_eq!(prompt_tokens(&messages, &[json!({})]), 3 + 1 + 1);
    }
}
