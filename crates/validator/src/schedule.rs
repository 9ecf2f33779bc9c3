//! When to do what: the pure part of the validator. Seats are read from a finalized block's
//! events; each seat's phase follows from the latest executed block (its height and time).
//!
//! Ledger rules: the committee is drawn at the start of block `E`. The commit window is open in
//! a block at height `h` and time `t` while `h <= commit_end_height` or `t <= commit_end_ms`;
//! the reveal window opens when the commit window has closed and stays open while
//! `h <= reveal_end_height` or `t <= reveal_end_ms`; the task settles at the end of the first
//! block past both. A transaction submitted when the latest executed block is `(h, t)` is
//! included at `h+1` at the earliest, at a time of at least `t` and, in practice, within
//! [`INCLUSION_MS`].

use polylink_chain::rpc::FinalizedBlock;
use polylink_types::{Event, PublicKey, TaskId};
use serde::{Deserialize, Serialize};

/// Block time a transaction is assumed to need to be included, ms: a commit is only sent while
/// the window stays open at least this long by time (or for another block by height).
pub(crate) const INCLUSION_MS: u64 = 3_000;

/// The latest executed block as the validator saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tip {
    /// Its height.
    pub height: u64,
    /// Its timestamp, ms.
    pub time_ms: u64,
}

/// A committee seat this validator holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Seat {
    /// The task.
    pub task: TaskId,
    /// Height of the block that drew the committee …
    pub elected_height: u64,
    /// … and its time, ms.
    pub elected_ms: u64,
    /// Commit window end: height …
    pub commit_end_height: u64,
    /// … and time, ms.
    pub commit_end_ms: u64,
    /// Reveal window end: height …
    pub reveal_end_height: u64,
    /// … and time, ms.
    pub reveal_end_ms: u64,
}

/// Where a seat stands at the latest executed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A commit submitted now can still be included.
    Commit,
    /// Too late to commit, too early to reveal (the commit window may still be open).
    Between,
    /// A reveal submitted now can be included.
    Reveal,
    /// The reveal window is over (the task is settled).
    Over,
}

impl Seat {
    /// The phase when the latest executed block is `tip`.
    pub(crate) fn phase(&self, tip: Tip) -> Phase {
        let next = tip.height + 1;
        // By height a commit gets a block to spare: the next block may already be proposed.
        if next < self.commit_end_height || tip.time_ms + INCLUSION_MS <= self.commit_end_ms {
            Phase::Commit
        } else if next <= self.commit_end_height || tip.time_ms <= self.commit_end_ms {
            Phase::Between
        } else if next <= self.reveal_end_height || tip.time_ms + INCLUSION_MS <= self.reveal_end_ms {
            Phase::Reveal
        } else {
            Phase::Over
        }
    }

    /// Whether a commitment must leave now to be included in time: the commit window has no more
    /// than a margin left (two blocks to spare by height, two inclusion times by time). A
    /// validator still scoring then commits an abstention rather than nothing.
    pub(crate) fn last_call(&self, tip: Tip) -> bool {
        let by_height = tip.height + 3 < self.commit_end_height;
        let by_time = tip.time_ms + 2 * INCLUSION_MS <= self.commit_end_ms;
        !(by_height || by_time)
    }

    /// Whether fetching should stop (a withheld transcript is then abstained on): a quarter of the
    /// commit window (3 to 20 blocks, and a quarter of its time but at least three inclusion
    /// times) is left to evaluate and commit. It always comes before [`Seat::last_call`], so a
    /// withheld transcript is abstained on, never committed busy.
    pub(crate) fn fetch_over(&self, tip: Tip) -> bool {
        let window = self.commit_end_height.saturating_sub(self.elected_height);
        let margin = (window / 4).clamp(3, 20).min(window.saturating_sub(1));
        let by_height = tip.height >= self.commit_end_height - margin;
        let window_ms = self.commit_end_ms.saturating_sub(self.elected_ms);
        let by_time = tip.time_ms + (window_ms / 4).max(3 * INCLUSION_MS) >= self.commit_end_ms;
        by_height && by_time
    }
}

/// The seats `me` holds among the `committee_elected` events of one finalized block.
pub(crate) fn seats(block: &FinalizedBlock, me: &PublicKey) -> Vec<Seat> {
    block
        .executed
        .events
        .iter()
        .filter_map(|event| match event {
            Event::CommitteeElected {
                task,
                members,
                commit_end_height,
                commit_end_ms,
                reveal_end_height,
                reveal_end_ms,
            } if members.contains(me) => Some(Seat {
                task: *task,
                elected_height: block.executed.height,
                elected_ms: block.timestamp_ms,
                commit_end_height: *commit_end_height,
                commit_end_ms: *commit_end_ms,
                reveal_end_height: *reveal_end_height,
                reveal_end_ms: *reveal_end_ms,
            }),
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
            elected_ms: 80_000,
            commit_end_height: commit_end,
            commit_end_ms: 100_000,
            reveal_end_height: reveal_end,
            reveal_end_ms: 200_000,
        }
    }

    fn at(height: u64, time_ms: u64) -> Tip {
        Tip { height, time_ms }
    }

    #[test]
    fn phases_follow_the_ledger_windows_in_blocks_and_time() {
        let s = seat(10, 20, 30);
        // Slow blocks: the height decides once the time has passed.
        assert_eq!(s.phase(at(10, 150_000)), Phase::Commit);
        assert_eq!(s.phase(at(18, 150_000)), Phase::Commit, "submitted at 18, included at 19 or 20");
        assert_eq!(s.phase(at(19, 150_000)), Phase::Between, "only block 20 is left: too tight");
        assert_eq!(s.phase(at(20, 150_000)), Phase::Reveal, "included at 21, past both ends");
        assert_eq!(s.phase(at(29, 250_000)), Phase::Reveal);
        assert_eq!(s.phase(at(30, 250_000)), Phase::Over);
        // Fast blocks (load): the time keeps the windows open past their heights.
        assert_eq!(s.phase(at(25, 90_000)), Phase::Commit);
        assert_eq!(s.phase(at(25, 99_000)), Phase::Between, "the commit window may still be open");
        assert_eq!(s.phase(at(25, 100_001)), Phase::Reveal);
        assert_eq!(s.phase(at(60, 190_000)), Phase::Reveal);
        assert_eq!(s.phase(at(60, 199_000)), Phase::Over);
    }

    #[test]
    fn the_last_call_comes_with_a_margin_left_by_height_and_time() {
        let s = seat(10, 20, 30);
        assert!(!s.last_call(at(16, 150_000)), "four blocks left");
        assert!(s.last_call(at(17, 150_000)));
        assert!(!s.last_call(at(17, 94_000)), "six seconds left");
        assert!(s.last_call(at(17, 94_001)));
        assert_eq!(s.phase(at(17, 94_001)), Phase::Commit, "a last call can still commit");
    }

    #[test]
    fn fetching_stops_with_a_quarter_of_the_commit_window_left() {
        let s = seat(10, 20, 30);
        assert!(!s.fetch_over(at(16, 150_000)));
        assert!(s.fetch_over(at(17, 150_000)));
        assert!(!s.fetch_over(at(17, 90_000)), "time is left");
        assert!(s.fetch_over(at(17, 91_000)));
        // Fetching always stops before the last call, whatever the blocks and times.
        for h in 10..=20 {
            for t in (80_000..=100_000).step_by(250) {
                assert!(!s.last_call(at(h, t)) || s.fetch_over(at(h, t)), "at ({h}, {t})");
            }
        }
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
            commit_end_ms: 5,
            reveal_end_height: 27,
            reveal_end_ms: 6,
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
        let want = Seat {
            task,
            elected_height: 7,
            elected_ms: 0,
            commit_end_height: 17,
            commit_end_ms: 5,
            reveal_end_height: 27,
            reveal_end_ms: 6,
        };
        assert_eq!(seats(&block(events), &me), vec![want]);
        assert!(seats(&block(Vec::new()), &me).is_empty());
    }
}
