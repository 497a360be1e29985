//! `adaptive-obf` unwrap path: arbitrary bytes as a decrypted record stream of
//! `length || packet JSON`, and genuine wrappers with one byte changed.
//!
//! Input layout:
//!
//! ```text
//! mode:u8  rest...
//! ```
//!
//! - `mode` even: `rest` is fed to the server's `Obfuscator::next_frame` in chunks of
//!   `mode / 2 + 1` bytes. No panic; the buffer never grows past one bounded packet; nothing is
//!   accepted (no input can carry a MAC under the session key); whatever the 1.0.41 crate
//!   (`commucat-proto` `obfuscation`) makes of a packet, we never accept one it refuses.
//! - `mode` odd: the client wraps a MSG whose payload is `rest[2..]`, then byte
//!   `u16(rest[0..2]) % len` of the packet JSON is XORed with `mode | 1`. The changed packet is
//!   refused as an integrity failure; the untouched one unwraps to the same frame, both here
//!   and with the 1.0.41 crate.

#![no_main]

use bytes::BytesMut;
use commucat_ccp::{Frame, FrameType};
use commucat_link::obf::{
    C2S_LABEL, MAC_KEY_LABEL, ObfError, ObfPolicy, Obfuscator, Role, max_packet_len,
};
use commucat_proto as proto;
use libfuzzer_sys::fuzz_target;

const ROOT: [u8; 32] = [0x42; 32];
const MAX_FRAME: usize = 64 * 1024;

fn obfuscator(role: Role) -> Obfuscator {
    Obfuscator::new(&ROOT, role, ObfPolicy::default(), [9; 32], MAX_FRAME)
}

fn proto_key() -> proto::ObfuscationKey {
    proto::ObfuscationKey::derive(MAC_KEY_LABEL, &blake3::derive_key(C2S_LABEL, &ROOT))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let mut server = obfuscator(Role::Server);
        let mut buffer = BytesMut::new();
        for chunk in rest.chunks(usize::from(mode / 2) + 1) {
            buffer.extend_from_slice(chunk);
            match server.next_frame(&mut buffer) {
                Ok(None) => assert!(buffer.len() <= 4 + max_packet_len(MAX_FRAME) + chunk.len()),
                Ok(Some(frame)) => panic!("forged packet accepted: {frame:?}"),
                Err(_) => return,
            }
        }
        // The 1.0.41 crate on the same bytes as one packet: it must refuse too.
        if let Ok(packet) = proto::ObfuscatedPacket::decode(rest) {
            assert!(packet.into_frame(&proto_key()).is_err(), "1.0.41 accepted a forgery");
        }
        return;
    }
    let Some((position, payload)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let Ok(frame) = Frame::new(FrameType::Msg, 1, 2, payload.to_vec()) else {
        return;
    };
    let mut client = obfuscator(Role::Client);
    let json = client.wrap(&frame).and_then(|p| {
        p.encode().map_err(|_| ObfError::Wrap("encode"))
    });
    let Ok(json) = json else {
        return;
    };
    let index = usize::from(u16::from_le_bytes(*position)) % json.len();
    let mut tampered = json.clone();
    if let Some(byte) = tampered.get_mut(index) {
        *byte ^= mode | 1;
    }
    let mut server = obfuscator(Role::Server);
    assert!(matches!(server.unwrap(&tampered), Err(ObfError::Integrity(_))));
    let mut server = obfuscator(Role::Server);
    assert_eq!(server.unwrap(&json).ok(), Some(frame.clone()));
    let theirs = proto::ObfuscatedPacket::decode(&json)
        .ok()
        .and_then(|p| p.into_frame(&proto_key()).ok())
        .and_then(|f| f.encode().ok());
    assert_eq!(theirs, Some(frame.to_bytes().to_vec()));
});
