//! A borrowed look at OpenAI bodies: the few fields the gateway routes and accounts on, and
//! byte-level edits of them.
//!
//! This is the pass-through hot path: when the client's format equals the provider's, the body is
//! validated and read here without building a tree, and forwarded with only `model` (and maybe
//! `stream_options`) spliced in. It must not re-serialise a body or allocate per message.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::LazyLock;

use memchr::memmem::Finder;

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

/// What [`request`] reads of a body's top level: from [`scan_request`] when it is sure, else
/// from serde reading [`Raw`]. Values kept as JSON text borrow from the body.
#[derive(Debug, Default, PartialEq)]
struct Fields<'a> {
    model: Option<&'a str>,
    stream: Option<bool>,
    stream_options: Option<&'a str>,
    user: Option<Cow<'a, str>>,
    n: Option<u32>,
    messages: Option<usize>,
    prompt: bool,
    input: bool,
    tools: Option<usize>,
    response_format: Option<&'a str>,
    models: Option<&'a str>,
    provider: Option<&'a str>,
}

impl<'a> From<Raw<'a>> for Fields<'a> {
    fn from(raw: Raw<'a>) -> Self {
        let _ = (
            raw.temperature,
            raw.top_p,
            raw.max_tokens,
            raw.max_completion_tokens,
        );
        Fields {
            model: raw.model.map(RawValue::get),
            stream: raw.stream,
            stream_options: raw.stream_options.map(RawValue::get),
            user: raw.user,
            n: raw.n,
            messages: raw.messages.map(|Messages(n)| n),
            prompt: raw.prompt.is_some(),
            input: raw.input.is_some(),
            tools: raw.tools.map(|Seq(n)| n),
            response_format: raw.response_format.map(RawValue::get),
            models: raw.models.map(RawValue::get),
            provider: raw.provider.map(RawValue::get),
        }
    }
}

/// Parses and validates the top level of a request body without building a tree.
pub fn request(body: &[u8], endpoint: Endpoint) -> Result<Request<'_>, Invalid> {
    let raw = match scan_request(body) {
        Some(fields) => fields,
        None => {
            Fields::from(serde_json::from_slice::<Raw<'_>>(body).map_err(|e| describe(body, e))?)
        }
    };
    let model_raw = raw.model.ok_or_else(|| missing("model"))?;
    let model: Cow<'_, str> = match model_raw.as_bytes() {
        [b'"', text @ .., b'"'] if !text.contains(&b'\\') => {
            Cow::Borrowed(&model_raw[1..model_raw.len() - 1])
        }
        [b'"', ..] => {
            serde_json::from_str(model_raw).map_err(|_| wrong_type("model", "a string"))?
        }
        _ => return Err(wrong_type("model", "a string")),
    };
    if model.is_empty() {
        return Err(Invalid {
            message: "'model' must not be empty".into(),
            param: Some("model"),
        });
    }
    match endpoint {
        Endpoint::Chat => match raw.messages {
            None => return Err(missing("messages")),
            Some(0) => {
                return Err(Invalid {
                    message: "'messages' must contain at least one message".into(),
                    param: Some("messages"),
                })
            }
            Some(_) => {}
        },
        Endpoint::Completions if !raw.prompt => return Err(missing("prompt")),
        Endpoint::Embeddings if !raw.input => return Err(missing("input")),
        _ => {}
    }
    if raw.n == Some(0) {
        return Err(Invalid {
            message: "'n' must be at least 1".into(),
            param: Some("n"),
        });
    }
    let include_usage = match raw.stream_options {
        Some(so) if so != "null" => serde_json::from_str::<StreamOptions>(so)
            .map_err(|_| wrong_type("stream_options", "an object with a boolean include_usage"))?
            .include_usage
            .unwrap_or(false),
        _ => false,
    };
    let json_schema = match raw.response_format {
        Some(rf) if rf != "null" => {
            #[derive(Deserialize)]
            struct Rf<'a> {
                #[serde(borrow, rename = "type")]
                kind: Option<Cow<'a, str>>,
            }
            let rf: Rf<'_> = serde_json::from_str(rf)
                .map_err(|_| wrong_type("response_format", "an object with a string type"))?;
            rf.kind.as_deref() == Some("json_schema")
        }
        _ => false,
    };
    let models: Vec<String> = match raw.models {
        Some(m) if m != "null" => {
            serde_json::from_str(m).map_err(|_| wrong_type("models", "an array of model names"))?
        }
        _ => Vec::new(),
    };
    let provider: Option<ProviderPrefs> = match raw.provider {
        Some(p) if p != "null" => Some(serde_json::from_str(p).map_err(|e| Invalid {
            message: format!(
                "Invalid value for 'provider': {}.",
                e.to_string().split(" at line ").next().unwrap_or_default()
            ),
            param: Some("provider"),
        })?),
        _ => None,
    };
    let strip = [
        raw.models.map(|m| member(body, span(body, m))),
        raw.provider.map(|p| member(body, span(body, p))),
    ];
    let has_images = endpoint == Endpoint::Chat && has_key(body, &IMAGE_URL_KEY);
    Ok(Request {
        model_span: span(body, model_raw),
        stream_options_span: raw
            .stream_options
            .filter(|so| *so != "null")
            .map(|so| span(body, so)),
        model,
        stream: raw.stream.unwrap_or(false),
        include_usage,
        user: raw.user,
        n: raw.n.unwrap_or(1),
        has_tools: raw.tools.is_some_and(|n| n > 0),
        has_response_format: raw.response_format.is_some_and(|r| r != "null"),
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

/// Searchers for the keys looked for in every body (building one costs more than a search).
static IMAGE_URL_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"image_url\""));
static USAGE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
static ERROR_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));

/// Whether `key` (with its quotes) occurs as an object key: followed by optional white space
/// and `:`. A string value equal to it is followed by `,`, `]` or `}` instead.
fn has_key(body: &[u8], key: &Finder<'_>) -> bool {
    let len = key.needle().len();
    key.find_iter(body).any(|i| {
        body[i + len..]
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
    // The common case without serde: a body that is surely valid JSON, validated and its usage
    // read in one pass.
    if let Some(found) = scan_usage(body) {
        return Ok(found);
    }
    if USAGE_KEY.find(body).is_none() {
        // Still a JSON check: a body that is not JSON is an upstream fault either way.
        serde_json::from_slice::<IgnoredAny>(body)?;
        return Ok(None);
    }
    let outer: Outer<'_> = serde_json::from_slice(body)?;
    match outer.usage {
        Some(raw) if raw.get().starts_with('{') => {
            let usage: Usage = match usage_fast(raw.get().as_bytes()) {
                Some(u) => u,
                None => serde_json::from_str(raw.get())?,
            };
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
    ERROR_KEY.find(body)?;
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
    // Nothing to escape (the common case: keys and model names): quote it as it is, which is
    // what serde_json writes too.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        let mut out = Vec::with_capacity(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return out;
    }
    serde_json::to_vec(s).unwrap_or_else(|_| b"\"\"".to_vec())
}

/// `Usage` read from the text of a usage object (valid JSON: serde_json has just captured it)
/// without serde, for the shape providers send: plain keys, token counts written as unsigned
/// integers, the two detail objects. `None` for anything else (an escaped key, a repeated key,
/// a count that is not a plain unsigned integer, a detail that is not an object or null), and
/// the caller then lets serde decide, so the outcome is always serde's.
fn usage_fast(raw: &[u8]) -> Option<Usage> {
    let mut p = Scan { b: raw, i: 0 };
    p.ws();
    if p.b.get(p.i) != Some(&b'{') {
        return None;
    }
    let u = p.usage()?;
    p.ws();
    (p.i == raw.len()).then_some(u)
}

/// One pass over a response body that answers only when it is sure to agree with serde_json
/// (reading it into `struct { usage: Option<&RawValue> }`, then the usage into [`Usage`]):
/// `Some` when `body` is a valid JSON object, with its top-level `usage` and that value's span
/// when it is an object; `None` when unsure (a top level that is not an object, an escaped or
/// non-ASCII top-level key, `usage` twice, not ASCII or in a shape [`Scan::usage`] does not read,
/// deep nesting, anything invalid), and serde then decides.
fn scan_usage(body: &[u8]) -> Option<Option<(Usage, Range<usize>)>> {
    let mut p = Scan { b: body, i: 0 };
    p.ws();
    if p.byte()? != b'{' {
        return None;
    }
    let mut usage = None;
    let mut seen = false;
    p.ws();
    if p.b.get(p.i) == Some(&b'}') {
        p.i += 1;
    } else {
        loop {
            p.ws();
            if p.byte()? != b'"' {
                return None;
            }
            let start = p.i;
            if p.string()? {
                // Escaped: serde compares the unescaped key.
                return None;
            }
            let key = &body[start..p.i - 1];
            if !key.is_ascii() {
                return None;
            }
            p.ws();
            if p.byte()? != b':' {
                return None;
            }
            p.ws();
            let v = p.i;
            if key == b"usage" {
                if std::mem::replace(&mut seen, true) {
                    return None;
                }
                if p.b.get(p.i) == Some(&b'{') {
                    usage = Some((p.usage()?, v..p.i));
                } else {
                    // `null` or another type: no usage (serde agrees once the body is valid).
                    p.value()?;
                }
                if !body[v..p.i].is_ascii() {
                    return None;
                }
            } else {
                p.value()?;
            }
            p.ws();
            match p.byte()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    p.ws();
    (p.i == body.len()).then_some(usage)
}

/// One pass over a request body that answers only when it is sure to agree with serde reading
/// [`Raw`]: `Some` when `body` is a valid JSON object whose known members have the types `Raw`
/// takes (a string `model`, a boolean `stream`, an array of message objects with a known `role`…),
/// `None` when unsure or invalid (escaped or non-ASCII keys, duplicates, exponents, deep nesting),
/// and serde then decides and describes any error.
fn scan_request(body: &[u8]) -> Option<Fields<'_>> {
    let text = |p: &Scan<'_>, from: usize| std::str::from_utf8(&body[from..p.i]).ok();
    let mut f = Fields::default();
    let mut seen = 0u32;
    let mut p = Scan::object(body)?;
    p.members(|p, key| {
        let field = match key {
            b"model" => 0,
            b"stream" => 1,
            b"stream_options" => 2,
            b"user" => 3,
            b"n" => 4,
            b"messages" => 5,
            b"prompt" => 6,
            b"input" => 7,
            b"temperature" => 8,
            b"top_p" => 9,
            b"max_tokens" => 10,
            b"max_completion_tokens" => 11,
            b"tools" => 12,
            b"response_format" => 13,
            b"models" => 14,
            b"provider" => 15,
            // serde reads every key as a string: one that is not UTF-8 is an error.
            _ if !key.is_ascii() => return None,
            _ => return p.value(),
        };
        if seen & (1 << field) != 0 {
            return None;
        }
        seen |= 1 << field;
        if p.b[p.i..].starts_with(b"null") {
            // Every field is optional: `null` is absent.
            p.i += 4;
            return Some(());
        }
        let from = p.i;
        match field {
            1 => {
                f.stream = Some(match p.byte()? {
                    b't' => p.literal(b"rue").map(|()| true)?,
                    b'f' => p.literal(b"alse").map(|()| false)?,
                    _ => return None,
                });
            }
            3 => {
                if p.byte()? != b'"' || p.string()? {
                    return None;
                }
                f.user = Some(Cow::Borrowed(text(p, from + 1)?.strip_suffix('"')?));
            }
            4 => f.n = Some(u32::try_from(p.unsigned()?).ok()?),
            5 => f.messages = Some(p.messages()?),
            8 | 9 => {
                if !matches!(p.b.get(p.i)?, b'-' | b'0'..=b'9') {
                    return None;
                }
                p.number()?;
                // An exponent or a very long number could be out of a float's range for serde.
                let number = &p.b[from..p.i];
                if number.len() > 30 || number.iter().any(|&c| c == b'e' || c == b'E') {
                    return None;
                }
            }
            10 | 11 => {
                p.unsigned()?;
            }
            12 => f.tools = Some(p.count()?),
            _ => {
                p.value()?;
                let raw = text(p, from)?;
                match field {
                    0 => f.model = Some(raw),
                    2 => f.stream_options = Some(raw),
                    6 => f.prompt = true,
                    7 => f.input = true,
                    13 => f.response_format = Some(raw),
                    14 => f.models = Some(raw),
                    _ => f.provider = Some(raw),
                }
            }
        }
        Some(())
    })?;
    p.ws();
    (p.i == body.len()).then_some(f)
}

/// The prompt text of a chat request body (OpenAI or Anthropic) in one pass, without a parser:
/// every string the model reads (the messages' `content`, `system`, `prompt`, `input`: strings,
/// lists of strings, parts' `text`) goes to `text`, and the sum of what it returns plus
/// `per_message` for every message is the answer. `None` when unsure — an escaped string or
/// key, a non-ASCII key, a duplicate field, anything but an array of objects for `messages`,
/// invalid JSON — and the caller then reads the body with a parser: where this answers, it
/// counts what such a reading (serde, of `{messages: [{content}], system, prompt, input}`,
/// unknown fields ignored) counts. Admission estimates the prompt of every request with a
/// token limit: this pass is ~5x cheaper than serde's on a small body.
pub fn prompt_text(
    body: &[u8],
    per_message: u64,
    mut text: impl FnMut(&str) -> u64,
) -> Option<u64> {
    /// Where a value sits: what of it is text (as the parser's reading counts).
    #[derive(Clone, Copy, PartialEq)]
    enum Role {
        /// `content`, `system`, `prompt`, `input`: a string, or a list of items.
        Content,
        /// An element of such a list: a string, or an object whose `text` is.
        Item,
        /// The `text` of an item: a string.
        Text,
    }
    fn counted(p: &mut Scan<'_>, role: Role, text: &mut impl FnMut(&str) -> u64) -> Option<u64> {
        match *p.b.get(p.i)? {
            b'"' => {
                p.i += 1;
                let start = p.i;
                if p.string()? {
                    return None;
                }
                Some(text(std::str::from_utf8(&p.b[start..p.i - 1]).ok()?))
            }
            b'[' if role == Role::Content => {
                let mut n = 0;
                p.elements(|p| {
                    n += counted(p, Role::Item, text)?;
                    Some(())
                })?;
                Some(n)
            }
            b'{' if role == Role::Item => {
                let mut n = 0;
                p.members(|p, key| match key {
                    b"text" => {
                        n += counted(p, Role::Text, text)?;
                        Some(())
                    }
                    _ if key.is_ascii() => p.value(),
                    _ => None,
                })?;
                Some(n)
            }
            // The parser reads a number here as any value would be: one out of a float's range
            // is an error to it, so that is left to it.
            b'-' | b'0'..=b'9' => None,
            _ => p.value().map(|()| 0),
        }
    }
    let mut p = Scan::object(body)?;
    let mut seen = 0u8;
    let mut n = 0;
    p.members(|p, key| {
        let field = match key {
            b"messages" => 0,
            b"system" => 1,
            b"prompt" => 2,
            b"input" => 3,
            _ if key.is_ascii() => return p.value(),
            _ => return None,
        };
        if seen & (1 << field) != 0 {
            return None;
        }
        seen |= 1 << field;
        if field > 0 {
            n += counted(p, Role::Content, &mut text)?;
            return Some(());
        }
        p.elements(|p| {
            if p.b.get(p.i) != Some(&b'{') {
                return None;
            }
            let mut content = false;
            p.members(|p, key| match key {
                b"content" if !std::mem::replace(&mut content, true) => {
                    n += counted(p, Role::Content, &mut text)?;
                    Some(())
                }
                b"content" => None,
                _ if key.is_ascii() => p.value(),
                _ => None,
            })?;
            n += per_message;
            Some(())
        })
        .map(drop)
    })?;
    p.ws();
    (p.i == body.len()).then_some(n)
}

/// The index of the first `"`, `\\` or control character at or after `from`: what ends the
/// plain run of a JSON string. Eight bytes at a time (most of a response body is string text).
#[inline]
fn string_special(b: &[u8], from: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut i = from;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let x = u64::from_le_bytes(w);
        let quote = x ^ (LO * u64::from(b'"'));
        let backslash = x ^ (LO * u64::from(b'\\'));
        // A byte's high bit is set for a zero byte (quote, backslash) or one below 0x20; the
        // lowest one found is exact (borrows only disturb the bytes above it).
        let hit = ((quote.wrapping_sub(LO) & !quote)
            | (backslash.wrapping_sub(LO) & !backslash)
            | (x.wrapping_sub(LO * 0x20) & !x))
            & HI;
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|n| i + n)
}

/// A JSON validator for [`scan_usage`]: accepts only what serde_json accepts when it skips a
/// value (`None` for anything else).
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

/// Deeper values are left to serde (it limits nesting too).
const SCAN_MAX_DEPTH: u32 = 100;

impl<'a> Scan<'a> {
    /// A scan of `body` with the cursor on the `{` that opens it (after any whitespace); `None`
    /// if it does not open with one.
    fn object(body: &'a [u8]) -> Option<Scan<'a>> {
        let mut p = Scan { b: body, i: 0 };
        p.ws();
        (p.b.get(p.i) == Some(&b'{')).then_some(p)
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn byte(&mut self) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        self.i += 1;
        Some(c)
    }

    /// The rest of a string whose opening quote was read; `Some(true)` if it had escapes.
    /// Inlined for the common string, which has none.
    #[inline]
    fn string(&mut self) -> Option<bool> {
        let end = string_special(self.b, self.i)?;
        if self.b[end] == b'"' {
            self.i = end + 1;
            return Some(false);
        }
        self.i = end;
        self.string_escaped()
    }

    /// [`Scan::string`] from its first `\\` (or control character) on.
    #[inline(never)]
    fn string_escaped(&mut self) -> Option<bool> {
        let mut escaped = false;
        loop {
            self.i = string_special(self.b, self.i)?;
            match self.byte()? {
                b'"' => return Some(escaped),
                b'\\' => {}
                // A control character: serde refuses it.
                _ => return None,
            }
            escaped = true;
            match self.byte()? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                b'u' => {
                    let hex = self.b.get(self.i..self.i + 4)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    self.i += 4;
                }
                _ => return None,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let n = self.b[self.i..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        self.i += n;
        n
    }

    /// `-`? (`0` | [1-9][0-9]*) (`.` [0-9]+)? ([eE] [+-]? [0-9]+)?
    fn number(&mut self) -> Option<()> {
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.byte()? {
            b'0' => {
                if self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                    return None;
                }
            }
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if !self.b[self.i..].starts_with(word) {
            return None;
        }
        self.i += word.len();
        Some(())
    }

    /// `messages` as [`Messages`] reads it (the cursor on the value): an array of objects with a
    /// `role` from [`ROLES`]; their number.
    fn messages(&mut self) -> Option<usize> {
        self.elements(|p| {
            if p.b.get(p.i) != Some(&b'{') {
                return None;
            }
            let mut role = false;
            p.members(|p, key| {
                if key != b"role" {
                    return if key.is_ascii() { p.value() } else { None };
                }
                if p.byte()? != b'"' {
                    return None;
                }
                let start = p.i;
                if p.string()? {
                    return None;
                }
                let value = &p.b[start..p.i - 1];
                role = ROLES.iter().any(|r| r.as_bytes() == value);
                role.then_some(())
            })?;
            role.then_some(())
        })
    }

    /// Any array (the cursor on the value); its length.
    fn count(&mut self) -> Option<usize> {
        self.elements(Self::value)
    }

    /// An array (the cursor on its `[`), `element` called with the cursor on each element, which
    /// it must consume; the number of elements.
    fn elements(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<usize> {
        if self.byte()? != b'[' {
            return None;
        }
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Some(0);
        }
        let mut n = 0;
        loop {
            element(self)?;
            n += 1;
            self.ws();
            match self.byte()? {
                b',' => self.ws(),
                b']' => return Some(n),
                _ => return None,
            }
        }
    }

    /// A usage object (the cursor on its `{`), validated as [`Scan::value`] would and read as
    /// serde reads it into [`Usage`]; `None` when unsure (a duplicate field, a count that is not
    /// a plain unsigned integer, an escaped key, a details value that is not an object or
    /// `null`), and serde then decides.
    fn usage(&mut self) -> Option<Usage> {
        let mut u = Usage::default();
        let mut seen = [false; 4];
        self.members(|p, key| {
            let slot = match key {
                b"prompt_tokens" => 0,
                b"completion_tokens" => 1,
                b"prompt_tokens_details" => 2,
                b"completion_tokens_details" => 3,
                _ => return p.value(),
            };
            if std::mem::replace(&mut seen[slot], true) {
                return None;
            }
            match slot {
                0 => u.prompt_tokens = p.unsigned()?,
                1 => u.completion_tokens = p.unsigned()?,
                2 => {
                    u.prompt_tokens_details = p
                        .details(b"cached_tokens")?
                        .map(|cached_tokens| PromptDetails { cached_tokens });
                }
                _ => {
                    u.completion_tokens_details = p
                        .details(b"reasoning_tokens")?
                        .map(|reasoning_tokens| CompletionDetails { reasoning_tokens });
                }
            }
            Some(())
        })?;
        Some(u)
    }

    /// An object (the cursor on its `{`): `member` is called with each (unescaped) key and the
    /// cursor on its value, which it must consume.
    fn members(&mut self, mut member: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        self.i += 1;
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Some(());
        }
        loop {
            if self.byte()? != b'"' {
                return None;
            }
            let start = self.i;
            if self.string()? {
                return None;
            }
            let b = self.b;
            let key = &b[start..self.i - 1];
            self.ws();
            if self.byte()? != b':' {
                return None;
            }
            self.ws();
            member(self, key)?;
            self.ws();
            match self.byte()? {
                b',' => self.ws(),
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// A count: a plain unsigned integer that fits in a `u64` (what serde reads as one without
    /// doubt).
    fn unsigned(&mut self) -> Option<u64> {
        let start = self.i;
        let digits = self.digits();
        if digits == 0 || digits > 19 || (digits > 1 && self.b[start] == b'0') {
            return None;
        }
        if matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let mut n: u64 = 0;
        for &d in &self.b[start..self.i] {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        }
        Some(n)
    }

    /// A details object (`null`: `None`) and its `field` (`null` or absent: 0).
    fn details(&mut self, field: &[u8]) -> Option<Option<u64>> {
        match self.b.get(self.i)? {
            b'n' => {
                self.i += 1;
                self.literal(b"ull")?;
                return Some(None);
            }
            b'{' => {}
            _ => return None,
        }
        let mut value = 0;
        let mut seen = false;
        self.members(|p, key| {
            if key != field {
                return p.value();
            }
            if std::mem::replace(&mut seen, true) {
                return None;
            }
            value = if p.b.get(p.i) == Some(&b'n') {
                p.i += 1;
                p.literal(b"ull")?;
                0
            } else {
                p.unsigned()?
            };
            Some(())
        })?;
        Some(Some(value))
    }

    /// One value, whitespace before it already skipped. Inlined for the scalars most values
    /// are; containers go on in [`Scan::nested`].
    #[inline]
    fn value(&mut self) -> Option<()> {
        match *self.b.get(self.i)? {
            b'"' => {
                self.i += 1;
                self.string().map(drop)
            }
            b'0'..=b'9' | b'-' => self.number(),
            _ => self.nested(),
        }
    }

    /// One value of any kind, whitespace before it already skipped.
    #[inline(never)]
    fn nested(&mut self) -> Option<()> {
        // One bit per open container: set for objects.
        let mut objects: u128 = 0;
        let mut depth: u32 = 0;
        loop {
            // A value.
            match self.byte()? {
                b'{' | b'[' if depth == SCAN_MAX_DEPTH => return None,
                open @ (b'{' | b'[') => {
                    let object = open == b'{';
                    self.ws();
                    let close = if object { b'}' } else { b']' };
                    if self.b.get(self.i) == Some(&close) {
                        self.i += 1;
                    } else {
                        objects = (objects << 1) | u128::from(object);
                        depth += 1;
                        if object {
                            self.key()?;
                        }
                        self.ws();
                        continue;
                    }
                }
                b'"' => {
                    self.string()?;
                }
                b't' => self.literal(b"rue")?,
                b'f' => self.literal(b"alse")?,
                b'n' => self.literal(b"ull")?,
                b'-' | b'0'..=b'9' => {
                    self.i -= 1;
                    self.number()?;
                }
                _ => return None,
            }
            // After a value: close containers, or go on to the next member or element.
            loop {
                if depth == 0 {
                    return Some(());
                }
                let object = objects & 1 == 1;
                self.ws();
                match self.byte()? {
                    b',' => {
                        if object {
                            self.ws();
                            self.key()?;
                        }
                        self.ws();
                        break;
                    }
                    b'}' if object => {}
                    b']' if !object => {}
                    _ => return None,
                }
                objects >>= 1;
                depth -= 1;
            }
        }
    }

    /// `"key":` of a member inside a skipped value.
    fn key(&mut self) -> Option<()> {
        if self.byte()? != b'"' {
            return None;
        }
        self.string()?;
        self.ws();
        (self.byte()? == b':').then_some(())
    }
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

    /// The fast usage reader agrees with serde whenever it answers, and answers for the shapes
    /// providers send.
    #[test]
    fn fast_usage_agrees_with_serde() {
        let cases: &[(&str, bool)] = &[
            (
                r#"{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29}"#,
                true,
            ),
            (
                r#"{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":3,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":4,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}"#,
                true,
            ),
            (r#"{ "prompt_tokens" : 1 , "completion_tokens":2 }"#, true),
            (r#"{}"#, true),
            (
                r#"{"prompt_tokens_details":null,"completion_tokens_details":null}"#,
                true,
            ),
            (r#"{"prompt_tokens_details":{"cached_tokens":null}}"#, true),
            (r#"{"prompt_tokens_details":{}}"#, true),
            (
                r#"{"cost":0.5,"x":{"a":[1,{"b":"}]\"{"}],"c":"\\"},"prompt_tokens":7}"#,
                true,
            ),
            (r#"{"prompt_tokens":18446744073709551615}"#, false),
            (r#"{"prompt_tokens":18446744073709551616}"#, false),
            (r#"{"prompt_tokens":-1}"#, false),
            (r#"{"prompt_tokens":-0}"#, false),
            (r#"{"prompt_tokens":1.0}"#, false),
            (r#"{"prompt_tokens":1e2}"#, false),
            (r#"{"prompt_tokens":null}"#, false),
            (r#"{"prompt_tokens":"1"}"#, false),
            (r#"{"prompt_tokens":1,"prompt_tokens":2}"#, false),
            (r#"{"prompt\u005ftokens":5}"#, false),
            (r#"{"prompt_tokens_details":[5]}"#, false),
            (r#"{"prompt_tokens_details":5}"#, false),
            (
                r#"{"prompt_tokens_details":{"cached_tokens":1,"cached_tokens":2}}"#,
                false,
            ),
            (
                r#"{"completion_tokens_details":{"reasoning_tokens":-3}}"#,
                false,
            ),
        ];
        for (text, fast) in cases {
            let by_serde = serde_json::from_str::<Usage>(text).ok();
            let by_fast = usage_fast(text.as_bytes());
            assert_eq!(by_fast.is_some(), *fast, "{text}");
            if let Some(u) = by_fast {
                assert_eq!(Some(u), by_serde, "{text}");
            }
            // And through the public reader, whichever path it takes.
            let body = format!(r#"{{"id":"x","usage":{text}}}"#);
            let read = usage(body.as_bytes()).ok().flatten().map(|(u, _)| u);
            assert_eq!(read, by_serde, "{text}");
        }
        assert_eq!(json_string("cost"), b"\"cost\"".to_vec());
        assert_eq!(json_string("a\"b\n"), serde_json::to_vec("a\"b\n").unwrap());
        assert_eq!(json_string("é/x"), serde_json::to_vec("é/x").unwrap());
    }

    #[test]
    fn string_special_finds_the_first_stop() {
        let naive = |b: &[u8], from: usize| {
            b[from..]
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .map(|n| from + n)
        };
        let mut seed: u64 = 42;
        for _ in 0..5000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    let r = seed.rotate_left(i as u32 * 7) as u8;
                    // Mostly plain text, sometimes a stop or a high byte.
                    match r % 16 {
                        0 => b'"',
                        1 => b'\\',
                        2 => r % 32,
                        3 => 0x80 | r,
                        _ => b'a' + r % 26,
                    }
                })
                .collect();
            for from in 0..=len {
                assert_eq!(
                    string_special(&bytes, from),
                    naive(&bytes, from),
                    "{bytes:?} {from}"
                );
            }
        }
    }

    /// The one-pass request scan reads what serde reads whenever it answers, answers for the
    /// bodies clients send, and leaves every invalid body (and its error message) to serde; on
    /// samples and thousands of random mutations of them.
    #[test]
    fn request_scan_agrees_with_serde() {
        let samples: &[&[u8]] = &[
            br#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"hi \"there\""},{"type":"image_url","image_url":{"url":"data:x"}}]}],"stream":true,"stream_options":{"include_usage":true},"temperature":0.7,"top_p":1,"max_tokens":64,"n":1,"user":"u-1","tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"response_format":{"type":"json_schema"},"models":["a","b"],"provider":{"order":["x"]}}"#,
            br#"{"model":"bench-model","messages":[{"role":"user","content":"Say hello."}],"max_completion_tokens":16}"#,
            br#" { "model" : "m" , "prompt" : [ "a" , "b" ] , "stream" : false , "seed" : -3 } "#,
            br#"{"model":"m","input":"text","stream":null,"user":null,"n":null,"tools":null}"#,
            br#"{"model":"m","messages":[],"temperature":-0.5}"#,
            br#"{"model":"m\u00e9","messages":[{"role":"tool","content":null,"tool_call_id":"c"}]}"#,
            br#"{"model":5,"messages":[{"role":"wizard"}]}"#,
            br#"{"model":"m","messages":[{"content":"no role"}]}"#,
            br#"{"model":"m","model":"n","messages":[{"role":"user"}]}"#,
            br#"{"model":"m","messages":[{"role":"user"}],"n":4294967296}"#,
            br#"{"model":"m","messages":[{"role":"user"}],"temperature":1e999}"#,
            br#"{"model":"m","messages":[{"role":"user"}],"temperature":-0.5e0}"#,
            "{\"model\":\"\u{e9}\",\"messages\":[{\"role\":\"user\",\"content\":\"\u{1F600}\"}]}".as_bytes(),
            b"{\"model\":\"m\",\"\xff\":1}",
            b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}",
            br#"[1]"#,
            br#""#,
        ];
        fn by_serde(b: &[u8]) -> Option<Fields<'_>> {
            serde_json::from_slice::<Raw<'_>>(b).ok().map(Fields::from)
        }
        let check = |b: &[u8]| {
            if let Some(fast) = scan_request(b) {
                assert_eq!(Some(fast), by_serde(b), "{}", String::from_utf8_lossy(b));
            }
        };
        for s in samples {
            check(s);
        }
        for s in &samples[..6] {
            assert!(scan_request(s).is_some(), "{}", String::from_utf8_lossy(s));
        }
        let mut fast = 0;
        mutations(&samples[..6], 0x2545_f491_4f6c_dd1d, |body| {
            check(body);
            fast += usize::from(scan_request(body).is_some());
        });
        // Mutations that keep a body valid still take the fast path.
        assert!(fast > 1000, "{fast}");
    }

    /// The reader as it was before the one-pass scan: serde_json only.
    fn usage_by_serde(body: &[u8]) -> Result<Option<(Usage, Range<usize>)>, serde_json::Error> {
        #[derive(Deserialize)]
        struct Outer<'a> {
            #[serde(borrow, default)]
            usage: Option<&'a RawValue>,
        }
        if memchr::memmem::find(body, b"\"usage\"").is_none() {
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

    fn same_as_serde(body: &[u8]) {
        let fast = usage(body);
        let slow = usage_by_serde(body);
        match (&fast, &slow) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", String::from_utf8_lossy(body)),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            _ => panic!(
                "{}: {fast:?} vs serde {slow:?}",
                String::from_utf8_lossy(body)
            ),
        }
    }

    /// The one-pass reader gives serde's answer on valid, invalid and odd bodies, including
    /// thousands of random mutations of real ones.
    #[test]
    fn one_pass_usage_agrees_with_serde() {
        let samples: &[&[u8]] = &[
            br#"{"id":"chatcmpl-1","object":"chat.completion","created":1741569952,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! \"quoted\" \\ \u00e9 \ud83d\ude00 tab\t","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":31,"total_tokens":50,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_1"}"#,
            br#"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#,
            br#"{"choices":[{"delta":{"content":"usage"}}],"usage":null}"#,
            br#" { "usage" : { } , "x" : [ 1 , -2.5e+3 , true , false , null , "s" , { } , [ ] ] } "#,
            br#"{"error":{"message":"bad","type":"x"}}"#,
            br#"{"data":[{"embedding":[0.1,-0.2,3e-5],"index":0}],"usage":{"prompt_tokens":3,"total_tokens":3}}"#,
            "{\"usage\":{\"prompt_tokens\":1},\"n\":\"\u{e9}\u{1F600}\"}".as_bytes(),
            br#"[{"prompt_tokens":1}]"#,
            br#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#,
            br#"{"us\u0061ge":{"prompt_tokens":4}}"#,
            br#"{"usage":5}"#,
            br#"{"a":01}"#,
            br#"{"a":1.}"#,
            br#"{"a":"\x"}"#,
            br#"{"a":"\u12G4"}"#,
            b"{\"a\":\"ctl\x01\"}",
            b"{\"a\":\"\xff\xfe\",\"usage\":{\"prompt_tokens\":2}}",
            b"{\"usage\":{\"prompt_tokens\":2,\"x\":\"\xff\"}}",
            b"{\"\xc3\xa9\":1,\"usage\":{\"prompt_tokens\":2}}",
            br#"{} x"#,
            br#""#,
            br#"not json"#,
        ];
        for s in samples {
            same_as_serde(s);
        }
        // The shapes providers send take the one-pass path.
        for s in &samples[..6] {
            assert!(scan_usage(s).is_some(), "{}", String::from_utf8_lossy(s));
        }
        let (u, span) = scan_usage(samples[0]).flatten().unwrap();
        assert_eq!(usage_fast(&samples[0][span]), Some(u));
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(150), "]".repeat(150));
        same_as_serde(deep.as_bytes());
        let deep = format!(
            "{{\"usage\":{{}},\"a\":{}1{}}}",
            "[".repeat(99),
            "]".repeat(99)
        );
        same_as_serde(deep.as_bytes());

        mutations(&samples[..6], 0x9e37_79b9_7f4a_7c15, same_as_serde);
    }

    /// 20,000 random mutations of `samples`: JSON punctuation, digits and letters inserted,
    /// deleted, replaced, one to four times each.
    fn mutations(samples: &[&[u8]], mut seed: u64, mut each: impl FnMut(&[u8])) {
        let alphabet = b"{}[]\":,\\ -+.eE01239tfnulsaxu\t\n\x01\xc3";
        let mut rand = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..20_000 {
            let mut body = samples[rand(samples.len())].to_vec();
            for _ in 0..=rand(3) {
                let at = rand(body.len() + 1);
                match rand(3) {
                    0 => body.insert(at, alphabet[rand(alphabet.len())]),
                    1 if at < body.len() => {
                        body.remove(at);
                    }
                    _ if at < body.len() => body[at] = alphabet[rand(alphabet.len())],
                    _ => {}
                }
            }
            each(&body);
        }
    }
}
