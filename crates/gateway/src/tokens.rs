//! Counting prompt tokens for admission, with a real tokenizer (OpenAI's `o200k_base`, through
//! tiktoken). Only requests whose key has a token or budget limit pay for it; the count is an
//! estimate for reservation — the provider's reported usage settles the real amount.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

fn bpe() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
}

/// The prompt tokens of a chat request body (OpenAI or Anthropic): the text the model reads —
/// the messages' `content` (strings and text parts), `system`, `prompt`, `input` — plus a few
/// tokens of framing per message, as providers count them. JSON syntax, roles, images' base64
/// and parameters are not tokenized: counting them made the estimate larger than the
/// provider's count and cost a tokenizer pass over every byte. A body that is not that shape
/// is tokenized whole.
pub fn prompt(body: &[u8]) -> u64 {
    /// Framing tokens per request (OpenAI's published accounting).
    const PER_REQUEST: u64 = 3;
    let Ok(p) = serde_json::from_slice::<shape::Prompt>(body) else {
        return count(std::str::from_utf8(body).unwrap_or_default());
    };
    let text = [p.system, p.prompt, p.input].into_iter().flatten();
    PER_REQUEST + p.messages.0 + text.map(|c| c.0).sum::<u64>()
}

/// The parts of a request body that hold prompt text; everything else is skipped unread. Text
/// is counted where the parser finds it (borrowed from the body, or unescaped in its scratch
/// buffer), so nothing is allocated for it.
mod shape {
    use std::fmt;

    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct Prompt {
        #[serde(default)]
        pub messages: Messages,
        #[serde(default)]
        pub system: Option<Content>,
        #[serde(default)]
        pub prompt: Option<Content>,
        #[serde(default)]
        pub input: Option<Content>,
    }

    /// The tokens of a list of messages: each one's `content` and its framing. Anything but a
    /// list of objects is not a prompt of this shape.
    #[derive(Default)]
    pub struct Messages(pub u64);

    impl<'de> Deserialize<'de> for Messages {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_seq(MessagesVisitor)
        }
    }

    struct MessagesVisitor;

    impl<'de> Visitor<'de> for MessagesVisitor {
        type Value = Messages;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of messages")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Messages, A::Error> {
            /// Framing tokens per message (OpenAI's published accounting).
            const PER_MESSAGE: u64 = 3;
            let mut n = 0;
            while let Some(m) = seq.next_element::<Message>()? {
                n += PER_MESSAGE + m.content.map_or(0, |c| c.0);
            }
            Ok(Messages(n))
        }
    }

    #[derive(Deserialize)]
    struct Message {
        #[serde(default)]
        content: Option<Content>,
    }

    /// The tokens of a string, or of a list of strings or parts with `text` (OpenAI content
    /// parts, Anthropic blocks, embedding inputs); anything else counts nothing.
    pub struct Content(pub u64);

    impl<'de> Deserialize<'de> for Content {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            Counted(Role::Content).deserialize(d).map(Content)
        }
    }

    /// Where a value sits: what of it is text to count.
    #[derive(Clone, Copy)]
    enum Role {
        /// A `content` (or `system`, `prompt`, `input`): a string, or a list of items.
        Content,
        /// An element of such a list: a string, or a part whose `text` is a string.
        Item,
        /// The `text` of a part: a string.
        Text,
    }

    /// Deserializes a value in its [`Role`] to the tokens of its text.
    struct Counted(Role);

    impl<'de> DeserializeSeed<'de> for Counted {
        type Value = u64;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Counted {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_str<E>(self, v: &str) -> Result<u64, E> {
            Ok(super::count(v))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
            let mut n = 0;
            match self.0 {
                Role::Content => {
                    while let Some(t) = seq.next_element_seed(Counted(Role::Item))? {
                        n += t;
                    }
                }
                Role::Item | Role::Text => while seq.next_element::<IgnoredAny>()?.is_some() {},
            }
            Ok(n)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
            let mut n = 0;
            while let Some(text) = map.next_key_seed(IsText)? {
                if text && matches!(self.0, Role::Item) {
                    n += map.next_value_seed(Counted(Role::Text))?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(n)
        }

        fn visit_bool<E>(self, _: bool) -> Result<u64, E> {
            Ok(0)
        }

        fn visit_i64<E>(self, _: i64) -> Result<u64, E> {
            Ok(0)
        }

        fn visit_u64<E>(self, _: u64) -> Result<u64, E> {
            Ok(0)
        }

        fn visit_f64<E>(self, _: f64) -> Result<u64, E> {
            Ok(0)
        }

        fn visit_unit<E>(self) -> Result<u64, E> {
            Ok(0)
        }

        fn visit_none<E>(self) -> Result<u64, E> {
            Ok(0)
        }
    }

    /// Whether a map key is `text`.
    struct IsText;

    impl<'de> DeserializeSeed<'de> for IsText {
        type Value = bool;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for IsText {
        type Value = bool;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a key")
        }

        fn visit_str<E>(self, v: &str) -> Result<bool, E> {
            Ok(v == "text")
        }
    }
}

/// Tokens of `text`; four bytes a token if the tokenizer could not be loaded.
pub fn count(text: &str) -> u64 {
    match bpe() {
        Some(b) => b.encode_ordinary(text).len() as u64,
        None => (text.len() / 4) as u64,
    }
}

/// Loads the tokenizer on a thread of its own, once, ahead of the first request that needs it
/// (called when a key with a token or budget limit appears: a gateway without one never pays
/// the tokenizer's ~40 MiB).
pub fn warm_in_background() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(|| {
            let _ = bpe();
        });
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_like_tiktoken() {
        // "hello world" is two tokens in o200k_base.
        assert_eq!(super::count("hello world"), 2);
        assert!(super::count(&"word ".repeat(100)) >= 100);
    }

    #[test]
    fn prompts_count_their_text_not_their_json() {
        use super::prompt;
        // 3 per request + 3 per message + "hello world" (2).
        let openai =
            br#"{"model":"m","messages":[{"role":"user","content":"hello world"}],"max_tokens":5}"#;
        assert_eq!(prompt(openai), 3 + 3 + 2);
        // Text parts count, images do not; escapes are read.
        let parts = br#"{"messages":[{"role":"user","content":[{"type":"text","text":"hello world"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},{"role":"assistant","content":"hello\nworld"}]}"#;
        assert_eq!(prompt(parts), 3 + 3 + 2 + 3 + super::count("hello\nworld"));
        // Anthropic: system as a string or blocks, tool results without text count framing.
        let anthropic = br#"{"model":"c","system":[{"type":"text","text":"hello world"}],"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"x"}]}]}"#;
        assert_eq!(prompt(anthropic), 3 + 2 + 3);
        // Completions and embeddings.
        assert_eq!(prompt(br#"{"prompt":"hello world"}"#), 3 + 2);
        assert_eq!(prompt(br#"{"input":["hello world","hello world"]}"#), 3 + 4);
        // Parts whose `text` is not a string, nested lists, numbers and nulls count nothing;
        // neither does an object where a string or a list belongs.
        let odd = br#"{"messages":[{"role":"user","content":[{"type":"text","text":5},"hello world",["hello"],7,null,{"text":null}]},{"content":{"text":"hello"}},{"content":null},{}],"system":{"text":"hello"}}"#;
        assert_eq!(prompt(odd), 3 + 3 + 2 + 3 + 3 + 3);
        // Not that shape: the whole body is tokenized.
        assert_eq!(prompt(b"hello world"), 2);
        for body in [
            r#"{"messages":"hello world"}"#,
            r#"{"messages":null}"#,
            r#"{"messages":["hello world"]}"#,
            r#"{"messages":[{"content":"hello world"}],"#,
        ] {
            assert_eq!(prompt(body.as_bytes()), super::count(body), "{body}");
        }
    }
}
