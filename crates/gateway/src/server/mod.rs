//! Accepting connections and shutting down: TCP with Nagle off, HTTP/1.1 and HTTP/2, a header
//! read timeout so slow or idle clients cannot hold a connection forever, SIGHUP reloads, and a
//! graceful stop on SIGTERM/SIGINT (stop accepting, let in-flight requests and streams finish up
//! to a deadline).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

mod idle;
pub mod worker;

use futures_util::FutureExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use providers::openai::peek::Endpoint;
use tokio::net::{TcpListener, TcpStream};
use tower::Service as _;

use crate::app::{self, App};
use crate::{handlers, pipeline};

/// The first bytes an HTTP/2 client with prior knowledge sends.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How connections are served: plain HTTP/1.1 directly, anything that may be HTTP/2 through
/// the auto-detecting builder.
struct Protocols {
    http1: hyper::server::conn::http1::Builder,
    auto: auto::Builder<TokioExecutor>,
    idle_timeout: Duration,
    header_read_timeout: Duration,
}

/// Serves until `stop` resolves, then drains connections for at most the configured grace.
/// Connections are served on the current runtime.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    stop: impl std::future::Future<Output = ()>,
) {
    serve_on(app, listener, stop, &[]).await;
}

/// [`serve`], with each accepted connection handed to the next of `workers` (round robin),
/// whose runtime serves it to the end; none: the current runtime serves them.
pub async fn serve_on(
    app: Arc<App>,
    listener: TcpListener,
    stop: impl std::future::Future<Output = ()>,
    workers: &[tokio::runtime::Handle],
) {
    let config = app.config();
    let router = app::router(app.clone());
    let mut auto = auto::Builder::new(TokioExecutor::new());
    auto.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.server.header_read_timeout)
        .keep_alive(true);
    auto.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    // Plain HTTP/1.1 connections time their request heads in `idle::IdleIo`, with the timer
    // that already closes idle connections: hyper's arms one more timer per request.
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    let protocols = Arc::new(Protocols {
        http1,
        auto,
        idle_timeout: config.server.idle_timeout,
        header_read_timeout: config.server.header_read_timeout,
    });
    let graceful = GracefulShutdown::new();
    // Tells connections still waiting for their first bytes that the gateway is stopping.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    tokio::pin!(stop);
    let mut next = 0usize;
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let protocols = protocols.clone();
        let router = router.clone();
        let stopping = stopping.clone();
        let app = app.clone();
        let Some(worker) = workers.get(next % workers.len().max(1)) else {
            tokio::spawn(connection(
                stream, protocols, app, router, watcher, stopping,
            ));
            continue;
        };
        next = next.wrapping_add(1);
        // The socket moves to the worker's reactor: leave this one, join that one there.
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        worker.spawn(async move {
            if let Ok(stream) = TcpStream::from_std(stream) {
                connection(stream, protocols, app, router, watcher, stopping).await;
            }
        });
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    let grace = app.config().server.shutdown_grace;
    tracing::info!(
        grace_s = grace.as_secs_f64(),
        "shutting down: waiting for in-flight requests"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace elapsed with requests still in flight");
    }
}

/// Serves one connection until it closes (or is drained by a graceful stop).
///
/// A connection whose first bytes cannot be HTTP/2's preface is served by hyper's HTTP/1
/// connection directly. That skips the auto builder's version sniffing, which reads the first
/// bytes into a side buffer and so makes hyper grow the connection's read buffer to 16 KiB, and
/// re-checks that side buffer on every read. Everything else goes through the auto builder as
/// before.
async fn connection(
    stream: TcpStream,
    protocols: Arc<Protocols>,
    app: Arc<App>,
    router: axum::Router,
    watcher: Watcher,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let idle_timeout = protocols.idle_timeout;
    let sniff = tokio::time::timeout(idle_timeout, first_bytes_not_h2(&stream));
    let plain_http1 = tokio::select! {
        sniffed = sniff => match sniffed {
            Ok(Ok(v)) => v,
            // Closed, failed or silent for the idle timeout: nothing to serve.
            Ok(Err(_)) | Err(_) => return,
        },
        // Stopping before the first request: close, as the auto builder does.
        _ = stopping.wait_for(|stop| *stop) => return,
    };
    drop(stopping);
    let active = Arc::new(idle::Active::default());
    // hyper's auto builder times request heads itself.
    let header_timeout = plain_http1.then_some(protocols.header_read_timeout);
    let io = TokioIo::new(idle::IdleIo::new(
        stream,
        idle_timeout,
        header_timeout,
        active.clone(),
    ));
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let guard = active.enter();
        let to = match hot_route(&req) {
            Some(route) => Ok((route, app.clone())),
            None => Err(router.clone()),
        };
        async move {
            let req = req.map(axum::body::Body::new);
            let resp = match to {
                // Boxed: hyper keeps the slot of a connection's request future for as long as
                // the connection lives, so an unboxed pipeline future (several KiB) would be
                // held by every idle or streaming connection (+60 MiB over 10,000 streams).
                Ok((route, app)) => AssertUnwindSafe(route.serve(&app, req))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(handlers::panic),
                Err(mut router) => router.call(req).await?,
            };
            Ok::<_, std::convert::Infallible>(resp.map(|inner| idle::Tracked {
                inner,
                _guard: guard,
            }))
        }
    });
    if plain_http1 {
        let conn = protocols.http1.serve_connection(io, service);
        let _ = watcher.watch(conn).await;
    } else {
        let conn = protocols.auto.serve_connection_with_upgrades(io, service);
        let _ = watcher.watch(conn.into_owned()).await;
    }
}

/// The routes every model request takes, served without the router: the same handlers, but
/// without the router's path lookup, its boxed per-request service future and its panic layer
/// (the panic is caught here instead, answered the same way). Everything else, other methods on
/// these paths included (405), goes through `app::router`.
#[derive(Clone, Copy)]
enum Hot {
    Openai(Endpoint),
    Anthropic,
}

fn hot_route<B>(req: &http::Request<B>) -> Option<Hot> {
    if req.method() != http::Method::POST {
        return None;
    }
    match req.uri().path() {
        "/v1/chat/completions" => Some(Hot::Openai(Endpoint::Chat)),
        "/v1/messages" => Some(Hot::Anthropic),
        "/v1/completions" => Some(Hot::Openai(Endpoint::Completions)),
        "/v1/embeddings" => Some(Hot::Openai(Endpoint::Embeddings)),
        _ => None,
    }
}

impl Hot {
    /// The pipeline's future itself, not wrapped in another `async fn` (which would move it
    /// into its own state on the first poll; see `pipeline::openai`), built in its box
    /// (`box_in_place`). Each is bound before it is returned: the binding fixes the box's type
    /// as the future's own, which the return then turns into the trait object.
    fn serve(
        self,
        app: &App,
        req: http::Request<axum::body::Body>,
    ) -> std::pin::Pin<Box<dyn Future<Output = axum::response::Response> + Send + '_>> {
        match self {
            Hot::Openai(endpoint) => {
                let future =
                    crate::box_in_place(Box::new_uninit(), pipeline::openai(app, req, endpoint));
                future
            }
            Hot::Anthropic => {
                let future = crate::box_in_place(Box::new_uninit(), pipeline::anthropic(app, req));
                future
            }
        }
    }
}

/// Whether the connection's first bytes already differ from HTTP/2's preface (so it is
/// HTTP/1). `false` when they match it so far: the auto builder decides.
async fn first_bytes_not_h2(stream: &TcpStream) -> std::io::Result<bool> {
    let mut buf = [0u8; 24];
    let n = stream.peek(&mut buf).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf[..n] != H2_PREFACE[..n])
}

/// Resolves on SIGTERM or SIGINT; reloads the configuration on every SIGHUP meanwhile.
pub async fn signals(app: Arc<App>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the gateway with SIGKILL");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => {
                if let Err(e) = app.reload().await {
                    tracing::error!(problems = %e, "configuration not reloaded; keeping the running one");
                }
            }
        }
    }
}
