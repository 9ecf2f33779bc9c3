//! JSON form of [`crate::Amount`]: a decimal string, because JSON numbers lose precision past
//! 2^53 in most clients and serde cannot buffer `u128` inside tagged enums. Plain numbers that fit
//! a `u64` are accepted on input too. Use with `#[serde(with = "polylink_types::amount_serde")]`.

use serde::{Deserializer, Serializer, de};

/// Writes the amount as a decimal string.
pub fn serialize<S: Serializer>(amount: &u128, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&amount.to_string())
}

/// Reads a decimal string or a non-negative integer.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
    d.deserialize_any(AmountVisitor)
}

struct AmountVisitor;

impl de::Visitor<'_> for AmountVisitor {
    type Value = u128;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an amount as a decimal string or a non-negative integer")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u128, E> {
        v.parse::<u128>().map_err(|_| E::custom(format!("invalid amount {v:?}")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u128, E> {
        Ok(u128::from(v))
    }

    // TOML and some JSON readers hand integers over as signed.
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u128, E> {
        u128::try_from(v).map_err(|_| E::custom(format!("negative amount {v}")))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<u128, E> {
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct A {
        #[serde(with = "super")]
        x: u128,
    }

    #[test]
    fn string_form_keeps_full_precision() {
        let a = A { x: u128::MAX };
        let json = serde_json::to_string(&a).unwrap_or_default();
        assert_eq!(json, format!("{{\"x\":\"{}\"}}", u128::MAX));
        assert_eq!(serde_json::from_str::<A>(&json).ok(), Some(a));
        assert_eq!(serde_json::from_str::<A>("{\"x\":12}").ok(), Some(A { x: 12 }));
        assert!(serde_json::from_str::<A>("{\"x\":\"-1\"}").is_err());
        assert!(serde_json::from_str::<A>("{\"x\":-1}").is_err());
    }
}
