//! Distributed key generation for a chain's committee (`polylink chain dkg`). Each validator
//! makes its identity on its own machine ([`crate::Identity`]); the threshold-BLS shares that
//! sign the chain's certificates and seed its randomness then come from a Joint-Feldman DKG
//! among them (Commonware's `feldman_desmedt`), so no party ever holds the group secret and no
//! one can predict the committees the chain elects.
//!
//! The ceremony runs over the same authenticated, encrypted p2p the chain uses, at each
//! validator's listed address, before the nodes start (on its own namespace, so a node and a
//! ceremony never talk to each other). Every validator deals to every validator and all must
//! take part: a genesis committee is set up together, and requiring all of them lets the players
//! agree on the dealer logs without a chain to order them. Once it holds its share each
//! validator announces a digest of the public output, and the ceremony succeeds only when all
//! digests are equal: a dealer that equivocates makes it fail rather than split the committee.
//! Messages are resent every second until they are answered, so the validators may start in
//! any order within the ceremony's timeout, and each lingers a few seconds after success to
//! answer late peers.
use crate::{
    Error, PublicKey,
    config::{ValidatorEntry, namespace},
};
use commonware_codec::{Copying, Encode, Read, ReadExt};
use commonware_cryptography::{
    Signer,
    bls12381::{
        dkg::feldman_desmedt::{
            Dealer, DealerPrivMsg, DealerPubMsg, Info, Logs, Player, PlayerAck, Reveal, SignedDealerLog,
        },
        primitives::{sharing::Mode, variant::MinSig},
    },
    ed25519::PrivateKey,
};
use commonware_p2p::{Address, AddressableManager, Receiver, Recipients, Sender, authenticated::lookup};
use commonware_parallel::Sequential;
use commonware_runtime::{Quota, Runner, Supervisor as _, tokio as cw_tokio};
use commonware_utils::{
    N3f1, NZU32, NZUsize,
    ordered::{Map, Set},
};
use polylink_types::Hash32;
use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    num::NonZeroU32,
    path::PathBuf,
    time::Duration,
};
use tracing::{debug, info, warn};

/// How often unanswered messages are sent again.
const RESEND: Duration = Duration::from_secs(1);
/// How long a validator keeps answering after its own ceremony succeeded.
const LINGER: Duration = Duration::from_secs(5);
/// Largest ceremony message, bytes (a dealer log of a committee of hundreds fits).
const MESSAGE_BYTES_MAX: u32 = 1024 * 1024;

/// One validator's part in a ceremony.
pub struct Ceremony {
    /// The chain the committee is for (binds the ceremony's namespace).
    pub chain_id: String,
    /// The whole committee with its p2p addresses, this validator included.
    pub validators: Vec<ValidatorEntry>,
    /// This validator's identity.
    pub me: PrivateKey,
    /// Where to listen for the other validators (normally its listed address).
    pub listen: SocketAddr,
    /// How long to wait for everyone before giving up.
    pub timeout: Duration,
    /// Scratch storage for the runtime.
    pub storage: PathBuf,
    /// Which attempt this is: every validator gives the same number, raised to rerun a ceremony
    /// that failed, so no message of the failed one (a peer still resending it) counts in this
    /// one. Bound into every message as the DKG's round.
    pub attempt: u64,
}

/// What a successful ceremony gives this validator.
#[derive(Clone)]
pub struct Dealt {
    /// Its threshold-BLS share (hex), secret.
    pub share: String,
    /// The committee's public polynomial (hex); its constant term is the group key.
    pub polynomial: String,
    /// Digest of the public output every validator agreed on (hex).
    pub output_digest: String,
}

impl std::fmt::Debug for Dealt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The share stays out of logs and panics.
        f.debug_struct("Dealt").field("output_digest", &self.output_digest).finish_non_exhaustive()
    }
}

enum Msg {
    Deal(DealerPubMsg<MinSig>, DealerPrivMsg),
    Ack(PlayerAck<PublicKey>),
    Log(Box<SignedDealerLog<MinSig, PublicKey>>),
    Done(Hash32),
}

impl Msg {
    /// The message of ceremony attempt `attempt`: the attempt (8 bytes, big-endian), a tag, the body.
    fn to_bytes(&self, attempt: u64) -> Vec<u8> {
        let (tag, body) = match self {
            Self::Deal(public, private) => {
                let mut body = public.encode().to_vec();
                body.extend_from_slice(&private.encode());
                (0u8, body)
            }
            Self::Ack(ack) => (1, ack.encode().to_vec()),
            Self::Log(log) => (2, log.encode().to_vec()),
            Self::Done(digest) => (3, digest.0.to_vec()),
        };
        let mut out = Vec::with_capacity(9 + body.len());
        out.extend_from_slice(&attempt.to_be_bytes());
        out.push(tag);
        out.extend_from_slice(&body);
        out
    }

    /// A message and the attempt it belongs to.
    fn from_bytes(bytes: &[u8], n: NonZeroU32) -> Result<(u64, Self), String> {
        let (attempt, bytes) = bytes.split_first_chunk::<8>().ok_or("no attempt number")?;
        let attempt = u64::from_be_bytes(*attempt);
        let (&tag, rest) = bytes.split_first().ok_or("empty message")?;
        let mut buf = Copying(rest);
        let msg = match tag {
            0 => Self::Deal(
                DealerPubMsg::read_cfg(&mut buf, &n).map_err(|e| e.to_string())?,
                DealerPrivMsg::read(&mut buf).map_err(|e| e.to_string())?,
            ),
            1 => Self::Ack(PlayerAck::read(&mut buf).map_err(|e| e.to_string())?),
            2 => Self::Log(Box::new(SignedDealerLog::read_cfg(&mut buf, &n).map_err(|e| e.to_string())?)),
            3 => {
                let digest: [u8; 32] = rest.try_into().map_err(|_| "a digest is 32 bytes")?;
                buf = Copying(&[]);
                Self::Done(Hash32(digest))
            }
            other => return Err(format!("unknown message tag {other}")),
        };
        if buf.0.is_empty() { Ok((attempt, msg)) } else { Err("trailing bytes".into()) }
    }
}

/// The ceremony's state at one validator: its dealing, its player, and what it heard.
struct Round {
    me: PublicKey,
    info: Info<MinSig, PublicKey>,
    peers: Vec<PublicKey>,
    dealer: Option<Dealer<MinSig, PrivateKey>>,
    deal: (DealerPubMsg<MinSig>, BTreeMap<PublicKey, DealerPrivMsg>),
    acked: BTreeSet<PublicKey>,
    player: Option<Player<MinSig, PrivateKey>>,
    acks_sent: BTreeMap<PublicKey, PlayerAck<PublicKey>>,
    logs: BTreeMap<PublicKey, SignedDealerLog<MinSig, PublicKey>>,
    dealt: Option<(Dealt, Hash32)>,
    done: BTreeMap<PublicKey, Hash32>,
}

impl Round {
    fn new(info: Info<MinSig, PublicKey>, key: PrivateKey, players: &Set<PublicKey>) -> Result<Self, Error> {
        let me = key.public_key();
        let dkg = |e: &dyn std::fmt::Debug| Error::Dkg(format!("{e:?}"));
        let player = Player::new(info.clone(), key.clone()).map_err(|e| dkg(&e))?;
        let (dealer, public, private) =
            Dealer::start::<N3f1>(rand::rng(), info.clone(), key, None).map_err(|e| dkg(&e))?;
        let mut round = Self {
            peers: players.iter().filter(|p| **p != me).cloned().collect(),
            me: me.clone(),
            info,
            dealer: Some(dealer),
            deal: (public.clone(), private.into_iter().collect()),
            acked: BTreeSet::new(),
            player: Some(player),
            acks_sent: BTreeMap::new(),
            logs: BTreeMap::new(),
            dealt: None,
            done: BTreeMap::new(),
        };
        // This validator is its own first player.
        let own = round.deal.1.get(&me).cloned().ok_or_else(|| Error::Dkg("no dealing for myself".into()))?;
        let replies = round.handle(me.clone(), Msg::Deal(public, own))?;
        for (_, reply) in replies {
            round.handle(me.clone(), reply)?;
        }
        Ok(round)
    }

    /// Takes in one message; returns the replies, each with its addressee.
    fn handle(&mut self, from: PublicKey, msg: Msg) -> Result<Vec<(PublicKey, Msg)>, Error> {
        let mut replies = Vec::new();
        match msg {
            Msg::Deal(public, private) => {
                let Some(player) = self.player.as_mut() else { return Ok(replies) };
                match player.dealer_message::<N3f1>(from.clone(), public, private) {
                    Ok(Some(ack)) => {
                        self.acks_sent.insert(from.clone(), ack.clone());
                        replies.push((from, Msg::Ack(ack)));
                    }
                    // Seen before: the dealer lacks our ack.
                    Ok(None) => {
                        if let Some(ack) = self.acks_sent.get(&from) {
                            replies.push((from, Msg::Ack(ack.clone())));
                        }
                    }
                    Err(e) => {
                        return Err(Error::Dkg(format!("validator {from} dealt an invalid share: {e:?}")));
                    }
                }
            }
            Msg::Ack(ack) => {
                if let Some(dealer) = self.dealer.as_mut() {
                    match dealer.receive_player_ack(from.clone(), ack) {
                        Ok(()) => {
                            self.acked.insert(from);
                        }
                        Err(e) => warn!(%from, error = ?e, "unusable DKG acknowledgement"),
                    }
                    if self.acked.len() == self.peers.len() + 1
                        && let Some(dealer) = self.dealer.take()
                    {
                        let log = dealer.finalize::<N3f1>();
                        self.logs.insert(self.me.clone(), log);
                    }
                }
            }
            Msg::Log(log) => {
                let Some((dealer, _)) = log.clone().check(&self.info) else {
                    return Err(Error::Dkg(format!(
                        "validator {from} sent a dealer log that does not verify"
                    )));
                };
                if dealer != from {
                    return Err(Error::Dkg(format!("validator {from} relayed the dealer log of {dealer}")));
                }
                let log = *log;
                match self.logs.get(&dealer) {
                    Some(known) if known.encode() != log.encode() => {
                        return Err(Error::Dkg(format!(
                            "validator {dealer} sent two different dealer logs: the ceremony must be rerun"
                        )));
                    }
                    Some(_) => {}
                    None => {
                        self.logs.insert(dealer, log);
                    }
                }
            }
            Msg::Done(digest) => {
                self.done.insert(from, digest);
            }
        }
        self.finish_if_ready()?;
        Ok(replies)
    }

    fn finish_if_ready(&mut self) -> Result<(), Error> {
        if self.logs.len() < self.peers.len() + 1 {
            return Ok(());
        }
        let Some(player) = self.player.take() else { return Ok(()) };
        let mut logs = Logs::<MinSig, PublicKey, N3f1>::new(self.info.clone());
        for signed in self.logs.values() {
            let (dealer, log) = signed
                .clone()
                .check(&self.info)
                .ok_or_else(|| Error::Dkg("a dealer log stopped verifying".into()))?;
            logs.record(dealer, log);
        }
        let (output, share) = player
            .finalize::<N3f1>(&mut rand::rng(), logs, &Sequential)
            .map_err(|e| Error::Dkg(format!("the dealer logs give no key: {e:?}")))?;
        let encoded = output.encode();
        let digest = Hash32::digest(&[b"polylink-dkg-output-v1", &encoded]);
        let dealt = Dealt {
            share: hex::encode(share.encode()),
            polynomial: hex::encode(output.public().encode()),
            output_digest: digest.to_string(),
        };
        self.done.insert(self.me.clone(), digest);
        self.dealt = Some((dealt, digest));
        Ok(())
    }

    /// Everything some peer may still be waiting for.
    fn outbox(&self) -> Vec<(Recipients<PublicKey>, Msg)> {
        let mut out = Vec::new();
        for peer in self.peers.iter().filter(|p| !self.acked.contains(*p)) {
            if let Some(private) = self.deal.1.get(peer) {
                out.push((Recipients::One(peer.clone()), Msg::Deal(self.deal.0.clone(), private.clone())));
            }
        }
        let all = Recipients::Some(self.peers.clone());
        if let Some(log) = self.logs.get(&self.me) {
            out.push((all.clone(), Msg::Log(Box::new(log.clone()))));
        }
        if let Some((_, digest)) = &self.dealt {
            out.push((all, Msg::Done(*digest)));
        }
        out
    }

    /// The agreed result, once every validator announced the same output.
    fn agreed(&self) -> Result<Option<Dealt>, Error> {
        let Some((dealt, mine)) = &self.dealt else { return Ok(None) };
        if let Some((who, _)) = self.done.iter().find(|(_, d)| *d != mine) {
            return Err(Error::Dkg(format!(
                "validator {who} computed a different group key: a dealer equivocated; rerun the ceremony"
            )));
        }
        Ok((self.done.len() == self.peers.len() + 1).then(|| dealt.clone()))
    }

    /// Who has not done their part yet, for the timeout's message.
    fn missing(&self) -> String {
        let everyone = self.peers.iter().chain(std::iter::once(&self.me));
        let no_log: Vec<String> =
            everyone.clone().filter(|p| !self.logs.contains_key(*p)).map(|p| p.to_string()).collect();
        let not_done: Vec<String> =
            everyone.filter(|p| !self.done.contains_key(*p)).map(|p| p.to_string()).collect();
        let no_ack: Vec<String> =
            self.peers.iter().filter(|p| !self.acked.contains(*p)).map(|p| p.to_string()).collect();
        format!(
            "not acknowledged my dealing: [{}]; no dealer log from: [{}]; not finished: [{}]",
            no_ack.join(", "),
            no_log.join(", "),
            not_done.join(", ")
        )
    }
}

/// Runs this validator's part of the ceremony to the end: its share and the committee's public
/// polynomial, the same for every validator, or why there is none.
pub fn run(ceremony: Ceremony) -> Result<Dealt, Error> {
    let keys = ceremony
        .validators
        .iter()
        .map(|v| {
            let bytes = hex::decode(&v.public_key).map_err(|e| Error::Keys(format!("validator key: {e}")))?;
            PublicKey::read(&mut Copying(&bytes)).map_err(|e| Error::Keys(format!("validator key: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let players =
        Set::try_from(keys.clone()).map_err(|_| Error::Keys("duplicate validator public key".into()))?;
    let n = NonZeroU32::new(u32::try_from(players.len()).unwrap_or(0))
        .ok_or_else(|| Error::Keys("empty committee".into()))?;
    let me = ceremony.me.public_key();
    if players.position(&me).is_none() {
        return Err(Error::Keys(format!("this validator ({me}) is not in the committee")));
    }
    let mut ns = namespace(&ceremony.chain_id);
    ns.extend_from_slice(b"/dkg");
    let info = Info::<MinSig, PublicKey>::new::<N3f1>(
        &ns,
        ceremony.attempt,
        None,
        Mode::NonZeroCounter,
        Reveal::V1,
        players.clone(),
        players.clone(),
    )
    .map_err(|e| Error::Dkg(format!("{e:?}")))?;
    let peers: Vec<(PublicKey, Address)> = keys
        .iter()
        .zip(&ceremony.validators)
        .filter(|(k, _)| **k != me)
        .map(|(k, v)| (k.clone(), Address::from(v.address)))
        .collect();
    std::fs::create_dir_all(&ceremony.storage)
        .map_err(|source| Error::Io { path: ceremony.storage.clone(), source })?;
    let runtime = cw_tokio::Config::new()
        .with_storage_directory(ceremony.storage.clone())
        .with_worker_threads(2)
        .with_catch_panics(false);
    cw_tokio::Runner::new(runtime).start(|context| async move {
        let config = lookup::Config::local(
            crate::node::handshake(&ceremony.me),
            &ns,
            ceremony.listen,
            NZUsize!(players.len().max(1)),
            MESSAGE_BYTES_MAX,
            NZUsize!(1024),
        );
        let (mut network, mut oracle) = lookup::Network::new(context.child("p2p"), config);
        let (mut sender, mut receiver) = network.register(0, Quota::per_second(NZU32!(1_000)));
        let peers = Map::try_from(peers).map_err(|_| Error::Keys("duplicate validator".into()))?;
        let _ = oracle.track(0, peers);
        let network_handle = network.start();
        info!(%me, listen = %ceremony.listen, validators = players.len(), "DKG ceremony started");

        let mut round = Round::new(info, ceremony.me.clone(), &players)?;
        let deadline = tokio::time::Instant::now() + ceremony.timeout;
        let mut next_resend = tokio::time::Instant::now();
        let mut finished: Option<(Dealt, tokio::time::Instant)> = None;
        loop {
            let now = tokio::time::Instant::now();
            if let Some((dealt, at)) = &finished
                && now >= *at
            {
                network_handle.abort();
                return Ok(dealt.clone());
            }
            if finished.is_none() && now >= deadline {
                network_handle.abort();
                return Err(Error::Dkg(format!(
                    "the ceremony did not finish within {:?}: {}",
                    ceremony.timeout,
                    round.missing()
                )));
            }
            if now >= next_resend {
                for (to, msg) in round.outbox() {
                    sender.send(to, msg.to_bytes(ceremony.attempt), false);
                }
                next_resend = now + RESEND;
            }
            let message =
                tokio::time::timeout(next_resend.saturating_duration_since(now), receiver.recv()).await;
            let Ok(received) = message else { continue };
            let (from, bytes) =
                received.map_err(|e| Error::Dkg(format!("the ceremony's network stopped: {e}")))?;
            let msg = match Msg::from_bytes(bytes.as_ref(), n) {
                Ok((attempt, msg)) if attempt == ceremony.attempt => msg,
                Ok((attempt, _)) => {
                    debug!(%from, attempt, this = ceremony.attempt, "a message of another attempt; ignored");
                    continue;
                }
                Err(e) => {
                    warn!(%from, error = %e, "undecodable DKG message");
                    continue;
                }
            };
            for (to, reply) in round.handle(from, msg)? {
                sender.send(Recipients::One(to), reply.to_bytes(ceremony.attempt), false);
            }
            if finished.is_none()
                && let Some(dealt) = round.agreed()?
            {
                info!(%me, output = %dealt.output_digest, "DKG ceremony succeeded; lingering for late peers");
                // Announce at once, then keep answering for a while.
                for (to, msg) in round.outbox() {
                    sender.send(to, msg.to_bytes(ceremony.attempt), false);
                }
                finished = Some((dealt, tokio::time::Instant::now() + LINGER));
            }
        }
    })
}
