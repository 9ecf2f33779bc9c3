//! Every on-chain parameter of ARCHITECTURE §5, fixed at genesis.

use crate::{LedgerError, Result};
use polylink_types::{Amount, amount_serde, codec_fields};
use serde::{Deserialize, Serialize};

/// Largest scoring committee.
pub const COMMITTEE_MAX: usize = 64;
/// Most simultaneous unbonding entries per account.
pub const UNBONDING_ENTRIES_MAX: usize = 32;
/// Highest quality score a validator can reveal.
pub const SCORE_MAX: u16 = 1000;
/// Basis points in one whole.
pub const BPS_ONE: u16 = 10_000;
/// Parts per million in one whole.
pub const PPM_ONE: u64 = 1_000_000;
/// A task's deadline allows this many times its workers' registered time per token.
pub const DEADLINE_SPEED_MARGIN: u64 = 4;

/// Genesis parameters. Windows and periods are in blocks, ratios in basis points or ppm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// What every applied transaction costs its sender, burned: spam costs the spammer, and a
    /// sender that cannot pay is refused (nothing changes).
    #[serde(with = "amount_serde")]
    pub tx_fee: Amount,
    /// Blocks between Unbond and the moment Withdraw can release the stake …
    pub unbonding_period_blocks: u64,
    /// … and block-time milliseconds: both must have passed. Each outlasts the longest task
    /// lifetime in its unit ([`Params::task_lifetime_blocks`], [`Params::task_lifetime_ms`]),
    /// so a slash lands before the stake can leave even without `Stake::at_risk_tasks`.
    pub unbonding_period_ms: u64,
    /// Least bonded stake of an active worker.
    #[serde(with = "amount_serde")]
    pub worker_stake_min: Amount,
    /// Least bonded stake of an active validator.
    #[serde(with = "amount_serde")]
    pub validator_stake_min: Amount,
    /// Least bonded stake of an active gateway (one that may open tasks and report results).
    #[serde(with = "amount_serde")]
    pub gateway_stake_min: Amount,
    /// Blocks a settled or reclaimed task stays in the state before it is pruned (nodes keep
    /// its record in an index of their own): the state stays bounded by recent tasks.
    pub task_retention_blocks: u64,
    /// Largest `max_tokens` a task may ask for.
    pub task_tokens_max: u32,
    /// A task's result must be included by `submitted + base + max_tokens x per-token time`
    /// (block time, ms); at the first block past that the chain returns the escrow by itself.
    /// The per-token time is the larger of `task_ms_per_token_min` and
    /// `DEADLINE_SPEED_MARGIN` times the named workers' registered time per token.
    pub task_deadline_base_ms: u64,
    /// See `task_deadline_base_ms`.
    pub task_ms_per_token_min: u64,
    /// Longest deadline a task can get, however slow its workers say they are.
    pub task_deadline_max_ms: u64,
    /// Committee size k (fewer when fewer validators are eligible).
    pub committee_size: u32,
    /// Blocks after the committee draw during which members may commit …
    pub commit_window_blocks: u64,
    /// … and block-time milliseconds: the window closes once both have passed, so it holds
    /// whether blocks come fast (under load) or slow (a stalled leader). The window in
    /// milliseconds grows by `commit_ms_per_token` for every token of the result (prompt and
    /// completion: what a validator re-runs), up to `commit_window_max_ms`.
    pub commit_window_ms: u64,
    /// See `commit_window_ms`.
    pub commit_ms_per_token: u64,
    /// Longest commit window in milliseconds, however long the task.
    pub commit_window_max_ms: u64,
    /// Blocks after the commit window during which members may reveal …
    pub reveal_window_blocks: u64,
    /// … and milliseconds, as for the commit window.
    pub reveal_window_ms: u64,
    /// Fewest reveals for a quality verdict; fewer means no quorum (refund, nobody paid). At
    /// least 2 when committees have 2 or more seats: no single validator decides a task.
    pub reveals_min: u32,
    /// Delta: a revealed score farther than this from the median is slashed.
    pub score_delta: u16,
    /// q_min: a median under this fails the worker.
    pub quality_min: u16,
    /// Slice of stake (bonded + unbonding) slashed from an outlier validator, bps.
    pub outlier_slash_bps: u16,
    /// Slice slashed from a validator that committed and did not reveal, bps.
    pub no_reveal_slash_bps: u16,
    /// Slice slashed from an elected validator that committed nothing, bps.
    pub no_commit_slash_bps: u16,
    /// Slice slashed from a worker at its `strikes_to_slash`-th strike, bps.
    pub worker_slash_bps: u16,
    /// Strikes (tasks settled under q_min) that cost a worker a slash: one false positive of
    /// the evaluators never costs an honest worker stake.
    pub strikes_to_slash: u8,
    /// Paid tasks that wear one strike off.
    pub strike_decay_tasks: u32,
    /// Validators' share of a paid fee, bps (split equally among honest revealers).
    pub validator_share_bps: u16,
    /// Treasury's share of a paid fee, bps.
    pub treasury_share_bps: u16,
    /// Highest royalty a developer may set, bps.
    pub royalty_bps_max: u16,
    /// Blocks per pricing epoch.
    pub epoch_length_blocks: u64,
    /// Nominal block time: turns an epoch into time for its capacity, and counts the draw and
    /// settlement blocks of a task's lifetime.
    pub block_time_ms: u64,
    /// Time an active worker serving a whole model is counted to need per token when an
    /// epoch's capacity is reckoned (a layer range counts its share of the layers). The price
    /// follows staked workers, never the speeds they report about themselves.
    pub capacity_token_ms: u64,
    /// u*: target utilization, ppm.
    pub target_utilization_ppm: u64,
    /// d: price change denominator; one epoch moves the price by at most 1/d.
    pub price_change_denominator: u64,
    /// p_max = price_floor x this.
    pub price_ceiling_multiple: u64,
}
codec_fields!(Params {
    tx_fee,
    unbonding_period_blocks,
    unbonding_period_ms,
    worker_stake_min,
    validator_stake_min,
    gateway_stake_min,
    task_retention_blocks,
    task_tokens_max,
    task_deadline_base_ms,
    task_ms_per_token_min,
    task_deadline_max_ms,
    committee_size,
    commit_window_blocks,
    commit_window_ms,
    commit_ms_per_token,
    commit_window_max_ms,
    reveal_window_blocks,
    reveal_window_ms,
    reveals_min,
    score_delta,
    quality_min,
    outlier_slash_bps,
    no_reveal_slash_bps,
    no_commit_slash_bps,
    worker_slash_bps,
    strikes_to_slash,
    strike_decay_tasks,
    validator_share_bps,
    treasury_share_bps,
    royalty_bps_max,
    epoch_length_blocks,
    block_time_ms,
    capacity_token_ms,
    target_utilization_ppm,
    price_change_denominator,
    price_ceiling_multiple,
});

impl Default for Params {
    fn default() -> Self {
        Self {
            // A tenth of a token at the dev chain's price floor (1_000 a token).
            tx_fee: 100,
            unbonding_period_blocks: 100,
            // Twice the longest task lifetime (an hour's deadline, the windows, two blocks).
            unbonding_period_ms: 7_200_000,
            worker_stake_min: 1_000,
            validator_stake_min: 1_000,
            gateway_stake_min: 1_000,
            task_retention_blocks: 1_000,
            task_tokens_max: 32_768,
            task_deadline_base_ms: 60_000,
            task_ms_per_token_min: 200,
            task_deadline_max_ms: 3_600_000,
            committee_size: 3,
            commit_window_blocks: 10,
            // A minute: an edge validator scoring a burst of tasks (0.2 to 15 s each on two
            // cores, measured by `polylink bench traffic`) still commits a score, not an
            // abstention; settlement follows about 80 s after the result.
            commit_window_ms: 60_000,
            // A validator on two cores checks a long answer at about 35 ms a token (a 2,048-token
            // answer took over 70 s under `polylink bench traffic`); 60 ms a token leaves room
            // for the queue ahead of it.
            commit_ms_per_token: 60,
            commit_window_max_ms: 600_000,
            reveal_window_blocks: 10,
            reveal_window_ms: 20_000,
            reveals_min: 2,
            score_delta: 150,
            quality_min: 500,
            outlier_slash_bps: 100,
            no_reveal_slash_bps: 200,
            // Small: a validator that falls behind commits an abstention by its last call (and a
            // late transaction no longer voids the ones after it), so an empty seat means a
            // validator that was away; `polylink bench traffic` (37 requests on a loaded 2-core
            // machine) left no seat empty.
            no_commit_slash_bps: 20,
            worker_slash_bps: 500,
            strikes_to_slash: 3,
            strike_decay_tasks: 20,
            validator_share_bps: 1_000,
            treasury_share_bps: 500,
            royalty_bps_max: 2_000,
            epoch_length_blocks: 100,
            block_time_ms: 1_000,
            // 200 tokens a second: SmolLM2-135M on a laptop core or two.
            capacity_token_ms: 5,
            target_utilization_ppm: 500_000,
            price_change_denominator: 8,
            price_ceiling_multiple: 1_000,
        }
    }
}

fn check(ok: bool, reason: impl FnOnce() -> String) -> Result<()> {
    if ok { Ok(()) } else { Err(LedgerError::InvalidGenesis(reason())) }
}

impl Params {
    /// The longest a task can answer for its workers' stake, counted in blocks when blocks come
    /// fast: the committee is drawn the block after the result, the commit and reveal windows
    /// run, and settlement comes at the first block past them. (The deadline is in ms only.)
    pub fn task_lifetime_blocks(&self) -> u64 {
        self.commit_window_blocks.saturating_add(self.reveal_window_blocks).saturating_add(2)
    }

    /// The longest a task can answer for its workers' stake in block time, at the nominal block
    /// time: the longest deadline, the longest commit window, the reveal window, and a block each
    /// for the committee draw and the settlement.
    pub fn task_lifetime_ms(&self) -> u64 {
        self.task_deadline_max_ms
            .saturating_add(self.commit_window_max_ms)
            .saturating_add(self.reveal_window_ms)
            .saturating_add(self.block_time_ms.saturating_mul(2))
    }

    /// Checks every range, that the fee shares leave the worker a positive share, and that
    /// unbonding outlasts the longest task in both units (a slash lands before stake can leave).
    pub fn validate(&self) -> Result<()> {
        let p = self;
        check(p.unbonding_period_blocks > p.task_lifetime_blocks(), || {
            format!(
                "unbonding_period_blocks {} must outlast a task's {} blocks (commit + reveal windows + draw + settle): a slash must land before the stake can leave",
                p.unbonding_period_blocks,
                p.task_lifetime_blocks()
            )
        })?;
        check(p.unbonding_period_ms > p.task_lifetime_ms(), || {
            format!(
                "unbonding_period_ms {} must outlast a task's {} ms (deadline max + commit + reveal windows + draw + settle): a slash must land before the stake can leave",
                p.unbonding_period_ms,
                p.task_lifetime_ms()
            )
        })?;
        check(p.task_tokens_max >= 1 && p.task_retention_blocks >= 1, || {
            "task_tokens_max and task_retention_blocks must be >= 1".into()
        })?;
        check(p.task_deadline_base_ms >= 1 && p.task_deadline_max_ms >= p.task_deadline_base_ms, || {
            format!(
                "task_deadline_base_ms {} must be >= 1 and <= task_deadline_max_ms {}",
                p.task_deadline_base_ms, p.task_deadline_max_ms
            )
        })?;
        let k = p.committee_size as usize;
        check((1..=COMMITTEE_MAX).contains(&k), || {
            format!("committee_size {k} outside 1..={COMMITTEE_MAX}")
        })?;
        let least = p.committee_size.min(2);
        check(p.reveals_min >= least && p.reveals_min <= p.committee_size, || {
            format!(
                "reveals_min {} outside {least}..=committee_size {} (no single validator may decide a task)",
                p.reveals_min, p.committee_size
            )
        })?;
        check(p.strikes_to_slash >= 1 && p.strike_decay_tasks >= 1, || {
            "strikes_to_slash and strike_decay_tasks must be >= 1".into()
        })?;
        check(p.commit_window_blocks >= 1 && p.reveal_window_blocks >= 1, || {
            "commit and reveal windows must be >= 1 block".into()
        })?;
        check(p.commit_window_max_ms >= p.commit_window_ms, || {
            format!(
                "commit_window_max_ms {} must be >= commit_window_ms {}",
                p.commit_window_max_ms, p.commit_window_ms
            )
        })?;
        check(p.score_delta <= SCORE_MAX && p.quality_min <= SCORE_MAX, || {
            format!("score_delta {} and quality_min {} must be <= {SCORE_MAX}", p.score_delta, p.quality_min)
        })?;
        for (name, bps) in [
            ("outlier_slash_bps", p.outlier_slash_bps),
            ("no_reveal_slash_bps", p.no_reveal_slash_bps),
            ("no_commit_slash_bps", p.no_commit_slash_bps),
            ("worker_slash_bps", p.worker_slash_bps),
        ] {
            check(bps <= BPS_ONE, || format!("{name} {bps} above {BPS_ONE}"))?;
        }
        let shares =
            u32::from(p.validator_share_bps) + u32::from(p.treasury_share_bps) + u32::from(p.royalty_bps_max);
        check(shares < u32::from(BPS_ONE), || {
            format!("validator + treasury + max royalty shares {shares} bps leave no worker share")
        })?;
        check(p.epoch_length_blocks >= 1 && p.block_time_ms >= 1 && p.capacity_token_ms >= 1, || {
            "epoch_length_blocks, block_time_ms and capacity_token_ms must be >= 1".into()
        })?;
        check((1..=PPM_ONE).contains(&p.target_utilization_ppm), || {
            format!("target_utilization_ppm {} outside 1..={PPM_ONE}", p.target_utilization_ppm)
        })?;
        check(p.price_change_denominator >= 1 && p.price_ceiling_multiple >= 1, || {
            "price_change_denominator and price_ceiling_multiple must be >= 1".into()
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert_eq!(Params::default().validate(), Ok(()));
        let bad = Params { validator_share_bps: 9_000, ..Params::default() };
        let err = bad.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("leave no worker share"), "{err}");
        let bad = Params { committee_size: 0, ..Params::default() };
        assert!(bad.validate().is_err());
        let bad = Params { reveals_min: 4, ..Params::default() };
        assert!(bad.validate().is_err());
        let lone_judge = Params { reveals_min: 1, ..Params::default() };
        let err = lone_judge.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("no single validator"), "{err}");
        let alone = Params { committee_size: 1, reveals_min: 1, ..Params::default() };
        assert_eq!(alone.validate(), Ok(()));
    }

    #[test]
    fn unbonding_that_a_task_can_outlive_is_refused_in_either_unit() {
        let p = Params::default();
        // A stake could leave before the slash of a task at its longest deadline lands.
        let short_ms = Params { unbonding_period_ms: p.task_deadline_max_ms, ..p.clone() };
        let err = short_ms.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("unbonding_period_ms") && err.contains("slash must land"), "{err}");
        let just_ms = Params { unbonding_period_ms: p.task_lifetime_ms(), ..p.clone() };
        assert!(just_ms.validate().is_err(), "equal is not outlasting");
        let enough_ms = Params { unbonding_period_ms: p.task_lifetime_ms() + 1, ..p.clone() };
        assert_eq!(enough_ms.validate(), Ok(()));
        // Long windows in blocks (fast blocks) need a longer unbonding in blocks.
        let long_windows = Params { commit_window_blocks: 80, reveal_window_blocks: 20, ..p.clone() };
        let err = long_windows.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("unbonding_period_blocks 100 must outlast a task's 102 blocks"), "{err}");
        let longer_deadline = Params { task_deadline_max_ms: p.unbonding_period_ms, ..p };
        assert!(longer_deadline.validate().is_err());
    }
}
