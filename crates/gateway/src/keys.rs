//! API keys, each bound to an on-chain account whose key the gateway holds and signs tasks with,
//! and each with its own limit of concurrent requests.
//!
//! Keys file (TOML):
//! ```toml
//! [[key]]
//! api_key = "sk-alice-…"          # what the client sends as `Authorization: Bearer …`
//! account_seed = "<64 hex chars>"  # the account's ed25519 seed
//! # or: account_label = "alice"    # a dev account derived from a label (tests, local runs)
//! ```

use crate::error::{GatewayError, Result};
use polylink_types::{PublicKey, SecretKey};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// An on-chain account the gateway acts for.
#[derive(Debug, Clone)]
pub struct Account {
    /// The signing key.
    pub key: SecretKey,
    /// Its address.
    pub address: PublicKey,
}

impl Account {
    /// The account of `key`.
    pub fn new(key: SecretKey) -> Self {
        let address = key.public_key();
        Self { key, address }
    }
}

#[derive(Debug)]
struct Entry {
    account: Arc<Account>,
    in_flight: Arc<Semaphore>,
}

/// The keys the gateway accepts.
#[derive(Debug)]
pub struct ApiKeys {
    entries: HashMap<String, Entry>,
    per_key_max: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    key: Vec<KeyLine>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyLine {
    api_key: String,
    account_seed: Option<String>,
    account_label: Option<String>,
}

impl Default for ApiKeys {
    fn default() -> Self {
        Self::new()
    }
}

impl ApiKeys {
    /// No keys yet; each key allows one request at a time until [`ApiKeys::limit_per_key`].
    pub fn new() -> Self {
        Self { entries: HashMap::new(), per_key_max: 1 }
    }

    /// Lets each key have `per_key_max` requests in flight.
    pub fn limit_per_key(mut self, per_key_max: usize) -> Self {
        self.per_key_max = per_key_max.max(1);
        for entry in self.entries.values_mut() {
            entry.in_flight = Arc::new(Semaphore::new(self.per_key_max));
        }
        self
    }

    /// Binds `api_key` to `account`.
    pub fn insert(&mut self, api_key: &str, account: Account) {
        let entry =
            Entry { account: Arc::new(account), in_flight: Arc::new(Semaphore::new(self.per_key_max)) };
        self.entries.insert(api_key.to_string(), entry);
    }

    /// Reads a keys file (format in the module docs).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| GatewayError::Setup(format!("cannot read keys file {}: {e}", path.display())))?;
        let file: KeysFile = toml::from_str(&text)
            .map_err(|e| GatewayError::Setup(format!("keys file {}: {e}", path.display())))?;
        let mut keys = Self::new();
        for line in file.key {
            if line.api_key.len() < 8 {
                return Err(GatewayError::Setup("an api_key must have at least 8 characters".into()));
            }
            let secret = match (line.account_seed, line.account_label) {
                (Some(seed), None) => {
                    let bytes =
                        hex::decode(seed.trim()).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or_else(
                            || GatewayError::Setup("account_seed must be 64 hex characters".into()),
                        )?;
                    SecretKey::from_seed(bytes)
                }
                (None, Some(label)) => SecretKey::from_label(&label),
                _ => {
                    return Err(GatewayError::Setup(
                        "each [[key]] needs exactly one of account_seed or account_label".into(),
                    ));
                }
            };
            keys.insert(&line.api_key, Account::new(secret));
        }
        Ok(keys)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The accounts bound to keys, for logs.
    pub fn accounts(&self) -> Vec<PublicKey> {
        self.entries.values().map(|e| e.account.address).collect()
    }

    /// Checks the `Authorization` header value and takes one of the key's request slots.
    pub fn authorize(&self, header: Option<&str>) -> Result<(Arc<Account>, OwnedSemaphorePermit)> {
        let key = header
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(GatewayError::MissingKey)?;
        let entry = self.entries.get(key).ok_or_else(|| GatewayError::WrongKey { masked: mask(key) })?;
        let permit = entry
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| GatewayError::TooManyRequests { limit: self.per_key_max })?;
        Ok((entry.account.clone(), permit))
    }
}

/// Shows the first 3 and last 2 characters of a key, as OpenAI does.
fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().take(64).collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_authorize_and_limit_concurrency() {
        let mut keys = ApiKeys::new();
        keys.insert("sk-test-1234", Account::new(SecretKey::from_label("alice")));
        assert!(matches!(keys.authorize(None), Err(GatewayError::MissingKey)));
        assert!(matches!(keys.authorize(Some("Bearer nope-nope")), Err(GatewayError::WrongKey { .. })));
        let (account, permit) = keys.authorize(Some("Bearer sk-test-1234")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(account.address, SecretKey::from_label("alice").public_key());
        assert!(matches!(
            keys.authorize(Some("Bearer sk-test-1234")),
            Err(GatewayError::TooManyRequests { .. })
        ));
        drop(permit);
        assert!(keys.authorize(Some("Bearer sk-test-1234")).is_ok());
        assert_eq!(mask("sk-abcdefgh"), "sk-******gh");
    }
}
