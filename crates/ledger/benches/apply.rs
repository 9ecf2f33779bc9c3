#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Ledger apply throughput: transfers, and full task lifecycles (submit, result, committee
//! draw, 3 commits, 3 reveals, settlement). Only `apply_block` is timed (signing is not).
//! Reference measured in the same run: bare ed25519 strict verification of the same txs,
//! the floor cost of any apply. Run: `cargo bench -p polylink-ledger --bench apply`.

use polylink_ledger::{Genesis, Ledger, Params};
use polylink_types::*;
use std::time::{Duration, Instant};

const CHAIN: &str = "polylink-bench";

struct Bench {
    ledger: Ledger,
    keys: Vec<SecretKey>,
    nonces: Vec<u64>,
    applied: Duration,
    txs: usize,
}

impl Bench {
    fn new(accounts: u32, params: Params) -> Bench {
        let (mut g, keys) = Genesis::dev(CHAIN, accounts);
        g.params = params;
        let n = keys.len();
        Bench {
            ledger: Ledger::genesis(&g).unwrap(),
            keys,
            nonces: vec![0; n],
            applied: Duration::ZERO,
            txs: 0,
        }
    }

    fn tx(&mut self, i: usize, kind: TxKind) -> SignedTx {
        let nonce = self.nonces[i];
        self.nonces[i] += 1;
        UnsignedTx { signer: self.keys[i].public_key(), nonce, kind }.sign(&self.keys[i], CHAIN)
    }

    fn block(&mut self, txs: &[SignedTx]) {
        let height = self.ledger.height() + 1;
        let ctx =
            BlockContext { height, seed: Hash32::digest(&[&height.to_be_bytes()]), time_ms: height * 500 };
        let start = Instant::now();
        let out = self.ledger.apply_block(&ctx, txs).unwrap();
        self.applied += start.elapsed();
        self.txs += txs.len();
        if let Some(bad) = out.receipts.iter().find(|r| r.result.is_err()) {
            panic!("bench tx refused: {:?}", bad.result);
        }
    }

    fn rate(&self) -> f64 {
        self.txs as f64 / self.applied.as_secs_f64()
    }
}

fn verify_only(txs: &[SignedTx]) -> f64 {
    let start = Instant::now();
    for tx in txs {
        tx.verify(CHAIN).unwrap();
    }
    txs.len() as f64 / start.elapsed().as_secs_f64()
}

fn transfers(blocks: usize, per_block: usize) -> (f64, f64) {
    let mut b = Bench::new(1_000, Params::default());
    let mut all = Vec::new();
    for _ in 0..blocks {
        let txs: Vec<SignedTx> = (0..per_block)
            .map(|i| {
                let from = i % 1_000;
                let to = b.keys[(i * 7 + 1) % 1_000].public_key();
                b.tx(from, TxKind::Transfer(Transfer { to, amount: 1 }))
            })
            .collect();
        b.block(&txs);
        all.extend(txs);
    }
    (b.rate(), verify_only(&all))
}

/// Returns (tx/s, tasks/s).
fn lifecycles(rounds: usize, tasks_per_round: usize) -> (f64, f64) {
    let params = Params { commit_window_blocks: 1, reveal_window_blocks: 1, ..Params::default() };
    let users = tasks_per_round;
    let (worker, dev, v0, validators) = (users, users + 1, users + 2, 20);
    let mut b = Bench::new((users + 2 + validators) as u32, params);
    let model = TxKind::RegisterModel(RegisterModel {
        artifact_hash: Hash32::ZERO,
        claim: None,
        architecture: BoundedString::new("llama").unwrap(),
        layer_count: 30,
        royalty_bps: 500,
        price_floor: 10,
    });
    let setup = vec![b.tx(dev, model), b.tx(worker, TxKind::Bond(Bond { amount: 100_000 }))];
    b.block(&setup);
    let served = vec![ServedRange { model: 1, layer_start: 0, layer_end: 30, layer_time_us: 100 }];
    let reg = TxKind::RegisterWorker(RegisterWorker {
        profile: DeviceProfile { memory_mib: 8192, bandwidth_kbps: 1, latency_us: 1 },
        served: BoundedVec::new(served).unwrap(),
        endpoint: BoundedString::new("127.0.0.1:7000").unwrap(),
    });
    // The worker is its own gateway (one stake backs both roles).
    let gateway =
        TxKind::RegisterGateway(RegisterGateway { endpoint: BoundedString::new("127.0.0.1:8080").unwrap() });
    let register = b.tx(worker, reg);
    b.block(&[register]);
    let mut setup = vec![b.tx(worker, gateway)];
    for v in v0..v0 + validators {
        setup.push(b.tx(v, TxKind::Bond(Bond { amount: 10_000 + v as u128 })));
    }
    b.block(&setup);
    let regs: Vec<_> = (v0..v0 + validators).map(|v| b.tx(v, TxKind::RegisterValidator)).collect();
    b.block(&regs);
    b.applied = Duration::ZERO;
    b.txs = 0;
    let wpk = b.keys[worker].public_key();
    for _ in 0..rounds {
        let submits: Vec<SignedTx> = (0..users)
            .map(|u| {
                b.tx(
                    u,
                    TxKind::SubmitTask(SubmitTask {
                        model: 1,
                        max_tokens: 256,
                        prompt_hash: Hash32::ZERO,
                        max_price: 1_000,
                        workers: BoundedVec::new(vec![wpk]).unwrap(),
                        gateway: wpk,
                        seed: 0,
                        payer: None,
                        voucher: None,
                    }),
                )
            })
            .collect();
        let ids: Vec<TaskId> = submits.iter().map(SignedTx::id).collect();
        b.block(&submits);
        let results: Vec<SignedTx> = ids
            .iter()
            .map(|task| {
                b.tx(
                    worker,
                    TxKind::SubmitResult(SubmitResult {
                        task: *task,
                        output_hash: Hash32::ZERO,
                        prompt_tokens: 40,
                        completion_tokens: 100,
                        receipts: BoundedVec::new(vec![
                            WorkReceipt {
                                task: *task,
                                worker: wpk,
                                layer_start: 0,
                                layer_end: 30,
                                rows: 140,
                                fed: Hash32::ZERO,
                                drawn: Hash32::ZERO,
                            }
                            .sign(&b.keys[worker]),
                        ])
                        .unwrap(),
                    }),
                )
            })
            .collect();
        b.block(&results);
        b.block(&[]); // committees drawn at the start of this block
        let mut commits = Vec::new();
        let mut reveals = Vec::new();
        for task in &ids {
            let members: Vec<PublicKey> =
                b.ledger.task(task).unwrap().committee.iter().map(|m| m.validator).collect();
            for (j, m) in members.iter().enumerate() {
                let v = b.keys.iter().position(|k| k.public_key() == *m).unwrap();
                let score = 700 + 10 * j as u16;
                let salt = Hash32::digest(&[&task.0, &m.0]);
                commits.push(b.tx(
                    v,
                    TxKind::CommitScore(CommitScore {
                        task: *task,
                        commitment: score_commitment(score, &Hash32::ZERO, &salt, m),
                    }),
                ));
                reveals.push((v, RevealScore { task: *task, score, work: Hash32::ZERO, salt }));
            }
        }
        b.block(&commits);
        let reveals: Vec<SignedTx> =
            reveals.into_iter().map(|(v, r)| b.tx(v, TxKind::RevealScore(r))).collect();
        b.block(&reveals); // settles at the end of this block
    }
    let tasks = (rounds * tasks_per_round) as f64;
    (b.rate(), tasks / b.applied.as_secs_f64())
}

/// Milliseconds to compute the state root with `accounts` funded accounts (it is O(state)).
fn root_ms(accounts: u32) -> f64 {
    let genesis = Genesis {
        chain_id: CHAIN.into(),
        params: Params::default(),
        accounts: (0..accounts)
            .map(|i| polylink_ledger::GenesisAccount {
                account: PublicKey(Hash32::digest(&[&i.to_be_bytes()]).0),
                balance: 1,
            })
            .collect(),
    };
    let ledger = Ledger::genesis(&genesis).unwrap();
    let start = Instant::now();
    let root = ledger.state_root();
    let ms = start.elapsed().as_secs_f64() * 1e3;
    assert_ne!(root, Hash32::ZERO);
    ms
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let runs = 3;
    let (mut t, mut v, mut l, mut k) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let (apply, verify) = transfers(20, 1_000);
        t.push(apply);
        v.push(verify);
        let (txs, tasks) = lifecycles(10, 200);
        l.push(txs);
        k.push(tasks);
    }
    let spread = |xs: &[f64]| {
        let (lo, hi) = xs.iter().fold((f64::MAX, 0f64), |(a, b), x| (a.min(*x), b.max(*x)));
        format!("min {lo:.0} max {hi:.0}")
    };
    println!("ledger apply throughput, median of {runs} runs (1,000-tx blocks; state root each block)");
    println!("  transfers:        {:>9.0} tx/s   ({})", median(t.clone()), spread(&t));
    println!("  ed25519 verify:   {:>9.0} tx/s   (reference, same txs; {})", median(v.clone()), spread(&v));
    println!("  transfer / verify ratio: {:.2}", median(t) / median(v));
    println!("  task lifecycle:   {:>9.0} tx/s   ({})", median(l.clone()), spread(&l));
    println!(
        "                    {:>9.0} tasks/s (8 txs + draw + settlement each; {})",
        median(k.clone()),
        spread(&k)
    );
    let r: Vec<f64> = (0..runs).map(|_| root_ms(100_000)).collect();
    println!("  state root, 100,000 accounts: {:.1} ms ({})", median(r.clone()), spread(&r));
}
