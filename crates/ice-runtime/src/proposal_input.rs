//! The one strict parser for proposals from outside (CLI `--file`, raw `ProposalSubmitted` submissions): unknown
//! fields, wrong types and malformed costs are refused, never defaulted.

use ice_core::proposal::Nondeterminism;
use ice_core::{Cost, ErrorCode, EventId, Rejection};
use serde_json::Value;

/// A proposal as submitted (untrusted). Who proposes is the authenticated caller, never a field of the input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProposalInput {
    /// The run it belongs to.
    pub run: Option<String>,
    /// Action name.
    pub action: String,
    /// Resource.
    pub resource: String,
    /// Args JSON object text.
    pub args: String,
    /// Declared purpose.
    pub purpose: String,
    /// Declared cost estimate.
    pub cost_estimate: Cost,
    /// Declared nondeterminism.
    pub nondeterminism: Nondeterminism,
    /// The completed effect this proposal undoes (set by rollback).
    pub compensates: Option<EventId>,
}

impl ProposalInput {
    /// Reads a proposal from a raw `ProposalSubmitted` submission (payload fields `action`, `resource`, `args`,
    /// `purpose`, `cost_estimate`, `nondeterminism`; `args_hash` is recomputed, never trusted).
    pub fn from_raw(raw: &ice_core::RawEvent, payload: &Value) -> Result<Self, Rejection> {
        let mut input = Self::from_json(payload)?;
        input.run = raw.run_id.clone();
        Ok(input)
    }

    /// The one strict proposal parser, for raw submissions and proposal files alike: `action`, `resource`,
    /// `purpose` must be strings when present, `args` an object, `cost_estimate` an object of dimension → whole
    /// number, `nondeterminism` one of none|low|high, `run` a string. A malformed field is refused, never defaulted;
    /// unknown fields are refused too (a typo must not silently drop a cost estimate).
    pub fn from_json(v: &Value) -> Result<Self, Rejection> {
        const FIELDS: [&str; 8] =
            ["actor", "run", "action", "resource", "args", "purpose", "cost_estimate", "nondeterminism"];
        let bad = |m: String| Rejection::new(ErrorCode::BadPayloadStructure, m);
        let obj = v.as_object().ok_or_else(|| bad("a proposal must be a JSON object".into()))?;
        if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(bad(format!("proposal field `{k}` is not one of {}", FIELDS.join(", "))));
        }
        let text = |k: &str| -> Result<Option<String>, Rejection> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(bad(format!("proposal field `{k}` must be a string"))),
            }
        };
        let args = match obj.get("args") {
            None | Some(Value::Null) => "{}".to_owned(),
            Some(a @ Value::Object(_)) => a.to_string(),
            Some(_) => return Err(bad("proposal field `args` must be a JSON object".into())),
        };
        let cost_estimate = match obj.get("cost_estimate") {
            None | Some(Value::Null) => Cost::zero(),
            Some(c) => serde_json::from_value::<Cost>(c.clone()).map_err(|e| {
                bad(format!("proposal field `cost_estimate` must map wall_ms|tokens|money_micros|calls|bytes to whole numbers: {e}"))
            })?,
        };
        if cost_estimate.0.values().any(|v| *v > ice_core::canonical::MAX_SAFE_INTEGER) {
            return Err(bad("a cost estimate amount is above 2^53-1".into()));
        }
        let nondeterminism = match obj.get("nondeterminism") {
            None | Some(Value::Null) => Nondeterminism::default(),
            Some(n) => serde_json::from_value(n.clone())
                .map_err(|_| bad("proposal field `nondeterminism` must be none, low or high".into()))?,
        };
        // `actor` is accepted for old proposal files but must be empty or match the caller (checked by the caller
        // of this parser against the authenticated principal).
        text("actor")?;
        Ok(Self {
            run: text("run")?,
            action: text("action")?.unwrap_or_default(),
            resource: text("resource")?.unwrap_or_default(),
            args,
            purpose: text("purpose")?.unwrap_or_default(),
            cost_estimate,
            nondeterminism,
            compensates: None,
        })
    }
}
