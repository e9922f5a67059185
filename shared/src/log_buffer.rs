//! Where log lines go: an in-memory buffer that a background thread writes out in batches.
//!
//! A line is appended under a mutex by the thread that logs it; the writer thread is woken only
//! when the buffer stops being empty or grows past [`WAKE_AT`], then gathers for up to
//! [`GATHER`] and writes everything waiting with one `write(2)`. At a few thousand lines a second
//! that is one wake-up and one system call per 10 ms instead of a cross-thread wake-up (a futex
//! and two context switches) and a system call per line, which is what a channel-fed writer
//! thread costs — measured as several microseconds of every accepted webhook on two cores.
//!
//! Nothing is dropped: when [`limit`](LogBuffer::with_limit) bytes are waiting (the reader of
//! stderr has stopped reading), the logging thread waits for room. Lines reach stderr at most
//! ~[`GATHER`] after they are logged; [`LogGuard`] writes what is left when it is dropped.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the writer gathers lines after the first one before it writes them.
pub const GATHER: Duration = Duration::from_millis(10);
/// Waiting bytes that wake the writer before its gathering time is up.
pub const WAKE_AT: usize = 64 * 1024;
/// Waiting bytes at which logging threads wait for the writer.
pub const LIMIT: usize = 1024 * 1024;

#[derive(Default)]
struct State {
    waiting: Vec<u8>,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// The writer waits here for lines.
    lines: Condvar,
    /// Logging threads wait here for room.
    room: Condvar,
    limit: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A thread that panicked while holding the lock left whole lines behind (appends are
        // one `extend`): the state is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The writing end: one per logged line (`tracing_subscriber`'s `MakeWriter`), cheap to clone.
#[derive(Clone)]
pub struct LogBuffer {
    shared: Arc<Shared>,
}

/// Stops the writer thread once everything waiting is written; drop it last in `main`.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LogBuffer {
    /// Starts the writer thread for `out` with the default [`LIMIT`].
    pub fn spawn<W: Write + Send + 'static>(out: W) -> (Self, LogGuard) {
        Self::with_limit(out, LIMIT)
    }

    /// As [`spawn`](Self::spawn), with `limit` bytes waiting at most.
    pub fn with_limit<W: Write + Send + 'static>(out: W, limit: usize) -> (Self, LogGuard) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            lines: Condvar::new(),
            room: Condvar::new(),
            limit,
        });
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn({
                let shared = shared.clone();
                move || write_out(&shared, out)
            })
            .expect("a thread for the log writer");
        (
            Self {
                shared: shared.clone(),
            },
            LogGuard {
                shared,
                thread: Some(thread),
            },
        )
    }
}

impl Write for LogBuffer {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let shared = &*self.shared;
        let mut state = shared.lock();
        while state.waiting.len() >= shared.limit && !state.closed {
            state = shared.room.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        let was = state.waiting.len();
        state.waiting.extend_from_slice(line);
        let now = state.waiting.len();
        drop(state);
        if was == 0 || (was < WAKE_AT && now >= WAKE_AT) {
            shared.lines.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn write_out<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::new();
    loop {
        let mut state = shared.lock();
        while state.waiting.is_empty() && !state.closed {
            state = shared.lines.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.waiting.is_empty() {
            return; // closed, and everything written
        }
        let until = Instant::now() + GATHER;
        while state.waiting.len() < WAKE_AT && !state.closed {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = shared
                .lines
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        std::mem::swap(&mut state.waiting, &mut batch);
        drop(state);
        shared.room.notify_all();
        // stderr gone (a closed pipe) is nothing a log line can report; keep consuming so that
        // no logging thread ever waits for room that will not come.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        // Keep the spare buffer small after a burst: idle memory stays idle.
        batch.shrink_to(WAKE_AT);
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.lines.notify_one();
        self.shared.room.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// A sink the test reads, that can be held shut (a reader that stopped reading).
    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
        gate: Arc<Mutex<()>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _open = self.gate.lock().unwrap();
            self.bytes.lock().unwrap().extend_from_slice(buf);
            *self.writes.lock().unwrap() += 1;
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.bytes.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn every_line_of_every_thread_arrives_whole_and_in_its_threads_order() {
        let sink = Sink::default();
        let (buffer, guard) = LogBuffer::spawn(sink.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut buffer = buffer.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        buffer
                            .write_all(
                                format!("thread {t} line {i:05} {}\n", "x".repeat(100)).as_bytes(),
                            )
                            .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(guard);
        let text = sink.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 20_000);
        for t in 0..4 {
            let prefix = format!("thread {t} line ");
            let numbers: Vec<usize> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&prefix))
                .map(|rest| {
                    assert_eq!(rest.len(), 5 + 1 + 100, "a whole line: {rest}");
                    rest[..5].parse().unwrap()
                })
                .collect();
            assert_eq!(numbers, (0..5_000).collect::<Vec<_>>());
        }
        // Gathered: far fewer writes than lines.
        assert!(*sink.writes.lock().unwrap() < 20_000 / 10);
    }

    #[test]
    fn a_line_is_written_without_waiting_for_the_guard() {
        let sink = Sink::default();
        let (mut buffer, _guard) = LogBuffer::spawn(sink.clone());
        buffer.write_all(b"alone\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while sink.text().is_empty() {
            assert!(Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(sink.text(), "alone\n");
    }

    #[test]
    fn a_reader_that_stops_reading_holds_loggers_back_and_loses_nothing() {
        let sink = Sink::default();
        let shut = sink.gate.lock().unwrap();
        let (buffer, guard) = LogBuffer::with_limit(sink.clone(), 1_000);
        let (done, finished) = mpsc::channel();
        let logger = std::thread::spawn({
            let mut buffer = buffer.clone();
            move || {
                for i in 0..300 {
                    buffer.write_all(format!("{i:09}\n").as_bytes()).unwrap();
                }
                done.send(()).unwrap();
            }
        });
        // 1,000 bytes is room for 100 lines of 10 bytes, plus the batch the writer holds:
        // the logger of 300 is still waiting.
        assert!(finished.recv_timeout(Duration::from_millis(300)).is_err());
        drop(shut);
        finished.recv_timeout(Duration::from_secs(10)).unwrap();
        logger.join().unwrap();
        drop(guard);
        let expected: String = (0..300).map(|i| format!("{i:09}\n")).collect();
        assert_eq!(sink.text(), expected);
    }
}
