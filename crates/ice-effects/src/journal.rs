//! The effect journal: exactly-once for effects whose result cannot be recognised in the world afterwards
//! (processes, HTTP requests).
//!
//! Before the effect, `<key>.started` is created durably (`O_EXCL`, so two concurrent applies of one key cannot
//! both start). After it, `<key>.done` holds the evidence, or `<key>.failed` the error. A retry with a `.done`
//! returns the recorded evidence marked `already_applied`; with a `.failed` it returns the recorded error; with only
//! a `.started` the effect may or may not have happened, and that is reported (`OutcomeUnknown`), never guessed.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use ice_core::ErrorCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::durable::{create_new_durable, write_atomic};
use crate::{EffectCall, EffectError, Evidence};

/// Longest accepted idempotency key.
const MAX_KEY_LEN: usize = 64;

/// The journal directory.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

/// Whether an effect should run.
#[derive(Debug)]
pub enum Begin {
    /// Nothing recorded: `.started` is now written; run the effect and record its end.
    Fresh,
    /// Already completed: the recorded evidence, marked `already_applied`.
    Done(Evidence),
}

/// Which call a journal entry belongs to, so a key reused for other args is refused instead of answered.
#[derive(Debug, Serialize, Deserialize)]
struct Started {
    action: String,
    args_hash: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Done {
    action: String,
    args_hash: String,
    evidence: Evidence,
}

#[derive(Debug, Serialize, Deserialize)]
struct Failed {
    action: String,
    args_hash: String,
    code: String,
    message: String,
}

/// Codes an effector may record as a failure; anything else read back is reported as `EffectFailed`.
const RECORDABLE: [ErrorCode; 4] =
    [ErrorCode::EffectFailed, ErrorCode::EffectLimit, ErrorCode::OutcomeUnknown, ErrorCode::SandboxEscape];

impl Journal {
    /// Opens (creating when missing) the journal in `dir`.
    pub fn open(dir: &Path) -> Result<Self, EffectError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            EffectError::new(ErrorCode::EffectFailed, format!("cannot create effect journal {}: {e}", dir.display()))
        })?;
        Ok(Self { dir: dir.to_owned() })
    }

    /// Refuses a key that is not a safe file name (`[0-9A-Za-z-]{1,64}`, as a UUID is).
    pub(crate) fn check_key(key: &str) -> Result<(), EffectError> {
        if !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Ok(());
        }
        let shown: String = key.chars().take(80).collect();
        Err(EffectError::new(
            ErrorCode::BadArgument,
            format!("idempotency key `{}` must be 1–64 of [0-9A-Za-z-] (a UUID)", shown.escape_debug()),
        ))
    }

    fn path(&self, key: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{key}.{ext}"))
    }

    /// Looks the call up and, when nothing is recorded, durably records its start.
    pub fn begin(&self, call: &EffectCall<'_>) -> Result<Begin, EffectError> {
        let key = call.idempotency_key;
        Self::check_key(key)?;
        if let Some(done) = self.read::<Done>(key, "done")? {
            same_call(call, &done.action, &done.args_hash)?;
            return Ok(Begin::Done(Evidence { already_applied: true, ..done.evidence }));
        }
        if let Some(failed) = self.read::<Failed>(key, "failed")? {
            same_call(call, &failed.action, &failed.args_hash)?;
            let code = RECORDABLE.into_iter().find(|c| c.as_str() == failed.code).unwrap_or(ErrorCode::EffectFailed);
            return Err(EffectError::new(code, format!("(recorded by an earlier attempt) {}", failed.message)));
        }
        let started = Started { action: call.action.to_owned(), args_hash: call.args_hash.to_owned() };
        match create_new_durable(&self.path(key, "started"), &to_json(&started)?) {
            Ok(()) => Ok(Begin::Fresh),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                if let Some(started) = self.read::<Started>(key, "started")? {
                    same_call(call, &started.action, &started.args_hash)?;
                }
                Err(EffectError::new(
                    ErrorCode::OutcomeUnknown,
                    format!(
                        "{}: effect {key} was started but its end was never recorded (a crash, or another attempt \
                         still running); it may or may not have happened, so it is not run again",
                        call.action
                    ),
                ))
            }
            Err(e) => Err(journal_failed(key, &e)),
        }
    }

    /// Records the evidence of a completed effect.
    pub fn complete(&self, call: &EffectCall<'_>, evidence: &Evidence) -> Result<(), EffectError> {
        let done =
            Done { action: call.action.to_owned(), args_hash: call.args_hash.to_owned(), evidence: evidence.clone() };
        self.write(call.idempotency_key, "done", &to_json(&done)?)
    }

    /// Records the error of an effect that ran (or may have) and failed, so a retry reports the same failure.
    pub fn fail(&self, call: &EffectCall<'_>, error: &EffectError) -> Result<(), EffectError> {
        let failed = Failed {
            action: call.action.to_owned(),
            args_hash: call.args_hash.to_owned(),
            code: error.code.as_str().to_owned(),
            message: error.message.clone(),
        };
        self.write(call.idempotency_key, "failed", &to_json(&failed)?)
    }

    /// Forgets the start of an effect that certainly did not happen (it failed before reaching the world), so a
    /// retry may run it.
    pub fn abandon(&self, call: &EffectCall<'_>) -> Result<(), EffectError> {
        let path = self.path(call.idempotency_key, "started");
        std::fs::remove_file(&path).map_err(|e| journal_failed(call.idempotency_key, &e))?;
        crate::durable::sync_dir(&self.dir).map_err(|e| journal_failed(call.idempotency_key, &e))
    }

    fn write(&self, key: &str, ext: &str, bytes: &[u8]) -> Result<(), EffectError> {
        write_atomic(&self.dir, &format!("{key}.{ext}"), bytes, None, || Ok(())).map_err(|e| journal_failed(key, &e))
    }

    fn read<T: DeserializeOwned>(&self, key: &str, ext: &str) -> Result<Option<T>, EffectError> {
        let bytes = match std::fs::read(self.path(key, ext)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(journal_failed(key, &e)),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            EffectError::new(ErrorCode::OutcomeUnknown, format!("journal entry {key}.{ext} is unreadable: {e}"))
        })
    }
}

fn same_call(call: &EffectCall<'_>, action: &str, args_hash: &str) -> Result<(), EffectError> {
    if call.action == action && call.args_hash == args_hash {
        return Ok(());
    }
    Err(EffectError::new(
        ErrorCode::ArgsMismatch,
        format!(
            "idempotency key {} was already used for {action} with args hash {args_hash}; \
             a retry must carry exactly the same call",
            call.idempotency_key
        ),
    ))
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, EffectError> {
    serde_json::to_vec(value)
        .map_err(|e| EffectError::new(ErrorCode::EffectFailed, format!("cannot encode a journal entry: {e}")))
}

fn journal_failed(key: &str, e: &std::io::Error) -> EffectError {
    EffectError::new(ErrorCode::EffectFailed, format!("effect journal entry {key}: {e}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{OwnedCall, content_hash};

    fn evidence() -> Evidence {
        Evidence {
            output_hash: content_hash(b""),
            output_bytes: 0,
            output_blob: None,
            after: None,
            bytes: 0,
            detail: json!({"exit_code": 0}),
            already_applied: false,
            tokens: None,
        }
    }

    #[test]
    fn start_done_and_retry() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let owned = OwnedCall::new("process.exec", "process:true", json!({"argv": ["true"]}), "k-1").unwrap();
        assert!(matches!(journal.begin(&owned.call()).unwrap(), Begin::Fresh));
        // Started, not done: unknown.
        assert_eq!(journal.begin(&owned.call()).unwrap_err().code, ErrorCode::OutcomeUnknown);
        journal.complete(&owned.call(), &evidence()).unwrap();
        let Begin::Done(again) = journal.begin(&owned.call()).unwrap() else { panic!("not done") };
        assert!(again.already_applied);
        assert_eq!(again.detail, json!({"exit_code": 0}));

        let other = OwnedCall::new("process.exec", "process:true", json!({"argv": ["false"]}), "k-1").unwrap();
        assert_eq!(journal.begin(&other.call()).unwrap_err().code, ErrorCode::ArgsMismatch);
    }

    #[test]
    fn failures_are_replayed_and_abandoned_starts_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let owned = OwnedCall::new("http.request", "http://a", json!({}), "k-2").unwrap();
        assert!(matches!(journal.begin(&owned.call()).unwrap(), Begin::Fresh));
        journal.fail(&owned.call(), &EffectError::new(ErrorCode::EffectLimit, "too slow")).unwrap();
        let err = journal.begin(&owned.call()).unwrap_err();
        assert_eq!(err.code, ErrorCode::EffectLimit);
        assert!(err.message.contains("too slow"));

        let owned = OwnedCall::new("http.request", "http://a", json!({}), "k-3").unwrap();
        assert!(matches!(journal.begin(&owned.call()).unwrap(), Begin::Fresh));
        journal.abandon(&owned.call()).unwrap();
        assert!(matches!(journal.begin(&owned.call()).unwrap(), Begin::Fresh));
    }

    #[test]
    fn keys_must_be_safe_file_names() {
        for bad in ["", "../x", "a/b", "a.b", "a b", &"a".repeat(65)] {
            assert_eq!(Journal::check_key(bad).unwrap_err().code, ErrorCode::BadArgument, "{bad}");
        }
        Journal::check_key("0190a5b2-7c1d-7e3f-8a9b-0123456789ab").unwrap();
    }
}
