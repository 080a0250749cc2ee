//! Azure OpenAI: `POST /openai/deployments/{deployment}/{chat/completions|completions|
//! embeddings}?api-version=...`, authenticated by the `api-key` header. Bodies are OpenAI's
//! (built in `openai.rs`) with Azure's additions.
//!
//! References followed:
//! * Azure OpenAI REST reference (learn.microsoft.com, "Azure OpenAI in Azure AI Foundry
//!   Models REST API reference"): the URL shape, the required `api-version` query
//!   parameter, the `api-key` header, `prompt_filter_results` at the top level and
//!   `content_filter_results` in each choice (`hate`, `self_harm`, `sexual`, `violence`, each
//!   `{"filtered": false, "severity": "safe"}`).
//! * Azure's streaming shape, quoted from real streams in public issues
//!   (AbanteAI/archive-old-cli-mentat#429, microsoft/autogen#6465, pydantic/pydantic-ai#797):
//!   the first chunk is `{"choices": [], "created": 0, "id": "", "model": "", "object": "",
//!   "prompt_filter_results": [...]}`; content chunks carry `content_filter_results`.
//! * Azure's error bodies, quoted verbatim in public issues: 401
//!   `{"error": {"code": "401", "message": "Access denied due to invalid subscription key or
//!   wrong API endpoint. ..."}}`; 429 `{"error": {"code": "429", "message": "Requests to the
//!   ChatCompletions_Create Operation under Azure OpenAI API version ... Please retry after N
//!   seconds. ..."}}`; a missing `api-version` answers 404 `{"error": {"code": "404",
//!   "message": "Resource not found"}}` (MicrosoftDocs/azure-docs#114602); 5xx and 400 bodies
//!   are OpenAI's shape (`type: "server_error"`, ...).
//!
//! The response `model` is the deployment's model; the mock has no deployment table, so a
//! deployment named `X` serves model `X` (directives stripped: `prod+status=503` → `prod`).
//! This module must not do IO or apply faults.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::openai::{self, Call, Endpoint, Flavor, Outcome};
use crate::wire::Reply;

/// Maps a method and path under `/openai/deployments/` to the deployment and endpoint.
pub fn route(method: &Method, path: &str) -> Option<(String, Endpoint)> {
    if method != Method::POST {
        return None;
    }
    let rest = path.strip_prefix("/openai/deployments/")?;
    let (deployment, op) = rest.split_once('/')?;
    if deployment.is_empty() {
        return None;
    }
    let endpoint = match op.trim_end_matches('/') {
        "chat/completions" => Endpoint::Chat,
        "completions" => Endpoint::Completions,
        "embeddings" => Endpoint::Embeddings,
        _ => return None,
    };
    Some((deployment.to_string(), endpoint))
}

/// The value of `api-version` in a raw query string.
pub fn api_version(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "api-version")
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// Serves one Azure request after routing: api-version, auth, then the OpenAI-format answer.
pub fn serve(deployment: &str, endpoint: &Endpoint, call: &Call<'_>) -> Outcome {
    if api_version(call.query).is_none() {
        return Outcome::plain(error(StatusCode::NOT_FOUND, "Resource not found"));
    }
    if let Some(expected) = call.api_key {
        let presented = call.headers.get("api-key").and_then(|v| v.to_str().ok());
        if presented != Some(expected) {
            return Outcome::plain(unauthorized());
        }
    }
    let body = match openai::parse_object(call.body) {
        Ok(b) => b,
        Err(reply) => return Outcome::plain(reply),
    };
    openai::generate(endpoint, body, deployment, Flavor::Azure, call)
}

/// Azure's own error shape: `{"error": {"code": "<status or name>", "message"}}`.
pub fn error(status: StatusCode, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": {"code": status.as_u16().to_string(), "message": message}}),
    )
}

fn unauthorized() -> Reply {
    error(
        StatusCode::UNAUTHORIZED,
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to \
         provide a valid key for an active subscription and use a correct regional API \
         endpoint for your resource.",
    )
}

/// The error answer for an injected fault status, as Azure words it.
pub fn status_error(
    status: u16,
    retry_after: Option<u64>,
    endpoint: &Endpoint,
    query: Option<&str>,
    model: &str,
) -> Reply {
    let reply = match status {
        401 => unauthorized(),
        404 => error(StatusCode::NOT_FOUND, "Resource not found"),
        429 => {
            let operation = match endpoint {
                Endpoint::Embeddings => "Embeddings_Create",
                Endpoint::Completions => "Completions_Create",
                _ => "ChatCompletions_Create",
            };
            let version = api_version(query).unwrap_or("2024-10-21");
            let wait = retry_after.unwrap_or(1);
            error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "Requests to the {operation} Operation under Azure OpenAI API version \
                     {version} have exceeded token rate limit of your current OpenAI S0 pricing \
                     tier. Please retry after {wait} seconds. Please go here: \
                     https://aka.ms/oai/quotaincrease if you would like to further increase the \
                     default rate limit."
                ),
            )
        }
        _ => return openai::status_error(status, retry_after, model),
    };
    match retry_after {
        Some(secs) => reply.with_header("retry-after", &secs.to_string()),
        None => reply,
    }
}

/// Azure's content filter verdicts when nothing was filtered.
pub fn filter_results() -> Value {
    let safe = json!({"filtered": false, "severity": "safe"});
    json!({"hate": safe, "self_harm": safe, "sexual": safe, "violence": safe})
}

/// The top-level `prompt_filter_results` of Azure answers.
pub fn prompt_filter_results() -> Value {
    json!([{"prompt_index": 0, "content_filter_results": filter_results()}])
}

/// The first event of every Azure stream: no choices, only the prompt's filter results.
pub fn prompt_filter_chunk() -> Value {
    json!({
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": prompt_filter_results()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_api_version() {
        assert_eq!(
            route(&Method::POST, "/openai/deployments/prod/chat/completions"),
            Some(("prod".into(), Endpoint::Chat))
        );
        assert_eq!(
            route(&Method::GET, "/openai/deployments/prod/embeddings"),
            None
        );
        assert_eq!(
            api_version(Some("a=1&api-version=2024-10-21")),
            Some("2024-10-21")
        );
        assert_eq!(api_version(Some("api-version=")), None);
        assert_eq!(api_version(None), None);
    }
}
