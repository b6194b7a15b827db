//! Who signs checkpoints, and where the key lives.
//!
//! By default the key is `.ice/keys/runtime.key`. `[runtime] signing_key` (or `ice init --signing-key`) moves it
//! out of the home, so that whoever can read or write the home — an agent's OS user, a compromised effect — cannot
//! re-sign a rewritten ledger:
//!
//! - `file:PATH` — a hex ed25519 seed in a file anywhere (make it readable only by the user that signs);
//! - `fd:N` — the same, read from an inherited file descriptor (e.g. a secret a supervisor passes in; a pipe can
//!   be read once, so use it for one long-running process);
//! - `command:PROGRAM ARGS…` — an external signer, run without a shell: `PROGRAM ARGS… public-key` prints the hex
//!   public key; `PROGRAM ARGS… sign` reads a hex message on stdin and prints the hex signature. `ice signer --key
//!   FILE` speaks this protocol, so `command:sudo -n -u ice-signer ice signer --key /etc/ice/ledger.key` keeps the
//!   key with another OS user altogether.
//!
//! A process that cannot read the key (permission denied) does not sign: it records and verifies as usual, and the
//! process that holds the key signs. Every signature from a command is verified before it is used.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier, VerifyingKey};
use ice_core::ErrorCode;
use ice_core::checkpoint::{from_hex, to_hex};

use crate::home::HomeError;

/// Where the signing key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySpec {
    /// A hex seed in a file.
    File(PathBuf),
    /// A hex seed on an inherited file descriptor.
    Fd(u32),
    /// An external signer: program and arguments.
    Command(Vec<String>),
}

fn bad(message: String) -> HomeError {
    HomeError::new(ErrorCode::BadConfig, message)
}

impl KeySpec {
    /// Parses `file:PATH`, `fd:N` or `command:PROGRAM ARGS…` (a relative PATH is taken from `base`).
    pub fn parse(spec: &str, base: &Path) -> Result<Self, HomeError> {
        let hint = "signing_key is file:PATH, fd:N or command:PROGRAM ARGS...";
        let (kind, rest) = spec.split_once(':').ok_or_else(|| bad(format!("`{spec}`: {hint}")))?;
        match kind {
            "file" if !rest.is_empty() => Ok(Self::File(base.join(rest))),
            "fd" => rest.parse().map(Self::Fd).map_err(|_| bad(format!("`{spec}`: fd:N takes a number"))),
            "command" => {
                let argv: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
                if argv.is_empty() {
                    return Err(bad(format!("`{spec}`: command: names no program")));
                }
                Ok(Self::Command(argv))
            }
            _ => Err(bad(format!("`{spec}`: {hint}"))),
        }
    }
}

/// Signs checkpoints.
#[derive(Clone)]
pub enum CheckpointSigner {
    /// A key in this process's memory.
    Local(SigningKey),
    /// An external signer (see the module docs).
    Command {
        /// Program and arguments.
        argv: Vec<String>,
        /// Its public key, as it reported it.
        public: VerifyingKey,
    },
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(_) => write!(f, "CheckpointSigner::Local({})", self.public_hex()),
            Self::Command { argv, .. } => write!(f, "CheckpointSigner::Command({argv:?}, {})", self.public_hex()),
        }
    }
}

impl From<SigningKey> for CheckpointSigner {
    fn from(key: SigningKey) -> Self {
        Self::Local(key)
    }
}

fn parse_seed(text: &str, from: &str) -> Result<SigningKey, HomeError> {
    let seed: [u8; 32] = from_hex(text.trim())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad(format!("{from} does not hold a 32-byte hex key")))?;
    Ok(SigningKey::from_bytes(&seed))
}

fn run(argv: &[String], verb: &str, input: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run the signer `{}`: {e}", argv[0]))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.unwrap_or("").as_bytes()).map_err(|e| format!("cannot write to the signer: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("the signer failed: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the signer `{}` {verb} exited with {}: {}",
            argv[0],
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl CheckpointSigner {
    /// Loads the signer `spec` names; `None` when this process may not read the key (it then does not sign).
    pub fn load(spec: &KeySpec) -> Result<Option<Self>, HomeError> {
        let read = |path: &Path| match std::fs::read_to_string(path) {
            Ok(text) => parse_seed(&text, &path.display().to_string()).map(Some),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied) => {
                Ok(None)
            }
            Err(e) => Err(bad(format!("cannot read the signing key {}: {e}", path.display()))),
        };
        match spec {
            KeySpec::File(path) => Ok(read(path)?.map(Self::Local)),
            KeySpec::Fd(n) => Ok(read(&PathBuf::from(format!("/dev/fd/{n}")))?.map(Self::Local)),
            KeySpec::Command(argv) => {
                // A signer this process may not run (e.g. `sudo -n` refusing an agent's OS user) means it does not
                // sign, like a key file it may not read.
                let Ok(text) = run(argv, "public-key", None) else { return Ok(None) };
                let bytes: [u8; 32] = from_hex(&text)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| bad(format!("the signer's public-key printed `{text}`, not a hex key")))?;
                let public = VerifyingKey::from_bytes(&bytes).map_err(|e| bad(format!("the signer's key: {e}")))?;
                Ok(Some(Self::Command { argv: argv.clone(), public }))
            }
        }
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; 32] {
        match self {
            Self::Local(k) => k.verifying_key().to_bytes(),
            Self::Command { public, .. } => public.to_bytes(),
        }
    }

    /// The public key, hex.
    pub fn public_hex(&self) -> String {
        to_hex(&self.public_key())
    }

    /// Signs `message`; a signature that does not verify with the public key is an error, never returned.
    pub fn sign(&self, message: &[u8]) -> Result<[u8; 64], String> {
        match self {
            Self::Local(k) => Ok(k.sign(message).to_bytes()),
            Self::Command { argv, public } => {
                let text = run(argv, "sign", Some(&to_hex(message)))?;
                let sig: [u8; 64] = from_hex(&text)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| format!("the signer printed `{text}`, not a hex signature"))?;
                public
                    .verify(message, &Signature::from_bytes(&sig))
                    .map_err(|_| "the signer's signature does not verify with its public key".to_owned())?;
                Ok(sig)
            }
        }
    }
}

/// `ice signer`: the signer protocol over a key file (`public-key`, or `sign` with the hex message on stdin).
pub fn serve_once(key: &Path, verb: &str, stdin: &str) -> Result<String, HomeError> {
    let text = std::fs::read_to_string(key).map_err(|e| bad(format!("cannot read {}: {e}", key.display())))?;
    let key = parse_seed(&text, &key.display().to_string())?;
    match verb {
        "public-key" => Ok(to_hex(key.verifying_key().as_bytes())),
        "sign" => {
            let message = from_hex(stdin.trim()).ok_or_else(|| bad("sign reads a hex message on stdin".into()))?;
            Ok(to_hex(&key.sign(&message).to_bytes()))
        }
        other => Err(bad(format!("unknown signer request `{other}` (public-key or sign)"))),
    }
}

/// Writes a fresh key (hex seed, mode 0600) at `path`, refusing to overwrite one; returns its signer.
pub fn create_key_file(path: &Path, seed: [u8; 32]) -> Result<CheckpointSigner, HomeError> {
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).map_err(|e| bad(format!("cannot create the signing key {}: {e}", path.display())))?;
    writeln!(f, "{}", to_hex(&seed)).map_err(|e| bad(format!("cannot write {}: {e}", path.display())))?;
    Ok(CheckpointSigner::Local(SigningKey::from_bytes(&seed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_specs_parse_or_say_what_they_take() {
        let base = Path::new("/home/x/.ice");
        assert_eq!(KeySpec::parse("file:k.key", base).unwrap(), KeySpec::File(base.join("k.key")));
        assert_eq!(KeySpec::parse("file:/etc/ice/k", base).unwrap(), KeySpec::File("/etc/ice/k".into()));
        assert_eq!(KeySpec::parse("fd:3", base).unwrap(), KeySpec::Fd(3));
        assert_eq!(
            KeySpec::parse("command:sudo -n -u signer ice signer", base).unwrap(),
            KeySpec::Command(["sudo", "-n", "-u", "signer", "ice", "signer"].map(String::from).to_vec())
        );
        for bad in ["", "file:", "fd:x", "command:", "command:   ", "vault:x", "/etc/ice/k"] {
            let e = KeySpec::parse(bad, base).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadConfig, "{bad}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_signer_whose_signature_does_not_verify_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let public = to_hex(SigningKey::from_bytes(&[5; 32]).verifying_key().as_bytes());
        let script = dir.path().join("liar");
        let zeros = "00".repeat(64);
        let body = format!(
            "#!/bin/sh\ncase \"$1\" in public-key) echo {public};; sign) cat >/dev/null; echo {zeros};; esac\n"
        );
        std::fs::write(&script, body).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let spec = KeySpec::Command(vec![script.display().to_string()]);
        let signer = CheckpointSigner::load(&spec).unwrap().expect("it answers public-key");
        assert_eq!(signer.public_hex(), public);
        let err = signer.sign(b"checkpoint").unwrap_err();
        assert!(err.contains("does not verify"), "{err}");
        let missing = KeySpec::Command(vec!["/nonexistent/signer".into()]);
        assert!(
            CheckpointSigner::load(&missing).unwrap().is_none(),
            "a signer it cannot run: this process does not sign"
        );
    }
}
