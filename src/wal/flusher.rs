//! Group commit: one flusher thread turns "written to the OS" into "durable"
//! and fires the append callbacks, in append order.
//!
//! Protocol (all under `Shared::state`):
//! - The writer, after its write syscalls, registers the append: `written += 1`
//!   and pushes `(written, callback)`; then it wakes the flusher. No timer is
//!   involved: an append on an idle WAL starts an fdatasync immediately.
//! - The flusher snapshots `target = written` and the active segment file,
//!   drops the lock and runs `fdatasync` on that file. Appends arriving while
//!   it runs just queue up; the next round covers all of them with one sync.
//! - On success it sets `synced = target`, wakes barrier waiters, and fires
//!   every callback with `seq <= synced`, in queue (= append) order, outside
//!   the lock, from this single thread.
//! - On failure it poisons the WAL and fails every queued callback, including
//!   ones registered after the sync started: their data can no longer be
//!   made durable by this process.
//!
//! Why syncing only the *active* segment is enough: a segment is fdatasync'ed
//! by the writer before the next one is created (rotation), so any registered
//! append whose bytes live in an older segment is already durable when the
//! flusher snapshots the active file. Truncate and purge run a barrier first.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use super::error::{Result, WalError};

/// The durability callback of one append. Runs on the flusher thread: keep it
/// short and do not call mutating `Wal` methods from it.
pub type Callback = Box<dyn FnOnce(io::Result<()>) + Send + 'static>;

/// Counters, for tests, benchmarks and metrics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub appends: AtomicU64,
    pub records: AtomicU64,
    pub syncs: AtomicU64,
    pub other_fsyncs: AtomicU64,
    pub segments_created: AtomicU64,
}

#[derive(Default)]
pub(crate) struct SyncState {
    /// Sequence number of the last registered (written) append batch.
    pub written: u64,
    /// Every batch with `seq <= synced` is durable.
    pub synced: u64,
    /// Callbacks waiting for durability, in append order.
    pub pending: VecDeque<(u64, Callback)>,
    /// The segment file appends currently go to.
    pub active: Option<Arc<File>>,
    /// Set by `Wal::drop`: finish queued work, then exit.
    pub shutdown: bool,
    /// Test hook: exit at once, dropping queued callbacks, like a crash.
    pub crash: bool,
}

/// State shared between the `Wal` handle and the flusher thread.
#[derive(Default)]
pub(crate) struct Shared {
    pub state: Mutex<SyncState>,
    /// Wakes the flusher.
    pub work: Condvar,
    /// Wakes barrier waiters after `synced` moves or on poison.
    pub done: Condvar,
    pub poison: OnceLock<Arc<str>>,
    pub counters: Counters,
    /// Test hook: make the next group-commit fdatasync fail.
    #[cfg(test)]
    pub fail_next_sync: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// Locks the sync state. The critical sections never call user code and
    /// cannot panic, so a poisoned std mutex still holds consistent data.
    pub fn lock(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn check_poison(&self) -> Result<()> {
        match self.poison.get() {
            Some(why) => Err(WalError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Poisons the WAL (first reason wins), wakes everybody, returns the
    /// error to hand to the caller.
    pub fn poison(&self, reason: String) -> WalError {
        if self.poison.set(Arc::from(reason.as_str())).is_ok() {
            tracing::error!(reason = %reason, "wal: poisoned; further calls fail until reopen");
        }
        let _guard = self.lock();
        self.work.notify_all();
        self.done.notify_all();
        WalError::Poisoned(
            self.poison
                .get()
                .cloned()
                .unwrap_or_else(|| Arc::from(reason.as_str())),
        )
    }

    /// Registers a written batch (or, with `new_batch == false`, a callback that
    /// only needs everything before it to be durable). Called by the writer
    /// with its lock held, which makes the sequence order the append order.
    pub fn register(&self, new_batch: bool, cb: Callback) -> Result<u64> {
        let mut st = self.lock();
        // Checked under the lock: the flusher drains callbacks on poison under
        // the same lock, so a callback is either drained or rejected here.
        self.check_poison()?;
        if new_batch {
            st.written += 1;
        }
        let seq = st.written;
        st.pending.push_back((seq, cb));
        self.work.notify_one();
        Ok(seq)
    }

    /// Current written sequence number (a barrier target).
    pub fn written(&self) -> u64 {
        self.lock().written
    }

    /// Blocks until every batch with `seq <= target` is durable.
    /// Must not be called from a callback (it runs on the flusher thread).
    pub fn wait_synced(&self, target: u64) -> Result<()> {
        let mut st = self.lock();
        loop {
            self.check_poison()?;
            if st.synced >= target {
                return Ok(());
            }
            if st.crash {
                return Err(WalError::Poisoned(Arc::from("wal flusher stopped")));
            }
            self.work.notify_one();
            st = self.done.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }

    pub fn set_active(&self, file: Option<Arc<File>>) {
        self.lock().active = file;
    }
}

enum Work {
    Sync {
        target: u64,
        file: Option<Arc<File>>,
    },
    Fire(Vec<Callback>),
    Fail(Vec<Callback>, Arc<str>),
    Exit,
}

fn next_work(shared: &Shared) -> Work {
    let mut st = shared.lock();
    loop {
        if st.crash {
            return Work::Exit;
        }
        if let Some(why) = shared.poison.get() {
            if !st.pending.is_empty() {
                let cbs = st.pending.drain(..).map(|(_, cb)| cb).collect();
                return Work::Fail(cbs, why.clone());
            }
            if st.shutdown {
                return Work::Exit;
            }
        } else {
            if st.pending.front().is_some_and(|(seq, _)| *seq <= st.synced) {
                let mut cbs = Vec::new();
                while st.pending.front().is_some_and(|(seq, _)| *seq <= st.synced) {
                    if let Some((_, cb)) = st.pending.pop_front() {
                        cbs.push(cb);
                    }
                }
                return Work::Fire(cbs);
            }
            if st.written > st.synced {
                return Work::Sync {
                    target: st.written,
                    file: st.active.clone(),
                };
            }
            if st.shutdown {
                return Work::Exit;
            }
        }
        st = shared.work.wait(st).unwrap_or_else(PoisonError::into_inner);
    }
}

fn fire(cbs: Vec<Callback>, result: impl Fn() -> io::Result<()>) {
    for cb in cbs {
        let r = result();
        // A panicking callback must not kill the flusher: every later append
        // would then wait for ever.
        if catch_unwind(AssertUnwindSafe(move || cb(r))).is_err() {
            tracing::error!("wal: a durability callback panicked; ignoring");
        }
    }
}

/// Body of the flusher thread.
pub(crate) fn run(shared: Arc<Shared>) {
    loop {
        match next_work(&shared) {
            Work::Exit => return,
            Work::Fire(cbs) => fire(cbs, || Ok(())),
            Work::Fail(cbs, why) => fire(cbs, || {
                Err(io::Error::from(WalError::Poisoned(why.clone())))
            }),
            Work::Sync { target, file } => {
                let r = match &file {
                    Some(f) => f.sync_data(),
                    None => Ok(()),
                };
                #[cfg(test)]
                let r = if shared.fail_next_sync.swap(false, Ordering::SeqCst) {
                    Err(io::Error::other("injected fdatasync failure"))
                } else {
                    r
                };
                shared.counters.syncs.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(()) => {
                        let mut st = shared.lock();
                        st.synced = st.synced.max(target);
                        shared.done.notify_all();
                    }
                    Err(e) => {
                        shared.poison(format!("fdatasync of the active segment failed: {e}"));
                    }
                }
            }
        }
    }
}
