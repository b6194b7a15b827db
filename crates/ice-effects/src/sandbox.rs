//! The filesystem sandbox: turns an untrusted relative path into a location under the sandbox root, or refuses it.
//!
//! Two layers. [`Sandbox::check`] is lexical: absolute paths, `.`/`..`/empty segments, control characters,
//! backslashes and over-long names or paths are refused before the filesystem is touched. [`Sandbox::resolve`]
//! then walks the path one component at a time with `symlink_metadata`, refusing a symlink anywhere — even one
//! pointing inside, because where a symlink points can change after it is checked. Opening re-checks: the final
//! component is opened with `O_NOFOLLOW`, the opened file's (device, inode) must be the one the walk saw, and
//! writes re-walk the parent right before their rename. That narrows the check-to-use window to a swap *and*
//! swap-back between two syscalls; closing it fully needs `openat`-style descriptors (a later hardening).

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, ErrorKind, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ice_core::ErrorCode;

use crate::EffectError;

/// Longest accepted path, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest accepted path component, in bytes (Linux `NAME_MAX`).
pub const MAX_NAME_BYTES: usize = 255;

/// The sandbox root, canonicalised once so that the root itself may be reached through a symlink (`/tmp` on some
/// systems) while nothing below it may.
#[derive(Debug, Clone)]
pub(crate) struct Sandbox {
    root: PathBuf,
}

/// A path that passed the lexical checks: its text and its components.
#[derive(Debug, Clone)]
pub(crate) struct RelPath {
    text: String,
    parts: Vec<String>,
}

impl RelPath {
    /// The path as given.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }
}

/// What a checked path names right now.
#[derive(Debug)]
pub(crate) enum Node {
    /// Nothing (the components before the missing one are real directories).
    Missing,
    /// A regular file.
    File(Metadata),
    /// A directory.
    Dir(Metadata),
}

impl Sandbox {
    /// Creates the root when missing and canonicalises it.
    pub(crate) fn new(root: &Path) -> Result<Self, EffectError> {
        let failed = |e: io::Error| {
            EffectError::new(ErrorCode::EffectFailed, format!("cannot prepare sandbox {}: {e}", root.display()))
        };
        std::fs::create_dir_all(root).map_err(failed)?;
        let root = std::fs::canonicalize(root).map_err(failed)?;
        if !root.is_dir() {
            return Err(EffectError::new(
                ErrorCode::BadConfig,
                format!("sandbox {} is not a directory", root.display()),
            ));
        }
        Ok(Self { root })
    }

    /// The canonical root.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The lexical checks. `allow_root` lets the empty path name the root itself.
    pub(crate) fn check(&self, path: &str, allow_root: bool) -> Result<RelPath, EffectError> {
        let shown = || {
            let head: String = path.chars().take(120).collect();
            let ellipsis = if head.len() < path.len() { "…" } else { "" };
            format!("`{}{ellipsis}`", head.escape_debug())
        };
        let escape = |why: &str| EffectError::new(ErrorCode::SandboxEscape, format!("path {} {why}", shown()));
        if path.is_empty() {
            if allow_root {
                return Ok(RelPath { text: String::new(), parts: Vec::new() });
            }
            return Err(escape("is empty; name a file relative to the sandbox root"));
        }
        if path.len() > MAX_PATH_BYTES {
            return Err(escape(&format!("is {} bytes; the limit is {MAX_PATH_BYTES}", path.len())));
        }
        if path.starts_with('/') {
            return Err(escape("is absolute; paths are relative to the sandbox root"));
        }
        if path.chars().any(char::is_control) {
            return Err(escape("contains a control character (NUL, newline, ...)"));
        }
        if path.contains('\\') {
            return Err(escape("contains a backslash"));
        }
        let mut parts = Vec::new();
        for part in path.split('/') {
            match part {
                "" => return Err(escape("has an empty segment (`//` or a trailing `/`)")),
                "." | ".." => return Err(escape("has a `.` or `..` segment")),
                _ if part.len() > MAX_NAME_BYTES => {
                    return Err(escape(&format!("has a {}-byte name; the limit is {MAX_NAME_BYTES}", part.len())));
                }
                _ => parts.push(part.to_owned()),
            }
        }
        Ok(RelPath { text: path.to_owned(), parts })
    }

    /// The absolute location of a checked path.
    pub(crate) fn abs(&self, rel: &RelPath) -> PathBuf {
        self.prefix(rel, rel.parts.len())
    }

    /// The parent directory of a checked, non-root path, and the final name.
    pub(crate) fn parent_and_name<'a>(&self, rel: &'a RelPath) -> (PathBuf, &'a str) {
        let n = rel.parts.len().saturating_sub(1);
        (self.prefix(rel, n), rel.parts.get(n).map_or("", String::as_str))
    }

    fn prefix(&self, rel: &RelPath, n: usize) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(&rel.parts[..n]);
        p
    }

    /// Walks the path component by component without following anything, refusing symlinks anywhere along it and
    /// anything that is neither a regular file nor a directory.
    pub(crate) fn resolve(&self, rel: &RelPath) -> Result<Node, EffectError> {
        let mut cur = self.root.clone();
        let mut meta = std::fs::symlink_metadata(&cur).map_err(|e| io_failed(rel, &e))?;
        for (i, part) in rel.parts.iter().enumerate() {
            cur.push(part);
            meta = match std::fs::symlink_metadata(&cur) {
                Ok(meta) => meta,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Node::Missing),
                Err(e) => return Err(io_failed(rel, &e)),
            };
            let at = rel.parts[..=i].join("/");
            let kind = meta.file_type();
            if kind.is_symlink() {
                return Err(EffectError::new(
                    ErrorCode::SandboxEscape,
                    format!("`{}` is a symlink; symlinks are refused inside the sandbox", at.escape_debug()),
                ));
            }
            let last = i + 1 == rel.parts.len();
            if !last && !kind.is_dir() {
                return Err(EffectError::new(
                    ErrorCode::BadArgument,
                    format!(
                        "`{}` is not a directory, so `{}` cannot exist",
                        at.escape_debug(),
                        rel.text.escape_debug()
                    ),
                ));
            }
            if !kind.is_dir() && !kind.is_file() {
                return Err(EffectError::new(
                    ErrorCode::BadArgument,
                    format!("`{}` is neither a regular file nor a directory", at.escape_debug()),
                ));
            }
            if kind.is_file() {
                check_single_link(&at, &meta)?;
            }
        }
        Ok(if meta.is_dir() { Node::Dir(meta) } else { Node::File(meta) })
    }

    /// Opens the regular file the walk found, without following a symlink swapped in since, and checks that it is
    /// the very file the walk saw.
    pub(crate) fn open_file(&self, rel: &RelPath, seen: &Metadata) -> Result<File, EffectError> {
        // O_NONBLOCK: a FIFO swapped in after the walk must not hang the open; no effect on regular files.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(self.abs(rel))
            .map_err(|e| if e.raw_os_error() == Some(libc::ELOOP) { swapped(rel) } else { io_failed(rel, &e) })?;
        let opened = file.metadata().map_err(|e| io_failed(rel, &e))?;
        if !same_inode(&opened, seen) {
            return Err(swapped(rel));
        }
        check_single_link(&rel.text, &opened)?;
        // The final component is pinned by the descriptor; re-walk so a directory swapped for a symlink while we
        // opened is noticed.
        match self.resolve(rel)? {
            Node::File(again) if same_inode(&again, seen) => Ok(file),
            _ => Err(swapped(rel)),
        }
    }

    /// Reads the whole regular file the walk found, refusing one over `limit` bytes with `EffectLimit`.
    pub(crate) fn read_file(&self, rel: &RelPath, seen: &Metadata, limit: u64) -> Result<Vec<u8>, EffectError> {
        check_size(rel, seen.len(), limit)?;
        let file = self.open_file(rel, seen)?;
        let mut bytes = Vec::new();
        // Read one byte past the limit to notice a file that grew since it was checked.
        file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| io_failed(rel, &e))?;
        check_size(rel, bytes.len() as u64, limit)?;
        Ok(bytes)
    }

    /// Creates the missing parent directories of a checked path (`mkdir -p` inside the sandbox), checking every
    /// component: an existing one must be a real directory, a created one is re-checked not to be a symlink.
    pub(crate) fn create_parents(&self, rel: &RelPath) -> Result<(), EffectError> {
        let mut cur = self.root.clone();
        let n = rel.parts.len().saturating_sub(1);
        for (i, part) in rel.parts[..n].iter().enumerate() {
            let parent = cur.clone();
            cur.push(part);
            let at = || rel.parts[..=i].join("/");
            match std::fs::create_dir(&cur) {
                Ok(()) => crate::durable::sync_dir(&parent).map_err(|e| io_failed(rel, &e))?,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_failed(rel, &e)),
            }
            let meta = std::fs::symlink_metadata(&cur).map_err(|e| io_failed(rel, &e))?;
            if meta.file_type().is_symlink() {
                return Err(EffectError::new(
                    ErrorCode::SandboxEscape,
                    format!("`{}` is a symlink; symlinks are refused inside the sandbox", at().escape_debug()),
                ));
            }
            if !meta.is_dir() {
                return Err(EffectError::new(
                    ErrorCode::BadArgument,
                    format!("`{}` is not a directory", at().escape_debug()),
                ));
            }
        }
        Ok(())
    }

    /// Re-walks the parent directories of a checked path right before a rename or unlink in them, so a directory
    /// swapped for a symlink since the first walk is refused instead of followed.
    pub(crate) fn recheck_parent(&self, rel: &RelPath) -> io::Result<()> {
        let n = rel.parts.len().saturating_sub(1);
        let parent = RelPath { text: rel.parts[..n].join("/"), parts: rel.parts[..n].to_vec() };
        match self.resolve(&parent) {
            Ok(Node::Dir(_)) => Ok(()),
            Ok(_) => Err(io::Error::other(format!("`{}` is no longer a directory", parent.text))),
            Err(e) => Err(io::Error::other(e.message)),
        }
    }
}

/// Whether two metadata describe the same inode.
pub(crate) fn same_inode(a: &Metadata, b: &Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// A regular file with more than one hard link may be the same inode as a file outside the sandbox (a link made
/// by anyone who can write both places): reading it would leak that file, writing it would change it. Refused.
fn check_single_link(at: &str, meta: &Metadata) -> Result<(), EffectError> {
    use std::os::unix::fs::MetadataExt;
    if meta.nlink() > 1 {
        return Err(EffectError::new(
            ErrorCode::SandboxEscape,
            format!(
                "`{}` has {} hard links; a hard-linked file may be a file outside the sandbox, so it is refused",
                at.escape_debug(),
                meta.nlink()
            ),
        ));
    }
    Ok(())
}

fn check_size(rel: &RelPath, len: u64, limit: u64) -> Result<(), EffectError> {
    if len > limit {
        return Err(EffectError::new(
            ErrorCode::EffectLimit,
            format!("`{}` is {len} bytes; the limit is {limit}", rel.text.escape_debug()),
        ));
    }
    Ok(())
}

fn swapped(rel: &RelPath) -> EffectError {
    EffectError::new(
        ErrorCode::SandboxEscape,
        format!(
            "`{}` changed while it was being opened (replaced by a symlink or another file)",
            rel.text.escape_debug()
        ),
    )
}

/// An I/O failure on a sandbox path.
pub(crate) fn io_failed(rel: &RelPath, e: &io::Error) -> EffectError {
    EffectError::new(ErrorCode::EffectFailed, format!("`{}`: {e}", rel.text.escape_debug()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_rules() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::new(dir.path()).unwrap();
        for good in ["a", "a/b.txt", "é/ü", "...", "a..b", ".hidden"] {
            sandbox.check(good, false).unwrap();
        }
        let long_name = "x".repeat(256);
        let long_path = "abcd/".repeat(1000) + "x";
        for bad in
            ["", "/a", "../a", "a/../b", "./a", "a/.", "a//b", "a/", "a\0b", "a\nb", "..\\a", &long_name, &long_path]
        {
            assert_eq!(sandbox.check(bad, false).unwrap_err().code, ErrorCode::SandboxEscape, "{bad:?}");
        }
        assert_eq!(sandbox.check("", true).unwrap().as_str(), "");
    }

    #[test]
    fn symlinks_anywhere_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::new(&dir.path().join("box")).unwrap();
        std::fs::create_dir(sandbox.root().join("real")).unwrap();
        std::fs::write(sandbox.root().join("real/f"), b"x").unwrap();
        std::os::unix::fs::symlink("real", sandbox.root().join("link")).unwrap();
        std::os::unix::fs::symlink("real/f", sandbox.root().join("flink")).unwrap();
        for bad in ["link", "link/f", "flink", "link/missing"] {
            let rel = sandbox.check(bad, false).unwrap();
            assert_eq!(sandbox.resolve(&rel).unwrap_err().code, ErrorCode::SandboxEscape, "{bad}");
        }
        let rel = sandbox.check("real/f", false).unwrap();
        let Node::File(meta) = sandbox.resolve(&rel).unwrap() else { panic!("not a file") };
        assert_eq!(sandbox.read_file(&rel, &meta, 10).unwrap(), b"x");
        assert_eq!(sandbox.read_file(&rel, &meta, 0).unwrap_err().code, ErrorCode::EffectLimit);
        let rel = sandbox.check("real/f/g", false).unwrap();
        assert_eq!(sandbox.resolve(&rel).unwrap_err().code, ErrorCode::BadArgument);
        let rel = sandbox.check("real/new/deeper", false).unwrap();
        assert!(matches!(sandbox.resolve(&rel).unwrap(), Node::Missing));
    }

    #[test]
    fn hard_linked_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::new(&dir.path().join("box")).unwrap();
        std::fs::write(dir.path().join("secret.txt"), b"outside").unwrap();
        std::fs::hard_link(dir.path().join("secret.txt"), sandbox.root().join("innocent.txt")).unwrap();
        let rel = sandbox.check("innocent.txt", false).unwrap();
        let err = sandbox.resolve(&rel).unwrap_err();
        assert_eq!(err.code, ErrorCode::SandboxEscape, "{}", err.message);
        assert!(err.message.contains("hard links"), "{}", err.message);
        // Once the outside link is gone the file is an ordinary single-link file again.
        std::fs::remove_file(dir.path().join("secret.txt")).unwrap();
        let Node::File(meta) = sandbox.resolve(&rel).unwrap() else { panic!("not a file") };
        assert_eq!(sandbox.read_file(&rel, &meta, 100).unwrap(), b"outside");
    }

    #[test]
    fn a_file_swapped_after_the_walk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::new(dir.path()).unwrap();
        std::fs::write(sandbox.root().join("f"), b"one").unwrap();
        let rel = sandbox.check("f", false).unwrap();
        let Node::File(meta) = sandbox.resolve(&rel).unwrap() else { panic!("not a file") };
        std::fs::remove_file(sandbox.root().join("f")).unwrap();
        std::fs::write(dir.path().join("outside"), b"secret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), sandbox.root().join("f")).unwrap();
        assert_eq!(sandbox.open_file(&rel, &meta).unwrap_err().code, ErrorCode::SandboxEscape);
    }
}
