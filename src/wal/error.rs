//! The WAL's error type.
//!
//! One enum for every failure so that callers can tell "you called me wrong"
//! (`NonContiguous`, `RecordTooLarge`, `InvalidMetaName`,
//! `InvalidOptions`) from "the disk let us down" (`Io`, `Corrupt`) and from "an
//! earlier failure made the in-memory view untrustworthy" (`Poisoned`).
//! It converts into `std::io::Error` (openraft's storage errors wrap any
//! `std::error::Error`, and the durability callbacks take `io::Result`); the
//! conversion keeps the `WalError` as the inner error so it can be downcast.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong in the WAL.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An OS call failed. `context` says what the WAL was doing and on which path.
    #[error("wal: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// Bytes on disk do not form a valid log. Found at open (recovery) or when
    /// reading back a record. Recovery never "fixes" these; only a torn tail of
    /// the last segment is cut off, everything else stops the open so that an
    /// operator looks at the named file.
    #[error("wal: corrupt log in {} at offset {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },

    /// An append did not continue the log: records must carry consecutive
    /// indexes and the first must be `last_index + 1` when the log is non-empty.
    #[error("wal: append out of order: expected index {expected}, got {got}")]
    NonContiguous { expected: u64, got: u64 },

    /// A record is larger than `WalOptions::max_record_bytes`.
    #[error("wal: record {index} is {len} bytes, over the limit of {max} bytes")]
    RecordTooLarge { index: u64, len: usize, max: u32 },

    /// A metadata name that is not 1..=64 characters of `[A-Za-z0-9_-]`.
    #[error("wal: invalid metadata name {0:?} (use 1..=64 characters of [A-Za-z0-9_-])")]
    InvalidMetaName(String),

    /// A metadata blob larger than `WalOptions::max_record_bytes`.
    #[error("wal: metadata {name:?} is {len} bytes, over the limit of {max} bytes")]
    MetaTooLarge { name: String, len: usize, max: u32 },

    /// The log reached index `u64::MAX`; nothing can follow it.
    #[error("wal: log index space exhausted (u64::MAX reached)")]
    IndexOverflow,

    /// `WalOptions` that cannot work.
    #[error("wal: invalid options: {0}")]
    InvalidOptions(String),

    /// An fsync (or a write) failed earlier. After a failed fsync the kernel may
    /// have dropped dirty pages and cleared the error, so neither the page cache
    /// nor the file can be trusted: every later call fails with this error until
    /// the process reopens the WAL, which re-reads the files from disk.
    #[error(
        "wal: poisoned by an earlier failure ({0}); reopen the wal (restart) to recover from disk"
    )]
    Poisoned(Arc<str>),
}

impl WalError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        WalError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        WalError::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// The `io::ErrorKind` this error maps to.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            WalError::Io { source, .. } => source.kind(),
            WalError::Corrupt { .. } => io::ErrorKind::InvalidData,
            WalError::NonContiguous { .. }
            | WalError::RecordTooLarge { .. }
            | WalError::InvalidMetaName(_)
            | WalError::MetaTooLarge { .. }
            | WalError::IndexOverflow
            | WalError::InvalidOptions(_) => io::ErrorKind::InvalidInput,
            WalError::Poisoned(_) => io::ErrorKind::Other,
        }
    }
}

impl From<WalError> for io::Error {
    fn from(e: WalError) -> Self {
        io::Error::new(e.kind(), e)
    }
}

/// Shorthand used throughout the module.
pub type Result<T, E = WalError> = std::result::Result<T, E>;
