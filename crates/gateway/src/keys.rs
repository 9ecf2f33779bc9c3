//! Who may call, and which account pays: API keys, each with its own limit of concurrent
//! requests. The gateway holds no user's signing key.
//!
//! Two kinds of key:
//! - an **on-chain key** `pl-<account>-<secret>` ([`ApiKey`]), which the account's owner made with
//!   `polylink wallet allow`: its hash is in the account's allowance for this gateway on chain,
//!   so any user can call any gateway without signing up, and the gateway can spend only what
//!   the allowance holds. Checked by the billing ([`crate::Billing::authenticate`]);
//! - a **listed key** from a keys file or the command line, bound to an account's address (for
//!   a gateway without a chain, or an operator that hands out keys itself; on a chain the
//!   account must still allow this gateway).
//!
//! Keys file (TOML):
//! ```toml
//! [[key]]
//! api_key = "sk-alice-…"  # what the client sends as `Authorization: Bearer …`
//! account = "<64 hex>"     # the paying account's public key
//! ```

use crate::billing::Billing;
use crate::error::{GatewayError, Result};
use polylink_types::{ApiKey, PublicKey, SignedVoucher};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The account a request is billed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    /// Its address.
    pub address: PublicKey,
    /// The account's own authorization of this request, when it signed it.
    pub voucher: Option<SignedVoucher>,
}

impl Account {
    /// An account calling with a key (no voucher).
    pub fn keyed(address: PublicKey) -> Self {
        Self { address, voucher: None }
    }
}

/// The keys the gateway accepts.
#[derive(Debug)]
pub struct ApiKeys {
    listed: HashMap<String, PublicKey>,
    /// Requests in flight per account (a listed key's and an on-chain key's alike).
    in_flight: Mutex<HashMap<PublicKey, Arc<Semaphore>>>,
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
    account: String,
}

impl Default for ApiKeys {
    fn default() -> Self {
        Self::new()
    }
}

impl ApiKeys {
    /// No listed keys; each account may have one request at a time until
    /// [`ApiKeys::limit_per_key`].
    pub fn new() -> Self {
        Self { listed: HashMap::new(), in_flight: Mutex::new(HashMap::new()), per_key_max: 1 }
    }

    /// Lets each account have `per_key_max` requests in flight.
    pub fn limit_per_key(mut self, per_key_max: usize) -> Self {
        self.per_key_max = per_key_max.max(1);
        self
    }

    /// Binds the listed key `api_key` to `account`.
    pub fn insert(&mut self, api_key: &str, account: PublicKey) {
        self.listed.insert(api_key.to_string(), account);
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
            let account = PublicKey::from_str(line.account.trim())
                .map_err(|e| GatewayError::Setup(format!("account of a [[key]]: {e}")))?;
            keys.insert(&line.api_key, account);
        }
        Ok(keys)
    }

    /// Number of listed keys.
    pub fn len(&self) -> usize {
        self.listed.len()
    }

    /// Whether no key is listed.
    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// The accounts of the listed keys, for logs.
    pub fn accounts(&self) -> Vec<PublicKey> {
        self.listed.values().copied().collect()
    }

    /// Checks the request's credentials and takes one of its account's request slots: a voucher
    /// (`x-polylink-voucher`, the account's own signature, which `billing` checks) when there is
    /// one, else the `Authorization` header value (a listed key, else an on-chain key that
    /// `billing` accepts).
    pub async fn authorize(
        &self,
        header: Option<&str>,
        voucher: Option<&str>,
        billing: Option<&dyn Billing>,
    ) -> Result<(Account, OwnedSemaphorePermit)> {
        if let Some(text) = voucher {
            let billing = billing.ok_or_else(|| {
                GatewayError::BadVoucher("this gateway bills no chain, so it takes no signed requests".into())
            })?;
            let voucher = SignedVoucher::from_header(text)
                .map_err(|e| GatewayError::BadVoucher(format!("cannot read it: {e}")))?;
            billing.check_voucher(&voucher).await?;
            let account = Account { address: voucher.voucher.payer, voucher: Some(voucher) };
            return Ok((account, self.slot(&account.address)?));
        }
        let key = header
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(GatewayError::MissingKey)?;
        let address = match (self.listed.get(key), billing) {
            (Some(address), _) => *address,
            (None, Some(billing)) => {
                let api_key =
                    ApiKey::from_str(key).map_err(|_| GatewayError::WrongKey { masked: mask(key) })?;
                billing.authenticate(&api_key).await.map_err(|e| match e {
                    GatewayError::WrongKey { .. } => GatewayError::WrongKey { masked: mask(key) },
                    other => other,
                })?;
                api_key.account
            }
            (None, None) => return Err(GatewayError::WrongKey { masked: mask(key) }),
        };
        Ok((Account::keyed(address), self.slot(&address)?))
    }

    /// One of `address`'s request slots.
    fn slot(&self, address: &PublicKey) -> Result<OwnedSemaphorePermit> {
        let slots = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            in_flight.entry(*address).or_insert_with(|| Arc::new(Semaphore::new(self.per_key_max))).clone()
        };
        slots.try_acquire_owned().map_err(|_| GatewayError::TooManyRequests { limit: self.per_key_max })
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
    use polylink_types::SecretKey;

    #[tokio::test]
    async fn keys_authorize_and_limit_concurrency() {
        let alice = SecretKey::from_label("alice").public_key();
        let mut keys = ApiKeys::new();
        keys.insert("sk-test-1234", alice);
        assert!(matches!(keys.authorize(None, None, None).await, Err(GatewayError::MissingKey)));
        assert!(matches!(
            keys.authorize(Some("Bearer nope-nope"), None, None).await,
            Err(GatewayError::WrongKey { .. })
        ));
        // An on-chain key without a billing to check it is refused.
        let chain_key = ApiKey::new(alice, [1; 32]).to_string();
        assert!(matches!(
            keys.authorize(Some(&format!("Bearer {chain_key}")), None, None).await,
            Err(GatewayError::WrongKey { .. })
        ));
        let (account, permit) =
            keys.authorize(Some("Bearer sk-test-1234"), None, None).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(account.address, alice);
        assert!(matches!(
            keys.authorize(Some("Bearer sk-test-1234"), None, None).await,
            Err(GatewayError::TooManyRequests { .. })
        ));
        drop(permit);
        assert!(keys.authorize(Some("Bearer sk-test-1234"), None, None).await.is_ok());
        // A voucher without a chain to check it is refused, however it looks.
        let signed = polylink_types::Voucher {
            payer: alice,
            gateway: alice,
            model: 1,
            request_hash: polylink_types::Hash32::ZERO,
            max_spend: 1,
            expires_ms: 1,
            nonce: 1,
        }
        .sign(&SecretKey::from_label("alice"), "dev")
        .to_header();
        assert!(matches!(
            keys.authorize(None, Some(&signed), None).await,
            Err(GatewayError::BadVoucher(m)) if m.contains("no chain")
        ));
        assert_eq!(mask("sk-abcdefgh"), "sk-******gh");
    }
}
