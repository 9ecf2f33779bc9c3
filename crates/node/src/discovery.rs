//! A gateway that follows the chain's worker registry: it serves its model through the
//! registered workers that answer, adds a worker that joins and drops one that leaves or stops
//! answering, all without a restart.
//!
//! Every `every` it reads `/workers` and `/params` and keeps the active workers of its model (at
//! least the worker minimum bonded: only they can be named on a task). It probes each with an
//! authenticated echo under `probe_timeout` (the handshake proves the endpoint holds the
//! registered key). A worker that serves the whole model and is in no deployment becomes one of
//! its own; workers holding layer ranges are assembled into pipelines ([`assemble`]). A
//! deployment is dropped when one of its workers left the registry (unbonded under the minimum,
//! moved its endpoint or its layers) or failed `silent_max` probes in a row; its running
//! generations finish where they are. Workers the caller deploys itself (`known`) are left to it
//! until their deployment is dropped; a restarted one that answers again is then deployed here.

use crate::NodeError;
use crate::peers::{self, Peer, ProbeConfig};
use crate::registry;
use commonware_cryptography::ed25519;
use commonware_runtime::{Clock, Network, Spawner, Supervisor};
use polylink_chain::rpc::{Client, WorkerEntry};
use polylink_pipeline::head::{HeadConfig, PipelineHead, StageSpec, StandbyList};
use polylink_pipeline::transport;
use polylink_pipeline::{Deployment, PipelineBackend};
use polylink_types::{ModelId, PublicKey};
use rand_core::CryptoRng;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// How a gateway follows the registry.
#[derive(Debug, Clone)]
pub struct FollowConfig {
    /// The on-chain model served.
    pub model: ModelId,
    /// Its layer count.
    pub layers: u32,
    /// Time between two reads of the registry.
    pub every: Duration,
    /// Most time one probe may take.
    pub probe_timeout: Duration,
    /// Probes in a row a worker may miss before its deployments are dropped.
    pub silent_max: u32,
    /// Workers deployed by the caller: never added here while the caller's deployment serves
    /// them, only dropped when they leave or go silent (and then deployed here once they answer
    /// again).
    pub known: HashSet<PublicKey>,
}

impl FollowConfig {
    /// Defaults for `model` with `layers` layers: a read every 2 s, a 5 s probe, three misses.
    pub fn new(model: ModelId, layers: u32) -> Self {
        Self {
            model,
            layers,
            every: Duration::from_secs(2),
            probe_timeout: Duration::from_secs(5),
            silent_max: 3,
            known: HashSet::new(),
        }
    }
}

/// A registered worker of the model, as a stage it could run.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    account: PublicKey,
    spec: StageSpec,
    /// Registered time per layer per token, µs.
    layer_time_us: u32,
}

/// The active workers of `model` in `workers` (at least `stake_min` bonded, a parseable endpoint)
/// with the layers they registered for it.
fn candidates(workers: &[WorkerEntry], model: ModelId, stake_min: u128) -> Vec<Candidate> {
    workers
        .iter()
        .filter(|w| w.stake.bonded >= stake_min)
        .filter_map(|w| {
            let range = w.range_of(model)?;
            let addr = w.worker.endpoint.as_str().parse::<SocketAddr>().ok()?;
            let peer = transport::peer_from_bytes(&w.account.0).ok()?;
            let layers = range.layer_start as usize..range.layer_end as usize;
            Some(Candidate {
                account: w.account,
                spec: StageSpec { peer, addr, layers },
                layer_time_us: range.layer_time_us,
            })
        })
        .collect()
}

/// Pipelines through the workers holding parts of a `layers`-layer model, each a path from layer
/// 0 to the last through ranges that meet end to start, fastest first by registered time per
/// token (layers x layer time, summed), each with at least one of the `fresh` ranges (a worker no
/// deployment uses yet), which it then uses up; the `reusable` ranges (workers serving other
/// deployments: a stage engine batches the sessions of all its heads) may appear in any number.
/// Returns the stages of each.
fn assemble(fresh: &[Candidate], reusable: &[Candidate], layers: u32) -> Vec<Vec<Candidate>> {
    /// A path's registered time per token and its stages (each marked when fresh).
    type Path<'a> = (u64, Vec<(&'a Candidate, bool)>);
    let mut free: Vec<&Candidate> = fresh.iter().collect();
    let mut pipelines = Vec::new();
    loop {
        // best[(b, f)] = the fastest path reaching layer b, with (f) or without a fresh range.
        // Ranges only go forward, so the boundaries are settled in increasing order.
        let mut best: BTreeMap<(usize, bool), Path<'_>> = BTreeMap::from([((0, false), (0, Vec::new()))]);
        let mut next_state = Some((0, false));
        while let Some(state) = next_state {
            let (at, used_fresh) = state;
            if let Some((time, path)) = best.get(&state).cloned() {
                let steps = free.iter().map(|c| (*c, true)).chain(reusable.iter().map(|c| (c, false)));
                for (c, is_fresh) in steps.filter(|(c, _)| c.spec.layers.start == at) {
                    let key = (c.spec.layers.end, used_fresh || is_fresh);
                    let cost = time + (c.spec.layers.len() as u64) * u64::from(c.layer_time_us);
                    if best.get(&key).is_none_or(|(t, _)| cost < *t) {
                        let mut longer = path.clone();
                        longer.push((c, is_fresh));
                        best.insert(key, (cost, longer));
                    }
                }
            }
            next_state = best
                .range((std::ops::Bound::Excluded(state), std::ops::Bound::Unbounded))
                .next()
                .map(|(k, _)| *k);
        }
        let Some((_, path)) = best.remove(&(layers as usize, true)) else { break };
        free.retain(|c| !path.iter().any(|(p, is_fresh)| *is_fresh && p.account == c.account));
        pipelines.push(path.into_iter().map(|(c, _)| c.clone()).collect());
    }
    pipelines
}

/// Whether the worker behind `candidate` answers an authenticated echo within `timeout`.
async fn answers<E>(context: &E, key: &ed25519::PrivateKey, candidate: &Candidate, timeout: Duration) -> bool
where
    E: Supervisor + Clock + Network + CryptoRng,
{
    let peer = Peer { account: candidate.account, endpoint: candidate.spec.addr };
    let config =
        ProbeConfig { pings: 1, ping_bytes: 16, bulk_echoes: 1, bulk_bytes: 64, timeout, peers_max: 1 };
    let probe = {
        let (context, key) = (context.child("probe"), key.clone());
        async move { peers::measure(context, key, &peer, &config).await }
    };
    matches!(context.timeout(timeout, probe).await, Ok(Ok(_)))
}

/// The follower's memory between two reads.
struct Follower<E: Network> {
    context: E,
    client: Client,
    key: ed25519::PrivateKey,
    backend: Arc<PipelineBackend<E>>,
    config: FollowConfig,
    /// Probes missed in a row, per worker.
    silent: HashMap<PublicKey, u32>,
    /// What each deployed worker registered when its deployment was made.
    deployed_as: HashMap<PublicKey, (SocketAddr, Range<usize>)>,
}

/// Follows the registry until the context stops (see the module docs); `key` is the gateway's
/// pipeline key (the workers serve registered gateways only).
pub async fn follow<E>(
    context: E,
    client: Client,
    key: ed25519::PrivateKey,
    backend: Arc<PipelineBackend<E>>,
    config: FollowConfig,
) where
    E: Spawner + Supervisor + Clock + Network + CryptoRng,
{
    let every = config.every;
    let mut follower = Follower {
        context: context.child("follower"),
        client,
        key,
        backend,
        config,
        silent: HashMap::new(),
        deployed_as: HashMap::new(),
    };
    loop {
        if let Err(e) = follower.step().await {
            tracing::warn!("following the worker registry: {e}");
        }
        context.sleep(every).await;
    }
}

impl<E> Follower<E>
where
    E: Spawner + Supervisor + Clock + Network + CryptoRng,
{
    async fn step(&mut self) -> Result<(), NodeError> {
        let chain = |what: &str, e: polylink_chain::Error| NodeError::Chain(format!("{what}: {e}"));
        let stake_min = self.client.params().await.map_err(|e| chain("params", e))?.params.worker_stake_min;
        let workers = registry::fetch(&self.client).await?;
        let active = candidates(&workers, self.config.model, stake_min);
        for c in &active {
            let alive = answers(&self.context, &self.key, c, self.config.probe_timeout).await;
            let silent = self.silent.entry(c.account).or_default();
            *silent = if alive { 0 } else { silent.saturating_add(1) };
        }
        let registered: HashMap<PublicKey, &Candidate> = active.iter().map(|c| (c.account, c)).collect();
        let silent_max = self.config.silent_max;
        let (silent, deployed_as) = (&self.silent, &self.deployed_as);
        // Drop what lost a worker: gone from the registry, moved, or silent too long.
        self.backend.retain(|d| {
            d.workers().iter().all(|w| {
                let Some(c) = registered.get(w) else { return false };
                let moved = deployed_as
                    .get(w)
                    .is_some_and(|(addr, layers)| (*addr, layers) != (c.spec.addr, &c.spec.layers));
                !moved && silent.get(w).copied().unwrap_or(0) < silent_max
            })
        });
        let deployed: HashSet<PublicKey> =
            self.backend.deployments().iter().flat_map(|d| d.workers().to_vec()).collect();
        self.deployed_as.retain(|w, _| deployed.contains(w));
        // A caller's worker whose deployment was dropped (it went silent: killed, restarted) is
        // the caller's no more: once it answers again it is deployed here like any other.
        self.config.known.retain(|w| deployed.contains(w));
        // Add the answering workers nobody deploys yet: a whole-model worker on its own, the
        // layer ranges as pipelines.
        let fresh: Vec<Candidate> = active
            .iter()
            .filter(|c| !deployed.contains(&c.account) && !self.config.known.contains(&c.account))
            .filter(|c| self.silent.get(&c.account).copied() == Some(0))
            .cloned()
            .collect();
        let whole = 0..self.config.layers as usize;
        let (wholes, ranges): (Vec<Candidate>, Vec<Candidate>) =
            fresh.into_iter().partition(|c| c.spec.layers == whole);
        // A new range may complete a pipeline with ranges already serving (ours or the caller's).
        let serving: Vec<Candidate> = active
            .iter()
            .filter(|c| c.spec.layers != whole && !ranges.iter().any(|r| r.account == c.account))
            .filter(|c| self.silent.get(&c.account).copied() == Some(0))
            .cloned()
            .collect();
        let mut new: Vec<Vec<Candidate>> = wholes.into_iter().map(|c| vec![c]).collect();
        new.extend(assemble(&ranges, &serving, self.config.layers));
        for stages in new {
            self.deploy(stages, &active).await?;
        }
        Ok(())
    }

    /// Adds a deployment over `stages`, every active worker standing by for a failed stage.
    async fn deploy(&mut self, stages: Vec<Candidate>, active: &[Candidate]) -> Result<(), NodeError> {
        let label = match stages.as_slice() {
            [only] => format!("whole-{}", short(&only.account)),
            _ => format!("pipeline-{}-{}", stages.len(), short(&stages[0].account)),
        };
        // Every active worker stands by, the stages' own included (one restarted after a failure
        // takes its layers back when its stand-in fails).
        let standby = Box::new(StandbyList(active.iter().map(|c| c.spec.clone()).collect()));
        let specs: Vec<StageSpec> = stages.iter().map(|c| c.spec.clone()).collect();
        let head = PipelineHead::new(
            self.context.child("discovered"),
            self.key.clone(),
            specs,
            standby,
            HeadConfig::default(),
        )?;
        for c in &stages {
            self.deployed_as.insert(c.account, (c.spec.addr, c.spec.layers.clone()));
        }
        tracing::info!(%label, stages = stages.len(), "a registered worker joined: serving it");
        self.backend.add(Deployment::new(label, head).await);
        Ok(())
    }
}

/// The first 8 hex characters of a key (labels in logs).
fn short(key: &PublicKey) -> String {
    key.to_string().chars().take(8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(n: u8, layers: Range<usize>, layer_time_us: u32) -> Candidate {
        let key = transport::key_from_seed(&[n; 32]).unwrap_or_else(|e| panic!("{e}"));
        let peer = commonware_cryptography::Signer::public_key(&key);
        Candidate {
            account: PublicKey(transport::peer_bytes(&peer)),
            spec: StageSpec { peer, addr: SocketAddr::from(([127, 0, 0, 1], 7000 + u16::from(n))), layers },
            layer_time_us,
        }
    }

    fn names(pipelines: &[Vec<Candidate>]) -> Vec<Vec<u16>> {
        pipelines.iter().map(|p| p.iter().map(|c| c.spec.addr.port() - 7000).collect()).collect()
    }

    #[test]
    fn ranges_are_assembled_into_the_fastest_pipelines_each_worker_once() {
        // Two ways through 30 layers: 1 + 2 (slow front) and 3 + 4 (fast); 5 leads nowhere.
        let ranges = vec![
            range(1, 0..15, 900),
            range(2, 15..30, 500),
            range(3, 0..10, 400),
            range(4, 10..30, 500),
            range(5, 20..25, 100),
        ];
        assert_eq!(names(&assemble(&ranges, &[], 30)), vec![vec![3, 4], vec![1, 2]]);
        // Ranges that leave a gap make no pipeline.
        assert!(assemble(&[range(1, 0..10, 1), range(2, 12..30, 1)], &[], 30).is_empty());
        // Three stages chain when they meet end to start.
        let three = [range(1, 0..5, 1), range(2, 5..20, 1), range(3, 20..30, 1)];
        assert_eq!(names(&assemble(&three, &[], 30)), vec![vec![1, 2, 3]]);
    }

    #[test]
    fn a_new_range_completes_pipelines_with_ranges_already_serving() {
        // 0..22 serves in a pipeline already; a worker joins with 22..30: they make a new one,
        // and 0..22 may serve in both. The serving ranges alone make nothing new.
        let serving = [range(1, 0..22, 500), range(2, 22..30, 500)];
        assert_eq!(names(&assemble(&[range(3, 22..30, 400)], &serving, 30)), vec![vec![1, 3]]);
        assert!(assemble(&[], &serving, 30).is_empty());
        // Fresh ranges that chain make their own pipeline; each fresh range is used once.
        let fresh = [range(3, 0..22, 400), range(4, 22..30, 400)];
        assert_eq!(names(&assemble(&fresh, &serving, 30)), vec![vec![3, 4]]);
        // Two newcomers with the same range each complete one with the serving front.
        let fresh = [range(3, 22..30, 400), range(4, 22..30, 450)];
        assert_eq!(names(&assemble(&fresh, &serving, 30)), vec![vec![1, 3], vec![1, 4]]);
    }
}
