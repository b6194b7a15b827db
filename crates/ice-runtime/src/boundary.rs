//! The effect boundary: the only way an allowed proposal reaches an effector.
//!
//! `execute` takes a permit and the args to execute with. It refuses (recording `EffectRefused`, nothing else)
//! unless the permit exists, belongs to the caller, is live and is bound to exactly these args, the run is
//! executing, an effector serves the action and that effector's plan accepts the call. Then `EffectStarted` — which
//! consumes the permit, serialised like every state change, so a permit starts one effect across all instances —
//! is durable *before* the effector runs; the outcome (`EffectCompleted` with evidence, or `EffectFailed`) and the
//! settlement of the actual cost follow in one append. An effect whose instance died before its outcome was recorded
//! becomes `EffectUnknown` on the next reconciliation and can be retried: effectors are idempotent per permit.

use std::sync::Arc;
use std::time::Instant;

use ice_core::budget::BudgetSettled;
use ice_core::effect::{EffectCompleted, EffectFailed, EffectRefused, EffectStarted, EffectStatus, PermitStatus};
use ice_core::proposal::canonical_args;
use ice_core::{
    CanonicalJson, Cost, Dimension, Draft, ErrorCode, Event, EventId, EventKind, LedgerState, Principal, Proposal,
    Rejection, Role, RunId, RunState, payloads,
};
use ice_effects::{EffectCall, Effector, Effectors, Evidence, Plan};
use serde_json::{Value, json};

use crate::caller::Caller;
use crate::runtime::{Runtime, RuntimeError};

/// How long after its start an effect without an outcome, on an instance whose liveness cannot be checked (another
/// host), is presumed unknown, unless `[runtime] outcome_deadline_secs` says otherwise.
pub(crate) const DEFAULT_OUTCOME_DEADLINE_SECS: i64 = 15 * 60;

/// Environment variable naming a point at which the process stops (for crash tests): `after-effect-start` or
/// `after-effect-apply`. The process prints `ICE_TEST_PAUSED <point>` to stderr and sleeps until killed. Only in
/// builds with the `test-hooks` feature (the test builds of `ice`), never in a release build.
pub const TEST_PAUSE_ENV: &str = "ICE_TEST_PAUSE";

/// What to execute (the caller executing must be the permit's holder).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecInput {
    /// The permit id.
    pub permit: String,
    /// The args JSON to execute with; `None` executes the proposal's own args.
    pub args: Option<String>,
}

/// An effect whose `EffectStarted` is durable and whose effector has not run yet: [`Runtime::start_effect`] returns
/// it and [`Runtime::finish_effect`] runs it and records the outcome. [`Runtime::execute`] is the two back to back;
/// the server runs the second on its own thread when the caller asked for a handle instead of the outcome. Dropped
/// unfinished (the process died), the effect is found by reconciliation and recorded `EffectUnknown`.
#[derive(Debug)]
pub struct StartedEffect {
    /// An internal effect (memory promotion) commits its outcome with its start: nothing is left to run.
    done: Option<Box<ExecOutcome>>,
    effectors: Option<Arc<Effectors>>,
    action: String,
    resource: String,
    args: Value,
    canonical: CanonicalJson,
    args_hash: String,
    key: String,
    plan: Plan,
    started: Event,
}

impl StartedEffect {
    /// The `EffectStarted` event (its id is the effect's id).
    pub fn event(&self) -> &Event {
        &self.started
    }

    /// An internal effect whose outcome committed with its start.
    pub(crate) fn done(outcome: ExecOutcome) -> Self {
        Self {
            effectors: None,
            action: String::new(),
            resource: String::new(),
            args: Value::Null,
            canonical: CanonicalJson::empty(),
            args_hash: String::new(),
            key: String::new(),
            plan: Plan {
                target: String::new(),
                input_hash: String::new(),
                before: None,
                expected_after: None,
                compensation: ice_effects::Compensation::Nothing,
                retry: ice_effects::RetryMode::StateCheck,
            },
            started: outcome.started.clone(),
            done: Some(Box::new(outcome)),
        }
    }
}

/// A finished effect.
#[derive(Debug, Clone)]
pub struct ExecOutcome {
    /// The `EffectStarted` event.
    pub started: Event,
    /// The `EffectCompleted` or `EffectFailed` event.
    pub outcome: Event,
    /// Completed or failed.
    pub status: EffectStatus,
    /// The evidence when completed.
    pub evidence: Option<Evidence>,
    /// The code and message when failed.
    pub failure: Option<(ErrorCode, String)>,
}

impl ExecOutcome {
    /// The JSON form the CLI (`--json`) and the API show.
    pub fn to_json(&self) -> Value {
        serde_json::json!({"status": self.status, "effect_id": self.started.event_id.to_string(),
            "outcome_id": self.outcome.event_id.to_string(), "outcome_seq": self.outcome.seq.0,
            "evidence": self.evidence,
            "failure": self.failure.as_ref().map(|(c, m)| serde_json::json!({"code": c.as_str(), "message": m}))})
    }
}

/// This process as recorded in `EffectStarted.instance`: `machine:pid:start-ticks`, where `machine` is
/// `hostname@machine-id` (the hostname for people, the machine id — `/etc/machine-id` — for identity: two hosts
/// named alike must not judge each other's processes), or the bare hostname where there is no machine id.
pub(crate) fn this_instance() -> String {
    format!("{}:{}:{}", this_machine(), std::process::id(), start_ticks(std::process::id()).unwrap_or_default())
}

fn this_machine() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    match machine_id() {
        Some(id) => format!("{host}@{id}"),
        None => host,
    }
}

fn machine_id() -> Option<String> {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"].iter().find_map(|p| {
        let id = std::fs::read_to_string(p).ok()?.trim().to_owned();
        (!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
    })
}

/// The identity of the journal `effectors` keep exactly-once state in: this machine and the journal directory.
fn journal_of(effectors: &ice_effects::Effectors) -> String {
    format!("{}:{}", this_machine(), effectors.journal_dir().display())
}

/// Whether a recorded machine is this one: by machine id when both sides have one, else by hostname.
fn is_this_machine(recorded: &str) -> bool {
    let here = this_machine();
    match (recorded.rsplit_once('@'), here.rsplit_once('@')) {
        (Some((_, theirs)), Some((_, ours))) => theirs == ours,
        // An instance recorded with a machine id is never judged by a host without one, and vice versa, except
        // for records written before machine ids were recorded (a bare hostname on both sides).
        (None, None) => recorded == here,
        _ => false,
    }
}

/// Field 22 of `/proc/PID/stat`: the process's start time in clock ticks since boot. With the pid it names a
/// process uniquely, so a reused pid is not mistaken for the instance that started an effect.
fn start_ticks(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is parenthesised and may contain spaces; fields after it are plain.
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19).map(str::to_owned)
}

/// Whether the instance that started an effect is certainly gone: on this host, no process with that pid and start
/// time exists. Instances on other hosts cannot be checked (their effects wait for the deadline).
fn instance_is_dead(instance: &str) -> bool {
    let mut parts = instance.rsplitn(3, ':');
    let (Some(ticks), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else { return false };
    if !is_this_machine(host) {
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else { return false };
    start_ticks(pid).as_deref() != Some(ticks)
}

/// Pauses at a crash-test point when asked (test builds only: without the `test-hooks` feature it does nothing).
fn pause_if(point: &str) {
    if cfg!(feature = "test-hooks") && std::env::var(TEST_PAUSE_ENV).as_deref() == Ok(point) {
        eprintln!("ICE_TEST_PAUSED {point}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// Dimensions an effector measures itself; every other declared dimension (tokens, money) cannot be measured here.
const MEASURED: [Dimension; 3] = [Dimension::Calls, Dimension::WallMs, Dimension::Bytes];

/// What an effect's outcome settles: the measured cost where it is measurable, and for the dimensions that cannot
/// be measured (tokens, money) what was reserved for them — an agent that declared a cost pays it; it cannot make
/// the cost vanish by the effector not measuring it. Tokens are measured when the effector reports them (a model
/// call reports the provider's usage): then the usage is settled, more or less than the estimate.
fn settled_cost(measured: &Cost, tokens_measured: bool, charges: &[ice_core::budget::Charge]) -> Cost {
    let mut actual = measured.clone();
    let measured_here = |d: Dimension| MEASURED.contains(&d) || (tokens_measured && d == Dimension::Tokens);
    for c in charges.iter().filter(|c| !measured_here(c.budget.dimension)) {
        let d = c.budget.dimension;
        if actual.get(d) < c.amount {
            actual.set(d, c.amount);
        }
    }
    actual
}

fn rejected(code: ErrorCode, message: impl Into<String>) -> Rejection {
    Rejection::new(code, message)
}

impl Runtime {
    /// The effectors, or a refusal saying none are configured.
    fn effectors(&self) -> Result<&Arc<Effectors>, Rejection> {
        self.effector_registry()
            .ok_or_else(|| rejected(ErrorCode::NoEffector, "this runtime was opened without effectors"))
    }

    /// Records an effect refusal (`EffectRefused`) and returns the error.
    pub(crate) fn refuse_effect(
        &self,
        rejection: Rejection,
        permit: Option<EventId>,
        args_hash: Option<String>,
        run: Option<RunId>,
    ) -> RuntimeError {
        let payload = EffectRefused {
            permit_id: permit,
            code: rejection.code.as_str().to_owned(),
            message: rejection.message.clone(),
            args_hash,
        };
        let draft = self.internal(EventKind::EffectRefused, Principal::runtime(), run, &payload);
        self.record_refusal(rejection, draft.ok())
    }

    /// The canonical args of a recorded proposal.
    pub(crate) fn proposal_of(&self, id: EventId) -> Result<Proposal, RuntimeError> {
        let event = self
            .store()
            .get(id)?
            .ok_or_else(|| RuntimeError::Corrupt { seq: 0, message: format!("proposal {id} is not in the ledger") })?;
        serde_json::from_str(event.payload.as_str())
            .map_err(|e| RuntimeError::Corrupt { seq: event.seq.0, message: format!("proposal payload: {e}") })
    }

    /// Executes a permitted effect: see the module docs. Refusals are recorded as `EffectRefused`; an effector
    /// failure after the start is an `EffectFailed` outcome (returned as `Ok` with `status: Failed`).
    ///
    /// It does not reconcile: nothing it decides depends on other effects' outcomes or on approvals, and it checks
    /// the permit's own expiry, so the hot path stays free of sweeps over history.
    pub fn execute(&self, caller: &Caller, input: &ExecInput) -> Result<ExecOutcome, RuntimeError> {
        let started = self.start_effect(caller, input)?;
        self.finish_effect(started)
    }

    /// The first half of [`Runtime::execute`]: every check, then `EffectStarted` made durable. Refusals are recorded
    /// as `EffectRefused`; nothing has run when this returns.
    pub fn start_effect(&self, caller: &Caller, input: &ExecInput) -> Result<StartedEffect, RuntimeError> {
        let permit_id: Option<EventId> = input.permit.parse().ok();
        let presented_hash = input.args.as_deref().map(|a| blake3::hash(a.as_bytes()).to_hex().to_string());
        let Some(permit_id) = permit_id else {
            let r = rejected(ErrorCode::NoPermit, format!("`{}` is not a permit id", input.permit));
            return Err(self.refuse_effect(r, None, presented_hash, None));
        };
        let actor = caller.principal().clone();
        if !caller.has(Role::Agent) && !caller.has(Role::Operator) {
            let r = rejected(
                ErrorCode::RoleRequired,
                format!("executing a permit needs the agent or operator role ({} has {})", actor, caller.roles()),
            );
            return Err(self.refuse_effect(r, Some(permit_id), presented_hash, None));
        }
        let permit = self.with_state(|st| st.effects().permits().get(&permit_id).cloned())?;
        let Some(permit) = permit else {
            let r = rejected(ErrorCode::NoPermit, format!("permit {permit_id} does not exist"));
            return Err(self.refuse_effect(r, Some(permit_id), presented_hash, None));
        };
        let run = permit.run;
        let proposal = self.proposal_of(permit.terms.proposal_id)?;
        // The args to execute: as presented (then they must hash to the permit's), or the proposal's own.
        let canonical = match &input.args {
            Some(text) => canonical_args(text).map(|(c, _)| c),
            None => CanonicalJson::from_serialize(&proposal.args),
        };
        let canonical = match canonical {
            Ok(c) => c,
            Err(r) => return Err(self.refuse_effect(r, Some(permit_id), presented_hash, run)),
        };
        let args_hash = blake3::hash(canonical.as_bytes()).to_hex().to_string();
        let refuse = |r: Rejection| self.refuse_effect(r, Some(permit_id), Some(args_hash.clone()), run);
        if permit.terms.actor != actor {
            return Err(refuse(rejected(
                ErrorCode::NoPermit,
                format!("permit {permit_id} was issued to {}, not {actor}", permit.terms.actor),
            )));
        }
        match permit.status(self.now()) {
            PermitStatus::Live => {}
            PermitStatus::Used => return Err(refuse(rejected(ErrorCode::PermitUsed, "the permit was already used"))),
            PermitStatus::Revoked => {
                let why = permit.revoked.clone().unwrap_or_default();
                return Err(refuse(rejected(ErrorCode::PermitRevoked, format!("the permit was revoked: {why}"))));
            }
            PermitStatus::Expired => {
                return Err(refuse(rejected(
                    ErrorCode::PermitExpired,
                    format!("the permit expired at {}", permit.terms.expires_at),
                )));
            }
        }
        if args_hash != permit.terms.args_hash {
            return Err(refuse(rejected(
                ErrorCode::ArgsMismatch,
                format!("the permit is bound to args {}, these are {args_hash}", permit.terms.args_hash),
            )));
        }
        if permit.terms.action == crate::memory::PROMOTE_ACTION {
            return self.promote_from_permit(&permit, &proposal, &args_hash, &refuse);
        }
        let effectors = self.effectors().map_err(&refuse)?.clone();
        let Some(effector) = effectors.for_action(&permit.terms.action) else {
            return Err(refuse(rejected(
                ErrorCode::NoEffector,
                format!("no effector serves `{}`", permit.terms.action),
            )));
        };
        let args = canonical.to_value();
        let key = permit_id.to_string();
        let call = EffectCall {
            action: &permit.terms.action,
            resource: &permit.terms.resource,
            args: &args,
            canonical_args: canonical.as_str(),
            args_hash: &args_hash,
            idempotency_key: &key,
        };
        let plan = match effector.plan(&call) {
            Ok(p) => p,
            Err(e) => return Err(refuse(rejected(e.code, e.message))),
        };
        let started = EffectStarted {
            permit_id,
            proposal_id: permit.terms.proposal_id,
            effector: effector.name().to_owned(),
            action: permit.terms.action.clone(),
            resource: permit.terms.resource.clone(),
            args_hash: args_hash.clone(),
            plan: serde_json::to_value(&plan).unwrap_or(Value::Null),
            instance: this_instance(),
            deadline: self.now().plus_micros(self.outcome_deadline_micros()),
            compensates: proposal.compensates,
            journal: (plan.retry == ice_effects::RetryMode::Journal).then(|| journal_of(&effectors)),
        };
        let policy = match self.active_policy() {
            Ok(p) => p,
            Err(RuntimeError::Rejected { rejection, .. }) => return Err(refuse(rejection)),
            Err(e) => return Err(e),
        };
        let events = self.commit_or(
            &|st: &LedgerState| {
                self.still_executable(st, &policy, &permit, &proposal)?;
                self.start_drafts(st, run, &started)
            },
            &|r, run| self.refuse_effect(r, Some(permit_id), Some(args_hash.clone()), run),
            &|| run,
        )?;
        let Some(started_event) = events.into_iter().find(|e| e.kind == EventKind::EffectStarted) else {
            return Err(RuntimeError::Corrupt { seq: 0, message: "the start bundle lacked EffectStarted".into() });
        };
        pause_if("after-effect-start");
        Ok(StartedEffect {
            done: None,
            effectors: Some(effectors),
            action: permit.terms.action.clone(),
            resource: permit.terms.resource.clone(),
            args,
            canonical,
            args_hash,
            key,
            plan,
            started: started_event,
        })
    }

    /// The second half of [`Runtime::execute`]: runs the effector of a started effect and records its outcome (an
    /// effector failure is an `EffectFailed` outcome, returned as `Ok` with `status: Failed`).
    pub fn finish_effect(&self, effect: StartedEffect) -> Result<ExecOutcome, RuntimeError> {
        let StartedEffect { done, effectors, action, resource, args, canonical, args_hash, key, plan, started } =
            effect;
        if let Some(done) = done {
            return Ok(*done);
        }
        let Some(effector) = effectors.as_deref().and_then(|e| e.for_action(&action)) else {
            return Err(RuntimeError::Corrupt {
                seq: started.seq.0,
                message: format!("no effector serves `{action}`"),
            });
        };
        let call = EffectCall {
            action: &action,
            resource: &resource,
            args: &args,
            canonical_args: canonical.as_str(),
            args_hash: &args_hash,
            idempotency_key: &key,
        };
        self.apply_and_record(effector, &call, &plan, started, None)
    }

    /// Whether a permit may still start its effect against current state, beyond its own status (which admission
    /// checks): its holder is not suspended, its run not contained, the grant its decision used not revoked, and the
    /// policy now in force still permits it. Revocation normally revokes the permit itself; this is the check at the
    /// boundary that holds even if that did not happen.
    pub(crate) fn still_executable(
        &self,
        st: &LedgerState,
        policy: &crate::policy::CompiledPolicy,
        permit: &ice_core::effect::PermitRecord,
        proposal: &Proposal,
    ) -> Result<(), Rejection> {
        let actor = &permit.terms.actor;
        let revoked = |why: String| rejected(ErrorCode::PermitRevoked, format!("permit {}: {why}", permit.id));
        if let Some(why) = st.authority().suspended(actor) {
            return Err(revoked(format!("{actor} is suspended ({why})")));
        }
        if permit.run.is_some_and(|r| st.authority().is_contained(r)) {
            return Err(revoked("its run is contained".into()));
        }
        let grant = st.authority().proposals().get(&permit.terms.proposal_id).and_then(|p| p.grant).or_else(|| {
            permit.terms.approval_id.and_then(|a| st.effects().approvals().get(&a)).and_then(|a| a.request.grant_id)
        });
        if let Some(g) = grant.and_then(|g| st.authority().grants().get(&g)).filter(|g| g.revoked.is_some()) {
            return Err(revoked(format!("grant {} was revoked", g.id)));
        }
        if !self.still_permitted(st, policy, actor, permit.run, proposal, self.now()) {
            return Err(revoked(format!("the policy now in force ({}) no longer permits it", policy.hash)));
        }
        Ok(())
    }

    /// `EffectStarted` (and the run's move to EXECUTING when it is CONTEXT_READY), checked against caught-up state.
    pub(crate) fn start_drafts(
        &self,
        st: &LedgerState,
        run: Option<RunId>,
        started: &EffectStarted,
    ) -> Result<Vec<Draft>, Rejection> {
        let mut drafts = Vec::new();
        if let Some(run_id) = run {
            let state = st.run(run_id).map(|r| r.state);
            match state {
                Some(RunState::Executing) => {}
                Some(RunState::ContextReady) => {
                    let t = payloads::RunTransitioned {
                        from: RunState::ContextReady,
                        to: RunState::Executing,
                        reason: Some("an effect is starting".into()),
                    };
                    drafts.push(self.internal(EventKind::RunTransitioned, Principal::runtime(), run, &t)?);
                }
                other => {
                    return Err(rejected(
                        ErrorCode::IllegalTransition,
                        format!(
                            "run {run_id} is {}; effects run only while it is EXECUTING",
                            other.map_or("missing".to_owned(), |s| s.to_string())
                        ),
                    ));
                }
            }
        }
        let mut draft = self.internal(EventKind::EffectStarted, Principal::runtime(), run, started)?;
        draft.causes = vec![started.permit_id];
        let payload = draft.payload.as_str().to_owned();
        st.effects().check(EventKind::EffectStarted, &payload, draft.time, true, st.authority())?;
        drafts.push(draft);
        Ok(drafts)
    }

    /// Runs the effector and records its outcome with the cost settlement.
    fn apply_and_record(
        &self,
        effector: &dyn Effector,
        call: &EffectCall<'_>,
        plan: &Plan,
        started: Event,
        resolved_by: Option<Principal>,
    ) -> Result<ExecOutcome, RuntimeError> {
        let clock = Instant::now();
        let result = effector.apply(call, plan);
        let duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        pause_if("after-effect-apply");
        let run = started.run_id;
        let payload: EffectStarted = serde_json::from_str(started.payload.as_str())
            .map_err(|e| RuntimeError::Corrupt { seq: started.seq.0, message: format!("EffectStarted: {e}") })?;
        let mut actual = Cost::zero();
        actual.set(Dimension::Calls, 1);
        actual.set(Dimension::WallMs, duration_ms);
        let (kind, body, status, evidence, failure) = match result {
            Ok(evidence) => {
                actual.set(Dimension::Bytes, evidence.bytes);
                if let Some(tokens) = evidence.tokens {
                    actual.set(Dimension::Tokens, tokens);
                }
                let c = EffectCompleted {
                    started_id: started.event_id,
                    evidence: serde_json::to_value(&evidence).unwrap_or(Value::Null),
                    duration_ms,
                    resolved_by,
                };
                (EventKind::EffectCompleted, json!(c), EffectStatus::Completed, Some(evidence), None)
            }
            Err(e) => {
                let f = EffectFailed {
                    started_id: started.event_id,
                    code: e.code.as_str().to_owned(),
                    message: e.message.clone(),
                    duration_ms,
                };
                (EventKind::EffectFailed, json!(f), EffectStatus::Failed, None, Some((e.code, e.message)))
            }
        };
        let started_id = started.event_id;
        let evidence_tokens = evidence.as_ref().is_some_and(|e| e.tokens.is_some());
        let events = self.commit_with(
            &|st: &LedgerState| {
                let mut outcome = self.internal(kind, Principal::runtime(), run, &body)?;
                outcome.causes = vec![started_id];
                st.effects().check(kind, outcome.payload.as_str(), outcome.time, true, st.authority())?;
                let oid = outcome.event_id;
                let mut drafts = vec![outcome];
                if let Some(charges) = st.authority().budgets().reservation(payload.proposal_id) {
                    let s = BudgetSettled {
                        proposal_id: payload.proposal_id,
                        actual: settled_cost(&actual, evidence_tokens, charges),
                        reason: None,
                    };
                    let mut d = self.internal(EventKind::BudgetSettled, Principal::runtime(), run, &s)?;
                    d.causes = vec![oid];
                    drafts.push(d);
                }
                if let (EventKind::EffectCompleted, Some(undone)) = (kind, payload.compensates) {
                    drafts.extend(self.invalidation_drafts(st, undone, oid)?);
                }
                Ok(drafts)
            },
            &|| json!({"kind": kind.as_str(), "run_id": run.map(|r| r.to_string()), "started_id": started_id.to_string()}),
        )?;
        let outcome = events
            .into_iter()
            .next()
            .ok_or_else(|| RuntimeError::Corrupt { seq: 0, message: "the outcome append returned nothing".into() })?;
        Ok(ExecOutcome { started, outcome, status, evidence, failure })
    }

    /// Marks effects whose instance died (or whose deadline passed) without an outcome as `EffectUnknown`, expires
    /// or escalates approvals nobody answered in time, and releases the budget reservations of permits that expired
    /// unused. Safe to call from any instance at any time.
    pub fn reconcile(&self) -> Result<Vec<Event>, RuntimeError> {
        let now = self.now();
        let stale: Vec<(EventId, Option<RunId>, String)> = self.with_state(|st| {
            st.effects()
                .effects()
                .values()
                .filter(|e| e.status == EffectStatus::Running)
                .filter(|e| now.0 > e.started.deadline.0 || instance_is_dead(&e.started.instance))
                .map(|e| (e.id, e.run, e.started.instance.clone()))
                .collect()
        })?;
        let mut recorded = Vec::new();
        for (id, run, instance) in stale {
            let f = EffectFailed {
                started_id: id,
                code: ErrorCode::OutcomeUnknown.as_str().to_owned(),
                message: format!("instance {instance} stopped before recording the outcome"),
                duration_ms: 0,
            };
            // Refused: another instance reconciled it first.
            recorded.extend(self.sweep_step(
                &|st: &LedgerState| {
                    let mut d = self.internal(EventKind::EffectUnknown, Principal::runtime(), run, &f)?;
                    d.causes = vec![id];
                    st.effects().check(EventKind::EffectUnknown, d.payload.as_str(), d.time, true, st.authority())?;
                    Ok(vec![d])
                },
                &|| json!({"kind": "EffectUnknown", "started_id": id.to_string()}),
            )?);
        }
        recorded.extend(self.expire_approvals()?);
        recorded.extend(self.release_expired_permits()?);
        recorded.extend(self.expire_memory()?);
        Ok(recorded)
    }

    /// Retries an effect whose outcome is unknown, with the same idempotency key: the effector either finds it
    /// applied (and says so) or applies it once.
    /// Operator only.
    pub fn retry_effect(&self, caller: &Caller, started_id: EventId) -> Result<ExecOutcome, RuntimeError> {
        self.require(caller, Role::Operator, "retrying an effect")?;
        let actor = caller.principal();
        self.reconcile()?;
        let record = self.with_state(|st| st.effects().effects().get(&started_id).cloned())?;
        let attempt = || json!({"kind": "EffectRetry", "started_id": started_id.to_string()});
        let Some(record) = record else {
            return Err(self.refuse(
                rejected(ErrorCode::NotFound, format!("effect {started_id} was never started")),
                attempt(),
                None,
            ));
        };
        let run = record.run;
        if record.status != EffectStatus::Unknown {
            let r = rejected(
                ErrorCode::EffectConflict,
                format!(
                    "effect {started_id} is {:?}; only effects whose outcome is unknown are retried",
                    record.status
                )
                .to_lowercase(),
            );
            return Err(self.refuse(r, attempt(), run));
        }
        let effectors = self.effectors().map_err(|r| self.refuse(r.clone(), attempt(), run))?.clone();
        if let Some(theirs) = &record.started.journal {
            let ours = journal_of(&effectors);
            if *theirs != ours {
                let r = rejected(
                    ErrorCode::RetryElsewhere,
                    format!(
                        "effect {started_id} was started against the journal {theirs}; this instance's is {ours}, \
                         which cannot tell whether the effect ran"
                    ),
                );
                return Err(self.refuse(r, attempt(), run));
            }
        }
        let proposal = self.proposal_of(record.started.proposal_id)?;
        let canonical = CanonicalJson::from_serialize(&proposal.args).map_err(|r| self.refuse(r, attempt(), run))?;
        let plan: Plan = serde_json::from_value(record.started.plan.clone())
            .map_err(|e| RuntimeError::Corrupt { seq: 0, message: format!("recorded plan: {e}") })?;
        let Some(effector) = effectors.for_action(&record.started.action) else {
            let r = rejected(ErrorCode::NoEffector, format!("no effector serves `{}`", record.started.action));
            return Err(self.refuse(r, attempt(), run));
        };
        let args = canonical.to_value();
        let key = record.started.permit_id.to_string();
        let call = EffectCall {
            action: &record.started.action,
            resource: &record.started.resource,
            args: &args,
            canonical_args: canonical.as_str(),
            args_hash: &record.started.args_hash,
            idempotency_key: &key,
        };
        let started = self
            .store()
            .get(started_id)?
            .ok_or_else(|| RuntimeError::Corrupt { seq: 0, message: format!("{started_id} is not in the ledger") })?;
        self.apply_and_record(effector, &call, &plan, started, Some(actor.clone()))
    }

    /// Records by hand the outcome of an effect whose outcome is unknown (an operator checked the target).
    pub fn resolve_effect(
        &self,
        caller: &Caller,
        started_id: EventId,
        completed: bool,
        note: &str,
    ) -> Result<Event, RuntimeError> {
        let attempt = || json!({"kind": "EffectResolve", "started_id": started_id.to_string()});
        self.require(caller, Role::Operator, "recording an effect's outcome by hand")?;
        let actor = caller.principal();
        let record = self.with_state(|st| st.effects().effects().get(&started_id).cloned())?;
        let run = record.as_ref().and_then(|r| r.run);
        if record.as_ref().is_none_or(|r| r.status != EffectStatus::Unknown) {
            let r = rejected(ErrorCode::EffectConflict, format!("effect {started_id} is not awaiting reconciliation"));
            return Err(self.refuse(r, attempt(), run));
        }
        let (kind, body) = if completed {
            let c = EffectCompleted {
                started_id,
                evidence: json!({"resolved": note}),
                duration_ms: 0,
                resolved_by: Some(actor.clone()),
            };
            (EventKind::EffectCompleted, json!(c))
        } else {
            let f = EffectFailed {
                started_id,
                code: ErrorCode::OutcomeUnknown.as_str().to_owned(),
                message: format!("resolved as failed by {actor}: {note}"),
                duration_ms: 0,
            };
            (EventKind::EffectFailed, json!(f))
        };
        let mut events = self.commit_with(
            &|st: &LedgerState| {
                // Effect outcomes are the runtime's to record; the human who checked is named in the payload.
                let mut d = self.internal(kind, Principal::runtime(), run, &body)?;
                d.causes = vec![started_id];
                st.effects().check(kind, d.payload.as_str(), d.time, true, st.authority())?;
                let oid = d.event_id;
                let mut drafts = vec![d];
                // The reservation closes with the outcome: spent at what was reserved (nothing was measured) when the
                // effect happened, released when it did not.
                let proposal = st.effects().effects().get(&started_id).map(|e| e.started.proposal_id);
                if let Some((proposal, charges)) =
                    proposal.and_then(|p| st.authority().budgets().reservation(p).map(|c| (p, c)))
                {
                    drafts.push(if completed {
                        let s = BudgetSettled {
                            proposal_id: proposal,
                            actual: settled_cost(&ice_core::Cost::zero(), false, charges),
                            reason: Some(format!("outcome recorded by hand by {actor}")),
                        };
                        let mut settle = self.internal(EventKind::BudgetSettled, Principal::runtime(), run, &s)?;
                        settle.causes = vec![oid];
                        settle
                    } else {
                        self.release_draft(proposal, run, oid, "the effect did not happen (recorded by hand)")?
                    });
                }
                Ok(drafts)
            },
            &attempt,
        )?;
        events.truncate(1);
        events.pop().ok_or_else(|| RuntimeError::Corrupt { seq: 0, message: "resolve appended nothing".into() })
    }
}

#[cfg(test)]
mod instance_tests {
    use super::{instance_is_dead, is_this_machine, this_machine};

    /// Two hosts named alike are told apart by machine id: an effect started on the other one is never judged dead
    /// from here, whatever its pid.
    #[test]
    fn a_same_named_host_is_not_this_machine() {
        let here = this_machine();
        assert!(is_this_machine(&here));
        if let Some((host, _)) = here.rsplit_once('@') {
            let twin = format!("{host}@00000000000000000000000000000000");
            assert!(!is_this_machine(&twin));
            assert!(!instance_is_dead(&format!("{twin}:999999:1")), "not ours to judge");
            assert!(instance_is_dead(&format!("{here}:999999:1")), "ours, and no such process");
        }
    }
}
