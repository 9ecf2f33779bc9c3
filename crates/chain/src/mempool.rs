//! A bounded pool of admitted, not yet executed transactions. Each sender's wait in nonce order
//! and may hold at most [`PENDING_PER_SENDER_MAX`]; a block takes them round-robin across senders,
//! starting each time after the sender that led the previous selection, so no sender (whatever
//! its key or volume) can keep another's transactions out.
use polylink_types::{PublicKey, SignedTx, TxId};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
};
use tokio::sync::Notify;

/// Most transactions one sender may have pending (a gateway's user account opens a task per
/// request in flight).
pub(crate) const PENDING_PER_SENDER_MAX: usize = 256;

/// Why the pool refused a transaction.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The same transaction is already pending.
    Duplicate,
    /// The pool holds `capacity` transactions.
    Full {
        /// The pool's bound.
        capacity: usize,
    },
    /// The sender has `pending_max` transactions pending already.
    SenderFull {
        /// The per-sender bound.
        pending_max: usize,
    },
}

#[derive(Default)]
struct Pool {
    by_id: HashMap<TxId, (PublicKey, u64)>,
    by_sender: BTreeMap<PublicKey, BTreeMap<u64, SignedTx>>,
    /// The sender that led the last selection; the next one starts after it.
    cursor: Option<PublicKey>,
}

impl Pool {
    fn remove(&mut self, (signer, nonce): (PublicKey, u64)) {
        let Some(pending) = self.by_sender.get_mut(&signer) else { return };
        if let Some(tx) = pending.remove(&nonce) {
            self.by_id.remove(&tx.id());
        }
        if pending.is_empty() {
            self.by_sender.remove(&signer);
        }
    }
}

/// A shared, bounded transaction pool that wakes a waiting proposer when it gains a transaction.
#[derive(Clone)]
pub struct Mempool {
    pool: Arc<Mutex<Pool>>,
    capacity: usize,
    per_sender_max: usize,
    arrived: Arc<Notify>,
}

impl Mempool {
    /// An empty pool holding at most `capacity` transactions, [`PENDING_PER_SENDER_MAX`] a sender.
    pub fn new(capacity: usize) -> Self {
        Self::with_sender_max(capacity, PENDING_PER_SENDER_MAX)
    }

    /// An empty pool holding at most `capacity` transactions, `per_sender_max` a sender.
    pub fn with_sender_max(capacity: usize, per_sender_max: usize) -> Self {
        Self { pool: Arc::default(), capacity, per_sender_max, arrived: Arc::new(Notify::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        // A poisoned lock only means another thread panicked mid-update of plain maps; the maps
        // themselves stay consistent because every update is a single insert or remove.
        self.pool.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds an already validated transaction; a new (signer, nonce) replaces nothing.
    pub fn insert(&self, tx: SignedTx) -> Result<TxId, Refusal> {
        let id = tx.id();
        let (signer, nonce) = (tx.tx.signer, tx.tx.nonce);
        let mut pool = self.lock();
        let held = pool.by_sender.get(&signer);
        if pool.by_id.contains_key(&id) || held.is_some_and(|p| p.contains_key(&nonce)) {
            return Err(Refusal::Duplicate);
        }
        if held.map_or(0, BTreeMap::len) >= self.per_sender_max {
            return Err(Refusal::SenderFull { pending_max: self.per_sender_max });
        }
        if pool.by_id.len() >= self.capacity {
            return Err(Refusal::Full { capacity: self.capacity });
        }
        pool.by_id.insert(id, (signer, nonce));
        pool.by_sender.entry(signer).or_default().insert(nonce, tx);
        drop(pool);
        self.arrived.notify_waiters();
        Ok(id)
    }

    /// Number of pending transactions.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether no transaction is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `max` pending transactions not in `exclude`: one from each sender in turn (each
    /// sender's in nonce order), starting after the sender that led the previous selection.
    pub fn select(&self, max: usize, exclude: &HashSet<TxId>) -> Vec<SignedTx> {
        let mut pool = self.lock();
        let senders: Vec<PublicKey> = match pool.cursor {
            Some(last) => {
                let after = pool.by_sender.range(last..).map(|(k, _)| *k).filter(|k| *k != last);
                let before = pool.by_sender.range(..=last).map(|(k, _)| *k);
                after.chain(before).collect()
            }
            None => pool.by_sender.keys().copied().collect(),
        };
        let mut queues: Vec<_> = senders
            .iter()
            .filter_map(|s| pool.by_sender.get(s))
            .map(|pending| pending.values().filter(|tx| !exclude.contains(&tx.id())).peekable())
            .collect();
        let mut picked = Vec::new();
        while picked.len() < max && queues.iter_mut().any(|q| q.peek().is_some()) {
            for queue in queues.iter_mut() {
                if picked.len() >= max {
                    break;
                }
                if let Some(tx) = queue.next() {
                    picked.push(tx.clone());
                }
            }
        }
        drop(queues);
        if let Some(first) = picked.first() {
            pool.cursor = Some(first.tx.signer);
        }
        picked
    }

    /// Every pending transaction, each sender's in nonce order.
    pub fn all(&self) -> Vec<SignedTx> {
        self.lock().by_sender.values().flat_map(|p| p.values().cloned()).collect()
    }

    /// The pending transactions of `signer`, in nonce order.
    pub fn of_signer(&self, signer: &PublicKey) -> Vec<SignedTx> {
        self.lock().by_sender.get(signer).map(|p| p.values().cloned().collect()).unwrap_or_default()
    }

    /// Re-checks every signer's pending transactions as a group (in nonce order): `keep` returns
    /// one verdict per transaction, and those judged false are dropped (executed or stale).
    pub fn retain_groups(&self, mut keep: impl FnMut(&[SignedTx]) -> Vec<bool>) {
        let mut pool = self.lock();
        let mut dropped = Vec::new();
        for pending in pool.by_sender.values() {
            let group: Vec<SignedTx> = pending.values().cloned().collect();
            let verdicts = keep(&group);
            for (tx, ok) in group.iter().zip(verdicts.into_iter().chain(std::iter::repeat(false))) {
                if !ok {
                    dropped.push((tx.tx.signer, tx.tx.nonce));
                }
            }
        }
        for key in dropped {
            pool.remove(key);
        }
    }

    /// Resolves when a transaction is next inserted.
    pub async fn arrival(&self) {
        self.arrived.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polylink_types::{SecretKey, Transfer, TxKind, UnsignedTx};

    fn tx(key: &SecretKey, nonce: u64) -> SignedTx {
        UnsignedTx {
            signer: key.public_key(),
            nonce,
            kind: TxKind::Transfer(Transfer { to: SecretKey::from_label("to").public_key(), amount: 1 }),
        }
        .sign(key, "test")
    }

    #[test]
    fn bounded_ordered_and_deduplicated() {
        let pool = Mempool::new(2);
        let alice = SecretKey::from_label("alice");
        assert!(pool.insert(tx(&alice, 1)).is_ok());
        assert_eq!(pool.insert(tx(&alice, 1)), Err(Refusal::Duplicate));
        assert!(pool.insert(tx(&alice, 0)).is_ok());
        assert_eq!(pool.insert(tx(&alice, 2)), Err(Refusal::Full { capacity: 2 }));
        let picked = pool.select(10, &HashSet::new());
        assert_eq!(picked.iter().map(|t| t.tx.nonce).collect::<Vec<_>>(), [0, 1]);
        let skip: HashSet<_> = [picked[0].id()].into();
        assert_eq!(pool.select(10, &skip).len(), 1);
        assert_eq!(pool.of_signer(&alice.public_key()).len(), 2);
        pool.retain_groups(|group| group.iter().map(|t| t.tx.nonce > 0).collect());
        assert_eq!(pool.len(), 1);
    }

    /// Three senders, the first (in key order) flooding the pool.
    fn flood() -> (Mempool, Vec<SecretKey>) {
        let mut keys: Vec<SecretKey> = ["a", "b", "c"].iter().map(|l| SecretKey::from_label(l)).collect();
        keys.sort_by_key(|k| k.public_key());
        let pool = Mempool::with_sender_max(1_000, 64);
        for nonce in 0..64 {
            pool.insert(tx(&keys[0], nonce)).unwrap();
        }
        pool.insert(tx(&keys[1], 0)).unwrap();
        pool.insert(tx(&keys[2], 0)).unwrap();
        (pool, keys)
    }

    #[test]
    fn a_flooding_sender_cannot_starve_the_others() {
        let (pool, keys) = flood();
        // The flooder is capped...
        assert_eq!(pool.insert(tx(&keys[0], 64)), Err(Refusal::SenderFull { pending_max: 64 }));
        // ... and a block of three takes one transaction from each sender, each in nonce order.
        let picked = pool.select(3, &HashSet::new());
        let mut signers: Vec<_> = picked.iter().map(|t| t.tx.signer).collect();
        signers.sort();
        assert_eq!(signers, keys.iter().map(|k| k.public_key()).collect::<Vec<_>>());
        let of_flooder: Vec<u64> = pool
            .select(10, &HashSet::new())
            .iter()
            .filter(|t| t.tx.signer == keys[0].public_key())
            .map(|t| t.tx.nonce)
            .collect();
        assert!(of_flooder.windows(2).all(|w| w[0] < w[1]), "{of_flooder:?}");
    }

    #[test]
    fn blocks_of_one_rotate_through_every_sender() {
        let (pool, keys) = flood();
        let mut served = HashSet::new();
        for _ in 0..3 {
            let picked = pool.select(1, &HashSet::new());
            served.insert(picked[0].tx.signer);
            let id = picked[0].id();
            pool.retain_groups(|group| group.iter().map(|t| t.id() != id).collect());
        }
        assert_eq!(served.len(), 3, "every sender got a block of its own: {served:?}");
        assert_eq!(
            pool.of_signer(&keys[1].public_key()).len() + pool.of_signer(&keys[2].public_key()).len(),
            0
        );
    }
}
