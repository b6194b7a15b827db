//! The upstream MCP servers — child processes speaking MCP on stdio, or streamable-HTTP servers — each with an
//! rmcp client, their tool lists read at start and again at every client listing.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::RwLock;
use std::time::Duration;

use ice_core::ErrorCode;
use ice_effects::EffectError;
use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject, Tool};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::transport::streamable_http_client::{StreamableHttpClientTransport, StreamableHttpClientTransportConfig};
use rmcp::{RoleClient, ServiceExt};
use tokio::io::AsyncBufReadExt;

use crate::config::{McpConfig, NAME_SEPARATOR};

/// One connected upstream.
struct Upstream {
    client: RunningService<RoleClient, ()>,
    /// As last listed (see [`Upstreams::refresh`]).
    tools: RwLock<Vec<Tool>>,
}

/// A secret-bearing value of `servers.<name>.<field>.<key>`, resolved.
fn resolved(
    secrets: &BTreeMap<String, ice_effects::SecretSource>,
    name: &str,
    field: &str,
    key: &str,
    value: &str,
) -> Result<String, EffectError> {
    ice_effects::resolve_references(secrets, &format!("servers.{name}.{field}.{key}"), value)
        .map_err(|e| EffectError::new(e.code, format!("upstream `{name}`: {}", e.message)))
}

/// Starts a stdio upstream: the child process, its log lines forwarded, the MCP handshake.
async fn start_child(
    name: &str,
    command: &str,
    spec: &crate::config::ServerSpec,
    secrets: &BTreeMap<String, ice_effects::SecretSource>,
) -> Result<RunningService<RoleClient, ()>, EffectError> {
    let failed = |m: String| EffectError::new(ErrorCode::EffectFailed, m);
    let mut cmd = tokio::process::Command::new(command);
    cmd.args(&spec.args).env_clear().kill_on_drop(true);
    for keep in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    for (key, value) in &spec.env {
        cmd.env(key, resolved(secrets, name, "env", key, value)?);
    }
    let (transport, stderr) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("upstream `{name}`: cannot start `{command}`: {e}")))?;
    if let Some(stderr) = stderr {
        // The upstream's own log lines, as ours (debug): never mixed into the protocol stream.
        let server = name.to_owned();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(target: "ice_mcp::upstream", server = %server, "{line}");
            }
        });
    }
    ().serve(transport).await.map_err(|e| failed(format!("upstream `{name}`: MCP initialisation failed: {e}")))
}

/// Connects to a streamable-HTTP upstream, with its configured headers (secrets resolved here, never logged).
async fn connect_http(
    name: &str,
    url: &str,
    spec: &crate::config::ServerSpec,
    secrets: &BTreeMap<String, ice_effects::SecretSource>,
) -> Result<RunningService<RoleClient, ()>, EffectError> {
    let failed = |m: String| EffectError::new(ErrorCode::EffectFailed, m);
    let mut headers = std::collections::HashMap::new();
    for (key, value) in &spec.headers {
        let value = resolved(secrets, name, "headers", key, value)?;
        let bad = |what: &str| failed(format!("upstream `{name}`: header `{key}` has an invalid {what}"));
        let key = http::HeaderName::from_bytes(key.as_bytes()).map_err(|_| bad("name"))?;
        let mut value = http::HeaderValue::from_str(&value).map_err(|_| bad("value"))?;
        value.set_sensitive(true);
        headers.insert(key, value);
    }
    let config = StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers);
    let transport = StreamableHttpClientTransport::from_config(config);
    ().serve(transport).await.map_err(|e| failed(format!("upstream `{name}` at {url}: MCP initialisation failed: {e}")))
}

/// Every configured upstream, connected.
pub struct Upstreams {
    config: McpConfig,
    servers: BTreeMap<String, Upstream>,
}

impl Upstreams {
    /// Starts every configured server and reads its tools. A server that cannot start or list its tools is an
    /// error naming it: the gateway does not serve a partial, silently smaller tool set.
    ///
    /// `env` values may name secrets declared under `[effects.secrets]` (`${secret:NAME}`): resolved from
    /// `secrets` when the server starts, so credentials need not be written into `mcp.toml`.
    pub async fn connect(
        config: McpConfig,
        secrets: &BTreeMap<String, ice_effects::SecretSource>,
    ) -> Result<Self, EffectError> {
        let failed = |m: String| EffectError::new(ErrorCode::EffectFailed, m);
        let mut servers = BTreeMap::new();
        for (name, spec) in &config.servers {
            let client = match (&spec.command, &spec.url) {
                (Some(command), _) => start_child(name, command, spec, secrets).await?,
                (None, Some(url)) => connect_http(name, url, spec, secrets).await?,
                (None, None) => return Err(failed(format!("upstream `{name}`: neither command nor url"))),
            };
            let tools = client
                .list_all_tools()
                .await
                .map_err(|e| failed(format!("upstream `{name}`: tools/list failed: {e}")))?;
            tracing::info!(target: "ice_mcp", server = %name, tools = tools.len(), "upstream connected");
            servers.insert(name.clone(), Upstream { client, tools: RwLock::new(tools) });
        }
        Ok(Self { config, servers })
    }

    /// The configuration the upstreams were started from.
    pub fn config(&self) -> &McpConfig {
        &self.config
    }

    /// Lists every upstream's tools again (a definition may have changed since: see `pins`). An upstream that
    /// does not answer keeps its last list, and the error is returned after the others are refreshed.
    pub async fn refresh(&self) -> Result<(), EffectError> {
        let mut failure = None;
        for (name, up) in &self.servers {
            match up.client.list_all_tools().await {
                Ok(tools) => *up.tools.write().unwrap_or_else(std::sync::PoisonError::into_inner) = tools,
                Err(e) => {
                    failure = Some(EffectError::new(
                        ErrorCode::EffectFailed,
                        format!("upstream `{name}`: tools/list failed: {e}"),
                    ));
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Every upstream tool (as last listed) with its server's name.
    pub fn tools(&self) -> Vec<(String, Tool)> {
        let mut out = Vec::new();
        for (name, up) in &self.servers {
            let tools = up.tools.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            out.extend(tools.iter().map(|t| (name.clone(), t.clone())));
        }
        out
    }

    /// The server and tool behind a served name (`<server>__<tool>`).
    pub fn resolve(&self, served: &str) -> Option<(String, Tool)> {
        let (server, tool) = served.split_once(NAME_SEPARATOR)?;
        let up = self.servers.get(server)?;
        let tools = up.tools.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        Some((server.to_owned(), tools.iter().find(|t| t.name == tool)?.clone()))
    }

    /// The server and tool whose calls are proposed as `action`.
    pub fn tool_of_action(&self, action: &str) -> Option<(String, Tool)> {
        self.tools().into_iter().find(|(server, tool)| self.config.action_of(server, &tool.name) == action)
    }

    /// One `tools/call`, bounded in time. `Err` when the call failed as a protocol matter (or timed out); a tool
    /// that ran and reported an error is `Ok` with `is_error`.
    pub async fn call(
        &self,
        server: &str,
        tool: &str,
        args: JsonObject,
        limit: Duration,
    ) -> Result<CallToolResult, String> {
        let up = self.servers.get(server).ok_or_else(|| format!("no upstream `{server}`"))?;
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args);
        match tokio::time::timeout(limit, up.client.call_tool(params)).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(e)) => Err(format!("upstream `{server}` refused tools/call {tool}: {e}")),
            Err(_) => Err(format!("upstream `{server}` did not answer tools/call {tool} within {} s", limit.as_secs())),
        }
    }
}
