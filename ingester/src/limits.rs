//! What bounds the public port: body bytes held at once, time per request, open connections.
//!
//! - [`BodyBudget`]: every byte of every body being read or published is counted against one
//!   budget (`ingester.max_body_bytes_in_flight`); a request that would exceed it gets 503 +
//!   `Retry-After`. So is every byte a connection has read and its request has not yet taken
//!   (request heads, read-ahead): past the budget, a connection reads nothing more until bytes
//!   are given back (see [`ReadCredit`]). Bytes are counted as they arrive, never from an
//!   announced `Content-Length`. A part of the budget is kept for small bodies (up to
//!   [`SMALL_BODY_BYTES`]): a few clients holding huge bodies exhaust the rest, and ordinary
//!   webhooks (a few KiB) still get through.
//! - [`DeadlineStream`]: wraps each accepted connection; once a request's first byte has been
//!   read, its reply must be written within `ingester.request_timeout`, or the connection is
//!   dropped. actix-http times only the first request's headers; this covers every request of a
//!   kept-alive connection, its headers and its body (slow-loris, a `Content-Length` larger than
//!   what is sent, half a second request then silence), and a reply the client does not read
//!   (pipelined requests whose replies are never read: nothing more is read from it meanwhile).
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

    /// Gives back up to `less` bytes (the reserve's first).
    pub fn shrink(&mut self, less: usize) {
        let less = less.min(self.bytes);
        let mut left = less;
        for permit in [&mut self.reserved, &mut self.shared].into_iter().flatten() {
            let given = left.min(permit.num_permits());
            drop(permit.split(given));
            left -= given;
        }
        self.bytes -= less;
        self.budget.in_flight.sub(less as i64);
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes
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

/// An accepted connection whose every request must be answered within a deadline, and which
/// reads nothing while a reply waits to be sent.
///
/// - The clock starts at the first byte read after a reply (a request's), or at the first write
///   the socket cannot take whole (a reply the client is not reading). It stops only when a write
///   is taken whole by the socket. When it runs out, the next read or write fails with
///   `TimedOut` and actix drops the connection: a request not answered, or a reply not written,
///   within `ingester.request_timeout` ends the connection.
/// - While a reply's bytes wait (the last write was not taken whole), reads return `Pending`:
///   a client that pipelines requests and never reads the replies stops being read, instead of
///   having more of its requests read and answered into buffers. actix reads at most 128 KiB
///   and parses at most 16 requests ahead; this keeps it from reading further.
pub struct DeadlineStream<T> {
    io: T,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    armed: bool,
    /// Reply bytes the socket has not taken yet.
    backlog: bool,
    credit: Arc<ReadCredit>,
    /// Set while the budget has no room for a read: when to try again.
    retry: Option<Pin<Box<Sleep>>>,
    open: IntGauge,
}

/// How often a connection waiting for the budget tries again (no waiter list: a release costs
/// nothing on the common path, and 10,000 waiting connections cost 100,000 tries a second at
/// worst — each one failed `try_acquire`).
pub const BUDGET_RETRY: Duration = Duration::from_millis(100);

impl<T> DeadlineStream<T> {
    /// `budget` counts what the connection has read and its requests have not yet taken.
    pub fn new(io: T, limit: Duration, open: IntGauge, budget: &BodyBudget) -> Self {
        open.inc();
        Self {
            io,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
            armed: false,
            backlog: false,
            credit: Arc::new(ReadCredit::new(budget.hold())),
            retry: None,
            open,
        }
    }

    /// True while the budget's last refusal is less than [`BUDGET_RETRY`] old (registering the
    /// waker for the retry).
    fn waiting_for_budget(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(timer) = &mut self.retry else {
            return false;
        };
        if timer.as_mut().poll(cx).is_pending() {
            return true;
        }
        self.retry = None;
        false
    }

    /// The connection's read credit, for its requests' handlers (through the connection data).
    pub fn credit(&self) -> Arc<ReadCredit> {
        self.credit.clone()
    }

    /// `Err(TimedOut)` once the armed deadline has passed (registering the waker otherwise).
    fn check_deadline(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.armed && self.timer.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request not answered, or reply not written, within ingester.request_timeout",
            ));
        }
        Ok(())
    }

    fn arm(&mut self, cx: &mut Context<'_>) {
        if !self.armed {
            let deadline = Instant::now() + self.limit;
            self.timer.as_mut().reset(deadline);
            self.armed = true;
            // Registers the waker for the new deadline.
            let _ = self.timer.as_mut().poll(cx);
        }
    }

    /// After a write of `offered` bytes: taken whole stops the clock; taken in part, or not at
    /// all, leaves a backlog and starts it.
    fn wrote(&mut self, cx: &mut Context<'_>, polled: &Poll<io::Result<usize>>, offered: usize) {
        match polled {
            Poll::Ready(Ok(n)) if *n >= offered => {
                self.armed = false;
                self.backlog = false;
                if offered > 0 {
                    self.credit.replied();
                }
            }
            Poll::Ready(Ok(_)) | Poll::Pending => {
                self.backlog = true;
                self.arm(cx);
            }
            Poll::Ready(Err(_)) => {}
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
        if let Err(error) = this.check_deadline(cx) {
            return Poll::Ready(Err(error));
        }
        if this.backlog {
            // The dispatcher is woken by the socket's write readiness (its write is pending on
            // the same task) or by the deadline.
            return Poll::Pending;
        }
        let allowed = this.credit.available(cx);
        if allowed == 0 {
            // Woken when a handler consumes body bytes or a reply is written.
            return Poll::Pending;
        }
        if this.waiting_for_budget(cx) {
            return Poll::Pending;
        }
        // The caller's room is rarely more than the credit and 8 KiB (actix grows its buffer by
        // 8 KiB): read straight into it, overshooting the credit by at most that. Only a larger
        // room goes through a stack buffer, which costs zeroing it (callgrind: ~4,000
        // instructions a request when every read went that way).
        let direct = buf.remaining() <= allowed.saturating_add(READ_AHEAD);
        let room = if direct {
            buf.remaining()
        } else {
            allowed.min(READ_AHEAD)
        };
        // What may be read is counted before it is read, and what was not read given back.
        if !this.credit.charge(room) {
            let mut timer = Box::pin(tokio::time::sleep(BUDGET_RETRY));
            // Registers the waker for the retry.
            let _ = timer.as_mut().poll(cx);
            this.retry = Some(timer);
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let polled = if direct {
            Pin::new(&mut this.io).poll_read(cx, buf)
        } else {
            let mut scratch = [0u8; READ_AHEAD];
            let mut limited = ReadBuf::new(&mut scratch[..room]);
            let polled = Pin::new(&mut this.io).poll_read(cx, &mut limited);
            buf.put_slice(limited.filled());
            polled
        };
        let read = buf.filled().len() - before;
        let read = if matches!(polled, Poll::Ready(Ok(()))) {
            read
        } else {
            0
        };
        this.credit.took(read, room);
        if read > 0 {
            this.arm(cx);
        }
        polled
    }
}

/// How much a connection may read ahead of its requests, so that pipelined requests are not
/// parsed faster than they are answered: actix-http decodes every complete request in its read
/// buffer at once (up to 128 KiB), at about 4 KiB of memory each — 62-byte requests pipelined
/// into it made ~9 MiB a connection (measured with heaptrack: 174 MB for 32 connections).
///
/// A connection may read [`READ_AHEAD`] bytes (one read may overshoot by up to [`READ_AHEAD`]);
/// then more only as its request's handler consumes
/// body bytes ([`ReadCredit::consumed`]), or once a reply has been written (the credit is
/// [`READ_AHEAD`] again). Where no request has started since the last grant (a request head
/// larger than that), a further [`READ_AHEAD`] is granted, up to actix-http's own 128 KiB limit
/// on a head.
///
/// What the connection has read is counted in the body budget ([`BodyHold`]) until its request
/// takes it: a request's body bytes as its handler consumes them (they are then counted by the
/// handler's own hold), the rest (the head, read-ahead) once the reply is written. Bytes read
/// ahead of the next request when a reply is written (at most [`READ_AHEAD`] plus one read's
/// overshoot) are not counted from then on: that is the uncounted part of a connection's memory.
pub struct ReadCredit(std::sync::Mutex<Credit>);

/// Read-ahead allowed after each reply, and the step for a large head.
pub const READ_AHEAD: usize = 8 * 1024;
/// The largest request head actix-http reads (its `MAX_BUFFER_SIZE`).
pub const MAX_HEAD: usize = 128 * 1024;

struct Credit {
    bytes: usize,
    /// Granted since the last reply for heads (to bound a head's growth).
    granted: usize,
    /// A request's handler started since the last reply.
    started: bool,
    /// The credit ran out with no request started; set for one dispatcher poll.
    exhausted: bool,
    waker: Option<std::task::Waker>,
    /// Read and not yet taken by a request, in the body budget.
    held: BodyHold,
}

impl ReadCredit {
    fn new(held: BodyHold) -> Self {
        Self(std::sync::Mutex::new(Credit {
            bytes: READ_AHEAD,
            granted: READ_AHEAD,
            started: false,
            exhausted: false,
            waker: None,
            held,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Credit> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes the connection may read now; 0 registers the reader to be woken.
    fn available(&self, cx: &mut Context<'_>) -> usize {
        let mut credit = self.lock();
        if credit.bytes > 0 {
            return credit.bytes;
        }
        if !credit.started && credit.granted < MAX_HEAD {
            if credit.exhausted {
                // The dispatcher looked at what was read and started no request: its head is
                // larger than what was granted.
                credit.exhausted = false;
                credit.bytes = READ_AHEAD;
                credit.granted += READ_AHEAD;
                return credit.bytes;
            }
            // actix reads until a read is pending, and only then parses: let it parse what it
            // has, and look again on the next poll.
            credit.exhausted = true;
            cx.waker().wake_by_ref();
            return 0;
        }
        credit.waker = Some(cx.waker().clone());
        0
    }

    /// Counts `room` bytes, about to be read, in the budget; false when it has no room.
    fn charge(&self, room: usize) -> bool {
        self.lock().held.grow(room)
    }

    /// `read` of the `room` bytes charged were read: the rest is given back.
    fn took(&self, read: usize, room: usize) {
        let mut credit = self.lock();
        credit.bytes = credit.bytes.saturating_sub(read);
        credit.held.shrink(room.saturating_sub(read));
    }

    /// Bytes the connection holds in the budget now.
    pub fn held(&self) -> usize {
        self.lock().held.bytes()
    }

    fn replied(&self) {
        let mut credit = self.lock();
        let held = credit.held.bytes();
        credit.held.shrink(held);
        credit.bytes = credit.bytes.max(READ_AHEAD);
        credit.granted = READ_AHEAD;
        credit.started = false;
        credit.exhausted = false;
        if let Some(waker) = credit.waker.take() {
            waker.wake();
        }
    }

    /// A request's handler has started: further reads wait for its body or its reply.
    pub fn request_started(&self) {
        self.lock().started = true;
    }

    /// The handler consumed `bytes` of its body (now counted by its own hold): as many may be
    /// read again, and the connection gives them back to the budget.
    pub fn consumed(&self, bytes: usize) {
        let mut credit = self.lock();
        credit.held.shrink(bytes);
        credit.bytes = credit.bytes.saturating_add(bytes);
        if let Some(waker) = credit.waker.take() {
            waker.wake();
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for DeadlineStream<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(error) = self.check_deadline(cx) {
            return Poll::Ready(Err(error));
        }
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        self.wrote(cx, &polled, data.len());
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Err(error) = self.check_deadline(cx) {
            return Poll::Ready(Err(error));
        }
        let offered = bufs.iter().map(|b| b.len()).sum();
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(cx, &polled, offered);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(error) = self.check_deadline(cx) {
            return Poll::Ready(Err(error));
        }
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
    fn a_hold_gives_back_part_of_what_it_took() {
        let gauge = IntGauge::new("t", "t").expect("gauge");
        // 100 bytes: 12 kept for small bodies, 88 shared.
        let budget = BodyBudget::new(100, 50, gauge.clone());
        let mut connection = budget.hold();
        assert!(connection.grow(88), "the shared part");
        assert!(connection.grow(7), "7 of the reserve");
        connection.shrink(10);
        assert_eq!((connection.bytes(), gauge.get()), (85, 85));
        assert!(
            budget.hold().grow(12),
            "the reserve given back is free again"
        );
        connection.shrink(1000);
        assert_eq!((connection.bytes(), gauge.get()), (0, 0));
        let mut again = budget.hold();
        assert!(again.grow(88) && again.grow(12), "the whole budget is free");
    }

    #[test]
    fn connections_stay_below_the_descriptor_limit() {
        assert_eq!(connection_limit(0, 20_000), 18_976);
        assert_eq!(connection_limit(50_000, 20_000), 18_976);
        assert_eq!(connection_limit(500, 20_000), 500);
        assert_eq!(connection_limit(0, 256), 64);
    }
}
