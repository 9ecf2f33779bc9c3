//! The encrypted key file `polylink join` and `polylink leave` keep an account in: its secret seed
//! sealed with ChaCha20-Poly1305 under a key Argon2id derives from the owner's passphrase (the
//! account's public key is bound in as associated data). The seed never appears on a command
//! line or in clear on disk; the passphrase comes from `POLYLINK_PASSPHRASE` or the file named by
//! `POLYLINK_PASSPHRASE_FILE`.

use anyhow::{Context, bail};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use polylink_types::SecretKey;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Argon2id memory, KiB (RFC 9106's second recommended setting: 64 MiB, 3 passes).
const KDF_MEMORY_KIB: u32 = 64 * 1024;
/// Argon2id passes.
const KDF_PASSES: u32 = 3;
/// Format version written.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    /// The account (public key), also the sealed seed's associated data.
    account: String,
    kdf: String,
    kdf_memory_kib: u32,
    kdf_passes: u32,
    salt: String,
    nonce: String,
    /// The 32-byte seed, sealed (ciphertext and tag).
    sealed: String,
}

/// The passphrase from `POLYLINK_PASSPHRASE`, else from the file `POLYLINK_PASSPHRASE_FILE`
/// names (its first line).
pub fn passphrase() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("POLYLINK_PASSPHRASE") {
        return non_empty(p);
    }
    if let Ok(path) = std::env::var("POLYLINK_PASSPHRASE_FILE") {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        return non_empty(text.lines().next().unwrap_or_default().to_string());
    }
    bail!(
        "the key file needs a passphrase: set POLYLINK_PASSPHRASE, or POLYLINK_PASSPHRASE_FILE to a file holding it"
    )
}

fn non_empty(p: String) -> anyhow::Result<String> {
    if p.is_empty() {
        bail!("the passphrase is empty");
    }
    Ok(p)
}

fn cipher(passphrase: &str, salt: &[u8], memory_kib: u32, passes: u32) -> anyhow::Result<ChaCha20Poly1305> {
    let params = argon2::Params::new(memory_kib, passes, 1, Some(32))
        .map_err(|e| anyhow::anyhow!("key file KDF parameters: {e}"))?;
    let kdf = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = [0u8; 32];
    kdf.hash_password_into(passphrase.as_bytes(), salt, &mut key)
        .map_err(|e| anyhow::anyhow!("deriving the key file's key: {e}"))?;
    Ok(ChaCha20Poly1305::new(&Key::from(key)))
}

/// Writes a new key file for a fresh random account at `path` (refusing to overwrite one).
pub fn create(path: &Path, passphrase: &str) -> anyhow::Result<SecretKey> {
    if path.exists() {
        bail!("{} exists already", path.display());
    }
    let seed: [u8; 32] = rand::random();
    let key = SecretKey::from_seed(seed);
    let account = key.public_key().to_string();
    let (salt, nonce): ([u8; 16], [u8; 12]) = (rand::random(), rand::random());
    let sealed = cipher(passphrase, &salt, KDF_MEMORY_KIB, KDF_PASSES)?
        .encrypt(&Nonce::from(nonce), Payload { msg: &seed, aad: account.as_bytes() })
        .map_err(|_| anyhow::anyhow!("sealing the key"))?;
    let file = KeyFile {
        version: VERSION,
        account,
        kdf: "argon2id".into(),
        kdf_memory_kib: KDF_MEMORY_KIB,
        kdf_passes: KDF_PASSES,
        salt: hex::encode(salt),
        nonce: hex::encode(nonce),
        sealed: hex::encode(sealed),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_private(path, serde_json::to_string_pretty(&file)?.as_bytes())?;
    Ok(key)
}

/// Writes `bytes` to a new file only its owner can read, whole or not at all.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if path.exists() {
        bail!("{} exists already; it is not overwritten", path.display());
    }
    polylink_chain::secret_file::write_private(path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// Opens the key file at `path` with `passphrase`.
pub fn open(path: &Path, passphrase: &str) -> anyhow::Result<SecretKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: KeyFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a PolyLink key file", path.display()))?;
    if file.version != VERSION || file.kdf != "argon2id" {
        bail!("{}: key file version {} with {} is not supported", path.display(), file.version, file.kdf);
    }
    let bytes = |what: &str, hex_text: &str| {
        hex::decode(hex_text).with_context(|| format!("{}: {what} is not hex", path.display()))
    };
    let salt = bytes("salt", &file.salt)?;
    let nonce: [u8; 12] = bytes("nonce", &file.nonce)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("{}: the nonce is not 12 bytes", path.display()))?;
    let sealed = bytes("sealed", &file.sealed)?;
    let seed = cipher(passphrase, &salt, file.kdf_memory_kib, file.kdf_passes)?
        .decrypt(&Nonce::from(nonce), Payload { msg: &sealed, aad: file.account.as_bytes() })
        .map_err(|_| anyhow::anyhow!("{}: wrong passphrase, or the file was altered", path.display()))?;
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| anyhow::anyhow!("{}: the sealed seed is not 32 bytes", path.display()))?;
    let key = SecretKey::from_seed(seed);
    if key.public_key().to_string() != file.account {
        bail!("{}: the sealed key is not the account the file names", path.display());
    }
    Ok(key)
}

/// Opens the key file at `path`, or creates one for a fresh account; says which.
pub fn open_or_create(path: &Path, passphrase: &str) -> anyhow::Result<(SecretKey, bool)> {
    if path.exists() { Ok((open(path, passphrase)?, false)) } else { Ok((create(path, passphrase)?, true)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_opens_with_its_passphrase_only_and_detects_tampering() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("key.json");
        let key = create(&path, "correct horse").unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!text.contains(&hex::encode(key.seed())), "the seed is not in clear");
        assert_eq!(open(&path, "correct horse").unwrap_or_else(|e| panic!("{e}")).seed(), key.seed());
        let wrong = open(&path, "wrong horse").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(wrong.contains("wrong passphrase"), "{wrong}");
        assert!(create(&path, "again").is_err(), "an existing key file is never overwritten");
        // Naming another account in the file breaks the seal (the account is associated data).
        let other = SecretKey::from_seed([9; 32]).public_key().to_string();
        let swapped = text.replace(&key.public_key().to_string(), &other);
        std::fs::write(&path, swapped).unwrap_or_else(|e| panic!("{e}"));
        assert!(open(&path, "correct horse").is_err());
        use std::os::unix::fs::PermissionsExt;
        let fresh = dir.path().join("fresh.json");
        let (_, created) = open_or_create(&fresh, "p").unwrap_or_else(|e| panic!("{e}"));
        assert!(created);
        let mode = std::fs::metadata(&fresh).unwrap_or_else(|e| panic!("{e}")).permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only its owner reads it");
    }
}
