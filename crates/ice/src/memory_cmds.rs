//! `ice memory ...`: thin shells over the runtime's memory methods. Promotion is `ice propose` + `ice exec` of a
//! `memory.promote` action, done in one step here.

use ice_core::decision::Verdict;
use ice_core::effect::PermitStatus;
use ice_core::memory::{MemoryCandidate, MemoryStatus};
use ice_core::{ErrorCode, EventId, EventKind};
use ice_runtime::{ExecInput, IceHome, MemoryQuery, PROMOTE_ACTION, ProposalInput, Runtime};
use serde_json::{Map, Value, json};

use crate::cli::MemoryCommand;
use crate::commands::{caller, resolve_run};
use crate::exit;
use crate::render::CliError;

fn id(text: &str, what: &str) -> Result<EventId, CliError> {
    text.trim()
        .parse()
        .map_err(|_| CliError::Coded(ErrorCode::BadArgument, format!("`{text}` is not {what} (an event id)")))
}

/// `KEY=VALUE` pairs into a JSON object (VALUE parsed as JSON when it is, else kept as a string).
fn fields(pairs: &[String]) -> Result<Map<String, Value>, CliError> {
    let mut out = Map::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=').filter(|(k, _)| !k.trim().is_empty()) else {
            return Err(CliError::Coded(ErrorCode::BadArgument, format!("--field `{pair}` is not KEY=VALUE")));
        };
        let value = serde_json::from_str::<Value>(v).unwrap_or_else(|_| Value::String(v.to_owned()));
        out.insert(k.trim().to_owned(), value);
    }
    Ok(out)
}

fn status(text: Option<&str>) -> Result<Option<MemoryStatus>, CliError> {
    text.map(|s| {
        MemoryStatus::parse(s).ok_or_else(|| {
            CliError::Coded(
                ErrorCode::BadArgument,
                format!("`{s}` is not a memory status (active, expired, deprecated, superseded, invalidated)"),
            )
        })
    })
    .transpose()
}

fn line(item: &Value) -> String {
    let text: String = item["text"].as_str().unwrap_or_default().chars().take(72).collect();
    let score = item.get("score").and_then(Value::as_f64).map(|s| format!("{s:.3}  ")).unwrap_or_default();
    format!(
        "{}  {score}{:<11} {:<16} {text}",
        item["item_id"].as_str().unwrap_or_default(),
        item["status"].as_str().unwrap_or_default(),
        item["namespace"].as_str().unwrap_or_default()
    )
}

fn detail(item: &Value) {
    println!("{}", line(item));
    let s = |k: &str| item[k].as_str().unwrap_or("-").to_owned();
    println!("  text         {}", s("text"));
    if item["fields"].as_object().is_some_and(|f| !f.is_empty()) {
        println!("  fields       {}", item["fields"]);
    }
    println!("  proposed by  {} (candidate {})", s("proposed_by"), s("candidate"));
    println!(
        "  promoted by  {} at {} (proposal {}, permit {})",
        s("promoted_by"),
        s("promoted_at"),
        s("proposal_id"),
        s("permit_id")
    );
    if let Some(a) = item["approval_id"].as_str() {
        println!("  approval     {a}");
    }
    for src in item["sources"].as_array().into_iter().flatten() {
        println!(
            "  source       {} {}",
            src["kind"].as_str().unwrap_or_default(),
            src["event_id"].as_str().unwrap_or_default()
        );
    }
    if let Some(t) = item["expires_at"].as_str() {
        println!("  expires      {t}");
    }
    if item["ended"].is_object() {
        println!("  ended        {} ({})", item["ended"]["reason"].as_str().unwrap_or_default(), s("status"));
    }
}

/// `ice memory ...`.
pub fn run(home: &IceHome, cmd: MemoryCommand) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    match cmd {
        MemoryCommand::Propose { run, namespace, text, fields: pairs, sources, ttl, actor, json: json_out } => {
            let who = caller(&rt, actor.as_deref())?;
            let run = resolve_run(&rt, &run).map_or(run, |r| r.to_string());
            let sources = sources.iter().map(|s| id(s, "a source event")).collect::<Result<Vec<_>, _>>()?;
            let candidate = MemoryCandidate { namespace, text, fields: fields(&pairs)?, sources, ttl_secs: ttl };
            let e = rt.memory_propose(&who, &run, &candidate)?;
            if json_out {
                println!("{}", json!({"candidate_id": e.event_id.to_string(), "seq": e.seq.0}));
            } else {
                println!("candidate {} recorded (seq {})", e.event_id, e.seq);
                println!("  promote it with: ice memory promote {}", e.event_id);
            }
            Ok(exit::OK)
        }
        MemoryCommand::Promote { candidate, supersedes, run, namespace: _, actor, json: json_out } => {
            promote(&rt, &candidate, supersedes.as_deref(), run.as_deref(), actor.as_deref(), json_out)
        }
        MemoryCommand::List { namespace, status: st, all, json: json_out } => {
            let items = rt.memory_list(&caller(&rt, None)?, namespace.as_deref(), status(st.as_deref())?, all)?;
            for item in &items {
                if json_out { println!("{item}") } else { println!("{}", line(item)) }
            }
            if items.is_empty() && !json_out {
                eprintln!(
                    "no memory items{}",
                    if all { "" } else { " in derived state (--all lists every item ever promoted)" }
                );
            }
            Ok(exit::OK)
        }
        MemoryCommand::Show { item, run, actor, json: json_out } => {
            let who = caller(&rt, actor.as_deref())?;
            let run = run.map(|r| resolve_run(&rt, &r).map_or(r, |id| id.to_string()));
            let out = rt.memory_show(&who, id(&item, "a memory item")?, run.as_deref())?;
            for item in &out.items {
                if json_out { println!("{item}") } else { detail(item) }
            }
            if !json_out {
                println!("  read recorded as {} (seq {})", out.read.event_id, out.read.seq);
            }
            Ok(exit::OK)
        }
        MemoryCommand::Search { query, namespace, k, run, actor, json: json_out } => {
            let who = caller(&rt, actor.as_deref())?;
            let run = run.map(|r| resolve_run(&rt, &r).map_or(r, |id| id.to_string()));
            let out = rt.memory_search(&who, &MemoryQuery { query, namespace, k, run })?;
            if json_out {
                println!("{}", json!({"items": out.items, "read_id": out.read.event_id.to_string()}));
            } else {
                for item in &out.items {
                    println!("{}", line(item));
                }
                println!(
                    "{} result(s); read recorded as {} (seq {})",
                    out.items.len(),
                    out.read.event_id,
                    out.read.seq
                );
            }
            Ok(exit::OK)
        }
        MemoryCommand::Deprecate { item, reason } => change(&rt, EventKind::MemoryDeprecated, &item, &reason, None),
        MemoryCommand::Invalidate { item, reason } => change(&rt, EventKind::MemoryInvalidated, &item, &reason, None),
        MemoryCommand::Supersede { item, by, reason } => {
            let by = id(&by, "the newer memory item")?;
            change(&rt, EventKind::MemorySuperseded, &item, &reason, Some(by))
        }
        MemoryCommand::Reads { item, json: json_out } => {
            let reads = rt.memory_reads(&caller(&rt, None)?, id(&item, "a memory item")?)?;
            for r in &reads {
                let v = r.to_json();
                if json_out {
                    println!("{v}");
                } else {
                    let next = match &r.followed_by {
                        Some(_) => format!(
                            "then proposed {} {} on {}",
                            v["followed_by"]["proposal_id"].as_str().unwrap_or_default(),
                            v["followed_by"]["action"].as_str().unwrap_or_default(),
                            v["followed_by"]["resource"].as_str().unwrap_or_default()
                        ),
                        None => "no proposal followed".into(),
                    };
                    println!(
                        "seq {:<6} {}  {} {} ({}; index {})  {next}",
                        r.read.seq,
                        v["time"].as_str().unwrap_or_default(),
                        v["reader"].as_str().unwrap_or_default(),
                        v["mode"].as_str().unwrap_or_default(),
                        v["items"].as_array().map_or(0, Vec::len),
                        v["index"].as_str().unwrap_or_default()
                    );
                }
            }
            if reads.is_empty() && !json_out {
                eprintln!("no recorded read returned {item}");
            }
            Ok(exit::OK)
        }
    }
}

fn change(rt: &Runtime, kind: EventKind, item: &str, reason: &str, by: Option<EventId>) -> Result<u8, CliError> {
    let e = rt.memory_change(&caller(rt, None)?, kind, id(item, "a memory item")?, reason, by)?;
    println!("{} recorded (seq {})", e.kind, e.seq);
    Ok(exit::OK)
}

/// Proposes `memory.promote` for the candidate — or, when the caller already holds a live permit for exactly these
/// args (after an approval), uses it — and executes the permit.
fn promote(
    rt: &Runtime,
    candidate: &str,
    supersedes: Option<&str>,
    run: Option<&str>,
    actor: Option<&str>,
    json_out: bool,
) -> Result<u8, CliError> {
    let who = caller(rt, actor)?;
    let candidate_id = id(candidate, "a memory candidate")?;
    let event =
        rt.store().get(candidate_id).map_err(|e| CliError::Coded(ErrorCode::StoreUnavailable, e.to_string()))?;
    let Some(event) = event.filter(|e| e.kind == EventKind::MemoryProposed) else {
        return Err(CliError::Coded(
            ErrorCode::UnknownMemoryItem,
            format!("{candidate} is not a memory candidate (record one with `ice memory propose`)"),
        ));
    };
    let c: MemoryCandidate = serde_json::from_str(event.payload.as_str())
        .map_err(|e| CliError::Coded(ErrorCode::BadPayloadStructure, format!("candidate {candidate}: {e}")))?;
    let mut args = json!({"candidate": candidate_id.to_string(), "namespace": c.namespace});
    if let Some(old) = supersedes {
        args["supersedes"] = json!(id(old, "the item to supersede")?.to_string());
    }
    let args_text = args.to_string();
    let (_, args_hash) =
        ice_core::proposal::canonical_args(&args_text).map_err(|r| CliError::Coded(r.code, r.message))?;
    let now = rt.now();
    let held = rt.with_state(|st| {
        st.effects()
            .permits()
            .values()
            .find(|p| {
                p.terms.actor == *who.principal()
                    && p.terms.action == PROMOTE_ACTION
                    && p.terms.args_hash == args_hash
                    && p.status(now) == PermitStatus::Live
            })
            .map(|p| p.id)
    })?;
    let permit = match held {
        Some(p) => p,
        None => {
            let run = match run {
                Some(r) => resolve_run(rt, r).map_or(r.to_owned(), |id| id.to_string()),
                None => event.run_id.map(|r| r.to_string()).unwrap_or_default(),
            };
            let input = ProposalInput {
                run: Some(run),
                action: PROMOTE_ACTION.into(),
                resource: format!("memory:{}", c.namespace),
                args: args_text,
                purpose: format!("promote memory candidate {candidate_id}"),
                ..ProposalInput::default()
            };
            let outcome = rt.propose(&who, &input)?;
            match outcome.decision.verdict {
                Verdict::Allow => {}
                Verdict::RequireApproval => {
                    crate::authority_cmds::print_decision(&outcome, json_out);
                    if !json_out {
                        println!("  once approved, run `ice memory promote {candidate_id}` again to promote it");
                    }
                    return Ok(exit::APPROVAL_REQUIRED);
                }
                v => {
                    crate::authority_cmds::print_decision(&outcome, json_out);
                    return Ok(crate::authority_cmds::verdict_exit(v));
                }
            }
            let found = outcome.events.iter().find(|e| e.kind == EventKind::PermitIssued).map(|e| e.event_id);
            found.ok_or_else(|| CliError::Coded(ErrorCode::NoPermit, "allowed, but no permit was issued".into()))?
        }
    };
    let out = rt.execute(&who, &ExecInput { permit: permit.to_string(), args: None })?;
    let item = out.evidence.as_ref().and_then(|e| e.detail["item_id"].as_str()).unwrap_or_default().to_owned();
    if json_out {
        println!(
            "{}",
            json!({"item_id": item, "permit_id": permit.to_string(), "effect_id": out.started.event_id.to_string()})
        );
    } else {
        println!("PROMOTED  memory item {item} ({})\n  permit {permit}, effect {}", c.namespace, out.started.event_id);
    }
    Ok(exit::OK)
}
