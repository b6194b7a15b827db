//! The binding between a call and its permit: the args-hash re-check every effector runs first, the content
//! hash used everywhere in this crate, typed args parsing, and [`OwnedCall`] for building calls outside the runtime.

use ice_core::ErrorCode;
use ice_core::canonical::type_name;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::{EffectCall, EffectError};

/// Hex blake3 of `bytes`: the one content hash of this crate (blob keys, plan and evidence hashes).
pub fn content_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Checks that the call's args are exactly the permitted ones: blake3 of `canonical_args` must equal `args_hash`,
/// and `canonical_args` must parse to `args`. Every effector calls this before anything else, in `plan` and in
/// `apply`, so a runtime bug cannot hand an effector args other than those the permit was bound to.
pub fn check_args_hash(call: &EffectCall<'_>) -> Result<(), EffectError> {
    let actual = content_hash(call.canonical_args.as_bytes());
    if actual != call.args_hash {
        return Err(EffectError::new(
            ErrorCode::ArgsMismatch,
            format!(
                "{}: the canonical args hash to {actual}, but the permit is bound to args hash `{}`",
                call.action, call.args_hash
            ),
        ));
    }
    let parsed: Value = serde_json::from_str(call.canonical_args).map_err(|e| {
        EffectError::new(ErrorCode::ArgsMismatch, format!("{}: the canonical args are not JSON: {e}", call.action))
    })?;
    if parsed != *call.args {
        return Err(EffectError::new(
            ErrorCode::ArgsMismatch,
            format!("{}: the parsed args differ from the canonical args the permit is bound to", call.action),
        ));
    }
    Ok(())
}

/// Parses the call's args into an effector's typed args (which deny unknown fields).
pub(crate) fn parse_args<T: DeserializeOwned>(call: &EffectCall<'_>) -> Result<T, EffectError> {
    T::deserialize(call.args)
        .map_err(|e| EffectError::new(ErrorCode::BadArgument, format!("{}: invalid args: {e}", call.action)))
}

/// For an optional args field checked by hand: a present field (even `null`) is `Some`, an absent one is `None`
/// (with `#[serde(default)]`).
pub(crate) fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// The entries of an optional `args.<field>` that must be a JSON array of strings (a Cedar `Set<String>`), each of
/// the form `form` (e.g. `NAME=value`); absent is empty. Anything else, an object in particular, is refused with a
/// message (without the action prefix) that shows the expected form.
pub(crate) fn string_entries(value: Option<Value>, field: &str, form: &str) -> Result<Vec<String>, String> {
    let expected = format!("args.{field} must be an array of \"{form}\" strings");
    let items = match value {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(Value::Object(_)) => {
            return Err(format!("{expected}, not an object: write each entry as \"{form}\""));
        }
        Some(other) => return Err(format!("{expected}, not {}", type_name(&other))),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s),
            other => Err(format!("{expected}; entry {i} is {}", type_name(&other))),
        })
        .collect()
}

/// Refuses a call routed to an effector that does not serve its action.
pub(crate) fn no_effector(effector: &str, action: &str) -> EffectError {
    EffectError::new(ErrorCode::NoEffector, format!("the {effector} effector does not serve action `{action}`"))
}

/// A call that owns its parts, with the canonical args and their hash computed here: for callers that do not
/// hold a permit record (tests, tools, rollback drivers building a compensation call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedCall {
    /// The action.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// The args, parsed.
    pub args: Value,
    /// RFC 8785 canonical text of `args`.
    pub canonical_args: String,
    /// Hex blake3 of `canonical_args`.
    pub args_hash: String,
    /// The idempotency key.
    pub idempotency_key: String,
}

impl OwnedCall {
    /// Canonicalises `args` and hashes them.
    pub fn new(
        action: impl Into<String>,
        resource: impl Into<String>,
        args: Value,
        idempotency_key: impl Into<String>,
    ) -> Result<Self, EffectError> {
        let canonical_args = serde_json_canonicalizer::to_string(&args)
            .map_err(|e| EffectError::new(ErrorCode::BadArgument, format!("args cannot be canonicalised: {e}")))?;
        let args_hash = content_hash(canonical_args.as_bytes());
        Ok(Self {
            action: action.into(),
            resource: resource.into(),
            args,
            canonical_args,
            args_hash,
            idempotency_key: idempotency_key.into(),
        })
    }

    /// Borrows it as the [`EffectCall`] effectors take.
    pub fn call(&self) -> EffectCall<'_> {
        EffectCall {
            action: &self.action,
            resource: &self.resource,
            args: &self.args,
            canonical_args: &self.canonical_args,
            args_hash: &self.args_hash,
            idempotency_key: &self.idempotency_key,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn matching_args_pass() {
        let owned = OwnedCall::new("fs.read", "file:a", json!({"path": "a"}), "k").unwrap();
        assert_eq!(owned.canonical_args, r#"{"path":"a"}"#);
        check_args_hash(&owned.call()).unwrap();
    }

    #[test]
    fn wrong_hash_or_other_args_are_refused() {
        let owned = OwnedCall::new("fs.read", "file:a", json!({"path": "a"}), "k").unwrap();
        let other_hash = content_hash(b"x");
        let mut call = owned.call();
        call.args_hash = &other_hash;
        assert_eq!(check_args_hash(&call).unwrap_err().code, ErrorCode::ArgsMismatch);

        let other_args = json!({"path": "b"});
        let mut call = owned.call();
        call.args = &other_args;
        assert_eq!(check_args_hash(&call).unwrap_err().code, ErrorCode::ArgsMismatch);
    }

    #[test]
    fn string_entries_take_only_arrays_of_strings() {
        assert_eq!(string_entries(None, "env", "NAME=value"), Ok(Vec::new()));
        assert_eq!(string_entries(Some(json!([])), "env", "NAME=value"), Ok(Vec::new()));
        assert_eq!(
            string_entries(Some(json!(["A=1", "B="])), "env", "NAME=value"),
            Ok(vec!["A=1".into(), "B=".into()])
        );
        let object = string_entries(Some(json!({"A": "1"})), "env", "NAME=value").unwrap_err();
        assert!(object.contains("args.env must be an array of \"NAME=value\" strings, not an object"), "{object}");
        for (value, kind) in
            [(json!(null), "null"), (json!("A=1"), "a string"), (json!(["A=1", 2]), "entry 1 is a number")]
        {
            let err = string_entries(Some(value), "env", "NAME=value").unwrap_err();
            assert!(err.contains(kind), "{err}");
        }
    }
}
