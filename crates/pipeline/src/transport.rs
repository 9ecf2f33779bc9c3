//! Authenticated, encrypted links between the pipeline head and its stages.
//!
//! Both ends are identified by ed25519 keys (a worker's key is its on-chain key). The handshake
//! is Commonware's SAKE (mutual authentication bound to a namespace and both identities) and
//! the records are sealed with ChaCha20-Poly1305 (CUPS), so nothing crosses the wire in clear.
//! Each message is one [`crate::wire`] frame, bounded by [`WireLimits::frame_bytes_max`].
//!
//! Before the handshake both ends send a 10-byte preamble in the clear: `polylink` and the stage
//! protocol version ([`STAGE_PROTOCOL_VERSION`], big-endian `u16`). Ends of different versions
//! part with an error that names both versions, instead of failing the handshake for no stated
//! reason or misreading each other's frames.

use crate::PipelineError;
use crate::wire::{self, Request, Response, WireLimits};
use commonware_codec::{Encode, Read};
use commonware_cryptography::ChaCha20Poly1305;
use commonware_cryptography::ed25519::{PrivateKey, PublicKey};
use commonware_runtime::{Clock, Network, Sink, SinkOf, Stream, StreamOf};
use commonware_stream::cups::{self, Cups};
use commonware_stream::sake::{self, Sake};
use commonware_stream::utils::Timeout;
use commonware_stream::{SakeCups, Upgrader as _};
use rand_core::CryptoRng;
use std::net::SocketAddr;
use std::time::Duration;

/// Namespace that binds handshakes to the PolyLink stage protocol.
pub const NAMESPACE: &[u8] = b"polylink-stage-v1";

/// The stage protocol this build speaks (the preamble, handshake namespace and frames); raised
/// with any change to them.
pub const STAGE_PROTOCOL_VERSION: u16 = 2;

/// First bytes of the preamble.
const PREAMBLE_TAG: &[u8; 8] = b"polylink";

/// This end's preamble.
pub fn preamble() -> Vec<u8> {
    let mut bytes = PREAMBLE_TAG.to_vec();
    bytes.extend_from_slice(&STAGE_PROTOCOL_VERSION.to_be_bytes());
    bytes
}

/// Sends this end's preamble and reads the peer's (within the handshake timeout); refuses a peer
/// that is not a stage endpoint or speaks another version.
async fn agree_version<E: Clock, I: Stream, O: Sink>(
    context: &E,
    mut stream: I,
    mut sink: O,
    peer: &str,
) -> Result<(I, O), PipelineError> {
    let exchange = async move {
        let sent = sink.send(preamble()).await;
        let got = stream.recv(PREAMBLE_TAG.len() + 2).await;
        (stream, sink, sent, got)
    };
    let (stream, sink, sent, got) = context
        .timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .map_err(|_| PipelineError::Link(format!("{peer} sent no protocol preamble in time")))?;
    let failed = |e: commonware_runtime::Error| PipelineError::Link(format!("preamble with {peer}: {e}"));
    sent.map_err(failed)?;
    let got = got.map_err(failed)?.coalesce();
    let bytes: &[u8] = got.as_ref();
    let version = match bytes.strip_prefix(PREAMBLE_TAG.as_slice()) {
        Some([a, b]) => u16::from_be_bytes([*a, *b]),
        _ => return Err(PipelineError::Link(format!("{peer} is not a PolyLink stage endpoint"))),
    };
    if version != STAGE_PROTOCOL_VERSION {
        return Err(PipelineError::Link(format!(
            "{peer} speaks stage protocol version {version}, this build speaks \
             {STAGE_PROTOCOL_VERSION}: run the same release on both ends"
        )));
    }
    Ok((stream, sink))
}

/// How long a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

type Upgrader = Timeout<SakeCups<PrivateKey, ChaCha20Poly1305>>;

/// The upgrader for a local identity.
pub fn upgrader(key: PrivateKey) -> Upgrader {
    let handshake = Cups::<_, ChaCha20Poly1305>::new(
        Sake {
            signer: key,
            synchrony_bound: Duration::from_secs(10),
            max_handshake_age: Duration::from_secs(10),
            version: sake::Version::V1,
        },
        cups::Version::V1,
    );
    Timeout::new(handshake, HANDSHAKE_TIMEOUT)
}

/// One end of an established link: sends `Out` frames, receives `In` frames.
pub struct Link<Tx, Rx> {
    sender: Tx,
    receiver: Rx,
    limits: WireLimits,
    /// The authenticated peer.
    pub peer: PublicKey,
}

impl<Tx: commonware_stream::Sender, Rx: commonware_stream::Receiver> Link<Tx, Rx> {
    async fn send_frame(&mut self, frame: Vec<u8>) -> Result<(), PipelineError> {
        self.sender.send(frame).await.map_err(|e| PipelineError::Link(e.to_string()))
    }

    async fn recv_frame(&mut self) -> Result<Vec<u8>, PipelineError> {
        let bufs = self.receiver.recv().await.map_err(|e| PipelineError::Link(e.to_string()))?;
        Ok(Vec::from(bufs.coalesce()))
    }

    /// Head side: sends a request and waits for its response.
    pub async fn call(&mut self, request: &Request) -> Result<Response, PipelineError> {
        self.send_frame(wire::encode(request)).await?;
        let frame = self.recv_frame().await?;
        wire::decode::<Response>(&frame, &self.limits).map_err(|e| PipelineError::Decode(e.to_string()))
    }

    /// Stage side: the next request, or `None` when the peer closed the link.
    pub async fn next_request(&mut self) -> Result<Option<Request>, PipelineError> {
        let frame = match self.receiver.recv().await {
            Ok(bufs) => Vec::from(bufs.coalesce()),
            Err(e) => {
                tracing::info!("link closed: {e}");
                return Ok(None);
            }
        };
        wire::decode::<Request>(&frame, &self.limits)
            .map(Some)
            .map_err(|e| PipelineError::Decode(e.to_string()))
    }

    /// Stage side: answers the current request.
    pub async fn respond(&mut self, response: &Response) -> Result<(), PipelineError> {
        self.send_frame(response.encode().to_vec()).await
    }
}

/// A link dialed over the network of runtime `E`.
pub type DialedLink<E> = Link<
    <Upgrader as commonware_stream::Upgrader>::Sender<StreamOf<E>, SinkOf<E>>,
    <Upgrader as commonware_stream::Upgrader>::Receiver<StreamOf<E>, SinkOf<E>>,
>;

/// Dials `addr`, authenticates it as `peer`, and returns the link.
pub async fn dial<E>(
    context: E,
    key: PrivateKey,
    addr: SocketAddr,
    peer: PublicKey,
    limits: WireLimits,
) -> Result<DialedLink<E>, PipelineError>
where
    E: Clock + Network + CryptoRng,
{
    let (sink, stream) =
        context.dial(addr).await.map_err(|e| PipelineError::Link(format!("dial {addr}: {e}")))?;
    let (stream, sink) = agree_version(&context, stream, sink, &addr.to_string()).await?;
    let (sender, receiver) = upgrader(key)
        .dial(context, NAMESPACE, limits.frame_bytes_max(), peer.clone(), stream, sink)
        .await
        .map_err(|e| PipelineError::Link(format!("handshake with {addr}: {e}")))?;
    Ok(Link { sender, receiver, limits, peer })
}

/// Authenticates an accepted connection; `admit` decides which peers may connect.
pub async fn accept<E, I, O>(
    context: E,
    key: PrivateKey,
    stream: I,
    sink: O,
    limits: WireLimits,
    admit: impl FnOnce(PublicKey) -> bool + Send,
) -> Result<Link<impl commonware_stream::Sender, impl commonware_stream::Receiver>, PipelineError>
where
    E: Clock + CryptoRng,
    I: Stream,
    O: Sink,
{
    let (stream, sink) = agree_version(&context, stream, sink, "the dialer").await?;
    let (peer, sender, receiver) = upgrader(key)
        .listen(context, NAMESPACE, limits.frame_bytes_max(), |pk| async move { admit(pk) }, stream, sink)
        .await
        .map_err(|e| PipelineError::Link(format!("handshake: {e}")))?;
    Ok(Link { sender, receiver, limits, peer })
}

/// Reads a 32-byte ed25519 seed as a key.
pub fn key_from_seed(seed: &[u8; 32]) -> Result<PrivateKey, PipelineError> {
    PrivateKey::read_cfg(&mut commonware_codec::Copying(seed), &())
        .map_err(|e| PipelineError::Decode(format!("ed25519 seed: {e}")))
}

/// The account key behind a link key (the same ed25519 seed), which signs receipts.
pub fn account_key(key: &PrivateKey) -> polylink_types::SecretKey {
    let mut seed = [0u8; 32];
    let encoded = key.encode();
    let n = encoded.len().min(32);
    seed[..n].copy_from_slice(&encoded[..n]);
    polylink_types::SecretKey::from_seed(seed)
}

/// The link key whose 32 raw bytes are `bytes` (an account key on chain or in a ready line).
pub fn peer_from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, PipelineError> {
    PublicKey::read_cfg(&mut commonware_codec::Copying(bytes), &())
        .map_err(|e| PipelineError::Decode(format!("ed25519 public key: {e}")))
}

/// The 32 raw bytes of a public key (session owner ids, logs).
pub fn peer_bytes(peer: &PublicKey) -> [u8; 32] {
    let mut out = [0u8; 32];
    let encoded = peer.encode();
    let n = encoded.len().min(32);
    out[..n].copy_from_slice(&encoded[..n]);
    out
}
