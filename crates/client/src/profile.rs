//! Persisting a device identity: its key seed, id, certificate and profile, in one file that
//! only its owner can read.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use commucat_ccp::control::UserInfo;
use commucat_keys::{DeviceCertificate, DeviceKeyPair, decode_hex32, encode_hex};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::ClientError;
use crate::handshake::{DeviceIdentity, PqDeviceKeys, SessionInfo};
use commucat_handshake::pq::DeviceSecrets;
use std::sync::Arc;

#[derive(Serialize, Deserialize)]
struct ProfileFile {
    device_id: String,
    /// Hex of the 32-byte device seed (secret).
    seed: Zeroizing<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    certificate: Option<DeviceCertificate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<UserInfo>,
    /// Post-quantum keys (secret), when the device has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pq: Option<PqFile>,
}

/// The device's post-quantum secrets as hex.
#[derive(Serialize, Deserialize)]
struct PqFile {
    /// ML-KEM-768 decapsulation key.
    kem_secret: Zeroizing<String>,
    /// ML-DSA-65 seed.
    signing_seed: Zeroizing<String>,
    /// One-time ML-KEM-768 decapsulation keys.
    #[serde(default)]
    one_time: Vec<Zeroizing<String>>,
}

impl PqFile {
    fn of(keys: &PqDeviceKeys) -> Result<Self, ClientError> {
        let secrets = keys.secrets().map_err(ClientError::Config)?;
        Ok(Self {
            kem_secret: Zeroizing::new(encode_hex(&secrets.kem_secret)),
            signing_seed: Zeroizing::new(encode_hex(&secrets.signing_seed)),
            one_time: secrets
                .one_time
                .iter()
                .map(|s| Zeroizing::new(encode_hex(s)))
                .collect(),
        })
    }

    fn keys(&self) -> Result<PqDeviceKeys, String> {
        let decode = |hex_text: &Zeroizing<String>| {
            hex::decode(hex_text.as_bytes())
                .map(Zeroizing::new)
                .map_err(|e| format!("pq: {e}"))
        };
        let secrets = DeviceSecrets {
            kem_secret: decode(&self.kem_secret)?,
            signing_seed: decode(&self.signing_seed)?,
            one_time: self.one_time.iter().map(decode).collect::<Result<_, _>>()?,
        };
        PqDeviceKeys::from_secrets(&secrets).map_err(|e| format!("pq: {e}"))
    }
}

impl DeviceIdentity {
    /// Takes over what a handshake established: a newly issued certificate, and the account
    /// the server resolved (so the next connect names the same user).
    pub fn adopt(&mut self, info: &SessionInfo) {
        if let Some(cert) = &info.issued_certificate {
            self.certificate = Some(cert.clone());
        }
        let mut user = info.user.clone().unwrap_or_default();
        user.id = Some(info.user_id.clone());
        user.user_id = None;
        self.user = Some(user);
    }

    /// Writes the identity to `path` (mode 0600, replaced atomically).
    ///
    /// # Errors
    /// [`ClientError::Config`] for any I/O failure.
    pub fn save(&self, path: &Path) -> Result<(), ClientError> {
        let io = |e: std::io::Error| ClientError::Config(format!("{}: {e}", path.display()));
        let file = ProfileFile {
            device_id: self.device_id.clone(),
            seed: Zeroizing::new(encode_hex(self.keys.seed().as_ref())),
            certificate: self.certificate.clone(),
            user: self.user.clone(),
            pq: self.pq.as_deref().map(PqFile::of).transpose()?,
        };
        let json = Zeroizing::new(
            serde_json::to_vec_pretty(&file).map_err(|e| ClientError::Config(e.to_string()))?,
        );
        let tmp = path.with_extension("tmp");
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        // A pre-existing temp file keeps its old mode through `open`: tighten it explicitly.
        out.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        out.write_all(&json).map_err(io)?;
        out.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads an identity written by [`DeviceIdentity::save`].
    ///
    /// # Errors
    /// [`ClientError::Config`] if the file is missing, readable by others, or malformed.
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        let fail = |what: String| ClientError::Config(format!("{}: {what}", path.display()));
        let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(fail(
                "readable by other users; expected mode 0600".to_owned(),
            ));
        }
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| fail(e.to_string()))?);
        let file: ProfileFile = serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))?;
        let seed =
            Zeroizing::new(decode_hex32(&file.seed).map_err(|e| fail(format!("seed: {e}")))?);
        let pq = file
            .pq
            .as_ref()
            .map(PqFile::keys)
            .transpose()
            .map_err(fail)?
            .map(Arc::new);
        Ok(Self {
            device_id: file.device_id,
            keys: DeviceKeyPair::from_seed(&seed),
            certificate: file.certificate,
            user: file.user,
            pq,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_and_load_round_trip_with_owner_only_mode() {
        let dir = std::env::temp_dir().join(format!("commucat-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("device.json");
        let identity = DeviceIdentity::generate("device-1").with_handle("alice");
        identity.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = DeviceIdentity::load(&path).unwrap();
        assert_eq!(loaded.device_id, "device-1");
        assert_eq!(loaded.keys.public_key(), identity.keys.public_key());
        assert_eq!(loaded.user.unwrap().handle.as_deref(), Some("alice"));
        assert!(loaded.pq.is_none());

        // Post-quantum keys survive the round trip.
        let identity = identity.with_pq_keys().unwrap();
        identity.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = DeviceIdentity::load(&path).unwrap();
        let (saved, read) = (identity.pq.unwrap(), loaded.pq.unwrap());
        assert_eq!(read.bundle(), saved.bundle());
        assert_eq!(
            read.bundle().one_time_keys.len(),
            crate::handshake::PQ_ONE_TIME_KEYS
        );

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(DeviceIdentity::load(&path).is_err());
        std::fs::write(&path, b"{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(DeviceIdentity::load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
