//! `ice --server URL` (or `ICE_SERVER`): the same commands against a remote `ice serve`, authenticated by the token
//! (`--token` / `ICE_TOKEN`), so operators, approvers and auditors need none of the ledger's files. Each command
//! is one or a few `/v1` requests; the server's JSON is printed as it comes (one object per line), and its error
//! codes map to the same exit codes as the local commands.
//!
//! The client is HTTP/1.1 over `std::net` (one connection per request), plain or over rustls for `https://`
//! (trusting `--ca-cert` / `ICE_CA_CERT`, or the system bundle).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ice_core::ErrorCode;
use serde_json::{Value, json};

use crate::authority_cmds::verdict_exit;
use crate::cli::{
    AgentCommand, ApprovalsCommand, BudgetCommand, Command, GrantCommand, MemoryCommand, PolicyCommand, RunCommand,
    TokenCommand,
};
use crate::commands::{parse_age_micros, read_payload};
use crate::exit;
use crate::render::CliError;

/// How long one request may take (an `exec` runs the effect before answering).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// A server and the token to present.
pub struct Remote {
    addr: String,
    token: String,
    /// Set for `https://`: the client configuration and the name the certificate must carry.
    #[cfg(feature = "tls")]
    tls: Option<(std::sync::Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>)>,
}

fn bad(msg: impl Into<String>) -> CliError {
    CliError::Coded(ErrorCode::BadArgument, msg.into())
}

/// Where trusted certificates are read from when `--ca-cert` is not given.
#[cfg(feature = "tls")]
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A TLS client trusting the PEM certificates in `ca` (or the system bundle), for `host`.
#[cfg(feature = "tls")]
fn tls_client(
    host: &str,
    ca: Option<&std::path::Path>,
) -> Result<(std::sync::Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>), CliError> {
    use rustls::pki_types::pem::PemObject;
    let path = ca.unwrap_or(std::path::Path::new(SYSTEM_CA_BUNDLE));
    let mut roots = rustls::RootCertStore::empty();
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(|e| {
        bad(format!("cannot read trusted certificates from {}: {e} (--ca-cert, ICE_CA_CERT)", path.display()))
    })?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(format!("{}: not PEM certificates: {e}", path.display())))?;
        roots.add(cert).map_err(|e| bad(format!("{}: unusable certificate: {e}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(bad(format!("{} holds no certificate to trust (--ca-cert)", path.display())));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| bad(format!("`{host}` cannot name a TLS server: {e}")))?;
    Ok((std::sync::Arc::new(config), name))
}

/// One connection: plain, or TLS over TCP.
enum Conn {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Plain(s) => s.write_all(bytes),
            #[cfg(feature = "tls")]
            Self::Tls(s) => s.write_all(bytes).and_then(|()| s.flush()),
        }
    }

    /// Everything until the server closes; a TLS peer that closes without `close_notify` after answering is
    /// taken as done (the answer is checked for completeness by its parser).
    fn read_to_end(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        match self {
            Self::Plain(s) => s.read_to_end(out).map(|_| ()),
            #[cfg(feature = "tls")]
            Self::Tls(s) => match s.read_to_end(out) {
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => Ok(()),
                other => other.map(|_| ()),
            },
        }
    }
}

impl Remote {
    /// Parses `http://HOST:PORT[/]` or `https://HOST:PORT[/]`.
    pub fn new(url: &str, token: Option<&str>, ca: Option<&std::path::Path>) -> Result<Self, CliError> {
        let (https, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err(bad(format!("--server `{url}`: expected http://HOST:PORT or https://HOST:PORT"))),
        };
        let addr = rest.trim_end_matches('/').to_owned();
        if addr.is_empty() || addr.contains('/') {
            return Err(bad(format!("--server `{url}`: expected http(s)://HOST:PORT")));
        }
        let token = token.ok_or_else(|| {
            CliError::Coded(ErrorCode::Unauthenticated, "--server needs a token: pass --token or set ICE_TOKEN".into())
        })?;
        let host =
            addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
        #[cfg(feature = "tls")]
        let tls = if https { Some(tls_client(host, ca)?) } else { None };
        #[cfg(not(feature = "tls"))]
        if https {
            let _ = (host, ca);
            return Err(bad("this ice was built without the `tls` feature: https:// is not available"));
        }
        Ok(Self {
            addr,
            token: token.to_owned(),
            #[cfg(feature = "tls")]
            tls,
        })
    }

    fn connect(&self) -> std::io::Result<Conn> {
        let s = TcpStream::connect(&self.addr)?;
        s.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        #[cfg(feature = "tls")]
        if let Some((config, name)) = &self.tls {
            let conn = rustls::ClientConnection::new(config.clone(), name.clone()).map_err(std::io::Error::other)?;
            return Ok(Conn::Tls(Box::new(rustls::StreamOwned::new(conn, s))));
        }
        Ok(Conn::Plain(s))
    }

    /// One request; a non-2xx answer becomes the error it carries (code, message).
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        let unavailable = |e: std::io::Error| {
            CliError::Coded(ErrorCode::StoreUnavailable, format!("cannot reach the server at {}: {e}", self.addr))
        };
        let mut s = self.connect().map_err(unavailable)?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            self.token,
            body.len()
        );
        s.write_all(head.as_bytes()).and_then(|()| s.write_all(body.as_bytes())).map_err(unavailable)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(unavailable)?;
        let text = String::from_utf8_lossy(&raw);
        let garbled = || CliError::Coded(ErrorCode::StoreUnavailable, format!("{} answered garbage", self.addr));
        let (head, payload) = text.split_once("\r\n\r\n").ok_or_else(garbled)?;
        let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(garbled)?;
        let payload = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            unchunk(payload)
        } else {
            payload.into()
        };
        let v: Value = serde_json::from_str(&payload).unwrap_or(Value::String(payload));
        if (200..300).contains(&status) {
            return Ok(v);
        }
        let code = v["code"].as_str().and_then(|c| ErrorCode::ALL.iter().copied().find(|k| k.as_str() == c));
        let message = v["message"].as_str().unwrap_or("the server refused the request").to_owned();
        let recorded = v["recorded_seq"].as_u64().map(|s| format!(" (recorded at seq {s})")).unwrap_or_default();
        Err(CliError::Coded(code.unwrap_or(ErrorCode::StoreUnavailable), format!("{message}{recorded}")))
    }

    fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call("GET", path, None)
    }

    fn post(&self, path: &str, body: Value) -> Result<Value, CliError> {
        self.call("POST", path, Some(&body))
    }
}

fn unchunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Percent-encodes a query value.
fn q(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.:~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// With `--server`, the principal is the token's: `--as` naming anyone is refused here, clearly.
fn no_act_as(actor: Option<&String>) -> Result<(), CliError> {
    match actor {
        None => Ok(()),
        Some(a) => Err(CliError::Coded(
            ErrorCode::ActAsNotAllowed,
            format!("--as {a}: with --server you act as the token's principal; use that principal's token"),
        )),
    }
}

fn print(v: &Value) {
    println!("{v}");
}

fn print_items(v: &Value, key: &str) {
    for item in v[key].as_array().into_iter().flatten() {
        print(item);
    }
}

fn secs(ttl: Option<&String>) -> Result<Option<u64>, CliError> {
    ttl.map(|t| parse_age_micros(t).map(|m| (m / 1_000_000).max(1).unsigned_abs())).transpose()
}

/// Runs one command against the server.
pub fn run(remote: &Remote, command: Command) -> Result<u8, CliError> {
    match command {
        Command::Run(cmd) => run_cmd(remote, cmd),
        Command::Propose(a) => {
            no_act_as(a.actor.as_ref())?;
            let mut body = match &a.file {
                Some(p) => {
                    let text = read_payload(&format!("@{}", p.display()))?;
                    ice_core::canonical::parse_untrusted(&text).map_err(CliError::from)?
                }
                None => json!({}),
            };
            let set = |body: &mut Value, k: &str, v: Value| body[k] = v;
            if let Some(r) = &a.run {
                set(&mut body, "run", json!(r));
            }
            if let Some(x) = &a.action {
                set(&mut body, "action", json!(x));
            }
            if let Some(x) = &a.resource {
                set(&mut body, "resource", json!(x));
            }
            if let Some(x) = &a.args {
                let text = read_payload(x)?;
                set(&mut body, "args", ice_core::canonical::parse_untrusted(&text).map_err(CliError::from)?);
            }
            if let Some(x) = &a.purpose {
                set(&mut body, "purpose", json!(x));
            }
            if let Some(c) = &a.cost {
                set(
                    &mut body,
                    "cost_estimate",
                    serde_json::to_value(ice_core::Cost::parse_pairs(c)?).unwrap_or_default(),
                );
            }
            if let Some(n) = &a.nondeterminism {
                set(&mut body, "nondeterminism", json!(n));
            }
            let d = remote.post("/v1/proposals", body)?;
            print(&d);
            let verdict = serde_json::from_value(d["verdict"].clone())
                .map_err(|_| bad("the server's decision has no verdict"))?;
            Ok(verdict_exit(verdict))
        }
        Command::Exec(a) => {
            no_act_as(a.actor.as_ref())?;
            let args = a.args.as_deref().map(read_payload).transpose()?;
            let args = args.map(|t| ice_core::canonical::parse_untrusted(&t)).transpose().map_err(CliError::from)?;
            let mut out = remote.post(&format!("/v1/permits/{}/exec", q(&a.permit)), json!({ "args": args }))?;
            // A long effect is answered with a handle (202): wait for its outcome like the local command does.
            let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
            while out["status"] == "running" && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(250));
                out = remote.get(&format!("/v1/effects/{}", q(out["effect_id"].as_str().unwrap_or_default())))?;
            }
            print(&out);
            Ok(if out["status"] == "completed" { exit::OK } else { exit::EFFECT_FAILED })
        }
        Command::Approvals(ApprovalsCommand::List { all, .. }) => {
            print_items(&remote.get(&format!("/v1/approvals?all={all}"))?, "approvals");
            Ok(exit::OK)
        }
        Command::Approve(a) => {
            no_act_as(a.actor.as_ref())?;
            let body = json!({"args_hash": a.args_hash, "comment": a.comment});
            print(&remote.post(&format!("/v1/approvals/{}/approve", q(&a.approval)), body)?);
            Ok(exit::OK)
        }
        Command::Deny(a) => {
            no_act_as(a.actor.as_ref())?;
            if a.args_hash.is_some() {
                return Err(bad("--args-hash applies to `ice approve` only"));
            }
            print(&remote.post(&format!("/v1/approvals/{}/deny", q(&a.approval)), json!({"comment": a.comment}))?);
            Ok(exit::OK)
        }
        Command::Withdraw { proposal, reason } => {
            print(&remote.post(&format!("/v1/proposals/{}/withdraw", q(&proposal)), json!({"reason": reason}))?);
            Ok(exit::OK)
        }
        Command::Log(a) => {
            let mut filter = String::new();
            for (k, v) in [("run", &a.run), ("kind", &a.kind), ("since", &a.since)] {
                if let Some(v) = v {
                    filter.push_str(&format!("&{k}={}", q(v)));
                }
            }
            // Pages forward; with --limit only the last N are kept, and without a filter the pages start near the
            // head (each page says where the head is) instead of at the first event.
            let mut after = match a.limit {
                Some(l) if filter.is_empty() => {
                    let head = remote.get("/v1/events?after=0&limit=1")?["head"].as_u64().unwrap_or(0);
                    head.saturating_sub(l as u64)
                }
                _ => 0,
            };
            let mut shown: std::collections::VecDeque<Value> = std::collections::VecDeque::new();
            loop {
                let page = remote.get(&format!("/v1/events?after={after}&limit=1000{filter}"))?;
                let events = page["events"].as_array().cloned().unwrap_or_default();
                let next = page["next_after"].as_u64().unwrap_or(after);
                for e in events {
                    shown.push_back(e);
                    if a.limit.is_some_and(|l| shown.len() > l) {
                        shown.pop_front();
                    }
                }
                if next == after {
                    break;
                }
                after = next;
            }
            shown.iter().for_each(print);
            // --follow: ask for what came after the last event seen, once a second, until interrupted.
            if a.follow {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    let page = remote.get(&format!("/v1/events?after={after}&limit=1000{filter}"))?;
                    page["events"].as_array().into_iter().flatten().for_each(print);
                    after = page["next_after"].as_u64().unwrap_or(after);
                }
            }
            Ok(exit::OK)
        }
        Command::Verify { from_checkpoint, bundle: None, witness: None, .. } => {
            let v = remote.get(&format!("/v1/verify?from_checkpoint={from_checkpoint}"))?;
            print(&v);
            Ok(if v["ok"] == true { exit::OK } else { exit::CHECK_FAILED })
        }
        Command::Checkpoint => {
            print(&remote.post("/v1/checkpoints", json!({}))?);
            Ok(exit::OK)
        }
        Command::Grant(cmd) => grant_cmd(remote, cmd),
        Command::Memory(cmd) => memory_cmd(remote, cmd),
        Command::Budget(BudgetCommand::Show { .. }) => {
            print_items(&remote.get("/v1/budgets")?, "budgets");
            Ok(exit::OK)
        }
        Command::Budget(BudgetCommand::Set { scope, dimension, limit, period, actor }) => {
            no_act_as(actor.as_ref())?;
            let body = json!({"scope": scope, "dimension": dimension, "limit": limit, "period": period});
            print(&remote.call("PUT", "/v1/budgets", Some(&body))?);
            Ok(exit::OK)
        }
        Command::Policy(PolicyCommand::Show { .. }) => {
            print(&remote.get("/v1/policy")?);
            Ok(exit::OK)
        }
        Command::Policy(PolicyCommand::Validate { policies: Some(dir) }) => {
            print(&remote.post("/v1/policy/validate", policy_body(&dir)?)?);
            Ok(exit::OK)
        }
        Command::Policy(PolicyCommand::Activate { policies: Some(dir), actor }) => {
            no_act_as(actor.as_ref())?;
            print(&remote.post("/v1/policy/activate", policy_body(&dir)?)?);
            Ok(exit::OK)
        }
        Command::Policy(
            PolicyCommand::Validate { policies: None } | PolicyCommand::Activate { policies: None, .. },
        ) => Err(bad("with --server, name the local policy directory to send (there is no .ice/ here to default to)")),
        Command::WhatIf { policies, since, run, .. } => {
            let mut body = policy_body(&policies)?;
            body["since"] = json!(since);
            body["run"] = json!(run);
            let report = remote.post("/v1/policy/what-if", body)?;
            print(&report);
            Ok(if report["changes"].as_array().is_none_or(Vec::is_empty) { exit::OK } else { exit::CHECK_FAILED })
        }
        Command::Agent(cmd) => {
            let (agent, action, reason, actor) = match cmd {
                AgentCommand::Suspend { agent, reason, actor } => (agent, "suspend", reason, actor),
                AgentCommand::Reconfigure { agent, change, actor } => (agent, "reconfigure", change, actor),
                AgentCommand::Resume { agent, reason, actor } => (agent, "resume", reason, actor),
                AgentCommand::List { .. } => return Err(unsupported("agent list")),
                AgentCommand::Run { .. } => return Err(unsupported("agent run (it runs beside the ledger)")),
            };
            no_act_as(actor.as_ref())?;
            print(&remote.post(&format!("/v1/agents/{}/{action}", q(&agent)), json!({ "reason": reason }))?);
            Ok(exit::OK)
        }
        Command::Token(TokenCommand::Create { principal, roles, ttl, label, .. }) => {
            let body = json!({"principal": principal, "roles": roles, "ttl_secs": secs(ttl.as_ref())?, "label": label});
            print(&remote.post("/v1/tokens", body)?);
            Ok(exit::OK)
        }
        Command::Token(TokenCommand::Revoke { id, reason }) => {
            print(&remote.post(&format!("/v1/tokens/{}/revoke", q(&id)), json!({ "reason": reason }))?);
            Ok(exit::OK)
        }
        other => Err(unsupported(&format!("{other:?}"))),
    }
}

/// A local policy directory as the API takes it: Cedar files by name, the schema, the catalog.
fn policy_body(dir: &std::path::Path) -> Result<Value, CliError> {
    let b = ice_runtime::policy::PolicyBundle::load_dir(dir)
        .map_err(|r| CliError::Coded(r.code, format!("{}: {}", dir.display(), r.message)))?;
    let files: serde_json::Map<String, Value> =
        b.source.files.iter().map(|f| (f.name.clone(), json!(f.text))).collect();
    Ok(json!({"policies": files, "schema": b.source.schema, "catalog": b.catalog}))
}

fn unsupported(what: &str) -> CliError {
    let name = what.split([' ', '(', '{']).next().unwrap_or(what).to_lowercase();
    bad(format!(
        "`ice {name}` is not available with --server (local ledger files needed); remote commands: run, propose, \
         exec, approvals list, approve, deny, log, verify, checkpoint, grant issue|revoke|list, budget show|set, \
         policy show|validate DIR|activate DIR, what-if, agent suspend|reconfigure|resume, token create|revoke, \
         memory"
    ))
}

fn run_cmd(remote: &Remote, cmd: RunCommand) -> Result<u8, CliError> {
    let v = match cmd {
        RunCommand::Create { label, actor, .. } => {
            no_act_as(actor.as_ref())?;
            remote.post("/v1/runs", json!({ "label": label }))?
        }
        RunCommand::Advance { run, to, reason, actor, .. } => {
            no_act_as(actor.as_ref())?;
            remote.post(&format!("/v1/runs/{}/advance", q(&run)), json!({"to": to, "reason": reason}))?
        }
        RunCommand::Finish { run, actor } => {
            no_act_as(actor.as_ref())?;
            remote.post(&format!("/v1/runs/{}/finish", q(&run)), json!({}))?
        }
        RunCommand::Terminate { run, reason, actor, .. } => {
            no_act_as(actor.as_ref())?;
            remote.post(&format!("/v1/runs/{}/terminate", q(&run)), json!({ "reason": reason }))?
        }
        RunCommand::List { .. } => {
            let v = remote.get("/v1/runs")?;
            print_items(&v, "runs");
            return Ok(exit::OK);
        }
    };
    print(&v);
    Ok(exit::OK)
}

fn grant_cmd(remote: &Remote, cmd: GrantCommand) -> Result<u8, CliError> {
    match cmd {
        GrantCommand::Issue { to, actions, resource, run, ttl, max_uses, irrevocable, actor, .. } => {
            no_act_as(actor.as_ref())?;
            let body = json!({"principal": to, "actions": actions, "resource": resource, "run": run,
                "ttl_secs": secs(ttl.as_ref())?, "max_uses": max_uses, "revocable": !irrevocable});
            print(&remote.post("/v1/grants", body)?);
        }
        GrantCommand::Revoke { id, reason, actor } => {
            no_act_as(actor.as_ref())?;
            print(&remote.post(&format!("/v1/grants/{}/revoke", q(&id)), json!({ "reason": reason }))?);
        }
        GrantCommand::List { .. } => print_items(&remote.get("/v1/grants")?, "grants"),
    }
    Ok(exit::OK)
}

fn memory_cmd(remote: &Remote, cmd: MemoryCommand) -> Result<u8, CliError> {
    let v = match cmd {
        MemoryCommand::Propose { run, namespace, text, fields, sources, ttl, actor, .. } => {
            no_act_as(actor.as_ref())?;
            let fields: serde_json::Map<String, Value> = fields
                .iter()
                .filter_map(|f| f.split_once('='))
                .map(|(k, v)| (k.to_owned(), serde_json::from_str(v).unwrap_or_else(|_| json!(v))))
                .collect();
            let body = json!({"run": run, "namespace": namespace, "text": text, "fields": fields, "sources": sources,
                "ttl_secs": ttl});
            remote.post("/v1/memory/candidates", body)?
        }
        MemoryCommand::Promote { candidate, supersedes, run, namespace, actor, .. } => {
            no_act_as(actor.as_ref())?;
            let (Some(run), Some(ns)) = (run, namespace) else {
                return Err(bad("with --server, `ice memory promote` needs --run and --namespace (the candidate's)"));
            };
            let body = json!({"run": run, "action": "memory.promote", "resource": format!("memory:{ns}"),
                "args": {"candidate": candidate, "namespace": ns, "supersedes": supersedes},
                "purpose": format!("promote memory candidate {candidate}")});
            let mut body = body;
            if body["args"]["supersedes"].is_null() {
                body["args"].as_object_mut().map(|a| a.remove("supersedes"));
            }
            let d = remote.post("/v1/proposals", body)?;
            let Some(permit) = d["permit_id"].as_str() else {
                print(&d);
                let verdict = serde_json::from_value(d["verdict"].clone())
                    .map_err(|_| bad("the server's decision has no verdict"))?;
                return Ok(verdict_exit(verdict));
            };
            remote.post(&format!("/v1/permits/{}/exec", q(permit)), json!({}))?
        }
        MemoryCommand::List { namespace, status, all, .. } => {
            let mut path = format!("/v1/memory?all={all}");
            for (k, v) in [("namespace", namespace), ("status", status)] {
                if let Some(v) = v {
                    path.push_str(&format!("&{k}={}", q(&v)));
                }
            }
            print_items(&remote.get(&path)?, "items");
            return Ok(exit::OK);
        }
        MemoryCommand::Show { item, run, actor, .. } => {
            no_act_as(actor.as_ref())?;
            let run = run.map(|r| format!("?run={}", q(&r))).unwrap_or_default();
            remote.get(&format!("/v1/memory/{}{run}", q(&item)))?
        }
        MemoryCommand::Search { query, namespace, k, run, actor, .. } => {
            no_act_as(actor.as_ref())?;
            remote.post("/v1/memory/search", json!({"query": query, "namespace": namespace, "k": k, "run": run}))?
        }
        MemoryCommand::Deprecate { item, reason } => {
            remote.post(&format!("/v1/memory/{}/deprecate", q(&item)), json!({ "reason": reason }))?
        }
        MemoryCommand::Invalidate { item, reason } => {
            remote.post(&format!("/v1/memory/{}/invalidate", q(&item)), json!({ "reason": reason }))?
        }
        MemoryCommand::Supersede { item, by, reason } => {
            remote.post(&format!("/v1/memory/{}/supersede", q(&item)), json!({"reason": reason, "by": by}))?
        }
        MemoryCommand::Reads { item, .. } => {
            print_items(&remote.get(&format!("/v1/memory/{}/reads", q(&item)))?, "reads");
            return Ok(exit::OK);
        }
    };
    print(&v);
    Ok(exit::OK)
}
