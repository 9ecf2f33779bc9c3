//! The one way every role and the CLI sends a transaction: sign with the next nonce, submit,
//! refetch the nonce once if the node says another client used it, and, when asked, wait for the
//! finalized block that includes it.
use super::{Client, ErrorCode, TxOutcome};
use crate::Error;
use futures::StreamExt;
use polylink_types::{Event, PublicKey, SecretKey, TxId, TxKind, UnsignedTx};
use std::time::Duration;
use tokio::sync::Mutex;

/// A transaction the chain applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Included {
    /// The transaction.
    pub tx_id: TxId,
    /// Height of the finalized block that includes it.
    pub height: u64,
    /// The events it emitted.
    pub events: Vec<Event>,
}

/// Signs and sends one key's transactions through one node. The next nonce is tracked locally, so
/// several transactions of the key can wait in the same block; sends through one signer are
/// serialized.
pub struct Signer {
    client: Client,
    chain_id: String,
    key: SecretKey,
    next_nonce: Mutex<Option<u64>>,
}

impl Signer {
    /// A signer of `key` for the chain `chain_id` served by `client`.
    pub fn new(client: Client, chain_id: impl Into<String>, key: SecretKey) -> Self {
        Self { client, chain_id: chain_id.into(), key, next_nonce: Mutex::new(None) }
    }

    /// A signer of `key` that learns the chain id from the node.
    pub async fn connect(client: Client, key: SecretKey) -> Result<Self, Error> {
        let chain_id = client.status().await?.chain_id;
        Ok(Self::new(client, chain_id, key))
    }

    /// The account that signs.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// The node's client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The chain id bound into every signature.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// The signing key (for signatures that are not transactions, e.g. transcript requests).
    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    /// Signs `kind` with the next nonce and submits it; returns the transaction id once the node
    /// admitted it to its mempool. A refusal is [`Error::Refused`] with the node's code.
    pub async fn send(&self, kind: TxKind) -> Result<TxId, Error> {
        let mut next = self.next_nonce.lock().await;
        for attempt in 0..2 {
            let nonce = match *next {
                Some(n) if attempt == 0 => n,
                _ => self.client.account(&self.public_key()).await?.next_nonce(),
            };
            let tx = UnsignedTx { signer: self.public_key(), nonce, kind: kind.clone() }
                .sign(&self.key, &self.chain_id);
            match self.client.submit(&tx).await {
                Ok(id) => {
                    *next = Some(nonce + 1);
                    return Ok(id);
                }
                // Another client of this account used the nonce, or a pending one was dropped.
                Err(e) if e.code() == Some(ErrorCode::WrongNonce) => *next = None,
                // A refused transaction consumed nothing.
                Err(e @ Error::Refused(_)) => {
                    *next = Some(nonce);
                    return Err(e);
                }
                // Unknown whether it was admitted: ask the node next time.
                Err(e) => {
                    *next = None;
                    return Err(e);
                }
            }
        }
        Err(Error::Rpc(format!("the nonce of {} kept changing", self.public_key())))
    }

    /// Sends `kind` and waits up to `timeout` for the finalized block that includes it. A
    /// transaction the ledger refused in its block is [`Error::Refused`].
    pub async fn send_and_wait(&self, kind: TxKind, timeout: Duration) -> Result<Included, Error> {
        // Subscribe first, so the including block cannot pass before we listen.
        let mut blocks = self.client.events().await?;
        let id = self.send(kind).await?;
        let included = async {
            while let Some(block) = blocks.next().await {
                if let Some(receipt) = block.receipt(&id) {
                    return Some((block.executed.height, receipt.outcome.clone()));
                }
            }
            None
        };
        match tokio::time::timeout(timeout, included).await {
            Ok(Some((height, TxOutcome::Applied { events }))) => Ok(Included { tx_id: id, height, events }),
            Ok(Some((_, TxOutcome::Refused { refusal }))) => {
                // Refused in its block: it consumed its nonce unless the block could not carry
                // it at all; ask the node next time.
                *self.next_nonce.lock().await = None;
                Err(Error::Refused(refusal))
            }
            Ok(None) => Err(Error::Rpc(format!("the event stream closed before {id} was finalized"))),
            Err(_) => Err(Error::Rpc(format!("{id} was not finalized within {timeout:?}"))),
        }
    }
}
