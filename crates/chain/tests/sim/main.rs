//! Deterministic simulations: real validators (engine + ledger) in one process on Commonware's
//! deterministic runtime and simulated p2p, with message loss, latency, partitions, restarts and
//! Byzantine members. Each asserts that honest members never finalize conflicting blocks, reach
//! the same state roots and make progress, including a clear recovery (5 more finalized heights)
//! after a window below quorum; negative controls show the checker catches a network with more
//! than f faulty members. `POLYLINK_SIM_SEEDS` sets the number of 4-validator seeds.
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
    std::env::var("POLYLINK_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(100)
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

#[test]
fn four_validators_with_faults_stay_safe_and_recover_over_many_seeds() {
    for seed in 0..seed_count() {
        let scenario = four_validator_scenario(seed);
        let run = simulate(seed, &scenario);
        let tops: Vec<u64> =
            run.histories.iter().map(|h| h.keys().next_back().copied().unwrap_or(0)).collect();
        let verdict = check(&run.histories, 1).and_then(|()| check_recovery(&run, RECOVERY_HEIGHTS));
        if let Err(violation) = verdict {
            panic!("seed {seed} {scenario:?}: {violation} (honest heights {tops:?})");
        }
        eprintln!(
            "seed {seed}: healed at {:?}, honest heights {tops:?} ({:?})",
            run.heights_at_heal, scenario.roles
        );
    }
}

#[test]
fn seven_validators_with_two_byzantine_stay_safe_and_live() {
    for seed in 0..8 {
        let mut roles = vec![Role::Honest; 7];
        roles[(seed % 7) as usize] = Role::Silent;
        roles[((seed + 3) % 7) as usize] = Role::Equivocator;
        let partition = Some((((seed + 5) % 7) as usize, 3, 6));
        let scenario = Scenario { roles, link: LOSSY, partition, restart: None, duration_s: 16 };
        let run = simulate(1_000 + seed, &scenario);
        if let Err(violation) = check(&run.histories, 3).and_then(|()| check_recovery(&run, RECOVERY_HEIGHTS))
        {
            panic!("seed {seed} {scenario:?}: {violation}");
        }
    }
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
