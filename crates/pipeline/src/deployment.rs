//! One way a model is served: a [`PipelineHead`] over its stages, the workers named for it, how
//! many generations run on it now, and how long one of its decode steps takes.

use crate::head::PipelineHead;
use crate::transport::peer_bytes;
use commonware_runtime::{Clock, Network, Supervisor};
use polylink_types::PublicKey;
use rand_core::CryptoRng;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// One way the model is served: a head over its stages.
pub struct Deployment<E: Network> {
    /// Shown in logs (`whole`, `pipeline-2`, …).
    pub label: String,
    pub(crate) head: Arc<PipelineHead<E>>,
    pub(crate) workers: Vec<PublicKey>,
    running: AtomicUsize,
    /// A decode step's time per generation running, in µs (a moving average; 0 until measured).
    step_us: AtomicU64,
    /// Placements made on other deployments since this one was last chosen.
    passed_over: AtomicUsize,
}

impl<E: Supervisor + Clock + Network + CryptoRng> Deployment<E> {
    /// A deployment over `head`, naming its stages' workers in order.
    pub async fn new(label: impl Into<String>, head: PipelineHead<E>) -> Self {
        let stages = head.stages().await;
        let workers = stages.iter().map(|s| PublicKey(peer_bytes(&s.peer))).collect();
        Self {
            label: label.into(),
            head: Arc::new(head),
            workers,
            running: 0.into(),
            step_us: 0.into(),
            passed_over: 0.into(),
        }
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

    /// How long a decode step takes here per generation running (a moving average of the steps
    /// measured), or `None` before any was.
    pub fn step_time(&self) -> Option<Duration> {
        let us = self.step_us.load(Relaxed);
        (us > 0).then(|| Duration::from_micros(us))
    }

    /// Counts one decode step that took `elapsed` with the generations running now: divided by
    /// them, since they share the devices, and averaged with weight 1/8 so a few steps slowed by
    /// something else on the device move the estimate without deciding it.
    pub(crate) fn record_step(&self, elapsed: Duration) {
        let sample = (elapsed.as_micros() / self.running().max(1) as u128).clamp(1, u64::MAX as u128) as u64;
        let _ = self.step_us.fetch_update(Relaxed, Relaxed, |old| {
            Some(if old == 0 {
                sample
            } else {
                (old.saturating_mul(7) / 8).saturating_add(sample / 8).max(1)
            })
        });
    }

    /// Placements made elsewhere since this one was last chosen.
    pub(crate) fn passed_over(&self) -> usize {
        self.passed_over.load(Relaxed)
    }

    /// Notes a placement: on this deployment (`chosen`) or on another.
    pub(crate) fn placed(&self, chosen: bool) {
        if chosen {
            self.passed_over.store(0, Relaxed);
        } else {
            self.passed_over.fetch_add(1, Relaxed);
        }
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
