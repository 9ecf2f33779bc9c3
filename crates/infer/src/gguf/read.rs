//! Bounded little-endian reads of the GGUF header: every length is checked against the bytes
//! left in the file before anything is allocated, so a hostile count cannot exhaust memory.

use std::io::Read;

use super::value::Value;
use crate::error::{Result, malformed};

/// Longest metadata string or tensor name accepted (chat templates run to tens of KB).
pub(super) const STRING_BYTES_MAX: u64 = 1 << 20;
/// Deepest array nesting accepted.
const ARRAY_DEPTH_MAX: u32 = 2;

/// A reader that knows its position and how many bytes the file has left.
pub(super) struct Cursor<R> {
    inner: R,
    pos: u64,
    len: u64,
}

impl<R: Read> Cursor<R> {
    /// Wraps a reader at offset 0 of a file of `len` bytes.
    pub(super) fn new(inner: R, len: u64) -> Self {
        Self { inner, pos: 0, len }
    }

    /// Current offset.
    pub(super) fn pos(&self) -> u64 {
        self.pos
    }

    /// Bytes left in the file.
    pub(super) fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        if self.remaining() < N as u64 {
            return Err(malformed(self.pos, "unexpected end of file"));
        }
        self.inner.read_exact(&mut buf).map_err(|e| malformed(self.pos, e.to_string()))?;
        self.pos += N as u64;
        Ok(buf)
    }

    /// Reads a u32.
    pub(super) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    /// Reads a u64.
    pub(super) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    /// Reads a count and checks that `count * min_item_bytes` bytes can still follow.
    pub(super) fn count(&mut self, min_item_bytes: u64, what: &str) -> Result<usize> {
        let at = self.pos;
        let n = self.u64()?;
        if n.saturating_mul(min_item_bytes) > self.remaining() {
            return Err(malformed(at, format!("{what} count {n} exceeds the file size")));
        }
        usize::try_from(n).map_err(|_| malformed(at, format!("{what} count {n} too large")))
    }

    /// Reads a length-prefixed UTF-8 string.
    pub(super) fn string(&mut self) -> Result<String> {
        let at = self.pos;
        let n = self.u64()?;
        if n > STRING_BYTES_MAX || n > self.remaining() {
            return Err(malformed(at, format!("string of {n} bytes is too long or truncated")));
        }
        let mut buf = vec![0u8; n as usize];
        self.inner.read_exact(&mut buf).map_err(|e| malformed(at, e.to_string()))?;
        self.pos += n;
        String::from_utf8(buf).map_err(|_| malformed(at, "string is not utf-8"))
    }

    /// Reads a value of GGUF type `ty`.
    pub(super) fn value(&mut self, ty: u32) -> Result<Value> {
        self.value_at_depth(ty, 0)
    }

    fn value_at_depth(&mut self, ty: u32, depth: u32) -> Result<Value> {
        let at = self.pos;
        Ok(match ty {
            0 => Value::U8(u8::from_le_bytes(self.bytes()?)),
            1 => Value::I8(i8::from_le_bytes(self.bytes()?)),
            2 => Value::U16(u16::from_le_bytes(self.bytes()?)),
            3 => Value::I16(i16::from_le_bytes(self.bytes()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.bytes()?)),
            6 => Value::F32(f32::from_le_bytes(self.bytes()?)),
            7 => match u8::from_le_bytes(self.bytes()?) {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(malformed(at, format!("bool byte {b}"))),
            },
            8 => Value::Str(self.string()?),
            9 => {
                if depth >= ARRAY_DEPTH_MAX {
                    return Err(malformed(at, "arrays nested too deeply"));
                }
                let item_ty = self.u32()?;
                let min_bytes = match item_ty {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8..=12 => 8,
                    t => return Err(malformed(at, format!("unknown array item type {t}"))),
                };
                let n = self.count(min_bytes, "array")?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value_at_depth(item_ty, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.bytes()?)),
            12 => Value::F64(f64::from_le_bytes(self.bytes()?)),
            t => return Err(malformed(at, format!("unknown value type {t}"))),
        })
    }
}
