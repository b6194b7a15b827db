//! Principals: who acts. Written `KIND:NAME`, e.g. `agent:planner`, `human:alice`, `runtime:ice`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, Rejection};

/// The kind of a principal; decides what it may emit (see [`crate::kind::EventKind::may_be_emitted_by`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    /// An AI agent: proposes, never decides.
    Agent,
    /// A person: an authority for grants, approvals and run control.
    Human,
    /// ICE itself.
    Runtime,
    /// The policy engine.
    Policy,
    /// An effector (filesystem, process, HTTP, MCP tool) reporting outcomes.
    Effector,
}

impl PrincipalKind {
    /// All kinds, in authority order from lowest to highest.
    pub const ALL: [PrincipalKind; 5] = [Self::Agent, Self::Effector, Self::Policy, Self::Human, Self::Runtime];

    /// The lowercase name used in the `KIND:NAME` form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Human => "human",
            Self::Runtime => "runtime",
            Self::Policy => "policy",
            Self::Effector => "effector",
        }
    }

    /// Authority level: higher levels may do more (agents are lowest, the runtime highest).
    pub fn authority(self) -> u8 {
        match self {
            Self::Agent => 0,
            Self::Effector => 1,
            Self::Policy => 2,
            Self::Human => 3,
            Self::Runtime => 4,
        }
    }
}

/// Who acts: a kind and a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    /// The kind, which decides authority.
    pub kind: PrincipalKind,
    /// A name unique within the kind: 1–128 characters of `[A-Za-z0-9._@-]`.
    pub name: String,
}

impl Principal {
    /// The runtime itself.
    pub fn runtime() -> Self {
        Self { kind: PrincipalKind::Runtime, name: "ice".to_owned() }
    }

    /// Builds a principal, checking the name.
    pub fn new(kind: PrincipalKind, name: &str) -> Result<Self, Rejection> {
        let ok = !name.is_empty()
            && name.len() <= 128
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'));
        if !ok {
            return Err(Rejection::new(
                ErrorCode::BadEnvelopeField,
                format!("principal name `{name}` must be 1–128 characters of A-Z a-z 0-9 . _ @ -"),
            ));
        }
        Ok(Self { kind, name: name.to_owned() })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.name)
    }
}

impl FromStr for Principal {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<Self, Rejection> {
        let (kind, name) = s.split_once(':').ok_or_else(|| {
            Rejection::new(ErrorCode::BadEnvelopeField, format!("principal `{s}` must be written KIND:NAME"))
        })?;
        let kind = PrincipalKind::ALL.into_iter().find(|k| k.as_str() == kind).ok_or_else(|| {
            Rejection::new(
                ErrorCode::BadEnvelopeField,
                format!("principal kind `{kind}` is not one of agent, human, runtime, policy, effector"),
            )
        })?;
        Principal::new(kind, name)
    }
}

impl Serialize for Principal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Principal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let p: Principal = "agent:planner-1".parse().unwrap();
        assert_eq!(p.kind, PrincipalKind::Agent);
        assert_eq!(p.to_string(), "agent:planner-1");
        assert!("robot:x".parse::<Principal>().is_err());
        assert!("agent:".parse::<Principal>().is_err());
        assert!("agent:a b".parse::<Principal>().is_err());
        assert!("agent".parse::<Principal>().is_err());
    }
}
