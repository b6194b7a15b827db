//! Canonical JSON (RFC 8785) payloads, canonicalised once at intake.
//!
//! Canonicalisation costs 3–5 µs per value (12× plain serde_json), so it happens exactly once, when untrusted
//! input enters; the canonical bytes are stored and hashed as they are. Never hash `serde_json::to_vec` output:
//! `cedar-policy` turns on serde_json's `preserve_order`, which makes plain output insertion-ordered.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::error::{ErrorCode, Rejection};

/// Parses untrusted JSON text in one pass, refusing an object that names the same member twice (I-JSON,
/// RFC 7493 §2.3): parsers disagree on which one wins, so what a policy saw and what an effector would use could
/// differ. Invalid JSON is `MalformedJson`; a repeated member is `BadPayloadStructure`.
pub fn parse_untrusted(text: &str) -> Result<Value, Rejection> {
    use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};

    struct Unique(Value);
    struct UniqueVisitor;

    impl<'de> Deserialize<'de> for Unique {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(UniqueVisitor)
        }
    }

    impl<'de> Visitor<'de> for UniqueVisitor {
        type Value = Unique;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Unique, E> {
            Ok(Unique(Value::Bool(v)))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Unique, E> {
            Ok(Unique(Value::from(v)))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Unique, E> {
            Ok(Unique(Value::from(v)))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Unique, E> {
            Ok(Unique(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Unique, E> {
            Ok(Unique(Value::String(v.to_owned())))
        }
        fn visit_string<E>(self, v: String) -> Result<Unique, E> {
            Ok(Unique(Value::String(v)))
        }
        fn visit_unit<E>(self) -> Result<Unique, E> {
            Ok(Unique(Value::Null))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
            let mut items = Vec::new();
            while let Some(Unique(v)) = seq.next_element::<Unique>()? {
                items.push(v);
            }
            Ok(Unique(Value::Array(items)))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
            let mut members = serde_json::Map::new();
            while let Some(key) = map.next_key::<String>()? {
                let Unique(value) = map.next_value::<Unique>()?;
                if members.contains_key(&key) {
                    return Err(A::Error::custom(format!("the member `{key}` appears twice in one object")));
                }
                members.insert(key, value);
            }
            Ok(Unique(Value::Object(members)))
        }
    }

    serde_json::from_str::<Unique>(text).map(|Unique(v)| v).map_err(|e| {
        if e.classify() == serde_json::error::Category::Data {
            Rejection::new(
                ErrorCode::BadPayloadStructure,
                format!("{e}; JSON objects must not repeat a member name (I-JSON, RFC 7493)"),
            )
        } else {
            Rejection::new(ErrorCode::MalformedJson, format!("payload is not valid JSON: {e}"))
        }
    })
}

/// Largest accepted payload, in bytes of input text.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Deepest accepted nesting of arrays and objects.
pub const MAX_DEPTH: usize = 64;
/// Largest integer magnitude that survives every JSON implementation (2^53 − 1).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A JSON object in RFC 8785 canonical form. Only [`CanonicalJson::parse`], [`CanonicalJson::from_value`] and
/// [`CanonicalJson::from_serialize`] create checked values; [`CanonicalJson::from_stored`] trusts bytes read
/// back from a ledger, whose integrity the hash chain covers.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CanonicalJson(String);

impl CanonicalJson {
    /// The empty object `{}`.
    pub fn empty() -> Self {
        Self("{}".to_owned())
    }

    /// Parses untrusted text, checks its structure and canonicalises it.
    pub fn parse(text: &str) -> Result<Self, Rejection> {
        if text.len() > MAX_PAYLOAD_BYTES {
            return Err(Rejection::new(
                ErrorCode::BadPayloadStructure,
                format!("payload is {} bytes; the limit is {MAX_PAYLOAD_BYTES}", text.len()),
            ));
        }
        Self::from_value(&parse_untrusted(text)?)
    }

    /// Checks the structure of a value and canonicalises it.
    pub fn from_value(value: &Value) -> Result<Self, Rejection> {
        if !value.is_object() {
            return Err(Rejection::new(
                ErrorCode::BadPayloadStructure,
                format!("payload must be a JSON object, got {}", type_name(value)),
            ));
        }
        check_structure(value)?;
        let mut bytes = Vec::with_capacity(256);
        crate::jcs::write_canonical(value, &mut bytes).map_err(|e| {
            Rejection::new(ErrorCode::BadPayloadStructure, format!("payload cannot be canonicalised: {e}"))
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            Rejection::new(ErrorCode::BadPayloadStructure, format!("payload cannot be canonicalised: {e}"))
        })?;
        if text.len() > MAX_PAYLOAD_BYTES {
            return Err(Rejection::new(
                ErrorCode::BadPayloadStructure,
                format!("canonical payload is {} bytes; the limit is {MAX_PAYLOAD_BYTES}", text.len()),
            ));
        }
        Ok(Self(text))
    }

    /// Serialises a typed payload (from inside ICE) and canonicalises it: straight to canonical text where the
    /// fast path is sure of it (`jcs_ser`), else through a `Value` and [`CanonicalJson::from_value`].
    pub fn from_serialize<T: Serialize>(value: &T) -> Result<Self, Rejection> {
        if let Some(text) = crate::jcs_ser::to_canonical(value) {
            return Ok(Self(text));
        }
        let value = serde_json::to_value(value)
            .map_err(|e| Rejection::new(ErrorCode::BadPayloadStructure, format!("payload cannot be encoded: {e}")))?;
        Self::from_value(&value)
    }

    /// Wraps text read back from a ledger without re-canonicalising it (the chain hash covers these bytes).
    pub fn from_stored(text: String) -> Self {
        Self(text)
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The canonical bytes, as hashed.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Parses the payload back into a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }

    /// Consumes the wrapper, returning the canonical text.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for CanonicalJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CanonicalJson({})", self.0)
    }
}

impl fmt::Display for CanonicalJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// "a number", "null", "an object", … — what a JSON value is, for error messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Refuses nesting deeper than [`MAX_DEPTH`] and numbers beyond ±(2^53-1), naming where (`$.a[2].b`).
fn check_structure(v: &Value) -> Result<(), Rejection> {
    let Some(misfit) = find_misfit(v, 0) else { return Ok(()) };
    let path: String = std::iter::once("$").chain(misfit.path.iter().rev().map(String::as_str)).collect();
    let message = match misfit.number {
        None => format!("payload nests deeper than {MAX_DEPTH} levels at {path}"),
        Some(n) => format!("number {n} at {path} is beyond ±(2^53-1) and would lose precision"),
    };
    Err(Rejection::new(ErrorCode::BadPayloadStructure, message))
}

/// Where a payload breaks the structure rules: the path's steps innermost first (collected while unwinding, so a
/// payload that fits costs no allocation: this runs on every payload ICE records, under the state lock for its own),
/// and the number that is too big (`None`: too deep).
struct Misfit {
    path: Vec<String>,
    number: Option<String>,
}

fn find_misfit(v: &Value, depth: usize) -> Option<Misfit> {
    if depth > MAX_DEPTH {
        return Some(Misfit { path: Vec::new(), number: None });
    }
    let within = |item: &Value, step: &dyn Fn() -> String| {
        find_misfit(item, depth + 1).map(|mut m| {
            m.path.push(step());
            m
        })
    };
    match v {
        Value::Number(n) => {
            // Any magnitude beyond 2^53-1 is refused, floats included: an integral float such as 1.3e18
            // canonicalises to integer text, which would then not survive a round trip.
            let too_big = n.as_u64().is_some_and(|u| u > MAX_SAFE_INTEGER)
                || n.as_i64().is_some_and(|i| i.unsigned_abs() > MAX_SAFE_INTEGER)
                || n.as_f64().is_some_and(|f| f.abs() > MAX_SAFE_INTEGER as f64);
            too_big.then(|| Misfit { path: Vec::new(), number: Some(n.to_string()) })
        }
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| within(item, &|| format!("[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, item)| within(item, &|| format!(".{k}"))),
        Value::Null | Value::Bool(_) | Value::String(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sorts_keys_and_strips_whitespace() {
        let c = CanonicalJson::parse(r#"{ "b": 1, "a": [true, null, 1.50], "c": "\u00e9" }"#).unwrap();
        assert_eq!(c.as_str(), r#"{"a":[true,null,1.5],"b":1,"c":"é"}"#);
    }

    #[test]
    fn refuses_bad_structure() {
        assert_eq!(CanonicalJson::parse("{oops").unwrap_err().code, ErrorCode::MalformedJson);
        // Duplicate member names are refused at any depth, never resolved by "last one wins".
        let dup = CanonicalJson::parse(r#"{"path": "a.txt", "x": {"k": 1, "k": 2}}"#).unwrap_err();
        assert_eq!(dup.code, ErrorCode::BadPayloadStructure);
        assert!(dup.message.contains("`k` appears twice"), "{dup}");
        assert!(CanonicalJson::parse(r#"{"path": "a.txt", "path": "/etc/passwd"}"#).is_err());
        assert!(CanonicalJson::parse(r#"{"a": [{"k": 1}, {"k": 2}], "b": {"k": 1}}"#).is_ok());
        assert_eq!(CanonicalJson::parse("[1]").unwrap_err().code, ErrorCode::BadPayloadStructure);
        assert_eq!(
            CanonicalJson::parse(r#"{"n": 9007199254740992}"#).unwrap_err().code,
            ErrorCode::BadPayloadStructure
        );
        assert!(CanonicalJson::parse(r#"{"n": 9007199254740991}"#).is_ok());
        let deep = format!("{}{}", "{\"a\":".repeat(70), "1".to_owned() + &"}".repeat(70));
        let too_deep = CanonicalJson::parse(&deep).unwrap_err();
        assert_eq!(too_deep.code, ErrorCode::BadPayloadStructure);
        assert_eq!(too_deep.message, format!("payload nests deeper than 64 levels at ${}", ".a".repeat(65)));
        // The path names where, through arrays and objects.
        let where_ = CanonicalJson::parse(r#"{"a": [1, {"b": 9007199254740992}], "c": 2}"#).unwrap_err();
        assert_eq!(where_.message, "number 9007199254740992 at $.a[1].b is beyond ±(2^53-1) and would lose precision");
        let big = format!(r#"{{"s":"{}"}}"#, "x".repeat(MAX_PAYLOAD_BYTES));
        assert_eq!(CanonicalJson::parse(&big).unwrap_err().code, ErrorCode::BadPayloadStructure);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(MAX_SAFE_INTEGER as i64)..(MAX_SAFE_INTEGER as i64)).prop_map(Value::from),
            (-1e15f64..1e15f64).prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,8}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Same value → same bytes → same hash, however the input text was laid out.
        #[test]
        fn canonical_encoding_is_stable(inner in arb_json(), key in "[a-z]{1,6}") {
            let mut obj = serde_json::Map::new();
            obj.insert(key, inner);
            let value = Value::Object(obj);
            let a = CanonicalJson::from_value(&value).unwrap();
            // Re-parse the canonical text and the pretty text: both must canonicalise to identical bytes.
            let b = CanonicalJson::parse(a.as_str()).unwrap();
            let pretty = serde_json::to_string_pretty(&value).unwrap();
            let c = CanonicalJson::parse(&pretty).unwrap();
            prop_assert_eq!(a.as_bytes(), b.as_bytes());
            prop_assert_eq!(a.as_bytes(), c.as_bytes());
            prop_assert_eq!(blake3::hash(a.as_bytes()), blake3::hash(c.as_bytes()));
        }
    }
}
