//! A signed request: the user's own authorization, with its own key, for one request at one
//! gateway, which the ledger checks before the gateway can spend anything for it.
//!
//! The client hashes the exact request body it sends, caps what the request may cost and signs
//! that with its account key; the gateway puts the voucher in the SubmitTask that opens the
//! request's task. The ledger spends from the payer's deposit for that gateway only with a
//! voucher the payer signed, for that gateway and model, within its cap, before it expires, and
//! only once. Sent as the hex of its canonical encoding in [`VOUCHER_HEADER`].

use crate::codec_fields;
use crate::{Amount, Error, Hash32, ModelId, PublicKey, SecretKey, Signature};
use commonware_codec::{Copying, Decode, Encode};
use serde::{Deserialize, Serialize};

/// Domain separator for voucher signatures.
const VOUCHER_SIGNING_DOMAIN: &[u8] = b"polylink-voucher-v1";
/// The request header that carries a voucher (hex of [`SignedVoucher`]'s encoding).
pub const VOUCHER_HEADER: &str = "x-polylink-voucher";
/// Longest a voucher may live past the block that uses it, ms: the ledger remembers each used
/// voucher until it expires, so this bounds what it remembers.
pub const VOUCHER_TTL_MAX_MS: u64 = 10 * 60 * 1000;

/// What a payer authorizes for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voucher {
    /// The paying account (and the signer).
    pub payer: PublicKey,
    /// The only gateway that may use it.
    pub gateway: PublicKey,
    /// The on-chain model asked for.
    pub model: ModelId,
    /// sha256 of the exact HTTP request body.
    pub request_hash: Hash32,
    /// Most the request may take from the deposit: its escrow plus the fee of the transaction
    /// that opens it.
    #[serde(with = "crate::amount_serde")]
    pub max_spend: Amount,
    /// Chain time (ms) after which it is refused.
    pub expires_ms: u64,
    /// Random, so two identical requests are two vouchers.
    pub nonce: u64,
}
codec_fields!(Voucher { payer, gateway, model, request_hash, max_spend, expires_ms, nonce });

impl Voucher {
    /// The exact bytes signed: a domain tag, the chain id (length-prefixed), the canonical voucher.
    pub fn signing_message(&self, chain_id: &str) -> Vec<u8> {
        let id = chain_id.as_bytes();
        let mut msg = VOUCHER_SIGNING_DOMAIN.to_vec();
        msg.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        msg.extend_from_slice(id);
        msg.extend_from_slice(&self.encode());
        msg
    }

    /// Signs for `chain_id` with `key` (whose public key should be `self.payer`).
    pub fn sign(self, key: &SecretKey, chain_id: &str) -> SignedVoucher {
        let signature = key.sign(&self.signing_message(chain_id));
        SignedVoucher { voucher: self, signature }
    }

    /// Names the voucher for replay protection: sha256 of its canonical encoding.
    pub fn id(&self) -> Hash32 {
        Hash32::digest(&[b"polylink-voucher-id", &self.encode()])
    }
}

/// A voucher with its payer's signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedVoucher {
    /// What the payer authorizes.
    pub voucher: Voucher,
    /// ed25519 signature by `voucher.payer` over `voucher.signing_message(chain_id)`.
    pub signature: Signature,
}
codec_fields!(SignedVoucher { voucher, signature });

impl SignedVoucher {
    /// Whether the signature is the payer's for `chain_id`, by strict ed25519 rules.
    pub fn verify(&self, chain_id: &str) -> bool {
        self.voucher.payer.verify(&self.voucher.signing_message(chain_id), &self.signature)
    }

    /// The header value: hex of the canonical encoding.
    pub fn to_header(&self) -> String {
        hex::encode(self.encode())
    }

    /// Reads a header value written by [`SignedVoucher::to_header`] (whole, no trailing bytes).
    pub fn from_header(text: &str) -> Result<Self, Error> {
        let bytes = hex::decode(text.trim()).map_err(|_| Error::Hex {
            expected_bytes: 0,
            input: format!("a voucher in hex ({} characters)", text.len().min(4096)),
        })?;
        Ok(Self::decode_cfg(Copying(bytes.as_slice()), &())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voucher() -> Voucher {
        Voucher {
            payer: SecretKey::from_label("alice").public_key(),
            gateway: SecretKey::from_label("gateway").public_key(),
            model: 1,
            request_hash: Hash32::digest(&[b"{}"]),
            max_spend: 1_000,
            expires_ms: 60_000,
            nonce: 7,
        }
    }

    #[test]
    fn a_voucher_verifies_only_for_its_payer_and_chain_and_round_trips() {
        let alice = SecretKey::from_label("alice");
        let signed = voucher().sign(&alice, "dev");
        assert!(signed.verify("dev"));
        assert!(!signed.verify("other"), "bound to its chain");
        let forged = voucher().sign(&SecretKey::from_label("mallory"), "dev");
        assert!(!forged.verify("dev"), "signed by someone else than the payer");
        let mut changed = signed;
        changed.voucher.max_spend += 1;
        assert!(!changed.verify("dev"), "the cap is signed");
        let header = signed.to_header();
        assert_eq!(SignedVoucher::from_header(&header).ok(), Some(signed));
        for bad in ["", "zz", &header[..header.len() - 2], &format!("{header}00")] {
            assert!(SignedVoucher::from_header(bad).is_err(), "{bad}");
        }
        let mut again = voucher();
        assert_eq!(again.id(), voucher().id());
        again.nonce += 1;
        assert_ne!(again.id(), voucher().id(), "the nonce makes two identical requests two vouchers");
    }
}
