//! Fixed-size byte strings (hashes, keys, signatures) shown and parsed as lowercase hex.

use crate::Error;
use bytes::{Buf, BufMut};
use commonware_codec::{Error as CodecError, FixedSize, Read, Write};
use sha2::{Digest as _, Sha256};

/// Defines a `[u8; N]` newtype with hex `Display`/`FromStr`/serde and a fixed-size codec.
macro_rules! hex_bytes {
    ($(#[$meta:meta])* $name:ident, $len:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s.trim_start_matches("0x"), &mut out).map_err(|_| Error::Hex {
                    expected_bytes: $len,
                    input: s.chars().take(2 * $len + 4).collect(),
                })?;
                Ok(Self(out))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl Write for $name {
            fn write(&self, buf: &mut impl BufMut) {
                buf.put_slice(&self.0);
            }
        }

        impl FixedSize for $name {
            const SIZE: usize = $len;
        }

        impl Read for $name {
            type Cfg = ();
            fn read_cfg(buf: &mut impl commonware_codec::Buf, _: &()) -> Result<Self, CodecError> {
                if buf.remaining() < $len {
                    return Err(CodecError::EndOfBuffer);
                }
                let mut out = [0u8; $len];
                buf.copy_to_slice(&mut out);
                Ok(Self(out))
            }
        }
    };
}

hex_bytes!(
    /// A sha256 digest: transaction ids, task ids, artifact/prompt/output hashes, state roots.
    Hash32,
    32
);

hex_bytes!(
    /// An ed25519 public key: the address of an account.
    PublicKey,
    32
);

hex_bytes!(
    /// An ed25519 signature.
    Signature,
    64
);

impl Hash32 {
    /// The all-zero hash (the parent of the first block).
    pub const ZERO: Hash32 = Hash32([0u8; 32]);

    /// sha256 over the concatenation of `parts`.
    pub fn digest(parts: &[&[u8]]) -> Hash32 {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        Hash32(hasher.finalize().into())
    }

    /// The first 16 bytes as a big-endian integer (for uniform sampling).
    pub fn to_u128(&self) -> u128 {
        let mut head = [0u8; 16];
        head.copy_from_slice(&self.0[..16]);
        u128::from_be_bytes(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects_wrong_length() {
        let h = Hash32::digest(&[b"abc"]);
        assert_eq!(h.to_string(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(h.to_string().parse::<Hash32>().ok(), Some(h));
        assert!("abcd".parse::<Hash32>().is_err());
        let json = serde_json::to_string(&h).unwrap_or_default();
        assert_eq!(serde_json::from_str::<Hash32>(&json).ok(), Some(h));
    }
}
