//! Arguments checked against a tool's input schema before anything is proposed: a call whose arguments the tool
//! would reject anyway is refused here, with the field named, instead of being decided and permitted.
//!
//! The subset of JSON Schema that tool schemas use for their top level and that matters for a refusal: `type`
//! of each declared property (including `integer`, and lists of types), `required`, and
//! `additionalProperties: false`. Nested schemas are left to the tool (and Cedar's typed `args`).

use serde_json::{Map, Value};

/// Why the arguments do not fit the schema.
pub fn check(schema: &Map<String, Value>, args: &Map<String, Value>) -> Result<(), String> {
    let properties = schema.get("properties").and_then(Value::as_object);
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !args.contains_key(name) {
                return Err(format!("argument `{name}` is required"));
            }
        }
    }
    for (name, value) in args {
        match properties.and_then(|p| p.get(name)) {
            Some(prop) => {
                if let Some(expected) = prop.get("type")
                    && !type_matches(expected, value)
                {
                    return Err(format!("argument `{name}` must be {}", describe(expected)));
                }
            }
            None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                return Err(format!("argument `{name}` is not one the tool takes"));
            }
            None => {}
        }
    }
    Ok(())
}

fn type_matches(expected: &Value, value: &Value) -> bool {
    match expected {
        Value::String(t) => one_type(t, value),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).any(|t| one_type(t, value)),
        _ => true,
    }
}

fn one_type(t: &str, value: &Value) -> bool {
    match t {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.as_i64().is_some() || value.as_u64().is_some(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn describe(expected: &Value) -> String {
    match expected {
        Value::String(t) => format!("of type {t}"),
        other => format!("one of the types {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn required_types_and_extra_fields() {
        let schema = obj(json!({"type": "object", "properties": {"path": {"type": "string"},
            "head": {"type": "integer"}, "tags": {"type": ["array", "null"]}},
            "required": ["path"], "additionalProperties": false}));
        assert!(check(&schema, &obj(json!({"path": "a.txt"}))).is_ok());
        assert!(check(&schema, &obj(json!({"path": "a", "head": 3, "tags": null}))).is_ok());
        assert!(check(&schema, &obj(json!({}))).unwrap_err().contains("`path` is required"));
        assert!(check(&schema, &obj(json!({"path": 5}))).unwrap_err().contains("of type string"));
        assert!(check(&schema, &obj(json!({"path": "a", "head": 1.5}))).unwrap_err().contains("integer"));
        assert!(check(&schema, &obj(json!({"path": "a", "x": 1}))).unwrap_err().contains("not one the tool takes"));
        let open = obj(json!({"type": "object", "properties": {}}));
        assert!(check(&open, &obj(json!({"anything": 1}))).is_ok());
    }
}
