//! GGUF metadata values and typed accessors.

use crate::error::{Result, bad_meta};

/// One metadata value as stored in the file.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Unsigned 8-bit.
    U8(u8),
    /// Signed 8-bit.
    I8(i8),
    /// Unsigned 16-bit.
    U16(u16),
    /// Signed 16-bit.
    I16(i16),
    /// Unsigned 32-bit.
    U32(u32),
    /// Signed 32-bit.
    I32(i32),
    /// 32-bit float.
    F32(f32),
    /// Boolean.
    Bool(bool),
    /// UTF-8 string.
    Str(String),
    /// Unsigned 64-bit.
    U64(u64),
    /// Signed 64-bit.
    I64(i64),
    /// 64-bit float.
    F64(f64),
    /// Homogeneous array.
    Array(Vec<Value>),
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// The value as a float (floats and integers).
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => self.as_i64().map(|v| v as f32),
        }
    }

    /// The value as a string slice.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value as an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Typed, erroring look-ups over a metadata map.
pub(crate) trait MetaExt {
    /// The raw value of a key.
    fn value(&self, key: &str) -> Option<&Value>;

    /// A required unsigned integer that fits `usize`.
    fn req_usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?.ok_or_else(|| bad_meta(key, "missing"))
    }

    /// An optional unsigned integer that fits `usize`.
    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|u| usize::try_from(u).ok())
                .map(Some)
                .ok_or_else(|| bad_meta(key, format!("expected an unsigned integer, got {v:?}"))),
        }
    }

    /// An optional float.
    fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => v
                .as_f32()
                .filter(|f| f.is_finite())
                .map(Some)
                .ok_or_else(|| bad_meta(key, format!("expected a finite number, got {v:?}"))),
        }
    }

    /// An optional string.
    fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| bad_meta(key, "expected a string")),
        }
    }

    /// An optional bool.
    fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| bad_meta(key, "expected a bool")),
        }
    }

    /// An optional array.
    fn opt_array(&self, key: &str) -> Result<Option<&[Value]>> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => v.as_array().map(Some).ok_or_else(|| bad_meta(key, "expected an array")),
        }
    }
}
