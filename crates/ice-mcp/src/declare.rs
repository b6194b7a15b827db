//! Catalog and schema declarations for MCP tools: every tool a gateway serves is an action, and an action must be
//! in the catalog (`policy.toml`, which classifies it) and declared in the Cedar schema with its arguments' types
//! before any call of it can be allowed. This writes those declarations from the tools' input schemas, so an
//! operator reviews a classification instead of typing Cedar.
//!
//! JSON Schema → Cedar: `string` → `String`; `integer` and `number` → `Long` (a fractional number does not fit,
//! so such a call is denied — fail closed); `boolean` → `Bool`; arrays of those → `Set<…>`; objects with
//! `properties` → records; properties not listed in `required` are optional (`?`). A tool whose arguments have
//! no Cedar equivalent (arrays of objects, untyped values) is not declared, with the reason: its calls stay
//! refused as unknown actions.

use std::path::Path;

use serde_json::{Map, Value};

/// One action to declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    /// The action (`mcp.<server>.<tool>`).
    pub action: String,
    /// `read`, `write` or `irreversible`.
    pub access: String,
    /// `low`, `medium`, `high` or `critical`.
    pub risk: String,
    /// The Cedar record fields of `context.args`, e.g. `path: String, head?: Long`.
    pub cedar_args: String,
}

/// The Cedar type of one JSON Schema.
fn cedar_type(schema: &Value) -> Result<String, String> {
    let ty = schema.get("type").and_then(Value::as_str).ok_or("a value without one JSON type")?;
    Ok(match ty {
        "string" => "String".into(),
        "integer" | "number" => "Long".into(),
        "boolean" => "Bool".into(),
        "array" => {
            let items = schema.get("items").ok_or("an array without `items`")?;
            let inner = cedar_type(items)?;
            if inner.starts_with('{') {
                return Err("an array of objects".into());
            }
            format!("Set<{inner}>")
        }
        "object" => {
            let props = schema.get("properties").and_then(Value::as_object).ok_or("an object without `properties`")?;
            format!("{{ {} }}", record_fields(props, schema)?)
        }
        other => return Err(format!("type `{other}`")),
    })
}

fn record_fields(props: &Map<String, Value>, schema: &Value) -> Result<String, String> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut fields = Vec::new();
    for (name, prop) in props {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(format!("argument name `{name}` is not a Cedar identifier"));
        }
        let ty = cedar_type(prop).map_err(|e| format!("argument `{name}`: {e}"))?;
        let optional = if required.contains(&name.as_str()) { "" } else { "?" };
        fields.push(format!("{name}{optional}: {ty}"));
    }
    Ok(fields.join(", "))
}

/// The Cedar fields of `context.args` for a tool's input schema.
pub fn cedar_args(input_schema: &Map<String, Value>) -> Result<String, String> {
    let schema = Value::Object(input_schema.clone());
    let props = input_schema.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    record_fields(&props, &schema)
}

/// Appends to `policies_dir`'s `policy.toml` and `schema.cedarschema` the declarations whose action is not
/// declared there yet (schema declarations go before the file's last `}`, closing the `Ice` namespace). Returns
/// the actions added. The set is not activated: that stays an operator's governed act (`ice policy activate`).
pub fn declare(policies_dir: &Path, decls: &[Declaration]) -> Result<Vec<String>, String> {
    let catalog_path = policies_dir.join("policy.toml");
    let schema_path = policies_dir.join("schema.cedarschema");
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let mut catalog = read(&catalog_path)?;
    let schema = read(&schema_path)?;
    let close = schema.rfind('}').ok_or_else(|| format!("{} has no namespace to add to", schema_path.display()))?;
    let (mut head, tail) = (schema[..close].to_owned(), schema[close..].to_owned());
    let mut added = Vec::new();
    for d in decls {
        let in_catalog = catalog.contains(&format!("[actions.\"{}\"]", d.action));
        let in_schema = head.contains(&format!("action \"{}\"", d.action));
        if in_catalog && in_schema {
            continue;
        }
        if !in_catalog {
            catalog.push_str(&format!(
                "\n[actions.\"{}\"]\nscope = \"external\"\naccess = \"{}\"\nrisk = \"{}\"\n",
                d.action, d.access, d.risk
            ));
        }
        if !in_schema {
            head.push_str(&format!(
                "  action \"{}\" appliesTo {{\n    principal: [Agent, Human, Runtime, Policy, Effector],\n    \
                 resource: [Resource],\n    context: {{\n      run_id: String, run_state: String, \
                 classification: Classification, cost: Cost, time_us: Long,\n      args: {{ {} }},\n    }},\n  }};\n",
                d.action, d.cedar_args
            ));
        }
        added.push(d.action.clone());
    }
    let write =
        |p: &Path, text: &str| std::fs::write(p, text).map_err(|e| format!("cannot write {}: {e}", p.display()));
    write(&catalog_path, &catalog)?;
    write(&schema_path, &format!("{head}{tail}"))?;
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn json_schemas_become_cedar_records() {
        let s = obj(json!({"type": "object", "properties": {"path": {"type": "string"}, "head": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}}, "opts": {"type": "object",
            "properties": {"dry": {"type": "boolean"}}, "required": ["dry"]}}, "required": ["path"]}));
        assert_eq!(cedar_args(&s).unwrap(), "path: String, head?: Long, tags?: Set<String>, opts?: { dry: Bool }");
        let edits = obj(json!({"properties": {"edits": {"type": "array", "items": {"type": "object",
            "properties": {"a": {"type": "string"}}}}}}));
        assert!(cedar_args(&edits).unwrap_err().contains("array of objects"));
        assert!(cedar_args(&obj(json!({"properties": {"x": {}}}))).is_err());
        assert!(cedar_args(&obj(json!({"properties": {"bad-name": {"type": "string"}}}))).is_err());
    }
}
