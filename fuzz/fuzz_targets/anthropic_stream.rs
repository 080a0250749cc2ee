//! An Anthropic Messages stream: bytes in any chunking → SSE framer → `event:` name and `data` →
//! `providers::anthropic::stream::Decoder`, then the canonical events through every encoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use providers::anthropic::stream::Decoder;
use providers::sse;
use switchyard_fuzz::{check_stream, reencode, sse_events};

fuzz_target!(|input: &[u8]| {
    let mut decoder = Decoder::new();
    let mut out = Vec::new();
    for event in sse_events(input) {
        if let Some(data) = sse::data(&event) {
            let _ = decoder.decode(sse::event_name(&event), &data, &mut out);
        }
    }
    let _ = decoder.is_done();
    check_stream(&out);
    reencode(&out);
});
