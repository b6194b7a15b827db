//! Secrets: `${secret:NAME}` references in args, the declared sources they name (`[effects.secrets]`), and their
//! resolution, which happens only inside an effector, at apply time, in HTTP header values and process
//! environment values.
//!
//! A proposal's args are recorded whole in the ledger, so a credential must never be an arg. The args carry the
//! reference; the permit is bound to the args *with* the reference (the args hash never sees a value); the value
//! is read from its source when the effect is applied and goes only onto the wire or into the child's
//! environment. It never enters a plan, evidence, an error message, a journal entry or a blob that ICE writes:
//! errors name the secret and its source, never the value.
//!
//! The references are checked in `plan` (well-formed, declared, only where they are resolved), so an undeclared
//! name is refused before anything starts; whether the source can actually be read is only known at apply time.
//! [`screen`] is the intake side: literal credentials refused before a proposal is recorded.

pub(crate) mod screen;

use std::collections::BTreeMap;
use std::env::VarError;
use std::fmt;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use ice_core::ErrorCode;

use crate::{EffectError, SecretSource};

/// What opens a reference; `}` closes it.
pub(crate) const OPEN: &str = "${secret:";

/// Longest secret name.
const MAX_NAME: usize = 64;

/// Largest secret file read, in bytes: a credential, not a data set.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Whether `name` can name a secret: 1 to 64 of `A-Z`, `0-9` and `_`.
pub(crate) fn is_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `s` has (or starts to have) a secret reference.
pub(crate) fn has_reference(s: &str) -> bool {
    s.contains(OPEN)
}

/// A part of a string arg: literal text or a reference to a secret by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// Literal text.
    Text(&'a str),
    /// `${secret:NAME}`: the name.
    Secret(&'a str),
}

/// Splits `value` into text and references; `None` when a `${secret:` does not open a well-formed reference (no
/// closing `}`, or a name that is not a secret name).
pub(crate) fn pieces(value: &str) -> Option<Vec<Piece<'_>>> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find(OPEN) {
        if start > 0 {
            out.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + OPEN.len()..];
        let end = after.find('}')?;
        let name = &after[..end];
        if !is_secret_name(name) {
            return None;
        }
        out.push(Piece::Secret(name));
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Some(out)
}

/// A value with secrets in it (a resolved secret, or a string with references substituted). Its `Debug` never
/// shows it, so a stray `{:?}` cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Revealed(String);

impl Revealed {
    /// The value itself: only for the wire or a child's environment.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Revealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The declared secrets and where their values come from. Values are not held: each resolution reads its source
/// again, so a rotated credential is used by the next effect.
#[derive(Debug, Clone, Default)]
pub(crate) struct Secrets {
    sources: Arc<BTreeMap<String, SecretSource>>,
}

impl Secrets {
    /// The secrets declared in `[effects.secrets]` (validated by [`crate::EffectsConfig::validate`]).
    pub(crate) fn new(sources: &BTreeMap<String, SecretSource>) -> Self {
        Self { sources: Arc::new(sources.clone()) }
    }

    /// Checks the references in `value`, the value of `field` (e.g. ``args.headers entry `Authorization` ``):
    /// each must be well-formed (`BadArgument`) and name a declared secret (`UnknownSecret`). True when there is
    /// at least one. Reads no source.
    pub(crate) fn check(&self, action: &str, field: &str, value: &str) -> Result<bool, EffectError> {
        if !has_reference(value) {
            return Ok(false);
        }
        let Some(pieces) = pieces(value) else {
            return Err(EffectError::new(
                ErrorCode::BadArgument,
                format!(
                    "{action}: {field} has a malformed secret reference; write ${{secret:NAME}} with NAME of 1 to \
                     64 of A-Z, 0-9 and _"
                ),
            ));
        };
        for piece in pieces {
            if let Piece::Secret(name) = piece
                && !self.sources.contains_key(name)
            {
                return Err(undeclared(action, field, name));
            }
        }
        Ok(true)
    }

    /// `value` with every reference replaced by its secret, read from its source now (`UnknownSecret` when it
    /// cannot be). Each secret read is added to `read` so the caller can keep it out of what it records.
    pub(crate) fn resolve(
        &self,
        action: &str,
        field: &str,
        value: &str,
        read: &mut Vec<Revealed>,
    ) -> Result<Revealed, EffectError> {
        if !has_reference(value) {
            return Ok(Revealed(value.to_owned()));
        }
        // `check` ran in `prepare`; a malformed value cannot reach here, but is refused rather than sent.
        self.check(action, field, value)?;
        let mut out = String::new();
        for piece in pieces(value).unwrap_or_default() {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Secret(name) => {
                    let secret = self.read(action, field, name)?;
                    out.push_str(secret.expose());
                    if !read.contains(&secret) {
                        read.push(secret);
                    }
                }
            }
        }
        Ok(Revealed(out))
    }

    /// Reads one secret from its source.
    fn read(&self, action: &str, field: &str, name: &str) -> Result<Revealed, EffectError> {
        let Some(source) = self.sources.get(name) else {
            return Err(undeclared(action, field, name));
        };
        let fail = |why: &str| {
            EffectError::new(
                ErrorCode::UnknownSecret,
                format!("{action}: secret `{name}` ({}) cannot be resolved: {why}", describe(source)),
            )
        };
        let value = match (&source.env, &source.file) {
            (Some(var), _) => match std::env::var(var) {
                Ok(value) => value,
                Err(VarError::NotPresent) => return Err(fail("it is not set in the runtime's environment")),
                Err(VarError::NotUnicode(_)) => return Err(fail("its value is not UTF-8")),
            },
            (None, Some(path)) => read_file(path).map_err(|why| fail(&why))?,
            (None, None) => return Err(fail("it has no source")),
        };
        if value.is_empty() {
            return Err(fail("its value is empty"));
        }
        Ok(Revealed(value))
    }
}

/// `value` with its `${secret:NAME}` references replaced by the secrets declared in `sources`, read now: for
/// configuration handed to a process ICE starts (an MCP upstream server's environment), never for anything
/// recorded. `what` names the value in errors (never the secret).
pub fn resolve_references(
    sources: &BTreeMap<String, SecretSource>,
    what: &str,
    value: &str,
) -> Result<String, EffectError> {
    let mut read = Vec::new();
    Secrets::new(sources).resolve("configuration", what, value, &mut read).map(|r| r.expose().to_owned())
}

/// A secret's source as named in messages: never its value.
pub(crate) fn describe(source: &SecretSource) -> String {
    match (&source.env, &source.file) {
        (Some(var), _) => format!("environment variable `{}`", var.escape_debug()),
        (None, Some(path)) => format!("file {}", path.display().to_string().escape_debug()),
        (None, None) => "no source".to_owned(),
    }
}

/// The content of a secret file, without trailing CR and LF. Refused: anything but a regular file, a mode giving
/// group or others any access (the value would be readable by more than the runtime's user), over 64 KiB, not
/// UTF-8. The checks are made on the opened file, so a swap after them changes nothing.
fn read_file(path: &Path) -> Result<String, String> {
    // O_NONBLOCK: opening a FIFO must not hang the effector; it is then refused as not a regular file.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("it cannot be opened: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("it cannot be inspected: {e}"))?;
    if !meta.is_file() {
        return Err("it is not a regular file".to_owned());
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "its mode is {mode:04o}, which gives group or others access; it must be 0600 or 0400 (chmod 600)"
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| format!("it cannot be read: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("it is larger than {MAX_FILE_BYTES} bytes"));
    }
    let text = String::from_utf8(bytes).map_err(|_| "its content is not UTF-8".to_owned())?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

fn undeclared(action: &str, field: &str, name: &str) -> EffectError {
    EffectError::new(
        ErrorCode::UnknownSecret,
        format!("{action}: {field} references secret `{name}`, which is not declared under [effects.secrets]"),
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn configuration_values_resolve_declared_references_only() {
        let var = "ICE_TEST_RESOLVE_REFERENCES";
        // Never set here: the resolving path is covered end to end (an MCP upstream's environment).
        let sources = BTreeMap::from([("TOKEN".to_owned(), SecretSource { env: Some(var.into()), file: None })]);
        assert_eq!(resolve_references(&sources, "env X", "plain").unwrap(), "plain");
        let err = resolve_references(&sources, "env X", "Bearer ${secret:TOKEN}").unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownSecret, "not set yet: {err}");
        assert!(!err.message.contains("Bearer"));
        assert_eq!(
            resolve_references(&sources, "env X", "${secret:OTHER}").unwrap_err().code,
            ErrorCode::UnknownSecret
        );
        assert_eq!(resolve_references(&sources, "env X", "${secret:bad").unwrap_err().code, ErrorCode::BadArgument);
    }

    #[test]
    fn secret_names() {
        for good in ["A", "GITHUB_TOKEN", "K8S_2", &"X".repeat(64)] {
            assert!(is_secret_name(good), "{good}");
        }
        for bad in ["", "a", "GitHub", "A-B", "A B", "A.B", &"X".repeat(65), "É"] {
            assert!(!is_secret_name(bad), "{bad}");
        }
    }

    #[test]
    fn values_split_into_text_and_references() {
        assert_eq!(pieces("plain"), Some(vec![Piece::Text("plain")]));
        assert_eq!(pieces(""), Some(vec![]));
        assert_eq!(pieces("Bearer ${secret:GH}"), Some(vec![Piece::Text("Bearer "), Piece::Secret("GH")]));
        assert_eq!(
            pieces("${secret:A}:${secret:B}}"),
            Some(vec![Piece::Secret("A"), Piece::Text(":"), Piece::Secret("B"), Piece::Text("}")])
        );
        // `${other}` and a lone `$` are text; only `${secret:` opens a reference.
        assert_eq!(pieces("${HOME} $x"), Some(vec![Piece::Text("${HOME} $x")]));
        for malformed in ["${secret:A", "${secret:}", "${secret:lower}", "${secret:A B}", "x${secret:${secret:A}}"] {
            assert_eq!(pieces(malformed), None, "{malformed}");
        }
    }

    fn secrets(entries: &[(&str, SecretSource)]) -> Secrets {
        Secrets::new(&entries.iter().map(|(n, s)| ((*n).to_owned(), s.clone())).collect())
    }

    fn file_source(path: &Path) -> SecretSource {
        SecretSource { env: None, file: Some(path.to_owned()) }
    }

    #[test]
    fn check_wants_well_formed_declared_references() {
        let s = secrets(&[("A", SecretSource { env: Some("ICE_TEST_UNSET_A".into()), file: None })]);
        assert_eq!(s.check("x", "f", "no reference"), Ok(false));
        assert_eq!(s.check("x", "f", "a ${secret:A} b"), Ok(true));
        assert_eq!(s.check("x", "f", "${secret:B}").unwrap_err().code, ErrorCode::UnknownSecret);
        assert_eq!(s.check("x", "f", "${secret:a}").unwrap_err().code, ErrorCode::BadArgument);
    }

    #[test]
    fn files_are_read_trimmed_and_only_when_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "line one\nvalue-1\r\n\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = secrets(&[("K", file_source(&path))]);
        let mut read = Vec::new();
        let resolved = s.resolve("x", "f", "[${secret:K}]", &mut read).unwrap();
        assert_eq!(resolved.expose(), "[line one\nvalue-1]");
        assert_eq!(read.len(), 1);
        assert_eq!(format!("{resolved:?}"), "[redacted]");

        for mode in [0o640, 0o604, 0o644, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = s.resolve("x", "f", "${secret:K}", &mut Vec::new()).unwrap_err();
            assert_eq!(err.code, ErrorCode::UnknownSecret);
            assert!(err.message.contains("secret `K` (file ") && err.message.contains("0600"), "{err}");
            assert!(!err.message.contains("value-1"), "{err}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(s.resolve("x", "f", "${secret:K}", &mut Vec::new()).is_ok());

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o600)).unwrap();
        let not_regular = dir.path().join("sub");
        std::fs::create_dir(&not_regular).unwrap();
        std::fs::set_permissions(&not_regular, std::fs::Permissions::from_mode(0o700)).unwrap();
        for (path, says) in
            [(dir.path().join("missing"), "cannot be opened"), (not_regular, "not a regular file"), (empty, "empty")]
        {
            let s = secrets(&[("K", file_source(&path))]);
            let err = s.resolve("x", "f", "${secret:K}", &mut Vec::new()).unwrap_err();
            assert_eq!(err.code, ErrorCode::UnknownSecret, "{err}");
            assert!(err.message.contains(says), "{err}");
        }
    }

    #[test]
    fn an_unset_variable_is_named_not_guessed() {
        let s = secrets(&[("A", SecretSource { env: Some("ICE_TEST_SURELY_UNSET_5E1".into()), file: None })]);
        let err = s.resolve("http.request", "f", "${secret:A}", &mut Vec::new()).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownSecret);
        assert_eq!(
            err.message,
            "http.request: secret `A` (environment variable `ICE_TEST_SURELY_UNSET_5E1`) cannot be resolved: it is \
             not set in the runtime's environment"
        );
    }
}
