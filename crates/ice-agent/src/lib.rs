//! The agent loop (`ice agent run --config FILE`): a long-running governed component that asks a model what to
//! do, proposes what the model asks for, executes what is permitted, and feeds decisions and outcomes back to the
//! model as tool messages — until the model answers without calling a tool, policy stops it, or its step limit
//! is reached.
//!
//! Every model call is itself a governed action (`model.call`, see [`ice_providers::ModelEffector`]): proposed
//! with its token estimate, so a call that would exceed the agent's token budget is denied before anything is
//! sent, and settled with the usage the provider reported. The agent acts as the principal of its token, in a
//! run an operator created for it; it has no authority of its own beyond its grants.
//!
//! The loop keeps no state of its own: before every step it rebuilds the conversation from the run's events
//! (see [`history`]), so a restarted agent — after `kill -9` — resumes where the ledger says it was, without
//! repeating a completed effect. Its lifecycle (started, suspended, resumed, stopped, crashed) is recorded as
//! `ObservationRecorded` events with a `lifecycle` field.

mod agent;
pub mod config;
mod history;

use ice_core::ErrorCode;

pub use agent::{Agent, Stop, StopReason};
pub use config::AgentConfig;
pub use ice_providers::MODEL_ACTION;

/// Why the agent could not go on (as opposed to a [`Stop`], which is the loop ending as policy or the model
/// said).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AgentError {
    /// Stable code.
    pub code: ErrorCode,
    /// What happened.
    pub message: String,
}

impl AgentError {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl From<ice_runtime::RuntimeError> for AgentError {
    fn from(e: ice_runtime::RuntimeError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}
