//! TIQE settlement: median of revealed scores, slashing of outliers and silent committers,
//! failing a worker under q_min, or splitting the fee.

use crate::TREASURY;
use crate::error::{add, bps_of, mul};
use crate::params::{BPS_ONE, SCORE_MAX};
use crate::records::TaskStatus;
use crate::view::View;
use crate::{LedgerError, Result};
use polylink_types::{Amount, Event, PayeeRole, PublicKey, SettleOutcome, SlashReason, TaskId};

/// Median of `scores`; with an even count, the floor of the mean of the two middle scores.
/// `None` when there are no scores.
pub fn median(scores: &[u16]) -> Option<u16> {
    let mut s = scores.to_vec();
    s.sort_unstable();
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(s[n / 2]),
        _ => Some(((u32::from(s[n / 2 - 1]) + u32::from(s[n / 2])) / 2) as u16),
    }
}

/// Settles a task at the end of its reveal window (or at once when no committee could be drawn).
pub(crate) fn settle(v: &mut View, id: &TaskId) -> Result<()> {
    let mut task = v.task(id)?;
    let base = v.base;
    let params = &base.params;
    for m in task.committee.iter().filter(|m| m.commitment.is_some() && m.score.is_none()) {
        v.slash(&m.validator, params.no_reveal_slash_bps, SlashReason::NoReveal, id)?;
    }
    let scores: Vec<u16> = task.committee.iter().filter_map(|m| m.score).collect();
    let fee = task.escrow;
    let quorum = scores.len() >= params.reveals_min as usize;
    let mid = median(&scores).filter(|_| quorum);
    let outcome = match mid {
        None => SettleOutcome::NoQuorum,
        Some(m) if m < params.quality_min => SettleOutcome::LowQuality,
        Some(_) => SettleOutcome::Paid,
    };
    let mut honest: Vec<PublicKey> = Vec::new();
    if let Some(m) = mid {
        for member in task.committee.iter() {
            let Some(score) = member.score else { continue };
            if score.abs_diff(m) > params.score_delta {
                v.slash(&member.validator, params.outlier_slash_bps, SlashReason::ScoreOutlier, id)?;
            } else {
                honest.push(member.validator);
            }
        }
    }
    match (outcome, mid) {
        (SettleOutcome::Paid, Some(m)) => split_fee(v, id, fee, m, &honest)?,
        (SettleOutcome::LowQuality, _) => {
            let stand_ins = task.result.iter().flat_map(|r| r.stand_ins.iter().map(|s| s.worker));
            for w in task.workers.iter().copied().chain(stand_ins) {
                v.slash(&w, params.worker_slash_bps, SlashReason::LowQuality, id)?;
            }
            v.pay(id, &task.user, PayeeRole::User, fee)?;
        }
        _ => v.pay(id, &task.user, PayeeRole::User, fee)?,
    }
    task.escrow = 0;
    task.status = TaskStatus::Settled(outcome);
    task.median_score = mid;
    v.tasks.put(*id, task);
    v.events.push(Event::TaskSettled { task: *id, outcome, median_score: mid });
    Ok(())
}

/// Splits a paid fee: developer royalty, treasury share, validators' share (equal parts to the
/// honest revealers; to the treasury if none), and the workers' share scaled by
/// `median / 1000` (the rest back to the user), divided among the stages and any stand-ins that
/// took over a failed stage by their work shares. Rounding dust goes to the head worker (stages)
/// and the treasury (validators).
fn split_fee(v: &mut View, id: &TaskId, fee: Amount, median: u16, honest: &[PublicKey]) -> Result<()> {
    let task = v.task(id)?;
    let base = v.base;
    let params = &base.params;
    let developer = v.models.get(&task.model).cloned().ok_or(LedgerError::UnknownModel(task.model))?;
    let royalty = bps_of(fee, developer.royalty_bps)?;
    let treasury = bps_of(fee, params.treasury_share_bps)?;
    let validators = bps_of(fee, params.validator_share_bps)?;
    let workers = fee
        .checked_sub(add(add(royalty, treasury, "fee split")?, validators, "fee split")?)
        .ok_or(LedgerError::Overflow("worker share"))?;
    let worker_pay = mul(workers, Amount::from(median), "quality scaling")? / Amount::from(SCORE_MAX);
    v.pay(id, &developer.developer, PayeeRole::Developer, royalty)?;
    let each = match honest.len() {
        0 => 0,
        n => validators / n as Amount,
    };
    for who in honest {
        v.pay(id, who, PayeeRole::Validator, each)?;
    }
    let validator_dust = validators - each * honest.len() as Amount;
    v.pay(id, &TREASURY, PayeeRole::Treasury, add(treasury, validator_dust, "treasury")?)?;
    let (shares, stand_ins) = result_shares(&task)?;
    let mut paid = 0;
    let others = task.workers.iter().zip(shares.iter()).skip(1);
    for (who, bps) in others.chain(stand_ins.iter().map(|s| (&s.worker, &s.share_bps))) {
        let part = mul(worker_pay, Amount::from(*bps), "stage share")? / Amount::from(BPS_ONE);
        v.pay(id, who, PayeeRole::Worker, part)?;
        paid += part;
    }
    if let Some(head) = task.workers.as_slice().first() {
        v.pay(id, head, PayeeRole::Worker, worker_pay - paid)?;
    }
    v.pay(id, &task.user, PayeeRole::User, workers - worker_pay)
}

/// The listed workers' shares and the stand-ins of a task's result.
fn result_shares(task: &crate::records::Task) -> Result<(Vec<u16>, Vec<polylink_types::StandIn>)> {
    task.result
        .as_ref()
        .map(|r| (r.stage_shares_bps.as_slice().to_vec(), r.stand_ins.as_slice().to_vec()))
        .ok_or(LedgerError::Overflow("result missing at settlement"))
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_handles_odd_even_ties_and_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[700]), Some(700));
        assert_eq!(median(&[900, 100, 500]), Some(500));
        assert_eq!(median(&[100, 901]), Some(500));
        assert_eq!(median(&[600, 600, 600, 100]), Some(600));
        assert_eq!(median(&[0, 1000, 1000, 0]), Some(500));
    }
}
