//! The Bedrock surface: Converse and ConverseStream (binary event stream), SigV4 presence,
//! tools, faults and stats — read back with the gateway's own event stream and Converse
//! decoders, which are written independently of the mock's encoder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{send, Resp};
use mock_provider::{MockServer, Options};
use providers::bedrock::sigv4::{self, Credentials};
use providers::bedrock::{eventstream, response, stream};
use providers::canonical::{Accumulator, ChatResponse, FinishReason};
use serde_json::{json, Value};

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

async fn server(key: Option<&str>) -> MockServer {
    MockServer::start(Options {
        api_key: key.map(str::to_string),
    })
    .await
    .unwrap()
}

/// POSTs `body` to the model's Converse path, signed with `key_id` (unsigned when `None`).
async fn converse(
    s: &MockServer,
    model: &str,
    stream: bool,
    body: &Value,
    key_id: Option<&str>,
) -> Resp {
    let path = providers::bedrock::path(model, stream);
    let body = body.to_string();
    let url = format!("{}{path}", s.url());
    let signed = match key_id {
        Some(id) => sigv4::sign(
            "POST",
            &url,
            &[("content-type", "application/json")],
            body.as_bytes(),
            "us-east-1",
            "bedrock",
            &Credentials {
                access_key_id: id,
                secret_access_key: "secret",
                session_token: None,
            },
            1_700_000_000,
        )
        .unwrap(),
        None => Vec::new(),
    };
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    headers.extend(signed.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    send(s.addr, "POST", &path, &headers, &body).await
}

fn ask(text: &str) -> Value {
    json!({"messages": [{"role": "user", "content": [{"text": text}]}]})
}

fn with_tools(text: &str) -> Value {
    let mut body = ask(text);
    body["toolConfig"] = json!({"tools": [
        {"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}},
        {"toolSpec": {"name": "other", "inputSchema": {"json": {"type": "object"}}}}
    ]});
    body
}

/// The messages of an event stream body, CRCs checked.
fn messages(r: &Resp) -> Vec<eventstream::Message> {
    let mut d = eventstream::Decoder::new();
    d.push(&r.body);
    let mut out = Vec::new();
    while let Some(m) = d.next_message().unwrap() {
        out.push(m);
    }
    assert_eq!(d.pending(), 0);
    out
}

fn decoded(r: &Resp) -> ChatResponse {
    let mut decoder = stream::Decoder::new();
    let mut events = Vec::new();
    for m in messages(r) {
        decoder.decode(&m, &mut events).unwrap();
    }
    let mut acc = Accumulator::new();
    events.iter().for_each(|e| acc.push(e));
    acc.finish()
}

#[tokio::test]
async fn unsigned_requests_are_refused_like_aws() {
    let s = server(None).await;
    let r = converse(&s, MODEL, false, &ask("hi"), None).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json(), json!({"message": "Missing Authentication Token"}));
    assert!(r
        .header("x-amzn-errortype")
        .unwrap()
        .starts_with("MissingAuthenticationTokenException:"));
    let e = providers::bedrock::error::parse(&r.body, r.header("x-amzn-errortype")).unwrap();
    assert_eq!(e.kind, "MissingAuthenticationTokenException");
}

#[tokio::test]
async fn converse_has_bedrocks_shape() {
    let s = server(None).await;
    let mut body = ask("hello world");
    body["system"] = json!([{"text": "be brief"}]);
    let r = converse(&s, MODEL, false, &body, Some("AKID")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.header("x-amzn-requestid").is_some());
    let v = r.json();
    assert_eq!(v["output"]["message"]["role"], "assistant");
    assert_eq!(
        v["output"]["message"]["content"][0]["text"],
        "echo: hello world"
    );
    assert_eq!(v["stopReason"], "end_turn");
    assert_eq!(
        v["usage"],
        json!({"inputTokens": 4, "outputTokens": 3, "totalTokens": 7})
    );
    assert!(v["metrics"]["latencyMs"].is_u64());
    let parsed = response::parse(&r.body).unwrap();
    assert_eq!(
        parsed.choices[0].message.text_content(),
        "echo: hello world"
    );
}

#[tokio::test]
async fn converse_stream_is_a_valid_event_stream_that_agrees_with_converse() {
    let s = server(None).await;
    let body = ask("one two three");
    let r = converse(&s, MODEL, true, &body, Some("AKID")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.amazon.eventstream")
    );
    let kinds: Vec<String> = messages(&r)
        .iter()
        .map(|m| {
            assert_eq!(m.message_type(), Some("event"));
            assert_eq!(m.content_type(), Some("application/json"));
            m.event_type().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "messageStart",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata"
        ]
    );
    let streamed = decoded(&r);
    assert_eq!(
        streamed.choices[0].message.text_content(),
        "echo: one two three"
    );
    assert_eq!(streamed.choices[0].finish_reason, Some(FinishReason::Stop));
    let buffered =
        response::parse(&converse(&s, MODEL, false, &body, Some("AKID")).await.body).unwrap();
    assert_eq!(streamed.usage, buffered.usage);
    assert!(streamed.usage.is_some());
}

#[tokio::test]
async fn tools_are_used_and_results_answered() {
    let s = server(None).await;
    let v = converse(&s, MODEL, false, &with_tools("Paris"), Some("AKID"))
        .await
        .json();
    let tool_use = &v["output"]["message"]["content"][0]["toolUse"];
    assert_eq!(tool_use["name"], "get_weather");
    assert_eq!(tool_use["input"], json!({"input": "Paris"}));
    assert!(tool_use["toolUseId"]
        .as_str()
        .unwrap()
        .starts_with("tooluse_"));
    assert_eq!(v["stopReason"], "tool_use");

    let r = converse(&s, MODEL, true, &with_tools("Paris"), Some("AKID")).await;
    let acc = decoded(&r);
    let call = acc.choices[0].message.tool_calls().next().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&call.arguments).unwrap(),
        json!({"input": "Paris"})
    );
    assert_eq!(call.id, tool_use["toolUseId"].as_str().unwrap());
    assert_eq!(acc.choices[0].finish_reason, Some(FinishReason::ToolCalls));

    let mut body = with_tools("Paris");
    body["toolConfig"]["toolChoice"] = json!({"tool": {"name": "other"}});
    let v = converse(&s, MODEL, false, &body, Some("AKID")).await.json();
    assert_eq!(
        v["output"]["message"]["content"][0]["toolUse"]["name"],
        "other"
    );

    let mut body = with_tools("Paris");
    body["messages"] = json!([
        {"role": "user", "content": [{"text": "Paris"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"input": "Paris"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "18 C"}]}}]}
    ]);
    let v = converse(&s, MODEL, false, &body, Some("AKID")).await.json();
    assert_eq!(
        v["output"]["message"]["content"][0]["text"],
        "tool said: 18 C"
    );
}

#[tokio::test]
async fn inference_config_sets_stop_reasons() {
    let s = server(None).await;
    let mut body = ask("a b c d");
    body["inferenceConfig"] = json!({"maxTokens": 2});
    let v = converse(&s, MODEL, false, &body, Some("AKID")).await.json();
    assert_eq!(v["output"]["message"]["content"][0]["text"], "echo: a");
    assert_eq!(v["stopReason"], "max_tokens");
    body["inferenceConfig"] = json!({"stopSequences": [" c"]});
    let v = converse(&s, MODEL, false, &body, Some("AKID")).await.json();
    assert_eq!(v["output"]["message"]["content"][0]["text"], "echo: a b");
    assert_eq!(v["stopReason"], "stop_sequence");
}

#[tokio::test]
async fn the_server_key_is_the_access_key_id() {
    let s = server(Some("AKIDMOCK")).await;
    let r = converse(&s, MODEL, false, &ask("x"), Some("AKIDOTHER")).await;
    assert_eq!(r.status, 403);
    assert!(r
        .header("x-amzn-errortype")
        .unwrap()
        .starts_with("UnrecognizedClientException:"));
    let r = converse(&s, MODEL, false, &ask("x"), Some("AKIDMOCK")).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn fault_directives_answer_in_bedrocks_shape_and_stats_count_the_model() {
    let s = server(None).await;
    let model = "anthropic.claude-3-haiku-20240307-v1:0+status=429+retry_after=1";
    let r = converse(&s, model, false, &ask("x"), Some("AKID")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r
        .header("x-amzn-errortype")
        .unwrap()
        .starts_with("ThrottlingException:"));
    assert_eq!(
        r.json()["message"],
        "Too many requests, please wait before trying again."
    );

    let r = converse(&s, "m+cut_after=3", true, &ask("a b c d e"), Some("AKID")).await;
    assert!(!r.complete, "the stream is cut");
    let mut d = eventstream::Decoder::new();
    d.push(&r.body);
    let mut n = 0;
    while let Some(_m) = d.next_message().unwrap() {
        n += 1;
    }
    assert_eq!(n, 3);

    let r = converse(&s, "m+malformed", true, &ask("a b"), Some("AKID")).await;
    let mut decoder = stream::Decoder::new();
    let mut out = Vec::new();
    let results: Vec<_> = messages(&r)
        .iter()
        .map(|m| decoder.decode(m, &mut out))
        .collect();
    assert_eq!(results.len(), 2);
    assert!(
        results[0].is_ok() && results[1].is_err(),
        "framed, but the JSON is cut"
    );

    let stats = s.stats();
    assert_eq!(stats.by_model.get(model), Some(&1));
    assert_eq!(stats.by_model.get("m+cut_after=3"), Some(&1));
    assert_eq!(
        stats.by_path.get(&providers::bedrock::path(model, false)),
        Some(&1),
        "the path as sent, model id percent-encoded"
    );
}
