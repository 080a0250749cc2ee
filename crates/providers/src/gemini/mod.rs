//! Google Gemini (Google AI `generativelanguage` v1beta) wire format: `generateContent` and
//! `streamGenerateContent?alt=sse`.
//!
//! Function calls carry no id on most Gemini models: parsers synthesize stable ids (see
//! [`call_id`]) and renderers find a tool result's function name from the id of the call it
//! answers, because Gemini matches results to calls by name.

pub mod error;
pub mod request;
pub mod response;
pub mod schema;
pub mod stream;
pub mod types;

/// The path of a call to `model`: `/v1beta/models/{model}:generateContent`, or
/// `/v1beta/models/{model}:streamGenerateContent?alt=sse` when `stream`. A leading `models/` in
/// the name is accepted.
pub fn path(model: &str, stream: bool) -> String {
    let model = model.strip_prefix("models/").unwrap_or(model);
    if stream {
        format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/v1beta/models/{model}:generateContent")
    }
}

/// A deterministic id for a function call that came without one: `call_` and 24 hex digits of a
/// hash of `seed` (the response id or the message position), the call's position and its name
/// and arguments. The same call always gets the same id, so a streamed and a buffered answer
/// agree, and calls of different turns do not collide.
pub fn call_id(seed: &str, position: usize, name: &str, arguments: &str) -> String {
    let mut h = Fnv::new();
    h.write(seed.as_bytes());
    h.write(&[0]);
    h.write(&position.to_le_bytes());
    h.write(name.as_bytes());
    h.write(&[0]);
    h.write(arguments.as_bytes());
    let a = h.finish();
    h.write(&[0xff]);
    let b = h.finish();
    format!("call_{a:016x}{:08x}", b >> 32)
}

/// 64-bit FNV-1a.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            path("models/gemini-2.0-flash", false),
            "/v1beta/models/gemini-2.0-flash:generateContent"
        );
        assert_eq!(
            path("gemini-2.0-flash", true),
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
        );
    }

    #[test]
    fn call_ids_are_stable_and_distinct() {
        let a = call_id("r1", 0, "f", "{}");
        assert_eq!(a, call_id("r1", 0, "f", "{}"));
        assert_eq!(a.len(), 5 + 24);
        assert_ne!(a, call_id("r1", 1, "f", "{}"));
        assert_ne!(a, call_id("r2", 0, "f", "{}"));
    }
}
