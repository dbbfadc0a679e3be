//! Record framing: how one `(index, bytes)` pair is laid out inside a segment.
//!
//! ```text
//! offset  size  field
//! 0       4     len    u32 LE = 8 + data.len()   (length of the payload below)
//! 4       4     crc    u32 LE = crc32(len bytes ‖ payload)
//! 8       8     index  u64 LE  ┐
//! 16      n     data   n bytes ┘ payload
//! ```
//!
//! The CRC covers the length field too, so a flipped bit in `len` is caught by
//! the checksum rather than only by the bounds checks. The index lives inside
//! the checksummed payload, so a record that lands at the wrong place (or a
//! stale record) can never be mistaken for the one the in-memory index expects.

/// Bytes of `len` + `crc`.
pub(crate) const FRAME_HEADER: usize = 8;
/// Bytes of the index at the start of the payload.
pub(crate) const INDEX_BYTES: usize = 8;
/// The smallest possible frame: header plus index, no data.
pub(crate) const MIN_FRAME: usize = FRAME_HEADER + INDEX_BYTES;

/// CRC of a frame: over the little-endian length field, then the payload.
pub(crate) fn frame_crc(len_le: [u8; 4], index_le: [u8; 8], data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len_le);
    h.update(&index_le);
    h.update(data);
    h.finalize()
}

/// Total bytes a frame for `data_len` data bytes occupies on disk.
pub(crate) fn frame_len(data_len: usize) -> usize {
    MIN_FRAME + data_len
}

/// Appends the frame for `(index, data)` to `buf`. The caller has already
/// checked `data.len()` against the configured maximum (which is below
/// `u32::MAX - 8`), so the length always fits the `u32` field.
pub(crate) fn encode_into(buf: &mut Vec<u8>, index: u64, data: &[u8]) {
    let len = (INDEX_BYTES + data.len()) as u32;
    let len_le = len.to_le_bytes();
    let index_le = index.to_le_bytes();
    let crc = frame_crc(len_le, index_le, data);
    buf.reserve(frame_len(data.len()));
    buf.extend_from_slice(&len_le);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.extend_from_slice(&index_le);
    buf.extend_from_slice(data);
}

/// Why bytes at some offset are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Fewer bytes left than a frame header plus index.
    ShortHeader { available: usize },
    /// `len` is below the 8 bytes the index needs.
    LengthTooSmall { len: u32 },
    /// `len` is above the configured maximum.
    LengthTooLarge { len: u32, max: u64 },
    /// The frame runs past the end of the available bytes.
    Truncated { needed: usize, available: usize },
    /// The checksum does not match.
    Checksum { stored: u32, computed: u32 },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::ShortHeader { available } => {
                write!(f, "only {available} bytes left, less than a record header")
            }
            FrameError::LengthTooSmall { len } => write!(f, "record length {len} is below 8"),
            FrameError::LengthTooLarge { len, max } => {
                write!(f, "record length {len} exceeds the maximum {max}")
            }
            FrameError::Truncated { needed, available } => write!(
                f,
                "record needs {needed} bytes but only {available} are left"
            ),
            FrameError::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
        }
    }
}

/// A frame that decoded and checksummed correctly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decoded<'a> {
    pub index: u64,
    pub data: &'a [u8],
    /// Total bytes of the frame (header + payload).
    pub frame_len: usize,
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Decodes the frame at the start of `buf`. `max_payload` bounds `len`
/// (data limit + 8); anything above it is rejected before the checksum is
/// computed, so a corrupt length never makes us hash gigabytes.
/// Never panics, whatever the bytes.
pub(crate) fn decode(buf: &[u8], max_payload: u64) -> Result<Decoded<'_>, FrameError> {
    if buf.len() < MIN_FRAME {
        return Err(FrameError::ShortHeader {
            available: buf.len(),
        });
    }
    let len = read_u32(buf, 0);
    if (len as usize) < INDEX_BYTES {
        return Err(FrameError::LengthTooSmall { len });
    }
    if u64::from(len) > max_payload {
        return Err(FrameError::LengthTooLarge {
            len,
            max: max_payload,
        });
    }
    let total = FRAME_HEADER + len as usize;
    if buf.len() < total {
        return Err(FrameError::Truncated {
            needed: total,
            available: buf.len(),
        });
    }
    let stored = read_u32(buf, 4);
    let mut len_le = [0u8; 4];
    len_le.copy_from_slice(&buf[0..4]);
    let mut index_le = [0u8; 8];
    index_le.copy_from_slice(&buf[FRAME_HEADER..MIN_FRAME]);
    let data = &buf[MIN_FRAME..total];
    let computed = frame_crc(len_le, index_le, data);
    if stored != computed {
        return Err(FrameError::Checksum { stored, computed });
    }
    Ok(Decoded {
        index: read_u64(buf, FRAME_HEADER),
        data,
        frame_len: total,
    })
}

/// Sector size for [`never_synced`]: the unit a disk writes atomically.
const SECTOR: usize = 512;

/// Whether the bad frame at `at` shows the signature of bytes that never
/// reached the disk: an all-zero piece between sector boundaries inside the
/// span it claims (its length field if plausible, else up to the next
/// boundary). Appends overwrite zero-filled space, so after a power loss
/// an unsynced sector of the tail reads as zeros, while later sectors may
/// have been written back. Such a frame was never covered by a completed
/// fdatasync, and neither was anything written after it (a sync covers the
/// whole file), so nothing from it on was acknowledged. etcd's WAL uses
/// the same rule for torn entries.
pub(crate) fn never_synced(buf: &[u8], at: usize, max_payload: u64) -> bool {
    if at >= buf.len() {
        return false;
    }
    let claimed = (at + 4 <= buf.len())
        .then(|| read_u32(buf, at))
        .filter(|len| (*len as usize) >= INDEX_BYTES && u64::from(*len) <= max_payload)
        .map(|len| FRAME_HEADER + len as usize);
    let end = match claimed {
        Some(frame_len) => at.saturating_add(frame_len),
        None => (at / SECTOR + 1) * SECTOR,
    }
    .min(buf.len());
    let mut start = at;
    while start < end {
        let chunk_end = ((start / SECTOR + 1) * SECTOR).min(end);
        if buf[start..chunk_end].iter().all(|&b| b == 0) {
            return true;
        }
        start = chunk_end;
    }
    false
}

/// After a bad frame at `bad_at`, looks for any later offset where a *valid*
/// frame starts whose index could follow the bad one: in
/// `[min_index, min_index + 1 + (distance from bad_at) / 16]` (at most one
/// minimal frame per 16 bytes fits in between).
///
/// This is what separates a torn tail (garbage or zeros up to EOF: safe to cut,
/// those bytes were never acknowledged) from corruption in the middle of the
/// log (good, possibly acknowledged, records after a bad one: cutting would
/// silently drop them). The index window makes a false positive on random
/// bytes need a 2^-32 checksum collision on top of a plausible index, and
/// keeps the scan cheap: the checksum is computed only for candidates.
/// Returns the offset and index of the first such frame.
pub(crate) fn find_valid_after(
    buf: &[u8],
    bad_at: usize,
    min_index: u64,
    max_payload: u64,
) -> Option<(usize, u64)> {
    let mut pos = bad_at.checked_add(1)?;
    while pos + MIN_FRAME <= buf.len() {
        let remaining = (buf.len() - pos) as u64;
        let distance = (pos - bad_at) as u64;
        let len = read_u32(buf, pos);
        let idx = read_u64(buf, pos + FRAME_HEADER);
        let plausible_len = (len as usize) >= INDEX_BYTES
            && u64::from(len) <= max_payload
            && (FRAME_HEADER as u64 + u64::from(len)) <= remaining;
        let plausible_idx = idx >= min_index && idx - min_index <= distance / MIN_FRAME as u64 + 1;
        if plausible_len
            && plausible_idx
            && let Ok(d) = decode(&buf[pos..], max_payload)
        {
            return Some((pos, d.index));
        }
        pos += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_rejects_garbage() {
        let mut buf = Vec::new();
        encode_into(&mut buf, 7, b"hello");
        encode_into(&mut buf, 8, b"");
        let d = decode(&buf, 1024).unwrap();
        assert_eq!((d.index, d.data, d.frame_len), (7, &b"hello"[..], 21));
        let d2 = decode(&buf[21..], 1024).unwrap();
        assert_eq!((d2.index, d2.data.len()), (8, 0));
        // every truncation and every single-byte flip of the first frame is rejected
        for cut in 0..21 {
            assert!(decode(&buf[..cut], 1024).is_err());
        }
        for i in 0..21 {
            let mut b = buf[..21].to_vec();
            b[i] ^= 0x40;
            assert!(decode(&b, 1024).is_err(), "flip at {i} not detected");
        }
        assert!(matches!(
            decode(&buf, 4),
            Err(FrameError::LengthTooLarge { .. })
        ));
        assert_eq!(find_valid_after(&buf, 0, 7, 1024), Some((21, 8)));
        assert_eq!(find_valid_after(&buf, 0, 9, 1024), None);
        assert_eq!(find_valid_after(&[0u8; 100], 0, 0, 1024), None);
    }
}
