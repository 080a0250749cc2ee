//! Accepting connections and shutting down: TCP with Nagle off, HTTP/1.1 and HTTP/2, a header
//! read timeout so slow or idle clients cannot hold a connection forever, SIGHUP reloads, and a
//! graceful stop on SIGTERM/SIGINT (stop accepting, let in-flight requests and streams finish up
//! to a deadline).

use std::sync::Arc;
use std::time::Duration;

mod idle;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::Service as _;

use crate::app::{self, App};

/// Serves until `stop` resolves, then drains connections for at most the configured grace.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    stop: impl std::future::Future<Output = ()>,
) {
    let config = app.config();
    let router = app::router(app.clone());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.server.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let idle_timeout = config.server.idle_timeout;
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
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
        let active = std::sync::Arc::new(idle::Active::default());
        let io = idle::IdleIo::new(stream, idle_timeout, active.clone());
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let guard = active.enter();
                let mut router = router.clone();
                async move {
                    let resp = router.call(req.map(axum::body::Body::new)).await?;
                    Ok::<_, std::convert::Infallible>(resp.map(|inner| idle::Tracked {
                        inner,
                        _guard: guard,
                    }))
                }
            });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
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
