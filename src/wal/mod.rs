//! A purpose-built, durable write-ahead log for the Raft log: `index -> bytes`
//! records with contiguous `u64` indexes, group commit, and a small store of
//! durable metadata blobs. It knows nothing about openraft; an adapter
//! implements `RaftLogStorage` on top of [`Wal`].
//!
//! # What a caller gets
//!
//! - [`Wal::append`] writes a batch to the OS (write syscalls done) before it
//!   returns, so the records are readable at once; its callback fires with
//!   `Ok(())` only after an `fdatasync` covering them (and, if the batch or an
//!   earlier one rolled into a new segment, after the old segment's fsync and
//!   the directory fsync for the new file). Callbacks fire in append order,
//!   from the flusher thread.
//! - [`Wal::truncate`], [`Wal::purge`] and [`Wal::save_meta`] are durable when
//!   they return, and first wait until every earlier append is durable, so
//!   write IO takes effect in the order it was issued: whatever survives a
//!   crash is a prefix of the issued operations.
//! - Reads ([`Wal::entries`], [`Wal::entry`], [`Wal::bounds`], …) run
//!   concurrently with appends from any thread; `Wal` is `Send + Sync`, share
//!   it as `Arc<Wal>`.
//!
//! ## Append rule
//!
//! A batch carries consecutive indexes. If the log holds live records, the
//! batch must start at `last_index + 1`. If it holds none (fresh, truncated to
//! empty, or purged up to or beyond its end), the batch may start at any index
//! at any index; in particular `purge(upto)` followed by an append at
//! `upto + 1` always works, which is what openraft does after installing a
//! snapshot.
//!
//! The log always starts at its *floor*: `purge point + 1`, or 0 if never
//! purged. So an append to an empty log above the floor first moves the purge
//! point durably to `index - 1` (a fresh log whose first append is at 42
//! reports `purged_index() == Some(41)`; openraft starts at 0 and never hits
//! this). That lets recovery check that nothing is missing at the start of
//! the log, e.g. a lost first segment. An append to an empty log at or below
//! the purge point lowers the purge point to `index - 1`, after removing the
//! old segments, so nothing purged can reappear (openraft's storage suite
//! does this; a running Raft node does not).
//!
//! # On-disk format (version 1)
//!
//! One directory per log:
//!
//! ```text
//! 00000000000000000001.wal   segment whose first record is index 1
//! 00000000000000004711.wal   next segment (first index 4711)
//! wal-purge-point            durable purge point (meta framing, u64 LE payload)
//! meta-<name>                user metadata blobs (vote, committed, …)
//! *.tmp                      leftovers of an interrupted metadata write: deleted at open
//! ```
//!
//! A segment is a 32-byte header (magic `BERTHWAL`, format version `u32 = 1`,
//! flags, first index, CRC of the header) followed by frames
//! `[len u32][crc32 u32][index u64][data]`, all little-endian, where
//! `len = 8 + data.len()` and the CRC covers `len` and the payload. There is no
//! padding between frames. The active segment is *preallocated*: zero-filled
//! ahead of the write offset ([`WalOptions::preallocate_bytes`] at a time),
//! so the file length is not the end of the log; the log ends at the first
//! frame position from which the rest of the file is all zeros (a frame
//! never starts with a zero length). Why: an fdatasync after an append that
//! grew the file must also commit the new size through the filesystem
//! journal (on ext4, one journal commit per fsync, which waits behind
//! everybody else's dirty data); writing into blocks that are already
//! allocated and initialised needs no metadata, so the group-commit fsync
//! is only the data pages and a cache flush (measured here under load: p50
//! ~0.33–0.48 ms instead of ~0.6–0.7 ms). Zeros, not `fallocate`: fallocated
//! blocks are "unwritten" extents, and the first write into them is again a
//! metadata change. A segment being rotated out is trimmed to its last frame
//! before its final fsync.
//! Segments roll over when the next frame would push the end of their frames past
//! [`WalOptions::segment_bytes`] (a segment always takes at least one record,
//! so a record larger than that gets a segment of its own). Metadata files are
//! `[magic BERTHMTA][version u32][len u32][crc32 u32][payload]`.
//! See `segment.rs`, `record.rs` and `meta.rs` for byte-level details.
//!
//! # Read path
//!
//! An in-memory offset index (`index.rs`: per segment, the offset and length of
//! every frame; 16 bytes per record) plus `pread` on the segment files. A range
//! read takes the index read lock, coalesces the frames that are adjacent in one
//! segment into one `pread` (capped at about 1 MiB), verifies each frame's CRC and
//! index, and copies the payloads out. There is no tail cache of our own: the
//! records just written are in the OS page cache, so a `pread` of the tail is a
//! memcpy, and a second copy in our heap would double the memory for nothing.
//! Readers hold the index read lock while they `pread`; that is what makes
//! truncate safe: truncate removes frames from the index under the write lock
//! *before* it shrinks or unlinks files, so no reader can be reading bytes that
//! are being removed. Appends write their bytes without the index lock and take
//! the write lock only to push the new frames, so a read never waits for a
//! write syscall or an fsync, and an append waits at most for in-flight reads.
//! Purge needs no such care: readers hold `Arc<File>`s, and an unlinked file
//! stays readable through an open descriptor.
//!
//! # Group commit
//!
//! A dedicated flusher thread (see `flusher.rs`) runs `fdatasync` on the active
//! segment whenever appends are written but not yet synced. Appends that
//! arrive while a sync runs share the next one. There is no timer: on an idle
//! WAL an append wakes the flusher at once, so a lone writer pays exactly one
//! fdatasync of latency. An fsync failure poisons the WAL: all waiting
//! callbacks get an error and every later call fails with
//! [`WalError::Poisoned`] (after a failed fsync Linux may have dropped the dirty
//! pages and cleared the error, so the page cache no longer tells the truth).
//! Any IO error inside a mutating call (append's writes, rotation, truncate,
//! purge, save_meta) poisons too, for the same reason; validation errors
//! (out-of-order index, oversized record, bad name) do not, and are detected
//! before any IO.
//!
//! # Recovery (at open)
//!
//! Segments are read in index order and every frame is checked.
//! - All-zero bytes after the last frame are preallocated space: the clean
//!   end of the log, kept as it is (in any segment, though only the last one
//!   has any: rotation trims).
//! - A bad frame (short, bad length, bad CRC) in the **last** segment with no
//!   valid frame anywhere after it, or with an all-zero sector inside it
//!   (bytes that never reached the disk: appends overwrite zero-filled
//!   space; nothing written after such a frame can have been synced either,
//!   as a sync covers the whole file), is a torn tail: the file is cut there
//!   (ftruncate + fsync) and a `tracing::warn!` names the file, the offset and
//!   the number of bytes dropped. Those bytes were never acknowledged.
//! - Everything else is a hard [`WalError::Corrupt`] naming the file and
//!   offset: a bad frame followed by a valid one, a bad frame in a non-last
//!   segment, a checksummed frame with an unexpected index, a bad segment
//!   header, a gap or overlap between segments, a first segment that starts
//!   above the floor (`purge point + 1`, or 0). Exceptions that are not damage: a last segment
//!   whose header is incomplete (crash while creating it; removed), empty
//!   trailing segments, and fully purged segments (removed).
//! - A frame whose length exceeds [`WalOptions::max_record_bytes`] is treated
//!   as a bad frame, unless its checksum is valid, which means the limit was
//!   lowered: hard error.
//!
//! Caveat: after a *power* loss the kernel may have written back unsynced
//! pages of the tail out of order. A torn frame with a zeroed sector is
//! recognised as never synced (the usual case with preallocation); a torn
//! frame with non-zero garbage followed by a valid record is reported as
//! corruption. That is the price of never dropping possibly acknowledged
//! data on our own; the error names the file and offset for an operator to
//! decide.
//!
//! # Invariants
//!
//! 1. Live records are exactly the indexes `floor..=last`, contiguous, with no
//!    hole, where the floor is `purge point + 1` (0 if never purged). Records
//!    at or below the purge point may still be on disk in a partly purged
//!    segment but are never returned.
//! 2. Segment `k+1` starts at the index after segment `k`'s last record, except
//!    across segments that hold only purged records.
//! 3. Every segment except the last is fully durable: it was trimmed to its
//!    last frame and fdatasync'ed before its successor was created, and its successor's header and
//!    directory entry were fsynced before any record went into it. Hence only
//!    the tail of the last segment can be torn by a crash.
//! 4. A callback fires `Ok` only after the bytes of its batch and of every
//!    earlier batch are durable; callbacks fire in append order, each exactly
//!    once, unless `append` returned an error (then it is dropped unfired) or
//!    the process dies.
//! 5. The purge point is durable before any purged segment is unlinked, and
//!    truncation unlinks later segments (newest first, then fsyncs the
//!    directory) before it shrinks the segment holding `from`: any crash state
//!    is a prefix of the log, never a log with a hole.
//! 6. Frames are removed from the in-memory index before their bytes are
//!    removed from disk, and added after their bytes are written.
//! 7. Exactly one process may open a directory. The WAL does not lock the
//!    directory itself (that needs `flock`, i.e. `libc` or Rust 1.89's
//!    `File::try_lock`); the caller (berth's data-dir lock) must ensure it.
//!
//! Lock order: `writer` → `index` → flusher state. The flusher thread only
//! takes its own state lock and never the writer lock, so the writer may wait
//! for durability while holding the writer lock (truncate and purge do).
//! Callbacks run on the flusher thread, one after the other: they must be
//! quick (openraft's `LogFlushed` just sends on a channel) and must not call
//! mutating `Wal` methods or `sync` (those may wait for the flusher, which is
//! busy running the callback: deadlock). Reads from a callback are fine.

mod error;
mod flusher;
mod fsutil;
mod index;
mod meta;
mod record;
mod recovery;
mod segment;
#[cfg(test)]
mod tests;

pub use error::WalError;
pub use flusher::Callback;

use std::fs::{self, File};
use std::io;
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::{self, JoinHandle};

use error::Result;
use flusher::Shared;
use index::{Frame, Index, SegIndex};
use record::INDEX_BYTES;
use segment::HEADER_LEN;

/// Largest `max_record_bytes` accepted: the frame length must fit in a `u32`.
const MAX_RECORD_LIMIT: u32 = u32::MAX - 64;
/// A range read issues one `pread` per this many bytes (at least one frame).
const READ_CHUNK: u64 = 1 << 20;

/// Tuning knobs. `Default` gives 64 MiB segments, a 64 MiB record limit and
/// 1 MiB of zero-filled space ahead of appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalOptions {
    /// Roll over to a new segment when the next frame would push the active
    /// segment past this many bytes. Must exceed the 32-byte header.
    pub segment_bytes: u64,
    /// Largest data payload of one record (and of one metadata blob). Larger
    /// appends are rejected; at recovery a larger length field is corruption.
    /// Do not lower it below the size of records already in the log.
    pub max_record_bytes: u32,
    /// Zero-fill the active segment this many bytes ahead whenever an append
    /// reaches the end of the zeroed space (see "On-disk format"); 0 turns
    /// preallocation off (the file then ends at its last frame).
    pub preallocate_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 << 20,
            max_record_bytes: 64 << 20,
            preallocate_bytes: 1 << 20,
        }
    }
}

/// Zeros written by preallocation, a piece at a time.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// A consistent snapshot of the log's extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogBounds {
    /// First live index, `None` when the log holds no live record.
    pub first: Option<u64>,
    /// Last live index, `None` when the log holds no live record.
    pub last: Option<u64>,
    /// The purge point: every index `<= purged` is gone for good.
    pub purged: Option<u64>,
}

/// Counters since open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WalStats {
    /// Non-empty append batches.
    pub appends: u64,
    /// Records appended.
    pub records: u64,
    /// Group-commit `fdatasync`s run by the flusher thread.
    pub syncs: u64,
    /// Other fsyncs (rotation, segment creation, directory, truncate, purge, metadata).
    pub other_fsyncs: u64,
    /// Segment files created.
    pub segments_created: u64,
}

/// The segment appends go to.
struct Active {
    first: u64,
    /// Physical records in the segment (including purged ones).
    records: u64,
    /// Write offset: the end of the last frame.
    len: u64,
    /// File length: `len` plus the zero-filled space after it.
    allocated: u64,
    file: Arc<File>,
}

impl Active {
    fn next(&self) -> u64 {
        self.first.saturating_add(self.records)
    }
}

struct Writer {
    /// `None` only for a log that never had a segment.
    active: Option<Active>,
}

/// The write-ahead log. See the module documentation.
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    /// Serialises every mutation of the log (append, truncate, purge).
    writer: Mutex<Writer>,
    /// Offsets of all records on disk; readers only take this lock.
    index: RwLock<Index>,
    /// Serialises metadata writes (they share nothing with the log files).
    meta_lock: Mutex<()>,
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("bounds", &self.bounds())
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Opens (creating if needed) the log in `dir` and recovers it (see the
    /// module docs for the rules). Starts the flusher thread. Only one `Wal`
    /// (one process) may have a directory open at a time (invariant 7).
    pub fn open(dir: impl AsRef<Path>, opts: WalOptions) -> Result<Wal> {
        let dir = dir.as_ref().to_path_buf();
        if opts.segment_bytes <= HEADER_LEN as u64 {
            return Err(WalError::InvalidOptions(format!(
                "segment_bytes {} must exceed the {HEADER_LEN}-byte segment header",
                opts.segment_bytes
            )));
        }
        if opts.max_record_bytes == 0 || opts.max_record_bytes > MAX_RECORD_LIMIT {
            return Err(WalError::InvalidOptions(format!(
                "max_record_bytes {} must be in 1..={MAX_RECORD_LIMIT}",
                opts.max_record_bytes
            )));
        }
        if !dir.is_dir() {
            fs::create_dir_all(&dir)
                .map_err(|e| WalError::io(format!("create directory {}", dir.display()), e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fsutil::sync_dir(parent)?;
            }
        }

        let purged = meta::read_purge_point(&dir)?;
        let rec = recovery::recover(&dir, purged, max_payload(&opts))?;
        let active = match (rec.index.segments.last(), rec.active_extent) {
            (Some(s), Some((len, allocated))) => Some(Active {
                first: s.first,
                records: s.frames.len() as u64,
                len,
                allocated,
                file: s.file.clone(),
            }),
            _ => None,
        };

        let shared = Arc::new(Shared::default());
        shared.set_active(active.as_ref().map(|a| a.file.clone()));
        let flusher = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("berth-wal-flusher".into())
                .spawn(move || flusher::run(shared))
                .map_err(|e| WalError::io("spawn the wal flusher thread", e))?
        };

        let wal = Wal {
            dir,
            opts,
            writer: Mutex::new(Writer { active }),
            index: RwLock::new(rec.index),
            meta_lock: Mutex::new(()),
            shared,
            flusher: Some(flusher),
        };
        let b = wal.bounds();
        tracing::info!(
            dir = %wal.dir.display(),
            first = ?b.first,
            last = ?b.last,
            purged = ?b.purged,
            segments = wal.read_index().segments.len(),
            "wal: opened"
        );
        Ok(wal)
    }

    /// The directory holding the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    // ----- appends -------------------------------------------------------

    /// Appends a batch of `(index, bytes)` records (see "Append rule" in the
    /// module docs). When this returns `Ok`, the records are written to the OS
    /// and readable; `on_durable` fires later, from the flusher thread, with
    /// `Ok(())` once they are durable or with an error if they can never be.
    /// An empty batch is allowed: its callback fires once every earlier
    /// append is durable.
    ///
    /// On `Err` the callback is dropped without being called. Validation
    /// errors leave the log untouched; IO errors poison the WAL (a prefix of
    /// the batch may then be on disk, like after a crash).
    ///
    /// Blocking: write syscalls always (and, once per `preallocate_bytes`,
    /// writing that many zeros ahead); when the batch rolls into a new
    /// segment, also an fdatasync of the old segment plus fsyncs of the new
    /// file and the directory (once per `segment_bytes`). Async callers should
    /// expect that.
    pub fn append<I, B, F>(&self, entries: I, on_durable: F) -> Result<()>
    where
        I: IntoIterator<Item = (u64, B)>,
        B: AsRef<[u8]>,
        F: FnOnce(io::Result<()>) + Send + 'static,
    {
        let mut w = self.lock_writer()?;

        // 1. Validate and encode the whole batch before any IO.
        let max = self.opts.max_record_bytes;
        let mut buf = Vec::new();
        // (index, offset in buf, frame length)
        let mut frames: Vec<(u64, usize, u32)> = Vec::new();
        for (index, data) in entries {
            let data = data.as_ref();
            if data.len() > max as usize {
                return Err(WalError::RecordTooLarge {
                    index,
                    len: data.len(),
                    max,
                });
            }
            if let Some(&(prev, _, _)) = frames.last() {
                let expected = next_index(prev)?;
                if index != expected {
                    return Err(WalError::NonContiguous {
                        expected,
                        got: index,
                    });
                }
            }
            let off = buf.len();
            record::encode_into(&mut buf, index, data);
            frames.push((index, off, (buf.len() - off) as u32));
        }
        let Some(&(first_index, _, _)) = frames.first() else {
            self.shared.register(false, Box::new(on_durable))?;
            return Ok(());
        };

        // 2. Check the batch continues the log.
        let live = self.read_index().live();
        match live {
            Some(r) => {
                let expected = next_index(*r.end())?;
                if first_index != expected {
                    return Err(WalError::NonContiguous {
                        expected,
                        got: first_index,
                    });
                }
            }
            None => {
                self.start_log_at(&mut w, first_index)
                    .map_err(|e| self.poison_with(e))?;
            }
        }

        // 3. Write (rolling segments as needed), then hand the callback over.
        self.write_frames(&mut w, &buf, &frames)
            .map_err(|e| self.poison_with(e))?;
        let c = &self.shared.counters;
        c.appends.fetch_add(1, Ordering::Relaxed);
        c.records.fetch_add(frames.len() as u64, Ordering::Relaxed);
        self.shared.register(true, Box::new(on_durable))?;
        Ok(())
    }

    /// Appends and blocks until the batch is durable. Convenience for tests
    /// and tools; must not be called from a durability callback.
    pub fn append_sync<I, B>(&self, entries: I) -> Result<()>
    where
        I: IntoIterator<Item = (u64, B)>,
        B: AsRef<[u8]>,
    {
        self.append(entries, |_| {})?;
        self.sync()
    }

    /// Blocks until every append issued before this call is durable.
    /// Must not be called from a durability callback (it would wait for itself).
    pub fn sync(&self) -> Result<()> {
        self.shared.check_poison()?;
        let target = self.shared.written();
        self.shared.wait_synced(target)
    }

    /// Writes encoded frames at the end of the active segment, rolling over
    /// to new segments as needed, and publishes them in the index.
    fn write_frames(&self, w: &mut Writer, buf: &[u8], frames: &[(u64, usize, u32)]) -> Result<()> {
        let mut i = 0;
        while i < frames.len() {
            let Some(active) = w.active.as_ref() else {
                return Err(WalError::io(
                    "append",
                    io::Error::other("no active segment (internal error)"),
                ));
            };
            // As many frames as fit; a segment always takes at least one.
            let mut j = i;
            let mut size = 0u64;
            while j < frames.len() {
                let f = u64::from(frames[j].2);
                let has_records = active.records > 0 || j > i;
                if has_records && active.len + size + f > self.opts.segment_bytes {
                    break;
                }
                size += f;
                j += 1;
            }
            if j == i {
                self.rotate(w, frames[i].0)?;
                continue;
            }
            let start = frames[i].1;
            let end = frames[j - 1].1 + frames[j - 1].2 as usize;
            let base = active.len;
            let allocated = self.preallocate(active, base + size)?;
            active
                .file
                .write_all_at(&buf[start..end], base)
                .map_err(|e| {
                    WalError::io(format!("write {} records to the active segment", j - i), e)
                })?;
            {
                let mut ix = self.write_index();
                let Some(seg) = ix.segments.last_mut() else {
                    return Err(WalError::io(
                        "append",
                        io::Error::other("index has no segment (internal error)"),
                    ));
                };
                seg.frames
                    .extend(frames[i..j].iter().map(|&(_, off, len)| Frame {
                        offset: base + (off - start) as u64,
                        len,
                    }));
            }
            if let Some(a) = w.active.as_mut() {
                a.len += size;
                a.allocated = allocated.max(a.len);
                a.records += (j - i) as u64;
            }
            i = j;
        }
        Ok(())
    }

    /// Makes sure the active segment is zero-filled up to at least `needed`
    /// (when preallocation is on): if not, zero-fills from its current end
    /// up to `preallocate_bytes` past it (at least to `needed`, and no
    /// further than the segment size unless `needed` is). Returns the new
    /// file length. The zeros are made durable by the next group-commit
    /// fsync, together with the file's new size; the appends after that
    /// overwrite them without changing the file's metadata.
    fn preallocate(&self, active: &Active, needed: u64) -> Result<u64> {
        let chunk = self.opts.preallocate_bytes;
        if chunk == 0 || needed <= active.allocated {
            return Ok(active.allocated);
        }
        let target = needed.max(
            active
                .allocated
                .saturating_add(chunk)
                .min(self.opts.segment_bytes),
        );
        let mut at = active.allocated;
        while at < target {
            let n = (target - at).min(ZEROS.len() as u64);
            active
                .file
                .write_all_at(&ZEROS[..n as usize], at)
                .map_err(|e| WalError::io("zero-fill the active segment ahead of appends", e))?;
            at += n;
        }
        Ok(target)
    }

    /// Closes the active segment (trimmed to its last frame, fdatasync) and
    /// starts a new, durable one whose first record will be `next`. Syncing
    /// the old segment *before* the new one exists is what keeps invariant 3.
    fn rotate(&self, w: &mut Writer, next: u64) -> Result<()> {
        if let Some(old) = w.active.as_ref() {
            if old.allocated > old.len {
                old.file
                    .set_len(old.len)
                    .map_err(|e| WalError::io("trim the segment being rotated out", e))?;
            }
            old.file
                .sync_data()
                .map_err(|e| WalError::io("fdatasync the segment being rotated out", e))?;
            self.count_fsyncs(1);
        }
        self.start_segment(w, next)
    }

    fn start_segment(&self, w: &mut Writer, first: u64) -> Result<()> {
        let (file, path) = segment::create(&self.dir, first)?;
        self.count_fsyncs(2);
        self.shared
            .counters
            .segments_created
            .fetch_add(1, Ordering::Relaxed);
        let file = Arc::new(file);
        self.write_index().segments.push(SegIndex {
            first,
            path,
            file: file.clone(),
            frames: Vec::new(),
        });
        self.shared.set_active(Some(file.clone()));
        w.active = Some(Active {
            first,
            records: 0,
            len: HEADER_LEN as u64,
            allocated: HEADER_LEN as u64,
            file,
        });
        Ok(())
    }

    /// The log holds no live record and the next batch starts at `k`.
    /// Makes the log start at `k`, keeping invariant 1 (the log starts
    /// exactly at the floor, `purge point + 1`, or 0 if never purged):
    /// - `k` above the floor: durably raise the purge point to `k - 1` first
    ///   (records below it are skipped from then on), so recovery can detect
    ///   a missing first segment;
    /// - `k` below the floor (openraft's storage suite appends below an
    ///   earlier purge once the log is empty): remove every old segment
    ///   durably first, and only then lower the purge point, so that no
    ///   stale record below the old purge point can come back to life.
    ///
    /// Unless the active segment already continues at `k`, all (empty or
    /// fully purged) segments are replaced by a fresh one starting at `k`.
    fn start_log_at(&self, w: &mut Writer, k: u64) -> Result<()> {
        let floor = floor(self.read_index().purged);
        if k > floor {
            meta::write_purge_point(&self.dir, k - 1)?;
            self.count_fsyncs(2);
            self.write_index().purged = Some(k - 1);
        }
        if w.active.as_ref().is_some_and(|a| a.next() == k) {
            return Ok(());
        }
        // Old segments hold nothing live. Every earlier append is durable
        // (the truncate/purge that emptied the log ran a barrier), so no
        // pending callback needs them.
        let old: Vec<SegIndex> = self.write_index().segments.drain(..).collect();
        w.active = None;
        self.shared.set_active(None);
        if !old.is_empty() {
            for s in &old {
                fs::remove_file(&s.path)
                    .map_err(|e| WalError::io(format!("remove {}", s.path.display()), e))?;
            }
            // Durable before the new segment exists, so recovery never sees
            // an old empty segment next to the new one.
            fsutil::sync_dir(&self.dir)?;
            self.count_fsyncs(1);
        }
        if k < floor {
            match k.checked_sub(1) {
                Some(purged) => meta::write_purge_point(&self.dir, purged)?,
                None => meta::clear_purge_point(&self.dir)?,
            }
            self.count_fsyncs(2);
            self.write_index().purged = k.checked_sub(1);
        }
        self.start_segment(w, k)
    }

    // ----- truncate / purge ------------------------------------------------

    /// Removes every record with index `>= from`, durably, before returning.
    /// A no-op if there is nothing at or above `from`. Indexes at or below the
    /// purge point are already gone, so `from <= purge point` empties the log
    /// and the next append then starts above the purge point.
    pub fn truncate(&self, from: u64) -> Result<()> {
        let mut w = self.lock_writer()?;
        self.shared.wait_synced(self.shared.written())?;
        let Some(live) = self.read_index().live() else {
            return Ok(());
        };
        if from > *live.end() {
            return Ok(());
        }
        let from = from.max(*live.start());
        self.truncate_locked(&mut w, from)
            .map_err(|e| self.poison_with(e))
    }

    fn truncate_locked(&self, w: &mut Writer, from: u64) -> Result<()> {
        // 1. Unpublish first (invariant 6): from here on no reader touches
        //    the bytes we are about to remove.
        let (removed, seg_first, seg_file, seg_path, new_len, kept) = {
            let mut ix = self.write_index();
            let Some((si, fi)) = ix.locate(from) else {
                return Err(WalError::io(
                    "truncate",
                    io::Error::other(format!("index {from} not found (internal error)")),
                ));
            };
            let removed: Vec<SegIndex> = ix.segments.drain(si + 1..).collect();
            let seg = &mut ix.segments[si];
            let new_len = seg.frames[fi].offset;
            seg.frames.truncate(fi);
            (
                removed,
                seg.first,
                seg.file.clone(),
                seg.path.clone(),
                new_len,
                fi as u64,
            )
        };
        // 2. Unlink later segments, newest first, and make that durable
        //    before shrinking the segment holding `from` (invariant 5).
        if !removed.is_empty() {
            for s in removed.iter().rev() {
                fs::remove_file(&s.path)
                    .map_err(|e| WalError::io(format!("remove {}", s.path.display()), e))?;
            }
            fsutil::sync_dir(&self.dir)?;
            self.count_fsyncs(1);
        }
        // 3. Shrink and fsync.
        seg_file
            .set_len(new_len)
            .map_err(|e| WalError::io(format!("truncate {}", seg_path.display()), e))?;
        seg_file
            .sync_all()
            .map_err(|e| WalError::io(format!("fsync {} after truncate", seg_path.display()), e))?;
        self.count_fsyncs(1);
        self.shared.set_active(Some(seg_file.clone()));
        w.active = Some(Active {
            first: seg_first,
            records: kept,
            len: new_len,
            allocated: new_len,
            file: seg_file,
        });
        Ok(())
    }

    /// Logically removes every record with index `<= upto`, durably: the purge
    /// point is persisted first (recovery then skips those records), then
    /// segments holding only purged records are unlinked (the active one is
    /// kept). `upto` may lie beyond the last record: the log becomes empty
    /// and the next append starts at `upto + 1` (or higher). Purging at or
    /// below the current purge point is a no-op.
    pub fn purge(&self, upto: u64) -> Result<()> {
        let _w = self.lock_writer()?;
        if self.read_index().purged.is_some_and(|p| p >= upto) {
            return Ok(());
        }
        self.shared.wait_synced(self.shared.written())?;
        meta::write_purge_point(&self.dir, upto).map_err(|e| self.poison_with(e))?;
        self.count_fsyncs(2);
        let dead: Vec<SegIndex> = {
            let mut ix = self.write_index();
            ix.purged = Some(upto);
            let n = ix.segments.len();
            let mut k = 0;
            while k + 1 < n && ix.segments[k].last().is_none_or(|l| l <= upto) {
                k += 1;
            }
            ix.segments.drain(..k).collect()
        };
        // No directory fsync: a segment whose unlink is lost is dead and
        // recovery removes it again.
        for s in dead {
            if let Err(e) = fs::remove_file(&s.path) {
                tracing::warn!(file = %s.path.display(), error = %e, "wal: could not remove purged segment");
            }
        }
        Ok(())
    }

    // ----- reads ------------------------------------------------------------

    /// Live records in `range`, in index order. Indexes outside the live range
    /// are skipped (a range past the end returns fewer or no records).
    /// Each record's checksum and index are verified. The index read lock is
    /// held for the whole call (see "Read path"), so keep ranges bounded, as
    /// openraft's replication batches (`max_payload_entries`) are.
    pub fn entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<(u64, Vec<u8>)>> {
        self.shared.check_poison()?;
        let lo = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => match s.checked_add(1) {
                Some(s) => s,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let hi = match range.end_bound() {
            Bound::Included(&e) => e,
            Bound::Excluded(&e) => match e.checked_sub(1) {
                Some(e) => e,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => u64::MAX,
        };
        let ix = self.read_index();
        let Some(live) = ix.live() else {
            return Ok(Vec::new());
        };
        let (lo, hi) = (lo.max(*live.start()), hi.min(*live.end()));
        if lo > hi {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(((hi - lo) as usize).saturating_add(1).min(1 << 16));
        let max_payload = max_payload(&self.opts);
        let mut idx = lo;
        loop {
            let Some((si, fi)) = ix.locate(idx) else {
                return Err(WalError::io(
                    "read",
                    io::Error::other(format!(
                        "live index {idx} missing from the offset index (internal error)"
                    )),
                ));
            };
            let seg = &ix.segments[si];
            // Coalesce adjacent frames of this segment into one pread.
            let seg_last = seg.next() - 1;
            let want_last = hi.min(seg_last);
            let start = seg.frames[fi].offset;
            let mut fj = fi;
            let mut end = start + u64::from(seg.frames[fi].len);
            while (seg.first + fj as u64) < want_last {
                let f = seg.frames[fj + 1];
                if f.offset + u64::from(f.len) - start > READ_CHUNK {
                    break;
                }
                fj += 1;
                end = f.offset + u64::from(f.len);
            }
            let mut buf = vec![0u8; (end - start) as usize];
            seg.file.read_exact_at(&mut buf, start).map_err(|e| {
                WalError::io(
                    format!(
                        "read {} bytes at offset {start} of {}",
                        buf.len(),
                        seg.path.display()
                    ),
                    e,
                )
            })?;
            let mut pos = 0usize;
            for k in fi..=fj {
                let want = seg.first + k as u64;
                let at = seg.frames[k].offset;
                let d = record::decode(&buf[pos..], max_payload).map_err(|e| {
                    WalError::corrupt(&seg.path, at, format!("reading record {want}: {e}"))
                })?;
                if d.index != want {
                    return Err(WalError::corrupt(
                        &seg.path,
                        at,
                        format!("reading record {want}: found index {}", d.index),
                    ));
                }
                out.push((want, d.data.to_vec()));
                pos += d.frame_len;
            }
            let done = seg.first + fj as u64;
            if done >= hi {
                break;
            }
            idx = done + 1;
        }
        Ok(out)
    }

    /// One live record, or `None` if `index` is not live.
    pub fn entry(&self, index: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.entries(index..=index)?.pop().map(|(_, d)| d))
    }

    /// First live index (`None` if the log holds no live record).
    pub fn first_index(&self) -> Option<u64> {
        self.bounds().first
    }

    /// Last live index (`None` if the log holds no live record).
    pub fn last_index(&self) -> Option<u64> {
        self.bounds().last
    }

    /// The purge point, if the log was ever purged.
    pub fn purged_index(&self) -> Option<u64> {
        self.read_index().purged
    }

    /// First, last and purge point, read atomically.
    pub fn bounds(&self) -> LogBounds {
        let ix = self.read_index();
        let live = ix.live();
        LogBounds {
            first: live.as_ref().map(|r| *r.start()),
            last: live.as_ref().map(|r| *r.end()),
            purged: ix.purged,
        }
    }

    // ----- metadata -----------------------------------------------------------

    /// Durably stores a small blob under `name` (1..=64 chars of
    /// `[A-Za-z0-9_-]`) by atomic replace, after every earlier append is
    /// durable. Durable when it returns: suitable for the Raft vote.
    pub fn save_meta(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let file = meta::user_file_name(name)?;
        if bytes.len() > self.opts.max_record_bytes as usize {
            return Err(WalError::MetaTooLarge {
                name: name.to_string(),
                len: bytes.len(),
                max: self.opts.max_record_bytes,
            });
        }
        self.shared.check_poison()?;
        let _g = self
            .meta_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.shared.wait_synced(self.shared.written())?;
        meta::write_atomic(&self.dir, &file, bytes).map_err(|e| self.poison_with(e))?;
        self.count_fsyncs(2);
        Ok(())
    }

    /// Reads the blob stored under `name`, `None` if never saved.
    pub fn read_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let file = meta::user_file_name(name)?;
        self.shared.check_poison()?;
        meta::read(&self.dir, &file)
    }

    // ----- misc -----------------------------------------------------------------

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        let c = &self.shared.counters;
        WalStats {
            appends: c.appends.load(Ordering::Relaxed),
            records: c.records.load(Ordering::Relaxed),
            syncs: c.syncs.load(Ordering::Relaxed),
            other_fsyncs: c.other_fsyncs.load(Ordering::Relaxed),
            segments_created: c.segments_created.load(Ordering::Relaxed),
        }
    }

    /// Test hook: stop the flusher without syncing or firing queued
    /// callbacks, as a crash would. Data already written stays in the page
    /// cache, so a reopen sees it (a process crash, not a power loss).
    #[cfg(test)]
    pub(crate) fn crash(mut self) {
        {
            let mut st = self.shared.lock();
            st.crash = true;
            st.pending.clear();
            self.shared.work.notify_all();
            self.shared.done.notify_all();
        }
        if let Some(h) = self.flusher.take() {
            let _ = h.join();
        }
    }

    fn lock_writer(&self) -> Result<MutexGuard<'_, Writer>> {
        let g = self.writer.lock().map_err(|_| {
            self.shared
                .poison("a thread panicked while holding the wal writer lock".into())
        })?;
        self.shared.check_poison()?;
        Ok(g)
    }

    fn read_index(&self) -> RwLockReadGuard<'_, Index> {
        // Index updates cannot panic half-way (pushes/truncates only), so a
        // poisoned lock still guards consistent data.
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_index(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Poisons the WAL because of `e` and returns `e` itself, so the caller
    /// sees the real cause; every later call sees `Poisoned`.
    fn poison_with(&self, e: WalError) -> WalError {
        if !matches!(e, WalError::Poisoned(_)) {
            self.shared.poison(e.to_string());
        }
        e
    }

    fn count_fsyncs(&self, n: u64) {
        self.shared
            .counters
            .other_fsyncs
            .fetch_add(n, Ordering::Relaxed);
    }
}

impl Drop for Wal {
    /// Lets the flusher finish: queued appends are synced and their
    /// callbacks fire before the thread exits.
    fn drop(&mut self) {
        {
            let mut st = self.shared.lock();
            st.shutdown = true;
            self.shared.work.notify_all();
        }
        if let Some(h) = self.flusher.take() {
            // Dropped from a callback (the last Arc<Wal> lived there): the
            // flusher exits on its own once the callback returns.
            if h.thread().id() != thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

/// The lowest index the log can hold: `purge point + 1`, or 0 if never purged.
pub(crate) fn floor(purged: Option<u64>) -> u64 {
    purged.map_or(0, |p| p.saturating_add(1))
}

fn max_payload(opts: &WalOptions) -> u64 {
    u64::from(opts.max_record_bytes) + INDEX_BYTES as u64
}

fn next_index(i: u64) -> Result<u64> {
    i.checked_add(1).ok_or(WalError::IndexOverflow)
}
