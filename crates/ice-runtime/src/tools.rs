//! Pinned MCP tool definitions (`ToolPinned`): what the MCP gateway may serve.
//!
//! A tool's definition — its name, description and input schema, which is what a model reads to decide how to
//! use it — is pinned by hash the first time a gateway sees it (recorded by the runtime). A definition that
//! differs later (an upstream "rug pull": a changed description can carry new instructions) is not served until
//! an operator pins it (a governed transition with the operator's attribution). Pins are read from the ledger
//! (a handful of events per tool), not kept in derived state.

use std::collections::BTreeMap;

use ice_core::payloads::ToolPinned;
use ice_core::{CanonicalJson, ErrorCode, EventKind, Principal, Rejection};
use ice_store::EventQuery;
use serde_json::{Value, json};

use crate::caller::Caller;
use crate::runtime::{Runtime, RuntimeError};

/// Hex blake3 of the canonical JSON of a tool definition.
pub fn definition_hash(definition: &Value) -> Result<String, Rejection> {
    let canonical = CanonicalJson::from_serialize(definition)?;
    Ok(blake3::hash(canonical.as_bytes()).to_hex().to_string())
}

impl Runtime {
    /// The latest pin of every tool, by (server, tool), read from the ledger in order.
    pub fn tool_pins(&self) -> Result<BTreeMap<(String, String), ToolPinned>, RuntimeError> {
        let mut pins = BTreeMap::new();
        for e in self.read_all(&EventQuery { kind: Some(EventKind::ToolPinned), ..EventQuery::default() })? {
            let pin: ToolPinned = serde_json::from_str(e.payload.as_str())
                .map_err(|err| RuntimeError::Corrupt { seq: e.seq.0, message: format!("ToolPinned: {err}") })?;
            pins.insert((pin.server.clone(), pin.tool.clone()), pin);
        }
        Ok(pins)
    }

    /// Pins a tool seen for the first time (recorded by the runtime). Refused (`ToolChanged`) when the tool is
    /// already pinned: a changed definition is an operator's to accept.
    pub fn pin_new_tool(&self, server: &str, tool: &str, definition: &Value) -> Result<ToolPinned, RuntimeError> {
        let pin = self.pin_of(server, tool, definition, None)?;
        if let Some(old) = self.tool_pins()?.get(&(server.to_owned(), tool.to_owned())) {
            let r = Rejection::new(
                ErrorCode::ToolChanged,
                format!("{server}/{tool} is pinned already (definition {})", old.definition_hash),
            );
            return Err(self.refuse(r, attempt(&pin), None));
        }
        let draft = self
            .internal(EventKind::ToolPinned, Principal::runtime(), None, &pin)
            .map_err(|r| self.refuse(r, attempt(&pin), None))?;
        self.commit(draft)?;
        Ok(pin)
    }

    /// An operator pins a tool's definition — the one it reviewed, named by `expected_hash`, so a definition
    /// that changed again meanwhile is not accepted unseen.
    pub fn accept_tool(
        &self,
        caller: &Caller,
        server: &str,
        tool: &str,
        definition: &Value,
        expected_hash: &str,
    ) -> Result<ToolPinned, RuntimeError> {
        let old = self.tool_pins()?.remove(&(server.to_owned(), tool.to_owned()));
        let pin = self.pin_of(server, tool, definition, old.map(|o| o.definition_hash))?;
        if pin.definition_hash != expected_hash.trim() {
            let r = Rejection::new(
                ErrorCode::ToolChanged,
                format!(
                    "{server}/{tool} now has definition {}, not the {expected_hash} you accepted; review it again",
                    pin.definition_hash
                ),
            );
            return Err(self.refuse(r, attempt(&pin), None));
        }
        if pin.replaces.as_deref() == Some(pin.definition_hash.as_str()) {
            let r =
                Rejection::new(ErrorCode::ToolChanged, format!("{server}/{tool} is pinned at this definition already"));
            return Err(self.refuse(r, attempt(&pin), None));
        }
        self.emit_for(caller, EventKind::ToolPinned, None, &pin)?;
        Ok(pin)
    }

    fn pin_of(
        &self,
        server: &str,
        tool: &str,
        definition: &Value,
        replaces: Option<String>,
    ) -> Result<ToolPinned, RuntimeError> {
        let hash = definition_hash(definition).map_err(|r| self.refuse(r, json!({"kind": "ToolPinned"}), None))?;
        Ok(ToolPinned {
            server: server.to_owned(),
            tool: tool.to_owned(),
            definition_hash: hash,
            definition: definition.clone(),
            replaces,
        })
    }
}

fn attempt(pin: &ToolPinned) -> Value {
    json!({"kind": "ToolPinned", "server": pin.server, "tool": pin.tool, "definition_hash": pin.definition_hash})
}
