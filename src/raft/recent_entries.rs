//! The newest log entries, kept decoded in memory.
//!
//! openraft reads back every entry it appends: the state machine applies it
//! from the log, and on the leader each follower's replication stream reads
//! it again to send it. From the WAL, each of those reads is a `pread`, a
//! copy and a full decode of the entry's commands, three times per entry on
//! the leader. Entries whose payload is shared (`Batch` holds its commands
//! behind an `Arc`) can instead be handed out of memory for the cost of a
//! reference count. The cache holds a contiguous run of the newest entries
//! up to a byte budget; any read it cannot serve whole goes to the WAL, so
//! it never changes what a read returns, only where it comes from.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::raft::Entry;

/// Encoded bytes of entries kept by default: at a few tens of KiB per
/// batched entry, the last few hundred entries, far more than a healthy
/// follower lags behind.
pub const DEFAULT_BUDGET_BYTES: usize = 8 * 1024 * 1024;

/// A shared, bounded run of the newest log entries (clones share it).
#[derive(Clone)]
pub struct RecentEntries {
    inner: Arc<Mutex<Run>>,
}

/// Consecutive entries, oldest first, with their encoded sizes.
struct Run {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
    budget: usize,
}

impl Run {
    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    fn push_back(&mut self, entry: Entry, size: usize) {
        self.bytes += size;
        self.entries.push_back((entry, size));
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }

    fn pop_back(&mut self) {
        if let Some((_, size)) = self.entries.pop_back() {
            self.bytes -= size;
        }
    }

    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.log_id.index)
    }
}

impl RecentEntries {
    /// An empty cache that keeps up to `budget` encoded bytes (and always
    /// at least the newest entry).
    pub fn new(budget: usize) -> Self {
        RecentEntries {
            inner: Arc::new(Mutex::new(Run {
                entries: VecDeque::new(),
                bytes: 0,
                budget,
            })),
        }
    }

    fn run(&self) -> MutexGuard<'_, Run> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records entries just appended to the log, with their encoded sizes.
    /// An append that does not continue the run (the log was reset by a
    /// snapshot, say) starts a new one.
    pub fn appended(&self, appended: impl IntoIterator<Item = (Entry, usize)>) {
        let mut run = self.run();
        for (entry, size) in appended {
            if run
                .last_index()
                .is_some_and(|last| last + 1 != entry.log_id.index)
            {
                run.clear();
            }
            run.push_back(entry, size);
        }
        while run.bytes > run.budget && run.entries.len() > 1 {
            run.pop_front();
        }
    }

    /// Forgets entries from `index` on (the log was truncated there).
    pub fn truncated(&self, index: u64) {
        let mut run = self.run();
        while run.last_index().is_some_and(|last| last >= index) {
            run.pop_back();
        }
    }

    /// Forgets entries up to and including `index` (the log was purged).
    pub fn purged(&self, index: u64) {
        let mut run = self.run();
        while run.first_index().is_some_and(|first| first <= index) {
            run.pop_front();
        }
    }

    /// The entries `start..end` (`end` exclusive; `None`: through the newest
    /// entry), if the cache holds every one of them; `None` sends the
    /// caller to the WAL.
    pub fn get(&self, start: u64, end: Option<u64>) -> Option<Vec<Entry>> {
        let run = self.run();
        let first = run.first_index()?;
        let next = run.last_index()? + 1;
        let end = end.unwrap_or(next);
        if start < first || end > next {
            return None;
        }
        if start >= end {
            return Some(Vec::new());
        }
        let skip = usize::try_from(start - first).ok()?;
        let take = usize::try_from(end - start).ok()?;
        Some(
            run.entries
                .iter()
                .skip(skip)
                .take(take)
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }

    /// How many entries are held (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.run().entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::raft::LogId;

    fn entry(term: u64, index: u64) -> (Entry, usize) {
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        };
        (entry, 100)
    }

    fn indexes(entries: &[Entry]) -> Vec<(u64, u64)> {
        entries
            .iter()
            .map(|e| (e.log_id.leader_id.term, e.log_id.index))
            .collect()
    }

    #[test]
    fn serves_only_ranges_it_holds_whole() {
        let cache = RecentEntries::new(1_000);
        cache.appended((5..=9).map(|i| entry(1, i)));
        assert_eq!(indexes(&cache.get(6, Some(8)).unwrap()), [(1, 6), (1, 7)]);
        assert_eq!(indexes(&cache.get(8, None).unwrap()), [(1, 8), (1, 9)]);
        assert_eq!(cache.get(10, None).unwrap(), []);
        assert!(cache.get(4, Some(6)).is_none(), "starts before the run");
        assert!(cache.get(8, Some(11)).is_none(), "ends after the run");
    }

    #[test]
    fn keeps_the_newest_entries_within_its_budget() {
        let cache = RecentEntries::new(350);
        cache.appended((1..=10).map(|i| entry(1, i)));
        assert_eq!(cache.len(), 3);
        assert_eq!(
            indexes(&cache.get(8, None).unwrap()),
            [(1, 8), (1, 9), (1, 10)]
        );
        assert!(cache.get(7, None).is_none());
        // An entry larger than the whole budget is still kept alone.
        cache.appended([(entry(1, 11).0, 10_000)]);
        assert_eq!(indexes(&cache.get(11, None).unwrap()), [(1, 11)]);
    }

    #[test]
    fn truncation_and_purge_drop_exactly_their_entries() {
        let cache = RecentEntries::new(10_000);
        cache.appended((1..=6).map(|i| entry(1, i)));
        cache.truncated(4);
        cache.appended((4..=5).map(|i| entry(2, i)));
        assert_eq!(
            indexes(&cache.get(3, None).unwrap()),
            [(1, 3), (2, 4), (2, 5)],
            "a truncated suffix must never be served again"
        );
        cache.purged(3);
        assert!(cache.get(3, None).is_none());
        assert_eq!(indexes(&cache.get(4, None).unwrap()), [(2, 4), (2, 5)]);
    }

    #[test]
    fn an_append_that_skips_ahead_starts_a_new_run() {
        let cache = RecentEntries::new(10_000);
        cache.appended((1..=3).map(|i| entry(1, i)));
        cache.appended([entry(3, 100)]);
        assert!(cache.get(3, Some(4)).is_none());
        assert_eq!(indexes(&cache.get(100, None).unwrap()), [(3, 100)]);
        cache.truncated(0);
        assert!(cache.is_empty());
    }
}
