//! Counting prompt tokens for admission, with a real tokenizer (OpenAI's `o200k_base`: its
//! vocabulary from tiktoken-rs). Only requests whose key has a token or budget limit pay for it;
//! the count is an estimate for reservation — the provider's reported usage settles the real
//! amount.
//!
//! The text is split into pieces as tiktoken splits it, but by regex-automata's automaton
//! instead of tiktoken's `fancy-regex` backtracker: o200k's split pattern needs a backtracker
//! only for one look-ahead (`\s+(?!\S)`: a run of spaces before a word leaves its last space to
//! the word), which [`Tokenizer::pieces`] applies by hand. Each piece is then one token if the
//! vocabulary has it, else its bytes are merged as tiktoken merges them. Same counts as
//! tiktoken's `encode_ordinary` (tested on random text from an alphabet of the pattern's edge
//! cases and on long pieces), for fewer instructions, and in a third of the memory of
//! tiktoken's encoder alone (its decoder and sorted token list are dropped too).

use std::hash::Hasher;
use std::sync::OnceLock;

use regex_automata::{Anchored, Input};
use rustc_hash::FxHasher;

fn tokenizer() -> Option<&'static Tokenizer> {
    static TOKENIZER: OnceLock<Option<Tokenizer>> = OnceLock::new();
    TOKENIZER.get_or_init(Tokenizer::o200k).as_ref()
}

/// o200k's split pattern (tiktoken's `O200K_BASE_PAT_STR`) with its last two alternatives,
/// `\s+(?!\S)|\s+`, as one `\s+`: see [`Tokenizer::pieces`].
const SPLIT: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"\p{N}{1,3}",
    "|",
    r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
    "|",
    r"\s*[\r\n]+",
    "|",
    r"\s+",
);

struct Tokenizer {
    vocabulary: Vocabulary,
    split: regex_automata::meta::Regex,
}

/// Every ordinary token's bytes and rank (tiktoken's encoder), compact: the tokens' bytes in
/// one arena, their spans by rank, and a table of ranks found by the bytes' hash (~4 MiB, where
/// a map of 200,000 separately allocated byte strings takes ~11).
struct Vocabulary {
    bytes: Vec<u8>,
    spans: Vec<(u32, u32)>,
    ranks: hashbrown::HashTable<tiktoken_rs::Rank>,
}

impl Vocabulary {
    fn hash(bytes: &[u8]) -> u64 {
        let mut h = FxHasher::default();
        h.write(bytes);
        h.finish()
    }

    fn token(&self, rank: tiktoken_rs::Rank) -> &[u8] {
        Self::slice(&self.bytes, &self.spans, rank)
    }

    /// A token's bytes by its span (also while the vocabulary is being built).
    fn slice<'a>(bytes: &'a [u8], spans: &[(u32, u32)], rank: tiktoken_rs::Rank) -> &'a [u8] {
        let (a, b) = spans[rank as usize];
        &bytes[a as usize..b as usize]
    }

    fn rank(&self, bytes: &[u8]) -> Option<tiktoken_rs::Rank> {
        self.ranks
            .find(Self::hash(bytes), |&r| self.token(r) == bytes)
            .copied()
    }
}

impl Tokenizer {
    /// The vocabulary read out of tiktoken-rs's `o200k_base` (which keeps its encoder private:
    /// every rank is decoded back to its bytes), then tiktoken's copy is dropped.
    fn o200k() -> Option<Tokenizer> {
        /// o200k's ordinary ranks are 0..199_998; its special tokens sit above them.
        const RANKS: u32 = 200_000;
        let bpe = tiktoken_rs::o200k_base().ok()?;
        let special = bpe.special_tokens();
        let mut bytes = Vec::with_capacity(2 << 20);
        let mut spans = Vec::with_capacity(RANKS as usize);
        let mut ranks = hashbrown::HashTable::with_capacity(RANKS as usize);
        for rank in 0..RANKS {
            let start = u32::try_from(bytes.len()).ok()?;
            if let Ok(token) = bpe.decode_bytes(&[rank]) {
                if !std::str::from_utf8(&token).is_ok_and(|t| special.contains(t)) {
                    bytes.extend_from_slice(&token);
                }
            }
            let end = u32::try_from(bytes.len()).ok()?;
            spans.push((start, end));
            if end > start {
                let hash =
                    |r: &tiktoken_rs::Rank| Vocabulary::hash(Vocabulary::slice(&bytes, &spans, *r));
                ranks.insert_unique(hash(&rank), rank, hash);
            }
        }
        bytes.shrink_to_fit();
        let split = regex_automata::meta::Regex::new(SPLIT).ok()?;
        Some(Tokenizer {
            vocabulary: Vocabulary {
                bytes,
                spans,
                ranks,
            },
            split,
        })
    }

    /// `text` cut where tiktoken's o200k pattern cuts it. The pattern's `\s+(?!\S)` (a run of
    /// whitespace not followed by a non-space) is matched here by `\s+`, then shortened: a run
    /// of two or more whitespace characters that a non-space follows gives up its last one,
    /// which starts the next piece (" word"), as the backtracker's look-ahead would. A run
    /// `\s+` matches holds no line break (`\s*[\r\n]+`, tried first, would have taken it), so
    /// it is always this alternative's.
    fn pieces<'a>(
        &'a self,
        text: &'a str,
        cache: &'a mut regex_automata::meta::Cache,
    ) -> impl Iterator<Item = &'a str> + 'a {
        let mut at = 0;
        std::iter::from_fn(move || {
            // Every character starts a piece of some alternative, so the next piece starts
            // where the last one ended: an anchored search, which finds its end in one
            // forward pass (an unanchored one also runs backwards to find its start).
            let input = Input::new(text).range(at..);
            let m = self
                .split
                .search_with(cache, &input.clone().anchored(Anchored::Yes))
                .or_else(|| self.split.search_with(cache, &input))?;
            let piece = &text[m.range()];
            let mut end = m.end();
            // `\s*[\r\n]+`'s pieces end in a line break; other pieces hold a non-space.
            if end < text.len()
                && !piece.ends_with(['\r', '\n'])
                && piece.chars().all(char::is_whitespace)
            {
                let mut chars = piece.chars();
                if let Some(last) = chars.next_back().filter(|_| !chars.as_str().is_empty()) {
                    end -= last.len_utf8();
                }
            }
            at = end;
            Some(&text[m.start()..end])
        })
    }

    fn count(&self, text: &str) -> u64 {
        thread_local! {
            /// The split's search state, one per thread: the regex's own pool serves only the
            /// thread that made it without a lock; every other thread took a mutex for each
            /// search (~470 instructions per request on average over two serving threads).
            static CACHE: std::cell::RefCell<Option<regex_automata::meta::Cache>> =
                const { std::cell::RefCell::new(None) };
        }
        CACHE.with(|cache| {
            let Ok(mut cache) = cache.try_borrow_mut() else {
                return self.count_with(text, &mut self.split.create_cache());
            };
            let cache = cache.get_or_insert_with(|| self.split.create_cache());
            self.count_with(text, cache)
        })
    }

    fn count_with(&self, text: &str, cache: &mut regex_automata::meta::Cache) -> u64 {
        self.pieces(text, cache)
            .map(|piece| {
                let b = piece.as_bytes();
                if b.len() == 1 || self.vocabulary.rank(b).is_some() {
                    1
                } else {
                    self.merged(b)
                }
            })
            .sum()
    }

    /// The tokens of a piece (two bytes or more) the vocabulary does not hold: its bytes merged
    /// pair by pair, the pair of lowest rank first (the leftmost of equals), until no pair is a
    /// token — tiktoken's merge, with a heap, so O(n log n) rather than O(n²): one long run of
    /// letters cannot stall a serving thread.
    fn merged(&self, piece: &[u8]) -> u64 {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;

        const NONE: tiktoken_rs::Rank = tiktoken_rs::Rank::MAX;
        let n = piece.len();
        // Parts as a linked list over their start offsets; `rank[i]`: the rank of the part
        // at `i` merged with the next one (NONE: not a token, or `i` is gone or last).
        let mut next: Vec<usize> = (1..=n).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let pair = |i: usize, next: &[usize]| -> tiktoken_rs::Rank {
            match next.get(i).and_then(|&j| next.get(j)) {
                Some(&k) => self.vocabulary.rank(&piece[i..k]).unwrap_or(NONE),
                None => NONE,
            }
        };
        let mut rank: Vec<tiktoken_rs::Rank> = (0..n).map(|i| pair(i, &next)).collect();
        let mut heap: BinaryHeap<Reverse<(tiktoken_rs::Rank, usize)>> = rank
            .iter()
            .enumerate()
            .filter(|(_, &r)| r != NONE)
            .map(|(i, &r)| Reverse((r, i)))
            .collect();
        let mut parts = n as u64;
        while let Some(Reverse((r, i))) = heap.pop() {
            // A stale entry: its part has merged since (a pair only ever grows, so a part's
            // new rank never equals an old one) or is gone.
            if rank[i] != r {
                continue;
            }
            let j = next[i];
            let k = next[j];
            next[i] = k;
            if k < n {
                prev[k] = i;
            }
            rank[j] = NONE;
            parts -= 1;
            rank[i] = pair(i, &next);
            if rank[i] != NONE {
                heap.push(Reverse((rank[i], i)));
            }
            if let Some(p) = prev.get(i).copied().filter(|&p| p < n) {
                rank[p] = pair(p, &next);
                if rank[p] != NONE {
                    heap.push(Reverse((rank[p], p)));
                }
            }
        }
        parts
    }
}

/// The prompt tokens of a chat request body (OpenAI or Anthropic): the text the model reads —
/// the messages' `content` (strings and text parts), `system`, `prompt`, `input` — plus a few
/// tokens of framing per message, as providers count them. JSON syntax, roles, images' base64
/// and parameters are not tokenized: counting them made the estimate larger than the
/// provider's count and cost a tokenizer pass over every byte. A body that is not that shape
/// is tokenized whole.
pub fn prompt(body: &[u8]) -> u64 {
    // One pass over the body where it is sure to count what the parser below would.
    match providers::openai::peek::prompt_text(body, PER_MESSAGE, count) {
        Some(n) => PER_REQUEST + n,
        None => prompt_parsed(body),
    }
}

/// Framing tokens per request (OpenAI's published accounting).
const PER_REQUEST: u64 = 3;

/// Framing tokens per message (OpenAI's published accounting).
const PER_MESSAGE: u64 = 3;

/// [`prompt`] by serde: any body, any escapes.
fn prompt_parsed(body: &[u8]) -> u64 {
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
            let mut n = 0;
            while let Some(m) = seq.next_element::<Message>()? {
                n += super::PER_MESSAGE + m.content.map_or(0, |c| c.0);
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
    match tokenizer() {
        Some(t) => t.count(text),
        None => (text.len() / 4) as u64,
    }
}

/// Loads the tokenizer on a thread of its own, once, ahead of the first request that needs it
/// (called when a key with a token or budget limit appears: a gateway without one never pays
/// the tokenizer's memory).
pub fn warm_in_background() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(|| {
            let _ = tokenizer();
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

    /// The split and the merges agree with tiktoken's `encode_ordinary` on random text built
    /// from the pattern's edge cases: runs of spaces before words, numbers and punctuation,
    /// line breaks inside whitespace, non-ASCII spaces, letters of every case class,
    /// combining marks, contractions, and long pieces (the heap merge).
    #[test]
    fn counts_what_tiktoken_counts() {
        const PARTS: &[&str] = &[
            " ", "  ", "   ", "\t", "\n", "\r\n", " \n ", "\u{3000}", "\u{a0}", "a", "b", "Z",
            "hello", " world", "The", "NASA", "é", "É", "ß", "日本", "ǅ", "ʰ", "\u{301}", "1",
            "23", "4567", "!", "?!", ".", "/", "'s", "'S", "'ll", "'", "\"", "😀", "x", "-", "_",
            "€", "\u{200b}", "\u{85}", "\u{2028}", "Ω", "ﬁ", "١٢",
        ];
        let tiktoken = tiktoken_rs::o200k_base().expect("o200k loads");
        let ours = super::tokenizer().expect("the tokenizer loads");
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..4000 {
            let len = rng.usize(1..24);
            let text: String = (0..len).map(|_| PARTS[rng.usize(..PARTS.len())]).collect();
            let want = tiktoken.encode_ordinary(&text).len() as u64;
            assert_eq!(ours.count(&text), want, "{text:?}");
        }
        // Long pieces: one run of letters (or of symbols) of 100 to 600 bytes.
        for alphabet in [
            "abcdefghijklmnopqrstuvwxyz",
            "aeiouxyz",
            "ab",
            "!?.#",
            "日本語",
        ] {
            let chars: Vec<char> = alphabet.chars().collect();
            for _ in 0..40 {
                let len = rng.usize(100..600);
                let text: String = (0..len).map(|_| chars[rng.usize(..chars.len())]).collect();
                let want = tiktoken.encode_ordinary(&text).len() as u64;
                assert_eq!(ours.count(&text), want, "{text:?}");
            }
        }
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

    /// The one-pass reading of a prompt counts what serde's counts wherever it answers, on
    /// random bodies built from the shapes' edge cases (escapes, parts, nested lists, numbers,
    /// nulls, duplicates, non-ASCII keys, objects where lists belong, trailing bytes), and it
    /// answers for the bodies clients send (else every request would pay for the parser).
    #[test]
    fn one_pass_prompt_counts_what_the_parser_counts() {
        use providers::openai::peek::prompt_text;
        let fast = |body: &[u8]| prompt_text(body, super::PER_MESSAGE, super::count);
        for common in [
            r#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello world"}],"stream":true}"#,
            r#"{"model":"c","max_tokens":9,"system":"hi","messages":[{"role":"user","content":[{"type":"text","text":"hello"},{"type":"image","source":{"data":"AAAA"}}]}]}"#,
            r#" {"input": ["a b", "c"], "model": "e"} "#,
        ] {
            let n = fast(common.as_bytes());
            assert!(n.is_some(), "{common}");
            assert_eq!(
                n.map(|n| n + 3),
                Some(super::prompt_parsed(common.as_bytes()))
            );
        }
        const VALUES: &[&str] = &[
            r#""hello world""#,
            r#""hello\nworld""#,
            r#""\u00e9t\u00e9""#,
            r#""日本 語""#,
            "5",
            "-1.5",
            "1e400",
            "true",
            "null",
            "{}",
            "[]",
            r#"["a b", 7, null]"#,
            r#"[{"type":"text","text":"hi there"},{"text":"x","text":"y z"}]"#,
            r#"[{"text":5},{"text":["a"]},{"text":{"text":"a"}},["nested"],{"te\u0078t":"q"}]"#,
            r#"{"text":"not read"}"#,
            r#"[{"tëxt":"a"}]"#,
            "[1,2",
            r#""tab	in""#,
        ];
        const KEYS: &[&str] = &[
            "messages", "system", "prompt", "input", "model", "stream", "x", "content", "ké",
        ];
        let mut rng = fastrand::Rng::with_seed(11);
        let value = |rng: &mut fastrand::Rng| VALUES[rng.usize(..VALUES.len())];
        let message = |rng: &mut fastrand::Rng| -> String {
            if rng.u8(..20) == 0 {
                return value(rng).to_owned();
            }
            let members: Vec<String> = (0..rng.usize(0..4))
                .map(|_| {
                    let key = ["content", "role", "name", "content"][rng.usize(..4)];
                    format!(r#""{key}":{}"#, value(rng))
                })
                .collect();
            format!("{{{}}}", members.join(","))
        };
        let (mut answered, mut total) = (0, 0);
        for _ in 0..20_000 {
            let members: Vec<String> = (0..rng.usize(0..5))
                .map(|_| {
                    let key = KEYS[rng.usize(..KEYS.len())];
                    let v = if key == "messages" && rng.bool() {
                        let list: Vec<String> =
                            (0..rng.usize(0..4)).map(|_| message(&mut rng)).collect();
                        format!("[{}]", list.join(", "))
                    } else {
                        value(&mut rng).to_owned()
                    };
                    format!(r#""{key}": {v}"#)
                })
                .collect();
            let tail = ["", " ", "x", "}"][rng.usize(..4)];
            let body = format!("{{{}}}{tail}", members.join(","));
            total += 1;
            if let Some(n) = fast(body.as_bytes()) {
                answered += 1;
                assert_eq!(n + 3, super::prompt_parsed(body.as_bytes()), "{body}");
            }
        }
        // Most generated bodies hold something it leaves to the parser; enough do not.
        assert!(answered > total / 20, "{answered} of {total}");
    }
}
