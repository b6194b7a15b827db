//! Model providers: where an agent's intent comes from. A provider turns a conversation into the model's next
//! message; what the message asks for — its tool calls — becomes [`Intent`]s, each of which the agent loop
//! submits as a proposal (action, resource, canonical args). Nothing a model says is executed: it is parsed,
//! proposed and decided like any other proposal.
//!
//! Two providers behind [`Provider`]: [`OpenAiCompatible`] (the chat-completions API with tools, spoken by
//! llama.cpp's server, ollama, vLLM and hosted APIs; `http://` base URLs, the key read from the environment
//! variable its configuration names, never stored) and [`Scripted`] (deterministic replies for tests and the
//! demo). Every exchange is summarised by [`Exchange`]: the prompt and response hashes (blake3 of their canonical
//! JSON) and the token usage, which the agent loop records as cost.

mod effector;
mod openai;
mod scripted;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use effector::{MODEL_ACTION, ModelEffector};
pub use openai::{OpenAiCompatible, OpenAiConfig};
pub use scripted::Scripted;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Its text (may be empty for an assistant message that only calls tools).
    #[serde(default)]
    pub content: String,
    /// The tool calls of an assistant message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a `tool` message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A message with only text.
    pub fn text(role: &str, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into(), tool_calls: Vec::new(), tool_call_id: None }
    }
}

/// A tool the model may call: its name, what it does, and its arguments' JSON Schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// The name the model uses.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its arguments.
    pub parameters: Value,
}

/// A tool call as the model made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The model's id for the call.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments as the model wrote them (JSON text: it may be malformed).
    pub arguments: String,
}

/// Token usage of one completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
}

impl Usage {
    /// Both.
    pub fn total(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// What a provider is asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// The tools the model may call.
    pub tools: Vec<ToolSpec>,
    /// Most tokens to generate.
    pub max_tokens: Option<u64>,
}

/// The model's answer, with what the audit keeps of the exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    /// The assistant message.
    pub message: Message,
    /// Token usage (as the provider reported it; zero when it did not).
    pub usage: Usage,
    /// blake3 of the canonical JSON of the request.
    pub prompt_hash: String,
    /// blake3 of the canonical JSON of the assistant message.
    pub response_hash: String,
}

/// Why a provider gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider could not be reached or answered with an error status.
    #[error("model provider unavailable: {0}")]
    Unavailable(String),
    /// The answer was not a chat completion.
    #[error("model provider answered garbage: {0}")]
    Garbage(String),
    /// The configuration is wrong (URL, key reference).
    #[error("model provider misconfigured: {0}")]
    Config(String),
}

impl ProviderError {
    /// The stable code.
    pub fn code(&self) -> ice_core::ErrorCode {
        match self {
            Self::Unavailable(_) | Self::Garbage(_) => ice_core::ErrorCode::EffectFailed,
            Self::Config(_) => ice_core::ErrorCode::BadConfig,
        }
    }
}

/// A source of model messages.
pub trait Provider: Send + Sync {
    /// The model's next message for `request`.
    fn complete(&self, request: &Request) -> Result<Exchange, ProviderError>;
}

/// What a tool call asks to do, once its arguments are parsed: the input of a proposal. A call whose arguments
/// are not a JSON object is an [`Intent::Malformed`], which the agent loop records and answers without
/// proposing anything.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// A call to propose.
    Call {
        /// The model's id for the call (the tool message answering it names it).
        call_id: String,
        /// The tool.
        tool: String,
        /// Its arguments.
        args: serde_json::Map<String, Value>,
    },
    /// A call whose arguments could not be used.
    Malformed {
        /// The model's id for the call.
        call_id: String,
        /// The tool.
        tool: String,
        /// Why.
        reason: String,
    },
}

/// The intents of an assistant message, in order.
pub fn intents(message: &Message) -> Vec<Intent> {
    message
        .tool_calls
        .iter()
        .map(|c| {
            let (call_id, tool) = (c.id.clone(), c.name.clone());
            let text = if c.arguments.trim().is_empty() { "{}" } else { c.arguments.as_str() };
            match ice_core::canonical::parse_untrusted(text) {
                Ok(Value::Object(args)) => Intent::Call { call_id, tool, args },
                Ok(_) => Intent::Malformed { call_id, tool, reason: "the arguments are not a JSON object".into() },
                Err(r) => {
                    Intent::Malformed { call_id, tool, reason: format!("the arguments are not JSON: {}", r.message) }
                }
            }
        })
        .collect()
}

/// blake3 (hex) of the canonical JSON of `value` (of a [`Request`]: the prompt hash; of a [`Message`]: the
/// response hash).
pub fn hash_of<T: Serialize>(value: &T) -> String {
    let canonical = ice_core::CanonicalJson::from_serialize(value).map(|c| c.as_str().to_owned()).unwrap_or_default();
    blake3::hash(canonical.as_bytes()).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_calls_become_intents_or_are_refused() {
        let call = |args: &str| ToolCall { id: "c1".into(), name: "fs__read".into(), arguments: args.into() };
        let msg = Message {
            role: "assistant".into(),
            content: String::new(),
            tool_calls: vec![
                call(r#"{"path":"a.txt"}"#),
                call("not json"),
                call("[1]"),
                call(""),
                call(r#"{"a":1,"a":2}"#),
            ],
            tool_call_id: None,
        };
        let got = intents(&msg);
        assert!(matches!(&got[0], Intent::Call { args, .. } if args["path"] == "a.txt"));
        assert!(matches!(&got[1], Intent::Malformed { reason, .. } if reason.contains("not JSON")));
        assert!(matches!(&got[2], Intent::Malformed { reason, .. } if reason.contains("not a JSON object")));
        assert!(matches!(&got[3], Intent::Call { args, .. } if args.is_empty()));
        assert!(matches!(&got[4], Intent::Malformed { .. }), "duplicate keys are refused (I-JSON)");
    }
}
