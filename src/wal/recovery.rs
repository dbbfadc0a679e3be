//! Recovery at open: rebuild the in-memory index from the segment files,
//! cut a torn tail off the last segment, refuse everything else that is wrong.
//!
//! Why only the last segment may be cut: a segment is fdatasync'ed before the
//! next one is created (see `Wal::rotate`), so every non-last segment was fully
//! durable before anything newer existed. Unsynced (hence possibly torn) bytes
//! can only sit at the end of the last segment. Anything wrong elsewhere is
//! damage to data that was acknowledged as durable, and silently dropping it
//! could make this Raft voter forget entries it promised to keep.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{Result, WalError};
use super::fsutil::sync_dir;
use super::index::{Index, SegIndex};
use super::meta::TMP_SUFFIX;
use super::record::{self, FrameError};
use super::segment::{self, HEADER_LEN, ScanStop};

/// What recovery hands to `Wal::open`.
pub(crate) struct Recovered {
    pub index: Index,
    /// Of the last segment, if there is one: the write offset (end of its
    /// last frame) and the file length (larger when zero-filled ahead).
    pub active_extent: Option<(u64, u64)>,
}

fn list_dir(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let rd = fs::read_dir(dir)
        .map_err(|e| WalError::io(format!("list directory {}", dir.display()), e))?;
    let mut segs = Vec::new();
    let mut removed_tmp = false;
    for ent in rd {
        let ent = ent.map_err(|e| WalError::io(format!("list directory {}", dir.display()), e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = ent.path();
        if name.ends_with(TMP_SUFFIX) {
            // A crash between creating and renaming a metadata temp file: the
            // final name still has the old content, the temp file is garbage.
            tracing::info!(file = %path.display(), "wal: removing leftover temp file");
            fs::remove_file(&path)
                .map_err(|e| WalError::io(format!("remove {}", path.display()), e))?;
            removed_tmp = true;
        } else if let Some(first) = segment::parse_file_name(name) {
            segs.push((first, path));
        }
    }
    if removed_tmp {
        sync_dir(dir)?;
    }
    segs.sort_by_key(|(first, _)| *first);
    Ok(segs)
}

fn read_all(path: &Path) -> Result<(File, Vec<u8>)> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| WalError::io(format!("open segment {}", path.display()), e))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .map_err(|e| WalError::io(format!("read segment {}", path.display()), e))?;
    Ok((f, buf))
}

/// Scans `dir` and rebuilds the index. `purged` is the durable purge point.
///
/// Rules (also in the module docs):
/// 1. Segments are ordered by the first index in their name; the header must
///    be valid and name the same index.
/// 2. Inside a segment, records carry consecutive indexes starting at the
///    segment's first index.
/// 3. Between segments, the next segment starts right after the previous one's
///    last record, except that a gap is allowed when everything before the next
///    segment is at or below the purge point (left-over dead segments).
/// 4. The first segment starts at or below the floor (`p + 1` for purge point
///    `p`, or 0 if never purged): no records are missing at the start.
/// 5. All-zero bytes after the last good frame of the last segment are
///    preallocated space: the clean end of the log, left in place.
/// 6. A bad frame in the last segment with no valid frame after it, or with
///    an all-zero sector inside it (never synced, see
///    [`record::never_synced`]), is a torn tail: cut off (ftruncate + fsync)
///    with a warning. Otherwise a bad frame followed by a valid one, a bad
///    frame in any other segment, a valid frame with the
///    wrong index, a bad header (except a header-less last segment left by a
///    crash during creation, which is removed) or a gap: hard error.
pub(crate) fn recover(dir: &Path, purged: Option<u64>, max_payload: u64) -> Result<Recovered> {
    let mut segs = list_dir(dir)?;

    // A crash inside `segment::create` can leave a last segment whose header
    // never reached the disk. It cannot hold records (those are written only
    // after the header is fsynced), so it is safe to remove.
    if let Some((_, path)) = segs.last() {
        let len = fs::metadata(path)
            .map_err(|e| WalError::io(format!("stat segment {}", path.display()), e))?
            .len();
        let buf = if len <= HEADER_LEN as u64 {
            read_all(path)?.1
        } else {
            Vec::new()
        };
        if len <= HEADER_LEN as u64
            && let Err(why) = segment::decode_header(&buf)
        {
            tracing::warn!(
                file = %path.display(),
                bytes = buf.len(),
                reason = %why,
                "wal: removing last segment with an incomplete header (crash during segment creation)"
            );
            fs::remove_file(path)
                .map_err(|e| WalError::io(format!("remove {}", path.display()), e))?;
            sync_dir(dir)?;
            segs.pop();
        }
    }

    let floor = super::floor(purged);
    let n = segs.len();
    let mut index = Index {
        segments: Vec::with_capacity(n),
        purged,
    };
    let mut active_extent = None;
    let mut expected: Option<u64> = None;

    for (i, (name_first, path)) in segs.into_iter().enumerate() {
        let is_last = i + 1 == n;
        let (file, buf) = read_all(&path)?;
        let first = segment::decode_header(&buf)
            .map_err(|why| WalError::corrupt(&path, 0, format!("bad segment header: {why}")))?;
        if first != name_first {
            return Err(WalError::corrupt(
                &path,
                16,
                format!(
                    "segment header says first index {first} but the file name says {name_first}"
                ),
            ));
        }

        match expected {
            None => {
                if first > floor {
                    return Err(WalError::corrupt(
                        &path,
                        0,
                        format!(
                            "records {floor}..{first} are missing: the log starts at index {floor} ({}) but the first segment starts at {first}",
                            match purged {
                                Some(p) => format!("purge point {p}"),
                                None => "never purged".to_string(),
                            }
                        ),
                    ));
                }
            }
            Some(e) if e == first => {}
            Some(e) => {
                let dead_gap = first > e && first <= floor;
                if !dead_gap {
                    return Err(WalError::corrupt(
                        &path,
                        0,
                        format!(
                            "segment starts at index {first} but the previous segment ends before index {e} ({})",
                            if first > e {
                                "records are missing"
                            } else {
                                "segments overlap"
                            }
                        ),
                    ));
                }
            }
        }

        let scan = segment::scan(&buf, first, max_payload);
        let mut end = scan.end;
        let mut file_len = buf.len();
        // Rotation trims a segment to its last frame: only the last one may
        // end in zero-filled space.
        let preallocated = |offset: usize| is_last && buf[offset..].iter().all(|&b| b == 0);
        if let Some(stop) = scan.stop.filter(
            |stop| !matches!(stop, ScanStop::BadFrame { offset, .. } if preallocated(*offset)),
        ) {
            match stop {
                ScanStop::WrongIndex {
                    offset,
                    expected,
                    got,
                } => {
                    return Err(WalError::corrupt(
                        &path,
                        offset as u64,
                        format!("record has index {got}, expected {expected}"),
                    ));
                }
                ScanStop::BadFrame { offset, error } => {
                    let bad_index = first.saturating_add(scan.frames.len() as u64);
                    check_bad_frame(&path, &buf, offset, bad_index, &error, is_last, max_payload)?;
                    // Torn tail of the last segment: cut it off durably.
                    let dropped = buf.len() - offset;
                    tracing::warn!(
                        file = %path.display(),
                        offset,
                        dropped_bytes = dropped,
                        reason = %error,
                        "wal: cutting off torn tail of the last segment"
                    );
                    file.set_len(offset as u64).map_err(|e| {
                        WalError::io(format!("truncate torn tail of {}", path.display()), e)
                    })?;
                    file.sync_all().map_err(|e| {
                        WalError::io(
                            format!("fsync {} after cutting its tail", path.display()),
                            e,
                        )
                    })?;
                    end = offset;
                    file_len = offset;
                }
            }
        }

        expected = Some(first.saturating_add(scan.frames.len() as u64));
        if is_last {
            active_extent = Some((end as u64, file_len as u64));
        }
        index.segments.push(SegIndex {
            first,
            path,
            file: Arc::new(file),
            frames: scan.frames,
        });
    }

    remove_dead_segments(&mut index);
    Ok(Recovered {
        index,
        active_extent,
    })
}

/// Decides whether a bad frame may be treated as a torn tail. Returns `Ok` if
/// so, the hard error otherwise.
fn check_bad_frame(
    path: &Path,
    buf: &[u8],
    offset: usize,
    bad_index: u64,
    error: &FrameError,
    is_last: bool,
    max_payload: u64,
) -> Result<()> {
    // A complete, checksummed record that is merely larger than the
    // configured limit is not a torn write: the limit was lowered.
    if let FrameError::LengthTooLarge { len, .. } = error
        && let Ok(d) = record::decode(&buf[offset..], u64::MAX)
    {
        return Err(WalError::corrupt(
            path,
            offset as u64,
            format!(
                "record {} has a valid checksum but {len} payload bytes, over the configured maximum; was max_record_bytes lowered?",
                d.index
            ),
        ));
    }
    if !is_last {
        return Err(WalError::corrupt(
            path,
            offset as u64,
            format!(
                "bad record (expected index {bad_index}): {error}; this is not the last segment, so it is corruption, not a torn write"
            ),
        ));
    }
    if record::never_synced(buf, offset, max_payload) {
        return Ok(());
    }
    if let Some((at, idx)) = record::find_valid_after(buf, offset, bad_index, max_payload) {
        return Err(WalError::corrupt(
            path,
            offset as u64,
            format!(
                "bad record (expected index {bad_index}): {error}; a valid record with index {idx} follows at offset {at}, so this is corruption, not a torn tail"
            ),
        ));
    }
    Ok(())
}

/// Drops (and unlinks) segments that hold only purged records and are not the
/// last segment. The directory is not fsynced: if an unlink is lost in a
/// crash, the next recovery sees a dead segment again, which rule 3 allows.
fn remove_dead_segments(index: &mut Index) {
    let Some(p) = index.purged else { return };
    let n = index.segments.len();
    let mut dead = 0;
    while dead + 1 < n {
        let s = &index.segments[dead];
        let all_purged = s.last().is_none_or(|l| l <= p);
        if !all_purged {
            break;
        }
        dead += 1;
    }
    for s in index.segments.drain(..dead) {
        tracing::info!(file = %s.path.display(), "wal: removing fully purged segment");
        if let Err(e) = fs::remove_file(&s.path) {
            // Harmless: it will be found again (dead) at the next open.
            tracing::warn!(file = %s.path.display(), error = %e, "wal: could not remove purged segment");
        }
    }
}
