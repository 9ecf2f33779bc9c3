#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Accounts, transfers, signatures, nonces: bad input is refused and changes nothing.

mod common;
use common::*;
use polylink_ledger::{DEV_BALANCE, LedgerError, TxCheck};
use polylink_types::*;

fn transfer(to: PublicKey, amount: Amount) -> TxKind {
    TxKind::Transfer(Transfer { to, amount })
}

#[test]
fn transfer_moves_balance_and_bumps_nonce() {
    let mut net = Net::new(test_params());
    let to = net.pk(1);
    let events = net.ok(0, transfer(to, 1_234));
    assert_eq!(events, vec![Event::Transferred { from: net.pk(0), to, amount: 1_234 }]);
    assert_eq!(net.balance(0), DEV_BALANCE - 1_234 - net.fees(0, 0), "the amount and the fee");
    assert_eq!(net.balance(1), DEV_BALANCE + 1_234);
    assert_eq!(net.ledger.account(&net.pk(0)).nonce, 1);
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn fresh_account_can_receive_and_then_spend() {
    let mut net = Net::new(test_params());
    let newcomer = SecretKey::from_label("newcomer");
    net.ok(0, transfer(newcomer.public_key(), 500));
    let tx = UnsignedTx { signer: newcomer.public_key(), nonce: 0, kind: transfer(net.pk(0), 200) }
        .sign(&newcomer, CHAIN);
    net.block(&[tx]).receipts[0].result.clone().unwrap();
    let fee = net.ledger.params().tx_fee;
    assert_eq!(net.ledger.account(&newcomer.public_key()).balance, 300 - fee);
}

/// A refused tx changes nothing but its sender's nonce and fee, which it pays when a block could
/// carry it (valid signature, the sender's next nonce, a balance for the fee): failing costs what
/// succeeding does, so failing transactions are no free spam.
fn assert_refused_unchanged(net: &mut Net, tx: SignedTx, want: impl Fn(&LedgerError) -> bool) {
    let before = net.ledger.state().clone();
    assert!(net.ledger.check_tx(&tx).is_err(), "check_tx must refuse too");
    let signer = tx.tx.signer;
    let out = net.block(&[tx]);
    let err = out.receipts[0].result.clone().unwrap_err();
    assert!(want(&err), "unexpected error: {err}");
    let after = net.ledger.state();
    let excluded = matches!(err, LedgerError::BadSignature(_) | LedgerError::WrongNonce { .. });
    let nonce = |s: &polylink_ledger::State| s.accounts.get(&signer).map_or(0, |a| a.nonce);
    assert_eq!(nonce(after), nonce(&before) + u64::from(!excluded), "the nonce moves iff a block carries it");
    let fee = if excluded { 0 } else { net.ledger.params().tx_fee };
    let balances = |s: &polylink_ledger::State, fee| {
        s.accounts
            .iter()
            .map(|(k, a)| (*k, a.balance + if *k == signer { fee } else { 0 }))
            .collect::<Vec<_>>()
    };
    assert_eq!(balances(after, fee), balances(&before, 0), "a refused tx changed balances beyond its fee");
    let mut totals = before.totals.clone();
    totals.supply -= fee;
    totals.fees_burned += fee;
    assert_eq!(after.totals, totals);
}

#[test]
fn bad_signature_wrong_chain_and_replays_are_refused() {
    let mut net = Net::new(test_params());
    let to = net.pk(1);
    // Signed by the wrong key.
    let forged = UnsignedTx { signer: net.pk(0), nonce: 0, kind: transfer(to, 5) }.sign(&net.keys[1], CHAIN);
    assert_refused_unchanged(&mut net, forged, |e| matches!(e, LedgerError::BadSignature(_)));
    // Signed for another network.
    let other =
        UnsignedTx { signer: net.pk(0), nonce: 0, kind: transfer(to, 5) }.sign(&net.keys[0], "other-net");
    assert_refused_unchanged(&mut net, other, |e| matches!(e, LedgerError::BadSignature(_)));
    // Replay of an applied tx.
    let tx = net.tx(0, transfer(to, 5));
    net.block(std::slice::from_ref(&tx)).receipts[0].result.clone().unwrap();
    assert_refused_unchanged(&mut net, tx, |e| {
        matches!(e, LedgerError::WrongNonce { expected: 1, got: 0, .. })
    });
    // A nonce from the future.
    let ahead = UnsignedTx { signer: net.pk(0), nonce: 7, kind: transfer(to, 5) }.sign(&net.keys[0], CHAIN);
    assert_refused_unchanged(&mut net, ahead, |e| {
        matches!(e, LedgerError::WrongNonce { expected: 1, got: 7, .. })
    });
}

#[test]
fn insufficient_balance_and_zero_amounts_are_refused() {
    let mut net = Net::new(test_params());
    let to = net.pk(1);
    let tx = net.tx(0, transfer(to, DEV_BALANCE + 1));
    assert_refused_unchanged(
        &mut net,
        tx,
        |e| matches!(e, LedgerError::InsufficientBalance { needed, available, .. } if *needed == DEV_BALANCE + 1 && *available == DEV_BALANCE),
    );
    let tx = net.tx(0, transfer(to, 0));
    assert_refused_unchanged(&mut net, tx, |e| *e == LedgerError::ZeroAmount);
    let tx = net.tx(0, transfer(polylink_ledger::TREASURY, 5));
    assert_refused_unchanged(&mut net, tx, |e| matches!(e, LedgerError::Invalid { what: "transfer", .. }));
    // Each refused tx consumed its nonce; the next valid one uses the next.
    assert_eq!(net.ledger.account(&net.pk(0)).nonce, 3);
    net.ok(0, transfer(to, 1));
}

#[test]
fn a_failing_tx_does_not_stop_the_block() {
    let mut net = Net::new(test_params());
    let to = net.pk(1);
    let good = net.tx(0, transfer(to, 10));
    let bad = net.tx(2, transfer(to, DEV_BALANCE * 2));
    let out = net.block(&[bad, good]);
    assert!(out.receipts[0].result.is_err());
    assert!(out.receipts[1].result.is_ok());
    assert_eq!(net.balance(1), DEV_BALANCE + 10);
    assert_eq!(out.state_root, net.ledger.state_root());
}

#[test]
fn check_txs_accepts_consecutive_nonces_from_one_sender() {
    let net = Net::new(test_params());
    let to = net.pk(1);
    let a = net.tx(0, transfer(to, 10));
    let b = UnsignedTx { signer: net.pk(0), nonce: 1, kind: transfer(to, 10) }.sign(&net.keys[0], CHAIN);
    let too_much =
        UnsignedTx { signer: net.pk(0), nonce: 2, kind: transfer(to, DEV_BALANCE) }.sign(&net.keys[0], CHAIN);
    let reused = UnsignedTx { signer: net.pk(0), nonce: 2, kind: transfer(to, 10) }.sign(&net.keys[0], CHAIN);
    let c = UnsignedTx { signer: net.pk(0), nonce: 3, kind: transfer(to, 10) }.sign(&net.keys[0], CHAIN);
    let results = net.ledger.check_txs(&[a, b.clone(), too_much, reused, c]);
    assert!(results[0].is_ok() && results[1].is_ok());
    assert!(matches!(results[2], TxCheck::Fails(LedgerError::InsufficientBalance { .. })));
    assert!(results[2].includable(), "a block carries it: it consumes its nonce");
    assert!(matches!(results[3], TxCheck::Excluded(LedgerError::WrongNonce { .. })), "nonce 2 is spent");
    assert!(results[4].is_ok(), "the sender's next nonce after a failed tx is valid");
    assert!(net.ledger.check_tx(&b).is_err(), "alone, nonce 1 is not next");
}

#[test]
fn wrong_block_height_is_refused() {
    let mut net = Net::new(test_params());
    let ctx = BlockContext { height: 5, seed: Hash32::ZERO, time_ms: 5_000 };
    assert_eq!(
        net.ledger.apply_block(&ctx, &[]),
        Err(LedgerError::WrongHeight { expected_parent: 0, got: 5 })
    );
}

#[test]
fn genesis_rejects_duplicates_bad_chain_ids_and_bad_params() {
    let (mut g, _) = polylink_ledger::Genesis::dev(CHAIN, 2);
    let dup = g.accounts[0].clone();
    g.accounts.push(dup);
    assert!(polylink_ledger::Ledger::genesis(&g).is_err());
    let (mut g, _) = polylink_ledger::Genesis::dev("has space", 2);
    assert!(polylink_ledger::Ledger::genesis(&g).is_err());
    g.chain_id = "ok".into();
    g.params.committee_size = 0;
    assert!(polylink_ledger::Ledger::genesis(&g).is_err());
}
