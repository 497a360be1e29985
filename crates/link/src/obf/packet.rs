//! The `ObfuscatedPacket` JSON encoding and its MAC, byte for byte as the `obfuscation`
//! feature of `commucat-proto` 1.0.41 (`src/obfuscation.rs`): same field names and order, the
//! same enum tags, byte strings as JSON arrays of numbers, the MAC the first 16 bytes of keyed
//! BLAKE3 over `prefix || JSON(snapshot) || JSON(header) || payload || suffix`.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;

/// Length of the MAC carried in each packet.
pub const MAC_LEN: usize = 16;

/// The decoy protocol family a snapshot imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtocolFlavor {
    /// A QUIC Initial packet.
    QuicInitial,
    /// A DNS query.
    DnsQuery,
    /// A SIP INVITE / REGISTER / OPTIONS.
    SipInvite,
    /// A TLS 1.3 ClientHello (optionally with a REALITY ticket).
    HttpsHandshake,
    /// A WebRTC data channel.
    WebRtc,
}

impl ProtocolFlavor {
    /// Every flavor, in the order of the seed's list.
    pub const ALL: [ProtocolFlavor; 5] = [
        ProtocolFlavor::QuicInitial,
        ProtocolFlavor::DnsQuery,
        ProtocolFlavor::SipInvite,
        ProtocolFlavor::HttpsHandshake,
        ProtocolFlavor::WebRtc,
    ];
}

/// The decoy fields of one flavor (JSON: internally tagged by `protocol`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "protocol", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ProtocolMimicry {
    QuicInitial(QuicHandshakeSnapshot),
    DnsQuery(DnsPacketSnapshot),
    SipInvite(SipMessageSnapshot),
    HttpsHandshake(TlsHandshakeSnapshot),
    WebRtc(WebRtcDataChannelSnapshot),
}

/// The decoy description carried by every packet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct ProtocolSnapshot {
    pub flavor: ProtocolFlavor,
    pub mimicry: ProtocolMimicry,
    pub amnesia: AmnesiaSignature,
    pub daita: DaitaProfile,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct QuicHandshakeSnapshot {
    pub version: u32,
    pub dcid: Vec<u8>,
    pub scid: Vec<u8>,
    pub token_length: u8,
    pub alpn: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct DnsPacketSnapshot {
    pub transaction_id: u16,
    pub qname: String,
    pub qtype: u16,
    pub padding_len: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum SipMethod {
    Invite,
    Register,
    Options,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct SipMessageSnapshot {
    pub call_id: String,
    pub cseq: u32,
    pub method: SipMethod,
    pub via_branch: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct RealityTicket {
    pub server_name: String,
    pub fingerprint: [u8; 32],
    pub issued_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct TlsHandshakeSnapshot {
    pub sni: String,
    pub cipher_suites: Vec<u16>,
    pub grease: u16,
    pub alpn: Vec<String>,
    pub reality: Option<RealityTicket>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct WebRtcDataChannelSnapshot {
    pub stream_id: u16,
    pub label: String,
    pub ordered: bool,
    pub reliability: u8,
    pub srtp_profile: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct AmnesiaSignature {
    pub salt: [u8; 8],
    pub jitter_ns: u32,
    pub packet_mask: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct DaitaProfile {
    pub automaton_state: u8,
    pub acceptance_probability: f32,
}

/// 1.0.41's `FrameType` variant names (its serde form), indexed by wire code − 1.
const FRAME_TYPE_NAMES: [&str; 19] = [
    "Hello",
    "Auth",
    "Join",
    "Leave",
    "Msg",
    "Ack",
    "Typing",
    "Presence",
    "KeyUpdate",
    "GroupCreate",
    "GroupInvite",
    "GroupEvent",
    "Error",
    "CallOffer",
    "CallAnswer",
    "CallEnd",
    "VoiceFrame",
    "VideoFrame",
    "CallStats",
];

/// A frame type code, serialised as 1.0.41's variant name (`"Msg"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireFrameType(pub u8);

impl WireFrameType {
    fn name(self) -> Option<&'static str> {
        usize::from(self.0)
            .checked_sub(1)
            .and_then(|i| FRAME_TYPE_NAMES.get(i))
            .copied()
    }
}

impl Serialize for WireFrameType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.name() {
            Some(name) => s.serialize_str(name),
            None => Err(serde::ser::Error::custom("unassigned frame type")),
        }
    }
}

impl<'de> Deserialize<'de> for WireFrameType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        FRAME_TYPE_NAMES
            .iter()
            .position(|n| *n == name)
            .and_then(|i| u8::try_from(i + 1).ok())
            .map(WireFrameType)
            .ok_or_else(|| D::Error::custom("unknown frame type"))
    }
}

/// The inner frame's header, repeated in the clear of the wrapper (inside the record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct FrameHeader {
    pub channel_id: u64,
    pub sequence: u64,
    pub frame_type: WireFrameType,
}

/// One wrapped frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct ObfuscatedPacket {
    pub random_prefix_s1: Vec<u8>,
    pub protocol_snapshot: ProtocolSnapshot,
    pub original_header: FrameHeader,
    /// The inner frame's whole CCP-1 encoding.
    pub payload: Vec<u8>,
    pub random_suffix_s2: Vec<u8>,
    pub integrity_mac: [u8; MAC_LEN],
}

impl ObfuscatedPacket {
    /// The packet's JSON.
    ///
    /// # Errors
    /// A header with an unassigned frame type.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Parses a packet and insists on the canonical encoding (the bytes [`Self::encode`]
    /// gives back), so that every changed byte is either refused here or changes a MACed
    /// value. 1.0.41 writes canonical packets.
    ///
    /// # Errors
    /// Malformed or non-canonical JSON.
    pub fn decode_canonical(bytes: &[u8]) -> Result<Self, &'static str> {
        let packet: Self = serde_json::from_slice(bytes).map_err(|_| "malformed packet JSON")?;
        let again = packet.encode().map_err(|_| "packet does not re-encode")?;
        if again != bytes {
            return Err("packet JSON is not in canonical form");
        }
        Ok(packet)
    }

    /// The MAC of the packet's fields under `key`.
    ///
    /// # Errors
    /// A header with an unassigned frame type.
    pub fn compute_mac(&self, key: &[u8; 32]) -> Result<[u8; MAC_LEN], serde_json::Error> {
        let mut hasher = blake3::Hasher::new_keyed(key);
        hasher.update(&self.random_prefix_s1);
        hasher.update(&serde_json::to_vec(&self.protocol_snapshot)?);
        hasher.update(&serde_json::to_vec(&self.original_header)?);
        hasher.update(&self.payload);
        hasher.update(&self.random_suffix_s2);
        let hash = hasher.finalize();
        let mut mac = [0u8; MAC_LEN];
        for (dst, src) in mac.iter_mut().zip(hash.as_bytes()) {
            *dst = *src;
        }
        Ok(mac)
    }

    /// Whether the packet's MAC is right for `key` (constant-time comparison).
    #[must_use]
    pub fn mac_matches(&self, key: &[u8; 32]) -> bool {
        self.compute_mac(key)
            .is_ok_and(|mac| bool::from(mac.ct_eq(&self.integrity_mac)))
    }
}
