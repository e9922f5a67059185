//! Memory of signatures already used, for schemes whose signature does not cover the body.
//!
//! Taktikal signs `TimeStamp + Guid`, not the event: a captured signature could carry any body
//! while it is fresh. Each use is remembered with the sha256 of its body until the signature
//! expires; the same signature with the same body is a provider retry and passes, with another
//! body it is a replay and is refused. The memory is per process and bounded (oldest forgotten
//! first); the worker checks across replicas against the database.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

/// What the memory knew of a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not seen before (or forgotten): now remembered.
    First,
    /// Seen with the same body: a retry.
    SameBody,
    /// Seen with a different body: a replay.
    OtherBody,
}

#[derive(Default)]
struct Inner {
    /// Signature key → sha256 of the body it came with.
    entries: HashMap<[u8; 32], [u8; 32]>,
    /// Insertion order, to forget expired and (over capacity) oldest entries.
    order: VecDeque<([u8; 32], SystemTime)>,
}

/// A bounded, thread-safe memory of signature uses. The lock is held for a hash-map look-up only,
/// never across an await.
pub struct ReplayMemory {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl std::fmt::Debug for ReplayMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayMemory")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl ReplayMemory {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    /// Records that signature `key` carried a body with digest `body_sha256`, to be remembered
    /// until `keep_until`, and says whether it was seen before.
    pub fn remember(
        &self,
        key: [u8; 32],
        body_sha256: [u8; 32],
        keep_until: SystemTime,
        now: SystemTime,
    ) -> Seen {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.forget_expired(now);
        if let Some(seen_body) = inner.entries.get(&key) {
            return if *seen_body == body_sha256 {
                Seen::SameBody
            } else {
                Seen::OtherBody
            };
        }
        while inner.entries.len() >= self.capacity {
            let Some((oldest, _)) = inner.order.pop_front() else {
                break;
            };
            inner.entries.remove(&oldest);
        }
        inner.entries.insert(key, body_sha256);
        inner.order.push_back((key, keep_until));
        Seen::First
    }

    /// How many signatures are remembered now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    /// Forgets expired entries at the front. An entry with a later expiry ahead of an earlier one
    /// only delays the latter's forgetting; it is never forgotten early.
    fn forget_expired(&mut self, now: SystemTime) {
        while let Some((key, keep_until)) = self.order.front().copied() {
            if keep_until >= now {
                break;
            }
            self.order.pop_front();
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn same_body_is_a_retry_other_body_a_replay() {
        let memory = ReplayMemory::new(10);
        assert_eq!(memory.remember([1; 32], [7; 32], t(100), t(0)), Seen::First);
        assert_eq!(
            memory.remember([1; 32], [7; 32], t(100), t(1)),
            Seen::SameBody
        );
        assert_eq!(
            memory.remember([1; 32], [8; 32], t(100), t(2)),
            Seen::OtherBody
        );
        assert_eq!(memory.remember([2; 32], [8; 32], t(100), t(3)), Seen::First);
    }

    #[test]
    fn expired_signatures_are_forgotten() {
        let memory = ReplayMemory::new(10);
        memory.remember([1; 32], [7; 32], t(100), t(0));
        assert_eq!(memory.len(), 1);
        assert_eq!(
            memory.remember([2; 32], [7; 32], t(300), t(101)),
            Seen::First
        );
        assert_eq!(memory.len(), 1, "the expired one is gone");
    }

    #[test]
    fn capacity_forgets_the_oldest_first() {
        let memory = ReplayMemory::new(2);
        memory.remember([1; 32], [0; 32], t(100), t(0));
        memory.remember([2; 32], [0; 32], t(100), t(0));
        memory.remember([3; 32], [0; 32], t(100), t(0));
        assert_eq!(memory.len(), 2);
        assert_eq!(
            memory.remember([1; 32], [9; 32], t(100), t(0)),
            Seen::First,
            "oldest was forgotten"
        );
        assert_eq!(
            memory.remember([3; 32], [9; 32], t(100), t(0)),
            Seen::OtherBody,
            "newest kept"
        );
    }
}
