//! `ice exec`, `ice effects`, `ice approvals`, `ice approve`, `ice deny`, `ice rollback`: thin shells over the
//! runtime's effect boundary.

use ice_core::effect::{ApprovalStatus, EffectStatus, PermitStatus};
use ice_core::{ErrorCode, EventId};
use ice_runtime::{ExecInput, IceHome, RollbackStep, RollbackTarget};
use serde_json::{Value, json};

use crate::cli::{AnswerArgs, ApprovalsCommand, EffectsCommand, ExecArgs};
use crate::commands::{caller, read_payload, resolve_run};
use crate::exit;
use crate::render::CliError;

fn event_id(text: &str, what: &str) -> Result<EventId, CliError> {
    text.trim()
        .parse()
        .map_err(|_| CliError::Coded(ErrorCode::BadArgument, format!("`{text}` is not {what} (an event id)")))
}

/// `ice exec`.
pub fn exec(home: &IceHome, args: &ExecArgs) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    let who = caller(&rt, args.actor.as_deref())?;
    let input = ExecInput { permit: args.permit.clone(), args: args.args.as_deref().map(read_payload).transpose()? };
    let out = rt.execute(&who, &input)?;
    if args.json {
        println!("{}", out.to_json());
    } else {
        match (&out.evidence, &out.failure) {
            (Some(ev), _) => {
                let again = if ev.already_applied { " (already applied; not repeated)" } else { "" };
                println!(
                    "COMPLETED  effect {} (seq {}){again}\n  output {} ({} bytes)  wrote {} bytes",
                    out.started.event_id,
                    out.outcome.seq,
                    &ev.output_hash[..16.min(ev.output_hash.len())],
                    ev.output_bytes,
                    ev.bytes
                );
                if ev.detail != Value::Null {
                    println!("  {}", ev.detail);
                }
            }
            (None, Some((code, msg))) => {
                println!("FAILED  effect {} (seq {})\n  {code}: {msg}", out.started.event_id, out.outcome.seq)
            }
            (None, None) => println!("effect {} recorded (seq {})", out.started.event_id, out.outcome.seq),
        }
    }
    Ok(if out.status == EffectStatus::Completed { exit::OK } else { exit::EFFECT_FAILED })
}

/// `ice effects ...`.
pub fn effects(home: &IceHome, cmd: EffectsCommand) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    match cmd {
        EffectsCommand::List { run, json: json_out } => {
            let run = run.map(|r| resolve_run(&rt, &r)).transpose()?;
            // Every effect ever recorded: those of ended runs have left memory, so the ledger is read.
            let all: Vec<_> = rt.boundary_history()?.effects().values().map(|e| (**e).clone()).collect();
            list_effects(all, json_out, |e| run.is_none_or(|r| e.run == Some(r)));
            Ok(exit::OK)
        }
        EffectsCommand::Pending { json: json_out } => {
            rt.reconcile()?;
            let live: Vec<_> = rt.with_state(|s| s.effects().effects().values().map(|e| (**e).clone()).collect())?;
            let unknown =
                list_effects(live, json_out, |e| matches!(e.status, EffectStatus::Running | EffectStatus::Unknown));
            Ok(if unknown > 0 { exit::CHECK_FAILED } else { exit::OK })
        }
        EffectsCommand::Retry { effect, actor: who } => {
            let out = rt.retry_effect(&caller(&rt, who.as_deref())?, event_id(&effect, "an effect")?)?;
            let again = out.evidence.as_ref().is_some_and(|e| e.already_applied);
            println!(
                "{:?}  effect {} (outcome seq {}){}",
                out.status,
                out.started.event_id,
                out.outcome.seq,
                if again { " — it had already been applied; not applied again" } else { "" }
            );
            Ok(if out.status == EffectStatus::Completed { exit::OK } else { exit::EFFECT_FAILED })
        }
        EffectsCommand::Resolve { effect, completed, failed: _, note, actor: who } => {
            let e =
                rt.resolve_effect(&caller(&rt, who.as_deref())?, event_id(&effect, "an effect")?, completed, &note)?;
            println!("{} recorded (seq {})", e.kind, e.seq);
            Ok(exit::OK)
        }
        EffectsCommand::Permits { all, json: json_out } => {
            let now = rt.now();
            let permits: Vec<_> = if all {
                rt.boundary_history()?.permits().values().cloned().collect()
            } else {
                rt.with_state(|s| s.effects().permits().values().cloned().collect())?
            };
            for p in permits.iter().filter(|p| all || p.status(now) == PermitStatus::Live) {
                let status = format!("{:?}", p.status(now)).to_lowercase();
                if json_out {
                    println!(
                        "{}",
                        json!({"permit_id": p.id.to_string(), "status": status, "terms": p.terms, "run_id": p.run.map(|r| r.to_string())})
                    );
                } else {
                    println!(
                        "{}  {status:<8} {} {} on {}  args {}  expires {}",
                        p.id,
                        p.terms.actor,
                        p.terms.action,
                        p.terms.resource,
                        &p.terms.args_hash[..16.min(p.terms.args_hash.len())],
                        p.terms.expires_at
                    );
                }
            }
            Ok(exit::OK)
        }
        EffectsCommand::Effectors => {
            let Some(effectors) = rt.effector_registry() else {
                return Err(CliError::Coded(ErrorCode::NoEffector, "no effectors are configured".into()));
            };
            println!("sandbox {}", effectors.sandbox_root().display());
            for (action, effector, class) in effectors.actions() {
                println!("{action:<14} {effector:<8} {}", serde_json::to_string(&class).unwrap_or_default());
            }
            Ok(exit::OK)
        }
    }
}

/// Prints effects matching `keep`; returns how many are unknown.
fn list_effects(
    effects: Vec<ice_core::effect::EffectRecord>,
    json_out: bool,
    keep: impl Fn(&ice_core::effect::EffectRecord) -> bool,
) -> usize {
    let mut unknown = 0;
    for e in effects.iter().filter(|e| keep(e)) {
        if e.status == EffectStatus::Unknown {
            unknown += 1;
        }
        let status = format!("{:?}", e.status).to_lowercase();
        if json_out {
            println!(
                "{}",
                json!({"effect_id": e.id.to_string(), "status": status, "run_id": e.run.map(|r| r.to_string()),
                    "action": e.started.action, "resource": e.started.resource, "permit_id": e.started.permit_id.to_string(),
                    "args_hash": e.started.args_hash, "started_at": e.started_at.to_string(),
                    "outcome_id": e.outcome.map(|o| o.to_string()), "compensates": e.started.compensates.map(|c| c.to_string()),
                    "compensated_by": e.compensated_by.map(|c| c.to_string()), "evidence": e.evidence})
            );
        } else {
            let undone = e.compensated_by.map(|c| format!("  undone by {c}")).unwrap_or_default();
            println!("{}  {status:<9} {} {}{undone}", e.id, e.started.action, e.started.resource);
        }
    }
    unknown
}

/// `ice approvals ...`.
pub fn approvals(home: &IceHome, cmd: ApprovalsCommand) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    let ApprovalsCommand::List { all, json: json_out } = cmd;
    rt.reconcile()?;
    // Answered approvals leave memory once settled: `--all` reads them from the ledger.
    let list: Vec<_> = if all {
        rt.boundary_history()?.approvals().values().cloned().collect()
    } else {
        rt.with_state(|s| s.effects().approvals().values().cloned().collect())?
    };
    for a in list.iter().filter(|a| all || a.status == ApprovalStatus::Pending) {
        let r = &a.request;
        let status = format!("{:?}", a.status).to_lowercase();
        if json_out {
            println!(
                "{}",
                json!({"approval_id": a.id.to_string(), "status": status, "escalated": a.escalated,
                    "run_id": a.run.map(|r| r.to_string()), "request": r,
                    "answered_by": a.answered_by.as_ref().map(ToString::to_string)})
            );
        } else {
            println!(
                "{}  {status}{}  {} wants {} on {}",
                a.id,
                if a.escalated { " (escalated)" } else { "" },
                r.actor,
                r.action,
                r.resource
            );
            println!("  args       {}", serde_json::to_string(&r.args).unwrap_or_default());
            println!("  args hash  {}", r.args_hash);
            println!(
                "  class      {}  cost {}",
                serde_json::to_string(&r.classification).unwrap_or_default(),
                serde_json::to_string(&r.cost_estimate).unwrap_or_default()
            );
            println!("  asked by   {} ({})", r.policies.join(", "), r.reason);
            println!("  approvers  {}  expires {}", r.approvers.join(", "), r.expires_at);
        }
    }
    Ok(exit::OK)
}

/// `ice approve` / `ice deny`.
pub fn answer(home: &IceHome, args: &AnswerArgs, grant: bool) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    let who = caller(&rt, args.actor.as_deref())?;
    let id = event_id(&args.approval, "an approval")?;
    let events = if grant {
        rt.approve(&who, id, args.args_hash.as_deref(), args.comment.as_deref())?
    } else {
        if args.args_hash.is_some() {
            return Err(CliError::Coded(ErrorCode::BadArgument, "--args-hash applies to `ice approve` only".into()));
        }
        rt.deny_approval(&who, id, args.comment.as_deref())?
    };
    for e in &events {
        match e.kind {
            ice_core::EventKind::PermitIssued => println!("permit {} issued (seq {})", e.event_id, e.seq),
            k => println!("{k} (seq {})", e.seq),
        }
    }
    Ok(exit::OK)
}

/// `ice withdraw`.
pub fn withdraw(home: &IceHome, proposal: &str, reason: &str) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    let who = caller(&rt, None)?;
    let id = event_id(proposal, "a proposal")?;
    for e in rt.withdraw(&who, id, reason)? {
        println!("{} (seq {})", e.kind, e.seq);
    }
    Ok(exit::OK)
}

/// `ice rollback`.
pub fn rollback(home: &IceHome, target: &str, who: Option<&str>, json_out: bool) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    let who = caller(&rt, who)?;
    let target = match target.parse::<EventId>() {
        Ok(id) if rt.with_state(|s| s.run(ice_core::RunId(id.0)).is_none())? => RollbackTarget::Event(id),
        _ => RollbackTarget::Run(resolve_run(&rt, target)?),
    };
    let report = rt.rollback(&who, target)?;
    let complete = report.items.iter().all(|i| {
        !matches!(
            i.step,
            RollbackStep::AwaitingApproval { .. } | RollbackStep::Denied { .. } | RollbackStep::Failed { .. }
        )
    });
    if json_out {
        println!("{}", serde_json::to_value(&report).unwrap_or(Value::Null));
    } else {
        println!("rollback run {} ({})", report.run, report.run_state);
        for i in &report.items {
            let what = match &i.step {
                RollbackStep::Compensated { compensation } => format!("undone by effect {compensation}"),
                RollbackStep::AwaitingApproval { approval } => {
                    format!(
                        "awaiting approval {approval} (then `ice exec` the permit and `ice run finish {}`)",
                        report.run
                    )
                }
                RollbackStep::Denied { reasons } => format!("denied: {}", reasons.join("; ")),
                RollbackStep::Failed { message } => format!("failed: {message}"),
                RollbackStep::AlreadyCompensated { by } => format!("already undone ({by})"),
                RollbackStep::NothingToUndo => "nothing to undo (read)".to_owned(),
                RollbackStep::Irreversible { reason } => format!("IRREVERSIBLE: {reason}"),
            };
            println!("  {}  {} {}  {what}", i.effect, i.action, i.resource);
        }
    }
    Ok(if complete { exit::OK } else { exit::INCOMPLETE })
}
