//! The 19 CCP-1 frame types and how their payloads are interpreted.

use std::fmt;

/// How a frame type's payload is interpreted by the codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadKind {
    /// UTF-8 JSON, at most [`crate::MAX_CONTROL_JSON_LEN`] bytes, validated on decode.
    Control,
    /// Arbitrary bytes (client ciphertext, media packets); never inspected by the codec.
    Opaque,
}

macro_rules! frame_types {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $label:literal, $kind:ident; )+) => {
        /// A CCP-1 frame type (the first byte of every frame body).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        #[non_exhaustive]
        pub enum FrameType {
            $( $(#[$doc])* $variant = $code, )+
        }

        impl FrameType {
            /// Every frame type, in code order.
            pub const ALL: &'static [FrameType] = &[$(FrameType::$variant),+];

            /// The type for a wire code, or `None` for an unassigned code.
            #[must_use]
            pub const fn from_code(code: u8) -> Option<Self> {
                match code {
                    $( $code => Some(FrameType::$variant), )+
                    _ => None,
                }
            }

            /// The wire code.
            #[must_use]
            pub const fn code(self) -> u8 {
                self as u8
            }

            /// Lower-case label used by the NDJSON connect mode and in logs (`"msg"`, `"call_offer"`).
            #[must_use]
            pub const fn label(self) -> &'static str {
                match self {
                    $( FrameType::$variant => $label, )+
                }
            }

            /// The type for a label produced by [`FrameType::label`] (case-insensitive).
            #[must_use]
            pub fn from_label(label: &str) -> Option<Self> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|t| t.label().eq_ignore_ascii_case(label))
            }

            /// Whether the payload is control JSON or opaque bytes.
            ///
            /// `KEY_UPDATE` is opaque on the wire (as in the deployed `commucat-proto` 1.0.41):
            /// it carries client key material that the server relays verbatim.
            #[must_use]
            pub const fn payload_kind(self) -> PayloadKind {
                match self {
                    $( FrameType::$variant => PayloadKind::$kind, )+
                }
            }
        }
    };
}

frame_types! {
    /// Starts the Noise handshake (control).
    Hello = 0x01, "hello", Control;
    /// Handshake continuation: Noise messages 2 and 3 (control).
    Auth = 0x02, "auth", Control;
    /// Declares channel membership (control).
    Join = 0x03, "join", Control;
    /// Removes membership (control).
    Leave = 0x04, "leave", Control;
    /// End-to-end ciphertext (opaque).
    Msg = 0x05, "msg", Opaque;
    /// Acknowledges a sequence number (control).
    Ack = 0x06, "ack", Control;
    /// Typing hint, routed like MSG (control).
    Typing = 0x07, "typing", Control;
    /// Presence heartbeat or snapshot (control).
    Presence = 0x08, "presence", Control;
    /// New client key material (opaque).
    KeyUpdate = 0x09, "key_update", Opaque;
    /// Creates a group with a persistent roster (control).
    GroupCreate = 0x0a, "group_create", Control;
    /// Invites a member to a group (control).
    GroupInvite = 0x0b, "group_invite", Control;
    /// Group fan-out event (control).
    GroupEvent = 0x0c, "group_event", Control;
    /// RFC 9457 problem details (control).
    Error = 0x0d, "error", Control;
    /// Proposes an audio/video call (control).
    CallOffer = 0x0e, "call_offer", Control;
    /// Accepts or rejects a call (control).
    CallAnswer = 0x0f, "call_answer", Control;
    /// Ends a call (control).
    CallEnd = 0x10, "call_end", Control;
    /// One Opus packet (opaque).
    VoiceFrame = 0x11, "voice_frame", Opaque;
    /// One VP8 frame or fragment (opaque).
    VideoFrame = 0x12, "video_frame", Opaque;
    /// Live media quality report (control).
    CallStats = 0x13, "call_stats", Control;
}

impl FrameType {
    /// Whether the payload is control JSON.
    #[must_use]
    pub const fn is_control(self) -> bool {
        matches!(self.payload_kind(), PayloadKind::Control)
    }
}

impl TryFrom<u8> for FrameType {
    type Error = crate::CodecError;

    fn try_from(code: u8) -> Result<Self, crate::CodecError> {
        Self::from_code(code).ok_or(crate::CodecError::InvalidFrameType(code))
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_dense_and_round_trip() {
        assert_eq!(FrameType::ALL.len(), 19);
        for (index, ty) in FrameType::ALL.iter().enumerate() {
            assert_eq!(usize::from(ty.code()), index + 1);
            assert_eq!(FrameType::from_code(ty.code()), Some(*ty));
            assert_eq!(FrameType::from_label(ty.label()), Some(*ty));
        }
        assert_eq!(FrameType::from_code(0x00), None);
        assert_eq!(FrameType::from_code(0x14), None);
        assert_eq!(FrameType::from_code(0xff), None);
    }

    #[test]
    fn opaque_types_are_exactly_the_deployed_ones() {
        let opaque: Vec<_> = FrameType::ALL
            .iter()
            .copied()
            .filter(|t| !t.is_control())
            .collect();
        assert_eq!(
            opaque,
            [
                FrameType::Msg,
                FrameType::KeyUpdate,
                FrameType::VoiceFrame,
                FrameType::VideoFrame
            ]
        );
    }
}
