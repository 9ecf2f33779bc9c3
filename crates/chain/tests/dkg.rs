//! The committee's key ceremony on 127.0.0.1: when a listed validator never takes part, the
//! others give up at their timeout with no key and name it, rather than deal a committee that
//! cannot reach quorum on its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use commonware_codec::Encode;
use commonware_cryptography::{Signer, ed25519::PrivateKey};
use commonware_math::algebra::Random;
use polylink_chain::{
    ValidatorEntry,
    dkg::{Ceremony, run},
};
use std::{net::SocketAddr, time::Duration};

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[test]
fn a_ceremony_missing_a_validator_fails_and_names_it() {
    let keys: Vec<PrivateKey> = (0..4).map(|_| PrivateKey::random(rand::rng())).collect();
    let validators: Vec<ValidatorEntry> = keys
        .iter()
        .map(|k| ValidatorEntry { public_key: hex::encode(k.public_key().encode()), address: free_addr() })
        .collect();
    let absent = keys[3].public_key().to_string();
    let dir = tempfile::tempdir().unwrap();
    let ceremonies: Vec<_> = (0..3)
        .map(|k| {
            let ceremony = Ceremony {
                chain_id: "polylink-dkg-absent".into(),
                validators: validators.clone(),
                me: keys[k].clone(),
                listen: validators[k].address,
                timeout: Duration::from_secs(4),
                storage: dir.path().join(format!("v{k}")),
                attempt: 0,
            };
            std::thread::spawn(move || run(ceremony))
        })
        .collect();
    for handle in ceremonies {
        let error = handle.join().unwrap().expect_err("no key without every validator").to_string();
        assert!(error.contains("did not finish"), "{error}");
        assert!(error.contains(&absent), "the absent validator is named: {error}");
    }
}
