//! What each wrapper looks like: padding lengths and the decoy `ProtocolSnapshot` profiles of
//! seed 001 (QUIC Initial, DNS query, SIP INVITE, TLS 1.3 ClientHello/REALITY, WebRTC data
//! channel), drawn per packet from a weighted mix.

use rand::Rng;
use rand::distributions::{Alphanumeric, DistString};
use rand::seq::SliceRandom;

use super::packet::{
    AmnesiaSignature, DaitaProfile, DnsPacketSnapshot, ProtocolFlavor, ProtocolMimicry,
    ProtocolSnapshot, QuicHandshakeSnapshot, RealityTicket, SipMessageSnapshot, SipMethod,
    TlsHandshakeSnapshot, WebRtcDataChannelSnapshot,
};

/// Largest padding on either side of a frame, bytes (seed 001: 0–64 B).
pub const MAX_PADDING: u8 = 64;

/// Padding bounds and decoy weights. Each packet draws its prefix and suffix lengths uniformly
/// from `0..=max_prefix` / `0..=max_suffix` and its flavor in proportion to `weights`.
#[derive(Debug, Clone, PartialEq)]
pub struct ObfPolicy {
    max_prefix: u8,
    max_suffix: u8,
    weights: [(ProtocolFlavor, u16); 5],
}

impl Default for ObfPolicy {
    /// 64 B bounds both sides; the benign-network mix (HTTPS/REALITY and QUIC first, as 1.0.41's
    /// `AdaptiveMimicPolicy::default`).
    fn default() -> Self {
        Self::new(MAX_PADDING)
    }
}

impl ObfPolicy {
    /// The default mix with padding of at most `max_padding` bytes each side (capped at
    /// [`MAX_PADDING`]).
    #[must_use]
    pub fn new(max_padding: u8) -> Self {
        let bound = max_padding.min(MAX_PADDING);
        Self {
            max_prefix: bound,
            max_suffix: bound,
            weights: [
                (ProtocolFlavor::HttpsHandshake, 30),
                (ProtocolFlavor::QuicInitial, 22),
                (ProtocolFlavor::WebRtc, 18),
                (ProtocolFlavor::DnsQuery, 10),
                (ProtocolFlavor::SipInvite, 8),
            ],
        }
    }

    /// Padding bounds (prefix, suffix).
    #[must_use]
    pub const fn padding_bounds(&self) -> (u8, u8) {
        (self.max_prefix, self.max_suffix)
    }

    /// Replaces the weight of `flavor` (0 never draws it; if all are 0, HTTPS is used).
    #[must_use]
    pub fn with_weight(mut self, flavor: ProtocolFlavor, weight: u16) -> Self {
        for entry in &mut self.weights {
            if entry.0 == flavor {
                entry.1 = weight;
            }
        }
        self
    }

    /// A padding length for the prefix.
    pub fn prefix_len<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        usize::from(rng.gen_range(0..=self.max_prefix))
    }

    /// A padding length for the suffix.
    pub fn suffix_len<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        usize::from(rng.gen_range(0..=self.max_suffix))
    }

    /// A flavor in proportion to the weights.
    pub fn flavor<R: Rng + ?Sized>(&self, rng: &mut R) -> ProtocolFlavor {
        let total: u32 = self.weights.iter().map(|w| u32::from(w.1)).sum();
        if total == 0 {
            return ProtocolFlavor::HttpsHandshake;
        }
        let mut draw = rng.gen_range(0..total);
        for (flavor, weight) in self.weights {
            let weight = u32::from(weight);
            if draw < weight {
                return flavor;
            }
            draw -= weight;
        }
        ProtocolFlavor::HttpsHandshake
    }

    /// A random decoy snapshot of a flavor drawn from the mix.
    pub fn snapshot<R: Rng + ?Sized>(&self, rng: &mut R) -> ProtocolSnapshot {
        snapshot_of(self.flavor(rng), rng)
    }
}

/// A random decoy snapshot of `flavor`.
pub fn snapshot_of<R: Rng + ?Sized>(flavor: ProtocolFlavor, rng: &mut R) -> ProtocolSnapshot {
    let mut salt = [0u8; 8];
    rng.fill(&mut salt);
    let amnesia = AmnesiaSignature {
        salt,
        jitter_ns: rng.gen_range(50_000..=5_000_000),
        packet_mask: rng.r#gen(),
    };
    let daita = DaitaProfile {
        automaton_state: rng.gen_range(0..=7),
        acceptance_probability: rng.gen_range(0.45f32..=0.95),
    };
    let mimicry = match flavor {
        ProtocolFlavor::QuicInitial => ProtocolMimicry::QuicInitial(QuicHandshakeSnapshot {
            version: *[0xff00_0001u32, 1, 0xff00_0003].choose(rng).unwrap_or(&1),
            dcid: random_bytes(rng, 8, 20),
            scid: random_bytes(rng, 8, 20),
            token_length: rng.gen_range(0..=24),
            alpn: pick(rng, &["h3", "hq-interop", "quic-transport", "doq"]),
        }),
        ProtocolFlavor::DnsQuery => ProtocolMimicry::DnsQuery(DnsPacketSnapshot {
            transaction_id: rng.r#gen(),
            qname: random_domain(rng),
            qtype: *[1u16, 15, 28, 16].choose(rng).unwrap_or(&1),
            padding_len: rng.gen_range(0..=64),
        }),
        ProtocolFlavor::SipInvite => ProtocolMimicry::SipInvite(SipMessageSnapshot {
            call_id: random_hex(rng, 12),
            cseq: rng.gen_range(1..=65535),
            method: *[SipMethod::Invite, SipMethod::Register, SipMethod::Options]
                .choose(rng)
                .unwrap_or(&SipMethod::Invite),
            via_branch: format!("z9hG4bK{}", random_hex(rng, 8)),
        }),
        ProtocolFlavor::HttpsHandshake => ProtocolMimicry::HttpsHandshake(tls_snapshot(rng)),
        ProtocolFlavor::WebRtc => {
            let ordered = rng.gen_bool(0.7);
            let label_len = rng.gen_range(4..=12);
            ProtocolMimicry::WebRtc(WebRtcDataChannelSnapshot {
                stream_id: rng.r#gen(),
                label: Alphanumeric.sample_string(rng, label_len),
                ordered,
                reliability: if ordered { 0 } else { rng.gen_range(1..=3) },
                srtp_profile: pick(rng, &["UDP/TLS/RTP/SAVPF", "UDP/DTLS/SCTP", "RTP/SAVP"]),
            })
        }
    };
    ProtocolSnapshot {
        flavor,
        mimicry,
        amnesia,
        daita,
    }
}

fn tls_snapshot<R: Rng + ?Sized>(rng: &mut R) -> TlsHandshakeSnapshot {
    let mut suites = vec![
        0x1301u16, 0x1302, 0x1303, 0xcca8, 0xcca9, 0xcca7, 0x009c, 0x009d,
    ];
    suites.shuffle(rng);
    suites.truncate(rng.gen_range(3..=6));
    let mut alpn: Vec<String> = ["h3", "h2", "http/1.1", "dot"]
        .iter()
        .filter(|_| rng.gen_bool(0.6))
        .map(|s| (*s).to_owned())
        .collect();
    if alpn.is_empty() {
        alpn.push("h2".to_owned());
    }
    let reality = rng.gen_bool(0.45).then(|| {
        let mut fingerprint = [0u8; 32];
        rng.fill(&mut fingerprint);
        RealityTicket {
            server_name: pick(
                rng,
                &[
                    "cdn.cloudflare.com",
                    "www.cloudflare-dns.com",
                    "discord.com",
                    "assets-cdn.github.com",
                    "www.google.com",
                ],
            ),
            fingerprint,
            issued_at: rng.gen_range(1_700_000_000u64..=1_900_000_000),
        }
    });
    TlsHandshakeSnapshot {
        sni: random_domain(rng),
        cipher_suites: suites,
        grease: *[0x0a0au16, 0x1a1a, 0x2a2a, 0x3a3a]
            .choose(rng)
            .unwrap_or(&0x0a0a),
        alpn,
        reality,
    }
}

fn pick<R: Rng + ?Sized>(rng: &mut R, options: &[&str]) -> String {
    options.choose(rng).copied().unwrap_or_default().to_owned()
}

fn random_bytes<R: Rng + ?Sized>(rng: &mut R, min: usize, max: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; rng.gen_range(min..=max)];
    rng.fill(bytes.as_mut_slice());
    bytes
}

fn random_domain<R: Rng + ?Sized>(rng: &mut R) -> String {
    let a = pick(rng, &["cdn", "api", "img", "edge", "static", "data"]);
    let b = pick(
        rng,
        &["cloud", "global", "mesh", "relay", "signal", "atlas"],
    );
    let c = pick(rng, &["com", "net", "org", "io", "app", "cloud"]);
    format!("{a}.{b}.{c}")
}

fn random_hex<R: Rng + ?Sized>(rng: &mut R, len: usize) -> String {
    const HEX: &[u8] = b"0123456789abcdef";
    (0..len)
        .map(|_| char::from(*HEX.choose(rng).unwrap_or(&b'0')))
        .collect()
}
