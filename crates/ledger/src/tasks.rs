//! Task submission (escrow), results (fee and refund) and reclaiming after the deadline.
//!
//! Who may submit a result: only the task's gateway (named by the SubmitTask, a registered
//! gateway with its minimum bonded), signing with its own key: nobody else can report, so a
//! result can neither be forged nor raced in by a third party, and no gateway needs a worker's
//! key. Who answers for it: only the workers whose signed receipts it carries
//! (`crate::receipts`), listed or stand-ins.

use crate::error::add;
use crate::error::mul;
use crate::params::{DEADLINE_SPEED_MARGIN, Params};
use crate::records::{
    ALLOWANCES_MAX, Allowance, SettleKey, Task, TaskResult, TaskStatus, VOUCHERS_LIVE_MAX, VoucherUse,
};
use crate::registry::{check_gateway, check_pipeline};
use crate::view::View;
use crate::{LedgerError, Result};
use polylink_types::{
    Allow, Amount, BoundedVec, Event, Hash32, ModelId, PayeeRole, PublicKey, ReclaimTask, SignedVoucher,
    SubmitResult, SubmitTask, TaskId, VOUCHER_TTL_MAX_MS,
};

fn wrong_status(task: &TaskId, t: &Task, action: &'static str) -> LedgerError {
    LedgerError::WrongTaskStatus { task: *task, status: t.status.name(), action }
}

/// How long a cut of a deposit stays spendable before it can be released to the balance, ms: a
/// gateway may have a task of the account's admitted to the mempool, or be serving one it is
/// about to open, on the deposit as it was; this outlasts both by far.
pub const DEPOSIT_NOTICE_MS: u64 = 120_000;

/// Sets `user`'s deposit for `a.gateway` to `a.limit` ([`Allow`]): a raise locks the difference
/// from the balance now, a cut is released after [`DEPOSIT_NOTICE_MS`].
pub(crate) fn allow(v: &mut View, user: &PublicKey, a: &Allow) -> Result<()> {
    if a.gateway == *user {
        return Err(LedgerError::Invalid {
            what: "allowance",
            reason: "an account need not allow itself".into(),
        });
    }
    let now = v.time_ms;
    let mut account = v.account(user);
    let mut deposits: Vec<Allowance> = account.allowances.as_slice().to_vec();
    let released = release_cuts(&mut deposits, now)?;
    let at = deposits.iter().position(|x| x.gateway == a.gateway);
    let mut deposit = at.map_or_else(|| Allowance::empty(a.gateway), |i| deposits.remove(i));
    account.balance = add(account.balance, released, "balance")?;
    if a.limit >= deposit.limit {
        let raise = a.limit - deposit.limit;
        account.balance = account.balance.checked_sub(raise).ok_or(LedgerError::InsufficientBalance {
            account: *user,
            needed: raise,
            available: account.balance,
        })?;
        deposit.limit = a.limit;
        deposit.lower_to = 0;
        deposit.release_ms = 0;
    } else {
        deposit.lower_to = a.limit;
        deposit.release_ms = now.saturating_add(DEPOSIT_NOTICE_MS);
    }
    deposit.key_hash = a.key_hash;
    deposits.push(deposit);
    deposits.retain(|d| !d.is_idle());
    account.allowances = BoundedVec::new(deposits).map_err(|_| LedgerError::Invalid {
        what: "allowance",
        reason: format!("an account allows at most {ALLOWANCES_MAX} gateways; empty one first"),
    })?;
    v.accounts.put(*user, account);
    if released > 0 {
        v.events.push(Event::Withdrawn { account: *user, amount: released });
    }
    v.events.push(Event::AllowanceSet { user: *user, gateway: a.gateway, limit: a.limit });
    Ok(())
}

/// Releases `d`'s pending cut if its notice has passed and forgets its expired vouchers;
/// returns what goes back to the balance.
pub(crate) fn release_cut(d: &mut Allowance, now_ms: u64) -> Amount {
    if d.vouchers.iter().any(|u| u.expires_ms <= now_ms) {
        let live: Vec<VoucherUse> = d.vouchers.iter().filter(|u| u.expires_ms > now_ms).copied().collect();
        d.vouchers = BoundedVec::new(live).unwrap_or_default();
    }
    if d.release_ms == 0 || d.release_ms > now_ms {
        return 0;
    }
    let released = d.limit.saturating_sub(d.lower_to);
    d.limit -= released;
    d.lower_to = 0;
    d.release_ms = 0;
    released
}

/// Releases the matured cut of each of `deposits` (see [`release_cut`]); returns the total.
fn release_cuts(deposits: &mut [Allowance], now_ms: u64) -> Result<Amount> {
    deposits.iter_mut().try_fold(0, |sum: Amount, d| add(sum, release_cut(d, now_ms), "released deposit"))
}

/// Releases every matured cut of `who`'s deposits to its balance; returns the amount.
pub(crate) fn release_deposits(v: &mut View, who: &PublicKey) -> Result<Amount> {
    let now = v.time_ms;
    let mut account = v.account(who);
    let mut deposits: Vec<Allowance> = account.allowances.as_slice().to_vec();
    let released = release_cuts(&mut deposits, now)?;
    if released == 0 {
        return Ok(0);
    }
    deposits.retain(|d| !d.is_idle());
    account.allowances = BoundedVec::new(deposits).map_err(|_| LedgerError::Overflow("deposits"))?;
    account.balance = add(account.balance, released, "balance")?;
    v.accounts.put(*who, account);
    v.events.push(Event::Withdrawn { account: *who, amount: released });
    Ok(released)
}

/// Checks `sv` authorizes `spend` from `payer`'s deposit at `gateway` for a task of `model` in a
/// block at `now_ms` on `chain_id`, and remembers it in `d` so it pays only once.
fn use_voucher(
    sv: &SignedVoucher,
    d: &mut Allowance,
    payer: &PublicKey,
    model: ModelId,
    spend: Amount,
    now_ms: u64,
    chain_id: &str,
) -> Result<()> {
    let bad = |reason: String| LedgerError::Invalid { what: "voucher", reason };
    let v = &sv.voucher;
    if v.payer != *payer || v.gateway != d.gateway || v.model != model {
        return Err(bad(format!(
            "it is for payer {}, gateway {}, model {}; the task is for payer {payer}, gateway {}, model {model}",
            v.payer, v.gateway, v.model, d.gateway
        )));
    }
    if spend > v.max_spend {
        return Err(bad(format!(
            "the task takes {spend} (escrow and fee), the voucher allows {}",
            v.max_spend
        )));
    }
    if v.expires_ms <= now_ms {
        return Err(bad(format!("it expired at {} ms, the block is at {now_ms} ms", v.expires_ms)));
    }
    if v.expires_ms > now_ms.saturating_add(VOUCHER_TTL_MAX_MS) {
        return Err(bad(format!(
            "it expires at {} ms, more than {VOUCHER_TTL_MAX_MS} ms after the block's {now_ms} ms",
            v.expires_ms
        )));
    }
    if !sv.verify(chain_id) {
        return Err(bad(format!("the signature is not {payer}'s on this chain")));
    }
    let id = v.id();
    let mut live: Vec<VoucherUse> = d.vouchers.iter().filter(|u| u.expires_ms > now_ms).copied().collect();
    if live.iter().any(|u| u.id == id) {
        return Err(bad(format!("voucher {id} has paid already")));
    }
    live.push(VoucherUse { id, expires_ms: v.expires_ms });
    d.vouchers = BoundedVec::new(live).map_err(|_| {
        bad(format!("the deposit has {VOUCHERS_LIVE_MAX} unexpired vouchers; sign shorter-lived ones"))
    })?;
    Ok(())
}

/// Takes `spend` from `payer`'s deposit at `gateway` for a task of `model`: with the payer's
/// voucher, or, on a deposit with an API key, on the gateway's word that the key came with it.
fn spend_deposit(
    v: &mut View,
    payer: &PublicKey,
    gateway: &PublicKey,
    model: ModelId,
    spend: Amount,
    voucher: Option<&SignedVoucher>,
) -> Result<()> {
    let mut account = v.account(payer);
    let short =
        |available| LedgerError::AllowanceShort { user: *payer, gateway: *gateway, needed: spend, available };
    let chain_id = v.base.chain_id.as_str().to_string();
    let now = v.time_ms;
    let d = account.allowances.as_mut_slice().iter_mut().find(|a| a.gateway == *gateway).ok_or(short(0))?;
    match voucher {
        Some(sv) => use_voucher(sv, d, payer, model, spend, now, &chain_id)?,
        None if d.key_hash == Hash32::ZERO => {
            return Err(LedgerError::Invalid {
                what: "task",
                reason: format!(
                    "{payer}'s deposit at this gateway pays only for requests {payer} signed, and the task carries no voucher"
                ),
            });
        }
        None => {}
    }
    d.limit = d.limit.checked_sub(spend).ok_or(short(d.limit))?;
    v.accounts.put(*payer, account);
    Ok(())
}

/// Opens a task: escrows `max_tokens x price` at the model's current price from the signer's
/// balance, or, when the task names a payer, from the payer's deposit for the signer (the task's
/// gateway), which also repays the gateway the fee of this transaction.
pub(crate) fn submit_task(v: &mut View, signer: &PublicKey, id: TaskId, s: &SubmitTask) -> Result<()> {
    let user = match &s.payer {
        None => signer,
        Some(payer) if payer == signer => {
            return Err(LedgerError::Invalid {
                what: "task",
                reason: "the payer is the signer: leave it out".into(),
            });
        }
        Some(_) if s.gateway != *signer => {
            return Err(LedgerError::WrongRole {
                account: *signer,
                action: "open a task paid by another account",
                reason: "only the task's own gateway spends an allowance",
            });
        }
        Some(payer) => payer,
    };
    let model = v.models.get(&s.model).ok_or(LedgerError::UnknownModel(s.model))?;
    let tokens_max = v.base.params.task_tokens_max;
    if s.max_tokens == 0 || s.max_tokens > tokens_max {
        return Err(LedgerError::Invalid {
            what: "task",
            reason: format!("max_tokens {} outside 1..={tokens_max}", s.max_tokens),
        });
    }
    let price = model.price;
    if price > s.max_price {
        return Err(LedgerError::PriceAboveMax { model: s.model, price, max_price: s.max_price });
    }
    let token_us = check_pipeline(v, s.model, s.workers.as_slice())?;
    check_gateway(v, &s.gateway)?;
    if v.tasks.get(&id).is_some() {
        return Err(LedgerError::Invalid { what: "task", reason: format!("task {id} already exists") });
    }
    let escrow = mul(Amount::from(s.max_tokens), price, "escrow")?;
    let allowed = s.payer.is_some();
    if allowed {
        // Escrow and the fee of this transaction (repaid to the gateway) come out of the deposit.
        let fee = v.base.params.tx_fee;
        let spend = escrow.checked_add(fee).ok_or(LedgerError::Overflow("escrow"))?;
        spend_deposit(v, user, signer, s.model, spend, s.voucher.as_ref())?;
        v.pay(&id, signer, PayeeRole::Gateway, fee)?;
    } else if s.voucher.is_some() {
        return Err(LedgerError::Invalid {
            what: "task",
            reason: "a voucher pays only through a payer's deposit: name the payer".into(),
        });
    } else {
        v.debit(user, escrow)?;
    }
    let deadline_ms = v.time_ms.saturating_add(deadline_after_ms(&v.base.params, s.max_tokens, token_us));
    v.tasks.put(
        id,
        Task {
            user: *user,
            allowed,
            model: s.model,
            max_tokens: s.max_tokens,
            prompt_hash: s.prompt_hash,
            price,
            escrow,
            workers: s.workers.clone(),
            gateway: s.gateway,
            submitted_height: v.height,
            submitted_ms: v.time_ms,
            deadline_ms,
            seed: s.seed,
            status: TaskStatus::Open,
            result: None,
            committee: BoundedVec::default(),
            commit_end_height: 0,
            commit_end_ms: 0,
            reveal_end_height: 0,
            reveal_end_ms: 0,
            median_score: None,
        },
    );
    for w in s.workers.iter() {
        v.hold(w)?;
    }
    v.expiries.push(SettleKey { height: deadline_ms, task: id });
    v.events.push(Event::TaskSubmitted { task: id, user: *user, model: s.model, price, escrow });
    Ok(())
}

/// How long after submission a task's result is accepted: the base allowance plus every token
/// at the larger of the floor and the workers' registered speed with margin, at most the cap.
pub fn deadline_after_ms(p: &Params, max_tokens: u32, registered_token_us: u64) -> u64 {
    let registered_ms = registered_token_us.saturating_mul(DEADLINE_SPEED_MARGIN).div_ceil(1000);
    let per_token_ms = registered_ms.max(p.task_ms_per_token_min);
    let total = p.task_deadline_base_ms.saturating_add(u64::from(max_tokens).saturating_mul(per_token_ms));
    total.min(p.task_deadline_max_ms)
}

/// Records the gateway's result: the fee stays escrowed, the unused escrow goes back to the
/// user, and the task waits for its committee (drawn at the next block).
pub(crate) fn submit_result(v: &mut View, signer: &PublicKey, r: &SubmitResult) -> Result<()> {
    let mut task = v.task(&r.task)?;
    if task.status != TaskStatus::Open {
        return Err(wrong_status(&r.task, &task, "submit a result"));
    }
    if task.gateway != *signer {
        return Err(LedgerError::WrongRole {
            account: *signer,
            action: "submit a result",
            reason: "only the task's gateway may",
        });
    }
    // No stake test here: the receipts are the workers' own proof of their work, and a gateway
    // that unbonded since it opened the task must still be able to get them paid.
    if v.time_ms > task.deadline_ms {
        return Err(LedgerError::OutsideWindow {
            task: r.task,
            action: "submit a result",
            window: format!("the deadline was {} ms, the block is at {} ms", task.deadline_ms, v.time_ms),
        });
    }
    let billed_tokens = u64::from(r.prompt_tokens) + u64::from(r.completion_tokens);
    if billed_tokens > u64::from(task.max_tokens) {
        return Err(LedgerError::Invalid {
            what: "result",
            reason: format!("{billed_tokens} tokens exceed the task's max_tokens {}", task.max_tokens),
        });
    }
    let work = crate::receipts::check(v, &r.task, &task, r.receipts.as_slice(), billed_tokens)?;
    // From here only the workers that signed answer for the task: a listed worker without a
    // receipt is let go, a stand-in that signed is held until settlement.
    let signers = crate::receipts::signers(&work);
    for w in task.workers.iter().filter(|w| !signers.contains(w)) {
        v.release(w)?;
    }
    for w in signers.iter().filter(|w| !task.workers.as_slice().contains(w)) {
        v.hold(w)?;
    }
    let fee = mul(Amount::from(billed_tokens), task.price, "fee")?;
    let refund = task.escrow.checked_sub(fee).ok_or(LedgerError::Overflow("refund"))?;
    v.refund(&task, refund)?;
    task.escrow = fee;
    task.status = TaskStatus::AwaitingCommittee;
    task.result = Some(TaskResult {
        output_hash: r.output_hash,
        prompt_tokens: r.prompt_tokens,
        completion_tokens: r.completion_tokens,
        receipts: BoundedVec::new(work)
            .map_err(|e| LedgerError::Invalid { what: "result", reason: e.to_string() })?,
        fee,
        height: v.height,
    });
    v.tasks.put(r.task, task);
    v.draws.push(r.task);
    v.events.push(Event::ResultSubmitted { task: r.task, billed_tokens, fee, refund });
    Ok(())
}

/// Gives the whole escrow back to the user of a task that got no result by its deadline.
pub(crate) fn reclaim(v: &mut View, signer: &PublicKey, r: &ReclaimTask) -> Result<()> {
    let mut task = v.task(&r.task)?;
    if task.user != *signer {
        return Err(LedgerError::WrongRole {
            account: *signer,
            action: "reclaim a task",
            reason: "only the task's user may",
        });
    }
    if task.status != TaskStatus::Open {
        return Err(wrong_status(&r.task, &task, "reclaim"));
    }
    if v.time_ms <= task.deadline_ms {
        return Err(LedgerError::OutsideWindow {
            task: r.task,
            action: "reclaim",
            window: format!("the deadline is {} ms, the block is at {} ms", task.deadline_ms, v.time_ms),
        });
    }
    give_back(v, &r.task, &mut task)
}

/// Returns the escrow of a task still open past its deadline (the chain's own reclaim at the
/// first block past it); any other task is left as it is.
pub(crate) fn expire(v: &mut View, id: &TaskId) -> Result<()> {
    // A task that settled and was pruned before its deadline came has nothing left to return.
    let Some(mut task) = v.tasks.get(id).cloned() else { return Ok(()) };
    if task.status != TaskStatus::Open || v.time_ms <= task.deadline_ms {
        return Ok(());
    }
    give_back(v, id, &mut task)
}

/// The whole escrow back to the user; the workers' stakes no longer answer for the task (nobody
/// is slashed for a result that never came: a crash is not evidence of cheating).
fn give_back(v: &mut View, id: &TaskId, task: &mut Task) -> Result<()> {
    let amount = task.escrow;
    v.refund(task, amount)?;
    for w in task.workers.iter() {
        v.release(w)?;
    }
    task.escrow = 0;
    task.status = TaskStatus::Reclaimed;
    v.tasks.put(*id, task.clone());
    v.retire(id);
    v.events.push(Event::TaskReclaimed { task: *id, amount });
    Ok(())
}
