//! The OpenAI-compatible chat-completions client (`POST <base>/chat/completions` with `tools`), over plain
//! HTTP/1.1 with the HTTP effector's client, `ice_effects::post` (`http://` base URLs: local servers such as llama.cpp, ollama, vLLM, or a TLS-terminating proxy in
//! front of a hosted API). The API key is a secret reference (`${secret:NAME}`, declared under
//! `[effects.secrets]`), read at each request and sent only in the `Authorization` header.

use std::collections::BTreeMap;
use std::time::Duration;

use ice_effects::SecretSource;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Exchange, Message, Provider, ProviderError, Request, ToolCall, Usage, hash_of};

/// Largest answer read.
const MAX_RESPONSE_BYTES: u64 = 16 << 20;

/// How to reach a model.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// The API base, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// The model name sent in each request.
    pub model: String,
    /// The API key as a secret reference, e.g. `${secret:OPENAI_API_KEY}` (absent: no key is sent).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Longest one completion may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    120
}

/// The client.
#[derive(Debug, Clone)]
pub struct OpenAiCompatible {
    config: OpenAiConfig,
    /// `<base_url>/chat/completions`.
    url: String,
    secrets: BTreeMap<String, SecretSource>,
}

impl OpenAiCompatible {
    /// A client for `config`, resolving its key reference against `secrets` at each request.
    pub fn new(config: OpenAiConfig, secrets: BTreeMap<String, SecretSource>) -> Result<Self, ProviderError> {
        let rest = config.base_url.strip_prefix("http://").ok_or_else(|| {
            ProviderError::Config(format!(
                "base_url `{}`: only http:// is supported (put a TLS-terminating proxy in front of a hosted API)",
                config.base_url
            ))
        })?;
        if rest.starts_with('/') || rest.is_empty() || config.model.trim().is_empty() {
            return Err(ProviderError::Config("base_url needs a host and model a name".into()));
        }
        if let Some(key) = &config.api_key
            && !key.contains("${secret:")
        {
            return Err(ProviderError::Config(
                "api_key must be a secret reference (${secret:NAME}), never the key itself".into(),
            ));
        }
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        Ok(Self { url, config, secrets })
    }

    fn body(&self, request: &Request) -> Value {
        let messages: Vec<Value> = request
            .messages
            .iter()
            .map(|m| {
                let mut v = json!({"role": m.role, "content": m.content});
                if !m.tool_calls.is_empty() {
                    v["tool_calls"] = m
                        .tool_calls
                        .iter()
                        .map(|c| {
                            json!({"id": c.id, "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments}})
                        })
                        .collect();
                }
                if let Some(id) = &m.tool_call_id {
                    v["tool_call_id"] = json!(id);
                }
                v
            })
            .collect();
        let mut body = json!({"model": self.config.model, "messages": messages});
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| {
                    json!({"type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters}})
                })
                .collect();
        }
        if let Some(max) = request.max_tokens {
            body["max_tokens"] = json!(max);
        }
        body
    }

    fn post(&self, body: &str) -> Result<(u16, String), ProviderError> {
        let mut headers = vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("Accept".to_owned(), "application/json".to_owned()),
        ];
        if let Some(reference) = &self.config.api_key {
            let key = ice_effects::resolve_references(&self.secrets, "provider api_key", reference)
                .map_err(|e| ProviderError::Config(e.message))?;
            headers.push(("Authorization".to_owned(), format!("Bearer {key}")));
        }
        let limit = Duration::from_secs(self.config.timeout_secs.max(1));
        let reply = ice_effects::post(&self.url, &headers, body.as_bytes(), limit, MAX_RESPONSE_BYTES)
            .map_err(ProviderError::Unavailable)?;
        Ok((reply.status, String::from_utf8_lossy(&reply.body).into_owned()))
    }
}

/// The assistant message of a chat completion.
fn parse(text: &str) -> Result<(Message, Usage), ProviderError> {
    let v: Value = serde_json::from_str(text).map_err(|e| ProviderError::Garbage(format!("not JSON: {e}")))?;
    let msg = &v["choices"][0]["message"];
    if !msg.is_object() {
        return Err(ProviderError::Garbage("no choices[0].message".into()));
    }
    let tool_calls = msg["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .map(|c| ToolCall {
                    id: c["id"].as_str().unwrap_or_default().to_owned(),
                    name: c["function"]["name"].as_str().unwrap_or_default().to_owned(),
                    // Some servers send the arguments as an object rather than its JSON text.
                    arguments: match &c["function"]["arguments"] {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    },
                })
                .collect()
        })
        .unwrap_or_default();
    let message = Message {
        role: "assistant".into(),
        content: msg["content"].as_str().unwrap_or_default().to_owned(),
        tool_calls,
        tool_call_id: None,
    };
    let usage = Usage {
        prompt_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
        completion_tokens: v["usage"]["completion_tokens"].as_u64().unwrap_or(0),
    };
    Ok((message, usage))
}

impl Provider for OpenAiCompatible {
    fn complete(&self, request: &Request) -> Result<Exchange, ProviderError> {
        let body = self.body(request);
        let (status, text) = self.post(&body.to_string())?;
        if !(200..300).contains(&status) {
            let excerpt: String = text.chars().take(300).collect();
            return Err(ProviderError::Unavailable(format!("HTTP {status}: {excerpt}")));
        }
        let (message, usage) = parse(&text)?;
        Ok(Exchange { response_hash: hash_of(&message), prompt_hash: hash_of(&body), message, usage })
    }
}
