//! The PolyLink ledger as the node's state machine: admission, execution, snapshots, queries.
use crate::machine::{Checked, Machine, Queryable};
use crate::rpc::{
    AccountView, Executed, GatewayEntry, ModelEntry, ParamsView, Refusal, TxOutcome, TxReceipt,
    ValidatorEntry, WorkerEntry,
};
use polylink_ledger::{BlockOutcome, Ledger, Model, Receipt, Task};
use polylink_types::{BlockContext, Hash32, ModelId, PublicKey, SignedTx, TaskId};

fn receipt(receipt: &Receipt) -> TxReceipt {
    let outcome = match &receipt.result {
        Ok(events) => TxOutcome::Applied { events: events.clone() },
        Err(e) => TxOutcome::Refused { refusal: Refusal::from(e) },
    };
    TxReceipt { tx_id: receipt.tx_id, outcome }
}

impl Machine for Ledger {
    fn check_txs(&self, txs: &[SignedTx]) -> Vec<Checked> {
        Ledger::check_txs(self, txs)
            .into_iter()
            .map(|check| Checked {
                includable: check.includable(),
                result: check.error().map_or(Ok(()), |e| Err(Refusal::from(e))),
            })
            .collect()
    }

    fn apply_block(
        &mut self,
        ctx: &BlockContext,
        txs: &[SignedTx],
    ) -> Result<(Executed, Vec<(TaskId, Task)>), String> {
        let BlockOutcome { receipts, events, hook_failures, pruned, state_root } =
            Ledger::apply_block(self, ctx, txs).map_err(|e| e.to_string())?;
        for (task, failure) in &hook_failures {
            tracing::error!(%task, error = %failure, height = ctx.height, "ledger hook failed");
        }
        let executed = Executed {
            height: ctx.height,
            state_root,
            receipts: receipts.iter().map(receipt).collect(),
            events,
        };
        Ok((executed, pruned))
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
    fn account(&self, account: &PublicKey, pending: u64) -> AccountView {
        let record = Ledger::account(self, account);
        AccountView {
            account: *account,
            balance: record.balance,
            nonce: record.nonce,
            pending,
            stake: self.stake(account),
            worker: self.worker(account).cloned(),
            validator: self.validator(account).cloned(),
            gateway: self.gateway(account).cloned(),
            allowances: record.allowances.as_slice().to_vec(),
        }
    }

    fn models(&self) -> Vec<ModelEntry> {
        self.state().models.iter().map(|(id, model)| ModelEntry { id: *id, model: model.clone() }).collect()
    }

    fn model(&self, id: ModelId) -> Option<Model> {
        Ledger::model(self, id).cloned()
    }

    fn workers(&self) -> Vec<WorkerEntry> {
        self.state()
            .workers
            .iter()
            .map(|(k, w)| WorkerEntry { account: *k, worker: w.clone(), stake: self.stake(k) })
            .collect()
    }

    fn gateways(&self) -> Vec<GatewayEntry> {
        self.state()
            .gateways
            .iter()
            .map(|(k, g)| GatewayEntry { account: *k, gateway: g.clone(), stake: self.stake(k) })
            .collect()
    }

    fn validators(&self) -> Vec<ValidatorEntry> {
        self.state()
            .validators
            .iter()
            .map(|(k, v)| ValidatorEntry { account: *k, validator: v.clone(), stake: self.stake(k) })
            .collect()
    }

    fn task(&self, id: &TaskId) -> Option<Task> {
        Ledger::task(self, id).cloned()
    }

    fn tasks_held(&self) -> usize {
        self.state().tasks.len()
    }

    fn params(&self) -> ParamsView {
        ParamsView {
            chain_id: self.chain_id().to_string(),
            height: self.height(),
            params: self.params().clone(),
            totals: self.totals().clone(),
        }
    }
}

/// Builds the height-0 ledger from a node config's `genesis` table (which must name the same
/// chain id as the node).
pub fn ledger_from_config(config: &crate::config::NodeConfig) -> Result<Ledger, crate::Error> {
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
