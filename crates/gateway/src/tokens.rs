//! Counting prompt tokens for admission, with a real tokenizer (OpenAI's `o200k_base`, through
//! tiktoken). Only requests whose key has a token or budget limit pay for it; the count is an
//! estimate for reservation — the provider's reported usage settles the real amount.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

fn bpe() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
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
}
