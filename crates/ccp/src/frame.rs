//! One CCP-1 frame: construction, encoding and decoding.
//!
//! ```text
//! frame = varint(L) body            ; L = len(body)
//! body  = type:u8 varint(channel_id) varint(sequence) varint(P) payload[P]
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{CodecError, Identifier, Truncation};
use crate::frame_type::{FrameType, PayloadKind};
use crate::{MAX_CONTROL_JSON_LEN, MAX_FRAME_LEN, varint};

/// A validated CCP-1 frame.
///
/// Every `Frame` value can be encoded and is accepted by the deployed `commucat-proto` 1.0.41
/// decoder: identifiers are 32-bit by type, and construction checks payload limits and (for
/// control types) that the payload is JSON. The payload is a reference-counted [`Bytes`]:
/// decoding slices it out of the receive buffer, and relaying to many recipients clones the
/// handle, never the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    frame_type: FrameType,
    channel_id: u32,
    sequence: u32,
    payload: Bytes,
}

impl Frame {
    /// Builds a frame from raw payload bytes, validating them for `frame_type`'s payload kind.
    ///
    /// # Errors
    /// Size limits ([`CodecError::PayloadTooLarge`], [`CodecError::FrameTooLarge`],
    /// [`CodecError::ControlPayloadTooLarge`]) and, for control types, payloads that are not JSON
    /// ([`CodecError::InvalidControlPayload`]).
    pub fn new(
        frame_type: FrameType,
        channel_id: u32,
        sequence: u32,
        payload: impl Into<Bytes>,
    ) -> Result<Self, CodecError> {
        let payload = payload.into();
        check_payload_len(frame_type, channel_id, sequence, payload.len() as u64)?;
        if frame_type.is_control() {
            validate_control_json(&payload)?;
        }
        Ok(Self {
            frame_type,
            channel_id,
            sequence,
            payload,
        })
    }

    /// Builds a control frame by serializing `value` as compact JSON.
    ///
    /// # Errors
    /// [`CodecError::InvalidControlPayload`] if `frame_type` carries opaque bytes or `value`
    /// cannot be serialized; size limits as in [`Frame::new`].
    pub fn control<T: Serialize + ?Sized>(
        frame_type: FrameType,
        channel_id: u32,
        sequence: u32,
        value: &T,
    ) -> Result<Self, CodecError> {
        if !frame_type.is_control() {
            return Err(CodecError::InvalidControlPayload(format!(
                "{frame_type} carries opaque bytes, not control JSON"
            )));
        }
        let json = serde_json::to_vec(value)
            .map_err(|e| CodecError::InvalidControlPayload(e.to_string()))?;
        check_payload_len(frame_type, channel_id, sequence, json.len() as u64)?;
        Ok(Self {
            frame_type,
            channel_id,
            sequence,
            payload: Bytes::from(json),
        })
    }

    /// The frame type.
    #[must_use]
    pub const fn frame_type(&self) -> FrameType {
        self.frame_type
    }

    /// The channel id.
    #[must_use]
    pub const fn channel_id(&self) -> u32 {
        self.channel_id
    }

    /// The sequence number.
    #[must_use]
    pub const fn sequence(&self) -> u32 {
        self.sequence
    }

    /// The payload bytes (JSON text for control types).
    #[must_use]
    pub const fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Consumes the frame, returning its payload.
    #[must_use]
    pub fn into_payload(self) -> Bytes {
        self.payload
    }

    /// The same frame with another sequence number (the payload is shared, not copied).
    #[must_use]
    pub fn with_sequence(&self, sequence: u32) -> Self {
        Self {
            sequence,
            ..self.clone()
        }
    }

    /// The same frame on another channel (the payload is shared, not copied).
    #[must_use]
    pub fn with_channel(&self, channel_id: u32) -> Self {
        Self {
            channel_id,
            ..self.clone()
        }
    }

    /// Deserializes the control payload into `T`.
    ///
    /// # Errors
    /// [`CodecError::InvalidControlPayload`] if the frame is opaque or the JSON does not have
    /// the shape of `T`.
    pub fn parse_control<T: DeserializeOwned>(&self) -> Result<T, CodecError> {
        if !self.frame_type.is_control() {
            return Err(CodecError::InvalidControlPayload(format!(
                "{} carries opaque bytes, not control JSON",
                self.frame_type
            )));
        }
        serde_json::from_slice(&self.payload)
            .map_err(|e| CodecError::InvalidControlPayload(e.to_string()))
    }

    /// Length of the frame body (everything after the length prefix).
    #[must_use]
    pub fn body_len(&self) -> usize {
        body_len(self.channel_id, self.sequence, self.payload.len() as u64)
    }

    /// Length of the whole encoded frame, length prefix included.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        let body = self.body_len();
        varint::encoded_len(body as u64) + body
    }

    /// Appends the encoded frame to `out`.
    pub fn encode(&self, out: &mut impl BufMut) {
        self.encode_header(out);
        out.put_slice(&self.payload);
    }

    /// Appends everything but the payload bytes to `out`: the length prefix, type, channel,
    /// sequence and payload length. Writers that can send the header and payload as two
    /// buffers (vectored I/O) use this to avoid copying the payload.
    pub fn encode_header(&self, out: &mut impl BufMut) {
        varint::encode(self.body_len() as u64, out);
        out.put_u8(self.frame_type.code());
        varint::encode(u64::from(self.channel_id), out);
        varint::encode(u64::from(self.sequence), out);
        varint::encode(self.payload.len() as u64, out);
    }

    /// The encoded frame as one buffer.
    #[must_use]
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out.freeze()
    }

    /// Decodes one frame from the start of `buf`, slicing the payload out of it without a copy.
    ///
    /// Returns `Ok(None)` when `buf` holds only a prefix of a well-formed frame, and
    /// `Ok(Some((frame, consumed)))` when a whole frame is present.
    ///
    /// # Errors
    /// Any [`CodecError`]: the bytes can never become a valid frame, however many follow.
    pub fn decode(buf: &Bytes) -> Result<Option<(Self, usize)>, CodecError> {
        Self::decode_with_limit(buf, MAX_FRAME_LEN)
    }

    /// [`Frame::decode`] with a frame length limit lower than the protocol's 16 MiB.
    ///
    /// # Errors
    /// As [`Frame::decode`].
    pub fn decode_with_limit(
        buf: &Bytes,
        max_frame_len: usize,
    ) -> Result<Option<(Self, usize)>, CodecError> {
        let Some(header) = Header::parse(buf, max_frame_len)? else {
            return Ok(None);
        };
        let frame = header.frame(buf.slice(header.payload_range()))?;
        Ok(Some((frame, header.total_len)))
    }
}

/// Frame body length for the given header values and payload length.
fn body_len(channel_id: u32, sequence: u32, payload_len: u64) -> usize {
    1 + varint::encoded_len(u64::from(channel_id))
        + varint::encoded_len(u64::from(sequence))
        + varint::encoded_len(payload_len)
        + usize::try_from(payload_len).unwrap_or(usize::MAX)
}

fn check_payload_len(
    frame_type: FrameType,
    channel_id: u32,
    sequence: u32,
    len: u64,
) -> Result<(), CodecError> {
    if len > MAX_FRAME_LEN as u64 {
        return Err(CodecError::PayloadTooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    if frame_type.is_control() && len > MAX_CONTROL_JSON_LEN as u64 {
        return Err(CodecError::ControlPayloadTooLarge {
            len,
            max: MAX_CONTROL_JSON_LEN,
        });
    }
    let body = body_len(channel_id, sequence, len);
    if body > MAX_FRAME_LEN {
        return Err(CodecError::FrameTooLarge {
            len: body as u64,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(())
}

/// Checks that a control payload is JSON the deployed decoder accepts: any JSON value (object,
/// array or scalar, surrounding whitespace allowed), parsed with the same rules (UTF-8, escapes,
/// nesting depth) as `serde_json::Value`.
///
/// # Errors
/// [`CodecError::InvalidControlPayload`] with the parser's message.
pub fn validate_control_json(payload: &[u8]) -> Result<(), CodecError> {
    serde_json::from_slice::<serde_json::Value>(payload)
        .map(drop)
        .map_err(|e| CodecError::InvalidControlPayload(e.to_string()))
}

/// The fixed part of a frame, parsed before (or without) its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) frame_type: FrameType,
    pub(crate) channel_id: u32,
    pub(crate) sequence: u32,
    /// Offset of the payload from the start of the encoded frame.
    pub(crate) payload_start: usize,
    pub(crate) payload_len: usize,
    /// Length prefix plus body.
    pub(crate) total_len: usize,
}

impl Header {
    /// Parses as much of the frame at the start of `buf` as is present.
    ///
    /// Every check that the bytes at hand allow is made before asking for more: a frame whose
    /// type byte, identifiers or lengths are already wrong fails at once rather than after its
    /// (possibly 16 MiB) declared length has been buffered.
    pub(crate) fn parse(buf: &[u8], max_frame_len: usize) -> Result<Option<Self>, CodecError> {
        let (frame_len, prefix_len) = match varint::decode(buf) {
            Ok(v) => v,
            Err(varint::VarintError::Incomplete) => return Ok(None),
            Err(varint::VarintError::Overflow) => return Err(CodecError::VarintOverflow),
        };
        if frame_len > max_frame_len as u64 {
            return Err(CodecError::FrameTooLarge {
                len: frame_len,
                max: max_frame_len,
            });
        }
        // Lossless: frame_len <= max_frame_len.
        let frame_len = usize::try_from(frame_len).unwrap_or(usize::MAX);
        if frame_len == 0 {
            return Err(CodecError::TruncatedFrame(Truncation::ZeroLength));
        }
        let total_len = prefix_len + frame_len;
        let complete = buf.len() >= total_len;
        let body = buf.get(prefix_len..total_len.min(buf.len())).unwrap_or(&[]);

        let Some(&code) = body.first() else {
            return Ok(None);
        };
        let frame_type = FrameType::from_code(code).ok_or(CodecError::InvalidFrameType(code))?;
        let mut cursor = 1;
        let Some(channel_id) = read_field(body, &mut cursor, complete)? else {
            return Ok(None);
        };
        let channel_id = identifier(channel_id, Identifier::Channel)?;
        let Some(sequence) = read_field(body, &mut cursor, complete)? else {
            return Ok(None);
        };
        let sequence = identifier(sequence, Identifier::Sequence)?;
        let Some(payload_len) = read_field(body, &mut cursor, complete)? else {
            return Ok(None);
        };
        if payload_len > MAX_FRAME_LEN as u64 {
            return Err(CodecError::PayloadTooLarge {
                len: payload_len,
                max: MAX_FRAME_LEN,
            });
        }
        let available = frame_len - cursor;
        if payload_len > available as u64 {
            return Err(CodecError::TruncatedFrame(Truncation::Payload {
                declared: payload_len,
                available,
            }));
        }
        if frame_type.payload_kind() == PayloadKind::Control
            && payload_len > MAX_CONTROL_JSON_LEN as u64
        {
            return Err(CodecError::ControlPayloadTooLarge {
                len: payload_len,
                max: MAX_CONTROL_JSON_LEN,
            });
        }
        if !complete {
            return Ok(None);
        }
        // Lossless: payload_len <= available.
        let payload_len = usize::try_from(payload_len).unwrap_or(usize::MAX);
        // Bytes after the payload but inside the declared length are ignored, exactly as the
        // deployed decoder does; re-encoding never reproduces them.
        Ok(Some(Self {
            frame_type,
            channel_id,
            sequence,
            payload_start: prefix_len + cursor,
            payload_len,
            total_len,
        }))
    }

    pub(crate) fn payload_range(&self) -> std::ops::Range<usize> {
        self.payload_start..self.payload_start + self.payload_len
    }

    /// Completes the frame with its payload (already sliced out of the receive buffer).
    pub(crate) fn frame(&self, payload: Bytes) -> Result<Frame, CodecError> {
        if self.frame_type.is_control() {
            validate_control_json(&payload)?;
        }
        Ok(Frame {
            frame_type: self.frame_type,
            channel_id: self.channel_id,
            sequence: self.sequence,
            payload,
        })
    }
}

/// Reads a varint inside the frame body. `Ok(None)`: the body is not all here yet.
fn read_field(body: &[u8], cursor: &mut usize, complete: bool) -> Result<Option<u64>, CodecError> {
    let rest = body.get(*cursor..).unwrap_or(&[]);
    match varint::decode(rest) {
        Ok((value, used)) => {
            *cursor += used;
            Ok(Some(value))
        }
        Err(varint::VarintError::Overflow) => Err(CodecError::VarintOverflow),
        Err(varint::VarintError::Incomplete) if complete => {
            Err(CodecError::TruncatedFrame(Truncation::Header))
        }
        Err(varint::VarintError::Incomplete) => Ok(None),
    }
}

fn identifier(value: u64, field: Identifier) -> Result<u32, CodecError> {
    u32::try_from(value).map_err(|_| CodecError::IdentifierOutOfRange { field, value })
}
