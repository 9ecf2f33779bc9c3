//! Executes finalized blocks in height order as marshal delivers them, persists the state
//! snapshot before acknowledging each block, and publishes the result to the RPC and event stream.
use crate::{
    Block, Error, Machine, Mempool,
    archive::{TaskArchive, TaskIndex},
    rpc::FinalizedBlock,
};
use commonware_actor::Feedback;
use commonware_codec::RangeCfg;
use commonware_consensus::{Reporter, marshal::Update};
use commonware_cryptography::Digestible;
use commonware_storage::metadata::{self, Metadata};
use commonware_utils::{Acknowledgement, sequence::U64};
use futures::{StreamExt, channel::mpsc};
use polylink_types::{BlockContext, Hash32};
use std::{
    collections::HashSet,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};
use tokio::sync::broadcast;
use tracing::{error, info};

const KEY_HEIGHT: u64 = 0;
const KEY_SNAPSHOT: u64 = 1;
/// Largest snapshot the store will read back, bytes.
const SNAPSHOT_BYTES_MAX: usize = 1 << 30;
/// Finalized-block notices kept for slow event-stream subscribers.
const EVENT_BACKLOG: usize = 256;

/// The latest executed blocks kept in memory, so a subscriber that reconnects (or a validator
/// that restarted) reads the blocks it missed (`GET /events?from=`).
pub const RECENT_BLOCKS: usize = 512;

/// The latest executed state, shared with the RPC.
pub struct ChainState<M> {
    /// The state machine after the latest executed block.
    pub machine: M,
    /// Height of the latest executed block (0 = genesis).
    pub height: u64,
    /// The latest executed block, if any since this process started or restored.
    pub last_block: Option<FinalizedBlock>,
    /// The machine's state root, computed once per block (so `/status` costs nothing).
    pub state_root: Hash32,
}

/// Handle to the executed state and the stream of finalized blocks.
pub struct Shared<M> {
    /// The state, behind a lock the executor holds only while applying a block.
    pub state: Arc<RwLock<ChainState<M>>>,
    /// Every executed block, for event-stream subscribers.
    pub blocks: broadcast::Sender<Arc<FinalizedBlock>>,
    /// The last [`RECENT_BLOCKS`] executed since this process started, oldest first.
    pub recent: Arc<std::sync::Mutex<std::collections::VecDeque<Arc<FinalizedBlock>>>>,
    /// Height of the latest executed block, readable without the lock.
    pub executed_height: Arc<AtomicU64>,
    /// Tasks pruned from the state, kept by this node.
    pub archived: Arc<dyn TaskIndex>,
}

impl<M> Clone for Shared<M> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            blocks: self.blocks.clone(),
            recent: self.recent.clone(),
            executed_height: self.executed_height.clone(),
            archived: self.archived.clone(),
        }
    }
}

/// The marshal reporter half: forwards updates to the executor task.
#[derive(Clone)]
pub(crate) struct Finalized {
    sender: mpsc::UnboundedSender<Update<Block>>,
}

impl Reporter for Finalized {
    type Activity = Update<Block>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        match self.sender.unbounded_send(activity) {
            Ok(()) => Feedback::Ok,
            Err(_) => Feedback::Closed,
        }
    }
}

type Store<E> = Metadata<E, U64, Vec<u8>>;

/// Applies finalized blocks to the machine and persists it.
pub(crate) struct Executor<E: commonware_storage::Context, M: Machine> {
    store: Option<Store<E>>,
    shared: Shared<M>,
    mempool: Mempool,
    archive: Arc<TaskArchive<E>>,
    updates: mpsc::UnboundedReceiver<Update<Block>>,
}

impl<E: commonware_storage::Context, M: Machine> Executor<E, M> {
    /// Opens the store in `partition`, restores the latest snapshot (or starts from `genesis`),
    /// and returns the executor, the marshal reporter and the shared state. Pruned tasks go to
    /// `archive`.
    pub(crate) async fn init(
        context: E,
        partition: String,
        genesis: M,
        mempool: Mempool,
        archive: TaskArchive<E>,
    ) -> Result<(Self, Finalized, Shared<M>), Error> {
        let store: Store<E> = Metadata::init(
            context,
            metadata::Config { partition, codec_config: (RangeCfg::new(0..=SNAPSHOT_BYTES_MAX), ()) },
        )
        .await
        .map_err(|e| Error::Storage(e.to_string()))?;
        let height = match store.get(&U64::new(KEY_HEIGHT)) {
            Some(bytes) => u64::from_be_bytes(
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| Error::Storage("stored height is not 8 bytes".into()))?,
            ),
            None => 0,
        };
        let machine = match store.get(&U64::new(KEY_SNAPSHOT)) {
            Some(bytes) if height > 0 => genesis.restore(bytes).map_err(Error::Ledger)?,
            _ => genesis,
        };
        let state_root = machine.state_root();
        info!(height, %state_root, "restored chain state");
        let (sender, updates) = mpsc::unbounded();
        let archive = Arc::new(archive);
        let shared = Shared {
            state: Arc::new(RwLock::new(ChainState { machine, height, last_block: None, state_root })),
            blocks: broadcast::channel(EVENT_BACKLOG).0,
            recent: Arc::default(),
            executed_height: Arc::new(AtomicU64::new(height)),
            archived: archive.clone(),
        };
        let executor = Self { store: Some(store), shared: shared.clone(), mempool, archive, updates };
        Ok((executor, Finalized { sender }, shared))
    }

    /// Runs until marshal goes away or the store fails (a failure stops acknowledging, so marshal
    /// re-delivers the block after a restart).
    pub(crate) async fn run(mut self) {
        while let Some(update) = self.updates.next().await {
            let Update::Block(block, ack) = update else {
                continue;
            };
            match self.execute(block.inner()).await {
                Ok(()) => ack.acknowledge(),
                Err(e) => {
                    error!(error = %e, "execution stopped");
                    return;
                }
            }
        }
    }

    async fn execute(&mut self, block: &Block) -> Result<(), Error> {
        let height = block.height.get();
        let executed = self.shared.executed_height.load(Ordering::Acquire);
        if height <= executed {
            return Ok(()); // re-delivered after a restart: already in the snapshot
        }
        if height != executed + 1 {
            return Err(Error::Storage(format!("finalized block {height} delivered after {executed}")));
        }
        let ctx = BlockContext { height, seed: block.ledger_seed(), time_ms: block.timestamp_ms };
        let (finalized, snapshot, included, pruned) = {
            let mut state =
                self.shared.state.write().map_err(|_| Error::Storage("state lock poisoned".into()))?;
            let (executed, pruned) = state.machine.apply_block(&ctx, &block.txs).map_err(Error::Ledger)?;
            let finalized = FinalizedBlock {
                digest: block.digest().to_string(),
                parent: block.parent.to_string(),
                view: block.context.round.view().get(),
                timestamp_ms: block.timestamp_ms,
                tx_ids: block.txs.iter().map(|tx| tx.id()).collect(),
                seed: ctx.seed,
                executed,
            };
            state.height = height;
            state.state_root = finalized.executed.state_root;
            state.last_block = Some(finalized.clone());
            let included: HashSet<_> = block.txs.iter().map(|tx| tx.id()).collect();
            (finalized, state.machine.snapshot(), included, pruned)
        };
        // Archived before the state that no longer holds them is persisted: after a crash in
        // between, the block is executed again and its tasks archived again (once).
        self.archive.keep(pruned).await?;
        self.persist(height, snapshot).await?;
        self.shared.executed_height.store(height, Ordering::Release);
        if let Ok(state) = self.shared.state.read() {
            self.mempool.retain_groups(|group| {
                let verdicts = state.machine.check_txs(group);
                group
                    .iter()
                    .zip(verdicts)
                    // One that now fails by its rules stays: a block carries it, consuming its
                    // nonce, so the sender's later ones stay valid.
                    .map(|(tx, verdict)| verdict.includable && !included.contains(&tx.id()))
                    .collect()
            });
        }
        info!(
            height,
            txs = block.txs.len(),
            state_root = %finalized.executed.state_root,
            "executed finalized block"
        );
        let finalized = Arc::new(finalized);
        if let Ok(mut recent) = self.shared.recent.lock() {
            if recent.len() >= RECENT_BLOCKS {
                recent.pop_front();
            }
            recent.push_back(finalized.clone());
        }
        let _ = self.shared.blocks.send(finalized);
        Ok(())
    }

    async fn persist(&mut self, height: u64, snapshot: Vec<u8>) -> Result<(), Error> {
        let mut store = self
            .store
            .take()
            .ok_or_else(|| Error::Storage("state store lost after an earlier failure".into()))?;
        store.put(U64::new(KEY_HEIGHT), height.to_be_bytes().to_vec());
        store.put(U64::new(KEY_SNAPSHOT), snapshot);
        let store = store.sync().await.map_err(|e| Error::Storage(e.to_string()))?;
        self.store = Some(store);
        Ok(())
    }
}
