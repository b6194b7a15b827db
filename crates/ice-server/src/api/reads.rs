//! Reading the ledger: events by seq page and filter, one event by id, who the token is, and chain verification.

use axum::Json;
use axum::extract::{Path, State};
use ice_core::{ErrorCode, EventKind, Principal, Rejection, Seq, Timestamp};
use ice_store::{EventQuery, VerifyOptions};
use serde::Deserialize;
use serde_json::{Value, json};

use super::proposals::READERS;
use super::{blocking, event_id, run_id};
use crate::Shared;
use crate::auth::Authed;
use crate::body::Query;
use crate::error::{ApiError, ErrorBody};

/// Most events one page returns, and most scanned to fill it when filtering by origin.
const MAX_PAGE: usize = 1_000;
const MAX_SCAN: usize = 20_000;

/// Filters and page of `GET /v1/events`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Events with seq greater than this (the `next_after` of the previous page). Default 0.
    after: Option<u64>,
    /// Page size, at most 1000. Default 100.
    limit: Option<usize>,
    /// Only events naming this run.
    run: Option<String>,
    /// Only this kind (e.g. `DecisionMade`).
    kind: Option<String>,
    /// Only events whose origin is this principal (e.g. `agent:a`).
    origin: Option<String>,
    /// Only events at or after this time (RFC 3339).
    since: Option<String>,
}

/// Parsed event filters, shared with the stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub run: Option<ice_core::RunId>,
    pub kind: Option<EventKind>,
    pub origin: Option<Principal>,
    pub since: Option<Timestamp>,
}

impl Filter {
    pub(crate) fn parse(
        run: Option<&str>,
        kind: Option<&str>,
        origin: Option<&str>,
        since: Option<&str>,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            run: run.map(run_id).transpose()?,
            kind: kind.map(str::parse::<EventKind>).transpose()?,
            origin: origin.map(str::parse::<Principal>).transpose()?,
            since: since.map(Timestamp::parse_rfc3339).transpose()?,
        })
    }

    pub(crate) fn query(&self, after: Seq, limit: usize) -> EventQuery {
        EventQuery { after, until: None, run: self.run, kind: self.kind, since: self.since, limit }
    }

    pub(crate) fn keeps(&self, e: &ice_core::Event) -> bool {
        self.origin.as_ref().is_none_or(|o| e.origin == *o)
    }
}

/// Events in seq order, filtered; page with `after` = the previous page's `next_after` (auditor, operator,
/// approver).
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery), security(("bearer" = [])),
    responses((status = 200, description = "`events`, `next_after` (the last seq scanned) and `head` (the ledger's last seq)", body = Object),
        (status = 400, description = "A bad filter", body = ErrorBody),
        (status = 403, description = "Agents cannot read the ledger", body = ErrorBody)))]
pub async fn list_events(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = Filter::parse(q.run.as_deref(), q.kind.as_deref(), q.origin.as_deref(), q.since.as_deref())?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    blocking(&state.rt, move |rt| {
        rt.require_any(&caller, &READERS, "reading events")?;
        let store = rt.store();
        let mut cursor = Seq(q.after.unwrap_or(0));
        let mut out = Vec::new();
        let mut scanned = 0;
        while out.len() < limit && scanned < MAX_SCAN {
            let batch = store.read(&filter.query(cursor, limit)).map_err(ice_runtime::RuntimeError::from)?;
            let Some(last) = batch.last().map(|e| e.seq) else { break };
            scanned += batch.len();
            for e in batch {
                cursor = e.seq;
                if filter.keeps(&e) {
                    out.push(e.to_json());
                    if out.len() == limit {
                        break;
                    }
                }
            }
            cursor = if out.len() == limit { cursor } else { last };
        }
        let head = store.head().map_err(ice_runtime::RuntimeError::from)?.map_or(0, |h| h.seq.0);
        Ok(Json(json!({"events": out, "next_after": cursor.0, "head": head})))
    })
    .await
}

/// One event by id (auditor, operator, approver).
#[utoipa::path(get, path = "/v1/events/{id}", tag = "events", security(("bearer" = [])),
    params(("id" = String, Path, description = "Event id")),
    responses((status = 200, description = "The event", body = Object),
        (status = 403, description = "Agents cannot read the ledger", body = ErrorBody),
        (status = 404, description = "No such event", body = ErrorBody)))]
pub async fn get_event(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = event_id(&id, "an event id")?;
    blocking(&state.rt, move |rt| {
        rt.require_any(&caller, &READERS, "reading events")?;
        let e = rt.store().get(id).map_err(ice_runtime::RuntimeError::from)?;
        let e = e.ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no event {id}")))?;
        Ok(Json(e.to_json()))
    })
    .await
}

/// Who this token authenticates, and its roles.
#[utoipa::path(get, path = "/v1/whoami", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "Principal, roles and credential", body = Object),
        (status = 401, description = "No valid token", body = ErrorBody)))]
pub async fn whoami(Authed(caller): Authed) -> Json<Value> {
    Json(json!({"principal": caller.principal().to_string(), "roles": caller.roles().to_string(),
        "attribution": caller.attribution().to_string()}))
}

/// The checkpoint the witness state at `path` cosigned for one of `trusted_keys`' logs, its cosignature checked
/// (against `key` when given), with the witness's key and when it cosigned.
fn witnessed(
    path: &std::path::Path,
    key: Option<&str>,
    trusted_keys: &[String],
) -> Result<(ice_store::Witnessed, (String, String)), Rejection> {
    let w = ice_runtime::read_witness(path, key, trusted_keys)?;
    let c = &w.checkpoint;
    // read_witness checked the hash decodes.
    let hash = ice_core::EventHash::from_hex(&c.event_hash).unwrap_or(ice_core::EventHash::GENESIS);
    Ok((ice_store::Witnessed { seq: ice_core::Seq(c.seq), hash }, (w.witness_key.clone(), c.witnessed_at.to_rfc3339())))
}

/// Options of `GET /v1/verify`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct VerifyQuery {
    /// Start from the last signed checkpoint instead of the first event.
    from_checkpoint: Option<bool>,
}

/// Verify the chain and its signed checkpoints against the home's pinned keys (auditor, operator, approver).
#[utoipa::path(get, path = "/v1/verify", tag = "proof", params(VerifyQuery), security(("bearer" = [])),
    responses((status = 200, description = "`ok` true with the head, or false with the first bad seq", body = Object),
        (status = 403, description = "Agents cannot verify over the API", body = ErrorBody)))]
pub async fn verify(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Query(q): Query<VerifyQuery>,
) -> Result<Json<Value>, ApiError> {
    let proof = state.proof.clone();
    blocking(&state.rt, move |rt| {
        rt.require_any(&caller, &READERS, "verifying the ledger")?;
        let witness = match &proof.witness {
            Some((path, key)) => Some(witnessed(path, key.as_deref(), &proof.trusted_keys)),
            None => None,
        };
        if let Some(Err(e)) = &witness {
            return Ok(Json(json!({"ok": false, "code": e.code.as_str(), "reason": e.message, "hint": e.code.hint()})));
        }
        let witness = witness.and_then(Result::ok);
        let options = VerifyOptions {
            trusted_keys: proof.trusted_keys.clone(),
            from_checkpoint: q.from_checkpoint.unwrap_or(false),
            witnessed: witness.as_ref().map(|(w, _)| *w),
            from_witnessed: false,
        };
        let started = std::time::Instant::now();
        let result = ice_store::verify_ledger_signed(&**rt.store(), &options, &mut |_| {})
            .map_err(ice_runtime::RuntimeError::from)?
            .and_then(|s| ice_store::check_signed_coverage(s, proof.tail_bound));
        let secs = started.elapsed().as_secs_f64();
        Ok(Json(match result {
            Ok(s) => json!({"ok": true, "events": s.chain.events, "head_seq": s.chain.head.seq.0,
                "head_hash": s.chain.head.hash.to_hex(), "checkpoints": s.checkpoints,
                "started_at_seq": s.started_at, "unsigned_tail": s.unsigned_tail, "seconds": secs,
                "witness": witness.map(|(w, about)| json!({"cosigned_seq": w.seq.0, "witness_key": about.0,
                    "witnessed_at": about.1}))}),
            Err(f) => json!({"ok": false, "first_bad_seq": f.seq.0, "code": f.code.as_str(), "reason": f.message,
                "hint": f.code.hint()}),
        }))
    })
    .await
}

/// What `GET /v1/export` bundles: a run, or a seq range.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// One run's events.
    run: Option<String>,
    /// First seq of a range (with `to`).
    from: Option<u64>,
    /// Last seq of a range, inclusive.
    to: Option<u64>,
}

/// An audit bundle (JSON lines): the events, the signed checkpoints covering them with Merkle proofs, the keys;
/// verify it offline with `ice verify --bundle FILE --trust-key KEY` (auditor, operator, approver).
#[utoipa::path(get, path = "/v1/export", tag = "proof", params(ExportQuery), security(("bearer" = [])),
    responses((status = 200, description = "The bundle, `application/x-ndjson`", content_type = "application/x-ndjson", body = String),
        (status = 400, description = "Neither a run nor a range", body = ErrorBody),
        (status = 403, description = "Agents cannot export", body = ErrorBody),
        (status = 404, description = "Nothing matches, or not yet covered by a checkpoint", body = ErrorBody)))]
pub async fn export(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Query(q): Query<ExportQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let selection = match (q.run.as_deref(), q.from, q.to) {
        (Some(r), None, None) => ice_runtime::ExportSelection::Run(run_id(r)?),
        (None, Some(a), Some(b)) => ice_runtime::ExportSelection::Range(a, b),
        _ => return Err(ApiError::new(ErrorCode::BadArgument, "pass `run`, or `from` and `to` (seqs)")),
    };
    let keys = state.proof.trusted_keys.clone();
    if keys.is_empty() {
        return Err(ApiError::new(ErrorCode::NoPinnedKey, "this server has no pinned key to sign bundles against"));
    }
    // With `[server] witness_state`, the bundle carries the witness's cosignature (a broken state file fails the
    // export, as it would fail `ice export --witness`: a configured witness is not dropped silently).
    let witness = state.proof.witness.clone();
    let text = blocking(&state.rt, move |rt| {
        rt.require_any(&caller, &READERS, "exporting an audit bundle")?;
        let cosignature =
            witness.map(|(path, key)| ice_runtime::read_witness(&path, key.as_deref(), &keys)).transpose()?;
        Ok(rt.export_bundle(selection, keys, cosignature)?.to_jsonl())
    })
    .await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/x-ndjson")], text).into_response())
}
