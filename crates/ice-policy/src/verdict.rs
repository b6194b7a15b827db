//! What evaluating a request against the policy set concludes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The policy set's conclusion about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyOutcome {
    /// At least one permit is satisfied, no forbid is, none asks for approval, and nothing errored.
    Permit,
    /// At least one forbid is satisfied (always wins).
    Forbid,
    /// No policy permits the request (Cedar's default deny).
    NoPermit,
    /// Permitted, but a satisfied permit is annotated `@require_approval("why")`: a human must approve.
    RequireApproval,
    /// The request could not be evaluated (args do not match the schema, unknown action, a policy errored):
    /// the caller denies.
    Error,
}

impl PolicyOutcome {
    /// The snake_case name, as in case files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Permit => "permit",
            Self::Forbid => "forbid",
            Self::NoPermit => "no_permit",
            Self::RequireApproval => "require_approval",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for PolicyOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome with the policies that determined it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVerdict {
    /// The conclusion.
    pub outcome: PolicyOutcome,
    /// Ids (from `@id`) of the determining policies, sorted: the satisfied forbids on `Forbid`, the satisfied
    /// permits on `Permit` / `RequireApproval` (and on `Error` when permits were satisfied despite the error);
    /// empty on `NoPermit`.
    pub policies: Vec<String>,
    /// On `RequireApproval`: the `@require_approval` values of the permits that asked for approval.
    pub approval_reasons: Vec<String>,
    /// Evaluation or request-validation errors. Non-empty exactly when the outcome is `Error`, except that a
    /// `Forbid` keeps the errors of other policies for the record.
    pub errors: Vec<String>,
}

impl PolicyVerdict {
    /// A verdict for a request that could not be evaluated at all.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            outcome: PolicyOutcome::Error,
            policies: Vec::new(),
            approval_reasons: Vec::new(),
            errors: vec![message.into()],
        }
    }
}
