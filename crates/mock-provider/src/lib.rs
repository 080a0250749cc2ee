//! Test-only emulator of upstream providers' wire formats — OpenAI and Azure OpenAI today —
//! with deterministic answers, streaming, stats and fault injection.
//!
//! This file owns the server and the routing: accept connections (plain hyper 1, HTTP/1.1),
//! read the request, record it, pick the protocol module, apply faults, render. The protocol
//! modules (`openai.rs`, `azure.rs`; later `anthropic.rs`, `gemini.rs`, ...) build bodies and
//! must not do IO; `faults.rs` decides faults; `wire.rs` frames bytes; `stats.rs` records;
//! `tokens.rs` counts; `control.rs` serves `/_mock/*`; `conn.rs` can reset a connection.
//!
//! Reference: hyper 1 server guide (`hyper::server::conn::http1`, `service_fn`); returning
//! `Err` from the service makes hyper drop the connection without a response (hyper #3659).
//!
//! Surface:
//! * OpenAI: `POST /v1/chat/completions`, `POST /v1/completions`, `POST /v1/embeddings`,
//!   `GET /v1/models`, `GET /v1/models/{id}`; `Authorization: Bearer KEY` when a key is set.
//! * Azure: `POST /openai/deployments/{deployment}/{chat/completions|completions|embeddings}
//!   ?api-version=...`; `api-key: KEY` when a key is set.
//! * Gemini (`gemini.rs`): `POST /v1beta/models/{model}:generateContent` and
//!   `:streamGenerateContent[?alt=sse]`; `x-goog-api-key: KEY` or `?key=KEY` when a key is set.
//! * Bedrock (`bedrock.rs`): `POST /model/{modelId}/converse` and `/converse-stream` (binary
//!   event stream); always a SigV4 `authorization` header and `x-amz-date`, and when a key is
//!   set, `Credential=KEY/...`.
//! * Anthropic: `POST /v1/messages` (streamed and not), `POST /v1/messages/count_tokens`;
//!   `anthropic-version` required, `x-api-key: KEY` when a key is set (see `anthropic.rs`).
//! * Answers: `"echo: " + <last user text>` (rules in `openai/chat.rs`), tokens = words
//!   (rules in `tokens.rs`).
//! * Faults: `+directives` on the model (or Azure deployment) name — `status=N`,
//!   `retry_after=S`, `delay_ms=N`, `chunk_delay_ms=N`, `drip_ms=N`, `cut_after=N`,
//!   `fail_rate=F`, `malformed`, `reset`, `hang` — or `POST /_mock/fault` (see `faults.rs`).
//! * Control: `POST`/`GET`/`DELETE /_mock/fault`, `GET /_mock/stats`,
//!   `POST /_mock/reset-stats` (see `control.rs`, `stats.rs`).
//!
//! The life of one request:
//! 1. read the whole body; `/_mock/*` goes to the control API and stops here;
//! 2. route to a protocol and endpoint, record the request in the stats;
//! 3. take one use of the control fault, if any;
//! 4. the protocol module authenticates, validates and answers, and parses the model's
//!    `+directives` into a fault plan;
//! 5. apply the plan: delay, reset, hang, error status; then render with the wire faults
//!    (malformed body, cut stream, slow chunks).

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod anthropic;
mod azure;
mod bedrock;
mod conn;
mod control;
mod faults;
mod gemini;
mod openai;
mod stats;
mod tokens;
mod wire;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

pub use faults::{Fault, FaultMode};
pub use stats::{LastRequest, Stats};

use conn::{Conn, Dropped, ResetHandle};
use faults::Plan;
use openai::{Call, Endpoint};
use wire::{Body, Reply, Shape};

/// How to start a mock server.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// When set, OpenAI paths require `Authorization: Bearer KEY` and Azure paths require
    /// `api-key: KEY`.
    pub api_key: Option<String>,
}

/// A running mock server; dropping it stops it and every connection it holds.
#[derive(Debug)]
pub struct MockServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl MockServer {
    /// Binds `127.0.0.1:0` and serves in a background task.
    pub async fn start(opts: Options) -> io::Result<MockServer> {
        MockServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), opts).await
    }

    /// Binds `addr` and serves in a background task.
    pub async fn bind(addr: SocketAddr, opts: Options) -> io::Result<MockServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            api_key: opts.api_key,
            fault: faults::Slot::default(),
            stats: Mutex::new(Stats::default()),
            seq: AtomicU64::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        Ok(MockServer { addr, state, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A snapshot of the stats (same as `GET /_mock/stats`).
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    /// Zeroes the stats (same as `POST /_mock/reset-stats`).
    pub fn reset_stats(&self) {
        self.state.reset_stats();
    }

    /// Sets or clears the fault for the next requests (same as `POST`/`DELETE /_mock/fault`).
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.state.fault.set(fault);
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What every connection shares.
#[derive(Debug)]
struct State {
    api_key: Option<String>,
    fault: faults::Slot,
    stats: Mutex<Stats>,
    seq: AtomicU64,
}

impl State {
    fn stats(&self) -> Stats {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn reset_stats(&self) {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner) = Stats::default();
    }

    fn record(&self, request: LastRequest, model: Option<&str>) {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(request, model);
    }
}

/// Accepts connections until the task is aborted; aborting drops the `JoinSet`, which aborts
/// every connection (hung ones included).
async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let io = Conn::new(stream);
        let reset = io.reset_handle();
        let state = state.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| handle(state.clone(), reset.clone(), req));
            // A connection error only concerns that client (and resets are on purpose).
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(io), service)
                .await;
        });
    }
}

/// Where a request goes.
#[derive(Debug)]
enum Route {
    OpenAi(Endpoint),
    Azure {
        deployment: String,
        endpoint: Endpoint,
    },
    Anthropic(anthropic::Endpoint),
    Gemini {
        model: String,
        endpoint: gemini::Endpoint,
    },
    Bedrock {
        model: String,
        endpoint: bedrock::Endpoint,
    },
    Unknown,
}

impl Route {
    fn of(method: &Method, path: &str) -> Route {
        if let Some(endpoint) = openai::route(method, path) {
            Route::OpenAi(endpoint)
        } else if let Some((deployment, endpoint)) = azure::route(method, path) {
            Route::Azure {
                deployment,
                endpoint,
            }
        } else if let Some(endpoint) = anthropic::route(method, path) {
            Route::Anthropic(endpoint)
        } else if let Some((model, endpoint)) = gemini::route(method, path) {
            Route::Gemini { model, endpoint }
        } else if let Some((model, endpoint)) = bedrock::route(method, path) {
            Route::Bedrock { model, endpoint }
        } else {
            Route::Unknown
        }
    }

    /// The model this request counts under in the stats.
    fn stats_model<'a>(&'a self, body: Option<&'a Value>) -> Option<&'a str> {
        match self {
            Route::OpenAi(_) => body.and_then(|b| b.get("model")).and_then(Value::as_str),
            Route::Anthropic(_) => body.and_then(|b| b.get("model")).and_then(Value::as_str),
            Route::Azure { deployment, .. } => Some(deployment),
            Route::Gemini { model, .. } | Route::Bedrock { model, .. } => Some(model),
            Route::Unknown => None,
        }
    }

    /// The protocol's error answer for an injected fault status.
    fn fault_reply(&self, status: u16, plan: &Plan, query: Option<&str>, model: &str) -> Reply {
        match self {
            Route::Azure { endpoint, .. } => {
                azure::status_error(status, plan.retry_after, endpoint, query, model)
            }
            Route::Anthropic(_) => anthropic::status_error(status, plan.retry_after, model),
            Route::Gemini { .. } => gemini::status_error(status, plan.retry_after, model),
            Route::Bedrock { .. } => bedrock::status_error(status, plan.retry_after),
            Route::OpenAi(_) | Route::Unknown => {
                openai::status_error(status, plan.retry_after, model)
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Serves one request (see the module docs for the steps).
async fn handle(
    state: Arc<State>,
    reset: ResetHandle,
    req: Request<Incoming>,
) -> Result<Response<Body>, Dropped> {
    // 1. Read the body.
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    if path.starts_with("/_mock/") {
        let reply = control::handle(&state, &parts.method, &path, &bytes);
        return Ok(wire::render(reply, &Shape::default()));
    }

    // 2. Route and record.
    let json: Option<Value> = serde_json::from_slice(&bytes).ok();
    let route = Route::of(&parts.method, &path);
    state.record(
        LastRequest::capture(&parts, &bytes),
        route.stats_model(json.as_ref()),
    );
    let seq = state.seq.fetch_add(1, Ordering::Relaxed) + 1;

    // 3. The control fault.
    let mut control = Plan::default();
    if let Some(mode) = state.fault.take_one() {
        control.apply(&mode);
    }

    // 4. The protocol's answer.
    let call = Call {
        headers: &parts.headers,
        query: query.as_deref(),
        body: json.as_ref(),
        api_key: state.api_key.as_deref(),
        seq,
        created: unix_now(),
    };
    let outcome = match &route {
        Route::OpenAi(endpoint) => openai::serve(endpoint.clone(), &call),
        Route::Azure {
            deployment,
            endpoint,
        } => azure::serve(deployment, endpoint, &call),
        Route::Anthropic(endpoint) => anthropic::serve(endpoint, &call),
        Route::Gemini { model, endpoint } => gemini::serve(model, endpoint, &call),
        Route::Bedrock { model, endpoint } => bedrock::serve(model, endpoint, &call),
        Route::Unknown if path.starts_with("/openai/") => openai::Outcome::plain(azure::error(
            http::StatusCode::NOT_FOUND,
            "Resource not found",
        )),
        Route::Unknown => openai::Outcome::plain(openai::not_found(&parts.method, &path)),
    };

    // 5. Faults, then render.
    let mut plan = outcome.plan;
    plan.merge(&control);
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    if plan.reset {
        reset.arm();
        return Err(Dropped);
    }
    if plan.hang {
        std::future::pending::<()>().await;
    }
    let reply = match plan.error_status() {
        Some(status) => route.fault_reply(status, &plan, query.as_deref(), &outcome.model),
        None if plan.context_length => openai::context_length_error(),
        None => outcome.reply,
    };
    let reply = reply.with_header("x-request-id", &format!("req_mock{seq:020}"));
    let shape = Shape {
        chunk_delay: plan.chunk_delay,
        cut_after: plan.cut_after,
        malformed: plan.malformed,
    };
    Ok(match route {
        Route::Anthropic(_) => anthropic::render(reply, &shape),
        Route::Gemini { .. } => gemini::render(reply, &shape),
        Route::Bedrock { .. } => bedrock::render(reply, &shape),
        _ => wire::render(reply, &shape),
    })
}
