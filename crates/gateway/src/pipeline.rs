//! The life of a data-plane request, top to bottom.
//!
//! ```text
//!   1. authenticate      auth::authenticate        401
//!   2. read the body     read_body                 413, 400
//!   3. parse             providers::…::peek        400
//!   4. resolve           routing::resolve          404
//!   5. authorize         auth::allow               403
//!   6. admit             (limits and budgets: reserve before, settle after)
//!   7. order targets     routing::order
//!   8. send              upstream::send            retries, failover; 429 502 503 504
//!   9. answer            buffered: price, add usage.cost | streamed: relay::Relay
//!  10. finish            usage::emit — always, also on error and client disconnect
//! ```
//!
//! Business policy lives here as plain async code; tower layers in `app` do only
//! protocol-generic work.

use std::borrow::Cow;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Instant;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use providers::canonical::{ChatRequest, Part, ResponseFormat};
use providers::openai::peek::{self, Endpoint};

use crate::app::App;
use crate::auth;
use crate::config::{Config, Price};
use crate::cost::{self, Tokens};
use crate::error::{Error, Kind, Protocol};
use crate::limits;
use crate::relay::{self, Relay};
use crate::routing;
use crate::telemetry;
use crate::upstream::translate::{self, Wire};
use crate::upstream::{self, Call};
use crate::usage;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_MODEL: HeaderName = HeaderName::from_static("x-switchyard-model");
pub static X_VERSION: HeaderName = HeaderName::from_static("x-switchyard-version");
pub static X_PROVIDER: HeaderName = HeaderName::from_static("x-switchyard-provider");
pub static X_UPSTREAM_MODEL: HeaderName = HeaderName::from_static("x-switchyard-upstream-model");
pub static X_ATTEMPTS: HeaderName = HeaderName::from_static("x-switchyard-attempts");
pub static X_COST: HeaderName = HeaderName::from_static("x-switchyard-cost");
/// Set when a fallback model served the request: the model that did.
pub static X_FALLBACK: HeaderName = HeaderName::from_static("x-switchyard-fallback");
static X_TIMEOUT: HeaderName = HeaderName::from_static("x-switchyard-timeout");
static X_RETRIES: HeaderName = HeaderName::from_static("x-switchyard-retries");

static JSON: HeaderValue = HeaderValue::from_static("application/json");
static EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
static NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");

/// What is known about a request as it goes: becomes the response headers and the record.
struct Ctx {
    headers: HeaderMap,
    record: Option<Box<usage::Record>>,
    /// The request body was read to its end. When an error is answered before that, the
    /// connection cannot be reused (the unread body is still on it): it is closed, and the
    /// client told so with `Connection: close`.
    body_read: bool,
}

impl Ctx {
    fn record(&mut self) -> Option<&mut usage::Record> {
        self.record.as_deref_mut()
    }
}

/// Serves one OpenAI-protocol request (`/v1/chat/completions`, `/v1/completions`,
/// `/v1/embeddings`).
///
/// These two hand out `serve`'s own future rather than wrapping it in one more `async fn`:
/// every level of `async fn` builds the inner future (several KiB) and then moves it into its
/// own state, a `memcpy` per level per request (`memmove` fell from ~0.79 to ~0.64 µs per
/// request in perf, bare, c=64, without the levels these and `server::Hot::serve` were).
pub fn openai(
    app: &App,
    req: http::Request<Body>,
    endpoint: Endpoint,
) -> impl Future<Output = Response> + Send + '_ {
    serve(app, req, Protocol::OpenAi, endpoint)
}

/// Serves one Anthropic Messages request (`/v1/messages`), whatever the provider.
pub fn anthropic(
    app: &App,
    req: http::Request<Body>,
) -> impl Future<Output = Response> + Send + '_ {
    serve(app, req, Protocol::Anthropic, Endpoint::Chat)
}

async fn serve(
    app: &App,
    req: http::Request<Body>,
    protocol: Protocol,
    endpoint: Endpoint,
) -> Response {
    let started = Instant::now();
    let time = std::time::SystemTime::now();
    let config = app.config();
    let request_id = new_request_id(time);
    let name = match protocol {
        Protocol::Anthropic => "messages",
        _ => endpoint_name(endpoint),
    };
    // 1. Authenticate (here, so that the header map is made to the answer's size at once).
    let caller = auth::authenticate(&config, &app.directory, req.headers());
    let mut cx = Ctx {
        // Room for 12: without rate-limit headers ours and the upstream's fit. The map becomes
        // the response's, and hyper keeps each connection's last one for its next request, so
        // a larger one costs memory on every held connection. A key with request or token
        // windows gets six `x-ratelimit-*` headers more: room for 24, rather than growing
        // (a new table, every entry moved) halfway through.
        headers: HeaderMap::with_capacity(match &caller {
            Ok(auth::Caller::Key(k)) if k.has_windows() => 18,
            _ => 8,
        }),
        // Boxed, and written into its box in place (the box is allocated before the record is
        // made): a record is ~500 bytes, which this future would otherwise hold for as long as
        // the request lasts, and which every hand-over (to the relay, to `usage::emit`) would
        // copy.
        record: Some(Box::write(
            Box::new_uninit(),
            usage::Record::at(request_id.clone(), name, started, time),
        )),
        body_read: false,
    };
    if let Some(record) = cx.record() {
        record.client_request_id = client_request_id(req.headers());
        if let Some(exporter) = &app.tracer {
            record.trace = Some(telemetry::Trace::start(exporter, req.headers()));
        }
    }
    if let Ok(v) = HeaderValue::try_from(request_id) {
        cx.headers.insert(X_REQUEST_ID.clone(), v);
    }
    let deadline = started + config.server.request_timeout;
    let mut resp = match run(
        app, &config, caller, req, protocol, endpoint, deadline, &mut cx,
    )
    .await
    {
        Ok(resp) => resp,
        Err(e) => {
            if let Some(mut r) = cx.record.take() {
                r.status = e.status().as_u16();
                r.error = Some(e.message.to_string());
                usage::emit(r);
            }
            let mut resp = e.into_response(protocol);
            if !cx.body_read {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            resp
        }
    };
    // Ours (ids, model, version, limits…, and a successful answer's content type) are most of
    // the answer's headers: they become its map, and the few an error response brought
    // (content type, Retry-After) join them. A successful answer brings none: no second map
    // is filled, merged and freed.
    let own = std::mem::replace(resp.headers_mut(), cx.headers);
    if !own.is_empty() {
        resp.headers_mut().extend(own);
    }
    resp
}

/// What routing and answering need to know of a request, whatever its protocol.
struct Facts<'a> {
    /// Borrowed from the body when the request is read in place (OpenAI).
    model: Cow<'a, str>,
    stream: bool,
    include_usage: bool,
    /// The most output tokens the client allows, when it says.
    max_tokens: Option<u64>,
    needs: routing::Needs,
    prefs: Option<peek::ProviderPrefs>,
    /// OpenRouter's `models` fallback list.
    models: Vec<String>,
}

/// Step 3 for the Anthropic protocol: the whole request, parsed into canonical types.
fn parse_anthropic(
    body: &[u8],
    canonical: &OnceLock<Result<ChatRequest, String>>,
) -> Result<Facts<'static>, Error> {
    let req = providers::anthropic::request::parse(body).map_err(|e| {
        let mut err = Error::new(Kind::InvalidRequest, e.message().to_string());
        err.param = e.param().map(|p| p.to_string().into());
        err
    })?;
    let needs = routing::Needs {
        tools: !req.tools.is_empty(),
        json_schema: matches!(req.response_format, Some(ResponseFormat::JsonSchema { .. })),
        vision: req
            .messages
            .iter()
            .any(|m| m.content.iter().any(|p| matches!(p, Part::Image { .. }))),
        tokens: (body.len() / 4) as u64,
        declared: false,
    };
    let facts = Facts {
        model: Cow::Owned(req.model.clone()),
        stream: req.stream,
        include_usage: true,
        max_tokens: req.max_tokens.map(u64::from),
        needs,
        prefs: None,
        models: Vec::new(),
    };
    let _ = canonical.set(Ok(req));
    Ok(facts)
}

#[allow(clippy::too_many_arguments)]
async fn run(
    app: &App,
    config: &Config,
    caller: Result<auth::Caller, Error>,
    req: http::Request<Body>,
    protocol: Protocol,
    endpoint: Endpoint,
    deadline: Instant,
    cx: &mut Ctx,
) -> Result<Response, Error> {
    let (parts, body) = req.into_parts();

    // 1. Authenticated by the caller (`serve`).
    let caller = caller?;
    if let (auth::Caller::Key(k), Some(r)) = (&caller, cx.record()) {
        r.key = Some(k.name.clone());
        r.key_id = Some(k.id.clone());
        r.team_id.clone_from(&k.team_id);
    }

    // 2. Read the body, within the size limit and the request deadline.
    let body = read_body(&parts.headers, body, config.server.max_body_bytes, deadline).await?;
    cx.body_read = true;
    if config.server.usage_log_bodies {
        if let Some(r) = cx.record() {
            r.keep_bodies(body.clone());
        }
    }

    // 3. Parse: for OpenAI only what routing needs; other protocols into canonical types.
    let canonical = OnceLock::new();
    let (peek, facts) = match protocol {
        Protocol::Anthropic => (None, parse_anthropic(&body, &canonical)?),
        _ => {
            let p =
                peek::request(&body, endpoint).map_err(|e| Error::invalid(e.message, e.param))?;
            let facts = Facts {
                model: p.model.clone(),
                stream: p.stream,
                include_usage: p.include_usage,
                max_tokens: None,
                needs: routing::Needs::of(&p, body.len()),
                prefs: p.provider.clone(),
                models: p.models.clone(),
            };
            (Some(p), facts)
        }
    };
    if let Some(r) = cx.record() {
        r.streamed = facts.stream;
    }

    // 4. Resolve model and version.
    let pinned = parts.headers.get(&X_VERSION).and_then(|v| v.to_str().ok());
    let route = routing::resolve(config, &facts.model, pinned)?;
    cx.headers
        .insert(X_MODEL.clone(), route.model_header.clone());
    cx.headers
        .insert(X_VERSION.clone(), route.version.name_header.clone());
    if let Some(r) = cx.record() {
        r.model.clone_from(&route.model);
        r.version.clone_from(&route.version.name);
    }

    // 5. Authorize the model for this caller.
    auth::allow(&caller, &route.model)?;

    // 6. Admit: reserve the request, its estimated tokens and cost against the key's and
    //    team's limits; settled with the real usage when the request ends, however it ends.
    let reservation = admit(app, &caller, &route, &facts, &body).await?;
    if let Some(r) = &reservation {
        ratelimit_headers(&r.headroom(), &mut cx.headers);
    }

    // 7–8. Plan the targets and send, with retries, failover and fallbacks.
    let overrides = Overrides::from(&parts.headers)?;
    let needs = facts.needs;
    let call = Call {
        endpoint,
        body: &body,
        peek: peek.as_ref(),
        canonical: &canonical,
        stream: facts.stream,
        deadline,
        trace: cx
            .record
            .as_ref()
            .and_then(|r| r.trace.as_ref())
            .map(|t| t.context),
        tracestate: cx
            .record
            .as_ref()
            .and_then(|r| r.trace.as_ref())
            .and_then(|t| t.state.clone()),
    };
    app.retry_budget.deposit();
    let allow_fallbacks = facts
        .prefs
        .as_ref()
        .and_then(|p| p.allow_fallbacks)
        .unwrap_or(true);
    // The client's `models` replace the configured fallbacks (OpenRouter's semantics).
    let fallbacks: Vec<String> = if facts.models.is_empty() {
        route.version.fallbacks.clone()
    } else {
        facts
            .models
            .iter()
            .filter(|m| **m != route.model)
            .cloned()
            .collect()
    };
    let mut all_attempts = Vec::new();
    let mut current = route;
    // Set when a fallback model took over: the answer then names it instead.
    let mut switched = false;
    let mut next_fallback = 0;
    let mut last_error: Option<Error> = None;
    let mut context_overflow = false;
    let (route, success) = loop {
        let served = match routing::plan(&current, &needs, facts.prefs.as_ref()) {
            Err(routing::Unservable::ContextTooLong(e)) => {
                context_overflow = true;
                Err(e)
            }
            Err(e) if all_attempts.is_empty() && last_error.is_none() => return Err(e.into_error()),
            Err(e) => Err(e.into_error()),
            Ok(order) => {
                let plan = upstream::Plan {
                    version: &current.version,
                    order,
                    retries: overrides.retries.unwrap_or(current.version.retries),
                    timeout: overrides.timeout.unwrap_or(current.version.timeout),
                    tokens: needs.tokens,
                };
                match upstream::send(&app.client, &app.retry_budget, &plan, &call).await {
                    Ok(mut s) => {
                        all_attempts.append(&mut s.attempts);
                        Ok(s)
                    }
                    Err(f) => {
                        all_attempts.extend(f.attempts);
                        if !f.can_fall_back {
                            cx.headers.insert(
                                X_ATTEMPTS.clone(),
                                upstream::attempts_header(all_attempts.len()),
                            );
                            if let Some(r) = cx.record() {
                                r.attempts = all_attempts;
                            }
                            return Err(f.error);
                        }
                        context_overflow |= f.context_length;
                        Err(f.error)
                    }
                }
            }
        };
        match served {
            Ok(s) => break (current, s),
            Err(e) => last_error = Some(e),
        }
        // Every target of this model failed: the next fallback, if any and if allowed.
        let next = if allow_fallbacks {
            next_model(
                config,
                &fallbacks,
                &mut next_fallback,
                context_overflow.then_some(&current),
            )
        } else {
            None
        };
        match next {
            Some(r) => {
                tracing::debug!(from = %current.model, to = %r.model, "falling back");
                crate::metrics::global().fallbacks.inc(&[&current.model]);
                current = r;
                switched = true;
            }
            None => {
                cx.headers.insert(
                    X_ATTEMPTS.clone(),
                    upstream::attempts_header(all_attempts.len()),
                );
                if let Some(r) = cx.record() {
                    r.attempts = all_attempts;
                }
                return Err(last_error.unwrap_or_else(|| {
                    Error::new(
                        Kind::NoHealthyTarget,
                        "No target is available for this model.",
                    )
                }));
            }
        }
    };
    if route.model != current_requested(&facts.model) {
        cx.headers
            .insert(X_FALLBACK.clone(), route.model_header.clone());
    }
    if switched {
        cx.headers
            .insert(X_MODEL.clone(), route.model_header.clone());
        cx.headers
            .insert(X_VERSION.clone(), route.version.name_header.clone());
    }
    let success = upstream::Success {
        attempts: all_attempts,
        ..success
    };
    let target = &route.version.targets[success.target];
    cx.headers
        .insert(X_PROVIDER.clone(), target.provider.name_header.clone());
    cx.headers
        .insert(X_UPSTREAM_MODEL.clone(), target.model_header.clone());
    cx.headers.insert(
        X_ATTEMPTS.clone(),
        upstream::attempts_header(success.attempts.len()),
    );
    // Resolved when the configuration was built: configured, else the catalogue's, else none.
    let price = target.price;
    let mut record = cx
        .record
        .take()
        .unwrap_or_else(|| Box::new(usage::Record::new(String::new(), "", Instant::now())));
    record.provider.clone_from(&target.provider.name);
    record.upstream_model.clone_from(&target.model);
    record.attempts = success.attempts;
    record.status = 200;

    // 9. Answer: byte for byte when the provider speaks the client's protocol, else translated.
    let wire = Wire::of(&target.provider.kind);
    let passthrough = protocol == Protocol::OpenAi && wire == Wire::OpenAi;
    let (up_parts, mut up_body) = success.response.into_parts();
    if facts.stream {
        let body = if passthrough {
            Body::new(
                Relay::new(
                    up_body,
                    success.first,
                    facts.include_usage,
                    price,
                    route.version.timeout,
                    record,
                )
                .settling(reservation),
            )
        } else {
            let relay = relay::translate::Translate::new(
                up_body,
                success.first,
                translate::Decoder::new(wire),
                relay::translate::Encoder::new(protocol, facts.include_usage),
                price,
                route.version.timeout,
                stamp(&record.request_id, &target.model),
                record,
            );
            let relay = relay.settling(reservation);
            if protocol == Protocol::Anthropic && wire == Wire::Anthropic {
                Body::new(relay.forward_original())
            } else {
                Body::new(relay)
            }
        };
        cx.headers
            .insert(header::CONTENT_TYPE, EVENT_STREAM.clone());
        cx.headers.insert(header::CACHE_CONTROL, NO_CACHE.clone());
        return Ok(Response::new(body));
    }
    let bytes = up_body.take_full().unwrap_or_default();
    let answer = if passthrough {
        if record.keeps_bodies() {
            if let Some(text) = providers::openai::response::text(&bytes) {
                record.completion_text(&text);
            }
        }
        priced_openai(bytes, price, &mut record)
    } else {
        let s = stamp(&record.request_id, &target.model);
        translated(wire, protocol, &bytes, price, &s, &mut record)
    };
    let Some((bytes, usd)) = answer else {
        record.status = 502;
        record.error = Some("malformed upstream body".into());
        usage::emit(record);
        return Err(Error::new(
            Kind::UpstreamBad,
            format!(
                "Provider '{}' answered with a malformed response.",
                target.provider.name
            ),
        ));
    };
    record.completed = true;
    record.first_token = Some(record.started.elapsed());
    if let Some(r) = reservation {
        r.settle_in_background(record.tokens.total(), record.cost.unwrap_or(0.0));
    }
    usage::emit(record);
    if let Some(v) = usd.and_then(|v| HeaderValue::try_from(v).ok()) {
        cx.headers.insert(X_COST.clone(), v);
    }
    cx.headers.insert(header::CONTENT_TYPE, JSON.clone());
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = up_parts.status;
    Ok(resp)
}

/// The id, model and time a translated answer carries when the provider gives none.
fn stamp(request_id: &str, model: &str) -> relay::translate::Stamp {
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let id = request_id.strip_prefix("req_").unwrap_or(request_id);
    relay::translate::Stamp {
        id: format!("msg_{id}"),
        model: model.to_string(),
        created,
    }
}

/// An OpenAI answer forwarded as is, but for `usage.cost` added when the price is known (an
/// unknown cost is left out, never shown as 0). `None` if it is not JSON.
fn priced_openai(
    bytes: Bytes,
    price: Option<Price>,
    record: &mut usage::Record,
) -> Option<(Bytes, Option<String>)> {
    match peek::usage(&bytes) {
        Ok(Some((u, span))) => {
            let tokens = Tokens::from_openai(&u);
            record.tokens = tokens;
            let Some(usd) = price.map(|p| cost::usd(&p, &tokens)) else {
                return Some((bytes, None));
            };
            record.cost = Some(usd);
            let value = cost::format(usd);
            Some((
                Bytes::from(peek::add_member(&bytes, span, "cost", value.as_bytes())),
                Some(value),
            ))
        }
        Ok(None) => Some((bytes, None)),
        Err(_) => None,
    }
}

/// A provider's answer read into canonical types, priced, and written in the client's protocol.
fn translated(
    wire: Wire,
    protocol: Protocol,
    bytes: &[u8],
    price: Option<Price>,
    stamp: &relay::translate::Stamp,
    record: &mut usage::Record,
) -> Option<(Bytes, Option<String>)> {
    let mut resp = translate::response(wire, bytes).ok()?;
    stamp.fill(&mut resp.id, &mut resp.model, &mut resp.created);
    if record.keeps_bodies() {
        for c in &resp.choices {
            record.completion_text(&c.message.text_content());
        }
    }
    let mut usd = None;
    if let Some(u) = resp.usage.as_mut() {
        let tokens = Tokens {
            input: u.input_tokens,
            output: u.output_tokens,
            cache_read: u.cache_read_tokens,
            cache_write: u.cache_write_tokens,
            reasoning: u.reasoning_tokens,
        };
        let v = price.map(|p| cost::usd(&p, &tokens));
        u.cost = v;
        record.tokens = tokens;
        record.cost = v;
        usd = v.map(cost::format);
    }
    let out = match protocol {
        Protocol::Anthropic => providers::anthropic::response::render(&resp),
        _ => providers::openai::response::render(&resp),
    };
    Some((Bytes::from(out), usd))
}

/// Output tokens assumed for admission when the client does not bound them.
const DEFAULT_OUTPUT_ESTIMATE: u64 = 256;

/// Bodies above this are tokenized on the blocking pool rather than on a runtime thread.
const TOKENIZE_INLINE_MAX: usize = 32 * 1024;

/// The prompt tokens of `body` (the text of its messages: an estimate for the reservation,
/// settled with the provider's usage).
async fn count_prompt(body: &[u8]) -> u64 {
    if body.len() <= TOKENIZE_INLINE_MAX {
        return crate::tokens::prompt(body);
    }
    let owned = body.to_vec();
    let estimate = (body.len() / 4) as u64;
    tokio::task::spawn_blocking(move || crate::tokens::prompt(&owned))
        .await
        .unwrap_or(estimate)
}

/// Step 6: reserves against the caller's limits, if it has any.
async fn admit(
    app: &App,
    caller: &auth::Caller,
    route: &routing::Route,
    facts: &Facts<'_>,
    body: &[u8],
) -> Result<Option<limits::Reservation>, Error> {
    let auth::Caller::Key(p) = caller else {
        return Ok(None);
    };
    if p.scopes.is_empty() {
        return Ok(None);
    }
    let output = facts.max_tokens.unwrap_or(DEFAULT_OUTPUT_ESTIMATE);
    // Tokenize only when a token or budget limit needs the number.
    let counted = p
        .scopes
        .iter()
        .any(|(_, l)| l.tpm.is_some() || l.budget.is_some());
    let prompt = if counted {
        count_prompt(body).await
    } else {
        facts.needs.tokens
    };
    let tokens = prompt + output;
    let price = route
        .version
        .price
        .or_else(|| route.version.targets.iter().find_map(|t| t.price))
        .unwrap_or_default();
    let cost = (prompt as f64 * price.input + output as f64 * price.output) / 1e6;
    let request = limits::Request {
        scopes: &p.scopes,
        tokens,
        cost_usd: cost,
        now_ms: app.limiter.now_ms(),
    };
    match app.limiter.admit(&request).await {
        Ok(r) => Ok(Some(r)),
        Err(d) => Err(denied(&d)),
    }
}

/// A refusal of the limiter as the client's error: 429 (`rate_limit_exceeded` or
/// `budget_exceeded`, with `Retry-After`), or 503 when the limits cannot be checked.
fn denied(d: &limits::Denied) -> Error {
    let scope = match d.scope {
        Some(limits::ScopeKind::Team) => "team",
        _ => "key",
    };
    crate::metrics::global().rate_limited.inc(&[scope]);
    let what = match d.kind {
        limits::Kind::Rpm => "requests per minute",
        limits::Kind::Tpm => "tokens per minute",
        limits::Kind::Concurrency => "concurrent requests",
        limits::Kind::Budget => "budget",
        limits::Kind::Unavailable => {
            return Error::new(Kind::NoHealthyTarget, "Rate limits cannot be checked right now (the limits store is unreachable); retry shortly.")
                .with_retry_after(Some(std::time::Duration::from_secs(1)));
        }
    };
    let kind = if d.kind == limits::Kind::Budget {
        Kind::BudgetExceeded
    } else {
        Kind::RateLimited
    };
    let message = if d.kind == limits::Kind::Budget {
        format!("The {scope}'s budget is exhausted for this period.")
    } else {
        format!("The {scope}'s limit of {} {what} is reached.", d.limit)
    };
    Error::new(kind, message).with_retry_after(d.retry_after)
}

static RL_LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
static RL_REMAINING_REQUESTS: HeaderName =
    HeaderName::from_static("x-ratelimit-remaining-requests");
static RL_LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
static RL_REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
static RL_RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
static RL_RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

/// OpenAI's `x-ratelimit-*` headers from what the limiter left after admission.
fn ratelimit_headers(h: &limits::Headroom, out: &mut HeaderMap) {
    // The values are written into one buffer and the headers slice it: one allocation
    // instead of one or two per header.
    let windows = [
        (
            h.requests,
            [
                &RL_LIMIT_REQUESTS,
                &RL_REMAINING_REQUESTS,
                &RL_RESET_REQUESTS,
            ],
        ),
        (
            h.tokens,
            [&RL_LIMIT_TOKENS, &RL_REMAINING_TOKENS, &RL_RESET_TOKENS],
        ),
    ];
    let windows_present = windows.iter().filter(|(w, _)| w.is_some()).count();
    if windows_present == 0 {
        // Only concurrency or budget limits: no headers, no buffer.
        return;
    }
    let mut text = bytes::BytesMut::with_capacity(96);
    let mut spans = [None; 6];
    let present = windows
        .iter()
        .filter_map(|(w, names)| w.map(|w| (w, names)));
    for (i, (w, names)) in present.enumerate() {
        let values = [
            (w.limit, ""),
            (w.remaining, ""),
            (w.reset.as_millis() as u64, "ms"),
        ];
        for (j, (name, (n, unit))) in names.iter().zip(values).enumerate() {
            let start = text.len();
            text.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            text.extend_from_slice(unit.as_bytes());
            spans[i * 3 + j] = Some((*name, start, text.len()));
        }
    }
    let text = text.freeze();
    // Room now, while the map holds only a few entries, for these three or six and what comes
    // after them (provider, upstream model, attempts; the upstream's content type and length):
    // the map grows here, once, only if all of them would not fit its 12.
    out.reserve(3 * windows_present + 5);
    for (name, a, b) in spans.into_iter().flatten() {
        if let Ok(v) = HeaderValue::from_maybe_shared(text.slice(a..b)) {
            out.insert(name.clone(), v);
        }
    }
}

/// Per-request controls: `x-switchyard-timeout` (per attempt) and `x-switchyard-retries`.
#[derive(Debug, Default)]
struct Overrides {
    timeout: Option<std::time::Duration>,
    retries: Option<u32>,
}

impl Overrides {
    fn from(headers: &HeaderMap) -> Result<Overrides, Error> {
        let mut o = Overrides::default();
        if let Some(v) = headers.get(&X_TIMEOUT) {
            let text = v.to_str().unwrap_or_default();
            let d = crate::config::units::duration(text)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    Error::invalid(
                        format!(
                            "x-switchyard-timeout: '{text}' is not a duration like 30s or 500ms."
                        ),
                        None,
                    )
                })?;
            o.timeout = Some(d);
        }
        if let Some(v) = headers.get(&X_RETRIES) {
            let text = v.to_str().unwrap_or_default();
            let n: u32 = text
                .trim()
                .parse()
                .ok()
                .filter(|n| *n <= 10)
                .ok_or_else(|| {
                    Error::invalid(
                        format!("x-switchyard-retries: '{text}' is not a number from 0 to 10."),
                        None,
                    )
                })?;
            o.retries = Some(n);
        }
        Ok(o)
    }
}

/// The next fallback model that resolves (and, after a context overflow, whose context window
/// is larger than the model that overflowed).
fn next_model(
    config: &Config,
    fallbacks: &[String],
    at: &mut usize,
    overflowed: Option<&routing::Route>,
) -> Option<routing::Route> {
    while *at < fallbacks.len() {
        let name = &fallbacks[*at];
        *at += 1;
        let Ok(r) = routing::resolve(config, name, None) else {
            continue;
        };
        if let Some(prev) = overflowed {
            let window = |v: &crate::config::Version| {
                v.targets.iter().filter_map(|t| t.context_window).max()
            };
            match (window(&prev.version), window(&r.version)) {
                (Some(a), Some(b)) if b <= a => continue,
                _ => {}
            }
        }
        return Some(r);
    }
    None
}

/// The public name the client asked for, without `@version` or `:floor`/`:nitro`.
fn current_requested(model: &str) -> &str {
    let m = model
        .strip_suffix(":floor")
        .or_else(|| model.strip_suffix(":nitro"))
        .unwrap_or(model);
    m.rsplit_once('@').map_or(m, |(n, _)| n)
}

/// Reads the whole request body: 413 beyond `limit` (checked on `Content-Length` first, then as
/// bytes arrive), 408-style 400 if the client is too slow.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    deadline: Instant,
) -> Result<Bytes, Error> {
    let too_large = || {
        Error::new(
            Kind::PayloadTooLarge,
            format!("The request body is larger than the gateway's limit of {limit} bytes."),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let read = http_body_util::Limited::new(body, limit).collect();
    let wait = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(wait, read).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(Error::invalid("The request body could not be read.", None)),
        Err(_) => Err(Error::invalid(
            "The request body was not received in time.",
            None,
        )),
    }
}

fn endpoint_name(e: Endpoint) -> &'static str {
    match e {
        Endpoint::Chat => "chat.completions",
        Endpoint::Completions => "completions",
        Endpoint::Embeddings => "embeddings",
    }
}

/// The client's `x-request-id` when it is a sane token. Kept for correlation only: every
/// request gets an id of the gateway's own (answered in `x-request-id`), because records are
/// keyed and deduplicated by it, and a client that reused its ids (or replayed another's) would
/// otherwise merge many requests into one record and slip past budgets.
pub fn client_request_id(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(&X_REQUEST_ID)?.to_str().ok()?;
    let sane = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    sane.then(|| v.to_owned())
}

/// `req_` and 32 hex digits: the milliseconds since the epoch (12 digits), a process-wide
/// sequence number (8 digits), then 48 random bits. Ids that sort by time keep the usage table's
/// primary key growing at its right edge, so a batch of records touches a few index pages
/// rather than one random page each; the sequence keeps requests started in the same
/// millisecond in their order (the request log lists newest first by time, then id).
fn new_request_id(now: std::time::SystemTime) -> String {
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
    static SEQUENCE: AtomicU32 = AtomicU32::new(0);
    let ms = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
        & 0xffff_ffff_ffff;
    let seq = SEQUENCE.fetch_add(1, Relaxed);
    let n = (u128::from(ms) << 80) | (u128::from(seq) << 48) | u128::from(fastrand::u64(..) >> 16);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = *b"req_00000000000000000000000000000000";
    for (pair, byte) in id[4..].chunks_exact_mut(2).zip(n.to_be_bytes()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    // ASCII by construction.
    std::str::from_utf8(&id)
        .map(str::to_owned)
        .unwrap_or_default()
}

/// Answer to paths and methods the gateway does not serve, in OpenAI's error format.
pub fn not_found(path: &str) -> Response {
    Error::new(Kind::NotFound, format!("Unknown path '{path}'.")).into_response(Protocol::OpenAi)
}

pub fn method_not_allowed() -> Response {
    Error::new(
        Kind::MethodNotAllowed,
        "This method is not allowed on this path.",
    )
    .into_response(Protocol::OpenAi)
}

/// A 200 JSON answer.
pub fn json(value: &serde_json::Value) -> Response {
    let mut resp = Response::new(Body::from(serde_json::to_vec(value).unwrap_or_default()));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, JSON.clone());
    resp
}

pub fn json_status(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut resp = json(value);
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::new_request_id;

    #[test]
    fn request_ids_sort_by_time_and_differ() {
        let t = UNIX_EPOCH + Duration::from_millis(1_763_700_000_000);
        let a = new_request_id(t);
        let b = new_request_id(t);
        let later = new_request_id(t + Duration::from_millis(1));
        assert_eq!(a.len(), 36);
        assert!(a.starts_with("req_0"));
        assert!(a[4..].bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(a[..16], b[..16], "same millisecond, same prefix");
        assert_eq!(
            a[4..16],
            format!("{:012x}", 1_763_700_000_000u64),
            "the time, in hex"
        );
        let seq = |id: &str| u32::from_str_radix(&id[16..24], 16).unwrap();
        // Other tests may take ids in between.
        assert!(seq(&b) > seq(&a), "the sequence, in hex");
        assert!(b > a, "started later in the same millisecond, sorts after");
        assert!(later > a && later > b);
    }
}
