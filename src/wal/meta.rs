//! Small durable blobs (the vote, committed/purged log ids, the WAL's own
//! purge point), each in its own file, replaced atomically.
//!
//! File layout:
//!
//! ```text
//! offset  size  field
//! 0       8     magic    b"BERTHMTA"
//! 8       4     version  u32 LE = 1
//! 12      4     len      u32 LE, payload length
//! 16      4     crc      u32 LE = crc32(bytes 8..16 ‖ payload)
//! 20      len   payload
//! ```
//!
//! Writes go to `<file>.tmp`, which is fsynced, renamed over `<file>`, and the
//! directory is fsynced. rename(2) is atomic, so a reader (or a restart) sees
//! either the old or the new blob, never a mix. A crash can leave a stale
//! `*.tmp`; it is never read and is deleted at open. The checksum is there
//! for bit rot, not for torn writes (those cannot reach the final name).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::error::{Result, WalError};
use super::fsutil::sync_dir;

const MAGIC: &[u8; 8] = b"BERTHMTA";
const VERSION: u32 = 1;
const HEADER: usize = 20;
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Prefix of user metadata files: `meta-<name>`. The WAL's internal files
/// use other names, so users cannot clobber them.
const USER_PREFIX: &str = "meta-";

/// The WAL's own purge point (u64 LE payload). Absent = never purged.
pub(crate) const PURGE_POINT_FILE: &str = "wal-purge-point";

/// Checks a user metadata name and returns its file name.
pub(crate) fn user_file_name(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(format!("{USER_PREFIX}{name}"))
    } else {
        Err(WalError::InvalidMetaName(name.to_string()))
    }
}

fn encode(payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER + payload.len());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&b[8..16]);
    h.update(payload);
    b.extend_from_slice(&h.finalize().to_le_bytes());
    b.extend_from_slice(payload);
    b
}

fn decode(path: &Path, b: &[u8]) -> Result<Vec<u8>> {
    let bad = |offset: u64, why: &str| WalError::corrupt(path, offset, why.to_string());
    if b.len() < HEADER {
        return Err(bad(0, "metadata file shorter than its header"));
    }
    if &b[0..8] != MAGIC {
        return Err(bad(0, "not a berth metadata file (bad magic)"));
    }
    let u32_at = |at: usize| {
        let mut a = [0u8; 4];
        a.copy_from_slice(&b[at..at + 4]);
        u32::from_le_bytes(a)
    };
    let version = u32_at(8);
    if version != VERSION {
        return Err(bad(
            8,
            &format!("unsupported metadata format version {version}"),
        ));
    }
    let len = u32_at(12) as usize;
    if b.len() != HEADER + len {
        return Err(bad(
            12,
            &format!(
                "metadata length field says {len} bytes but the file holds {}",
                b.len() - HEADER
            ),
        ));
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&b[8..16]);
    h.update(&b[HEADER..]);
    if h.finalize() != u32_at(16) {
        return Err(bad(16, "metadata checksum mismatch"));
    }
    Ok(b[HEADER..].to_vec())
}

/// Atomically replaces `dir/file` with `payload` and makes it durable
/// (write tmp, fsync tmp, rename, fsync dir). Any error leaves either the old
/// or the new content under `file`; the caller must treat an error as
/// "durability unknown" (the WAL poisons itself).
pub(crate) fn write_atomic(dir: &Path, file: &str, payload: &[u8]) -> Result<()> {
    let path = dir.join(file);
    let tmp: PathBuf = dir.join(format!("{file}{TMP_SUFFIX}"));
    let ctx = |what: &str, p: &Path| format!("{what} {}", p.display());
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| WalError::io(ctx("create", &tmp), e))?;
    f.write_all(&encode(payload))
        .map_err(|e| WalError::io(ctx("write", &tmp), e))?;
    f.sync_all()
        .map_err(|e| WalError::io(ctx("fsync", &tmp), e))?;
    drop(f);
    fs::rename(&tmp, &path)
        .map_err(|e| WalError::io(format!("rename {} to {}", tmp.display(), path.display()), e))?;
    sync_dir(dir)
}

/// Reads `dir/file`; `None` if it does not exist.
pub(crate) fn read(dir: &Path, file: &str) -> Result<Option<Vec<u8>>> {
    let path = dir.join(file);
    match fs::read(&path) {
        Ok(b) => decode(&path, &b).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WalError::io(format!("read {}", path.display()), e)),
    }
}

/// Reads the WAL's purge point.
pub(crate) fn read_purge_point(dir: &Path) -> Result<Option<u64>> {
    let Some(b) = read(dir, PURGE_POINT_FILE)? else {
        return Ok(None);
    };
    let arr: [u8; 8] = b.as_slice().try_into().map_err(|_| {
        WalError::corrupt(
            dir.join(PURGE_POINT_FILE),
            HEADER as u64,
            format!("purge point payload is {} bytes, expected 8", b.len()),
        )
    })?;
    Ok(Some(u64::from_le_bytes(arr)))
}

/// Durably forgets the purge point (the log floor becomes 0 again).
pub(crate) fn clear_purge_point(dir: &Path) -> Result<()> {
    match fs::remove_file(dir.join(PURGE_POINT_FILE)) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(WalError::io(
            format!("remove {}", dir.join(PURGE_POINT_FILE).display()),
            e,
        )),
    }
}

/// Durably records the purge point (records `..=purged` are gone).
pub(crate) fn write_purge_point(dir: &Path, purged: u64) -> Result<()> {
    write_atomic(dir, PURGE_POINT_FILE, &purged.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_and_corruption() {
        let p = Path::new("x");
        let b = encode(b"vote");
        assert_eq!(decode(p, &b).unwrap(), b"vote");
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x10;
            assert!(decode(p, &c).is_err(), "flip at {i}");
        }
        assert!(decode(p, &b[..b.len() - 1]).is_err());
        assert!(user_file_name("vote").is_ok());
        assert!(user_file_name("committed_log-id").is_ok());
        for bad in ["", "a/b", "..", "a.b", &"x".repeat(65)] {
            assert!(user_file_name(bad).is_err(), "{bad:?}");
        }
    }
}
