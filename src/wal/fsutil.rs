//! Small filesystem helpers shared by the WAL's files.

use std::fs::File;
use std::path::Path;

use super::error::{Result, WalError};

/// fsyncs a directory so that entries created, renamed or unlinked in it
/// survive a crash. On Linux a file's own fsync does not cover its name.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir)
        .map_err(|e| WalError::io(format!("open directory {} for fsync", dir.display()), e))?;
    d.sync_all()
        .map_err(|e| WalError::io(format!("fsync directory {}", dir.display()), e))
}
