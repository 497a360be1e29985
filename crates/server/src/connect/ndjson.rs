//! NDJSON streaming downstream encoding (the reference's `long-poll`, wire-compat §2.2).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use commucat_ccp::Frame;

/// Line sent while the session is idle.
pub(crate) const KEEPALIVE: &[u8] = b"{\"keepalive\":true}\n";

/// One frame as one JSON line: `{"channel","data","sequence","type"}`; `data` is the standard
/// base64 of the whole encoded frame, `type` the frame type's label.
pub(crate) fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let line = serde_json::json!({
        "channel": frame.channel_id(),
        "data": STANDARD.encode(frame.to_bytes()),
        "sequence": frame.sequence(),
        "type": frame.frame_type().label(),
    });
    out.extend_from_slice(line.to_string().as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bytes::Bytes;
    use commucat_ccp::FrameType;

    #[test]
    fn line_layout() {
        let frame = Frame::new(FrameType::Msg, 5, 3, Bytes::from_static(b"hi")).unwrap();
        let mut out = Vec::new();
        encode(&frame, &mut out);
        assert_eq!(
            out,
            b"{\"channel\":5,\"data\":\"BgUFAwJoaQ==\",\"sequence\":3,\"type\":\"msg\"}\n"
        );
    }
}
