//! At most a few log lines per second for each kind of refused request.
//!
//! Refusals are what an unauthenticated client can cause at will: without a limit, 32 to 40
//! connections pipelining requests wrote 52–60 MB of log lines in under a minute. Each kind
//! (the outcome label: `bad_signature`, `unknown_source`, `over_budget`, …) may log
//! [`LINES_PER_SECOND`] lines a second; the rest are counted, and the first line of a later
//! second says how many of that kind were left out. Metrics count every request regardless.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Lines a second for each kind.
pub const LINES_PER_SECOND: u32 = 10;

/// Per-kind counters for the current second.
pub struct LogLimit {
    kinds: Mutex<HashMap<&'static str, Window>>,
    /// The clock's zero, for whole seconds.
    start: Instant,
}

#[derive(Default, Clone, Copy)]
struct Window {
    second: u64,
    logged: u32,
    suppressed: u64,
}

/// Whether to log a line, and how many of its kind were left out before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `suppressed` lines of its kind were left out since the last one logged.
    Log { suppressed: u64 },
    /// Leave it out (counted).
    Skip,
}

impl Default for LogLimit {
    fn default() -> Self {
        Self::new()
    }
}

impl LogLimit {
    pub fn new() -> Self {
        Self {
            kinds: Mutex::default(),
            start: Instant::now(),
        }
    }

    /// The verdict for a line of `kind` now.
    pub fn check(&self, kind: &'static str) -> Verdict {
        let second = self.start.elapsed().as_secs();
        self.check_at(kind, second)
    }

    fn check_at(&self, kind: &'static str, second: u64) -> Verdict {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        let window = kinds.entry(kind).or_default();
        if window.second != second {
            window.second = second;
            window.logged = 0;
        }
        if window.logged < LINES_PER_SECOND {
            window.logged += 1;
            let suppressed = std::mem::take(&mut window.suppressed);
            Verdict::Log { suppressed }
        } else {
            window.suppressed += 1;
            Verdict::Skip
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_a_second_per_kind_then_the_count_of_what_was_left_out() {
        let limit = LogLimit::new();
        for _ in 0..LINES_PER_SECOND {
            assert_eq!(
                limit.check_at("bad_signature", 7),
                Verdict::Log { suppressed: 0 }
            );
        }
        for _ in 0..25 {
            assert_eq!(limit.check_at("bad_signature", 7), Verdict::Skip);
        }
        // Another kind has its own allowance.
        assert_eq!(
            limit.check_at("unknown_source", 7),
            Verdict::Log { suppressed: 0 }
        );
        // The next second's first line says what was left out.
        assert_eq!(
            limit.check_at("bad_signature", 8),
            Verdict::Log { suppressed: 25 }
        );
        assert_eq!(
            limit.check_at("bad_signature", 8),
            Verdict::Log { suppressed: 0 }
        );
    }
}
