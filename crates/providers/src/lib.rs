//! Pure wire types and translation for every provider format.
//!
//! This crate owns what goes over the wire: each provider's JSON shapes, the canonical types every
//! format translates to and from (hub and spoke, never pairwise), the SSE framing, and the
//! deterministic answers of the built-in `mock` provider. It must not do IO: no tokio, no HTTP
//! client, no SQL, no environment.

pub mod anthropic;
pub mod bedrock;
pub mod canonical;
pub mod gemini;
pub mod mock;
pub mod openai;
pub mod sse;
pub mod wire;
