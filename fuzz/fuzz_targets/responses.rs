//! The response and error parsers of every format: `providers::{openai,anthropic,gemini,bedrock}::
//! response::parse`, Anthropic's token count, and each `error::parse`. A response one accepts is
//! rendered to every format and folded into a stream (`to_events`); rendering to its own format
//! (with `FUZZ_ROUNDTRIP=1`)
//! reaches a fixed point as for requests.
#![no_main]

use libfuzzer_sys::fuzz_target;
use providers::canonical::ChatResponse;
use providers::{anthropic, bedrock, gemini, openai};

fn render_all(resp: &ChatResponse) -> [Option<Vec<u8>>; 4] {
    [
        Some(openai::response::render(resp)),
        Some(anthropic::response::render(resp)),
        gemini::response::render(resp).ok(),
        bedrock::response::render(resp).ok(),
    ]
}

fn parse(format: usize, body: &[u8]) -> Result<ChatResponse, providers::wire::WireError> {
    match format {
        0 => openai::response::parse(body),
        1 => anthropic::response::parse(body),
        2 => gemini::response::parse(body),
        _ => bedrock::response::parse(body),
    }
}

const NAMES: [&str; 4] = ["openai", "anthropic", "gemini", "bedrock"];

fuzz_target!(|body: &[u8]| {
    let _ = anthropic::response::parse_token_count(body);
    let _ = openai::error::parse(body);
    let _ = anthropic::error::parse(body);
    let _ = gemini::error::parse(body);
    let _ = bedrock::error::parse(body, None);
    let _ = bedrock::error::parse(body, Some("ThrottlingException:http://internal"));
    for format in 0..4 {
        let Ok(resp) = parse(format, body) else {
            continue;
        };
        let events = resp.to_events();
        switchyard_fuzz::check_stream(&events);
        let rendered = render_all(&resp);
        if !switchyard_fuzz::roundtrip() {
            continue;
        }
        let Some(first) = &rendered[format] else {
            continue;
        };
        let again = match parse(format, first) {
            Ok(again) => again,
            Err(e) => panic!(
                "{} response: our own rendering does not parse: {e}\nrendered: {}",
                NAMES[format],
                String::from_utf8_lossy(first)
            ),
        };
        let second = render_all(&again)[format].clone();
        assert_eq!(
            second.as_deref().map(String::from_utf8_lossy),
            Some(String::from_utf8_lossy(first)),
            "{} response: rendering is not stable across a parse",
            NAMES[format]
        );
    }
});
