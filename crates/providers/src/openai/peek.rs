//! A borrowed look at OpenAI bodies: the few fields the gateway routes and accounts on, and
//! byte-level edits of them.
//!
//! This is the pass-through hot path: when the client's format equals the provider's, the body is
//! validated and read here without building a tree, and forwarded with only `model` (and maybe
//! `stream_options`) spliced in. It must not re-serialise a body or allocate per message.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Which OpenAI endpoint a body was sent to; each requires different fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
}

/// What the gateway needs to know of a request it forwards.
#[derive(Debug)]
pub struct Request<'a> {
    pub model: Cow<'a, str>,
    pub stream: bool,
    /// `stream_options.include_usage` as the client sent it.
    pub include_usage: bool,
    pub user: Option<Cow<'a, str>>,
    pub n: u32,
    pub has_tools: bool,
    pub has_response_format: bool,
    /// `response_format.type` is `json_schema`.
    pub json_schema: bool,
    /// Some message carries an image part.
    pub has_images: bool,
    /// OpenRouter's `models`: models to fall back to, in order.
    pub models: Vec<String>,
    /// OpenRouter's `provider` routing preferences.
    pub provider: Option<ProviderPrefs>,
    model_span: Range<usize>,
    stream_options_span: Option<Range<usize>>,
    /// Gateway-only members (`models`, `provider`) removed before the body goes upstream.
    strip: [Option<Range<usize>>; 2],
}

/// OpenRouter's provider routing preferences (`provider` in a chat request).
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
pub struct ProviderPrefs {
    #[serde(default)]
    pub order: Vec<String>,
    #[serde(default)]
    pub only: Vec<String>,
    #[serde(default)]
    pub ignore: Vec<String>,
    #[serde(default)]
    pub allow_fallbacks: Option<bool>,
    #[serde(default)]
    pub sort: Option<String>,
    #[serde(default)]
    pub max_price: Option<MaxPrice>,
    #[serde(default)]
    pub require_parameters: Option<bool>,
}

/// USD per million tokens.
#[derive(Debug, Default, Clone, Copy, PartialEq, Deserialize)]
pub struct MaxPrice {
    #[serde(default)]
    pub prompt: Option<f64>,
    #[serde(default)]
    pub completion: Option<f64>,
}

/// Why a request body was refused: a message for the client and the parameter at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub message: String,
    pub param: Option<&'static str>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default)]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user: Option<Cow<'a, str>>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    messages: Option<Messages>,
    #[serde(default)]
    prompt: Option<IgnoredAny>,
    #[serde(default)]
    input: Option<IgnoredAny>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    tools: Option<Seq>,
    #[serde(borrow, default)]
    response_format: Option<&'a RawValue>,
    #[serde(borrow, default)]
    models: Option<&'a RawValue>,
    #[serde(borrow, default)]
    provider: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// Parses and validates the top level of a request body without building a tree.
pub fn request(body: &[u8], endpoint: Endpoint) -> Result<Request<'_>, Invalid> {
    let raw: Raw<'_> = serde_json::from_slice(body).map_err(|e| describe(body, e))?;
    let model_raw = raw.model.ok_or_else(|| missing("model"))?;
    let model: Cow<'_, str> = if model_raw.get().starts_with('"') {
        serde_json::from_str(model_raw.get()).map_err(|_| wrong_type("model", "a string"))?
    } else {
        return Err(wrong_type("model", "a string"));
    };
    if model.is_empty() {
        return Err(Invalid {
            message: "'model' must not be empty".into(),
            param: Some("model"),
        });
    }
    match endpoint {
        Endpoint::Chat => match &raw.messages {
            None => return Err(missing("messages")),
            Some(Messages(0)) => {
                return Err(Invalid {
                    message: "'messages' must contain at least one message".into(),
                    param: Some("messages"),
                })
            }
            Some(_) => {}
        },
        Endpoint::Completions if raw.prompt.is_none() => return Err(missing("prompt")),
        Endpoint::Embeddings if raw.input.is_none() => return Err(missing("input")),
        _ => {}
    }
    if raw.n == Some(0) {
        return Err(Invalid {
            message: "'n' must be at least 1".into(),
            param: Some("n"),
        });
    }
    let include_usage = match raw.stream_options {
        Some(so) if so.get() != "null" => serde_json::from_str::<StreamOptions>(so.get())
            .map_err(|_| wrong_type("stream_options", "an object with a boolean include_usage"))?
            .include_usage
            .unwrap_or(false),
        _ => false,
    };
    let _ = (
        raw.temperature,
        raw.top_p,
        raw.max_tokens,
        raw.max_completion_tokens,
    );
    let json_schema = match raw.response_format {
        Some(rf) if rf.get() != "null" => {
            #[derive(Deserialize)]
            struct Rf<'a> {
                #[serde(borrow, rename = "type")]
                kind: Option<Cow<'a, str>>,
            }
            let rf: Rf<'_> = serde_json::from_str(rf.get())
                .map_err(|_| wrong_type("response_format", "an object with a string type"))?;
            rf.kind.as_deref() == Some("json_schema")
        }
        _ => false,
    };
    let models: Vec<String> = match raw.models {
        Some(m) if m.get() != "null" => serde_json::from_str(m.get())
            .map_err(|_| wrong_type("models", "an array of model names"))?,
        _ => Vec::new(),
    };
    let provider: Option<ProviderPrefs> = match raw.provider {
        Some(p) if p.get() != "null" => {
            Some(serde_json::from_str(p.get()).map_err(|e| Invalid {
                message: format!(
                    "Invalid value for 'provider': {}.",
                    e.to_string().split(" at line ").next().unwrap_or_default()
                ),
                param: Some("provider"),
            })?)
        }
        _ => None,
    };
    let strip = [
        raw.models.map(|m| member(body, span(body, m.get()))),
        raw.provider.map(|p| member(body, span(body, p.get()))),
    ];
    let has_images = endpoint == Endpoint::Chat && has_key(body, b"\"image_url\"");
    Ok(Request {
        model_span: span(body, model_raw.get()),
        stream_options_span: raw
            .stream_options
            .filter(|so| so.get() != "null")
            .map(|so| span(body, so.get())),
        model,
        stream: raw.stream.unwrap_or(false),
        include_usage,
        user: raw.user,
        n: raw.n.unwrap_or(1),
        has_tools: raw.tools.is_some_and(|Seq(n)| n > 0),
        has_response_format: raw.response_format.is_some_and(|r| r.get() != "null"),
        json_schema,
        has_images,
        models,
        provider,
        strip,
    })
}

impl Request<'_> {
    /// The body to send upstream: `model` replaced, and for streams `stream_options.include_usage`
    /// forced on when `want_usage` (the gateway needs the usage to account the request). Every
    /// other byte is kept as the client sent it.
    pub fn rewrite(&self, body: &[u8], model: &str, want_usage: bool) -> Vec<u8> {
        let mut edits: Vec<(Range<usize>, Cow<'_, [u8]>)> = Vec::with_capacity(4);
        if model != self.model {
            edits.push((self.model_span.clone(), Cow::Owned(json_string(model))));
        }
        if self.stream && want_usage && !self.include_usage {
            edits.push(match &self.stream_options_span {
                Some(span) => (
                    span.clone(),
                    Cow::Owned(merge_include_usage(&body[span.clone()])),
                ),
                None => {
                    let at = body.iter().position(|&b| b == b'{').map_or(0, |i| i + 1);
                    (
                        at..at,
                        Cow::Borrowed(&b"\"stream_options\":{\"include_usage\":true},"[..]),
                    )
                }
            });
        }
        for range in self.strip.iter().flatten() {
            edits.push((range.clone(), Cow::Borrowed(&[][..])));
        }
        edits.sort_by_key(|(r, _)| (r.start, r.end));
        let extra: usize = edits.iter().map(|(_, v)| v.len()).sum();
        let mut out = Vec::with_capacity(body.len() + extra);
        let mut at = 0;
        for (range, value) in &edits {
            let start = range.start.max(at);
            let mut end = range.end.max(start);
            if value.is_empty() && range.start < at {
                // A removal whose leading comma an earlier removal already took (`{"models":…,
                // "provider":…, "model":…`): take the comma that follows it instead.
                let mut e = end;
                while e < body.len() && body[e].is_ascii_whitespace() {
                    e += 1;
                }
                if e < body.len() && body[e] == b',' {
                    end = e + 1;
                }
            }
            out.extend_from_slice(&body[at..start]);
            out.extend_from_slice(value);
            at = end;
        }
        out.extend_from_slice(&body[at..]);
        out
    }

    /// Whether the body must be edited before it goes upstream to `model`.
    pub fn needs_rewrite(&self, model: &str, want_usage: bool) -> bool {
        model != self.model
            || (self.stream && want_usage && !self.include_usage)
            || self.strip.iter().any(Option::is_some)
    }
}

/// Whether `key` (with its quotes) occurs as an object key: followed by optional white space
/// and `:`. A string value equal to it is followed by `,`, `]` or `}` instead.
fn has_key(body: &[u8], key: &[u8]) -> bool {
    memchr::memmem::find_iter(body, key).any(|i| {
        body[i + key.len()..]
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b':')
    })
}

/// The span of a whole object member (key, colon, value and one separating comma) given its
/// value's span, so it can be cut out leaving valid JSON.
fn member(body: &[u8], value: Range<usize>) -> Range<usize> {
    let before = &body[..value.start];
    let mut i = before.len();
    while i > 0 && (before[i - 1].is_ascii_whitespace() || before[i - 1] == b':') {
        i -= 1;
    }
    if i == 0 {
        return value;
    }
    // `i - 1` is the key's closing quote; find its opening quote.
    let mut k = i - 1;
    while k > 0 && before[k - 1] != b'"' {
        k -= 1;
    }
    let key_start = k.saturating_sub(1);
    let mut j = key_start;
    while j > 0 && body[j - 1].is_ascii_whitespace() {
        j -= 1;
    }
    if j > 0 && body[j - 1] == b',' {
        // `…, "key": value` → cut from the comma.
        return (j - 1)..value.end;
    }
    // First member: `{"key": value, …` → cut through the following comma.
    let mut e = value.end;
    while e < body.len() && body[e].is_ascii_whitespace() {
        e += 1;
    }
    if e < body.len() && body[e] == b',' {
        e += 1;
    }
    key_start..e
}

/// Token usage as OpenAI reports it (`prompt_tokens` includes cached tokens).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    pub completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct PromptDetails {
    #[serde(default, deserialize_with = "null_as_zero")]
    pub cached_tokens: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct CompletionDetails {
    #[serde(default, deserialize_with = "null_as_zero")]
    pub reasoning_tokens: u64,
}

impl Usage {
    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details.map_or(0, |d| d.cached_tokens)
    }
    pub fn reasoning_tokens(&self) -> u64 {
        self.completion_tokens_details
            .map_or(0, |d| d.reasoning_tokens)
    }
}

fn null_as_zero<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(Option::<u64>::deserialize(d)?.unwrap_or(0))
}

/// The `usage` object of a response or stream chunk and where it sits in `body`, so a field can be
/// added to it. `Ok(None)` when there is no usage (or it is `null`).
pub fn usage(body: &[u8]) -> Result<Option<(Usage, Range<usize>)>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Outer<'a> {
        #[serde(borrow, default)]
        usage: Option<&'a RawValue>,
    }
    if memchr::memmem::find(body, b"\"usage\"").is_none() {
        // Still a JSON check: a body that is not JSON is an upstream fault either way.
        serde_json::from_slice::<IgnoredAny>(body)?;
        return Ok(None);
    }
    let outer: Outer<'_> = serde_json::from_slice(body)?;
    match outer.usage {
        Some(raw) if raw.get().starts_with('{') => {
            let usage: Usage = serde_json::from_str(raw.get())?;
            Ok(Some((usage, span(body, raw.get()))))
        }
        _ => Ok(None),
    }
}

/// The `message` of an `{"error": {...}}` body or stream chunk, if `body` is one.
pub fn error_message(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Outer {
        error: Option<Inner>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Inner {
        Object {
            #[serde(default)]
            message: Option<String>,
        },
        Text(String),
    }
    memchr::memmem::find(body, b"\"error\"")?;
    match serde_json::from_slice::<Outer>(body).ok()?.error? {
        Inner::Object { message } => Some(message.unwrap_or_default()),
        Inner::Text(t) => Some(t),
    }
}

/// `body` with `"key": value` added as the last member of the object at `object` (a span
/// returned by this module). `value` must already be JSON.
pub fn add_member(body: &[u8], object: Range<usize>, key: &str, value: &[u8]) -> Vec<u8> {
    let close = object.end.saturating_sub(1);
    let inner = &body[object.start.saturating_add(1).min(close)..close];
    let empty = inner.iter().all(u8::is_ascii_whitespace);
    let mut out = Vec::with_capacity(body.len() + key.len() + value.len() + 4);
    out.extend_from_slice(&body[..close]);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(&json_string(key));
    out.push(b':');
    out.extend_from_slice(value);
    out.extend_from_slice(&body[close..]);
    out
}

fn merge_include_usage(stream_options: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(stream_options) {
        Ok(mut map) => {
            map.insert("include_usage".into(), serde_json::Value::Bool(true));
            serde_json::to_vec(&map).unwrap_or_else(|_| b"{\"include_usage\":true}".to_vec())
        }
        Err(_) => b"{\"include_usage\":true}".to_vec(),
    }
}

fn json_string(s: &str) -> Vec<u8> {
    serde_json::to_vec(s).unwrap_or_else(|_| b"\"\"".to_vec())
}

/// The byte range of `part` (a slice borrowed from `body`) within `body`.
fn span(body: &[u8], part: &str) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(body.as_ptr() as usize);
    start..start + part.len()
}

fn missing(field: &'static str) -> Invalid {
    Invalid {
        message: format!("Missing required parameter: '{field}'."),
        param: Some(field),
    }
}

fn wrong_type(field: &'static str, expected: &str) -> Invalid {
    Invalid {
        message: format!("Invalid type for '{field}': expected {expected}."),
        param: Some(field),
    }
}

/// Turns a serde error into a client message naming the field, by re-reading the body with a
/// path-tracking deserializer (only on the error path).
fn describe(body: &[u8], err: serde_json::Error) -> Invalid {
    if err.is_syntax() || err.is_eof() {
        return Invalid {
            message: format!("We could not parse the JSON body of your request: {err}"),
            param: None,
        };
    }
    if !body.trim_ascii_start().starts_with(b"{") {
        return Invalid {
            message: "The request body must be a JSON object.".into(),
            param: None,
        };
    }
    let mut track = serde_path_to_error::Track::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let tracked = serde_path_to_error::Deserializer::new(&mut de, &mut track);
    let path = match Raw::deserialize(tracked) {
        Err(_) => track.path().to_string(),
        Ok(_) => String::new(),
    };
    let param = FIELDS.iter().copied().find(|f| {
        path == *f || path.starts_with(&format!("{f}[")) || path.starts_with(&format!("{f}."))
    });
    let msg = err.to_string();
    let msg = msg.split(" at line ").next().unwrap_or(&msg);
    Invalid {
        message: if path.is_empty() || path == "." {
            format!("Invalid request body: {msg}.")
        } else {
            format!("Invalid value for '{path}': {msg}.")
        },
        param,
    }
}

const FIELDS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "user",
    "n",
    "prompt",
    "input",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "tools",
    "response_format",
    "models",
    "provider",
];

/// Validates `messages`: an array of objects, each with a known string `role`; counts them.
struct Messages(usize);

impl<'de> Deserialize<'de> for Messages {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Messages;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of messages")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Messages, A::Error> {
                let mut n = 0;
                while seq.next_element::<Message>()?.is_some() {
                    n += 1;
                }
                Ok(Messages(n))
            }
        }
        d.deserialize_seq(V)
    }
}

struct Message;

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Message;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a message object with a role")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message, A::Error> {
                let mut role = false;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == "role" {
                        let value: Cow<'de, str> = map.next_value()?;
                        if !ROLES.contains(&value.as_ref()) {
                            return Err(de::Error::custom(format_args!(
                                "unknown role '{value}', expected one of {ROLES:?}"
                            )));
                        }
                        role = true;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                if role {
                    Ok(Message)
                } else {
                    Err(de::Error::missing_field("role"))
                }
            }
        }
        d.deserialize_map(V)
    }
}

const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// Any JSON array; remembers its length.
struct Seq(usize);

impl<'de> Deserialize<'de> for Seq {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Seq;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Seq, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Seq(n))
            }
        }
        d.deserialize_seq(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAT: &[u8] =
        br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true}"#;

    #[test]
    fn reads_routing_fields() {
        let r = request(CHAT, Endpoint::Chat).unwrap();
        assert_eq!(r.model, "gpt-4o-mini");
        assert!(r.stream);
        assert!(!r.include_usage);
    }

    #[test]
    fn rewrites_model_and_forces_usage() {
        let r = request(CHAT, Endpoint::Chat).unwrap();
        let out = r.rewrite(CHAT, "prod \"4o\"", true);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "prod \"4o\"");
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["messages"][0]["content"], "hi");
    }

    #[test]
    fn merges_existing_stream_options() {
        let body = br#"{"stream_options":{"include_usage":false,"x":1},"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let r = request(body, Endpoint::Chat).unwrap();
        let out = r.rewrite(body, "m", true);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["x"], 1);
        assert_eq!(v["model"], "m");
    }

    #[test]
    fn unchanged_body_is_byte_identical() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let r = request(body, Endpoint::Chat).unwrap();
        assert_eq!(r.rewrite(body, "m", true), body.to_vec());
    }

    #[test]
    fn names_the_bad_field() {
        let e = request(
            br#"{"model":"m","messages":[],"stream":"yes"}"#,
            Endpoint::Chat,
        )
        .unwrap_err();
        assert_eq!(e.param, Some("stream"));
        let e = request(
            br#"{"model":"m","messages":[{"role":"robot"}]}"#,
            Endpoint::Chat,
        )
        .unwrap_err();
        assert_eq!(e.param, Some("messages"));
        assert!(e.message.contains("robot"), "{}", e.message);
        let e = request(
            br#"{"model":3,"messages":[{"role":"user"}]}"#,
            Endpoint::Chat,
        )
        .unwrap_err();
        assert_eq!(e.param, Some("model"));
        let e = request(br#"{"messages":[{"role":"user"}]}"#, Endpoint::Chat).unwrap_err();
        assert_eq!(e.param, Some("model"));
        let e = request(
            br#"{"model":"m","messages":[{"role":"user"}"#,
            Endpoint::Chat,
        )
        .unwrap_err();
        assert_eq!(e.param, None);
        assert!(e.message.contains("parse"));
        let e = request(br#"{"model":"m"}"#, Endpoint::Embeddings).unwrap_err();
        assert_eq!(e.param, Some("input"));
    }

    #[test]
    fn reads_usage_and_adds_cost() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"\"usage\": fake"}}],"usage":{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}}"#;
        let (u, span) = usage(body).unwrap().unwrap();
        assert_eq!(
            (
                u.prompt_tokens,
                u.completion_tokens,
                u.cached_tokens(),
                u.reasoning_tokens()
            ),
            (10, 5, 4, 2)
        );
        let out = add_member(body, span, "cost", b"0.001");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["usage"]["cost"], 0.001);
        assert_eq!(v["usage"]["prompt_tokens"], 10);
        assert!(usage(br#"{"usage":null}"#).unwrap().is_none());
        assert!(usage(b"not json").is_err());
        let empty = br#"{"usage":{}}"#;
        let (_, span) = usage(empty).unwrap().unwrap();
        assert_eq!(
            add_member(empty, span, "cost", b"0"),
            br#"{"usage":{"cost":0}}"#.to_vec()
        );
    }

    #[test]
    fn strips_gateway_only_members() {
        for body in [
            &br#"{"models":["a","b"],"model":"m","messages":[{"role":"user","content":"hi"}],"provider":{"order":["x"],"sort":"price"}}"#[..],
            &br#"{ "model":"m", "provider" : {"only":["x"]} , "messages":[{"role":"user","content":"image_url"}], "models": [] }"#[..],
        ] {
            let r = request(body, Endpoint::Chat).unwrap();
            assert!(r.needs_rewrite("m", false));
            let out = r.rewrite(body, "up", true);
            let v: serde_json::Value = serde_json::from_slice(&out)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
            assert!(v.get("models").is_none() && v.get("provider").is_none(), "{v}");
            assert_eq!(v["model"], "up");
            assert!(!r.has_images, "a text that says image_url is not an image");
        }
        let body = br#"{"models":["z"],"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let r = request(body, Endpoint::Chat).unwrap();
        assert_eq!(r.models, vec!["z".to_string()]);
        let out = r.rewrite(body, "m", true);
        let v: serde_json::Value = serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert!(v.get("models").is_none());
    }

    #[test]
    fn strips_adjacent_gateway_members_in_any_order() {
        // Found by the openai_peek fuzz target: `models` first, `provider` right after it.
        for body in [
            &br#"{"models":["a"],"provider":{"order":["x"]},"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#[..],
            &br#"{"model":"gpt-4o","models":["a"],"provider":{"order":["x"]},"messages":[{"role":"user","content":"hi"}]}"#[..],
            &br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"provider":{},"models":[]}"#[..],
        ] {
            let r = request(body, Endpoint::Chat).unwrap();
            let out = r.rewrite(body, "up", true);
            let v: serde_json::Value = serde_json::from_slice(&out)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
            assert_eq!(v["model"], "up");
            assert!(v.get("models").is_none() && v.get("provider").is_none(), "{v}");
        }
    }

    #[test]
    fn reads_capability_needs_and_preferences() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:x"}}]}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{}}},"tools":[{"type":"function","function":{"name":"f"}}],"provider":{"order":["a"],"allow_fallbacks":false,"max_price":{"prompt":1}}}"#;
        let r = request(body, Endpoint::Chat).unwrap();
        assert!(r.has_images && r.json_schema && r.has_tools);
        let p = r.provider.unwrap();
        assert_eq!(p.order, vec!["a".to_string()]);
        assert_eq!(p.allow_fallbacks, Some(false));
        assert_eq!(p.max_price.unwrap().prompt, Some(1.0));
        let e = request(
            br#"{"model":"m","messages":[{"role":"user"}],"provider":{"order":"a"}}"#,
            Endpoint::Chat,
        )
        .unwrap_err();
        assert_eq!(e.param, Some("provider"));
    }

    #[test]
    fn finds_error_chunks() {
        assert_eq!(
            error_message(br#"{"error":{"message":"boom"}}"#).as_deref(),
            Some("boom")
        );
        assert_eq!(error_message(br#"{"choices":[]}"#), None);
    }
}
