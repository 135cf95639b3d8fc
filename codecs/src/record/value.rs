//! What one attribute holds: a typed value, printed as the JSON value it stands for.
//!
//! Records used to carry their attributes as `serde_json::Value`s: a `Value` string is a
//! heap `String`, a `Value` is four words, and dropping one is a call through a match over
//! six shapes, for the handful of numbers, flags and short words a record carries. Here
//! numbers and flags are stored as they are, short text inline, and only lists and objects
//! (cells, Wi-Fi access points, satellites) stay JSON values. A value is two words, so an
//! attribute (a static key and its value) is four: a record's attributes are memory fresh
//! for every record, and the smaller it is the less each record costs.
//!
//! Equality is the JSON value's: `From` normalizes as `serde_json` does (a non-negative
//! signed integer is unsigned, a float that is not finite is `null`), and text compares by
//! content however it is held.

use std::borrow::Cow;
use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::Value;

/// An attribute's value (see the module documentation).
#[derive(Clone, PartialEq)]
pub enum AttributeValue {
    Null,
    Bool(bool),
    /// Any integer at or above zero.
    Unsigned(u64),
    /// A negative integer (one at or above zero is [`AttributeValue::Unsigned`]).
    Signed(i64),
    /// A finite float (one that is not finite is [`AttributeValue::Null`], as in JSON).
    Float(f64),
    Text(Text),
    /// A JSON array or object (a JSON scalar is one of the typed variants).
    Json(Box<Value>),
}

/// Text held inline when short, boxed otherwise. Compares by content.
#[derive(Clone)]
pub struct Text(Repr);

/// The longest text kept inline: as much as fits beside the tags in the two words an
/// [`AttributeValue`] takes (a talker, a mode, a time of day, a hex word).
const INLINE: usize = 14;

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    // Boxed twice so the value stays two words: long text is rare (vendor text, hex blobs).
    Boxed(Box<Box<str>>),
}

impl Text {
    /// Whether dropping it frees memory.
    fn is_boxed(&self) -> bool {
        matches!(self.0, Repr::Boxed(_))
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Built only from a whole `&str` (see `From<&str>`), so always UTF-8.
            Repr::Inline { len, bytes } => std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default(),
            Repr::Boxed(s) => s,
        }
    }

    /// The text's bytes, without the UTF-8 check `as_str` makes of inline text.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Boxed(s) => s.as_bytes(),
        }
    }

    fn inline(s: &str) -> Option<Text> {
        let src = s.as_bytes();
        let mut bytes = [0u8; INLINE];
        bytes.get_mut(..src.len())?.copy_from_slice(src);
        Some(Text(Repr::Inline { len: src.len() as u8, bytes }))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text::inline(s).unwrap_or_else(|| Text(Repr::Boxed(Box::new(s.into()))))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text::inline(&s).unwrap_or_else(|| Text(Repr::Boxed(Box::new(s.into_boxed_str()))))
    }
}

impl From<Cow<'_, str>> for Text {
    fn from(s: Cow<'_, str>) -> Text {
        match s {
            Cow::Borrowed(s) => s.into(),
            Cow::Owned(s) => s.into(),
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AttributeValue {
    /// Whether dropping it frees memory (long text, a JSON array or object).
    #[inline]
    pub(crate) fn holds_heap(&self) -> bool {
        match self {
            AttributeValue::Text(t) => t.is_boxed(),
            AttributeValue::Json(_) => true,
            _ => false,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, AttributeValue::Null)
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            AttributeValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            AttributeValue::Unsigned(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            AttributeValue::Unsigned(n) => i64::try_from(*n).ok(),
            AttributeValue::Signed(n) => Some(*n),
            _ => None,
        }
    }

    /// Any number as a float (as `serde_json::Value::as_f64`).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            AttributeValue::Unsigned(n) => Some(*n as f64),
            AttributeValue::Signed(n) => Some(*n as f64),
            AttributeValue::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttributeValue::Text(t) => Some(t.as_str()),
            _ => None,
        }
    }

    /// A JSON array's items.
    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match self {
            AttributeValue::Json(v) => v.as_array(),
            _ => None,
        }
    }

    /// A JSON object's entries.
    pub fn as_object(&self) -> Option<&serde_json::Map<String, Value>> {
        match self {
            AttributeValue::Json(v) => v.as_object(),
            _ => None,
        }
    }

    /// The JSON value this stands for.
    pub fn to_value(&self) -> Value {
        match self {
            AttributeValue::Null => Value::Null,
            AttributeValue::Bool(b) => Value::Bool(*b),
            AttributeValue::Unsigned(n) => Value::from(*n),
            AttributeValue::Signed(n) => Value::from(*n),
            AttributeValue::Float(f) => Value::from(*f),
            AttributeValue::Text(t) => Value::from(t.as_str()),
            AttributeValue::Json(v) => (**v).clone(),
        }
    }
}

impl fmt::Debug for AttributeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttributeValue::Null => f.write_str("null"),
            AttributeValue::Bool(b) => fmt::Debug::fmt(b, f),
            AttributeValue::Unsigned(n) => fmt::Debug::fmt(n, f),
            AttributeValue::Signed(n) => fmt::Debug::fmt(n, f),
            AttributeValue::Float(x) => fmt::Debug::fmt(x, f),
            AttributeValue::Text(t) => fmt::Debug::fmt(t, f),
            AttributeValue::Json(v) => fmt::Debug::fmt(v, f),
        }
    }
}

impl Serialize for AttributeValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AttributeValue::Null => s.serialize_unit(),
            AttributeValue::Bool(b) => s.serialize_bool(*b),
            AttributeValue::Unsigned(n) => s.serialize_u64(*n),
            AttributeValue::Signed(n) => s.serialize_i64(*n),
            AttributeValue::Float(f) => s.serialize_f64(*f),
            AttributeValue::Text(t) => s.serialize_str(t.as_str()),
            AttributeValue::Json(v) => v.serialize(s),
        }
    }
}

impl From<Value> for AttributeValue {
    /// Scalars become typed values; arrays and objects stay JSON.
    fn from(v: Value) -> AttributeValue {
        match v {
            Value::Null => AttributeValue::Null,
            Value::Bool(b) => AttributeValue::Bool(b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => AttributeValue::Unsigned(u),
                (None, Some(i), _) => AttributeValue::Signed(i),
                (None, None, Some(f)) => AttributeValue::from(f),
                (None, None, None) => AttributeValue::Null,
            },
            Value::String(s) => AttributeValue::Text(s.into()),
            other => AttributeValue::Json(Box::new(other)),
        }
    }
}

impl From<&Value> for AttributeValue {
    fn from(v: &Value) -> AttributeValue {
        match v {
            Value::Array(_) | Value::Object(_) => AttributeValue::Json(Box::new(v.clone())),
            Value::String(s) => AttributeValue::Text(s.as_str().into()),
            scalar => scalar.clone().into(),
        }
    }
}

impl From<bool> for AttributeValue {
    fn from(b: bool) -> AttributeValue {
        AttributeValue::Bool(b)
    }
}

macro_rules! from_unsigned {
    ($($t:ty),*) => {$(
        impl From<$t> for AttributeValue {
            fn from(n: $t) -> AttributeValue {
                AttributeValue::Unsigned(n as u64)
            }
        }
    )*};
}
from_unsigned!(u8, u16, u32, u64, usize);

macro_rules! from_signed {
    ($($t:ty),*) => {$(
        impl From<$t> for AttributeValue {
            fn from(n: $t) -> AttributeValue {
                if n < 0 {
                    AttributeValue::Signed(n as i64)
                } else {
                    AttributeValue::Unsigned(n as u64)
                }
            }
        }
    )*};
}
from_signed!(i8, i16, i32, i64, isize);

impl From<f64> for AttributeValue {
    fn from(f: f64) -> AttributeValue {
        if f.is_finite() {
            AttributeValue::Float(f)
        } else {
            AttributeValue::Null
        }
    }
}

impl From<f32> for AttributeValue {
    fn from(f: f32) -> AttributeValue {
        f64::from(f).into()
    }
}

impl From<&str> for AttributeValue {
    fn from(s: &str) -> AttributeValue {
        AttributeValue::Text(s.into())
    }
}

impl From<String> for AttributeValue {
    fn from(s: String) -> AttributeValue {
        AttributeValue::Text(s.into())
    }
}

impl From<&String> for AttributeValue {
    fn from(s: &String) -> AttributeValue {
        AttributeValue::Text(s.as_str().into())
    }
}

impl From<Cow<'_, str>> for AttributeValue {
    fn from(s: Cow<'_, str>) -> AttributeValue {
        AttributeValue::Text(s.into())
    }
}

impl From<Text> for AttributeValue {
    fn from(t: Text) -> AttributeValue {
        AttributeValue::Text(t)
    }
}

impl<T: Into<Value>> From<Vec<T>> for AttributeValue {
    /// A JSON array.
    fn from(items: Vec<T>) -> AttributeValue {
        AttributeValue::Json(Box::new(Value::from(items)))
    }
}

impl<T: Into<AttributeValue>> From<Option<T>> for AttributeValue {
    /// `None` is `null`, as `serde_json` converts an option.
    fn from(v: Option<T>) -> AttributeValue {
        v.map_or(AttributeValue::Null, Into::into)
    }
}

/// Compares with the JSON value this stands for, so code that held `Value`s keeps reading.
impl PartialEq<Value> for AttributeValue {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (AttributeValue::Null, Value::Null) => true,
            (AttributeValue::Bool(a), Value::Bool(b)) => a == b,
            (AttributeValue::Unsigned(a), Value::Number(n)) => n.as_u64() == Some(*a),
            (AttributeValue::Signed(a), Value::Number(n)) => !n.is_u64() && n.as_i64() == Some(*a),
            (AttributeValue::Float(a), Value::Number(n)) => n.is_f64() && n.as_f64() == Some(*a),
            (AttributeValue::Text(t), Value::String(s)) => t.as_str() == s,
            (AttributeValue::Json(v), other) => **v == *other,
            _ => false,
        }
    }
}

/// `value[1]`, `value["id"]` into a JSON list or object, as `serde_json::Value` indexes
/// (`null` for anything missing or not a list or object).
impl<I: serde_json::value::Index> std::ops::Index<I> for AttributeValue {
    type Output = Value;
    fn index(&self, index: I) -> &Value {
        static NULL: Value = Value::Null;
        match self {
            AttributeValue::Json(v) => v.get(index).unwrap_or(&NULL),
            _ => &NULL,
        }
    }
}

/// `value == 5`, `value == "GP"`, `value == true`: as `serde_json::Value` compares with
/// primitives (an integer with any integer of the same value, a float with any number).
macro_rules! eq_primitive {
    ($($t:ty => $as:ident as $cast:ty),* $(,)?) => {$(
        impl PartialEq<$t> for AttributeValue {
            fn eq(&self, other: &$t) -> bool {
                self.$as().is_some_and(|v| v == *other as $cast)
            }
        }
        impl PartialEq<$t> for &AttributeValue {
            fn eq(&self, other: &$t) -> bool {
                (**self).eq(other)
            }
        }
    )*};
}
eq_primitive!(
    i8 => as_i64 as i64, i16 => as_i64 as i64, i32 => as_i64 as i64, i64 => as_i64 as i64, isize => as_i64 as i64,
    u8 => as_u64 as u64, u16 => as_u64 as u64, u32 => as_u64 as u64, u64 => as_u64 as u64, usize => as_u64 as u64,
    f32 => as_f64 as f64, f64 => as_f64 as f64,
);

impl PartialEq<bool> for AttributeValue {
    fn eq(&self, other: &bool) -> bool {
        self.as_bool() == Some(*other)
    }
}

impl PartialEq<bool> for &AttributeValue {
    fn eq(&self, other: &bool) -> bool {
        self.as_bool() == Some(*other)
    }
}

impl PartialEq<str> for AttributeValue {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == Some(other)
    }
}

impl PartialEq<&str> for AttributeValue {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == Some(*other)
    }
}

impl PartialEq<str> for &AttributeValue {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == Some(other)
    }
}

impl PartialEq<String> for AttributeValue {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == Some(other.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attribute_value_is_two_words() {
        assert_eq!(std::mem::size_of::<AttributeValue>(), 16);
    }

    #[test]
    fn text_compares_by_content_however_held() {
        let long = "a".repeat(INLINE + 1);
        for s in ["", "GP", "01234567890123", long.as_str()] {
            let inline_or_boxed = AttributeValue::from(s);
            let owned = AttributeValue::from(s.to_owned());
            assert_eq!(inline_or_boxed, owned);
            assert_eq!(inline_or_boxed.as_str(), Some(s));
            assert_eq!(inline_or_boxed, Value::from(s));
        }
        assert_ne!(AttributeValue::from("GP"), AttributeValue::from("GN"));
    }

    #[test]
    fn numbers_normalize_as_json_does() {
        assert_eq!(AttributeValue::from(5i32), AttributeValue::from(5u8));
        assert_eq!(AttributeValue::from(-5i64), AttributeValue::Signed(-5));
        assert_eq!(AttributeValue::from(f64::NAN), AttributeValue::Null);
        assert_ne!(AttributeValue::from(5.0), AttributeValue::from(5u8));
        for v in [serde_json::json!(5), serde_json::json!(-5), serde_json::json!(0.5), serde_json::json!(null)] {
            assert_eq!(AttributeValue::from(v.clone()).to_value(), v);
            assert_eq!(AttributeValue::from(v.clone()), v);
        }
    }
}
