//! Policy bundles: the Cedar policies and schema (compiled by `ice-policy`) plus the action catalog and
//! consequences (`policy.toml`). A bundle is activated by recording it whole in a `PolicyActivated` event, so
//! the ledger alone says which rules were in force for every decision.
//!
//! ```toml
//! # .ice/policies/policy.toml
//! [actions."fs.write"]          # every action an agent may propose, classified by the runtime, not the agent
//! scope = "external"            # internal | external
//! access = "write"              # read | write | irreversible
//! risk = "medium"               # low | medium | high | critical
//!
//! [consequences]                # what a violation leads to: deny (default) | suspend | escalate | contain
//! no_grant = "deny"
//! policy_forbid = "deny"
//! no_permit = "deny"
//! policy_error = "deny"
//! budget_exceeded = "deny"
//!
//! [approvals]                   # who answers `require_approval`, and what happens when nobody does
//! approvers = ["human:*"]
//! ttl_secs = 86400
//! on_timeout = "deny"           # deny | escalate
//! escalate_to = ["human:security"]
//! escalation_ttl_secs = 86400
//!
//! [permits]
//! ttl_secs = 900                # how long an execution permit stays usable
//!
//! [min_cost]                    # the least a proposal reserves per dimension, whatever it estimates
//! "*" = { calls = 1 }           # every action (the default when the table is absent)
//! "model.call" = { calls = 1, tokens = 100 }
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ice_core::decision::Consequences;
use ice_core::effect::OnTimeout;
use ice_core::{Classification, Cost, Dimension, ErrorCode, Rejection};
use ice_policy::{PolicyEngine, PolicySource};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// File name of the action catalog inside a policy directory.
pub const CATALOG_FILE: &str = "policy.toml";

/// `policy.toml`, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionCatalog {
    /// Classification per action name.
    #[serde(default)]
    pub actions: BTreeMap<String, Classification>,
    /// Consequence per violation.
    #[serde(default)]
    pub consequences: Consequences,
    /// Who answers approvals, and what happens when nobody does.
    #[serde(default)]
    pub approvals: ApprovalRules,
    /// Execution permits.
    #[serde(default)]
    pub permits: PermitRules,
    /// The least each action reserves per cost dimension, whatever the agent estimates: by action name, `"*"` for
    /// every action not listed. Absent: every action reserves at least one call.
    #[serde(default = "default_min_cost")]
    pub min_cost: BTreeMap<String, Cost>,
}

impl Default for ActionCatalog {
    fn default() -> Self {
        Self {
            actions: BTreeMap::new(),
            consequences: Consequences::default(),
            approvals: ApprovalRules::default(),
            permits: PermitRules::default(),
            min_cost: default_min_cost(),
        }
    }
}

fn default_min_cost() -> BTreeMap<String, Cost> {
    BTreeMap::from([("*".to_owned(), Cost::of(Dimension::Calls, 1))])
}

impl ActionCatalog {
    /// The action's minimum cost (its own entry, else `"*"`, else nothing).
    pub fn min_cost(&self, action: &str) -> Cost {
        self.min_cost.get(action).or_else(|| self.min_cost.get("*")).cloned().unwrap_or_default()
    }

    /// What a proposal reserves: per dimension, the larger of its estimate and the action's minimum.
    pub fn reservation(&self, action: &str, estimate: &Cost) -> Cost {
        let mut r = estimate.clone();
        for (d, min) in self.min_cost(action).0 {
            if r.get(d) < min {
                r.set(d, min);
            }
        }
        r
    }
}

/// The `[approvals]` table of `policy.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalRules {
    /// Principal patterns that may answer (`human:alice`, `human:*`). The proposer never may.
    pub approvers: Vec<String>,
    /// How long an approval stays open, in seconds.
    pub ttl_secs: u64,
    /// `deny` (expire) or `escalate` (once, to `escalate_to`) when nobody answers in time.
    pub on_timeout: OnTimeout,
    /// Approvers after escalation.
    pub escalate_to: Vec<String>,
    /// How long the escalated approval stays open, in seconds.
    pub escalation_ttl_secs: u64,
}

impl Default for ApprovalRules {
    fn default() -> Self {
        Self {
            approvers: vec!["human:*".to_owned()],
            ttl_secs: 24 * 3600,
            on_timeout: OnTimeout::Deny,
            escalate_to: Vec::new(),
            escalation_ttl_secs: 24 * 3600,
        }
    }
}

/// The `[permits]` table of `policy.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PermitRules {
    /// How long an execution permit stays usable, in seconds.
    pub ttl_secs: u64,
}

impl Default for PermitRules {
    fn default() -> Self {
        Self { ttl_secs: 15 * 60 }
    }
}

/// The default `policy.toml` written by `ice init`.
pub const DEFAULT_CATALOG: &str = r#"# Actions agents may propose, classified by the runtime (never by the agent), and what violations lead to.
# Every action here must also be declared in schema.cedarschema. See README.md, section Policies.

[actions."fs.read"]
scope = "external"
access = "read"
risk = "low"

[actions."fs.list"]
scope = "external"
access = "read"
risk = "low"

[actions."fs.write"]
scope = "external"
access = "write"
risk = "medium"

[actions."fs.append"]
scope = "external"
access = "write"
risk = "medium"

[actions."fs.delete"]
scope = "external"
access = "irreversible"
risk = "high"

[actions."process.exec"]
scope = "external"
access = "irreversible"
risk = "high"

[actions."http.request"]
scope = "external"
access = "write"
risk = "medium"

[actions."model.call"]
scope = "internal"
access = "read"
risk = "low"

[actions."memory.promote"]    # a governed write to memory (agents read memory through grants of memory.read)
scope = "internal"
access = "write"
risk = "medium"

[actions."fs.restore"]
scope = "external"
access = "write"
risk = "medium"

[consequences]
no_grant = "deny"
policy_forbid = "deny"
no_permit = "deny"
policy_error = "deny"
budget_exceeded = "deny"

[approvals]
approvers = ["human:*"]       # who may answer; never the proposer
ttl_secs = 86400              # unanswered after this: on_timeout applies
on_timeout = "deny"           # deny | escalate (once, to escalate_to)
escalate_to = []
escalation_ttl_secs = 86400

[permits]
ttl_secs = 900                # an allowed or approved proposal must be executed within this

[min_cost]                    # the least a proposal reserves per dimension, whatever the agent estimates
"*" = { calls = 1 }
"#;

/// A policy bundle as recorded in `PolicyActivated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyBundle {
    /// Cedar files and schema.
    pub source: PolicySource,
    /// `policy.toml` text.
    pub catalog: String,
}

impl PolicyBundle {
    /// Reads a policy directory: `*.cedar`, `schema.cedarschema`, `policy.toml`.
    pub fn load_dir(dir: &Path) -> Result<Self, Rejection> {
        let source = PolicySource::load_dir(dir).map_err(policy_rejection)?;
        let path = dir.join(CATALOG_FILE);
        let catalog = std::fs::read_to_string(&path)
            .map_err(|e| Rejection::new(ErrorCode::PolicyCatalog, format!("cannot read {}: {e}", path.display())))?;
        Ok(Self { source, catalog })
    }

    /// A bundle given as text (the API): Cedar files by name (`*.cedar`, plain names), the schema and the
    /// `policy.toml` catalog. Files are ordered by name, as [`PolicyBundle::load_dir`] orders them, so the same
    /// texts hash the same whichever way they arrive.
    pub fn from_texts(policies: &BTreeMap<String, String>, schema: String, catalog: String) -> Result<Self, Rejection> {
        if policies.is_empty() {
            return Err(Rejection::new(ErrorCode::PolicyDir, "no *.cedar policy file given"));
        }
        let mut files = Vec::with_capacity(policies.len());
        for (name, text) in policies {
            let plain = !name.contains(['/', '\\']) && name != ".cedar" && name.ends_with(".cedar");
            if !plain {
                return Err(Rejection::new(
                    ErrorCode::PolicyDir,
                    format!("`{name}` is not a policy file name (NAME.cedar, no directory)"),
                ));
            }
            files.push(ice_policy::PolicyFile { name: name.clone(), text: text.clone() });
        }
        Ok(Self { source: PolicySource { files, schema }, catalog })
    }

    /// blake3 over the Cedar source hash and the catalog text.
    pub fn hash(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"ice.policy-bundle.v1\n");
        h.update(self.source.hash().as_bytes());
        h.update(&(self.catalog.len() as u64).to_be_bytes());
        h.update(self.catalog.as_bytes());
        h.finalize().to_hex().to_string()
    }

    /// Compiles and cross-checks the bundle: Cedar parses and validates, the catalog parses, and every catalog
    /// action is declared in the schema.
    pub fn compile(&self) -> Result<CompiledPolicy, Rejection> {
        let engine = PolicyEngine::compile(&self.source).map_err(policy_rejection)?;
        let catalog: ActionCatalog = toml::from_str(&self.catalog)
            .map_err(|e| Rejection::new(ErrorCode::PolicyCatalog, format!("{CATALOG_FILE} is invalid: {e}")))?;
        let declared = engine.actions();
        let missing: Vec<&String> = catalog.actions.keys().filter(|a| !declared.contains(a)).collect();
        if !missing.is_empty() {
            return Err(Rejection::new(
                ErrorCode::PolicyCatalog,
                format!("{CATALOG_FILE} classifies actions the Cedar schema does not declare: {missing:?}"),
            ));
        }
        Ok(CompiledPolicy { hash: self.hash(), engine, catalog })
    }

    /// The bundle as JSON (the `bundle` field of `PolicyActivated`).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Reads a bundle back from a `PolicyActivated` payload.
    pub fn from_value(v: &Value) -> Result<Self, Rejection> {
        serde_json::from_value(v.clone()).map_err(|e| {
            Rejection::new(ErrorCode::PolicyCatalog, format!("the recorded policy bundle cannot be read: {e}"))
        })
    }
}

/// A bundle ready to decide with.
pub struct CompiledPolicy {
    /// Bundle hash.
    pub hash: String,
    /// The Cedar engine.
    pub engine: PolicyEngine,
    /// Classification and consequences.
    pub catalog: ActionCatalog,
}

/// Shared handle to a compiled bundle.
pub type PolicyHandle = Arc<CompiledPolicy>;

/// An `ice-policy` error as a core rejection (same stable code and message).
pub fn policy_rejection(e: ice_policy::PolicyError) -> Rejection {
    Rejection::new(e.error_code(), e.message())
}

/// Writes the default policy directory (Cedar files, schema, catalog) for `ice init`.
pub fn write_defaults(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("schema.cedarschema"), ice_policy::DEFAULT_SCHEMA)?;
    for (name, text) in ice_policy::DEFAULT_POLICIES {
        std::fs::write(dir.join(name), text)?;
    }
    std::fs::write(dir.join(CATALOG_FILE), DEFAULT_CATALOG)
}
