//! `adaptive-obf`: every frame wrapped in an `ObfuscatedPacket` before transport-record
//! encryption (seed 001, "Adaptive Protocol Polymorphism"), sans-IO.
//!
//! Inside the decrypted record stream each packet travels as
//! `u32 big-endian length || packet JSON`, the JSON being the `commucat-proto` 1.0.41
//! `ObfuscatedPacket` encoding (`random_prefix_s1`, `protocol_snapshot`, `original_header`,
//! `payload` = the inner frame's CCP-1 bytes, `random_suffix_s2`, `integrity_mac`). Unwrapping
//! checks, in order: the length bound, canonical JSON, the MAC (under the receiving chain's
//! current key) — all three refusals are [`ObfError::Integrity`], reported to the peer as a
//! terminal ERROR titled `IntegrityCheckFailed` — and only then decodes the inner frame and
//! checks it against the header. See `docs/obfuscation.md`.

mod keys;
mod packet;
mod policy;
#[cfg(test)]
mod tests;

use bytes::{Buf, Bytes, BytesMut};
use commucat_ccp::{CodecError, Frame, Problem, Truncation};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

pub use keys::{
    C2S_LABEL, MAC_KEY_LABEL, ROOT_INFO, ROTATE_EVERY, ROTATE_LABEL, Role, S2C_LABEL, derive_root,
};
pub use packet::{
    AmnesiaSignature, DaitaProfile, DnsPacketSnapshot, FrameHeader, MAC_LEN, ObfuscatedPacket,
    ProtocolFlavor, ProtocolMimicry, ProtocolSnapshot, QuicHandshakeSnapshot, RealityTicket,
    SipMessageSnapshot, SipMethod, TlsHandshakeSnapshot, WebRtcDataChannelSnapshot, WireFrameType,
};
pub use policy::{MAX_PADDING, ObfPolicy, snapshot_of};

/// Title of the terminal ERROR sent when a wrapper fails its check.
pub const INTEGRITY_TITLE: &str = "IntegrityCheckFailed";
/// Problem type of that ERROR.
pub const INTEGRITY_TYPE: &str = "urn:commucat:problem:integrity-check-failed";
/// Bytes of the length prefix before each packet.
pub const LENGTH_PREFIX: usize = 4;

/// Why a wrapper could not be produced or accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObfError {
    /// The wrapper is not authentic: too long, not canonical JSON, wrong MAC, or a header that
    /// does not match its frame. Terminal: `IntegrityCheckFailed`.
    #[error("{INTEGRITY_TITLE}: {0}")]
    Integrity(&'static str),
    /// The MAC verified but the frame inside is malformed (a faulty peer, not an attacker).
    #[error("frame inside a verified wrapper: {0}")]
    Inner(CodecError),
    /// A frame could not be wrapped (its encoding exceeds the packet bound).
    #[error("cannot wrap frame: {0}")]
    Wrap(&'static str),
}

impl ObfError {
    /// The ERROR payload that reports this failure.
    #[must_use]
    pub fn problem(&self) -> Problem {
        match self {
            ObfError::Inner(codec) => Problem::from(codec),
            ObfError::Integrity(detail) | ObfError::Wrap(detail) => {
                Problem::custom(INTEGRITY_TYPE, INTEGRITY_TITLE, 400).with_detail(*detail)
            }
        }
    }

    /// Whether this is an integrity failure (counted and ledgered as such).
    #[must_use]
    pub const fn is_integrity(&self) -> bool {
        matches!(self, ObfError::Integrity(_))
    }
}

/// Largest packet JSON accepted for frames of at most `max_frame_len` bytes: each payload byte
/// is at most four JSON characters (`255,`), plus the snapshot, padding and field names.
#[must_use]
pub fn max_packet_len(max_frame_len: usize) -> usize {
    max_frame_len
        .saturating_add(16)
        .saturating_mul(4)
        .saturating_add(16 * 1024)
}

/// One session's wrapper state: the two key chains, the policy and its randomness.
pub struct Obfuscator {
    send: keys::KeyChain,
    recv: keys::KeyChain,
    policy: ObfPolicy,
    rng: StdRng,
    max_frame_len: usize,
}

impl std::fmt::Debug for Obfuscator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Obfuscator")
            .field("send", &self.send)
            .field("recv", &self.recv)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Obfuscator {
    /// The wrapper of `role`'s end of a session with the given root (see [`derive_root`]);
    /// `rng_seed` seeds the padding and decoy choices (fresh OS randomness in production).
    #[must_use]
    pub fn new(
        root: &[u8; 32],
        role: Role,
        policy: ObfPolicy,
        rng_seed: [u8; 32],
        max_frame_len: usize,
    ) -> Self {
        Self::with_rotation(root, role, policy, rng_seed, max_frame_len, ROTATE_EVERY)
    }

    /// [`Obfuscator::new`] with another rotation interval (both ends must use the same; the
    /// protocol's is [`ROTATE_EVERY`]). Tests use a short one.
    #[must_use]
    pub fn with_rotation(
        root: &[u8; 32],
        role: Role,
        policy: ObfPolicy,
        rng_seed: [u8; 32],
        max_frame_len: usize,
        rotate_every: u64,
    ) -> Self {
        let (send, recv) = keys::chains(root, role, rotate_every);
        Self {
            send,
            recv,
            policy,
            rng: StdRng::from_seed(rng_seed),
            max_frame_len,
        }
    }

    /// Key epochs (sending, receiving): how many times each chain has rotated.
    #[must_use]
    pub const fn epochs(&self) -> (u64, u64) {
        (self.send.epoch(), self.recv.epoch())
    }

    /// The current sending MAC key (for interoperability tests).
    #[must_use]
    pub fn sending_key(&self) -> &[u8; 32] {
        self.send.key()
    }

    /// Wraps `frame` in a packet under the current sending key (and counts it).
    ///
    /// # Errors
    /// [`ObfError::Wrap`] if the header cannot be serialised.
    pub fn wrap(&mut self, frame: &Frame) -> Result<ObfuscatedPacket, ObfError> {
        let mut prefix = vec![0u8; self.policy.prefix_len(&mut self.rng)];
        let mut suffix = vec![0u8; self.policy.suffix_len(&mut self.rng)];
        self.rng.fill_bytes(&mut prefix);
        self.rng.fill_bytes(&mut suffix);
        let snapshot = self.policy.snapshot(&mut self.rng);
        let mut packet = ObfuscatedPacket {
            random_prefix_s1: prefix,
            protocol_snapshot: snapshot,
            original_header: header_of(frame),
            payload: frame.to_bytes().to_vec(),
            random_suffix_s2: suffix,
            integrity_mac: [0u8; MAC_LEN],
        };
        packet.integrity_mac = packet
            .compute_mac(self.send.key())
            .map_err(|_| ObfError::Wrap("header does not serialise"))?;
        self.send.count();
        Ok(packet)
    }

    /// Wraps `frame` and appends `length || JSON` to `out`.
    ///
    /// # Errors
    /// As [`Obfuscator::wrap`], or a packet over the length bound.
    pub fn wrap_into(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), ObfError> {
        let json = self
            .wrap(frame)?
            .encode()
            .map_err(|_| ObfError::Wrap("packet does not serialise"))?;
        if json.len() > max_packet_len(self.max_frame_len) {
            return Err(ObfError::Wrap("packet exceeds the length bound"));
        }
        let len = u32::try_from(json.len()).map_err(|_| ObfError::Wrap("packet too long"))?;
        out.reserve(LENGTH_PREFIX + json.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&json);
        Ok(())
    }

    /// Checks one packet's JSON and returns its frame: canonical form, then the MAC, then the
    /// inner frame and its header. The receiving chain counts only accepted packets.
    ///
    /// # Errors
    /// [`ObfError::Integrity`] for anything unauthenticated; [`ObfError::Inner`] for a
    /// malformed frame inside an authentic wrapper.
    pub fn unwrap(&mut self, json: &[u8]) -> Result<Frame, ObfError> {
        if json.len() > max_packet_len(self.max_frame_len) {
            return Err(ObfError::Integrity("packet exceeds the length bound"));
        }
        let packet = ObfuscatedPacket::decode_canonical(json).map_err(ObfError::Integrity)?;
        if !packet.mac_matches(self.recv.key()) {
            return Err(ObfError::Integrity("MAC does not verify"));
        }
        let payload = Bytes::from(packet.payload);
        let (frame, used) = Frame::decode_with_limit(&payload, self.max_frame_len)
            .map_err(ObfError::Inner)?
            .ok_or(ObfError::Inner(CodecError::TruncatedFrame(
                Truncation::Header,
            )))?;
        if used != payload.len() {
            return Err(ObfError::Integrity("bytes after the wrapped frame"));
        }
        if header_of(&frame) != packet.original_header {
            return Err(ObfError::Integrity(
                "header does not match the wrapped frame",
            ));
        }
        self.recv.count();
        Ok(frame)
    }

    /// The next frame from a buffer of `length || JSON` packets, consuming that packet, or
    /// `None` while the buffer holds only part of one.
    ///
    /// # Errors
    /// As [`Obfuscator::unwrap`]; a declared length over the bound is refused before the
    /// packet is buffered.
    pub fn next_frame(&mut self, buffer: &mut BytesMut) -> Result<Option<Frame>, ObfError> {
        let Some(prefix) = buffer.get(..LENGTH_PREFIX) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; LENGTH_PREFIX];
        len_bytes.copy_from_slice(prefix);
        let len = usize::try_from(u32::from_be_bytes(len_bytes)).unwrap_or(usize::MAX);
        if len > max_packet_len(self.max_frame_len) {
            return Err(ObfError::Integrity(
                "declared packet length exceeds the bound",
            ));
        }
        if buffer.len() < LENGTH_PREFIX + len {
            return Ok(None);
        }
        buffer.advance(LENGTH_PREFIX);
        let json = buffer.split_to(len);
        self.unwrap(&json).map(Some)
    }
}

/// The wrapper header of `frame`.
#[must_use]
pub fn header_of(frame: &Frame) -> FrameHeader {
    FrameHeader {
        channel_id: u64::from(frame.channel_id()),
        sequence: u64::from(frame.sequence()),
        frame_type: WireFrameType(frame.frame_type().code()),
    }
}
