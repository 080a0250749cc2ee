//! The Gemini surface: `generateContent`, `streamGenerateContent` (SSE and JSON array), tools,
//! auth, faults and stats — read back with the gateway's own Gemini decoders.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{post, Resp};
use mock_provider::{MockServer, Options};
use providers::canonical::{Accumulator, ChatResponse, FinishReason, Part};
use providers::gemini::{response, stream};
use providers::sse;
use serde_json::{json, Value};

async fn server(key: Option<&str>) -> MockServer {
    MockServer::start(Options {
        api_key: key.map(str::to_string),
    })
    .await
    .unwrap()
}

fn ask(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
}

fn with_tools(text: &str) -> Value {
    let mut body = ask(text);
    body["tools"] = json!([{"functionDeclarations": [
        {"name": "get_weather", "description": "Weather", "parameters": {"type": "OBJECT",
            "properties": {"city": {"type": "STRING"}}}},
        {"name": "other"}
    ]}]);
    body
}

/// The accumulated answer of an SSE body, decoded as the gateway decodes Gemini.
fn decoded(r: &Resp) -> ChatResponse {
    let mut framer = sse::Framer::new();
    framer.push(&r.body);
    let mut decoder = stream::Decoder::new();
    let mut events = Vec::new();
    while let Some(event) = framer.next_event() {
        decoder
            .decode(&sse::data(&event).unwrap(), &mut events)
            .unwrap();
    }
    assert!(framer.pending().is_empty());
    let mut acc = Accumulator::new();
    events.iter().for_each(|e| acc.push(e));
    acc.finish()
}

#[tokio::test]
async fn generate_content_has_geminis_shape() {
    let s = server(None).await;
    let mut body = ask("hello world");
    body["systemInstruction"] = json!({"parts": [{"text": "be brief"}]});
    let r = post(
        s.addr,
        "/v1beta/models/gemini-2.0-flash:generateContent",
        &[],
        &body,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    let c = &v["candidates"][0];
    assert_eq!(c["content"]["role"], "model");
    assert_eq!(c["content"]["parts"][0]["text"], "echo: hello world");
    assert_eq!(c["finishReason"], "STOP");
    assert_eq!(v["modelVersion"], "gemini-2.0-flash");
    assert!(v["responseId"].as_str().unwrap().starts_with("mock"));
    assert_eq!(v["usageMetadata"]["promptTokenCount"], 4);
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 3);
    assert_eq!(v["usageMetadata"]["totalTokenCount"], 7);
    let parsed = response::parse(&r.body).unwrap();
    assert_eq!(
        parsed.choices[0].message.text_content(),
        "echo: hello world"
    );
}

#[tokio::test]
async fn sse_stream_is_framed_like_google_and_agrees_with_buffered() {
    let s = server(None).await;
    let body = ask("one two three");
    let streamed = post(
        s.addr,
        "/v1beta/models/m:streamGenerateContent?alt=sse",
        &[],
        &body,
    )
    .await;
    assert_eq!(streamed.status, 200);
    assert_eq!(streamed.header("content-type"), Some("text/event-stream"));
    let text = streamed.text();
    assert!(text.starts_with("data: {"), "{text}");
    assert!(text.ends_with("\r\n\r\n"));
    assert!(!text.contains("[DONE]"));
    assert_eq!(text.matches("data: ").count(), 4, "one chunk per word");
    let accumulated = decoded(&streamed);
    assert_eq!(
        accumulated.choices[0].message.text_content(),
        "echo: one two three"
    );
    assert_eq!(
        accumulated.choices[0].finish_reason,
        Some(FinishReason::Stop)
    );

    let buffered = post(s.addr, "/v1beta/models/m:generateContent", &[], &body).await;
    let buffered = response::parse(&buffered.body).unwrap();
    assert_eq!(accumulated.usage, buffered.usage);
    assert_eq!(buffered.usage.unwrap().output_tokens, 4);

    // Without `alt=sse`, one JSON array of the same chunks.
    let array = post(s.addr, "/v1beta/models/m:streamGenerateContent", &[], &body).await;
    assert_eq!(array.json().as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn tools_are_called_whole_and_results_answered() {
    let s = server(None).await;
    let r = post(
        s.addr,
        "/v1beta/models/m:generateContent",
        &[],
        &with_tools("Paris"),
    )
    .await;
    let v = r.json();
    let part = &v["candidates"][0]["content"]["parts"][0];
    assert_eq!(part["functionCall"]["name"], "get_weather");
    assert_eq!(part["functionCall"]["args"], json!({"input": "Paris"}));
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    let parsed = response::parse(&r.body).unwrap();
    assert_eq!(
        parsed.choices[0].finish_reason,
        Some(FinishReason::ToolCalls)
    );

    let streamed = post(
        s.addr,
        "/v1beta/models/m:streamGenerateContent?alt=sse",
        &[],
        &with_tools("Paris"),
    )
    .await;
    assert_eq!(
        streamed.text().matches("data: ").count(),
        1,
        "the call comes whole"
    );
    let acc = decoded(&streamed);
    let call = acc.choices[0].message.tool_calls().next().unwrap().clone();
    assert_eq!(call.arguments, r#"{"input":"Paris"}"#);
    assert_eq!(acc.usage, parsed.usage);
    // Gemini sends no call ids: the decoder synthesizes one from the response id.
    assert!(call.id.starts_with("call_"));

    // A chosen function, and `NONE`.
    let mut body = with_tools("Paris");
    body["toolConfig"] =
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["other"]}});
    let v = post(s.addr, "/v1beta/models/m:generateContent", &[], &body)
        .await
        .json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["functionCall"]["name"],
        "other"
    );
    body["toolConfig"] = json!({"functionCallingConfig": {"mode": "NONE"}});
    let v = post(s.addr, "/v1beta/models/m:generateContent", &[], &body)
        .await
        .json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        "echo: Paris"
    );

    // The function's answer.
    let mut body = with_tools("Paris");
    body["contents"] = json!([
        {"role": "user", "parts": [{"text": "Paris"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"input": "Paris"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "18 C"}}}]}
    ]);
    let v = post(s.addr, "/v1beta/models/m:generateContent", &[], &body)
        .await
        .json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        "tool said: 18 C"
    );
}

#[tokio::test]
async fn generation_config_is_honoured() {
    let s = server(None).await;
    let mut body = ask("a b c d");
    body["generationConfig"] = json!({"maxOutputTokens": 2, "candidateCount": 2});
    let v = post(s.addr, "/v1beta/models/m:generateContent", &[], &body)
        .await
        .json();
    assert_eq!(v["candidates"].as_array().unwrap().len(), 2);
    assert_eq!(v["candidates"][1]["index"], 1);
    assert_eq!(v["candidates"][0]["content"]["parts"][0]["text"], "echo: a");
    assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 4);
    body["generationConfig"] =
        json!({"responseMimeType": "application/json", "stopSequences": ["zzz"]});
    let v = post(s.addr, "/v1beta/models/m:generateContent", &[], &body)
        .await
        .json();
    let text = v["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap(),
        json!({"reply": "echo: a b c d"})
    );
    let r = post(
        s.addr,
        "/v1beta/models/m:generateContent",
        &[],
        &json!({"contents": []}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["status"], "INVALID_ARGUMENT");
}

#[tokio::test]
async fn api_key_by_header_or_query() {
    let s = server(Some("g-key")).await;
    let path = "/v1beta/models/m:generateContent";
    let r = post(s.addr, path, &[], &ask("x")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["status"], "PERMISSION_DENIED");
    let r = post(s.addr, path, &[("x-goog-api-key", "wrong")], &ask("x")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["details"][0]["reason"], "API_KEY_INVALID");
    assert!(
        !r.text().contains("wrong"),
        "the presented key is never echoed"
    );
    let r = post(s.addr, path, &[("x-goog-api-key", "g-key")], &ask("x")).await;
    assert_eq!(r.status, 200);
    let r = post(s.addr, &format!("{path}?key=g-key"), &[], &ask("x")).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn fault_directives_answer_in_googles_shape_and_stats_count_the_model() {
    let s = server(None).await;
    let model = "gemini-2.0-flash+status=429+retry_after=3";
    let r = post(
        s.addr,
        &format!("/v1beta/models/{model}:generateContent"),
        &[],
        &ask("x"),
    )
    .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("3"));
    let e = r.json()["error"].clone();
    assert_eq!(
        (e["code"].as_u64(), e["status"].as_str()),
        (Some(429), Some("RESOURCE_EXHAUSTED"))
    );
    let e = providers::gemini::error::parse(&r.body).unwrap();
    assert_eq!(e.kind, "RESOURCE_EXHAUSTED");

    let r = post(
        s.addr,
        "/v1beta/models/m+cut_after=2:streamGenerateContent?alt=sse",
        &[],
        &ask("a b c d e"),
    )
    .await;
    assert!(!r.complete, "the stream is cut");
    assert_eq!(r.text().matches("data: ").count(), 2);

    let r = post(
        s.addr,
        "/v1beta/models/m+malformed:streamGenerateContent?alt=sse",
        &[],
        &ask("a b c"),
    )
    .await;
    let mut framer = sse::Framer::new();
    framer.push(&r.body);
    let mut decoder = stream::Decoder::new();
    let mut out = Vec::new();
    let results: Vec<_> = std::iter::from_fn(|| framer.next_event())
        .map(|e| decoder.decode(&sse::data(&e).unwrap(), &mut out))
        .collect();
    assert!(results[0].is_ok() && results[1].is_err());

    let stats = s.stats();
    assert_eq!(stats.by_model.get(model), Some(&1));
    assert_eq!(stats.by_model.get("m+cut_after=2"), Some(&1));
    assert_eq!(
        stats
            .by_path
            .get("/v1beta/models/m+cut_after=2:streamGenerateContent"),
        Some(&1)
    );
    let last = stats.last.unwrap();
    assert_eq!(last.query.as_deref(), Some("alt=sse"));
}

#[tokio::test]
async fn images_count_as_one_token() {
    let s = server(None).await;
    let body = json!({"contents": [{"role": "user", "parts": [
        {"text": "look at"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}
    ]}]});
    let v = post(s.addr, "/v1beta/models/m:generateContent", &[], &body)
        .await
        .json();
    assert_eq!(v["usageMetadata"]["promptTokenCount"], 3);
    let parsed = response::parse(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(matches!(
        parsed.choices[0].message.content[0],
        Part::Text { .. }
    ));
}
