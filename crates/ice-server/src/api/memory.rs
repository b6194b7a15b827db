//! Memory: agents' candidates, scoped and recorded reads and search, lifecycle changes, and the audit of reads.
//! Promotion itself is an ordinary proposal (`POST /v1/proposals` with action `memory.promote`) and permit
//! (`POST /v1/permits/{id}/exec`): there is no other way in.

use axum::Json;
use axum::extract::{Path, State};
use ice_core::memory::{MemoryCandidate, MemoryStatus};
use ice_core::{ErrorCode, EventKind};
use ice_runtime::MemoryQuery;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{blocking, event_id};
use crate::Shared;
use crate::auth::Authed;
use crate::body::{Query, Strict};
use crate::error::{ApiError, ErrorBody};

/// A memory candidate.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CandidateBody {
    /// The run it belongs to.
    run: String,
    /// Namespace, e.g. `team/deploys`.
    namespace: String,
    /// The fact, in words (at most 4096 characters).
    text: String,
    /// Structured fields (a JSON object).
    #[schema(value_type = Object)]
    fields: Option<Map<String, Value>>,
    /// Event ids it derives from; promotion needs each to be a completed effect (not rolled back), a granted
    /// approval or a run's move to COMMITTED.
    sources: Vec<String>,
    /// Time to live once promoted, in seconds.
    ttl_secs: Option<u64>,
}

/// Record a memory candidate (agent, operator): an agent's note that only a governed `memory.promote` turns into
/// memory.
#[utoipa::path(post, path = "/v1/memory/candidates", tag = "memory", request_body = CandidateBody,
    security(("bearer" = [])),
    responses((status = 200, description = "The `MemoryProposed` event (its id is the candidate id)", body = Object),
        (status = 400, description = "A bad namespace, text, field set or source list", body = ErrorBody),
        (status = 403, description = "Neither agent nor operator", body = ErrorBody)))]
pub async fn propose(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Strict(body): Strict<CandidateBody>,
) -> Result<Json<Value>, ApiError> {
    let mut sources = Vec::with_capacity(body.sources.len());
    for s in &body.sources {
        sources.push(event_id(s, "a source event id")?);
    }
    let candidate = MemoryCandidate {
        namespace: body.namespace,
        text: body.text,
        fields: body.fields.unwrap_or_default(),
        sources,
        ttl_secs: body.ttl_secs,
    };
    let run = body.run;
    let e = blocking(&state.rt, move |rt| Ok(rt.memory_propose(&caller, &run, &candidate)?)).await?;
    state.saw(e.seq);
    Ok(Json(json!({"candidate_id": e.event_id.to_string(), "event": e.to_json()})))
}

/// Filters of `GET /v1/memory`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this namespace and those below it.
    namespace: Option<String>,
    /// Only this status as of now: ACTIVE, EXPIRED, DEPRECATED, SUPERSEDED, INVALIDATED.
    status: Option<String>,
    /// Every item the ledger ever promoted (read from the ledger), not only those in derived state.
    all: Option<bool>,
}

fn status_of(s: Option<&str>) -> Result<Option<MemoryStatus>, ApiError> {
    s.map(|s| {
        MemoryStatus::parse(s).ok_or_else(|| {
            ApiError::new(
                ErrorCode::BadArgument,
                format!("`{s}` is not a memory status (ACTIVE, EXPIRED, DEPRECATED, SUPERSEDED, INVALIDATED)"),
            )
        })
    })
    .transpose()
}

/// Memory items with their provenance (operator, auditor, approver; agents search instead).
#[utoipa::path(get, path = "/v1/memory", tag = "memory", params(ListQuery), security(("bearer" = [])),
    responses((status = 200, description = "`items`: id, status, namespace, text, fields, sources, who proposed and promoted it, the proposal, permit and approval, and how it ended", body = Object),
        (status = 403, description = "Agents cannot list memory", body = ErrorBody)))]
pub async fn list(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = status_of(q.status.as_deref())?;
    blocking(&state.rt, move |rt| {
        let items = rt.memory_list(&caller, q.namespace.as_deref(), status, q.all.unwrap_or(false))?;
        Ok(Json(json!({"items": items})))
    })
    .await
}

/// Options of `GET /v1/memory/{id}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ShowQuery {
    /// The reader's run (the read is recorded in it).
    run: Option<String>,
}

/// One memory item, if the caller may read its namespace; the read is recorded (`MemoryRead`).
#[utoipa::path(get, path = "/v1/memory/{id}", tag = "memory", params(ShowQuery, ("id" = String, Path, description = "Item id")),
    security(("bearer" = [])),
    responses((status = 200, description = "`item` and `read_id`", body = Object),
        (status = 404, description = "No such item the caller may read", body = ErrorBody)))]
pub async fn show(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = event_id(&id, "a memory item id")?;
    let out = blocking(&state.rt, move |rt| Ok(rt.memory_show(&caller, id, q.run.as_deref())?)).await?;
    state.saw(out.read.seq);
    Ok(Json(json!({"item": out.items.first(), "read_id": out.read.event_id.to_string()})))
}

/// A search.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    /// What to look for.
    query: String,
    /// Only this namespace and those below it.
    namespace: Option<String>,
    /// Results wanted, 1–50 (default 5).
    k: Option<usize>,
    /// The reader's run (the read is recorded in it).
    run: Option<String>,
}

/// Semantic search over ACTIVE memory the caller may read (agents: namespaces their `memory.read` grants cover);
/// recorded as `MemoryRead` with the items returned and the index version. Results are input, never a decision.
#[utoipa::path(post, path = "/v1/memory/search", tag = "memory", request_body = SearchBody, security(("bearer" = [])),
    responses((status = 200, description = "`items` (best first, with `score`) and `read_id`", body = Object),
        (status = 400, description = "Empty query, bad namespace or k", body = ErrorBody)))]
pub async fn search(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Strict(body): Strict<SearchBody>,
) -> Result<Json<Value>, ApiError> {
    let q = MemoryQuery { query: body.query, namespace: body.namespace, k: body.k.unwrap_or(5), run: body.run };
    let out = blocking(&state.rt, move |rt| Ok(rt.memory_search(&caller, &q)?)).await?;
    state.saw(out.read.seq);
    Ok(Json(json!({"items": out.items, "read_id": out.read.event_id.to_string()})))
}

/// A lifecycle change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    /// Why (recorded).
    reason: String,
    /// `supersede`: the newer ACTIVE item of the same namespace.
    by: Option<String>,
}

/// End an ACTIVE item's life (operator): `deprecate`, `supersede` (with `by`) or `invalidate`. Items are
/// immutable; a change happens once.
#[utoipa::path(post, path = "/v1/memory/{id}/{change}", tag = "memory", request_body = ChangeBody, security(("bearer" = [])),
    params(("id" = String, Path, description = "Item id"), ("change" = String, Path, description = "deprecate | supersede | invalidate")),
    responses((status = 200, description = "The recorded event", body = Object),
        (status = 403, description = "Not an operator", body = ErrorBody),
        (status = 409, description = "The item is no longer ACTIVE", body = ErrorBody)))]
pub async fn change(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Path((id, change)): Path<(String, String)>,
    Strict(body): Strict<ChangeBody>,
) -> Result<Json<Value>, ApiError> {
    let id = event_id(&id, "a memory item id")?;
    let kind = match change.as_str() {
        "deprecate" => EventKind::MemoryDeprecated,
        "supersede" => EventKind::MemorySuperseded,
        "invalidate" => EventKind::MemoryInvalidated,
        other => {
            return Err(ApiError::new(
                ErrorCode::NoRoute,
                format!("`{other}` is not a memory change (deprecate, supersede, invalidate)"),
            ));
        }
    };
    let by = body.by.as_deref().map(|b| event_id(b, "the newer item's id")).transpose()?;
    let e = blocking(&state.rt, move |rt| Ok(rt.memory_change(&caller, kind, id, &body.reason, by)?)).await?;
    state.saw(e.seq);
    Ok(Json(e.to_json()))
}

/// Every recorded read that returned an item, with the reader's next proposal after it (auditor, operator).
#[utoipa::path(get, path = "/v1/memory/{id}/reads", tag = "memory", params(("id" = String, Path, description = "Item id")),
    security(("bearer" = [])),
    responses((status = 200, description = "`reads`: reader, time, query hash, index version, items, and `followed_by` (proposal id, action, resource)", body = Object),
        (status = 403, description = "Neither auditor nor operator", body = ErrorBody)))]
pub async fn reads(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = event_id(&id, "a memory item id")?;
    blocking(&state.rt, move |rt| {
        let reads = rt.memory_reads(&caller, id)?;
        Ok(Json(json!({"reads": reads.iter().map(ice_runtime::MemoryReadRecord::to_json).collect::<Vec<_>>()})))
    })
    .await
}
