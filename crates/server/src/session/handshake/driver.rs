//! Drives the handshake machine on a connection: frames, queries, notices, reports.

use commucat_ccp::FrameType;
use commucat_handshake::server::{
    Established as Done, IdentityRules, Input, Notice, Outgoing, ServerConfig, ServerHandshake,
    Step,
};
use commucat_handshake::{HandshakeError, LinkFailure, Stage};
use commucat_link::obf::{ObfPolicy, Obfuscator, Role};
use commucat_link::{ByteStream, ConnError, Connection, StreamError};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroize;

use super::store::{profile_field, user_record};
use super::{Established, HandshakeFailure, Handshaker};
use crate::registry::{
    MAX_DEVICE_ID_LEN, MAX_HANDLE_LEN, session_key, valid_device_id, valid_handle,
};

/// The machine's view of a link failure.
fn link_failure(error: &ConnError) -> LinkFailure {
    match error {
        ConnError::Stream(StreamError::Codec(codec)) => LinkFailure::Decode {
            kind: codec.kind(),
            detail: codec.to_string(),
        },
        ConnError::Stream(StreamError::Noise(noise)) => LinkFailure::Noise(noise.to_string()),
        // Wrappers start after the ACK; a handshake never sees one.
        ConnError::Stream(StreamError::Obfuscation(obf)) => LinkFailure::Noise(obf.to_string()),
        // A record-layer failure like a record that does not open (no ratchet runs before
        // the session is established).
        ConnError::Stream(StreamError::Ratchet(ratchet)) => LinkFailure::Noise(ratchet.to_string()),
        ConnError::Stream(StreamError::Fec(fec)) => LinkFailure::Decode {
            kind: commucat_ccp::ProblemKind::UnexpectedFrame,
            detail: fec.to_string(),
        },
        ConnError::Io(io) => LinkFailure::Io(io.to_string()),
        ConnError::SequenceExhausted(_) => LinkFailure::SequenceExhausted,
        ConnError::Codec(codec) => LinkFailure::Codec(codec.to_string()),
    }
}

impl Handshaker {
    /// The machine's configuration, borrowed from the settings.
    fn config(&self) -> ServerConfig<'_> {
        let s = &*self.settings;
        ServerConfig {
            domain: &s.domain,
            prologue: &s.prologue,
            device_ca: &s.device_ca,
            auto_approve: s.auto_approve,
            max_auto_devices_per_user: s.max_auto_devices_per_user,
            certificate_validity_secs: s.certificate_validity_secs,
            renewal_margin_secs: s.renewal_margin_secs,
            session_ttl_secs: s.session_ttl_secs,
            keepalive_secs: s.keepalive_secs,
            clock_skew_secs: s.clock_skew_secs,
            profile: &s.profile,
            identity: IdentityRules {
                valid_device_id,
                valid_handle,
                max_device_id_len: MAX_DEVICE_ID_LEN,
                max_handle_len: MAX_HANDLE_LEN,
            },
            pq_hybrid: s.pq_hybrid,
            adaptive_obf: s.adaptive_obf,
        }
    }

    /// Runs the server side of the handshake on `conn`. On failure the caller sends
    /// [`HandshakeFailure::problem`] (when it can reply) and closes the stream; use
    /// [`Handshaker::run_and_report`] to have that done.
    ///
    /// # Errors
    /// A [`HandshakeFailure`] describing the first check that failed.
    pub async fn run<S: ByteStream>(
        &self,
        conn: &mut Connection<S>,
    ) -> Result<Established, HandshakeFailure> {
        let mut machine = ServerHandshake::new(self.config(), OsRng);
        let mut step = machine.start();
        loop {
            for notice in machine.take_notices() {
                self.observe(notice);
            }
            step = match step {
                Step::Recv => match conn.recv().await {
                    Ok(Some(frame)) => {
                        self.metrics.frames_in.count(frame.frame_type());
                        machine.handle(Input::Frame(frame))
                    }
                    Ok(None) => machine.handle(Input::Closed),
                    Err(e) => machine.handle(Input::Link(link_failure(&e))),
                },
                Step::Send(outgoing) => {
                    let sent = match &outgoing {
                        Outgoing::Auth(auth) => {
                            conn.send_control(FrameType::Auth, 0, auth.as_ref()).await
                        }
                        Outgoing::Ack(ack) => {
                            conn.send_control(FrameType::Ack, 0, ack.as_ref()).await
                        }
                    };
                    match sent {
                        Ok(()) => {
                            self.metrics.frames_out.count(outgoing.frame_type());
                            machine.handle(Input::Sent)
                        }
                        Err(e) => machine.handle(Input::Link(link_failure(&e))),
                    }
                }
                Step::Query(query) => {
                    let answer = self.answer(query).await;
                    machine.handle(Input::Answer(answer))
                }
                Step::Established(done) => {
                    return established(conn, *done, self.settings.obf_max_padding);
                }
                Step::Failed(failure) => return Err(failure),
            };
        }
    }

    /// Counts and records a side effect of the machine.
    fn observe(&self, notice: Notice) {
        match notice {
            Notice::ProfileRefused {
                field,
                device_id,
                detail,
            } => {
                let bound = profile_field(field).bound();
                self.metrics.bound_refusals.count(bound);
                self.ledger.record("bound", || {
                    serde_json::json!({"bound": bound.name(), "device_id": device_id,
                                       "detail": detail})
                });
            }
            Notice::Registered { device_id, user_id } => {
                tracing::info!(scope = "device", action = "register", device = %device_id, user = %user_id, "device registered");
                self.ledger.record("device", || {
                    serde_json::json!({
                        "event": "register",
                        "device": device_id,
                        "user": user_id,
                        "via": "handshake",
                    })
                });
            }
        }
    }

    /// Runs the handshake within `timeout`; on failure sends the ERROR frame (when the stream
    /// can carry it) and logs the failure with scope, result, reason and stage.
    ///
    /// # Errors
    /// The failure, after it has been reported.
    pub async fn run_and_report<S: ByteStream>(
        &self,
        conn: &mut Connection<S>,
        remote: &str,
        timeout: std::time::Duration,
    ) -> Result<Established, HandshakeFailure> {
        let outcome = match tokio::time::timeout(timeout, self.run(conn)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(HandshakeError::timeout(timeout)),
        };
        match outcome {
            Ok(established) => {
                tracing::info!(
                    scope = "handshake",
                    result = "success",
                    remote,
                    device = %established.device_id,
                    user = %established.user.user_id,
                    pattern = established.pattern.label(),
                    capabilities = ?established.accepted_capabilities,
                    "handshake complete"
                );
                self.ledger.record("handshake", || {
                    serde_json::json!({
                        "result": "success",
                        "stage": Stage::Established.label(),
                        "remote_addr": remote,
                        "device": established.device_id,
                        "user": established.user.user_id,
                        "device_known": established.device_known,
                        "noise_key_active": true,
                        "noise_key_version": established.noise_key_version,
                        "has_user_profile": established.user.display_name.is_some()
                            || established.user.avatar_url.is_some(),
                        "has_certificate": established.had_certificate,
                        "certificate_issued": established.issued_certificate,
                        "session": session_key(&established.session_id),
                        "protocol_version": established.protocol_version,
                        "pattern": established.pattern.label(),
                        "capabilities": established.accepted_capabilities,
                        "pq_hybrid": established.pq_hybrid,
                        "adaptive_obf": established.adaptive_obf,
                    })
                });
                Ok(established)
            }
            Err(failure) => {
                if report_failure(conn, &failure, remote).await {
                    self.metrics.frames_out.count(FrameType::Error);
                }
                self.ledger.record("handshake", || {
                    serde_json::json!({
                        "result": "failure",
                        "reason": failure.reason.label(),
                        "stage": failure.stage.label(),
                        "title": failure.kind().title(),
                        "remote_addr": remote,
                        "device": failure.device_id,
                        "detail": failure.detail,
                    })
                });
                Err(failure)
            }
        }
    }
}

/// Switches `conn` to Noise transport records and FEC framing when the session uses them, and
/// to `adaptive-obf` wrappers inside the records when that was accepted.
fn established<S: ByteStream>(
    conn: &mut Connection<S>,
    done: Done,
    obf_max_padding: u8,
) -> Result<Established, HandshakeFailure> {
    let failed = |e| {
        HandshakeError::from_link(link_failure(&ConnError::Stream(e)))
            .at(Stage::Established)
            .of_device(Some(&done.device_id))
    };
    if let Some(transport) = done.transport {
        conn.codec_mut()
            .enable_transport(transport)
            .map_err(failed)?;
    }
    if done
        .accepted_capabilities
        .iter()
        .any(|c| c == super::CAP_FEC)
    {
        conn.codec_mut()
            .enable_fec(commucat_link::FecParams::default())
            .map_err(failed)?;
    }
    let adaptive_obf = done.obf_root.is_some();
    if let Some(root) = &done.obf_root {
        let mut rng_seed = [0u8; 32];
        OsRng.fill_bytes(&mut rng_seed);
        let max_frame_len = conn.codec_mut().max_frame_len();
        conn.codec_mut().enable_obfuscation(Obfuscator::new(
            root.as_bytes(),
            Role::Server,
            ObfPolicy::new(obf_max_padding),
            rng_seed,
            max_frame_len,
        ));
        rng_seed.zeroize();
    }
    Ok(Established {
        session_id: done.session_id,
        device_id: done.device_id,
        user: user_record(done.user),
        protocol_version: done.protocol_version,
        pattern: done.pattern,
        accepted_capabilities: done.accepted_capabilities,
        expires_at: done.expires_at,
        noise_key_version: done.noise_key_version,
        device_known: done.device_known,
        had_certificate: done.had_certificate,
        issued_certificate: done.issued_certificate,
        pq_hybrid: done.pq_hybrid,
        adaptive_obf,
    })
}

/// Sends the failure's ERROR frame when possible and logs it; whether the ERROR was sent.
pub async fn report_failure<S: ByteStream>(
    conn: &mut Connection<S>,
    failure: &HandshakeFailure,
    remote: &str,
) -> bool {
    tracing::warn!(
        scope = "handshake",
        result = "failure",
        reason = failure.reason.label(),
        stage = failure.stage.label(),
        title = failure.kind().title(),
        remote,
        device = failure.device_id.as_deref().unwrap_or(""),
        detail = %failure.detail,
        "handshake failed"
    );
    if !failure.can_reply() {
        return false;
    }
    match conn.send_problem(&failure.problem()).await {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "could not deliver handshake ERROR");
            false
        }
    }
}
