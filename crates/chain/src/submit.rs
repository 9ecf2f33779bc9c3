//! Transaction admission: checks a transaction against the latest executed state, adds it to the
//! mempool and gossips it to the other validators (whose gossip loop admits it the same way).
use crate::machine::Checked;
use crate::rpc::{ErrorCode, Refusal};
use crate::{Error, Machine, Mempool, PublicKey, executor::Shared, mempool, pending_log::PendingLog};
use commonware_p2p::{Receiver, Recipients, Sender};
use polylink_types::{SignedTx, TxId};
use std::sync::{Arc, Mutex};
use tracing::debug;

/// Admits transactions from the RPC and from peers.
pub struct Submitter<M, S> {
    shared: Shared<M>,
    mempool: Mempool,
    gossip: Arc<Mutex<S>>,
    /// Where what the RPC admits is kept, so a restart admits it again.
    log: Option<Arc<PendingLog>>,
}

impl<M, S: Clone> Clone for Submitter<M, S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            mempool: self.mempool.clone(),
            gossip: self.gossip.clone(),
            log: self.log.clone(),
        }
    }
}

impl<M, S> Submitter<M, S> {
    /// Number of transactions waiting in this node's mempool.
    pub fn pending(&self) -> usize {
        self.mempool.len()
    }

    /// Number of `signer`'s transactions waiting in this node's mempool (its next nonce is the
    /// account nonce plus this).
    pub fn pending_of(&self, signer: &polylink_types::PublicKey) -> usize {
        self.mempool.of_signer(signer).len()
    }

    /// Every transaction waiting in this node's mempool.
    pub fn pending_all(&self) -> Vec<SignedTx> {
        self.mempool.all()
    }

    /// This submitter, keeping what it admits in `log` from now on.
    pub fn with_log(self, log: Arc<PendingLog>) -> Self {
        Self { log: Some(log), ..self }
    }
}

impl<M: Machine, S: Sender<PublicKey = PublicKey>> Submitter<M, S> {
    /// A submitter that gossips over `gossip`.
    pub fn new(shared: Shared<M>, mempool: Mempool, gossip: S) -> Self {
        Self { shared, mempool, gossip: Arc::new(Mutex::new(gossip)), log: None }
    }

    /// Checks and pools `tx`, then sends it to every peer. The error says why it was refused;
    /// a refused transaction changes nothing.
    pub fn submit(&self, tx: SignedTx) -> Result<TxId, Error> {
        let id = self.admit(tx.clone())?;
        if let Some(log) = &self.log {
            log.append(&tx);
        }
        if let Ok(mut gossip) = self.gossip.lock() {
            gossip.send(Recipients::All, tx.to_bytes(), false);
        }
        Ok(id)
    }

    fn admit(&self, tx: SignedTx) -> Result<TxId, Error> {
        {
            let state = self.shared.state.read().map_err(|_| {
                Error::Refused(Refusal::new(ErrorCode::Unavailable, "node state unavailable"))
            })?;
            let mut sequence = self.mempool.of_signer(&tx.tx.signer);
            sequence.retain(|pending| pending.tx.nonce < tx.tx.nonce);
            sequence.push(tx.clone());
            if let Some(Checked { result: Err(reason), .. }) = state.machine.check_txs(&sequence).pop() {
                return Err(Error::Refused(reason));
            }
        }
        self.mempool.insert(tx).map_err(|refusal| match refusal {
            mempool::Refusal::Duplicate => {
                Error::Refused(Refusal::new(ErrorCode::AlreadyPending, "already pending"))
            }
            mempool::Refusal::Full { capacity } => Error::Refused(Refusal::new(
                ErrorCode::MempoolFull,
                format!("mempool full ({capacity} transactions)"),
            )),
            mempool::Refusal::SenderFull { pending_max } => Error::Refused(Refusal::new(
                ErrorCode::SenderQueueFull,
                format!("this sender has {pending_max} transactions pending already"),
            )),
        })
    }

    /// Admits transactions gossiped by peers until the channel closes; bad ones are dropped.
    pub async fn gossip_loop(self, mut receiver: impl Receiver<PublicKey = PublicKey>) {
        while let Ok((peer, message)) = receiver.recv().await {
            match SignedTx::from_bytes(message.as_ref()) {
                Ok(tx) => {
                    if let Err(e) = self.admit(tx) {
                        debug!(%peer, error = %e, "gossiped transaction not admitted");
                    }
                }
                Err(e) => debug!(%peer, error = %e, "undecodable gossiped transaction"),
            }
        }
    }
}
