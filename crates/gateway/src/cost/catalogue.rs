//! The built-in price list: public list prices of common hosted models, so a target without a
//! `price:` in the configuration still gets an honest cost. Looked up once per target when a
//! configuration is built (and once per `provider/model` direct route, then remembered), never
//! per request. A `price:` in the configuration always wins; a model that is not listed has no
//! price (its cost is `null`, never a made-up 0).
//!
//! What is listed, and only what could be verified in two public sources, checked 2026-11-21:
//! the providers' own pricing pages (platform.openai.com/docs/pricing,
//! docs.anthropic.com/en/docs/about-claude/pricing, ai.google.dev/gemini-api/docs/pricing,
//! groq.com/pricing, aws.amazon.com/bedrock/pricing) as published, cross-checked against
//! LiteLLM's `model_prices_and_context_window.json` (BerriAI/litellm at commit 00035b69) and
//! simonw/llm-prices (`data/*.json`). Left out on purpose: Azure OpenAI (a deployment name is
//! not a model name), Mistral (its `-latest` aliases move between models of different prices),
//! DeepSeek (prices by time of day), self-hosted servers and aggregators.
//!
//! Standard tier, USD per million tokens: `input`, `output`, `cache_read` (cache hit) and
//! `cache_write` (Anthropic: the default 5-minute write). Reasoning tokens are billed at the
//! output price by every listed model. Not modelled (set `price:` if they matter to you):
//! long-context surcharges (Claude Sonnet 4/4.5 above 200k input tokens, Gemini 2.5 Pro above
//! 200k, Gemini 1.5 above 128k), audio input prices, batch and priority tiers, and AWS
//! regions priced differently from us-east-1. Where no cache price could be verified, cache
//! reads are priced as input, as for a configured price without `cache_read`.
//!
//! Names: the upstream model name is looked up as is first; if it is not listed, a dated
//! snapshot falls back to its family name (see [`lookup`]). Snapshots priced differently from
//! their family (`gpt-4o-2024-05-13`) are listed themselves, so the exact match wins.

use crate::config::{Price, ProviderKind};

/// The price the catalogue has for `model` served by a provider of `kind`, if any.
///
/// - OpenAI (`type: openai`): exact name, else without a `-YYYY-MM-DD` snapshot suffix
///   (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`).
/// - Anthropic: exact, else without `-YYYYMMDD` or `-latest` (`claude-3-5-haiku-20241022`,
///   `claude-3-5-haiku-latest` → `claude-3-5-haiku`).
/// - Gemini: `models/` dropped; exact, else without a `-NNN` version or `-latest`
///   (`gemini-2.0-flash-001` → `gemini-2.0-flash`).
/// - Bedrock: Anthropic models by their Bedrock id, with an optional cross-region prefix
///   (`us.`, `eu.`, `apac.`, `jp.`, `au.`, `ca.`, `global.`), `anthropic.` and a `-vN[:M]`
///   suffix (`us.anthropic.claude-3-5-haiku-20241022-v1:0`). From the Claude 4.5 generation on,
///   AWS charges 10% more through a geographic prefix than in-region or `global.`.
/// - Groq (`type: groq`): exact.
pub fn lookup(kind: &ProviderKind, model: &str) -> Option<Price> {
    match kind {
        ProviderKind::OpenAi => openai(model),
        ProviderKind::Anthropic { .. } => anthropic(model).map(|e| e.price),
        ProviderKind::Gemini => gemini(model),
        ProviderKind::Bedrock(_) => bedrock(model),
        ProviderKind::OpenAiCompatible {
            preset: Some("groq"),
        } => find(GROQ, model),
        ProviderKind::OpenAiCompatible { .. }
        | ProviderKind::Azure { .. }
        | ProviderKind::Mock(_) => None,
    }
}

/// A list price; reasoning is billed as output.
const fn p(input: f64, output: f64, cache_read: f64, cache_write: f64) -> Price {
    Price {
        input,
        output,
        cache_read,
        cache_write,
        reasoning: output,
    }
}

/// OpenAI has no charge for writing its automatic cache: writes are priced as input (OpenAI
/// never reports them anyway).
const fn oa(input: f64, cache_read: f64, output: f64) -> Price {
    p(input, output, cache_read, input)
}

const OPENAI: &[(&str, Price)] = &[
    ("gpt-4o", oa(2.50, 1.25, 10.00)),
    // The first gpt-4o snapshot kept its launch price and has no cache discount.
    ("gpt-4o-2024-05-13", oa(5.00, 5.00, 15.00)),
    ("gpt-4o-mini", oa(0.15, 0.075, 0.60)),
    ("gpt-4.1", oa(2.00, 0.50, 8.00)),
    ("gpt-4.1-mini", oa(0.40, 0.10, 1.60)),
    ("gpt-4.1-nano", oa(0.10, 0.025, 0.40)),
    ("o1", oa(15.00, 7.50, 60.00)),
    ("o1-mini", oa(1.10, 0.55, 4.40)),
    // o3 after the June 2025 price cut.
    ("o3", oa(2.00, 0.50, 8.00)),
    ("o3-mini", oa(1.10, 0.55, 4.40)),
    ("o4-mini", oa(1.10, 0.275, 4.40)),
    ("gpt-5", oa(1.25, 0.125, 10.00)),
    ("gpt-5-mini", oa(0.25, 0.025, 2.00)),
    ("gpt-5-nano", oa(0.05, 0.005, 0.40)),
    ("gpt-5.1", oa(1.25, 0.125, 10.00)),
    ("gpt-5.2", oa(1.75, 0.175, 14.00)),
];

/// Whether and how a Claude model is sold on Bedrock at the prices below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnBedrock {
    /// Not listed for Bedrock (its Bedrock price could not be verified).
    No,
    /// Same price in-region and through any cross-region profile.
    Same,
    /// Claude 4.5 generation on: geographic profiles (`us.`, `eu.`, …) cost 10% more.
    GeoPremium,
}

#[derive(Debug, Clone, Copy)]
struct Claude {
    price: Price,
    bedrock: OnBedrock,
}

const fn claude(
    input: f64,
    cache_write: f64,
    cache_read: f64,
    output: f64,
    bedrock: OnBedrock,
) -> Claude {
    Claude {
        price: p(input, output, cache_read, cache_write),
        bedrock,
    }
}

/// Family names; dated ids and `-latest` fall back to them. Columns as Anthropic's table:
/// input, 5-minute cache write, cache hit, output.
const ANTHROPIC: &[(&str, Claude)] = &[
    (
        "claude-3-haiku",
        claude(0.25, 0.30, 0.03, 1.25, OnBedrock::Same),
    ),
    (
        "claude-3-opus",
        claude(15.00, 18.75, 1.50, 75.00, OnBedrock::Same),
    ),
    (
        "claude-3-5-haiku",
        claude(0.80, 1.00, 0.08, 4.00, OnBedrock::Same),
    ),
    // Bedrock moved Claude 3.5 Sonnet to extended-access pricing: not listed there.
    (
        "claude-3-5-sonnet",
        claude(3.00, 3.75, 0.30, 15.00, OnBedrock::No),
    ),
    (
        "claude-3-7-sonnet",
        claude(3.00, 3.75, 0.30, 15.00, OnBedrock::Same),
    ),
    (
        "claude-sonnet-4",
        claude(3.00, 3.75, 0.30, 15.00, OnBedrock::Same),
    ),
    (
        "claude-sonnet-4-0",
        claude(3.00, 3.75, 0.30, 15.00, OnBedrock::Same),
    ),
    (
        "claude-opus-4",
        claude(15.00, 18.75, 1.50, 75.00, OnBedrock::Same),
    ),
    (
        "claude-opus-4-0",
        claude(15.00, 18.75, 1.50, 75.00, OnBedrock::Same),
    ),
    (
        "claude-opus-4-1",
        claude(15.00, 18.75, 1.50, 75.00, OnBedrock::Same),
    ),
    (
        "claude-sonnet-4-5",
        claude(3.00, 3.75, 0.30, 15.00, OnBedrock::GeoPremium),
    ),
    (
        "claude-haiku-4-5",
        claude(1.00, 1.25, 0.10, 5.00, OnBedrock::GeoPremium),
    ),
    (
        "claude-opus-4-5",
        claude(5.00, 6.25, 0.50, 25.00, OnBedrock::GeoPremium),
    ),
    (
        "claude-sonnet-4-6",
        claude(3.00, 3.75, 0.30, 15.00, OnBedrock::GeoPremium),
    ),
    (
        "claude-opus-4-6",
        claude(5.00, 6.25, 0.50, 25.00, OnBedrock::GeoPremium),
    ),
];

/// Gemini Developer API, standard tier, text input; cache writes are billed as input.
const fn ge(input: f64, cache_read: f64, output: f64) -> Price {
    p(input, output, cache_read, input)
}

const GEMINI: &[(&str, Price)] = &[
    ("gemini-2.5-pro", ge(1.25, 0.125, 10.00)),
    ("gemini-2.5-flash", ge(0.30, 0.03, 2.50)),
    ("gemini-2.5-flash-lite", ge(0.10, 0.01, 0.40)),
    // No verified cache price for these: cache reads priced as input.
    ("gemini-2.0-flash", ge(0.10, 0.10, 0.40)),
    ("gemini-2.0-flash-lite", ge(0.075, 0.075, 0.30)),
    ("gemini-1.5-flash", ge(0.075, 0.075, 0.30)),
    ("gemini-1.5-flash-8b", ge(0.0375, 0.0375, 0.15)),
    ("gemini-1.5-pro", ge(1.25, 1.25, 5.00)),
];

/// Groq's on-demand prices; no cache discount listed.
const fn gq(input: f64, output: f64) -> Price {
    p(input, output, input, input)
}

const GROQ: &[(&str, Price)] = &[
    ("llama-3.1-8b-instant", gq(0.05, 0.08)),
    ("llama-3.3-70b-versatile", gq(0.59, 0.79)),
    ("meta-llama/llama-4-scout-17b-16e-instruct", gq(0.11, 0.34)),
];

fn find<T: Copy>(table: &[(&str, T)], name: &str) -> Option<T> {
    table.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

fn openai(model: &str) -> Option<Price> {
    find(OPENAI, model).or_else(|| find(OPENAI, strip_dashed_date(model)?))
}

fn anthropic(model: &str) -> Option<Claude> {
    find(ANTHROPIC, model).or_else(|| {
        let family = model
            .strip_suffix("-latest")
            .or_else(|| strip_digits(model, 8))?;
        find(ANTHROPIC, family)
    })
}

fn gemini(model: &str) -> Option<Price> {
    let model = model.strip_prefix("models/").unwrap_or(model);
    find(GEMINI, model).or_else(|| {
        let family = model
            .strip_suffix("-latest")
            .or_else(|| strip_digits(model, 3))?;
        find(GEMINI, family)
    })
}

/// Cross-region inference profile prefixes of Bedrock model ids.
const GEO: &[&str] = &["us", "eu", "apac", "jp", "au", "ca"];

fn bedrock(model: &str) -> Option<Price> {
    let (geo, rest) = match model.split_once('.') {
        Some((prefix, rest)) if GEO.contains(&prefix) => (true, rest),
        Some(("global", rest)) => (false, rest),
        _ => (false, model),
    };
    let rest = rest.strip_prefix("anthropic.")?;
    let name = strip_bedrock_version(rest);
    let c = anthropic(name)?;
    match c.bedrock {
        OnBedrock::No => None,
        OnBedrock::Same => Some(c.price),
        OnBedrock::GeoPremium if geo => Some(scaled(c.price, 1.1)),
        OnBedrock::GeoPremium => Some(c.price),
    }
}

fn scaled(p: Price, by: f64) -> Price {
    Price {
        input: p.input * by,
        output: p.output * by,
        cache_read: p.cache_read * by,
        cache_write: p.cache_write * by,
        reasoning: p.reasoning * by,
    }
}

/// `name` without a trailing `-YYYY-MM-DD`.
fn strip_dashed_date(name: &str) -> Option<&str> {
    let (head, date) = name.split_at_checked(name.len().checked_sub(11)?)?;
    let b = date.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    (b[0] == b'-' && digits(1..5) && b[5] == b'-' && digits(6..8) && b[8] == b'-' && digits(9..11))
        .then_some(head)
}

/// `name` without a trailing `-` and exactly `n` digits.
fn strip_digits(name: &str, n: usize) -> Option<&str> {
    let (head, tail) = name.rsplit_once('-')?;
    (tail.len() == n && tail.bytes().all(|b| b.is_ascii_digit())).then_some(head)
}

/// A Bedrock id without its `-vN` or `-vN:M` version suffix.
fn strip_bedrock_version(name: &str) -> &str {
    let Some((head, tail)) = name.rsplit_once("-v") else {
        return name;
    };
    let (major, minor) = tail.split_once(':').unwrap_or((tail, "0"));
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if number(major) && number(minor) {
        head
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Bedrock;
    use crate::config::Secret;

    fn bedrock_kind() -> ProviderKind {
        ProviderKind::Bedrock(Bedrock {
            region: "us-east-1".into(),
            access_key_id: Secret::new("AKIDEXAMPLE"),
            secret_access_key: Secret::new("secret"),
            session_token: None,
        })
    }

    fn io(p: Option<Price>) -> Option<(f64, f64, f64, f64)> {
        p.map(|p| (p.input, p.output, p.cache_read, p.cache_write))
    }

    #[test]
    fn openai_exact_then_without_the_snapshot_date() {
        let k = ProviderKind::OpenAi;
        assert_eq!(
            io(lookup(&k, "gpt-4o-mini")),
            Some((0.15, 0.60, 0.075, 0.15))
        );
        assert_eq!(
            io(lookup(&k, "gpt-4o-mini-2024-07-18")),
            io(lookup(&k, "gpt-4o-mini"))
        );
        assert_eq!(
            io(lookup(&k, "gpt-4o-2024-08-06")),
            Some((2.5, 10.0, 1.25, 2.5))
        );
        // A snapshot with its own price is matched exactly, not by the family rule.
        assert_eq!(
            io(lookup(&k, "gpt-4o-2024-05-13")),
            Some((5.0, 15.0, 5.0, 5.0))
        );
        assert_eq!(io(lookup(&k, "o3-2025-04-16")), Some((2.0, 8.0, 0.5, 2.0)));
        assert_eq!(lookup(&k, "gpt-5").map(|p| p.reasoning), Some(10.0));
        // Only the date goes: other suffixes are other models.
        assert!(lookup(&k, "gpt-4o-mini-search-preview").is_none());
        assert!(lookup(&k, "o1-preview-2024-09-12").is_none());
        assert!(lookup(&k, "gpt-4o-2024-08").is_none());
        assert!(lookup(&k, "unknown-model").is_none());
    }

    #[test]
    fn anthropic_families_dates_and_aliases() {
        let k = ProviderKind::Anthropic {
            version: "2023-06-01".into(),
        };
        let haiku = Some((0.80, 4.00, 0.08, 1.00));
        assert_eq!(io(lookup(&k, "claude-3-5-haiku-20241022")), haiku);
        assert_eq!(io(lookup(&k, "claude-3-5-haiku-latest")), haiku);
        assert_eq!(
            io(lookup(&k, "claude-sonnet-4-20250514")),
            Some((3.0, 15.0, 0.3, 3.75))
        );
        assert_eq!(
            io(lookup(&k, "claude-sonnet-4-0")),
            Some((3.0, 15.0, 0.3, 3.75))
        );
        assert_eq!(
            io(lookup(&k, "claude-opus-4-1-20250805")),
            Some((15.0, 75.0, 1.5, 18.75))
        );
        assert_eq!(
            io(lookup(&k, "claude-haiku-4-5-20251001")),
            Some((1.0, 5.0, 0.1, 1.25))
        );
        assert_eq!(
            io(lookup(&k, "claude-opus-4-5")),
            Some((5.0, 25.0, 0.5, 6.25))
        );
        assert!(lookup(&k, "claude-2.1").is_none());
        // The same name through another protocol is not Anthropic's price.
        assert!(lookup(&ProviderKind::OpenAi, "claude-3-5-haiku-20241022").is_none());
    }

    #[test]
    fn bedrock_ids_prefixes_and_the_regional_premium() {
        let k = bedrock_kind();
        let haiku35 = Some((0.80, 4.00, 0.08, 1.00));
        assert_eq!(
            io(lookup(&k, "anthropic.claude-3-5-haiku-20241022-v1:0")),
            haiku35
        );
        assert_eq!(
            io(lookup(&k, "us.anthropic.claude-3-5-haiku-20241022-v1:0")),
            haiku35
        );
        assert_eq!(
            io(lookup(&k, "anthropic.claude-sonnet-4-20250514-v1:0")),
            Some((3.0, 15.0, 0.3, 3.75))
        );
        let sonnet45 = |id| lookup(&k, id).map(|p| p.input);
        assert_eq!(
            sonnet45("anthropic.claude-sonnet-4-5-20250929-v1:0"),
            Some(3.0)
        );
        assert_eq!(
            sonnet45("global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
            Some(3.0)
        );
        let geo = sonnet45("eu.anthropic.claude-sonnet-4-5-20250929-v1:0").unwrap();
        assert!((geo - 3.3).abs() < 1e-12, "{geo}");
        assert!(
            (lookup(&k, "us.anthropic.claude-opus-4-6-v1")
                .unwrap()
                .output
                - 27.5)
                .abs()
                < 1e-12
        );
        // Not sold at the list price on Bedrock, or not an Anthropic model: no price.
        assert!(lookup(&k, "anthropic.claude-3-5-sonnet-20241022-v2:0").is_none());
        assert!(lookup(&k, "amazon.nova-pro-v1:0").is_none());
        assert!(lookup(&k, "xx.anthropic.claude-3-5-haiku-20241022-v1:0").is_none());
    }

    #[test]
    fn gemini_and_groq() {
        let g = ProviderKind::Gemini;
        assert_eq!(
            io(lookup(&g, "gemini-2.5-flash")),
            Some((0.30, 2.50, 0.03, 0.30))
        );
        assert_eq!(
            io(lookup(&g, "models/gemini-2.0-flash-001")),
            Some((0.10, 0.40, 0.10, 0.10))
        );
        assert_eq!(
            lookup(&g, "gemini-1.5-pro-002").map(|p| p.output),
            Some(5.0)
        );
        assert!(lookup(&g, "gemini-2.5-flash-preview-04-17").is_none());
        let groq = ProviderKind::OpenAiCompatible {
            preset: Some("groq"),
        };
        assert_eq!(
            io(lookup(&groq, "llama-3.3-70b-versatile")),
            Some((0.59, 0.79, 0.59, 0.59))
        );
        // Self-hosted, other hosts and Azure deployments: nothing is assumed.
        for kind in [
            ProviderKind::OpenAiCompatible { preset: None },
            ProviderKind::OpenAiCompatible {
                preset: Some("vllm"),
            },
            ProviderKind::Azure {
                api_version: "2024-10-21".into(),
            },
        ] {
            assert!(lookup(&kind, "gpt-4o-mini").is_none(), "{kind:?}");
        }
    }

    #[test]
    fn every_entry_is_sane() {
        let tables = OPENAI
            .iter()
            .chain(GEMINI)
            .chain(GROQ)
            .map(|(n, p)| (*n, *p))
            .chain(ANTHROPIC.iter().map(|(n, c)| (*n, c.price)));
        for (name, p) in tables {
            for v in [p.input, p.output, p.cache_read, p.cache_write, p.reasoning] {
                assert!(v.is_finite() && v > 0.0 && v <= 200.0, "{name}: {p:?}");
            }
            assert!(
                p.cache_read <= p.input,
                "{name}: a cache hit costs more than input"
            );
            assert!(p.output >= p.input, "{name}: output cheaper than input");
        }
    }
}
