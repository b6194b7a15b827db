//! `[effects]` configuration: the sandbox root, the process and HTTP allowlists and limits, and the declared
//! secret sources.
//!
//! Everything defaults to refusing: no program, environment variable, host or secret is allowed until listed. The
//! defaults are documented in the crate docs; [`EffectsConfig::validate`] refuses entries that could never match
//! or would be ambiguous, so a typo is reported at startup instead of silently allowing nothing.
//!
//! `[effects.secrets.NAME]` declares where a secret's value comes from; the config holds only the source (an
//! environment variable name or a file path), never the value, which is read by the effector at apply time:
//!
//! ```toml
//! [effects.secrets.GITHUB_TOKEN]
//! env = "GITHUB_TOKEN"             # the runtime's environment variable, read when the secret is resolved
//! [effects.secrets.DEPLOY_KEY]
//! file = "/etc/ice/deploy.key"     # an absolute path to a regular file of mode 0600 or 0400
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use ice_core::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::EffectError;
use crate::http::{is_token, parse_host_port};
use crate::secrets::is_secret_name;

/// The `[effects]` table of `.ice/config.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EffectsConfig {
    /// Root of the filesystem sandbox; a relative path is resolved against the project dir. Default `sandbox`.
    pub sandbox: PathBuf,
    /// The process effector.
    pub process: ProcessConfig,
    /// The HTTP effector.
    pub http: HttpConfig,
    /// Declared secrets, by name (`[A-Z0-9_]{1,64}`): what `${secret:NAME}` in an HTTP header value or a process
    /// environment value resolves to at apply time. Default empty: every reference is refused.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretSource>,
}

impl Default for EffectsConfig {
    fn default() -> Self {
        Self {
            sandbox: PathBuf::from("sandbox"),
            process: ProcessConfig::default(),
            http: HttpConfig::default(),
            secrets: BTreeMap::new(),
        }
    }
}

/// `[effects.secrets.NAME]`: where a secret's value is read from when an effector resolves a reference to it.
/// Exactly one of `env` and `file` is set ([`EffectsConfig::validate`] refuses both and neither).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// An environment variable of the runtime process, read at each resolution (so a rotated value is picked up
    /// by the next effect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// An absolute path to a regular file whose mode gives no access to group or others (0600 or 0400), read at
    /// each resolution; trailing CR and LF characters are dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// `[effects.process]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessConfig {
    /// Programs allowed as `argv[0]`, matched exactly: bare names (run from `/usr/bin` or `/bin`) or absolute
    /// paths. Default empty: nothing may run.
    pub allow: Vec<String>,
    /// Environment variable names a call may set through `args.env`. The child otherwise gets a clean environment
    /// with only `PATH=/usr/bin:/bin`. Default empty.
    pub env_allow: Vec<String>,
    /// Wall-clock limit; the process group is killed when it is reached. Default 10 000.
    pub timeout_ms: u64,
    /// Bytes of stdout and of stderr kept (each); the rest is read and discarded. Default 1 MiB.
    pub max_output_bytes: u64,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        Self { allow: Vec::new(), env_allow: Vec::new(), timeout_ms: 10_000, max_output_bytes: 1024 * 1024 }
    }
}

/// `[effects.http]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Hosts allowed, as exact `host:port` (e.g. `127.0.0.1:8080`). Default empty.
    pub allow_hosts: Vec<String>,
    /// Methods allowed (case-insensitive). Default `GET`, `HEAD`.
    pub allow_methods: Vec<String>,
    /// Limit for connecting plus the whole exchange. Default 10 000.
    pub timeout_ms: u64,
    /// Largest request body. Default 1 MiB.
    pub max_request_bytes: u64,
    /// Largest response body kept; a longer one is cut and marked truncated. Default 4 MiB.
    pub max_response_bytes: u64,
    /// Header names (case-insensitive) whose values are recorded as `[redacted]`.
    /// Default `authorization`, `cookie`, `set-cookie`, `proxy-authorization`, `x-api-key`.
    pub redact_headers: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            allow_hosts: Vec::new(),
            allow_methods: vec!["GET".to_owned(), "HEAD".to_owned()],
            timeout_ms: 10_000,
            max_request_bytes: 1024 * 1024,
            max_response_bytes: 4 * 1024 * 1024,
            redact_headers: ["authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key"]
                .map(str::to_owned)
                .to_vec(),
        }
    }
}

impl EffectsConfig {
    /// Refuses (with `BadConfig`) entries that can never match, zero limits, empty sandbox paths and secrets whose
    /// name or source is malformed.
    pub fn validate(&self) -> Result<(), EffectError> {
        if self.sandbox.as_os_str().is_empty() {
            return Err(bad("effects.sandbox must not be empty"));
        }
        let p = &self.process;
        for program in &p.allow {
            let bare = !program.is_empty() && !program.contains('/');
            if !(bare || program.starts_with('/')) || program.contains('\0') {
                return Err(bad(format!(
                    "effects.process.allow entry `{}` must be a bare program name or an absolute path",
                    program.escape_debug()
                )));
            }
        }
        for name in &p.env_allow {
            if !is_env_name(name) {
                return Err(bad(format!(
                    "effects.process.env_allow entry `{}` is not an environment variable name",
                    name.escape_debug()
                )));
            }
        }
        let h = &self.http;
        for host in &h.allow_hosts {
            match parse_host_port(host) {
                Some(normal) if normal == host.to_ascii_lowercase() => {}
                _ => {
                    return Err(bad(format!(
                        "effects.http.allow_hosts entry `{}` must be host:port, e.g. 127.0.0.1:8080",
                        host.escape_debug()
                    )));
                }
            }
        }
        for method in &h.allow_methods {
            if !is_token(method) {
                return Err(bad(format!(
                    "effects.http.allow_methods entry `{}` is not a method",
                    method.escape_debug()
                )));
            }
        }
        for name in &h.redact_headers {
            if !is_token(name) {
                return Err(bad(format!(
                    "effects.http.redact_headers entry `{}` is not a header name",
                    name.escape_debug()
                )));
            }
        }
        for (name, source) in &self.secrets {
            validate_secret(name, source)?;
        }
        let limits = [
            ("effects.process.timeout_ms", p.timeout_ms),
            ("effects.process.max_output_bytes", p.max_output_bytes),
            ("effects.http.timeout_ms", h.timeout_ms),
            ("effects.http.max_request_bytes", h.max_request_bytes),
            ("effects.http.max_response_bytes", h.max_response_bytes),
        ];
        for (key, value) in limits {
            if value == 0 {
                return Err(bad(format!("{key} must be greater than 0")));
            }
        }
        Ok(())
    }
}

/// One `[effects.secrets.NAME]` entry: a valid name and exactly one well-formed source. Whether the source can be
/// read is checked when a secret is resolved, not here: the file may be provisioned after the runtime starts.
fn validate_secret(name: &str, source: &SecretSource) -> Result<(), EffectError> {
    if !is_secret_name(name) {
        return Err(bad(format!(
            "effects.secrets name `{}` must be 1 to 64 of A-Z, 0-9 and _ (it is referenced as ${{secret:NAME}})",
            name.escape_debug()
        )));
    }
    match (&source.env, &source.file) {
        (Some(_), Some(_)) => {
            Err(bad(format!("effects.secrets.{name} sets both env and file; give exactly one source")))
        }
        (None, None) => {
            Err(bad(format!("effects.secrets.{name} has no source; give env = \"VAR\" or file = \"/absolute/path\"")))
        }
        (Some(var), None) if !is_env_name(var) => {
            Err(bad(format!("effects.secrets.{name}.env `{}` is not an environment variable name", var.escape_debug())))
        }
        (None, Some(path)) if !path.is_absolute() || path.as_os_str().as_encoded_bytes().contains(&0) => {
            Err(bad(format!(
                "effects.secrets.{name}.file `{}` must be an absolute path",
                path.display().to_string().escape_debug()
            )))
        }
        _ => Ok(()),
    }
}

/// Whether `name` can be an environment variable name: non-empty, no `=` and no NUL.
pub(crate) fn is_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0'])
}

fn bad(message: impl Into<String>) -> EffectError {
    EffectError::new(ErrorCode::BadConfig, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        effects: EffectsConfig,
    }

    #[test]
    fn empty_table_gives_defaults() {
        let file: File = toml::from_str("[effects]\n").unwrap();
        assert_eq!(file.effects, EffectsConfig::default());
        assert_eq!(file.effects.sandbox, PathBuf::from("sandbox"));
        assert_eq!(file.effects.process.timeout_ms, 10_000);
        assert_eq!(file.effects.http.allow_methods, ["GET", "HEAD"]);
        assert_eq!(file.effects.http.max_response_bytes, 4 * 1024 * 1024);
        file.effects.validate().unwrap();
    }

    #[test]
    fn keys_parse_and_unknown_keys_are_refused() {
        let text = r#"
            [effects]
            sandbox = "/srv/box"
            [effects.process]
            allow = ["echo", "/bin/sh"]
            env_allow = ["LANG"]
            timeout_ms = 500
            [effects.http]
            allow_hosts = ["127.0.0.1:8080"]
            allow_methods = ["get", "POST"]
        "#;
        let file: File = toml::from_str(text).unwrap();
        assert_eq!(file.effects.process.allow, ["echo", "/bin/sh"]);
        assert_eq!(file.effects.process.max_output_bytes, 1024 * 1024);
        assert_eq!(file.effects.http.timeout_ms, 10_000);
        file.effects.validate().unwrap();

        assert!(toml::from_str::<File>("[effects]\nsandbx = \"x\"\n").is_err());
        assert!(toml::from_str::<File>("[effects.process]\nallowed = []\n").is_err());
        assert!(toml::from_str::<File>("[effects.http]\nhosts = []\n").is_err());
    }

    #[test]
    fn validate_refuses_entries_that_cannot_match() {
        let mut c = EffectsConfig::default();
        c.process.allow = vec!["./run.sh".to_owned()];
        assert_eq!(c.validate().unwrap_err().code, ErrorCode::BadConfig);

        let mut c = EffectsConfig::default();
        c.process.env_allow = vec!["A=B".to_owned()];
        assert_eq!(c.validate().unwrap_err().code, ErrorCode::BadConfig);

        for host in ["example.com", "http://example.com:80", "a:0", "a:99999", ""] {
            let mut c = EffectsConfig::default();
            c.http.allow_hosts = vec![host.to_owned()];
            assert_eq!(c.validate().unwrap_err().code, ErrorCode::BadConfig, "{host}");
        }

        let mut c = EffectsConfig::default();
        c.http.timeout_ms = 0;
        assert_eq!(c.validate().unwrap_err().code, ErrorCode::BadConfig);
    }

    #[test]
    fn secrets_parse_from_env_or_file_sources() {
        let text = r#"
            [effects.secrets.GITHUB_TOKEN]
            env = "GITHUB_TOKEN"
            [effects.secrets.DEPLOY_KEY]
            file = "/etc/ice/deploy.key"
        "#;
        let file: File = toml::from_str(text).unwrap();
        let secrets = &file.effects.secrets;
        assert_eq!(secrets["GITHUB_TOKEN"], SecretSource { env: Some("GITHUB_TOKEN".into()), file: None });
        assert_eq!(secrets["DEPLOY_KEY"], SecretSource { env: None, file: Some("/etc/ice/deploy.key".into()) });
        file.effects.validate().unwrap();
        assert!(toml::from_str::<File>("[effects.secrets.A]\nenv = \"A\"\nvalue = \"x\"\n").is_err());
        // No secrets: nothing about them is written back.
        let round = toml::to_string(&EffectsConfig::default()).unwrap();
        assert!(!round.contains("secrets"), "{round}");
    }

    #[test]
    fn validate_refuses_malformed_secrets() {
        let env = |v: &str| SecretSource { env: Some(v.into()), file: None };
        let file = |p: &str| SecretSource { env: None, file: Some(p.into()) };
        let both = SecretSource { env: Some("A".into()), file: Some("/a".into()) };
        for (name, source, says) in [
            ("github_token", env("A"), "must be 1 to 64 of A-Z, 0-9 and _"),
            ("", env("A"), "must be 1 to 64"),
            ("A-B", env("A"), "must be 1 to 64"),
            (&"X".repeat(65), env("A"), "must be 1 to 64"),
            ("A", both, "sets both env and file"),
            ("A", SecretSource::default(), "has no source"),
            ("A", env(""), "is not an environment variable name"),
            ("A", env("A=B"), "is not an environment variable name"),
            ("A", file("relative/key"), "must be an absolute path"),
            ("A", file("/a\0b"), "must be an absolute path"),
        ] {
            let mut c = EffectsConfig::default();
            c.secrets.insert(name.to_owned(), source);
            let err = c.validate().unwrap_err();
            assert_eq!(err.code, ErrorCode::BadConfig, "{name}");
            assert!(err.message.contains(says), "{name}: {err}");
        }
    }
}
