//! Federation between two real servers, `a.test` and `b.test`, on loopback: each pins the
//! other's federation key (read from its server-info) and trusts its TLS certificate; events
//! travel over HTTPS with the wire format of wire-compat §13. A simulated reference peer
//! (`ref.test`) signs with the deployed `commucat-crypto` 1.0.41 `EventSigner` and the
//! reference digest spelled out here, so interoperability is checked against an independent
//! implementation of §13, not only between two CommuCat servers.

mod friends;
mod messages;
mod outbox;
mod refusals;
mod rotation;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use commucat_server::Config;
use commucat_server::config::{PeerConfig, PeerStatus};

use crate::common::{StoreBackend, TestServer};

/// The seed of the simulated reference peer's key (its `crypto.federation_seed` analogue).
pub(super) const REFERENCE_SEED: &[u8] = b"reference-peer-seed-reference-peer-seed";

/// A peer entry.
pub(super) fn peer(
    domain: &str,
    endpoint: &str,
    key: [u8; 32],
    ca_file: Option<PathBuf>,
) -> PeerConfig {
    PeerConfig {
        domain: domain.to_owned(),
        endpoint: endpoint.to_owned(),
        public_key: Some(key),
        status: PeerStatus::Active,
        ca_file,
    }
}

/// The simulated reference peer's key pair.
pub(super) fn reference_keys() -> commucat_crypto::DeviceKeyPair {
    commucat_crypto::DeviceKeyPair::from_seed(REFERENCE_SEED).unwrap()
}

/// Federation on, fast retries.
pub(super) fn federating(domain: &'static str) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| {
        c.server.domain = domain.to_owned();
        c.federation.enabled = true;
        c.federation.max_backoff = Duration::from_secs(1);
    }
}

/// The federation public key a server publishes in server-info.
pub(super) async fn federation_key(server: &TestServer) -> [u8; 32] {
    let info = server.server_info().await;
    let hex = info["federation"]["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    commucat_keys::decode_hex32(&hex).unwrap()
}

/// Two federated domains.
pub(super) struct Domains {
    pub(super) a: TestServer,
    pub(super) b: TestServer,
    /// Where each one's certificate is written for the other to trust.
    _certs: tempfile::TempDir,
}

impl Domains {
    /// `a.test` on `backend_a` and `b.test` on `backend_b`, each a peer of the other (and
    /// `ref.test`, the simulated reference server, a peer of `b.test`); `tweak_a` and `tweak_b`
    /// run last.
    pub(super) async fn start(
        backend_a: StoreBackend,
        backend_b: StoreBackend,
        tweak_a: impl FnOnce(&mut Config),
        tweak_b: impl FnOnce(&mut Config),
    ) -> Self {
        let mut a = TestServer::start_on(backend_a, federating("a.test")).await;
        let mut b = TestServer::start_on(backend_b, federating("b.test")).await;
        let certs = tempfile::tempdir().unwrap();
        let a_pem = certs.path().join("a.pem");
        let b_pem = certs.path().join("b.pem");
        std::fs::write(&a_pem, &a.pem).unwrap();
        std::fs::write(&b_pem, &b.pem).unwrap();
        let (a_key, b_key) = (federation_key(&a).await, federation_key(&b).await);
        let (a_addr, b_addr) = (a.addr, b.addr);
        a.restart_with(|c| {
            c.server.listen = a_addr;
            c.federation.peers = vec![peer("b.test", &url(b_addr), b_key, Some(b_pem))];
            tweak_a(c);
        })
        .await;
        b.restart_with(|c| {
            c.server.listen = b_addr;
            c.federation.peers = vec![
                peer("a.test", &url(a_addr), a_key, Some(a_pem)),
                peer(
                    "ref.test",
                    "https://127.0.0.1:9",
                    reference_keys().public,
                    None,
                ),
            ];
            tweak_b(c);
        })
        .await;
        assert_eq!(
            (a.addr, b.addr),
            (a_addr, b_addr),
            "same ports after restart"
        );
        Self {
            a,
            b,
            _certs: certs,
        }
    }
}

/// The federation endpoint of a server at `addr`.
pub(super) fn url(addr: SocketAddr) -> String {
    format!("https://127.0.0.1:{}", addr.port())
}
