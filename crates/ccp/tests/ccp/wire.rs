//! Byte-exact encoding, every diagnostic, and streaming over arbitrary chunk boundaries.

use bytes::{Bytes, BytesMut};
use commucat_ccp::{
    CodecError, Frame, FrameDecoder, FrameType, Identifier, MAX_CONTROL_JSON_LEN, MAX_FRAME_LEN,
    Problem, ProblemKind, Truncation, varint,
};
use proptest::prelude::*;
use serde_json::json;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

fn decode_all(bytes: &[u8]) -> Result<Vec<Frame>, CodecError> {
    let mut decoder = FrameDecoder::new();
    decoder.extend(bytes);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.next_frame()? {
        frames.push(frame);
    }
    assert_eq!(decoder.buffered(), 0, "input ended inside a frame");
    Ok(frames)
}

fn decode_err(bytes: &[u8]) -> CodecError {
    let mut decoder = FrameDecoder::new();
    decoder.extend(bytes);
    loop {
        match decoder.next_frame() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("expected an error, decoder wants more bytes"),
            Err(e) => return e,
        }
    }
}

/// Header bytes of a frame body followed by a raw body: `varint(len(body)) || body`.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint::encode(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

// ---- wire-compat §1.1 examples (bytes produced by the deployed crate) ----

#[test]
fn example_ack() {
    let frame = Frame::control(FrameType::Ack, 0, 1, &json!({"ack": 3})).unwrap();
    let expected = hex("0d 06 00 01 09 7b2261636b223a337d");
    assert_eq!(frame.to_bytes().as_ref(), expected.as_slice());
    assert_eq!(decode_all(&expected).unwrap(), [frame]);
}

#[test]
fn example_msg() {
    let frame = Frame::new(FrameType::Msg, 5, 3, &b"hi"[..]).unwrap();
    let expected = hex("06 05 05 03 02 68 69");
    assert_eq!(frame.to_bytes().as_ref(), expected.as_slice());
    assert_eq!(frame.encoded_len(), expected.len());
    assert_eq!(decode_all(&expected).unwrap(), [frame]);
}

#[test]
fn example_join() {
    let frame = Frame::control(
        FrameType::Join,
        300,
        128,
        &json!({"members": ["d1"], "relay": true}),
    )
    .unwrap();
    let bytes = frame.to_bytes();
    let mut expected = hex("25 03 ac02 8001 1f");
    expected.extend_from_slice(br#"{"members":["d1"],"relay":true}"#);
    assert_eq!(bytes.as_ref(), expected.as_slice());
    assert_eq!(bytes[0], 0x25);
}

#[test]
fn decoded_payload_shares_the_receive_buffer() {
    let wire = Bytes::from(hex("06 05 05 03 02 68 69"));
    let (frame, used) = Frame::decode(&wire).unwrap().unwrap();
    assert_eq!(used, wire.len());
    // Same allocation: the payload is a slice of the input, not a copy.
    let offset = frame.payload().as_ptr() as usize - wire.as_ptr() as usize;
    assert_eq!(offset, 5);
}

#[test]
fn trailing_bytes_inside_the_frame_are_ignored_like_the_deployed_decoder() {
    // L = 7 declares one byte more than type+ch+seq+len+"hi".
    let bytes = hex("07 05 05 03 02 68 69 ff");
    let frames = decode_all(&bytes).unwrap();
    assert_eq!(frames[0].payload().as_ref(), b"hi");
}

// ---- one test per diagnostic title ----

#[test]
fn invalid_frame_type() {
    for code in [0x00, 0x14, 0xff] {
        let err = decode_err(&framed(&[code, 0, 0, 0]));
        assert_eq!(err, CodecError::InvalidFrameType(code));
        assert_eq!(err.kind().title(), "Invalid Frame Type");
    }
    // Reported from the type byte alone, before the declared 16 MiB arrive.
    let mut prefix = Vec::new();
    varint::encode(MAX_FRAME_LEN as u64, &mut prefix);
    prefix.push(0x14);
    assert_eq!(decode_err(&prefix), CodecError::InvalidFrameType(0x14));
}

#[test]
fn frame_too_large() {
    let mut bytes = Vec::new();
    varint::encode(MAX_FRAME_LEN as u64 + 1, &mut bytes);
    let err = decode_err(&bytes);
    assert!(
        matches!(err, CodecError::FrameTooLarge { len, .. } if len == MAX_FRAME_LEN as u64 + 1)
    );
    assert_eq!(err.kind().title(), "Frame Too Large");
    // A payload that fits the limit but whose frame body does not.
    let big = Bytes::from(vec![0u8; MAX_FRAME_LEN]);
    let err = Frame::new(FrameType::Msg, 0, 0, big).unwrap_err();
    assert_eq!(err.kind(), ProblemKind::FrameTooLarge);
    // A configured lower limit applies the same way.
    let mut decoder = FrameDecoder::with_max_frame_len(1024);
    decoder.extend(
        &Frame::new(FrameType::Msg, 0, 0, vec![0u8; 2000])
            .unwrap()
            .to_bytes(),
    );
    assert_eq!(
        decoder.next_frame().unwrap_err().kind(),
        ProblemKind::FrameTooLarge
    );
}

#[test]
fn largest_frame_is_accepted() {
    let payload_len = MAX_FRAME_LEN - 1 - 1 - 1 - varint::encoded_len(MAX_FRAME_LEN as u64);
    let frame = Frame::new(FrameType::VideoFrame, 0, 0, vec![7u8; payload_len]).unwrap();
    assert_eq!(frame.body_len(), MAX_FRAME_LEN);
    assert_eq!(decode_all(&frame.to_bytes()).unwrap(), [frame]);
}

#[test]
fn payload_too_large() {
    let mut body = vec![FrameType::Msg.code(), 0, 0];
    varint::encode(MAX_FRAME_LEN as u64 + 1, &mut body);
    let err = decode_err(&framed(&body));
    assert!(matches!(err, CodecError::PayloadTooLarge { .. }));
    assert_eq!(err.kind().title(), "Payload Too Large");
    let err = Frame::new(FrameType::Msg, 0, 0, vec![0u8; MAX_FRAME_LEN + 1]).unwrap_err();
    assert_eq!(err.kind(), ProblemKind::PayloadTooLarge);
}

#[test]
fn control_payload_too_large() {
    let big = format!("\"{}\"", "a".repeat(MAX_CONTROL_JSON_LEN));
    let err = Frame::new(FrameType::Typing, 1, 1, big.clone()).unwrap_err();
    assert_eq!(err.kind().title(), "Control Payload Too Large");
    let err =
        Frame::control(FrameType::Typing, 1, 1, &"a".repeat(MAX_CONTROL_JSON_LEN)).unwrap_err();
    assert_eq!(err.kind(), ProblemKind::ControlPayloadTooLarge);
    // On decode it is reported from the header, before the payload arrives.
    let mut body = vec![FrameType::Typing.code(), 1, 1];
    varint::encode(big.len() as u64, &mut body);
    let mut bytes = Vec::new();
    varint::encode((body.len() + big.len()) as u64, &mut bytes);
    bytes.extend_from_slice(&body);
    assert_eq!(
        decode_err(&bytes).kind(),
        ProblemKind::ControlPayloadTooLarge
    );
    // The same size is fine for an opaque type.
    assert!(Frame::new(FrameType::Msg, 1, 1, big).is_ok());
    // Exactly at the limit is allowed.
    let at_limit = format!("\"{}\"", "a".repeat(MAX_CONTROL_JSON_LEN - 2));
    assert!(Frame::new(FrameType::Typing, 1, 1, at_limit).is_ok());
}

#[test]
fn identifier_out_of_range() {
    let mut body = vec![FrameType::Msg.code()];
    varint::encode(u64::from(u32::MAX) + 1, &mut body);
    body.extend_from_slice(&[0, 0]);
    let err = decode_err(&framed(&body));
    assert_eq!(
        err,
        CodecError::IdentifierOutOfRange {
            field: Identifier::Channel,
            value: u64::from(u32::MAX) + 1
        }
    );
    assert_eq!(err.kind().title(), "Identifier Out Of Range");

    let mut body = vec![FrameType::Msg.code(), 0];
    varint::encode(u64::MAX, &mut body);
    body.push(0);
    assert_eq!(
        decode_err(&framed(&body)),
        CodecError::IdentifierOutOfRange {
            field: Identifier::Sequence,
            value: u64::MAX
        }
    );
    // u32::MAX itself is in range.
    let frame = Frame::new(FrameType::Msg, u32::MAX, u32::MAX, Bytes::new()).unwrap();
    assert_eq!(decode_all(&frame.to_bytes()).unwrap(), [frame]);
}

#[test]
fn varint_overflow() {
    assert_eq!(decode_err(&[0xff; 10]), CodecError::VarintOverflow);
    assert_eq!(
        decode_err(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02]),
        CodecError::VarintOverflow
    );
    let mut body = vec![FrameType::Msg.code()];
    body.extend_from_slice(&[0xff; 11]);
    let err = decode_err(&framed(&body));
    assert_eq!(err, CodecError::VarintOverflow);
    assert_eq!(err.kind().title(), "Varint Overflow");
}

#[test]
fn truncated_frame() {
    // Zero-length frame: the deployed decoder stalls on it forever; ours fails at once.
    assert_eq!(
        decode_err(&[0x00]),
        CodecError::TruncatedFrame(Truncation::ZeroLength)
    );
    // Header varint runs off the declared frame.
    assert_eq!(
        decode_err(&framed(&[FrameType::Msg.code(), 0x80])),
        CodecError::TruncatedFrame(Truncation::Header)
    );
    // Payload overruns its frame: reported from the header, without waiting for more bytes.
    let err = decode_err(&hex("06 05 05 03 09 68 69"));
    assert_eq!(
        err,
        CodecError::TruncatedFrame(Truncation::Payload {
            declared: 9,
            available: 2
        })
    );
    assert_eq!(err.kind().title(), "Truncated Frame");
}

#[test]
fn invalid_control_payload() {
    for bad in [&b""[..], b"{", b"{\"a\":}", b"\xff\xfe", b"[1,]", b"nul"] {
        let err = decode_err(&framed(
            &[
                &[
                    FrameType::Join.code(),
                    1,
                    1,
                    u8::try_from(bad.len()).unwrap(),
                ][..],
                bad,
            ]
            .concat(),
        ));
        assert!(
            matches!(err, CodecError::InvalidControlPayload(_)),
            "{bad:?}"
        );
        assert_eq!(err.kind().title(), "Invalid Control Payload");
    }
    // Any JSON value is a valid control payload, whitespace included (as in the deployed codec).
    for good in [&b"{}"[..], b" [1, 2] ", b"3", b"\"s\"", b"null"] {
        let frame = Frame::new(FrameType::Join, 1, 1, good).unwrap();
        assert_eq!(decode_all(&frame.to_bytes()).unwrap(), [frame]);
    }
    // Opaque types never look at their bytes.
    assert!(Frame::new(FrameType::KeyUpdate, 1, 1, &b"\xff{"[..]).is_ok());
    // A control builder refuses opaque types.
    assert_eq!(
        Frame::control(FrameType::Msg, 1, 1, &json!({}))
            .unwrap_err()
            .kind(),
        ProblemKind::InvalidControlPayload
    );
}

#[test]
fn protocol_version_mismatch_and_pairing_required_titles() {
    assert_eq!(
        commucat_ccp::negotiate(&[2, 3], commucat_ccp::SUPPORTED_PROTOCOL_VERSIONS),
        None
    );
    let problem = Problem::new(ProblemKind::ProtocolVersionMismatch);
    assert_eq!(problem.title.as_deref(), Some("Protocol Version Mismatch"));
    let problem = Problem::new(ProblemKind::PairingRequired);
    assert_eq!(problem.title.as_deref(), Some("PairingRequired"));
    assert_eq!(problem.pairing_required, Some(true));
}

#[test]
fn titles_are_unique_and_match_the_specification() {
    let titles: Vec<_> = ProblemKind::ALL.iter().map(|k| k.title()).collect();
    let unique: std::collections::HashSet<_> = titles.iter().collect();
    assert_eq!(unique.len(), titles.len());
    assert_eq!(
        titles[..10],
        [
            "Invalid Frame Type",
            "Protocol Version Mismatch",
            "Invalid Control Payload",
            "Frame Too Large",
            "Payload Too Large",
            "Control Payload Too Large",
            "Identifier Out Of Range",
            "PairingRequired",
            "Varint Overflow",
            "Truncated Frame",
        ]
    );
    for kind in ProblemKind::ALL {
        assert_eq!(ProblemKind::from_title(kind.title()), Some(*kind));
    }
}

#[test]
fn codec_error_becomes_an_error_frame() {
    let err = decode_err(&[0x00]);
    let frame = Problem::from(&err).to_frame(0, 7).unwrap();
    assert_eq!(frame.frame_type(), FrameType::Error);
    let back: Problem = frame.parse_control().unwrap();
    assert_eq!(back.kind(), Some(ProblemKind::TruncatedFrame));
    assert_eq!(back.status, Some(400));
    assert_eq!(back.error.as_deref(), Some("decode"));
    assert!(back.detail.unwrap().contains("zero"));
}

#[test]
fn failed_decoder_stays_failed() {
    let mut decoder = FrameDecoder::new();
    decoder.extend(&[0x00]);
    let first = decoder.next_frame().unwrap_err();
    decoder.extend(&hex("06 05 05 03 02 68 69"));
    assert_eq!(decoder.next_frame().unwrap_err(), first);
    assert!(decoder.is_failed());
    assert_eq!(decoder.buffered(), 0);
}

// ---- streaming ----

fn arb_frame() -> impl Strategy<Value = Frame> {
    let ids = (any::<u32>(), any::<u32>());
    let opaque = (
        prop::sample::select(vec![
            FrameType::Msg,
            FrameType::KeyUpdate,
            FrameType::VoiceFrame,
            FrameType::VideoFrame,
        ]),
        prop::collection::vec(any::<u8>(), 0..600),
    );
    let control_types: Vec<_> = FrameType::ALL
        .iter()
        .copied()
        .filter(|t| t.is_control())
        .collect();
    let control = (
        prop::sample::select(control_types),
        "[ -~]{0,40}",
        any::<u64>(),
    );
    prop_oneof![
        (ids, opaque).prop_map(|((ch, seq), (ty, bytes))| Frame::new(ty, ch, seq, bytes).unwrap()),
        (ids, control).prop_map(|((ch, seq), (ty, text, n))| {
            Frame::control(
                ty,
                ch,
                seq,
                &json!({"text": text, "n": n, "list": [n, -1, 0.5]}),
            )
            .unwrap()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_type_round_trips(frame in arb_frame()) {
        let bytes = frame.to_bytes();
        prop_assert_eq!(bytes.len(), frame.encoded_len());
        let (decoded, used) = Frame::decode(&bytes).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(&decoded, &frame);
        // Every strict prefix is "need more bytes", never an error.
        for cut in 0..bytes.len() {
            prop_assert_eq!(Frame::decode(&bytes.slice(..cut)), Ok(None));
        }
    }

    #[test]
    fn arbitrary_chunk_splits(
        frames in prop::collection::vec(arb_frame(), 1..12),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
    ) {
        let mut wire = BytesMut::new();
        for frame in &frames {
            frame.encode(&mut wire);
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.push(0);
        points.push(wire.len());
        points.sort_unstable();
        points.dedup();
        let mut decoder = FrameDecoder::new();
        let mut out = Vec::new();
        for pair in points.windows(2) {
            decoder.extend(&wire[pair[0]..pair[1]]);
            while let Some(frame) = decoder.next_frame().unwrap() {
                out.push(frame);
            }
        }
        prop_assert_eq!(decoder.buffered(), 0);
        prop_assert_eq!(out, frames);
    }

    #[test]
    fn byte_at_a_time(frames in prop::collection::vec(arb_frame(), 1..4)) {
        let mut decoder = FrameDecoder::new();
        let mut out = Vec::new();
        for frame in &frames {
            for byte in frame.to_bytes() {
                decoder.extend(&[byte]);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    out.push(frame);
                }
            }
        }
        prop_assert_eq!(out, frames);
    }

    #[test]
    fn garbage_never_panics_and_errors_are_terminal(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut decoder = FrameDecoder::new();
        decoder.extend(&bytes);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    // Whatever decodes re-encodes to a frame that decodes the same.
                    let again = Frame::decode(&frame.to_bytes()).unwrap().unwrap().0;
                    prop_assert_eq!(again, frame);
                }
                Ok(None) => break,
                Err(first) => {
                    prop_assert_eq!(decoder.next_frame().unwrap_err(), first);
                    break;
                }
            }
        }
    }
}
