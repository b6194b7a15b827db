//! The agent's configuration file (`ice agent run --config FILE`, TOML):
//!
//! ```toml
//! [agent]
//! name = "summariser"           # names this agent in its lifecycle events (its principal is its token's)
//! task = "Summarise notes/today.md into reports/summary.md"
//! system = "You are careful."   # optional system message
//! max_steps = 20                # model calls in the run, over every start (default 20)
//! max_tokens = 512              # per completion (default 512)
//! approval_timeout_secs = 300   # how long a call waits for a human before it is answered "not approved"
//! store_prompts = false         # also keep every prompt as a blob (its hash is always recorded)
//!
//! [agent.memory]                # optional: recall memory once, searching for the task (a recorded MemoryRead)
//! namespace = "team"            # the agent needs a grant of memory.read on memory:team
//! k = 5
//!
//! [provider]
//! kind = "openai"               # openai | scripted
//! base_url = "http://127.0.0.1:8080/v1"
//! model = "qwen2.5-7b-instruct"
//! api_key = "${secret:OPENAI_API_KEY}"
//! # kind = "scripted": replies = "replies.json" (a JSON array of {content, tool_calls, usage}), model = "…"
//!
//! [[tools]]                     # what the model may ask for; each call is proposed as `action`
//! name = "read_file"
//! action = "fs.read"
//! description = "Read a text file of the sandbox"   # optional for ICE's own actions
//! # parameters = { … JSON Schema … }                 # optional for ICE's own actions
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// What the agent does.
    pub agent: AgentSection,
    /// Where its model is.
    pub provider: ProviderSection,
    /// What the model may ask for.
    #[serde(default)]
    pub tools: Vec<ToolSection>,
}

/// `[agent]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// A name for this agent's lifecycle events.
    pub name: String,
    /// The task, given to the model as the first user message.
    pub task: String,
    /// The system message.
    #[serde(default)]
    pub system: Option<String>,
    /// Most model calls in the run, counted over every start.
    #[serde(default = "default_max_steps")]
    pub max_steps: u32,
    /// Most tokens per completion.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u64,
    /// How long a call waits for an approver.
    #[serde(default = "default_approval_timeout")]
    pub approval_timeout_secs: u64,
    /// Keep every prompt as a blob as well as its hash.
    #[serde(default)]
    pub store_prompts: bool,
    /// Recall memory once at the start of the run: a search for the task (recorded as `MemoryRead` in the run),
    /// whose items the model is shown as a system message in every request.
    #[serde(default)]
    pub memory: Option<MemorySection>,
}

/// `[agent.memory]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySection {
    /// Only this namespace and those below it (the agent needs a grant of `memory.read` on it).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Items recalled (1-50, default 5).
    #[serde(default = "default_recall")]
    pub k: usize,
}

fn default_recall() -> usize {
    5
}

fn default_max_steps() -> u32 {
    20
}
fn default_max_tokens() -> u64 {
    512
}
fn default_approval_timeout() -> u64 {
    300
}

/// `[provider]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProviderSection {
    /// An OpenAI-compatible chat-completions server.
    Openai {
        /// The API base, e.g. `http://127.0.0.1:8080/v1`.
        base_url: String,
        /// The model name.
        model: String,
        /// The key as a secret reference.
        #[serde(default)]
        api_key: Option<String>,
        /// Longest one completion may take.
        #[serde(default)]
        timeout_secs: Option<u64>,
    },
    /// Replies read from a JSON file, in order (offline; tests and demos).
    Scripted {
        /// The file (relative to the configuration file).
        replies: PathBuf,
        /// The model name recorded (default `scripted`).
        #[serde(default = "default_scripted_model")]
        model: String,
    },
}

fn default_scripted_model() -> String {
    "scripted".into()
}

impl ProviderSection {
    /// The model name proposals name (`model:<name>` is the resource of every model call).
    pub fn model(&self) -> &str {
        match self {
            Self::Openai { model, .. } | Self::Scripted { model, .. } => model,
        }
    }
}

/// `[[tools]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSection {
    /// The name the model calls it by (`[A-Za-z0-9_-]{1,64}`).
    pub name: String,
    /// The catalog action each call is proposed as.
    pub action: String,
    /// What it does (default: ICE's description of the action).
    #[serde(default)]
    pub description: Option<String>,
    /// JSON Schema of its arguments (default: ICE's schema of the action).
    #[serde(default)]
    pub parameters: Option<Value>,
    /// The resource every call names, for actions that are not ICE's own (an MCP tool's is
    /// `mcp:<server>/<tool>`); ICE's own actions name what their args name (`file:<path>`, `process:<argv[0]>`,
    /// the URL).
    #[serde(default)]
    pub resource: Option<String>,
}

impl AgentConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut config: Self = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if let ProviderSection::Scripted { replies, .. } = &mut config.provider
            && replies.is_relative()
        {
            *replies = path.parent().unwrap_or(Path::new(".")).join(&*replies);
        }
        config.check().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(config)
    }

    /// What `load` refuses besides syntax.
    pub fn check(&self) -> Result<(), String> {
        if self.agent.name.trim().is_empty() || self.agent.task.trim().is_empty() {
            return Err("[agent] name and task must not be empty".into());
        }
        if self.agent.max_steps == 0 || self.agent.max_tokens == 0 {
            return Err("[agent] max_steps and max_tokens must be at least 1".into());
        }
        if self.provider.model().trim().is_empty() || self.provider.model().chars().any(char::is_whitespace) {
            return Err("[provider] model must be a name without spaces".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.tools {
            let ok_name = !t.name.is_empty()
                && t.name.len() <= 64
                && t.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok_name {
                return Err(format!("tool name `{}`: use 1-64 of A-Z a-z 0-9 _ -", t.name));
            }
            if !seen.insert(t.name.as_str()) {
                return Err(format!("tool `{}` is listed twice", t.name));
            }
            if t.action == crate::MODEL_ACTION {
                return Err(format!("tool `{}`: the model cannot call `{}` itself", t.name, crate::MODEL_ACTION));
            }
            let own = builtin(&t.action).is_some();
            if !own && (t.parameters.is_none() || t.resource.is_none()) {
                return Err(format!(
                    "tool `{}`: action `{}` is not one of ICE's own (fs.*, process.exec, http.request), so give its \
                     `parameters` (JSON Schema), `resource` and `description`",
                    t.name, t.action
                ));
            }
            if own && t.resource.is_some() {
                return Err(format!("tool `{}`: ICE's own actions name their resource from their args", t.name));
            }
            if let Some(p) = &t.parameters
                && p.get("type").and_then(Value::as_str) != Some("object")
            {
                return Err(format!("tool `{}`: parameters must be a JSON Schema of type object", t.name));
            }
        }
        Ok(())
    }

    /// The tools as the model sees them.
    pub fn tool_specs(&self) -> Vec<ice_providers::ToolSpec> {
        self.tools
            .iter()
            .map(|t| {
                let (description, parameters) = builtin(&t.action).unwrap_or_default();
                ice_providers::ToolSpec {
                    name: t.name.clone(),
                    description: t.description.clone().unwrap_or_else(|| description.to_owned()),
                    parameters: t.parameters.clone().unwrap_or(parameters),
                }
            })
            .collect()
    }

    /// The configured tool named `name`.
    pub fn tool(&self, name: &str) -> Option<&ToolSection> {
        self.tools.iter().find(|t| t.name == name)
    }
}

impl ToolSection {
    /// The resource a call with `args` names: the configured one, or what ICE's own action's args name.
    pub fn resource(&self, args: &serde_json::Map<String, Value>) -> Result<String, String> {
        if let Some(r) = &self.resource {
            return Ok(r.clone());
        }
        let text = |k: &str| args.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        let missing = |k: &str| format!("{} needs a non-empty string `{k}`", self.action);
        match self.action.as_str() {
            a if a.starts_with("fs.") => text("path").map(|p| format!("file:{p}")).ok_or_else(|| missing("path")),
            "process.exec" => args
                .get("argv")
                .and_then(|v| v.get(0))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(|p| format!("process:{p}"))
                .ok_or_else(|| "process.exec needs `argv` with a program first".into()),
            "http.request" => text("url").map(str::to_owned).ok_or_else(|| missing("url")),
            other => Err(format!("{other} has no resource configured")),
        }
    }
}

/// ICE's description and argument schema of one of its own actions.
fn builtin(action: &str) -> Option<(&'static str, Value)> {
    let object = |props: Value, required: &[&str]| json!({"type": "object", "properties": props, "required": required});
    let path = json!({"type": "string", "description": "a path relative to the sandbox"});
    Some(match action {
        "fs.read" => ("Read a file of the sandbox.", object(json!({"path": path}), &["path"])),
        "fs.list" => ("List a directory of the sandbox.", object(json!({"path": path}), &["path"])),
        "fs.delete" => ("Delete a file of the sandbox.", object(json!({"path": path}), &["path"])),
        "fs.write" | "fs.append" => (
            if action == "fs.write" { "Write a file of the sandbox." } else { "Append to a file of the sandbox." },
            object(json!({"path": path, "content": {"type": "string"}}), &["path", "content"]),
        ),
        "process.exec" => (
            "Run a program (argv[0] and its arguments; no shell).",
            object(
                json!({"argv": {"type": "array", "items": {"type": "string"}}, "stdin": {"type": "string"},
                    "cwd": {"type": "string"}}),
                &["argv"],
            ),
        ),
        "http.request" => (
            "Make an HTTP request.",
            object(
                json!({"method": {"type": "string"}, "url": {"type": "string"}, "body": {"type": "string"},
                    "headers": {"type": "array", "items": {"type": "string"}}}),
                &["method", "url"],
            ),
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, String> {
        let c: AgentConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.check().map(|()| c)
    }

    const BASE: &str = r#"
[agent]
name = "a"
task = "t"
[provider]
kind = "scripted"
replies = "r.json"
"#;

    #[test]
    fn defaults_and_builtin_tools() {
        let c = parse(&format!("{BASE}\n[[tools]]\nname = \"read\"\naction = \"fs.read\"\n")).unwrap();
        assert_eq!((c.agent.max_steps, c.agent.max_tokens, c.agent.store_prompts), (20, 512, false));
        assert_eq!(c.provider.model(), "scripted");
        let specs = c.tool_specs();
        assert_eq!(specs[0].name, "read");
        assert_eq!(specs[0].parameters["required"], json!(["path"]));
        let args = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(c.tools[0].resource(&args(json!({"path": "a/b.md"}))).unwrap(), "file:a/b.md");
        assert!(c.tools[0].resource(&args(json!({"path": 3}))).is_err());
    }

    #[test]
    fn mistakes_are_refused_with_the_reason() {
        let bad = |extra: &str, why: &str| {
            let err = parse(&format!("{BASE}\n{extra}")).unwrap_err();
            assert!(err.contains(why), "{extra}: {err}");
        };
        bad("[[tools]]\nname = \"x y\"\naction = \"fs.read\"", "tool name");
        bad("[[tools]]\nname = \"m\"\naction = \"model.call\"", "cannot call");
        bad("[[tools]]\nname = \"t\"\naction = \"mcp.s.t\"", "parameters");
        bad("[[tools]]\nname = \"r\"\naction = \"fs.read\"\nresource = \"file:x\"", "from their args");
        bad("[[tools]]\nname = \"r\"\naction = \"fs.read\"\n[[tools]]\nname = \"r\"\naction = \"fs.list\"", "twice");
        bad("[[tools]]\nname = \"r\"\naction = \"fs.read\"\ncolour = 1", "unknown field");
        assert!(parse(BASE.replace("name = \"a\"", "name = \"\"").as_str()).is_err());
    }
}
