//! The request parsers of every format: `providers::{openai,anthropic,gemini,bedrock}::request`
//! (and Anthropic's `count_tokens`). The same bytes go to each parser; a request one accepts is
//! rendered to every format (rendering may refuse, never panic), and rendering to its own format
//! (with `FUZZ_ROUNDTRIP=1`)
//! reaches a fixed point: render → parse succeeds, and rendering that again gives the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use providers::canonical::ChatRequest;
use providers::openai::request::Flavor;
use providers::{anthropic, bedrock, gemini, openai};

/// Renders `req` in every format, returning the renderings (`None` where refused) in the order
/// openai, anthropic, gemini, bedrock.
fn render_all(req: &ChatRequest) -> [Option<Vec<u8>>; 4] {
    let _ = openai::request::render_as(req, Flavor::Compatible);
    let _ = anthropic::request::render_count_tokens(req);
    [
        Some(openai::request::render(req)),
        anthropic::request::render(req).ok(),
        gemini::request::render(req).ok(),
        bedrock::request::render(req).ok(),
    ]
}

fn parse(format: usize, body: &[u8]) -> Result<ChatRequest, providers::wire::WireError> {
    match format {
        0 => openai::request::parse(body),
        1 => anthropic::request::parse(body),
        2 => gemini::request::parse(body),
        _ => bedrock::request::parse(body),
    }
}

const NAMES: [&str; 4] = ["openai", "anthropic", "gemini", "bedrock"];

fuzz_target!(|body: &[u8]| {
    let _ = anthropic::request::parse_count_tokens(body);
    for format in 0..4 {
        let Ok(req) = parse(format, body) else {
            continue;
        };
        let rendered = render_all(&req);
        if !switchyard_fuzz::roundtrip() {
            continue;
        }
        let Some(first) = &rendered[format] else {
            continue;
        };
        let again = match parse(format, first) {
            Ok(again) => again,
            Err(e) => panic!(
                "{} request: our own rendering does not parse: {e}\nrendered: {}",
                NAMES[format],
                String::from_utf8_lossy(first)
            ),
        };
        let second = render_all(&again)[format].clone();
        assert_eq!(
            second.as_deref().map(String::from_utf8_lossy),
            Some(String::from_utf8_lossy(first)),
            "{} request: rendering is not stable across a parse",
            NAMES[format]
        );
    }
});
