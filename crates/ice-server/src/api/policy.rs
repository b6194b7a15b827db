//! Policy over the API: validate a candidate set, see which past decisions it would flip (what-if), activate it.
//! The candidate arrives as text (the Cedar files, the schema, the `policy.toml` catalog), never as a path on
//! the server's disk.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use ice_core::Timestamp;
use ice_runtime::WhatIfFilter;
use ice_runtime::policy::PolicyBundle;
use serde::Deserialize;
use serde_json::{Value, json};

use super::proposals::READERS;
use super::{blocking, run_id};
use crate::Shared;
use crate::auth::Authed;
use crate::body::Strict;
use crate::error::{ApiError, ErrorBody};

/// A candidate policy set.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    /// Cedar policy files by name (`NAME.cedar`) → text.
    policies: BTreeMap<String, String>,
    /// `schema.cedarschema` text.
    schema: String,
    /// `policy.toml` text (action catalog, approvals, permits, consequences).
    catalog: String,
    /// What-if only: proposals at or after this time (RFC 3339).
    since: Option<String>,
    /// What-if only: proposals of this run.
    run: Option<String>,
}

fn bundle(b: &PolicyBody) -> Result<PolicyBundle, ApiError> {
    Ok(PolicyBundle::from_texts(&b.policies, b.schema.clone(), b.catalog.clone())?)
}

/// Compile and validate a candidate set against its schema (any authenticated caller; nothing is recorded).
#[utoipa::path(post, path = "/v1/policy/validate", tag = "authority", request_body = PolicyBody,
    security(("bearer" = [])),
    responses((status = 200, description = "Its hash, policy ids and actions", body = Object),
        (status = 400, description = "Parse, schema or catalog error, with the file and location", body = ErrorBody)))]
pub async fn validate(Authed(_caller): Authed, Strict(b): Strict<PolicyBody>) -> Result<Json<Value>, ApiError> {
    let compiled = bundle(&b)?.compile()?;
    Ok(Json(json!({"ok": true, "hash": compiled.hash, "policies": compiled.engine.policy_ids(),
        "actions": compiled.catalog.actions.keys().collect::<Vec<_>>()})))
}

/// Evaluate recorded decisions under a candidate set: which would change (auditor, operator, approver).
#[utoipa::path(post, path = "/v1/policy/what-if", tag = "authority", request_body = PolicyBody,
    security(("bearer" = [])),
    responses((status = 200, description = "Decisions evaluated and those that would change", body = Object),
        (status = 400, description = "The candidate does not compile", body = ErrorBody),
        (status = 403, description = "Agents cannot run what-if", body = ErrorBody)))]
pub async fn what_if(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Strict(b): Strict<PolicyBody>,
) -> Result<Json<Value>, ApiError> {
    let candidate = bundle(&b)?.compile()?;
    let filter = WhatIfFilter {
        since: b.since.as_deref().map(Timestamp::parse_rfc3339).transpose()?,
        run: b.run.as_deref().map(run_id).transpose()?,
    };
    blocking(&state.rt, move |rt| {
        rt.require_any(&caller, &READERS, "evaluating a candidate policy")?;
        let report = rt.what_if(&candidate, filter, &mut |_, _| {})?;
        Ok(Json(serde_json::to_value(&report).unwrap_or(Value::Null)))
    })
    .await
}

/// Activate a policy set (operator): recorded as `PolicyActivated` with the whole bundle; live permits the new set
/// would refuse are revoked in the same step.
#[utoipa::path(post, path = "/v1/policy/activate", tag = "authority", request_body = PolicyBody,
    security(("bearer" = [])),
    responses((status = 200, description = "The PolicyActivated event", body = Object),
        (status = 400, description = "The set does not compile", body = ErrorBody),
        (status = 403, description = "Not an operator", body = ErrorBody)))]
pub async fn activate(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Strict(b): Strict<PolicyBody>,
) -> Result<Json<Value>, ApiError> {
    if b.since.is_some() || b.run.is_some() {
        return Err(ApiError::new(ice_core::ErrorCode::BadArgument, "since and run apply to what-if only"));
    }
    let bundle = bundle(&b)?;
    let e = blocking(&state.rt, move |rt| Ok(rt.activate_policy_bundle(&caller, bundle)?)).await?;
    state.saw(e.seq);
    Ok(Json(json!({"event_id": e.event_id.to_string(), "seq": e.seq.0,
        "hash": e.payload.to_value()["hash"]})))
}
