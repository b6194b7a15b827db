//! Who may do what: roles, credentials, the attribution an event carries for the authenticated caller behind it,
//! API tokens as derived state, and the role rules that admission and the fold both enforce.
//!
//! Principals are never taken from input: the runtime authenticates a caller (a mapped OS user or a token) and
//! records, with every event made on a caller's behalf, an [`Attribution`]: who authenticated, how, and with which
//! roles. The event's `origin` is the principal acted for — the caller itself, or an agent an operator is allowed
//! to act for. [`check_caller`] is the one place that says which roles a kind needs; because the fold runs it too,
//! a ledger into which someone appended a forged approval or grant (on a shared database) does not fold.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, Rejection};
use crate::ids::{EventId, Timestamp};
use crate::kind::{EventKind, Family};
use crate::principal::{Principal, PrincipalKind};

/// A role a credential carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Proposes, executes its own permits, records cognitive events about itself.
    Agent,
    /// Answers approvals whose approver patterns match it (never its own proposals).
    Approver,
    /// Runs, grants, budgets, policy, agents, effects (resolve, retry, rollback), tokens, checkpoints.
    Operator,
    /// Reads the ledger and derived state; changes nothing.
    Auditor,
}

impl Role {
    /// Every role, in their fixed order.
    pub const ALL: [Role; 4] = [Self::Agent, Self::Approver, Self::Operator, Self::Auditor];

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Approver => "approver",
            Self::Operator => "operator",
            Self::Auditor => "auditor",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::Agent => 1,
            Self::Approver => 2,
            Self::Operator => 4,
            Self::Auditor => 8,
        }
    }
}

impl FromStr for Role {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<Self, Rejection> {
        Self::ALL.into_iter().find(|r| r.as_str() == s.trim()).ok_or_else(|| {
            Rejection::new(
                ErrorCode::BadArgument,
                format!("`{s}` is not a role: use agent, approver, operator or auditor"),
            )
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of roles (written `agent,operator`; empty as `-`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Roles(u8);

impl Roles {
    /// No role.
    pub const NONE: Roles = Roles(0);
    /// Every role.
    pub const ALL: Roles = Roles(15);

    /// The set holding exactly `roles`.
    pub fn of(roles: &[Role]) -> Self {
        Self(roles.iter().fold(0, |acc, r| acc | r.bit()))
    }

    /// Whether `role` is in the set.
    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// Whether every role of `other` is in this set.
    pub fn covers(self, other: Roles) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The roles in their fixed order.
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let names: Vec<&str> = self.iter().map(Role::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl FromStr for Roles {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<Self, Rejection> {
        if s.trim() == "-" {
            return Ok(Self::NONE);
        }
        let roles = s.split(',').filter(|r| !r.trim().is_empty()).map(str::parse).collect::<Result<Vec<Role>, _>>()?;
        Ok(Self::of(&roles))
    }
}

impl Serialize for Roles {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Roles {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::of(&Vec::<Role>::deserialize(d)?))
    }
}

/// How a caller was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Credential {
    /// A local OS user, by uid, mapped to a principal in the home's config.
    OsUser {
        /// The uid the process ran as.
        uid: u32,
    },
    /// An API token (its id is the `TokenIssued` event id; the secret is never recorded).
    Token {
        /// The token id.
        id: EventId,
    },
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OsUser { uid } => write!(f, "uid:{uid}"),
            Self::Token { id } => write!(f, "token:{id}"),
        }
    }
}

impl FromStr for Credential {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<Self, Rejection> {
        let bad = || Rejection::new(ErrorCode::BadEnvelopeField, format!("credential `{s}` is not uid:N or token:ID"));
        match s.split_once(':') {
            Some(("uid", n)) => Ok(Self::OsUser { uid: n.parse().map_err(|_| bad())? }),
            Some(("token", id)) => Ok(Self::Token { id: id.parse().map_err(|_| bad())? }),
            _ => Err(bad()),
        }
    }
}

/// Who stood behind an event: the authenticated principal, how it authenticated and its roles. Recorded in the
/// envelope (see [`crate::event`]) of every event made on a caller's behalf; `origin` is the principal acted for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attribution {
    /// Who authenticated.
    pub principal: Principal,
    /// How.
    pub via: Credential,
    /// The roles the credential carried.
    pub roles: Roles,
}

impl fmt::Display for Attribution {
    /// `PRINCIPAL;CREDENTIAL;ROLES`, e.g. `human:alice;uid:1000;approver,operator`: the exact text the envelope hash
    /// covers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{};{};{}", self.principal, self.via, self.roles)
    }
}

impl FromStr for Attribution {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<Self, Rejection> {
        let mut parts = s.split(';');
        let (Some(p), Some(via), Some(roles), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(Rejection::new(
                ErrorCode::BadEnvelopeField,
                format!("attribution `{s}` is not PRINCIPAL;CREDENTIAL;ROLES"),
            ));
        };
        let a = Self { principal: p.parse()?, via: via.parse()?, roles: roles.parse()? };
        // Only one text form per value: the hash covers the text.
        if a.to_string() != s {
            return Err(Rejection::new(ErrorCode::BadEnvelopeField, format!("attribution `{s}` is not canonical")));
        }
        Ok(a)
    }
}

/// Whether principals of this kind can be held by a caller. `runtime`, `effector` and `policy` are ICE's own.
pub fn claimable(kind: PrincipalKind) -> bool {
    matches!(kind, PrincipalKind::Agent | PrincipalKind::Human)
}

/// The roles that may cause an event of `kind` on a caller's behalf (empty: no caller may; only the runtime).
pub fn roles_for(kind: EventKind) -> Roles {
    use EventKind as K;
    match kind {
        K::ProposalSubmitted
        | K::ProposalWithdrawn
        | K::ObservationRecorded
        | K::PlanRecorded
        | K::ReasoningRecorded
        | K::MemoryProposed => Roles::of(&[Role::Agent, Role::Operator]),
        K::ApprovalGranted | K::ApprovalDenied => Roles::of(&[Role::Approver]),
        K::RunCreated
        | K::RunTransitioned
        | K::AgentSuspended
        | K::Reconfigured
        | K::AgentResumed
        | K::RunContained
        | K::PolicyActivated
        | K::BudgetSet
        | K::BudgetSettled
        | K::GrantIssued
        | K::GrantRevoked
        | K::TokenIssued
        | K::TokenRevoked
        | K::ToolPinned
        | K::MemoryDeprecated
        | K::MemorySuperseded
        | K::MemoryInvalidated => Roles::of(&[Role::Operator]),
        K::LedgerInitialized
        | K::TransitionRejected
        | K::DecisionMade
        | K::ApprovalRequested
        | K::ApprovalExpired
        | K::ApprovalEscalated
        | K::BudgetReserved
        | K::BudgetReleased
        | K::GrantUsed
        | K::GrantExpired
        | K::PermitIssued
        | K::PermitRevoked
        | K::EffectRefused
        | K::EffectStarted
        | K::EffectCompleted
        | K::EffectFailed
        | K::EffectUnknown
        | K::Checkpoint
        | K::SnapshotRecorded
        | K::MemoryPromoted
        | K::MemoryExpired
        | K::MemoryRead => Roles::NONE,
    }
}

/// Caller acts the runtime also records on its own: a run moving to EXECUTING when an effect starts, a violation's
/// consequence (suspension, containment), the default policy at initialisation, an effect outcome's settlement, an
/// MCP tool pinned on first sight, a memory item superseded by a promotion or invalidated by the rollback of the
/// effect it derives from.
/// Every other kind a role may cause (grants, budgets, tokens, resumptions, runs created, approvals) exists only
/// on a caller's behalf, so one without an attribution — even under the runtime's name — does not fold.
pub fn runtime_also_records(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::RunTransitioned
            | EventKind::RunContained
            | EventKind::AgentSuspended
            | EventKind::PolicyActivated
            | EventKind::BudgetSettled
            | EventKind::ToolPinned
            | EventKind::MemorySuperseded
            | EventKind::MemoryInvalidated
    )
}

/// The roles a caller exercises when the event's origin is `origin`: its own roles when it acts as itself; only
/// `agent` when an operator acts for an agent (acting for someone never lends the actor's other roles).
pub fn effective_roles(origin: &Principal, acted_by: &Attribution) -> Roles {
    if *origin == acted_by.principal { acted_by.roles } else { Roles::of(&[Role::Agent]) }
}

/// Payload of `TokenIssued`. The token id is the event id; only a keyed hash of the secret is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenIssued {
    /// The principal the token authenticates as.
    pub principal: Principal,
    /// Its roles.
    pub roles: Roles,
    /// Expiry, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// blake3 keyed hash (hex) of the secret, under the home's token key (never the secret).
    pub secret_hash: String,
    /// A label for listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Payload of `TokenRevoked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevoked {
    /// The token.
    pub token_id: EventId,
    /// Why.
    pub reason: String,
}

/// A token as derived state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Id (the `TokenIssued` event id).
    pub id: EventId,
    /// Terms.
    pub terms: TokenIssued,
    /// Who issued it.
    pub issued_by: Principal,
    /// When.
    pub issued_at: Timestamp,
    /// Why it was revoked, if it was.
    pub revoked: Option<String>,
}

/// Where a token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenStatus {
    /// Usable.
    Live,
    /// Revoked.
    Revoked,
    /// Past its expiry.
    Expired,
}

impl TokenRecord {
    /// Status at `now`.
    pub fn status(&self, now: Timestamp) -> TokenStatus {
        if self.revoked.is_some() {
            TokenStatus::Revoked
        } else if self.terms.expires_at.is_some_and(|t| now.0 > t.0) {
            TokenStatus::Expired
        } else {
            TokenStatus::Live
        }
    }
}

/// Every token ever issued (tokens are few; revoked and expired ones stay listed for audit).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tokens {
    tokens: BTreeMap<EventId, TokenRecord>,
}

impl Tokens {
    /// Tokens by id.
    pub fn all(&self) -> &BTreeMap<EventId, TokenRecord> {
        &self.tokens
    }

    /// One token.
    pub fn get(&self, id: EventId) -> Option<&TokenRecord> {
        self.tokens.get(&id)
    }

    /// Checks `TokenIssued` / `TokenRevoked` against the tokens so far.
    pub fn check(&self, kind: EventKind, payload: &str) -> Result<(), Rejection> {
        match kind {
            EventKind::TokenIssued => {
                let t: TokenIssued = parse(kind, payload)?;
                if !claimable(t.principal.kind) {
                    return Err(Rejection::new(
                        ErrorCode::ReservedPrincipal,
                        format!("a token cannot authenticate as {}", t.principal),
                    ));
                }
                if t.roles.is_empty() {
                    return Err(Rejection::new(ErrorCode::BadArgument, "a token needs at least one role"));
                }
                if t.principal.kind == PrincipalKind::Agent && t.roles != Roles::of(&[Role::Agent]) {
                    return Err(Rejection::new(
                        ErrorCode::BadArgument,
                        format!("{} is an agent: its token carries the agent role only", t.principal),
                    ));
                }
                if t.principal.kind == PrincipalKind::Human && t.roles.contains(Role::Agent) {
                    return Err(Rejection::new(
                        ErrorCode::BadArgument,
                        format!("{} is a human: the agent role belongs to agent principals", t.principal),
                    ));
                }
                Ok(())
            }
            EventKind::TokenRevoked => {
                let r: TokenRevoked = parse(kind, payload)?;
                match self.tokens.get(&r.token_id) {
                    None => Err(Rejection::new(ErrorCode::NotFound, format!("token {} does not exist", r.token_id))),
                    Some(t) if t.revoked.is_some() => {
                        Err(Rejection::new(ErrorCode::TokenRevoked, format!("token {} is already revoked", r.token_id)))
                    }
                    Some(_) => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// Folds `TokenIssued` / `TokenRevoked` (checked already).
    pub fn apply(&mut self, kind: EventKind, id: EventId, origin: &Principal, time: Timestamp, payload: &str) {
        match kind {
            EventKind::TokenIssued => {
                if let Ok(terms) = serde_json::from_str::<TokenIssued>(payload) {
                    let record = TokenRecord { id, terms, issued_by: origin.clone(), issued_at: time, revoked: None };
                    self.tokens.insert(id, record);
                }
            }
            EventKind::TokenRevoked => {
                if let Ok(r) = serde_json::from_str::<TokenRevoked>(payload)
                    && let Some(t) = self.tokens.get_mut(&r.token_id)
                {
                    t.revoked = Some(r.reason);
                }
            }
            _ => {}
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(kind: EventKind, payload: &str) -> Result<T, Rejection> {
    serde_json::from_str(payload)
        .map_err(|err| Rejection::new(ErrorCode::BadPayloadStructure, format!("{kind} payload: {err}")))
}

/// The caller rules for one event: who stood behind it, whether that credential was good at the time, and whether
/// its roles allow the kind. Runs at admission (`admitting`: token expiry checked against `now`) and in the fold.
///
/// - Events of humans and agents are made on a caller's behalf and must carry an attribution; ICE's own
///   principals (`runtime`, `effector`, `policy`) carry none and can never be claimed.
/// - Acting for another principal (origin ≠ the authenticated principal) is an operator acting for an agent, and
///   then only the agent role is exercised.
/// - A token must exist, name the same principal, carry at least the recorded roles, not be revoked, and (when
///   admitting) not be expired.
pub fn check_caller(
    kind: EventKind,
    origin: &Principal,
    acted_by: Option<&Attribution>,
    tokens: &Tokens,
    now: Timestamp,
    admitting: bool,
) -> Result<(), Rejection> {
    if !kind.may_be_emitted_by(origin.kind) {
        return Err(Rejection::new(
            ErrorCode::OriginNotAuthorized,
            format!("{origin} may not emit {kind} ({} events)", kind.family().as_str()),
        ));
    }
    let Some(a) = acted_by else {
        if claimable(origin.kind) || (!roles_for(kind).is_empty() && !runtime_also_records(kind)) {
            return Err(Rejection::new(
                ErrorCode::Unauthenticated,
                format!("{kind} by {origin} carries no authenticated caller"),
            ));
        }
        return Ok(());
    };
    if !claimable(origin.kind) || !claimable(a.principal.kind) {
        return Err(Rejection::new(
            ErrorCode::ReservedPrincipal,
            format!("{kind}: {} principals cannot be claimed by a caller", origin.kind.as_str()),
        ));
    }
    if *origin != a.principal {
        if origin.kind != PrincipalKind::Agent || !a.roles.contains(Role::Operator) {
            return Err(Rejection::new(
                ErrorCode::ActAsNotAllowed,
                format!("{} may not act for {origin}: only operators act, and only for agents", a.principal),
            ));
        }
        if let Credential::Token { .. } = a.via {
            return Err(Rejection::new(
                ErrorCode::ActAsNotAllowed,
                format!("{} authenticated by token acts only as itself, not for {origin}", a.principal),
            ));
        }
    }
    if let Credential::Token { id } = a.via {
        let t = tokens
            .get(id)
            .ok_or_else(|| Rejection::new(ErrorCode::TokenInvalid, format!("token {id} does not exist")))?;
        if t.terms.principal != a.principal || !t.terms.roles.covers(a.roles) {
            return Err(Rejection::new(
                ErrorCode::TokenInvalid,
                format!("token {id} authenticates {} with roles {}, not {a}", t.terms.principal, t.terms.roles),
            ));
        }
        match t.status(now) {
            TokenStatus::Revoked => {
                return Err(Rejection::new(ErrorCode::TokenRevoked, format!("token {id} was revoked")));
            }
            TokenStatus::Expired if admitting => {
                return Err(Rejection::new(ErrorCode::TokenExpired, format!("token {id} has expired")));
            }
            _ => {}
        }
    }
    let needed = roles_for(kind);
    let have = effective_roles(origin, a);
    if !needed.iter().any(|r| have.contains(r)) {
        let what = if needed.is_empty() {
            format!("{kind} events are recorded by ICE itself, never on a caller's behalf")
        } else {
            format!("{kind} needs the role {} ({} has {have})", needed, a.principal)
        };
        return Err(Rejection::new(ErrorCode::RoleRequired, what));
    }
    // Agents record cognitive events about themselves only; a human's own notes are its own too.
    if kind.family() == Family::Cognitive && origin.kind == PrincipalKind::Agent && !have.contains(Role::Agent) {
        return Err(Rejection::new(ErrorCode::RoleRequired, format!("{kind} for {origin} needs the agent role")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(p: &str, via: &str, roles: &str) -> Attribution {
        Attribution { principal: p.parse().unwrap(), via: via.parse().unwrap(), roles: roles.parse().unwrap() }
    }

    #[test]
    fn attribution_text_round_trips_and_is_canonical() {
        let a = attr("human:alice", "uid:1000", "operator,approver");
        assert_eq!(a.to_string(), "human:alice;uid:1000;approver,operator");
        assert_eq!(a.to_string().parse::<Attribution>().unwrap(), a);
        assert!("human:alice;uid:1000;operator,approver".parse::<Attribution>().is_err());
        assert!("human:alice;uid:x;operator".parse::<Attribution>().is_err());
        assert!("human:alice;uid:1;operator;x".parse::<Attribution>().is_err());
        assert_eq!("-".parse::<Roles>().unwrap(), Roles::NONE);
    }

    #[test]
    fn role_rules() {
        let op = attr("human:op", "uid:0", "agent,approver,operator,auditor");
        let t = Tokens::default();
        let now = Timestamp(0);
        let human: Principal = "human:op".parse().unwrap();
        let agent: Principal = "agent:a".parse().unwrap();
        let ok = |k, o: &Principal, a: &Attribution| check_caller(k, o, Some(a), &t, now, true).map_err(|r| r.code);
        assert_eq!(ok(EventKind::GrantIssued, &human, &op), Ok(()));
        // acting for an agent lends only the agent role
        assert_eq!(ok(EventKind::ProposalSubmitted, &agent, &op), Ok(()));
        assert_eq!(ok(EventKind::GrantIssued, &agent, &op), Err(ErrorCode::OriginNotAuthorized));
        // acting for a human is never allowed
        let bob: Principal = "human:bob".parse().unwrap();
        assert_eq!(ok(EventKind::ReasoningRecorded, &bob, &op), Err(ErrorCode::ActAsNotAllowed));
        // only the runtime records effects and refusals
        assert_eq!(ok(EventKind::EffectCompleted, &human, &op), Err(ErrorCode::OriginNotAuthorized));
        // an auditor changes nothing
        let aud = attr("human:op", "uid:0", "auditor");
        assert_eq!(ok(EventKind::RunCreated, &human, &aud), Err(ErrorCode::RoleRequired));
        // human and agent events need a caller; runtime events have none
        assert_eq!(
            check_caller(EventKind::RunCreated, &human, None, &t, now, true).map_err(|r| r.code),
            Err(ErrorCode::Unauthenticated)
        );
        assert!(check_caller(EventKind::DecisionMade, &Principal::runtime(), None, &t, now, true).is_ok());
        // A caller's act under the runtime's name, without a caller: refused.
        let forged = check_caller(EventKind::GrantIssued, &Principal::runtime(), None, &t, now, true);
        assert_eq!(forged.map_err(|r| r.code), Err(ErrorCode::Unauthenticated));
        let effector: Principal = "effector:fs".parse().unwrap();
        let forged = check_caller(EventKind::GrantIssued, &effector, None, &t, now, true);
        assert_eq!(forged.map_err(|r| r.code), Err(ErrorCode::OriginNotAuthorized));
        let rt = attr("human:op", "uid:0", "operator");
        assert_eq!(ok(EventKind::RunCreated, &Principal::runtime(), &rt), Err(ErrorCode::ReservedPrincipal));
    }

    #[test]
    fn token_callers_are_checked_against_the_token() {
        let mut t = Tokens::default();
        let id = EventId(uuid::Uuid::from_u64_pair(7, 7));
        let terms = TokenIssued {
            principal: "agent:a".parse().unwrap(),
            roles: Roles::of(&[Role::Agent]),
            expires_at: Some(Timestamp(100)),
            secret_hash: "00".into(),
            label: None,
        };
        let payload = serde_json::to_string(&terms).unwrap();
        t.apply(EventKind::TokenIssued, id, &"human:op".parse().unwrap(), Timestamp(0), &payload);
        let agent: Principal = "agent:a".parse().unwrap();
        let via = format!("token:{id}");
        let good = attr("agent:a", &via, "agent");
        let check = |a: &Attribution, now: i64| {
            check_caller(EventKind::ProposalSubmitted, &agent, Some(a), &t, Timestamp(now), true).map_err(|r| r.code)
        };
        assert_eq!(check(&good, 50), Ok(()));
        assert_eq!(check(&good, 150), Err(ErrorCode::TokenExpired));
        // the fold accepts an event admitted before expiry even if sealing lifted its time past it
        assert!(check_caller(EventKind::ProposalSubmitted, &agent, Some(&good), &t, Timestamp(150), false).is_ok());
        assert_eq!(check(&attr("agent:a", &via, "agent,operator"), 50), Err(ErrorCode::TokenInvalid));
        // Someone else's token: as itself it does not match the token; for the token's principal it is acting for.
        let b: Principal = "agent:b".parse().unwrap();
        let other = attr("agent:b", &via, "agent");
        let as_b = check_caller(EventKind::ProposalSubmitted, &b, Some(&other), &t, Timestamp(50), true);
        assert_eq!(as_b.map_err(|r| r.code), Err(ErrorCode::TokenInvalid));
        assert_eq!(check(&other, 50), Err(ErrorCode::ActAsNotAllowed));
        let revoke = serde_json::to_string(&TokenRevoked { token_id: id, reason: "x".into() }).unwrap();
        t.apply(
            EventKind::TokenRevoked,
            EventId(uuid::Uuid::nil()),
            &"human:op".parse().unwrap(),
            Timestamp(1),
            &revoke,
        );
        assert_eq!(
            check_caller(EventKind::ProposalSubmitted, &agent, Some(&good), &t, Timestamp(50), false)
                .map_err(|r| r.code),
            Err(ErrorCode::TokenRevoked)
        );
    }
}
