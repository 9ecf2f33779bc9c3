//! TIQE settlement: median of revealed scores, slashing of outliers and silent members,
//! striking the workers of a task under q_min, or splitting the fee.

use crate::TREASURY;
use crate::error::{add, bps_of, mul};
use crate::params::SCORE_MAX;
use crate::records::TaskStatus;
use crate::view::View;
use crate::{LedgerError, Result};
use polylink_types::{Amount, Event, Hash32, PayeeRole, PublicKey, SettleOutcome, SlashReason, TaskId};

/// Median of `scores`; with an even count, the floor of the mean of the two middle scores.
/// `None` when there are no scores.
pub fn median(scores: &[u16]) -> Option<u16> {
    let (lo, hi) = middle(scores)?;
    Some(((u32::from(lo) + u32::from(hi)) / 2) as u16)
}

/// The middle score, or the two middle scores of an even count (the same twice for an odd one).
fn middle(scores: &[u16]) -> Option<(u16, u16)> {
    let mut s = scores.to_vec();
    s.sort_unstable();
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some((s[n / 2], s[n / 2])),
        _ => Some((s[n / 2 - 1], s[n / 2])),
    }
}

/// The evaluation digest a strict majority of the (non-abstaining) reveals share, when two or
/// more revealed: what an honest evaluation of the transcript computes, every validator alike.
fn majority_work(committee: &[crate::records::Member]) -> Option<Hash32> {
    let works: Vec<Hash32> =
        committee.iter().filter(|m| m.score.is_some_and(judged)).filter_map(|m| m.work).collect();
    if works.len() < 2 {
        return None;
    }
    works.iter().copied().find(|w| 2 * works.iter().filter(|x| *x == w).count() > works.len())
}

/// A revealed score that abstains: the validator could not judge the task (it is excluded from
/// the median, neither paid nor slashed). A validator abstains when the transcript never came
/// (which may be the worker's doing): a task that ends without quorum this way pays no worker.
pub const ABSTAIN: u16 = u16::MAX;

/// A revealed score that says the validator ran out of time (its queue was too long to reach
/// the task by its last call): no evidence about the worker either way. Neither paid nor
/// slashed. A task whose committee was busy rather than unable settles
/// [`SettleOutcome::Unchecked`]: its workers are paid, since the shortfall was the validators'.
pub const BUSY: u16 = u16::MAX - 1;

/// Whether a revealed score is a judgement (not an abstention or a busy seat).
fn judged(score: u16) -> bool {
    score != ABSTAIN && score != BUSY
}

/// Whether `score` is an outlier: farther than `delta` from every score that could be called the
/// median (both middle scores of an even count), so an honest middle score never is one.
fn outlier(score: u16, (lo, hi): (u16, u16), delta: u16) -> bool {
    score.abs_diff(lo) > delta && score.abs_diff(hi) > delta
}

/// Settles a task once its reveal window has closed (or at once when no committee could be
/// drawn): slashes members that committed nothing or never revealed and those whose evaluation
/// digest a majority contradicts, takes the median of the other revealed scores, and pays (fee split) or, under q_min, refunds the user and strikes the
/// workers. Validators that revealed within delta of the median are paid either way: from the
/// fee when the workers pass, from the treasury when they fail.
pub(crate) fn settle(v: &mut View, id: &TaskId) -> Result<()> {
    let mut task = v.task(id)?;
    let base = v.base;
    let params = &base.params;
    for m in task.committee.iter() {
        match (m.commitment, m.score) {
            (None, _) => {
                v.slash(&m.validator, params.no_commit_slash_bps, SlashReason::NoCommit, id)?;
            }
            (Some(_), None) => {
                v.slash(&m.validator, params.no_reveal_slash_bps, SlashReason::NoReveal, id)?;
            }
            _ => {}
        }
        v.release(&m.validator)?;
    }
    // A reveal whose evaluation digest a strict majority of the reveals contradicts did not
    // evaluate the transcript: it is slashed like an outlier and counts for nothing.
    let proven = majority_work(task.committee.as_slice());
    let mut unproven: Vec<PublicKey> = Vec::new();
    for m in task.committee.iter() {
        if m.score.is_some_and(judged) && proven.is_some_and(|w| m.work != Some(w)) {
            v.slash(&m.validator, params.outlier_slash_bps, SlashReason::Unproven, id)?;
            unproven.push(m.validator);
        }
    }
    let counted = |m: &&crate::records::Member| !unproven.contains(&m.validator);
    let scores: Vec<u16> =
        task.committee.iter().filter(counted).filter_map(|m| m.score).filter(|s| judged(*s)).collect();
    let busy = task.committee.iter().filter(|m| m.score == Some(BUSY)).count();
    let fee = task.escrow;
    let quorum = scores.len() >= params.reveals_min as usize;
    // Too few judgements because seats were busy, not because the transcript was missing, and
    // none of those made fails the worker: the validators fell short, not the worker.
    let unchecked = !quorum
        && busy > 0
        && scores.len() + busy >= params.reveals_min as usize
        && scores.iter().all(|s| *s >= params.quality_min);
    let mids = middle(&scores).filter(|_| quorum);
    let mid = mids.map(|(lo, hi)| ((u32::from(lo) + u32::from(hi)) / 2) as u16);
    let outcome = match mid {
        None if unchecked => SettleOutcome::Unchecked,
        None => SettleOutcome::NoQuorum,
        Some(m) if m < params.quality_min => SettleOutcome::LowQuality,
        Some(_) => SettleOutcome::Paid,
    };
    let mut honest: Vec<PublicKey> = Vec::new();
    if unchecked {
        // The members that did judge it (every one passed the worker) are paid for it.
        honest.extend(
            task.committee
                .iter()
                .filter(counted)
                .filter(|m| m.score.is_some_and(judged))
                .map(|m| m.validator),
        );
    }
    if let Some(middles) = mids {
        for member in task.committee.iter().filter(counted) {
            let Some(score) = member.score.filter(|s| judged(*s)) else { continue };
            if outlier(score, middles, params.score_delta) {
                v.slash(&member.validator, params.outlier_slash_bps, SlashReason::ScoreOutlier, id)?;
            } else {
                honest.push(member.validator);
            }
        }
    }
    // Only the workers that signed a receipt answer for the task (the others were let go when
    // the result came).
    let served: Vec<PublicKey> =
        crate::receipts::signers(task.result.as_ref().map_or(&[][..], |r| r.receipts.as_slice()));
    match outcome {
        SettleOutcome::Paid | SettleOutcome::Unchecked => {
            // Unchecked: at the judgements made (all passing), else full marks.
            let m = mid.or_else(|| median(&scores)).unwrap_or(SCORE_MAX);
            split_fee(v, id, fee, m, &honest)?;
            // Only a checked pass is evidence that wears a strike off.
            for w in served.iter().filter(|_| outcome == SettleOutcome::Paid) {
                wear_off(v, w)?;
            }
            if !served.contains(&task.user) {
                count_demand(v, &task)?;
            }
        }
        SettleOutcome::LowQuality => {
            for w in &served {
                strike(v, w, id)?;
            }
            v.pay(id, &task.user, PayeeRole::User, fee)?;
            pay_checkers_from_treasury(v, id, fee, &honest)?;
        }
        _ => v.pay(id, &task.user, PayeeRole::User, fee)?,
    }
    for w in &served {
        v.release(w)?;
    }
    task.escrow = 0;
    task.status = TaskStatus::Settled(outcome);
    task.median_score = mid;
    v.tasks.put(*id, task);
    v.retire(id);
    v.events.push(Event::TaskSettled { task: *id, outcome, median_score: mid });
    Ok(())
}

/// Adds a paid task's tokens to its model's demand for the epoch's price update. Only paid
/// tasks count (a refund or a failed answer is no demand), and not a task its user served
/// (wash trading: the fee mostly comes back to the trader).
fn count_demand(v: &mut View, task: &crate::records::Task) -> Result<()> {
    let tokens =
        task.result.as_ref().map_or(0, |r| u64::from(r.prompt_tokens) + u64::from(r.completion_tokens));
    let mut model = v.models.get(&task.model).cloned().ok_or(LedgerError::UnknownModel(task.model))?;
    model.epoch_tokens =
        model.epoch_tokens.checked_add(tokens).ok_or(LedgerError::Overflow("epoch tokens"))?;
    v.models.put(task.model, model);
    Ok(())
}

/// One strike for a worker of a task under q_min; the `strikes_to_slash`-th costs a slash and
/// starts the count again. A single false positive of the evaluators costs an honest worker
/// one task's pay, never stake.
fn strike(v: &mut View, who: &PublicKey, id: &TaskId) -> Result<()> {
    let params = &v.base.params;
    let (to_slash, bps) = (params.strikes_to_slash, params.worker_slash_bps);
    let mut stake = v.stake(who);
    stake.strikes = stake.strikes.saturating_add(1);
    stake.clean_tasks = 0;
    let strikes = stake.strikes;
    if strikes >= to_slash {
        stake.strikes = 0;
    }
    v.stakes.put(*who, stake);
    v.events.push(Event::Struck { account: *who, task: *id, strikes });
    if strikes >= to_slash {
        v.slash(who, bps, SlashReason::LowQuality, id)?;
    }
    Ok(())
}

/// A paid task: every `strike_decay_tasks` of them wear one strike off.
fn wear_off(v: &mut View, who: &PublicKey) -> Result<()> {
    let decay = v.base.params.strike_decay_tasks;
    let mut stake = v.stake(who);
    if stake.strikes == 0 {
        return Ok(());
    }
    stake.clean_tasks = stake.clean_tasks.saturating_add(1);
    if stake.clean_tasks >= decay {
        stake.strikes -= 1;
        stake.clean_tasks = 0;
    }
    v.stakes.put(*who, stake);
    Ok(())
}

/// The validators' share of a failed task's fee, paid from the treasury (as far as it holds):
/// checking is work whatever the verdict, and the user who got a bad answer pays nothing.
fn pay_checkers_from_treasury(v: &mut View, id: &TaskId, fee: Amount, honest: &[PublicKey]) -> Result<()> {
    if honest.is_empty() {
        return Ok(());
    }
    let share = bps_of(fee, v.base.params.validator_share_bps)?.min(v.totals.treasury);
    let each = share / honest.len() as Amount;
    for who in honest {
        if each == 0 {
            break;
        }
        v.totals.treasury -= each;
        v.pay(id, who, PayeeRole::Validator, each)?;
    }
    Ok(())
}

/// Splits a paid fee: developer royalty, treasury share, validators' share (equal parts to the
/// honest revealers; to the treasury if none), and the workers' share scaled by
/// `median / 1000` (the rest back to the user), divided among the workers that signed receipts by
/// layers x rows. Rounding dust goes to the head worker (workers) and the treasury (validators).
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
    // An artifact that names no developer pays its royalty to the treasury.
    let royalty_to = if developer.developer == TREASURY { PayeeRole::Treasury } else { PayeeRole::Developer };
    v.pay(id, &developer.developer, royalty_to, royalty)?;
    let each = match honest.len() {
        0 => 0,
        n => validators / n as Amount,
    };
    for who in honest {
        v.pay(id, who, PayeeRole::Validator, each)?;
    }
    let validator_dust = validators - each * honest.len() as Amount;
    v.pay(id, &TREASURY, PayeeRole::Treasury, add(treasury, validator_dust, "treasury")?)?;
    let result = task.result.as_ref().ok_or(LedgerError::Overflow("result missing at settlement"))?;
    let billed = u64::from(result.prompt_tokens) + u64::from(result.completion_tokens);
    let work = result.receipts.as_slice();
    let total: u128 = work.iter().map(|r| crate::receipts::weight(r, billed)).sum();
    let mut paid = 0;
    for r in work {
        let Some(part) =
            mul(worker_pay, crate::receipts::weight(r, billed), "work share")?.checked_div(total)
        else {
            break;
        };
        v.pay(id, &r.worker, PayeeRole::Worker, part)?;
        paid += part;
    }
    // Rounding dust (or, with no receipts, the whole workers' pay) goes to the head worker when it
    // served, else to the first worker that did, else back to the user.
    let signers = crate::receipts::signers(work);
    let head = task.workers.as_slice().first().filter(|h| signers.contains(h)).or(signers.first());
    match head {
        Some(head) => v.pay(id, head, PayeeRole::Worker, worker_pay - paid)?,
        None => v.pay(id, &task.user, PayeeRole::User, worker_pay - paid)?,
    }
    v.pay(id, &task.user, PayeeRole::User, workers - worker_pay)
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

    #[test]
    fn an_honest_middle_score_is_never_an_outlier() {
        // Two reveals 400 apart: their mean is 200 from each, beyond a delta of 150, yet each
        // is a middle score, so neither is slashed.
        let middles = super::middle(&[300, 700]).unwrap_or_default();
        assert!(!super::outlier(300, middles, 150) && !super::outlier(700, middles, 150));
        let middles = super::middle(&[0, 690, 700, 1000]).unwrap_or_default();
        assert!(super::outlier(0, middles, 150) && super::outlier(1000, middles, 150));
        assert!(!super::outlier(690, middles, 150) && !super::outlier(800, middles, 150));
    }
}
