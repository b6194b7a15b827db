//! A proposer takes back a proposal it no longer waits for: the MCP client stopped waiting for a human, an agent
//! gave up. Without this the approval stays in the approvers' queue until it expires, and an approver who answers
//! late gets a permit nobody will use.
//!
//! `Runtime::withdraw` records, in one append, the proposer's `ProposalWithdrawn` (`{proposal_id, reason}`) and
//! what it closes: a pending approval expires (`ApprovalExpired`, caused by the withdrawal), a live unused permit is
//! revoked and its budget reservation released. Only the principal that proposed may withdraw, and only while
//! something is still open; anything else is refused with a code and recorded.

use ice_core::effect::{ApprovalStatus, ApprovalTimeout, PermitStatus};
use ice_core::{ErrorCode, Event, EventId, EventKind, LedgerState, Principal, Rejection};
use serde::Serialize;
use serde_json::json;

use crate::caller::Caller;
use crate::runtime::{Runtime, RuntimeError};

/// Payload of `ProposalWithdrawn` as the runtime records it.
#[derive(Debug, Serialize)]
struct Withdrawn<'a> {
    proposal_id: EventId,
    reason: &'a str,
}

impl Runtime {
    /// Withdraws `proposal` (its proposer only): closes its pending approval or revokes its unused permit, in one
    /// append with the `ProposalWithdrawn`. Returns the appended events.
    pub fn withdraw(&self, caller: &Caller, proposal: EventId, reason: &str) -> Result<Vec<Event>, RuntimeError> {
        let attempt = || {
            json!({"kind": "ProposalWithdrawn", "proposal_id": proposal.to_string(),
                "origin": caller.principal().to_string()})
        };
        self.commit_with(
            &|st: &LedgerState| {
                let fx = st.effects();
                let approval = fx.approval_for(proposal).filter(|a| a.status == ApprovalStatus::Pending);
                let now = self.now();
                let permit = fx.permit_for(proposal).filter(|p| p.status(now) == PermitStatus::Live);
                let (actor, run) = match (approval, permit) {
                    (Some(a), _) => (&a.request.actor, a.run),
                    (None, Some(p)) => (&p.terms.actor, p.run),
                    (None, None) => {
                        return Err(Rejection::new(
                            ErrorCode::ApprovalClosed,
                            format!("proposal {proposal} has no pending approval or unused permit to withdraw"),
                        ));
                    }
                };
                if actor != caller.principal() {
                    return Err(Rejection::new(
                        ErrorCode::ActAsNotAllowed,
                        format!("only {actor}, who proposed {proposal}, may withdraw it"),
                    ));
                }
                let payload = Withdrawn { proposal_id: proposal, reason };
                let mut withdrawn = self.caller_draft(caller, EventKind::ProposalWithdrawn, run, &payload)?;
                withdrawn.causes = vec![proposal];
                let cause = withdrawn.event_id;
                let mut drafts = vec![withdrawn];
                if let Some(a) = approval {
                    let t = ApprovalTimeout { approval_id: a.id, approvers: vec![], expires_at: None };
                    let mut d = self.internal(EventKind::ApprovalExpired, Principal::runtime(), run, &t)?;
                    d.causes = vec![a.id, cause];
                    drafts.push(d);
                }
                if let Some(p) = permit {
                    drafts.extend(self.revoke_permit_drafts(st, &[p.id], "withdrawn by the proposer")?);
                }
                Ok(drafts)
            },
            &attempt,
        )
    }
}
