//! Genesis: chain id, parameters and initial balances; and a dev genesis with funded keys.

use crate::error::add;
use crate::records::Totals;
use crate::state::State;
use crate::{LedgerError, Params, Result};
use polylink_types::{Amount, BoundedString, CHAIN_ID_LEN_MAX, PublicKey, SecretKey, amount_serde};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Balance of each dev account in a dev genesis (base units).
pub const DEV_BALANCE: Amount = 1_000_000_000_000_000;

/// One initial balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisAccount {
    /// Account.
    pub account: PublicKey,
    /// Initial balance.
    #[serde(with = "amount_serde")]
    pub balance: Amount,
}

/// Everything the first state is made of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// Network name, bound into every signature (1..=64 printable ASCII bytes).
    pub chain_id: String,
    /// Parameters.
    pub params: Params,
    /// Initial balances (each account once); their sum is the total supply.
    pub accounts: Vec<GenesisAccount>,
}

/// The secret key of dev account `i` (fixed seeds: never use on a real network).
pub fn dev_key(i: u32) -> SecretKey {
    SecretKey::from_label(&format!("polylink-dev-account-{i}"))
}

impl Genesis {
    /// A dev genesis: default params and `n` accounts funded with [`DEV_BALANCE`], keys from
    /// [`dev_key`].
    pub fn dev(chain_id: &str, n: u32) -> (Genesis, Vec<SecretKey>) {
        let keys: Vec<SecretKey> = (0..n).map(dev_key).collect();
        let accounts =
            keys.iter().map(|k| GenesisAccount { account: k.public_key(), balance: DEV_BALANCE }).collect();
        let genesis = Genesis { chain_id: chain_id.to_string(), params: Params::default(), accounts };
        (genesis, keys)
    }

    /// Validates and builds the height-0 state.
    pub fn build(&self) -> Result<State> {
        self.params.validate()?;
        let id_ok = !self.chain_id.is_empty()
            && self.chain_id.len() <= CHAIN_ID_LEN_MAX
            && self.chain_id.bytes().all(|b| b.is_ascii_graphic());
        if !id_ok {
            return Err(LedgerError::InvalidGenesis(format!(
                "chain id {:?} must be 1..={CHAIN_ID_LEN_MAX} printable ASCII bytes",
                self.chain_id
            )));
        }
        let chain_id = BoundedString::new(self.chain_id.clone())
            .map_err(|e| LedgerError::InvalidGenesis(e.to_string()))?;
        let mut accounts = BTreeMap::new();
        let mut seen = BTreeSet::new();
        let mut supply: Amount = 0;
        for a in &self.accounts {
            if !seen.insert(a.account) {
                return Err(LedgerError::InvalidGenesis(format!("account {} listed twice", a.account)));
            }
            supply = add(supply, a.balance, "genesis supply")?;
            accounts.insert(a.account, crate::Account { balance: a.balance, ..Default::default() });
        }
        Ok(State {
            chain_id,
            params: self.params.clone(),
            height: 0,
            time_ms: 0,
            totals: Totals { supply, treasury: 0, slashed: 0, fees_burned: 0, next_model_id: 1 },
            accounts,
            stakes: BTreeMap::new(),
            models: BTreeMap::new(),
            artifacts: BTreeMap::new(),
            workers: BTreeMap::new(),
            validators: BTreeMap::new(),
            gateways: BTreeMap::new(),
            tasks: BTreeMap::new(),
            draw_queue: BTreeSet::new(),
            settle_queue: BTreeSet::new(),
            expiry_queue: BTreeSet::new(),
            prune_queue: BTreeSet::new(),
        })
    }
}
