//! A deterministic provider for tests and the demo: the reply to a request is the N-th scripted reply, where N is
//! the number of assistant messages the request already holds. The answer depends on the conversation only, never
//! on what this process asked before, so an agent restarted mid-run gets the reply it would have got. Past the end
//! of the script it answers a plain "done" (no tool calls), which ends an agent loop.

use crate::{Exchange, Message, Provider, ProviderError, Request, Usage, hash_of};

/// Scripted replies with their token usage.
#[derive(Debug, Default)]
pub struct Scripted {
    replies: Vec<(Message, Usage)>,
}

impl Scripted {
    /// A provider answering `replies` in conversation order.
    pub fn new(replies: impl IntoIterator<Item = (Message, Usage)>) -> Self {
        Self { replies: replies.into_iter().collect() }
    }

    /// Reads a script: a JSON array of `{"content", "tool_calls": [{"id", "name", "arguments"}], "usage":
    /// {"prompt_tokens", "completion_tokens"}}` (every field optional).
    pub fn from_json(text: &str) -> Result<Self, ProviderError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Reply {
            #[serde(default)]
            content: String,
            #[serde(default)]
            tool_calls: Vec<crate::ToolCall>,
            #[serde(default)]
            usage: Usage,
        }
        let replies: Vec<Reply> = serde_json::from_str(text)
            .map_err(|e| ProviderError::Config(format!("a script is a JSON array of replies: {e}")))?;
        Ok(Self::new(replies.into_iter().map(|r| {
            let message =
                Message { role: "assistant".into(), content: r.content, tool_calls: r.tool_calls, tool_call_id: None };
            (message, r.usage)
        })))
    }
}

impl Provider for Scripted {
    fn complete(&self, request: &Request) -> Result<Exchange, ProviderError> {
        let answered = request.messages.iter().filter(|m| m.role == "assistant").count();
        let (message, usage) = self
            .replies
            .get(answered)
            .cloned()
            .unwrap_or_else(|| (Message::text("assistant", "done"), Usage::default()));
        Ok(Exchange { prompt_hash: hash_of(request), response_hash: hash_of(&message), message, usage })
    }
}
