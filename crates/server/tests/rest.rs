#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The REST API through the real server over TLS: bearer authentication with a handshake's
//! session id over HTTP/1.1 (no h2, as the deployed client) and HTTP/2, devices, pairing and
//! friends, every error status, and the deployed client's pairing flow end to end.

mod common;

use std::time::Duration;

use ccp::{FrameType, Problem};
use common::{Client, StoreBackend, TestServer, unix_now};
use commucat_client::{DeviceIdentity, HandshakeOptions, Session, TlsTrust, transport};
use commucat_keys::{DeviceCertificate, DeviceKeyPair, decode_hex32};
use commucat_store::{DeviceKeyEvent, PairingRecord};
use reqwest::{Method, StatusCode, Version};
use serde_json::{Value, json};

/// HTTP clients trusting the server's certificate: HTTP/1.1 only and HTTP/2 (ALPN).
struct Rest {
    h1: reqwest::Client,
    h2: reqwest::Client,
    base: String,
}

struct Answer {
    status: StatusCode,
    version: Version,
    content_type: String,
    body: Value,
}

impl Rest {
    fn new(server: &TestServer) -> Self {
        let TlsTrust::CaPem(pem) = &server.trust else {
            panic!("test server trust is a CA PEM")
        };
        let build = |h1: bool| {
            let builder = reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(pem).unwrap()])
                .resolve("localhost", server.addr)
                .https_only(true);
            let builder = if h1 { builder.http1_only() } else { builder };
            builder.build().unwrap()
        };
        Self {
            h1: build(true),
            h2: build(false),
            base: format!("https://localhost:{}", server.addr.port()),
        }
    }

    async fn call_on(
        &self,
        h1: bool,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let client = if h1 { &self.h1 } else { &self.h2 };
        let mut request = client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let version = response.version();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{path}: body is not JSON ({e}): {bytes:?}"));
        let answer = Answer {
            status,
            version,
            content_type,
            body,
        };
        assert_eq!(
            answer.version,
            if h1 {
                Version::HTTP_11
            } else {
                Version::HTTP_2
            }
        );
        if answer.status == StatusCode::OK {
            assert_eq!(answer.content_type, "application/json");
        } else {
            check_problem(&answer);
        }
        answer
    }

    /// Over HTTP/1.1, as the deployed client calls.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        self.call_on(true, method, path, token, body).await
    }

    async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), None).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Answer {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// A call that must succeed; returns its body.
    async fn ok(&self, method: Method, path: &str, token: Option<&str>, body: &Value) -> Value {
        let answer = self.call(method, path, token, Some(body)).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
        answer.body
    }
}

/// A problem+json body with the status's reason phrase as title.
fn check_problem(answer: &Answer) {
    assert_eq!(answer.content_type, "application/problem+json");
    let body = &answer.body;
    assert_eq!(body["type"], "about:blank", "{body}");
    assert_eq!(body["status"], answer.status.as_u16(), "{body}");
    assert_eq!(
        body["title"],
        answer.status.canonical_reason().unwrap(),
        "{body}"
    );
    assert!(body["detail"].is_string(), "{body}");
}

fn expect(answer: &Answer, status: StatusCode) {
    assert_eq!(answer.status, status, "{}", answer.body);
}

fn token(client: &Client) -> String {
    client.session.info().session_id.clone()
}

fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
}

/// Pairs a new device into `issuer`'s account and connects it with the claimed identity.
async fn pair_and_connect(server: &TestServer, rest: &Rest, issuer: &Client) -> (Value, Client) {
    let issued = rest
        .ok(
            Method::POST,
            "/api/pair",
            Some(&token(issuer)),
            &json!({"ttl": null}),
        )
        .await;
    let claimed = rest
        .ok(
            Method::POST,
            "/api/pair/claim",
            None,
            &json!({"pair_code": issued["pair_code"]}),
        )
        .await;
    let identity = claimed_identity(&claimed);
    let client = server.connect_as(identity).await;
    (claimed, client)
}

/// The session ends with a `Device Revoked` ERROR.
async fn expect_closed_as_revoked(client: &mut Client) {
    let frames = client.recv_until_closed().await;
    let last = frames.last().expect("a closing ERROR");
    assert_eq!(last.frame_type(), FrameType::Error);
    let problem: Problem = last.parse_control().unwrap();
    assert_eq!(problem.title.as_deref(), Some("Device Revoked"));
}

fn claimed_identity(claimed: &Value) -> DeviceIdentity {
    let certificate: DeviceCertificate =
        serde_json::from_value(claimed["device_certificate"].clone()).unwrap();
    DeviceIdentity {
        device_id: claimed["device_id"].as_str().unwrap().to_owned(),
        keys: DeviceKeyPair::from_seed_hex(claimed["private_key"].as_str().unwrap()).unwrap(),
        certificate: Some(certificate),
        user: None,
    }
}

// ---------------------------------------------------------------- bearer authentication

#[tokio::test]
async fn session_id_is_a_bearer_over_http1_and_http2() {
    let server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let bearer = token(&alice);
    for h1 in [true, false] {
        let answer = rest
            .call_on(h1, Method::GET, "/api/devices", Some(&bearer), None)
            .await;
        expect(&answer, StatusCode::OK);
        let devices = answer.body["devices"].as_array().unwrap();
        assert_eq!(devices.len(), 1);
        let device = &devices[0];
        assert_eq!(device["device_id"], "alice-1");
        assert_eq!(device["status"], "active");
        assert_eq!(device["current"], true);
        assert_eq!(device["public_key"], alice.identity.keys.public_key_hex());
        assert!(
            is_rfc3339_utc(device["created_at"].as_str().unwrap()),
            "{device}"
        );

        // Missing, unknown and malformed credentials: 401 problems.
        for auth in [None, Some("not-a-session"), Some("")] {
            let answer = rest
                .call_on(h1, Method::GET, "/api/devices", auth, None)
                .await;
            expect(&answer, StatusCode::UNAUTHORIZED);
            assert_eq!(answer.body["title"], "Unauthorized");
        }
    }
    let basic = rest
        .h1
        .get(format!("{}/api/devices", rest.base))
        .header("authorization", format!("Basic {bearer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_connected_session_stays_valid_and_expires_after_it_leaves() {
    // ttl 2 s: the session task refreshes every second while connected.
    let server = TestServer::start(|c| c.session.ttl = Duration::from_secs(2)).await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let bearer = token(&alice);
    let store = server.store().await;
    let key = commucat_server::session::handshake::session_key(&bearer);
    let first = store.session(&key).await.unwrap().unwrap().expires_at;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    expect(&rest.get("/api/devices", &bearer).await, StatusCode::OK);
    let later = store.session(&key).await.unwrap().unwrap().expires_at;
    assert!(later > first, "expiry moved forward: {first} → {later}");

    alice.close();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let answer = rest.get("/api/devices", &bearer).await;
    expect(&answer, StatusCode::UNAUTHORIZED);
    assert!(
        answer.body["detail"].as_str().unwrap().contains("expired"),
        "{}",
        answer.body
    );
}

// ---------------------------------------------------------------- pairing and devices

/// What the deployed client does: server-info → handshake → devices with the session bearer →
/// pair → claim → the second device handshakes with the claimed certificate → both listed →
/// revoke ends the live session.
async fn pairing_flow_as_the_deployed_client_does_it(backend: StoreBackend) {
    let server = TestServer::start_on(backend, |_| {}).await;
    let rest = Rest::new(&server);
    let info = rest
        .ok(Method::GET, "/api/server-info", None, &json!({}))
        .await;
    let alice = server.connect("alice-1").await;
    let alice_user = alice.session.info().user_id.clone();
    let devices = rest.get("/api/devices", &token(&alice)).await;
    expect(&devices, StatusCode::OK);
    assert_eq!(devices.body["devices"].as_array().unwrap().len(), 1);

    let issued = rest
        .ok(
            Method::POST,
            "/api/pair",
            Some(&token(&alice)),
            &json!({"ttl": 120}),
        )
        .await;
    let code = issued["pair_code"].as_str().unwrap();
    assert_eq!(code.len(), 9);
    assert_eq!(&code[4..5], "-");
    assert!(
        code.chars()
            .filter(|c| *c != '-')
            .all(|c| "ABCDEFGHJKMNPQRSTUVWXYZ23456789".contains(c))
    );
    assert_eq!(issued["ttl"], 120);
    assert!(is_rfc3339_utc(issued["issued_at"].as_str().unwrap()));
    assert!(is_rfc3339_utc(issued["expires_at"].as_str().unwrap()));
    assert!(decode_hex32(issued["device_seed"].as_str().unwrap()).is_ok());
    assert_eq!(issued["issuer_device_id"], "alice-1");
    assert_eq!(issued["device_ca_public"], info["device_ca_public"]);

    // Lower case with blanks is accepted (trimmed and upper-cased), with a device name.
    let claimed = rest
        .ok(
            Method::POST,
            "/api/pair/claim",
            None,
            &json!({"pair_code": format!("  {}\n", code.to_lowercase()), "device_name": "laptop"}),
        )
        .await;
    let device_id = claimed["device_id"].as_str().unwrap();
    assert_eq!(device_id.len(), 64);
    assert!(device_id.bytes().all(|b| b.is_ascii_hexdigit()));
    let private = claimed["private_key"].as_str().unwrap();
    let keys = DeviceKeyPair::from_seed_hex(private).unwrap();
    assert_eq!(claimed["public_key"], keys.public_key_hex());
    // private key = BLAKE3(seed), as the deployed `from_seed`
    let seed = hex::decode(claimed["seed"].as_str().unwrap()).unwrap();
    assert_eq!(
        DeviceKeyPair::from_seed_material(&seed)
            .unwrap()
            .public_key_hex(),
        keys.public_key_hex()
    );
    assert_eq!(claimed["issuer_device_id"], "alice-1");
    assert_eq!(claimed["user"]["id"], alice_user.as_str());
    assert_eq!(claimed["user"]["handle"], "alice_1");
    assert_eq!(claimed["user_id"], alice_user.as_str());
    assert_eq!(claimed["device_name"], "laptop");
    assert_eq!(claimed["device_ca_public"], info["device_ca_public"]);
    let certificate: DeviceCertificate =
        serde_json::from_value(claimed["device_certificate"].clone()).unwrap();
    let ca = decode_hex32(info["device_ca_public"].as_str().unwrap()).unwrap();
    certificate.verify_signature(&ca).unwrap();
    assert_eq!(certificate.data.device_id, device_id);
    assert_eq!(certificate.data.user_id, alice_user);

    // The claimed device completes the handshake with its certificate and seed.
    let laptop = server.connect_as(claimed_identity(&claimed)).await;
    assert_eq!(laptop.session.info().user_id, alice_user);
    // Both are listed for either device's bearer; `current` marks the caller.
    for (client, current) in [(&alice, "alice-1"), (&laptop, device_id)] {
        let list = rest.get("/api/devices", &token(client)).await;
        expect(&list, StatusCode::OK);
        let devices = list.body["devices"].as_array().unwrap();
        let mut ids: Vec<&str> = devices
            .iter()
            .map(|d| d["device_id"].as_str().unwrap())
            .collect();
        ids.sort_unstable();
        let mut want = vec!["alice-1", device_id];
        want.sort_unstable();
        assert_eq!(ids, want);
        for d in devices {
            assert_eq!(d["current"], d["device_id"] == current, "{d}");
            assert_eq!(d["status"], "active");
        }
    }
    // The registration wrote a key event.
    let store = server.store().await;
    let events = store.key_events(device_id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, DeviceKeyEvent::REGISTER);

    // A redeemed code cannot be claimed again.
    let again = rest
        .post("/api/pair/claim", None, &json!({"pair_code": code}))
        .await;
    expect(&again, StatusCode::BAD_REQUEST);
    assert_eq!(store.pairing(code).await.unwrap().unwrap().attempts, 1);

    // Revoking the laptop from alice ends its live session at once.
    let mut laptop = laptop;
    expect(
        &rest
            .post(
                "/api/devices/revoke",
                Some(&token(&alice)),
                &json!({ "device_id": device_id }),
            )
            .await,
        StatusCode::OK,
    );
    expect_closed_as_revoked(&mut laptop).await;
}

async fn pairing_errors_and_ttl_clamp(backend: StoreBackend) {
    let server = TestServer::start_on(backend, |c| {
        c.devices.pairing_ttl = Duration::from_secs(600);
    })
    .await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let bearer = token(&alice);

    // Without a bearer: 401 on both paths.
    for path in ["/api/pair", "/api/pairing"] {
        expect(
            &rest.post(path, None, &json!({"ttl": null})).await,
            StatusCode::UNAUTHORIZED,
        );
    }
    // TTL: null → configured; capped by the configuration; at least 60.
    for (ttl, want) in [
        (json!(null), 600),
        (json!(100_000), 600),
        (json!(10), 60),
        (json!(300), 300),
    ] {
        let issued = rest
            .ok(
                Method::POST,
                "/api/pairing",
                Some(&bearer),
                &json!({ "ttl": ttl }),
            )
            .await;
        assert_eq!(issued["ttl"], want, "{ttl}");
    }
    // Bad bodies: 400.
    expect(
        &rest
            .post("/api/pair", Some(&bearer), &json!({"ttl": "soon"}))
            .await,
        StatusCode::BAD_REQUEST,
    );
    expect(
        &rest
            .post("/api/pair/claim", None, &json!({"code": "x"}))
            .await,
        StatusCode::BAD_REQUEST,
    );
    // Unknown code: 404 (alias path too).
    for path in ["/api/pair/claim", "/api/pairing/claim"] {
        expect(
            &rest
                .post(path, None, &json!({"pair_code": "ZZZZ-ZZZZ"}))
                .await,
            StatusCode::NOT_FOUND,
        );
    }

    // Expired and over-attempted codes: 400, and each refusal counts.
    let store = server.store().await;
    let user_id = alice.session.info().user_id.clone();
    let now = unix_now();
    let record = |code: &str, expires_at: i64, attempts: u32| PairingRecord {
        code: code.to_owned(),
        user_id: user_id.clone(),
        issuer_device_id: "alice-1".to_owned(),
        issued_at: now - 1000,
        expires_at,
        attempts,
        redeemed_at: None,
        redeemed_device_id: None,
    };
    store
        .create_pairing(record("EXPD-CODE", now - 1, 0))
        .await
        .unwrap();
    store
        .create_pairing(record("MANY-TRYS", now + 600, 4))
        .await
        .unwrap();
    let expired = rest
        .post("/api/pair/claim", None, &json!({"pair_code": "EXPD-CODE"}))
        .await;
    expect(&expired, StatusCode::BAD_REQUEST);
    assert!(expired.body["detail"].as_str().unwrap().contains("expired"));
    assert_eq!(
        store.pairing("EXPD-CODE").await.unwrap().unwrap().attempts,
        1
    );
    // A code with five failed attempts is dead even before its expiry.
    store
        .create_pairing(record("DEAD-CODE", now + 600, 5))
        .await
        .unwrap();
    let dead = rest
        .post("/api/pair/claim", None, &json!({"pair_code": "DEAD-CODE"}))
        .await;
    expect(&dead, StatusCode::BAD_REQUEST);
    assert!(dead.body["detail"].as_str().unwrap().contains("attempts"));
    assert_eq!(
        store.pairing("DEAD-CODE").await.unwrap().unwrap().attempts,
        6
    );
    // Four failed attempts still leave a code usable.
    let claimed = rest
        .ok(
            Method::POST,
            "/api/pair/claim",
            None,
            &json!({"pair_code": "MANY-TRYS"}),
        )
        .await;
    assert_eq!(claimed["user"]["id"], user_id.as_str());
    // No device was registered by the refused claims.
    assert_eq!(store.devices_of_user(&user_id).await.unwrap().len(), 2);
}

async fn revoke_rules_and_revoking_a_connected_device_ends_its_session(backend: StoreBackend) {
    let server = TestServer::start_on(backend, |_| {}).await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let bob = server.connect("bob-1").await;
    let bearer = token(&alice);
    let (claimed, mut laptop) = pair_and_connect(&server, &rest, &alice).await;
    let laptop_id = claimed["device_id"].as_str().unwrap().to_owned();
    let laptop_bearer = token(&laptop);

    let revoke = |device: &str| json!({ "device_id": device });
    expect(
        &rest
            .post("/api/devices/revoke", None, &revoke(&laptop_id))
            .await,
        StatusCode::UNAUTHORIZED,
    );
    expect(
        &rest
            .post("/api/devices/revoke", Some(&bearer), &revoke("alice-1"))
            .await,
        StatusCode::CONFLICT,
    );
    expect(
        &rest
            .post("/api/devices/revoke", Some(&bearer), &revoke("bob-1"))
            .await,
        StatusCode::FORBIDDEN,
    );
    expect(
        &rest
            .post("/api/devices/revoke", Some(&bearer), &revoke("nobody"))
            .await,
        StatusCode::NOT_FOUND,
    );
    expect(
        &rest
            .post("/api/devices/revoke", Some(&bearer), &json!({"id": 1}))
            .await,
        StatusCode::BAD_REQUEST,
    );

    // Revoking the connected laptop over HTTP/2: 200, and its session ends at once.
    let answer = rest
        .call_on(
            false,
            Method::POST,
            "/api/devices/revoke",
            Some(&bearer),
            Some(&revoke(&laptop_id)),
        )
        .await;
    expect(&answer, StatusCode::OK);
    assert_eq!(
        answer.body,
        json!({"device_id": laptop_id, "status": "revoked"})
    );
    expect_closed_as_revoked(&mut laptop).await;

    // Its bearer is dead, the list shows it revoked, the key log has the revocation.
    expect(
        &rest.get("/api/devices", &laptop_bearer).await,
        StatusCode::UNAUTHORIZED,
    );
    let list = rest.get("/api/devices", &bearer).await;
    let entry = list.body["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == laptop_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["status"], "revoked");
    let store = server.store().await;
    let actions: Vec<String> = store
        .key_events(&laptop_id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, [DeviceKeyEvent::REGISTER, DeviceKeyEvent::REVOKE]);
    // Revoking again is the same 200.
    expect(
        &rest
            .post("/api/devices/revoke", Some(&bearer), &revoke(&laptop_id))
            .await,
        StatusCode::OK,
    );
    // The handshake refuses the revoked device.
    let stream = transport::open(server.addr, "localhost", &server.trust, "/connect")
        .await
        .unwrap();
    let refused = Session::handshake(
        stream,
        &claimed_identity(&claimed),
        &server.params,
        &HandshakeOptions::default(),
    )
    .await;
    assert!(refused.is_err());
    // Bob and Alice are untouched.
    expect(
        &rest.get("/api/devices", &token(&bob)).await,
        StatusCode::OK,
    );
    expect(&rest.get("/api/devices", &bearer).await, StatusCode::OK);
}

// ---------------------------------------------------------------- friends

async fn friends_are_stored_per_user(backend: StoreBackend) {
    let server = TestServer::start_on(backend, |_| {}).await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let bob = server.connect("bob-1").await;
    let bearer = token(&alice);

    let empty = rest.get("/api/friends", &bearer).await;
    expect(&empty, StatusCode::OK);
    assert_eq!(empty.body, json!({"friends": []}));

    // As the deployed client pushes: `handle` and `alias` always present, possibly null.
    let push = json!({"friends": [
        {"user_id": "u-bob", "handle": "bob", "alias": null},
        {"user_id": "u-carol", "handle": null, "alias": "Carol"},
    ]});
    let stored = rest
        .ok(Method::PUT, "/api/friends", Some(&bearer), &push)
        .await;
    let want = json!({"friends": [
        {"user_id": "u-bob", "handle": "bob"},
        {"user_id": "u-carol", "alias": "Carol"},
    ]});
    assert_eq!(stored, want);
    for h1 in [true, false] {
        let list = rest
            .call_on(h1, Method::GET, "/api/friends", Some(&bearer), None)
            .await;
        expect(&list, StatusCode::OK);
        assert_eq!(list.body, want);
    }
    // Another user's list is separate.
    assert_eq!(
        rest.get("/api/friends", &token(&bob)).await.body,
        json!({"friends": []})
    );
    // Errors.
    expect(
        &rest
            .call(Method::PUT, "/api/friends", None, Some(&push))
            .await,
        StatusCode::UNAUTHORIZED,
    );
    expect(
        &rest
            .call(
                Method::PUT,
                "/api/friends",
                Some(&bearer),
                Some(&json!({"friends": [{"handle": "x"}]})),
            )
            .await,
        StatusCode::BAD_REQUEST,
    );
    expect(
        &rest
            .call(
                Method::PUT,
                "/api/friends",
                Some(&bearer),
                Some(&json!({"friends": [{"user_id": ""}]})),
            )
            .await,
        StatusCode::BAD_REQUEST,
    );
    // Replacing with an empty list clears it.
    rest.ok(
        Method::PUT,
        "/api/friends",
        Some(&bearer),
        &json!({"friends": []}),
    )
    .await;
    assert_eq!(
        rest.get("/api/friends", &bearer).await.body,
        json!({"friends": []})
    );
}

// ---------------------------------------------------------------- no ALPN (deployed native-tls)

#[tokio::test]
async fn bearer_works_over_http1_without_alpn() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let server = TestServer::start(|_| {}).await;
    let alice = server.connect("alice-1").await;
    let TlsTrust::CaPem(pem) = &server.trust else {
        panic!("test server trust is a CA PEM")
    };
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pem).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    let request = format!(
        "GET /api/devices HTTP/1.1\r\nHost: localhost\r\nUser-Agent: commucat-cli-client/0.1\r\n\
         Authorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token(&alice)
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tls.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    assert_eq!(text.lines().next().unwrap(), "HTTP/1.1 200 OK", "{text}");
    let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["devices"][0]["device_id"], "alice-1");
}

// ---------------------------------------------------------------- readiness and metrics

async fn metric(rest: &Rest, line_prefix: &str) -> u64 {
    let response = rest
        .h1
        .get(format!("{}/metrics", rest.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[reqwest::header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .unwrap_or_else(|| panic!("{line_prefix} missing in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn readyz_and_metrics_count_real_events() {
    let server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server);
    let ready = rest.call(Method::GET, "/readyz", None, None).await;
    expect(&ready, StatusCode::OK);
    assert_eq!(ready.body, json!({"status": "ready"}));

    let ok = "commucat_handshakes_total{result=\"ok\"} ";
    let failed = "commucat_handshakes_total{result=\"failed\"} ";
    let active = "commucat_sessions_active ";
    let delivered = "commucat_frames_delivered_total ";
    assert_eq!(metric(&rest, ok).await, 0);

    let mut alice = server.connect("alice-1").await;
    let mut bob = server.connect("bob-1").await;
    // A handshake against the wrong server key fails on the server.
    let mut wrong = server.params.clone();
    wrong.server_static = [9; 32];
    let stream = transport::open(server.addr, "localhost", &server.trust, "/connect")
        .await
        .unwrap();
    let refused = Session::handshake(
        stream,
        &DeviceIdentity::generate("mallory-1"),
        &wrong,
        &HandshakeOptions::default(),
    )
    .await;
    assert!(refused.is_err());

    alice.join(7, true).await;
    bob.join_with(7, &json!({"members": ["alice-1", "bob-1"], "relay": true}))
        .await;
    let before = metric(&rest, delivered).await;
    let relayed_before = metric(&rest, "commucat_relay_latency_seconds_count ").await;
    alice.say(7, "hi").await;
    bob.recv_on(FrameType::Msg, 7).await;
    assert!(metric(&rest, delivered).await > before);
    // The MSG was counted in from alice and out to bob, and its relay time recorded.
    assert!(metric(&rest, "commucat_frames_received_total{type=\"msg\"} ").await >= 1);
    assert!(metric(&rest, "commucat_frames_sent_total{type=\"msg\"} ").await >= 1);
    assert!(metric(&rest, "commucat_frames_sent_total{type=\"ack\"} ").await >= 1);
    assert_eq!(
        metric(&rest, "commucat_relay_latency_seconds_count ").await,
        relayed_before + 1
    );
    assert_eq!(
        metric(&rest, "commucat_handshake_duration_seconds_count ").await,
        2
    );
    assert_eq!(
        metric(
            &rest,
            "commucat_handshake_duration_seconds_bucket{le=\"+Inf\"} "
        )
        .await,
        2
    );
    assert_eq!(
        metric(&rest, "commucat_security_noise_handshakes_total ").await,
        2
    );
    assert_eq!(
        metric(&rest, "commucat_security_fec_packets_total ").await,
        0
    );
    assert!(metric(&rest, "commucat_connections_accepted_total ").await >= 3);
    assert!(metric(&rest, "commucat_connections_open ").await >= 2);
    assert_eq!(metric(&rest, "commucat_online_devices ").await, 2);
    assert_eq!(metric(&rest, "commucat_mailbox_frames ").await, 0);

    assert_eq!(metric(&rest, ok).await, 2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metric(&rest, failed).await < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "failure not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Handshake frames count by type too: three HELLOs, two AUTH answers, mallory's ERROR.
    assert_eq!(
        metric(&rest, "commucat_frames_received_total{type=\"hello\"} ").await,
        3
    );
    assert_eq!(
        metric(&rest, "commucat_frames_sent_total{type=\"auth\"} ").await,
        2
    );
    assert!(metric(&rest, "commucat_frames_sent_total{type=\"error\"} ").await >= 1);
    // The ledger's three handshake records reach the file; none were dropped.
    while metric(&rest, "commucat_ledger_records_written_total ").await < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ledger records not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        metric(&rest, "commucat_ledger_records_dropped_total ").await,
        0
    );
    assert_eq!(metric(&rest, "commucat_sessions_opened_total ").await, 2);
    assert_eq!(metric(&rest, active).await, 2);
    bob.close();
    while metric(&rest, active).await != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "session end not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------- P2P assist

/// The 1.0.41 client's view of `/api/p2p/assist` (wire-compat §8): every key it requires, with
/// its types; optional ones as options.
#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct DeployedAssist {
    noise: DeployedNoise,
    pq: DeployedPq,
    transports: Vec<DeployedTransport>,
    multipath: DeployedMultipath,
    obfuscation: DeployedObfuscation,
    security: DeployedSecurity,
}

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct DeployedNoise {
    pattern: String,
    prologue_hex: String,
    device_seed_hex: String,
    static_public_hex: String,
}

#[derive(Debug, serde::Deserialize)]
struct DeployedPq {
    identity_public_hex: String,
    signed_prekey_public_hex: String,
    kem_public_hex: String,
    signature_public_hex: String,
}

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct DeployedTransport {
    path_id: String,
    transport: String,
    resistance: String,
    latency: String,
    throughput: String,
}

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct DeployedMultipath {
    fec_mtu: u16,
    fec_overhead: f32,
    primary_path: Option<String>,
    sample_segments: Option<std::collections::HashMap<String, DeployedSegments>>,
}

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct DeployedSegments {
    total: usize,
    repair: usize,
}

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct DeployedObfuscation {
    reality_fingerprint_hex: Option<String>,
    domain_fronting: Option<bool>,
    protocol_mimicry: Option<bool>,
    tor_bridge: Option<bool>,
}

#[derive(Debug, serde::Deserialize, PartialEq)]
struct DeployedSecurity {
    noise_handshakes: u64,
    pq_handshakes: u64,
    fec_packets: u64,
    multipath_sessions: u64,
    average_paths: f64,
    censorship_deflections: u64,
}

/// The data directory of `server` (beside its database).
fn data_dir(server: &TestServer) -> std::path::PathBuf {
    server.database().parent().unwrap().to_owned()
}

#[tokio::test]
async fn p2p_assist_answers_what_the_deployed_client_decodes() {
    use aws_lc_rs::kem::{EncapsulationKey, ML_KEM_768};
    use aws_lc_rs::signature::{ML_DSA_65, UnparsedPublicKey};

    let server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server);
    let info = rest
        .ok(Method::GET, "/api/server-info", None, &json!({}))
        .await;
    let alice = server.connect("alice-1").await;
    let bearer = token(&alice);

    // The TUI's `/assist <peer>` request, over HTTP/1.1.
    let request = json!({
        "peer_hint": "bob",
        "paths": [
            {"address": "192.0.2.7", "id": "hint-b", "port": 3478, "server_name": "https://chat.test/",
             "priority": 2, "reality_fingerprint": null, "reality_pem": null},
            {"address": "198.51.100.1", "id": "hint-a", "port": 443, "server_name": "https://chat.test/",
             "priority": 1, "reality_fingerprint": null, "reality_pem": null}
        ],
        "prefer_reality": true,
        "fec": {"mtu": 1200, "repair_overhead": 0.18},
        "min_paths": 1
    });
    let body = rest
        .ok(Method::POST, "/api/p2p/assist", Some(&bearer), &request)
        .await;
    let assist: DeployedAssist = serde_json::from_value(body.clone()).unwrap();

    // noise: the configured prologue and a key pair derived from the returned seed.
    assert_eq!(assist.noise.pattern, "XK");
    assert_eq!(assist.noise.prologue_hex, hex::encode("commucat"));
    let seed = hex::decode(&assist.noise.device_seed_hex).unwrap();
    let derived = DeviceKeyPair::from_seed_material(&seed).unwrap();
    assert_eq!(
        assist.noise.static_public_hex,
        hex::encode(commucat_keys::x25519_public(&derived.x25519_private()))
    );

    // pq: the server's persisted keys, and a bundle signature that verifies.
    let stored = commucat_server::pq_keys::PqKeys::load_or_generate(&data_dir(&server)).unwrap();
    assert_eq!(assist.pq.kem_public_hex, hex::encode(stored.kem_public()));
    assert_eq!(
        assist.pq.signature_public_hex,
        hex::encode(stored.signature_public())
    );
    assert_eq!(assist.pq.identity_public_hex, info["device_ca_public"]);
    assert_eq!(assist.pq.signed_prekey_public_hex, info["noise_public"]);
    assert_eq!(
        info["post_quantum"]["kem_public_hex"],
        assist.pq.kem_public_hex.as_str()
    );
    let kem = EncapsulationKey::new(
        &ML_KEM_768,
        &hex::decode(&assist.pq.kem_public_hex).unwrap(),
    )
    .unwrap();
    let (ciphertext, shared) = kem.encapsulate().unwrap();
    assert_eq!(
        stored.decapsulate(ciphertext.as_ref()).unwrap().as_slice(),
        shared.as_ref(),
        "the published KEM key belongs to the server's secret key"
    );
    let message = stored.bundle_message(
        "chat.test",
        &hex::decode(&assist.pq.identity_public_hex).unwrap(),
        &hex::decode(&assist.pq.signed_prekey_public_hex).unwrap(),
    );
    UnparsedPublicKey::new(
        &ML_DSA_65,
        hex::decode(&assist.pq.signature_public_hex).unwrap(),
    )
    .verify(
        &message,
        &hex::decode(body["pq"]["bundle_signature_hex"].as_str().unwrap()).unwrap(),
    )
    .unwrap();

    // transports: by priority, then the relay; nothing measured.
    let ids: Vec<&str> = assist
        .transports
        .iter()
        .map(|t| t.path_id.as_str())
        .collect();
    assert_eq!(ids, ["hint-a", "hint-b", "relay"]);
    for t in &assist.transports {
        assert_eq!(t.latency, "unmeasured");
        assert_eq!(t.throughput, "unmeasured");
    }
    assert_eq!(body["transports"][2]["port"], server.addr.port());
    assert_eq!(assist.multipath.fec_mtu, 1200);
    assert!((assist.multipath.fec_overhead - 0.18).abs() < 1e-6);
    assert_eq!(assist.multipath.primary_path.as_deref(), Some("hint-a"));
    assert!(assist.multipath.sample_segments.is_none());
    assert_eq!(assist.obfuscation.domain_fronting, Some(false));
    assert_eq!(assist.obfuscation.protocol_mimicry, Some(false));
    assert_eq!(assist.obfuscation.tor_bridge, Some(false));
    assert!(assist.obfuscation.reality_fingerprint_hex.is_none());
    assert_eq!(
        assist.security,
        DeployedSecurity {
            noise_handshakes: 1,
            pq_handshakes: 0,
            fec_packets: 0,
            multipath_sessions: 1,
            average_paths: 3.0,
            censorship_deflections: 0,
        }
    );

    // GET with no body over HTTP/2: defaults, the relay alone; counters move.
    let answer = rest
        .call_on(false, Method::GET, "/api/p2p/assist", Some(&bearer), None)
        .await;
    expect(&answer, StatusCode::OK);
    let defaults: DeployedAssist = serde_json::from_value(answer.body.clone()).unwrap();
    assert_eq!(defaults.transports.len(), 1);
    assert_eq!(defaults.multipath.primary_path.as_deref(), Some("relay"));
    assert_eq!(defaults.multipath.fec_mtu, 1152);
    assert_ne!(defaults.noise.device_seed_hex, assist.noise.device_seed_hex);
    assert_eq!(defaults.security.multipath_sessions, 1);
    assert!((defaults.security.average_paths - 2.0).abs() < 1e-9);
    // The same counters as /api/security-stats.
    let stats = rest
        .ok(Method::GET, "/api/security-stats", None, &json!({}))
        .await;
    assert_eq!(
        serde_json::from_value::<DeployedSecurity>(stats).unwrap(),
        defaults.security
    );

    // Errors: no bearer 401; bad bodies 400.
    for h1 in [true, false] {
        let answer = rest
            .call_on(h1, Method::POST, "/api/p2p/assist", None, Some(&json!({})))
            .await;
        expect(&answer, StatusCode::UNAUTHORIZED);
    }
    let too_many: Vec<Value> = (0..17).map(|i| json!({"id": format!("p{i}")})).collect();
    for bad in [
        json!({"fec": {"repair_overhead": 2.0}}),
        json!({"fec": {"mtu": 10}}),
        json!({"paths": too_many}),
        json!({"paths": [{"id": ""}]}),
        json!({"paths": "none"}),
        json!({"min_paths": 100}),
    ] {
        let answer = rest.post("/api/p2p/assist", Some(&bearer), &bad).await;
        expect(&answer, StatusCode::BAD_REQUEST);
    }
    let put = rest
        .call(
            Method::PUT,
            "/api/p2p/assist",
            Some(&bearer),
            Some(&json!({})),
        )
        .await;
    expect(&put, StatusCode::METHOD_NOT_ALLOWED);
}

// ---------------------------------------------------------------- public-key claim

#[tokio::test]
async fn public_key_claim_registers_the_devices_own_key() {
    let server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let own = DeviceKeyPair::generate();
    let issue = || async {
        rest.ok(
            Method::POST,
            "/api/pairing",
            Some(&token(&alice)),
            &json!({"ttl": null}),
        )
        .await["pair_code"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // Bad keys: 400, and the code stays usable.
    let code = issue().await;
    for bad in ["xyz", &"00".repeat(32), &hex::encode([1u8; 31])] {
        let answer = rest
            .post(
                "/api/pairing/claim",
                None,
                &json!({"pair_code": code, "public_key": bad}),
            )
            .await;
        expect(&answer, StatusCode::BAD_REQUEST);
        assert!(
            answer.body["detail"]
                .as_str()
                .unwrap()
                .contains("public_key"),
            "{}",
            answer.body
        );
    }

    // Over HTTP/2, the seed's alias path.
    let answer = rest
        .call_on(
            false,
            Method::POST,
            "/api/pairing/claim",
            None,
            Some(&json!({"pair_code": code, "public_key": own.public_key_hex(), "device_name": "phone"})),
        )
        .await;
    expect(&answer, StatusCode::OK);
    let claimed = answer.body;
    assert!(claimed.get("private_key").is_none(), "{claimed}");
    assert!(claimed.get("seed").is_none(), "{claimed}");
    assert_eq!(claimed["public_key"], own.public_key_hex());
    let certificate: DeviceCertificate =
        serde_json::from_value(claimed["device_certificate"].clone()).unwrap();
    assert_eq!(certificate.data.public_key, own.public_key());

    // The device connects with its own key and the certificate.
    let phone = server
        .connect_as(DeviceIdentity {
            device_id: claimed["device_id"].as_str().unwrap().to_owned(),
            keys: own,
            certificate: Some(certificate),
            user: None,
        })
        .await;
    assert_eq!(phone.session.info().user_id, alice.session.info().user_id);
    let list = rest.get("/api/devices", &token(&phone)).await;
    assert_eq!(list.body["devices"].as_array().unwrap().len(), 2);

    // Another device cannot take over the claimed id with a different key.
    let stream = transport::open(server.addr, "localhost", &server.trust, "/connect")
        .await
        .unwrap();
    let impostor = Session::handshake(
        stream,
        &DeviceIdentity {
            device_id: claimed["device_id"].as_str().unwrap().to_owned(),
            keys: DeviceKeyPair::generate(),
            certificate: None,
            user: None,
        },
        &server.params,
        &HandshakeOptions::default(),
    )
    .await;
    assert!(impostor.is_err());
}

// ---------------------------------------------------------------- rate limits and admin token

async fn raw_status(
    rest: &Rest,
    method: Method,
    path: &str,
    body: &Value,
) -> (StatusCode, Option<String>, Value) {
    let response = rest
        .h1
        .request(method, format!("{}{path}", rest.base))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, retry, body)
}

#[tokio::test]
async fn per_ip_limits_answer_429_with_retry_after() {
    let server = TestServer::start(|c| {
        c.rate_limits.rest_per_minute = 6;
        c.rate_limits.claim_per_minute = 2;
        c.rate_limits.connect_per_minute = 2;
    })
    .await;
    let rest = Rest::new(&server);
    // Claims: two, then 429 (each also spends a REST token: 3 of 6).
    for _ in 0..2 {
        let (status, _, _) = raw_status(
            &rest,
            Method::POST,
            "/api/pair/claim",
            &json!({"pair_code": "NONE-NONE"}),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, retry, body) = raw_status(
        &rest,
        Method::POST,
        "/api/pairing/claim",
        &json!({"pair_code": "NONE-NONE"}),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = retry.expect("retry-after").parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    assert_eq!(body["title"], "Too Many Requests");
    assert_eq!(body["status"], 429);
    // Other REST requests still have budget left: three more, then 429 over HTTP/2 too.
    for _ in 0..3 {
        expect(
            &rest.call(Method::GET, "/healthz", None, None).await,
            StatusCode::OK,
        );
    }
    let answer = rest
        .call_on(false, Method::GET, "/healthz", None, None)
        .await;
    expect(&answer, StatusCode::TOO_MANY_REQUESTS);

    // /connect has its own budget: two handshakes, then 429 before any handshake.
    let _a = server.connect("alice-1").await;
    let _b = server.connect("bob-1").await;
    let refused = match transport::open(server.addr, "localhost", &server.trust, "/connect").await {
        Err(_) => true,
        Ok(stream) => Session::handshake(
            stream,
            &DeviceIdentity::generate("carol-1"),
            &server.params,
            &HandshakeOptions::default(),
        )
        .await
        .is_err(),
    };
    assert!(refused, "third /connect within the minute is refused");
    let (status, retry, _) = raw_status(&rest, Method::POST, "/connect", &json!({})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry.is_some());
}

#[tokio::test]
async fn metrics_and_security_stats_need_the_admin_token_when_set() {
    const ADMIN: &str = "s3cret-admin-token-0123";
    let server = TestServer::start(|c| {
        c.metrics.admin_token = Some(commucat_server::config::SecretString(ADMIN.to_owned()));
    })
    .await;
    let rest = Rest::new(&server);
    for path in ["/metrics", "/api/security-stats"] {
        for auth in [None, Some("wrong-token-wrong-token")] {
            for h1 in [true, false] {
                let answer = rest.call_on(h1, Method::GET, path, auth, None).await;
                expect(&answer, StatusCode::UNAUTHORIZED);
            }
        }
        let response = rest
            .h2
            .get(format!("{}{path}", rest.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    // A device session is not an admin token.
    let alice = server.connect("alice-1").await;
    let answer = rest
        .call(
            Method::GET,
            "/api/security-stats",
            Some(&token(&alice)),
            None,
        )
        .await;
    expect(&answer, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn openapi_document_is_served_over_http1_and_http2() {
    let server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server);
    for h1 in [true, false] {
        let answer = rest
            .call_on(h1, Method::GET, "/openapi.json", None, None)
            .await;
        expect(&answer, StatusCode::OK);
        assert_eq!(answer.body["openapi"], "3.1.0");
        assert!(answer.body["paths"]["/api/p2p/assist"]["post"].is_object());
        assert!(answer.body["paths"]["/api/pairing/claim"]["post"].is_object());
    }
}

// ---------------------------------------------------------------- the whole surface, both versions

/// method, path, bearer, body, expected status.
type Case<'a> = (Method, &'a str, Option<&'a str>, Option<Value>, StatusCode);

#[tokio::test]
async fn every_endpoint_and_error_status_over_http1_and_http2() {
    let server = TestServer::start(|_| {}).await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let bob = server.connect("bob-1").await;
    let a = token(&alice);
    for h1 in [true, false] {
        let (laptop, _laptop_client) = pair_and_connect(&server, &rest, &alice).await;
        let code = rest
            .ok(Method::POST, "/api/pair", Some(&a), &json!({"ttl": null}))
            .await["pair_code"]
            .clone();
        let own = |id: &str| json!({ "device_id": id });
        let cases: Vec<Case> = vec![
            (Method::GET, "/healthz", None, None, StatusCode::OK),
            (Method::GET, "/readyz", None, None, StatusCode::OK),
            (
                Method::GET,
                "/api/security-stats",
                None,
                None,
                StatusCode::OK,
            ),
            (Method::GET, "/openapi.json", None, None, StatusCode::OK),
            (Method::GET, "/api/server-info", None, None, StatusCode::OK),
            (Method::GET, "/api/server/info", None, None, StatusCode::OK),
            (Method::GET, "/api/devices", Some(&a), None, StatusCode::OK),
            (
                Method::GET,
                "/api/devices",
                None,
                None,
                StatusCode::UNAUTHORIZED,
            ),
            (
                Method::POST,
                "/api/devices/revoke",
                Some(&a),
                Some(json!({"id": 1})),
                StatusCode::BAD_REQUEST,
            ),
            (
                Method::POST,
                "/api/devices/revoke",
                None,
                Some(own("alice-1")),
                StatusCode::UNAUTHORIZED,
            ),
            (
                Method::POST,
                "/api/devices/rotate",
                Some(&a),
                Some(own("alice-1")),
                StatusCode::BAD_REQUEST,
            ),
            (
                Method::POST,
                "/api/devices/rotate",
                None,
                Some(own("alice-1")),
                StatusCode::UNAUTHORIZED,
            ),
            (
                Method::POST,
                "/api/devices/revoke",
                Some(&a),
                Some(own("bob-1")),
                StatusCode::FORBIDDEN,
            ),
            (
                Method::POST,
                "/api/devices/revoke",
                Some(&a),
                Some(own("nobody")),
                StatusCode::NOT_FOUND,
            ),
            (
                Method::POST,
                "/api/devices/revoke",
                Some(&a),
                Some(own("alice-1")),
                StatusCode::CONFLICT,
            ),
            (
                Method::POST,
                "/api/devices/revoke",
                Some(&a),
                Some(json!({"device_id": laptop["device_id"]})),
                StatusCode::OK,
            ),
            (
                Method::POST,
                "/api/pair",
                Some(&a),
                Some(json!({"ttl": 90})),
                StatusCode::OK,
            ),
            (
                Method::POST,
                "/api/pairing",
                Some(&a),
                Some(json!({"ttl": "soon"})),
                StatusCode::BAD_REQUEST,
            ),
            (
                Method::POST,
                "/api/pair",
                None,
                Some(json!({"ttl": null})),
                StatusCode::UNAUTHORIZED,
            ),
            (
                Method::POST,
                "/api/pair/claim",
                None,
                Some(json!({"pair_code": code})),
                StatusCode::OK,
            ),
            (
                Method::POST,
                "/api/pairing/claim",
                None,
                Some(json!({"code": 1})),
                StatusCode::BAD_REQUEST,
            ),
            (
                Method::POST,
                "/api/pair/claim",
                None,
                Some(json!({"pair_code": "ZZZZ-ZZZZ"})),
                StatusCode::NOT_FOUND,
            ),
            (Method::GET, "/api/friends", Some(&a), None, StatusCode::OK),
            (
                Method::GET,
                "/api/friends",
                None,
                None,
                StatusCode::UNAUTHORIZED,
            ),
            (
                Method::PUT,
                "/api/friends",
                Some(&a),
                Some(json!({"friends": [{"user_id": "u", "handle": null, "alias": null}]})),
                StatusCode::OK,
            ),
            (
                Method::PUT,
                "/api/friends",
                Some(&a),
                Some(json!({"friends": [{"user_id": ""}]})),
                StatusCode::BAD_REQUEST,
            ),
            (
                Method::PUT,
                "/api/friends",
                None,
                Some(json!({"friends": []})),
                StatusCode::UNAUTHORIZED,
            ),
            (
                Method::POST,
                "/api/p2p/assist",
                Some(&a),
                Some(json!({})),
                StatusCode::OK,
            ),
            (
                Method::GET,
                "/api/p2p/assist",
                Some(&a),
                None,
                StatusCode::OK,
            ),
            (
                Method::POST,
                "/api/p2p/assist",
                Some(&a),
                Some(json!({"min_paths": "x"})),
                StatusCode::BAD_REQUEST,
            ),
            (
                Method::GET,
                "/api/p2p/assist",
                None,
                None,
                StatusCode::UNAUTHORIZED,
            ),
            (
                Method::GET,
                "/api/nothing-here",
                None,
                None,
                StatusCode::NOT_FOUND,
            ),
            (
                Method::DELETE,
                "/api/devices",
                Some(&a),
                None,
                StatusCode::METHOD_NOT_ALLOWED,
            ),
        ];
        for (method, path, auth, body, want) in cases {
            let answer = rest
                .call_on(h1, method.clone(), path, auth, body.as_ref())
                .await;
            assert_eq!(
                answer.status,
                want,
                "{method} {path} over {}: {}",
                if h1 { "HTTP/1.1" } else { "HTTP/2" },
                answer.body
            );
        }
    }
    expect(
        &rest.get("/api/devices", &token(&bob)).await,
        StatusCode::OK,
    );
}
// The resources that live in the store run on both backends.
common::on_each_store!(
    pairing_flow_as_the_deployed_client_does_it,
    pairing_errors_and_ttl_clamp,
    revoke_rules_and_revoking_a_connected_device_ends_its_session,
    friends_are_stored_per_user,
);
