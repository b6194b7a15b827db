//! `ice mcp`: the MCP gateway on stdin/stdout (see `ice_mcp`). Opens this home's runtime with the MCP effector
//! added, starts the upstream servers of `.ice/mcp.toml`, authenticates the token once, and serves one MCP
//! client until it closes stdin. Stdout carries the protocol only: logs go to stderr (`ICE_LOG`, default warn).

use std::sync::Arc;

use ice_core::ErrorCode;
use ice_mcp::{Gateway, McpConfig, McpEffector, Results, Upstreams};
use ice_runtime::{IceHome, Presented};
use rmcp::ServiceExt;

use crate::exit;
use crate::render::CliError;

fn coded(code: ErrorCode) -> impl Fn(String) -> CliError {
    move |m| CliError::Coded(code, m)
}

/// Serves until the client disconnects.
pub fn run(home: &IceHome, token: Option<&str>, run: &str) -> Result<u8, CliError> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(std::io::stderr).try_init();
    let token = token.ok_or_else(|| {
        CliError::Coded(
            ErrorCode::Unauthenticated,
            "ice mcp acts as the principal of a token: pass --token or set ICE_TOKEN (ice token create)".into(),
        )
    })?;
    let config = McpConfig::load(&home.dir().join("mcp.toml")).map_err(coded(ErrorCode::BadConfig))?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("ice-mcp").build().map_err(|e| {
            CliError::Coded(ErrorCode::StoreUnavailable, format!("cannot start the async runtime: {e}"))
        })?;
    runtime.block_on(async {
        let upstreams = Arc::new(Upstreams::connect(config).await.map_err(coded(ErrorCode::NoEffector))?);
        let mut effectors = home.open_effectors()?;
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
        let mut rt = home.open_runtime()?;
        rt.set_effectors(Arc::new(effectors));
        let caller = rt.authenticate(&Presented::Token { secret: token, act_as: None })?;
        let gateway = Gateway::new(Arc::new(rt), caller, upstreams, results, run.to_owned());
        let service = gateway
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| CliError::Coded(ErrorCode::BadArgument, format!("MCP initialisation failed: {e}")))?;
        let _ = service.waiting().await;
        Ok::<_, CliError>(())
    })?;
    Ok(exit::OK)
}
