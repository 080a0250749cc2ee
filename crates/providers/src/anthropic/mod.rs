//! Anthropic Messages API wire format: `POST /v1/messages` (streamed and not) and
//! `POST /v1/messages/count_tokens`, to and from the canonical model.
//!
//! `types` spells the JSON, `request`, `response` and `stream` translate, `error` reads and
//! writes error bodies, and `content` (private) maps content blocks for all of them. Like the
//! rest of the crate it must not do IO.

mod content;
pub mod error;
pub mod request;
pub mod response;
pub mod stream;
pub mod types;
