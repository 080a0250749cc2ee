//! The SSE framer (`providers::sse`): any bytes in any chunking. Checks that the events and the
//! pending tail together are exactly the bytes pushed, that every event ends at its first blank
//! line, that the chunking does not change the events, and that `data`/`event_name` never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use providers::sse;
use switchyard_fuzz::{chunks, frame, payload};

fuzz_target!(|input: &[u8]| {
    let (events, tail) = frame(&chunks(input));
    let (whole, whole_tail) = frame(&[payload(input)]);
    assert_eq!(events, whole, "the chunking changed the SSE events");
    assert_eq!(tail, whole_tail, "the chunking changed the SSE pending tail");
    for event in events.iter().chain(std::iter::once(&tail)) {
        if let Some(data) = sse::data(event) {
            assert!(data.len() <= event.len(), "sse::data grew the event");
        }
        if let Some(name) = sse::event_name(event) {
            assert!(name.len() <= event.len());
        }
    }
});
