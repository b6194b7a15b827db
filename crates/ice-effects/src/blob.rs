//! The content-addressed blob store: prior file content kept for rollback, outputs kept as evidence.
//!
//! A blob lives at `<dir>/<first 2 hex>/<remaining 62 hex>` of its blake3 hash. Writes are atomic and durable;
//! reads re-hash the content, so a blob altered on disk is reported, never returned as if it were the original.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use ice_core::ErrorCode;

use crate::durable::{sync_dir, write_atomic};
use crate::{EffectError, content_hash};

/// A content-addressed store of byte strings under one directory, keyed by hex blake3.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    /// Opens (creating when missing) a blob store in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, EffectError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| {
            EffectError::new(ErrorCode::EffectFailed, format!("cannot create blob store {}: {e}", dir.display()))
        })?;
        Ok(Self { dir })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores `bytes` and returns their hex blake3 key. A no-op when the blob is already present.
    pub fn put(&self, bytes: &[u8]) -> Result<String, EffectError> {
        let hash = content_hash(bytes);
        let (shard, path) = self.locate(&hash);
        // An existing blob is kept only if it still holds this content; a torn or tampered one is rewritten,
        // since the true content is right here. Re-hashing is cheap next to the fsyncs a write costs.
        if let Ok(meta) = std::fs::symlink_metadata(&path)
            && meta.is_file()
            && meta.len() == bytes.len() as u64
            && std::fs::read(&path).is_ok_and(|stored| stored == bytes)
        {
            return Ok(hash);
        }
        let failed = |e: std::io::Error| {
            EffectError::new(
                ErrorCode::EffectFailed,
                format!("cannot store blob {hash} in {}: {e}", self.dir.display()),
            )
        };
        match std::fs::create_dir(&shard) {
            Ok(()) => sync_dir(&self.dir).map_err(failed)?,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(failed(e)),
        }
        write_atomic(&shard, &hash[2..], bytes, None, || Ok(())).map_err(failed)?;
        Ok(hash)
    }

    /// Reads the blob `hash`, verifying its content: a missing blob is `NotFound`, an altered one `EffectFailed`.
    pub fn get(&self, hash: &str) -> Result<Vec<u8>, EffectError> {
        check_hash(hash)?;
        let (_, path) = self.locate(hash);
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => {
                EffectError::new(ErrorCode::NotFound, format!("blob {hash} is not in the blob store"))
            }
            _ => EffectError::new(ErrorCode::EffectFailed, format!("cannot read blob {hash}: {e}")),
        })?;
        let actual = content_hash(&bytes);
        if actual != hash {
            return Err(EffectError::new(
                ErrorCode::EffectFailed,
                format!("blob {hash} is corrupt: its content hashes to {actual}"),
            ));
        }
        Ok(bytes)
    }

    /// Whether the blob `hash` is present (without verifying its content).
    pub fn contains(&self, hash: &str) -> Result<bool, EffectError> {
        check_hash(hash)?;
        let (_, path) = self.locate(hash);
        Ok(std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()))
    }

    /// The shard directory and file of a validated hash.
    fn locate(&self, hash: &str) -> (PathBuf, PathBuf) {
        let shard = self.dir.join(&hash[..2]);
        let path = shard.join(&hash[2..]);
        (shard, path)
    }
}

/// Whether `hash` is a well-formed key: 64 lowercase hex digits.
pub(crate) fn is_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Refuses anything but 64 lowercase hex digits, so a key can never be turned into another path.
pub(crate) fn check_hash(hash: &str) -> Result<(), EffectError> {
    if is_hash(hash) {
        Ok(())
    } else {
        let shown: String = hash.chars().take(80).collect();
        Err(EffectError::new(
            ErrorCode::BadArgument,
            format!("`{}` is not a blob hash (64 lowercase hex digits)", shown.escape_debug()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_round_trip_and_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("blobs")).unwrap();
        let hash = store.put(b"hello").unwrap();
        assert_eq!(hash, content_hash(b"hello"));
        assert!(dir.path().join("blobs").join(&hash[..2]).join(&hash[2..]).is_file());
        assert_eq!(store.get(&hash).unwrap(), b"hello");
        assert!(store.contains(&hash).unwrap());
        assert_eq!(store.put(b"hello").unwrap(), hash);
        assert_eq!(store.put(b"").unwrap(), content_hash(b""));
        assert_eq!(store.get(&content_hash(b"")).unwrap(), b"");
    }

    #[test]
    fn bad_hashes_are_refused_not_used_as_paths() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let upper = content_hash(b"x").to_uppercase();
        for bad in ["", "../../etc/passwd", "ab", &upper, &format!("{}/", &content_hash(b"x")[..63])] {
            assert_eq!(store.get(bad).unwrap_err().code, ErrorCode::BadArgument, "{bad}");
            assert_eq!(store.contains(bad).unwrap_err().code, ErrorCode::BadArgument, "{bad}");
        }
    }

    #[test]
    fn missing_is_not_found_and_corrupt_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let missing = content_hash(b"nope");
        assert_eq!(store.get(&missing).unwrap_err().code, ErrorCode::NotFound);
        assert!(!store.contains(&missing).unwrap());

        let hash = store.put(b"original").unwrap();
        std::fs::write(dir.path().join(&hash[..2]).join(&hash[2..]), b"tampered").unwrap();
        let err = store.get(&hash).unwrap_err();
        assert_eq!(err.code, ErrorCode::EffectFailed);
        assert!(err.message.contains(&hash), "{err}");
        // Same length, other bytes: put notices and heals it.
        store.put(b"original").unwrap();
        assert_eq!(store.get(&hash).unwrap(), b"original");
    }
}
