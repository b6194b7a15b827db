//! `ice demo`: a scripted end-to-end scenario on a fresh ledger, through the same runtime every command uses,
//! ending with the audit trail and a chain verification.

use std::path::Path;

use ice_core::budget::{BudgetKey, BudgetScope, Period};
use ice_core::intake::RawEvent;
use ice_core::{Cost, Dimension, Role, Roles, RunState};
use ice_runtime::{
    Caller, DecisionOutcome, ExecInput, GrantInput, IceHome, Presented, ProposalInput, Runtime, RuntimeError,
};
use ice_store::EventQuery;

use crate::exit;
use crate::render::{self, CliError};

pub(crate) fn step(text: &str) {
    println!("\n▸ {text}");
}

fn show_refusal<T>(result: Result<T, RuntimeError>) -> Result<(), CliError> {
    match result {
        Ok(_) => Err(CliError::Coded(ice_core::ErrorCode::BadArgument, "the demo expected a refusal here".into())),
        Err(RuntimeError::Rejected { rejection, record }) => {
            println!("  refused [{}] {}", rejection.code, rejection.message);
            if let Some(r) = record {
                println!("  recorded as {} at seq {}", r.kind, r.seq);
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn agent_event(run: &str, kind: &str, payload: &str) -> RawEvent {
    RawEvent { kind: kind.into(), run_id: Some(run.into()), payload: payload.into(), ..RawEvent::default() }
}

/// Runs the demo in `keep` (or a temporary directory).
pub fn run(keep: Option<&Path>) -> Result<u8, CliError> {
    let tmp;
    let dir = match keep {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| {
                CliError::Coded(ice_core::ErrorCode::StoreUnavailable, format!("cannot create {}: {e}", d.display()))
            })?;
            d.to_path_buf()
        }
        None => {
            tmp = tempfile::tempdir().map_err(|e| {
                CliError::Coded(ice_core::ErrorCode::StoreUnavailable, format!("cannot create a temp dir: {e}"))
            })?;
            tmp.path().to_path_buf()
        }
    };
    println!("ICE demo — Inference proposes. Execution decides.");
    step(&format!("ice init {}", dir.display()));
    let (home, mut rt) = IceHome::init(&dir, None)?;
    println!("  ledger {} (runtime key {}…)", rt.store().describe(), &home.public_key()?[..16]);
    let model = crate::demo_agent::install_model(&home, &mut rt)?;
    let rt = std::sync::Arc::new(rt);
    let cast = cast(&rt)?;
    scenario(&rt, &cast)?;
    authority_scenario(&rt, &cast)?;
    effects_scenario(&rt, &cast)?;
    crate::demo_agent::scenario(&rt, &cast.alice, &cast.planner, model)?;

    step("ice checkpoint: the runtime signs the Merkle root of everything so far and the derived-state root");
    if let Some(e) = rt.checkpoint()? {
        let c: ice_core::checkpoint::CheckpointPayload = serde_json::from_str(e.payload.as_str())
            .map_err(|err| CliError::Coded(ice_core::ErrorCode::CheckpointInvalid, err.to_string()))?;
        println!(
            "  checkpoint at seq {} covers {}..={}: merkle {}…, state {}…",
            e.seq,
            c.from_seq,
            c.to_seq,
            &c.merkle_root[..16],
            &c.state_root[..16]
        );
    }
    step("ice replay: all state rebuilt from the ledger alone; every decision re-evaluated");
    let report = rt.replay(&mut |_, _| {})?;
    println!(
        "  {} events, {} decisions re-evaluated, {} mismatching; replayed root {} live root",
        report.events,
        report.decisions,
        report.decision_mismatches.len(),
        if report.ok() { "==" } else { "!=" }
    );

    step("audit trail (ice log)");
    let events = rt.store().read(&EventQuery { limit: usize::MAX, ..EventQuery::default() })?;
    println!("{}", render::event_header());
    for e in &events {
        println!("{}", render::event_row(e));
    }

    step("ice verify (chain, checkpoint signatures against the pinned key, Merkle roots)");
    let options = ice_store::VerifyOptions { trusted_keys: home.trusted_keys()?, ..Default::default() };
    match ice_store::verify_ledger_signed(&**rt.store(), &options, &mut |_| {})? {
        Ok(s) => println!(
            "  ok: {} events, {} signed checkpoint(s), head seq {} hash {}",
            s.chain.events, s.checkpoints, s.chain.head.seq, s.chain.head.hash
        ),
        Err(f) => {
            println!("  FAILED at seq {}: {}", f.seq, f.message);
            return Ok(exit::CHECK_FAILED);
        }
    }
    if keep.is_some() {
        println!("\nledger kept: try `ice --dir {} log` or `ice --dir {} run list`", dir.display(), dir.display());
    }
    Ok(exit::OK)
}

/// Who takes part: the operator (the OS user who ran `ice init`), an agent and a reviewer, each with its own
/// credential — the agent and the reviewer hold API tokens, as they would when talking to `ice serve`.
struct Cast {
    alice: Caller,
    planner: Caller,
    reviewer: Caller,
}

fn cast(rt: &Runtime) -> Result<Cast, CliError> {
    let alice = rt.authenticate(&Presented::Local { act_as: None })?;
    step(&format!(
        "{} (the OS user who ran ice init, mapped in config.toml with every role) issues two API tokens",
        alice.principal()
    ));
    let token = |who: &str, role: Role| -> Result<Caller, CliError> {
        let (e, secret) = rt.issue_token(&alice, &who.parse()?, Roles::of(&[role]), Some(3_600_000_000), None)?;
        println!(
            "  {who} ({role}): token {} (seq {}); the ledger holds only a keyed hash of its secret",
            e.event_id, e.seq
        );
        Ok(rt.authenticate(&Presented::Token { secret: &secret, act_as: None })?)
    };
    let planner = token("agent:planner", Role::Agent)?;
    let reviewer = token("human:reviewer", Role::Approver)?;
    Ok(Cast { alice, planner, reviewer })
}

fn scenario(rt: &Runtime, cast: &Cast) -> Result<(), CliError> {
    let (alice, planner) = (&cast.alice, &cast.planner);

    step("the operator creates a run for agent:planner");
    let run = rt.create_run(alice, Some("summarise the Q3 report".into()))?;
    let id = run.id.to_string();
    println!("  run {} is {}", run.id, run.state);

    step("the run is provisioned and its context assembled");
    for _ in 0..3 {
        let r = rt.advance_run(alice, run.id, None, None)?;
        println!("  → {}", r.state);
    }

    step("agent:planner records a plan and a reasoning note (cognitive events are an agent's to emit)");
    let plan = rt.submit(planner, &agent_event(&id, "PlanRecorded", r#"{"steps":["read report","draft summary"]}"#))?;
    println!("  PlanRecorded at seq {}", plan.seq);
    let mut note = agent_event(&id, "ReasoningRecorded", r#"{"note":"section 2 holds the numbers"}"#);
    note.causes = vec![plan.event_id.to_string()];
    let note = rt.submit(planner, &note)?;
    println!("  ReasoningRecorded at seq {} (caused by seq {})", note.seq, plan.seq);

    step("agent:planner tries to mark its own run COMMITTED (a runtime event): refused");
    show_refusal(rt.submit(planner, &agent_event(&id, "RunTransitioned", r#"{"from":"EXECUTING","to":"COMMITTED"}"#)))?;

    step("agent:planner tries to create a run for itself (runs are an operator's): refused");
    show_refusal(rt.create_run(planner, Some("my own run".into())))?;

    step("agent:planner sends a malformed payload: refused");
    show_refusal(rt.submit(planner, &agent_event(&id, "ReasoningRecorded", r#"{"note": "unterminated"#)))?;

    step("agent:planner sends an event kind outside the taxonomy: refused");
    show_refusal(rt.submit(planner, &agent_event(&id, "WorldChanged", "{}")))?;

    step("agent:planner cites a causal parent that does not exist: refused");
    let mut orphan = agent_event(&id, "ReasoningRecorded", r#"{"note":"because of that"}"#);
    orphan.causes = vec!["01900000-0000-7000-8000-000000000000".into()];
    show_refusal(rt.submit(planner, &orphan))?;

    step("the operator tries to commit the run with `run advance` (EXECUTING → COMMITTED): refused");
    show_refusal(rt.advance_run(alice, run.id, Some(RunState::Committed), None))?;

    step("the run is finished (VALIDATING, then COMMITTED: it had no effects to check), then terminated");
    let r = rt.finish_run(alice, run.id)?;
    println!("  → {}", r.state);
    let r = rt.advance_run(alice, run.id, None, None)?;
    println!("  → {}", r.state);

    step("a second run is aborted mid-execution, then terminated");
    let second = rt.create_run(alice, Some("scrape competitor pricing".into()))?;
    for _ in 0..3 {
        rt.advance_run(alice, second.id, None, None)?;
    }
    let r = rt.advance_run(alice, second.id, Some(RunState::Aborted), Some("out of scope for this team".into()))?;
    println!("  → {} ({})", r.state, r.last_reason.unwrap_or_default());
    let r = rt.terminate_run(alice, second.id, None)?;
    println!("  → {}", r.state);
    Ok(())
}

fn propose(
    rt: &Runtime,
    planner: &Caller,
    run: &str,
    action: &str,
    resource: &str,
    args: &str,
) -> Result<DecisionOutcome, CliError> {
    let input = ProposalInput {
        run: Some(run.into()),
        action: action.into(),
        resource: resource.into(),
        args: args.into(),
        purpose: "draft the Q3 summary".into(),
        cost_estimate: Cost::of(Dimension::Calls, 1),
        ..ProposalInput::default()
    };
    let o = rt.propose(planner, &input)?;
    println!("  {} {action} {resource}", o.decision.verdict.as_str().to_uppercase());
    for r in &o.decision.reasons {
        let ids = if r.kind.starts_with("policy") { format!(" [{}]", r.ids.join(", ")) } else { String::new() };
        println!("    {:<18} {}{ids}", r.kind, r.detail);
    }
    Ok(o)
}

/// Proposals decided by grants, Cedar policy and budgets.
fn authority_scenario(rt: &Runtime, cast: &Cast) -> Result<(), CliError> {
    let (alice, planner_caller) = (&cast.alice, &cast.planner);
    let planner = planner_caller.principal().clone();
    step("a third run: agent:planner will now propose actions (the default policy set is active)");
    let run = rt.create_run(alice, Some("draft the Q3 summary".into()))?;
    for _ in 0..3 {
        rt.advance_run(alice, run.id, None, None)?;
    }
    let id = run.id.to_string();

    step("agent:planner proposes to write a file, holding no grant: DENY");
    propose(
        rt,
        planner_caller,
        &id,
        "fs.write",
        "file:reports/q3-summary.md",
        r#"{"path":"reports/q3-summary.md","content":"Q3: revenue up 4%"}"#,
    )?;

    step("the operator grants agent:planner fs.* on file:reports/ for this run (1 hour) and a budget of 2 calls");
    let grant = GrantInput {
        principal: planner.clone(),
        run: Some(run.id),
        actions: vec!["fs.*".into()],
        resource: "file:reports/".into(),
        ttl_micros: Some(3_600_000_000),
        max_uses: None,
        revocable: true,
    };
    let g = rt.issue_grant(alice, &grant)?;
    println!("  grant {} (seq {})", g.event_id, g.seq);
    let key =
        BudgetKey { scope: BudgetScope::Run { run_id: run.id }, dimension: Dimension::Calls, period: Period::Total };
    rt.set_budget(alice, key, 2)?;

    step("the same proposal again: ALLOW (grant + Cedar permit + budget reserved)");
    propose(
        rt,
        planner_caller,
        &id,
        "fs.write",
        "file:reports/q3-summary.md",
        r#"{"path":"reports/q3-summary.md","content":"Q3: revenue up 4%"}"#,
    )?;

    step(
        "agent:planner proposes to read file:reports/secrets/api-key: the grant covers it, a Cedar forbid does not: DENY",
    );
    propose(
        rt,
        planner_caller,
        &id,
        "fs.read",
        "file:reports/secrets/api-key",
        r#"{"path":"reports/secrets/api-key"}"#,
    )?;

    step("two more writes against the 2-call budget: the second exceeds it: DENY");
    propose(
        rt,
        planner_caller,
        &id,
        "fs.append",
        "file:reports/q3-summary.md",
        r#"{"path":"reports/q3-summary.md","content":"\nCosts flat."}"#,
    )?;
    propose(
        rt,
        planner_caller,
        &id,
        "fs.append",
        "file:reports/q3-summary.md",
        r#"{"path":"reports/q3-summary.md","content":"\nHiring paused."}"#,
    )?;

    step("agent:planner proposes to delete a file (irreversible): the policy asks for a human: REQUIRE_APPROVAL");
    propose(rt, planner_caller, &id, "fs.delete", "file:reports/old-draft.md", r#"{"path":"reports/old-draft.md"}"#)?;
    Ok(())
}

/// The permit id handed out with a decision (or by an approval).
fn permit_in(events: &[ice_core::Event]) -> Result<String, CliError> {
    events
        .iter()
        .find(|e| e.kind == ice_core::EventKind::PermitIssued)
        .map(|e| e.event_id.to_string())
        .ok_or_else(|| CliError::Coded(ice_core::ErrorCode::NoPermit, "the demo expected a permit here".into()))
}

fn exec(rt: &Runtime, actor: &Caller, permit: &str, args: Option<&str>) -> Result<(), CliError> {
    let out = rt.execute(actor, &ExecInput { permit: permit.into(), args: args.map(str::to_owned) })?;
    let ev = out.evidence.ok_or_else(|| {
        let (code, msg) = out.failure.unwrap_or((ice_core::ErrorCode::EffectFailed, String::new()));
        CliError::Coded(code, msg)
    })?;
    let after = ev.after.as_deref().map_or("(absent)".to_owned(), |h| format!("{}…", &h[..12.min(h.len())]));
    println!(
        "  EffectStarted seq {} → EffectCompleted seq {}; content after {after}",
        out.started.seq, out.outcome.seq
    );
    Ok(())
}

/// Allowed proposals become effects through single-use permits; approvals bind args; rollback restores files.
fn effects_scenario(rt: &Runtime, cast: &Cast) -> Result<(), CliError> {
    let (alice, planner, reviewer) = (&cast.alice, &cast.planner, &cast.reviewer);
    step("a fourth run: agent:planner publishes the summary through the effect boundary");
    let run = rt.create_run(alice, Some("publish the Q3 summary".into()))?;
    for _ in 0..3 {
        rt.advance_run(alice, run.id, None, None)?;
    }
    let id = run.id.to_string();
    let grant = GrantInput {
        principal: planner.principal().clone(),
        run: Some(run.id),
        actions: vec!["fs.*".into()],
        resource: "file:reports/".into(),
        ttl_micros: Some(3_600_000_000),
        max_uses: None,
        revocable: true,
    };
    rt.issue_grant(alice, &grant)?;
    let sandbox = rt.effector_registry().map(|e| e.sandbox_root().to_path_buf()).unwrap_or_default();

    step("agent:planner proposes writing reports/q3.md: ALLOW, with a permit bound to these exact args");
    let args = r#"{"path":"reports/q3.md","content":"Q3: revenue up 4%\n"}"#;
    let o = propose(rt, planner, &id, "fs.write", "file:reports/q3.md", args)?;
    let permit = permit_in(&o.events)?;
    println!("  permit {permit}");
    step("agent:planner executes the permit: the fs effector writes the file inside the sandbox");
    exec(rt, planner, &permit, None)?;
    step("agent:planner tries the same permit again: refused (single use)");
    show_refusal(rt.execute(planner, &ExecInput { permit: permit.clone(), args: None }))?;

    step("agent:planner proposes deleting reports/q3.md (irreversible): REQUIRE_APPROVAL");
    let o = propose(rt, planner, &id, "fs.delete", "file:reports/q3.md", r#"{"path":"reports/q3.md"}"#)?;
    let approval = rt
        .with_state(|s| s.effects().approval_for(o.proposal.event_id).map(|a| a.id))?
        .ok_or_else(|| CliError::Coded(ice_core::ErrorCode::UnknownApproval, "no approval was requested".into()))?;
    println!("  approval {approval} shows the approvers the exact args {{\"path\":\"reports/q3.md\"}}");
    step("agent:planner tries to approve its own delete with its token: refused (an agent is no approver)");
    show_refusal(rt.approve(planner, approval, None, Some("looks fine to me")))?;
    step(
        "the operator, acting for agent:planner, tries the same: refused (acting for an agent lends no approver role)",
    );
    let sock_puppet = rt.authenticate(&Presented::Local { act_as: Some("agent:planner") })?;
    show_refusal(rt.approve(&sock_puppet, approval, None, None))?;
    step("human:reviewer (approver token) approves: a permit bound to the approved args is issued");
    let approved = rt.approve(reviewer, approval, None, Some("old summary, superseded"))?;
    let permit = permit_in(&approved)?;
    step("agent:planner swaps the args after approval (deleting another file): refused");
    show_refusal(
        rt.execute(planner, &ExecInput { permit: permit.clone(), args: Some(r#"{"path":"reports/q2.md"}"#.into()) }),
    )?;
    step("agent:planner executes with the approved args: the file is deleted (its content kept for rollback)");
    exec(rt, planner, &permit, None)?;
    let delete = rt.with_state(|s| s.effects().permits().get(&permit.parse::<ice_core::EventId>().ok()?)?.used_by)?;

    step("the operator rolls the delete back: a governed fs.restore of the recorded prior content");
    let alice_grant = GrantInput { principal: alice.principal().clone(), run: None, ..grant };
    rt.issue_grant(alice, &alice_grant)?;
    if let Some(effect) = delete {
        let report = rt.rollback(alice, ice_runtime::RollbackTarget::Event(effect))?;
        for item in &report.items {
            match &item.step {
                ice_runtime::RollbackStep::Compensated { compensation } => {
                    println!("  {} {} undone by effect {compensation} (fs.restore)", item.action, item.resource);
                }
                other => println!("  {} {}: {other:?}", item.action, item.resource),
            }
        }
        println!("  rollback run {} is {}", report.run, report.run_state);
    }
    let restored = std::fs::read_to_string(sandbox.join("reports/q3.md")).unwrap_or_default();
    println!("  reports/q3.md is back: {:?}", restored);

    step("the run is finished: every effect completed, so it is COMMITTED");
    let r = rt.finish_run(alice, run.id)?;
    println!("  → {} ({})", r.state, r.last_reason.unwrap_or_default());
    Ok(())
}
