//! The demo's last act: `agent:planner` as an agent loop (what `ice agent run` does) on the offline scripted model.
//! Every model call is a governed `model.call` whose token estimate is reserved against the agent's budget; the
//! model's tool calls are proposals; a call the policy forbids never runs and the model is told why.

use std::sync::Arc;

use ice_agent::{Agent, AgentConfig};
use ice_core::Dimension;
use ice_core::budget::{BudgetKey, BudgetScope, Period};
use ice_providers::{Message, ModelEffector, Scripted, ToolCall, Usage};
use ice_runtime::{Caller, GrantInput, IceHome, Runtime};

use crate::render::CliError;

const CONFIG: &str = r#"
[agent]
name = "planner-loop"
task = "Write a one-line brief of reports/q3.md into reports/q3-brief.md"
max_tokens = 200

[provider]
kind = "scripted"
replies = "(in memory)"

[[tools]]
name = "read_file"
action = "fs.read"

[[tools]]
name = "write_file"
action = "fs.write"
"#;

/// What the scripted model answers, in conversation order.
fn script() -> Scripted {
    let calls = |calls: &[(&str, &str)]| Message {
        role: "assistant".into(),
        content: String::new(),
        tool_calls: calls
            .iter()
            .enumerate()
            .map(|(i, (name, args))| ToolCall {
                id: format!("call_{i}"),
                name: (*name).into(),
                arguments: (*args).into(),
            })
            .collect(),
        tool_call_id: None,
    };
    let usage = |prompt_tokens, completion_tokens| Usage { prompt_tokens, completion_tokens };
    Scripted::new([
        (calls(&[("read_file", r#"{"path":"reports/q3.md"}"#)]), usage(95, 12)),
        (
            calls(&[
                ("write_file", r#"{"path":"reports/q3-brief.md","content":"Q3 in one line: revenue up 4%.\n"}"#),
                ("write_file", r#"{"path":"reports/secrets/brief.md","content":"also here"}"#),
            ]),
            usage(160, 40),
        ),
        (Message::text("assistant", "The brief is in reports/q3-brief.md."), usage(260, 11)),
    ])
}

/// Adds the scripted model to `rt`'s effectors (before the runtime is shared).
pub fn install_model(home: &IceHome, rt: &mut Runtime) -> Result<ModelEffector, CliError> {
    let mut effectors = home.open_effectors()?;
    let model = ModelEffector::new(Arc::new(script()), "scripted", effectors.blobs().clone(), false);
    effectors.insert(Box::new(model.clone()));
    rt.set_effectors(Arc::new(effectors));
    Ok(model)
}

/// Runs the loop in a fifth run.
pub fn scenario(rt: &Arc<Runtime>, alice: &Caller, planner: &Caller, model: ModelEffector) -> Result<(), CliError> {
    crate::demo::step(
        "a fifth run: agent:planner as an agent loop (`ice agent run`) on the offline scripted model; each model \
         call is a governed model.call whose token estimate is reserved against a 1,000-token budget",
    );
    let run = rt.create_run(alice, Some("agent loop".into()))?;
    for _ in 0..3 {
        rt.advance_run(alice, run.id, None, None)?;
    }
    let grant = |actions: &[&str], resource: &str| GrantInput {
        principal: planner.principal().clone(),
        run: Some(run.id),
        actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        resource: resource.into(),
        ttl_micros: Some(3_600_000_000),
        max_uses: None,
        revocable: true,
    };
    rt.issue_grant(alice, &grant(&["model.call"], "model:scripted"))?;
    rt.issue_grant(alice, &grant(&["fs.read", "fs.write"], "file:reports/"))?;
    let tokens = BudgetKey {
        scope: BudgetScope::Agent { principal: planner.principal().clone() },
        dimension: Dimension::Tokens,
        period: Period::Total,
    };
    rt.set_budget(alice, tokens, 1_000)?;
    let config: AgentConfig = toml::from_str(CONFIG)
        .map_err(|e| CliError::Coded(ice_core::ErrorCode::BadConfig, format!("the demo's agent config: {e}")))?;
    let blobs = rt
        .effector_registry()
        .map(|e| e.blobs().clone())
        .ok_or_else(|| CliError::Coded(ice_core::ErrorCode::NoEffector, "the demo home has no effectors".into()))?;
    let agent =
        Agent::new(rt.clone(), planner.clone(), config, run.id, model, blobs).reporting(|line| println!("  {line}"));
    let stop = agent.run().map_err(|e| CliError::Coded(e.code, e.message))?;
    println!("  → {}: {}", stop.reason.as_str(), stop.message);
    let now = rt.now();
    let usage = rt.with_state(|s| s.authority().budgets().usage(now))?;
    for u in usage.iter().filter(|u| u.budget.contains("tokens")) {
        println!("  {}: {} of {} spent, as the model reported them", u.budget, u.spent, u.limit);
    }
    let r = rt.finish_run(alice, run.id)?;
    println!("  → run {} ({})", r.state, r.last_reason.unwrap_or_default());
    Ok(())
}
