//! openraft's log storage on berth's write-ahead log.
//!
//! Entries are postcard-encoded into WAL records keyed by their index. The
//! vote and the last purged log id (with its term, which the WAL's index-only
//! purge point lacks) are WAL metadata blobs, durable when saved. Appends are
//! acknowledged to openraft (`LogFlushed`) from the WAL's flusher thread,
//! only after the fdatasync that covers them; concurrent appends share one
//! fsync (group commit). The newest entries are also kept decoded
//! ([`RecentEntries`]), and reads are served from there when they can be.

// openraft's trait methods return its large `StorageError` by value; the
// helpers here return what the trait methods return.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogId, RaftLogReader};

use crate::raft::recent_entries::{self, RecentEntries};
use crate::raft::{Entry, LogId, StorageError, TypeConfig, Vote, codec, storage_error};
use crate::wal::{Wal, WalError};

/// Metadata blob holding the vote.
const VOTE: &str = "vote";
/// Metadata blob holding the last purged log id (an encoded `LogId`).
pub const PURGED: &str = "purged";

/// The Raft log of a node. Clones (openraft's log readers) share the WAL
/// and the cache of recent entries.
#[derive(Clone)]
pub struct LogStore {
    wal: Arc<Wal>,
    /// The newest entries, decoded: most reads are served from here.
    recent: RecentEntries,
}

impl LogStore {
    pub fn new(wal: Arc<Wal>) -> Self {
        Self::with_cache_budget(wal, recent_entries::DEFAULT_BUDGET_BYTES)
    }

    /// A log store whose cache of recent entries keeps up to `budget`
    /// encoded bytes.
    pub fn with_cache_budget(wal: Arc<Wal>, budget: usize) -> Self {
        LogStore {
            wal,
            recent: RecentEntries::new(budget),
        }
    }

    /// Forgets that this node won its last election, before Raft starts, so
    /// that a restarted leader campaigns for a new term instead of resuming
    /// the old one. Returns the vote it demoted, if any.
    ///
    /// openraft 0.9 restarts a node whose saved vote is committed for itself
    /// straight into leadership of that term, with no new blank entry and a
    /// commit index only as far as its state machine had applied; its read
    /// index is then the larger of that and the term's first entry. Entries
    /// it committed, and writes it acknowledged, shortly before the crash
    /// can lie above both (the store's last applies are only in sled's
    /// buffers until it flushes), so a linearizable read could miss them.
    /// A leader elected anew commits a blank entry of its new term first,
    /// and reads wait for it. Dropping the mark is safe: the vote keeps its
    /// term and candidate, so this node still grants no other vote in that
    /// term; it costs one election when a leader restarts.
    ///
    /// Blocking (a durable metadata write); needs a multi-threaded Tokio
    /// runtime when called from async code.
    pub fn forget_leadership(&self, id: u64) -> Result<Option<Vote>, StorageError> {
        let Some(vote) = self.read_meta::<Vote>(VOTE, ErrorSubject::Vote)? else {
            return Ok(None);
        };
        if !vote.is_committed() || vote.leader_id().voted_for() != Some(id) {
            return Ok(None);
        }
        let demoted = Vote::new(vote.leader_id().term, id);
        self.save_meta(VOTE, &demoted, ErrorSubject::Vote)?;
        Ok(Some(vote))
    }

    /// Encodes and appends `entries` to the WAL; `on_durable` runs on the
    /// WAL's flusher thread once they are fsynced (or could not be).
    fn append_entries(
        &self,
        entries: impl IntoIterator<Item = Entry>,
        on_durable: impl FnOnce(std::io::Result<()>) + Send + 'static,
    ) -> Result<(), StorageError> {
        let mut appended = Vec::new();
        let mut records = Vec::new();
        for entry in entries {
            let bytes = codec::encode(&entry).map_err(|e| log_error(ErrorVerb::Write, e))?;
            appended.push((entry.clone(), bytes.len()));
            records.push((entry.log_id.index, bytes));
        }
        self.wal
            .append(records, on_durable)
            .map_err(|e: WalError| log_error(ErrorVerb::Write, e))?;
        // Readable from the WAL from here on, so from the cache too.
        self.recent.appended(appended);
        Ok(())
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        subject: ErrorSubject<u64>,
    ) -> Result<Option<T>, StorageError> {
        let bytes = self
            .wal
            .read_meta(name)
            .map_err(|e| storage_error(subject.clone(), ErrorVerb::Read, e))?;
        bytes
            .map(|b| codec::decode(&b))
            .transpose()
            .map_err(|e| storage_error(subject, ErrorVerb::Read, e))
    }

    fn save_meta<T: serde::Serialize>(
        &self,
        name: &str,
        value: &T,
        subject: ErrorSubject<u64>,
    ) -> Result<(), StorageError> {
        let bytes = codec::encode(value)
            .map_err(|e| storage_error(subject.clone(), ErrorVerb::Write, e))?;
        tokio::task::block_in_place(|| self.wal.save_meta(name, &bytes))
            .map_err(|e| storage_error(subject, ErrorVerb::Write, e))
    }
}

fn log_error(verb: ErrorVerb, err: impl std::fmt::Display) -> StorageError {
    storage_error(ErrorSubject::Logs, verb, err)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + openraft::OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = (range.start_bound().cloned(), range.end_bound().cloned());
        let first = match start {
            Bound::Included(s) => Some(s),
            Bound::Excluded(s) => s.checked_add(1),
            Bound::Unbounded => None,
        };
        let past_end = match end {
            Bound::Included(e) => e.checked_add(1),
            Bound::Excluded(e) => Some(e),
            Bound::Unbounded => None,
        };
        if let Some(first) = first
            && let Some(entries) = self.recent.get(first, past_end)
        {
            return Ok(entries);
        }
        let records = self
            .wal
            .entries((start, end))
            .map_err(|e| log_error(ErrorVerb::Read, e))?;
        records
            .iter()
            .map(|(_, bytes)| {
                codec::decode::<Entry>(bytes).map_err(|e| log_error(ErrorVerb::Read, e))
            })
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(PURGED, ErrorSubject::Logs)?;
        let last_log_id = match self.wal.last_index() {
            Some(index) => {
                let bytes = self
                    .wal
                    .entry(index)
                    .map_err(|e| log_error(ErrorVerb::Read, e))?
                    .ok_or_else(|| {
                        log_error(ErrorVerb::Read, format!("last entry {index} vanished"))
                    })?;
                Some(
                    *codec::decode::<Entry>(&bytes)
                        .map_err(|e| log_error(ErrorVerb::Read, e))?
                        .get_log_id(),
                )
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.save_meta(VOTE, vote, ErrorSubject::Vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(VOTE, ErrorSubject::Vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        // The callback only sends on a channel: safe on the flusher thread.
        self.append_entries(entries, move |result| callback.log_io_completed(result))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Dropped from the cache first: a reader that misses it goes to the
        // WAL, which serves the truncated entries only until they are gone.
        self.recent.truncated(log_id.index);
        tokio::task::block_in_place(|| self.wal.truncate(log_id.index))
            .map_err(|e| log_error(ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The purged id (with its term) is recorded first: the WAL may then
        // drop records up to it at any time.
        self.save_meta(PURGED, &log_id, ErrorSubject::Logs)?;
        self.recent.purged(log_id.index);
        tokio::task::block_in_place(|| self.wal.purge(log_id.index))
            .map_err(|e| log_error(ErrorVerb::Delete, e))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::wal::WalOptions;

    fn blank(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn terms(entries: &[Entry]) -> Vec<(u64, u64)> {
        entries
            .iter()
            .map(|e| (e.log_id.leader_id.term, e.log_id.index))
            .collect()
    }

    /// Whatever the cache's size, reads return exactly what the log holds
    /// after appends, a truncation and a purge: with a cache that holds
    /// everything, one that holds two entries, and one that holds one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_match_the_log_through_truncation_and_purge() {
        let entry_bytes = codec::encode(&blank(2, 5)).unwrap().len();
        for budget in [usize::MAX, 2 * entry_bytes, 1] {
            let dir = tempfile::tempdir().unwrap();
            let wal = Arc::new(Wal::open(dir.path(), WalOptions::default()).unwrap());
            let mut log = LogStore::with_cache_budget(wal, budget);
            log.append_entries((1..=6).map(|i| blank(1, i)), |_| {})
                .unwrap();
            log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 4))
                .await
                .unwrap();
            assert_eq!(
                terms(&log.try_get_log_entries(3..).await.unwrap()),
                [(1, 3)],
                "budget {budget}: truncated entries are still served"
            );
            log.append_entries((4..=5).map(|i| blank(2, i)), |_| {})
                .unwrap();
            assert_eq!(
                terms(&log.try_get_log_entries(3..6).await.unwrap()),
                [(1, 3), (2, 4), (2, 5)],
                "budget {budget}: the truncated entries came back"
            );
            assert_eq!(
                terms(&log.try_get_log_entries(5..).await.unwrap()),
                [(2, 5)],
                "budget {budget}"
            );
            log.purge(LogId::new(CommittedLeaderId::new(2, 1), 4))
                .await
                .unwrap();
            assert_eq!(
                terms(&log.try_get_log_entries(5..=5).await.unwrap()),
                [(2, 5)],
                "budget {budget}"
            );
            assert!(
                log.try_get_log_entries(3..=4).await.unwrap().is_empty(),
                "budget {budget}: purged entries are still served"
            );
        }
    }
}
