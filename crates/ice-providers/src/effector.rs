//! The model call as an effect: `model.call` with args `{"model", "prompt": "blake3:<hash>", "max_tokens"}` on
//! resource `model:<model>`. Asking a model is proposed, decided (grants, Cedar, and the token budget, reserved
//! before the call) and executed through a permit like any other action; its outcome records the prompt and
//! response hashes and the token usage the provider reported, which the runtime settles into the `tokens` budget.
//!
//! The prompt itself is not in the ledger, only its hash: whoever proposes the call first hands the request to
//! [`ModelEffector::stage`] (in the same process), and the effector sends only a staged request whose hash is the
//! one the permit names. The response is kept as a blob (its key is the response hash), so the conversation can be
//! rebuilt from the ledger and the blob store; with `store_prompts`, so is each prompt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use ice_core::{Classification, ErrorCode};
use ice_effects::{BlobStore, Compensation, EffectCall, EffectError, Effector, Evidence, Plan, RetryMode};
use serde_json::{Value, json};

use crate::{Provider, Request, hash_of};

/// The action a model call is proposed as.
pub const MODEL_ACTION: &str = "model.call";

/// Most prompts staged at once (an agent stages one at a time; the bound keeps a misbehaving caller small).
const MAX_STAGED: usize = 64;

/// Serves `model.call` for one model through one provider. Clones share their staged prompts (one goes into the
/// runtime's effectors, the agent keeps another to stage with).
#[derive(Clone)]
pub struct ModelEffector(Arc<Inner>);

struct Inner {
    provider: Arc<dyn Provider>,
    model: String,
    blobs: BlobStore,
    store_prompts: bool,
    staged: Mutex<HashMap<String, Request>>,
}

impl std::fmt::Debug for ModelEffector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelEffector").field("model", &self.0.model).finish_non_exhaustive()
    }
}

impl ModelEffector {
    /// An effector asking `provider` for completions of `model`, keeping responses in `blobs`.
    pub fn new(provider: Arc<dyn Provider>, model: &str, blobs: BlobStore, store_prompts: bool) -> Self {
        Self(Arc::new(Inner { provider, model: model.to_owned(), blobs, store_prompts, staged: Mutex::default() }))
    }

    /// The resource a call of this model names.
    pub fn resource(&self) -> String {
        format!("model:{}", self.0.model)
    }

    /// Hands `request` over for a later `model.call` and returns how that call names it (`blake3:<hash>`).
    pub fn stage(&self, request: &Request) -> String {
        let hash = hash_of(request);
        let mut staged = self.0.staged.lock().unwrap_or_else(PoisonError::into_inner);
        if staged.len() >= MAX_STAGED {
            staged.clear();
        }
        staged.insert(hash.clone(), request.clone());
        format!("blake3:{hash}")
    }

    /// The args of a call of `request` (staged first).
    pub fn call_args(&self, request: &Request) -> Value {
        json!({"model": self.0.model, "prompt": self.stage(request), "max_tokens": request.max_tokens})
    }

    fn target(&self, call: &EffectCall<'_>) -> Result<(String, Option<u64>), EffectError> {
        ice_effects::check_args_hash(call)?;
        let bad = |m: String| EffectError::new(ErrorCode::BadArgument, m);
        let model = call.args.get("model").and_then(Value::as_str).unwrap_or_default();
        if model != self.0.model || call.resource != self.resource() {
            return Err(bad(format!(
                "this process serves model `{}` (resource `{}`), not `{model}` on `{}`",
                self.0.model,
                self.resource(),
                call.resource
            )));
        }
        let prompt = call.args.get("prompt").and_then(Value::as_str).and_then(|p| p.strip_prefix("blake3:"));
        let Some(prompt) = prompt else {
            return Err(bad("model.call names its prompt as `blake3:<hash>`".into()));
        };
        let max_tokens = match call.args.get("max_tokens") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| bad("max_tokens must be a whole number".into()))?),
        };
        Ok((prompt.to_owned(), max_tokens))
    }
}

impl Effector for ModelEffector {
    fn name(&self) -> &'static str {
        "model"
    }

    fn actions(&self) -> &'static [&'static str] {
        &[MODEL_ACTION]
    }

    fn classification(&self, _: &str) -> Option<Classification> {
        None
    }

    fn plan(&self, call: &EffectCall<'_>) -> Result<Plan, EffectError> {
        let (prompt, _) = self.target(call)?;
        if !self.0.staged.lock().unwrap_or_else(PoisonError::into_inner).contains_key(&prompt) {
            return Err(EffectError::new(
                ErrorCode::BadArgument,
                format!(
                    "prompt blake3:{prompt} was not handed to this process; only the agent that built it can send it"
                ),
            ));
        }
        Ok(Plan {
            target: call.resource.to_owned(),
            input_hash: prompt,
            before: None,
            expected_after: None,
            compensation: Compensation::Nothing,
            // Apply runs once per start; a crash in between leaves the call unknown and it is asked anew.
            retry: RetryMode::Journal,
        })
    }

    fn apply(&self, call: &EffectCall<'_>, _plan: &Plan) -> Result<Evidence, EffectError> {
        let (prompt, max_tokens) = self.target(call)?;
        let staged = self.0.staged.lock().unwrap_or_else(PoisonError::into_inner).remove(&prompt);
        let Some(mut request) = staged else {
            return Err(EffectError::new(ErrorCode::BadArgument, format!("prompt blake3:{prompt} is not staged")));
        };
        request.max_tokens = max_tokens;
        if hash_of(&request) != prompt {
            return Err(EffectError::new(ErrorCode::ArgsMismatch, "max_tokens differs from the staged prompt's"));
        }
        let prompt_blob = if self.0.store_prompts {
            let text = ice_core::CanonicalJson::from_serialize(&request)
                .map_err(|r| EffectError::new(r.code, r.message.clone()))?;
            Some(self.0.blobs.put(text.as_str().as_bytes())?)
        } else {
            None
        };
        let exchange = self.0.provider.complete(&request).map_err(|e| EffectError::new(e.code(), e.to_string()))?;
        let response = ice_core::CanonicalJson::from_serialize(&exchange.message)
            .map_err(|r| EffectError::new(r.code, r.message.clone()))?;
        let blob = self.0.blobs.put(response.as_str().as_bytes())?;
        let usage = exchange.usage;
        Ok(Evidence {
            output_hash: exchange.response_hash,
            output_bytes: response.as_str().len() as u64,
            output_blob: Some(blob),
            after: None,
            bytes: 0,
            detail: json!({"model": self.0.model, "prompt_hash": exchange.prompt_hash, "prompt_blob": prompt_blob,
                "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                "tool_calls": exchange.message.tool_calls.len()}),
            already_applied: false,
            tokens: Some(usage.total()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, Scripted, Usage};

    fn call<'a>(args: &'a Value, canonical: &'a str, hash: &'a str, resource: &'a str) -> EffectCall<'a> {
        EffectCall {
            action: MODEL_ACTION,
            resource,
            args,
            canonical_args: canonical,
            args_hash: hash,
            idempotency_key: "k1",
        }
    }

    #[test]
    fn only_a_staged_prompt_is_sent_and_usage_is_measured() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path()).unwrap();
        let reply = Message::text("assistant", "hello");
        let provider = Arc::new(Scripted::new([(reply.clone(), Usage { prompt_tokens: 30, completion_tokens: 5 })]));
        let fx = ModelEffector::new(provider, "m1", blobs.clone(), true);
        let request = Request { messages: vec![Message::text("user", "hi")], tools: vec![], max_tokens: Some(9) };

        // Not staged (another process's prompt, or a forged hash): refused before anything is sent.
        let forged = json!({"model": "m1", "prompt": format!("blake3:{}", "0".repeat(64)), "max_tokens": 9});
        let (c, h) = ice_core::proposal::canonical_args(&forged.to_string()).unwrap();
        assert_eq!(fx.plan(&call(&forged, c.as_str(), &h, "model:m1")).unwrap_err().code, ErrorCode::BadArgument);

        let args = fx.call_args(&request);
        let (c, h) = ice_core::proposal::canonical_args(&args.to_string()).unwrap();
        let wrong_model = call(&args, c.as_str(), &h, "model:m2");
        assert!(fx.plan(&wrong_model).is_err());
        let ok = call(&args, c.as_str(), &h, "model:m1");
        let plan = fx.plan(&ok).unwrap();
        let evidence = fx.apply(&ok, &plan).unwrap();
        assert_eq!(evidence.tokens, Some(35));
        let stored: Message =
            serde_json::from_slice(&blobs.get(evidence.output_blob.as_ref().unwrap()).unwrap()).unwrap();
        assert_eq!(stored, reply);
        assert_eq!(evidence.output_hash, hash_of(&reply));
        let prompt_blob = evidence.detail["prompt_blob"].as_str().unwrap();
        assert_eq!(ice_effects::content_hash(&blobs.get(prompt_blob).unwrap()), hash_of(&request));
        // Used once: the staged prompt is gone.
        assert!(fx.apply(&ok, &plan).is_err());
    }
}
