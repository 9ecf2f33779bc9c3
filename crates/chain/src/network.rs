//! What a network's validators share, and the configs of their nodes. A network across machines
//! starts from a [`NetworkFile`] (the committee's public keys and addresses and the genesis with
//! real accounts) and a distributed key generation among its validators ([`crate::dkg`]); a
//! local one (`testnet-init`, N validators on 127.0.0.1, and the one-validator dev chain) is
//! dealt by a trusted dealer ([`configs`]), which is fine only when one party runs every node.
use crate::{
    Error,
    config::{Identity, NodeConfig, ValidatorEntry, deal_committee},
    dkg::Dealt,
};
use commonware_codec::Encode;
use commonware_cryptography::Signer;
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

/// What a local network looks like.
#[derive(Clone, Debug)]
pub struct NetworkSpec {
    /// Network id (make it unique per network: it is the consensus namespace).
    pub chain_id: String,
    /// Committee size.
    pub validators: usize,
    /// p2p port of validator 0; validator k listens on `p2p_base_port + k`.
    pub p2p_base_port: u16,
    /// RPC port of validator 0; validator k serves on `rpc_base_port + k`.
    pub rpc_base_port: u16,
    /// Empty-block pacing.
    pub block_interval_ms: u64,
    /// Mempool bound per node.
    pub mempool_capacity: usize,
    /// The ledger's genesis.
    pub genesis: toml::Value,
}

/// What every validator of a network agrees on before its first block: written once (`polylink
/// chain genesis`) and handed to each validator, it holds only public keys and addresses.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetworkFile {
    /// Network id: binds signatures, the genesis block and the consensus namespace.
    pub chain_id: String,
    /// Empty blocks at most this often.
    pub block_interval_ms: u64,
    /// Most pending transactions per node.
    pub mempool_capacity: usize,
    /// The committee: public keys and p2p addresses.
    pub validators: Vec<ValidatorEntry>,
    /// The ledger's genesis (real accounts and their balances).
    pub genesis: toml::Value,
}

impl NetworkFile {
    /// Reads and parses a network file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text =
            std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        toml::from_str(&text).map_err(|e| Error::Config { path: path.to_path_buf(), message: e.to_string() })
    }

    /// Writes it as TOML.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let text = toml::to_string(self)
            .map_err(|e| Error::Config { path: path.to_path_buf(), message: e.to_string() })?;
        std::fs::write(path, text).map_err(|source| Error::Io { path: path.to_path_buf(), source })
    }

    /// The entry of the validator whose public key is `public_key` (hex).
    pub fn validator(&self, public_key: &str) -> Option<&ValidatorEntry> {
        self.validators.iter().find(|v| v.public_key == public_key)
    }

    /// One validator's node config, from its identity and what its ceremony dealt it.
    pub fn node_config(
        &self,
        identity: &Identity,
        dealt: &Dealt,
        listen: SocketAddr,
        rpc: SocketAddr,
        data_dir: PathBuf,
    ) -> NodeConfig {
        NodeConfig {
            chain_id: self.chain_id.clone(),
            block_interval_ms: self.block_interval_ms,
            mempool_capacity: self.mempool_capacity,
            data_dir,
            listen,
            rpc,
            private_key: hex::encode(identity.private_key.encode()),
            share: dealt.share.clone(),
            polynomial: dealt.polynomial.clone(),
            validators: self.validators.clone(),
            genesis: self.genesis.clone(),
            faucet: None,
        }
    }
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// Deals a committee and returns one config per validator, in committee order.
pub fn configs(spec: &NetworkSpec, rng: impl CryptoRng) -> Result<Vec<NodeConfig>, Error> {
    let committee = deal_committee(rng, spec.validators)?;
    let port = |base: u16, k: usize| {
        u16::try_from(k)
            .ok()
            .and_then(|k| base.checked_add(k))
            .ok_or_else(|| Error::Keys(format!("port {base} + {k} overflows")))
    };
    let validators = committee
        .private_keys
        .iter()
        .enumerate()
        .map(|(k, key)| {
            Ok(ValidatorEntry {
                public_key: hex::encode(key.public_key().encode()),
                address: localhost(port(spec.p2p_base_port, k)?),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    committee
        .private_keys
        .iter()
        .zip(&committee.shares)
        .enumerate()
        .map(|(k, (key, share))| {
            Ok(NodeConfig {
                chain_id: spec.chain_id.clone(),
                block_interval_ms: spec.block_interval_ms,
                mempool_capacity: spec.mempool_capacity,
                data_dir: PathBuf::from("data"),
                listen: localhost(port(spec.p2p_base_port, k)?),
                rpc: localhost(port(spec.rpc_base_port, k)?),
                private_key: hex::encode(key.encode()),
                share: share.clone(),
                polynomial: committee.polynomial.clone(),
                validators: validators.clone(),
                genesis: spec.genesis.clone(),
                faucet: None,
            })
        })
        .collect()
}

/// Writes `out/node{k}/config.toml` for every validator and returns their paths.
pub fn testnet_init(spec: &NetworkSpec, out: &Path, rng: impl CryptoRng) -> Result<Vec<PathBuf>, Error> {
    configs(spec, rng)?
        .into_iter()
        .enumerate()
        .map(|(k, config)| {
            let dir = out.join(format!("node{k}"));
            std::fs::create_dir_all(&dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
            let path = dir.join("config.toml");
            config.save(&path)?;
            Ok(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};

    #[test]
    fn every_config_decodes_to_a_consistent_committee() {
        let spec = NetworkSpec {
            chain_id: "polylink-test".into(),
            validators: 4,
            p2p_base_port: 3000,
            rpc_base_port: 8645,
            block_interval_ms: 200,
            mempool_capacity: 100,
            genesis: toml::Value::Table(Default::default()),
        };
        let configs = configs(&spec, StdRng::seed_from_u64(7)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(configs.len(), 4);
        let identities: Vec<_> = configs
            .iter()
            .map(|c| {
                let keys = c.keys().unwrap_or_else(|e| panic!("{e}"));
                keys.verifier.identity().encode()
            })
            .collect();
        assert!(identities.windows(2).all(|w| w[0] == w[1]));
        let mut swapped = configs[0].clone();
        swapped.share = configs[1].share.clone();
        assert!(swapped.keys().is_err(), "a share of another validator must be refused");
    }
}
