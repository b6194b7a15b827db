//! `GET /v1/stream` (WebSocket): events as they are appended, filtered by run, kind and origin, resumable from a
//! seq, with the `approvals` channel for approvers.
//!
//! The stream *pulls* from the ledger: it reads the next page after its cursor only once the previous page went
//! out, so nothing is buffered per client beyond one page, whatever the client's speed. Each message is one event
//! (`Event::to_json`, which carries its `seq`); a client that reconnects with `after` = the last seq it received gets
//! exactly the events after it — no gap, no duplicate. A client that cannot take the next message within
//! `[server] stream_send_timeout_secs` is closed with code 4008 (and may resume from its last seq).

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use ice_core::auth::Role;
use ice_core::{ErrorCode, EventKind, Seq};
use serde::Deserialize;

use crate::Shared;
use crate::api::blocking;
use crate::api::reads::Filter;
use crate::auth::Authed;
use crate::body::Query;
use crate::error::{ApiError, ErrorBody};

/// Close code for a consumer that fell behind (private-use range 4000–4999).
pub const CLOSE_SLOW: u16 = 4008;
/// Close code when the server shuts down ("going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Events read per page.
const PAGE: usize = 256;

/// What to stream.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Stream events with seq greater than this (the last seq received, to resume). Default: from now on.
    after: Option<u64>,
    /// Only events naming this run.
    run: Option<String>,
    /// Only this kind.
    kind: Option<String>,
    /// Only events whose origin is this principal.
    origin: Option<String>,
    /// `approvals`: approval requests and their answers only (approvers and operators).
    channel: Option<String>,
}

/// The kinds of the approvals channel.
const APPROVAL_KINDS: [EventKind; 5] = [
    EventKind::ApprovalRequested,
    EventKind::ApprovalGranted,
    EventKind::ApprovalDenied,
    EventKind::ApprovalExpired,
    EventKind::ApprovalEscalated,
];

/// Open a live event stream (auditor, operator, approver; the `approvals` channel: approver or operator).
#[utoipa::path(get, path = "/v1/stream", tag = "events", params(StreamQuery), security(("bearer" = [])),
    responses((status = 101, description = "WebSocket: one event (JSON) per message"),
        (status = 400, description = "Not a WebSocket upgrade, or a bad filter", body = ErrorBody),
        (status = 403, description = "Role not allowed to read the ledger", body = ErrorBody),
        (status = 503, description = "Too many open streams", body = ErrorBody)))]
pub async fn stream(
    State(state): State<Shared>,
    Authed(caller): Authed,
    Query(q): Query<StreamQuery>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|e| ApiError::new(ErrorCode::BadArgument, format!("not a WebSocket upgrade: {e}")))?;
    let approvals = match q.channel.as_deref() {
        None => false,
        Some("approvals") => true,
        Some(other) => {
            return Err(ApiError::new(ErrorCode::BadArgument, format!("unknown channel `{other}`: use `approvals`")));
        }
    };
    let roles: &'static [Role] =
        if approvals { &[Role::Approver, Role::Operator] } else { &crate::api::proposals::READERS };
    let filter = Filter::parse(q.run.as_deref(), q.kind.as_deref(), q.origin.as_deref(), None)?;
    blocking(&state.rt, move |rt| Ok(rt.require_any(&caller, roles, "streaming events")?)).await?;
    let permit = state.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(ErrorCode::Overloaded, format!("{} streams are open already", state.cfg.max_streams))
    })?;
    let after = Seq(q.after.unwrap_or_else(|| *state.head.borrow()));
    // A browser cannot set an Authorization header on a WebSocket: it offers `ice-bearer, <token>` as subprotocols
    // instead (see `auth`), and the handshake must name the one chosen.
    Ok(ws
        .protocols([crate::auth::WS_BEARER])
        .on_upgrade(move |socket| async move {
            state.metrics.stream(true);
            pump(&state, socket, filter, approvals, after).await;
            state.metrics.stream(false);
            drop(permit);
        })
        .into_response())
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame { code, reason: reason.into() };
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(Message::Close(Some(frame)))).await;
}

/// Sends events after `cursor` until the client leaves, falls behind, or the server stops.
async fn pump(state: &Shared, mut socket: WebSocket, filter: Filter, approvals: bool, mut cursor: Seq) {
    let send_limit = Duration::from_secs(state.cfg.stream_send_timeout_secs.max(1));
    let mut heads = state.head.subscribe();
    let mut stopping = state.stopping.subscribe();
    loop {
        if *stopping.borrow() {
            close(&mut socket, CLOSE_GOING_AWAY, "server shutting down").await;
            return;
        }
        let (f, store) = (filter.clone(), state.rt.store().clone());
        let page = tokio::task::spawn_blocking(move || store.read(&f.query(cursor, PAGE))).await;
        let page = match page {
            Ok(Ok(p)) => p,
            _ => {
                close(&mut socket, 1011, "cannot read the ledger").await;
                return;
            }
        };
        if page.is_empty() {
            tokio::select! {
                changed = heads.changed() => if changed.is_err() { return },
                _ = stopping.changed() => {}
                msg = socket.recv() => match msg {
                    // Pings are answered by the library; text from the client means nothing here.
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                },
            }
            continue;
        }
        for e in page {
            cursor = e.seq;
            if !filter.keeps(&e) || (approvals && !APPROVAL_KINDS.contains(&e.kind)) {
                continue;
            }
            let text = e.to_json().to_string();
            match tokio::time::timeout(send_limit, socket.send(Message::Text(text.into()))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    state.metrics.stream_dropped_slow();
                    close(&mut socket, CLOSE_SLOW, "consumer too slow; resume from your last seq").await;
                    return;
                }
            }
        }
    }
}
