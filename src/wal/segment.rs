//! Segment files: naming, the versioned header, creation and the record scan
//! used by recovery.
//!
//! A segment is named after the index of its first record, `{first:020}.wal`
//! (20 decimal digits, so lexical order = numeric order and `ls` shows the log
//! in order), and starts with a 32-byte header:
//!
//! ```text
//! offset  size  field
//! 0       8     magic        b"BERTHWAL"
//! 8       4     version      u32 LE = 1
//! 12      4     flags        u32 LE = 0 (reserved)
//! 16      8     first_index  u64 LE, equal to the index in the file name
//! 24      4     crc          u32 LE = crc32(bytes 0..24)
//! 28      4     reserved     0
//! ```
//!
//! followed by records (see `record.rs`) back to back, with no padding, and
//! then, in the active segment, zero-filled preallocated space (see the
//! module docs of `wal`): the log ends where the rest of the file is all
//! zeros. A frame's 4-byte length field is never zero (it is at least 8), so
//! the zeros cannot be mistaken for a record.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::{Result, WalError};
use super::fsutil::sync_dir;
use super::index::Frame;
use super::record::{self, FrameError};

pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"BERTHWAL";
pub(crate) const SEGMENT_VERSION: u32 = 1;
pub(crate) const HEADER_LEN: usize = 32;
const SUFFIX: &str = ".wal";

/// File name of the segment whose first record is `first`.
pub(crate) fn file_name(first: u64) -> String {
    format!("{first:020}{SUFFIX}")
}

/// Inverse of [`file_name`]; `None` for anything that is not a segment name.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SUFFIX)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

pub(crate) fn encode_header(first: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    // 12..16 flags = 0
    h[16..24].copy_from_slice(&first.to_le_bytes());
    let crc = crc32fast::hash(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Validates a header and returns its first index, or why it is invalid.
pub(crate) fn decode_header(buf: &[u8]) -> std::result::Result<u64, String> {
    if buf.len() < HEADER_LEN {
        return Err(format!(
            "file is {} bytes, shorter than the {HEADER_LEN}-byte segment header",
            buf.len()
        ));
    }
    let h = &buf[..HEADER_LEN];
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&h[24..28]);
    if u32::from_le_bytes(crc) != crc32fast::hash(&h[0..24]) {
        return Err("segment header checksum mismatch".into());
    }
    if &h[0..8] != SEGMENT_MAGIC {
        return Err("not a berth wal segment (bad magic)".into());
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&h[8..12]);
    let version = u32::from_le_bytes(v);
    if version != SEGMENT_VERSION {
        return Err(format!(
            "unsupported segment format version {version} (this build reads {SEGMENT_VERSION})"
        ));
    }
    let mut f = [0u8; 8];
    f.copy_from_slice(&h[16..24]);
    Ok(u64::from_le_bytes(f))
}

/// Creates a new, durable, empty segment: the file with its header is fsynced
/// and so is the directory entry, *before* any record is written into it. That
/// way a segment that exists after a crash always has a valid header, and the
/// only way to see a short/garbled header is a crash inside this function (which
/// recovery treats as an absent segment).
pub(crate) fn create(dir: &Path, first: u64) -> Result<(File, PathBuf)> {
    let path = dir.join(file_name(first));
    let ctx = |what: &str| format!("{what} new segment {}", path.display());
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| WalError::io(ctx("create"), e))?;
    file.write_all(&encode_header(first))
        .map_err(|e| WalError::io(ctx("write header of"), e))?;
    file.sync_all().map_err(|e| WalError::io(ctx("fsync"), e))?;
    sync_dir(dir)?;
    Ok((file, path))
}

/// Where and why the scan of a segment's records stopped early.
#[derive(Debug)]
pub(crate) enum ScanStop {
    /// Bytes at `offset` are not a valid frame.
    BadFrame { offset: usize, error: FrameError },
    /// A frame with a valid checksum carries the wrong index: never a torn
    /// write, always a hard error.
    WrongIndex {
        offset: usize,
        expected: u64,
        got: u64,
    },
}

/// Result of scanning the records of one segment held in memory.
#[derive(Debug)]
pub(crate) struct Scan {
    pub frames: Vec<Frame>,
    /// Offset just past the last good frame.
    pub end: usize,
    pub stop: Option<ScanStop>,
}

/// Walks the frames of a segment (`buf` = the whole file, header included)
/// and checks that the records carry `first, first+1, …`. Pure: no IO, never
/// panics.
pub(crate) fn scan(buf: &[u8], first: u64, max_payload: u64) -> Scan {
    let mut frames = Vec::new();
    let mut pos = HEADER_LEN.min(buf.len());
    let mut expected = first;
    while pos < buf.len() {
        match record::decode(&buf[pos..], max_payload) {
            Ok(d) => {
                if d.index != expected {
                    return Scan {
                        frames,
                        end: pos,
                        stop: Some(ScanStop::WrongIndex {
                            offset: pos,
                            expected,
                            got: d.index,
                        }),
                    };
                }
                frames.push(Frame {
                    offset: pos as u64,
                    len: d.frame_len as u32,
                });
                pos += d.frame_len;
                // Index u64::MAX can have no successor: anything after it
                // fails the index check instead of overflowing.
                expected = match expected.checked_add(1) {
                    Some(e) => e,
                    None => {
                        if pos < buf.len() {
                            return Scan {
                                frames,
                                end: pos,
                                stop: Some(ScanStop::WrongIndex {
                                    offset: pos,
                                    expected: u64::MAX,
                                    got: u64::MAX,
                                }),
                            };
                        }
                        break;
                    }
                };
            }
            Err(error) => {
                return Scan {
                    frames,
                    end: pos,
                    stop: Some(ScanStop::BadFrame { offset: pos, error }),
                };
            }
        }
    }
    Scan {
        frames,
        end: pos,
        stop: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_header() {
        assert_eq!(file_name(42), "00000000000000000042.wal");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_file_name("42.wal"), None);
        assert_eq!(parse_file_name("0000000000000000004x.wal"), None);
        assert_eq!(parse_file_name("00000000000000000042.wal.tmp"), None);
        let h = encode_header(9);
        assert_eq!(decode_header(&h), Ok(9));
        for i in 0..28 {
            let mut b = h;
            b[i] ^= 1;
            assert!(decode_header(&b).is_err(), "flip at {i}");
        }
        assert!(decode_header(&h[..31]).is_err());
    }
}
