//! The PolyLink ledger as the node's state machine: admission, execution, snapshots, queries.
use crate::machine::{Executed, Machine, Query, Queryable};
use polylink_ledger::{BlockOutcome, Ledger, Receipt};
use polylink_types::{BlockContext, Hash32, SignedTx};
use serde_json::{Value, json};

fn to_json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or_else(|e| json!({ "error": e.to_string() }))
}

fn receipt_json(receipt: &Receipt) -> Value {
    match &receipt.result {
        Ok(events) => json!({ "tx_id": receipt.tx_id, "ok": true, "events": to_json(events) }),
        Err(e) => json!({ "tx_id": receipt.tx_id, "ok": false, "error": e.to_string() }),
    }
}

impl Machine for Ledger {
    fn check_txs(&self, txs: &[SignedTx]) -> Vec<Result<(), String>> {
        Ledger::check_txs(self, txs).into_iter().map(|r| r.map_err(|e| e.to_string())).collect()
    }

    fn apply_block(&mut self, ctx: &BlockContext, txs: &[SignedTx]) -> Result<Executed, String> {
        let BlockOutcome { receipts, events, hook_failures, state_root } =
            Ledger::apply_block(self, ctx, txs).map_err(|e| e.to_string())?;
        for (task, failure) in &hook_failures {
            tracing::error!(%task, error = %failure, height = ctx.height, "ledger hook failed");
        }
        Ok(Executed {
            height: ctx.height,
            state_root,
            receipts: receipts.iter().map(receipt_json).collect(),
            events: events.iter().map(to_json).collect(),
        })
    }

    fn state_root(&self) -> Hash32 {
        Ledger::state_root(self)
    }

    fn snapshot(&self) -> Vec<u8> {
        Ledger::snapshot(self)
    }

    fn restore(&self, bytes: &[u8]) -> Result<Self, String> {
        let restored = Ledger::from_snapshot(bytes).map_err(|e| e.to_string())?;
        if restored.chain_id() != self.chain_id() {
            return Err(format!(
                "snapshot is of chain {:?}, this node runs {:?}",
                restored.chain_id(),
                self.chain_id()
            ));
        }
        Ok(restored)
    }
}

impl Queryable for Ledger {
    fn query(&self, query: &Query) -> Option<Value> {
        let state = self.state();
        Some(match query {
            Query::Account(key) => json!({
                "account": key,
                "balance": self.account(key).balance.to_string(),
                "nonce": self.account(key).nonce,
                "stake": to_json(&self.stake(key)),
                "worker": self.worker(key).map(to_json),
                "validator": self.validator(key).map(to_json),
            }),
            Query::Models => Value::Array(
                state
                    .models
                    .iter()
                    .map(|(id, m)| json!({ "id": id, "model": to_json(m) }))
                    .collect(),
            ),
            Query::Model(id) => to_json(self.model(*id)?),
            Query::Workers => Value::Array(
                state
                    .workers
                    .iter()
                    .map(|(k, w)| json!({ "account": k, "worker": to_json(w) }))
                    .collect(),
            ),
            Query::Validators => Value::Array(
                state
                    .validators
                    .iter()
                    .map(|(k, v)| json!({ "account": k, "validator": to_json(v), "stake": to_json(&self.stake(k)) }))
                    .collect(),
            ),
            Query::Task(id) => to_json(self.task(id)?),
            Query::Params => json!({
                "chain_id": self.chain_id(),
                "height": self.height(),
                "params": to_json(self.params()),
                "totals": to_json(self.totals()),
            }),
        })
    }
}

/// Builds the height-0 ledger from a node config's `genesis` table (which must name the same
/// chain id as the node).
pub fn from_config(config: &crate::config::NodeConfig) -> Result<Ledger, crate::Error> {
    let genesis: polylink_ledger::Genesis =
        config.genesis.clone().try_into().map_err(|e| crate::Error::Ledger(format!("genesis: {e}")))?;
    if genesis.chain_id != config.chain_id {
        return Err(crate::Error::Ledger(format!(
            "genesis chain id {:?} differs from the node's {:?}",
            genesis.chain_id, config.chain_id
        )));
    }
    Ledger::genesis(&genesis).map_err(|e| crate::Error::Ledger(e.to_string()))
}

/// The ledger genesis as a config table.
pub fn genesis_value(genesis: &polylink_ledger::Genesis) -> Result<toml::Value, crate::Error> {
    toml::Value::try_from(genesis).map_err(|e| crate::Error::Ledger(format!("genesis: {e}")))
}
