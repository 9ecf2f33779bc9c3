#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Properties over random transaction sequences: supply conserved apart from slashing, escrow
//! fully accounted, refused transactions change nothing, same blocks give the same root and
//! the same snapshot.

mod common;
use common::*;
use polylink_ledger::{Ledger, Params, TaskStatus};
use polylink_types::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

const N: usize = ACCOUNTS as usize;

#[derive(Clone, Debug)]
enum Action {
    Transfer(usize, usize, u128),
    Bond(usize, u128),
    Unbond(usize, u128),
    Withdraw(usize),
    Model(usize, u128, u16),
    Worker(usize, usize, bool),
    Validator(usize),
    Gateway(usize),
    /// User, gateway, limit.
    Allow(usize, usize, u128),
    /// User, model, tokens, first and second worker (the first also names itself the gateway),
    /// and whether that gateway opens it on the user's allowance.
    Task(usize, usize, u32, usize, usize, bool),
    /// Task index, signer hint, tokens in percent of max_tokens, first stage share.
    Result(usize, usize, u32, u16),
    Commit(usize, usize),
    Reveal(usize, usize, bool),
    Reclaim(usize, usize),
    Advance(u8),
    BadNonce(usize),
    BadSignature(usize),
}

fn action() -> impl Strategy<Value = Action> {
    let who = 0..N;
    let amount = prop_oneof![1u128..5_000, Just(0u128), Just(u128::MAX)];
    prop_oneof![
        1 => (who.clone(), who.clone(), amount.clone()).prop_map(|(a, b, x)| Action::Transfer(a, b, x)),
        3 => (who.clone(), amount.clone()).prop_map(|(a, x)| Action::Bond(a, x)),
        1 => (who.clone(), amount).prop_map(|(a, x)| Action::Unbond(a, x)),
        1 => who.clone().prop_map(Action::Withdraw),
        1 => (who.clone(), 1u128..50, 0u16..3_000).prop_map(|(a, f, r)| Action::Model(a, f, r)),
        1 => (who.clone(), 0usize..3, any::<bool>()).prop_map(|(a, m, s)| Action::Worker(a, m, s)),
        2 => who.clone().prop_map(Action::Validator),
        2 => prop_oneof![3 => 1usize..4, 1 => 0usize..N].prop_map(Action::Gateway),
        1 => (who.clone(), prop_oneof![3 => 1usize..4, 1 => 0usize..N], prop_oneof![1u128..5_000, Just(0u128)]).prop_map(|(u, g, x)| Action::Allow(u, g, x)),
        4 => (who.clone(), prop_oneof![3 => Just(0usize), 1 => 0usize..3], 1u32..400, 1usize..4, prop_oneof![3 => Just(None), 1 => (0usize..N).prop_map(Some)], any::<bool>())
            .prop_map(|(u, m, t, w1, w2, a)| Action::Task(u, m, t, w1, w2.unwrap_or(w1), a)),
        4 => (0usize..8, 0usize..N, 0u32..=110, 0u16..10_001).prop_map(|(t, s, k, sh)| Action::Result(t, s, k, sh)),
        8 => (0usize..8, 0usize..N).prop_map(|(t, v)| Action::Commit(t, v)),
        8 => (0usize..8, 0usize..N, prop_oneof![4 => Just(true), 1 => Just(false)]).prop_map(|(t, v, ok)| Action::Reveal(t, v, ok)),
        1 => (0usize..8, 0usize..N).prop_map(|(t, s)| Action::Reclaim(t, s)),
        2 => (1u8..6).prop_map(Action::Advance),
        1 => who.clone().prop_map(Action::BadNonce),
        1 => who.prop_map(Action::BadSignature),
    ]
}

fn params() -> Params {
    Params {
        unbonding_period_blocks: 23,
        // Longer than a task can live (8 s deadline, windows, two blocks): 25 blocks here.
        unbonding_period_ms: 12_500,
        task_deadline_max_ms: 8_000,
        worker_stake_min: 100,
        validator_stake_min: 100,
        task_deadline_base_ms: 7_500,
        task_ms_per_token_min: 0,
        // Long enough for two members' commits and reveals to land at random (no single
        // validator decides a task).
        commit_window_blocks: 10,
        commit_window_ms: 1_000,
        commit_ms_per_token: 0,
        commit_window_max_ms: 1_000,
        reveal_window_blocks: 10,
        reveal_window_ms: 1_000,
        epoch_length_blocks: 10,
        no_commit_slash_bps: 20,
        ..Params::default()
    }
}

/// The score validator `v` gives `task`: derived, so a reveal needs no memory of the commit.
fn score_of(task: &TaskId, v: &PublicKey) -> (u16, Hash32) {
    let h = Hash32::digest(&[&task.0, &v.0]);
    // Now and then an abstention or a busy seat (out of time), which settle by their own rules.
    let score = match (h.to_u128() % 1201) as u16 {
        s @ 0..=1000 => s,
        1001..=1100 => polylink_ledger::BUSY,
        _ => polylink_ledger::ABSTAIN,
    };
    (score, h)
}

/// The i-th task (in id order) among those that `keep` accepts, if any.
fn nth_task(net: &Net, i: usize, keep: impl Fn(&polylink_ledger::Task) -> bool) -> Option<TaskId> {
    let tasks: Vec<TaskId> =
        net.ledger.state().tasks.iter().filter(|(_, t)| keep(t)).map(|(id, _)| *id).collect();
    tasks.get(i % tasks.len().max(1)).copied()
}

/// Turns an action into the transactions of one block.
fn txs_for(net: &Net, a: &Action) -> Vec<SignedTx> {
    let pk = |i: usize| net.pk(i);
    let kind = match a.clone() {
        Action::Transfer(f, t, x) => (f, TxKind::Transfer(Transfer { to: pk(t), amount: x })),
        Action::Bond(w, x) => (w, TxKind::Bond(Bond { amount: x })),
        Action::Unbond(w, x) => (w, TxKind::Unbond(Unbond { amount: x })),
        Action::Withdraw(w) => (w, TxKind::Withdraw),
        Action::Model(d, f, r) => (
            d,
            TxKind::RegisterModel(RegisterModel {
                artifact_hash: Hash32::digest(&[&f.to_be_bytes()]),
                claim: None,
                architecture: BoundedString::new("llama").unwrap(),
                layer_count: 4,
                royalty_bps: r,
                price_floor: f,
            }),
        ),
        Action::Worker(w, m, split) => {
            let ranges: &[(u32, u32)] = if split { &[(0, 2), (2, 4)] } else { &[(0, 4)] };
            let served = ranges
                .iter()
                .map(|&(a, b)| ServedRange {
                    model: m as u64 + 1,
                    layer_start: a,
                    layer_end: b,
                    layer_time_us: 50,
                })
                .collect();
            (
                w,
                TxKind::RegisterWorker(RegisterWorker {
                    profile: DeviceProfile { memory_mib: 1024, bandwidth_kbps: 1000, latency_us: 500 },
                    served: BoundedVec::new(served).unwrap(),
                    endpoint: BoundedString::new("127.0.0.1:7000").unwrap(),
                }),
            )
        }
        Action::Validator(v) => (v, TxKind::RegisterValidator),
        Action::Gateway(g) => (
            g,
            TxKind::RegisterGateway(RegisterGateway {
                endpoint: BoundedString::new("127.0.0.1:8080").unwrap(),
            }),
        ),
        Action::Allow(u, g, limit) => {
            (u, TxKind::Allow(Allow { gateway: pk(g), limit, key_hash: Hash32::digest(&[b"api key"]) }))
        }
        Action::Task(u, m, t, w1, w2, allowed) => {
            let workers = if w1 == w2 { vec![pk(w1)] } else { vec![pk(w1), pk(w2)] };
            let (signer, payer) = if allowed { (w1, Some(pk(u))) } else { (u, None) };
            (
                signer,
                TxKind::SubmitTask(SubmitTask {
                    model: m as u64 + 1,
                    max_tokens: t,
                    prompt_hash: Hash32::ZERO,
                    max_price: 100,
                    workers: BoundedVec::new(workers).unwrap(),
                    gateway: pk(w1),
                    seed: 0,
                    payer,
                    voucher: None,
                }),
            )
        }
        Action::Result(t, s, k, share) => {
            let Some(id) = nth_task(net, t, |task| {
                task.status == TaskStatus::Open && task.deadline_ms > net.ledger.time_ms()
            }) else {
                return vec![];
            };
            let task = net.ledger.task(&id).unwrap();
            let signer = if s % 3 != 0 { net.index_of(&task.gateway) } else { s };
            // Each listed worker signs for the range it serves in the pipeline, with rows that
            // vary; now and then a stage's receipt is missing (the result is then refused).
            let mut next = 0;
            let mut receipts = Vec::new();
            for (i, w) in task.workers.iter().enumerate() {
                let Some(range) = net.ledger.worker(w).and_then(|r| {
                    r.served.iter().find(|r| r.model == task.model && r.layer_start == next).copied()
                }) else {
                    break;
                };
                next = range.layer_end;
                let rows = u32::from(share) % 997 + u32::from(i == 0) * 5;
                if share % 5 == 0 && i == 1 {
                    continue;
                }
                let who = net.index_of(w);
                receipts.push(
                    WorkReceipt {
                        task: id,
                        worker: *w,
                        layer_start: range.layer_start,
                        layer_end: range.layer_end,
                        rows,
                        fed: Hash32::ZERO,
                        drawn: Hash32::ZERO,
                    }
                    .sign(&net.keys[who]),
                );
            }
            (
                signer,
                TxKind::SubmitResult(SubmitResult {
                    task: id,
                    output_hash: Hash32::ZERO,
                    prompt_tokens: task.max_tokens * k / 200,
                    completion_tokens: task.max_tokens * k / 200,
                    receipts: BoundedVec::new(receipts).unwrap(),
                }),
            )
        }
        Action::Commit(t, v) | Action::Reveal(t, v, _) => {
            let committing = matches!(a, Action::Commit(..));
            let next = net.ledger.height() + 1;
            let in_window = |task: &polylink_ledger::Task| {
                task.status == TaskStatus::Scoring && (task.commit_end_height >= next) == committing
            };
            let Some(id) = nth_task(net, t, in_window).or_else(|| nth_task(net, t, |_| true)) else {
                return vec![];
            };
            let task = net.ledger.task(&id).unwrap();
            // Prefer a member who still has this step to do, so sequences reach settlement.
            let due: Vec<&PublicKey> = task
                .committee
                .iter()
                .filter(|m| {
                    if committing {
                        m.commitment.is_none()
                    } else {
                        m.commitment.is_some() && m.score.is_none()
                    }
                })
                .map(|m| &m.validator)
                .collect();
            let who = due.get(v % due.len().max(1)).map(|pk| net.index_of(pk)).unwrap_or(v);
            let (score, salt) = score_of(&id, &pk(who));
            match a {
                Action::Commit(..) => (
                    who,
                    TxKind::CommitScore(CommitScore {
                        task: id,
                        commitment: score_commitment(score, &Hash32::ZERO, &salt, &pk(who)),
                    }),
                ),
                Action::Reveal(_, _, ok) => (
                    who,
                    TxKind::RevealScore(RevealScore {
                        task: id,
                        score: if *ok { score } else { score ^ 1 },
                        work: Hash32::ZERO,
                        salt,
                    }),
                ),
                _ => unreachable!(),
            }
        }
        Action::Reclaim(t, s) => {
            let Some(id) = nth_task(net, t, |_| true) else { return vec![] };
            let user = net.index_of(&net.ledger.task(&id).unwrap().user);
            (if s % 2 == 0 { user } else { s }, TxKind::ReclaimTask(ReclaimTask { task: id }))
        }
        Action::Advance(_) => return vec![],
        Action::BadNonce(w) => {
            let nonce = net.ledger.account(&pk(w)).nonce + 1;
            return vec![
                UnsignedTx { signer: pk(w), nonce, kind: TxKind::Withdraw }.sign(&net.keys[w], CHAIN),
            ];
        }
        Action::BadSignature(w) => {
            let nonce = net.ledger.account(&pk(w)).nonce;
            let kind = TxKind::Transfer(Transfer { to: pk(0), amount: 1 });
            return vec![UnsignedTx { signer: pk(w), nonce, kind }.sign(&net.keys[(w + 1) % N], CHAIN)];
        }
    };
    vec![net.tx(kind.0, kind.1)]
}

fn check_invariants(net: &Net, genesis_supply: Amount) {
    let s = net.ledger.state();
    assert_eq!(net.held(), s.totals.supply, "held amounts must equal the supply");
    assert_eq!(
        s.totals.supply + s.totals.slashed + s.totals.fees_burned,
        genesis_supply,
        "only slashing and transaction fees remove supply"
    );
    // Amounts are unsigned and checked, so a "negative" balance could only show up as a wrap to
    // a huge value: none may exceed the supply.
    for a in s.accounts.values() {
        assert!(a.balance <= s.totals.supply, "balance {} above supply", a.balance);
    }
    for st in s.stakes.values() {
        assert!(st.slashable() <= s.totals.supply);
    }
    for (id, t) in &s.tasks {
        let want = match t.status {
            TaskStatus::Open => Amount::from(t.max_tokens) * t.price,
            TaskStatus::AwaitingCommittee | TaskStatus::Scoring => t.result.as_ref().unwrap().fee,
            TaskStatus::Settled(_) | TaskStatus::Reclaimed => 0,
        };
        assert_eq!(t.escrow, want, "escrow of task {id} in status {:?}", t.status);
    }
    // Every stake answers for exactly the unsettled tasks that name it, so Withdraw can wait
    // for them and none is ever forgotten.
    let mut at_risk: std::collections::BTreeMap<PublicKey, u32> = Default::default();
    for t in s.tasks.values() {
        // After the result, only the workers that signed a receipt (each once) answer for it.
        let mut signers: Vec<PublicKey> = Vec::new();
        for r in t.result.iter().flat_map(|r| r.receipts.iter()) {
            if !signers.contains(&r.worker) {
                signers.push(r.worker);
            }
        }
        let members = t.committee.iter().map(|m| m.validator);
        let named: Vec<PublicKey> = match t.status {
            TaskStatus::Open => t.workers.iter().copied().collect(),
            TaskStatus::AwaitingCommittee => signers,
            TaskStatus::Scoring => signers.into_iter().chain(members).collect(),
            TaskStatus::Settled(_) | TaskStatus::Reclaimed => Vec::new(),
        };
        for who in named {
            *at_risk.entry(who).or_default() += 1;
        }
    }
    for (who, stake) in &s.stakes {
        assert_eq!(stake.at_risk_tasks, at_risk.get(who).copied().unwrap_or(0), "tasks at risk of {who}");
    }
}

fn run(actions: &[Action]) -> (Net, Vec<(BlockContext, Vec<SignedTx>)>) {
    let mut net = Net::new(params());
    let genesis_supply = net.ledger.totals().supply;
    let mut blocks = Vec::new();
    for a in actions {
        let txs = txs_for(&net, a);
        let empties = if let Action::Advance(n) = a { *n } else { 1 };
        for i in 0..empties {
            let batch = if i == 0 { txs.clone() } else { vec![] };
            let height = net.ledger.height() + 1;
            let ctx = BlockContext {
                height,
                seed: Hash32::digest(&[&height.to_be_bytes()]),
                time_ms: height * 500,
            };
            let mut without = net.ledger.clone();
            let out = net.ledger.apply_block(&ctx, &batch).unwrap();
            if out.receipts.iter().all(|r| r.result.is_err()) {
                // Refused txs change nothing but the nonces they consume and the fees they pay
                // (at most one each; a duty pays none).
                without.apply_block(&ctx, &[]).unwrap();
                let fee = net.ledger.params().tx_fee;
                let mut paid = 0;
                let mut refunded = net.ledger.state().clone();
                for signer in batch.iter().map(|tx| tx.tx.signer).collect::<std::collections::BTreeSet<_>>() {
                    let spent = without.account(&signer).balance - net.ledger.account(&signer).balance;
                    let carried = net.ledger.account(&signer).nonce - without.account(&signer).nonce;
                    assert!(spent == 0 || spent == fee * carried as u128, "a refused tx cost {spent}");
                    paid += spent;
                    if let Some(a) = refunded.accounts.get_mut(&signer) {
                        a.balance += spent;
                    }
                }
                assert_eq!(refunded.totals.fees_burned - without.totals().fees_burned, paid);
                refunded.totals.fees_burned -= paid;
                refunded.totals.supply += paid;
                let strip = |s: &polylink_ledger::State| {
                    let mut s = s.clone();
                    s.accounts.retain(|_, a| a.balance != 0);
                    s.accounts.values_mut().for_each(|a| a.nonce = 0);
                    s
                };
                assert_eq!(
                    strip(without.state()),
                    strip(&refunded),
                    "a refused tx changed the state: {:?}",
                    out.receipts
                );
                for tx in &batch {
                    let moved =
                        net.ledger.account(&tx.tx.signer).nonce - without.account(&tx.tx.signer).nonce;
                    assert!(moved <= 1, "a refused tx moved a nonce by {moved}");
                }
            }
            assert!(out.hook_failures.is_empty(), "{:?}", out.hook_failures);
            blocks.push((ctx, batch));
            check_invariants(&net, genesis_supply);
        }
    }
    (net, blocks)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_every_invariant(
        setup in proptest::collection::vec(action(), 20..40),
        rest in proptest::collection::vec(action(), 40..120),
    ) {
        // A seeded market first so later actions reach the task rules often.
        let mut actions = vec![Action::Model(0, 5, 500)];
        for w in 1..4 {
            actions.push(Action::Bond(w, 2_000));
            actions.push(Action::Worker(w, 0, w == 3));
        }
        for v in 4..9 {
            actions.push(Action::Bond(v, 1_000 + v as u128));
            actions.push(Action::Validator(v));
        }
        actions.extend(setup);
        actions.extend(rest);
        let (net, blocks) = run(&actions);
        // Replay the same blocks on a fresh ledger: same root, same snapshot bytes.
        let mut replay = Ledger::genesis(&polylink_ledger::Genesis { params: params(), ..polylink_ledger::Genesis::dev(CHAIN, ACCOUNTS).0 }).unwrap();
        for (ctx, txs) in &blocks {
            replay.apply_block(ctx, txs).unwrap();
        }
        prop_assert_eq!(replay.state_root(), net.ledger.state_root());
        let snap = net.ledger.snapshot();
        prop_assert_eq!(&replay.snapshot(), &snap);
        let restored = Ledger::from_snapshot(&snap).unwrap();
        prop_assert_eq!(restored.state_root(), net.ledger.state_root());
    }
}

#[test]
fn random_sequences_reach_every_settlement_outcome() {
    // Guards the property test against vacuity: a fixed long run settles tasks all three ways.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = proptest::collection::vec(action(), 400);
    let mut outcomes = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let mut actions = vec![Action::Model(0, 5, 500)];
        for w in 1..4 {
            actions.extend([Action::Bond(w, 2_000), Action::Worker(w, 0, w == 3)]);
        }
        // A stake buffer over the minimum: empty seats are slashed, and a validator under the
        // minimum sits out every later committee.
        for v in 4..9 {
            actions.extend([Action::Bond(v, 3_000), Action::Validator(v)]);
        }
        actions.extend(strategy.new_tree(&mut runner).unwrap().current());
        let (net, _) = run(&actions);
        for t in net.ledger.state().tasks.values() {
            outcomes.insert(format!("{:?}", t.status));
        }
    }
    for want in ["Paid", "LowQuality", "NoQuorum", "Reclaimed"] {
        assert!(outcomes.iter().any(|o| o.contains(want)), "no {want} in {outcomes:?}");
    }
}
