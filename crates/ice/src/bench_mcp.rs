//! `ice bench mcp`: what the gateway adds to one `tools/call`. The same fast tool (`echo` of the real
//! `@modelcontextprotocol/server-everything`, on stdio) is called sequentially by an rmcp client directly, then
//! through `ice mcp serve` (the real binary: the call proposed, decided by grant + Cedar + budget, a permit
//! issued, the effect started, the upstream called, the outcome recorded — three fsync'd commits), in the same
//! run on the same machine.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ice_core::{ErrorCode, Principal, Roles};
use ice_mcp::declare::{Declaration, cedar_args, declare};
use ice_runtime::{GrantInput, IceHome, Presented};
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};

use crate::bench::{bench_err, summarize};
use crate::exit;
use crate::render::CliError;

/// Calls made before measuring (process start-up, JIT warm-up of the upstream).
const WARMUP: usize = 20;

/// Where `scripts/test` installs the server.
const DEFAULT_SERVER: &str = "tests-support/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js";

fn failed(what: &str) -> impl Fn(String) -> CliError + '_ {
    move |e| CliError::Coded(ErrorCode::EffectFailed, format!("{what}: {e}"))
}

async fn client(cmd: tokio::process::Command, what: &str) -> Result<RunningService<RoleClient, ()>, CliError> {
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| failed(what)(e.to_string()))?;
    ().serve(transport).await.map_err(|e| failed(what)(e.to_string()))
}

/// `calls` sequential calls of `tool` after the warm-up; their latencies.
async fn measure(c: &RunningService<RoleClient, ()>, tool: &str, calls: usize) -> Result<Vec<Duration>, CliError> {
    let mut out = Vec::with_capacity(calls);
    for i in 0..calls + WARMUP {
        let mut args = serde_json::Map::new();
        args.insert("message".into(), format!("bench {i}").into());
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args);
        let started = Instant::now();
        let r = c.call_tool(params).await.map_err(|e| failed(tool)(e.to_string()))?;
        let took = started.elapsed();
        if r.is_error == Some(true) {
            return Err(failed(tool)(format!("the call failed: {:?}", r.content)));
        }
        if i >= WARMUP {
            out.push(took);
        }
    }
    Ok(out)
}

/// Runs the benchmark.
pub fn run(calls: usize, server: Option<&Path>) -> Result<u8, CliError> {
    let entry = server.map_or_else(|| PathBuf::from(DEFAULT_SERVER), Path::to_path_buf);
    if calls == 0 || !entry.exists() {
        return Err(CliError::Coded(
            ErrorCode::BadArgument,
            format!(
                "--calls must be positive and {} must exist (npm ci --prefix tests-support/mcp, or \
                 --server-everything PATH to its dist/index.js)",
                entry.display()
            ),
        ));
    }
    let entry = entry.canonicalize().map_err(bench_err)?;
    let dir = tempfile::tempdir().map_err(bench_err)?;
    let (home, rt) = IceHome::init(dir.path(), None)?;
    let operator = rt.authenticate(&Presented::Local { act_as: None })?;
    let mcp = format!("[servers.everything]\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n", entry.to_string_lossy());
    std::fs::write(home.dir().join("mcp.toml"), mcp).map_err(bench_err)?;
    let node = || {
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(&entry).arg("stdio");
        cmd
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(bench_err)?;
    let (mut direct, mut through) = runtime.block_on(async {
        let direct = client(node(), "server-everything").await?;
        let tools = direct.list_all_tools().await.map_err(|e| failed("tools/list")(e.to_string()))?;
        let echo =
            tools.iter().find(|t| t.name == "echo").ok_or_else(|| failed("tools/list")("no echo tool".into()))?;
        let decl = Declaration {
            action: "mcp.everything.echo".into(),
            access: "read".into(),
            risk: "low".into(),
            cedar_args: cedar_args(&echo.input_schema).map_err(failed("echo's schema"))?,
        };
        declare(&home.dir().join("policies"), &[decl]).map_err(failed("declare"))?;
        rt.activate_policy(&operator, &home.dir().join("policies"))?;
        let agent: Principal = "agent:bench".parse()?;
        let grant = GrantInput {
            principal: agent.clone(),
            run: None,
            actions: vec!["mcp.everything.echo".into()],
            resource: "mcp:everything/".into(),
            ttl_micros: None,
            max_uses: None,
            revocable: true,
        };
        rt.issue_grant(&operator, &grant)?;
        let token = rt.issue_token(&operator, &agent, "agent".parse::<Roles>()?, None, None)?.1;
        let run = rt.create_run(&operator, Some("bench mcp".into()))?.id;
        for _ in 0..3 {
            rt.advance_run(&operator, run, None, None)?;
        }
        let direct_lat = measure(&direct, "echo", calls).await?;
        let _ = direct.cancel().await;
        let exe = std::env::current_exe().map_err(bench_err)?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(["--dir", &dir.path().to_string_lossy(), "mcp", "serve", "--run", &run.to_string()])
            .env("ICE_TOKEN", &token)
            .env("ICE_LOG", "error");
        let gateway = client(cmd, "ice mcp serve").await?;
        let through_lat = measure(&gateway, "everything__echo", calls).await?;
        let _ = gateway.cancel().await;
        Ok::<_, CliError>((direct_lat, through_lat))
    })?;
    let (d50, d99) = summarize(&mut direct);
    let (g50, g99) = summarize(&mut through);
    println!(
        "ice bench mcp: tools/call echo of @modelcontextprotocol/server-everything (stdio), {calls} sequential calls \
         after {WARMUP} warm-up, embedded SQLite (synchronous=FULL)"
    );
    println!("direct (rmcp client → upstream):           p50 {:.2} ms  p99 {:.2} ms", d50 / 1e3, d99 / 1e3);
    println!("through ice mcp (3 fsync'd commits/call):  p50 {:.2} ms  p99 {:.2} ms", g50 / 1e3, g99 / 1e3);
    println!(
        "ADDED by the gateway: p50 {:.2} ms  p99 {:.2} ms  RATIO gateway p50 / direct p50 {:.2}x",
        (g50 - d50) / 1e3,
        (g99 - d99) / 1e3,
        g50 / d50.max(1.0)
    );
    Ok(exit::OK)
}
