//! `ice propose`, `ice grant`, `ice policy`, `ice budget`, `ice agent`: thin shells over the runtime's
//! authority methods.

use std::path::{Path, PathBuf};

use ice_core::budget::{BudgetKey, BudgetScope, Period};
use ice_core::decision::Verdict;
use ice_core::grant::GrantStatus;
use ice_core::{Cost, Dimension, ErrorCode, EventId, Principal};
use ice_runtime::policy::{PolicyBundle, policy_rejection};
use ice_runtime::{DecisionOutcome, GrantInput, IceHome, ProposalInput, Runtime};
use serde_json::{Value, json};

use crate::cli::{AgentCommand, BudgetCommand, GrantCommand, PolicyCommand, ProposeArgs, TokenCommand};
use crate::commands::{caller, parse_age_micros, read_payload, resolve_run};
use crate::exit;
use crate::render::CliError;

/// Exit code for a recorded decision.
pub fn verdict_exit(v: Verdict) -> u8 {
    match v {
        Verdict::Allow => exit::OK,
        Verdict::Deny | Verdict::Suspend => exit::DENIED,
        Verdict::RequireApproval => exit::APPROVAL_REQUIRED,
    }
}

fn bad(msg: impl Into<String>) -> CliError {
    CliError::Coded(ErrorCode::BadArgument, msg.into())
}

/// Prints a decision in human or JSON form.
pub fn print_decision(o: &DecisionOutcome, json_out: bool) {
    let d = &o.decision;
    if json_out {
        let v = o.to_json();
        println!("{v}");
        return;
    }
    println!("{}  proposal {} (seq {})", d.verdict.as_str().to_uppercase(), o.proposal.event_id, o.proposal.seq);
    for r in &d.reasons {
        let ids = if r.ids.is_empty() { String::new() } else { format!(" [{}]", r.ids.join(", ")) };
        println!("  {:<18} {}{ids}", r.kind, r.detail);
    }
    println!("  policy set {}", &d.policy_hash[..16.min(d.policy_hash.len())]);
    for e in &o.events {
        match e.kind {
            ice_core::EventKind::PermitIssued => {
                println!("  permit {}  (execute with `ice exec {}`)", e.event_id, e.event_id)
            }
            ice_core::EventKind::ApprovalRequested => {
                println!("  approval {} pending  (`ice approvals list`, `ice approve {}`)", e.event_id, e.event_id)
            }
            _ => {}
        }
    }
}

/// `ice propose`: flags override the fields of `--file` (read with the runtime's one strict proposal parser).
pub fn propose(home: &IceHome, args: &ProposeArgs) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    let file: Value = match &args.file {
        Some(p) => {
            let text = read_payload(&format!("@{}", p.display()))?;
            ice_core::canonical::parse_untrusted(&text).map_err(|r| {
                CliError::Coded(r.code, format!("{} is not an acceptable proposal file: {}", p.display(), r.message))
            })?
        }
        None => json!({}),
    };
    let mut input = ProposalInput::from_json(&file)?;
    let who = caller(&rt, args.actor.as_deref().or_else(|| file.get("actor").and_then(Value::as_str)))?;
    // A prefix or suffix is resolved here; anything else goes to the runtime as given, to be refused there.
    if let Some(r) = args.run.clone().or(input.run.take()) {
        input.run = Some(resolve_run(&rt, &r).map_or(r, |id| id.to_string()));
    }
    if let Some(a) = &args.args {
        input.args = read_payload(a)?;
    }
    if let Some(c) = &args.cost {
        input.cost_estimate = Cost::parse_pairs(c)?;
    }
    if let Some(n) = &args.nondeterminism {
        input.nondeterminism =
            serde_json::from_value(json!(n)).map_err(|_| bad(format!("--nondeterminism `{n}`: none, low or high")))?;
    }
    if let Some(a) = &args.action {
        input.action = a.clone();
    }
    if let Some(r) = &args.resource {
        input.resource = r.clone();
    }
    if let Some(p) = &args.purpose {
        input.purpose = p.clone();
    }
    if input.action.is_empty() {
        return Err(bad("--action is required"));
    }
    if input.resource.is_empty() {
        return Err(bad("--resource is required"));
    }
    let outcome = rt.propose(&who, &input)?;
    print_decision(&outcome, args.json);
    Ok(verdict_exit(outcome.decision.verdict))
}

fn parse_event_id(text: &str) -> Result<EventId, CliError> {
    Ok(text.parse::<EventId>()?)
}

/// `ice grant ...`.
pub fn grant(home: &IceHome, cmd: GrantCommand) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    match cmd {
        GrantCommand::Issue { to, actions, resource, run, ttl, max_uses, irrevocable, actor: who, json: json_out } => {
            let run = run.as_deref().map(|r| resolve_run(&rt, r)).transpose()?;
            let ttl_micros = ttl.as_deref().map(parse_age_micros).transpose()?;
            let input = GrantInput {
                principal: to.parse()?,
                run,
                actions,
                resource,
                ttl_micros,
                max_uses,
                revocable: !irrevocable,
            };
            let e = rt.issue_grant(&caller(&rt, who.as_deref())?, &input)?;
            if json_out {
                println!("{}", e.to_json());
            } else {
                println!("grant {} issued to {} (seq {})", e.event_id, input.principal, e.seq);
            }
        }
        GrantCommand::Revoke { id, reason, actor: who } => {
            let e = rt.revoke_grant(&caller(&rt, who.as_deref())?, parse_event_id(&id)?, &reason)?;
            println!("grant {id} revoked (seq {})", e.seq);
        }
        GrantCommand::List { all, json: json_out } => {
            let now = rt.now();
            let grants: Vec<_> = rt.with_state(|s| s.authority().grants().values().cloned().collect())?;
            if !json_out {
                println!(
                    "{:<36}  {:<8}  {:<16}  {:<20}  {:<24}  {:>5}  EXPIRES",
                    "GRANT", "STATUS", "PRINCIPAL", "ACTIONS", "RESOURCE", "USES"
                );
            }
            for g in grants.iter().filter(|g| all || g.status(now) == GrantStatus::Live) {
                let status = format!("{:?}", g.status(now)).to_lowercase();
                let uses = g.terms.max_uses.map_or_else(|| g.uses.to_string(), |m| format!("{}/{m}", g.uses));
                let expires = g.terms.expires_at.map_or_else(|| "never".to_owned(), |t| t.to_rfc3339());
                if json_out {
                    let mut v = serde_json::to_value(g).unwrap_or(Value::Null);
                    v["status"] = json!(status);
                    println!("{v}");
                } else {
                    println!(
                        "{:<36}  {:<8}  {:<16}  {:<20}  {:<24}  {:>5}  {expires}",
                        g.id.to_string(),
                        status,
                        g.terms.principal.to_string(),
                        g.terms.actions.join(","),
                        g.terms.resource,
                        uses
                    );
                }
            }
        }
    }
    Ok(exit::OK)
}

fn policy_dir(home: &IceHome, dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(|| home.dir().join("policies"))
}

fn compile_dir(dir: &Path) -> Result<(PolicyBundle, ice_runtime::policy::CompiledPolicy), CliError> {
    let bundle = PolicyBundle::load_dir(dir)?;
    let compiled = bundle.compile()?;
    Ok((bundle, compiled))
}

/// `ice policy ...`.
pub fn policy(home: &IceHome, cmd: PolicyCommand) -> Result<u8, CliError> {
    match cmd {
        PolicyCommand::Validate { policies } => {
            let dir = policy_dir(home, policies);
            let (_, compiled) = compile_dir(&dir)?;
            println!(
                "ok: {} policies, {} actions, hash {}",
                compiled.engine.policy_ids().len(),
                compiled.catalog.actions.len(),
                compiled.hash
            );
            Ok(exit::OK)
        }
        PolicyCommand::Test { cases, policies } => {
            let dir = policy_dir(home, policies);
            let (_, compiled) = compile_dir(&dir)?;
            let text = std::fs::read_to_string(&cases).map_err(|e| {
                CliError::Coded(ErrorCode::PolicyCases, format!("cannot read {}: {e}", cases.display()))
            })?;
            let report = ice_policy::run_policy_tests(&compiled.engine, &text).map_err(policy_rejection)?;
            print!("{report}");
            Ok(if report.all_passed() { exit::OK } else { exit::CHECK_FAILED })
        }
        PolicyCommand::Activate { policies, actor: who } => {
            let rt = home.open_runtime()?;
            let dir = policy_dir(home, policies);
            let e = rt.activate_policy(&caller(&rt, who.as_deref())?, &dir)?;
            let hash = e.payload.to_value()["hash"].as_str().unwrap_or_default().to_owned();
            println!("activated policy set {hash} from {} (seq {})", dir.display(), e.seq);
            Ok(exit::OK)
        }
        PolicyCommand::Show { json: json_out } => {
            let rt = home.open_runtime()?;
            let p = rt.active_policy()?;
            if json_out {
                println!(
                    "{}",
                    json!({"hash": p.hash, "policies": p.engine.policy_ids(), "actions": p.catalog.actions,
                        "consequences": p.catalog.consequences})
                );
            } else {
                println!("active policy set {}", p.hash);
                println!("policies: {}", p.engine.policy_ids().join(", "));
                println!("{:<16}  {:<9}  {:<13}  RISK", "ACTION", "SCOPE", "ACCESS");
                for (name, c) in &p.catalog.actions {
                    println!(
                        "{name:<16}  {:<9}  {:<13}  {}",
                        format!("{:?}", c.scope).to_lowercase(),
                        format!("{:?}", c.access).to_lowercase(),
                        format!("{:?}", c.risk).to_lowercase()
                    );
                }
            }
            Ok(exit::OK)
        }
    }
}

/// `ice budget ...`.
pub fn budget(home: &IceHome, cmd: BudgetCommand) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    match cmd {
        BudgetCommand::Show { json: json_out } => show_budgets(&rt, json_out)?,
        BudgetCommand::Set { scope, dimension, limit, period, actor: who } => {
            let scope = match scope.strip_prefix("run:") {
                Some(r) => BudgetScope::Run { run_id: resolve_run(&rt, r)? },
                None => scope.parse()?,
            };
            let period: Period = serde_json::from_value(json!(period))
                .map_err(|_| CliError::Coded(ErrorCode::BadBudget, "--period must be total or day".into()))?;
            let key = BudgetKey { scope, dimension: dimension.parse::<Dimension>()?, period };
            let e = rt.set_budget(&caller(&rt, who.as_deref())?, key.clone(), limit)?;
            println!("budget {key} = {limit} (seq {})", e.seq);
        }
        BudgetCommand::Settle { proposal, actual, actor: who } => {
            let e =
                rt.settle(&caller(&rt, who.as_deref())?, parse_event_id(&proposal)?, Cost::parse_pairs(&actual)?)?;
            println!("settled proposal {proposal} (seq {})", e.seq);
        }
    }
    Ok(exit::OK)
}

fn show_budgets(rt: &Runtime, json_out: bool) -> Result<(), CliError> {
    let now = rt.now();
    let lines = rt.with_state(|s| s.authority().budgets().usage(now))?;
    if !json_out {
        println!("{:<60}  {:>12}  {:>12}  {:>12}  {:>12}", "BUDGET", "LIMIT", "SPENT", "RESERVED", "LEFT");
    }
    for u in lines {
        if json_out {
            println!("{}", serde_json::to_value(&u).unwrap_or(Value::Null));
        } else {
            println!("{:<60}  {:>12}  {:>12}  {:>12}  {:>12}", u.budget, u.limit, u.spent, u.reserved, u.left);
        }
    }
    Ok(())
}

/// `ice agent ...`.
pub fn agent(home: &IceHome, cmd: AgentCommand) -> Result<u8, CliError> {
    if let AgentCommand::Run { config, run, json } = cmd {
        return crate::agent_run::run(home, &config, &run, json);
    }
    let rt = home.open_runtime()?;
    match cmd {
        AgentCommand::Suspend { agent, reason, actor: who } => {
            let target: Principal = agent.parse()?;
            let e = rt.suspend_agent(&caller(&rt, who.as_deref())?, &target, &reason)?;
            println!("{target} suspended (seq {})", e.seq);
        }
        AgentCommand::Reconfigure { agent, change, actor: who } => {
            let target: Principal = agent.parse()?;
            let e = rt.reconfigure_agent(&caller(&rt, who.as_deref())?, &target, &change)?;
            println!("{target} reconfigured (seq {})", e.seq);
        }
        AgentCommand::Resume { agent, reason, actor: who } => {
            let target: Principal = agent.parse()?;
            let e = rt.resume_agent(&caller(&rt, who.as_deref())?, &target, &reason)?;
            println!("{target} resumed (seq {})", e.seq);
        }
        AgentCommand::Run { .. } => {}
        AgentCommand::List { json: json_out } => {
            let suspended: Vec<_> =
                rt.with_state(|s| s.authority().suspended_agents().clone().into_iter().collect())?;
            for (p, why) in suspended {
                if json_out {
                    println!("{}", json!({"agent": p.to_string(), "state": "suspended", "reason": why}));
                } else {
                    println!("{p}  suspended  {why}");
                }
            }
        }
    }
    Ok(exit::OK)
}

/// `ice token ...`.
pub fn token(home: &IceHome, cmd: TokenCommand) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    match cmd {
        TokenCommand::Create { principal, roles, ttl, label, json: json_out } => {
            let who = caller(&rt, None)?;
            let principal: Principal = principal.parse()?;
            let roles: ice_core::Roles = roles.join(",").parse()?;
            let ttl = ttl.as_deref().map(parse_age_micros).transpose()?;
            let (e, secret) = rt.issue_token(&who, &principal, roles, ttl, label)?;
            if json_out {
                println!(
                    "{}",
                    json!({"token_id": e.event_id.to_string(), "principal": principal.to_string(),
                    "roles": roles.to_string(), "token": secret, "seq": e.seq.0})
                );
            } else {
                println!("token {} for {principal} ({roles}) issued (seq {})", e.event_id, e.seq);
                println!("{secret}");
                eprintln!("the secret above is shown once and never stored; pass it as --token or ICE_TOKEN");
            }
        }
        TokenCommand::Revoke { id, reason } => {
            let who = caller(&rt, None)?;
            let e = rt.revoke_token(&who, parse_event_id(&id)?, &reason)?;
            println!("token {id} revoked (seq {})", e.seq);
        }
        TokenCommand::List { all, json: json_out } => {
            let now = rt.now();
            let tokens: Vec<_> = rt.with_state(|s| s.tokens().all().values().cloned().collect())?;
            if !json_out {
                println!("{:<36}  {:<8}  {:<24}  {:<28}  EXPIRES", "TOKEN", "STATUS", "PRINCIPAL", "ROLES");
            }
            for t in tokens.iter().filter(|t| all || t.status(now) == ice_core::auth::TokenStatus::Live) {
                let status = format!("{:?}", t.status(now)).to_lowercase();
                let expires = t.terms.expires_at.map_or_else(|| "never".to_owned(), |x| x.to_rfc3339());
                if json_out {
                    // The recorded keyed hash is not secret, but listings have no use for it.
                    println!(
                        "{}",
                        json!({"token_id": t.id.to_string(), "status": status, "principal": t.terms.principal.to_string(),
                            "roles": t.terms.roles.to_string(), "expires_at": t.terms.expires_at.map(|x| x.to_rfc3339()),
                            "label": t.terms.label, "issued_by": t.issued_by.to_string(), "revoked": t.revoked})
                    );
                } else {
                    println!(
                        "{:<36}  {status:<8}  {:<24}  {:<28}  {expires}",
                        t.id.to_string(),
                        t.terms.principal.to_string(),
                        t.terms.roles.to_string()
                    );
                }
            }
        }
    }
    Ok(exit::OK)
}
