//! Wires one validator: block buffer, marshal (finalized-block archive + backfill), Simplex with
//! the threshold VRF scheme, the application, the executor and transaction gossip. Generic over
//! the runtime and the p2p network so the same code runs on tokio/TCP and in the simulator.
use crate::{
    App, Block, Digest, Error, Machine, Mempool, PublicKey, Scheme, Shared, Submitter, archive::TaskArchive,
    executor::Executor, seeds::SeedBook,
};
use commonware_broadcast::buffered;
use commonware_consensus::{
    Reporters,
    marshal::{self, core::Actor as Marshal, resolver::p2p as backfill, standard::Deferred},
    simplex::{self, elector::Random, elector::RandomVersion, types::Finalization},
    types::{Epoch, FixedEpocher, ViewDelta},
};
use commonware_cryptography::{Digested, Digestible, Sha256, certificate::ConstantProvider};
use commonware_p2p::{Blocker, Provider, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::{
    Clock, Handle, Metrics, Spawner, Storage,
    buffer::paged::{CacheRef, page_size},
};
use commonware_storage::archive::immutable;
use commonware_utils::{NZDuration, NZU64, NZUsize};
use rand::CryptoRng;
use std::{num::NonZeroUsize, sync::Arc, time::Duration};

const MAILBOX_SIZE: NonZeroUsize = NZUsize!(1024);
const BUFFER: NonZeroUsize = NZUsize!(1 << 20);
const PAGE_CACHE: NonZeroUsize = NZUsize!(1024);
const ARCHIVE_ITEMS_PER_SECTION: u64 = 4096;
/// One epoch for the chain's whole life (no reconfiguration yet).
const EPOCH_LENGTH: u64 = u64::MAX;

/// The p2p channels one validator needs (each a sender/receiver pair of one network).
pub struct Channels<S, R> {
    /// Simplex votes.
    pub votes: (S, R),
    /// Simplex certificates.
    pub certificates: (S, R),
    /// Simplex certificate resolver.
    pub resolver: (S, R),
    /// Block broadcast.
    pub blocks: (S, R),
    /// Marshal backfill of finalized blocks.
    pub backfill: (S, R),
    /// Mempool gossip.
    pub mempool: (S, R),
}

/// Channel numbers used on the wire.
pub mod channel {
    /// Simplex votes.
    pub const VOTES: u64 = 0;
    /// Simplex certificates.
    pub const CERTIFICATES: u64 = 1;
    /// Simplex certificate resolver.
    pub const RESOLVER: u64 = 2;
    /// Block broadcast.
    pub const BLOCKS: u64 = 3;
    /// Marshal backfill.
    pub const BACKFILL: u64 = 4;
    /// Mempool gossip.
    pub const MEMPOOL: u64 = 5;
}

/// Simplex timeouts and liveness aids of one validator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long to wait for the leader's proposal before voting to nullify the view.
    pub leader_timeout: Duration,
    /// How long to wait for a view to be notarized and certified before voting to nullify it.
    pub certification_timeout: Duration,
    /// How often a nullify vote is re-sent while a view is stuck.
    pub timeout_retry: Duration,
    /// Views of a leader inactive this long are nullified at once (`None`: never skipped).
    pub skip_inactive_after: Option<Duration>,
    /// Forward a certified block to the voters it was not seen from on entering the next view.
    pub forward_blocks: bool,
}

impl Timing {
    /// Timeouts for a chain paced at `block_interval_ms` whose messages arrive within about
    /// `delay_ms` one way. A leader may wait one block interval for transactions before it
    /// proposes, and a view needs about four message delays to be notarized and certified.
    ///
    /// Simplex sends each vote and block once per view, so a lost message (or a silent leader)
    /// costs the view: it ends only when these timeouts fire. Timeouts far above the network's
    /// delay therefore make a network that is just at quorum crawl, one lost message every few
    /// seconds. Views of an inactive leader are skipped, and a stuck view re-sends its nullify
    /// vote every three delays.
    pub fn new(block_interval_ms: u64, delay_ms: u64) -> Self {
        // Bounded so the sums below cannot overflow and keep their strict order.
        let (interval, delay) = (block_interval_ms.min(3_600_000), delay_ms.min(60_000));
        let leader_ms = (interval + 4 * delay).max(1);
        let certification_ms = leader_ms + (4 * delay).max(1);
        let retry_ms = (3 * delay).max(50);
        let skip_ms = (certification_ms + 2 * delay).max(retry_ms) + 1;
        Self {
            leader_timeout: Duration::from_millis(leader_ms),
            certification_timeout: Duration::from_millis(certification_ms),
            timeout_retry: Duration::from_millis(retry_ms),
            skip_inactive_after: Some(Duration::from_millis(skip_ms)),
            forward_blocks: true,
        }
    }
}

/// Everything one validator needs besides its network.
pub struct EngineConfig<B, P, M> {
    /// Blocks misbehaving peers.
    pub blocker: B,
    /// The current peer set.
    pub provider: P,
    /// This validator's identity.
    pub me: PublicKey,
    /// Signer over the committee (threshold VRF, this validator's share).
    pub scheme: Scheme,
    /// Verifier of seeds and certificates (group key only).
    pub verifier: Scheme,
    /// The chain id (binds transaction signatures and the genesis block).
    pub chain_id: String,
    /// The first participant, named as leader of the genesis block.
    pub genesis_leader: PublicKey,
    /// Prefix of every storage partition of this validator.
    pub partition_prefix: String,
    /// Empty blocks are proposed at most this often; blocks with transactions at once.
    pub block_interval_ms: u64,
    /// Bound of the mempool.
    pub mempool_capacity: usize,
    /// Consensus timeouts.
    pub timing: Timing,
    /// The ledger at genesis (replaced by the persisted snapshot when there is one).
    pub genesis: M,
}

/// A started validator: its shared state, submitter and the task handles.
pub struct Started<M, S> {
    /// The latest executed state and the stream of finalized blocks.
    pub shared: Shared<M>,
    /// Admits transactions (RPC and tests).
    pub submitter: Submitter<M, S>,
    /// Marshal's mailbox (finalized blocks by height, for the RPC).
    pub marshal: marshal::core::Mailbox<Scheme, marshal::standard::Standard<Block>>,
    /// Tasks to await or abort.
    pub handles: Vec<Handle<()>>,
}

type FinalizationArchive<E> = immutable::Archive<E, Digest, Finalization<Scheme, Digest>>;
type BlockArchive<E> = immutable::Archive<E, Digest, Arc<Block>>;

fn archive_config<C>(
    prefix: &str,
    name: &str,
    page_cache: &CacheRef,
    codec_config: C,
) -> immutable::Config<C> {
    immutable::Config {
        metadata_partition: format!("{prefix}-{name}-metadata"),
        freezer_table_partition: format!("{prefix}-{name}-freezer-table"),
        freezer_table_initial_size: 1024,
        freezer_table_resize_frequency: 4,
        freezer_table_resize_chunk_size: 1024,
        freezer_key_partition: format!("{prefix}-{name}-freezer-key"),
        freezer_key_page_cache: page_cache.clone(),
        freezer_key_write_buffer: BUFFER,
        freezer_value_partition: format!("{prefix}-{name}-freezer-value"),
        freezer_value_write_buffer: BUFFER,
        freezer_value_target_size: 64 * 1024 * 1024,
        freezer_value_compression: None,
        ordinal_partition: format!("{prefix}-{name}-ordinal"),
        ordinal_write_buffer: BUFFER,
        items_per_section: NZU64!(ARCHIVE_ITEMS_PER_SECTION),
        codec_config,
        replay_buffer: BUFFER,
    }
}

/// Starts one validator on `context` with the given network channels.
pub async fn start<E, B, P, M, S, R>(
    context: E,
    cfg: EngineConfig<B, P, M>,
    channels: Channels<S, R>,
) -> Result<Started<M, S>, Error>
where
    E: Clock + CryptoRng + Spawner + Storage + Metrics,
    B: Blocker<PublicKey = PublicKey>,
    P: Provider<PublicKey = PublicKey>,
    M: Machine,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
{
    let prefix = cfg.partition_prefix.clone();
    let page_cache = CacheRef::new(page_size(4096), PAGE_CACHE);
    let mempool = Mempool::new(cfg.mempool_capacity);
    let archive =
        TaskArchive::init(context.child("tasks"), archive_config(&prefix, "tasks", &page_cache, ())).await?;
    let (executor, finalized, shared) = Executor::init(
        context.child("state"),
        format!("{prefix}-state"),
        cfg.genesis,
        mempool.clone(),
        archive,
    )
    .await?;

    let (buffer, buffer_mailbox) = buffered::Engine::new(
        context.child("buffer"),
        buffered::Config {
            public_key: cfg.me.clone(),
            mailbox_size: MAILBOX_SIZE,
            deque_size: 16,
            priority: false,
            codec_config: (),
            peer_provider: cfg.provider.clone(),
            strategy: Sequential,
        },
    );
    // The certificate codec needs no configuration for this scheme (its config type is `()`).
    let certificate_codec: () =
        <Scheme as commonware_cryptography::certificate::Verifier>::certificate_codec_config_unbounded();
    let finalizations = FinalizationArchive::init(
        context.child("finalizations"),
        archive_config(&prefix, "finalizations", &page_cache, certificate_codec),
    )
    .await
    .map_err(|e| Error::Storage(e.to_string()))?;
    let blocks =
        BlockArchive::init(context.child("blocks"), archive_config(&prefix, "blocks", &page_cache, ()))
            .await
            .map_err(|e| Error::Storage(e.to_string()))?;

    let genesis = Block::genesis(&cfg.chain_id, cfg.genesis_leader.clone());
    let genesis_digest = genesis.digest();
    let epocher = FixedEpocher::new(NZU64!(EPOCH_LENGTH));
    let (marshal, marshal_mailbox, _floor) = Marshal::init(
        context.child("marshal"),
        finalizations,
        blocks,
        marshal::Config {
            provider: ConstantProvider::new(cfg.scheme.clone()),
            epocher: epocher.clone(),
            start: marshal::Start::Genesis(Digested::precomputed(genesis, genesis_digest)),
            partition_prefix: format!("{prefix}-marshal"),
            mailbox_size: MAILBOX_SIZE,
            view_retention: ViewDelta::new(1024),
            prunable_items_per_section: NZU64!(1024),
            page_cache: page_cache.clone(),
            replay_buffer: BUFFER,
            key_write_buffer: BUFFER,
            value_write_buffer: BUFFER,
            block_codec_config: (),
            max_repair: NZUsize!(32),
            max_pending_acks: NZUsize!(16),
            strategy: Sequential,
        },
    )
    .await;

    let seeds = SeedBook::default();
    let app = App::new(
        marshal_mailbox.clone(),
        &cfg.chain_id,
        cfg.verifier,
        mempool.clone(),
        seeds.clone(),
        shared.executed_height.clone(),
        cfg.block_interval_ms,
    );
    let deferred = Deferred::new(context.child("application"), app, marshal_mailbox.clone(), epocher);
    let backfill_resolver = backfill::init(
        context.child("backfill"),
        backfill::Config {
            public_key: cfg.me.clone(),
            peer_provider: cfg.provider.clone(),
            blocker: cfg.blocker.clone(),
            mailbox_size: MAILBOX_SIZE,
            fetch_timeout: NZDuration!(Duration::from_secs(2)),
            fetch_retry_delay: Duration::from_millis(100),
            priority_requests: false,
            priority_responses: false,
        },
        channels.backfill,
    );
    let consensus = simplex::Engine::new(
        context.child("consensus"),
        simplex::Config {
            scheme: cfg.scheme,
            elector: Random::<Sha256>::new(RandomVersion::V1),
            blocker: cfg.blocker,
            automaton: deferred.clone(),
            relay: deferred.clone(),
            reporter: Reporters::from((deferred, seeds)),
            track_historical_votes: false,
            strategy: Sequential,
            partition: format!("{prefix}-consensus"),
            mailbox_size: MAILBOX_SIZE,
            epoch: Epoch::zero(),
            floor: simplex::Floor::Genesis(genesis_digest),
            replay_buffer: BUFFER,
            write_buffer: BUFFER,
            page_cache,
            leader_timeout: cfg.timing.leader_timeout,
            certification_timeout: cfg.timing.certification_timeout,
            timeout_retry: cfg.timing.timeout_retry,
            view_retention: ViewDelta::new(256),
            skip: match cfg.timing.skip_inactive_after {
                Some(timeout) => {
                    simplex::SkipPolicy::Enabled { timeout, budget: simplex::SkipBudget::Participants }
                }
                None => simplex::SkipPolicy::Disabled,
            },
            fetch_timeout: NZDuration!(Duration::from_secs(1)),
            fetch_retry_delay: Duration::from_millis(100),
            forward: if cfg.timing.forward_blocks {
                simplex::ForwardPolicy::SilentVoters
            } else {
                simplex::ForwardPolicy::Disabled
            },
        },
    );

    let submitter = Submitter::new(shared.clone(), mempool, channels.mempool.0);
    let gossip = submitter.clone();
    let mempool_receiver = channels.mempool.1;
    let handles = vec![
        context.child("executor").spawn(move |_| executor.run()),
        context.child("gossip").spawn(move |_| gossip.gossip_loop(mempool_receiver)),
        buffer.start(channels.blocks),
        marshal.start(finalized, buffer_mailbox, backfill_resolver),
        consensus.start(channels.votes, channels.certificates, channels.resolver),
    ];
    Ok(Started { shared, submitter, marshal: marshal_mailbox, handles })
}

#[cfg(test)]
mod tests {
    use super::Timing;

    #[test]
    fn timeouts_keep_the_order_simplex_requires_for_any_interval_and_delay() {
        for interval in [0, 1, 200, 1_000, u64::MAX] {
            for delay in [0, 1, 70, 250, u64::MAX] {
                let t = Timing::new(interval, delay);
                let skip = t.skip_inactive_after.unwrap();
                assert!(t.leader_timeout > std::time::Duration::ZERO, "{interval} {delay}: {t:?}");
                assert!(t.certification_timeout > t.leader_timeout, "{interval} {delay}: {t:?}");
                assert!(
                    skip > t.certification_timeout && skip > t.timeout_retry,
                    "{interval} {delay}: {t:?}"
                );
            }
        }
    }

    #[test]
    fn the_leader_may_wait_one_block_interval_before_it_times_out() {
        let t = Timing::new(300, 250);
        assert_eq!(t.leader_timeout.as_millis(), 1_300);
        assert_eq!(t.certification_timeout.as_millis(), 2_300);
    }
}
