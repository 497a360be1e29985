//! Device key rotation over REST (`POST /api/devices/rotate`).

use std::net::SocketAddr;
use std::path::Path;

use commucat_keys::{DeviceCertificate, DeviceKeyPair, encode_hex, sign_rotation};
use serde::Deserialize;

use crate::transport::post_json;
use crate::{ClientError, DeviceIdentity, TlsTrust};

/// Path of the rotation endpoint.
pub const ROTATE_PATH: &str = "/api/devices/rotate";

/// What the server answered to a successful rotation.
#[derive(Debug, Clone)]
pub struct RotatedKey {
    /// The replaced public key.
    pub previous_public_key: [u8; 32],
    /// The certificate the server issued for the new key.
    pub certificate: DeviceCertificate,
}

#[derive(Deserialize)]
struct Answer {
    device_id: String,
    public_key: String,
    device_certificate: DeviceCertificate,
}

/// Where and how to reach the server's REST API.
#[derive(Debug, Clone, Copy)]
pub struct RestTarget<'a> {
    /// Server socket address.
    pub addr: SocketAddr,
    /// TLS server name.
    pub server_name: &'a str,
    /// How to trust the server certificate.
    pub trust: &'a TlsTrust,
}

/// Rotates `identity` to `new_keys`: signs the rotation with the current key at `now` (unix
/// seconds), posts it with the session token `bearer`, and on success replaces the identity's
/// keys and certificate and, if `save_to` is given, rewrites that identity file (mode 0600).
/// The server ends the device's sessions: connect again with the updated identity.
///
/// On failure the identity is unchanged (the server kept the old key too).
///
/// # Errors
/// [`ClientError::Config`] if the proof cannot be built (e.g. the new key is the current one)
/// or the file cannot be written; [`ClientError::Api`] for an error status;
/// [`ClientError::Protocol`] for an answer that does not match the request;
/// [`ClientError::Transport`] for connection failures.
pub async fn rotate_device_key(
    target: RestTarget<'_>,
    bearer: &str,
    identity: &mut DeviceIdentity,
    new_keys: DeviceKeyPair,
    now: i64,
    save_to: Option<&Path>,
) -> Result<RotatedKey, ClientError> {
    let new_public = new_keys.public_key();
    let proof = sign_rotation(&identity.keys, &identity.device_id, &new_public, now)
        .map_err(|e| ClientError::Config(format!("rotation proof: {e}")))?;
    let body = serde_json::to_vec(&serde_json::json!({
        "device_id": identity.device_id,
        "public_key": encode_hex(&new_public),
        "issued_at": now,
        "proof": encode_hex(&proof),
    }))
    .map_err(|e| ClientError::Config(e.to_string()))?;
    let (status, bytes) = post_json(
        target.addr,
        target.server_name,
        target.trust,
        ROTATE_PATH,
        Some(bearer),
        body,
    )
    .await?;
    if status != 200 {
        let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        return Err(ClientError::Api {
            path: ROTATE_PATH.to_owned(),
            status,
            detail,
        });
    }
    let answer: Answer = serde_json::from_slice(&bytes)
        .map_err(|e| ClientError::Protocol(format!("{ROTATE_PATH} answer: {e}")))?;
    let data = answer.device_certificate.data();
    if answer.device_id != identity.device_id
        || answer.public_key != encode_hex(&new_public)
        || data.public_key != new_public
        || data.device_id != identity.device_id
    {
        return Err(ClientError::Protocol(format!(
            "{ROTATE_PATH} answered for another device or key"
        )));
    }
    let previous_public_key = identity.keys.public_key();
    identity.keys = new_keys;
    identity.certificate = Some(answer.device_certificate.clone());
    if let Some(path) = save_to {
        identity.save(path)?;
    }
    Ok(RotatedKey {
        previous_public_key,
        certificate: answer.device_certificate,
    })
}
