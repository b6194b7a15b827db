//! `ice mcp`: the MCP gateway (see `ice_mcp`).
//!
//! `serve` opens this home's runtime with the MCP effector added, starts the upstream servers of `.ice/mcp.toml`,
//! pins the tools it sees for the first time, authenticates the token once, and serves one MCP client until it
//! closes stdin. Stdout carries the protocol only: logs go to stderr (`ICE_LOG`, default warn). `tools` and
//! `accept` review and pin changed tool definitions.

use std::sync::Arc;

use ice_core::ErrorCode;
use ice_core::auth::Role;
use ice_mcp::{Gateway, McpConfig, McpEffector, Pins, Results, Standing, Upstreams};
use ice_runtime::{IceHome, Presented, Runtime};
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;

use crate::cli::McpCommand;
use crate::exit;
use crate::render::CliError;

fn coded(code: ErrorCode) -> impl Fn(String) -> CliError {
    move |m| CliError::Coded(code, m)
}

/// Runs one `ice mcp` command.
pub fn run(home: &IceHome, token: Option<&str>, cmd: McpCommand) -> Result<u8, CliError> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(std::io::stderr).try_init();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("ice-mcp").build().map_err(|e| {
            CliError::Coded(ErrorCode::StoreUnavailable, format!("cannot start the async runtime: {e}"))
        })?;
    runtime.block_on(async {
        match cmd {
            McpCommand::Serve { run } => serve(home, token, &run).await,
            McpCommand::Tools { json } => tools(home, json).await,
            McpCommand::Accept { server, tool, hash } => accept(home, &server, &tool, &hash).await,
            McpCommand::Declare { access, risk } => declare(home, &access, &risk).await,
        }
    })
}

/// Reads `.ice/mcp.toml` and starts its upstream servers.
async fn connect(home: &IceHome) -> Result<Arc<Upstreams>, CliError> {
    let config = McpConfig::load(&home.dir().join("mcp.toml")).map_err(coded(ErrorCode::BadConfig))?;
    let secrets = &home.config().effects.secrets;
    let upstreams = Upstreams::connect(config, secrets).await.map_err(|e| CliError::Coded(e.code, e.message))?;
    Ok(Arc::new(upstreams))
}

/// With `.ice/mcp.toml`: starts its upstream servers and adds the MCP effector to `rt`'s effectors (so this
/// process can execute permits of MCP actions). `None` when the home has no `mcp.toml`.
pub async fn prepare(home: &IceHome, rt: &mut Runtime) -> Result<Option<(Arc<Upstreams>, Results)>, CliError> {
    prepare_with(home, rt, Vec::new()).await
}

/// [`prepare`], with `extra` effectors added to the same registry (the agent loop's model effector).
pub async fn prepare_with(
    home: &IceHome,
    rt: &mut Runtime,
    extra: Vec<Box<dyn ice_effects::Effector>>,
) -> Result<Option<(Arc<Upstreams>, Results)>, CliError> {
    if !home.dir().join("mcp.toml").exists() {
        return Ok(None);
    }
    let upstreams = connect(home).await?;
    let mut effectors = home.open_effectors()?;
    for e in extra {
        effectors.insert(e);
    }
    let results = Results::default();
    let journal = effectors.journal_dir().join("mcp");
    let mcp = McpEffector::new(
        upstreams.clone(),
        tokio::runtime::Handle::current(),
        &journal,
        effectors.blobs().clone(),
        results.clone(),
    )
    .map_err(|e| CliError::Coded(e.code, e.message))?;
    effectors.insert(Box::new(mcp));
    rt.set_effectors(Arc::new(effectors));
    Ok(Some((upstreams, results)))
}

/// The gateway as a streamable-HTTP MCP service for `ice serve` (mounted at `/mcp` behind the API's bearer
/// authentication; each request names its run in the `Ice-Run` header). Pins first-seen tools.
/// Cancelling `stop` ends every MCP session and its event streams (at shutdown, so open streams cannot hold the
/// server's graceful drain).
pub fn http_service(
    rt: Arc<Runtime>,
    upstreams: Arc<Upstreams>,
    results: Results,
    stop: tokio_util::sync::CancellationToken,
) -> Result<StreamableHttpService<Gateway, LocalSessionManager>, CliError> {
    let pins = Pins::check(&rt, &upstreams, true)?;
    let gateway = Gateway::over_http(rt, upstreams, results, pins);
    // Requests are authenticated by bearer token before they reach the service, which is what the Host check
    // (DNS-rebinding protection for unauthenticated local servers) stands in for; `[server] listen` decides
    // where it is reachable.
    let config = StreamableHttpServerConfig::default().disable_allowed_hosts().with_cancellation_token(stop);
    Ok(StreamableHttpService::new(move || Ok(gateway.clone()), Arc::new(LocalSessionManager::default()), config))
}

async fn serve(home: &IceHome, token: Option<&str>, run: &str) -> Result<u8, CliError> {
    let token = token.ok_or_else(|| {
        CliError::Coded(
            ErrorCode::Unauthenticated,
            "ice mcp serve acts as the principal of a token: pass --token or set ICE_TOKEN (ice token create)".into(),
        )
    })?;
    let mut rt = home.open_runtime()?;
    let Some((upstreams, results)) = prepare(home, &mut rt).await? else {
        return Err(CliError::Coded(
            ErrorCode::BadConfig,
            format!("{} is missing", home.dir().join("mcp.toml").display()),
        ));
    };
    let caller = rt.authenticate(&Presented::Token { secret: token, act_as: None })?;
    let pins = Pins::check(&rt, &upstreams, true)?;
    let gateway = Gateway::new(Arc::new(rt), caller, upstreams, results, run.to_owned(), pins);
    let service = gateway
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| CliError::Coded(ErrorCode::BadArgument, format!("MCP initialisation failed: {e}")))?;
    let _ = service.waiting().await;
    Ok(exit::OK)
}

async fn tools(home: &IceHome, json: bool) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    let me = crate::commands::caller(&rt, None)?;
    rt.require_any(&me, &[Role::Operator, Role::Auditor, Role::Approver], "reviewing MCP tool pins")?;
    let upstreams = connect(home).await?;
    let pins = Pins::check(&rt, &upstreams, false)?;
    let mut changed = false;
    for (server, tool) in upstreams.tools() {
        let standing = pins.standing(&server, &tool.name).cloned();
        let (status, pinned, current) = match standing {
            Some(Standing::Pinned { hash }) => ("pinned", Some(hash.clone()), hash),
            Some(Standing::New { hash }) => ("new", None, hash),
            Some(Standing::Changed { pinned, current }) => {
                changed = true;
                ("changed", Some(pinned), current)
            }
            None => continue,
        };
        if json {
            let line = json!({"server": server, "tool": tool.name, "status": status, "pinned_hash": pinned,
                "current_hash": current, "definition": ice_mcp::pins::definition(&tool)});
            println!("{line}");
        } else {
            println!("{:<40} {:<8} {}", format!("{server}/{}", tool.name), status, current);
            if status == "changed" {
                println!("    pinned {}", pinned.unwrap_or_default());
                println!("    description now: {}", tool.description.as_deref().unwrap_or(""));
                println!("    accept: ice mcp accept {server} {} {current}", tool.name);
            }
        }
    }
    // Exit 1 when something is withheld, so a check in a script notices.
    Ok(if changed { exit::CHECK_FAILED } else { exit::OK })
}

async fn accept(home: &IceHome, server: &str, tool: &str, hash: &str) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    let me = crate::commands::caller(&rt, None)?;
    let upstreams = connect(home).await?;
    let found = upstreams.tools().into_iter().find(|(s, t)| s == server && t.name == tool).map(|(_, t)| t);
    let Some(current) = found else {
        return Err(CliError::Coded(ErrorCode::NotFound, format!("no upstream tool {server}/{tool}")));
    };
    let pin = rt.accept_tool(&me, server, tool, &ice_mcp::pins::definition(&current), hash)?;
    println!("pinned {server}/{tool} at {} (replaces {})", pin.definition_hash, pin.replaces.unwrap_or_default());
    Ok(exit::OK)
}

async fn declare(home: &IceHome, access: &str, risk: &str) -> Result<u8, CliError> {
    if !["read", "write", "irreversible"].contains(&access) || !["low", "medium", "high", "critical"].contains(&risk) {
        return Err(CliError::Coded(
            ErrorCode::BadArgument,
            "--access is read, write or irreversible; --risk low, medium, high or critical".into(),
        ));
    }
    let upstreams = connect(home).await?;
    let mut decls = Vec::new();
    for (server, tool) in upstreams.tools() {
        let action = upstreams.config().action_of(&server, &tool.name);
        match ice_mcp::declare::cedar_args(&tool.input_schema) {
            Ok(cedar_args) => decls.push(ice_mcp::declare::Declaration {
                action,
                access: access.to_owned(),
                risk: risk.to_owned(),
                cedar_args,
            }),
            Err(why) => eprintln!("skipped {action}: its arguments have no Cedar type ({why})"),
        }
    }
    let dir = home.dir().join("policies");
    let added = ice_mcp::declare::declare(&dir, &decls).map_err(coded(ErrorCode::PolicyDir))?;
    for a in &added {
        println!("declared {a} ({access}, {risk})");
    }
    println!("{} declared; review {} and run `ice policy activate`", added.len(), dir.display());
    Ok(exit::OK)
}
