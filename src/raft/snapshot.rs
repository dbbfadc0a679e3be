//! Snapshot files: the state machine's data at one log position, as Raft
//! sends it to lagging nodes and as `berth snapshot save` writes a backup.
//!
//! Format (all integers little-endian):
//!
//! ```text
//! "BERTHSNP" | format u8 (=1) | meta_len u32 | meta (postcard SnapshotMeta)
//! records:   tree tag u8 (1..) | key_len u32 | key | value_len u32 | value
//! trailer:   0u8 | record count u64 | crc32 u32 of every byte before it
//! ```
//!
//! The checksum covers the header too, and a reader verifies the whole file
//! before anything is restored from it, so a torn or corrupted snapshot is
//! refused instead of half-installed.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::raft::{SnapshotMeta, codec};
use crate::store::image::{DataTree, ImageRecord};

/// First bytes of every snapshot file.
pub const MAGIC: &[u8; 8] = b"BERTHSNP";
/// The snapshot format this berth writes and reads.
pub const FORMAT: u8 = 1;
/// Largest key a snapshot record may carry.
const MAX_KEY_BYTES: u32 = 64 * 1024;
/// Largest value a snapshot record may carry (a container under the 16 MiB message limit fits).
const MAX_VALUE_BYTES: u32 = 64 * 1024 * 1024;
/// Tag that ends the records.
const END_TAG: u8 = 0;

/// Writes a snapshot file, computing its checksum on the way.
pub struct SnapshotWriter<W: Write> {
    out: W,
    crc: crc32fast::Hasher,
    records: u64,
}

impl<W: Write> SnapshotWriter<W> {
    /// Starts a snapshot of the state at `meta`.
    pub fn new(out: W, meta: &SnapshotMeta) -> Result<Self> {
        let mut writer = SnapshotWriter {
            out,
            crc: crc32fast::Hasher::new(),
            records: 0,
        };
        let meta = codec::encode(meta)?;
        writer.put(MAGIC)?;
        writer.put(&[FORMAT])?;
        writer.put(&len_u32(meta.len())?.to_le_bytes())?;
        writer.put(&meta)?;
        Ok(writer)
    }

    /// Appends one record.
    pub fn record(&mut self, tree: DataTree, key: &[u8], value: &[u8]) -> Result<()> {
        self.put(&[tree as u8])?;
        self.put(&len_u32(key.len())?.to_le_bytes())?;
        self.put(key)?;
        self.put(&len_u32(value.len())?.to_le_bytes())?;
        self.put(value)?;
        self.records += 1;
        Ok(())
    }

    /// Writes the trailer and returns the underlying writer (not synced).
    pub fn finish(mut self) -> Result<W> {
        self.put(&[END_TAG])?;
        self.put(&self.records.to_le_bytes())?;
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.crc.update(bytes);
        self.out
            .write_all(bytes)
            .map_err(|e| Error::Internal(format!("writing snapshot: {e}")))
    }
}

fn len_u32(len: usize) -> Result<u32> {
    u32::try_from(len)
        .map_err(|_| Error::Internal(format!("snapshot field of {len} bytes is too large")))
}

/// Reads a snapshot file's records (after `verify` has checked it).
pub struct SnapshotReader<R: Read> {
    input: R,
    done: bool,
}

impl<R: Read> SnapshotReader<R> {
    /// Reads the header, returning the metadata and a reader positioned at the records.
    pub fn open(mut input: R) -> Result<(SnapshotMeta, SnapshotReader<R>)> {
        let mut magic = [0u8; 9];
        read_exact(&mut input, &mut magic)?;
        if &magic[..8] != MAGIC {
            return Err(Error::InvalidArgument(
                "not a berth snapshot (bad magic)".into(),
            ));
        }
        if magic[8] != FORMAT {
            return Err(Error::InvalidArgument(format!(
                "snapshot format {} is not supported (this berth reads format {FORMAT})",
                magic[8]
            )));
        }
        let meta_len = read_u32(&mut input)?;
        if meta_len > MAX_KEY_BYTES * 16 {
            return Err(Error::InvalidArgument(format!(
                "snapshot header claims {meta_len} bytes of metadata"
            )));
        }
        let mut meta = vec![0; meta_len as usize];
        read_exact(&mut input, &mut meta)?;
        Ok((codec::decode(&meta)?, SnapshotReader { input, done: false }))
    }

    fn next_record(&mut self) -> Result<Option<ImageRecord>> {
        let mut tag = [0u8; 1];
        read_exact(&mut self.input, &mut tag)?;
        if tag[0] == END_TAG {
            self.done = true;
            return Ok(None);
        }
        let tree = DataTree::from_tag(tag[0])?;
        let key = read_field(&mut self.input, MAX_KEY_BYTES)?;
        let value = read_field(&mut self.input, MAX_VALUE_BYTES)?;
        Ok(Some((tree, key.into(), value.into())))
    }
}

impl<R: Read> Iterator for SnapshotReader<R> {
    type Item = Result<ImageRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_record() {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

fn read_exact(input: &mut impl Read, buf: &mut [u8]) -> Result<()> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => Error::InvalidArgument("snapshot is truncated".into()),
        _ => Error::Internal(format!("reading snapshot: {e}")),
    })
}

fn read_u32(input: &mut impl Read) -> Result<u32> {
    let mut bytes = [0u8; 4];
    read_exact(input, &mut bytes)?;
    Ok(u32::from_le_bytes(bytes))
}

fn read_field(input: &mut impl Read, max: u32) -> Result<Vec<u8>> {
    let len = read_u32(input)?;
    if len > max {
        return Err(Error::InvalidArgument(format!(
            "snapshot record field of {len} bytes exceeds {max}"
        )));
    }
    let mut field = vec![0; len as usize];
    read_exact(input, &mut field)?;
    Ok(field)
}

/// Checks a whole snapshot file: structure, record count and checksum.
/// Returns its metadata and record count.
pub fn verify(file: &mut File) -> Result<(SnapshotMeta, u64)> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = CrcReader {
        inner: BufReader::new(&mut *file),
        crc: crc32fast::Hasher::new(),
    };
    let (meta, mut records) = SnapshotReader::open(&mut reader)?;
    let mut count = 0u64;
    for record in &mut records {
        record?;
        count += 1;
    }
    let mut trailer = [0u8; 8];
    read_exact(&mut reader, &mut trailer)?;
    if u64::from_le_bytes(trailer) != count {
        return Err(Error::InvalidArgument(format!(
            "snapshot trailer counts {} records, the file has {count}",
            u64::from_le_bytes(trailer)
        )));
    }
    let computed = reader.crc.clone().finalize();
    let stored = read_u32(&mut reader.inner)?;
    if computed != stored {
        return Err(Error::InvalidArgument(format!(
            "snapshot checksum mismatch: stored {stored:08x}, computed {computed:08x}"
        )));
    }
    let mut rest = [0u8; 1];
    if reader.inner.read(&mut rest)? != 0 {
        return Err(Error::InvalidArgument(
            "snapshot has trailing bytes after its checksum".into(),
        ));
    }
    file.seek(SeekFrom::Start(0))?;
    Ok((meta, count))
}

/// A reader that checksums what passes through it.
struct CrcReader<R> {
    inner: R,
    crc: crc32fast::Hasher,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

/// The snapshot directory of a node: at most one current snapshot, named by
/// the `current` pointer file, plus temporary files being built or received.
pub struct SnapshotDir {
    dir: PathBuf,
    /// Serializes changes of the current snapshot: a snapshot built from
    /// this node's store and one installed from the leader may finish at
    /// the same time.
    commit_lock: std::sync::Mutex<()>,
}

/// What became of a built snapshot ([`SnapshotDir::commit_built`]).
#[derive(Debug)]
pub enum Committed {
    /// It is the current snapshot now: its file, opened.
    Built(PathBuf, File),
    /// A newer snapshot was installed meanwhile and stays current: that one.
    Superseded(SnapshotMeta, PathBuf, File),
}

/// Name of the pointer file naming the current snapshot.
const CURRENT: &str = "current";

impl SnapshotDir {
    /// Opens the directory, removing temporary files a crash left behind.
    pub fn open(dir: &Path) -> Result<SnapshotDir> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(SnapshotDir {
            dir: dir.to_path_buf(),
            commit_lock: std::sync::Mutex::new(()),
        })
    }

    /// A fresh temporary file to build or receive a snapshot in.
    pub fn create_temp(&self) -> Result<(PathBuf, File)> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let path = self
            .dir
            .join(format!("incoming-{nanos}-{}.tmp", rand::random::<u32>()));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((path, file))
    }

    /// Makes a complete temporary snapshot file the current snapshot,
    /// durably, and deletes the previous one.
    pub fn commit(&self, temp: &Path, meta: &SnapshotMeta) -> Result<PathBuf> {
        let _changing = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.commit_locked(temp, meta)
    }

    /// Like `commit`, for a snapshot built from this node's store, unless
    /// the current snapshot is newer: then a snapshot from the leader was
    /// installed while this one was built (and the store restored from it,
    /// perhaps under the builder's feet), so the built file is discarded
    /// and the newer one returned. An install commits its file before it
    /// restores the store, so a build that commits first read an unchanged
    /// store. Returns the current snapshot, opened.
    pub fn commit_built(&self, temp: &Path, meta: &SnapshotMeta) -> Result<Committed> {
        let _changing = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((current, path, file)) = self.open_current()?
            && current.last_log_id > meta.last_log_id
        {
            std::fs::remove_file(temp)?;
            return Ok(Committed::Superseded(current, path, file));
        }
        let path = self.commit_locked(temp, meta)?;
        let file = File::open(&path)?;
        Ok(Committed::Built(path, file))
    }

    fn commit_locked(&self, temp: &Path, meta: &SnapshotMeta) -> Result<PathBuf> {
        File::open(temp)?.sync_all()?;
        let name = format!("{}.snap", sanitize(&meta.snapshot_id));
        let path = self.dir.join(&name);
        std::fs::rename(temp, &path)?;
        File::open(&self.dir)?.sync_all()?;
        let previous = self.current_path()?;
        fsutil::write_atomic(&self.dir.join(CURRENT), name.as_bytes())?;
        if let Some(previous) = previous.filter(|p| *p != path) {
            let _ = std::fs::remove_file(previous);
        }
        Ok(path)
    }

    /// The current snapshot's path, if there is one.
    pub fn current_path(&self) -> Result<Option<PathBuf>> {
        match std::fs::read_to_string(self.dir.join(CURRENT)) {
            Ok(name) => Ok(Some(self.dir.join(name.trim()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens the current snapshot and reads its metadata.
    pub fn open_current(&self) -> Result<Option<(SnapshotMeta, PathBuf, File)>> {
        let Some(path) = self.current_path()? else {
            return Ok(None);
        };
        let mut file = File::open(&path)
            .map_err(|e| Error::Internal(format!("opening snapshot {}: {e}", path.display())))?;
        let (meta, _) = SnapshotReader::open(BufReader::new(&file))?;
        file.seek(SeekFrom::Start(0))?;
        Ok(Some((meta, path, file)))
    }
}

/// A snapshot file as openraft streams it (its `SnapshotData`): an async
/// file that remembers its path, so that a received snapshot can be renamed
/// into place.
pub struct SnapshotFile {
    path: PathBuf,
    file: tokio::fs::File,
}

impl SnapshotFile {
    /// Wraps an open file.
    pub fn new(path: PathBuf, file: File) -> SnapshotFile {
        SnapshotFile {
            path,
            file: tokio::fs::File::from_std(file),
        }
    }

    /// The blocking file, once every pending write has finished.
    pub async fn into_std(self) -> (PathBuf, File) {
        (self.path, self.file.into_std().await)
    }
}

impl tokio::io::AsyncRead for SnapshotFile {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().file).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SnapshotFile {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().file).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().file).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().file).poll_shutdown(cx)
    }
}

impl tokio::io::AsyncSeek for SnapshotFile {
    fn start_seek(self: std::pin::Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        std::pin::Pin::new(&mut self.get_mut().file).start_seek(position)
    }

    fn poll_complete(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<u64>> {
        std::pin::Pin::new(&mut self.get_mut().file).poll_complete(cx)
    }
}

/// Keeps a snapshot id usable as a file name.
fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes a snapshot of `records` at `meta` into `out` (buffered).
pub fn write_snapshot(
    out: &mut File,
    meta: &SnapshotMeta,
    records: impl Iterator<Item = Result<ImageRecord>>,
) -> Result<()> {
    let mut writer = SnapshotWriter::new(BufWriter::new(&mut *out), meta)?;
    for record in records {
        let (tree, key, value) = record?;
        writer.record(tree, &key, &value)?;
    }
    writer.finish()?.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: None,
            last_membership: Default::default(),
            snapshot_id: "t-1".into(),
        }
    }

    fn sample(file: &mut File) {
        let records = vec![
            Ok((
                DataTree::Containers,
                b"ns\0a".to_vec().into(),
                b"\x01xyz".to_vec().into(),
            )),
            Ok((
                DataTree::Namespaces,
                b"ns".to_vec().into(),
                vec![0; 8].into(),
            )),
        ];
        write_snapshot(file, &meta(), records.into_iter()).unwrap();
    }

    /// A snapshot file at log index `index` in `snapshots`, not yet committed.
    fn temp_at(snapshots: &SnapshotDir, index: u64) -> (PathBuf, SnapshotMeta) {
        let meta = SnapshotMeta {
            last_log_id: Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(1, 1),
                index,
            )),
            last_membership: Default::default(),
            snapshot_id: format!("1-{index}"),
        };
        let (path, mut file) = snapshots.create_temp().unwrap();
        write_snapshot(&mut file, &meta, std::iter::empty()).unwrap();
        (path, meta)
    }

    #[test]
    fn a_built_snapshot_never_replaces_a_newer_installed_one() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = SnapshotDir::open(dir.path()).unwrap();
        let (installed, installed_meta) = temp_at(&snapshots, 50);
        let (built, built_meta) = temp_at(&snapshots, 40);
        snapshots.commit(&installed, &installed_meta).unwrap();
        let superseded = snapshots.commit_built(&built, &built_meta).unwrap();
        assert!(
            matches!(&superseded, Committed::Superseded(meta, _, _) if meta.snapshot_id == "1-50"),
            "{superseded:?}"
        );
        assert!(!built.exists(), "the discarded file is removed");
        let current = snapshots.open_current().unwrap().unwrap().0;
        assert_eq!(current.snapshot_id, "1-50");
        let (newer, newer_meta) = temp_at(&snapshots, 60);
        assert!(matches!(
            snapshots.commit_built(&newer, &newer_meta).unwrap(),
            Committed::Built(..)
        ));
        let current = snapshots.open_current().unwrap().unwrap().0;
        assert_eq!(current.snapshot_id, "1-60");
    }

    #[test]
    fn round_trip_and_verify() {
        let mut file = tempfile::tempfile().unwrap();
        sample(&mut file);
        let (read_meta, count) = verify(&mut file).unwrap();
        assert_eq!((read_meta.snapshot_id.as_str(), count), ("t-1", 2));
        let (_, records) = SnapshotReader::open(BufReader::new(&file)).unwrap();
        let records: Vec<_> = records.map(|r| r.unwrap()).collect();
        assert_eq!(records[0].0, DataTree::Containers);
        assert_eq!(&records[0].1[..], b"ns\0a");
        assert_eq!(records[1].0, DataTree::Namespaces);
    }

    #[test]
    fn every_corruption_and_truncation_is_refused() {
        let mut file = tempfile::tempfile().unwrap();
        sample(&mut file);
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut bytes).unwrap();
        for cut in 0..bytes.len() {
            let mut truncated = tempfile::tempfile().unwrap();
            truncated.write_all(&bytes[..cut]).unwrap();
            assert!(verify(&mut truncated).is_err(), "truncated at {cut}");
        }
        for flip in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[flip] ^= 0x40;
            let mut damaged = tempfile::tempfile().unwrap();
            damaged.write_all(&corrupt).unwrap();
            assert!(verify(&mut damaged).is_err(), "bit flip at {flip}");
        }
    }
}
