//! `POST /api/pair` (alias `/api/pairing`): an active device issues a pairing code for its
//! account; `POST /api/pair/claim` (alias `/api/pairing/claim`): a new device redeems it
//! (wire-compat §8).
//!
//! Two claim forms:
//!
//! - **public-key claim (preferred)**: the new device sends `public_key`, the Ed25519 public key
//!   of a key it generated itself. The server registers and certifies that key; it never sees
//!   a private key. Possession is proven at the device's first handshake (its Schnorr proof).
//! - **server-key claim** (the deployed client's flow, without `public_key`): the server
//!   generates the new device's seed and key and returns the private key in the answer, so the
//!   server (and anyone who can read the HTTPS answer) learns a device private key. It keeps no
//!   copy.
//!
//! Redeeming a code is the approval: no other policy (auto-approval, device limit) applies.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use commucat_ccp::ProblemKind;
use commucat_keys::{DeviceCertificate, DeviceCertificateData, DeviceKeyPair};
use commucat_store::{PairingRecord, RedeemOutcome, Store, StoreError, UserToCreate};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::auth::{Authenticated, store_problem};
use super::pairing_guard::Refusal;
use super::problem::{Problem, parse_json};
use super::{AppState, rfc3339};
use crate::clock::unix_now;
use crate::config::Bound;
use crate::listener::http::PeerAddr;
use crate::registry::{active_device_registration, random_id};

/// Symbols of a pairing code (no `I`, `L`, `O`, `0`, `1`).
pub(crate) const CODE_ALPHABET: &[u8; 31] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
/// Shortest pairing-code lifetime, seconds.
pub(crate) const MIN_TTL: i64 = 60;
/// Longest pairing-code lifetime, seconds.
pub(crate) const MAX_TTL: i64 = 3600;
/// Longest accepted `device_name`, bytes.
pub(crate) const MAX_DEVICE_NAME_LEN: usize = 128;

/// A fresh code `ABCD-EFGH`: 8 uniformly random symbols of [`CODE_ALPHABET`].
#[must_use]
pub(crate) fn new_code() -> String {
    let mut code = String::with_capacity(9);
    let mut symbols = 0;
    while symbols < 8 {
        let mut byte = [0u8; 1];
        OsRng.fill_bytes(&mut byte);
        let [value] = byte;
        // 248 = 8 × 31: rejecting the rest keeps every symbol equally likely.
        let Some(&symbol) = CODE_ALPHABET
            .get(usize::from(value % 31))
            .filter(|_| value < 248)
        else {
            continue;
        };
        if symbols == 4 {
            code.push('-');
        }
        code.push(char::from(symbol));
        symbols += 1;
    }
    code
}

/// Stores a fresh pairing code of `user_id`, issued by `issuer_device_id` at `now` and valid
/// until `expires_at`; a code already taken (31^8 of them: rare) is replaced by another, up to
/// five tries.
///
/// # Errors
/// The store failed, or five codes in a row were taken ([`StoreError::Conflict`]).
pub(crate) async fn create_code(
    store: &dyn Store,
    user_id: &str,
    issuer_device_id: &str,
    now: i64,
    expires_at: i64,
) -> Result<PairingRecord, StoreError> {
    let mut tries = 0;
    loop {
        let record = PairingRecord {
            code: new_code(),
            user_id: user_id.to_owned(),
            issuer_device_id: issuer_device_id.to_owned(),
            issued_at: now,
            expires_at,
            attempts: 0,
            redeemed_at: None,
            redeemed_device_id: None,
        };
        match store.create_pairing(record.clone()).await {
            Ok(()) => return Ok(record),
            Err(StoreError::Conflict(_)) if tries < 4 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

/// The code lifetime for a requested `ttl`: at most `configured`, then clamped to
/// [`MIN_TTL`]..=[`MAX_TTL`] (the configuration is validated to that range already).
#[must_use]
pub(crate) fn effective_ttl(requested: Option<i64>, configured: i64) -> i64 {
    requested
        .unwrap_or(configured)
        .min(configured)
        .clamp(MIN_TTL, MAX_TTL)
}

/// Body of `POST /api/pair`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct IssueRequest {
    /// Requested lifetime in seconds (`null`: the configured one).
    #[serde(default)]
    pub ttl: Option<i64>,
}

/// Answer of `POST /api/pair`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Issued {
    /// The code, `ABCD-EFGH`.
    pub pair_code: String,
    /// Issue time, RFC 3339.
    pub issued_at: String,
    /// Expiry, RFC 3339.
    pub expires_at: String,
    /// Lifetime in seconds.
    pub ttl: i64,
    /// Random hex the deployed client requires; unused and not stored (the claim generates the
    /// new device's seed).
    pub device_seed: String,
    /// The issuing device.
    pub issuer_device_id: String,
    /// Device-CA public key, hex.
    pub device_ca_public: String,
}

/// `POST /api/pair` `{"ttl": n|null}` → 200 [`Issued`].
///
/// # Errors
/// 400 bad body; 401 without a valid bearer; 503/500 on store failures.
#[utoipa::path(
    post, path = "/api/pair", tag = "pairing",
    request_body = IssueRequest,
    responses(
        (status = 200, description = "A pairing code", body = Issued),
        (status = 400, description = "Body is not the expected JSON or a value is out of range", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage unavailable", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn issue(
    State(state): State<AppState>,
    auth: Authenticated,
    body: Bytes,
) -> Result<Json<Issued>, Problem> {
    let request: IssueRequest = parse_json(&body)?;
    let ttl = effective_ttl(request.ttl, state.rest.pairing_ttl_secs);
    let now = unix_now();
    let code = create_code(
        state.store().as_ref(),
        &auth.user_id,
        &auth.device_id,
        now,
        now.saturating_add(ttl),
    )
    .await
    .map_err(|e| store_problem(&e))?
    .code;
    let mut seed = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(seed.as_mut_slice());
    tracing::info!(scope = "pairing", action = "issue", device = %auth.device_id, user = %auth.user_id, ttl, "pairing code issued");
    state.sessions.messaging().ledger.record("pairing", || {
        serde_json::json!({"event": "issue", "device": auth.device_id, "user": auth.user_id,
                           "ttl": ttl, "expires_at": now.saturating_add(ttl), "via": "rest"})
    });
    Ok(Json(Issued {
        pair_code: code,
        issued_at: rfc3339(now),
        expires_at: rfc3339(now.saturating_add(ttl)),
        ttl,
        device_seed: hex::encode(seed.as_slice()),
        issuer_device_id: auth.device_id,
        device_ca_public: state.rest.device_ca.public_key_hex(),
    }))
}

/// Body of `POST /api/pair/claim`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct ClaimRequest {
    /// The code (trimmed and upper-cased before lookup).
    pub pair_code: String,
    /// A name for the new device (echoed; not stored).
    #[serde(default)]
    pub device_name: Option<String>,
    /// The new device's own Ed25519 public key, hex (public-key claim). Without it the server
    /// generates the key (server-key claim).
    #[serde(default)]
    pub public_key: Option<String>,
}

/// `user` object of [`Claimed`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ClaimedUser {
    /// User id.
    pub id: String,
    /// Handle.
    pub handle: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Avatar URL.
    pub avatar_url: Option<String>,
}

/// Answer of `POST /api/pair/claim`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Claimed {
    /// The new device's id (64 hex).
    pub device_id: String,
    /// The device private key (Ed25519 seed / X25519 private), hex; server-key claims only.
    /// See the module docs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// The device public key, hex.
    pub public_key: String,
    /// The seed the key was derived from (private key = BLAKE3(seed)), hex; server-key claims
    /// only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// The device that issued the code.
    pub issuer_device_id: String,
    /// The account the device joined.
    pub user: ClaimedUser,
    /// Same as `user.id`.
    pub user_id: String,
    /// Echo of the request's `device_name`.
    pub device_name: Option<String>,
    /// The device certificate (canonical signed object).
    #[schema(value_type = Object)]
    pub device_certificate: serde_json::Value,
    /// Device-CA public key, hex.
    pub device_ca_public: String,
}

/// `POST /api/pair/claim` `{"pair_code", "device_name"?}` → 200 [`Claimed`]. No bearer.
///
/// Every claim naming an unknown, expired, redeemed or blocked code is a wrong guess, counted
/// against the client's address and the code's account ([`super::pairing_guard`]) and, durably,
/// against the code (`bounds.pairing_guesses_per_code` failed claims kill it).
///
/// # Errors
/// 400 bad body, expired or redeemed code; 404 unknown code; 429 `Too Many Pairing Attempts`
/// once the address, the account or the code has reached its cap of wrong guesses; 503/500 on
/// store failures.
#[utoipa::path(
    post, path = "/api/pair/claim", tag = "pairing",
    request_body = ClaimRequest,
    responses(
        (status = 200, description = "The device is registered; with `public_key` in the request the answer holds no private key", body = Claimed),
        (status = 400, description = "Bad body or key, expired or redeemed code", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown code", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many claims from this address, or too many wrong guesses from this address, for this account or for this code", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage unavailable", body = Problem, content_type = "application/problem+json")
    )
)]
pub(crate) async fn claim(
    State(state): State<AppState>,
    peer: Option<Extension<PeerAddr>>,
    body: Bytes,
) -> Result<Json<Claimed>, Problem> {
    let request: ClaimRequest = parse_json(&body)?;
    if request
        .device_name
        .as_ref()
        .is_some_and(|n| n.len() > MAX_DEVICE_NAME_LEN)
    {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("device_name is longer than {MAX_DEVICE_NAME_LEN} bytes"),
        ));
    }
    // A malformed body is refused before the code is looked at: it is no guess.
    let requested_key = request
        .public_key
        .as_deref()
        .map(parse_device_public)
        .transpose()?;
    let code = request.pair_code.trim().to_uppercase();
    let address = peer.map(|Extension(PeerAddr(addr))| addr.ip());
    let guard = Guesses {
        state: &state,
        address,
    };
    guard.check_address()?;
    let store = state.store();
    let Some(pairing) = store.pairing(&code).await.map_err(|e| store_problem(&e))? else {
        return Err(Problem::new(StatusCode::NOT_FOUND, "unknown pairing code"));
    };
    guard.check_account(&pairing.user_id)?;

    let now = unix_now();
    let (public_key, generated) = match requested_key {
        Some(key) => (key, None),
        None => {
            let mut seed = Zeroizing::new([0u8; 32]);
            OsRng.fill_bytes(seed.as_mut_slice());
            let keys = DeviceKeyPair::from_seed_material(seed.as_slice()).map_err(|e| {
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("key derivation: {e}"),
                )
            })?;
            (keys.public_key(), Some((seed, keys)))
        }
    };
    let device_id = random_id();
    let device_certificate =
        issue_certificate(&state.rest, &pairing.user_id, &device_id, public_key, now)?;
    // Redeeming the code is the approval: no device limit.
    let registration = active_device_registration(
        UserToCreate::Existing(pairing.user_id.clone()),
        &pairing.user_id,
        &device_id,
        public_key,
        now,
        None,
    );
    let outcome = store
        .redeem_pairing(
            &code,
            now,
            state.rest.pairing_attempts_per_code,
            registration,
        )
        .await
        .map_err(|e| store_problem(&e))?;
    let user = match outcome {
        RedeemOutcome::Redeemed(user) => {
            guard.right(&pairing.user_id);
            user
        }
        refused => {
            return Err(match refused {
                RedeemOutcome::Expired => Problem::bad_request("pairing code expired"),
                RedeemOutcome::AlreadyRedeemed => {
                    Problem::bad_request("pairing code already redeemed")
                }
                RedeemOutcome::TooManyAttempts => guard.refuse(
                    Bound::PairingGuessesPerCode,
                    "pairing code blocked after too many failed attempts; issue a new one",
                    None,
                ),
                _ => Problem::new(StatusCode::NOT_FOUND, "unknown pairing code"),
            });
        }
    };
    let form = if generated.is_some() {
        "server-key"
    } else {
        "public-key"
    };
    tracing::info!(scope = "pairing", action = "claim", form, device = %device_id, issuer = %pairing.issuer_device_id, user = %user.user_id, "pairing code redeemed; device registered");
    let ledger = &state.sessions.messaging().ledger;
    ledger.record("pairing", || {
        serde_json::json!({"event": "claim", "device": device_id, "user": user.user_id,
                           "issuer": pairing.issuer_device_id, "form": form})
    });
    ledger.record("device", || {
        serde_json::json!({"event": "register", "device": device_id, "user": user.user_id,
                           "via": "pairing"})
    });
    Ok(Json(Claimed {
        device_id,
        private_key: generated
            .as_ref()
            .map(|(_, keys)| hex::encode(keys.seed().as_slice())),
        public_key: hex::encode(public_key),
        seed: generated
            .as_ref()
            .map(|(seed, _)| hex::encode(seed.as_slice())),
        issuer_device_id: pairing.issuer_device_id,
        user_id: user.user_id.clone(),
        user: ClaimedUser {
            id: user.user_id,
            handle: user.handle,
            display_name: user.display_name,
            avatar_url: user.avatar_url,
        },
        device_name: request.device_name,
        device_certificate,
        device_ca_public: state.rest.device_ca.public_key_hex(),
    }))
}

/// The wrong-guess caps of one claim: its client address and the server's tables.
struct Guesses<'a> {
    state: &'a AppState,
    address: Option<std::net::IpAddr>,
}

impl Guesses<'_> {
    /// 429 once the client's address has used up its wrong guesses.
    fn check_address(&self) -> Result<(), Problem> {
        let guard = &self.state.rest.pairing_guard;
        guard
            .check_address(self.address, std::time::Instant::now())
            .map_err(|refusal| self.refused(refusal))
    }

    /// 429 once the code's account has used up its wrong guesses.
    fn check_account(&self, user_id: &str) -> Result<(), Problem> {
        let guard = &self.state.rest.pairing_guard;
        guard
            .check_account(user_id, std::time::Instant::now())
            .map_err(|refusal| self.refused(refusal))
    }

    /// Gives back the guesses counted for a claim that was right.
    fn right(&self, user_id: &str) {
        self.state
            .rest
            .pairing_guard
            .right_guess(self.address, user_id);
    }

    fn refused(&self, refusal: Refusal) -> Problem {
        let (bound, what, wait) = match refusal {
            Refusal::Address(wait) => (Bound::PairingGuessesPerIp, "from this address", wait),
            Refusal::Account(wait) => (Bound::PairingGuessesPerAccount, "for this account", wait),
        };
        let secs = wait.as_secs().saturating_add(1);
        self.refuse(
            bound,
            &format!("too many wrong pairing guesses {what}; retry in {secs} s"),
            Some(secs),
        )
    }

    /// A counted, ledgered 429 `Too Many Pairing Attempts`.
    fn refuse(&self, bound: Bound, detail: &str, retry_after: Option<u64>) -> Problem {
        let address = self.address.map(|ip| ip.to_string()).unwrap_or_default();
        self.state
            .sessions
            .messaging()
            .refuse(bound, "", &format!("{detail} (client {address})"));
        let problem = Problem::of_kind(ProblemKind::PairingAttemptsExceeded, detail);
        match retry_after {
            Some(secs) => problem.with_retry_after(secs),
            None => problem,
        }
    }
}

/// A device certificate for `public_key`, signed by the device CA and valid from `now` for
/// `certificate_validity`, as the JSON object the handshake also hands out.
///
/// # Errors
/// 500 if signing or encoding fails.
pub(super) fn issue_certificate(
    rest: &super::RestSettings,
    user_id: &str,
    device_id: &str,
    public_key: [u8; 32],
    now: i64,
) -> Result<serde_json::Value, Problem> {
    let internal = |e: &dyn std::fmt::Display| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("certificate: {e}"),
        )
    };
    let ca = &rest.device_ca;
    let certificate = DeviceCertificate::issue(
        ca.signing_key(),
        DeviceCertificateData {
            serial: OsRng.next_u64(),
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            public_key,
            issuer: ca.public_key(),
            issued_at: now,
            expires_at: now.saturating_add(rest.certificate_validity_secs),
        },
    )
    .map_err(|e| internal(&e))?;
    serde_json::to_value(&certificate).map_err(|e| internal(&e))
}

/// An Ed25519 public key from hex: 32 bytes, a valid point, not of small order.
pub(super) fn parse_device_public(hex: &str) -> Result<[u8; 32], Problem> {
    let bytes = commucat_keys::decode_hex32(hex.trim()).map_err(|e| {
        Problem::bad_request(format!("public_key: expected 64 hex characters: {e}"))
    })?;
    let key = commucat_keys::VerifyingKey::from_bytes(&bytes)
        .map_err(|_| Problem::bad_request("public_key is not an Ed25519 public key"))?;
    if key.is_weak() {
        return Err(Problem::bad_request("public_key is a small-order point"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_deployed_format() {
        for _ in 0..200 {
            let code = new_code();
            assert_eq!(code.len(), 9);
            assert_eq!(code.as_bytes()[4], b'-');
            assert!(
                code.bytes()
                    .enumerate()
                    .all(|(i, b)| i == 4 || CODE_ALPHABET.contains(&b)),
                "{code}"
            );
        }
    }

    #[test]
    fn ttl_is_capped_by_config_and_clamped() {
        assert_eq!(effective_ttl(None, 300), 300);
        assert_eq!(effective_ttl(Some(120), 300), 120);
        assert_eq!(effective_ttl(Some(10_000), 300), 300);
        assert_eq!(effective_ttl(Some(5), 300), 60);
        assert_eq!(effective_ttl(Some(-1), 300), 60);
        assert_eq!(effective_ttl(None, 3600), 3600);
    }
}
