//! When is a connection idle? When no request is being handled on it and no
//! byte has moved either way for a while. hyper's header timer only covers
//! waiting for a request head; this also catches a client that stopped
//! reading its response (hyper would wait on the write forever) and lets a
//! keep-alive connection be closed sooner than the header timeout.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// What one connection has been doing; shared by its I/O and its service.
#[derive(Clone)]
pub struct Activity(Arc<Inner>);

struct Inner {
    start: Instant,
    /// Milliseconds after `start` when a byte last moved.
    last_io_ms: AtomicU64,
    /// Requests being handled.
    busy: AtomicUsize,
}

/// Held while a request is handled; the idle clock restarts when it drops.
pub struct Busy(Activity);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Activity {
    pub fn new() -> Activity {
        Activity(Arc::new(Inner {
            start: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }))
    }

    fn touch(&self) {
        let ms = u64::try_from(self.0.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_io_ms.fetch_max(ms, Ordering::AcqRel);
    }

    pub fn busy(&self) -> Busy {
        self.0.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Resolves once the connection has been idle for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            let last = self.0.start + Duration::from_millis(self.0.last_io_ms.load(Ordering::Acquire));
            let deadline = last + limit;
            if Instant::now() >= deadline && self.0.busy.load(Ordering::Acquire) == 0 {
                return;
            }
            // Busy: look again a full period later; a request that ends
            // restarts the clock anyway.
            tokio::time::sleep_until(deadline.max(Instant::now() + limit / 4)).await;
        }
    }

    /// Wrap the connection's stream so every byte read or written counts.
    pub fn watch<S>(&self, stream: S) -> Watched<S> {
        Watched {
            stream,
            activity: self.clone(),
        }
    }
}

/// A stream whose reads and writes mark the connection active.
pub struct Watched<S> {
    stream: S,
    activity: Activity,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_requests_and_bytes() {
        let a = Activity::new();
        let busy = a.busy();
        let limit = Duration::from_millis(100);
        // Busy for longer than the limit: not idle.
        let idle = tokio::time::timeout(Duration::from_millis(400), a.idle_for(limit)).await;
        assert!(idle.is_err());
        drop(busy);
        let t0 = Instant::now();
        a.idle_for(limit).await;
        assert!(t0.elapsed() >= limit, "{:?}", t0.elapsed());
    }
}
