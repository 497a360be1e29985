//! Server-Sent Events downstream encoding (wire-compat §2.2).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use commucat_ccp::Frame;

/// First bytes of every SSE response.
pub(crate) const PREAMBLE: &[u8] = b":ready\n\n";
/// Comment sent while the session is idle.
pub(crate) const KEEPALIVE: &[u8] = b":keepalive\n\n";

/// One frame as an SSE event: `event: frame`, `id: <sequence>`, `data: <std base64>`.
pub(crate) fn encode(frame: &Frame, out: &mut Vec<u8>) {
    out.extend_from_slice(b"event: frame\nid: ");
    out.extend_from_slice(frame.sequence().to_string().as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(STANDARD.encode(frame.to_bytes()).as_bytes());
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bytes::Bytes;
    use commucat_ccp::FrameType;

    #[test]
    fn event_layout() {
        let frame = Frame::new(FrameType::Msg, 5, 3, Bytes::from_static(b"hi")).unwrap();
        let mut out = Vec::new();
        encode(&frame, &mut out);
        // 06 05 05 03 02 68 69 (wire-compat §1.1) in base64.
        assert_eq!(out, b"event: frame\nid: 3\ndata: BgUFAwJoaQ==\n\n");
    }
}
