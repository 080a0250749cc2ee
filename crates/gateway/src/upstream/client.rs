//! The pooled HTTP client every provider call goes through: keep-alive, Nagle off, HTTP/1.1 and
//! HTTP/2 over TLS (rustls, webpki roots), plain HTTP/1.1 for local servers.
//!
//! TLS upstreams go through hyper-util's pooled client (HTTP/2 by ALPN). Plain `http://`
//! upstreams (local servers, sidecars, the benchmark's mock) are HTTP/1.1 only, and get a small
//! pool of hyper connections of their own: a lock, a lookup and a pop per request, where the
//! general client also hashes a pool key twice with SipHash, builds a checkout future that
//! races a connect, formats the `Host` header and wraps every read and write of the stream in
//! its TLS-or-not enum. The behaviour is the same: `Host` set when absent, the request sent in
//! origin form, connections reused most-recent-first, a request that a reused connection closed
//! on before it went out retried on another, at most 1024 idle connections per host, idle ones
//! closed after 60 s.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Once, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::{Either, FutureExt as _};
use http::uri::{Authority, Scheme};
use http::{header, HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::ServiceExt as _;

type Tls =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Idle connections kept per host.
const MAX_IDLE_PER_HOST: usize = 1024;
/// Idle connections are closed before NAT or load balancers silently drop them.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Client {
    tls: Tls,
    plain: Arc<Plain>,
}

/// Why a request got no response (the caller only needs to know that it did not).
#[derive(Debug)]
pub struct Error(Box<dyn std::error::Error + Send + Sync>, bool);

impl Error {
    /// Whether no connection could be made (nothing reached the server: safe to retry).
    pub fn is_connect(&self) -> bool {
        self.1
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Error {}

impl Client {
    /// Sends `req` on a pooled connection to its URI's host; resolves with the response head.
    pub fn request(
        &self,
        req: Request<Full<Bytes>>,
    ) -> impl Future<Output = Result<Response<Incoming>, Error>> + Send + 'static {
        let uri = req.uri();
        if uri.scheme() == Some(&Scheme::HTTP) && uri.authority().is_some() {
            // Boxed, as the general client's future is: the caller's futures (retries, hedging)
            // hold several of these, and a large one would make every request move kilobytes.
            let send: Pin<Box<dyn Future<Output = _> + Send>> =
                Box::pin(send_plain(self.plain.clone(), req));
            Either::Left(send)
        } else {
            Either::Right(self.tls.request(req).map(|r| {
                r.map_err(|e| {
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
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
        .build(https);
    Client {
        tls,
        plain: Arc::new(Plain {
            connector: connector(),
            http1: http1::Builder::new(),
            idle: Mutex::new(HashMap::default()),
            reaper: Once::new(),
        }),
    }
}

/// The pool of plain HTTP/1.1 connections.
struct Plain {
    connector: HttpConnector,
    http1: http1::Builder,
    /// Idle connections by host, the most recently used last.
    idle: Mutex<HashMap<Authority, Vec<Idle>, BuildHasherDefault<FxHasher>>>,
    reaper: Once,
}

struct Idle {
    tx: http1::SendRequest<Full<Bytes>>,
    since: Instant,
}

impl Plain {
    /// An idle, still open connection to `host`.
    fn checkout(&self, host: &Authority) -> Option<http1::SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(host)?;
        while let Some(c) = list.pop() {
            if c.tx.is_ready() && c.since.elapsed() < IDLE_TIMEOUT {
                return Some(c.tx);
            }
        }
        None
    }

    /// Keeps `tx` for the next request to `host` once its connection is idle again (now, or
    /// when the response body has been read: a small task waits for that).
    fn give_back(self: Arc<Self>, host: Authority, mut tx: http1::SendRequest<Full<Bytes>>) {
        if tx.is_ready() {
            self.put(host, tx);
        } else if !tx.is_closed() {
            tokio::spawn(async move {
                if std::future::poll_fn(|cx| tx.poll_ready(cx)).await.is_ok() {
                    self.put(host, tx);
                }
            });
        }
    }

    fn put(self: &Arc<Self>, host: Authority, tx: http1::SendRequest<Full<Bytes>>) {
        self.reaper.call_once(|| {
            tokio::spawn(reap(Arc::downgrade(self)));
        });
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(host).or_default();
        if list.len() < MAX_IDLE_PER_HOST {
            list.push(Idle {
                tx,
                since: Instant::now(),
            });
        }
    }

    /// A new connection to the authority of `uri`, its connection task spawned.
    async fn connect(&self, uri: Uri) -> Result<http1::SendRequest<Full<Bytes>>, Error> {
        let io = self
            .connector
            .clone()
            .oneshot(uri)
            .await
            .map_err(|e| Error(e.into(), true))?;
        let (tx, conn) = self
            .http1
            .handshake(io)
            .await
            .map_err(|e| Error(Box::new(e), true))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(tx)
    }
}

/// Closes connections idle for longer than `IDLE_TIMEOUT`, until the pool is dropped.
async fn reap(pool: Weak<Plain>) {
    let mut tick = tokio::time::interval(IDLE_TIMEOUT);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        for list in idle.values_mut() {
            list.retain(|c| c.since.elapsed() < IDLE_TIMEOUT && !c.tx.is_closed());
        }
        idle.retain(|_, list| !list.is_empty());
    }
}

async fn send_plain(
    pool: Arc<Plain>,
    mut req: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, Error> {
    let uri = req.uri().clone();
    let Some(host) = uri.authority().cloned() else {
        return Err(Error("no host in the upstream URL".into(), true));
    };
    if !req.headers().contains_key(header::HOST) {
        let value = match uri.port_u16() {
            Some(port) if port != 80 => {
                HeaderValue::from_str(&format!("{}:{port}", uri.host().unwrap_or_default()))
            }
            _ => HeaderValue::from_str(uri.host().unwrap_or_default()),
        };
        if let Ok(v) = value {
            req.headers_mut().insert(header::HOST, v);
        }
    }
    // Origin form: the path and query only.
    *req.uri_mut() = match uri.path_and_query() {
        Some(p) if p.as_str() != "/" => Uri::from(p.clone()),
        _ => Uri::default(),
    };
    loop {
        let (mut tx, reused) = match pool.checkout(&host) {
            Some(tx) => (tx, true),
            None => (pool.connect(uri.clone()).await?, false),
        };
        match tx.try_send_request(req).await {
            Ok(resp) => {
                pool.give_back(host, tx);
                return Ok(resp);
            }
            Err(mut e) => match e.take_message() {
                // The reused connection closed before the request went out: try another.
                Some(unsent) if reused => req = unsent,
                _ => return Err(Error(Box::new(e.into_error()), false)),
            },
        }
    }
}

/// The Fx hash (rustc's): host names are not attacker-chosen keys here.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}
