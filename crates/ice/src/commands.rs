//! Command implementations: thin shells over `ice-runtime`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ice_core::intake::RawEvent;
use ice_core::{ErrorCode, EventId, EventKind, PrincipalKind, RunId, RunState, Seq, Timestamp};
use ice_runtime::{Caller, IceHome, Presented, Runtime};
use ice_store::EventQuery;

use crate::cli::{Cli, Command, DebugCommand, EmitArgs, LogArgs, RunCommand};
use crate::render::{self, CliError};
use crate::{authority_cmds, bench, bundle_cmds, demo, effect_cmds, exit, proof_cmds};

/// Runs one parsed command line; returns the exit code.
pub fn run(cli: Cli) -> Result<u8, CliError> {
    let _ = TOKEN.set(cli.token.clone().filter(|t| !t.trim().is_empty()));
    let explicit = cli.dir.clone();
    let home = || -> Result<IceHome, CliError> { Ok(IceHome::discover(explicit.as_deref(), &cwd()?)?) };
    // Commands that make or serve a ledger, or need none, always run here.
    let local_only = matches!(
        cli.command,
        Command::Init { .. }
            | Command::Serve { .. }
            | Command::Mcp(_)
            | Command::Signer { .. }
            | Command::Demo { .. }
            | Command::Bench(_)
            | Command::Kinds
            | Command::TlogWitness { .. }
    );
    if let Some(url) = cli.server.as_deref().filter(|u| !u.trim().is_empty() && !local_only) {
        let remote = crate::remote::Remote::new(url.trim(), cli.token.as_deref(), cli.ca_cert.as_deref())?;
        return crate::remote::run(&remote, cli.command);
    }
    match cli.command {
        Command::Init { dir, store, signing_key } => init(dir.or(explicit), store.as_deref(), signing_key.as_deref()),
        Command::Signer { key, request } => {
            let mut input = String::new();
            if request == "sign" {
                std::io::stdin()
                    .read_to_string(&mut input)
                    .map_err(|e| CliError::Coded(ErrorCode::BadArgument, format!("cannot read stdin: {e}")))?;
            }
            println!("{}", ice_runtime::signer::serve_once(&key, &request, &input)?);
            Ok(exit::OK)
        }
        Command::Run(cmd) => run_command(&home()?, cmd),
        Command::Emit(args) => emit(&home()?, &args),
        Command::Propose(args) => authority_cmds::propose(&home()?, &args),
        Command::Grant(cmd) => authority_cmds::grant(&home()?, cmd),
        Command::Policy(cmd) => authority_cmds::policy(&home()?, cmd),
        Command::Budget(cmd) => authority_cmds::budget(&home()?, cmd),
        Command::Agent(cmd) => authority_cmds::agent(&home()?, cmd),
        Command::Token(cmd) => authority_cmds::token(&home()?, cmd),
        Command::Exec(args) => effect_cmds::exec(&home()?, &args),
        Command::Effects(cmd) => effect_cmds::effects(&home()?, cmd),
        Command::Approvals(cmd) => effect_cmds::approvals(&home()?, cmd),
        Command::Approve(args) => effect_cmds::answer(&home()?, &args, true),
        Command::Deny(args) => effect_cmds::answer(&home()?, &args, false),
        Command::Withdraw { proposal, reason } => effect_cmds::withdraw(&home()?, &proposal, &reason),
        Command::Memory(cmd) => crate::memory_cmds::run(&home()?, cmd),
        Command::Rollback { target, actor, json } => effect_cmds::rollback(&home()?, &target, actor.as_deref(), json),
        Command::Log(args) => log(&home()?, &args),
        Command::Inspect { id, json } => inspect(&home()?, &id, json),
        Command::Verify {
            json,
            from_checkpoint,
            bundle,
            trust_keys,
            trust_bundle_key,
            witness,
            witness_key,
            trust_witnesses,
        } => {
            let witness = witness.as_deref().map(|w| (w, witness_key.as_deref()));
            let bundle = bundle.as_deref().map(|b| (b, trust_witnesses.as_slice()));
            proof_cmds::verify(home, json, from_checkpoint, bundle, &trust_keys, trust_bundle_key, witness)
        }
        Command::Tlog(cmd) => crate::tlog_cmds::run(&home()?, cmd),
        Command::TlogWitness { state, key, listen, name, logs } => {
            crate::tlog_witness::serve(&state, key.as_deref(), &listen, &name, &logs)
        }
        Command::Witness { state, key, log_key } => {
            crate::witness_cmds::witness(&home()?, &state, key.as_deref(), log_key.as_deref())
        }
        Command::Replay { json } => proof_cmds::replay(&home()?, json),
        Command::WhatIf { policies, since, run, json } => {
            proof_cmds::what_if(&home()?, &policies, since.as_deref(), run.as_deref(), json)
        }
        Command::Checkpoint => proof_cmds::checkpoint(&home()?),
        Command::Export { run, range, output, witness, witness_key } => {
            let witness = witness.as_deref().map(|w| (w, witness_key.as_deref()));
            bundle_cmds::export(&home()?, run.as_deref(), range.as_deref(), &output, witness)
        }
        Command::Key { ledger } => proof_cmds::key(&home()?, ledger),
        Command::Kinds => {
            kinds();
            Ok(exit::OK)
        }
        Command::Serve { listen, log_json, openapi } => {
            if openapi {
                println!("{}", ice_server::openapi_json());
                return Ok(exit::OK);
            }
            crate::serve::run(&home()?, listen.as_deref(), log_json)
        }
        Command::Mcp(cmd) => crate::mcp::run(&home()?, cli.token.as_deref(), cmd),
        Command::Demo { keep } => demo::run(keep.as_deref()),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Migrate { from, to } => crate::migrate::run(&home()?, from.as_deref(), &to),
        Command::Debug(DebugCommand::AppendLoad { events, threads }) => append_load(&home()?, events, threads),
        Command::Debug(DebugCommand::ProposeLoad { count, threads, actor, run, action, resource, args, cost }) => {
            let input = ice_runtime::ProposalInput {
                run: Some(run),
                action,
                resource,
                args,
                purpose: "load".into(),
                cost_estimate: ice_core::Cost::parse_pairs(&cost)?,
                ..ice_runtime::ProposalInput::default()
            };
            propose_load(&home()?, &actor, &input, count, threads)
        }
    }
}

fn cwd() -> Result<PathBuf, CliError> {
    std::env::current_dir()
        .map_err(|e| CliError::Coded(ErrorCode::StoreUnavailable, format!("cannot read the current directory: {e}")))
}

fn init(dir: Option<PathBuf>, store: Option<&str>, signing_key: Option<&str>) -> Result<u8, CliError> {
    let dir = match dir {
        Some(d) => d,
        None => cwd()?,
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::Coded(ErrorCode::StoreUnavailable, format!("cannot create {}: {e}", dir.display())))?;
    let (home, rt) = IceHome::init_with(&dir, store, signing_key)?;
    let head = rt.with_state(|s| s.head())?;
    println!("initialised ICE in {}", home.dir().display());
    println!("  store:       {}", rt.store().describe());
    println!("  runtime key: {}", home.public_key()?);
    if let Some(spec) = signing_key {
        println!("  signing key: {spec} (not in {})", home.dir().display());
    }
    if let Some(h) = head {
        println!("  head:        seq {} {}", h.seq, h.hash);
    }
    println!("next: ice run create --label \"my first run\"");
    Ok(exit::OK)
}

/// The token given with `--token` / `ICE_TOKEN` for this process, if any.
pub(crate) static TOKEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Authenticates this command's caller with the runtime: the token if one was given, else the local OS user;
/// `act_as` (`--as`) asks to act for an agent, which the user's `act_as` entries must allow.
pub fn caller(rt: &Runtime, act_as: Option<&str>) -> Result<Caller, CliError> {
    let token = TOKEN.get().and_then(Option::as_deref);
    let presented = match token {
        Some(secret) => Presented::Token { secret, act_as },
        None => Presented::Local { act_as },
    };
    Ok(rt.authenticate(&presented)?)
}

/// Resolves a run id, or a unique prefix or suffix of one (at least 4 characters; tables show the suffix).
pub fn resolve_run(rt: &Runtime, text: &str) -> Result<RunId, CliError> {
    if let Ok(id) = text.parse::<RunId>() {
        return Ok(id);
    }
    let prefix = text.trim().to_ascii_lowercase();
    if prefix.len() < 4 {
        return Err(CliError::Coded(
            ErrorCode::BadArgument,
            format!("`{text}` is not a run id (or a prefix or suffix of 4+ characters)"),
        ));
    }
    let matches: Vec<RunId> = rt.with_state(|s| {
        s.runs()
            .map(|r| r.id)
            .filter(|id| {
                let full = id.to_string();
                full.starts_with(&prefix) || full.ends_with(&prefix)
            })
            .collect()
    })?;
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(CliError::Coded(ErrorCode::NotFound, format!("no run id starts or ends with `{text}`"))),
        many => Err(CliError::Coded(
            ErrorCode::BadArgument,
            format!("`{text}` matches {} runs; give more characters", many.len()),
        )),
    }
}

fn print_run(r: &ice_core::RunRecord, json: bool) {
    if json {
        println!("{}", r.to_json());
    } else {
        println!("{}  {}", r.id, r.state);
    }
}

fn run_command(home: &IceHome, cmd: RunCommand) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    match cmd {
        RunCommand::Create { label, actor: who, json } => {
            let r = rt.create_run(&caller(&rt, who.as_deref())?, label)?;
            print_run(&r, json);
        }
        RunCommand::Advance { run, to, reason, actor: who, json } => {
            let to = to.as_deref().map(str::parse::<RunState>).transpose()?;
            let id = resolve_run(&rt, &run)?;
            let r = rt.advance_run(&caller(&rt, who.as_deref())?, id, to, reason)?;
            print_run(&r, json);
        }
        RunCommand::Finish { run, actor: who } => {
            let id = resolve_run(&rt, &run)?;
            let r = rt.finish_run(&caller(&rt, who.as_deref())?, id)?;
            print_run(&r, false);
        }
        RunCommand::Terminate { run, reason, actor: who, json } => {
            let id = resolve_run(&rt, &run)?;
            let r = rt.terminate_run(&caller(&rt, who.as_deref())?, id, reason)?;
            print_run(&r, json);
        }
        RunCommand::List { json } => {
            let (runs, retired): (Vec<_>, usize) =
                rt.with_state(|s| (s.runs().cloned().collect(), s.retired_runs()))?;
            if json {
                for r in &runs {
                    println!("{}", r.to_json());
                }
            } else {
                println!("{}", render::run_header());
                for r in &runs {
                    println!("{}", render::run_row(r));
                }
                if retired > 0 {
                    println!(
                        "({retired} terminated run(s) settled and left memory; `ice inspect RUN_ID` or `ice log --run \
                         RUN_ID` reads one from the ledger)"
                    );
                }
            }
        }
    }
    Ok(exit::OK)
}

/// Reads `@FILE` (or `@-` for stdin), or returns the argument itself.
pub fn read_payload(arg: &str) -> Result<String, CliError> {
    let Some(path) = arg.strip_prefix('@') else { return Ok(arg.to_owned()) };
    let mut text = String::new();
    let res = if path == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(Path::new(path)).map(|t| text = t)
    };
    res.map_err(|e| CliError::Coded(ErrorCode::BadArgument, format!("cannot read payload from {path}: {e}")))?;
    Ok(text)
}

fn emit(home: &IceHome, args: &EmitArgs) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    // A run prefix is a CLI convenience; anything unresolvable goes to the pipeline as given, to be refused there.
    let run_id = args.run.as_deref().map(|r| resolve_run(&rt, r).map_or_else(|_| r.to_owned(), |id| id.to_string()));
    let who = caller(&rt, args.origin.as_deref())?;
    let raw = RawEvent {
        kind: args.kind.clone(),
        origin: who.principal().to_string(),
        run_id,
        payload: read_payload(&args.payload)?,
        causes: args.causes.clone(),
        time: args.time.clone(),
    };
    let e = rt.submit(&who, &raw)?;
    if args.json {
        println!("{}", e.to_json());
    } else {
        println!("appended {} at seq {} (event {})", e.kind, e.seq, e.event_id);
    }
    Ok(exit::OK)
}

fn age_micros(t: &str) -> Option<i64> {
    let unit = match t.chars().last()? {
        's' => 1i64,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let n: i64 = t[..t.len() - 1].parse().ok().filter(|n| *n >= 0)?;
    Some(n.saturating_mul(unit).saturating_mul(1_000_000))
}

/// Parses a duration such as `30s`, `10m`, `2h`, `7d` into microseconds.
pub fn parse_age_micros(text: &str) -> Result<i64, CliError> {
    age_micros(text.trim()).ok_or_else(|| {
        CliError::Coded(ErrorCode::BadArgument, format!("`{text}` is not a duration like 30s, 10m, 2h or 7d"))
    })
}

/// Parses an RFC 3339 time or an age like `7d` (meaning that long before `now`).
pub fn parse_time_or_age(text: &str, now: Timestamp) -> Result<Timestamp, CliError> {
    let t = text.trim();
    if let Some(age) = age_micros(t) {
        return Ok(now.plus_micros(-age));
    }
    Timestamp::parse_rfc3339(t).map_err(|_| {
        CliError::Coded(ErrorCode::BadArgument, format!("--since `{text}` is not an RFC 3339 time or an age like 7d"))
    })
}

fn parse_since(text: &str, now: Timestamp) -> Result<(Seq, Option<Timestamp>), CliError> {
    let t = text.trim();
    if let Ok(seq) = t.parse::<u64>() {
        return Ok((Seq(seq.saturating_sub(1)), None));
    }
    if let Some(age) = age_micros(t) {
        return Ok((Seq(0), Some(now.plus_micros(-age))));
    }
    let time = Timestamp::parse_rfc3339(t).map_err(|_| {
        CliError::Coded(
            ErrorCode::BadArgument,
            format!("--since `{text}` is not a seq, an RFC 3339 time or an age like 10m"),
        )
    })?;
    Ok((Seq(0), Some(time)))
}

fn log(home: &IceHome, args: &LogArgs) -> Result<u8, CliError> {
    // Reading the log needs the store only: derived state is folded only to resolve a run id given by prefix.
    let store = home.open_store()?;
    let run = match args.run.as_deref() {
        None => None,
        Some(text) => Some(match text.parse::<ice_core::RunId>() {
            Ok(id) => id,
            Err(_) => resolve_run(&home.open_runtime()?, text)?,
        }),
    };
    let kind = args.kind.as_deref().map(str::parse::<EventKind>).transpose()?;
    let (mut after, since) = match &args.since {
        Some(s) => parse_since(s, ice_core::Clock::now(&ice_runtime::SystemClock))?,
        None => (Seq(0), None),
    };
    // Unfiltered with a limit, the newest N events are the last N seqs (seqs are gapless): read only those.
    if let (Some(limit), None, None, None) = (args.limit, run, kind, since) {
        let head = store.head()?.map_or(0, |h| h.seq.0);
        after = Seq(after.0.max(head.saturating_sub(limit as u64)));
    }
    let base = EventQuery { after, until: None, run, kind, since, limit: 10_000 };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !args.json {
        writeln!(out, "{}", render::event_header()).ok();
    }
    let print = |out: &mut std::io::StdoutLock<'_>, e: &ice_core::Event| {
        let line = if args.json { e.to_json().to_string() } else { render::event_row(e) };
        // A closed pipe (e.g. `| head`) ends the output quietly.
        writeln!(out, "{line}").is_ok()
    };
    // Without --follow, --limit keeps the most recent N events; collect then print the tail.
    let mut last = after;
    let mut shown: Vec<ice_core::Event> = Vec::new();
    loop {
        let batch = store.read(&EventQuery { after: last, ..base.clone() })?;
        let Some(end) = batch.last().map(|e| e.seq) else { break };
        last = end;
        shown.extend(batch);
        if let Some(limit) = args.limit
            && shown.len() > limit
        {
            shown.drain(..shown.len() - limit);
        }
    }
    for e in &shown {
        if !print(&mut out, e) {
            return Ok(exit::OK);
        }
    }
    out.flush().ok();
    if !args.follow {
        return Ok(exit::OK);
    }
    // --follow: read from the head onwards; scan position is the last seq seen by any filter.
    let mut cursor = store.head()?.map_or(Seq(0), |h| h.seq).max(last);
    loop {
        let head = store.wait_for_append(cursor, Duration::from_secs(1))?;
        if head <= cursor {
            continue;
        }
        let batch = store.read(&EventQuery { after: cursor, until: Some(head), ..base.clone() })?;
        for e in &batch {
            if !print(&mut out, e) {
                return Ok(exit::OK);
            }
        }
        out.flush().ok();
        cursor = head;
    }
}

fn inspect(home: &IceHome, id: &str, json: bool) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    if let Ok(eid) = id.parse::<EventId>()
        && let Some(e) = rt.store().get(eid)?
    {
        if json {
            println!("{}", serde_json::to_string_pretty(&e.to_json()).unwrap_or_default());
        } else {
            println!("event {}", e.event_id);
            println!("  seq        {}", e.seq);
            println!("  kind       {} ({})", e.kind, e.kind.family().as_str());
            println!("  origin     {}", e.origin);
            println!("  time       {}", e.time);
            println!("  run        {}", e.run_id.map_or_else(|| "-".to_owned(), |r| r.to_string()));
            for c in &e.causes {
                println!("  cause      {c}");
            }
            println!("  prev_hash  {}", e.prev_hash);
            println!("  hash       {}", e.hash);
            let pretty = serde_json::to_string_pretty(&e.payload.to_value()).unwrap_or_default();
            println!("  payload    {}", pretty.replace('\n', "\n             "));
        }
        return Ok(exit::OK);
    }
    let run = match resolve_run(&rt, id) {
        Ok(r) => r,
        Err(_) => {
            return Err(CliError::Coded(
                ErrorCode::NotFound,
                format!("`{id}` is neither an event id nor a run id in this ledger"),
            ));
        }
    };
    let Some(record) = rt.run(run)? else {
        return Err(CliError::Coded(
            ErrorCode::NotFound,
            format!("`{id}` is neither an event id nor a run id in this ledger"),
        ));
    };
    let events = rt.store().read(&EventQuery { run: Some(run), limit: usize::MAX, ..EventQuery::default() })?;
    if json {
        let mut v = record.to_json();
        v["history"] = events.iter().map(ice_core::Event::to_json).collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!("run {}", record.id);
        println!("  state      {}", record.state);
        println!("  label      {}", record.label.as_deref().unwrap_or("-"));
        println!("  created    {} by {}", record.created_at, record.created_by);
        if let Some(r) = &record.last_reason {
            println!("  reason     {r}");
        }
        println!("  history ({} events):", events.len());
        println!("{}", render::event_header());
        for e in &events {
            println!("{}", render::event_row(e));
        }
    }
    Ok(exit::OK)
}

fn kinds() {
    println!("{:<20}  {:<11}  {:<9}  EMITTED BY", "KIND", "FAMILY", "RUN");
    for k in EventKind::ALL {
        let who: Vec<&str> =
            PrincipalKind::ALL.iter().filter(|p| k.may_be_emitted_by(**p)).map(|p| p.as_str()).collect();
        let scope = match k.run_scope() {
            ice_core::RunScope::Required => "required",
            ice_core::RunScope::Optional => "optional",
            ice_core::RunScope::Forbidden => "none",
        };
        println!("{:<20}  {:<11}  {:<9}  {}", k.as_str(), k.family().as_str(), scope, who.join(", "));
    }
}

/// Appends agent events from several threads through the runtime, printing each acknowledged event id.
fn append_load(home: &IceHome, events: usize, threads: usize) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    let run = rt.create_run(&caller(&rt, None)?, Some("append-load".into()))?;
    println!("run {}", run.id);
    let per = events.div_ceil(threads.max(1));
    let stdout = std::io::stdout();
    std::thread::scope(|s| {
        for t in 0..threads.max(1) {
            let (rt, stdout) = (&rt, &stdout);
            let load = caller(rt, Some(&format!("agent:load-{t}")));
            s.spawn(move || {
                let load = match load {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("append failed: {e:?}");
                        return;
                    }
                };
                for i in 0..per {
                    let raw = RawEvent {
                        kind: "ObservationRecorded".into(),
                        origin: format!("agent:load-{t}"),
                        run_id: Some(run.id.to_string()),
                        payload: format!(r#"{{"thread":{t},"i":{i},"note":"load"}}"#),
                        ..RawEvent::default()
                    };
                    match rt.submit(&load, &raw) {
                        // Printed only after the append returned, i.e. after the durable commit.
                        Ok(e) => {
                            let mut out = stdout.lock();
                            if writeln!(out, "ack {}", e.event_id).and_then(|()| out.flush()).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            eprintln!("append failed: {e}");
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(exit::OK)
}

/// Submits `count` copies of a proposal from `threads` threads, printing `VERDICT PROPOSAL_ID` per decision.
fn propose_load(
    home: &IceHome,
    actor: &str,
    input: &ice_runtime::ProposalInput,
    count: usize,
    threads: usize,
) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    let who = caller(&rt, Some(actor))?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let stdout = std::io::stdout();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < count {
                    match rt.propose(&who, input) {
                        Ok(o) => {
                            let mut out = stdout.lock();
                            let line = format!("{} {}", o.decision.verdict.as_str(), o.proposal.event_id);
                            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            eprintln!("propose failed: {e}");
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(exit::OK)
}
