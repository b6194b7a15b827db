//! The filesystem effector: reads, lists, writes, appends, deletes and restores files inside the sandbox.
//!
//! Every change is planned against the target's current content hash (`before`) and the hash it will have
//! (`expected_after`); the prior content goes into the blob store so rollback can put it back byte for byte.
//! Apply re-checks the target: already at `expected_after` means a retry of an applied effect (nothing is done),
//! still at `before` means apply now, anything else is a conflict. Writes are atomic (temp file + rename).
//!
//! Secret references (`${secret:NAME}`) are never resolved here and are refused anywhere in the args: content
//! written with one would be the reference text, not what the agent may think it is.

mod list;

use std::fs::Metadata;
use std::path::Path;

use ice_core::{Access, Classification, EffectScope, ErrorCode, Risk};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::blob::check_hash;
use crate::call::{no_effector, parse_args};
use crate::durable::{sync_dir, write_atomic};
use crate::sandbox::{Node, RelPath, Sandbox, io_failed, same_inode};
use crate::secrets::screen::refuse_references_outside;
use crate::{BlobStore, Compensation, EffectCall, EffectError, Effector, Evidence, Plan, RetryMode};
use crate::{check_args_hash, content_hash};

/// Largest file content the fs effector writes or reads, in bytes (16 MiB).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

const ACTIONS: &[&str] = &["fs.read", "fs.list", "fs.write", "fs.append", "fs.delete", "fs.restore"];

/// Where secret references are resolved (not here), as said in refusals.
const RESOLVED_IN: &str = "http.request header values and process.exec environment values";

/// The filesystem effector over one sandbox root.
#[derive(Debug, Clone)]
pub struct FsEffector {
    sandbox: Sandbox,
    blobs: BlobStore,
}

/// What a call asks for, with its args.
enum Op {
    Read,
    List,
    Write(String),
    Append(String),
    Delete,
    Restore(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathArgs {
    path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContentArgs {
    path: String,
    content: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreArgs {
    path: String,
    blob: String,
}

/// A validated call: the operation and its checked path.
struct Prepared {
    op: Op,
    rel: RelPath,
}

/// The target's state right now.
enum Current {
    Missing,
    File(Vec<u8>, Metadata),
    Dir,
}

impl Current {
    fn hash(&self) -> Option<String> {
        match self {
            Self::File(bytes, _) => Some(content_hash(bytes)),
            Self::Missing | Self::Dir => None,
        }
    }
}

impl FsEffector {
    /// An fs effector over `sandbox_root` (created when missing), keeping prior content in `blobs`.
    pub fn new(sandbox_root: &Path, blobs: BlobStore) -> Result<Self, EffectError> {
        Ok(Self { sandbox: Sandbox::new(sandbox_root)?, blobs })
    }

    /// The canonical sandbox root.
    pub fn sandbox_root(&self) -> &Path {
        self.sandbox.root()
    }

    /// Checks the args binding, parses the args and applies the lexical path rules; touches nothing.
    fn prepare(&self, call: &EffectCall<'_>) -> Result<Prepared, EffectError> {
        check_args_hash(call)?;
        let (op, path) = match call.action {
            "fs.read" | "fs.list" | "fs.delete" => {
                let args: PathArgs = parse_args(call)?;
                let op = match call.action {
                    "fs.read" => Op::Read,
                    "fs.list" => Op::List,
                    _ => Op::Delete,
                };
                (op, args.path)
            }
            "fs.write" | "fs.append" => {
                let args: ContentArgs = parse_args(call)?;
                check_limit(call.action, args.content.len() as u64)?;
                let op = if call.action == "fs.write" { Op::Write(args.content) } else { Op::Append(args.content) };
                (op, args.path)
            }
            "fs.restore" => {
                let args: RestoreArgs = parse_args(call)?;
                check_hash(&args.blob)?;
                (Op::Restore(args.blob), args.path)
            }
            other => return Err(no_effector("fs", other)),
        };
        refuse_references_outside(call.action, call.args, None, RESOLVED_IN)?;
        let expected = format!("file:{path}");
        if call.resource != expected {
            return Err(EffectError::new(
                ErrorCode::ResourceMismatch,
                format!("{}: resource `{}` does not name args.path; expected `{expected}`", call.action, call.resource),
            ));
        }
        // Only a listing may name the sandbox root itself (with an empty path).
        let rel = self.sandbox.check(&path, matches!(op, Op::List))?;
        Ok(Prepared { op, rel })
    }

    /// Reads the target's current state (the content of a file, up to the size limit).
    fn current(&self, rel: &RelPath) -> Result<Current, EffectError> {
        Ok(match self.sandbox.resolve(rel)? {
            Node::Missing => Current::Missing,
            Node::Dir(_) => Current::Dir,
            Node::File(meta) => {
                let bytes = self.sandbox.read_file(rel, &meta, MAX_FILE_BYTES)?;
                Current::File(bytes, meta)
            }
        })
    }

    /// What a write, append or restore puts in the file, given the prior content.
    fn new_content(&self, op: &Op, prior: &[u8]) -> Result<Vec<u8>, EffectError> {
        Ok(match op {
            Op::Write(content) => content.as_bytes().to_vec(),
            Op::Append(content) => {
                check_limit("fs.append", (prior.len() + content.len()) as u64)?;
                [prior, content.as_bytes()].concat()
            }
            Op::Restore(blob) => {
                let bytes = self.blobs.get(blob)?;
                check_limit("fs.restore", bytes.len() as u64)?;
                bytes
            }
            Op::Read | Op::List | Op::Delete => Vec::new(),
        })
    }

    fn plan_change(&self, p: &Prepared, path: &str) -> Result<Plan, EffectError> {
        let current = self.current(&p.rel)?;
        let (prior, before) = match &current {
            Current::Dir => return Err(is_dir(path, "a file")),
            Current::Missing if matches!(p.op, Op::Delete) => return Err(not_found(path)),
            Current::Missing => (Vec::new(), None),
            // The prior content is what rollback restores; keep it before anything changes.
            Current::File(bytes, _) => (bytes.clone(), Some(self.blobs.put(bytes)?)),
        };
        let compensation = match &before {
            Some(blob) => Compensation::RestoreFile { path: path.to_owned(), blob: blob.clone() },
            None => Compensation::DeleteFile { path: path.to_owned() },
        };
        let expected_after = match p.op {
            Op::Delete => None,
            _ => Some(content_hash(&self.new_content(&p.op, &prior)?)),
        };
        Ok(Plan {
            target: path.to_owned(),
            input_hash: input_hash(&p.op),
            before,
            expected_after,
            compensation,
            retry: RetryMode::StateCheck,
        })
    }

    /// Refuses a plan that does not belong to these args (a plan is data the runtime hands back; it must not be
    /// able to steer the effect anywhere else).
    fn check_plan(&self, call: &EffectCall<'_>, p: &Prepared, plan: &Plan) -> Result<(), EffectError> {
        let mut consistent = plan.target == p.rel.as_str()
            && plan.input_hash == input_hash(&p.op)
            && plan.retry == RetryMode::StateCheck;
        consistent &= match &p.op {
            Op::Write(content) => plan.expected_after.as_deref() == Some(content_hash(content.as_bytes()).as_str()),
            Op::Restore(blob) => plan.expected_after.as_deref() == Some(blob.as_str()),
            Op::Append(_) => plan.expected_after.is_some(),
            Op::Delete => plan.expected_after.is_none() && plan.before.is_some(),
            Op::Read | Op::List => true,
        };
        if consistent {
            Ok(())
        } else {
            Err(EffectError::new(
                ErrorCode::ArgsMismatch,
                format!("{}: the plan handed to apply was not made for these args", call.action),
            ))
        }
    }

    fn apply_change(&self, p: &Prepared, plan: &Plan) -> Result<Evidence, EffectError> {
        let path = p.rel.as_str();
        let current = self.current(&p.rel)?;
        let now = current.hash();
        let not_dir = !matches!(current, Current::Dir);
        if now == plan.expected_after && not_dir {
            // Already in the target state: a retry of an applied effect, or a change that changes nothing.
            return Ok(change_evidence(path, plan.expected_after.clone(), 0, true));
        }
        if now != plan.before || !not_dir {
            let seen = match &current {
                Current::Dir => "is now a directory".to_owned(),
                _ => format!("hashes to {}", now.as_deref().unwrap_or("nothing (absent)")),
            };
            return Err(EffectError::new(
                ErrorCode::EffectConflict,
                format!(
                    "`{}` changed since the effect was planned: it {seen}, expected {} before or {} after",
                    path.escape_debug(),
                    plan.before.as_deref().unwrap_or("absent"),
                    plan.expected_after.as_deref().unwrap_or("absent"),
                ),
            ));
        }
        let (parent, name) = self.sandbox.parent_and_name(&p.rel);
        if let Op::Delete = p.op {
            self.sandbox.recheck_parent(&p.rel).map_err(|e| io_failed(&p.rel, &e))?;
            std::fs::remove_file(parent.join(name)).map_err(|e| io_failed(&p.rel, &e))?;
            sync_dir(&parent).map_err(|e| io_failed(&p.rel, &e))?;
            return Ok(change_evidence(path, None, 0, false));
        }
        let (prior, permissions) = match current {
            Current::File(bytes, meta) => (bytes, Some(meta.permissions())),
            Current::Missing | Current::Dir => (Vec::new(), None),
        };
        let new = self.new_content(&p.op, &prior)?;
        let after = content_hash(&new);
        if plan.expected_after.as_deref() != Some(after.as_str()) {
            return Err(EffectError::new(
                ErrorCode::ArgsMismatch,
                format!("`{}`: the new content would hash to {after}, not to the planned hash", path.escape_debug()),
            ));
        }
        self.sandbox.create_parents(&p.rel)?;
        write_atomic(&parent, name, &new, permissions, || self.sandbox.recheck_parent(&p.rel))
            .map_err(|e| io_failed(&p.rel, &e))?;
        let written = match &p.op {
            Op::Append(content) => content.len(),
            _ => new.len(),
        };
        Ok(change_evidence(path, Some(after), written as u64, false))
    }

    fn apply_read(&self, p: &Prepared) -> Result<Evidence, EffectError> {
        let path = p.rel.as_str();
        let bytes = match self.current(&p.rel)? {
            Current::File(bytes, _) => bytes,
            Current::Missing => return Err(not_found(path)),
            Current::Dir => return Err(is_dir(path, "a file; use fs.list")),
        };
        let hash = content_hash(&bytes);
        let output_blob = if bytes.is_empty() { None } else { Some(self.blobs.put(&bytes)?) };
        Ok(Evidence {
            output_hash: hash.clone(),
            output_bytes: bytes.len() as u64,
            output_blob,
            after: Some(hash),
            bytes: bytes.len() as u64,
            detail: json!({ "path": path }),
            already_applied: false,
            tokens: None,
        })
    }

    /// Checks a listing target: it must be an existing real directory.
    fn list_target(&self, rel: &RelPath) -> Result<Metadata, EffectError> {
        match self.sandbox.resolve(rel)? {
            Node::Dir(meta) => Ok(meta),
            Node::Missing => Err(not_found(rel.as_str())),
            Node::File(_) => Err(EffectError::new(
                ErrorCode::BadArgument,
                format!("`{}` is a file, not a directory; use fs.read", rel.as_str().escape_debug()),
            )),
        }
    }

    fn apply_list(&self, p: &Prepared) -> Result<Evidence, EffectError> {
        let seen = self.list_target(&p.rel)?;
        let listing = list::list_dir(&self.sandbox.abs(&p.rel)).map_err(|e| io_failed(&p.rel, &e))?;
        // The directory was read by path; make sure it is still the one that was checked.
        if !same_inode(&self.list_target(&p.rel)?, &seen) {
            return Err(EffectError::new(
                ErrorCode::SandboxEscape,
                format!("`{}` changed while it was being listed", p.rel.as_str().escape_debug()),
            ));
        }
        let output = listing.canonical_output()?;
        let output_blob = self.blobs.put(output.as_bytes())?;
        Ok(Evidence {
            output_hash: content_hash(output.as_bytes()),
            output_bytes: output.len() as u64,
            output_blob: Some(output_blob),
            after: None,
            bytes: output.len() as u64,
            detail: listing.detail(p.rel.as_str()),
            already_applied: false,
            tokens: None,
        })
    }
}

impl Effector for FsEffector {
    fn name(&self) -> &'static str {
        "fs"
    }

    fn actions(&self) -> &'static [&'static str] {
        ACTIONS
    }

    fn classification(&self, action: &str) -> Option<Classification> {
        let (access, risk) = match action {
            "fs.read" | "fs.list" => (Access::Read, Risk::Low),
            "fs.write" | "fs.append" | "fs.restore" => (Access::Write, Risk::Medium),
            // Reversible through the blob store, but declared like the default catalog does.
            "fs.delete" => (Access::Irreversible, Risk::High),
            _ => return None,
        };
        Some(Classification { scope: EffectScope::External, access, risk })
    }

    fn screen(&self, action: &str, args: &Value) -> Result<(), EffectError> {
        if !ACTIONS.contains(&action) {
            return Ok(());
        }
        refuse_references_outside(action, args, None, RESOLVED_IN)
    }

    fn plan(&self, call: &EffectCall<'_>) -> Result<Plan, EffectError> {
        let p = self.prepare(call)?;
        let path = p.rel.as_str().to_owned();
        match p.op {
            Op::Read => {
                let before = match self.current(&p.rel)? {
                    Current::File(bytes, _) => content_hash(&bytes),
                    Current::Missing => return Err(not_found(&path)),
                    Current::Dir => return Err(is_dir(&path, "a file; use fs.list")),
                };
                Ok(read_plan(path, Some(before)))
            }
            Op::List => {
                self.list_target(&p.rel)?;
                Ok(read_plan(path, None))
            }
            Op::Write(_) | Op::Append(_) | Op::Delete | Op::Restore(_) => self.plan_change(&p, &path),
        }
    }

    fn apply(&self, call: &EffectCall<'_>, plan: &Plan) -> Result<Evidence, EffectError> {
        let p = self.prepare(call)?;
        self.check_plan(call, &p, plan)?;
        match p.op {
            Op::Read => self.apply_read(&p),
            Op::List => self.apply_list(&p),
            Op::Write(_) | Op::Append(_) | Op::Delete | Op::Restore(_) => self.apply_change(&p, plan),
        }
    }
}

fn read_plan(path: String, before: Option<String>) -> Plan {
    Plan {
        target: path,
        input_hash: content_hash(b""),
        before,
        expected_after: None,
        compensation: Compensation::Nothing,
        retry: RetryMode::StateCheck,
    }
}

/// What is written or sent: the content for write/append, the blob's content (= its hash) for restore, nothing
/// otherwise.
fn input_hash(op: &Op) -> String {
    match op {
        Op::Write(content) | Op::Append(content) => content_hash(content.as_bytes()),
        Op::Restore(blob) => blob.clone(),
        Op::Read | Op::List | Op::Delete => content_hash(b""),
    }
}

fn change_evidence(path: &str, after: Option<String>, bytes: u64, already_applied: bool) -> Evidence {
    Evidence {
        output_hash: content_hash(b""),
        output_bytes: 0,
        output_blob: None,
        after,
        bytes,
        detail: json!({ "path": path }),
        already_applied,
        tokens: None,
    }
}

fn check_limit(action: &str, len: u64) -> Result<(), EffectError> {
    if len > MAX_FILE_BYTES {
        return Err(EffectError::new(
            ErrorCode::EffectLimit,
            format!("{action}: the content would be {len} bytes; the limit is {MAX_FILE_BYTES}"),
        ));
    }
    Ok(())
}

fn not_found(path: &str) -> EffectError {
    EffectError::new(ErrorCode::NotFound, format!("`{}` does not exist in the sandbox", path.escape_debug()))
}

fn is_dir(path: &str, wanted: &str) -> EffectError {
    EffectError::new(ErrorCode::BadArgument, format!("`{}` is a directory, not {wanted}", path.escape_debug()))
}
