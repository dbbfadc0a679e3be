//! The in-memory offset index: for every record still on disk, which segment
//! file holds it and at which offset. Reads use it to `pread` records without
//! touching the writer; the writer updates it after each write.
//!
//! Cost: 16 bytes per record (offset + length) plus one open file per segment.

use std::fs::File;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;

/// Position of one record inside its segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    /// Byte offset of the frame (its length field) in the segment file.
    pub offset: u64,
    /// Total frame bytes, header included.
    pub len: u32,
}

#[cfg(test)]
impl Frame {
    /// Offset just past the frame.
    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

/// One segment file and the frames it holds. Frame `i` holds index `first + i`.
#[derive(Debug)]
pub(crate) struct SegIndex {
    pub first: u64,
    pub path: PathBuf,
    /// Shared with readers: a reader that looked up a frame keeps the file
    /// open even if a purge unlinks it meanwhile (Unix keeps the inode alive).
    pub file: Arc<File>,
    pub frames: Vec<Frame>,
}

impl SegIndex {
    /// Index the next record appended to this segment would carry.
    pub fn next(&self) -> u64 {
        self.first.saturating_add(self.frames.len() as u64)
    }

    /// Last index physically present, if any.
    pub fn last(&self) -> Option<u64> {
        (!self.frames.is_empty()).then(|| self.next() - 1)
    }
}

/// All segments in index order plus the purge point. Records at or below
/// `purged` are still physically present in a partly purged segment but are
/// logically gone: every accessor here hides them.
#[derive(Debug, Default)]
pub(crate) struct Index {
    pub segments: Vec<SegIndex>,
    pub purged: Option<u64>,
}

impl Index {
    fn physical_first(&self) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| !s.frames.is_empty())
            .map(|s| s.first)
    }

    fn physical_last(&self) -> Option<u64> {
        self.segments.iter().rev().find_map(|s| s.last())
    }

    /// Live (readable) range, or `None` when the log holds no live record.
    pub fn live(&self) -> Option<RangeInclusive<u64>> {
        let last = self.physical_last()?;
        let mut first = self.physical_first()?;
        if let Some(p) = self.purged {
            first = first.max(p.checked_add(1)?);
        }
        (first <= last).then_some(first..=last)
    }

    /// Segment position holding physical record `index`, if any.
    pub fn locate(&self, index: u64) -> Option<(usize, usize)> {
        let n = self.segments.partition_point(|s| s.first <= index);
        let si = n.checked_sub(1)?;
        let s = &self.segments[si];
        (index < s.next()).then(|| (si, (index - s.first) as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(first: u64, n: usize) -> SegIndex {
        let file = match File::open("/dev/null") {
            Ok(f) => Arc::new(f),
            Err(e) => panic!("{e}"),
        };
        SegIndex {
            first,
            path: PathBuf::new(),
            file,
            frames: (0..n)
                .map(|i| Frame {
                    offset: i as u64,
                    len: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn live_and_locate() {
        let mut ix = Index::default();
        assert_eq!(ix.live(), None);
        ix.segments = vec![seg(1, 3), seg(4, 2), seg(6, 0)];
        assert_eq!(ix.live(), Some(1..=5));
        assert_eq!(ix.locate(0), None);
        assert_eq!(ix.locate(1), Some((0, 0)));
        assert_eq!(ix.locate(4), Some((1, 0)));
        assert_eq!(ix.locate(5), Some((1, 1)));
        assert_eq!(ix.locate(6), None);
        ix.purged = Some(3);
        assert_eq!(ix.live(), Some(4..=5));
        ix.purged = Some(5);
        assert_eq!(ix.live(), None);
        ix.purged = Some(u64::MAX);
        assert_eq!(ix.live(), None);
    }
}
