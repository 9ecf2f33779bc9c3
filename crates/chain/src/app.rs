//! The consensus application: builds paced blocks from the mempool and verifies proposals
//! (transaction signatures, timestamps, and the parent round's seed against the group key).
use crate::{Block, Context, Mempool, Scheme, seeds::SeedBook};
use commonware_consensus::{
    Application, Heightable,
    marshal::{ancestry::Ancestry, core::Mailbox, standard::Standard},
    simplex::scheme::bls12381_threshold::vrf::{self, Seedable},
    types::Round,
};
use commonware_cryptography::{Digested, Digestible};
use commonware_macros::select;
use commonware_runtime::Clock;
use futures::StreamExt;
use polylink_types::TxId;
use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};
use tracing::{debug, warn};

/// Timestamps beyond this (2200-01-01) are invalid, so deadlines never overflow `SystemTime`.
const TIMESTAMP_MAX_MS: u64 = 7_258_118_400_000;
/// How far ahead of a verifier's clock a proposer's timestamp may be before the verifier waits.
const FUTURE_SKEW_MS: u64 = 500;
/// How long a proposer waits for the certificate (and so the seed) of its parent's round.
const SEED_WAIT_MS: u64 = 2_000;
/// Most unexecuted ancestors scanned for already-included transactions.
const ANCESTRY_SCAN_MAX: usize = 256;

/// Marshal's mailbox, for finalized blocks and certificates.
pub(crate) type Marshal = Mailbox<Scheme, Standard<Block>>;

/// Proposal and verification rules shared by every validator of a chain.
#[derive(Clone)]
pub struct App {
    marshal: Marshal,
    chain_id: Arc<str>,
    verifier: Scheme,
    mempool: Mempool,
    seeds: SeedBook,
    executed_height: Arc<AtomicU64>,
    block_interval_ms: u64,
    block_txs_max: usize,
}

impl App {
    /// Builds the application; `executed_height` is advanced by the executor.
    pub fn new(
        marshal: Marshal,
        chain_id: &str,
        verifier: Scheme,
        mempool: Mempool,
        seeds: SeedBook,
        executed_height: Arc<AtomicU64>,
        block_interval_ms: u64,
    ) -> Self {
        Self {
            marshal,
            chain_id: chain_id.into(),
            verifier,
            mempool,
            seeds,
            executed_height,
            block_interval_ms,
            block_txs_max: crate::block::BLOCK_TXS_LIMIT,
        }
    }

    /// Ids of transactions already in the unexecuted part of the chain this proposal extends.
    async fn pending_ids(&self, parent: &Block, mut ancestry: impl Ancestry<Block>) -> HashSet<TxId> {
        let executed = self.executed_height.load(Ordering::Acquire);
        let mut ids: HashSet<TxId> = parent.txs.iter().map(|tx| tx.id()).collect();
        let mut scanned = 0;
        while parent.height.get() > executed && scanned < ANCESTRY_SCAN_MAX {
            let Some(block) = ancestry.next().await else {
                break;
            };
            if block.height().get() <= executed {
                break;
            }
            ids.extend(block.inner().txs.iter().map(|tx| tx.id()));
            scanned += 1;
        }
        ids
    }

    async fn parent_seed<E: Clock>(
        &self,
        runtime: &E,
        parent: &Block,
        context: &Context,
    ) -> Option<Option<crate::SeedSignature>> {
        if parent.height.get() == 0 {
            return Some(None);
        }
        let view = context.parent.0;
        for attempt in 0..SEED_WAIT_MS / 10 {
            if let Some(signature) = self.seeds.get(view) {
                return Some(Some(signature));
            }
            // After a restart the certificate may predate this process: marshal stored it with
            // the finalized block (verified before it was stored).
            if attempt == 0
                && let Some(finalization) = self.marshal.get_finalization(parent.height).await
                && finalization.proposal.round.view() == view
                && finalization.proposal.payload == parent.digest()
            {
                return Some(Some(finalization.seed().signature));
            }
            runtime.sleep(Duration::from_millis(10)).await;
        }
        warn!(view = view.get(), "no certificate seen for the parent's round; skipping proposal");
        None
    }

    fn seed_is_valid(&self, block: &Block, parent: &Block) -> bool {
        match (&block.parent_seed, parent.height.get()) {
            (None, 0) => true,
            (Some(signature), h) if h > 0 => {
                let round = Round::new(block.context.round.epoch(), block.context.parent.0);
                vrf::Seed::new(round, *signature).verify(&self.verifier)
            }
            _ => false,
        }
    }

    fn txs_are_valid(&self, block: &Block) -> bool {
        let mut seen = HashSet::with_capacity(block.txs.len());
        block.txs.iter().all(|tx| seen.insert(tx.id()) && tx.verify(&self.chain_id).is_ok())
    }
}

fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl<E: Clock + Send + Sync + 'static> Application<E> for App {
    type SigningScheme = Scheme;
    type Context = Context;
    type Block = Block;
    type Input = ();

    async fn propose(
        &mut self,
        (runtime, context): (E, Context),
        mut ancestry: impl Ancestry<Block>,
        _input: (),
    ) -> Option<Digested<Block>> {
        let parent = ancestry.next().await?;
        let parent = parent.inner().clone();
        let exclude = self.pending_ids(&parent, ancestry).await;
        let deadline_ms = parent.timestamp_ms.saturating_add(self.block_interval_ms);
        let mut txs = self.mempool.select(self.block_txs_max, &exclude);
        // Pace empty blocks by the block interval, but propose at once when transactions wait.
        while txs.is_empty() && epoch_ms(runtime.current()) < deadline_ms {
            let deadline = SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms);
            select! {
                _ = runtime.sleep_until(deadline) => {},
                _ = self.mempool.arrival() => {},
            }
            txs = self.mempool.select(self.block_txs_max, &exclude);
        }
        let parent_seed = self.parent_seed(&runtime, &parent, &context).await?;
        let timestamp_ms = epoch_ms(runtime.current()).max(parent.timestamp_ms);
        if timestamp_ms > TIMESTAMP_MAX_MS {
            return None;
        }
        let block = Block {
            context,
            parent: parent.digest(),
            height: parent.height.next(),
            timestamp_ms,
            parent_seed,
            txs,
        };
        debug!(height = block.height.get(), txs = block.txs.len(), "proposing");
        let digest = block.digest();
        Some(Digested::precomputed(block, digest))
    }

    async fn verify(
        &mut self,
        (runtime, _context): (E, Context),
        mut ancestry: impl Ancestry<Block>,
    ) -> bool {
        let Some(block) = ancestry.next().await else {
            return false;
        };
        let Some(parent) = ancestry.next().await else {
            return false;
        };
        let (block, parent) = (block.inner(), parent.inner());
        if block.timestamp_ms < parent.timestamp_ms || block.timestamp_ms > TIMESTAMP_MAX_MS {
            return false;
        }
        if !self.seed_is_valid(block, parent) || !self.txs_are_valid(block) {
            return false;
        }
        // Never reject on the local clock (the verdict must be the same on every validator):
        // wait until the proposer's timestamp is close to our own time instead.
        let wait_until = block.timestamp_ms.saturating_sub(FUTURE_SKEW_MS);
        runtime.sleep_until(SystemTime::UNIX_EPOCH + Duration::from_millis(wait_until)).await;
        true
    }
}
