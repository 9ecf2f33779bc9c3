//! Node configuration (`config.toml`) and committee key material: a trusted dealer deals the
//! threshold-BLS shares for a committee at `testnet-init` / dev-genesis time.
use crate::{Error, PublicKey, Scheme};
use commonware_codec::{Copying, Decode, DecodeExt, Encode, Read};
use commonware_cryptography::{
    Signer,
    bls12381::{
        dkg::feldman_desmedt::deal,
        primitives::{
            group::Share,
            sharing::{Mode, ModeVersion, Sharing},
            variant::MinSig,
        },
    },
    ed25519::PrivateKey,
};
use commonware_math::algebra::Random;
use commonware_utils::{
    N3f1,
    ordered::{Quorum, Set},
};
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use std::{
    net::SocketAddr,
    num::NonZeroU32,
    path::{Path, PathBuf},
};

/// One committee member as every node knows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ValidatorEntry {
    /// ed25519 public key (hex).
    pub public_key: String,
    /// Its p2p address.
    pub address: SocketAddr,
}

/// Everything one node process needs: identity, share, committee, ports, storage and genesis.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeConfig {
    /// Network id: binds signatures, the genesis block and the consensus namespace.
    pub chain_id: String,
    /// Empty blocks at most this often; a block with transactions is proposed at once.
    pub block_interval_ms: u64,
    /// Most pending transactions.
    pub mempool_capacity: usize,
    /// Storage directory (relative paths are relative to the config file).
    pub data_dir: PathBuf,
    /// p2p listen address.
    pub listen: SocketAddr,
    /// HTTP RPC listen address.
    pub rpc: SocketAddr,
    /// This node's ed25519 private key (hex).
    pub private_key: String,
    /// This node's threshold-BLS share (hex).
    pub share: String,
    /// The committee's public polynomial (hex); its constant term is the group key.
    pub polynomial: String,
    /// The committee, in any order.
    pub validators: Vec<ValidatorEntry>,
    /// The ledger's genesis, as the ledger defines it.
    pub genesis: toml::Value,
    /// A dev chain's faucet (`POST /faucet`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faucet: Option<FaucetConfig>,
}

/// A faucet: its funded account's seed and what it sends each account that asks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaucetConfig {
    /// The faucet account's ed25519 seed (hex).
    pub secret_seed: String,
    /// Base units each account gets, once.
    pub amount: u64,
}

/// A validator's identity (`polylink chain keygen`): its ed25519 key, made on its own machine
/// and never sent anywhere; the file is readable by its owner only.
pub struct Identity {
    /// The key.
    pub private_key: PrivateKey,
}

impl Identity {
    /// Loads the identity at `path`, or makes a new one there if the file does not exist.
    /// Returns it and whether it is new.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), Error> {
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let private_key = decode_hex("validator key file", text.trim())?;
                Ok((Self { private_key }, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let private_key = PrivateKey::random(rand::rng());
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let text = format!("{}\n", hex::encode(private_key.encode()));
                crate::secret_file::write_private(path, text.as_bytes()).map_err(io)?;
                Ok((Self { private_key }, true))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Its public key, hex, as a network file lists it.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.private_key.public_key().encode())
    }
}

/// Decoded key material of a node.
pub struct Keys {
    /// p2p identity and committee member key.
    pub private_key: PrivateKey,
    /// The committee's public keys, sorted.
    pub participants: Set<PublicKey>,
    /// This node's signing scheme.
    pub scheme: Scheme,
    /// A verifier that holds only the group key.
    pub verifier: Scheme,
}

fn decode_hex<T: Read<Cfg = ()>>(what: &str, text: &str) -> Result<T, Error> {
    let bytes = hex::decode(text).map_err(|e| Error::Keys(format!("{what}: {e}")))?;
    T::decode(Copying(bytes.as_slice())).map_err(|e| Error::Keys(format!("{what}: {e}")))
}

/// The consensus namespace of a chain: distinct per chain id, so seeds never repeat across
/// networks that happen to share a key.
pub(crate) fn namespace(chain_id: &str) -> Vec<u8> {
    format!("polylink-consensus-v1/{chain_id}").into_bytes()
}

impl NodeConfig {
    /// Reads and parses a config file; relative `data_dir` becomes relative to the file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text =
            std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let mut config: Self = toml::from_str(&text)
            .map_err(|e| Error::Config { path: path.to_path_buf(), message: e.to_string() })?;
        if config.data_dir.is_relative()
            && let Some(dir) = path.parent()
        {
            config.data_dir = dir.join(&config.data_dir);
        }
        Ok(config)
    }

    /// Writes the config as TOML, atomically and readable by its owner only (it holds the
    /// validator's private key and share).
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let text = toml::to_string(self)
            .map_err(|e| Error::Config { path: path.to_path_buf(), message: e.to_string() })?;
        crate::secret_file::write_private(path, text.as_bytes())
            .map_err(|source| Error::Io { path: path.to_path_buf(), source })
    }

    /// Decodes and cross-checks the key material against the committee.
    pub fn keys(&self) -> Result<Keys, Error> {
        let private_key: PrivateKey = decode_hex("private_key", &self.private_key)?;
        let share: Share = decode_hex("share", &self.share)?;
        let keys = self
            .validators
            .iter()
            .map(|v| decode_hex::<PublicKey>("validator public_key", &v.public_key))
            .collect::<Result<Vec<_>, _>>()?;
        let n = keys.len();
        let participants =
            Set::try_from(keys).map_err(|_| Error::Keys("duplicate validator public key".into()))?;
        let total = NonZeroU32::new(u32::try_from(n).unwrap_or(0))
            .ok_or_else(|| Error::Keys("empty committee".into()))?;
        let bytes = hex::decode(&self.polynomial).map_err(|e| Error::Keys(format!("polynomial: {e}")))?;
        let polynomial =
            Sharing::<MinSig>::decode_cfg(Copying(bytes.as_slice()), &(total, ModeVersion::v0()))
                .map_err(|e| Error::Keys(format!("polynomial: {e}")))?;
        if polynomial.required() != participants.quorum::<N3f1>() {
            return Err(Error::Keys(format!(
                "polynomial threshold {} does not fit a committee of {n}",
                polynomial.required()
            )));
        }
        let me = private_key.public_key();
        if participants.position(&me).map(|i| i as u32) != Some(share.index.get()) {
            return Err(Error::Keys("share index does not match this key's committee position".into()));
        }
        let ns = namespace(&self.chain_id);
        let verifier = Scheme::certificate_verifier(&ns, *polynomial.public());
        let scheme = Scheme::signer(&ns, participants.clone(), polynomial, share)
            .ok_or_else(|| Error::Keys("share does not match the public polynomial".into()))?;
        Ok(Keys { private_key, participants, scheme, verifier })
    }
}

/// A freshly dealt committee: keys sorted like the participant set, with matching shares.
pub(crate) struct Committee {
    /// Private keys, in the sorted order of their public keys.
    pub private_keys: Vec<PrivateKey>,
    /// The public polynomial (hex).
    pub polynomial: String,
    /// Shares (hex), aligned with `private_keys`.
    pub shares: Vec<String>,
}

/// Generates `n` identities and deals them threshold shares (quorum `n - (n-1)/3`).
pub(crate) fn deal_committee(mut rng: impl CryptoRng, n: usize) -> Result<Committee, Error> {
    let mut private_keys: Vec<PrivateKey> = (0..n).map(|_| PrivateKey::random(&mut rng)).collect();
    private_keys.sort_by_key(|k| k.public_key());
    let players = Set::try_from(private_keys.iter().map(|k| k.public_key()).collect::<Vec<_>>())
        .map_err(|_| Error::Keys("duplicate generated key".into()))?;
    let (output, shares) = deal::<MinSig, PublicKey, N3f1>(&mut rng, Mode::NonZeroCounter, players)
        .map_err(|e| Error::Keys(format!("deal: {e:?}")))?;
    let shares = private_keys
        .iter()
        .map(|k| {
            shares
                .get_value(&k.public_key())
                .map(|s| hex::encode(s.encode()))
                .ok_or_else(|| Error::Keys("dealer skipped a player".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Committee { polynomial: hex::encode(output.public().encode()), shares, private_keys })
}
