//! One way a model is served: a [`PipelineHead`] over its stages, the workers paid for it and
//! each one's share of the work, and how many generations run on it now.

use crate::head::{HeadSession, PipelineHead};
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
    pub(crate) shares_bps: Vec<u16>,
    running: AtomicUsize,
}

impl<E: Supervisor + Clock + Network + CryptoRng> Deployment<E> {
    /// A deployment over `head`; the work shares on chain are proportional to each stage's layers
    /// (see [`Deployment::with_work_shares`]).
    pub async fn new(label: impl Into<String>, head: PipelineHead<E>) -> Self {
        let stages = head.stages().await;
        let workers = stages.iter().map(|s| PublicKey(peer_bytes(&s.peer))).collect();
        let layers: Vec<usize> = stages.iter().map(|s| s.layers.len()).collect();
        Self {
            label: label.into(),
            head: Arc::new(head),
            workers,
            shares_bps: shares(&layers),
            running: 0.into(),
        }
    }

    /// Shares the work on chain by `work` per stage (e.g. each stage's predicted time per token,
    /// which counts the LM head the last stage runs), instead of by layers.
    pub fn with_work_shares(mut self, work: &[u64]) -> Self {
        if work.len() == self.workers.len() {
            self.shares_bps = shares(&work.iter().map(|&w| w as usize).collect::<Vec<_>>());
        }
        self
    }

    /// Each worker's part of `session`'s work: every stage weighs its share of the deployment,
    /// split between the workers that ran it by the rows each computed (a stand-in's replay
    /// included). Without a fail-over this is the deployment's own shares.
    pub(crate) fn work(&self, session: &HeadSession) -> Vec<(PublicKey, u64)> {
        let mut out: Vec<(PublicKey, u64)> = Vec::new();
        for (stage, share) in session.work().iter().zip(&self.shares_bps) {
            let rows: u64 = stage.iter().map(|(_, r)| r).sum::<u64>().max(1);
            for (worker, done) in stage {
                let part = u64::from(*share) * 1_000_000 * done / rows;
                let worker = PublicKey(peer_bytes(worker));
                match out.iter_mut().find(|(w, _)| *w == worker) {
                    Some((_, sum)) => *sum += part,
                    None => out.push((worker, part)),
                }
            }
        }
        out
    }
}

impl<E: Network> Deployment<E> {
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

/// Basis points proportional to `weights`, summing to exactly 10,000 (the rounding remainder goes
/// to the first).
fn shares(weights: &[usize]) -> Vec<u16> {
    let total: usize = weights.iter().sum::<usize>().max(1);
    let mut out: Vec<u16> = weights.iter().map(|w| (w * 10_000 / total) as u16).collect();
    let given: u32 = out.iter().map(|&b| u32::from(b)).sum();
    if let Some(first) = out.first_mut() {
        *first += (10_000 - given) as u16;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::shares;

    #[test]
    fn shares_sum_to_one() {
        assert_eq!(shares(&[15, 15]), vec![5_000, 5_000]);
        assert_eq!(shares(&[30]), vec![10_000]);
        let s = shares(&[10, 10, 10]);
        assert_eq!(s.iter().map(|&b| u32::from(b)).sum::<u32>(), 10_000);
        assert_eq!(s, vec![3_334, 3_333, 3_333]);
    }
}
