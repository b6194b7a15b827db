//! Proposals, approvals and permits: submit a proposal (optionally waiting for its approval), read where it stands,
//! answer approvals bound to the args hash, execute a permit.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ice_core::auth::Role;
use ice_core::effect::ApprovalStatus;
use ice_core::{ErrorCode, EventId, EventKind, Rejection};
use ice_runtime::{ExecInput, ProposalInput};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{blocking, event_id, tag};
use crate::Shared;
use crate::auth::Authed;
use crate::body::{Query, RawJson, Strict};
use crate::error::{ApiError, ErrorBody};

/// Roles that may read what others proposed and how it was decided.
pub(crate) const READERS: [Role; 3] = [Role::Approver, Role::Operator, Role::Auditor];

/// Options of `POST /v1/proposals`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SubmitOptions {
    /// When the decision is `require_approval`, wait up to this many seconds for an approver's answer (capped
    /// below the server's request timeout). The answer — and the permit, when granted — is in the response.
    wait: Option<u64>,
}

/// A proposal (the principal is the token's; `actor`, when present, must name it).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ProposalBody {
    /// Run id.
    run: Option<String>,
    /// Action name from the catalog, e.g. `fs.write`.
    action: String,
    /// Resource, e.g. `file:notes/a.txt`.
    resource: String,
    /// Arguments (a JSON object); the decision and the permit are bound to their hash.
    #[schema(value_type = Object)]
    args: Option<Value>,
    /// Declared purpose.
    purpose: Option<String>,
    /// Declared cost: `wall_ms`, `tokens`, `money_micros`, `calls`, `bytes` → whole numbers.
    #[schema(value_type = Object)]
    cost_estimate: Option<Value>,
    /// `none`, `low` or `high`.
    nondeterminism: Option<String>,
    /// Must be absent or the token's own principal.
    actor: Option<String>,
}

/// Where a proposal's approval stands, read from derived state.
fn approval_view(rt: &ice_runtime::Runtime, proposal: EventId) -> Result<Value, ApiError> {
    let now = rt.now();
    Ok(rt.with_state(|s| {
        let fx = s.effects();
        json!({
            "approval": fx.approval_for(proposal).map(|a| json!({
                "approval_id": a.id.to_string(),
                "status": format!("{:?}", a.status).to_lowercase(),
                "answered_by": a.answered_by.as_ref().map(ToString::to_string),
            })),
            "permit": fx.permit_for(proposal).map(|p| json!({
                "permit_id": p.id.to_string(),
                "status": format!("{:?}", p.status(now)).to_lowercase(),
            })),
        })
    })?)
}

/// Submit a proposal; answers with the recorded decision (a deny is a decision too: 200).
#[utoipa::path(post, path = "/v1/proposals", tag = "proposals", params(SubmitOptions), request_body = ProposalBody,
    security(("bearer" = [])),
    responses((status = 200, description = "The recorded decision, with `permit_id` or `approval_id`", body = Object),
        (status = 400, description = "Malformed proposal", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token lacks the agent role, or `actor` names someone else", body = ErrorBody),
        (status = 429, description = "Over the token's rate", body = ErrorBody)))]
pub async fn submit(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Query(opts): Query<SubmitOptions>,
    RawJson(body): RawJson,
) -> Result<Json<Value>, ApiError> {
    let me = caller.principal().to_string();
    if let Some(actor) = body.get("actor").and_then(Value::as_str).filter(|a| !a.is_empty() && *a != me) {
        let r = Rejection::new(
            ErrorCode::ActAsNotAllowed,
            format!("this token acts as {me}; it cannot propose as {actor}"),
        );
        let attempt =
            json!({"kind": "ProposalSubmitted", "acted_by": caller.attribution().to_string(), "actor": actor});
        return Err(blocking(&state.rt, move |rt| Ok(rt.refuse_request(r, attempt, true))).await?.into());
    }
    let input = ProposalInput::from_json(&body)?;
    let who = caller.clone();
    let outcome = blocking(&state.rt, move |rt| Ok(rt.propose(&who, &input)?)).await?;
    tag("ice.proposal_id", outcome.proposal.event_id);
    if let Some(run) = outcome.proposal.run_id {
        tag("ice.run_id", run);
    }
    state.saw(outcome.decision_event.seq.max(outcome.events.last().map_or(outcome.decision_event.seq, |e| e.seq)));
    state.metrics.decision(outcome.decision.verdict.as_str());
    let mut v = outcome.to_json();
    let approval = outcome.events.iter().find(|e| e.kind == EventKind::ApprovalRequested).map(|e| e.event_id);
    if let (Some(wait), Some(_)) = (opts.wait.filter(|w| *w > 0), approval) {
        let cap = state.cfg.request_timeout_secs.saturating_sub(1).max(1);
        let deadline = Instant::now() + Duration::from_secs(wait.min(cap));
        let proposal = outcome.proposal.event_id;
        let mut heads = state.head.subscribe();
        loop {
            let view = blocking(&state.rt, move |rt| approval_view(rt, proposal)).await?;
            let pending = view["approval"]["status"] == "pending";
            v["approval"] = view["approval"].clone();
            v["permit"] = view["permit"].clone();
            if !pending {
                break;
            }
            if tokio::time::timeout_at(deadline.into(), heads.changed()).await.is_err() {
                break;
            }
        }
    }
    Ok(Json(v))
}

/// Where a proposal stands: its event, its decision, approval and permit (the proposer itself, or a reader).
#[utoipa::path(get, path = "/v1/proposals/{id}", tag = "proposals", security(("bearer" = [])),
    params(("id" = String, Path, description = "Proposal id (the ProposalSubmitted event id)")),
    responses((status = 200, description = "The proposal, its verdict, approval and permit", body = Object),
        (status = 403, description = "Neither the proposer nor a reader", body = ErrorBody),
        (status = 404, description = "No such proposal", body = ErrorBody)))]
pub async fn get_proposal(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = event_id(&id, "a proposal id")?;
    blocking(&state.rt, move |rt| {
        let event = rt.store().get(id).map_err(ice_runtime::RuntimeError::from)?;
        let event = event.filter(|e| e.kind == EventKind::ProposalSubmitted);
        let mine = event.as_ref().is_some_and(|e| e.origin == *caller.principal());
        if !mine {
            rt.require_any(&caller, &READERS, "reading another principal's proposal")?;
        }
        let event = event.ok_or_else(|| ApiError::new(ErrorCode::UnknownProposal, format!("no proposal {id}")))?;
        let verdict = rt.with_state(|s| s.authority().proposals().get(&id).and_then(|p| p.verdict))?;
        let mut v = approval_view(rt, id)?;
        v["proposal"] = event.to_json();
        v["verdict"] = json!(verdict.map(|x| x.as_str()));
        v["settled"] = json!(verdict.is_none());
        Ok(Json(v))
    })
    .await
}

/// Options of `GET /v1/approvals`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsQuery {
    /// Include answered and expired approvals (read from the ledger).
    all: Option<bool>,
}

/// Approvals with the exact args, their hash, class, cost and the policies that asked (approvers, operators,
/// auditors).
#[utoipa::path(get, path = "/v1/approvals", tag = "approvals", params(ApprovalsQuery), security(("bearer" = [])),
    responses((status = 200, description = "Approvals, pending first", body = Object),
        (status = 403, description = "Agents cannot list approvals", body = ErrorBody)))]
pub async fn list_approvals(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Query(q): Query<ApprovalsQuery>,
) -> Result<Json<Value>, ApiError> {
    blocking(&state.rt, move |rt| {
        rt.require_any(&caller, &READERS, "listing approvals")?;
        let all = q.all.unwrap_or(false);
        let list: Vec<_> = if all {
            rt.boundary_history()?.approvals().values().cloned().collect()
        } else {
            rt.with_state(|s| s.effects().approvals().values().cloned().collect())?
        };
        let items: Vec<Value> = list
            .iter()
            .filter(|a| all || a.status == ApprovalStatus::Pending)
            .map(|a| {
                json!({"approval_id": a.id.to_string(), "status": format!("{:?}", a.status).to_lowercase(),
                    "escalated": a.escalated, "run_id": a.run.map(|r| r.to_string()), "request": a.request,
                    "answered_by": a.answered_by.as_ref().map(ToString::to_string)})
            })
            .collect();
        Ok(Json(json!({ "approvals": items })))
    })
    .await
}

/// An approver's answer.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    /// The args hash the approver saw (approve only); refused if the request's differs.
    args_hash: Option<String>,
    /// Why.
    comment: Option<String>,
}

fn answered(events: &[ice_core::Event]) -> Value {
    let permit = events.iter().find(|e| e.kind == EventKind::PermitIssued).map(|e| e.event_id.to_string());
    json!({"events": events.iter().map(|e| json!({"kind": e.kind.as_str(), "seq": e.seq.0,
        "event_id": e.event_id.to_string()})).collect::<Vec<_>>(), "permit_id": permit})
}

/// Approve a pending approval (approver named by the request; never the proposer).
#[utoipa::path(post, path = "/v1/approvals/{id}/approve", tag = "approvals", request_body = AnswerBody,
    security(("bearer" = [])), params(("id" = String, Path, description = "Approval id")),
    responses((status = 200, description = "Events recorded, with the permit issued", body = Object),
        (status = 403, description = "Not an approver this request names", body = ErrorBody),
        (status = 404, description = "No such approval", body = ErrorBody),
        (status = 409, description = "Answered or expired already, or the args hash differs", body = ErrorBody)))]
pub async fn approve(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Strict(body): Strict<AnswerBody>,
) -> Result<Json<Value>, ApiError> {
    let id = event_id(&id, "an approval id")?;
    let events = blocking(&state.rt, move |rt| {
        Ok(rt.approve(&caller, id, body.args_hash.as_deref(), body.comment.as_deref())?)
    })
    .await?;
    if let Some(e) = events.last() {
        state.saw(e.seq);
    }
    Ok(Json(answered(&events)))
}

/// Deny a pending approval.
#[utoipa::path(post, path = "/v1/approvals/{id}/deny", tag = "approvals", request_body = AnswerBody,
    security(("bearer" = [])), params(("id" = String, Path, description = "Approval id")),
    responses((status = 200, description = "Events recorded", body = Object),
        (status = 403, description = "Not an approver this request names", body = ErrorBody),
        (status = 404, description = "No such approval", body = ErrorBody),
        (status = 409, description = "Answered or expired already", body = ErrorBody)))]
pub async fn deny(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Strict(body): Strict<AnswerBody>,
) -> Result<Json<Value>, ApiError> {
    let id = event_id(&id, "an approval id")?;
    if body.args_hash.is_some() {
        return Err(ApiError::new(ErrorCode::BadArgument, "args_hash applies to approve only"));
    }
    let events = blocking(&state.rt, move |rt| Ok(rt.deny_approval(&caller, id, body.comment.as_deref())?)).await?;
    if let Some(e) = events.last() {
        state.saw(e.seq);
    }
    Ok(Json(answered(&events)))
}

/// Why a proposal is withdrawn.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawBody {
    /// Why (recorded).
    reason: Option<String>,
}

/// Withdraw a proposal (its proposer only): its pending approval closes, or its unused permit is revoked and the
/// reservation released.
#[utoipa::path(post, path = "/v1/proposals/{id}/withdraw", tag = "proposals", request_body = WithdrawBody,
    security(("bearer" = [])), params(("id" = String, Path, description = "Proposal id")),
    responses((status = 200, description = "Events recorded", body = Object),
        (status = 403, description = "Not the proposer", body = ErrorBody),
        (status = 409, description = "Nothing open to withdraw", body = ErrorBody)))]
pub async fn withdraw(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Strict(body): Strict<WithdrawBody>,
) -> Result<Json<Value>, ApiError> {
    let id = event_id(&id, "a proposal id")?;
    let reason = body.reason.unwrap_or_else(|| "withdrawn by the proposer".into());
    let events = blocking(&state.rt, move |rt| Ok(rt.withdraw(&caller, id, &reason)?)).await?;
    if let Some(e) = events.last() {
        state.saw(e.seq);
    }
    Ok(Json(answered(&events)))
}

/// What to execute a permit with.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecBody {
    /// The args to execute with; absent: the proposal's own. Anything else than the permitted args is refused.
    #[schema(value_type = Object)]
    args: Option<Value>,
    /// `false`: answer 202 with the effect's handle as soon as its start is durable, and run it in the background
    /// (poll `GET /v1/effects/{id}` or watch the stream for the outcome). Default `true`: answer with the outcome —
    /// or with the handle (202) if the effect outlasts the request timeout.
    wait: Option<bool>,
}

/// The 202 answer: where the effect's outcome will be.
fn handle(started: &ice_core::Event) -> Value {
    let id = started.event_id.to_string();
    json!({"status": "running", "effect_id": id, "started_seq": started.seq.0, "poll": format!("/v1/effects/{id}")})
}

/// Execute a permit (its holder only): every check and the effect's start are durable before the effector runs;
/// the answer is the outcome, or a handle to poll when the caller does not wait or the effect runs long.
#[utoipa::path(post, path = "/v1/permits/{id}/exec", tag = "permits", request_body = ExecBody,
    security(("bearer" = [])), params(("id" = String, Path, description = "Permit id")),
    responses((status = 200, description = "The outcome: completed or failed, with evidence", body = Object),
        (status = 202, description = "Started; the outcome is recorded later (`poll` names where)", body = Object),
        (status = 403, description = "Not the permit's holder", body = ErrorBody),
        (status = 404, description = "No such permit", body = ErrorBody),
        (status = 409, description = "Used, expired or revoked, or args differ", body = ErrorBody),
        (status = 503, description = "Too many effects running in the background", body = ErrorBody)))]
pub async fn exec(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Strict(body): Strict<ExecBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    // A malformed id is refused here, unrecorded, like any malformed request.
    event_id(&id, "a permit id")?;
    // The effect's slot is taken before anything starts, so a refusal here leaves nothing half-done.
    let slot = state.effects.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            ErrorCode::Overloaded,
            format!("{} effects are running already", state.cfg.max_background_effects),
        )
    })?;
    let input = ExecInput { permit: id, args: body.args.map(|a| a.to_string()) };
    let started = blocking(&state.rt, move |rt| Ok(rt.start_effect(&caller, &input)?)).await?;
    let started_event = started.event().clone();
    tag("ice.effect_id", started_event.event_id);
    if let Some(run) = started_event.run_id {
        tag("ice.run_id", run);
    }
    state.saw(started_event.seq);
    let bg = state.clone();
    // The effect runs to its outcome whatever happens to this request: a dropped connection must not lose it.
    let finished = tokio::task::spawn_blocking(move || {
        let out = bg.rt.finish_effect(started);
        match &out {
            Ok(o) => {
                bg.saw(o.outcome.seq);
                bg.metrics.effect(&format!("{:?}", o.status).to_lowercase());
            }
            Err(e) => tracing::warn!(error = %e, "an effect's outcome was not recorded; reconciliation will"),
        }
        drop(slot);
        out
    });
    if body.wait == Some(false) {
        return Ok((StatusCode::ACCEPTED, Json(handle(&started_event))));
    }
    // Answer before the request's own timeout would.
    let patience = Duration::from_secs(state.cfg.request_timeout_secs.saturating_sub(1).max(1));
    match tokio::time::timeout(patience, finished).await {
        Ok(Ok(out)) => Ok((StatusCode::OK, Json(out?.to_json()))),
        Ok(Err(e)) => Err(ApiError::new(ErrorCode::StoreUnavailable, format!("the effect's task failed: {e}"))),
        Err(_) => Ok((StatusCode::ACCEPTED, Json(handle(&started_event)))),
    }
}

/// Where an effect stands (its holder, approvers, operators, auditors): running, completed (with evidence), failed
/// or unknown, with its outcome event.
#[utoipa::path(get, path = "/v1/effects/{id}", tag = "permits", security(("bearer" = [])),
    params(("id" = String, Path, description = "Effect id (its `EffectStarted` event id)")),
    responses((status = 200, description = "The effect", body = Object),
        (status = 403, description = "Neither its holder nor a reader", body = ErrorBody),
        (status = 404, description = "No such effect", body = ErrorBody)))]
pub async fn get_effect(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = event_id(&id, "an effect id")?;
    blocking(&state.rt, move |rt| {
        let record = rt.effect(id)?;
        // The permit's holder is the proposal's author (the permit may have retired from memory; the proposal
        // is in the ledger for good).
        let proposal = match &record {
            Some(r) => rt.store().get(r.started.proposal_id).map_err(ice_runtime::RuntimeError::from)?,
            None => None,
        };
        if proposal.is_none_or(|p| p.origin != *caller.principal()) {
            rt.require_any(&caller, &READERS, "reading another principal's effect")?;
        }
        let r = record.ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no effect {id}")))?;
        Ok(Json(json!({"effect_id": r.id.to_string(), "status": r.status, "run_id": r.run.map(|x| x.to_string()),
            "permit_id": r.started.permit_id.to_string(), "proposal_id": r.started.proposal_id.to_string(),
            "action": r.started.action, "resource": r.started.resource, "args_hash": r.started.args_hash,
            "started_at": r.started_at.to_string(), "outcome_id": r.outcome.map(|o| o.to_string()),
            "evidence": r.evidence, "compensated_by": r.compensated_by.map(|c| c.to_string())})))
    })
    .await
}
