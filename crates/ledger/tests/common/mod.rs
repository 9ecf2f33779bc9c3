//! A small in-process chain for the ledger's tests: dev keys, one block per call, seeds from
//! the height, and a ready market (developer, worker, user, validators).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use polylink_ledger::{BlockOutcome, Genesis, Ledger, LedgerError, Params};
use polylink_types::*;

pub const CHAIN: &str = "polylink-test";
pub const DEV: usize = 0;
pub const WORKER: usize = 1;
pub const USER: usize = 2;
/// Validators are accounts 3.. (five of them in the market).
pub const VALIDATORS: std::ops::Range<usize> = 3..8;
pub const WORKER2: usize = 8;
/// The gateway that opens the market's tasks and reports their results.
pub const GATEWAY: usize = 10;
pub const ACCOUNTS: u32 = 11;
pub const PRICE_FLOOR: Amount = 10;
pub const LAYERS: u32 = 30;

/// Block time of the test chain: one block every `BLOCK_MS` unless a test jumps the clock.
pub const BLOCK_MS: u64 = 500;
/// Time of the first block.
pub const START_MS: u64 = 1_700_000_000_000;

pub struct Net {
    pub ledger: Ledger,
    pub keys: Vec<SecretKey>,
    /// Timestamp the next block gets.
    pub next_ms: u64,
}

/// Params with short windows so tests stay quick to read: at `BLOCK_MS` a block, the windows'
/// blocks outlast their milliseconds, so heights decide unless a test moves the clock.
pub fn test_params() -> Params {
    Params {
        unbonding_period_blocks: 20,
        unbonding_period_ms: 70_000,
        task_deadline_base_ms: 5_000,
        task_deadline_max_ms: 60_000,
        task_ms_per_token_min: 0,
        commit_window_blocks: 3,
        commit_window_ms: 1_000,
        commit_ms_per_token: 0,
        commit_window_max_ms: 1_000,
        reveal_window_blocks: 3,
        reveal_window_ms: 1_000,
        epoch_length_blocks: 1_000,
        capacity_token_ms: 20,
        no_commit_slash_bps: 20,
        ..Params::default()
    }
}

impl Net {
    pub fn new(params: Params) -> Net {
        let (mut genesis, keys) = Genesis::dev(CHAIN, ACCOUNTS);
        genesis.params = params;
        Net { ledger: Ledger::genesis(&genesis).unwrap(), keys, next_ms: START_MS }
    }

    pub fn pk(&self, i: usize) -> PublicKey {
        self.keys[i].public_key()
    }

    pub fn index_of(&self, pk: &PublicKey) -> usize {
        self.keys.iter().position(|k| k.public_key() == *pk).unwrap()
    }

    /// A tx from account `i` with its next nonce.
    pub fn tx(&self, i: usize, kind: TxKind) -> SignedTx {
        let nonce = self.ledger.account(&self.pk(i)).nonce;
        UnsignedTx { signer: self.pk(i), nonce, kind }.sign(&self.keys[i], CHAIN)
    }

    pub fn block(&mut self, txs: &[SignedTx]) -> BlockOutcome {
        let height = self.ledger.height() + 1;
        let seed = Hash32::digest(&[b"seed", &height.to_be_bytes()]);
        let ctx = BlockContext { height, seed, time_ms: self.next_ms };
        self.next_ms += BLOCK_MS;
        self.ledger.apply_block(&ctx, txs).unwrap()
    }

    /// One tx in its own block; its receipt.
    pub fn run(&mut self, i: usize, kind: TxKind) -> Result<Vec<Event>, LedgerError> {
        let tx = self.tx(i, kind);
        self.block(&[tx]).receipts.remove(0).result
    }

    pub fn ok(&mut self, i: usize, kind: TxKind) -> Vec<Event> {
        let name = kind.name();
        self.run(i, kind).unwrap_or_else(|e| panic!("{name} by {i} failed: {e}"))
    }

    /// Empty blocks until `height` has been applied; the hook events on the way.
    pub fn advance_to(&mut self, height: u64) -> Vec<Event> {
        let mut events = Vec::new();
        while self.ledger.height() < height {
            events.extend(self.block(&[]).events);
        }
        events
    }

    /// Empty blocks until both `height` and the block time `time_ms` have passed.
    pub fn advance_past(&mut self, height: u64, time_ms: u64) -> Vec<Event> {
        let mut events = self.advance_to(height);
        while self.ledger.time_ms() <= time_ms || self.ledger.height() <= height {
            events.extend(self.block(&[]).events);
        }
        events
    }

    pub fn balance(&self, i: usize) -> Amount {
        self.ledger.account(&self.pk(i)).balance
    }

    /// Fees account `i` has paid: one per applied transaction (its nonce) that is not a free
    /// duty (`duties` of them).
    pub fn fees(&self, i: usize, duties: u64) -> Amount {
        let nonce = self.ledger.account(&self.pk(i)).nonce;
        Amount::from(nonce - duties) * self.ledger.params().tx_fee
    }

    /// What the genesis minted: the supply plus everything burned since.
    pub fn minted(&self) -> Amount {
        let t = self.ledger.totals();
        t.supply + t.slashed + t.fees_burned
    }

    /// Σ balances + deposits + stakes + escrow + treasury, which must equal the supply.
    pub fn held(&self) -> Amount {
        let s = self.ledger.state();
        let balances: Amount = s
            .accounts
            .values()
            .map(|a| a.balance + a.allowances.iter().map(|d| d.limit).sum::<Amount>())
            .sum();
        let stakes: Amount = s.stakes.values().map(|st| st.slashable()).sum();
        let escrow: Amount = s.tasks.values().map(|t| t.escrow).sum();
        balances + stakes + escrow + s.totals.treasury
    }

    /// Developer registers a model; worker and validators bond and register.
    pub fn market(params: Params) -> Net {
        let mut net = Net::new(params);
        net.ok(DEV, register_model(PRICE_FLOOR, 1_000));
        for (i, stake) in [(WORKER, 10_000u128), (WORKER2, 10_000)] {
            net.ok(i, TxKind::Bond(Bond { amount: stake }));
        }
        net.ok(WORKER, register_worker(&[(0, LAYERS)]));
        net.gateway();
        for (n, v) in VALIDATORS.enumerate() {
            net.ok(v, TxKind::Bond(Bond { amount: 5_000 + 1_000 * n as Amount }));
            net.ok(v, TxKind::RegisterValidator);
        }
        net
    }

    /// GATEWAY bonds and registers as the gateway of the tasks `submit_task` opens.
    pub fn gateway(&mut self) {
        self.ok(GATEWAY, TxKind::Bond(Bond { amount: 10_000 }));
        self.ok(GATEWAY, register_gateway("127.0.0.1:8080"));
    }

    /// A task on model 1 served by `workers` through GATEWAY, at the floor price.
    pub fn task_kind(&self, max_tokens: u32, workers: &[usize]) -> TxKind {
        TxKind::SubmitTask(SubmitTask {
            model: 1,
            max_tokens,
            prompt_hash: Hash32::digest(&[b"prompt"]),
            max_price: PRICE_FLOOR,
            workers: BoundedVec::new(workers.iter().map(|w| self.pk(*w)).collect()).unwrap(),
            gateway: self.pk(GATEWAY),
            seed: 7,
            payer: None,
            voucher: None,
        })
    }

    /// The user opens a task on model 1 served by `workers`; returns its id.
    pub fn submit_task(&mut self, max_tokens: u32, workers: &[usize]) -> TaskId {
        let tx = self.tx(USER, self.task_kind(max_tokens, workers));
        let id = tx.id();
        self.block(&[tx]).receipts[0].result.clone().unwrap();
        id
    }

    /// `signer` (the task's gateway, for a result the chain takes) reports `tokens` (prompt,
    /// completion) for `task`, with a receipt from
    /// every listed worker for its registered range of model 1, each for all the billed rows.
    pub fn submit_result(
        &mut self,
        signer: usize,
        task: TaskId,
        tokens: (u32, u32),
    ) -> Result<Vec<Event>, LedgerError> {
        let t = self.ledger.task(&task).cloned();
        let receipts: Vec<SignedReceipt> = t
            .iter()
            .flat_map(|t| t.workers.iter().copied().collect::<Vec<_>>())
            .map(|w| {
                let i = self.index_of(&w);
                let range =
                    self.ledger.worker(&w).and_then(|r| r.served.iter().find(|s| s.model == 1).copied());
                let (start, end) = range.map_or((0, LAYERS), |r| (r.layer_start, r.layer_end));
                self.receipt(i, task, (start, end), tokens.0 + tokens.1)
            })
            .collect();
        self.submit_result_receipts(signer, task, tokens, &receipts)
    }

    /// Account `i`'s signed receipt for `layers` and `rows` of `task`.
    pub fn receipt(&self, i: usize, task: TaskId, layers: (u32, u32), rows: u32) -> SignedReceipt {
        WorkReceipt {
            task,
            worker: self.pk(i),
            layer_start: layers.0,
            layer_end: layers.1,
            rows,
            fed: Hash32::ZERO,
            drawn: Hash32::ZERO,
        }
        .sign(&self.keys[i])
    }

    /// `signer` reports `tokens` for `task` with exactly these receipts.
    pub fn submit_result_receipts(
        &mut self,
        signer: usize,
        task: TaskId,
        tokens: (u32, u32),
        receipts: &[SignedReceipt],
    ) -> Result<Vec<Event>, LedgerError> {
        self.run(
            signer,
            TxKind::SubmitResult(SubmitResult {
                task,
                output_hash: Hash32::digest(&[b"output"]),
                prompt_tokens: tokens.0,
                completion_tokens: tokens.1,
                receipts: BoundedVec::new(receipts.to_vec()).unwrap(),
            }),
        )
    }

    /// Committee of a task, as account indices (applies the block that draws it if needed).
    pub fn committee(&mut self, task: &TaskId) -> Vec<usize> {
        if self.ledger.task(task).unwrap().status == polylink_ledger::TaskStatus::AwaitingCommittee {
            self.block(&[]);
        }
        let t = self.ledger.task(task).unwrap();
        t.committee.iter().map(|m| self.index_of(&m.validator)).collect()
    }

    /// Every member in `scores` commits (when `Some`) in one block, then those marked reveal in
    /// one block of the reveal window; returns the events up to and including settlement.
    /// Every member evaluates alike: their evaluation digests agree.
    pub fn score(&mut self, task: TaskId, scores: &[(usize, Option<u16>, bool)]) -> Vec<Event> {
        let work = honest_work(&task);
        let scores: Vec<_> = scores.iter().map(|&(v, score, reveal)| (v, score, reveal, work)).collect();
        self.score_with_work(task, &scores)
    }

    /// As [`Net::score`], each member revealing its own evaluation digest.
    pub fn score_with_work(
        &mut self,
        task: TaskId,
        scores: &[(usize, Option<u16>, bool, Hash32)],
    ) -> Vec<Event> {
        let salt = |v: usize| Hash32::digest(&[b"salt", &[v as u8]]);
        let commits: Vec<SignedTx> = scores
            .iter()
            .filter_map(|&(v, score, _, work)| {
                let commitment = score_commitment(score?, &work, &salt(v), &self.pk(v));
                Some(self.tx(v, TxKind::CommitScore(CommitScore { task, commitment })))
            })
            .collect();
        let out = self.block(&commits);
        assert!(out.receipts.iter().all(|r| r.result.is_ok()), "{:?}", out.receipts);
        let t = self.ledger.task(&task).unwrap();
        let (commit_end, commit_end_ms) = (t.commit_end_height, t.commit_end_ms);
        let mut events = out.events;
        events.extend(self.advance_to(commit_end));
        while self.ledger.time_ms() + BLOCK_MS <= commit_end_ms {
            events.extend(self.block(&[]).events);
        }
        let reveals: Vec<SignedTx> = scores
            .iter()
            .filter(|s| s.2)
            .filter_map(|&(v, score, _, work)| {
                Some(
                    self.tx(v, TxKind::RevealScore(RevealScore { task, score: score?, work, salt: salt(v) })),
                )
            })
            .collect();
        let out = self.block(&reveals);
        assert!(out.receipts.iter().all(|r| r.result.is_ok()), "{:?}", out.receipts);
        events.extend(out.events);
        let t = self.ledger.task(&task).unwrap();
        let (reveal_end, reveal_end_ms) = (t.reveal_end_height, t.reveal_end_ms);
        events.extend(self.advance_to(reveal_end));
        while self.ledger.task(&task).unwrap().status == polylink_ledger::TaskStatus::Scoring {
            assert!(self.ledger.time_ms() <= reveal_end_ms + BLOCK_MS, "settled late");
            events.extend(self.block(&[]).events);
        }
        events
    }
}

/// An artifact (its content from `label`) whose trailer names `developer`.
pub fn artifact(label: &[u8], developer: &PublicKey) -> Vec<u8> {
    let mut bytes: Vec<u8> = label.iter().cycle().take(1_000).copied().collect();
    bytes.extend(developer_trailer(developer));
    bytes
}

/// Registers `bytes` as a model, proving the developer it names when `prove`.
pub fn register_artifact(bytes: &[u8], prove: bool, floor: Amount, royalty_bps: u16) -> TxKind {
    TxKind::RegisterModel(RegisterModel {
        artifact_hash: Hash32::digest(&[bytes]),
        claim: if prove { ArtifactClaim::from_artifact(bytes) } else { None },
        architecture: BoundedString::new("llama").unwrap(),
        layer_count: LAYERS,
        royalty_bps,
        price_floor: floor,
    })
}

/// The developer (account `DEV`) registers its own artifact (one per floor and royalty).
pub fn register_model(floor: Amount, royalty_bps: u16) -> TxKind {
    let label = format!("smollm2.gguf {floor} {royalty_bps}");
    register_artifact(
        &artifact(label.as_bytes(), &polylink_ledger::dev_key(DEV as u32).public_key()),
        true,
        floor,
        royalty_bps,
    )
}

pub fn register_gateway(endpoint: &str) -> TxKind {
    TxKind::RegisterGateway(RegisterGateway { endpoint: BoundedString::new(endpoint.to_string()).unwrap() })
}

pub fn register_worker(ranges: &[(u32, u32)]) -> TxKind {
    TxKind::RegisterWorker(RegisterWorker {
        profile: DeviceProfile { memory_mib: 8_192, bandwidth_kbps: 100_000, latency_us: 300 },
        endpoint: BoundedString::new("127.0.0.1:7000").unwrap(),
        served: BoundedVec::new(
            ranges
                .iter()
                .map(|&(a, b)| ServedRange { model: 1, layer_start: a, layer_end: b, layer_time_us: 200 })
                .collect(),
        )
        .unwrap(),
    })
}

/// The evaluation digest honest validators of `task` reveal in these tests.
pub fn honest_work(task: &TaskId) -> Hash32 {
    Hash32::digest(&[b"honest evaluation", &task.0])
}
