//! The Raft state machine: committed entries are applied to the sled
//! [`Store`] in log order, together with the last applied log id and the
//! membership, in one transaction per batch; snapshots are built from and
//! installed into the same store.
//!
//! Invariants:
//! - the store's `applied` meta is the id of the last entry whose effects it
//!   holds, written atomically with those effects: a restart never applies an
//!   entry twice or half;
//! - the store is flushed durably before a snapshot is reported built, so the
//!   log is never purged past what the store durably holds;
//! - a snapshot install first makes the snapshot file durable, then marks
//!   the store as restoring; an interrupted install is redone from the file
//!   when the node starts.

use std::io::BufReader;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, Snapshot};

use crate::error::Error;
use crate::events::{Event, EventBus};
use crate::raft::snapshot::{self, Committed, SnapshotDir, SnapshotFile, SnapshotReader};
use crate::raft::{
    Entry, LogId, Response, SnapshotMeta, StorageError, StoredMembership, TypeConfig, codec,
    storage_error,
};
use crate::store::Store;
use crate::store::capture::Capture;
use crate::store::command::Command;

/// `sm_meta` key of the last applied log id (an encoded `Option<LogId>`).
pub const APPLIED_KEY: &[u8] = b"applied";
/// `sm_meta` key of the last applied membership.
const MEMBERSHIP_KEY: &[u8] = b"membership";

/// berth's openraft state machine.
pub struct StateMachine {
    store: Arc<Store>,
    events: EventBus,
    snapshots: Arc<SnapshotDir>,
    applied: Option<LogId>,
    membership: StoredMembership,
}

impl StateMachine {
    /// Opens the state machine over `store`, finishing an interrupted
    /// snapshot install and catching the store up with the current snapshot
    /// if it is behind it (e.g. its last writes were lost in a crash after
    /// the log was purged).
    pub fn open(
        store: Arc<Store>,
        snapshots: Arc<SnapshotDir>,
        events: EventBus,
    ) -> crate::error::Result<Self> {
        let mut sm = StateMachine {
            store,
            events,
            snapshots,
            applied: None,
            membership: Default::default(),
        };
        sm.load_applied_state()?;
        let interrupted = sm.store.interrupted_restore()?.is_some();
        if let Some((meta, _, _)) = sm.snapshots.open_current()? {
            if interrupted
                || sm.applied.as_ref().map(|l| l.index) < meta.last_log_id.as_ref().map(|l| l.index)
            {
                tracing::warn!(
                    snapshot = %meta.snapshot_id,
                    interrupted,
                    "the store is behind its snapshot; restoring it from the snapshot"
                );
                sm.restore_current()?;
            }
        } else if interrupted {
            return Err(Error::Internal(
                "the store was being restored from a snapshot that is gone; restore the data dir from a backup".into(),
            ));
        }
        Ok(sm)
    }

    fn load_applied_state(&mut self) -> crate::error::Result<()> {
        // Stored as an `Option<LogId>` (what `apply` and `install_image` write).
        self.applied = self
            .store
            .meta(APPLIED_KEY)?
            .map(|v| codec::decode::<Option<LogId>>(&v))
            .transpose()?
            .flatten();
        self.membership = self
            .store
            .meta(MEMBERSHIP_KEY)?
            .map(|v| codec::decode(&v))
            .transpose()?
            .unwrap_or_default();
        Ok(())
    }

    /// Replaces the store's data with the current snapshot's.
    fn restore_current(&mut self) -> crate::error::Result<()> {
        let Some((meta, _, mut file)) = self.snapshots.open_current()? else {
            return Err(Error::Internal("no current snapshot to restore".into()));
        };
        snapshot::verify(&mut file)?;
        let (_, records) = SnapshotReader::open(BufReader::new(file))?;
        install_image(&self.store, &meta, records)?;
        self.load_applied_state()
    }

    /// The store this state machine applies to.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

/// Replaces the store's data with `records`, recording the log position and
/// membership of `meta` as applied: what installing a snapshot, and
/// restoring a backup, do to a store.
pub fn install_image(
    store: &Store,
    meta: &SnapshotMeta,
    records: impl IntoIterator<Item = crate::error::Result<crate::store::image::ImageRecord>>,
) -> crate::error::Result<()> {
    let applied = codec::encode(&meta.last_log_id)?;
    let membership = codec::encode(&meta.last_membership)?;
    store.restore(
        meta.snapshot_id.as_bytes(),
        records,
        &[(APPLIED_KEY, &applied), (MEMBERSHIP_KEY, &membership)],
    )
}

fn sm_error(verb: ErrorVerb, err: impl std::fmt::Display) -> StorageError {
    storage_error(ErrorSubject::StateMachine, verb, err)
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.applied, self.membership.clone()))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(Vec::new());
        };
        let mut membership = None;
        let mut commands: Vec<&Command> = Vec::new();
        for entry in &entries {
            match &entry.payload {
                EntryPayload::Normal(batch) => commands.extend(batch.commands.iter()),
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()))
                }
                EntryPayload::Blank => {}
            }
        }
        let applied_bytes =
            codec::encode(&Some(last)).map_err(|e| sm_error(ErrorVerb::Write, e))?;
        let membership_bytes = membership
            .as_ref()
            .map(codec::encode)
            .transpose()
            .map_err(|e| sm_error(ErrorVerb::Write, e))?;
        let mut meta: Vec<(&[u8], &[u8])> = vec![(APPLIED_KEY, &applied_bytes)];
        if let Some(bytes) = &membership_bytes {
            meta.push((MEMBERSHIP_KEY, bytes));
        }
        let store = &self.store;
        let started = std::time::Instant::now();
        // Inline, not `block_in_place`: an apply is CPU work of well under
        // a millisecond (sled writes its log on its own threads), and
        // handing the worker to another thread for each one cost more
        // context switches than the apply itself.
        let mut outcomes = store
            .apply(&commands, &meta)
            .map_err(|e| sm_error(ErrorVerb::Write, e))?
            .into_iter();
        tracing::trace!(
            entries = entries.len(),
            commands = commands.len(),
            micros = started.elapsed().as_micros() as u64,
            "applied"
        );
        self.applied = Some(last);
        if let Some(m) = membership {
            self.membership = m;
        }
        let mut responses = Vec::with_capacity(entries.len());
        for entry in &entries {
            match &entry.payload {
                EntryPayload::Normal(batch) => {
                    let mut batch_outcomes = Vec::with_capacity(batch.commands.len());
                    for command in batch.commands.iter() {
                        let outcome = outcomes.next().ok_or_else(|| {
                            sm_error(ErrorVerb::Write, "the store returned too few outcomes")
                        })?;
                        if let Ok(applied) = &outcome
                            && let Some(event) = Event::of(command, applied)
                        {
                            self.events.publish(event);
                        }
                        batch_outcomes.push(outcome);
                    }
                    responses.push(Response::Applied(batch_outcomes));
                }
                _ => responses.push(Response::Nothing),
            }
        }
        Ok(responses)
    }

    /// Called serially with `apply`: marks the capture point of the image
    /// (see `store::capture`); the image is read and written out later, in
    /// `build_snapshot`, while applies go on.
    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id: snapshot_id(self.applied.as_ref()),
        };
        SnapshotBuilder {
            meta,
            capture: self.store.begin_capture().map(Some),
            snapshots: self.snapshots.clone(),
            store: self.store.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        let (path, file) = self
            .snapshots
            .create_temp()
            .map_err(|e| sm_error(ErrorVerb::Write, e))?;
        Ok(Box::new(SnapshotFile::new(path, file)))
    }

    #[tracing::instrument(level = "info", skip_all, fields(snapshot = %meta.snapshot_id))]
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        let snapshot_error = |e| {
            storage_error(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                e,
            )
        };
        let (temp, mut file) = snapshot.into_std().await;
        let (file_meta, count) =
            tokio::task::block_in_place(|| snapshot::verify(&mut file)).map_err(snapshot_error)?;
        if file_meta.last_log_id != meta.last_log_id {
            return Err(snapshot_error(Error::InvalidArgument(format!(
                "received snapshot holds {:?}, Raft announced {:?}",
                file_meta.last_log_id, meta.last_log_id
            ))));
        }
        drop(file);
        tokio::task::block_in_place(|| -> crate::error::Result<()> {
            self.snapshots.commit(&temp, meta)?;
            self.restore_current()
        })
        .map_err(snapshot_error)?;
        tracing::info!(records = count, last_log_id = ?meta.last_log_id, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = self
            .snapshots
            .open_current()
            .map_err(|e| sm_error(ErrorVerb::Read, e))?;
        Ok(current.map(|(meta, path, file)| Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile::new(path, file)),
        }))
    }
}

/// A snapshot id unique per node: the log position plus a random suffix.
fn snapshot_id(applied: Option<&LogId>) -> String {
    let (term, index) = applied
        .map(|l| (l.leader_id.term, l.index))
        .unwrap_or_default();
    format!("{term}-{index}-{:08x}", rand::random::<u32>())
}

/// Writes out the image whose capture `get_snapshot_builder` began.
pub struct SnapshotBuilder {
    meta: SnapshotMeta,
    /// Taken by `build_snapshot`.
    capture: crate::error::Result<Option<Capture>>,
    snapshots: Arc<SnapshotDir>,
    store: Arc<Store>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    #[tracing::instrument(level = "info", skip_all, fields(snapshot = %self.meta.snapshot_id))]
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let build_error = |e| storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e);
        let capture = match &mut self.capture {
            Ok(capture) => capture.take().ok_or_else(|| {
                build_error(Error::Internal("the snapshot was already built".into()))
            })?,
            Err(e) => return Err(build_error(e.clone())),
        };
        let (snapshots, store, meta) = (
            self.snapshots.clone(),
            self.store.clone(),
            self.meta.clone(),
        );
        let started = std::time::Instant::now();
        let committed = tokio::task::spawn_blocking(move || -> crate::error::Result<_> {
            let (temp, mut file) = snapshots.create_temp()?;
            snapshot::write_snapshot(&mut file, &meta, capture.records())?;
            drop(capture);
            // The store must durably hold what the snapshot holds before the
            // log is purged up to it.
            store.flush_durably()?;
            snapshots.commit_built(&temp, &meta)
        })
        .await
        .map_err(|e| build_error(Error::Internal(e.to_string())))?
        .map_err(build_error)?;
        let (path, file) = match committed {
            Committed::Built(path, file) => (path, file),
            Committed::Superseded(meta, path, file) => {
                // A newer snapshot was installed meanwhile: report that one,
                // which openraft already has, so nothing moves backwards.
                tracing::info!(
                    "a newer snapshot was installed during the build; discarded this one"
                );
                return Ok(Snapshot {
                    meta,
                    snapshot: Box::new(SnapshotFile::new(path, file)),
                });
            }
        };
        tracing::info!(
            millis = started.elapsed().as_millis() as u64,
            "snapshot image written"
        );
        tracing::info!(last_log_id = ?self.meta.last_log_id, "built snapshot");
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(SnapshotFile::new(path, file)),
        })
    }
}
