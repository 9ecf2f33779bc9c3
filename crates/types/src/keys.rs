//! ed25519 signing keys and strict verification.

use crate::{Error, Hash32, PublicKey, Signature};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

/// A secret ed25519 key. Its `Debug` never prints the secret.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// The key whose 32-byte seed is `seed` (RFC 8032 secret key).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SecretKey(SigningKey::from_bytes(&seed))
    }

    /// A key derived deterministically from a label (dev and test accounts only).
    pub fn from_label(label: &str) -> Self {
        Self::from_seed(Hash32::digest(&[b"polylink-dev-key", label.as_bytes()]).0)
    }

    /// The 32-byte seed (store it only in a wallet file).
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public key (account address).
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(public {})", self.public_key())
    }
}

impl PublicKey {
    /// Verifies `signature` over `message` with RFC 8032 strict rules (no small-order keys,
    /// canonical `S`), so every accepted signature is non-malleable.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &sig).is_ok()
    }

    /// Checks that the bytes are a valid, non-weak ed25519 point.
    pub fn validate(&self) -> Result<(), Error> {
        match VerifyingKey::from_bytes(&self.0) {
            Ok(key) if !key.is_weak() => Ok(()),
            _ => Err(Error::InvalidPublicKey(self.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_reject_tampering() {
        let key = SecretKey::from_label("alice");
        let sig = key.sign(b"hello");
        assert!(key.public_key().verify(b"hello", &sig));
        assert!(!key.public_key().verify(b"hellp", &sig));
        let other = SecretKey::from_label("bob");
        assert!(!other.public_key().verify(b"hello", &sig));
        assert!(PublicKey([0u8; 32]).validate().is_err());
        assert!(key.public_key().validate().is_ok());
    }
}
