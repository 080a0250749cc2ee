//! Closing idle and slow connections. With nothing in flight, a connection is dropped when it
//! has received no bytes for `idle`, and (when this module times request heads) when the next
//! request's head is not complete within the header read timeout: counted from the end of the
//! previous request, or for the first request from its first bytes. So a keep-alive connection
//! that says nothing more after a request is closed after the header read timeout, as hyper's
//! own timeout did; one that never sends a byte after the idle time. One timer per connection
//! serves both limits and is re-armed lazily (see [`IdleIo`]).
//!
//! hyper's own header read timeout (kept for connections served by its auto builder) arms its
//! timer for every request as the connection waits for the next head; that deadline was nearly
//! always the earliest of the thread's timers when it was armed, and tokio's time driver then
//! wakes its own thread through its eventfd (a `write(2)` and one more event per request), as
//! it did for every request's upstream timeout while no earlier timer was armed.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The requests of one connection: how many are not finished (their response body not yet
/// done) and when the last one finished.
#[derive(Debug)]
pub struct Active {
    in_flight: AtomicUsize,
    /// When the connection was accepted: `ended` counts from here.
    base: Instant,
    /// Microseconds from `base` to the end of the last finished request, plus one; 0: none yet.
    ended: AtomicU64,
}

impl Default for Active {
    fn default() -> Active {
        Active {
            in_flight: AtomicUsize::new(0),
            base: Instant::now(),
            ended: AtomicU64::new(0),
        }
    }
}

impl Active {
    pub fn enter(self: &Arc<Self>) -> Guard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Guard(self.clone())
    }
    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }
    /// When the last finished request ended.
    fn ended(&self) -> Option<Instant> {
        match self.ended.load(Ordering::Relaxed) {
            0 => None,
            us => Some(self.base + Duration::from_micros(us - 1)),
        }
    }
}

/// Held by a response body; the request counts as in flight until it is dropped.
#[derive(Debug)]
pub struct Guard(Arc<Active>);

impl Drop for Guard {
    fn drop(&mut self) {
        let active = &self.0;
        let since = active.base.elapsed();
        // Whole microseconds without `as_micros()`'s `u128`.
        let us = since.as_secs() * 1_000_000 + u64::from(since.subsec_micros());
        active.ended.store(us + 1, Ordering::Relaxed);
        active.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request in flight while it is being sent.
pub struct Tracked {
    pub inner: axum::body::Body,
    pub _guard: Guard,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A socket that fails its reads, with nothing in flight, once it has received no bytes for
/// `idle` or (when `header` is set) once the next request head is late; hyper then closes the
/// connection.
///
/// The clock is read when a request ends ([`Guard`]), at the first wait after bytes arrived
/// with nothing in flight (a request head's, once per request) and at a connection's very
/// first bytes; moving bytes costs neither a clock read nor a timer update otherwise.
/// The one timer is created the first time the connection waits to read, and is polled whenever
/// it waits, in flight or not (hyper may last read while the response is still being sent, and
/// not again until bytes come): when it fires, it is re-armed to the deadline the activity since
/// then gives, so a busy connection re-arms it about once per header timeout, not per request.
/// A request that outlasts the timer is looked at again every header timeout (idle time
/// without one), so its connection is closed at most that much late after it ends.
pub struct IdleIo<T> {
    inner: T,
    idle: Duration,
    /// The header read timeout; `None`: hyper keeps its own.
    header: Option<Duration>,
    /// The last time bytes arrived with nothing in flight, as of the last wait (at first, the
    /// connection's start).
    last: Instant,
    /// Bytes arrived with nothing in flight since `last` was read.
    moved: bool,
    /// When the first bytes of the connection's first request arrived.
    first_bytes: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    active: Arc<Active>,
}

/// Why [`IdleIo::poll_deadline`] gave up on the connection.
enum Expired {
    Idle,
    Header,
}

impl<T> IdleIo<T> {
    pub fn new(inner: T, idle: Duration, header: Option<Duration>, active: Arc<Active>) -> Self {
        IdleIo {
            inner,
            idle,
            header,
            last: Instant::now(),
            moved: false,
            first_bytes: None,
            timer: None,
            active,
        }
    }

    /// Bytes were read: with nothing in flight, they are activity (and the first ones start
    /// the first request's header clock).
    fn read_some(&mut self) {
        if !self.active.idle() {
            return;
        }
        self.moved = true;
        // Nothing in flight and nothing ended: no request has started yet.
        if self.first_bytes.is_none() && self.header.is_some() && self.active.ended().is_none() {
            self.first_bytes = Some(Instant::now());
        }
    }

    /// Ready when the connection, with nothing in flight, has received nothing for `idle`, or
    /// the next request head is later than `header`. Never while a request is in flight.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<Expired> {
        let in_flight = !self.active.idle();
        if std::mem::take(&mut self.moved) {
            self.last = Instant::now();
        }
        let ended = self.active.ended();
        let since = match ended {
            Some(e) if e > self.last => e,
            _ => self.last,
        };
        // In flight, the connection is looked at again every period (nothing wakes it when
        // the request ends), so one whose request outlasted the timer is closed up to one
        // period late.
        let period = self.header.map_or(self.idle, |h| h.min(self.idle));
        let idle = since + self.idle;
        let header = self
            .header
            .and_then(|limit| Some(ended.or(self.first_bytes)? + limit));
        let (deadline, kind) = match header {
            _ if in_flight => (since + period, Expired::Idle),
            Some(h) if h <= idle => (h, Expired::Header),
            _ => (idle, Expired::Idle),
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        // Activity only moves the deadlines on: a timer armed earlier fires early and is
        // re-armed then. It is moved earlier only when a header deadline starts (a request
        // ended, or the first bytes came) before the idle one it was armed for.
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let now = Instant::now();
        if in_flight {
            timer.as_mut().reset(now + period);
            let _ = timer.as_mut().poll(cx);
            return Poll::Pending;
        }
        if now < deadline {
            timer.as_mut().reset(deadline);
            ready!(timer.as_mut().poll(cx));
        }
        Poll::Ready(kind)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.read_some();
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.poll_deadline(cx) {
                Poll::Ready(Expired::Idle) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "idle connection",
                ))),
                Poll::Ready(Expired::Header) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no complete request head within the header read timeout",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

use std::future::Future as _;

#[cfg(test)]
mod tests {
    //! Virtual time (`start_paused`): the runtime jumps to the next timer when every task
    //! waits, so the instants below are exact, not slept.
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};

    const IDLE: Duration = Duration::from_secs(10);
    const HEADER: Duration = Duration::from_secs(2);

    fn connection() -> (IdleIo<DuplexStream>, DuplexStream, Arc<Active>) {
        let (server, client) = tokio::io::duplex(4096);
        let active = Arc::new(Active::default());
        (
            IdleIo::new(server, IDLE, Some(HEADER), active.clone()),
            client,
            active,
        )
    }

    /// Reads until the connection fails; the error's text and when it came. A connection
    /// still open after ten idle periods fails the test (it would never be closed).
    async fn read_until_closed(io: &mut IdleIo<DuplexStream>) -> (String, Duration) {
        let from = Instant::now();
        let mut buf = [0u8; 256];
        let closed = async {
            loop {
                match io.read(&mut buf).await {
                    Ok(0) => return "eof".to_owned(),
                    Ok(_) => {}
                    Err(e) => {
                        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
                        return e.to_string();
                    }
                }
            }
        };
        let why = tokio::time::timeout(IDLE * 10, closed)
            .await
            .expect("the connection was never closed");
        (why, from.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_closes_after_the_idle_time() {
        let (mut io, _client, _active) = connection();
        let (why, after) = read_until_closed(&mut io).await;
        assert_eq!(why, "idle connection");
        assert_eq!(after, IDLE);
    }

    /// Serves one request for `served` (its connection's last read starting while it is in
    /// flight, as hyper's does), then waits for the connection to close.
    async fn serve_one_then_wait(
        io: &mut IdleIo<DuplexStream>,
        client: &mut DuplexStream,
        active: &Arc<Active>,
        served: Duration,
    ) -> (String, Duration) {
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert!(io.read(&mut buf).await.unwrap() > 0);
        let guard = active.enter();
        let response = tokio::spawn(async move {
            tokio::time::sleep(served).await;
            drop(guard);
        });
        let closed = read_until_closed(io).await;
        response.await.unwrap();
        closed
    }

    #[tokio::test(start_paused = true)]
    async fn a_keep_alive_connection_must_send_its_next_head_within_the_header_timeout() {
        let (mut io, mut client, active) = connection();
        // Served for 25 s, longer than the idle time: in flight, it is not idle.
        let served = Duration::from_secs(25);
        let (why, after) = serve_one_then_wait(&mut io, &mut client, &active, served).await;
        assert_eq!(
            why,
            "no complete request head within the header read timeout"
        );
        // The request outlasted the timer: closed up to one header timeout late.
        assert!(
            after >= served + HEADER && after <= served + 2 * HEADER,
            "{after:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_header_timing_a_served_connection_closes_after_the_idle_time() {
        // The auto builder's connections: hyper times their heads itself.
        let (server, mut client) = tokio::io::duplex(4096);
        let active = Arc::new(Active::default());
        let mut io = IdleIo::new(server, IDLE, None, active.clone());
        let served = Duration::from_secs(25);
        let (why, after) = serve_one_then_wait(&mut io, &mut client, &active, served).await;
        assert_eq!(why, "idle connection");
        assert!(
            after >= served + IDLE && after <= served + 2 * IDLE,
            "{after:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_trickles_in_is_cut_at_the_header_timeout() {
        for first_request in [true, false] {
            let (mut io, mut client, active) = connection();
            if !first_request {
                client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
                let mut buf = [0u8; 64];
                assert!(io.read(&mut buf).await.unwrap() > 0);
                drop(active.enter());
            }
            // A byte a second: bytes keep coming, but the head is not complete within the
            // header timeout of its first byte (first request) or of the previous request's
            // end (the same instant here).
            let trickle = tokio::spawn(async move {
                for b in b"GET /slow HTTP/1.1\r\nhost: x\r\n" {
                    if client.write_all(&[*b]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
            let (why, after) = read_until_closed(&mut io).await;
            trickle.abort();
            assert_eq!(
                why, "no complete request head within the header read timeout",
                "first request: {first_request}"
            );
            assert_eq!(after, HEADER, "first request: {first_request}");
        }
    }
}
