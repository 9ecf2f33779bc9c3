//! Collections and strings whose length limit is part of the type, so every decoder bounds a
//! length before it allocates and the limit also holds for values built in code or from JSON.

use crate::Error;
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, RangeCfg, Read, Write};
use serde::{Deserialize, Serialize};

/// A `Vec<T>` of at most `MAX` items.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<T>", into = "Vec<T>")]
#[serde(bound(serialize = "T: Clone + Serialize", deserialize = "T: Deserialize<'de>"))]
pub struct BoundedVec<T, const MAX: usize>(Vec<T>);

impl<T, const MAX: usize> BoundedVec<T, MAX> {
    /// Wraps `items`, or fails if there are more than `MAX`.
    pub fn new(items: Vec<T>) -> Result<Self, Error> {
        if items.len() > MAX {
            return Err(Error::OverLimit { what: "list", len: items.len(), max: MAX });
        }
        Ok(Self(items))
    }

    /// The items.
    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    /// The items, to change in place (the count cannot change this way, so the limit holds).
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.0
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no items.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over the items.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
}

impl<T, const MAX: usize> Default for BoundedVec<T, MAX> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T, const MAX: usize> TryFrom<Vec<T>> for BoundedVec<T, MAX> {
    type Error = Error;
    fn try_from(items: Vec<T>) -> Result<Self, Error> {
        Self::new(items)
    }
}

impl<T, const MAX: usize> From<BoundedVec<T, MAX>> for Vec<T> {
    fn from(v: BoundedVec<T, MAX>) -> Vec<T> {
        v.0
    }
}

impl<T: Write, const MAX: usize> Write for BoundedVec<T, MAX> {
    fn write(&self, buf: &mut impl BufMut) {
        self.0.write(buf);
    }
}

impl<T: EncodeSize, const MAX: usize> EncodeSize for BoundedVec<T, MAX> {
    fn encode_size(&self) -> usize {
        self.0.encode_size()
    }
}

impl<T: Read<Cfg = ()>, const MAX: usize> Read for BoundedVec<T, MAX> {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Vec::<T>::read_cfg(buf, &(RangeCfg::new(0..=MAX), ())).map(Self)
    }
}

/// A UTF-8 string of at most `MAX` bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BoundedString<const MAX: usize>(String);

impl<const MAX: usize> BoundedString<MAX> {
    /// Wraps `text`, or fails if it is longer than `MAX` bytes.
    pub fn new(text: impl Into<String>) -> Result<Self, Error> {
        let text = text.into();
        if text.len() > MAX {
            return Err(Error::OverLimit { what: "string bytes", len: text.len(), max: MAX });
        }
        Ok(Self(text))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<const MAX: usize> std::fmt::Display for BoundedString<MAX> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const MAX: usize> TryFrom<String> for BoundedString<MAX> {
    type Error = Error;
    fn try_from(text: String) -> Result<Self, Error> {
        Self::new(text)
    }
}

impl<const MAX: usize> From<BoundedString<MAX>> for String {
    fn from(s: BoundedString<MAX>) -> String {
        s.0
    }
}

impl<const MAX: usize> Write for BoundedString<MAX> {
    fn write(&self, buf: &mut impl BufMut) {
        self.0.as_bytes().write(buf);
    }
}

impl<const MAX: usize> EncodeSize for BoundedString<MAX> {
    fn encode_size(&self) -> usize {
        self.0.as_bytes().encode_size()
    }
}

impl<const MAX: usize> Read for BoundedString<MAX> {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let raw = Vec::<u8>::read_cfg(buf, &(RangeCfg::new(0..=MAX), ()))?;
        String::from_utf8(raw).map(Self).map_err(|_| CodecError::Invalid("BoundedString", "not utf-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{Copying, Decode, Encode};

    #[test]
    fn limits_hold_in_code_json_and_bytes() {
        assert!(BoundedVec::<u16, 2>::new(vec![1, 2, 3]).is_err());
        assert!(serde_json::from_str::<BoundedVec<u16, 2>>("[1,2,3]").is_err());
        let three: Vec<u16> = vec![1, 2, 3];
        let bytes = three.encode();
        assert!(BoundedVec::<u16, 2>::decode_cfg(bytes.clone(), &()).is_err());
        assert!(BoundedVec::<u16, 3>::decode_cfg(bytes, &()).is_ok());
        assert!(BoundedString::<3>::new("abcd").is_err());
        let bad_utf8 = [2u8, 0xff, 0xfe];
        assert!(BoundedString::<8>::decode_cfg(Copying(&bad_utf8[..]), &()).is_err());
    }
}
