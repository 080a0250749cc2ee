//! HTTP handlers: thin adapters from a route to the pipeline or a small admin action.

pub mod admin;
pub mod admin_keys;
pub mod anthropic;
pub mod health;
pub mod openai;
pub mod usage;

use std::any::Any;

use axum::response::Response;
use http::Uri;

use crate::error::{Error, Kind, Protocol};
use crate::pipeline;

pub async fn not_found(uri: Uri) -> Response {
    pipeline::not_found(uri.path())
}

pub async fn method_not_allowed() -> Response {
    pipeline::method_not_allowed()
}

/// A handler panicked: a 500 in the client's format; the panic text is logged, not returned.
pub fn panic(err: Box<dyn Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown");
    tracing::error!(panic = detail, "request handler panicked");
    Error::new(Kind::Internal, "The gateway failed to handle this request.")
        .into_response(Protocol::OpenAi)
}
