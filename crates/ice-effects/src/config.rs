//! `[effects]` configuration: the sandbox root and the process and HTTP allowlists and limits.
//!
//! Everything defaults to refusing: no program, environment variable or host is allowed until listed. The
//! defaults are documented in the crate docs; [`EffectsConfig::validate`] refuses entries that could never match
//! or would be ambiguous, so a typo is reported at startup instead of silently allowing nothing.

use std::path::PathBuf;

use ice_core::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::EffectError;
use crate::http::{is_token, parse_host_port};

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
}

impl Default for EffectsConfig {
    fn default() -> Self {
        Self { sandbox: PathBuf::from("sandbox"), process: ProcessConfig::default(), http: HttpConfig::default() }
    }
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
    /// Refuses (with `BadConfig`) entries that can never match, zero limits and empty sandbox paths.
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
}
