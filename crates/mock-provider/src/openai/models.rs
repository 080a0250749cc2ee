//! Models (`GET /v1/models`, `GET /v1/models/{id}`): a fixed catalogue.
//!
//! References followed: OpenAI API reference "Models" ("The model object":
//! `{"id", "object": "model", "created", "owned_by"}`; the list is
//! `{"object": "list", "data": [...]}`), and `openai-python` `types/model.py`.
//!
//! The mock answers any model name on the generating endpoints, so retrieving any id succeeds
//! too (directives stripped); the list shows a small fixed catalogue.

use serde_json::{json, Value};

use crate::faults;
use crate::wire::Reply;

/// The catalogue: id, creation time (Unix seconds), owner.
const CATALOGUE: &[(&str, u64, &str)] = &[
    ("gpt-4o-mini", 1_721_172_741, "system"),
    ("gpt-4o", 1_715_367_049, "system"),
    ("gpt-3.5-turbo-instruct", 1_692_901_427, "system"),
    ("text-embedding-3-small", 1_705_948_997, "system"),
];

fn object(id: &str, created: u64, owned_by: &str) -> Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": owned_by})
}

/// `GET /v1/models`.
pub fn list() -> Reply {
    let data: Vec<Value> = CATALOGUE
        .iter()
        .map(|(id, created, owner)| object(id, *created, owner))
        .collect();
    Reply::json(
        http::StatusCode::OK,
        json!({"object": "list", "data": data}),
    )
}

/// `GET /v1/models/{id}`.
pub fn retrieve(id: &str) -> Reply {
    let base = faults::parse_model(id)
        .map(|(base, _)| base)
        .unwrap_or_else(|_| id.to_string());
    let (created, owner) = CATALOGUE
        .iter()
        .find(|(known, _, _)| *known == base)
        .map_or((1_700_000_000, "mock-provider"), |(_, c, o)| (*c, *o));
    Reply::json(http::StatusCode::OK, object(&base, created, owner))
}
