//! `sy-upstream`: a fast mock OpenAI-compatible (and Anthropic Messages) upstream for benchmarks.
//!
//! `POST /v1/chat/completions` answers a fixed ~640-byte `chat.completion`, or, when the body
//! contains `"stream": true`, an SSE stream of `--chunks` chunks `--chunk-delay-ms` apart, a usage
//! chunk and `data: [DONE]`, each event flushed on its own. `POST /v1/messages` does the same in
//! the Anthropic Messages format: a ~640-byte `message`, or the named events `message_start`,
//! `content_block_start`, `ping`, `--chunks` `content_block_delta`s paced like the OpenAI chunks,
//! `content_block_stop`, `message_delta` and `message_stop`. `GET /v1/models` lists
//! `bench-model`. Every body is rendered once at start. Plain hyper, multi-threaded runtime,
//! TCP_NODELAY, HTTP/1.1 keep-alive.

use std::convert::Infallible;
use std::future::Future as _;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use clap::Parser;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpSocket;
use tokio::time::{Instant, Sleep};

use sy_bench::fixtures;

#[derive(Parser, Debug)]
#[command(
    name = "sy-upstream",
    about = "Fast mock OpenAI-compatible and Anthropic Messages upstream for benchmarks"
)]
struct Args {
    /// Port to listen on (0 = any free port; the chosen one is printed).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Content chunks per streamed answer (plus one usage chunk and `[DONE]`).
    #[arg(long, default_value_t = 20)]
    chunks: usize,
    /// Delay between content chunks, in milliseconds (the first is sent at once).
    #[arg(long, default_value_t = 5)]
    chunk_delay_ms: u64,
    /// Runtime worker threads (default: the CPUs this process may run on).
    #[arg(long)]
    threads: Option<usize>,
    /// Listen backlog.
    #[arg(long, default_value_t = 16384)]
    backlog: u32,
}

/// A pre-rendered stream: its events, and for each the number of `delay`s after the start of the
/// answer at which it may be sent.
#[derive(Clone)]
struct Script {
    events: Arc<[Bytes]>,
    ticks: Arc<[u32]>,
}

impl Script {
    /// `head` events at once, then `paced` events one `delay` apart (the first of them at once
    /// too), then the rest right after the last paced one.
    fn new(events: Vec<Bytes>, head: usize, paced: usize) -> Script {
        let last = u32::try_from(paced.saturating_sub(1)).unwrap_or(u32::MAX);
        let ticks: Vec<u32> = (0..events.len())
            .map(|i| {
                let k = i.saturating_sub(head);
                u32::try_from(k).unwrap_or(u32::MAX).min(last)
            })
            .collect();
        Script {
            events: events.into(),
            ticks: ticks.into(),
        }
    }
}

struct State {
    completion: Bytes,
    openai_stream: Script,
    message: Bytes,
    anthropic_stream: Script,
    delay: Duration,
    not_found: Bytes,
    anthropic_not_found: Bytes,
    models: Bytes,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("sy-upstream: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    if !args.host.is_loopback() {
        bail!("refusing to listen on {}: loopback only", args.host);
    }
    if args.chunks > 100_000 || args.chunk_delay_ms > 60_000 {
        bail!("--chunks must be at most 100000 and --chunk-delay-ms at most 60000");
    }
    // Many concurrent streams need many descriptors; raise the soft limit to the hard one.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("building the runtime")?;
    rt.block_on(serve(args))
}

async fn serve(args: Args) -> Result<()> {
    let state = Arc::new(State {
        completion: fixtures::completion_json(),
        openai_stream: Script::new(fixtures::stream_events(args.chunks), 0, args.chunks),
        message: fixtures::anthropic_message_json(),
        anthropic_stream: Script::new(
            fixtures::anthropic_stream_events(args.chunks),
            fixtures::ANTHROPIC_HEAD,
            args.chunks,
        ),
        delay: Duration::from_millis(args.chunk_delay_ms),
        not_found: Bytes::from_static(
            br#"{"error":{"message":"not found","type":"invalid_request_error","code":"not_found"}}"#,
        ),
        anthropic_not_found: Bytes::from_static(
            br#"{"type":"error","error":{"type":"not_found_error","message":"Not found"}}"#,
        ),
        models: Bytes::from_static(
            br#"{"object":"list","data":[{"id":"bench-model","object":"model","created":1741569952,"owned_by":"sy-upstream"}]}"#,
        ),
    });
    let addr = SocketAddr::new(args.host, args.port);
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .context("creating the socket")?;
    socket.set_reuseaddr(true).context("SO_REUSEADDR")?;
    socket
        .bind(addr)
        .with_context(|| format!("binding {addr}"))?;
    let listener = socket.listen(args.backlog).context("listen")?;
    let local = listener.local_addr().context("local_addr")?;
    println!("sy-upstream listening on http://{local}");

    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("sy-upstream: accept: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, state.clone()));
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type ResBody = Either<Full<Bytes>, SseBody>;

fn json(status: StatusCode, body: Bytes) -> Response<ResBody> {
    let mut res = Response::new(Either::Left(Full::new(body)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<ResBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let anthropic = match (&parts.method, parts.uri.path()) {
        (&Method::POST, "/v1/chat/completions") => false,
        (&Method::POST, "/v1/messages") => true,
        (&Method::GET, "/v1/models") => return Ok(json(StatusCode::OK, state.models.clone())),
        (&Method::GET, "/health") => {
            return Ok(json(
                StatusCode::OK,
                Bytes::from_static(b"{\"status\":\"ok\"}"),
            ))
        }
        (_, path) if path.starts_with("/v1/messages") => {
            return Ok(json(
                StatusCode::NOT_FOUND,
                state.anthropic_not_found.clone(),
            ))
        }
        _ => return Ok(json(StatusCode::NOT_FOUND, state.not_found.clone())),
    };
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(json(
                StatusCode::BAD_REQUEST,
                Bytes::from_static(br#"{"error":{"message":"could not read the body"}}"#),
            ))
        }
    };
    let (answer, script) = if anthropic {
        (&state.message, &state.anthropic_stream)
    } else {
        (&state.completion, &state.openai_stream)
    };
    if !fixtures::wants_stream(&body) {
        return Ok(json(StatusCode::OK, answer.clone()));
    }
    let mut res = Response::new(Either::Right(SseBody::new(script.clone(), state.delay)));
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(res)
}

/// Streams a prepared [`Script`]: every event at its tick (`delay` × tick after the start), each
/// returned as its own frame after a `Pending` (a timer, or a yield when it is already due), so
/// hyper flushes every event separately.
struct SseBody {
    events: Arc<[Bytes]>,
    ticks: Arc<[u32]>,
    next: usize,
    delay: Duration,
    start: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    /// A `Pending` was returned for the next event already (hyper had a chance to flush).
    paused: bool,
}

impl SseBody {
    fn new(script: Script, delay: Duration) -> Self {
        Self {
            events: script.events,
            ticks: script.ticks,
            next: 0,
            delay,
            start: Instant::now(),
            sleep: None,
            paused: false,
        }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let Some(event) = this.events.get(this.next).cloned() else {
            return Poll::Ready(None);
        };
        if this.next > 0 {
            let tick = this.ticks.get(this.next).copied().unwrap_or(0);
            let due = this.start + this.delay * tick;
            if Instant::now() < due {
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if sleep.deadline() != due {
                    sleep.as_mut().reset(due);
                }
                if sleep.as_mut().poll(cx).is_pending() {
                    this.paused = true;
                    return Poll::Pending;
                }
            } else if !this.paused {
                // Due already: let hyper flush what it has before writing this event.
                this.paused = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        this.paused = false;
        this.next += 1;
        Poll::Ready(Some(Ok(Frame::data(event))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.events.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
