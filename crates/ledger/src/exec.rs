//! One transaction against a staged view: signature, nonce, the kind's rules, then the fee.

use crate::view::View;
use crate::{LedgerError, Result, registry, scoring, staking, tasks};
use polylink_types::{SignedTx, TxId, TxKind};

/// A duty is free: the head's one result and a committee member's one commit and one reveal per
/// task. Each can succeed only once per task a user paid for, so none can be spammed, and an
/// honest worker or validator never pays to do its work, however small the task.
fn is_duty(kind: &TxKind) -> bool {
    matches!(kind, TxKind::SubmitResult(_) | TxKind::CommitScore(_) | TxKind::RevealScore(_))
}

/// Runs `stx` (whose id is `id`) on `v`. On error the caller drops the view, so nothing changes.
pub(crate) fn execute(v: &mut View, stx: &SignedTx, id: TxId) -> Result<()> {
    stx.verify(v.base.chain_id.as_str()).map_err(|e| LedgerError::BadSignature(e.to_string()))?;
    let signer = stx.tx.signer;
    let mut account = v.account(&signer);
    if stx.tx.nonce != account.nonce {
        return Err(LedgerError::WrongNonce { account: signer, expected: account.nonce, got: stx.tx.nonce });
    }
    match &stx.tx.kind {
        TxKind::Transfer(t) => staking::transfer(v, &signer, &t.to, t.amount)?,
        TxKind::Bond(b) => staking::bond(v, &signer, b.amount)?,
        TxKind::Unbond(u) => staking::unbond(v, &signer, u.amount)?,
        TxKind::Withdraw => staking::withdraw(v, &signer)?,
        TxKind::RegisterModel(m) => registry::register_model(v, &signer, m)?,
        TxKind::RegisterWorker(w) => registry::register_worker(v, &signer, w)?,
        TxKind::RegisterValidator => registry::register_validator(v, &signer)?,
        TxKind::SubmitTask(s) => tasks::submit_task(v, &signer, id, s)?,
        TxKind::SubmitResult(r) => tasks::submit_result(v, &signer, r)?,
        TxKind::CommitScore(c) => scoring::commit(v, &signer, c)?,
        TxKind::RevealScore(r) => scoring::reveal(v, &signer, r)?,
        TxKind::ReclaimTask(r) => tasks::reclaim(v, &signer, r)?,
        TxKind::ClaimModel(c) => registry::claim_model(v, c)?,
    }
    // After the kind, so a Withdraw can pay from what it releases.
    if !is_duty(&stx.tx.kind) {
        v.burn_fee(&signer)?;
    }
    // Re-read: the kind may have changed this account's balance.
    account = v.account(&signer);
    account.nonce = account.nonce.checked_add(1).ok_or(LedgerError::Overflow("nonce"))?;
    v.accounts.put(signer, account);
    Ok(())
}
