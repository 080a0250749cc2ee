//! The body of an upstream answer: a real HTTP body, one already read, or the built-in mock's
//! paced chunks. One enum rather than a boxed trait object: no allocation per request.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

/// The upstream connection broke while its body was being read.
#[derive(Debug)]
pub struct Broken;

pub enum UpstreamBody {
    Http(super::client::Body),
    Full(Option<Bytes>),
    Paced(Paced),
}

/// Chunks released one by one, `delay` apart (the mock provider's stream).
pub struct Paced {
    chunks: VecDeque<Bytes>,
    delay: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Breaks the stream after this many chunks (mock fault injection).
    fail_after: Option<usize>,
}

impl Paced {
    pub fn new(chunks: VecDeque<Bytes>, delay: Duration, fail_after: Option<usize>) -> Self {
        Paced {
            chunks,
            delay,
            sleep: None,
            fail_after,
        }
    }
}

impl UpstreamBody {
    /// Takes the whole body if it was already read.
    pub fn take_full(&mut self) -> Option<Bytes> {
        match self {
            UpstreamBody::Full(b) => b.take(),
            _ => None,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = Broken;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Broken>>> {
        match self.get_mut() {
            UpstreamBody::Http(b) => match Pin::new(b).poll_frame(cx) {
                Poll::Ready(Some(Err(_))) => Poll::Ready(Some(Err(Broken))),
                Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            UpstreamBody::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            UpstreamBody::Paced(p) => {
                if p.fail_after == Some(0) {
                    return Poll::Ready(Some(Err(Broken)));
                }
                if p.chunks.is_empty() {
                    return Poll::Ready(None);
                }
                if !p.delay.is_zero() {
                    let sleep = p
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(p.delay)));
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    p.sleep = None;
                }
                if let Some(n) = p.fail_after.as_mut() {
                    *n -= 1;
                }
                Poll::Ready(p.chunks.pop_front().map(|c| Ok(Frame::data(c))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Http(b) => b.is_end_stream(),
            UpstreamBody::Full(b) => b.is_none(),
            UpstreamBody::Paced(p) => p.chunks.is_empty() && p.fail_after != Some(0),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Http(b) => b.size_hint(),
            UpstreamBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            UpstreamBody::Full(None) => SizeHint::with_exact(0),
            UpstreamBody::Paced(_) => SizeHint::default(),
        }
    }
}

use std::future::Future as _;
