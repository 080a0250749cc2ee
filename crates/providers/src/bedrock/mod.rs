//! Amazon Bedrock Converse wire format: `POST /model/{modelId}/converse` and
//! `/converse-stream`, with the binary event stream framing (`eventstream`) and SigV4 request
//! signing (`sigv4`) they need.

pub mod error;
pub mod eventstream;
pub mod request;
pub mod response;
pub mod sigv4;
pub mod stream;
pub mod types;

/// The path of a call to `model_id`: `/model/{modelId}/converse`, or `.../converse-stream` when
/// `stream`. The id is percent-encoded (`:` in `...-v1:0` becomes `%3A`, `/` in an ARN `%2F`),
/// as the AWS SDKs send it; sign the URL with this path.
pub fn path(model_id: &str, stream: bool) -> String {
    let id = sigv4::uri_encode(model_id.as_bytes(), true);
    if stream {
        format!("/model/{id}/converse-stream")
    } else {
        format!("/model/{id}/converse")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_are_encoded() {
        assert_eq!(
            path("anthropic.claude-3-haiku-20240307-v1:0", false),
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
        );
        assert_eq!(
            path("arn:aws:bedrock:us-east-1::foundation-model/x", true),
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2Fx/converse-stream"
        );
    }
}
