//! One transaction against a staged view: signature and nonce decide whether it can be included
//! at all; once included it consumes its nonce, the kind's rules decide whether it applies, and
//! its sender pays the fee (a duty is free; a sender that cannot pay is not included).

use crate::view::View;
use crate::{LedgerError, Result, registry, scoring, staking, tasks};
use polylink_types::{SignedTx, TxId, TxKind};

/// What one transaction does to a view.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Applied: its changes are staged, its fee paid and its nonce consumed.
    Applied,
    /// Included but refused by its kind's rules: only its nonce is consumed and its fee paid (so
    /// the sender's later transactions stay valid, and failing costs what succeeding does).
    Failed(LedgerError),
    /// Cannot be included (bad signature, not the sender's next nonce, or no means to pay the
    /// fee): nothing changed.
    Excluded(LedgerError),
}

impl Outcome {
    /// The refusal, if any.
    pub(crate) fn into_result(self) -> Result<()> {
        match self {
            Outcome::Applied => Ok(()),
            Outcome::Failed(e) | Outcome::Excluded(e) => Err(e),
        }
    }
}

/// Whether `stx` is a duty its sender holds: the task gateway's result, or a committee member's
/// commit or reveal, on a task that exists. A duty is free even when it fails (a commit that
/// lands after its window), so an honest worker or validator never pays to do its work however
/// small the task; only the parties a task names can send one, so nobody else can spam for free.
fn is_duty(v: &View, stx: &SignedTx) -> bool {
    let signer = stx.tx.signer;
    let (task, by_member) = match &stx.tx.kind {
        TxKind::SubmitResult(r) => (r.task, false),
        TxKind::CommitScore(c) => (c.task, true),
        TxKind::RevealScore(r) => (r.task, true),
        _ => return false,
    };
    v.task(&task).is_ok_and(|t| {
        if by_member { t.committee.iter().any(|m| m.validator == signer) } else { t.gateway == signer }
    })
}

/// Runs `stx` (whose id is `id`) on `v`.
pub(crate) fn execute(v: &mut View, stx: &SignedTx, id: TxId) -> Outcome {
    if let Err(e) = stx.verify(v.base.chain_id.as_str()) {
        return Outcome::Excluded(LedgerError::BadSignature(e.to_string()));
    }
    let signer = stx.tx.signer;
    let expected = v.account(&signer).nonce;
    if stx.tx.nonce != expected {
        return Outcome::Excluded(LedgerError::WrongNonce { account: signer, expected, got: stx.tx.nonce });
    }
    let Some(next) = expected.checked_add(1) else {
        return Outcome::Excluded(LedgerError::Overflow("nonce"));
    };
    let duty = is_duty(v, stx);
    let mut checkpoint = Some(v.checkpoint());
    let applied = apply_kind(v, stx, id);
    if applied.is_err()
        && let Some(c) = checkpoint.take()
    {
        v.restore(c);
    }
    // After the kind, so a Withdraw can pay from what it releases.
    if !duty && let Err(e) = v.burn_fee(&signer) {
        if let Some(c) = checkpoint {
            v.restore(c);
        }
        return Outcome::Excluded(e);
    }
    // Re-read: the kind may have changed this account's balance.
    let mut account = v.account(&signer);
    account.nonce = next;
    v.accounts.put(signer, account);
    match applied {
        Ok(()) => Outcome::Applied,
        Err(e) => Outcome::Failed(e),
    }
}

fn apply_kind(v: &mut View, stx: &SignedTx, id: TxId) -> Result<()> {
    let signer = stx.tx.signer;
    match &stx.tx.kind {
        TxKind::Transfer(t) => staking::transfer(v, &signer, &t.to, t.amount),
        TxKind::Bond(b) => staking::bond(v, &signer, b.amount),
        TxKind::Unbond(u) => staking::unbond(v, &signer, u.amount),
        TxKind::Withdraw => staking::withdraw(v, &signer),
        TxKind::RegisterModel(m) => registry::register_model(v, &signer, m),
        TxKind::RegisterWorker(w) => registry::register_worker(v, &signer, w),
        TxKind::RegisterValidator => registry::register_validator(v, &signer),
        TxKind::RegisterGateway(g) => registry::register_gateway(v, &signer, g),
        TxKind::SubmitTask(s) => tasks::submit_task(v, &signer, id, s),
        TxKind::SubmitResult(r) => tasks::submit_result(v, &signer, r),
        TxKind::CommitScore(c) => scoring::commit(v, &signer, c),
        TxKind::RevealScore(r) => scoring::reveal(v, &signer, r),
        TxKind::ReclaimTask(r) => tasks::reclaim(v, &signer, r),
        TxKind::ClaimModel(c) => registry::claim_model(v, c),
        TxKind::Allow(a) => tasks::allow(v, &signer, a),
    }
}
