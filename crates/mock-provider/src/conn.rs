//! One accepted TCP connection, able to end with a reset (RST) instead of a clean close.
//!
//! Reference: TCP's `SO_LINGER` with a zero timeout makes `close()` send RST (tokio's
//! `TcpStream::set_zero_linger`). hyper drops a connection without writing a response when
//! the service returns an error (hyper issue #3659); arming [`ResetHandle`] first turns that
//! drop into a reset, which is what "connection reset by peer" tests need. This module must
//! not know about HTTP.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream that resets instead of closing when its [`ResetHandle`] was armed.
pub struct Conn {
    inner: TcpStream,
    reset: Arc<AtomicBool>,
}

/// Arms the reset of one [`Conn`].
#[derive(Clone, Debug)]
pub struct ResetHandle(Arc<AtomicBool>);

/// The service error that makes hyper drop the connection without a response.
#[derive(Debug)]
pub struct Dropped;

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("mock-provider dropped the connection on purpose")
    }
}

impl std::error::Error for Dropped {}

impl Conn {
    pub fn new(inner: TcpStream) -> Conn {
        Conn {
            inner,
            reset: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn reset_handle(&self) -> ResetHandle {
        ResetHandle(self.reset.clone())
    }
}

impl ResetHandle {
    /// Makes the connection send RST when it is dropped.
    pub fn arm(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            // Best effort: if it fails the peer sees a clean close, still without a response.
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
