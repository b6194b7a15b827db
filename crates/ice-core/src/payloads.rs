//! Typed payloads of the kinds the core folds. Other kinds carry free-form objects until their issue types them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::run::RunState;

/// Payload of `LedgerInitialized`: binds the ledger to its runtime key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerInitialized {
    /// Ledger format version.
    pub format: u32,
    /// Hex ed25519 public key of the runtime (checkpoints are signed with its secret half).
    pub runtime_public_key: String,
}

/// Payload of `RunCreated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RunCreated {
    /// A human-readable label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Payload of `RunTransitioned`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTransitioned {
    /// State before.
    pub from: RunState,
    /// State after.
    pub to: RunState,
    /// Why (required when terminating a run early).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Payload of `TransitionRejected`: what was attempted and why it was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransitionRejected {
    /// Stable error code, e.g. `ICE-E0201`.
    pub code: String,
    /// What was wrong.
    pub message: String,
    /// Summary of the attempt (kind, origin, run, payload hash and excerpt) as submitted.
    pub attempt: Value,
}

/// `ToolPinned`: an MCP tool's definition as the gateway serves it, by hash. The latest pin of a (server, tool)
/// is the definition served; a different one is withheld until an operator pins it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolPinned {
    /// The upstream server's name in `mcp.toml`.
    pub server: String,
    /// The tool's name upstream.
    pub tool: String,
    /// Hex blake3 of the canonical JSON of `definition`.
    pub definition_hash: String,
    /// `{name, description, input_schema}` as the upstream listed it.
    pub definition: serde_json::Value,
    /// The hash this pin replaces (absent on first sight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}
