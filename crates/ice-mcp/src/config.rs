//! `.ice/mcp.toml`: the upstream MCP servers the gateway serves, how their tools map to catalog actions, and the
//! gateway's limits.
//!
//! ```toml
//! [gateway]
//! approval_timeout_secs = 300   # a call waiting for a human fails closed after this
//! max_args_bytes = 262144       # larger arguments are refused before anything is recorded
//! call_timeout_secs = 60        # one upstream tools/call
//!
//! [servers.fs]                  # tools are served as `fs__<tool>`, proposed as action `mcp.fs.<tool>`
//! command = "node"
//! args = ["/opt/mcp/server-filesystem/dist/index.js", "/srv/data"]
//! env = { NODE_ENV = "production" }
//!
//! [servers.fs.tools.write_file]
//! action = "mcp.fs.write"        # another catalog action for this tool
//!
//! [servers.web]                 # a streamable-HTTP server (http:// only; put a TLS proxy in front otherwise)
//! url = "http://127.0.0.1:3001/mcp"
//! headers = { Authorization = "Bearer ${secret:WEB_MCP_TOKEN}" }
//! ```
//!
//! Each action must be in the catalog (`policies/policy.toml`, which classifies it) and declared in the Cedar
//! schema with the tool's arguments, like any other action: the gateway adds no authority of its own.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    /// Gateway limits.
    #[serde(default)]
    pub gateway: GatewaySettings,
    /// Upstream servers by name.
    #[serde(default)]
    pub servers: BTreeMap<String, ServerSpec>,
}

/// `[gateway]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    /// Seconds a call waits for a human's answer before it fails closed.
    #[serde(default = "default_approval_timeout")]
    pub approval_timeout_secs: u64,
    /// Largest accepted arguments (canonical JSON bytes).
    #[serde(default = "default_max_args")]
    pub max_args_bytes: usize,
    /// Longest one upstream `tools/call` may take.
    #[serde(default = "default_call_timeout")]
    pub call_timeout_secs: u64,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            approval_timeout_secs: default_approval_timeout(),
            max_args_bytes: default_max_args(),
            call_timeout_secs: default_call_timeout(),
        }
    }
}

fn default_approval_timeout() -> u64 {
    300
}
fn default_max_args() -> usize {
    256 * 1024
}
fn default_call_timeout() -> u64 {
    60
}

/// One upstream server: a child process speaking MCP on stdio (`command`), or a streamable-HTTP server (`url`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// The program (stdio servers).
    #[serde(default)]
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables it gets (nothing else of the gateway's environment but `PATH` and `HOME`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The MCP endpoint of a streamable-HTTP server (`http://host:port/mcp`).
    #[serde(default)]
    pub url: Option<String>,
    /// Headers sent with every request to `url`; values may name secrets (`Bearer ${secret:NAME}`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Per-tool settings.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolSpec>,
}

/// `[servers.<name>.tools.<tool>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    /// The catalog action calls of this tool are proposed as (default `mcp.<server>.<tool>`).
    pub action: Option<String>,
}

/// Separates server and tool in the names served to clients (`fs__read_file`): MCP clients commonly accept only
/// `[A-Za-z0-9_-]` in tool names.
pub const NAME_SEPARATOR: &str = "__";

impl McpConfig {
    /// Reads and checks `path`. Errors name the file and the problem.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and checks the text of an `mcp.toml`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let cfg: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        for (name, spec) in &cfg.servers {
            if name.is_empty()
                || name.contains(NAME_SEPARATOR)
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!("server name `{name}`: use letters, digits, `-` and single `_`"));
            }
            match (&spec.command, &spec.url) {
                (Some(c), None) if !c.trim().is_empty() => {
                    if !spec.headers.is_empty() {
                        return Err(format!("servers.{name}: headers are for `url` servers"));
                    }
                }
                (None, Some(u)) => {
                    let rest = u.strip_prefix("http://").ok_or_else(|| {
                        format!("servers.{name}: url `{u}` must be http:// (put a TLS-terminating proxy in front)")
                    })?;
                    if rest.is_empty() || rest.starts_with('/') {
                        return Err(format!("servers.{name}: url `{u}` names no host"));
                    }
                    if !spec.args.is_empty() || !spec.env.is_empty() {
                        return Err(format!("servers.{name}: args and env are for `command` servers"));
                    }
                    for h in spec.headers.keys() {
                        http::HeaderName::from_bytes(h.as_bytes())
                            .map_err(|_| format!("servers.{name}: `{h}` is not a header name"))?;
                    }
                }
                _ => return Err(format!("servers.{name}: give either a non-empty `command` or a `url`")),
            }
            for (tool, t) in &spec.tools {
                if let Some(a) = &t.action
                    && (a.is_empty() || a.chars().any(char::is_whitespace))
                {
                    return Err(format!("servers.{name}.tools.{tool}: action `{a}` is not an action name"));
                }
            }
        }
        if cfg.gateway.max_args_bytes == 0 || cfg.gateway.call_timeout_secs == 0 {
            return Err("gateway: max_args_bytes and call_timeout_secs must be positive".into());
        }
        Ok(cfg)
    }

    /// The catalog action a call of `tool` on `server` is proposed as.
    pub fn action_of(&self, server: &str, tool: &str) -> String {
        self.servers
            .get(server)
            .and_then(|s| s.tools.get(tool))
            .and_then(|t| t.action.clone())
            .unwrap_or_else(|| format!("mcp.{server}.{tool}"))
    }
}

/// The resource a call of `tool` on `server` is about: `mcp:<server>/<tool>`.
pub fn resource_of(server: &str, tool: &str) -> String {
    format!("mcp:{server}/{tool}")
}

/// The name a tool is served under.
pub fn served_name(server: &str, tool: &str) -> String {
    format!("{server}{NAME_SEPARATOR}{tool}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_defaults_overrides_and_refuses_bad_names() {
        let cfg = McpConfig::parse(
            "[servers.fs]\ncommand = \"node\"\nargs = [\"a.js\"]\n[servers.fs.tools.write_file]\naction = \"mcp.fs.write\"\n",
        )
        .unwrap();
        assert_eq!(cfg.action_of("fs", "read_file"), "mcp.fs.read_file");
        assert_eq!(cfg.action_of("fs", "write_file"), "mcp.fs.write");
        assert_eq!(cfg.gateway.approval_timeout_secs, 300);
        assert_eq!(served_name("fs", "read_file"), "fs__read_file");
        assert!(McpConfig::parse("[servers.\"a__b\"]\ncommand = \"x\"\n").is_err());
        assert!(McpConfig::parse("[servers.a]\ncommand = \" \"\n").is_err());
        assert!(McpConfig::parse("[servers.a]\ncommand = \"x\"\nbogus = 1\n").is_err());
        let web = McpConfig::parse("[servers.w]\nurl = \"http://127.0.0.1:3001/mcp\"\nheaders = { X-Key = \"k\" }\n");
        assert!(web.is_ok());
        for bad in [
            "[servers.w]\nurl = \"https://example.com/mcp\"\n",
            "[servers.w]\nurl = \"http:///mcp\"\n",
            "[servers.w]\nurl = \"http://h/mcp\"\ncommand = \"x\"\n",
            "[servers.w]\nurl = \"http://h/mcp\"\nargs = [\"a\"]\n",
            "[servers.w]\nurl = \"http://h/mcp\"\nheaders = { \"bad name\" = \"v\" }\n",
            "[servers.w]\ncommand = \"x\"\nheaders = { A = \"v\" }\n",
            "[servers.w]\n",
        ] {
            assert!(McpConfig::parse(bad).is_err(), "{bad}");
        }
    }
}
