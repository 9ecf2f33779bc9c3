//! Checking a result's work receipts, and the work shares they give.
//!
//! A worker answers for a task (is paid, struck or slashed for it) only through a receipt it
//! signed: the task, the layers it ran and the rows it computed. The head cannot name a worker
//! into a task it never served, nor leave out a stage's receipt to take its pay: the receipts of
//! a billed result must cover every layer of the model, each by a registered worker of those
//! layers (a stand-in must also hold the worker minimum, as the listed workers did when the task
//! opened). Rows count at most the tokens billed, so a stage that claims more gains nothing.

use crate::records::Task;
use crate::registry::require_stake;
use crate::view::View;
use crate::{LedgerError, Result};
use polylink_types::{PublicKey, SignedReceipt, TaskId, WorkReceipt, uncovered_layer};

/// Checks `receipts` for the result of task `id` billing `billed` tokens, and returns them
/// unsigned, in the order given. A result that bills nothing may carry none (a generation that
/// never ran); one that bills tokens needs receipts covering every layer of the model.
pub(crate) fn check(
    v: &View,
    id: &TaskId,
    task: &Task,
    receipts: &[SignedReceipt],
    billed: u64,
) -> Result<Vec<WorkReceipt>> {
    let model = v.models.get(&task.model).ok_or(LedgerError::UnknownModel(task.model))?;
    let mut work: Vec<WorkReceipt> = Vec::with_capacity(receipts.len());
    for signed in receipts {
        let r = signed.receipt;
        let bad = |reason: String| LedgerError::BadReceipt { task: *id, worker: r.worker, reason };
        if r.task != *id {
            return Err(bad(format!("it is for task {}", r.task)));
        }
        if !signed.verify() {
            return Err(bad("the signature is not the worker's".into()));
        }
        if r.layer_start >= r.layer_end || r.layer_end > model.layer_count {
            return Err(bad(format!(
                "layers {}..{} of a model with {} layers",
                r.layer_start, r.layer_end, model.layer_count
            )));
        }
        let worker = v.workers.get(&r.worker).ok_or(LedgerError::UnknownWorker(r.worker))?;
        let serves = worker
            .served
            .iter()
            .any(|s| s.model == task.model && s.layer_start <= r.layer_start && r.layer_end <= s.layer_end);
        if !serves {
            return Err(bad(format!(
                "it is not registered for layers {}..{} of model {}",
                r.layer_start, r.layer_end, task.model
            )));
        }
        if !task.workers.as_slice().contains(&r.worker) {
            require_stake(v, &r.worker, "worker", v.base.params.worker_stake_min)?;
        }
        if work.iter().any(|w| w.worker == r.worker && w.layer_start == r.layer_start) {
            return Err(bad(format!("a second receipt for layers from {}", r.layer_start)));
        }
        work.push(r);
    }
    if billed > 0
        && let Some(missing) = uncovered_layer(&work, model.layer_count)
    {
        return Err(LedgerError::Invalid {
            what: "result",
            reason: format!(
                "{billed} tokens billed, but no receipt covers layer {missing} of the model's {}",
                model.layer_count
            ),
        });
    }
    Ok(work)
}

/// The distinct workers of `work`, in order.
pub(crate) fn signers(work: &[WorkReceipt]) -> Vec<PublicKey> {
    let mut out: Vec<PublicKey> = Vec::with_capacity(work.len());
    for r in work {
        if !out.contains(&r.worker) {
            out.push(r.worker);
        }
    }
    out
}

/// Each receipt's weight in the workers' pay: its layers times its rows, rows counted at most
/// `billed` (the positions a task's tokens give).
pub(crate) fn weight(r: &WorkReceipt, billed: u64) -> u128 {
    u128::from(r.layers()) * u128::from(u64::from(r.rows).min(billed))
}
