//! The gateway as an MCP server: the upstream tools, renamed `<server>__<tool>` and filtered to those the caller
//! holds a live grant for; every `tools/call` a proposal on the full arguments, decided by the runtime (grants,
//! Cedar, budgets, approvals), executed through a single-use permit by the MCP effector, and answered with the
//! upstream's result — or with a tool error naming the code and the reason. Nothing here decides: the gateway
//! is an entry point like the CLI and `ice serve`, acting as the principal its token names.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ice_core::effect::ApprovalStatus;
use ice_core::grant::GrantStatus;
use ice_core::{ErrorCode, EventId, EventKind, Rejection};
use ice_runtime::{Caller, ExecInput, ProposalInput, Runtime, RuntimeError};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};

use crate::config::{GatewaySettings, resource_of, served_name};
use crate::effector::{Results, first_text};
use crate::pins::{Pins, Standing};
use crate::upstream::Upstreams;

/// How often a waiting call looks for the approver's answer (and tells the client it is still waiting).
const APPROVAL_POLL: Duration = Duration::from_millis(250);

/// Refusals of malformed calls recorded per minute by one gateway; past that they are answered (with their code)
/// but not written, so a client looping on a bad call cannot fill the ledger.
pub const REFUSAL_RECORDS_PER_MINUTE: u32 = 60;

/// The header naming the run an HTTP client's calls are proposed in.
pub const RUN_HEADER: &str = "ice-run";

/// The gateway: cheap to clone (one per MCP session).
#[derive(Clone)]
pub struct Gateway(Arc<Inner>);

/// Who calls, and in which run.
#[derive(Clone)]
struct Session {
    caller: Caller,
    run: String,
}

struct Inner {
    rt: Arc<Runtime>,
    /// Refusals of malformed calls recorded in the current minute (see [`REFUSAL_RECORDS_PER_MINUTE`]).
    recorded: std::sync::Mutex<(Instant, u32)>,
    /// Fixed for a stdio gateway; per request (from the HTTP request) when `None`.
    session: Option<Session>,
    upstreams: Arc<Upstreams>,
    results: Results,
    settings: GatewaySettings,
    /// Where each tool stands against its pin, as of the last `tools/list` (see [`Gateway::refresh`]).
    pins: std::sync::RwLock<Pins>,
}

impl Gateway {
    /// A gateway acting as `caller` (authenticated from its token by the runtime), proposing in `run`, serving
    /// the tools `pins` says are pinned at their current definition.
    pub fn new(
        rt: Arc<Runtime>,
        caller: Caller,
        upstreams: Arc<Upstreams>,
        results: Results,
        run: String,
        pins: Pins,
    ) -> Self {
        let settings = upstreams.config().gateway.clone();
        let session = Some(Session { caller, run });
        let recorded = std::sync::Mutex::new((Instant::now(), 0));
        let pins = std::sync::RwLock::new(pins);
        Self(Arc::new(Inner { rt, recorded, session, upstreams, results, settings, pins }))
    }

    /// A gateway behind HTTP: each request's caller is the `ice_runtime::Caller` the server's authentication put
    /// in the request's extensions (from its bearer token), and its run is named by the `Ice-Run` header.
    pub fn over_http(rt: Arc<Runtime>, upstreams: Arc<Upstreams>, results: Results, pins: Pins) -> Self {
        let settings = upstreams.config().gateway.clone();
        let recorded = std::sync::Mutex::new((Instant::now(), 0));
        let pins = std::sync::RwLock::new(pins);
        Self(Arc::new(Inner { rt, recorded, session: None, upstreams, results, settings, pins }))
    }

    /// The caller and run of this request.
    fn session(&self, cx: &RequestContext<RoleServer>) -> Result<Session, String> {
        if let Some(s) = &self.0.session {
            return Ok(s.clone());
        }
        let parts = cx.extensions.get::<http::request::Parts>().ok_or("this request carries no HTTP context")?;
        let caller = parts.extensions.get::<Caller>().ok_or("this request was not authenticated (bearer token)")?;
        let run = parts
            .headers
            .get(RUN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .ok_or("name the run the calls are proposed in with the `Ice-Run` header")?;
        Ok(Session { caller: caller.clone(), run: run.to_owned() })
    }

    /// Where a tool stands against its pin.
    fn standing(&self, server: &str, tool: &str) -> Option<Standing> {
        self.0.pins.read().unwrap_or_else(std::sync::PoisonError::into_inner).standing(server, tool).cloned()
    }

    /// Lists the upstream tools again and compares them with the ledger's pins (pinning first-seen ones): a
    /// definition changed upstream, or one an operator accepted, takes effect here without a restart. A failure
    /// keeps the last standing (logged).
    async fn refresh(&self) {
        if let Err(e) = self.0.upstreams.refresh().await {
            tracing::warn!(target: "ice_mcp", error = %e, "keeping the last tool list");
        }
        let upstreams = self.0.upstreams.clone();
        match self.blocking(move |rt| Pins::check(rt, &upstreams, true)).await {
            Ok(pins) => *self.0.pins.write().unwrap_or_else(std::sync::PoisonError::into_inner) = pins,
            Err(e) => tracing::warn!(target: "ice_mcp", error = %e, "keeping the last pin check"),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Runtime) -> Result<T, RuntimeError> + Send + 'static,
    ) -> Result<T, RuntimeError> {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || f(&inner.rt)).await.unwrap_or_else(|e| {
            Err(RuntimeError::Rejected {
                rejection: Rejection::new(ErrorCode::StoreUnavailable, format!("the gateway's task failed: {e}")),
                record: None,
            })
        })
    }

    /// Whether one more refusal may be recorded this minute.
    fn may_record(&self) -> bool {
        let mut window = self.0.recorded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if window.0.elapsed() >= Duration::from_secs(60) {
            *window = (Instant::now(), 0);
        }
        window.1 += 1;
        window.1 <= REFUSAL_RECORDS_PER_MINUTE
    }

    /// Refuses a malformed call: recorded (`TransitionRejected`, naming who tried; at a bounded rate), answered as
    /// a tool error.
    async fn refuse(&self, who: &Session, code: ErrorCode, message: String, tool: &str) -> CallToolResult {
        let attempt = json!({"kind": "ProposalSubmitted", "via": "mcp", "tool": tool, "run_id": who.run,
            "origin": who.caller.principal().to_string(), "acted_by": who.caller.attribution().to_string()});
        let record = self.may_record();
        let err = self.blocking(move |rt| Ok(rt.refuse_request(Rejection::new(code, message), attempt, record))).await;
        tool_error(&err.unwrap_or_else(|e| e))
    }

    /// Whether the caller holds a live grant covering calls of this action in the gateway's run.
    fn may_call(&self, who: &Session, action: &str, resource: &str) -> bool {
        let me = who.caller.principal().clone();
        let run = who.run.parse().ok();
        let now = self.0.rt.now();
        self.0.rt.with_state_cached(|s| {
            s.authority()
                .grants()
                .values()
                .any(|g| g.status(now) == GrantStatus::Live && g.covers(&me, run, action, resource))
        })
    }

    async fn call(&self, req: CallToolRequestParams, cx: RequestContext<RoleServer>) -> CallToolResult {
        let name = req.name.to_string();
        let who = match self.session(&cx) {
            Ok(w) => w,
            Err(why) => return error_text(format!("{}: {why}", ErrorCode::BadArgument.as_str())),
        };
        let Some((server, tool)) = self.0.upstreams.resolve(&name) else {
            return self
                .refuse(&who, ErrorCode::UnknownAction, format!("no tool `{name}` is served here"), &name)
                .await;
        };
        let tool_name = tool.name.to_string();
        if let Some(Standing::Changed { pinned, current }) = self.standing(&server, &tool_name) {
            let msg = format!(
                "{name}: the upstream changed this tool's definition (pinned {pinned}, now {current}); it is not \
                 served until an operator accepts it"
            );
            return self.refuse(&who, ErrorCode::ToolChanged, msg, &name).await;
        }
        let args = req.arguments.unwrap_or_default();
        let size = Value::Object(args.clone()).to_string().len();
        if size > self.0.settings.max_args_bytes {
            let msg = format!("arguments of {size} bytes are over the limit of {}", self.0.settings.max_args_bytes);
            return self.refuse(&who, ErrorCode::RequestTooLarge, msg, &name).await;
        }
        if let Err(why) = crate::args::check(&tool.input_schema, &args) {
            return self.refuse(&who, ErrorCode::BadArgument, format!("{name}: {why}"), &name).await;
        }
        let action = self.0.upstreams.config().action_of(&server, &tool_name);
        let resource = resource_of(&server, &tool_name);
        let proposal = json!({"run": who.run, "action": action, "resource": resource,
            "args": Value::Object(args), "purpose": format!("MCP tools/call {name}")});
        let outcome = match ProposalInput::from_json(&proposal) {
            Ok(input) => {
                let me = who.caller.clone();
                self.blocking(move |rt| rt.propose(&me, &input)).await
            }
            Err(r) => Err(RuntimeError::Rejected { rejection: r, record: None }),
        };
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => return tool_error(&e),
        };
        let find = |kind: EventKind| outcome.events.iter().find(|e| e.kind == kind).map(|e| e.event_id);
        let permit = match (find(EventKind::PermitIssued), find(EventKind::ApprovalRequested)) {
            (Some(permit), _) => permit,
            (None, Some(approval)) => match self.await_approval(&who, outcome.proposal.event_id, approval, &cx).await {
                Ok(permit) => permit,
                Err(result) => return result,
            },
            (None, None) => {
                let d = &outcome.decision;
                let why = json!({"verdict": d.verdict.as_str(), "violation": d.violation, "reasons": d.reasons});
                return error_text(format!(
                    "ICE denied {name} (proposal {}, decision at seq {}): {why}",
                    outcome.proposal.event_id, outcome.decision_event.seq.0
                ));
            }
        };
        self.execute(&who.caller, permit, &name).await
    }

    /// Waits for an approver's answer, telling the client it is waiting; fails closed on timeout and on
    /// cancellation.
    async fn await_approval(
        &self,
        who: &Session,
        proposal: EventId,
        approval: EventId,
        cx: &RequestContext<RoleServer>,
    ) -> Result<EventId, CallToolResult> {
        let limit = Duration::from_secs(self.0.settings.approval_timeout_secs);
        let started = Instant::now();
        let token = cx.meta.get_progress_token();
        let mut step = 0u32;
        loop {
            let seen = self
                .blocking(move |rt| {
                    rt.with_state(|s| {
                        let fx = s.effects();
                        (fx.approval_for(proposal).map(|a| a.status), fx.permit_for(proposal).map(|p| p.id))
                    })
                })
                .await
                .map_err(|e| tool_error(&e))?;
            match seen {
                (Some(ApprovalStatus::Granted), Some(permit)) => return Ok(permit),
                (Some(ApprovalStatus::Denied), _) => {
                    return Err(error_text(format!("ICE: approval {approval} was denied")));
                }
                (Some(ApprovalStatus::Expired), _) => {
                    return Err(error_text(format!("ICE: approval {approval} expired unanswered")));
                }
                _ => {}
            }
            if started.elapsed() >= limit {
                // Fail closed, and take the proposal back so the approval leaves the approvers' queue (recorded as
                // the caller's ProposalWithdrawn with the approval's closing). An approver who answered in the
                // meantime wins the race: the next poll sees the answer.
                let secs = limit.as_secs();
                let me = who.caller.clone();
                let reason = format!("the MCP client stopped waiting after {secs} s");
                let withdrawn = self.blocking(move |rt| rt.withdraw(&me, proposal, &reason)).await;
                match withdrawn {
                    Ok(events) => {
                        return Err(error_text(format!(
                            "{}: no approver answered approval {approval} within {secs} s; the call is not made and \
                             the proposal was withdrawn (seq {})",
                            ErrorCode::RequestTimeout.as_str(),
                            events.first().map_or(0, |e| e.seq.0)
                        )));
                    }
                    Err(e) if e.code() == ErrorCode::ApprovalClosed => {}
                    Err(e) => return Err(tool_error(&e)),
                }
            }
            if let Some(token) = token.clone() {
                step += 1;
                let note = ProgressNotificationParam::new(token, f64::from(step))
                    .with_message(format!("waiting for a human to answer approval {approval}"));
                // A client that stopped listening for progress is not a reason to stop waiting.
                let _ = cx.peer.notify_progress(note).await;
            }
            tokio::select! {
                () = cx.ct.cancelled() => return Err(error_text("ICE: the call was cancelled while waiting for approval".into())),
                () = tokio::time::sleep(APPROVAL_POLL) => {}
            }
        }
    }

    /// Executes the permit (the proposal's own arguments) and answers with the upstream's result.
    async fn execute(&self, caller: &Caller, permit: EventId, name: &str) -> CallToolResult {
        let input = ExecInput { permit: permit.to_string(), args: None };
        let me = caller.clone();
        let out = self.blocking(move |rt| rt.execute(&me, &input)).await;
        let kept = self.0.results.take(&permit.to_string());
        match (out, kept) {
            (Ok(o), Some(result)) if o.status == ice_core::effect::EffectStatus::Completed => result,
            // Completed, but its result was not kept (see `Results`): say where its evidence is.
            (Ok(o), None) if o.status == ice_core::effect::EffectStatus::Completed => {
                let blob = o.evidence.as_ref().and_then(|e| e.output_blob.clone()).unwrap_or_default();
                CallToolResult::success(vec![ContentBlock::text(format!(
                    "ICE: {name} completed (effect {}); its result is kept as blob {blob}",
                    o.started.event_id
                ))])
            }
            (Ok(o), kept) => {
                let (code, message) = o.failure.unwrap_or((ErrorCode::EffectFailed, "the call failed".into()));
                let mut r = kept.unwrap_or_else(|| CallToolResult::error(vec![]));
                r.is_error = Some(true);
                r.content.push(ContentBlock::text(format!(
                    "ICE: {name} failed ({}: {message}); effect {}",
                    code.as_str(),
                    o.started.event_id
                )));
                if let Some(text) = first_text(&r) {
                    tracing::debug!(target: "ice_mcp", tool = name, "{text}");
                }
                r
            }
            (Err(e), _) => tool_error(&e),
        }
    }
}

/// A tool error whose text is `message`.
fn error_text(message: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

/// A runtime refusal as a tool error: `ICE-Exxxx: message (recorded at seq N)`.
fn tool_error(e: &RuntimeError) -> CallToolResult {
    let recorded = match e {
        RuntimeError::Rejected { record: Some(r), .. } => format!(" (recorded at seq {})", r.seq.0),
        _ => String::new(),
    };
    error_text(format!("{e}{recorded}; hint: {}", e.code().hint()))
}

impl ServerHandler for Gateway {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("ice-mcp", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "ICE governs every tool call: each call is proposed with its full arguments and decided by grants, \
                 policy and budgets; some wait for a human's approval. A refused call returns a tool error with \
                 the ICE code and reason.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let who = self.session(&cx).map_err(|why| ErrorData::invalid_request(why, None))?;
        self.refresh().await;
        let config = self.0.upstreams.config();
        let tools = self
            .0
            .upstreams
            .tools()
            .into_iter()
            .filter(|(server, tool)| {
                matches!(self.standing(server, &tool.name), Some(Standing::Pinned { .. }))
                    && self.may_call(&who, &config.action_of(server, &tool.name), &resource_of(server, &tool.name))
            })
            .map(|(server, mut tool)| {
                tool.name = served_name(&server, &tool.name).into();
                tool
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        Ok(self.call(request, cx).await.into())
    }
}
