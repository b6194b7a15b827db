//! Which upstream tools the gateway serves: those whose definition (name, description, input schema) is the one
//! pinned in the ledger. A tool seen for the first time is pinned by the runtime; a tool whose definition changed
//! since is withheld — not listed, its calls refused with `ToolChanged` — until an operator pins the new
//! definition (`ice mcp accept`). See `ice_runtime::tools`.

use std::collections::BTreeMap;

use ice_runtime::tools::definition_hash;
use ice_runtime::{Runtime, RuntimeError};
use rmcp::model::Tool;
use serde_json::{Value, json};

use crate::upstream::Upstreams;

/// The definition of a tool that is pinned: what a model reads to decide how to use it.
pub fn definition(tool: &Tool) -> Value {
    json!({"name": tool.name, "description": tool.description, "input_schema": *tool.input_schema})
}

/// Where one tool stands against its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Pinned at this definition: served.
    Pinned {
        /// The hash.
        hash: String,
    },
    /// Seen for the first time: pinned now (by [`Pins::check`]) or, when only looking, to be.
    New {
        /// The hash.
        hash: String,
    },
    /// Changed since pinned: withheld.
    Changed {
        /// The pinned hash.
        pinned: String,
        /// The hash of what the upstream lists now.
        current: String,
    },
}

/// Every upstream tool's standing, by (server, tool).
#[derive(Debug, Clone, Default)]
pub struct Pins(BTreeMap<(String, String), Standing>);

impl Pins {
    /// Compares every upstream tool with the ledger's pins; with `pin_new`, pins the tools seen for the first time
    /// (recorded by the runtime), so they are served.
    pub fn check(rt: &Runtime, upstreams: &Upstreams, pin_new: bool) -> Result<Self, RuntimeError> {
        let pins = rt.tool_pins()?;
        let mut out = BTreeMap::new();
        for (server, tool) in upstreams.tools() {
            let def = definition(&tool);
            let current = definition_hash(&def).map_err(|r| RuntimeError::Rejected { rejection: r, record: None })?;
            let key = (server.clone(), tool.name.to_string());
            let standing = match pins.get(&key) {
                Some(p) if p.definition_hash == current => Standing::Pinned { hash: current },
                Some(p) => Standing::Changed { pinned: p.definition_hash.clone(), current },
                None if pin_new => {
                    rt.pin_new_tool(&server, &tool.name, &def)?;
                    Standing::Pinned { hash: current }
                }
                None => Standing::New { hash: current },
            };
            if let Standing::Changed { pinned, current } = &standing {
                tracing::warn!(target: "ice_mcp", server = %server, tool = %tool.name, pinned, current,
                    "tool definition changed since it was pinned: withheld until an operator accepts it");
            }
            out.insert(key, standing);
        }
        Ok(Self(out))
    }

    /// A tool's standing.
    pub fn standing(&self, server: &str, tool: &str) -> Option<&Standing> {
        self.0.get(&(server.to_owned(), tool.to_owned()))
    }

    /// Every tool's standing.
    pub fn iter(&self) -> impl Iterator<Item = (&(String, String), &Standing)> {
        self.0.iter()
    }
}
