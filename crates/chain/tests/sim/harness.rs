//! A seeded, single-process network of real validators (engine + real ledger) on Commonware's
//! deterministic runtime and simulated p2p, with faults, and a checker of safety and progress.
use commonware_codec::{DecodeExt, Encode};
use commonware_consensus::{
    simplex::types::{Finalize, Notarize, Proposal, Vote},
    types::Round,
};
use commonware_cryptography::{Hasher, Sha256, Signer};
use commonware_p2p::{
    Receiver, Recipients, Sender,
    simulated::{self, Link, Network, Oracle},
};
use commonware_runtime::{Clock, Handle, Quota, Runner, Spawner, Supervisor, deterministic};
use commonware_utils::{NZU32, NZUsize};
use polylink_chain::{
    Digest, Keys, NetworkSpec, NodeConfig, PublicKey, Scheme, Shared, Submitter, configs,
    engine::{self, Channels, EngineConfig, channel},
    genesis_value,
};
use polylink_ledger::{Genesis, Ledger};
use polylink_types::{SecretKey, Transfer, TxKind, UnsignedTx};
use rand::{SeedableRng, rngs::StdRng};
use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

pub const CHAIN_ID: &str = "polylink-sim";
const DEV_ACCOUNTS: u32 = 4;
const QUOTA: Quota = Quota::per_second(NZU32!(10_000));
const BLOCK_INTERVAL_MS: u64 = 200;
/// The most a message takes on the simulated links (latency plus jitter).
const LINK_DELAY_MS: u64 = 70;

/// How one committee member behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Runs the real node.
    Honest,
    /// Never starts.
    Silent,
    /// Signs two conflicting notarize and finalize votes per round, half the peers each.
    Equivocator,
}

/// One simulated run.
#[derive(Clone)]
pub struct Scenario {
    /// Role per committee member (its length is the committee size).
    pub roles: Vec<Role>,
    /// Every link's latency, jitter and delivery probability.
    pub link: Link,
    /// `(member, from_s, to_s)`: the member is cut off from everyone in that window.
    pub partition: Option<(usize, u64, u64)>,
    /// `(member, down_s, up_s)`: the member's node is stopped and restarted on its storage.
    pub restart: Option<(usize, u64, u64)>,
    /// Virtual seconds to run.
    pub duration_s: u64,
}

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scenario")
            .field("roles", &self.roles)
            .field("latency", &self.link.latency)
            .field("partition", &self.partition)
            .field("restart", &self.restart)
            .field("duration_s", &self.duration_s)
            .finish()
    }
}

/// Per honest member: height -> (block digest, state root after it).
pub type History = BTreeMap<u64, (String, String)>;

/// What one run produced.
#[derive(Debug, PartialEq, Eq)]
pub struct Run {
    /// The history of every honest member.
    pub histories: Vec<History>,
    /// Each honest member's height when the fault healed (the partition ended or the crashed
    /// member was restarted), if the scenario has one.
    pub heights_at_heal: Option<Vec<u64>>,
}

fn top(history: &History) -> u64 {
    history.keys().next_back().copied().unwrap_or(0)
}

fn honest_tops(roles: &[Role], histories: &[Arc<Mutex<History>>]) -> Vec<u64> {
    roles
        .iter()
        .zip(histories)
        .filter(|(role, _)| **role == Role::Honest)
        .map(|(_, h)| top(&h.lock().unwrap()))
        .collect()
}

fn dev_genesis() -> Genesis {
    Genesis::dev(CHAIN_ID, DEV_ACCOUNTS).0
}

/// Deals a committee of `n` with a seeded dealer.
pub fn committee(seed: u64, n: usize) -> Vec<NodeConfig> {
    let spec = NetworkSpec {
        chain_id: CHAIN_ID.into(),
        validators: n,
        p2p_base_port: 1,
        rpc_base_port: 1,
        block_interval_ms: BLOCK_INTERVAL_MS,
        mempool_capacity: 1_000,
        genesis: genesis_value(&dev_genesis()).unwrap(),
    };
    configs(&spec, StdRng::seed_from_u64(seed)).unwrap()
}

type Ctx = deterministic::Context;
type SimSender = simulated::Sender<PublicKey, Ctx>;
type Node = (Shared<Ledger>, Submitter<Ledger, SimSender>, Vec<Handle<()>>);

async fn register(
    oracle: &Oracle<PublicKey, Ctx>,
    key: &PublicKey,
) -> Channels<SimSender, simulated::Receiver<PublicKey>> {
    let control = oracle.control(key.clone());
    let reg = |ch| {
        let control = control.clone();
        async move { control.register(ch, QUOTA).await.unwrap() }
    };
    Channels {
        votes: reg(channel::VOTES).await,
        certificates: reg(channel::CERTIFICATES).await,
        resolver: reg(channel::RESOLVER).await,
        blocks: reg(channel::BLOCKS).await,
        backfill: reg(channel::BACKFILL).await,
        mempool: reg(channel::MEMPOOL).await,
    }
}

async fn start_node(
    context: &Ctx,
    oracle: &Oracle<PublicKey, Ctx>,
    keys: &Keys,
    leader: &PublicKey,
    prefix: String,
    incarnation: usize,
    history: Arc<Mutex<History>>,
) -> Node {
    let me = keys.private_key.public_key();
    let channels = register(oracle, &me).await;
    let node_context = context
        .child("validator")
        .with_attribute("prefix", &prefix)
        .with_attribute("incarnation", incarnation);
    let started = engine::start(
        node_context,
        EngineConfig {
            blocker: oracle.control(me.clone()),
            provider: oracle.manager(),
            me,
            scheme: keys.scheme.clone(),
            verifier: keys.verifier.clone(),
            chain_id: CHAIN_ID.into(),
            genesis_leader: leader.clone(),
            partition_prefix: prefix,
            block_interval_ms: BLOCK_INTERVAL_MS,
            mempool_capacity: 1_000,
            timing: engine::Timing::new(BLOCK_INTERVAL_MS, LINK_DELAY_MS),
            genesis: Ledger::genesis(&dev_genesis()).unwrap(),
        },
        channels,
    )
    .await
    .unwrap();
    let mut blocks = started.shared.blocks.subscribe();
    let recorder = context.child("recorder").spawn(move |_| async move {
        while let Ok(block) = blocks.recv().await {
            let entry = (block.digest.clone(), block.executed.state_root.to_string());
            history.lock().unwrap().insert(block.executed.height, entry);
        }
    });
    let mut handles = started.handles;
    handles.push(recorder);
    (started.shared, started.submitter, handles)
}

async fn equivocate(
    context: Ctx,
    scheme: Scheme,
    peers: Vec<PublicKey>,
    votes: (SimSender, simulated::Receiver<PublicKey>),
) {
    let (mut sender, mut receiver) = votes;
    let (left, right) = peers.split_at(peers.len() / 2);
    let mut seen: HashSet<(bool, Round)> = HashSet::new();
    while let Ok((_, message)) = receiver.recv().await {
        let Ok(vote) = Vote::<Scheme, Digest>::decode(message) else {
            continue;
        };
        let (finalize, proposal) = match vote {
            Vote::Notarize(n) => (false, n.proposal),
            Vote::Finalize(f) => (true, f.proposal),
            Vote::Nullify(_) => continue,
        };
        if !seen.insert((finalize, proposal.round)) {
            continue;
        }
        let fake = Proposal::new(
            proposal.round,
            proposal.parent,
            Sha256::hash(&[&proposal.payload.encode(), b"conflict"]),
        );
        for (targets, proposal) in [(left, proposal), (right, fake)] {
            let message = if finalize {
                Vote::<Scheme, Digest>::Finalize(Finalize::sign(&scheme, proposal).unwrap()).encode()
            } else {
                Vote::<Scheme, Digest>::Notarize(Notarize::sign(&scheme, proposal).unwrap()).encode()
            };
            sender.send(Recipients::Some(targets.to_vec()), message, true);
        }
        context.sleep(Duration::from_millis(1)).await;
    }
}

async fn link_all(
    oracle: &Oracle<PublicKey, Ctx>,
    keys: &[PublicKey],
    link: &Link,
    member: Option<usize>,
    connect: bool,
) {
    for (i, a) in keys.iter().enumerate() {
        for (j, b) in keys.iter().enumerate() {
            if i == j || member.is_some_and(|m| m != i && m != j) {
                continue;
            }
            if connect {
                let _ = oracle.add_link(a.clone(), b.clone(), link.clone()).await;
            } else {
                let _ = oracle.remove_link(a.clone(), b.clone()).await;
            }
        }
    }
}

/// Sends transfers from the dev accounts through honest nodes, with the nonce each node expects.
fn send_transfer(nodes: &[Option<Node>], tick: usize) {
    let live: Vec<&Node> = nodes.iter().flatten().collect();
    let Some((shared, submitter, _)) = live.get(tick % live.len().max(1)) else {
        return;
    };
    let account = u32::try_from(tick).unwrap_or(0) % DEV_ACCOUNTS;
    let key = polylink_ledger::dev_key(account);
    let nonce = shared.state.read().unwrap().machine.account(&key.public_key()).nonce;
    let pending = submitter.pending_of(&key.public_key());
    let tx = UnsignedTx {
        signer: key.public_key(),
        nonce: nonce + pending as u64,
        kind: TxKind::Transfer(Transfer {
            to: SecretKey::from_label(&format!("sim-recipient-{tick}")).public_key(),
            amount: 1 + tick as u128,
        }),
    }
    .sign(&key, CHAIN_ID);
    let _ = submitter.submit(tx);
}

/// Runs `scenario` with `seed`.
pub fn simulate(seed: u64, scenario: &Scenario) -> Run {
    let configs = committee(seed, scenario.roles.len());
    let config = deterministic::Config::new()
        .with_seed(seed)
        .with_timeout(Some(Duration::from_secs(scenario.duration_s + 60)));
    deterministic::Runner::new(config).start(|context| async move {
        let keys: Vec<Keys> = configs.iter().map(|c| c.keys().unwrap()).collect();
        let public: Vec<PublicKey> = keys.iter().map(|k| k.private_key.public_key()).collect();
        let (network, oracle) = Network::new_with_peers(
            context.child("network"),
            simulated::Config {
                max_size: 2 * 1024 * 1024,
                max_peers_per_set: NZUsize!(public.len()),
                disconnect_on_block: true,
                tracked_peer_sets: NZUsize!(1),
            },
            public.clone(),
        )
        .await;
        network.start();
        link_all(&oracle, &public, &scenario.link, None, true).await;

        let leader = keys[0].participants.iter().next().unwrap().clone();
        let histories: Vec<Arc<Mutex<History>>> = (0..keys.len()).map(|_| Arc::default()).collect();
        let mut nodes: Vec<Option<Node>> = Vec::new();
        for (i, role) in scenario.roles.iter().enumerate() {
            match role {
                Role::Honest => nodes.push(Some(
                    start_node(
                        &context,
                        &oracle,
                        &keys[i],
                        &leader,
                        format!("v{i}"),
                        0,
                        histories[i].clone(),
                    )
                    .await,
                )),
                Role::Silent => nodes.push(None),
                Role::Equivocator => {
                    let votes =
                        oracle.control(public[i].clone()).register(channel::VOTES, QUOTA).await.unwrap();
                    let peers: Vec<_> = public.iter().filter(|p| **p != public[i]).cloned().collect();
                    let scheme = keys[i].scheme.clone();
                    context.child("equivocator").spawn(move |ctx| equivocate(ctx, scheme, peers, votes));
                    nodes.push(None);
                }
            }
        }

        let mut heights_at_heal = None;
        for second in 0..scenario.duration_s {
            for tick in 0..4 {
                send_transfer(&nodes, (second * 4 + tick) as usize);
                context.sleep(Duration::from_millis(250)).await;
            }
            let now = second + 1;
            if let Some((member, from, to)) = scenario.partition {
                if now == from {
                    link_all(&oracle, &public, &scenario.link, Some(member), false).await;
                } else if now == to {
                    link_all(&oracle, &public, &scenario.link, Some(member), true).await;
                    heights_at_heal = Some(honest_tops(&scenario.roles, &histories));
                }
            }
            if let Some((member, down, up)) = scenario.restart {
                if now == down
                    && let Some((_, _, handles)) = nodes[member].take()
                {
                    // Abort and wait, as a crash would, so the restart can reopen the storage.
                    for handle in handles {
                        handle.abort();
                        let _ = handle.await;
                    }
                } else if now == up && scenario.roles[member] == Role::Honest {
                    let node = start_node(
                        &context,
                        &oracle,
                        &keys[member],
                        &leader,
                        format!("v{member}"),
                        1,
                        histories[member].clone(),
                    )
                    .await;
                    nodes[member] = Some(node);
                    heights_at_heal = Some(honest_tops(&scenario.roles, &histories));
                }
            }
        }
        let histories = scenario
            .roles
            .iter()
            .zip(&histories)
            .filter(|(role, _)| **role == Role::Honest)
            .map(|(_, h)| h.lock().unwrap().clone())
            .collect();
        Run { histories, heights_at_heal }
    })
}

/// Recovery: after the fault healed, every honest member finalized at least `more` heights
/// beyond the highest any honest member had reached when it healed.
pub fn check_recovery(run: &Run, more: u64) -> Result<(), String> {
    let Some(at_heal) = &run.heights_at_heal else {
        return Ok(());
    };
    let target = at_heal.iter().max().copied().unwrap_or(0) + more;
    for (member, history) in run.histories.iter().enumerate() {
        if top(history) < target {
            return Err(format!(
                "member {member} reached height {} after healing at heights {at_heal:?} (< {target})",
                top(history)
            ));
        }
    }
    Ok(())
}

/// Safety: no two honest members finalized different blocks or reached different state roots at
/// any height. Progress: every honest member executed at least `min_height` blocks.
pub fn check(histories: &[History], min_height: u64) -> Result<(), String> {
    let mut canonical: BTreeMap<u64, &(String, String)> = BTreeMap::new();
    for (member, history) in histories.iter().enumerate() {
        for (height, entry) in history {
            if let Some(seen) = canonical.insert(*height, entry)
                && seen != entry
            {
                return Err(format!("member {member} diverges at height {height}: {entry:?} vs {seen:?}"));
            }
        }
        let reached = top(history);
        if reached < min_height {
            return Err(format!("member {member} only reached height {reached} (< {min_height})"));
        }
    }
    Ok(())
}

/// Negative control: members 2 and 3 of a committee of four each run twice, once on each side of
/// two disjoint networks {0, 2, 3} and {1, 2, 3}; each side has a quorum. Returns the histories of
/// members 0 and 1 (one per side).
pub fn simulate_twins(seed: u64) -> Vec<History> {
    let configs = committee(seed, 4);
    let config = deterministic::Config::new().with_seed(seed).with_timeout(Some(Duration::from_secs(120)));
    deterministic::Runner::new(config).start(|context| async move {
        let keys: Vec<Keys> = configs.iter().map(|c| c.keys().unwrap()).collect();
        let public: Vec<PublicKey> = keys.iter().map(|k| k.private_key.public_key()).collect();
        let leader = keys[0].participants.iter().next().unwrap().clone();
        let mut sides = Vec::new();
        for (side, members) in [("x", [0usize, 2, 3]), ("y", [1, 2, 3])] {
            let label = if side == "x" { "network_x" } else { "network_y" };
            let (network, oracle) = Network::new_with_peers(
                context.child(label),
                simulated::Config {
                    max_size: 2 * 1024 * 1024,
                    max_peers_per_set: NZUsize!(4),
                    disconnect_on_block: true,
                    tracked_peer_sets: NZUsize!(1),
                },
                public.clone(),
            )
            .await;
            network.start();
            let present: Vec<PublicKey> = members.iter().map(|&m| public[m].clone()).collect();
            link_all(&oracle, &present, &LINK_FAST, None, true).await;
            let history: Arc<Mutex<History>> = Arc::default();
            let mut nodes = Vec::new();
            for &m in &members {
                let record = if m < 2 { history.clone() } else { Arc::default() };
                let node =
                    start_node(&context, &oracle, &keys[m], &leader, format!("{side}{m}"), 0, record).await;
                nodes.push(Some(node));
            }
            sides.push((history, nodes));
        }
        // Each side sees different transactions, so the two chains differ block by block.
        for tick in 0..40 {
            send_transfer(&sides[0].1, tick);
            send_transfer(&sides[1].1, tick + 1_000);
            context.sleep(Duration::from_millis(250)).await;
        }
        sides.iter().map(|(h, _)| h.lock().unwrap().clone()).collect()
    })
}

const LINK_FAST: Link = Link {
    latency: Duration::from_millis(20),
    jitter: Duration::from_millis(5),
    success_rate: commonware_utils::probability!(1.0),
};
