//! Directory listings for `fs.list`: sorted entries, a bounded excerpt for the evidence detail (which lands in a
//! ledger event of at most 64 KiB) and the full listing as canonical JSON for the blob store.

use std::io;
use std::path::Path;

use ice_core::ErrorCode;
use serde::Serialize;
use serde_json::{Value, json};

use crate::EffectError;

/// Entries beyond this are not listed at all (the listing is marked truncated).
const MAX_ENTRIES: usize = 100_000;
/// Entries shown in the evidence detail; the blob holds the rest.
const MAX_DETAIL_ENTRIES: usize = 256;

/// One directory entry, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Entry {
    name: String,
    kind: &'static str,
    bytes: u64,
}

/// A directory's entries, sorted by name.
#[derive(Debug)]
pub(crate) struct Listing {
    entries: Vec<Entry>,
    truncated: bool,
}

/// Lists `dir` without following symlinks: a symlink is reported as `symlink`, never as what it points to.
pub(crate) fn list_dir(dir: &Path) -> io::Result<Listing> {
    let mut entries = Vec::new();
    let mut truncated = false;
    for entry in std::fs::read_dir(dir)? {
        if entries.len() == MAX_ENTRIES {
            truncated = true;
            break;
        }
        let entry = entry?;
        // DirEntry::metadata does not traverse symlinks.
        let meta = entry.metadata()?;
        let kind = meta.file_type();
        let (kind, bytes) = if kind.is_symlink() {
            ("symlink", 0)
        } else if kind.is_dir() {
            ("dir", 0)
        } else if kind.is_file() {
            ("file", meta.len())
        } else {
            ("other", 0)
        };
        entries.push(Entry { name: entry.file_name().to_string_lossy().into_owned(), kind, bytes });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Listing { entries, truncated })
}

impl Listing {
    /// The whole listing as RFC 8785 JSON `{"entries":[...],"truncated":bool}`, so its hash does not depend on
    /// serde_json's map ordering.
    pub(crate) fn canonical_output(&self) -> Result<String, EffectError> {
        let value = json!({ "entries": self.entries, "truncated": self.truncated });
        serde_json_canonicalizer::to_string(&value)
            .map_err(|e| EffectError::new(ErrorCode::EffectFailed, format!("cannot encode the listing: {e}")))
    }

    /// The evidence detail: the first entries, the total and whether anything was left out.
    pub(crate) fn detail(&self, path: &str) -> Value {
        let shown = &self.entries[..self.entries.len().min(MAX_DETAIL_ENTRIES)];
        json!({
            "path": path,
            "entries": shown,
            "total": self.entries.len(),
            "truncated": self.truncated || shown.len() < self.entries.len(),
        })
    }
}
