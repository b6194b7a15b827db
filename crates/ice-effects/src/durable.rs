//! Durable file writes shared by the blob store, the journal and the fs effector: a temp file in the target's
//! own directory, fsynced, renamed over the target, then the directory fsynced — so a crash leaves either the old
//! or the new content, never a torn file, and the rename itself survives power loss.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Distinguishes temp files of concurrent writers in one process; the pid and time separate processes.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Prefix of temp files, so a leftover from a crash is recognisable (and never a valid blob or journal name).
pub(crate) const TEMP_PREFIX: &str = ".ice-tmp-";

/// A fresh temp file name for `dir`.
fn temp_path(dir: &Path) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    dir.join(format!("{TEMP_PREFIX}{}-{n}-{nanos}", std::process::id()))
}

/// Fsyncs a directory so entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `dir/name` atomically and durably. `permissions`, when given, are set on the new file before
/// it replaces the old one (the fs effector keeps a file's mode across a rewrite).
///
/// `check_before_rename` runs after the temp file is durable and right before the rename, so a caller can
/// re-verify that `dir` is still the directory it checked (the fs effector's symlink re-check).
pub(crate) fn write_atomic(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    permissions: Option<Permissions>,
    check_before_rename: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    let temp = temp_path(dir);
    // create_new is O_CREAT|O_EXCL: it never follows or reuses an existing entry, symlink or not.
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o644).open(&temp)?;
        file.write_all(bytes)?;
        if let Some(permissions) = permissions {
            file.set_permissions(permissions)?;
        }
        file.sync_all()?;
        drop(file);
        check_before_rename()?;
        std::fs::rename(&temp, dir.join(name))
    })();
    if let Err(e) = result {
        // Best effort: a leftover temp file is harmless (recognisable by its prefix), the error is what matters.
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Creates `path` with `bytes`, failing if it exists, and makes the file and its directory entry durable.
pub(crate) fn create_new_durable(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o644).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "f", b"one", None, || Ok(())).unwrap();
        write_atomic(dir.path(), "f", b"two", None, || Ok(())).unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failed_check_keeps_old_content_and_removes_temp() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "f", b"one", None, || Ok(())).unwrap();
        let err = write_atomic(dir.path(), "f", b"two", None, || Err(io::Error::other("moved"))).unwrap_err();
        assert_eq!(err.to_string(), "moved");
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"one");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
