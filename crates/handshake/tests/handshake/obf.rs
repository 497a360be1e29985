//! `adaptive-obf` negotiation between the two machines: accepted only when offered with
//! `noise-transport` and enabled on the server, never used unless echoed, both ends derive the
//! same root (classical and `pq-hybrid` sessions), and the roots key wrappers that verify.

use commucat_ccp::{Frame, FrameType};
use commucat_handshake::pq::DeviceKeys;
use commucat_handshake::{CAP_ADAPTIVE_OBF, CAP_FEC, CAP_NOISE_TRANSPORT, CAP_PQ_HYBRID};
use commucat_keys::HandshakePattern;
use commucat_link::obf::{ObfPolicy, Obfuscator, Role};

use crate::pair::{World, established};

fn caps(list: &[&str]) -> Vec<String> {
    list.iter().map(|c| (*c).to_owned()).collect()
}

/// Both roots wrap and unwrap each other's frames.
fn roots_interoperate(client_root: &[u8; 32], server_root: &[u8; 32]) {
    let max = commucat_ccp::MAX_FRAME_LEN;
    let mut client = Obfuscator::new(
        client_root,
        Role::Client,
        ObfPolicy::default(),
        [1; 32],
        max,
    );
    let mut server = Obfuscator::new(
        server_root,
        Role::Server,
        ObfPolicy::default(),
        [2; 32],
        max,
    );
    let frame = Frame::new(FrameType::Msg, 1, 2, &b"hello"[..]).unwrap();
    let json = client.wrap(&frame).unwrap().encode().unwrap();
    assert_eq!(server.unwrap(&json).unwrap(), frame);
    let json = server.wrap(&frame).unwrap().encode().unwrap();
    assert_eq!(client.unwrap(&json).unwrap(), frame);
}

#[test]
fn offered_with_noise_transport_it_is_echoed_and_both_ends_share_the_root() {
    for pattern in HandshakePattern::ALL {
        let mut world = World::new();
        let mut client = world.client("phone", 1);
        client.pattern = pattern;
        client.capabilities = caps(&[CAP_NOISE_TRANSPORT, CAP_ADAPTIVE_OBF]);
        let outcome = world.run(&client);
        let (server, info) = established(&outcome);
        assert!(info.adaptive_obf() && info.encrypted(), "{pattern:?}");
        assert!(
            server
                .accepted_capabilities
                .contains(&CAP_ADAPTIVE_OBF.to_owned())
        );
        let (Some(server_root), Some(client_root)) = (&server.obf_root, &info.obf_root) else {
            panic!("roots missing: {pattern:?}");
        };
        assert_eq!(server_root.as_bytes(), client_root.as_bytes());
        roots_interoperate(client_root.as_bytes(), server_root.as_bytes());
        assert_eq!(format!("{server_root:?}"), "ObfRoot(..)", "never printed");
    }
}

#[test]
fn a_pq_hybrid_session_mixes_the_hybrid_root_in() {
    let mut world = World::new();
    let mut client = world.client("phone", 1);
    client.capabilities = caps(&[CAP_NOISE_TRANSPORT, CAP_PQ_HYBRID, CAP_ADAPTIVE_OBF]);
    client.pq = Some(DeviceKeys::generate(2).unwrap());
    let outcome = world.run(&client);
    let (server, info) = established(&outcome);
    assert!(server.pq_hybrid && info.pq_hybrid() && info.adaptive_obf());
    let server_root = server.obf_root.as_ref().unwrap();
    let client_root = info.obf_root.as_ref().unwrap();
    assert_eq!(server_root.as_bytes(), client_root.as_bytes());
    roots_interoperate(client_root.as_bytes(), server_root.as_bytes());
}

#[test]
fn not_offered_it_is_not_used() {
    let mut world = World::new();
    let mut client = world.client("phone", 1);
    client.capabilities = caps(&[CAP_NOISE_TRANSPORT]);
    let outcome = world.run(&client);
    let (server, info) = established(&outcome);
    assert!(!info.adaptive_obf() && server.obf_root.is_none() && info.obf_root.is_none());
    assert_eq!(server.accepted_capabilities, [CAP_NOISE_TRANSPORT]);
}

#[test]
fn a_server_with_it_off_does_not_echo_it_and_the_client_does_not_wrap() {
    let mut world = World::new();
    world.adaptive_obf = false;
    let mut client = world.client("phone", 1);
    client.capabilities = caps(&[CAP_NOISE_TRANSPORT, CAP_ADAPTIVE_OBF]);
    let outcome = world.run(&client);
    let (server, info) = established(&outcome);
    assert!(info.encrypted(), "noise-transport is still accepted");
    assert!(!info.adaptive_obf() && server.obf_root.is_none() && info.obf_root.is_none());
    assert_eq!(server.accepted_capabilities, [CAP_NOISE_TRANSPORT]);
}

#[test]
fn without_noise_transport_it_is_not_accepted() {
    let mut world = World::new();
    let mut client = world.client("phone", 1);
    client.capabilities = caps(&[CAP_ADAPTIVE_OBF]);
    let outcome = world.run(&client);
    let (server, info) = established(&outcome);
    assert!(!info.adaptive_obf() && !info.encrypted());
    assert!(server.accepted_capabilities.is_empty() && server.obf_root.is_none());
}

/// `fec` replaces the framing of the record stream, so it is never echoed beside the
/// capabilities that work inside the records; alone (with `noise-transport`) it is.
#[test]
fn fec_is_not_echoed_beside_adaptive_obf_or_pq_hybrid() {
    let mut world = World::new();
    let mut client = world.client("phone", 1);
    client.capabilities = caps(&[CAP_NOISE_TRANSPORT, CAP_FEC, CAP_ADAPTIVE_OBF]);
    let outcome = world.run(&client);
    let (server, info) = established(&outcome);
    assert!(info.adaptive_obf() && !info.fec());
    assert!(!server.accepted_capabilities.contains(&CAP_FEC.to_owned()));

    let mut client = world.client("tablet", 2);
    client.capabilities = caps(&[CAP_NOISE_TRANSPORT, CAP_FEC, CAP_PQ_HYBRID]);
    client.pq = Some(DeviceKeys::generate(2).unwrap());
    let outcome = world.run(&client);
    let (server, info) = established(&outcome);
    assert!(info.pq_hybrid() && !info.fec());
    assert!(!server.accepted_capabilities.contains(&CAP_FEC.to_owned()));

    let mut client = world.client("laptop", 3);
    client.capabilities = caps(&[CAP_NOISE_TRANSPORT, CAP_FEC]);
    let outcome = world.run(&client);
    let (server, info) = established(&outcome);
    assert!(info.fec() && info.encrypted());
    assert!(server.accepted_capabilities.contains(&CAP_FEC.to_owned()));
}
