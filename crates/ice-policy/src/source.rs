//! The source text of a policy set (its `*.cedar` files and schema), read from a directory, and its stable hash.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::PolicyError;

/// File name of the Cedar schema inside a policy directory.
pub const SCHEMA_FILE: &str = "schema.cedarschema";

/// Extension of policy files inside a policy directory.
pub const POLICY_EXTENSION: &str = "cedar";

/// The source of a policy set: every `*.cedar` file (sorted by file name) and the schema text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySource {
    /// Policy files in file-name order.
    pub files: Vec<PolicyFile>,
    /// The text of `schema.cedarschema`.
    pub schema: String,
}

/// One `*.cedar` file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFile {
    /// The file name, e.g. `default.cedar` (no directory).
    pub name: String,
    /// The file's text.
    pub text: String,
}

impl PolicySource {
    /// Reads every `*.cedar` file (sorted by file name; subdirectories are ignored) and `schema.cedarschema` from
    /// `dir`.
    ///
    /// Errors: `ICE-E0606` when the directory cannot be read or holds no `*.cedar` file, `ICE-E0603` when the
    /// schema is missing, `ICE-E0601` when a policy file is not UTF-8.
    pub fn load_dir(dir: &Path) -> Result<PolicySource, PolicyError> {
        let dir_err = |message: String| PolicyError::Dir { path: dir.display().to_string(), message };
        let entries = std::fs::read_dir(dir).map_err(|e| dir_err(format!("cannot read the directory: {e}")))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| dir_err(format!("cannot list the directory: {e}")))?;
            let path = entry.path();
            let is_policy = path.extension().is_some_and(|x| x == POLICY_EXTENSION);
            if !is_policy || !path.is_file() {
                continue;
            }
            let name = entry
                .file_name()
                .into_string()
                .map_err(|n| dir_err(format!("the file name {} is not UTF-8", Path::new(&n).display())))?;
            names.push(name);
        }
        if names.is_empty() {
            return Err(dir_err(format!("no *.{POLICY_EXTENSION} policy file found")));
        }
        names.sort();
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            let bytes = std::fs::read(dir.join(&name)).map_err(|e| PolicyError::Dir {
                path: dir.join(&name).display().to_string(),
                message: e.to_string(),
            })?;
            let text = String::from_utf8(bytes).map_err(|e| PolicyError::Parse {
                file: name.clone(),
                location: None,
                snippet: None,
                message: format!("the file is not UTF-8 text ({e})"),
            })?;
            files.push(PolicyFile { name, text });
        }
        let schema_path = dir.join(SCHEMA_FILE);
        let schema = std::fs::read_to_string(&schema_path)
            .map_err(|e| PolicyError::Schema { message: format!("cannot read {}: {e}", schema_path.display()) })?;
        Ok(PolicySource { files, schema })
    }

    /// blake3 (hex) over an unambiguous encoding: a version tag, the number of files, each file's name and text
    /// (each prefixed with its length as 8 big-endian bytes), then the schema (length-prefixed). Stable across
    /// releases: the same source always has the same hash.
    pub fn hash(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"ice.policy-source.v1\n");
        h.update(&(self.files.len() as u64).to_be_bytes());
        for f in &self.files {
            for part in [&f.name, &f.text] {
                h.update(&(part.len() as u64).to_be_bytes());
                h.update(part.as_bytes());
            }
        }
        h.update(&(self.schema.len() as u64).to_be_bytes());
        h.update(self.schema.as_bytes());
        h.finalize().to_hex().to_string()
    }
}
