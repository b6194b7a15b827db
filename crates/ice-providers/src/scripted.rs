//! A deterministic provider: replies given in advance, in order (for tests and the demo). When the script runs
//! out it answers with a plain "done" message (no tool calls), which ends an agent loop.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::{Exchange, Message, Provider, ProviderError, Request, Usage, hash_of};

/// Scripted replies with their token usage.
#[derive(Debug, Default)]
pub struct Scripted {
    replies: Mutex<VecDeque<(Message, Usage)>>,
}

impl Scripted {
    /// A provider answering `replies` in order.
    pub fn new(replies: impl IntoIterator<Item = (Message, Usage)>) -> Self {
        Self { replies: Mutex::new(replies.into_iter().collect()) }
    }
}

impl Provider for Scripted {
    fn complete(&self, request: &Request) -> Result<Exchange, ProviderError> {
        let next = self.replies.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop_front();
        let (message, usage) = next.unwrap_or_else(|| (Message::text("assistant", "done"), Usage::default()));
        Ok(Exchange { prompt_hash: hash_of(request), response_hash: hash_of(&message), message, usage })
    }
}
