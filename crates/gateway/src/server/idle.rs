//! Closing idle connections: a connection with no request in flight and no bytes moving for
//! `idle` is dropped. hyper's header read timeout starts only at a request's first byte, so
//! without this a client that connects and says nothing would hold a connection forever.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Requests of one connection that are not finished (their response body not yet done).
#[derive(Debug, Default)]
pub struct Active(AtomicUsize);

impl Active {
    pub fn enter(self: &Arc<Self>) -> Guard {
        self.0.fetch_add(1, Ordering::Relaxed);
        Guard(self.clone())
    }
    fn idle(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

/// Held by a response body; the request counts as in flight until it is dropped.
#[derive(Debug)]
pub struct Guard(Arc<Active>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
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

/// A socket that fails its reads once it has been idle (no request in flight, no bytes either
/// way) for the configured time, which makes hyper close the connection.
///
/// Activity only raises a flag; the time is read when the connection starts to wait with
/// nothing in flight after some (which is when the activity ended, to the microsecond). The
/// timer is created the first time the connection waits so and, when it fires, is re-armed to
/// the last activity plus `idle` if there was any since. So moving bytes costs neither a clock
/// read nor a timer-wheel update (a request costs one clock read, as its connection goes back
/// to waiting), and a connection that is always busy (a held stream) never allocates a timer.
pub struct IdleIo<T> {
    inner: T,
    idle: Duration,
    /// The last time bytes moved (or a request was in flight while the socket waited), as of
    /// the last wait with nothing in flight.
    last: Instant,
    /// Bytes moved (or a request was in flight) since `last` was read.
    moved: bool,
    timer: Option<Pin<Box<Sleep>>>,
    active: Arc<Active>,
}

impl<T> IdleIo<T> {
    pub fn new(inner: T, idle: Duration, active: Arc<Active>) -> Self {
        IdleIo {
            inner,
            idle,
            last: Instant::now(),
            moved: false,
            timer: None,
            active,
        }
    }

    fn touch(&mut self) {
        self.moved = true;
    }

    /// Ready when the connection has been idle for `idle` since its last activity.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if std::mem::take(&mut self.moved) {
            self.last = Instant::now();
        }
        let deadline = self.last + self.idle;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        // The timer is never later than the deadline (activity only moves the deadline on):
        // when it fires early, it is re-armed then, once per idle period rather than per read.
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
        timer.as_mut().reset(deadline);
        timer.as_mut().poll(cx)
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
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if !self.active.idle() {
                    // A request is being served; its own timeouts apply.
                    self.touch();
                    return Poll::Pending;
                }
                match self.poll_idle(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "idle connection",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
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
