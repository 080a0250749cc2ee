//! OpenAI Chat Completions, Completions and Embeddings wire format.

pub mod error;
pub mod peek;
pub mod request;
pub mod response;
pub mod stream;
pub mod types;
