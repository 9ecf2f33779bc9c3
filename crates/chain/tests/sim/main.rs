//! Deterministic simulations: real validators (engine + ledger) in one process on Commonware's
//! deterministic runtime and simulated p2p, with message loss, latency, partitions, restarts and
//! Byzantine members. Each asserts that honest members never finalize conflicting blocks, reach
//! the same state roots and make progress, including a clear recovery (5 more finalized heights)
//! after a window below quorum; negative controls show the checker catches a network with more
//! than f faulty members. The many-seed runs are split into shards (separate tests, so nextest
//! runs them on every core): 800 seeds at n = 4 and 200 at n = 7 by default;
//! `POLYLINK_SIM_SEEDS` sets the total (four fifths at n = 4).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use commonware_p2p::simulated::Link;
use commonware_utils::probability;
use harness::{Role, Scenario, check, check_recovery, simulate, simulate_twins};
use std::time::Duration;

const LOSSY: Link = Link {
    latency: Duration::from_millis(50),
    jitter: Duration::from_millis(20),
    success_rate: probability!(0.9),
};

fn seed_count() -> u64 {
    std::env::var("POLYLINK_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000)
}

/// Shards of the many-seed runs at each committee size.
const SHARDS: u64 = 4;

/// The seeds of shard `shard` of `total`.
fn shard_seeds(shard: u64, total: u64) -> std::ops::Range<u64> {
    let per = total.div_ceil(SHARDS);
    (shard * per).min(total)..((shard + 1) * per).min(total)
}

/// Finalized heights every honest member must add after a fault heals.
const RECOVERY_HEIGHTS: u64 = 5;

/// Seed `seed` picks the faulty member, its fault, and either a partition or a crash-restart of
/// another member, so every run mixes Byzantine behaviour with a network or crash fault. With a
/// silent or equivocating member, the second fault leaves the network below quorum for 3 s.
fn four_validator_scenario(seed: u64) -> Scenario {
    let faulty = (seed % 4) as usize;
    let other = (faulty + 1 + (seed / 4 % 3) as usize) % 4;
    let mut roles = vec![Role::Honest; 4];
    roles[faulty] = match seed % 3 {
        0 => Role::Silent,
        1 => Role::Equivocator,
        _ => Role::Honest,
    };
    let (partition, restart) =
        if seed.is_multiple_of(2) { (Some((other, 3, 6)), None) } else { (None, Some((other, 3, 6))) };
    Scenario { roles, link: LOSSY, partition, restart, duration_s: 18 }
}

/// Runs `scenario(seed)` for every seed of `seeds`, requiring safety, `min_height` finalized
/// blocks, and recovery after the faults heal.
fn run_seeds(seeds: std::ops::Range<u64>, min_height: u64, scenario: fn(u64) -> Scenario) {
    for seed in seeds {
        let scenario = scenario(seed);
        let run = simulate(seed, &scenario);
        let tops: Vec<u64> =
            run.histories.iter().map(|h| h.keys().next_back().copied().unwrap_or(0)).collect();
        let verdict = check(&run.histories, min_height).and_then(|()| check_recovery(&run, RECOVERY_HEIGHTS));
        if let Err(violation) = verdict {
            panic!("seed {seed} {scenario:?}: {violation} (honest heights {tops:?})");
        }
        eprintln!(
            "seed {seed}: healed at {:?}, honest heights {tops:?} ({:?})",
            run.heights_at_heal, scenario.roles
        );
    }
}

/// Seed `seed` (offset from the 4-validator seeds) picks two faulty members of seven (f = 2:
/// silent or equivocating, in every pairing) and a third fault on an honest member: a partition or
/// a crash-restart, which with two silent members leaves the network below quorum for 3 s (and
/// exactly at quorum the rest of the run).
fn seven_validator_scenario(seed: u64) -> Scenario {
    let first = (seed % 7) as usize;
    let second = (first + 1 + (seed / 7 % 6) as usize) % 7;
    let honest: Vec<usize> = (0..7).filter(|m| *m != first && *m != second).collect();
    let other = honest[(seed / 42 % 5) as usize];
    let mut roles = vec![Role::Honest; 7];
    let (a, b) = match seed % 3 {
        0 => (Role::Silent, Role::Equivocator),
        1 => (Role::Equivocator, Role::Equivocator),
        _ => (Role::Silent, Role::Silent),
    };
    roles[first] = a;
    roles[second] = b;
    let (partition, restart) =
        if (seed / 3).is_multiple_of(2) { (Some((other, 3, 6)), None) } else { (None, Some((other, 3, 6))) };
    // With two silent members the five others are exactly a quorum, so any lost vote costs a
    // view: the chain recovers, more slowly.
    let duration_s = if a == Role::Silent && b == Role::Silent { 32 } else { 20 };
    Scenario { roles, link: LOSSY, partition, restart, duration_s }
}

fn four_validator_shard(shard: u64) {
    run_seeds(shard_seeds(shard, seed_count() * 4 / 5), 1, four_validator_scenario);
}

fn seven_validator_shard(shard: u64) {
    let total = seed_count() - seed_count() * 4 / 5;
    let seeds = shard_seeds(shard, total);
    run_seeds(1_000_000 + seeds.start..1_000_000 + seeds.end, 1, seven_validator_scenario);
}

#[test]
fn four_validators_with_faults_stay_safe_and_recover_shard_0() {
    four_validator_shard(0);
}

#[test]
fn four_validators_with_faults_stay_safe_and_recover_shard_1() {
    four_validator_shard(1);
}

#[test]
fn four_validators_with_faults_stay_safe_and_recover_shard_2() {
    four_validator_shard(2);
}

#[test]
fn four_validators_with_faults_stay_safe_and_recover_shard_3() {
    four_validator_shard(3);
}

#[test]
fn seven_validators_with_two_byzantine_stay_safe_and_recover_shard_0() {
    seven_validator_shard(0);
}

#[test]
fn seven_validators_with_two_byzantine_stay_safe_and_recover_shard_1() {
    seven_validator_shard(1);
}

#[test]
fn seven_validators_with_two_byzantine_stay_safe_and_recover_shard_2() {
    seven_validator_shard(2);
}

#[test]
fn seven_validators_with_two_byzantine_stay_safe_and_recover_shard_3() {
    seven_validator_shard(3);
}

#[test]
fn same_seed_replays_the_same_chain() {
    let scenario = four_validator_scenario(5);
    assert_eq!(simulate(5, &scenario), simulate(5, &scenario));
}

#[test]
fn negative_control_two_twinned_members_of_four_fork_and_the_checker_catches_it() {
    // Two of four members (more than f = 1) run a copy on each side of a split network: each side
    // has a quorum of 3 signers, so both sides finalize their own chain.
    for seed in 0..3 {
        let histories = simulate_twins(seed);
        let verdict = check(&histories, 1);
        assert!(
            verdict.as_ref().is_err_and(|v| v.contains("diverges")),
            "seed {seed}: the checker missed a fork: {verdict:?}"
        );
    }
}

#[test]
fn negative_control_two_silent_members_of_four_stall_and_the_checker_catches_it() {
    let roles = vec![Role::Honest, Role::Silent, Role::Honest, Role::Silent];
    let scenario = Scenario { roles, link: LOSSY, partition: None, restart: None, duration_s: 8 };
    let verdict = check(&simulate(9, &scenario).histories, 1);
    assert!(verdict.is_err_and(|v| v.contains("only reached")));
}

#[test]
fn restarted_validator_rejoins_and_the_chain_goes_on() {
    let roles = vec![Role::Honest; 4];
    let scenario = Scenario { roles, link: LOSSY, partition: None, restart: Some((0, 3, 6)), duration_s: 16 };
    let run = simulate(77, &scenario);
    check(&run.histories, 8).unwrap();
    check_recovery(&run, RECOVERY_HEIGHTS).unwrap();
}

#[test]
fn crash_restart_while_below_quorum_recovers() {
    // Member 3 is silent throughout; member 0 crashes at 3 s and restarts on its storage at 6 s,
    // so for 3 s only two of four members run (below the quorum of three).
    for seed in [3, 15, 27] {
        let roles = vec![Role::Honest, Role::Honest, Role::Honest, Role::Silent];
        let scenario =
            Scenario { roles, link: LOSSY, partition: None, restart: Some((0, 3, 6)), duration_s: 16 };
        let run = simulate(seed, &scenario);
        check(&run.histories, 1).unwrap();
        check_recovery(&run, RECOVERY_HEIGHTS).unwrap_or_else(|v| panic!("seed {seed}: {v}"));
    }
}
