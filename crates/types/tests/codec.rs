#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Canonical encoding: round trips, signatures, limits, and decoders fed random or mutated bytes.

use polylink_types::codec::{DecodeExt, Encode};
use polylink_types::*;
use proptest::prelude::*;

fn hash(seed: u8) -> Hash32 {
    Hash32::digest(&[&[seed]])
}

fn key(i: u8) -> SecretKey {
    SecretKey::from_label(&format!("k{i}"))
}

fn kind_strategy() -> impl Strategy<Value = TxKind> {
    let pk = any::<u8>().prop_map(|i| key(i % 4).public_key());
    prop_oneof![
        (pk.clone(), any::<u128>()).prop_map(|(to, amount)| TxKind::Transfer(Transfer { to, amount })),
        any::<u128>().prop_map(|amount| TxKind::Bond(Bond { amount })),
        any::<u128>().prop_map(|amount| TxKind::Unbond(Unbond { amount })),
        Just(TxKind::Withdraw),
        Just(TxKind::RegisterValidator),
        ("[a-z0-9]{0,32}", any::<u32>(), any::<u16>(), any::<u128>()).prop_map(
            |(arch, layers, bps, floor)| {
                TxKind::RegisterModel(RegisterModel {
                    artifact_hash: hash(1),
                    claim: None,
                    architecture: BoundedString::new(arch).unwrap(),
                    layer_count: layers,
                    royalty_bps: bps,
                    price_floor: floor,
                })
            }
        ),
        (
            proptest::collection::vec(
                (any::<u64>(), any::<u32>(), any::<u32>(), any::<u32>()),
                0..=SERVED_MAX
            ),
            any::<u64>(),
            "[0-9a-f:.\\[\\]]{0,64}",
        )
            .prop_map(|(served, latency_us, endpoint)| TxKind::RegisterWorker(RegisterWorker {
                profile: DeviceProfile { memory_mib: 4096, bandwidth_kbps: 100_000, latency_us },
                endpoint: BoundedString::new(endpoint).unwrap(),
                served: BoundedVec::new(
                    served
                        .into_iter()
                        .map(|(model, a, b, t)| ServedRange {
                            model,
                            layer_start: a,
                            layer_end: b,
                            layer_time_us: t
                        })
                        .collect()
                )
                .unwrap(),
            })),
        (
            any::<u64>(),
            any::<u32>(),
            any::<u128>(),
            proptest::collection::vec(pk.clone(), 0..=STAGES_MAX),
            pk.clone(),
            any::<u64>(),
            proptest::option::of(pk.clone())
        )
            .prop_map(|(model, max_tokens, max_price, workers, gateway, seed, payer)| {
                TxKind::SubmitTask(SubmitTask {
                    model,
                    max_tokens,
                    prompt_hash: hash(2),
                    max_price,
                    workers: BoundedVec::new(workers).unwrap(),
                    gateway,
                    seed,
                    payer,
                    voucher: None,
                })
            }),
        (
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec((any::<u8>(), any::<u32>()), 0..=RECEIPTS_MAX)
        )
            .prop_map(|(p, c, work)| TxKind::SubmitResult(SubmitResult {
                task: hash(3),
                output_hash: hash(4),
                prompt_tokens: p,
                completion_tokens: c,
                receipts: BoundedVec::new(
                    work.into_iter()
                        .map(|(who, rows)| {
                            let sk = key(who % 4);
                            WorkReceipt {
                                task: hash(3),
                                worker: sk.public_key(),
                                layer_start: u32::from(who),
                                layer_end: u32::MAX,
                                rows,
                                fed: hash(5),
                                drawn: hash(6),
                            }
                            .sign(&sk)
                        })
                        .collect()
                )
                .unwrap(),
            })),
        Just(TxKind::CommitScore(CommitScore { task: hash(5), commitment: hash(6) })),
        any::<u16>().prop_map(|score| TxKind::RevealScore(RevealScore {
            task: hash(5),
            score,
            work: hash(9),
            salt: hash(7)
        })),
        Just(TxKind::ReclaimTask(ReclaimTask { task: hash(8) })),
        (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..200)).prop_map(|(model, bytes)| {
            let mut bytes = bytes;
            bytes.extend(developer_trailer(&key(1).public_key()));
            TxKind::ClaimModel(ClaimModel { model, claim: ArtifactClaim::from_artifact(&bytes).unwrap() })
        }),
        "[0-9a-f:.\\[\\]]{0,64}".prop_map(|endpoint| TxKind::RegisterGateway(RegisterGateway {
            endpoint: BoundedString::new(endpoint).unwrap()
        })),
        (pk.clone(), any::<u128>(), any::<u8>()).prop_map(|(gateway, limit, h)| TxKind::Allow(Allow {
            gateway,
            limit,
            key_hash: hash(h)
        })),
    ]
}

fn signed_strategy() -> impl Strategy<Value = SignedTx> {
    (any::<u8>(), any::<u64>(), kind_strategy()).prop_map(|(signer, nonce, kind)| {
        let sk = key(signer % 4);
        UnsignedTx { signer: sk.public_key(), nonce, kind }.sign(&sk, "polylink-test")
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn signed_tx_round_trips_and_verifies(tx in signed_strategy()) {
        let bytes = tx.to_bytes();
        prop_assert!(bytes.len() <= TX_BYTES_MAX);
        let back = SignedTx::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&back, &tx);
        prop_assert_eq!(back.id(), tx.id());
        prop_assert!(back.verify("polylink-test").is_ok());
        prop_assert!(back.verify("polylink-other").is_err());
        let json = serde_json::to_string(&tx).unwrap();
        prop_assert_eq!(serde_json::from_str::<SignedTx>(&json).unwrap(), tx);
    }

    #[test]
    fn trailing_or_truncated_bytes_are_rejected(tx in signed_strategy(), extra in 1u8..=255) {
        let mut bytes = tx.to_bytes();
        bytes.push(extra);
        prop_assert!(SignedTx::from_bytes(&bytes).is_err());
        bytes.truncate(bytes.len() - 2);
        prop_assert!(SignedTx::from_bytes(&bytes).is_err());
    }

    /// Any bytes that decode at all re-encode to exactly the same bytes (canonical), and a
    /// mutated signature byte or body byte never verifies.
    #[test]
    fn mutated_bytes_never_panic_and_decode_canonically(
        tx in signed_strategy(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = tx.to_bytes();
        for (at, x) in flips {
            let i = at % bytes.len();
            bytes[i] ^= x | 1;
        }
        if let Ok(decoded) = SignedTx::from_bytes(&bytes) {
            prop_assert_eq!(decoded.to_bytes(), bytes);
            prop_assert!(decoded.verify("polylink-test").is_err());
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(tx) = SignedTx::from_bytes(&bytes) {
            prop_assert_eq!(tx.to_bytes(), bytes.clone());
        }
        if let Ok(block) = Block::from_bytes(&bytes, &BlockLimits::default()) {
            prop_assert_eq!(block.encode().to_vec(), bytes);
        }
    }

    #[test]
    fn blocks_round_trip_and_respect_limits(txs in proptest::collection::vec(signed_strategy(), 0..6)) {
        let block = Block { height: 7, parent: hash(9), txs };
        let bytes = block.encode().to_vec();
        let back = Block::from_bytes(&bytes, &BlockLimits::default()).unwrap();
        prop_assert_eq!(back.digest(), block.digest());
        prop_assert_eq!(&back, &block);
        if !block.txs.is_empty() {
            let tight = BlockLimits { txs_max: block.txs.len() - 1 };
            prop_assert!(Block::from_bytes(&bytes, &tight).is_err());
        }
    }
}

#[test]
fn oversized_input_is_rejected_before_parsing() {
    let big = vec![0u8; TX_BYTES_MAX + 1];
    assert!(matches!(SignedTx::from_bytes(&big), Err(Error::TooLarge { .. })));
}

#[test]
fn unknown_kind_tag_is_rejected() {
    let sk = key(0);
    let tx = UnsignedTx { signer: sk.public_key(), nonce: 0, kind: TxKind::Withdraw }.sign(&sk, "c");
    let mut bytes = tx.to_bytes();
    // signer (32) + nonce (8) then the kind tag.
    bytes[40] = 200;
    assert!(SignedTx::from_bytes(&bytes).is_err());
}

#[test]
fn score_commitment_binds_score_salt_and_validator() {
    let v = key(1).public_key();
    let c = score_commitment(700, &hash(3), &hash(1), &v);
    assert_ne!(c, score_commitment(701, &hash(3), &hash(1), &v));
    assert_ne!(c, score_commitment(700, &hash(3), &hash(2), &v));
    assert_ne!(c, score_commitment(700, &hash(4), &hash(1), &v), "the work digest is bound");
    assert_ne!(c, score_commitment(700, &hash(3), &hash(1), &key(2).public_key()));
}

#[test]
fn bounded_fields_reject_json_over_limit() {
    let json = format!("{{\"to\":\"{}\",\"amount\":5}}", key(1).public_key());
    let t: Transfer = serde_json::from_str(&json).unwrap();
    assert_eq!(t.amount, 5);
    let too_long = "x".repeat(ARCHITECTURE_LEN_MAX + 1);
    assert!(serde_json::from_str::<BoundedString<ARCHITECTURE_LEN_MAX>>(&format!("\"{too_long}\"")).is_err());
    let endpoint = "1".repeat(ENDPOINT_LEN_MAX + 1);
    assert!(serde_json::from_str::<BoundedString<ENDPOINT_LEN_MAX>>(&format!("\"{endpoint}\"")).is_err());
}

/// A worker registration at every limit (most served ranges, the longest endpoint) still fits a
/// transaction, and an endpoint one byte over the limit does not decode.
#[test]
fn largest_worker_registration_fits_and_longer_endpoints_are_refused() {
    let range =
        ServedRange { model: u64::MAX, layer_start: u32::MAX, layer_end: u32::MAX, layer_time_us: u32::MAX };
    let register = RegisterWorker {
        profile: DeviceProfile { memory_mib: u64::MAX, bandwidth_kbps: u64::MAX, latency_us: u64::MAX },
        served: BoundedVec::new(vec![range; SERVED_MAX]).unwrap(),
        endpoint: BoundedString::new("9".repeat(ENDPOINT_LEN_MAX)).unwrap(),
    };
    let sk = key(0);
    let tx = UnsignedTx {
        signer: sk.public_key(),
        nonce: u64::MAX,
        kind: TxKind::RegisterWorker(register.clone()),
    }
    .sign(&sk, "polylink-test");
    let bytes = tx.to_bytes();
    assert!(bytes.len() <= TX_BYTES_MAX, "{} bytes", bytes.len());
    assert_eq!(SignedTx::from_bytes(&bytes).unwrap(), tx);
    // Lengthen the endpoint by one byte past the limit: the decoder refuses it.
    let mut long = register.encode().to_vec();
    let at = long.len() - ENDPOINT_LEN_MAX - 1;
    assert_eq!(long[at] as usize, ENDPOINT_LEN_MAX, "the endpoint's length prefix");
    long[at] += 1;
    long.push(b'9');
    assert!(RegisterWorker::decode(long.clone()).is_err());
    long[at] -= 1;
    long.pop();
    assert_eq!(RegisterWorker::decode(long.clone()).unwrap(), register);
}

#[test]
fn largest_result_fits_a_transaction() {
    let receipts: Vec<SignedReceipt> = (0..RECEIPTS_MAX as u8)
        .map(|i| {
            let sk = key(i);
            let receipt = WorkReceipt {
                task: hash(3),
                worker: sk.public_key(),
                layer_start: u32::MAX,
                layer_end: u32::MAX,
                rows: u32::MAX,
                fed: hash(5),
                drawn: hash(6),
            };
            receipt.sign(&sk)
        })
        .collect();
    let result = SubmitResult {
        task: hash(3),
        output_hash: hash(4),
        prompt_tokens: u32::MAX,
        completion_tokens: u32::MAX,
        receipts: BoundedVec::new(receipts).unwrap(),
    };
    let sk = key(0);
    let tx = UnsignedTx { signer: sk.public_key(), nonce: u64::MAX, kind: TxKind::SubmitResult(result) }
        .sign(&sk, &"c".repeat(CHAIN_ID_LEN_MAX));
    let bytes = tx.to_bytes();
    assert!(bytes.len() <= TX_BYTES_MAX, "{} bytes", bytes.len());
    assert_eq!(SignedTx::from_bytes(&bytes).unwrap(), tx);
    assert!(BoundedVec::<SignedReceipt, RECEIPTS_MAX>::new(vec![tx_receipt(); RECEIPTS_MAX + 1]).is_err());
}

fn tx_receipt() -> SignedReceipt {
    let sk = key(1);
    WorkReceipt {
        task: hash(3),
        worker: sk.public_key(),
        layer_start: 0,
        layer_end: 1,
        rows: 1,
        fed: hash(5),
        drawn: hash(6),
    }
    .sign(&sk)
}
