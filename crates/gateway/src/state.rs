//! The state every route shares: the backend, billing, keys, limits, metrics and transcripts.
//! The routes themselves live in `routes`, so nothing here depends on a handler.

use crate::billing::Billing;
use crate::keys::ApiKeys;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::transcripts::Transcripts;
use polylink_protocol::{InferenceBackend, ModelCard};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio::sync::Semaphore;

/// Everything the handlers share.
pub struct Gateway {
    pub(crate) backend: Arc<dyn InferenceBackend>,
    pub(crate) billing: Option<Arc<dyn Billing>>,
    pub(crate) keys: ApiKeys,
    pub(crate) limits: Limits,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) in_flight: Arc<Semaphore>,
    pub(crate) seq: AtomicU64,
    pub(crate) started_s: u64,
    pub(crate) transcripts: Option<Arc<Transcripts>>,
    pub(crate) probe: Option<Arc<dyn EndpointProbe>>,
    pub(crate) probing: Arc<Semaphore>,
}

/// Dials an advertised worker endpoint for a device about to join (`POST /polylink/probe`).
pub trait EndpointProbe: Send + Sync {
    /// `Ok` when `endpoint` answered an authenticated echo as `account`.
    fn probe(
        &self,
        account: polylink_types::PublicKey,
        endpoint: std::net::SocketAddr,
    ) -> futures::future::BoxFuture<'static, Result<(), ProbeError>>;
}

/// Why a probe gave no `reachable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    /// The account may not ask (for example it holds less than a worker's minimum stake); the
    /// endpoint was not dialed.
    Refused(String),
    /// The endpoint did not answer as that account. What exactly failed (refused, timed out,
    /// another key) is not told: the caller learns nothing about other services there.
    Unreachable,
}

impl Gateway {
    /// A gateway over `backend` accepting `keys`; no billing until [`Gateway::with_billing`].
    pub fn new(backend: Arc<dyn InferenceBackend>, keys: ApiKeys, limits: Limits) -> Self {
        let started_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        Self {
            backend,
            billing: None,
            keys: keys.limit_per_key(limits.requests_per_key_max),
            in_flight: Arc::new(Semaphore::new(limits.requests_max.max(1))),
            limits,
            metrics: Arc::new(Metrics::default()),
            seq: AtomicU64::new(0),
            started_s,
            transcripts: None,
            probe: None,
            probing: Arc::new(Semaphore::new(1)),
        }
    }

    /// Answers reachability probes for devices about to join, one at a time.
    pub fn with_probe(mut self, probe: Arc<dyn EndpointProbe>) -> Self {
        self.probe = Some(probe);
        self
    }

    /// Opens and settles a task on chain for every request.
    pub fn with_billing(mut self, billing: Arc<dyn Billing>) -> Self {
        self.billing = Some(billing);
        self
    }

    /// Keeps a transcript of every billed request and serves it to the task's committee.
    pub fn with_transcripts(mut self, transcripts: Arc<Transcripts>) -> Self {
        self.transcripts = Some(transcripts);
        self
    }

    /// Whether requests are billed.
    pub fn billed(&self) -> bool {
        self.billing.is_some()
    }

    /// The models the backend serves.
    pub fn models(&self) -> Vec<ModelCard> {
        self.backend.models()
    }

    /// The metrics (what `/metrics` renders).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}
