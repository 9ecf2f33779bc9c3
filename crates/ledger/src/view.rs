//! A staged view over the state: reads fall through to the state, writes are buffered, and
//! only a transaction (or hook step) that succeeds has its writes committed. This is what makes
//! a refused transaction change nothing, and what lets `check_tx` run the real rules on `&self`.

use crate::error::{add, bps_of};
use crate::records::{Account, Gateway, Model, SettleKey, Stake, Task, Totals, Validator, Worker};
use crate::state::State;
use crate::{LedgerError, Result};
use polylink_types::{Amount, Event, Hash32, ModelId, PayeeRole, PublicKey, SlashReason, TaskId};
use std::collections::BTreeMap;

/// Buffered writes over one map of the state.
pub(crate) struct Overlay<'a, K, V> {
    base: &'a BTreeMap<K, V>,
    writes: BTreeMap<K, V>,
}

impl<'a, K: Ord + Clone, V: Clone> Overlay<'a, K, V> {
    fn new(base: &'a BTreeMap<K, V>) -> Self {
        Self { base, writes: BTreeMap::new() }
    }

    /// The staged value, else the committed one.
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.writes.get(key).or_else(|| self.base.get(key))
    }

    /// Stages a write.
    pub(crate) fn put(&mut self, key: K, value: V) {
        self.writes.insert(key, value);
    }
}

/// The staged writes of every map.
#[derive(Clone)]
pub(crate) struct Writes {
    accounts: BTreeMap<PublicKey, Account>,
    stakes: BTreeMap<PublicKey, Stake>,
    models: BTreeMap<ModelId, Model>,
    artifacts: BTreeMap<Hash32, ModelId>,
    workers: BTreeMap<PublicKey, Worker>,
    validators: BTreeMap<PublicKey, Validator>,
    gateways: BTreeMap<PublicKey, Gateway>,
    tasks: BTreeMap<TaskId, Task>,
}

/// A copy of a view's staged writes, to roll one step back within a longer staged run.
pub(crate) struct Checkpoint {
    writes: Writes,
    totals: Totals,
    draws: usize,
    expiries: usize,
    prunes: usize,
    events: usize,
}

/// Writes of a successful step, ready to commit.
pub(crate) struct Changes {
    writes: Writes,
    totals: Totals,
    draws: Vec<TaskId>,
    expiries: Vec<SettleKey>,
    prunes: Vec<SettleKey>,
    pub(crate) events: Vec<Event>,
}

/// The staged view a transaction or a hook step runs against.
pub(crate) struct View<'a> {
    /// Committed state (params, chain id, queues).
    pub(crate) base: &'a State,
    /// Height of the block being applied.
    pub(crate) height: u64,
    /// Its timestamp, ms.
    pub(crate) time_ms: u64,
    pub(crate) accounts: Overlay<'a, PublicKey, Account>,
    pub(crate) stakes: Overlay<'a, PublicKey, Stake>,
    pub(crate) models: Overlay<'a, ModelId, Model>,
    pub(crate) artifacts: Overlay<'a, Hash32, ModelId>,
    pub(crate) workers: Overlay<'a, PublicKey, Worker>,
    pub(crate) validators: Overlay<'a, PublicKey, Validator>,
    pub(crate) gateways: Overlay<'a, PublicKey, Gateway>,
    pub(crate) tasks: Overlay<'a, TaskId, Task>,
    pub(crate) totals: Totals,
    /// Tasks to enqueue for a committee draw at the next block.
    pub(crate) draws: Vec<TaskId>,
    /// Open tasks to watch for their deadline.
    pub(crate) expiries: Vec<SettleKey>,
    /// Final tasks to prune once their retention has passed.
    pub(crate) prunes: Vec<SettleKey>,
    pub(crate) events: Vec<Event>,
}

impl<'a> View<'a> {
    /// A fresh view for a step in a block at `height` and `time_ms`.
    pub(crate) fn new(base: &'a State, height: u64, time_ms: u64) -> Self {
        Self {
            base,
            height,
            time_ms,
            accounts: Overlay::new(&base.accounts),
            stakes: Overlay::new(&base.stakes),
            models: Overlay::new(&base.models),
            artifacts: Overlay::new(&base.artifacts),
            workers: Overlay::new(&base.workers),
            validators: Overlay::new(&base.validators),
            gateways: Overlay::new(&base.gateways),
            tasks: Overlay::new(&base.tasks),
            totals: base.totals.clone(),
            draws: Vec::new(),
            expiries: Vec::new(),
            prunes: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Moves the staged writes out, leaving the view with none.
    fn take_writes(&mut self) -> Writes {
        Writes {
            accounts: std::mem::take(&mut self.accounts.writes),
            stakes: std::mem::take(&mut self.stakes.writes),
            models: std::mem::take(&mut self.models.writes),
            artifacts: std::mem::take(&mut self.artifacts.writes),
            workers: std::mem::take(&mut self.workers.writes),
            validators: std::mem::take(&mut self.validators.writes),
            gateways: std::mem::take(&mut self.gateways.writes),
            tasks: std::mem::take(&mut self.tasks.writes),
        }
    }

    /// Replaces the staged writes.
    fn put_writes(&mut self, w: Writes) {
        self.accounts.writes = w.accounts;
        self.stakes.writes = w.stakes;
        self.models.writes = w.models;
        self.artifacts.writes = w.artifacts;
        self.workers.writes = w.workers;
        self.validators.writes = w.validators;
        self.gateways.writes = w.gateways;
        self.tasks.writes = w.tasks;
    }

    /// Ends the step, keeping its writes.
    pub(crate) fn into_changes(mut self) -> Changes {
        Changes {
            writes: self.take_writes(),
            totals: self.totals,
            draws: self.draws,
            expiries: self.expiries,
            prunes: self.prunes,
            events: self.events,
        }
    }

    /// Copies the staged writes (O(writes so far)).
    pub(crate) fn checkpoint(&mut self) -> Checkpoint {
        let writes = self.take_writes();
        self.put_writes(writes.clone());
        Checkpoint {
            writes,
            totals: self.totals.clone(),
            draws: self.draws.len(),
            expiries: self.expiries.len(),
            prunes: self.prunes.len(),
            events: self.events.len(),
        }
    }

    /// Returns to a checkpoint taken from this view.
    pub(crate) fn restore(&mut self, c: Checkpoint) {
        self.put_writes(c.writes);
        self.totals = c.totals;
        self.draws.truncate(c.draws);
        self.expiries.truncate(c.expiries);
        self.prunes.truncate(c.prunes);
        self.events.truncate(c.events);
    }

    /// The account (a fresh zero account if never seen).
    pub(crate) fn account(&self, who: &PublicKey) -> Account {
        self.accounts.get(who).cloned().unwrap_or_default()
    }

    /// The stake (zero if never bonded).
    pub(crate) fn stake(&self, who: &PublicKey) -> Stake {
        self.stakes.get(who).cloned().unwrap_or_default()
    }

    /// The task, or `UnknownTask`.
    pub(crate) fn task(&self, id: &TaskId) -> Result<Task> {
        self.tasks.get(id).cloned().ok_or(LedgerError::UnknownTask(*id))
    }

    /// Adds to a balance.
    pub(crate) fn credit(&mut self, who: &PublicKey, amount: Amount) -> Result<()> {
        let mut acct = self.account(who);
        acct.balance = add(acct.balance, amount, "balance credit")?;
        self.accounts.put(*who, acct);
        Ok(())
    }

    /// Takes from a balance, or fails with `InsufficientBalance`.
    pub(crate) fn debit(&mut self, who: &PublicKey, amount: Amount) -> Result<()> {
        let mut acct = self.account(who);
        acct.balance = acct.balance.checked_sub(amount).ok_or(LedgerError::InsufficientBalance {
            account: *who,
            needed: amount,
            available: acct.balance,
        })?;
        self.accounts.put(*who, acct);
        Ok(())
    }

    /// Gives `amount` of `task`'s escrow back to its user: to the deposit it was opened on, if it
    /// was and the deposit is still there, else to the balance.
    pub(crate) fn refund(&mut self, task: &Task, amount: Amount) -> Result<()> {
        if amount == 0 {
            return Ok(());
        }
        let mut acct = self.account(&task.user);
        let deposit = acct.allowances.as_mut_slice().iter_mut().find(|a| a.gateway == task.gateway);
        match deposit {
            Some(d) if task.allowed => d.limit = add(d.limit, amount, "deposit")?,
            _ => acct.balance = add(acct.balance, amount, "balance credit")?,
        }
        self.accounts.put(task.user, acct);
        Ok(())
    }

    /// Burns the transaction fee from `who`'s balance, or fails with `FeeUnpaid`.
    pub(crate) fn burn_fee(&mut self, who: &PublicKey) -> Result<()> {
        let fee = self.base.params.tx_fee;
        let mut acct = self.account(who);
        acct.balance = acct.balance.checked_sub(fee).ok_or(LedgerError::FeeUnpaid {
            account: *who,
            fee,
            available: acct.balance,
        })?;
        self.accounts.put(*who, acct);
        self.totals.supply =
            self.totals.supply.checked_sub(fee).ok_or(LedgerError::Overflow("supply after fee"))?;
        self.totals.fees_burned = add(self.totals.fees_burned, fee, "fees burned")?;
        Ok(())
    }

    /// Pays `amount` out of `task`'s escrow to `who` (or the treasury) and records the event.
    pub(crate) fn pay(
        &mut self,
        task: &TaskId,
        who: &PublicKey,
        role: PayeeRole,
        amount: Amount,
    ) -> Result<()> {
        if amount == 0 {
            return Ok(());
        }
        if role == PayeeRole::Treasury {
            self.totals.treasury = add(self.totals.treasury, amount, "treasury")?;
        } else if role == PayeeRole::User {
            match self.tasks.get(task).cloned() {
                Some(t) if t.user == *who => self.refund(&t, amount)?,
                _ => self.credit(who, amount)?,
            }
        } else {
            self.credit(who, amount)?;
        }
        self.events.push(Event::Paid { task: *task, account: *who, role, amount });
        Ok(())
    }

    /// Burns `bps` of `who`'s slashable stake, bonded first then the newest unbonding entries.
    pub(crate) fn slash(
        &mut self,
        who: &PublicKey,
        bps: u16,
        reason: SlashReason,
        task: &TaskId,
    ) -> Result<Amount> {
        let mut stake = self.stake(who);
        let amount = bps_of(stake.slashable(), bps)?;
        if amount == 0 {
            return Ok(0);
        }
        let mut left = amount;
        let from_bonded = left.min(stake.bonded);
        stake.bonded -= from_bonded;
        left -= from_bonded;
        let mut entries: Vec<_> = stake.unbonding.as_slice().to_vec();
        for entry in entries.iter_mut().rev() {
            let take = left.min(entry.amount);
            entry.amount -= take;
            left -= take;
        }
        entries.retain(|e| e.amount > 0);
        stake.unbonding = entries.try_into().map_err(|_| LedgerError::Overflow("unbonding entries"))?;
        self.stakes.put(*who, stake);
        self.totals.supply =
            self.totals.supply.checked_sub(amount).ok_or(LedgerError::Overflow("supply after slash"))?;
        self.totals.slashed = add(self.totals.slashed, amount, "slashed total")?;
        self.events.push(Event::Slashed { account: *who, amount, reason, task: *task });
        Ok(amount)
    }

    /// Schedules a task that just became final (settled or reclaimed) to leave the state once
    /// `task_retention_blocks` have passed.
    pub(crate) fn retire(&mut self, task: &TaskId) {
        let height = self.height.saturating_add(self.base.params.task_retention_blocks);
        self.prunes.push(SettleKey { height, task: *task });
    }

    /// Marks `who`'s stake as answering for one more unsettled task (Withdraw waits for none).
    pub(crate) fn hold(&mut self, who: &PublicKey) -> Result<()> {
        let mut stake = self.stake(who);
        stake.at_risk_tasks =
            stake.at_risk_tasks.checked_add(1).ok_or(LedgerError::Overflow("tasks at risk"))?;
        self.stakes.put(*who, stake);
        Ok(())
    }

    /// Releases one [`View::hold`] once its task has settled or expired.
    pub(crate) fn release(&mut self, who: &PublicKey) -> Result<()> {
        let mut stake = self.stake(who);
        stake.at_risk_tasks = stake
            .at_risk_tasks
            .checked_sub(1)
            .ok_or(LedgerError::Overflow("tasks at risk released twice"))?;
        self.stakes.put(*who, stake);
        Ok(())
    }
}

impl State {
    /// Commits a successful step's writes; returns its events.
    pub(crate) fn commit(&mut self, changes: Changes) -> Vec<Event> {
        let w = changes.writes;
        self.accounts.extend(w.accounts);
        self.stakes.extend(w.stakes);
        self.models.extend(w.models);
        self.artifacts.extend(w.artifacts);
        self.workers.extend(w.workers);
        self.validators.extend(w.validators);
        self.gateways.extend(w.gateways);
        self.tasks.extend(w.tasks);
        self.totals = changes.totals;
        self.draw_queue.extend(changes.draws);
        self.expiry_queue.extend(changes.expiries);
        self.prune_queue.extend(changes.prunes);
        changes.events
    }
}
