//! CALL_OFFER, CALL_ANSWER, CALL_END and CALL_STATS.
//!
//! The shapes are those of the specification, which the deployed `commucat-proto` 1.0.41 structs
//! implement with a few required keys; a payload that parses here parses there. Payloads are
//! relayed as the bytes the sender wrote: these types validate, they do not re-serialize.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Minimum `call_id` length: deployed clients slice the first 8 bytes for display.
pub const MIN_CALL_ID_LEN: usize = 8;

/// Maximum `call_id` length: the server holds the id once per participant while the call runs
/// (a UUID takes 36 bytes).
pub const MAX_CALL_ID_LEN: usize = 128;

/// Duplex mode of a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallMode {
    /// Both sides talk at once.
    #[default]
    FullDuplex,
    /// Push-to-talk.
    HalfDuplex,
}

/// Audio codec. Only Opus is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioCodec {
    /// Opus.
    Opus,
}

/// Video codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoCodec {
    /// VP8.
    Vp8,
    /// VP9.
    Vp9,
}

/// Video frame size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoResolution {
    /// Pixels.
    pub width: u16,
    /// Pixels.
    pub height: u16,
}

/// Audio parameters of an offer or answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioParameters {
    /// Codec.
    pub codec: AudioCodec,
    /// Bits per second.
    pub bitrate: u32,
    /// Hz; Opus accepts 8000, 12000, 16000, 24000 or 48000.
    pub sample_rate: u32,
    /// 1 or 2.
    pub channels: u8,
    /// In-band forward error correction.
    #[serde(default)]
    pub fec: bool,
    /// Discontinuous transmission.
    #[serde(default)]
    pub dtx: bool,
}

impl Default for AudioParameters {
    fn default() -> Self {
        Self {
            codec: AudioCodec::Opus,
            bitrate: 16_000,
            sample_rate: 48_000,
            channels: 1,
            fec: true,
            dtx: true,
        }
    }
}

/// Video parameters of an offer or answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoParameters {
    /// Codec.
    pub codec: VideoCodec,
    /// Bits per second.
    pub max_bitrate: u32,
    /// Largest frame size.
    pub max_resolution: VideoResolution,
    /// Frames per second.
    pub frame_rate: u8,
    /// Whether the sender adapts bitrate.
    #[serde(default)]
    pub adaptive: bool,
}

/// Media profile of an offer or answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallMediaProfile {
    /// Audio parameters.
    pub audio: AudioParameters,
    /// Video parameters; absent or `null` for audio-only.
    #[serde(default)]
    pub video: Option<VideoParameters>,
    /// Duplex mode.
    #[serde(default)]
    pub mode: CallMode,
}

/// Transport protocol of a candidate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportProtocol {
    /// TCP.
    Tcp,
    /// UDP.
    #[default]
    Udp,
}

/// A direct-path candidate address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportCandidate {
    /// IP address or host.
    pub address: String,
    /// Port.
    pub port: u16,
    /// Protocol.
    #[serde(default)]
    pub protocol: TransportProtocol,
}

/// Transport hints (advisory; the server always relays).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallTransport {
    /// Prefer relaying through the server.
    #[serde(default)]
    pub prefer_relay: bool,
    /// Candidate addresses (the reference server's later name `candidates` is accepted).
    #[serde(default, alias = "candidates")]
    pub udp_candidates: Vec<TransportCandidate>,
    /// Hex certificate fingerprints.
    #[serde(default)]
    pub fingerprints: Vec<String>,
}

/// CALL_OFFER.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallOffer {
    /// Call id.
    pub call_id: String,
    /// Calling device.
    pub from: String,
    /// Called devices.
    pub to: Vec<String>,
    /// Requested media.
    #[serde(default)]
    pub media: CallMediaProfile,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: Value,
    /// Transport hints.
    #[serde(default)]
    pub transport: Option<CallTransport>,
    /// Unix seconds after which the offer lapses.
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// Hex ephemeral public key.
    #[serde(default)]
    pub ephemeral_key: Option<String>,
}

/// Why a call was declined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallRejectReason {
    /// Callee busy.
    Busy,
    /// Callee declined.
    Decline,
    /// Media profile not supported.
    Unsupported,
    /// No answer in time.
    Timeout,
    /// Callee failure.
    Error,
}

/// CALL_ANSWER.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallAnswer {
    /// Call id.
    pub call_id: String,
    /// Whether the call is accepted.
    pub accept: bool,
    /// Accepted media profile.
    #[serde(default)]
    pub media: Option<CallMediaProfile>,
    /// Transport hints.
    #[serde(default)]
    pub transport: Option<CallTransport>,
    /// Why the call was declined.
    #[serde(default)]
    pub reason: Option<CallRejectReason>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: Value,
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallEndReason {
    /// A participant hung up.
    Hangup,
    /// The caller cancelled before an answer.
    Cancel,
    /// A participant failed or disconnected.
    Failure,
    /// Nobody answered in time.
    Timeout,
}

/// CALL_END.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallEnd {
    /// Call id.
    pub call_id: String,
    /// Why the call ended.
    pub reason: CallEndReason,
    /// Free-form metadata (`{"system":true}` when the server ends a call).
    #[serde(default)]
    pub metadata: Value,
}

/// Direction of a statistics report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallMediaDirection {
    /// What the reporter sends.
    Send,
    /// What the reporter receives.
    Receive,
}

/// Quality of one media stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaStreamStats {
    /// Bits per second.
    pub bitrate: u32,
    /// Fraction of packets lost, 0–1.
    #[serde(default)]
    pub packet_loss: f32,
    /// Jitter in milliseconds.
    #[serde(default)]
    pub jitter_ms: u32,
    /// Round-trip time in milliseconds.
    #[serde(default)]
    pub rtt_ms: Option<u32>,
    /// Video frames per second.
    #[serde(default)]
    pub frames_per_second: Option<u8>,
    /// Key frames sent or received.
    #[serde(default)]
    pub key_frames: Option<u32>,
}

/// CALL_STATS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallStats {
    /// Call id.
    pub call_id: String,
    /// Report direction.
    pub direction: CallMediaDirection,
    /// Audio stream quality.
    #[serde(default)]
    pub audio: Option<MediaStreamStats>,
    /// Video stream quality.
    #[serde(default)]
    pub video: Option<MediaStreamStats>,
    /// Unix seconds.
    #[serde(default)]
    pub timestamp: Option<u64>,
}

const OPUS_SAMPLE_RATES: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];

fn check_call_id(call_id: &str) -> Result<(), String> {
    if call_id.len() < MIN_CALL_ID_LEN {
        return Err(format!(
            "call_id must be at least {MIN_CALL_ID_LEN} bytes, got {}",
            call_id.len()
        ));
    }
    if call_id.len() > MAX_CALL_ID_LEN {
        return Err(format!(
            "call_id must be at most {MAX_CALL_ID_LEN} bytes, got {}",
            call_id.len()
        ));
    }
    Ok(())
}

impl CallMediaProfile {
    /// Checks the values a receiving client's Opus and VPx decoders can be set up with.
    ///
    /// # Errors
    /// A description of the first unusable parameter.
    pub fn validate(&self) -> Result<(), String> {
        let audio = &self.audio;
        if !OPUS_SAMPLE_RATES.contains(&audio.sample_rate) {
            return Err(format!(
                "audio sample_rate {} is not one Opus supports",
                audio.sample_rate
            ));
        }
        if !(1..=2).contains(&audio.channels) {
            return Err(format!(
                "audio channels must be 1 or 2, got {}",
                audio.channels
            ));
        }
        if let Some(video) = &self.video {
            if video.max_resolution.width == 0 || video.max_resolution.height == 0 {
                return Err("video max_resolution must be non-zero".to_owned());
            }
            if video.frame_rate == 0 {
                return Err("video frame_rate must be non-zero".to_owned());
            }
        }
        Ok(())
    }
}

impl CallOffer {
    /// Checks what the schema alone cannot: id length, callee list, usable media parameters.
    ///
    /// # Errors
    /// A description of the first problem.
    pub fn validate(&self) -> Result<(), String> {
        check_call_id(&self.call_id)?;
        if self.to.is_empty() {
            return Err("to must name at least one device".to_owned());
        }
        self.media.validate()
    }
}

impl CallAnswer {
    /// Checks id length and, when present, the media parameters.
    ///
    /// # Errors
    /// A description of the first problem.
    pub fn validate(&self) -> Result<(), String> {
        check_call_id(&self.call_id)?;
        self.media
            .as_ref()
            .map_or(Ok(()), CallMediaProfile::validate)
    }
}

impl CallEnd {
    /// Checks id length.
    ///
    /// # Errors
    /// A description of the problem.
    pub fn validate(&self) -> Result<(), String> {
        check_call_id(&self.call_id)
    }
}

impl CallStats {
    /// Checks id length and loss fractions.
    ///
    /// # Errors
    /// A description of the first problem.
    pub fn validate(&self) -> Result<(), String> {
        check_call_id(&self.call_id)?;
        for stats in [&self.audio, &self.video].into_iter().flatten() {
            if !(0.0..=1.0).contains(&stats.packet_loss) {
                return Err(format!(
                    "packet_loss must be within 0..=1, got {}",
                    stats.packet_loss
                ));
            }
        }
        Ok(())
    }
}
