//! `ice demo`: a scripted end-to-end scenario on a fresh ledger, through the same runtime every command uses,
//! ending with the audit trail and a chain verification.

use std::path::Path;

use ice_core::budget::{BudgetKey, BudgetScope, Period};
use ice_core::intake::RawEvent;
use ice_core::{Cost, Dimension, Principal, RunState};
use ice_runtime::{GrantInput, IceHome, ProposalInput, Runtime, RuntimeError};
use ice_store::{EventQuery, verify_ledger};

use crate::exit;
use crate::render::{self, CliError};

fn step(text: &str) {
    println!("\n▸ {text}");
}

fn show_refusal<T>(result: Result<T, RuntimeError>) -> Result<(), CliError> {
    match result {
        Ok(_) => Err(CliError::Coded(ice_core::ErrorCode::BadArgument, "the demo expected a refusal here".into())),
        Err(RuntimeError::Rejected { rejection, record }) => {
            println!("  refused [{}] {}", rejection.code, rejection.message);
            if let Some(r) = record {
                println!("  recorded as TransitionRejected at seq {}", r.seq);
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn agent_event(run: &str, kind: &str, origin: &str, payload: &str) -> RawEvent {
    RawEvent {
        kind: kind.into(),
        origin: origin.into(),
        run_id: Some(run.into()),
        payload: payload.into(),
        ..RawEvent::default()
    }
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
    let (home, rt) = IceHome::init(&dir, None)?;
    println!("  ledger {} (runtime key {}…)", rt.store().describe(), &home.public_key()?[..16]);
    scenario(&rt)?;
    authority_scenario(&rt)?;

    step("audit trail (ice log)");
    let events = rt.store().read(&EventQuery { limit: usize::MAX, ..EventQuery::default() })?;
    println!("{}", render::event_header());
    for e in &events {
        println!("{}", render::event_row(e));
    }

    step("ice verify");
    match verify_ledger(&**rt.store(), &mut |_| {})? {
        Ok(s) => println!("  ok: {} events, head seq {} hash {}", s.events, s.head.seq, s.head.hash),
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

fn scenario(rt: &Runtime) -> Result<(), CliError> {
    let alice: Principal = "human:alice".parse()?;
    let planner = "agent:planner";

    step("human:alice creates a run for agent:planner");
    let run = rt.create_run(&alice, Some("summarise the Q3 report".into()))?;
    let id = run.id.to_string();
    println!("  run {} is {}", run.id, run.state);

    step("the run is provisioned and its context assembled");
    for _ in 0..3 {
        let r = rt.advance_run(&alice, run.id, None, None)?;
        println!("  → {}", r.state);
    }

    step("agent:planner records a plan and a reasoning note (cognitive events are an agent's to emit)");
    let plan = rt.submit(&agent_event(&id, "PlanRecorded", planner, r#"{"steps":["read report","draft summary"]}"#))?;
    println!("  PlanRecorded at seq {}", plan.seq);
    let mut note = agent_event(&id, "ReasoningRecorded", planner, r#"{"note":"section 2 holds the numbers"}"#);
    note.causes = vec![plan.event_id.to_string()];
    let note = rt.submit(&note)?;
    println!("  ReasoningRecorded at seq {} (caused by seq {})", note.seq, plan.seq);

    step("agent:planner tries to mark its own run COMMITTED (a runtime event): refused");
    show_refusal(rt.submit(&agent_event(&id, "RunTransitioned", planner, r#"{"from":"EXECUTING","to":"COMMITTED"}"#)))?;

    step("agent:planner sends a malformed payload: refused");
    show_refusal(rt.submit(&agent_event(&id, "ReasoningRecorded", planner, r#"{"note": "unterminated"#)))?;

    step("agent:planner sends an event kind outside the taxonomy: refused");
    show_refusal(rt.submit(&agent_event(&id, "WorldChanged", planner, "{}")))?;

    step("agent:planner cites a causal parent that does not exist: refused");
    let mut orphan = agent_event(&id, "ReasoningRecorded", planner, r#"{"note":"because of that"}"#);
    orphan.causes = vec!["01900000-0000-7000-8000-000000000000".into()];
    show_refusal(rt.submit(&orphan))?;

    step("human:alice tries to skip VALIDATING (EXECUTING → COMMITTED): refused");
    show_refusal(rt.advance_run(&alice, run.id, Some(RunState::Committed), None))?;

    step("the run is validated, committed and terminated");
    for _ in 0..3 {
        let r = rt.advance_run(&alice, run.id, None, None)?;
        println!("  → {}", r.state);
    }

    step("a second run is aborted mid-execution, then terminated");
    let second = rt.create_run(&alice, Some("scrape competitor pricing".into()))?;
    for _ in 0..3 {
        rt.advance_run(&alice, second.id, None, None)?;
    }
    let r = rt.advance_run(&alice, second.id, Some(RunState::Aborted), Some("out of scope for this team".into()))?;
    println!("  → {} ({})", r.state, r.last_reason.unwrap_or_default());
    let r = rt.terminate_run(&alice, second.id, None)?;
    println!("  → {}", r.state);
    Ok(())
}

fn propose(rt: &Runtime, run: &str, action: &str, resource: &str, args: &str) -> Result<(), CliError> {
    let input = ProposalInput {
        actor: "agent:planner".into(),
        run: Some(run.into()),
        action: action.into(),
        resource: resource.into(),
        args: args.into(),
        purpose: "draft the Q3 summary".into(),
        cost_estimate: Cost::of(Dimension::Calls, 1),
        ..ProposalInput::default()
    };
    let o = rt.propose(&input)?;
    println!("  {} {action} {resource}", o.decision.verdict.as_str().to_uppercase());
    for r in &o.decision.reasons {
        let ids = if r.kind.starts_with("policy") { format!(" [{}]", r.ids.join(", ")) } else { String::new() };
        println!("    {:<18} {}{ids}", r.kind, r.detail);
    }
    Ok(())
}

/// Proposals decided by grants, Cedar policy and budgets.
fn authority_scenario(rt: &Runtime) -> Result<(), CliError> {
    let alice: Principal = "human:alice".parse()?;
    let planner: Principal = "agent:planner".parse()?;
    step("a third run: agent:planner will now propose actions (the default policy set is active)");
    let run = rt.create_run(&alice, Some("draft the Q3 summary".into()))?;
    for _ in 0..3 {
        rt.advance_run(&alice, run.id, None, None)?;
    }
    let id = run.id.to_string();

    step("agent:planner proposes to write a file, holding no grant: DENY");
    propose(
        rt,
        &id,
        "fs.write",
        "file:/sandbox/q3-summary.md",
        r#"{"path":"/sandbox/q3-summary.md","content":"Q3: revenue up 4%"}"#,
    )?;

    step("human:alice grants agent:planner fs.* on file:/sandbox/ for this run (1 hour) and a budget of 2 calls");
    let grant = GrantInput {
        principal: planner.clone(),
        run: Some(run.id),
        actions: vec!["fs.*".into()],
        resource: "file:/sandbox/".into(),
        ttl_micros: Some(3_600_000_000),
        max_uses: None,
        revocable: true,
    };
    let g = rt.issue_grant(&alice, &grant)?;
    println!("  grant {} (seq {})", g.event_id, g.seq);
    let key =
        BudgetKey { scope: BudgetScope::Run { run_id: run.id }, dimension: Dimension::Calls, period: Period::Total };
    rt.set_budget(&alice, key, 2)?;

    step("the same proposal again: ALLOW (grant + Cedar permit + budget reserved)");
    propose(
        rt,
        &id,
        "fs.write",
        "file:/sandbox/q3-summary.md",
        r#"{"path":"/sandbox/q3-summary.md","content":"Q3: revenue up 4%"}"#,
    )?;

    step(
        "agent:planner proposes to read file:/sandbox/secrets/api-key: the grant covers it, a Cedar forbid does not: DENY",
    );
    propose(rt, &id, "fs.read", "file:/sandbox/secrets/api-key", r#"{"path":"/sandbox/secrets/api-key"}"#)?;

    step("two more writes against the 2-call budget: the second exceeds it: DENY");
    propose(
        rt,
        &id,
        "fs.append",
        "file:/sandbox/q3-summary.md",
        r#"{"path":"/sandbox/q3-summary.md","content":"\nCosts flat."}"#,
    )?;
    propose(
        rt,
        &id,
        "fs.append",
        "file:/sandbox/q3-summary.md",
        r#"{"path":"/sandbox/q3-summary.md","content":"\nHiring paused."}"#,
    )?;

    step("agent:planner proposes to delete a file (irreversible): the policy asks for a human: REQUIRE_APPROVAL");
    propose(rt, &id, "fs.delete", "file:/sandbox/old-draft.md", r#"{"path":"/sandbox/old-draft.md"}"#)?;
    Ok(())
}
