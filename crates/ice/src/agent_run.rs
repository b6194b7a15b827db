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
    let mut effectors = home.open_effectors()?;
    let blobs = effectors.blobs().clone();
    let model = ModelEffector::new(provider, config.provider.model(), blobs.clone(), config.agent.store_prompts);
    effectors.insert(Box::new(model.clone()));
    rt.set_effectors(Arc::new(effectors));
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
