//! A bounded pool of admitted, not yet executed transactions, ordered per signer by nonce.
use polylink_types::{PublicKey, SignedTx, TxId};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
};
use tokio::sync::Notify;

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
}

#[derive(Default)]
struct Pool {
    by_id: HashMap<TxId, (PublicKey, u64)>,
    by_sender: BTreeMap<(PublicKey, u64), SignedTx>,
}

/// A shared, bounded transaction pool that wakes a waiting proposer when it gains a transaction.
#[derive(Clone)]
pub struct Mempool {
    pool: Arc<Mutex<Pool>>,
    capacity: usize,
    arrived: Arc<Notify>,
}

impl Mempool {
    /// An empty pool holding at most `capacity` transactions.
    pub fn new(capacity: usize) -> Self {
        Self { pool: Arc::default(), capacity, arrived: Arc::new(Notify::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        // A poisoned lock only means another thread panicked mid-update of plain maps; the maps
        // themselves stay consistent because every update is a single insert or remove.
        self.pool.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds an already validated transaction; a new (signer, nonce) replaces nothing.
    pub fn insert(&self, tx: SignedTx) -> Result<TxId, Refusal> {
        let id = tx.id();
        let key = (tx.tx.signer, tx.tx.nonce);
        let mut pool = self.lock();
        if pool.by_id.contains_key(&id) || pool.by_sender.contains_key(&key) {
            return Err(Refusal::Duplicate);
        }
        if pool.by_id.len() >= self.capacity {
            return Err(Refusal::Full { capacity: self.capacity });
        }
        pool.by_id.insert(id, key);
        pool.by_sender.insert(key, tx);
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

    /// Up to `max` pending transactions not in `exclude`, each signer's in nonce order.
    pub fn select(&self, max: usize, exclude: &HashSet<TxId>) -> Vec<SignedTx> {
        self.lock().by_sender.values().filter(|tx| !exclude.contains(&tx.id())).take(max).cloned().collect()
    }

    /// The pending transactions of `signer`, in nonce order.
    pub fn of_signer(&self, signer: &PublicKey) -> Vec<SignedTx> {
        self.lock().by_sender.range((*signer, 0)..=(*signer, u64::MAX)).map(|(_, tx)| tx.clone()).collect()
    }

    /// Re-checks every signer's pending transactions as a group (in nonce order): `keep` returns
    /// one verdict per transaction, and those judged false are dropped (executed or stale).
    pub fn retain_groups(&self, mut keep: impl FnMut(&[SignedTx]) -> Vec<bool>) {
        let mut pool = self.lock();
        let mut dropped = Vec::new();
        let mut group: Vec<SignedTx> = Vec::new();
        let mut judge = |group: &mut Vec<SignedTx>, dropped: &mut Vec<(PublicKey, u64)>| {
            let verdicts = keep(group);
            for (tx, ok) in group.iter().zip(verdicts.into_iter().chain(std::iter::repeat(false))) {
                if !ok {
                    dropped.push((tx.tx.signer, tx.tx.nonce));
                }
            }
            group.clear();
        };
        for tx in pool.by_sender.values() {
            if group.last().is_some_and(|last| last.tx.signer != tx.tx.signer) {
                judge(&mut group, &mut dropped);
            }
            group.push(tx.clone());
        }
        if !group.is_empty() {
            judge(&mut group, &mut dropped);
        }
        for key in dropped {
            if let Some(tx) = pool.by_sender.remove(&key) {
                pool.by_id.remove(&tx.id());
            }
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
}
