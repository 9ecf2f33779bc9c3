//! Transfers, bonding, unbonding and withdrawal.

use crate::error::add;
use crate::params::UNBONDING_ENTRIES_MAX;
use crate::records::Unbonding;
use crate::view::View;
use crate::{LedgerError, Result, TREASURY};
use polylink_types::{Amount, Event, PublicKey};

fn positive(amount: Amount) -> Result<()> {
    if amount == 0 { Err(LedgerError::ZeroAmount) } else { Ok(()) }
}

/// Moves `amount` from `from` to `to`.
pub(crate) fn transfer(v: &mut View, from: &PublicKey, to: &PublicKey, amount: Amount) -> Result<()> {
    positive(amount)?;
    if *to == TREASURY {
        // The treasury is a counter, not an account: money sent to its label would be lost.
        return Err(LedgerError::Invalid {
            what: "transfer",
            reason: "the treasury label is not an account".into(),
        });
    }
    v.debit(from, amount)?;
    v.credit(to, amount)?;
    v.events.push(Event::Transferred { from: *from, to: *to, amount });
    Ok(())
}

/// Locks balance as bonded stake.
pub(crate) fn bond(v: &mut View, who: &PublicKey, amount: Amount) -> Result<()> {
    positive(amount)?;
    v.debit(who, amount)?;
    let mut stake = v.stake(who);
    stake.bonded = add(stake.bonded, amount, "bonded stake")?;
    v.stakes.put(*who, stake);
    v.events.push(Event::Bonded { account: *who, amount });
    Ok(())
}

/// Moves bonded stake into an unbonding entry released once the unbonding period's blocks and
/// milliseconds have both passed. A worker or
/// validator that drops under its minimum simply becomes inactive (that is how a role is left).
pub(crate) fn unbond(v: &mut View, who: &PublicKey, amount: Amount) -> Result<()> {
    positive(amount)?;
    let mut stake = v.stake(who);
    if stake.bonded < amount {
        return Err(LedgerError::InsufficientStake {
            account: *who,
            needed: amount,
            available: stake.bonded,
        });
    }
    if stake.unbonding.len() >= UNBONDING_ENTRIES_MAX {
        return Err(LedgerError::TooManyUnbonding { account: *who, max: UNBONDING_ENTRIES_MAX });
    }
    let release_height = v
        .height
        .checked_add(v.base.params.unbonding_period_blocks)
        .ok_or(LedgerError::Overflow("release height"))?;
    let release_ms = v.time_ms.saturating_add(v.base.params.unbonding_period_ms);
    stake.bonded -= amount;
    let mut entries = stake.unbonding.as_slice().to_vec();
    entries.push(Unbonding { amount, release_height, release_ms });
    stake.unbonding = entries.try_into().map_err(|_| LedgerError::Overflow("unbonding entries"))?;
    v.stakes.put(*who, stake);
    v.events.push(Event::UnbondStarted { account: *who, amount, release_height, release_ms });
    Ok(())
}

/// Releases every deposit cut whose notice has passed, and every matured unbonding entry once
/// the stake answers for no unsettled task (a slash always lands before the stake can leave), to
/// the balance.
pub(crate) fn withdraw(v: &mut View, who: &PublicKey) -> Result<()> {
    let released = crate::tasks::release_deposits(v, who)?;
    let mut stake = v.stake(who);
    if stake.at_risk_tasks > 0 {
        if released > 0 {
            return Ok(());
        }
        return Err(LedgerError::StakeAtRisk { account: *who, tasks: stake.at_risk_tasks });
    }
    let (height, now_ms) = (v.height, v.time_ms);
    let (matured, pending): (Vec<_>, Vec<_>) =
        stake.unbonding.iter().cloned().partition(|u| u.release_height <= height && u.release_ms <= now_ms);
    let amount = matured.iter().try_fold(0, |sum: Amount, u| add(sum, u.amount, "withdrawal"))?;
    if amount == 0 {
        if released > 0 {
            return Ok(());
        }
        return Err(LedgerError::NothingToWithdraw { account: *who, height });
    }
    stake.unbonding = pending.try_into().map_err(|_| LedgerError::Overflow("unbonding entries"))?;
    v.stakes.put(*who, stake);
    v.credit(who, amount)?;
    v.events.push(Event::Withdrawn { account: *who, amount });
    Ok(())
}
