#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Committee election, commit-reveal windows, median settlement, slashing and the fee split.

mod common;
use common::*;
use polylink_ledger::{ABSTAIN, BUSY, DEV_BALANCE, LedgerError, Params, TREASURY, TaskStatus};
use polylink_types::*;

/// A market with a task whose result (20 + 30 tokens, fee 500) is in and whose committee is drawn.
fn scored_task(params: Params) -> (Net, TaskId, Vec<usize>) {
    let mut net = Net::market(params);
    let task = net.submit_task(100, &[WORKER]);
    net.submit_result(GATEWAY, task, (20, 30)).unwrap();
    let committee = net.committee(&task);
    (net, task, committee)
}

fn slashed(events: &[Event], reason: SlashReason) -> Vec<PublicKey> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Slashed { account, reason: r, .. } if *r == reason => Some(*account),
            _ => None,
        })
        .collect()
}

fn settled(events: &[Event]) -> (SettleOutcome, Option<u16>) {
    events
        .iter()
        .find_map(|e| match e {
            Event::TaskSettled { outcome, median_score, .. } => Some((*outcome, *median_score)),
            _ => None,
        })
        .unwrap()
}

#[test]
fn committee_is_drawn_at_the_next_block_and_is_reproducible() {
    let (net, task, committee) = scored_task(test_params());
    assert_eq!(committee.len(), 3);
    assert!(committee.iter().all(|v| VALIDATORS.contains(v)));
    let t = net.ledger.task(&task).unwrap();
    assert_eq!(t.status, TaskStatus::Scoring);
    assert_eq!(t.commit_end_height, net.ledger.height() + 3);
    assert_eq!(t.reveal_end_height, t.commit_end_height + 3);
    let (_, _, again) = scored_task(test_params());
    assert_eq!(again, committee, "same blocks and seeds, same committee");
}

#[test]
fn a_worker_who_is_also_a_validator_never_scores_its_own_task() {
    let mut params = test_params();
    params.committee_size = 7;
    let mut net = Net::market(params);
    net.ok(WORKER, TxKind::RegisterValidator);
    net.ok(DEV, TxKind::Bond(Bond { amount: 5_000 }));
    net.ok(DEV, TxKind::RegisterValidator);
    let task = net.submit_task(100, &[WORKER]);
    net.submit_result(GATEWAY, task, (1, 1)).unwrap();
    let committee = net.committee(&task);
    assert_eq!(committee.len(), 5, "7 seats, 7 validators, minus the worker and the developer");
    assert!(!committee.contains(&WORKER) && !committee.contains(&DEV));
}

#[test]
fn odd_committee_median_pays_honest_and_slashes_outlier() {
    let (mut net, task, c) = scored_task(test_params());
    let (user0, dev0, w0) = (net.balance(USER), net.balance(DEV), net.balance(WORKER));
    let v0: Vec<_> = c.iter().map(|v| net.balance(*v)).collect();
    let outlier_stake = net.ledger.stake(&net.pk(c[2])).bonded;
    let events =
        net.score(task, &[(c[0], Some(800), true), (c[1], Some(820), true), (c[2], Some(100), true)]);
    assert_eq!(settled(&events), (SettleOutcome::Paid, Some(800)));
    assert_eq!(slashed(&events, SlashReason::ScoreOutlier), vec![net.pk(c[2])]);
    assert_eq!(net.ledger.stake(&net.pk(c[2])).bonded, outlier_stake - outlier_stake / 100);
    // fee 500: royalty 10% = 50, treasury 5% = 25, validators 10% = 50 (25 to each honest one),
    // worker pool 375 scaled by 0.8 = 300, the other 75 back to the user.
    assert_eq!(net.balance(DEV) - dev0, 50);
    assert_eq!(net.balance(WORKER) - w0, 300);
    assert_eq!(net.balance(USER) - user0, 75);
    assert_eq!(net.balance(c[0]) - v0[0], 25);
    assert_eq!(net.balance(c[1]) - v0[1], 25);
    assert_eq!(net.balance(c[2]), v0[2]);
    assert!(events.contains(&Event::Paid { task, account: TREASURY, role: PayeeRole::Treasury, amount: 25 }));
    assert_eq!(net.ledger.totals().treasury, 25);
    let t = net.ledger.task(&task).unwrap();
    assert_eq!(
        (t.escrow, t.status, t.median_score),
        (0, TaskStatus::Settled(SettleOutcome::Paid), Some(800))
    );
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn a_committee_out_of_time_pays_the_worker_unchecked() {
    // Before, a task whose validators were all too busy to score it by their last call ended
    // without quorum: the user refunded and the honest worker unpaid for work it did.
    let (mut net, task, c) = scored_task(test_params());
    let (user0, dev0, w0) = (net.balance(USER), net.balance(DEV), net.balance(WORKER));
    let v0: Vec<_> = c.iter().map(|v| net.balance(*v)).collect();
    let stakes: Vec<_> = c.iter().map(|v| net.ledger.stake(&net.pk(*v)).bonded).collect();
    let events =
        net.score(task, &[(c[0], Some(BUSY), true), (c[1], Some(BUSY), true), (c[2], Some(900), true)]);
    assert_eq!(settled(&events), (SettleOutcome::Unchecked, None));
    // fee 500: royalty 50, treasury 25, validators 50 (all to the one that judged), worker pool
    // 375 scaled by its 0.9 = 337, the other 38 back to the user.
    assert_eq!(net.balance(DEV) - dev0, 50);
    assert_eq!(net.balance(WORKER) - w0, 337);
    assert_eq!(net.balance(USER) - user0, 38);
    assert_eq!(net.balance(c[2]) - v0[2], 50);
    assert_eq!((net.balance(c[0]), net.balance(c[1])), (v0[0], v0[1]), "a busy seat is not paid");
    let now: Vec<_> = c.iter().map(|v| net.ledger.stake(&net.pk(*v)).bonded).collect();
    assert_eq!(now, stakes, "nor slashed");
    assert_eq!(net.held(), net.ledger.totals().supply);
    let t = net.ledger.task(&task).unwrap();
    assert_eq!(t.status, TaskStatus::Settled(SettleOutcome::Unchecked));

    // Every seat busy: the worker's full share; the validators' share to the treasury.
    let (mut net, task, c) = scored_task(test_params());
    let (w0, t0) = (net.balance(WORKER), net.ledger.totals().treasury);
    let events = net.score(task, &c.iter().map(|&v| (v, Some(BUSY), true)).collect::<Vec<_>>());
    assert_eq!(settled(&events), (SettleOutcome::Unchecked, None));
    assert_eq!(net.balance(WORKER) - w0, 375);
    assert_eq!(net.ledger.totals().treasury - t0, 75);
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn a_busy_seat_never_outvotes_a_failing_judgement_or_a_missing_transcript() {
    // One judgement fails the worker and the other seats were busy: no quorum, nobody paid,
    // no strike (a single validator decides nothing).
    let (mut net, task, c) = scored_task(test_params());
    let (user0, w0) = (net.balance(USER), net.balance(WORKER));
    let events =
        net.score(task, &[(c[0], Some(BUSY), true), (c[1], Some(BUSY), true), (c[2], Some(200), true)]);
    assert_eq!(settled(&events), (SettleOutcome::NoQuorum, None));
    assert_eq!((net.balance(USER) - user0, net.balance(WORKER)), (500, w0));
    assert_eq!(net.ledger.stake(&net.pk(WORKER)).strikes, 0);
    // The transcript never came (abstentions): a busy seat does not turn that into pay.
    let (mut net, task, c) = scored_task(test_params());
    let w0 = net.balance(WORKER);
    let events = net
        .score(task, &[(c[0], Some(ABSTAIN), true), (c[1], Some(ABSTAIN), true), (c[2], Some(BUSY), true)]);
    assert_eq!(settled(&events), (SettleOutcome::NoQuorum, None));
    assert_eq!(net.balance(WORKER), w0);
    // With a quorum of judgements a busy seat is left out of the median, never an outlier.
    let (mut net, task, c) = scored_task(test_params());
    let stake = net.ledger.stake(&net.pk(c[2])).bonded;
    let events =
        net.score(task, &[(c[0], Some(900), true), (c[1], Some(950), true), (c[2], Some(BUSY), true)]);
    assert_eq!(settled(&events), (SettleOutcome::Paid, Some(925)));
    assert!(slashed(&events, SlashReason::ScoreOutlier).is_empty());
    assert_eq!(net.ledger.stake(&net.pk(c[2])).bonded, stake);
}

#[test]
fn a_lazy_validator_whose_evaluation_digest_the_majority_contradicts_is_slashed_unpaid() {
    // Before, a validator that always revealed 1000 without evaluating was paid like the others
    // whenever the answer was good: the median cannot tell it apart.
    let (mut net, task, c) = scored_task(test_params());
    let v0: Vec<_> = c.iter().map(|v| net.balance(*v)).collect();
    let lazy_stake = net.ledger.stake(&net.pk(c[2])).bonded;
    let honest = honest_work(&task);
    let made_up = Hash32::digest(&[b"never ran the model"]);
    let events = net.score_with_work(
        task,
        &[
            (c[0], Some(980), true, honest),
            (c[1], Some(990), true, honest),
            (c[2], Some(1000), true, made_up),
        ],
    );
    assert_eq!(settled(&events), (SettleOutcome::Paid, Some(985)), "the lazy score does not count");
    assert_eq!(slashed(&events, SlashReason::Unproven), vec![net.pk(c[2])]);
    assert!(slashed(&events, SlashReason::ScoreOutlier).is_empty());
    assert_eq!(net.ledger.stake(&net.pk(c[2])).bonded, lazy_stake - lazy_stake / 100);
    assert_eq!(net.balance(c[2]), v0[2], "not paid");
    assert_eq!(net.balance(c[0]) - v0[0], 25);
    assert_eq!(net.balance(c[1]) - v0[1], 25);
    assert_eq!(net.held(), net.ledger.totals().supply);

    // Without a majority digest nobody is judged by it (two honest validators whose numerics
    // disagreed are never slashed for it).
    let (mut net, task, c) = scored_task(test_params());
    let work = |i: u8| Hash32::digest(&[&[i]]);
    let events = net.score_with_work(
        task,
        &[
            (c[0], Some(980), true, work(0)),
            (c[1], Some(990), true, work(1)),
            (c[2], Some(1000), true, work(2)),
        ],
    );
    assert!(slashed(&events, SlashReason::Unproven).is_empty());
    assert_eq!(settled(&events), (SettleOutcome::Paid, Some(990)));
}

#[test]
fn even_committee_uses_the_mean_of_the_middle_two_and_ties_hold() {
    let mut params = test_params();
    params.committee_size = 4;
    let (mut net, task, c) = scored_task(params.clone());
    let scores: Vec<_> = [600, 700, 800, 900].iter().zip(&c).map(|(s, v)| (*v, Some(*s), true)).collect();
    let events = net.score(task, &scores);
    assert_eq!(settled(&events), (SettleOutcome::Paid, Some(750)));
    assert!(slashed(&events, SlashReason::ScoreOutlier).is_empty(), "all within delta 150 of 750");

    let (mut net, task, c) = scored_task(params);
    let scores: Vec<_> = [600, 600, 600, 100].iter().zip(&c).map(|(s, v)| (*v, Some(*s), true)).collect();
    let events = net.score(task, &scores);
    assert_eq!(settled(&events), (SettleOutcome::Paid, Some(600)));
    assert_eq!(slashed(&events, SlashReason::ScoreOutlier), vec![net.pk(c[3])]);
}

#[test]
fn empty_reveals_refund_the_user_and_slash_silent_committers() {
    let (mut net, task, c) = scored_task(test_params());
    let (user0, w0) = (net.balance(USER), net.balance(WORKER));
    let worker_stake = net.ledger.stake(&net.pk(WORKER)).bonded;
    let events = net.score(task, &[(c[0], Some(900), false), (c[1], Some(900), false), (c[2], None, false)]);
    assert_eq!(settled(&events), (SettleOutcome::NoQuorum, None));
    assert_eq!(slashed(&events, SlashReason::NoReveal), vec![net.pk(c[0]), net.pk(c[1])]);
    assert_eq!(slashed(&events, SlashReason::NoCommit), vec![net.pk(c[2])], "an empty seat costs too");
    assert_eq!(net.balance(USER) - user0, 500, "the whole fee goes back");
    assert_eq!(net.balance(WORKER), w0);
    assert_eq!(net.ledger.stake(&net.pk(WORKER)).bonded, worker_stake, "no quality verdict, no worker slash");
    assert_eq!(net.held(), net.ledger.totals().supply);
}

/// Scores one more task of `WORKER` (fee 500) with every member revealing `score`.
fn one_task(net: &mut Net, score: u16) -> Vec<Event> {
    let task = net.submit_task(100, &[WORKER]);
    net.submit_result(GATEWAY, task, (20, 30)).unwrap();
    let c = net.committee(&task);
    net.score(task, &c.iter().map(|&v| (v, Some(score), true)).collect::<Vec<_>>())
}

fn strikes(events: &[Event]) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| if let Event::Struck { strikes, .. } = e { Some(*strikes) } else { None })
        .collect()
}

#[test]
fn low_median_strikes_the_worker_refunds_the_user_and_pays_the_checkers() {
    let (mut net, task, c) = scored_task(test_params());
    net.score(task, &c.iter().map(|&v| (v, Some(1_000), true)).collect::<Vec<_>>());
    let treasury = net.ledger.totals().treasury;
    assert!(treasury > 0, "one paid task filled the treasury a little");
    let task = net.submit_task(100, &[WORKER]);
    net.submit_result(GATEWAY, task, (20, 30)).unwrap();
    let c = net.committee(&task);
    let (user0, dev0, w0) = (net.balance(USER), net.balance(DEV), net.balance(WORKER));
    let v0: Vec<_> = c.iter().map(|v| net.balance(*v)).collect();
    let events =
        net.score(task, &[(c[0], Some(100), true), (c[1], Some(200), true), (c[2], Some(900), true)]);
    assert_eq!(settled(&events), (SettleOutcome::LowQuality, Some(200)));
    assert_eq!(strikes(&events), vec![1]);
    assert!(slashed(&events, SlashReason::LowQuality).is_empty(), "one strike is not evidence enough");
    assert_eq!(slashed(&events, SlashReason::ScoreOutlier), vec![net.pk(c[2])]);
    assert_eq!(net.ledger.stake(&net.pk(WORKER)).bonded, 10_000);
    assert_eq!(net.balance(WORKER), w0, "no pay for a failed answer");
    assert_eq!(net.balance(USER) - user0, 500, "the user pays nothing for it");
    assert_eq!(net.balance(DEV), dev0, "no royalty on a failed task");
    // The two honest checkers share the validators' 10% of the fee (50), from the treasury as
    // far as it holds.
    let each = 50.min(treasury) / 2;
    assert_eq!([net.balance(c[0]) - v0[0], net.balance(c[1]) - v0[1]], [each, each]);
    assert_eq!(net.ledger.totals().treasury, treasury - 2 * each);
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn a_worker_is_slashed_only_at_its_third_strike_and_paid_work_wears_strikes_off() {
    let mut params = test_params();
    params.strike_decay_tasks = 2;
    let mut net = Net::market(params);
    assert_eq!(strikes(&one_task(&mut net, 100)), vec![1]);
    assert_eq!(strikes(&one_task(&mut net, 100)), vec![2]);
    for _ in 0..2 {
        one_task(&mut net, 1_000);
    }
    assert_eq!(net.ledger.stake(&net.pk(WORKER)).strikes, 1, "two paid tasks wore one strike off");
    assert_eq!(strikes(&one_task(&mut net, 100)), vec![2]);
    assert_eq!(net.ledger.stake(&net.pk(WORKER)).bonded, 10_000, "still whole");
    let events = one_task(&mut net, 100);
    assert_eq!(strikes(&events), vec![3]);
    assert_eq!(slashed(&events, SlashReason::LowQuality), vec![net.pk(WORKER)]);
    assert_eq!(net.ledger.stake(&net.pk(WORKER)).bonded, 10_000 - 500);
    assert_eq!(net.ledger.stake(&net.pk(WORKER)).strikes, 0, "the count starts again");
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn an_abstaining_member_is_neither_paid_nor_slashed_and_stake_waits_for_settlement() {
    let mut params = test_params();
    params.commit_window_blocks = 10;
    let (mut net, task, c) = scored_task(params);
    let at_risk = |net: &Net, i: usize| net.ledger.stake(&net.pk(i)).at_risk_tasks;
    assert_eq!((at_risk(&net, WORKER), at_risk(&net, c[0])), (1, 1));
    // The worker unbonds everything while its task is scored: the stake cannot leave yet.
    net.ok(WORKER, TxKind::Unbond(Unbond { amount: 10_000 }));
    net.advance_to(net.ledger.height() + 6);
    assert!(matches!(net.run(WORKER, TxKind::Withdraw), Err(LedgerError::StakeAtRisk { tasks: 1, .. })));
    let v2 = net.balance(c[2]);
    let events =
        net.score(task, &[(c[0], Some(900), true), (c[1], Some(950), true), (c[2], Some(ABSTAIN), true)]);
    assert_eq!(settled(&events), (SettleOutcome::Paid, Some(925)));
    assert!(
        slashed(&events, SlashReason::ScoreOutlier).is_empty()
            && slashed(&events, SlashReason::NoCommit).is_empty()
    );
    assert_eq!(net.balance(c[2]), v2);
    assert_eq!((at_risk(&net, WORKER), at_risk(&net, c[0])), (0, 0));
    let release_ms = net.ledger.stake(&net.pk(WORKER)).unbonding.as_slice()[0].release_ms;
    net.advance_to(net.ledger.height() + 20);
    while net.next_ms < release_ms {
        net.block(&[]);
    }
    net.ok(WORKER, TxKind::Withdraw);
    assert_eq!(net.held(), net.ledger.totals().supply);
}

#[test]
fn windows_hold_when_blocks_come_fast_and_settle_when_they_come_slowly() {
    let mut params = test_params();
    params.commit_window_ms = 20_000;
    params.commit_window_max_ms = 20_000;
    params.reveal_window_ms = 20_000;
    params.unbonding_period_ms = params.task_lifetime_ms() + 1;
    let (mut net, task, c) = scored_task(params);
    let t = net.ledger.task(&task).unwrap().clone();
    // Under load: 30 blocks in far less than the window's time; a commit is still on time.
    net.advance_to(t.commit_end_height + 30);
    assert!(net.ledger.time_ms() < t.commit_end_ms);
    let events = net.score(task, &c.iter().map(|&v| (v, Some(800), true)).collect::<Vec<_>>());
    assert_eq!(settled(&events), (SettleOutcome::Paid, Some(800)));
    assert!(net.ledger.height() > t.reveal_end_height + 30, "the time, not the height, closed the windows");
}

#[test]
fn the_commit_window_grows_with_the_tokens_to_check_up_to_its_cap() {
    let mut params = test_params();
    params.commit_window_ms = 1_000;
    params.commit_ms_per_token = 100;
    params.commit_window_max_ms = 8_000;
    params.unbonding_period_ms = params.task_lifetime_ms() + 1;
    let mut net = Net::market(params);
    for (tokens, window) in [((20, 30), 6_000), ((10, 0), 2_000), ((200, 300), 8_000)] {
        let task = net.submit_task(600, &[WORKER]);
        net.submit_result(GATEWAY, task, tokens).unwrap();
        net.committee(&task);
        let t = net.ledger.task(&task).unwrap();
        assert_eq!(t.commit_end_ms - net.ledger.time_ms(), window, "{tokens:?} tokens to check");
        assert_eq!(t.reveal_end_ms - t.commit_end_ms, 1_000, "the reveal window does not grow");
    }
}

#[test]
fn no_eligible_validator_settles_at_once_with_a_refund() {
    let mut net = Net::new(test_params());
    net.ok(DEV, register_model(PRICE_FLOOR, 1_000));
    net.ok(WORKER, TxKind::Bond(Bond { amount: 10_000 }));
    net.ok(WORKER, register_worker(&[(0, LAYERS)]));
    net.gateway();
    net.ok(WORKER, TxKind::RegisterValidator);
    let task = net.submit_task(100, &[WORKER]);
    net.submit_result(GATEWAY, task, (10, 0)).unwrap();
    let out = net.block(&[]);
    assert_eq!(settled(&out.events), (SettleOutcome::NoQuorum, None));
    assert_eq!(
        net.balance(USER),
        DEV_BALANCE - net.fees(USER, 0),
        "the escrow back, less its SubmitTask's fee"
    );
}

#[test]
fn commit_and_reveal_windows_roles_and_openings_are_enforced() {
    let mut params = test_params();
    params.commit_window_blocks = 6;
    params.reveal_window_blocks = 6;
    let (mut net, task, c) = scored_task(params);
    let outsider = *VALIDATORS.clone().find(|v| !c.contains(v)).as_ref().unwrap();
    let salt = Hash32::digest(&[b"s"]);
    let commit = |net: &Net, v: usize, score: u16| {
        TxKind::CommitScore(CommitScore {
            task,
            commitment: score_commitment(score, &Hash32::ZERO, &salt, &net.pk(v)),
        })
    };
    let reveal = |score: u16| TxKind::RevealScore(RevealScore { task, score, work: Hash32::ZERO, salt });
    let k = commit(&net, outsider, 700);
    assert!(matches!(net.run(outsider, k), Err(LedgerError::WrongRole { .. })));
    let k = commit(&net, c[0], 700);
    net.ok(c[0], k.clone());
    assert!(matches!(net.run(c[0], k), Err(LedgerError::Duplicate { action: "commit", .. })));
    assert!(matches!(
        net.run(c[0], reveal(700)),
        Err(LedgerError::OutsideWindow { action: "reveal a score", .. })
    ));
    let t = net.ledger.task(&task).unwrap().clone();
    net.advance_to(t.commit_end_height);
    let late = commit(&net, c[1], 700);
    assert!(matches!(net.run(c[1], late), Err(LedgerError::OutsideWindow { action: "commit a score", .. })));
    assert!(matches!(net.run(c[0], reveal(701)), Err(LedgerError::CommitmentMismatch { .. })));
    assert!(
        matches!(net.run(c[1], reveal(700)), Err(LedgerError::CommitmentMismatch { .. })),
        "no commitment"
    );
    net.ok(c[0], reveal(700));
    assert!(matches!(net.run(c[0], reveal(700)), Err(LedgerError::Duplicate { action: "reveal", .. })));
    net.advance_to(t.reveal_end_height);
    assert!(matches!(
        net.run(c[2], reveal(700)),
        Err(LedgerError::WrongTaskStatus { status: "settled", .. })
    ));
    let t = net.ledger.task(&task).unwrap();
    assert_eq!(
        (t.status, t.median_score),
        (TaskStatus::Settled(SettleOutcome::NoQuorum), None),
        "one reveal is no quorum: no single validator decides a task"
    );
}

#[test]
fn epoch_price_rises_with_demand_and_falls_back_to_the_floor() {
    let mut params = test_params();
    params.epoch_length_blocks = 40;
    // One staked worker counted at capacity_token_ms (20 ms) a token: 40 s epoch => 2_000.
    let mut net = Net::market(params);
    let task = net.submit_task(2_000, &[WORKER]);
    net.submit_result(GATEWAY, task, (300, 1_500)).unwrap();
    let committee = net.committee(&task);
    let mut events = net.score(task, &committee.iter().map(|&v| (v, Some(900), true)).collect::<Vec<_>>());
    assert!(net.ledger.height() < 40);
    events.extend(net.advance_to(40));
    let up = events.iter().find_map(|e| match e {
        Event::PriceUpdated { old_price, new_price, utilization_ppm, .. } => {
            Some((*old_price, *new_price, *utilization_ppm))
        }
        _ => None,
    });
    // u = 1800 / 2000 = 900_000 ppm => +10%: 10 -> 11.
    assert_eq!(up, Some((10, 11, 900_000)));
    assert_eq!(net.ledger.model(1).unwrap().price, 11);
    net.advance_to(80);
    assert_eq!(net.ledger.model(1).unwrap().price, 10, "idle epoch moves it back down, not below the floor");
}
