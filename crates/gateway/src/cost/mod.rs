//! What a request cost, in USD, from the provider-reported usage and the target's price (the
//! configured `price:`, else the built-in [`catalogue`]).

pub mod catalogue;

use crate::config::Price;

/// Token counts in the canonical convention: `input` excludes cache reads and writes,
/// `output` includes reasoning tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub reasoning: u64,
}

impl Tokens {
    /// Every token of the request, prompt (cached or not) and output.
    pub fn total(&self) -> u64 {
        self.input + self.output + self.cache_read + self.cache_write
    }

    /// From OpenAI's usage, where `prompt_tokens` includes cached tokens and
    /// `completion_tokens` includes reasoning tokens.
    pub fn from_openai(u: &providers::openai::peek::Usage) -> Self {
        let cached = u.cached_tokens().min(u.prompt_tokens);
        Tokens {
            input: u.prompt_tokens - cached,
            output: u.completion_tokens,
            cache_read: cached,
            cache_write: 0,
            reasoning: u.reasoning_tokens(),
        }
    }
}

/// USD for these tokens. Reasoning tokens are part of `output` and billed at the output price
/// unless the price sets its own `reasoning` rate.
pub fn usd(price: &Price, t: &Tokens) -> f64 {
    let reasoning = t.reasoning.min(t.output);
    let plain_output = t.output - reasoning;
    (t.input as f64 * price.input
        + plain_output as f64 * price.output
        + reasoning as f64 * price.reasoning
        + t.cache_read as f64 * price.cache_read
        + t.cache_write as f64 * price.cache_write)
        / 1_000_000.0
}

/// A cost as JSON/header text: plain decimal, no exponent, at most 10 decimals.
pub fn format(usd: f64) -> String {
    let s = format!("{usd:.10}");
    let s = s.trim_end_matches('0');
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_each_kind() {
        let p = Price {
            input: 0.15,
            output: 0.60,
            cache_read: 0.075,
            cache_write: 0.15,
            reasoning: 0.60,
        };
        let t = Tokens {
            input: 1000,
            output: 500,
            cache_read: 2000,
            cache_write: 0,
            reasoning: 100,
        };
        let expected = (1000.0 * 0.15 + 400.0 * 0.60 + 100.0 * 0.60 + 2000.0 * 0.075) / 1e6;
        assert!((usd(&p, &t) - expected).abs() < 1e-15);
        assert_eq!(format(0.00000015), "0.00000015");
        assert_eq!(format(0.0), "0");
        assert_eq!(format(1.5), "1.5");
    }

    #[test]
    fn openai_cached_tokens_are_not_billed_twice() {
        let u: providers::openai::peek::Usage = serde_json::from_str(
            r#"{"prompt_tokens":100,"completion_tokens":10,"prompt_tokens_details":{"cached_tokens":60}}"#,
        )
        .unwrap();
        let t = Tokens::from_openai(&u);
        assert_eq!((t.input, t.cache_read, t.output), (40, 60, 10));
    }
}
