//! Who is asking: authentication of callers, once, for every entry point.
//!
//! A [`Caller`] can only be made by [`Runtime::authenticate`], from a credential the front end presents: the local
//! OS user the process runs as (mapped to a principal and roles in `.ice/config.toml` `[[users]]`), or an API token
//! (`ice token create`). No entry point passes a principal name the caller typed: `--as` / `act_as` only asks to act
//! for an agent, which the user's `act_as` patterns must allow. Every state-changing method takes a `&Caller`; the
//! roles each transition needs are checked by admission (and the fold) from the attribution the caller's events
//! carry ([`ice_core::auth::check_caller`]), and by [`Runtime::require`] for the few acts that are not events.

use std::fmt;

use ice_core::auth::{Credential, Role, Roles, TokenIssued, TokenRevoked, TokenStatus, claimable};
use ice_core::effect::principal_matches;
use ice_core::{Attribution, Draft, ErrorCode, Event, EventId, EventKind, Principal, PrincipalKind, Rejection, RunId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::runtime::{Runtime, RuntimeError};

/// Prefix of every token secret (so secret scanners and people recognise one).
const TOKEN_PREFIX: &str = "ice_";

/// An authenticated caller: the principal acted for, and the attribution recorded with its events.
#[derive(Clone, PartialEq, Eq)]
pub struct Caller {
    principal: Principal,
    attribution: Attribution,
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Caller({} as {})", self.attribution, self.principal)
    }
}

impl Caller {
    /// The principal acted for (the event origin).
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Who authenticated, how, with which roles.
    pub fn attribution(&self) -> &Attribution {
        &self.attribution
    }

    /// The roles exercised (only `agent` when acting for an agent).
    pub fn roles(&self) -> Roles {
        ice_core::auth::effective_roles(&self.principal, &self.attribution)
    }

    /// Whether the caller exercises `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles().contains(role)
    }
}

/// One `[[users]]` entry of `.ice/config.toml`: a local OS user, by uid, and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalUser {
    /// The OS uid.
    pub uid: u32,
    /// The principal the user is (`human:NAME`).
    pub principal: String,
    /// Its roles.
    pub roles: Vec<Role>,
    /// Agents it may act for (`agent:planner`, `agent:*`); only operators may act for anyone.
    #[serde(default)]
    pub act_as: Vec<String>,
}

impl LocalUser {
    /// The OS user this process runs as, as `principal` with every role, allowed to act for any agent: what
    /// `ice init` writes for the user who initialises a home (and what benchmarks and tests of a bare runtime use).
    pub fn this_process(principal: &str) -> Self {
        Self {
            uid: process_uid(),
            principal: principal.to_owned(),
            roles: Role::ALL.to_vec(),
            act_as: vec!["agent:*".to_owned()],
        }
    }

    /// Checks the entry: a claimable principal, known roles, act_as patterns naming agents only.
    pub fn validate(&self) -> Result<Principal, Rejection> {
        let bad = |m: String| Rejection::new(ErrorCode::BadConfig, format!("[[users]] uid {}: {m}", self.uid));
        let principal: Principal = self.principal.parse().map_err(|e: Rejection| bad(e.message))?;
        if principal.kind != PrincipalKind::Human {
            return Err(bad(format!("{principal} is not a human principal (human:NAME); agents use tokens")));
        }
        if self.roles.contains(&Role::Agent) && !self.act_as.is_empty() {
            // Fine: an operator who also proposes as itself.
        }
        for pattern in &self.act_as {
            if !pattern.starts_with("agent:") {
                return Err(bad(format!("act_as `{pattern}` must name agents (agent:NAME or agent:*)")));
            }
            if !self.roles.contains(&Role::Operator) {
                return Err(bad("act_as needs the operator role".into()));
            }
        }
        Ok(principal)
    }
}

/// What a front end presents to be authenticated.
#[derive(Clone, Copy)]
pub enum Presented<'a> {
    /// The OS user this process runs as, optionally acting for an agent.
    Local {
        /// The agent to act for (`--as`).
        act_as: Option<&'a str>,
    },
    /// A token secret (`--token` / `ICE_TOKEN` / `Authorization: Bearer`).
    Token {
        /// The secret as printed by `ice token create`.
        secret: &'a str,
        /// Must be absent or the token's own principal: tokens act only as themselves.
        act_as: Option<&'a str>,
    },
}

impl fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local { act_as } => write!(f, "Local {{ act_as: {act_as:?} }}"),
            Self::Token { act_as, .. } => write!(f, "Token {{ secret: <hidden>, act_as: {act_as:?} }}"),
        }
    }
}

/// The OS uid of this process.
pub fn process_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Splits a token secret into its id and secret part (`ice_<id hex>_<secret hex>`).
fn split_token(text: &str) -> Option<(EventId, &str)> {
    let rest = text.trim().strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    if id.len() != 32 || secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let id = uuid::Uuid::try_parse(id).ok()?;
    Some((EventId(id), secret))
}

/// What a refused authentication records: never the secret, only the token id it claimed (if it parsed).
fn attempt_of(presented: &Presented<'_>) -> serde_json::Value {
    match presented {
        Presented::Local { act_as } => json!({"auth": "local", "uid": process_uid(), "act_as": act_as}),
        Presented::Token { secret, act_as } => {
            json!({"auth": "token", "token_id": split_token(secret).map(|(id, _)| id.to_string()), "act_as": act_as})
        }
    }
}

impl Runtime {
    /// Authenticates what a front end presents. A refusal is recorded (`TransitionRejected`, without any secret)
    /// and returned with its code: `ICE-E0901` unmapped user, `E0902` bad token, `E0903` revoked, `E0904` expired,
    /// `E0906` acting for a principal the credential may not act for, `E0907` a reserved principal.
    pub fn authenticate(&self, presented: &Presented<'_>) -> Result<Caller, RuntimeError> {
        self.authenticate_recording(presented, true)
    }

    /// [`Runtime::authenticate`] that records a refusal only when `record` is true. A network front end records
    /// refused credentials at a bounded rate, so a flood of bad tokens cannot fill the ledger, and counts the rest;
    /// the refusal returned is the same either way (without its record when none was written).
    pub fn authenticate_recording(&self, presented: &Presented<'_>, record: bool) -> Result<Caller, RuntimeError> {
        match self.authenticate_quietly(presented) {
            Ok(c) => Ok(c),
            Err(rejection) if record => Err(self.refuse(rejection, attempt_of(presented), None)),
            Err(rejection) => Err(RuntimeError::Rejected { rejection, record: None }),
        }
    }

    fn authenticate_quietly(&self, presented: &Presented<'_>) -> Result<Caller, Rejection> {
        match presented {
            Presented::Local { act_as } => {
                let uid = process_uid();
                let user = self.local_users().iter().find(|u| u.uid == uid).ok_or_else(|| {
                    Rejection::new(ErrorCode::Unauthenticated, format!("OS user uid {uid} is not mapped in [[users]]"))
                })?;
                let me = user.validate()?;
                let attribution = Attribution {
                    principal: me.clone(),
                    via: Credential::OsUser { uid },
                    roles: Roles::of(&user.roles),
                };
                let principal = match act_as {
                    None => me,
                    Some(text) => {
                        let target: Principal = text.parse()?;
                        if !claimable(target.kind) {
                            return Err(Rejection::new(
                                ErrorCode::ReservedPrincipal,
                                format!("{target} is ICE's own principal; no caller can act as it"),
                            ));
                        }
                        if target != me && !user.act_as.iter().any(|p| principal_matches(p, &target)) {
                            return Err(Rejection::new(
                                ErrorCode::ActAsNotAllowed,
                                format!("{me} (uid {uid}) may not act for {target}: no act_as entry matches it"),
                            ));
                        }
                        target
                    }
                };
                Ok(Caller { principal, attribution })
            }
            Presented::Token { secret, act_as } => {
                let (id, secret) = split_token(secret).ok_or_else(|| {
                    Rejection::new(ErrorCode::TokenInvalid, "the token is not of the form ice_<id>_<secret>")
                })?;
                let key = self.token_key().ok_or_else(|| {
                    Rejection::new(ErrorCode::TokenInvalid, "this home has no token key (keys/token.key)")
                })?;
                let now = self.now();
                let record = self
                    .with_state(|s| s.tokens().get(id).cloned())
                    .map_err(|e| Rejection::new(e.code(), format!("cannot read the token table: {e}")))?;
                let record = record
                    .ok_or_else(|| Rejection::new(ErrorCode::TokenInvalid, format!("token {id} does not exist")))?;
                let presented_hash = blake3::keyed_hash(&key, secret.as_bytes());
                // blake3's `Hash` compares in constant time.
                let matches = blake3::Hash::from_hex(&record.terms.secret_hash).is_ok_and(|h| h == presented_hash);
                if !matches {
                    return Err(Rejection::new(
                        ErrorCode::TokenInvalid,
                        format!("the secret of token {id} does not match"),
                    ));
                }
                match record.status(now) {
                    TokenStatus::Live => {}
                    TokenStatus::Revoked => {
                        return Err(Rejection::new(ErrorCode::TokenRevoked, format!("token {id} was revoked")));
                    }
                    TokenStatus::Expired => {
                        return Err(Rejection::new(ErrorCode::TokenExpired, format!("token {id} has expired")));
                    }
                }
                let principal = record.terms.principal.clone();
                if let Some(other) = act_as.filter(|a| *a != principal.to_string()) {
                    return Err(Rejection::new(
                        ErrorCode::ActAsNotAllowed,
                        format!("token {id} authenticates {principal}; it cannot act for {other}"),
                    ));
                }
                let attribution = Attribution {
                    principal: principal.clone(),
                    via: Credential::Token { id },
                    roles: record.terms.roles,
                };
                Ok(Caller { principal, attribution })
            }
        }
    }

    /// Refuses (and records) a caller that lacks `role` for an act that is not itself an event (executing a
    /// permit, checkpointing, retrying an effect); transitions that are events are checked by admission.
    pub fn require(&self, caller: &Caller, role: Role, what: &str) -> Result<(), RuntimeError> {
        if caller.has(role) {
            return Ok(());
        }
        let r = Rejection::new(
            ErrorCode::RoleRequired,
            format!("{what} needs the {role} role ({} has {})", caller.attribution.principal, caller.roles()),
        );
        Err(self.refuse(r, json!({"act": what, "caller": caller.attribution.to_string()}), None))
    }

    /// Refuses a request a front end turned away before it reached any other runtime method (no credential at
    /// all), recording the refusal only when `record` is true (see [`Runtime::authenticate_recording`]).
    pub fn refuse_request(&self, rejection: Rejection, attempt: serde_json::Value, record: bool) -> RuntimeError {
        if record { self.refuse(rejection, attempt, None) } else { RuntimeError::Rejected { rejection, record: None } }
    }

    /// [`Runtime::require`] for acts any of several roles may do (reading the ledger over the API: auditor,
    /// operator or approver). Refused callers are recorded like any other refusal.
    pub fn require_any(&self, caller: &Caller, roles: &[Role], what: &str) -> Result<(), RuntimeError> {
        if roles.iter().any(|r| caller.has(*r)) {
            return Ok(());
        }
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        let r = Rejection::new(
            ErrorCode::RoleRequired,
            format!(
                "{what} needs one of the roles {} ({} has {})",
                names.join(", "),
                caller.attribution.principal,
                caller.roles()
            ),
        );
        Err(self.refuse(r, json!({"act": what, "caller": caller.attribution.to_string()}), None))
    }

    /// A draft made on the caller's behalf: origin is the principal acted for, attribution recorded with it.
    pub(crate) fn caller_draft<T: Serialize>(
        &self,
        caller: &Caller,
        kind: EventKind,
        run: Option<RunId>,
        payload: &T,
    ) -> Result<Draft, Rejection> {
        let mut d = self.internal(kind, caller.principal.clone(), run, payload)?;
        // The role rule first, before any business rule can tell the caller something about state; admission and
        // the fold check it again (with the token's standing) from the recorded attribution.
        let needed = ice_core::auth::roles_for(kind);
        if !needed.iter().any(|r| caller.has(r)) {
            return Err(Rejection::new(
                ErrorCode::RoleRequired,
                format!("{kind} needs the role {needed} ({} has {})", caller.attribution.principal, caller.roles()),
            ));
        }
        d.acted_by = Some(caller.attribution.clone());
        Ok(d)
    }

    /// Emits a typed event on the caller's behalf through admission (where its roles are checked) and sealing.
    pub(crate) fn emit_for<T: Serialize>(
        &self,
        caller: &Caller,
        kind: EventKind,
        run: Option<RunId>,
        payload: &T,
    ) -> Result<Event, RuntimeError> {
        let attempt = || {
            json!({"kind": kind.as_str(), "origin": caller.principal.to_string(),
                "acted_by": caller.attribution.to_string(), "run_id": run.map(|r| r.to_string())})
        };
        match self.caller_draft(caller, kind, run, payload) {
            Ok(draft) => {
                let mut events = self.commit_with(&|_| Ok(vec![draft.clone()]), &attempt)?;
                events
                    .pop()
                    .ok_or_else(|| RuntimeError::Corrupt { seq: 0, message: "the append returned no event".into() })
            }
            Err(rejection) => Err(self.refuse(rejection, attempt(), run)),
        }
    }

    /// Issues an API token for `principal` with `roles` (operator only). Returns the `TokenIssued` event and the
    /// secret, which is shown once and never stored: the ledger holds only its keyed hash.
    pub fn issue_token(
        &self,
        caller: &Caller,
        principal: &Principal,
        roles: Roles,
        ttl_micros: Option<i64>,
        label: Option<String>,
    ) -> Result<(Event, String), RuntimeError> {
        let attempt = || json!({"kind": "TokenIssued", "principal": principal.to_string(), "roles": roles.to_string()});
        let Some(key) = self.token_key() else {
            let r = Rejection::new(ErrorCode::BadConfig, "this home has no token key (keys/token.key)");
            return Err(self.refuse(r, attempt(), None));
        };
        if ttl_micros.is_some_and(|t| t <= 0) {
            return Err(self.refuse(Rejection::new(ErrorCode::BadArgument, "ttl must be positive"), attempt(), None));
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| {
            RuntimeError::Store(ice_store::StoreError::Unavailable(format!("no OS randomness for a token: {e}")))
        })?;
        let secret_hex = blake3::Hash::from_bytes(secret).to_hex().to_string();
        let terms = TokenIssued {
            principal: principal.clone(),
            roles,
            expires_at: ttl_micros.map(|t| self.now().plus_micros(t)),
            secret_hash: blake3::keyed_hash(&key, secret_hex.as_bytes()).to_hex().to_string(),
            label,
        };
        let event = self.emit_for(caller, EventKind::TokenIssued, None, &terms)?;
        let text = format!("{TOKEN_PREFIX}{}_{secret_hex}", event.event_id.0.simple());
        Ok((event, text))
    }

    /// Revokes a token (operator only); every later use is refused.
    pub fn revoke_token(&self, caller: &Caller, token: EventId, reason: &str) -> Result<Event, RuntimeError> {
        let r = TokenRevoked { token_id: token, reason: reason.to_owned() };
        self.emit_for(caller, EventKind::TokenRevoked, None, &r)
    }
}
