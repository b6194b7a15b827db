//! Runs: create, list, read, advance, finish, terminate — the runtime's run methods (operator for changes).

use axum::Json;
use axum::extract::{Path, State};
use ice_core::{RunRecord, RunState};
use serde::Deserialize;
use serde_json::{Value, json};

use super::proposals::READERS;
use super::{blocking, run_id};
use crate::Shared;
use crate::auth::Authed;
use crate::body::Strict;
use crate::error::{ApiError, ErrorBody};

/// A new run.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRunBody {
    /// A label for humans.
    label: Option<String>,
}

fn ran(state: &Shared, r: &RunRecord) -> Json<Value> {
    state.saw(r.last_seq);
    Json(r.to_json())
}

/// Create a run (operator).
#[utoipa::path(post, path = "/v1/runs", tag = "runs", request_body = CreateRunBody, security(("bearer" = [])),
    responses((status = 200, description = "The run, CREATED", body = Object),
        (status = 403, description = "Not an operator", body = ErrorBody)))]
pub async fn create_run(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Strict(body): Strict<CreateRunBody>,
) -> Result<Json<Value>, ApiError> {
    let r = blocking(&state.rt, move |rt| Ok(rt.create_run(&caller, body.label)?)).await?;
    Ok(ran(&state, &r))
}

/// Runs in memory (settled, terminated runs are read one by one from the ledger: `GET /v1/runs/{id}`).
#[utoipa::path(get, path = "/v1/runs", tag = "runs", security(("bearer" = [])),
    responses((status = 200, description = "Runs and how many settled runs left memory", body = Object),
        (status = 403, description = "Agents cannot list runs", body = ErrorBody)))]
pub async fn list_runs(State(state): State<Shared>, Authed(caller): Authed) -> Result<Json<Value>, ApiError> {
    blocking(&state.rt, move |rt| {
        rt.require_any(&caller, &READERS, "listing runs")?;
        let (runs, retired): (Vec<Value>, usize) =
            rt.with_state(|s| (s.runs().map(RunRecord::to_json).collect(), s.retired_runs()))?;
        Ok(Json(json!({"runs": runs, "retired": retired})))
    })
    .await
}

/// One run (any authenticated caller: agents need to know whether their run is EXECUTING).
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "The run", body = Object),
        (status = 404, description = "No such run", body = ErrorBody)))]
pub async fn get_run(
    State(state): State<Shared>,
    Authed(_caller): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = run_id(&id)?;
    blocking(&state.rt, move |rt| {
        let r = rt
            .run(id)?
            .ok_or_else(|| ApiError::new(ice_core::ErrorCode::UnknownRun, format!("run {id} does not exist")))?;
        Ok(Json(r.to_json()))
    })
    .await
}

/// A transition.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceBody {
    /// Target state; absent: the next state on the happy path.
    to: Option<String>,
    /// Why (required for TERMINATED unless the run is COMMITTED or ABORTED).
    reason: Option<String>,
}

/// Move a run forward (operator). COMMITTED only through `finish`.
#[utoipa::path(post, path = "/v1/runs/{id}/advance", tag = "runs", request_body = AdvanceBody,
    security(("bearer" = [])), params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "The run after the transition", body = Object),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "Illegal transition", body = ErrorBody)))]
pub async fn advance_run(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Strict(body): Strict<AdvanceBody>,
) -> Result<Json<Value>, ApiError> {
    let id = run_id(&id)?;
    let to = body.to.as_deref().map(str::parse::<RunState>).transpose()?;
    let r = blocking(&state.rt, move |rt| Ok(rt.advance_run(&caller, id, to, body.reason)?)).await?;
    Ok(ran(&state, &r))
}

/// Finish a run: COMMITTED when every effect completed (operator).
#[utoipa::path(post, path = "/v1/runs/{id}/finish", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "The run, COMMITTED", body = Object),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 409, description = "An effect is not complete, or the run is not VALIDATING", body = ErrorBody)))]
pub async fn finish_run(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = run_id(&id)?;
    let r = blocking(&state.rt, move |rt| Ok(rt.finish_run(&caller, id)?)).await?;
    Ok(ran(&state, &r))
}

/// What rolling back a run would propose, effect by effect, newest first (auditor, operator, approver; nothing is
/// recorded).
#[utoipa::path(get, path = "/v1/runs/{id}/rollback", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "`items`: effect, action, resource and the planned compensation", body = Object),
        (status = 403, description = "Agents cannot preview rollbacks", body = ErrorBody)))]
pub async fn preview_rollback(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = run_id(&id)?;
    blocking(&state.rt, move |rt| {
        let items = rt.rollback_preview(&caller, ice_runtime::RollbackTarget::Run(id))?;
        Ok(Json(json!({ "items": items })))
    })
    .await
}

/// Roll a run back (operator): each completed effect's compensation is proposed in a new run, decided like any
/// proposal, and executed when allowed; compensations needing approval wait for one.
#[utoipa::path(post, path = "/v1/runs/{id}/rollback", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "The rollback run, its state, and what happened to each effect", body = Object),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 409, description = "Nothing to roll back", body = ErrorBody)))]
pub async fn rollback_run(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = run_id(&id)?;
    let (report, head) = blocking(&state.rt, move |rt| {
        let report = rt.rollback(&caller, ice_runtime::RollbackTarget::Run(id))?;
        let head = rt.store().head().map_err(ice_runtime::RuntimeError::from)?;
        Ok((report, head.map(|h| h.seq)))
    })
    .await?;
    if let Some(seq) = head {
        state.saw(seq);
    }
    Ok(Json(serde_json::to_value(&report).unwrap_or(Value::Null)))
}

/// Why a run ends.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TerminateBody {
    /// Why.
    reason: Option<String>,
}

/// End a run (operator): live permits are revoked, reservations released, pending approvals expired.
#[utoipa::path(post, path = "/v1/runs/{id}/terminate", tag = "runs", request_body = TerminateBody,
    security(("bearer" = [])), params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "The run, TERMINATED", body = Object),
        (status = 400, description = "A reason is required", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody)))]
pub async fn terminate_run(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Strict(body): Strict<TerminateBody>,
) -> Result<Json<Value>, ApiError> {
    let id = run_id(&id)?;
    let r = blocking(&state.rt, move |rt| Ok(rt.terminate_run(&caller, id, body.reason)?)).await?;
    Ok(ran(&state, &r))
}
