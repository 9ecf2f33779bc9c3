//! One way a model is served: a [`PipelineHead`] over its stages, the workers named for it, and
//! how many generations run on it now.

use crate::head::PipelineHead;
use crate::transport::peer_bytes;
use commonware_runtime::{Clock, Network, Supervisor};
use polylink_types::PublicKey;
use rand_core::CryptoRng;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// One way the model is served: a head over its stages.
pub struct Deployment<E: Network> {
    /// Shown in logs (`whole`, `pipeline-2`, …).
    pub label: String,
    pub(crate) head: Arc<PipelineHead<E>>,
    pub(crate) workers: Vec<PublicKey>,
    running: AtomicUsize,
}

impl<E: Supervisor + Clock + Network + CryptoRng> Deployment<E> {
    /// A deployment over `head`, naming its stages' workers in order.
    pub async fn new(label: impl Into<String>, head: PipelineHead<E>) -> Self {
        let stages = head.stages().await;
        let workers = stages.iter().map(|s| PublicKey(peer_bytes(&s.peer))).collect();
        Self { label: label.into(), head: Arc::new(head), workers, running: 0.into() }
    }
}

impl<E: Network> Deployment<E> {
    /// The workers of its stages, in order (what a task it serves names).
    pub fn workers(&self) -> &[PublicKey] {
        &self.workers
    }

    /// Generations running on it now.
    pub fn running(&self) -> usize {
        self.running.load(Relaxed)
    }

    /// Counts a generation as running until the returned guard drops.
    pub(crate) fn enter(self: &Arc<Self>) -> Running<E> {
        self.running.fetch_add(1, Relaxed);
        Running(self.clone())
    }
}

/// A generation running on a deployment.
pub(crate) struct Running<E: Network>(Arc<Deployment<E>>);

impl<E: Network> Drop for Running<E> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Relaxed);
    }
}
