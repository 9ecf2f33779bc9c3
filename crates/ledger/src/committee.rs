//! Committee election: stake-weighted sampling without replacement from `H(seed || task || i)`.

use crate::records::{Member, TaskStatus};
use crate::settle;
use crate::view::View;
use crate::{LedgerError, Result};
use polylink_types::{Amount, Event, Hash32, PublicKey, TaskId};

/// Draws up to `k` distinct members from `candidates` (sorted, with positive weights), each
/// draw picking a remaining candidate with probability proportional to its weight, using the
/// uniform value `H("polylink-committee-v1" || seed || task || i)`.
pub fn elect(candidates: &[(PublicKey, Amount)], k: usize, seed: &Hash32, task: &TaskId) -> Vec<PublicKey> {
    let mut pool: Vec<(PublicKey, Amount)> = candidates.iter().filter(|(_, w)| *w > 0).copied().collect();
    let mut chosen = Vec::with_capacity(k.min(pool.len()));
    let mut draw = 0u32;
    while chosen.len() < k && !pool.is_empty() {
        let total = pool.iter().fold(0u128, |sum, (_, w)| sum.saturating_add(*w));
        let r = Hash32::digest(&[b"polylink-committee-v1", &seed.0, &task.0, &draw.to_be_bytes()]).to_u128()
            % total;
        draw += 1;
        let mut acc = 0u128;
        let mut pick = pool.len() - 1;
        for (i, (_, w)) in pool.iter().enumerate() {
            acc = acc.saturating_add(*w);
            if r < acc {
                pick = i;
                break;
            }
        }
        chosen.push(pool.remove(pick).0);
    }
    chosen
}

/// The commit window of `task` in milliseconds: the base window and `commit_ms_per_token` for
/// every token of its result, at most `commit_window_max_ms`. A long answer takes a validator
/// long to check; a fixed window would expire it unchecked (no quorum, its workers unpaid).
pub(crate) fn commit_window_ms(params: &crate::Params, task: &crate::records::Task) -> u64 {
    let tokens =
        task.result.as_ref().map_or(0, |r| u64::from(r.prompt_tokens) + u64::from(r.completion_tokens));
    params
        .commit_window_ms
        .saturating_add(tokens.saturating_mul(params.commit_ms_per_token))
        .min(params.commit_window_max_ms)
}

/// Draws the committee of a task whose result was included in an earlier block, and opens its
/// commit window and then its reveal window, each open until both its blocks and its
/// milliseconds have passed (see [`crate::Task::commit_open`]).
/// Eligible: registered validators with the minimum bonded, except the task's own workers and
/// the model's developer; weight = bonded stake. With nobody eligible the task settles at once
/// with no quorum (user refunded).
pub(crate) fn draw(v: &mut View, id: &TaskId, seed: &Hash32) -> Result<()> {
    let mut task = v.task(id)?;
    if task.status != TaskStatus::AwaitingCommittee {
        return Ok(());
    }
    let developer =
        v.models.get(&task.model).map(|m| m.developer).ok_or(LedgerError::UnknownModel(task.model))?;
    let base = v.base;
    let params = &base.params;
    let candidates: Vec<(PublicKey, Amount)> = base
        .validators
        .keys()
        .filter(|who| **who != developer && !task.workers.as_slice().contains(who))
        .map(|who| (*who, v.stake(who).bonded))
        .filter(|(_, bonded)| *bonded >= params.validator_stake_min)
        .collect();
    let members = elect(&candidates, params.committee_size as usize, seed, id);
    if members.is_empty() {
        return settle::settle(v, id);
    }
    let commit_end_height = v.height.saturating_add(params.commit_window_blocks);
    let reveal_end_height = commit_end_height.saturating_add(params.reveal_window_blocks);
    let commit_end_ms = v.time_ms.saturating_add(commit_window_ms(params, &task));
    let reveal_end_ms = commit_end_ms.saturating_add(params.reveal_window_ms);
    for m in &members {
        v.hold(m)?;
    }
    task.committee = members
        .iter()
        .map(|m| Member { validator: *m, commitment: None, score: None, work: None })
        .collect::<Vec<_>>()
        .try_into()
        .map_err(|_| LedgerError::Overflow("committee"))?;
    task.commit_end_height = commit_end_height;
    task.commit_end_ms = commit_end_ms;
    task.reveal_end_height = reveal_end_height;
    task.reveal_end_ms = reveal_end_ms;
    task.status = TaskStatus::Scoring;
    v.tasks.put(*id, task);
    v.events.push(Event::CommitteeElected {
        task: *id,
        members,
        commit_end_height,
        commit_end_ms,
        reveal_end_height,
        reveal_end_ms,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk(i: u8) -> PublicKey {
        PublicKey([i; 32])
    }

    #[test]
    fn draws_distinct_members_and_favours_stake() {
        let cands: Vec<_> = (1..=5u8).map(|i| (pk(i), if i == 5 { 1_000_000 } else { 1 })).collect();
        let mut heavy = 0;
        for t in 0..200u8 {
            let c = elect(&cands, 3, &Hash32([t; 32]), &Hash32([7; 32]));
            assert_eq!(c.len(), 3);
            let mut d = c.clone();
            d.sort();
            d.dedup();
            assert_eq!(d.len(), 3, "members must be distinct");
            heavy += usize::from(c[0] == pk(5));
        }
        assert!(heavy > 190, "the heavy staker should nearly always be drawn first, was {heavy}/200");
        assert_eq!(elect(&cands, 10, &Hash32([1; 32]), &Hash32([2; 32])).len(), 5);
        assert!(elect(&[(pk(1), 0)], 3, &Hash32([1; 32]), &Hash32([2; 32])).is_empty());
    }

    #[test]
    fn same_seed_same_committee_other_seed_differs() {
        let cands: Vec<_> = (1..=20u8).map(|i| (pk(i), 10)).collect();
        let a = elect(&cands, 5, &Hash32([1; 32]), &Hash32([9; 32]));
        assert_eq!(a, elect(&cands, 5, &Hash32([1; 32]), &Hash32([9; 32])));
        assert_ne!(a, elect(&cands, 5, &Hash32([2; 32]), &Hash32([9; 32])));
    }
}
