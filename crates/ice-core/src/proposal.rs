//! Proposals (an agent's intent to act), effect classification and cost vectors.
//!
//! A proposal is what an agent *wants*; nothing in it is trusted for deciding except as an input to policy.
//! Its classification comes from the runtime's action catalog, never from the agent.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::canonical::CanonicalJson;
use crate::error::{ErrorCode, Rejection};

/// Largest accepted canonical args, in bytes.
pub const MAX_ARGS_BYTES: usize = 32 * 1024;

/// Whether an effect stays inside ICE or touches the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EffectScope {
    /// Only ICE's own state changes.
    Internal,
    /// Something outside ICE changes or is read (files, processes, the network).
    External,
}

/// What an effect does to what it touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Observes only.
    Read,
    /// Changes something that can be compensated (restored).
    Write,
    /// Changes something that cannot be undone.
    Irreversible,
}

/// How much harm a mistaken effect could do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    /// Negligible.
    Low,
    /// Bounded and recoverable.
    Medium,
    /// Serious.
    High,
    /// Severe or unbounded.
    Critical,
}

impl Risk {
    /// Numeric level 1–4 (for policies that compare risk).
    pub fn level(self) -> i64 {
        match self {
            Self::Low => 1,
            Self::Medium => 2,
            Self::High => 3,
            Self::Critical => 4,
        }
    }
}

/// The runtime's classification of an action, taken from the action catalog before deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Classification {
    /// Internal or external.
    pub scope: EffectScope,
    /// Read, write or irreversible.
    pub access: Access,
    /// Risk level.
    pub risk: Risk,
}

/// A declared cost dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// Wall-clock milliseconds.
    WallMs,
    /// Model tokens.
    Tokens,
    /// Money in micro-units of the ledger's currency.
    MoneyMicros,
    /// Effect calls.
    Calls,
    /// Bytes moved.
    Bytes,
}

impl Dimension {
    /// Every dimension.
    pub const ALL: [Dimension; 5] = [Self::WallMs, Self::Tokens, Self::MoneyMicros, Self::Calls, Self::Bytes];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WallMs => "wall_ms",
            Self::Tokens => "tokens",
            Self::MoneyMicros => "money_micros",
            Self::Calls => "calls",
            Self::Bytes => "bytes",
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dimension {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<Self, Rejection> {
        Dimension::ALL.into_iter().find(|d| d.as_str() == s.trim()).ok_or_else(|| {
            Rejection::new(
                ErrorCode::BadArgument,
                format!("`{s}` is not a cost dimension (wall_ms, tokens, money_micros, calls, bytes)"),
            )
        })
    }
}

/// An amount per cost dimension (absent dimensions are zero). Amounts stay below 2^53 to survive JSON.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cost(pub BTreeMap<Dimension, u64>);

impl Cost {
    /// No cost.
    pub fn zero() -> Self {
        Self::default()
    }

    /// The amount in one dimension.
    pub fn get(&self, d: Dimension) -> u64 {
        self.0.get(&d).copied().unwrap_or(0)
    }

    /// Sets one dimension (zero removes it).
    pub fn set(&mut self, d: Dimension, amount: u64) {
        if amount == 0 {
            self.0.remove(&d);
        } else {
            self.0.insert(d, amount);
        }
    }

    /// A cost with one dimension.
    pub fn of(d: Dimension, amount: u64) -> Self {
        let mut c = Self::zero();
        c.set(d, amount);
        c
    }

    /// Whether every dimension is zero.
    pub fn is_zero(&self) -> bool {
        self.0.values().all(|v| *v == 0)
    }

    /// Parses `calls=1,tokens=500` (the CLI form).
    pub fn parse_pairs(text: &str) -> Result<Self, Rejection> {
        let mut c = Self::zero();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                Rejection::new(ErrorCode::BadArgument, format!("cost `{pair}` must be written DIMENSION=AMOUNT"))
            })?;
            let amount: u64 = v.trim().parse().map_err(|_| {
                Rejection::new(ErrorCode::BadArgument, format!("cost amount `{v}` must be a whole number ≥ 0"))
            })?;
            if amount > crate::canonical::MAX_SAFE_INTEGER {
                return Err(Rejection::new(ErrorCode::BadArgument, format!("cost amount {amount} is above 2^53-1")));
            }
            c.set(k.parse()?, amount);
        }
        Ok(c)
    }
}

impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0");
        }
        let parts: Vec<String> = self.0.iter().map(|(d, v)| format!("{d}={v}")).collect();
        f.write_str(&parts.join(","))
    }
}

/// How reproducible the proposed action is, as declared by the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Nondeterminism {
    /// Same args, same outcome.
    #[default]
    None,
    /// Small variation (timestamps, ordering).
    Low,
    /// Outcome may differ run to run.
    High,
}

/// Payload of `ProposalSubmitted`. The proposal id is the event id; the actor is the event's origin; the run is
/// the event's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// Action name from the action catalog, e.g. `fs.write`.
    pub action: String,
    /// What the action touches, e.g. `file:/sandbox/report.md`.
    pub resource: String,
    /// Canonical JSON arguments (exactly what an execution permit will be bound to).
    pub args: serde_json::Value,
    /// blake3 of the canonical args, hex.
    pub args_hash: String,
    /// What the agent says it is for.
    pub purpose: String,
    /// The agent's cost estimate (reserved against budgets on allow).
    pub cost_estimate: Cost,
    /// Declared nondeterminism.
    pub nondeterminism: Nondeterminism,
    /// The completed effect this proposal undoes (rollback compensations only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensates: Option<crate::ids::EventId>,
}

/// Canonicalises proposal args (a JSON object, at most [`MAX_ARGS_BYTES`]) and returns them with their blake3.
pub fn canonical_args(text: &str) -> Result<(CanonicalJson, String), Rejection> {
    let args = CanonicalJson::parse(text)?;
    if args.as_bytes().len() > MAX_ARGS_BYTES {
        return Err(Rejection::new(
            ErrorCode::BadPayloadStructure,
            format!("args are {} bytes canonicalised; the limit is {MAX_ARGS_BYTES}", args.as_bytes().len()),
        ));
    }
    let hash = blake3::hash(args.as_bytes()).to_hex().to_string();
    Ok((args, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_pairs_round_trip() {
        let c = Cost::parse_pairs("calls=1, tokens=500").unwrap();
        assert_eq!(c.get(Dimension::Tokens), 500);
        assert_eq!(c.to_string(), "tokens=500,calls=1");
        assert!(Cost::parse_pairs("gold=1").is_err());
        assert!(Cost::parse_pairs("calls=-1").is_err());
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"tokens":500,"calls":1}"#);
    }

    #[test]
    fn args_hash_ignores_layout() {
        let (a, ha) = canonical_args(r#"{"b":1,"a":2}"#).unwrap();
        let (_, hb) = canonical_args("{ \"a\": 2, \"b\": 1 }").unwrap();
        assert_eq!(ha, hb);
        assert_eq!(a.as_str(), r#"{"a":2,"b":1}"#);
        let big = format!(r#"{{"s":"{}"}}"#, "x".repeat(MAX_ARGS_BYTES));
        assert_eq!(canonical_args(&big).unwrap_err().code, ErrorCode::BadPayloadStructure);
    }
}
