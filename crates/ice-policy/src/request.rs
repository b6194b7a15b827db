//! Turning an ICE request (principal, action, resource, classification, cost, run, time, args) into Cedar values
//! directly, with Cedar's typed constructors: no JSON text is built or parsed per request.
//!
//! # How args are converted
//!
//! The proposal's args (a JSON object) become the record `context.args`:
//!
//! | JSON                       | Cedar                                                                    |
//! |----------------------------|--------------------------------------------------------------------------|
//! | object                     | record (a field whose value is `null` is left out: `null` means absent)  |
//! | array                      | set (order and duplicates are lost; `null` elements are an error)        |
//! | string                     | `String`                                                                 |
//! | `true` / `false`           | `Bool`                                                                   |
//! | integer within `i64`       | `Long` (larger integers are an error; ICE keeps integers below 2^53)     |
//! | number with a fraction/exponent | `String` holding the JSON number text, e.g. `"0.25"`: Cedar has no floats, and its `decimal` keeps only 4 digits; declare such args as `String` |
//!
//! Nesting deeper than [`MAX_ARGS_DEPTH`] is an error. Every conversion error, like an args record that does not
//! match the action's declared `args` type, makes the verdict `Error` (the caller denies).

use std::sync::Arc;

use cedar_policy::{Context, Entities, EntityUid, Request, RestrictedExpression};
use ice_core::canonical::type_name;
use ice_core::{Access, Classification, Cost, Dimension, EffectScope, Principal, Risk, RunId, RunState, Timestamp};
use serde_json::Value;

/// Deepest accepted nesting of arrays and objects inside args.
pub const MAX_ARGS_DEPTH: usize = 64;

/// Longest error message kept in a verdict (Cedar may print the whole context, args included).
const MAX_MESSAGE_CHARS: usize = 600;

/// Everything the policy set decides on. Borrowed, so building one costs nothing.
#[derive(Clone, Copy, Debug)]
pub struct PolicyRequest<'a> {
    /// Who asks; becomes `Ice::<Kind>::"<name>"`.
    pub principal: &'a Principal,
    /// The action name, e.g. `fs.write`; becomes `Ice::Action::"fs.write"`.
    pub action: &'a str,
    /// What is touched, e.g. `file:/sandbox/report.md`; becomes `Ice::Resource::"file:/sandbox/report.md"` with
    /// `scheme` (`file`) and `path` (`/sandbox/report.md`).
    pub resource: &'a str,
    /// The run, if any (`context.run_id`, `""` when none).
    pub run_id: Option<RunId>,
    /// The run's state, if any (`context.run_state`, e.g. `EXECUTING`, `""` when none).
    pub run_state: Option<RunState>,
    /// The runtime's classification (`context.classification`).
    pub classification: Classification,
    /// The declared cost estimate (`context.cost`, every dimension present).
    pub cost: &'a Cost,
    /// The decision time (`context.time_us`, microseconds since the epoch).
    pub time: Timestamp,
    /// The proposal args, a JSON object (`context.args`; see the module docs for the conversion).
    pub args: &'a Value,
}

/// A Cedar request and its entities, built once; [`crate::PolicyEngine::is_authorized_prepared`] runs Cedar on it
/// and nothing else (a baseline for benchmarks).
pub struct PreparedRequest {
    pub(crate) request: Request,
    pub(crate) entities: Arc<EntityPair>,
}

impl std::fmt::Debug for PreparedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedRequest").field("request", &self.request.to_string()).finish_non_exhaustive()
    }
}

/// The principal and resource uids of a request with the entity store holding them (and the schema's action
/// entities). Depends only on (principal, resource), so it is cached.
pub(crate) struct EntityPair {
    pub(crate) principal: EntityUid,
    pub(crate) resource: EntityUid,
    pub(crate) entities: Entities,
}

/// Splits `scheme:path`; without a `:` the scheme is empty and the path is the whole string.
pub fn split_resource(resource: &str) -> (&str, &str) {
    resource.split_once(':').unwrap_or(("", resource))
}

/// The Cedar context for a request.
pub(crate) fn context(r: &PolicyRequest<'_>) -> Result<Context, String> {
    let args = match r.args {
        Value::Object(_) => args_value(r.args, 0).map_err(|e| e.describe())?,
        other => return Err(format!("args must be a JSON object, not {}", type_name(other))),
    };
    let c = r.classification;
    let classification = record([
        ("scope", RestrictedExpression::new_string(scope_str(c.scope).to_owned())),
        ("access", RestrictedExpression::new_string(access_str(c.access).to_owned())),
        ("risk", RestrictedExpression::new_string(risk_str(c.risk).to_owned())),
        ("risk_level", RestrictedExpression::new_long(c.risk.level())),
    ])?;
    let amount = |d: Dimension| RestrictedExpression::new_long(i64::try_from(r.cost.get(d)).unwrap_or(i64::MAX));
    let cost = record(Dimension::ALL.map(|d| (d.as_str(), amount(d))))?;
    let run_id = r.run_id.map(|id| id.to_string()).unwrap_or_default();
    let run_state = r.run_state.map(RunState::as_str).unwrap_or_default();
    Context::from_pairs([
        ("run_id".to_owned(), RestrictedExpression::new_string(run_id)),
        ("run_state".to_owned(), RestrictedExpression::new_string(run_state.to_owned())),
        ("classification".to_owned(), classification),
        ("cost".to_owned(), cost),
        ("time_us".to_owned(), RestrictedExpression::new_long(r.time.micros())),
        ("args".to_owned(), args),
    ])
    .map_err(|e| shorten(format!("cannot build the request context: {}", crate::error::chain(&e))))
}

fn record<const N: usize>(fields: [(&str, RestrictedExpression); N]) -> Result<RestrictedExpression, String> {
    RestrictedExpression::new_record(fields.map(|(k, v)| (k.to_owned(), v)))
        .map_err(|e| format!("cannot build a context record: {e}"))
}

/// The string ICE passes for an effect scope.
pub fn scope_str(s: EffectScope) -> &'static str {
    match s {
        EffectScope::Internal => "internal",
        EffectScope::External => "external",
    }
}

/// The string ICE passes for an access mode.
pub fn access_str(a: Access) -> &'static str {
    match a {
        Access::Read => "read",
        Access::Write => "write",
        Access::Irreversible => "irreversible",
    }
}

/// The string ICE passes for a risk level.
pub fn risk_str(r: Risk) -> &'static str {
    match r {
        Risk::Low => "low",
        Risk::Medium => "medium",
        Risk::High => "high",
        Risk::Critical => "critical",
    }
}

/// An args conversion failure; the field path is collected while unwinding, so success costs nothing.
struct ArgsError {
    path: Vec<String>,
    message: String,
}

impl ArgsError {
    fn new(message: String) -> Self {
        Self { path: Vec::new(), message }
    }

    fn at(mut self, segment: String) -> Self {
        self.path.push(segment);
        self
    }

    fn describe(self) -> String {
        let path: String = self.path.into_iter().rev().collect();
        shorten(format!("args{path}: {}", self.message))
    }
}

/// Converts one JSON value (see the module docs).
fn args_value(v: &Value, depth: usize) -> Result<RestrictedExpression, ArgsError> {
    if depth > MAX_ARGS_DEPTH {
        return Err(ArgsError::new(format!("nested deeper than {MAX_ARGS_DEPTH} levels")));
    }
    Ok(match v {
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => RestrictedExpression::new_long(i),
            None if n.is_f64() => RestrictedExpression::new_string(n.to_string()),
            None => return Err(ArgsError::new(format!("the integer {n} does not fit a Cedar Long (i64)"))),
        },
        Value::Array(items) => {
            let mut set = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                if item.is_null() {
                    return Err(ArgsError::new("null is not allowed inside an array".to_owned()).at(format!("[{i}]")));
                }
                set.push(args_value(item, depth + 1).map_err(|e| e.at(format!("[{i}]")))?);
            }
            RestrictedExpression::new_set(set)
        }
        Value::Object(map) => {
            let mut fields = Vec::with_capacity(map.len());
            for (k, item) in map {
                if item.is_null() {
                    continue;
                }
                fields.push((k.clone(), args_value(item, depth + 1).map_err(|e| e.at(format!(".{k}")))?));
            }
            RestrictedExpression::new_record(fields).map_err(|e| ArgsError::new(e.to_string()))?
        }
        Value::Null => return Err(ArgsError::new("null is not a Cedar value".to_owned())),
    })
}

/// Caps a message at [`MAX_MESSAGE_CHARS`] characters.
pub(crate) fn shorten(message: String) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resources_split_at_the_first_colon() {
        assert_eq!(split_resource("file:/a:b"), ("file", "/a:b"));
        assert_eq!(split_resource("plain"), ("", "plain"));
        assert_eq!(split_resource("https://x.test/"), ("https", "//x.test/"));
    }

    #[test]
    fn args_errors_name_the_field() {
        let e = args_value(&json!({"a": {"b": [1, null]}}), 0).err().unwrap().describe();
        assert_eq!(e, "args.a.b[1]: null is not allowed inside an array");
        let e = args_value(&json!({"n": u64::MAX}), 0).err().unwrap().describe();
        assert!(e.starts_with("args.n: the integer 18446744073709551615"), "{e}");
        let mut deep = json!(1);
        for _ in 0..=MAX_ARGS_DEPTH {
            deep = json!([deep]);
        }
        assert!(args_value(&json!({ "d": deep }), 0).is_err());
    }

    #[test]
    fn floats_become_strings_and_nulls_absent() {
        let v = args_value(&json!({"x": 0.25, "gone": null, "s": ["a", "a"]}), 0).ok().unwrap();
        let text = Context::from_pairs([("args".to_owned(), v)]).unwrap().to_string();
        assert_eq!(text, r#"{args: {s: ["a"], x: "0.25"}}"#);
    }

    #[test]
    fn long_messages_are_shortened() {
        assert_eq!(shorten("é".repeat(MAX_MESSAGE_CHARS + 5)).chars().count(), MAX_MESSAGE_CHARS + 1);
        assert_eq!(shorten("ok".to_owned()), "ok");
    }
}
