//! The declared type of each action's `context.args`, read from the schema.
//!
//! Two uses. (1) Explaining a refused request: Cedar says "context is not valid for action"; this says which
//! field is missing, mistyped or undeclared. (2) The fast path: for an args type made only of `String`, `Long`,
//! `Bool`, sets and records ([`Shape::is_exact`]), [`explain`] decides exactly what Cedar's request validation
//! would decide about the converted args (a differential property test holds it to that), so the engine checks
//! args itself and skips Cedar's per-request schema validation, which costs about as much as evaluating the
//! policies. Any other type (entities, extension types) falls back to Cedar's validation.

use std::collections::{BTreeMap, HashMap};

use cedar_policy::SchemaFragment;
use serde_json::Value;

use crate::engine::NAMESPACE;

/// How deep common-type references are followed (guards against cycles; Cedar forbids them anyway).
const MAX_TYPE_DEPTH: usize = 32;

/// A declared type, as far as args can express it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    String,
    Long,
    Bool,
    Set(Box<Shape>),
    /// Attributes with whether each is required.
    Record(BTreeMap<String, (Shape, bool)>),
    /// Something else (an entity type, an extension type, a type this module cannot resolve).
    Other(String),
}

impl Shape {
    /// Whether the type is made only of types [`explain`] checks exactly.
    pub(crate) fn is_exact(&self) -> bool {
        match self {
            Self::String | Self::Long | Self::Bool => true,
            Self::Set(e) => e.is_exact(),
            Self::Record(attrs) => attrs.values().all(|(s, _)| s.is_exact()),
            Self::Other(_) => false,
        }
    }

    /// The smallest JSON value of this type (required fields only), to probe the schema with at compile time.
    pub(crate) fn sample(&self) -> Value {
        match self {
            Self::String | Self::Other(_) => Value::String(String::new()),
            Self::Long => Value::from(0),
            Self::Bool => Value::Bool(false),
            Self::Set(_) => Value::Array(Vec::new()),
            Self::Record(attrs) => Value::Object(
                attrs
                    .iter()
                    .filter(|(_, (_, required))| *required)
                    .map(|(k, (s, _))| (k.clone(), s.sample()))
                    .collect(),
            ),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::String => "String".to_owned(),
            Self::Long => "Long".to_owned(),
            Self::Bool => "Bool".to_owned(),
            Self::Set(e) => format!("Set<{}>", e.describe()),
            Self::Record(_) => "a record".to_owned(),
            Self::Other(name) => name.clone(),
        }
    }
}

/// The args shape of every `Ice::Action` that declares a context with an `args` attribute.
pub(crate) fn args_shapes(schema_text: &str) -> HashMap<String, Shape> {
    let json = SchemaFragment::from_cedarschema_str(schema_text).ok().and_then(|(f, _)| f.to_json_value().ok());
    let Some(ns) = json.as_ref().and_then(|j| j.get(NAMESPACE)) else { return HashMap::new() };
    let common = ns.get("commonTypes").and_then(Value::as_object);
    let mut out = HashMap::new();
    for (name, action) in ns.get("actions").and_then(Value::as_object).into_iter().flatten() {
        let Some(context) = action.get("appliesTo").and_then(|a| a.get("context")) else { continue };
        if let Shape::Record(attrs) = shape(context, common, 0)
            && let Some((args, _)) = attrs.get("args")
        {
            out.insert(name.clone(), args.clone());
        }
    }
    out
}

fn shape(t: &Value, common: Option<&serde_json::Map<String, Value>>, depth: usize) -> Shape {
    if depth > MAX_TYPE_DEPTH {
        return Shape::Other("a deeply nested type".to_owned());
    }
    let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
    match t.get("type").and_then(Value::as_str).unwrap_or_default() {
        "String" => Shape::String,
        "Long" => Shape::Long,
        "Boolean" | "Bool" => Shape::Bool,
        "Set" => {
            Shape::Set(Box::new(t.get("element").map_or(Shape::Other("?".into()), |e| shape(e, common, depth + 1))))
        }
        "Record" => {
            let mut attrs = BTreeMap::new();
            for (k, v) in t.get("attributes").and_then(Value::as_object).into_iter().flatten() {
                let required = v.get("required").and_then(Value::as_bool).unwrap_or(true);
                attrs.insert(k.clone(), (shape(v, common, depth + 1), required));
            }
            Shape::Record(attrs)
        }
        "EntityOrCommon" => {
            let local = name.strip_prefix(&format!("{NAMESPACE}::")).unwrap_or(name);
            match (local, common.and_then(|c| c.get(local))) {
                (_, Some(def)) => shape(def, common, depth + 1),
                ("String", None) => Shape::String,
                ("Long", None) => Shape::Long,
                ("Bool" | "Boolean", None) => Shape::Bool,
                _ => Shape::Other(format!("the entity type {name}")),
            }
        }
        other => Shape::Other(if name.is_empty() { other.to_owned() } else { name.to_owned() }),
    }
}

/// The first way `args` (JSON, before conversion) does not fit `shape`, if one can be named. For an exact shape
/// and args that convert (see [`crate::request`]), `None` means Cedar accepts the converted args.
pub(crate) fn explain(args: &Value, shape: &Shape) -> Option<String> {
    mismatch(args, shape, "args".to_owned())
}

fn mismatch(v: &Value, shape: &Shape, at: String) -> Option<String> {
    let got = match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number (passed as a String)",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    let fits = match (shape, v) {
        (Shape::Other(_), _) => return None,
        (Shape::String, Value::String(_)) | (Shape::Bool, Value::Bool(_)) => true,
        // Fractional numbers are passed as strings (see `request`).
        (Shape::String, Value::Number(n)) => n.is_f64(),
        (Shape::Long, Value::Number(n)) => !n.is_f64(),
        (Shape::Set(element), Value::Array(items)) => {
            return items.iter().enumerate().find_map(|(i, item)| mismatch(item, element, format!("{at}[{i}]")));
        }
        (Shape::Record(attrs), Value::Object(fields)) => return record_mismatch(fields, attrs, &at),
        _ => false,
    };
    (!fits).then(|| format!("{at} must be {}, not {got}", shape.describe()))
}

fn record_mismatch(
    fields: &serde_json::Map<String, Value>,
    attrs: &BTreeMap<String, (Shape, bool)>,
    at: &str,
) -> Option<String> {
    for (name, (shape, required)) in attrs {
        match fields.get(name).filter(|v| !v.is_null()) {
            Some(v) => {
                if let Some(m) = mismatch(v, shape, format!("{at}.{name}")) {
                    return Some(m);
                }
            }
            None if *required => return Some(format!("{at}.{name} ({}) is missing", shape.describe())),
            None => {}
        }
    }
    let declared: Vec<&str> = attrs.keys().map(String::as_str).collect();
    fields
        .iter()
        .find(|(k, v)| !v.is_null() && !attrs.contains_key(*k))
        .map(|(k, _)| format!("{at}.{k} is not declared in the schema (declared: {})", declared.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_schema_shapes_explain_mismatches() {
        let shapes = args_shapes(crate::DEFAULT_SCHEMA);
        let write = &shapes["fs.write"];
        assert_eq!(explain(&json!({"path": "/a"}), write).unwrap(), "args.content (String) is missing");
        assert_eq!(
            explain(&json!({"path": 1, "content": ""}), write).unwrap(),
            "args.path must be String, not an integer"
        );
        assert_eq!(
            explain(&json!({"path": "/a", "content": "", "mode": 1}), write).unwrap(),
            "args.mode is not declared in the schema (declared: content, path)"
        );
        assert_eq!(explain(&json!({"path": "/a", "content": "x", "gone": null}), write), None);
        let exec = &shapes["process.exec"];
        assert_eq!(explain(&json!({"argv": ["a", 2]}), exec).unwrap(), "args.argv[1] must be String, not an integer");
        assert_eq!(explain(&json!({"argv": []}), exec), None);
        let model = &shapes["model.call"];
        assert_eq!(
            explain(&json!({"model": "m", "max_tokens": 1.5}), model).unwrap(),
            "args.max_tokens must be Long, not a fractional number (passed as a String)"
        );
        assert!(!shapes.contains_key("fs"));
    }
}
