//! The pooled HTTP client every provider call goes through: keep-alive, Nagle off, HTTP/1.1 and
//! HTTP/2 over TLS (rustls, webpki roots), plain HTTP/1.1 for local servers.
//!
//! TLS upstreams go through hyper-util's pooled client (HTTP/2 by ALPN). Plain `http://`
//! upstreams (local servers, sidecars, the benchmark's mock) are HTTP/1.1 only and go through
//! `http1`: the request written and the answer read in the caller's task, no connection task.
//! The behaviour is the same: `Host` set when absent, the request sent in origin form,
//! connections reused most-recent-first, a request that a reused connection closed on before
//! answering retried once on a new one, at most 1024 idle connections per host, idle ones
//! closed after 60 s.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{Either, FutureExt as _};
use http::uri::Scheme;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::http1;

type Tls =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

pub struct Client {
    tls: Tls,
    plain: Arc<http1::Pool>,
}

/// Why a request got no response (the caller only needs to know that it did not).
#[derive(Debug)]
pub struct Error(Box<dyn std::error::Error + Send + Sync>, bool);

impl Error {
    /// Whether no connection could be made (nothing reached the server: safe to retry).
    pub fn is_connect(&self) -> bool {
        self.1
    }

    pub(super) fn connect(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error(e.into(), true)
    }

    pub(super) fn other(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error(e.into(), false)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Error {}

/// An answer's body: read by hyper (TLS) or by `http1` (plain HTTP).
pub enum Body {
    Tls(Incoming),
    Plain(http1::Body),
}

/// The body broke off: the connection failed, or its framing was not valid HTTP.
#[derive(Debug)]
pub struct BodyError(Box<dyn std::error::Error + Send + Sync>);

impl BodyError {
    pub(super) fn new(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> BodyError {
        BodyError(e.into())
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BodyError {}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Body::Tls(b) => Pin::new(b)
                .poll_frame(cx)
                .map_err(|e| BodyError(Box::new(e))),
            Body::Plain(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Tls(b) => b.is_end_stream(),
            Body::Plain(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Tls(b) => b.size_hint(),
            Body::Plain(b) => b.size_hint(),
        }
    }
}

impl Client {
    /// Sends `req` on a pooled connection to its URI's host; resolves with the response head.
    pub fn request(
        &self,
        req: Request<Full<Bytes>>,
    ) -> impl Future<Output = Result<Response<Body>, Error>> + Send + 'static {
        let uri = req.uri();
        if uri.scheme() == Some(&Scheme::HTTP) && uri.authority().is_some() {
            // Boxed, as the general client's future is: the caller's futures (retries, hedging)
            // hold several of these, and a large one would make every request move kilobytes.
            let send = crate::box_in_place(
                Box::new_uninit(),
                http1::send(self.plain.clone(), req).map(|r| r.map(|r| r.map(Body::Plain))),
            );
            let send: Pin<Box<dyn Future<Output = _> + Send>> = send;
            Either::Left(send)
        } else {
            Either::Right(self.tls.request(req).map(|r| {
                r.map(|r| r.map(Body::Tls)).map_err(|e| {
                    let connect = e.is_connect();
                    Error(Box::new(e), connect)
                })
            }))
        }
    }
}

fn connector() -> HttpConnector {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    http.set_keepalive(Some(Duration::from_secs(60)));
    http
}

pub fn new() -> Client {
    let mut http = connector();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let tls = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(http1::IDLE_TIMEOUT)
        .pool_max_idle_per_host(http1::MAX_IDLE_PER_HOST)
        .build(https);
    Client {
        tls,
        plain: http1::Pool::new(),
    }
}
