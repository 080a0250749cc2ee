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
    /// Framing tokens per message and per request (OpenAI's published accounting).
    const PER_MESSAGE: u64 = 3;
    const PER_REQUEST: u64 = 3;
    let Ok(p) = serde_json::from_slice::<shape::Prompt<'_>>(body) else {
        return count(std::str::from_utf8(body).unwrap_or_default());
    };
    let mut n = PER_REQUEST;
    for c in [&p.system, &p.prompt, &p.input].into_iter().flatten() {
        n += c.tokens();
    }
    for m in &p.messages {
        n += PER_MESSAGE;
        if let Some(c) = &m.content {
            n += c.tokens();
        }
    }
    n
}

/// The parts of a request body that hold prompt text, borrowed where no unescaping is needed;
/// everything else is skipped unread.
mod shape {
    use std::borrow::Cow;

    use serde::de::IgnoredAny;
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct Prompt<'a> {
        #[serde(borrow, default)]
        pub messages: Vec<Message<'a>>,
        #[serde(borrow, default)]
        pub system: Option<Content<'a>>,
        #[serde(borrow, default)]
        pub prompt: Option<Content<'a>>,
        #[serde(borrow, default)]
        pub input: Option<Content<'a>>,
    }

    #[derive(Deserialize)]
    pub struct Message<'a> {
        #[serde(borrow, default)]
        pub content: Option<Content<'a>>,
    }

    /// A string, or a list of strings or parts with `text` (OpenAI content parts, Anthropic
    /// blocks, embedding inputs); anything else counts nothing.
    #[derive(Deserialize)]
    #[serde(untagged)]
    pub enum Content<'a> {
        Text(#[serde(borrow)] Cow<'a, str>),
        List(#[serde(borrow)] Vec<Item<'a>>),
        Other(IgnoredAny),
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    pub enum Item<'a> {
        Text(#[serde(borrow)] Cow<'a, str>),
        Part {
            #[serde(borrow, default)]
            text: Option<Cow<'a, str>>,
        },
        Other(IgnoredAny),
    }

    impl Content<'_> {
        pub fn tokens(&self) -> u64 {
            match self {
                Content::Text(t) => super::count(t),
                Content::List(items) => items
                    .iter()
                    .map(|i| match i {
                        Item::Text(t) | Item::Part { text: Some(t) } => super::count(t),
                        _ => 0,
                    })
                    .sum(),
                Content::Other(_) => 0,
            }
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
        // Not that shape: the whole body is tokenized.
        assert_eq!(prompt(b"hello world"), 2);
        assert_eq!(
            prompt(br#"{"messages":"hello world"}"#),
            super::count(r#"{"messages":"hello world"}"#)
        );
    }
}
