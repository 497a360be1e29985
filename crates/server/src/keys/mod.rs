//! The server's long-term keys: the Noise static X25519 key and the device-CA Ed25519 key.
//!
//! Each lives in `<data_dir>/keys/` as one line of lowercase hex (64 characters: the 32-byte
//! X25519 private key, or the 32-byte Ed25519 seed), mode 0600. A missing file is generated
//! on first run; a file that exists but does not parse is an error, never regenerated: clients
//! pin the Noise public key, so replacing it silently would lock them out.

pub mod federation;
pub mod keyring;
pub mod pq;
pub mod secrets;

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use commucat_keys::{DeviceKeyPair, KEY_LEN, OsRng, RngCore, decode_hex32, x25519_public};
use zeroize::Zeroizing;

use secrets::FileError;

/// Directory under the data directory that holds the key files.
pub const KEYS_DIR: &str = "keys";
/// File name of the Noise static private key.
pub const NOISE_STATIC_FILE: &str = "noise_static.key";
/// File name of the device-CA seed.
pub const DEVICE_CA_FILE: &str = "device_ca.key";

/// Why the server keys could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// Reading or writing a key file failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// A key file exists but does not hold a key.
    #[error(
        "{path}: corrupt key file: {reason}; restore it from a backup, or delete it to generate a new key (clients that pinned the old key must then be re-initialised)"
    )]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A key file a running server reloads is gone (it is never generated then).
    #[error("{path}: key file is missing; restore it from a backup")]
    Missing {
        /// The key file.
        path: PathBuf,
    },
}

/// The Noise static key pair (X25519). The private half is zeroized on drop.
#[derive(Clone)]
pub struct NoiseStaticKey {
    private: Zeroizing<[u8; KEY_LEN]>,
    public: [u8; KEY_LEN],
}

impl NoiseStaticKey {
    /// The key pair for a 32-byte X25519 private key.
    #[must_use]
    pub fn from_private(private: &[u8; KEY_LEN]) -> Self {
        Self {
            private: Zeroizing::new(*private),
            public: x25519_public(private),
        }
    }

    /// A fresh random key pair.
    #[must_use]
    pub fn generate() -> Self {
        let mut private = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(private.as_mut_slice());
        Self::from_private(&private)
    }

    /// The private key, for the Noise responder.
    #[must_use]
    pub fn private(&self) -> &[u8; KEY_LEN] {
        &self.private
    }

    /// The public key clients pin (`noise_public` in server-info).
    #[must_use]
    pub fn public(&self) -> [u8; KEY_LEN] {
        self.public
    }
}

impl fmt::Debug for NoiseStaticKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoiseStaticKey")
            .field("public", &hex::encode(self.public))
            .field("private", &"<redacted>")
            .finish()
    }
}

/// Both long-term server keys.
#[derive(Debug, Clone)]
pub struct ServerKeys {
    /// Noise static key (handshake responder identity).
    pub noise: NoiseStaticKey,
    /// Device certificate authority (signs device certificates).
    pub device_ca: DeviceKeyPair,
}

impl ServerKeys {
    /// Loads the keys from `<data_dir>/keys/`, generating each missing one.
    pub fn load_or_generate(data_dir: &Path) -> Result<Self, KeyStoreError> {
        let dir = data_dir.join(KEYS_DIR);
        secrets::create_private_dir(&dir)?;
        let noise = load_or_generate_key(&dir.join(NOISE_STATIC_FILE), "Noise static", || {
            NoiseStaticKey::generate().private.clone()
        })?;
        let ca_seed = load_or_generate_key(&dir.join(DEVICE_CA_FILE), "device CA", || {
            DeviceKeyPair::generate().seed()
        })?;
        Ok(Self {
            noise: NoiseStaticKey::from_private(&noise),
            device_ca: DeviceKeyPair::from_seed(&ca_seed),
        })
    }
}

/// Loads the current Noise static key of `data_dir` without generating one: a running server
/// reloading its keys treats a missing file as an error, never as a reason for a new key.
pub fn load_noise_static(data_dir: &Path) -> Result<NoiseStaticKey, KeyStoreError> {
    let path = data_dir.join(KEYS_DIR).join(NOISE_STATIC_FILE);
    let Some(bytes) = secrets::read_secret(&path)? else {
        return Err(KeyStoreError::Missing { path });
    };
    let private = parse_key_file(&path, &bytes)?;
    Ok(NoiseStaticKey::from_private(&private))
}

pub(crate) fn load_or_generate_key(
    path: &Path,
    label: &str,
    generate: impl FnOnce() -> Zeroizing<[u8; KEY_LEN]>,
) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyStoreError> {
    if let Some(bytes) = secrets::read_secret(path)? {
        if secrets::is_group_or_world_accessible(path)? {
            tracing::warn!(file = %path.display(), "key file is readable by group or others; chmod 600 it");
        }
        return parse_key_file(path, &bytes);
    }
    let key = generate();
    secrets::write_private_atomic(path, key_line(&key).as_bytes())?;
    tracing::info!(file = %path.display(), "generated {label} key");
    Ok(key)
}

/// `key` as one line of lowercase hex, in a buffer zeroized on drop.
pub(crate) fn key_line(key: &[u8; KEY_LEN]) -> Zeroizing<String> {
    // Exact capacity: the buffer never reallocates, so no unzeroized copy is left behind.
    let mut line = Zeroizing::new(String::with_capacity(2 * KEY_LEN + 1));
    for byte in key {
        // Writing to a String cannot fail.
        let _ = write!(line, "{byte:02x}");
    }
    line.push('\n');
    line
}

pub(crate) fn parse_key_file(
    path: &Path,
    bytes: &[u8],
) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyStoreError> {
    let corrupt = |reason: String| KeyStoreError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt("not UTF-8 text".to_owned()))?;
    decode_hex32(text.trim_ascii())
        .map(Zeroizing::new)
        .map_err(|e| corrupt(format!("expected 64 hex characters: {e}")))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn first_run_generates_and_later_runs_reuse_the_keys() {
        let data = tempfile::tempdir().unwrap();
        let first = ServerKeys::load_or_generate(data.path()).unwrap();
        let second = ServerKeys::load_or_generate(data.path()).unwrap();
        assert_eq!(first.noise.public(), second.noise.public());
        assert_eq!(first.noise.private(), second.noise.private());
        assert_eq!(first.device_ca.public_key(), second.device_ca.public_key());
        assert_ne!(first.noise.public(), first.device_ca.public_key());

        let noise_file = data.path().join("keys").join(NOISE_STATIC_FILE);
        let stored = std::fs::read_to_string(&noise_file).unwrap();
        assert_eq!(stored.trim(), hex::encode(first.noise.private()));
        assert_eq!(
            x25519_public(&decode_hex32(stored.trim()).unwrap()),
            first.noise.public()
        );
        let ca_file = data.path().join("keys").join(DEVICE_CA_FILE);
        let seed = decode_hex32(std::fs::read_to_string(&ca_file).unwrap().trim()).unwrap();
        assert_eq!(
            DeviceKeyPair::from_seed(&seed).public_key(),
            first.device_ca.public_key()
        );
        for file in [&noise_file, &ca_file] {
            let mode = std::fs::metadata(file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        }
        let dir_mode = std::fs::metadata(data.path().join("keys"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
    }

    #[test]
    fn corrupt_key_file_is_an_error_naming_the_file_and_is_kept() {
        let data = tempfile::tempdir().unwrap();
        ServerKeys::load_or_generate(data.path()).unwrap();
        let ca_file = data.path().join("keys").join(DEVICE_CA_FILE);
        std::fs::write(&ca_file, "not a key\n").unwrap();
        let error = ServerKeys::load_or_generate(data.path()).unwrap_err();
        assert!(matches!(error, KeyStoreError::Corrupt { .. }));
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("{}: corrupt key file", ca_file.display())),
            "{message}"
        );
        assert_eq!(std::fs::read_to_string(&ca_file).unwrap(), "not a key\n");

        std::fs::write(&ca_file, [0xff, 0xfe]).unwrap();
        assert!(
            ServerKeys::load_or_generate(data.path())
                .unwrap_err()
                .to_string()
                .contains("not UTF-8")
        );
    }

    #[test]
    fn operator_written_key_with_surrounding_whitespace_is_accepted() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("keys");
        std::fs::create_dir_all(&dir).unwrap();
        // RFC 7748 §6.1 Alice's key pair.
        let private = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
        std::fs::write(dir.join(NOISE_STATIC_FILE), format!("  {private}\r\n")).unwrap();
        let keys = ServerKeys::load_or_generate(data.path()).unwrap();
        assert_eq!(
            hex::encode(keys.noise.public()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
    }

    #[test]
    fn debug_redacts_the_private_key() {
        let key = NoiseStaticKey::from_private(&[0xab; 32]);
        let text = format!("{key:?}");
        assert!(!text.contains(&"ab".repeat(32)), "{text}");
        assert!(text.contains(&hex::encode(key.public())));
    }
}
