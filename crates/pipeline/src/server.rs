//! The stage server: accepts authenticated links from pipeline heads and answers their requests
//! with the engine thread. A link that sends garbage is dropped; the server keeps serving.
//!
//! Each link carries one call at a time; a head runs sessions concurrently over several links,
//! and the engine batches what they send together. Links beyond [`LINKS_MAX`] are refused.
//!
//! Any authenticated peer may measure the link (echo); only the heads [`Admission`] admits may
//! run inference (open a session, forward, close), so nobody else can compute here for free or
//! fill its sessions. A worker on a chain admits the registered gateways ([`KeySet`], kept
//! current by the worker as gateways register), so a new gateway needs no block per session.

use crate::PipelineError;
use crate::engine::EngineHandle;
use crate::transport::{self, peer_bytes};
use crate::wire::{ErrorCode, Request, Response, WireLimits};
use commonware_cryptography::ed25519::{PrivateKey, PublicKey};
use commonware_runtime::{Clock, Listener, Network, Spawner};
use rand_core::CryptoRng;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// Most links served at once (each holds at most one request in flight).
pub const LINKS_MAX: usize = 1024;

/// A shared set of keys that its owner keeps current (e.g. the chain's registered gateways).
#[derive(Debug, Clone, Default)]
pub struct KeySet(Arc<RwLock<HashSet<PublicKey>>>);

impl KeySet {
    /// Replaces the whole set.
    pub fn replace(&self, keys: HashSet<PublicKey>) {
        // A poisoned lock only means a writer panicked mid-replace; the set is still a set.
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = keys;
    }

    /// Whether `key` is in the set.
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.0.read().unwrap_or_else(|e| e.into_inner()).contains(key)
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which heads may run inference on this stage.
#[derive(Debug, Clone, Default)]
pub enum Admission {
    /// Any authenticated peer (each sees only its own sessions).
    #[default]
    Anyone,
    /// The keys in this set, as it stands at each request.
    Listed(KeySet),
}

impl Admission {
    fn admits(&self, peer: &PublicKey) -> bool {
        match self {
            Admission::Anyone => true,
            Admission::Listed(keys) => keys.contains(peer),
        }
    }
}

/// Serves `engine` on `listener` until the context stops.
pub async fn serve<E, L>(
    context: E,
    key: PrivateKey,
    mut listener: L,
    engine: EngineHandle,
    limits: WireLimits,
    admission: Admission,
) -> Result<(), PipelineError>
where
    E: Spawner + Clock + Network + CryptoRng,
    L: Listener,
{
    let open_links = Arc::new(AtomicUsize::new(0));
    loop {
        let (addr, sink, stream) = listener.accept().await.map_err(|e| PipelineError::Link(e.to_string()))?;
        if open_links.load(Ordering::Relaxed) >= LINKS_MAX {
            tracing::warn!(%addr, "refused a connection: {LINKS_MAX} links open already");
            continue;
        }
        let (key, engine, admission) = (key.clone(), engine.clone(), admission.clone());
        let open = LinkCount::enter(&open_links);
        context.child("link").spawn(move |context| async move {
            let _open = open;
            let mut link = match transport::accept(context, key, stream, sink, limits, |_| true).await {
                Ok(link) => link,
                Err(e) => {
                    tracing::debug!(%addr, "refused a connection: {e}");
                    return;
                }
            };
            let owner = peer_bytes(&link.peer);
            loop {
                let request = match link.next_request().await {
                    Ok(Some(request)) => request,
                    Ok(None) => return,
                    Err(e) => {
                        // A frame we cannot decode: say why, then drop the link.
                        tracing::warn!(%addr, "bad frame: {e}");
                        let refusal = Response::Error { code: ErrorCode::BadRequest, message: e.to_string() };
                        let _ = link.respond(&refusal).await;
                        return;
                    }
                };
                let response = match request {
                    // Link measurements never queue behind the engine's work.
                    Request::Echo { payload } => Response::Echo(payload),
                    _ if !admission.admits(&link.peer) => {
                        tracing::debug!(%addr, peer = %link.peer, "refused inference to a head not admitted");
                        Response::Error {
                            code: ErrorCode::Forbidden,
                            message: "this stage serves registered gateways only".into(),
                        }
                    }
                    request => engine.call(owner, request).await,
                };
                if let Err(e) = link.respond(&response).await {
                    tracing::info!(%addr, "cannot answer, closing the link: {e}");
                    return;
                }
            }
        });
    }
}

/// One open link, counted until dropped.
struct LinkCount(Arc<AtomicUsize>);

impl LinkCount {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for LinkCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
