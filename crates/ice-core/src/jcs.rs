//! A streaming RFC 8785 (JCS) writer for large values: the derived-state root hashes megabytes of state, where
//! building a canonical string with `serde_json_canonicalizer` dominated replay time. Output is byte-identical to
//! `serde_json_canonicalizer` (a property test holds the two together); numbers that are not integers are
//! delegated to it, since their ECMAScript formatting is the subtle part.

use std::io::{self, Write};

use serde_json::Value;

/// Writes `v` in canonical form.
pub fn write_canonical<W: Write>(v: &Value, out: &mut W) -> io::Result<()> {
    match v {
        Value::Null => out.write_all(b"null"),
        Value::Bool(true) => out.write_all(b"true"),
        Value::Bool(false) => out.write_all(b"false"),
        Value::Number(n) => {
            // Integers within ±2^53 print the same as ECMAScript numbers; larger ones (and fractions) are formatted
            // as doubles by JCS, which the reference implementation does.
            let exact = |m: u64| m <= 1 << 53;
            if let Some(i) = n.as_i64().filter(|i| exact(i.unsigned_abs())) {
                write!(out, "{i}")
            } else if let Some(u) = n.as_u64().filter(|u| exact(*u)) {
                write!(out, "{u}")
            } else {
                let text = serde_json_canonicalizer::to_string(v).map_err(io::Error::other)?;
                out.write_all(text.as_bytes())
            }
        }
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.write_all(b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_canonical(item, out)?;
            }
            out.write_all(b"]")
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| utf16_order(a.0, b.0));
            out.write_all(b"{")?;
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_str(k, out)?;
                out.write_all(b":")?;
                write_canonical(val, out)?;
            }
            out.write_all(b"}")
        }
    }
}

/// RFC 8785's member order: by UTF-16 code units. Byte order is the same for ASCII names (nearly all of ICE's),
/// and much cheaper.
pub(crate) fn utf16_order(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() { a.cmp(b) } else { a.encode_utf16().cmp(b.encode_utf16()) }
}

pub(crate) fn write_str<W: Write>(s: &str, out: &mut W) -> io::Result<()> {
    out.write_all(b"\"")?;
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.write_all(&bytes[start..i])?;
        match escape {
            Some(e) => out.write_all(e)?,
            None => write!(out, "\\u{b:04x}")?,
        }
        start = i + 1;
    }
    out.write_all(&bytes[start..])?;
    out.write_all(b"\"")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::write_canonical;

    fn canonical(v: &Value) -> String {
        let mut out = Vec::new();
        write_canonical(v, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<u64>().prop_map(|u| json!(u)),
            (-1.0e6f64..1.0e6).prop_map(|f| json!(f)),
            "\\PC{0,12}".prop_map(Value::String),
            "[\\x00-\\x1f\"\\\\a-z\u{e9}\u{1f600}\u{ff5e}]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-zA-Z\u{e9}\u{1f600}\u{ff5e}_]{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn matches_serde_json_canonicalizer(v in value()) {
            prop_assert_eq!(canonical(&v), serde_json_canonicalizer::to_string(&v).unwrap());
        }
    }

    #[test]
    fn orders_keys_by_utf16_code_units() {
        // U+1F600 is a surrogate pair (0xD83D…) and sorts before U+FF5E in UTF-16, after it in UTF-8.
        let v = json!({"\u{ff5e}": 1, "\u{1f600}": 2, "a": 3});
        assert_eq!(canonical(&v), serde_json_canonicalizer::to_string(&v).unwrap());
    }
}
