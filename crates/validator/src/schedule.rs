//! When to do what: the pure part of the validator. Seats are read from a finalized block's
//! events; each seat's phase follows from the latest executed height alone.
//!
//! Heights (ledger rules): the committee is drawn at the start of block `E`; a commit must be
//! included in `E+1 ..= commit_end`, a reveal in `commit_end+1 ..= reveal_end`, and the task settles
//! at the end of block `reveal_end`. A transaction submitted when the latest executed height is
//! `h` is included at `h+1` at the earliest.

use polylink_chain::rpc::FinalizedBlock;
use polylink_types::{Event, PublicKey, TaskId};
use serde::{Deserialize, Serialize};

/// A committee seat this validator holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seat {
    /// The task.
    pub task: TaskId,
    /// Height of the block that drew the committee.
    pub elected_height: u64,
    /// Last height at which a commit is included.
    pub commit_end_height: u64,
    /// Last height at which a reveal is included.
    pub reveal_end_height: u64,
}

/// Where a seat stands at the latest executed height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A commit submitted now can still be included.
    Commit,
    /// A reveal submitted now can be included.
    Reveal,
    /// The reveal window is over (the task is settled).
    Over,
}

impl Seat {
    /// The phase when the latest executed height is `height`.
    pub fn phase(&self, height: u64) -> Phase {
        if height < self.commit_end_height {
            Phase::Commit
        } else if height < self.reveal_end_height {
            Phase::Reveal
        } else {
            Phase::Over
        }
    }

    /// The height from which fetching stops and a withheld transcript scores 0: a quarter of the
    /// commit window (2 to 20 blocks) is left to evaluate and commit.
    pub fn fetch_deadline(&self) -> u64 {
        let window = self.commit_end_height.saturating_sub(self.elected_height);
        let margin = (window / 4).clamp(2, 20).min(window.saturating_sub(1));
        self.commit_end_height - margin
    }
}

/// The seats `me` holds among the `committee_elected` events of one finalized block.
pub fn seats(block: &FinalizedBlock, me: &PublicKey) -> Vec<Seat> {
    block
        .executed
        .events
        .iter()
        .filter_map(|event| match event {
            Event::CommitteeElected { task, members, commit_end_height, reveal_end_height }
                if members.contains(me) =>
            {
                Some(Seat {
                    task: *task,
                    elected_height: block.executed.height,
                    commit_end_height: *commit_end_height,
                    reveal_end_height: *reveal_end_height,
                })
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use polylink_chain::rpc::Executed;

    fn seat(elected: u64, commit_end: u64, reveal_end: u64) -> Seat {
        Seat {
            task: TaskId::digest(&[b"t"]),
            elected_height: elected,
            commit_end_height: commit_end,
            reveal_end_height: reveal_end,
        }
    }

    #[test]
    fn phases_follow_the_ledger_windows() {
        let s = seat(10, 20, 30);
        assert_eq!(s.phase(10), Phase::Commit);
        assert_eq!(s.phase(19), Phase::Commit, "submitted at 19, included at 20 = commit_end");
        assert_eq!(s.phase(20), Phase::Reveal, "included at 21 = first reveal height");
        assert_eq!(s.phase(29), Phase::Reveal);
        assert_eq!(s.phase(30), Phase::Over);
    }

    #[test]
    fn fetch_deadline_leaves_blocks_to_commit() {
        assert_eq!(seat(10, 20, 30).fetch_deadline(), 18);
        assert_eq!(seat(0, 100, 120).fetch_deadline(), 80);
        assert_eq!(seat(0, 1000, 1100).fetch_deadline(), 980);
        assert_eq!(seat(5, 6, 7).fetch_deadline(), 6, "a one-block window leaves nothing to spare");
    }

    #[test]
    fn seats_are_read_only_for_me() {
        let me = polylink_types::SecretKey::from_label("me").public_key();
        let other = polylink_types::SecretKey::from_label("other").public_key();
        let task = TaskId::digest(&[b"x"]);
        let elected = |task, members| Event::CommitteeElected {
            task,
            members,
            commit_end_height: 17,
            reveal_end_height: 27,
        };
        let events = vec![
            elected(task, vec![other, me]),
            elected(TaskId::digest(&[b"y"]), vec![other]),
            Event::ScoreCommitted { task, validator: me },
        ];
        let block = |events| FinalizedBlock {
            digest: String::new(),
            parent: String::new(),
            view: 7,
            timestamp_ms: 0,
            tx_ids: Vec::new(),
            seed: TaskId::digest(&[b"seed"]),
            executed: Executed {
                height: 7,
                state_root: TaskId::digest(&[b"root"]),
                receipts: Vec::new(),
                events,
            },
        };
        assert_eq!(
            seats(&block(events), &me),
            vec![Seat { task, elected_height: 7, commit_end_height: 17, reveal_end_height: 27 }]
        );
        assert!(seats(&block(Vec::new()), &me).is_empty());
    }
}
