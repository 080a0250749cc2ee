//! An OpenAI Chat Completions stream: bytes in any chunking → SSE framer → `data` →
//! `providers::openai::stream::Decoder`, then the canonical events through every encoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use providers::openai::stream::Decoder;
use providers::sse;
use switchyard_fuzz::{check_stream, reencode, sse_events};

fuzz_target!(|input: &[u8]| {
    let mut decoder = Decoder::new();
    let mut out = Vec::new();
    for event in sse_events(input) {
        if let Some(data) = sse::data(&event) {
            // Keep going after a malformed chunk: the decoder must survive any sequence.
            let _ = decoder.decode(&data, &mut out);
        }
    }
    let _ = decoder.is_done();
    check_stream(&out);
    reencode(&out);
});
