//! Streaming decoder: chunking invariance, sticky errors, re-encoding, and differential
//! agreement with the deployed client's codec (`commucat-proto` 1.0.41).
//!
//! Input layout:
//!
//! ```text
//! n:u8  size[n % 33]:u8...  stream...
//! ```
//!
//! The stream is fed to a `FrameDecoder` in chunks of `size[0]`, `size[1]`, ... bytes (zero-size
//! chunks allowed), then the rest in one final chunk; frames are drained after every chunk.
//! A seed that is a bare CCP-1 stream therefore needs a leading `00` byte.

#![no_main]

use bytes::Bytes;
use commucat_ccp::{CodecError, Frame, FrameDecoder, PayloadKind};
use commucat_proto as proto;
use libfuzzer_sys::fuzz_target;

/// Largest number of explicit split points.
const MAX_SPLITS: usize = 32;

/// How a run over the whole stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The stream is malformed; the decoder is terminally failed with this error.
    Failed(CodecError),
    /// No error; this many bytes are buffered waiting for the rest of a frame.
    Pending(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    frames: Vec<Frame>,
    outcome: Outcome,
}

/// Splits the fuzz input into chunk sizes and the stream.
fn layout(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let n = (usize::from(n) % (MAX_SPLITS + 1)).min(rest.len());
    let (sizes, stream) = rest.split_at(n);
    (sizes.iter().map(|&s| usize::from(s)).collect(), stream)
}

/// The stream cut at the given chunk sizes; the remainder is the last chunk.
fn chunks<'a>(stream: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(sizes.len() + 1);
    let mut rest = stream;
    for &size in sizes {
        let (head, tail) = rest.split_at(size.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out.push(rest);
    out
}

/// Feeds `chunks` to one `FrameDecoder`, draining after each chunk, and checks that errors are
/// sticky (c).
fn run_decoder(chunks: &[&[u8]]) -> Run {
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    let mut failed: Option<CodecError> = None;
    for chunk in chunks {
        decoder.extend(chunk);
        if let Some(error) = &failed {
            // (c) More bytes never repair a failed stream.
            assert!(decoder.is_failed());
            assert_eq!(decoder.next_frame().as_ref(), Err(error));
            continue;
        }
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => {
                    assert!(!decoder.is_failed());
                    break;
                }
                Err(error) => {
                    assert!(decoder.is_failed());
                    failed = Some(error);
                    break;
                }
            }
        }
    }
    let outcome = match failed {
        Some(error) => {
            // (c) The same error on every later call.
            for _ in 0..2 {
                assert_eq!(decoder.next_frame().as_ref(), Err(&error));
            }
            decoder.extend(&[0x06, 0x05, 0x05, 0x03, 0x02, b'h', b'i']);
            assert_eq!(decoder.next_frame().as_ref(), Err(&error));
            assert!(decoder.is_failed());
            Outcome::Failed(error)
        }
        None => {
            // Asking again without new bytes changes nothing.
            let before = decoder.buffered();
            assert_eq!(decoder.next_frame(), Ok(None));
            assert_eq!(decoder.buffered(), before);
            Outcome::Pending(before)
        }
    };
    Run { frames, outcome }
}

/// Repeated `Frame::decode` over a `Bytes`; also returns the offset at which each frame
/// started and the offset where decoding stopped.
fn run_slices(stream: &[u8]) -> (Run, Vec<usize>, usize) {
    let mut buf = Bytes::copy_from_slice(stream);
    let mut frames = Vec::new();
    let mut starts = Vec::new();
    let mut pos = 0;
    let outcome = loop {
        match Frame::decode(&buf) {
            Ok(Some((frame, used))) => {
                assert!(used > 0 && used <= buf.len(), "consumed {used} of {}", buf.len());
                assert!(frame.encoded_len() <= used);
                starts.push(pos);
                frames.push(frame);
                pos += used;
                buf = buf.slice(used..);
            }
            Ok(None) => break Outcome::Pending(buf.len()),
            Err(error) => break Outcome::Failed(error),
        }
    };
    (Run { frames, outcome }, starts, pos)
}

/// (d) + (e): the frame re-encodes, decodes back to itself, and the deployed decoder reads the
/// re-encoded bytes as the same frame.
fn check_reencoding(frame: &Frame) {
    let encoded = frame.to_bytes();
    assert_eq!(encoded.len(), frame.encoded_len());
    let mut header = Vec::new();
    frame.encode_header(&mut header);
    assert_eq!(header.len() + frame.payload().len(), encoded.len());
    assert_eq!(&encoded[..header.len()], header.as_slice());
    assert_eq!(&encoded[header.len()..], frame.payload().as_ref());

    // (d) Our own decoder reads it back.
    assert_eq!(
        Frame::decode(&encoded),
        Ok(Some((frame.clone(), encoded.len())))
    );
    let mut decoder = FrameDecoder::new();
    decoder.extend(&encoded);
    assert_eq!(decoder.next_frame(), Ok(Some(frame.clone())));
    assert_eq!(decoder.buffered(), 0);
    // The constructor accepts every decoded frame's parts.
    assert_eq!(
        Frame::new(
            frame.frame_type(),
            frame.channel_id(),
            frame.sequence(),
            frame.payload().clone()
        )
        .as_ref(),
        Ok(frame)
    );

    // (e) The deployed decoder reads the same frame.
    let (theirs, used) = match proto::Frame::decode(&encoded) {
        Ok(decoded) => decoded,
        Err(error) => panic!("deployed decoder rejects our re-encoding of {frame:?}: {error}"),
    };
    assert_eq!(used, encoded.len());
    assert_same_frame(frame, &theirs);
    if frame.frame_type().payload_kind() == PayloadKind::Opaque {
        // Opaque frames have one canonical encoding: both encoders produce it.
        match theirs.encode() {
            Ok(bytes) => assert_eq!(bytes.as_slice(), encoded.as_ref()),
            Err(error) => panic!("deployed encoder rejects {theirs:?}: {error}"),
        }
    }
}

/// Type code, channel, sequence and payload agree (control payloads as JSON values).
fn assert_same_frame(ours: &Frame, theirs: &proto::Frame) {
    assert_eq!(theirs.frame_type as u8, ours.frame_type().code());
    assert_eq!(theirs.channel_id, u64::from(ours.channel_id()));
    assert_eq!(theirs.sequence, u64::from(ours.sequence()));
    match (&theirs.payload, ours.frame_type().payload_kind()) {
        (proto::FramePayload::Opaque(bytes), PayloadKind::Opaque) => {
            assert_eq!(bytes.as_slice(), ours.payload().as_ref());
        }
        (proto::FramePayload::Control(envelope), PayloadKind::Control) => {
            let value: serde_json::Value = match serde_json::from_slice(ours.payload()) {
                Ok(value) => value,
                Err(error) => panic!("decoded control payload is not JSON: {error}"),
            };
            assert_eq!(envelope.properties, value);
        }
        (payload, kind) => panic!("payload kind mismatch: ours {kind:?}, theirs {payload:?}"),
    }
}

/// Whether any varint of the frame header at the start of `buf` (length prefix, channel,
/// sequence, payload length) is 10 or more bytes long, read the deployed decoder's way. Such
/// varints are the documented difference: a 10th byte above 0x01 is an overflow for us and
/// silently truncated by the deployed decoder. Conservative: ignores the frame bound.
fn has_ten_byte_varint(buf: &[u8]) -> bool {
    let mut cursor = 0;
    for field in 0..4 {
        if field == 1 {
            cursor += 1; // type byte
        }
        let rest = buf.get(cursor..).unwrap_or(&[]);
        let continuation = rest.iter().take_while(|&&b| b & 0x80 != 0).count();
        if continuation >= 9 {
            return true;
        }
        if continuation == rest.len() {
            return false;
        }
        cursor += continuation + 1;
    }
    false
}

/// (f) At every offset our decoder reaches, the deployed decoder succeeds exactly when we do,
/// with the same frame and the same length.
fn check_differential(stream: &[u8], ours: &Run, starts: &[usize], end: usize) {
    let positions = starts.iter().copied().zip(ours.frames.iter().map(Some));
    let last = std::iter::once((end, None));
    for (pos, frame) in positions.chain(last) {
        let rest = &stream[pos..];
        if has_ten_byte_varint(rest) {
            continue;
        }
        match (proto::Frame::decode(rest), frame) {
            (Ok((theirs, used)), Some(frame)) => {
                assert_same_frame(frame, &theirs);
                let ours_used = Frame::decode(&Bytes::copy_from_slice(rest))
                    .ok()
                    .flatten()
                    .map(|(_, used)| used);
                assert_eq!(Some(used), ours_used, "frame length differs at offset {pos}");
            }
            (Ok((theirs, used)), None) => panic!(
                "deployed decoder reads {theirs:?} ({used} bytes) at offset {pos}, \
                 we end with {:?}",
                ours.outcome
            ),
            (Err(error), Some(frame)) => panic!(
                "we decode {frame:?} at offset {pos}, the deployed decoder fails: {error}"
            ),
            (Err(_), None) => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (sizes, stream) = layout(data);
    let chunked = run_decoder(&chunks(stream, &sizes));
    let whole = run_decoder(&[stream]);
    // Byte at a time: the finest chunking.
    let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
    let single = run_decoder(&bytewise);
    let (sliced, starts, end) = run_slices(stream);

    // (b) Chunking never changes the frames or the outcome, and the decoder agrees with
    // repeated `Frame::decode`.
    assert_eq!(chunked, whole, "chunks {sizes:?}");
    assert_eq!(single, whole);
    assert_eq!(sliced, whole);
    if let Outcome::Pending(left) = whole.outcome {
        assert_eq!(left, stream.len() - end);
    }

    for frame in &whole.frames {
        check_reencoding(frame);
    }
    check_differential(stream, &sliced, &starts, end);
});
