//! openraft's log storage on berth's write-ahead log.
//!
//! Entries are postcard-encoded into WAL records keyed by their index. The
//! vote and the last purged log id (with its term, which the WAL's index-only
//! purge point lacks) are WAL metadata blobs, durable when saved. Appends are
//! acknowledged to openraft (`LogFlushed`) from the WAL's flusher thread,
//! only after the fdatasync that covers them; concurrent appends share one
//! fsync (group commit).

// openraft's trait methods return its large `StorageError` by value; the
// helpers here return what the trait methods return.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogId, RaftLogReader};

use crate::raft::{Entry, LogId, StorageError, TypeConfig, Vote, codec, storage_error};
use crate::wal::{Wal, WalError};

/// Metadata blob holding the vote.
const VOTE: &str = "vote";
/// Metadata blob holding the last purged log id (an encoded `LogId`).
pub const PURGED: &str = "purged";

/// The Raft log of a node.
#[derive(Clone)]
pub struct LogStore {
    wal: Arc<Wal>,
}

impl LogStore {
    pub fn new(wal: Arc<Wal>) -> Self {
        LogStore { wal }
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
        let start = match range.start_bound() {
            Bound::Included(&s) => Bound::Included(s),
            Bound::Excluded(&s) => Bound::Excluded(s),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => Bound::Included(e),
            Bound::Excluded(&e) => Bound::Excluded(e),
            Bound::Unbounded => Bound::Unbounded,
        };
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
        let records = entries
            .into_iter()
            .map(|entry| Ok((entry.log_id.index, codec::encode(&entry)?)))
            .collect::<crate::error::Result<Vec<(u64, Vec<u8>)>>>()
            .map_err(|e| log_error(ErrorVerb::Write, e))?;
        // The callback only sends on a channel: safe on the flusher thread.
        self.wal
            .append(records, move |result| callback.log_io_completed(result))
            .map_err(|e: WalError| log_error(ErrorVerb::Write, e))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tokio::task::block_in_place(|| self.wal.truncate(log_id.index))
            .map_err(|e| log_error(ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The purged id (with its term) is recorded first: the WAL may then
        // drop records up to it at any time.
        self.save_meta(PURGED, &log_id, ErrorSubject::Logs)?;
        tokio::task::block_in_place(|| self.wal.purge(log_id.index))
            .map_err(|e| log_error(ErrorVerb::Delete, e))
    }
}
