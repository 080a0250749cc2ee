//! HTTP/1.1 over plain TCP for `http://` upstreams (local model servers, sidecars, the
//! benchmark's mock), run in the caller's task.
//!
//! hyper's client runs every connection as a task of its own and hands requests, responses and
//! body chunks to it over channels: three or four task wake-ups per request, often across
//! threads, and 16 KiB of buffers per connection held for as long as a stream lasts. Here the
//! request is written and the answer read by the task that asked for it; the body reads the
//! socket itself and takes a read buffer only once the socket is readable, so an idle stream
//! holds no buffer at all. When the body has been read to its end the connection goes back to
//! the pool; a body dropped early closes its connection.
//!
//! Framing follows RFC 9112 §6: no body for 1xx/204/304, chunked when `Transfer-Encoding` ends
//! in `chunked` (trailers read and dropped), else `Content-Length`, else until the server
//! closes. Interim 1xx answers are skipped. A connection is reused only after a complete
//! HTTP/1.1 answer without `Connection: close` and with nothing read past its end.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Once, Weak};
use std::task::{ready, Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::uri::Authority;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use super::client::{BodyError, Error};

/// Idle connections kept per host.
pub(super) const MAX_IDLE_PER_HOST: usize = 1024;
/// Idle connections are closed before NAT or load balancers silently drop them.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response head accepted.
const MAX_HEAD: usize = 64 << 10;
const MAX_HEADERS: usize = 128;
/// Reads start this large and double, up to `MAX_READ`, while they fill the buffer.
const FIRST_READ: usize = 4 << 10;
const MAX_READ: usize = 64 << 10;
/// A chunk-size or trailer line longer than this is not HTTP.
const MAX_LINE: usize = 4 << 10;
/// Bodies up to this size are copied behind the head and sent in one write.
const COALESCE: usize = 64 << 10;

/// The pool of idle connections, by host, the most recently used last.
///
/// One shard per serving thread ([`crate::server::worker`]): a socket is registered with the
/// reactor of the runtime that opened it, so a connection goes back to, and is reused by, the
/// thread that opened it; a request on another thread's runtime would need that thread to
/// deliver its readiness. Threads outside the workers (one multi-threaded runtime, as in tests)
/// all use the first shard.
pub(super) struct Pool {
    shards: Box<[Mutex<Hosts>]>,
    reaper: Once,
}

type Hosts = HashMap<Authority, Vec<Idle>, BuildHasherDefault<FxHasher>>;

struct Idle {
    io: TcpStream,
    since: Instant,
}

impl Pool {
    pub(super) fn new() -> Arc<Pool> {
        let shards = crate::server::worker::count().max(1);
        Arc::new(Pool {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            reaper: Once::new(),
        })
    }

    /// This thread's shard.
    fn shard(&self) -> &Mutex<Hosts> {
        &self.shards[crate::server::worker::index() % self.shards.len()]
    }

    /// An idle connection to `host` that the server has not closed (as far as the reactor
    /// has seen: a close racing the request is handled by `send`'s retry).
    fn checkout(&self, host: &Authority) -> Option<TcpStream> {
        let mut idle = self.shard().lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(host)?;
        while let Some(c) = list.pop() {
            if c.since.elapsed() < IDLE_TIMEOUT && still_open(&c.io) {
                return Some(c.io);
            }
        }
        None
    }

    fn put(self: &Arc<Self>, host: Authority, io: TcpStream) {
        self.reaper.call_once(|| {
            tokio::spawn(reap(Arc::downgrade(self)));
        });
        let mut idle = self.shard().lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(host).or_default();
        if list.len() < MAX_IDLE_PER_HOST {
            list.push(Idle {
                io,
                since: Instant::now(),
            });
        }
    }
}

/// An idle connection has nothing to say: readable means the server closed it (or broke the
/// protocol). Costs no system call unless the reactor saw the socket become readable.
fn still_open(io: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match io.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => {
            let mut byte = [0u8; 1];
            matches!(io.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        }
    }
}

/// Closes connections idle for longer than `IDLE_TIMEOUT`, until the pool is dropped.
async fn reap(pool: Weak<Pool>) {
    let mut tick = tokio::time::interval(IDLE_TIMEOUT);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        for shard in &pool.shards {
            let mut idle = shard.lock().unwrap_or_else(|e| e.into_inner());
            for list in idle.values_mut() {
                list.retain(|c| c.since.elapsed() < IDLE_TIMEOUT && still_open(&c.io));
            }
            idle.retain(|_, list| !list.is_empty());
        }
    }
}

/// Sends `req` to the authority of its (absolute, `http://`) URI and reads the answer's head.
pub(super) async fn send(
    pool: Arc<Pool>,
    req: Request<http_body_util::Full<Bytes>>,
) -> Result<Response<Body>, Error> {
    let (parts, body) = req.into_parts();
    let Some(host) = parts.uri.authority().cloned() else {
        return Err(Error::connect("no host in the upstream URL"));
    };
    let body = {
        use futures_util::FutureExt as _;
        use http_body_util::BodyExt as _;
        let mut body = body;
        // A `Full` body is ready at once.
        match body.frame().now_or_never().flatten() {
            Some(Ok(f)) => f.into_data().unwrap_or_default(),
            _ => Bytes::new(),
        }
    };
    let (head, coalesced) = encode(&parts, &host, &body);
    let expect_body = parts.method != Method::HEAD;
    let mut fresh_only = false;
    loop {
        let (mut io, reused) = match (!fresh_only).then(|| pool.checkout(&host)).flatten() {
            Some(io) => (io, true),
            None => (connect(&host).await?, false),
        };
        let mut written = io.write_all(&head).await;
        if written.is_ok() && !coalesced {
            written = io.write_all(&body).await;
        }
        let mut buf = BytesMut::new();
        let parsed = match written {
            Ok(()) => read_head(&mut io, &mut buf).await,
            Err(e) => Err(HeadError::Nothing(e)),
        };
        let (status, version, headers) = match parsed {
            Ok(h) => h,
            // A reused connection the server closed while it sat idle: nothing was read, so
            // the request was not answered; once more on a new connection.
            Err(HeadError::Nothing(_)) if reused => {
                fresh_only = true;
                continue;
            }
            Err(HeadError::Nothing(e)) | Err(HeadError::Io(e)) => {
                return Err(Error::other(e));
            }
            Err(HeadError::Bad(what)) => return Err(Error::other(bad(what))),
        };
        let framing = framing(expect_body, status, &headers).map_err(|w| Error::other(bad(w)))?;
        let reusable = version == http::Version::HTTP_11
            && !has_token(&headers, header::CONNECTION, "close")
            && !matches!(framing, Framing::Eof);
        let mut response = Response::new(Body {
            conn: Some(io),
            buf,
            framing,
            read_size: FIRST_READ,
            home: reusable.then_some((pool, host)),
        });
        *response.status_mut() = status;
        *response.version_mut() = version;
        *response.headers_mut() = headers;
        response.body_mut().release_if_done();
        return Ok(response);
    }
}

fn bad(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

async fn connect(host: &Authority) -> Result<TcpStream, Error> {
    let port = host.port_u16().unwrap_or(80);
    let name = host.host().trim_start_matches('[').trim_end_matches(']');
    let io = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((name, port)))
        .await
        .map_err(|_| Error::connect("connect timed out"))?
        .map_err(Error::connect)?;
    let _ = io.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
    let _ = socket2::SockRef::from(&io).set_tcp_keepalive(&keepalive);
    Ok(io)
}

/// The request head (and the body behind it when small): `true` when the body is included.
fn encode(parts: &http::request::Parts, host: &Authority, body: &Bytes) -> (Vec<u8>, bool) {
    let coalesce = body.len() <= COALESCE;
    let mut size = 64 + parts.uri.path().len() + host.as_str().len();
    for (n, v) in &parts.headers {
        size += n.as_str().len() + v.len() + 4;
    }
    if coalesce {
        size += body.len();
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    match parts.uri.path_and_query() {
        Some(p) if !p.as_str().is_empty() => out.extend_from_slice(p.as_str().as_bytes()),
        _ => out.push(b'/'),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !parts.headers.contains_key(header::HOST) {
        // Without the userinfo, which has no place in a Host header.
        let host = host.as_str();
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (n, v) in &parts.headers {
        // The body is sent whole, with its length.
        if n == header::TRANSFER_ENCODING || n == header::CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(n.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let needs_length =
        !body.is_empty() || matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);
    if needs_length {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if coalesce {
        out.extend_from_slice(body);
    }
    (out, coalesce)
}

enum HeadError {
    /// The connection ended or failed before a byte of the answer arrived.
    Nothing(io::Error),
    Io(io::Error),
    Bad(&'static str),
}

type Head = (StatusCode, http::Version, HeaderMap);

/// Reads until a final (non-1xx) response head is complete; what follows it stays in `buf`.
async fn read_head(io: &mut TcpStream, buf: &mut BytesMut) -> Result<Head, HeadError> {
    let mut read_size = FIRST_READ;
    let mut got_any = false;
    loop {
        if !buf.is_empty() {
            match parse_head(buf)? {
                Some((status, _, _)) if status.is_informational() => {
                    if status == StatusCode::SWITCHING_PROTOCOLS {
                        return Err(HeadError::Bad("unexpected protocol switch"));
                    }
                    continue;
                }
                Some(head) => return Ok(head),
                None if buf.len() >= MAX_HEAD => {
                    return Err(HeadError::Bad("response head too large"))
                }
                None => {}
            }
        }
        let n = std::future::poll_fn(|cx| fill(io, buf, &mut read_size, cx))
            .await
            .map_err(|e| {
                if got_any {
                    HeadError::Io(e)
                } else {
                    HeadError::Nothing(e)
                }
            })?;
        if n == 0 {
            let e = io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed");
            return Err(if got_any {
                HeadError::Io(e)
            } else {
                HeadError::Nothing(e)
            });
        }
        got_any = true;
    }
}

/// Parses one response head off the front of `buf`; `None` when more bytes are needed.
fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, HeadError> {
    // Left uninitialised: httparse fills only what it parses (zeroing 128 slots, 4 KiB, on
    // every read of a head cost more than the parse).
    let mut slots =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::Bad("too many headers")),
        Err(_) => return Err(HeadError::Bad("malformed response head")),
    };
    let status = parsed
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(HeadError::Bad("malformed status"))?;
    let version = match parsed.version {
        Some(1) => http::Version::HTTP_11,
        _ => http::Version::HTTP_10,
    };
    // Header values are slices of the head, not copies. The offsets wait on the stack while
    // `parsed` still borrows the buffer.
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| s.as_ptr() as usize - base;
    let spans: Vec<(usize, usize, usize, usize)> = parsed
        .headers
        .iter()
        .map(|h| {
            let name = h.name.as_bytes();
            (offset(name), name.len(), offset(h.value), h.value.len())
        })
        .collect();
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(spans.len());
    for &(name_at, name_len, value_at, value_len) in &spans {
        let name = HeaderName::from_bytes(&head[name_at..name_at + name_len])
            .map_err(|_| HeadError::Bad("malformed header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(value_at..value_at + value_len))
            .map_err(|_| HeadError::Bad("malformed header value"))?;
        headers.append(name, value);
    }
    Ok(Some((status, version, headers)))
}

/// Reads what the socket has into `buf`, taking buffer space only once it is readable. A short
/// read marks the socket drained (tokio's `poll_read`), so the next wait costs no system call.
fn fill(
    io: &mut TcpStream,
    buf: &mut BytesMut,
    read_size: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    ready!(io.poll_read_ready(cx))?;
    if buf.capacity() - buf.len() < *read_size / 2 {
        buf.reserve(*read_size);
    }
    let room = buf.capacity() - buf.len();
    match tokio_util::io::poll_read_buf(Pin::new(io), cx, buf) {
        Poll::Ready(Ok(n)) => {
            if n == room && *read_size < MAX_READ {
                *read_size *= 2;
            }
            Poll::Ready(Ok(n))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => {
            // Readiness was stale: hold no memory while waiting.
            if buf.is_empty() {
                *buf = BytesMut::new();
            }
            Poll::Pending
        }
    }
}

fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .unwrap_or_default()
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    })
}

#[derive(Debug, PartialEq)]
enum Framing {
    /// This many body bytes are still to come.
    Length(u64),
    Chunked(Chunk),
    /// Until the server closes the connection.
    Eof,
    Done,
}

#[derive(Debug, PartialEq)]
enum Chunk {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    Trailers,
}

fn framing(
    expect_body: bool,
    status: StatusCode,
    headers: &HeaderMap,
) -> Result<Framing, &'static str> {
    if !expect_body
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Done);
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        let last = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|t| !t.is_empty());
        return Ok(match last {
            Some(t) if t.eq_ignore_ascii_case("chunked") => Framing::Chunked(Chunk::Size),
            _ => Framing::Eof,
        });
    }
    let mut length = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        for part in v.to_str().map_err(|_| "bad content-length")?.split(',') {
            let n: u64 = part.trim().parse().map_err(|_| "bad content-length")?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting content-length");
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => Framing::Done,
        Some(n) => Framing::Length(n),
        None => Framing::Eof,
    })
}

/// The body of an answer, read from its connection as it is polled.
pub struct Body {
    /// `None` once the body is complete (the connection then went back to the pool or closed).
    conn: Option<TcpStream>,
    /// Bytes read and not yet returned.
    buf: BytesMut,
    framing: Framing,
    read_size: usize,
    /// Where the connection goes when the body is complete, if it may be reused.
    home: Option<(Arc<Pool>, Authority)>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("framing", &self.framing)
            .field("buffered", &self.buf.len())
            .finish()
    }
}

enum Step {
    Data(Bytes),
    More,
    End,
}

impl Body {
    /// Once the last byte is in: the connection goes home (only if nothing followed the body).
    fn release_if_done(&mut self) {
        if self.framing != Framing::Done {
            return;
        }
        if let (Some(io), Some((pool, host))) = (self.conn.take(), self.home.take()) {
            if self.buf.is_empty() {
                pool.put(host, io);
            }
        }
        // Nothing more will be read: let go of the buffer's memory.
        self.buf = BytesMut::new();
    }

    /// The next piece of body in `buf`, if a whole one is there.
    fn step(&mut self) -> Result<Step, &'static str> {
        loop {
            match &mut self.framing {
                Framing::Done => return Ok(Step::End),
                Framing::Eof => {
                    if self.buf.is_empty() {
                        return Ok(Step::More);
                    }
                    return Ok(Step::Data(self.take(usize::MAX)));
                }
                Framing::Length(left) => {
                    if self.buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = (*left).min(self.buf.len() as u64);
                    *left -= n;
                    if *left == 0 {
                        self.framing = Framing::Done;
                    }
                    return Ok(Step::Data(self.take(n as usize)));
                }
                Framing::Chunked(Chunk::Data(left)) => {
                    if self.buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = (*left).min(self.buf.len() as u64);
                    *left -= n;
                    if *left == 0 {
                        self.framing = Framing::Chunked(Chunk::DataEnd);
                    }
                    return Ok(Step::Data(self.take(n as usize)));
                }
                Framing::Chunked(Chunk::DataEnd) => {
                    if self.buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err("bad chunk end");
                    }
                    let _ = self.buf.split_to(2);
                    self.framing = Framing::Chunked(Chunk::Size);
                }
                Framing::Chunked(Chunk::Size) => {
                    let Some(line) = self.line()? else {
                        return Ok(Step::More);
                    };
                    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
                    let digits = digits.trim_ascii();
                    if digits.is_empty() || digits.len() > 15 {
                        return Err("bad chunk size");
                    }
                    let mut size = 0u64;
                    for &d in digits {
                        let v = (d as char).to_digit(16).ok_or("bad chunk size")?;
                        size = size * 16 + u64::from(v);
                    }
                    self.framing = Framing::Chunked(if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    });
                }
                Framing::Chunked(Chunk::Trailers) => {
                    let Some(line) = self.line()? else {
                        return Ok(Step::More);
                    };
                    if line.is_empty() {
                        self.framing = Framing::Done;
                    }
                }
            }
        }
    }

    /// Takes one CRLF-terminated line off `buf` (without the CRLF), if a whole one is there.
    fn line(&mut self) -> Result<Option<Bytes>, &'static str> {
        match self.buf.windows(2).position(|w| w == b"\r\n") {
            Some(end) => {
                let line = self.buf.split_to(end + 2).freeze();
                Ok(Some(line.slice(..end)))
            }
            None if self.buf.len() > MAX_LINE => Err("chunk line too long"),
            None => Ok(None),
        }
    }

    fn take(&mut self, n: usize) -> Bytes {
        let data = if n >= self.buf.len() {
            // All of it: hand the buffer over rather than keep its spare room alive.
            std::mem::take(&mut self.buf)
        } else {
            self.buf.split_to(n)
        };
        data.freeze()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        loop {
            match this.step() {
                Ok(Step::Data(d)) => {
                    this.release_if_done();
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                Ok(Step::End) => {
                    this.release_if_done();
                    return Poll::Ready(None);
                }
                Ok(Step::More) => {}
                Err(what) => {
                    this.fail();
                    return Poll::Ready(Some(Err(BodyError::new(bad(what)))));
                }
            }
            let Some(io) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(fill(io, &mut this.buf, &mut this.read_size, cx)) {
                Ok(0) if this.framing == Framing::Eof => {
                    this.framing = Framing::Done;
                    this.release_if_done();
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.fail();
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, "body cut short");
                    return Poll::Ready(Some(Err(BodyError::new(e))));
                }
                Ok(_) => {}
                Err(e) => {
                    this.fail();
                    return Poll::Ready(Some(Err(BodyError::new(e))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.framing == Framing::Done && self.buf.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Done => SizeHint::with_exact(0),
            Framing::Length(left) => SizeHint::with_exact(left),
            _ => SizeHint::default(),
        }
    }
}

impl Body {
    /// The connection is no good any more: close it.
    fn fail(&mut self) {
        self.conn = None;
        self.home = None;
        self.framing = Framing::Done;
        self.buf = BytesMut::new();
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt as _, Full};
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt as _;
    use tokio::net::TcpListener;

    /// What the scripted server does with the next request it reads.
    enum Reply {
        Send(&'static [u8]),
        SendThenClose(&'static [u8]),
        /// Reads the request and closes without a word.
        Close,
    }

    struct Server {
        addr: std::net::SocketAddr,
        accepts: Arc<AtomicUsize>,
        requests: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    async fn server(replies: Vec<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
        let (a, r) = (accepts.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let (mut io, _) = listener.accept().await.unwrap();
                a.fetch_add(1, Ordering::SeqCst);
                let (replies, requests) = (replies.clone(), r.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        // One request: the head, then content-length bytes.
                        let (end, length) = loop {
                            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                                let length = head
                                    .lines()
                                    .find_map(|l| l.strip_prefix("content-length: "))
                                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                                break (end + 4, length);
                            }
                            let mut chunk = [0u8; 4096];
                            match io.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        while buf.len() < end + length {
                            let mut chunk = [0u8; 4096];
                            match io.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        requests
                            .lock()
                            .unwrap()
                            .push(buf.drain(..end + length).collect());
                        let reply = replies.lock().unwrap().pop_front();
                        match reply {
                            Some(Reply::Send(b)) => io.write_all(b).await.unwrap(),
                            Some(Reply::SendThenClose(b)) => {
                                io.write_all(b).await.unwrap();
                                return;
                            }
                            Some(Reply::Close) | None => return,
                        }
                    }
                });
            }
        });
        Server {
            addr,
            accepts,
            requests,
        }
    }

    fn post(addr: std::net::SocketAddr, body: &'static str) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(Bytes::from_static(body.as_bytes())));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = format!("http://{addr}/v1/chat/completions?x=1")
            .parse()
            .unwrap();
        req.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        req
    }

    async fn call(pool: &Arc<Pool>, addr: std::net::SocketAddr) -> Result<(u16, Bytes), String> {
        let resp = send(pool.clone(), post(addr, "{\"a\":1}"))
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}";

    #[tokio::test]
    async fn writes_origin_form_with_host_and_length_and_reuses_the_connection() {
        let s = server(vec![Reply::Send(OK), Reply::Send(OK), Reply::Send(OK)]).await;
        let pool = Pool::new();
        for _ in 0..3 {
            assert_eq!(
                call(&pool, s.addr).await.unwrap(),
                (200, Bytes::from_static(b"{\"ok\":true}"))
            );
        }
        assert_eq!(
            s.accepts.load(Ordering::SeqCst),
            1,
            "one connection, reused"
        );
        let first = String::from_utf8(s.requests.lock().unwrap()[0].clone()).unwrap();
        assert!(
            first.starts_with("POST /v1/chat/completions?x=1 HTTP/1.1\r\n"),
            "{first}"
        );
        assert!(first.contains(&format!("host: {}\r\n", s.addr)), "{first}");
        assert!(
            first.contains("content-type: application/json\r\n"),
            "{first}"
        );
        assert!(
            first.ends_with("content-length: 7\r\n\r\n{\"a\":1}"),
            "{first}"
        );
    }

    #[tokio::test]
    async fn connection_close_and_unframed_bodies_are_not_reused() {
        let s = server(vec![
            Reply::Send(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nhi"),
            Reply::SendThenClose(b"HTTP/1.1 200 OK\r\n\r\nuntil the end"),
            Reply::Send(b"HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\nold"),
            Reply::Send(OK),
        ])
        .await;
        let pool = Pool::new();
        assert_eq!(call(&pool, s.addr).await.unwrap().1, "hi");
        assert_eq!(call(&pool, s.addr).await.unwrap().1, "until the end");
        assert_eq!(call(&pool, s.addr).await.unwrap().1, "old");
        assert_eq!(call(&pool, s.addr).await.unwrap().0, 200);
        assert_eq!(s.accepts.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_reused_connection_closed_by_the_server_is_retried_on_a_new_one() {
        // The server takes the second request on the kept connection and hangs up unanswered.
        let s = server(vec![Reply::Send(OK), Reply::Close, Reply::Send(OK)]).await;
        let pool = Pool::new();
        assert_eq!(call(&pool, s.addr).await.unwrap().0, 200);
        assert_eq!(call(&pool, s.addr).await.unwrap().0, 200);
        assert_eq!(s.accepts.load(Ordering::SeqCst), 2);
        assert_eq!(s.requests.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_fresh_connection_closed_unanswered_is_an_error_not_a_retry() {
        let s = server(vec![Reply::Close, Reply::Send(OK)]).await;
        let pool = Pool::new();
        assert!(call(&pool, s.addr).await.is_err());
        assert_eq!(s.requests.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error_and_its_connection_is_not_reused() {
        let s = server(vec![
            Reply::SendThenClose(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this"),
            Reply::SendThenClose(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
            ),
            Reply::Send(OK),
        ])
        .await;
        let pool = Pool::new();
        assert!(call(&pool, s.addr).await.is_err());
        assert!(call(&pool, s.addr).await.is_err());
        assert_eq!(call(&pool, s.addr).await.unwrap().0, 200);
        assert_eq!(s.accepts.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_closes_its_connection() {
        let s = server(vec![
            Reply::Send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n"),
            Reply::Send(OK),
        ])
        .await;
        let pool = Pool::new();
        let resp = send(pool.clone(), post(s.addr, "{}")).await.unwrap();
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "hello");
        drop(body);
        assert_eq!(call(&pool, s.addr).await.unwrap().0, 200);
        assert_eq!(s.accepts.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn interim_answers_are_skipped_and_bad_heads_refused() {
        let s = server(vec![
            Reply::Send(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 1\r\n\r\nx",
            ),
            Reply::SendThenClose(
                b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nxy",
            ),
            Reply::SendThenClose(b"HTTP/1.1 2x0 OK\r\n\r\n"),
            Reply::Send(b"HTTP/1.1 204 No Content\r\n\r\n"),
            Reply::Send(OK),
        ])
        .await;
        let pool = Pool::new();
        assert_eq!(
            call(&pool, s.addr).await.unwrap(),
            (201, Bytes::from_static(b"x"))
        );
        assert!(
            call(&pool, s.addr).await.is_err(),
            "conflicting content-length"
        );
        assert!(call(&pool, s.addr).await.is_err(), "malformed status line");
        assert_eq!(call(&pool, s.addr).await.unwrap(), (204, Bytes::new()));
        // The 204 left its connection reusable.
        assert_eq!(call(&pool, s.addr).await.unwrap().0, 200);
        assert_eq!(s.accepts.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn response_headers_are_read_in_order_with_repeats() {
        let s = server(vec![Reply::Send(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nx-multi: a\r\nX-Multi: b\r\ncontent-length: 0\r\n\r\n",
        )])
        .await;
        let resp = send(Pool::new(), post(s.addr, "{}")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.version(), http::Version::HTTP_11);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
        let multi: Vec<_> = resp.headers().get_all("x-multi").iter().collect();
        assert_eq!(multi, ["a", "b"]);
        assert_eq!(resp.headers().len(), 4);
    }

    #[tokio::test]
    async fn a_connection_refused_is_a_connect_error() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let e = send(Pool::new(), post(addr, "{}")).await.unwrap_err();
        assert!(e.is_connect());
    }

    /// A body whose bytes are fed by hand (no connection).
    fn detached(framing: Framing) -> Body {
        Body {
            conn: None,
            buf: BytesMut::new(),
            framing,
            read_size: FIRST_READ,
            home: None,
        }
    }

    fn drain(b: &mut Body, out: &mut Vec<u8>) -> Result<bool, &'static str> {
        loop {
            match b.step()? {
                Step::Data(d) => out.extend_from_slice(&d),
                Step::More => return Ok(false),
                Step::End => return Ok(true),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_boundaries() {
        let wire: &[u8] =
            b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-trailer: 1\r\n\r\n";
        let want = b"helloabcdefghijklmnopqrstuvwxyz";
        for cut in 0..=wire.len() {
            for cut2 in cut..=wire.len() {
                let mut b = detached(Framing::Chunked(Chunk::Size));
                let mut out = Vec::new();
                b.buf.extend_from_slice(&wire[..cut]);
                assert!(!drain(&mut b, &mut out).unwrap() || cut == wire.len());
                b.buf.extend_from_slice(&wire[cut..cut2]);
                let _ = drain(&mut b, &mut out).unwrap();
                b.buf.extend_from_slice(&wire[cut2..]);
                assert!(drain(&mut b, &mut out).unwrap(), "cut at {cut}/{cut2}");
                assert_eq!(out, want, "cut at {cut}/{cut2}");
                assert!(b.buf.is_empty());
            }
        }
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for wire in [
            &b"zz\r\n"[..],
            b"5\r\nhelloXX",
            b"\r\n",
            b"11111111111111111\r\n",
        ] {
            let mut b = detached(Framing::Chunked(Chunk::Size));
            b.buf.extend_from_slice(wire);
            assert!(drain(&mut b, &mut Vec::new()).is_err(), "{wire:?}");
        }
        let mut b = detached(Framing::Chunked(Chunk::Size));
        b.buf.extend_from_slice(&[b'1'; MAX_LINE + 1]);
        assert!(drain(&mut b, &mut Vec::new()).is_err(), "endless size line");
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (n, v) in pairs {
                m.append(*n, HeaderValue::from_static(v));
            }
            m
        };
        let ok = StatusCode::OK;
        assert_eq!(
            framing(true, ok, &h(&[("content-length", "5")])),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            framing(true, ok, &h(&[("content-length", "5, 5")])),
            Ok(Framing::Length(5))
        );
        assert!(framing(
            true,
            ok,
            &h(&[("content-length", "5"), ("content-length", "6")])
        )
        .is_err());
        assert!(framing(true, ok, &h(&[("content-length", "-1")])).is_err());
        assert_eq!(
            framing(
                true,
                ok,
                &h(&[
                    ("transfer-encoding", "gzip, chunked"),
                    ("content-length", "5")
                ])
            ),
            Ok(Framing::Chunked(Chunk::Size))
        );
        assert_eq!(
            framing(true, ok, &h(&[("transfer-encoding", "gzip")])),
            Ok(Framing::Eof)
        );
        assert_eq!(framing(true, ok, &h(&[])), Ok(Framing::Eof));
        assert_eq!(
            framing(false, ok, &h(&[("content-length", "5")])),
            Ok(Framing::Done)
        );
        assert_eq!(
            framing(
                true,
                StatusCode::NOT_MODIFIED,
                &h(&[("content-length", "5")])
            ),
            Ok(Framing::Done)
        );
    }
}
