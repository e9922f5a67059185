//! What bounds the public port: body bytes held at once, time per request, open connections.
//!
//! - [`BodyBudget`]: every byte of every body being read or published is counted against one
//!   budget (`ingester.max_body_bytes_in_flight`); a request that would exceed it gets 503 +
//!   `Retry-After`. Bytes are counted as they arrive, never from an announced `Content-Length`.
//!   A part of the budget is kept for small bodies (up to [`SMALL_BODY_BYTES`]): a few clients
//!   holding huge bodies exhaust the rest, and ordinary webhooks (a few KiB) still get through.
//! - [`DeadlineStream`]: wraps each accepted connection; once a request's first byte has been
//!   read, its reply must be written within `ingester.request_timeout`, or the connection is
//!   dropped. actix-http times only the first request's headers; this covers every request of a
//!   kept-alive connection, its headers and its body (slow-loris, a `Content-Length` larger than
//!   what is sent, half a second request then silence).
//! - [`raise_fd_limit`] and [`connection_limit`]: the soft file-descriptor limit is raised to the
//!   hard one, and webhook connections stay below it so that the broker connection, the admin
//!   port and new genuine connections always find a descriptor.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus::IntGauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Descriptors kept out of the connection limit: broker, admin port, logs, key files.
pub const RESERVED_DESCRIPTORS: u64 = 1024;

/// A body up to this size may use the budget's reserve once the rest is taken.
pub const SMALL_BODY_BYTES: usize = 1024 * 1024;

/// The shared budget of body bytes in flight.
#[derive(Clone)]
pub struct BodyBudget {
    /// For any body.
    shared: Arc<Semaphore>,
    /// Only for bodies up to [`SMALL_BODY_BYTES`], when `shared` is exhausted.
    reserve: Arc<Semaphore>,
    in_flight: IntGauge,
}

impl BodyBudget {
    /// `bytes` in all; of them, the reserve for small bodies is an eighth, at most 32 MiB, and
    /// never so much that a body of `largest_body` bytes could not fit in the rest.
    pub fn new(bytes: usize, largest_body: usize, in_flight: IntGauge) -> Self {
        let bytes = bytes.min(Semaphore::MAX_PERMITS);
        let reserve = (bytes / 8)
            .min(32 * 1024 * 1024)
            .min(bytes.saturating_sub(largest_body));
        Self {
            shared: Arc::new(Semaphore::new(bytes - reserve)),
            reserve: Arc::new(Semaphore::new(reserve)),
            in_flight,
        }
    }

    /// An empty hold, grown with [`BodyHold::grow`] as bytes arrive.
    pub fn hold(&self) -> BodyHold {
        BodyHold {
            budget: self.clone(),
            shared: None,
            reserved: None,
            bytes: 0,
        }
    }
}

/// Bytes of one request counted against the budget; given back when dropped.
pub struct BodyHold {
    budget: BodyBudget,
    /// Taken from the shared part and from the reserve (each merged into one permit: no
    /// allocation per request).
    shared: Option<OwnedSemaphorePermit>,
    reserved: Option<OwnedSemaphorePermit>,
    bytes: usize,
}

impl BodyHold {
    /// Takes `more` bytes from the budget (the shared part first, then — while this body stays
    /// small — the reserve), or returns false (nothing taken) when neither has enough left.
    pub fn grow(&mut self, more: usize) -> bool {
        if more == 0 {
            return true;
        }
        let Ok(count) = u32::try_from(more) else {
            return false;
        };
        let small = self.bytes + more <= SMALL_BODY_BYTES;
        if let Ok(permit) = self.budget.shared.clone().try_acquire_many_owned(count) {
            merge(&mut self.shared, permit);
        } else if let Some(permit) = small
            .then(|| {
                self.budget
                    .reserve
                    .clone()
                    .try_acquire_many_owned(count)
                    .ok()
            })
            .flatten()
        {
            merge(&mut self.reserved, permit);
        } else {
            return false;
        }
        self.bytes += more;
        self.budget.in_flight.add(more as i64);
        true
    }
}

fn merge(held: &mut Option<OwnedSemaphorePermit>, permit: OwnedSemaphorePermit) {
    match held {
        Some(held) => held.merge(permit),
        None => *held = Some(permit),
    }
}

impl Drop for BodyHold {
    fn drop(&mut self) {
        self.budget.in_flight.sub(self.bytes as i64);
    }
}

/// An accepted connection whose every request must be answered within a deadline of its first
/// byte. Reading is what starts the clock (the first bytes read after a reply); writing a reply
/// stops it. When it runs out, the next read fails with `TimedOut` and actix drops the connection.
pub struct DeadlineStream<T> {
    io: T,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    armed: bool,
    open: IntGauge,
}

impl<T> DeadlineStream<T> {
    pub fn new(io: T, limit: Duration, open: IntGauge) -> Self {
        open.inc();
        Self {
            io,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
            armed: false,
            open,
        }
    }
}

impl<T> Drop for DeadlineStream<T> {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for DeadlineStream<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.armed && this.timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request not completed within ingester.request_timeout",
            )));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before && !this.armed {
            let deadline = Instant::now() + this.limit;
            this.timer.as_mut().reset(deadline);
            this.armed = true;
            // Registers the waker for the new deadline.
            let _ = this.timer.as_mut().poll(cx);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for DeadlineStream<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.armed = false;
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.armed = false;
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Raises the soft limit on open files to the hard limit; returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// Webhook connections allowed at once: the configured number, or (0) the descriptor limit less
/// [`RESERVED_DESCRIPTORS`]. Never more than the descriptors left after the reserve.
pub fn connection_limit(configured: usize, fd_limit: u64) -> usize {
    let available = fd_limit.saturating_sub(RESERVED_DESCRIPTORS).max(64);
    let available = usize::try_from(available).unwrap_or(usize::MAX);
    if configured == 0 {
        available
    } else {
        configured.min(available)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bodies_keep_a_reserve_that_large_ones_cannot_take() {
        let gauge = IntGauge::new("t", "t").expect("gauge");
        let mib = 1024 * 1024;
        // 256 MiB: 32 MiB kept for bodies up to 1 MiB.
        let budget = BodyBudget::new(256 * mib, 64 * mib, gauge.clone());
        let mut large: Vec<BodyHold> = (0..4).map(|_| budget.hold()).collect();
        for hold in &mut large[..3] {
            assert!(hold.grow(64 * mib));
        }
        assert!(large[3].grow(32 * mib));
        assert!(
            !large[3].grow(mib),
            "the shared part is exhausted for large bodies"
        );
        let mut small = budget.hold();
        assert!(small.grow(16 * 1024), "a webhook of a few KiB still fits");
        assert!(small.grow(mib - 16 * 1024), "up to 1 MiB from the reserve");
        assert!(!small.grow(1), "past 1 MiB, no more reserve");
        drop(large);
        assert!(small.grow(1), "the shared part is back");
        // A budget that only fits the largest body keeps no reserve.
        let tight = BodyBudget::new(64 * mib, 64 * mib, gauge);
        assert!(tight.hold().grow(64 * mib));
    }

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let gauge = IntGauge::new("t", "t").expect("gauge");
        let budget = BodyBudget::new(100, 100, gauge.clone());
        let mut a = budget.hold();
        let mut b = budget.hold();
        assert!(a.grow(60));
        assert!(!b.grow(41), "over the budget");
        assert!(b.grow(40));
        assert_eq!(gauge.get(), 100);
        drop(a);
        assert_eq!(gauge.get(), 40);
        assert!(b.grow(60));
        assert!(!budget.hold().grow(1));
    }

    #[test]
    fn connections_stay_below_the_descriptor_limit() {
        assert_eq!(connection_limit(0, 20_000), 18_976);
        assert_eq!(connection_limit(50_000, 20_000), 18_976);
        assert_eq!(connection_limit(500, 20_000), 500);
        assert_eq!(connection_limit(0, 256), 64);
    }
}
