//! Canonical JSON (RFC 8785) straight from a typed value, without building a `serde_json::Value` first: the
//! runtime records several typed payloads per decision, and `to_value` (a map with hashed keys per object, a
//! `Value` per member, then a walk to check and a walk to write) was ~7 % of all CPU at 64 agents. A decision-sized
//! payload: 1.6 µs here, 2.8 µs that way (BENCHMARKS.md).
//!
//! This is only a fast path. It gives up ([`None`]) on anything it is not certain to write exactly as
//! `CanonicalJson::from_value(&serde_json::to_value(v))` would: a top level that is not an object, nesting near
//! [`MAX_DEPTH`], an integer beyond ±(2^53-1), a float that is not small, bytes, 128-bit or `f32` numbers,
//! non-string map keys, repeated member names, serde_json's private raw values, any `Serialize` error, and text
//! over [`MAX_PAYLOAD_BYTES`]. The caller then takes that slow path, which also words the refusals. So the fast
//! path needs to be right only when it answers, and a property test holds it to the slow path.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;
use serde::ser::{self, Impossible};
use serde_json::Value;

use crate::canonical::{MAX_DEPTH, MAX_PAYLOAD_BYTES, MAX_SAFE_INTEGER};
use crate::jcs::{utf16_order, write_canonical, write_str};

/// `value` in canonical form, or `None` where the slow path must decide (see the module docs).
pub(crate) fn to_canonical<T: Serialize + ?Sized>(value: &T) -> Option<String> {
    let mut out = Vec::with_capacity(256);
    value.serialize(Writer { out: &mut out, depth: 0, top: true }).ok()?;
    if out.len() > MAX_PAYLOAD_BYTES {
        return None;
    }
    String::from_utf8(out).ok()
}

/// Appends `value` in canonical form to `out` as `jcs::write_canonical(&serde_json::to_value(value))` would, for
/// any top level and length (state entries, hashed rather than recorded); `false` where the slow path must do it
/// (`out` then holds a partial write: the caller discards it).
pub(crate) fn write_any<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> bool {
    value.serialize(Writer { out, depth: 0, top: false }).is_ok()
}

/// Why the fast path gave up (what exactly does not matter: the slow path redoes the work).
#[derive(Debug)]
struct GiveUp;

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("left to the slow path")
    }
}

impl std::error::Error for GiveUp {}

impl ser::Error for GiveUp {
    fn custom<M: fmt::Display>(_: M) -> Self {
        GiveUp
    }
}

/// Writes one value at `depth` (containers around it); `top`: the payload itself, which must be an object.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    depth: usize,
    top: bool,
}

impl<'a> Writer<'a> {
    /// A scalar: refused at the top.
    fn scalar(self, bytes: &[u8]) -> Result<(), GiveUp> {
        if self.top {
            return Err(GiveUp);
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    fn string(self, s: &str) -> Result<(), GiveUp> {
        if self.top {
            return Err(GiveUp);
        }
        write_str(s, self.out).map_err(|_| GiveUp)
    }

    fn integer(self, magnitude: u64, negative: bool) -> Result<(), GiveUp> {
        if magnitude > MAX_SAFE_INTEGER {
            return Err(GiveUp);
        }
        let text = if negative && magnitude > 0 { format!("-{magnitude}") } else { magnitude.to_string() };
        self.scalar(text.as_bytes())
    }

    /// The depth of a container's members, unless that is deep enough for the slow path to judge.
    fn inner(&self) -> Result<usize, GiveUp> {
        let depth = self.depth + 1;
        if depth + 1 >= MAX_DEPTH { Err(GiveUp) } else { Ok(depth) }
    }

    fn seq(self, close: &'static [u8]) -> Result<Seq<'a>, GiveUp> {
        if self.top {
            return Err(GiveUp);
        }
        let depth = self.inner()?;
        self.out.push(b'[');
        Ok(Seq { out: self.out, depth, first: true, close })
    }

    fn object(self, wrapped: bool) -> Result<Obj<'a>, GiveUp> {
        let depth = self.inner()?;
        Ok(Obj { out: self.out, depth, scratch: Vec::new(), members: Vec::new(), key: None, wrapped })
    }

    /// `{"variant":` around what follows (closed by the caller).
    fn open_variant(&mut self, variant: &str) -> Result<(), GiveUp> {
        self.out.push(b'{');
        write_str(variant, self.out).map_err(|_| GiveUp)?;
        self.out.push(b':');
        Ok(())
    }
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = GiveUp;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = Seq<'a>;
    type SerializeMap = Obj<'a>;
    type SerializeStruct = Obj<'a>;
    type SerializeStructVariant = Obj<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), GiveUp> {
        self.scalar(if v { b"true" } else { b"false" })
    }
    fn serialize_i8(self, v: i8) -> Result<(), GiveUp> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), GiveUp> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), GiveUp> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), GiveUp> {
        self.integer(v.unsigned_abs(), v < 0)
    }
    fn serialize_u8(self, v: u8) -> Result<(), GiveUp> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), GiveUp> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), GiveUp> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), GiveUp> {
        self.integer(v, false)
    }
    fn serialize_f32(self, _: f32) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_f64(self, v: f64) -> Result<(), GiveUp> {
        // As `to_value` does: a float that is not finite becomes null; the rest is written as the slow path writes
        // it (the ECMAScript formatting is the subtle part), refused there beyond ±(2^53-1).
        if v.is_finite() && v.abs() > MAX_SAFE_INTEGER as f64 {
            return Err(GiveUp);
        }
        if self.top {
            return Err(GiveUp);
        }
        write_canonical(&Value::from(v), self.out).map_err(|_| GiveUp)
    }
    fn serialize_char(self, v: char) -> Result<(), GiveUp> {
        self.string(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), GiveUp> {
        self.string(v)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_none(self) -> Result<(), GiveUp> {
        self.scalar(b"null")
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), GiveUp> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), GiveUp> {
        self.scalar(b"null")
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), GiveUp> {
        self.scalar(b"null")
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), GiveUp> {
        self.string(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), GiveUp> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), GiveUp> {
        let depth = self.inner()?;
        self.open_variant(variant)?;
        value.serialize(Writer { out: &mut *self.out, depth, top: false })?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Seq<'a>, GiveUp> {
        self.seq(b"]")
    }
    fn serialize_tuple(self, _: usize) -> Result<Seq<'a>, GiveUp> {
        self.seq(b"]")
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Seq<'a>, GiveUp> {
        self.seq(b"]")
    }
    fn serialize_tuple_variant(
        mut self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Seq<'a>, GiveUp> {
        let depth = self.inner()?;
        self.open_variant(variant)?;
        Writer { out: self.out, depth, top: false }.seq(b"]}")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Obj<'a>, GiveUp> {
        self.object(false)
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Obj<'a>, GiveUp> {
        // serde_json's raw values and arbitrary-precision numbers travel as private structs.
        if name.starts_with("$serde_json::private::") {
            return Err(GiveUp);
        }
        self.object(false)
    }
    fn serialize_struct_variant(
        mut self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Obj<'a>, GiveUp> {
        let depth = self.inner()?;
        self.open_variant(variant)?;
        Writer { out: self.out, depth, top: false }.object(true)
    }
}

/// An array's elements, written in order.
struct Seq<'a> {
    out: &'a mut Vec<u8>,
    depth: usize,
    first: bool,
    close: &'static [u8],
}

impl Seq<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), GiveUp> {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        value.serialize(Writer { out: &mut *self.out, depth: self.depth, top: false })
    }

    fn close(self) -> Result<(), GiveUp> {
        self.out.extend_from_slice(self.close);
        Ok(())
    }
}

/// The four kinds of sequence serde distinguishes are all a JSON array here.
macro_rules! array_like {
    ($($kind:ident :: $add:ident),*) => {$(
        impl ser::$kind for Seq<'_> {
            type Ok = ();
            type Error = GiveUp;
            fn $add<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), GiveUp> {
                self.element(value)
            }
            fn end(self) -> Result<(), GiveUp> {
                self.close()
            }
        }
    )*};
}

array_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// An object's members: each value is written to `scratch` as it comes, then the members are sorted by name
/// (RFC 8785: by UTF-16 code units) and copied out.
struct Obj<'a> {
    out: &'a mut Vec<u8>,
    depth: usize,
    scratch: Vec<u8>,
    /// Name and the range of `scratch` holding the value.
    members: Vec<(Cow<'static, str>, usize, usize)>,
    /// A map's key, until its value comes.
    key: Option<String>,
    /// Inside `{"variant":…}`: one more brace to close.
    wrapped: bool,
}

impl Obj<'_> {
    fn member<T: Serialize + ?Sized>(&mut self, name: Cow<'static, str>, value: &T) -> Result<(), GiveUp> {
        let start = self.scratch.len();
        value.serialize(Writer { out: &mut self.scratch, depth: self.depth, top: false })?;
        self.members.push((name, start, self.scratch.len()));
        Ok(())
    }

    fn close(mut self) -> Result<(), GiveUp> {
        self.members.sort_by(|a, b| utf16_order(&a.0, &b.0));
        // `to_value` keeps one of two members of the same name; which one is the slow path's business.
        if self.members.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(GiveUp);
        }
        self.out.push(b'{');
        for (i, (name, start, end)) in self.members.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write_str(name, self.out).map_err(|_| GiveUp)?;
            self.out.push(b':');
            self.out.extend_from_slice(self.scratch.get(*start..*end).ok_or(GiveUp)?);
        }
        self.out.push(b'}');
        if self.wrapped {
            self.out.push(b'}');
        }
        Ok(())
    }
}

impl ser::SerializeMap for Obj<'_> {
    type Ok = ();
    type Error = GiveUp;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), GiveUp> {
        self.key = Some(key.serialize(KeyWriter)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), GiveUp> {
        let key = self.key.take().ok_or(GiveUp)?;
        self.member(Cow::Owned(key), value)
    }
    fn end(self) -> Result<(), GiveUp> {
        self.close()
    }
}

/// A struct and a struct variant's fields are both an object's members.
macro_rules! object_like {
    ($($kind:ident),*) => {$(
        impl ser::$kind for Obj<'_> {
            type Ok = ();
            type Error = GiveUp;
            fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), GiveUp> {
                self.member(Cow::Borrowed(key), value)
            }
            fn end(self) -> Result<(), GiveUp> {
                self.close()
            }
        }
    )*};
}

object_like!(SerializeStruct, SerializeStructVariant);

/// A map key: strings (and what serialises as one) only.
struct KeyWriter;

impl ser::Serializer for KeyWriter {
    type Ok = String;
    type Error = GiveUp;
    type SerializeSeq = Impossible<String, GiveUp>;
    type SerializeTuple = Impossible<String, GiveUp>;
    type SerializeTupleStruct = Impossible<String, GiveUp>;
    type SerializeTupleVariant = Impossible<String, GiveUp>;
    type SerializeMap = Impossible<String, GiveUp>;
    type SerializeStruct = Impossible<String, GiveUp>;
    type SerializeStructVariant = Impossible<String, GiveUp>;

    fn serialize_str(self, v: &str) -> Result<String, GiveUp> {
        Ok(v.to_owned())
    }
    fn serialize_char(self, v: char) -> Result<String, GiveUp> {
        Ok(v.to_string())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<String, GiveUp> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<String, GiveUp> {
        value.serialize(self)
    }
    fn serialize_bool(self, _: bool) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_i8(self, _: i8) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_i16(self, _: i16) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_i32(self, _: i32) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_i64(self, _: i64) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_u8(self, _: u8) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_u16(self, _: u16) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_u32(self, _: u32) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_u64(self, _: u64) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_f32(self, _: f32) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_f64(self, _: f64) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_none(self) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_unit(self) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, GiveUp> {
        Err(GiveUp)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde::Serialize;
    use serde_json::{Value, json};

    use super::{to_canonical, write_any};
    use crate::canonical::CanonicalJson;

    /// What the slow path makes of a value: canonical text, or refused.
    fn slow<T: Serialize>(v: &T) -> Option<String> {
        serde_json::to_value(v).ok().and_then(|v| CanonicalJson::from_value(&v).ok()).map(CanonicalJson::into_string)
    }

    fn member_name() -> impl Strategy<Value = String> {
        "[a-zA-Z_\u{e9}\u{1f600}\u{ff5e}\"\\\\\n]{0,6}"
    }

    /// Values the fast path must answer for itself: within every limit.
    fn fitting() -> impl Strategy<Value = Value> {
        let max = crate::canonical::MAX_SAFE_INTEGER as i64;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-max..=max).prop_map(Value::from),
            (0..=max as u64).prop_map(Value::from),
            (-1.0e15f64..1.0e15).prop_map(Value::from),
            Just(json!(0.1)),
            Just(json!(-0.0)),
            Just(json!(1e-7)),
            "\\PC{0,12}".prop_map(Value::String),
            "[\\x00-\\x1f\"\\\\a-z\u{e9}\u{1f600}\u{ff5e}]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(member_name(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Values with what the slow path refuses or words an error for: big numbers, deep nesting.
    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            (-2.0e16f64..2.0e16).prop_map(Value::from),
            fitting(),
        ];
        leaf.prop_recursive(70, 256, 2, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[a-c]{1,2}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn answers_for_every_fitting_payload_exactly_as_the_slow_path(inner in fitting(), name in member_name()) {
            let payload = json!({ name: inner, "z": [1, "two", null] });
            prop_assert_eq!(to_canonical(&payload), slow(&payload));
            prop_assert!(to_canonical(&payload).is_some());
        }

        #[test]
        fn writes_any_state_entry_exactly_as_the_slow_path(key in "[a-z]{0,4}", inner in any_value()) {
            let entry = (key, inner);
            let mut fast = Vec::new();
            if write_any(&entry, &mut fast) {
                let mut slow = Vec::new();
                let value = serde_json::to_value(&entry).expect("encodes");
                crate::jcs::write_canonical(&value, &mut slow).expect("writes");
                prop_assert_eq!(String::from_utf8(fast).ok(), String::from_utf8(slow).ok());
            }
        }

        #[test]
        fn never_answers_differently_from_the_slow_path(inner in any_value()) {
            let payload = json!({ "v": inner });
            if let Some(fast) = to_canonical(&payload) {
                prop_assert_eq!(Some(fast), slow(&payload));
            }
        }
    }

    #[derive(Serialize)]
    enum Shape {
        Unit,
        Newtype(u32),
        Tuple(i8, String),
        Struct { b: bool, a: Option<char> },
    }

    #[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
    #[serde(rename_all = "snake_case")]
    enum Key {
        Calls,
        Tokens,
    }

    #[derive(Serialize)]
    struct Id(String);

    #[derive(Serialize)]
    struct Typed {
        zeta: Vec<Shape>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u64>,
        absent: Option<u64>,
        by_key: BTreeMap<Key, u64>,
        id: Id,
        unit: (),
        pair: (i64, f64),
        nested: Value,
        #[serde(rename = "\u{e9}t\u{e9}")]
        accented: &'static str,
    }

    #[test]
    fn typed_payloads_match_the_slow_path() {
        let typed = Typed {
            zeta: vec![
                Shape::Unit,
                Shape::Newtype(7),
                Shape::Tuple(-3, "x\ty".into()),
                Shape::Struct { b: true, a: Some('\u{1f600}') },
            ],
            skipped: None,
            absent: None,
            by_key: [(Key::Tokens, 5), (Key::Calls, 1)].into_iter().collect(),
            id: Id("p-1".into()),
            unit: (),
            pair: (-9_007_199_254_740_991, 2.5),
            nested: json!({"b": [1.0, {"\u{ff5e}": 1, "\u{1f600}": 2}], "a": "\u{7f}"}),
            accented: "\"quoted\"",
        };
        let fast = to_canonical(&typed).expect("the fast path answers");
        let mut entry = Vec::new();
        assert!(write_any(&(7u8, &typed), &mut entry));
        assert_eq!(String::from_utf8(entry).ok(), Some(format!("[7,{fast}]")));
        assert_eq!(Some(fast.clone()), slow(&typed));
        assert!(fast.starts_with(r#"{"absent":null,"by_key":{"calls":1,"tokens":5},"id":"p-1","#), "{fast}");
        // Through the public entry point too.
        assert_eq!(CanonicalJson::from_serialize(&typed).map(CanonicalJson::into_string).ok(), Some(fast));
    }

    #[derive(Serialize)]
    struct Repeats {
        path: &'static str,
        #[serde(flatten)]
        extra: BTreeMap<&'static str, &'static str>,
    }

    #[test]
    fn leaves_what_it_is_not_sure_of_to_the_slow_path() {
        // Not an object at the top.
        assert_eq!(to_canonical(&json!([1])), None);
        assert_eq!(to_canonical("text"), None);
        // Beyond ±(2^53-1): the slow path refuses, naming where.
        let big = json!({"n": 9_007_199_254_740_992u64});
        assert_eq!(to_canonical(&big), None);
        let refused = CanonicalJson::from_serialize(&big).expect_err("refused");
        assert_eq!(refused.message, "number 9007199254740992 at $.n is beyond ±(2^53-1) and would lose precision");
        // Nesting near the limit.
        let mut deep = json!(1);
        for _ in 0..70 {
            deep = json!({ "a": deep });
        }
        assert_eq!(to_canonical(&deep), None);
        assert!(CanonicalJson::from_serialize(&deep).expect_err("too deep").message.contains("nests deeper than 64"));
        // A member named twice (a flattened map repeating a field): `to_value` keeps one, so the slow path decides.
        let repeats = Repeats { path: "a.txt", extra: [("path", "/etc/passwd")].into_iter().collect() };
        assert_eq!(to_canonical(&repeats), None);
        assert_eq!(CanonicalJson::from_serialize(&repeats).map(CanonicalJson::into_string).ok(), slow(&repeats));
        // Non-string map keys.
        let numbered: BTreeMap<u32, bool> = [(1, true)].into_iter().collect();
        let outer: BTreeMap<&str, BTreeMap<u32, bool>> = [("m", numbered)].into_iter().collect();
        assert_eq!(to_canonical(&outer), None);
        assert_eq!(CanonicalJson::from_serialize(&outer).map(CanonicalJson::into_string).ok(), slow(&outer));
    }
}
