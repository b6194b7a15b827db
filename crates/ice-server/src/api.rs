//! The router: `/v1` endpoints (documented by their `#[utoipa::path]` attributes, collected by `utoipa-axum` so
//! the OpenAPI document and the routes come from one declaration), health, metrics, and the middleware every
//! request passes (concurrency, timeout, metrics).

mod admin;
mod memory;
mod policy;
pub(crate) mod proposals;
pub(crate) mod reads;
mod runs;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ice_core::{ErrorCode, EventId, RunId};
use ice_runtime::Runtime;
use std::sync::atomic::Ordering;
use tracing::Instrument;
use tracing::field::Empty;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Authed;
use crate::error::ApiError;
use crate::{Shared, openapi, stream};

/// The `/v1` routes with their documentation.
fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(proposals::submit))
        .routes(routes!(proposals::get_proposal))
        .routes(routes!(proposals::withdraw))
        .routes(routes!(proposals::list_approvals))
        .routes(routes!(proposals::approve))
        .routes(routes!(proposals::deny))
        .routes(routes!(proposals::exec))
        .routes(routes!(proposals::get_effect))
        .routes(routes!(runs::create_run, runs::list_runs))
        .routes(routes!(runs::get_run))
        .routes(routes!(runs::advance_run))
        .routes(routes!(runs::finish_run))
        .routes(routes!(runs::terminate_run))
        .routes(routes!(runs::preview_rollback, runs::rollback_run))
        .routes(routes!(reads::list_events))
        .routes(routes!(reads::get_event))
        .routes(routes!(reads::whoami))
        .routes(routes!(reads::verify))
        .routes(routes!(reads::export))
        .routes(routes!(admin::list_grants, admin::issue_grant))
        .routes(routes!(admin::revoke_grant))
        .routes(routes!(admin::list_budgets, admin::set_budget))
        .routes(routes!(admin::show_policy))
        .routes(routes!(policy::validate))
        .routes(routes!(policy::what_if))
        .routes(routes!(policy::activate))
        .routes(routes!(admin::agent_status))
        .routes(routes!(admin::list_agents))
        .routes(routes!(admin::issue_token))
        .routes(routes!(admin::revoke_token))
        .routes(routes!(admin::list_checkpoints, admin::checkpoint))
        .routes(routes!(memory::propose))
        .routes(routes!(memory::list))
        .routes(routes!(memory::search))
        .routes(routes!(memory::show))
        .routes(routes!(memory::change))
        .routes(routes!(memory::reads))
        .routes(routes!(stream::stream))
}

/// The OpenAPI document of [`routes`].
pub fn document() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// Where an MCP service given to [`crate::Server::with_mcp`] is mounted.
pub const MCP_PATH: &str = "/mcp";

/// Authenticates a request to the MCP service like any `/v1` request (bearer token, rate limit, recorded
/// refusals) and hands the `Caller` to the service in the request's extensions.
async fn mcp_auth(Authed(caller): Authed, mut req: Request, next: Next) -> Response {
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The whole API.
pub fn router(state: Shared, mcp: Option<Router>) -> Router {
    let (api, doc) = routes().split_for_parts();
    let doc_json = Arc::new(doc.to_pretty_json().unwrap_or_else(|_| "{}".into()));
    let api = api
        .route(
            "/v1/openapi.json",
            get(move || {
                let doc = doc_json.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], (*doc).clone()) }
            }),
        )
        .merge(crate::console::routes())
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    let api = match mcp {
        Some(service) => {
            api.nest_service(MCP_PATH, service.layer(middleware::from_fn_with_state(state.clone(), mcp_auth)))
        }
        None => api,
    };
    api.fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

async fn no_route(req: Request) -> ApiError {
    ApiError::new(ErrorCode::NoRoute, format!("no endpoint {} {}", req.method(), req.uri().path()))
}

async fn no_method(req: Request) -> Response {
    let mut e = no_route(req).await.into_response();
    *e.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    e
}

async fn readyz(State(state): State<Shared>) -> Response {
    if state.draining.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}

async fn metrics(State(state): State<Shared>) -> Response {
    let used = |limit: usize, sem: &tokio::sync::Semaphore| (limit.max(1) - sem.available_permits()) as u64;
    let now = crate::metrics::Gauges {
        in_flight: used(state.cfg.max_concurrent_requests, &state.requests),
        effects_running: used(state.cfg.max_background_effects, &state.effects),
        head: *state.head.borrow(),
    };
    let text = state.metrics.render(&state.rt.pipeline_stats(), &now);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Every request: a concurrency slot (shed with 503 when none is free, never queued without bound), a time limit
/// (408), and its metrics. Health, readiness and metrics are exempt from the slot so an overloaded server can
/// still say so.
async fn guard(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_owned();
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let traceparent = req.headers().get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    // The request's span: exported over OTLP when configured (see `otlp`), and the context of its log lines.
    // Handlers record the ids they learn (`tag`).
    let span = tracing::info_span!(target: "ice_server::http", "request",
        otel.name = %format!("{method} {route}"), otel.kind = "server", otel.status_code = Empty,
        http.request.method = %method, http.route = %route, http.response.status_code = Empty,
        traceparent = %traceparent, ice.principal = Empty, ice.run_id = Empty, ice.proposal_id = Empty,
        ice.effect_id = Empty);
    let resp = guarded(&state, &route, req, next).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
    tracing::debug!(target: "ice_server::http", parent: &span, status, ms = started.elapsed().as_secs_f64() * 1e3, "answered");
    state.metrics.request(&route, &method, status, started.elapsed().as_secs_f64());
    resp
}

/// Records an id on the current request's span (`ice.run_id`, `ice.proposal_id`, `ice.effect_id`, `ice.principal`).
pub(crate) fn tag(field: &str, value: impl std::fmt::Display) {
    tracing::Span::current().record(field, tracing::field::display(value));
}

async fn guarded(state: &Shared, route: &str, req: Request, next: Next) -> Response {
    let exempt = matches!(route, "/healthz" | "/readyz" | "/metrics");
    let streaming = route == "/v1/stream";
    // The MCP gateway answers with an event stream that lives as long as its call (which may wait for a human):
    // counted against the concurrency limit, bounded by its own approval timeout rather than the request one.
    let mcp = route.starts_with(MCP_PATH);
    let permit = if exempt || streaming {
        None
    } else {
        match state.requests.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                state.metrics.shed();
                let e = ApiError::new(
                    ErrorCode::Overloaded,
                    format!("{} requests are in flight already", state.cfg.max_concurrent_requests),
                );
                return e.into_response();
            }
        }
    };
    let resp = if streaming || mcp {
        // A stream's upgrade answers at once; the connection then lives under the stream's own limits.
        next.run(req).await
    } else {
        let limit = Duration::from_secs(state.cfg.request_timeout_secs.max(1));
        match tokio::time::timeout(limit, next.run(req)).await {
            Ok(r) => r,
            Err(_) => ApiError::new(
                ErrorCode::RequestTimeout,
                format!(
                    "no answer within {} s; a write may still complete: check GET /v1/events before retrying",
                    limit.as_secs()
                ),
            )
            .into_response(),
        }
    };
    drop(permit);
    resp
}

/// Runs a runtime call on a blocking thread (the runtime blocks on group commit).
pub(crate) async fn blocking<T: Send + 'static>(
    rt: &Arc<Runtime>,
    f: impl FnOnce(&Runtime) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let rt = rt.clone();
    let span = tracing::info_span!(target: "ice_server::http", "runtime");
    tokio::task::spawn_blocking(move || span.in_scope(|| f(&rt)))
        .await
        .map_err(|e| ApiError::new(ErrorCode::StoreUnavailable, format!("the request's task failed: {e}")))?
}

/// An event id from a path segment.
pub(crate) fn event_id(text: &str, what: &str) -> Result<EventId, ApiError> {
    let id = text
        .trim()
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::BadArgument, format!("`{text}` is not {what} (an event id, a UUID)")))?;
    match what {
        "a proposal id" => tag("ice.proposal_id", id),
        "an effect id" => tag("ice.effect_id", id),
        _ => {}
    }
    Ok(id)
}

/// A run id from a path segment.
pub(crate) fn run_id(text: &str) -> Result<RunId, ApiError> {
    let id = text
        .trim()
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::BadArgument, format!("`{text}` is not a run id (a UUID)")))?;
    tag("ice.run_id", id);
    Ok(id)
}
