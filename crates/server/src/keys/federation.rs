//! The domain's federation key: an Ed25519 seed in `<data_dir>/keys/federation.key` (one line
//! of hex, mode 0600, generated on first start, never regenerated over a corrupt file). It
//! signs the digests of outbound federation events (wire-compat §13); peers pin its public
//! half, published in server-info and at [`WELL_KNOWN_PATH`].

use std::path::Path;

use commucat_keys::DeviceKeyPair;

use super::{KEYS_DIR, KeyStoreError, load_or_generate_key, secrets};

/// File name of the federation seed.
pub const FEDERATION_FILE: &str = "federation.key";
/// Where peers read this domain's federation key.
pub const WELL_KNOWN_PATH: &str = "/.well-known/commucat-federation";

/// Loads the federation key of `data_dir`, generating it if missing. The seed is read into
/// zeroized buffers; [`DeviceKeyPair`] zeroizes its signing key on drop.
///
/// # Errors
/// The key file cannot be read or written, or does not hold 64 hex characters.
pub fn load_or_generate(data_dir: &Path) -> Result<DeviceKeyPair, KeyStoreError> {
    let dir = data_dir.join(KEYS_DIR);
    secrets::create_private_dir(&dir)?;
    let seed = load_or_generate_key(&dir.join(FEDERATION_FILE), "federation", || {
        DeviceKeyPair::generate().seed()
    })?;
    Ok(DeviceKeyPair::from_seed(&seed))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn generated_once_owner_only_and_reused() {
        let data = tempfile::tempdir().unwrap();
        let first = load_or_generate(data.path()).unwrap();
        let second = load_or_generate(data.path()).unwrap();
        assert_eq!(first.public_key(), second.public_key());
        let file = data.path().join(KEYS_DIR).join(FEDERATION_FILE);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let seed = std::fs::read_to_string(&file).unwrap();
        assert_eq!(seed.trim(), hex::encode(first.seed().as_slice()));
        std::fs::write(&file, "garbage\n").unwrap();
        assert!(matches!(
            load_or_generate(data.path()),
            Err(KeyStoreError::Corrupt { .. })
        ));
    }
}
