//! `ice agent run --config FILE --run RUN`: the agent loop of `ice_agent`, acting as the principal of the token
//! (ICE_TOKEN or --token), with this home's effectors plus a model effector for the configured provider. Progress
//! goes to stderr; how it ended to stdout. Exit 0 when the model finished, 6 when a model call was refused (the
//! token budget, a grant, policy), 8 when the provider failed, 9 at the step limit.

use std::path::Path;
use std::sync::Arc;

use ice_agent::config::ProviderSection;
use ice_agent::{Agent, AgentConfig, StopReason};
use ice_core::ErrorCode;
use ice_providers::{ModelEffector, OpenAiCompatible, OpenAiConfig, Provider, Scripted};
use ice_runtime::{IceHome, Presented};
use serde_json::json;

use crate::exit;
use crate::render::CliError;

/// Runs the agent until it stops.
pub fn run(home: &IceHome, config: &Path, run: &str, json_out: bool) -> Result<u8, CliError> {
    let coded = |code: ErrorCode| move |m: String| CliError::Coded(code, m);
    let config = AgentConfig::load(config).map_err(coded(ErrorCode::BadConfig))?;
    let token = crate::commands::TOKEN.get().and_then(Option::as_deref).ok_or_else(|| {
        CliError::Coded(
            ErrorCode::Unauthenticated,
            "ice agent run acts as the principal of a token: pass --token or set ICE_TOKEN (ice token create)".into(),
        )
    })?;
    let provider = provider(home, &config.provider)?;
    let mut rt = home.open_runtime()?;
    let caller = rt.authenticate(&Presented::Token { secret: token, act_as: None })?;
    let run = crate::commands::resolve_run(&rt, run)?;
    let _lock = lock(home, &caller.principal().to_string(), &run.to_string())?;
    let blobs = home.open_effectors()?.blobs().clone();
    let model = ModelEffector::new(provider, config.provider.model(), blobs.clone(), config.agent.store_prompts);
    // With `.ice/mcp.toml`, the upstream MCP servers are started so tools mapped to MCP actions can be executed
    // here; their calls run on this async runtime while the loop blocks on the main thread.
    let io = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .thread_name("ice-agent-io")
        .build()
        .map_err(|e| CliError::Coded(ErrorCode::StoreUnavailable, format!("cannot start the async runtime: {e}")))?;
    let mcp = io.block_on(crate::mcp::prepare_with(home, &mut rt, vec![Box::new(model.clone())]))?;
    if mcp.is_none() {
        let mut effectors = home.open_effectors()?;
        effectors.insert(Box::new(model.clone()));
        rt.set_effectors(Arc::new(effectors));
    }
    let me = caller.principal().to_string();
    eprintln!("agent {} as {me} in run {run}", config.agent.name);
    let agent = Agent::new(Arc::new(rt), caller, config, run, model, blobs).reporting(|line| eprintln!("{line}"));
    let stop = agent.run().map_err(|e| CliError::Coded(e.code, e.message))?;
    if json_out {
        println!(
            "{}",
            json!({"run_id": run.to_string(), "agent": me, "reason": stop.reason.as_str(), "detail": stop.message})
        );
    } else {
        println!("{}: {}", stop.reason.as_str(), stop.message);
    }
    Ok(match stop.reason {
        StopReason::Finished => exit::OK,
        StopReason::Refused => exit::DENIED,
        StopReason::ProviderFailed => exit::EFFECT_FAILED,
        StopReason::StepLimit => exit::INCOMPLETE,
    })
}

/// One `ice agent run` per principal and run on this home: a second one would interleave its steps with the first
/// (and take the first's open start for a crash). Held, as an OS file lock, until the process exits.
fn lock(home: &IceHome, principal: &str, run: &str) -> Result<std::fs::File, CliError> {
    let failed = |e: std::io::Error| CliError::Coded(ErrorCode::StoreUnavailable, format!("agent lock: {e}"));
    let dir = home.dir().join("agents");
    std::fs::create_dir_all(&dir).map_err(failed)?;
    let name: String = principal.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let path = dir.join(format!("{name}-{run}.lock"));
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(failed)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(CliError::Coded(
            ErrorCode::AgentRunning,
            format!("{principal} is already running in run {run} (another `ice agent run` holds {})", path.display()),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(failed(e)),
    }
}

fn provider(home: &IceHome, section: &ProviderSection) -> Result<Arc<dyn Provider>, CliError> {
    match section {
        ProviderSection::Openai { base_url, model, api_key, timeout_secs } => {
            let config = OpenAiConfig {
                base_url: base_url.clone(),
                model: model.clone(),
                api_key: api_key.clone(),
                timeout_secs: timeout_secs.unwrap_or(120),
            };
            let client = OpenAiCompatible::new(config, home.config().effects.secrets.clone())
                .map_err(|e| CliError::Coded(e.code(), e.to_string()))?;
            Ok(Arc::new(client))
        }
        ProviderSection::Scripted { replies, .. } => {
            let text = std::fs::read_to_string(replies).map_err(|e| {
                CliError::Coded(ErrorCode::BadConfig, format!("cannot read the script {}: {e}", replies.display()))
            })?;
            let scripted = Scripted::from_json(&text).map_err(|e| CliError::Coded(e.code(), e.to_string()))?;
            Ok(Arc::new(scripted))
        }
    }
}
