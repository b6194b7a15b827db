//! Authority and housekeeping: grants, budgets, the active policy, agent suspension, tokens and checkpoints. Each
//! is the runtime method the CLI calls; the runtime checks the operator role.

use axum::Json;
use axum::extract::{Path, State};
use ice_core::auth::Role;
use ice_core::budget::{BudgetKey, BudgetScope, Period};
use ice_core::{Dimension, ErrorCode, EventKind, Principal, Roles, Seq};
use ice_runtime::GrantInput;
use serde::Deserialize;
use serde_json::{Value, json};

use super::proposals::READERS;
use super::{blocking, event_id, run_id};
use crate::Shared;
use crate::auth::Authed;
use crate::body::{Query, Strict};
use crate::error::{ApiError, ErrorBody};

fn recorded(state: &Shared, e: &ice_core::Event) -> Json<Value> {
    state.saw(e.seq);
    Json(json!({"event_id": e.event_id.to_string(), "seq": e.seq.0, "kind": e.kind.as_str()}))
}

/// Grants in memory, with their status (auditor, operator, approver).
#[utoipa::path(get, path = "/v1/grants", tag = "authority", security(("bearer" = [])),
    responses((status = 200, description = "Grants", body = Object),
        (status = 403, description = "Agents cannot list grants", body = ErrorBody)))]
pub async fn list_grants(State(state): State<Shared>, Authed(caller): Authed) -> Result<Json<Value>, ApiError> {
    blocking(&state.rt, move |rt| {
        rt.require_any(&caller, &READERS, "listing grants")?;
        let now = rt.now();
        let grants: Vec<Value> = rt.with_state(|s| {
            s.authority()
                .grants()
                .values()
                .map(|g| {
                    let mut v = serde_json::to_value(g).unwrap_or(Value::Null);
                    v["status"] = json!(g.status(now));
                    v
                })
                .collect()
        })?;
        Ok(Json(json!({ "grants": grants })))
    })
    .await
}

/// Terms of a grant.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// Who receives it, e.g. `agent:a`.
    principal: String,
    /// Actions or patterns, e.g. `["fs.*"]`.
    actions: Vec<String>,
    /// Resource prefix or pattern, e.g. `file:notes/`.
    resource: String,
    /// Limit to one run.
    run: Option<String>,
    /// Time to live in seconds.
    ttl_secs: Option<u64>,
    /// Most uses.
    max_uses: Option<u64>,
    /// Whether it may be revoked (default true).
    revocable: Option<bool>,
}

/// Issue a grant (operator).
#[utoipa::path(post, path = "/v1/grants", tag = "authority", request_body = GrantBody, security(("bearer" = [])),
    responses((status = 200, description = "The GrantIssued event", body = Object),
        (status = 400, description = "Bad terms", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody)))]
pub async fn issue_grant(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Strict(b): Strict<GrantBody>,
) -> Result<Json<Value>, ApiError> {
    let input = GrantInput {
        principal: b.principal.parse()?,
        run: b.run.as_deref().map(run_id).transpose()?,
        actions: b.actions,
        resource: b.resource,
        ttl_micros: b.ttl_secs.map(|s| i64::try_from(s.saturating_mul(1_000_000)).unwrap_or(i64::MAX)),
        max_uses: b.max_uses,
        revocable: b.revocable.unwrap_or(true),
    };
    let e = blocking(&state.rt, move |rt| Ok(rt.issue_grant(&caller, &input)?)).await?;
    Ok(recorded(&state, &e))
}

/// Why.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why (recorded).
    reason: String,
}

/// Revoke a grant (operator).
#[utoipa::path(post, path = "/v1/grants/{id}/revoke", tag = "authority", request_body = ReasonBody,
    security(("bearer" = [])), params(("id" = String, Path, description = "Grant id")),
    responses((status = 200, description = "The GrantRevoked event", body = Object),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 404, description = "No such grant", body = ErrorBody)))]
pub async fn revoke_grant(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Strict(b): Strict<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    let id = event_id(&id, "a grant id")?;
    let e = blocking(&state.rt, move |rt| Ok(rt.revoke_grant(&caller, id, &b.reason)?)).await?;
    Ok(recorded(&state, &e))
}

/// Budget lines with spend and reservations in the current period (auditor, operator, approver).
#[utoipa::path(get, path = "/v1/budgets", tag = "authority", security(("bearer" = [])),
    responses((status = 200, description = "Budget lines", body = Object),
        (status = 403, description = "Agents cannot list budgets", body = ErrorBody)))]
pub async fn list_budgets(State(state): State<Shared>, Authed(caller): Authed) -> Result<Json<Value>, ApiError> {
    blocking(&state.rt, move |rt| {
        rt.require_any(&caller, &READERS, "listing budgets")?;
        let now = rt.now();
        let lines = rt.with_state(|s| s.authority().budgets().usage(now))?;
        Ok(Json(json!({ "budgets": lines })))
    })
    .await
}

/// A budget line.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetBody {
    /// `global`, `agent:NAME` or `run:RUN_ID`.
    scope: String,
    /// `wall_ms`, `tokens`, `money_micros`, `calls` or `bytes`.
    dimension: String,
    /// The limit.
    limit: u64,
    /// `total` (default) or `day`.
    period: Option<String>,
}

/// Set a budget line (operator).
#[utoipa::path(put, path = "/v1/budgets", tag = "authority", request_body = BudgetBody, security(("bearer" = [])),
    responses((status = 200, description = "The BudgetSet event", body = Object),
        (status = 400, description = "Bad scope, dimension or period", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody)))]
pub async fn set_budget(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Strict(b): Strict<BudgetBody>,
) -> Result<Json<Value>, ApiError> {
    let scope = match b.scope.strip_prefix("run:") {
        Some(r) => BudgetScope::Run { run_id: run_id(r)? },
        None => b.scope.parse()?,
    };
    let period: Period = serde_json::from_value(json!(b.period.as_deref().unwrap_or("total")))
        .map_err(|_| ApiError::new(ErrorCode::BadBudget, "period must be total or day"))?;
    let key = BudgetKey { scope, dimension: b.dimension.parse::<Dimension>()?, period };
    let e = blocking(&state.rt, move |rt| Ok(rt.set_budget(&caller, key, b.limit)?)).await?;
    Ok(recorded(&state, &e))
}

/// The active policy set: hash, policy ids, action catalog (any authenticated caller: agents may know the rules).
#[utoipa::path(get, path = "/v1/policy", tag = "authority", security(("bearer" = [])),
    responses((status = 200, description = "The active policy set: hash, policy ids, catalog, consequences; for auditors, operators and approvers also `source` (the files as activated)", body = Object),
        (status = 409, description = "No policy is active", body = ErrorBody)))]
pub async fn show_policy(State(state): State<Shared>, Authed(caller): Authed) -> Result<Json<Value>, ApiError> {
    blocking(&state.rt, move |rt| {
        let p = rt.active_policy()?;
        // The texts as activated (what a what-if candidate starts from), for those who may read the ledger (it
        // holds them anyway); an agent sees the ids and the catalog only.
        let reader = READERS.iter().any(|r| caller.has(*r));
        let bundle = if reader { rt.with_state(|s| s.authority().policy().map(|a| a.bundle.clone()))? } else { None };
        let source = bundle.and_then(|b| ice_runtime::policy::PolicyBundle::from_value(&b).ok()).map(|b| {
            let files: serde_json::Map<String, Value> =
                b.source.files.iter().map(|f| (f.name.clone(), Value::String(f.text.clone()))).collect();
            json!({"policies": files, "schema": b.source.schema, "catalog": b.catalog})
        });
        Ok(Json(json!({"hash": p.hash, "policies": p.engine.policy_ids(), "actions": p.catalog.actions,
            "consequences": p.catalog.consequences, "source": source})))
    })
    .await
}

/// Every agent the ledger knows (holds a token or a grant, or was suspended), with its status (auditor, operator,
/// approver).
#[utoipa::path(get, path = "/v1/agents", tag = "authority", security(("bearer" = [])),
    responses((status = 200, description = "`agents`: principal, status (active | suspended), reason, live grants and tokens", body = Object),
        (status = 403, description = "Agents cannot list agents", body = ErrorBody)))]
pub async fn list_agents(State(state): State<Shared>, Authed(caller): Authed) -> Result<Json<Value>, ApiError> {
    blocking(&state.rt, move |rt| {
        rt.require_any(&caller, &READERS, "listing agents")?;
        let now = rt.now();
        let agents = rt.with_state(|s| {
            let mut seen: std::collections::BTreeMap<Principal, (u64, u64)> = std::collections::BTreeMap::new();
            for g in s.authority().grants().values() {
                let live = u64::from(g.status(now) == ice_core::grant::GrantStatus::Live);
                seen.entry(g.terms.principal.clone()).or_default().0 += live;
            }
            for t in s.tokens().all().values() {
                let live = u64::from(t.status(now) == ice_core::auth::TokenStatus::Live);
                seen.entry(t.terms.principal.clone()).or_default().1 += live;
            }
            for p in s.authority().suspended_agents().keys() {
                seen.entry(p.clone()).or_default();
            }
            seen.into_iter()
                .filter(|(p, _)| p.kind == ice_core::PrincipalKind::Agent)
                .map(|(p, (grants, tokens))| {
                    let why = s.authority().suspended(&p);
                    json!({"agent": p.to_string(), "status": if why.is_some() { "suspended" } else { "active" },
                        "reason": why, "live_grants": grants, "active_tokens": tokens})
                })
                .collect::<Vec<_>>()
        })?;
        Ok(Json(json!({ "agents": agents })))
    })
    .await
}

/// Suspend, resume or reconfigure an agent (operator). `reason` is the change for `reconfigure`.
#[utoipa::path(post, path = "/v1/agents/{agent}/{action}", tag = "authority", request_body = ReasonBody,
    security(("bearer" = [])),
    params(("agent" = String, Path, description = "The agent, e.g. `agent:a`"),
        ("action" = String, Path, description = "`suspend`, `resume` or `reconfigure`")),
    responses((status = 200, description = "The recorded event", body = Object),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 409, description = "Cannot resume (not suspended)", body = ErrorBody)))]
pub async fn agent_status(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Path((agent, action)): Path<(String, String)>,
    Strict(b): Strict<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    let target: Principal = agent.parse()?;
    let e = blocking(&state.rt, move |rt| {
        Ok(match action.as_str() {
            "suspend" => rt.suspend_agent(&caller, &target, &b.reason)?,
            "resume" => rt.resume_agent(&caller, &target, &b.reason)?,
            "reconfigure" => rt.reconfigure_agent(&caller, &target, &b.reason)?,
            other => {
                return Err(ApiError::new(
                    ErrorCode::NoRoute,
                    format!("`{other}` is not an agent action: suspend, resume or reconfigure"),
                ));
            }
        })
    })
    .await?;
    Ok(recorded(&state, &e))
}

/// A token to issue.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// The principal it authenticates.
    principal: String,
    /// Roles: agent, approver, operator, auditor.
    roles: Vec<String>,
    /// Time to live in seconds.
    ttl_secs: Option<u64>,
    /// A label.
    label: Option<String>,
}

/// Issue a token (operator). The secret is in this response only; the ledger holds its keyed hash.
#[utoipa::path(post, path = "/v1/tokens", tag = "auth", request_body = TokenBody, security(("bearer" = [])),
    responses((status = 200, description = "Token id and secret", body = Object),
        (status = 403, description = "Not an operator", body = ErrorBody)))]
pub async fn issue_token(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Strict(b): Strict<TokenBody>,
) -> Result<Json<Value>, ApiError> {
    let principal: Principal = b.principal.parse()?;
    let roles: Roles = b.roles.join(",").parse()?;
    let ttl = b.ttl_secs.map(|s| i64::try_from(s.saturating_mul(1_000_000)).unwrap_or(i64::MAX));
    let p = principal.clone();
    let (e, secret) = blocking(&state.rt, move |rt| Ok(rt.issue_token(&caller, &p, roles, ttl, b.label)?)).await?;
    state.saw(e.seq);
    Ok(Json(json!({"token_id": e.event_id.to_string(), "principal": principal.to_string(),
        "roles": roles.to_string(), "token": secret, "seq": e.seq.0})))
}

/// Revoke a token (operator); every later use is refused.
#[utoipa::path(post, path = "/v1/tokens/{id}/revoke", tag = "auth", request_body = ReasonBody,
    security(("bearer" = [])), params(("id" = String, Path, description = "Token id")),
    responses((status = 200, description = "The TokenRevoked event", body = Object),
        (status = 403, description = "Not an operator", body = ErrorBody)))]
pub async fn revoke_token(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Strict(b): Strict<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    let id = event_id(&id, "a token id")?;
    let e = blocking(&state.rt, move |rt| Ok(rt.revoke_token(&caller, id, &b.reason)?)).await?;
    Ok(recorded(&state, &e))
}

/// Page of `GET /v1/checkpoints`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CheckpointsQuery {
    /// Checkpoints after this seq. Default 0.
    after: Option<u64>,
    /// Page size, at most 100. Default 20.
    limit: Option<usize>,
}

/// Signed checkpoints, oldest first (auditor, operator, approver).
#[utoipa::path(get, path = "/v1/checkpoints", tag = "proof", params(CheckpointsQuery), security(("bearer" = [])),
    responses((status = 200, description = "`checkpoints` (events) and `next_after`", body = Object),
        (status = 403, description = "Agents cannot read the ledger", body = ErrorBody)))]
pub async fn list_checkpoints(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Query(q): Query<CheckpointsQuery>,
) -> Result<Json<Value>, ApiError> {
    blocking(&state.rt, move |rt| {
        rt.require_any(&caller, &READERS, "reading checkpoints")?;
        let query = ice_store::EventQuery {
            after: Seq(q.after.unwrap_or(0)),
            until: None,
            run: None,
            kind: Some(EventKind::Checkpoint),
            since: None,
            limit: q.limit.unwrap_or(20).clamp(1, 100),
        };
        let found = rt.store().read(&query).map_err(ice_runtime::RuntimeError::from)?;
        let next = found.last().map_or(query.after.0, |e| e.seq.0);
        Ok(Json(json!({"checkpoints": found.iter().map(ice_core::Event::to_json).collect::<Vec<_>>(),
            "next_after": next})))
    })
    .await
}

/// Sign a checkpoint now (operator); `null` when there is nothing new to cover.
#[utoipa::path(post, path = "/v1/checkpoints", tag = "proof", security(("bearer" = [])),
    responses((status = 200, description = "The Checkpoint event, or null", body = Object),
        (status = 403, description = "Not an operator", body = ErrorBody)))]
pub async fn checkpoint(State(state): State<Shared>, Authed(caller): Authed) -> Result<Json<Value>, ApiError> {
    let e = blocking(&state.rt, move |rt| {
        rt.require(&caller, Role::Operator, "checkpoint")?;
        Ok(rt.checkpoint()?)
    })
    .await?;
    if let Some(e) = &e {
        state.saw(e.seq);
    }
    Ok(Json(e.map_or(Value::Null, |e| e.to_json())))
}
