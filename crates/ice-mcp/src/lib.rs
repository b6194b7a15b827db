//! `ice mcp`: ICE as an MCP server in front of other MCP servers.
//!
//! MCP clients (Claude Code, Cursor, Codex, any agent) connect to the gateway and see the tools of the upstream
//! servers configured in `.ice/mcp.toml` ([`config`]). Every `tools/call` becomes a proposal on the full parsed
//! arguments, is decided by the same runtime pipeline as every other entry point, and — once allowed, and
//! approved where policy says — executed through a single-use permit by the [`effector::McpEffector`], which
//! calls the upstream ([`upstream`]) exactly once and records the result's hash, size and blob as evidence. The
//! client gets the upstream's result, or a tool error with the ICE code and reason ([`gateway`]).

pub mod args;
pub mod config;
pub mod declare;
pub mod effector;
pub mod gateway;
pub mod pins;
pub mod upstream;

pub use config::McpConfig;
pub use effector::{McpEffector, Results};
pub use gateway::Gateway;
pub use pins::{Pins, Standing};
pub use upstream::Upstreams;
