//! Commit and reveal of committee scores, each within its window (blocks and block time).

use crate::params::SCORE_MAX;
use crate::records::{Task, TaskStatus};
use crate::settle::{ABSTAIN, BUSY};
use crate::view::View;
use crate::{LedgerError, Result};
use polylink_types::{CommitScore, Event, PublicKey, RevealScore, TaskId, score_commitment};

/// The scoring task and the signer's seat in its committee.
fn seat(v: &View, task_id: &TaskId, who: &PublicKey, action: &'static str) -> Result<(Task, usize)> {
    let task = v.task(task_id)?;
    if task.status != TaskStatus::Scoring {
        return Err(LedgerError::WrongTaskStatus { task: *task_id, status: task.status.name(), action });
    }
    let index = task.committee.iter().position(|m| m.validator == *who).ok_or(LedgerError::WrongRole {
        account: *who,
        action,
        reason: "only members of the task's committee may",
    })?;
    Ok((task, index))
}

fn closed(task_id: &TaskId, action: &'static str, end_height: u64, end_ms: u64, v: &View) -> LedgerError {
    LedgerError::OutsideWindow {
        task: *task_id,
        action,
        window: format!(
            "open until both height {end_height} and time {end_ms} ms have passed (after the commit window, for reveals); the block is at height {} and {} ms",
            v.height, v.time_ms
        ),
    }
}

/// Records a member's commitment while the commit window is open.
pub(crate) fn commit(v: &mut View, who: &PublicKey, c: &CommitScore) -> Result<()> {
    let (mut task, i) = seat(v, &c.task, who, "commit a score")?;
    if !task.commit_open(v.height, v.time_ms) {
        return Err(closed(&c.task, "commit a score", task.commit_end_height, task.commit_end_ms, v));
    }
    let mut members = task.committee.as_slice().to_vec();
    if members[i].commitment.is_some() {
        return Err(LedgerError::Duplicate { task: c.task, validator: *who, action: "commit" });
    }
    members[i].commitment = Some(c.commitment);
    task.committee = members.try_into().map_err(|_| LedgerError::Overflow("committee"))?;
    v.tasks.put(c.task, task);
    v.events.push(Event::ScoreCommitted { task: c.task, validator: *who });
    Ok(())
}

/// Opens a member's commitment while the reveal window is open.
pub(crate) fn reveal(v: &mut View, who: &PublicKey, r: &RevealScore) -> Result<()> {
    let (mut task, i) = seat(v, &r.task, who, "reveal a score")?;
    if !task.reveal_open(v.height, v.time_ms) {
        return Err(closed(&r.task, "reveal a score", task.reveal_end_height, task.reveal_end_ms, v));
    }
    if r.score > SCORE_MAX && r.score != ABSTAIN && r.score != BUSY {
        return Err(LedgerError::Invalid { what: "score", reason: format!("{} above {SCORE_MAX}", r.score) });
    }
    let mut members = task.committee.as_slice().to_vec();
    if members[i].score.is_some() {
        return Err(LedgerError::Duplicate { task: r.task, validator: *who, action: "reveal" });
    }
    if members[i].commitment != Some(score_commitment(r.score, &r.work, &r.salt, who)) {
        return Err(LedgerError::CommitmentMismatch { task: r.task, validator: *who });
    }
    members[i].score = Some(r.score);
    members[i].work = Some(r.work);
    task.committee = members.try_into().map_err(|_| LedgerError::Overflow("committee"))?;
    v.tasks.put(r.task, task);
    v.events.push(Event::ScoreRevealed { task: r.task, validator: *who, score: r.score });
    Ok(())
}
