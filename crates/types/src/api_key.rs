//! The API key a user gives a gateway: its account and a secret whose hash the user put on
//! chain in an [`crate::Allow`]. The key lets its holder spend within that allowance at that
//! gateway and nothing more: it signs nothing, so the gateway never holds the user's key.

use crate::{Error, Hash32, PublicKey};
use std::fmt;
use std::str::FromStr;

const PREFIX: &str = "pl-";

/// `pl-<account hex>-<secret hex>`, as a client sends it in `Authorization: Bearer …`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The paying account.
    pub account: PublicKey,
    secret: [u8; 32],
}

impl ApiKey {
    /// The key of `account` with `secret` (32 random bytes the user's wallet drew).
    pub fn new(account: PublicKey, secret: [u8; 32]) -> Self {
        Self { account, secret }
    }

    /// What an [`crate::Allow`] records: a hash of the account and the secret, so the key cannot
    /// be recovered from the chain.
    pub fn hash(&self) -> Hash32 {
        Hash32::digest(&[b"polylink-api-key-v1", &self.account.0, &self.secret])
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}-{}", self.account, hex::encode(self.secret))
    }
}

impl fmt::Debug for ApiKey {
    /// The account only: a key must not leak through logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}, secret hidden)", self.account)
    }
}

impl FromStr for ApiKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let rest = s
            .strip_prefix(PREFIX)
            .ok_or_else(|| Error::Hex { expected_bytes: 64, input: "an API key starting with pl-".into() })?;
        let (account, secret) = rest
            .split_once('-')
            .ok_or_else(|| Error::Hex { expected_bytes: 64, input: "pl-<account>-<secret>".into() })?;
        let account = PublicKey::from_str(account)?;
        let secret = Hash32::from_str(secret)?.0;
        Ok(Self { account, secret })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_round_trips_and_hides_its_secret() {
        let account = crate::SecretKey::from_label("alice").public_key();
        let key = ApiKey::new(account, [7; 32]);
        let text = key.to_string();
        assert_eq!(ApiKey::from_str(&text).ok(), Some(key.clone()));
        assert!(!format!("{key:?}").contains(&hex::encode([7u8; 32])));
        assert_ne!(key.hash(), ApiKey::new(account, [8; 32]).hash());
        for bad in ["", "sk-x", "pl-00", &text[..text.len() - 1], &text.replace("pl-", "pk-")] {
            assert!(ApiKey::from_str(bad).is_err(), "{bad}");
        }
    }
}
