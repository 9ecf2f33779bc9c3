#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Snapshots: exact round trips, and a decoder that never panics on damaged bytes.

mod common;
use common::*;
use polylink_ledger::{Ledger, SNAPSHOT_MAGIC, SNAPSHOT_VERSION};
use proptest::prelude::*;

/// A snapshot of a market with a task in scoring (every map non-empty).
fn market_snapshot() -> (Ledger, Vec<u8>) {
    let mut net = Net::market(test_params());
    let task = net.submit_task(100, &[WORKER]);
    net.submit_result(GATEWAY, task, (10, 10)).unwrap();
    net.committee(&task);
    let snap = net.ledger.snapshot();
    (net.ledger, snap)
}

#[test]
fn snapshot_round_trips_and_rejects_trailing_and_truncated_bytes() {
    let (ledger, mut snap) = market_snapshot();
    let restored = Ledger::from_snapshot(&snap).unwrap();
    assert_eq!(restored, ledger);
    assert_eq!(restored.state_root(), ledger.state_root());
    snap.push(0);
    assert!(Ledger::from_snapshot(&snap).is_err());
    snap.truncate(snap.len() - 2);
    assert!(Ledger::from_snapshot(&snap).is_err());
}

#[test]
fn a_snapshot_of_another_format_version_is_refused_by_name() {
    let (_, snap) = market_snapshot();
    assert!(snap.starts_with(SNAPSHOT_MAGIC));
    let mut newer = snap.clone();
    newer[4..6].copy_from_slice(&(SNAPSHOT_VERSION + 1).to_be_bytes());
    let err = Ledger::from_snapshot(&newer).unwrap_err().to_string();
    assert!(err.contains(&format!("format version {}", SNAPSHOT_VERSION + 1)), "{err}");
    let err = Ledger::from_snapshot(&snap[4..]).unwrap_err().to_string();
    assert!(err.contains("not a PolyLink state snapshot"), "{err}");
    assert!(Ledger::from_snapshot(&snap[..5]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Damaged snapshots are refused or decode canonically; they never panic.
    #[test]
    fn damaged_snapshots_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
        static SNAP: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let mut snap = SNAP.get_or_init(|| market_snapshot().1).clone();
        for (at, x) in flips {
            let i = at % snap.len();
            snap[i] ^= x | 1;
        }
        snap.truncate(snap.len() - cut % 4);
        if let Ok(ledger) = Ledger::from_snapshot(&snap) {
            prop_assert_eq!(ledger.snapshot(), snap);
        }
    }

    #[test]
    fn random_bytes_are_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Ledger::from_snapshot(&bytes);
    }
}
