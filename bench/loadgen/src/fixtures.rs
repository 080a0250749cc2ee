//! The bodies `sy-upstream` serves and `sy-loadgen` sends by default.

use bytes::Bytes;

/// The default non-streaming request body.
pub const REQUEST_BODY: &str =
    r#"{"model":"bench-model","messages":[{"role":"user","content":"hello"}]}"#;

/// The default streaming request body.
pub const STREAM_REQUEST_BODY: &str = r#"{"model":"bench-model","messages":[{"role":"user","content":"hello"}],"stream":true,"stream_options":{"include_usage":true}}"#;

const ID: &str = "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT";
const CREATED: u64 = 1_741_569_952;
const FINGERPRINT: &str = "fp_06737a9306";

/// A realistic OpenAI `chat.completion` of about 640 bytes.
pub fn completion_json() -> Bytes {
    let s = format!(
        concat!(
            r#"{{"id":"{id}","object":"chat.completion","created":{created},"model":"bench-model","#,
            r#""choices":[{{"index":0,"message":{{"role":"assistant","content":"#,
            r#""Hello! I am the benchmark mock upstream of Switchyard: a fixed answer.","#,
            r#""refusal":null,"annotations":[]}},"logprobs":null,"finish_reason":"stop"}}],"#,
            r#""usage":{{"prompt_tokens":19,"completion_tokens":31,"total_tokens":50,"#,
            r#""prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},"#,
            r#""completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}},"#,
            r#""service_tier":"default","system_fingerprint":"{fp}"}}"#
        ),
        id = ID,
        created = CREATED,
        fp = FINGERPRINT
    );
    Bytes::from(s)
}

fn chunk(delta: &str, finish: &str) -> String {
    format!(
        concat!(
            "data: ",
            r#"{{"id":"{id}","object":"chat.completion.chunk","created":{created},"model":"bench-model","#,
            r#""service_tier":"default","system_fingerprint":"{fp}","#,
            r#""choices":[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}],"usage":null}}"#,
            "\n\n"
        ),
        id = ID,
        created = CREATED,
        fp = FINGERPRINT,
        delta = delta,
        finish = finish
    )
}

const WORDS: [&str; 8] = [
    "Hello",
    " from",
    " the",
    " Switchyard",
    " benchmark",
    " mock",
    " upstream",
    ".",
];

/// The SSE events of one streamed answer with `chunks` content chunks: the first carries the
/// role, the last the `finish_reason`; then one usage chunk (`choices: []`) and `data: [DONE]`.
/// So a stream has `chunks + 2` events in all.
pub fn stream_events(chunks: usize) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(chunks + 2);
    for i in 0..chunks {
        let s = if i == 0 {
            chunk(
                r#"{"role":"assistant","content":"","refusal":null}"#,
                "null",
            )
        } else if i + 1 == chunks {
            chunk("{}", r#""stop""#)
        } else {
            let word = WORDS[i % WORDS.len()];
            chunk(&format!(r#"{{"content":"{word}"}}"#), "null")
        };
        out.push(Bytes::from(s));
    }
    let completion = chunks.saturating_sub(1);
    let usage = format!(
        concat!(
            "data: ",
            r#"{{"id":"{id}","object":"chat.completion.chunk","created":{created},"model":"bench-model","#,
            r#""service_tier":"default","system_fingerprint":"{fp}","choices":[],"#,
            r#""usage":{{"prompt_tokens":19,"completion_tokens":{completion},"total_tokens":{total},"#,
            r#""prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},"#,
            r#""completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}}}}"#,
            "\n\n"
        ),
        id = ID,
        created = CREATED,
        fp = FINGERPRINT,
        completion = completion,
        total = 19 + completion
    );
    out.push(Bytes::from(usage));
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}

// ---------------------------------------------------------------------------------------------
// Anthropic Messages (`POST /v1/messages`), for the translation path (scenario f)

const MSG_ID: &str = "msg_01XFDUDYJgAACzvnptvVoYEL";

/// `usage` as the Messages API writes it: `input_tokens` (cache reads and writes excluded), the
/// two cache counts, the 5-minute / 1-hour split of the cache writes, `output_tokens` and the
/// service tier.
fn anthropic_usage(output_tokens: usize) -> String {
    format!(
        concat!(
            r#"{{"input_tokens":19,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"#,
            r#""cache_creation":{{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0}},"#,
            r#""output_tokens":{output},"service_tier":"standard"}}"#
        ),
        output = output_tokens
    )
}

/// A realistic Anthropic Messages answer (`type: message`, one text block, `end_turn`) of about
/// the size of [`completion_json`].
pub fn anthropic_message_json() -> Bytes {
    let s = format!(
        concat!(
            r#"{{"id":"{id}","type":"message","role":"assistant","model":"bench-model","#,
            r#""content":[{{"type":"text","text":"#,
            r#""Hello! I am the benchmark mock upstream of Switchyard: a fixed answer, "#,
            r#"in the Anthropic Messages format, about as long as the OpenAI one so that "#,
            r#"both paths move about the same number of bytes for every request they serve."}}],"#,
            r#""stop_reason":"end_turn","stop_sequence":null,"usage":{usage}}}"#
        ),
        id = MSG_ID,
        usage = anthropic_usage(31)
    );
    Bytes::from(s)
}

/// One named SSE event of the Messages stream: `event: NAME` then `data: JSON`.
fn anthropic_event(name: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// How many events an Anthropic stream with `chunks` text deltas has before the first delta
/// (`message_start`, `content_block_start`, `ping`) and after the last (`content_block_stop`,
/// `message_delta`, `message_stop`).
pub const ANTHROPIC_HEAD: usize = 3;
pub const ANTHROPIC_TAIL: usize = 3;

/// The SSE events of one streamed Messages answer with `chunks` text deltas, in the order of the
/// Messages API: `message_start` (the message with empty `content`, `stop_reason: null` and the
/// input usage), `content_block_start` (an empty text block), `ping`, `chunks` ×
/// `content_block_delta` (`text_delta`), `content_block_stop`, `message_delta` (`end_turn` and
/// the cumulative `output_tokens`) and `message_stop`. `chunks + 6` events in all.
pub fn anthropic_stream_events(chunks: usize) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(chunks + ANTHROPIC_HEAD + ANTHROPIC_TAIL);
    out.push(anthropic_event(
        "message_start",
        &format!(
            concat!(
                r#"{{"type":"message_start","message":{{"id":"{id}","type":"message","#,
                r#""role":"assistant","model":"bench-model","content":[],"stop_reason":null,"#,
                r#""stop_sequence":null,"usage":{usage}}}}}"#
            ),
            id = MSG_ID,
            usage = anthropic_usage(1)
        ),
    ));
    out.push(anthropic_event(
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    ));
    out.push(anthropic_event("ping", r#"{"type":"ping"}"#));
    for i in 0..chunks {
        let word = WORDS[i % WORDS.len()];
        out.push(anthropic_event(
            "content_block_delta",
            &format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{word}"}}}}"#
            ),
        ));
    }
    out.push(anthropic_event(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    ));
    out.push(anthropic_event(
        "message_delta",
        &format!(
            r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{{"output_tokens":{chunks}}}}}"#
        ),
    ));
    out.push(anthropic_event(
        "message_stop",
        r#"{"type":"message_stop"}"#,
    ));
    out
}

/// Cheap check whether a request body asks for a stream (`"stream":true` or `"stream": true`).
pub fn wants_stream(body: &[u8]) -> bool {
    let finder = memchr::memmem::Finder::new(b"\"stream\"");
    let mut rest = body;
    while let Some(i) = finder.find(rest) {
        rest = &rest[i + 8..];
        let after = rest
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .map(|p| &rest[p..]);
        if let Some(after) = after {
            if let Some(value) = after.strip_prefix(b":") {
                let value = value.trim_ascii_start();
                if value.starts_with(b"true") {
                    return true;
                }
            }
        }
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn completion_is_valid_and_about_640_bytes() {
        let body = completion_json();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
        assert!((600..=700).contains(&body.len()), "{} bytes", body.len());
    }

    #[test]
    fn stream_events_are_valid() {
        let events = stream_events(20);
        assert_eq!(events.len(), 22);
        for e in &events[..21] {
            let s = std::str::from_utf8(e).unwrap();
            let json = s
                .strip_prefix("data: ")
                .unwrap()
                .strip_suffix("\n\n")
                .unwrap();
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(v["object"], "chat.completion.chunk");
        }
        let usage = std::str::from_utf8(&events[20]).unwrap();
        assert!(usage.contains(r#""choices":[]"#));
        assert_eq!(&events[21][..], b"data: [DONE]\n\n");
        assert_eq!(stream_events(0).len(), 2);
        assert_eq!(stream_events(1).len(), 3);
    }

    #[test]
    fn anthropic_message_is_valid_and_about_640_bytes() {
        let body = anthropic_message_json();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["role"], "assistant");
        assert!(v["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(v["content"][0]["type"], "text");
        assert_eq!(v["stop_reason"], "end_turn");
        assert!(v["stop_sequence"].is_null());
        assert_eq!(v["usage"]["input_tokens"], 19);
        assert_eq!(v["usage"]["output_tokens"], 31);
        assert_eq!(v["usage"]["cache_read_input_tokens"], 0);
        assert_eq!(v["usage"]["cache_creation_input_tokens"], 0);
        assert!((600..=700).contains(&body.len()), "{} bytes", body.len());
    }

    #[test]
    fn anthropic_stream_events_are_valid() {
        let events = anthropic_stream_events(20);
        assert_eq!(events.len(), 20 + ANTHROPIC_HEAD + ANTHROPIC_TAIL);
        let mut names = Vec::new();
        for e in &events {
            let s = std::str::from_utf8(e).unwrap();
            let (name_line, rest) = s.split_once('\n').unwrap();
            let name = name_line.strip_prefix("event: ").unwrap();
            let json = rest
                .strip_prefix("data: ")
                .unwrap()
                .strip_suffix("\n\n")
                .unwrap();
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(v["type"], name, "{s}");
            names.push(name.to_string());
        }
        assert_eq!(
            &names[..3],
            ["message_start", "content_block_start", "ping"]
        );
        assert!(names[3..23].iter().all(|n| n == "content_block_delta"));
        assert_eq!(
            &names[23..],
            ["content_block_stop", "message_delta", "message_stop"]
        );
        let delta = std::str::from_utf8(&events[24]).unwrap();
        assert!(delta.contains(r#""stop_reason":"end_turn""#));
        assert!(delta.contains(r#""output_tokens":20"#));
        assert_eq!(anthropic_stream_events(0).len(), 6);
    }

    #[test]
    fn stream_detection() {
        assert!(wants_stream(STREAM_REQUEST_BODY.as_bytes()));
        assert!(wants_stream(br#"{"stream" : true}"#));
        assert!(!wants_stream(REQUEST_BODY.as_bytes()));
        assert!(!wants_stream(br#"{"stream":false}"#));
        assert!(!wants_stream(br#"{"stream""#));
        assert!(!wants_stream(b""));
    }
}
