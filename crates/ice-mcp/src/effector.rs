//! The MCP effector: an allowed, permitted call of an upstream tool, exactly once per permit (journaled like
//! process and HTTP effects: a tool's side effects cannot be observed from here), with the result kept as
//! evidence (hash, size, blob) and handed to the gateway that asked.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ice_core::{Classification, ErrorCode};
use ice_effects::{
    Begin, BlobStore, Compensation, EffectCall, EffectError, Effector, Evidence, Journal, Plan, RetryMode,
};
use rmcp::model::CallToolResult;
use serde_json::json;

use crate::config::resource_of;
use crate::upstream::Upstreams;

/// Results kept for the gateway at most: a permit executed over the HTTP API (`POST /v1/permits/{id}/exec`) has
/// no gateway call waiting for its result, so the oldest are dropped (their evidence stays in the ledger and the
/// blob store).
const KEPT_RESULTS: usize = 4096;

/// Results of calls this process made, by permit id, until the gateway takes them.
#[derive(Default, Clone)]
pub struct Results(Arc<Mutex<Kept>>);

/// The kept results and the order they came in.
type Kept = (HashMap<String, CallToolResult>, VecDeque<String>);

impl Results {
    fn put(&self, key: &str, result: CallToolResult) {
        let mut kept = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, order) = &mut *kept;
        if map.insert(key.to_owned(), result).is_none() {
            order.push_back(key.to_owned());
        }
        while order.len() > KEPT_RESULTS {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }

    /// The result of the call made with permit `key`, once.
    pub fn take(&self, key: &str) -> Option<CallToolResult> {
        let mut kept = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, order) = &mut *kept;
        let found = map.remove(key);
        if found.is_some() {
            order.retain(|k| k != key);
        }
        found
    }
}

/// Serves the actions of the configured upstream tools.
pub struct McpEffector {
    upstreams: Arc<Upstreams>,
    handle: tokio::runtime::Handle,
    journal: Journal,
    blobs: BlobStore,
    results: Results,
    limit: Duration,
}

impl McpEffector {
    /// An effector calling `upstreams` from blocking threads through `handle`; `journal_dir` and `blobs` are the
    /// home's (see `Effectors::journal_dir`, `Effectors::blobs`).
    pub fn new(
        upstreams: Arc<Upstreams>,
        handle: tokio::runtime::Handle,
        journal_dir: &std::path::Path,
        blobs: BlobStore,
        results: Results,
    ) -> Result<Self, EffectError> {
        let limit = Duration::from_secs(upstreams.config().gateway.call_timeout_secs);
        Ok(Self { journal: Journal::open(journal_dir)?, upstreams, handle, blobs, results, limit })
    }

    fn target(&self, call: &EffectCall<'_>) -> Result<(String, String), EffectError> {
        let (server, tool) = self
            .upstreams
            .tool_of_action(call.action)
            .ok_or_else(|| EffectError::new(ErrorCode::NoEffector, format!("no MCP tool serves `{}`", call.action)))?;
        let expected = resource_of(&server, &tool.name);
        if call.resource != expected {
            return Err(EffectError::new(
                ErrorCode::BadArgument,
                format!("a call of {server}/{} is about resource `{expected}`, not `{}`", tool.name, call.resource),
            ));
        }
        Ok((server, tool.name.to_string()))
    }
}

impl Effector for McpEffector {
    fn name(&self) -> &'static str {
        "mcp"
    }

    fn actions(&self) -> &'static [&'static str] {
        &[]
    }

    fn serves(&self, action: &str) -> bool {
        self.upstreams.tool_of_action(action).is_some()
    }

    fn classification(&self, _: &str) -> Option<Classification> {
        // The catalog classifies MCP actions; the effector knows nothing about what a tool does.
        None
    }

    fn plan(&self, call: &EffectCall<'_>) -> Result<Plan, EffectError> {
        let (server, tool) = self.target(call)?;
        if !call.args.is_object() {
            return Err(EffectError::new(ErrorCode::BadArgument, "MCP tool arguments must be a JSON object"));
        }
        Ok(Plan {
            target: resource_of(&server, &tool),
            input_hash: call.args_hash.to_owned(),
            before: None,
            expected_after: None,
            compensation: Compensation::Irreversible {
                reason: "ICE cannot undo an MCP tool call; compensate with another governed call".into(),
            },
            retry: RetryMode::Journal,
        })
    }

    fn apply(&self, call: &EffectCall<'_>, _plan: &Plan) -> Result<Evidence, EffectError> {
        let (server, tool) = self.target(call)?;
        if let Begin::Done(evidence) = self.journal.begin(call)? {
            return Ok(evidence);
        }
        let args = call.args.as_object().cloned().unwrap_or_default();
        let answer = self.handle.block_on(self.upstreams.call(&server, &tool, args, self.limit));
        let result = match answer {
            Ok(r) => r,
            Err(message) => {
                // The request may have reached the tool: recorded as failed, never retried blindly.
                let error = EffectError::new(ErrorCode::EffectFailed, message);
                self.journal.fail(call, &error)?;
                return Err(error);
            }
        };
        let bytes = serde_json::to_vec(&result).unwrap_or_default();
        let blob = self.blobs.put(&bytes)?;
        let is_error = result.is_error.unwrap_or(false);
        let evidence = Evidence {
            output_hash: ice_effects::content_hash(&bytes),
            output_bytes: bytes.len() as u64,
            output_blob: Some(blob),
            after: None,
            bytes: (call.canonical_args.len() + bytes.len()) as u64,
            detail: json!({"server": server, "tool": tool, "is_error": is_error}),
            already_applied: false,
            tokens: None,
        };
        self.results.put(call.idempotency_key, result.clone());
        if is_error {
            let text = first_text(&result).unwrap_or_else(|| "the tool reported an error".into());
            let error = EffectError::new(ErrorCode::EffectFailed, format!("{server}/{tool}: {text}"));
            self.journal.fail(call, &error)?;
            return Err(error);
        }
        self.journal.complete(call, &evidence)?;
        Ok(evidence)
    }
}

/// The first text block of a result, shortened for a message.
pub(crate) fn first_text(result: &CallToolResult) -> Option<String> {
    result.content.iter().find_map(|c| c.as_text().map(|t| t.text.chars().take(500).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_taken_once_and_bounded() {
        let results = Results::default();
        for i in 0..KEPT_RESULTS + 10 {
            results.put(&i.to_string(), CallToolResult::success(vec![]));
        }
        assert!(results.take("0").is_none(), "the oldest were dropped");
        assert!(results.take(&(KEPT_RESULTS + 9).to_string()).is_some());
        assert!(results.take(&(KEPT_RESULTS + 9).to_string()).is_none(), "taken once");
        assert_eq!(results.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).0.len(), KEPT_RESULTS - 1);
    }
}
