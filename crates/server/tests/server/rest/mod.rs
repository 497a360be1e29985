//! The REST API through the real server over TLS, on every transport a client can use: HTTP/1.1
//! without ALPN (the deployed client), HTTP/1.1 with ALPN and HTTP/2. Bearer authentication
//! with a handshake's session id, devices, pairing, rotation, friends, P2P assist, metrics and
//! health; every route with every status it answers, success bodies decoded into the deployed
//! client's own types and error bodies checked as problem details; and the deployed client's
//! pairing flow end to end.

use crate::common;

mod assist;
mod auth;
mod claim;
mod devices;
mod exposition;
mod friends;
mod metrics;
mod monitoring;
mod outage;
mod rate_limits;
mod strictness;
mod surface;
mod transports;

use devices::{
    pairing_errors_and_ttl_clamp, pairing_flow_as_the_deployed_client_does_it,
    revoke_rules_and_revoking_a_connected_device_ends_its_session,
};
use friends::friends_are_stored_per_user;
use rate_limits::{method, too_many};
use surface::SURFACE;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::common::rest::{
    Answer, Transport, check_strictness, contract, deployed, eventually, with,
};
use crate::common::{Client, StoreBackend, TestServer, unix_now};
use commucat_ccp::{FrameType, Problem};
use commucat_client::{DeviceIdentity, HandshakeOptions, Session, transport};
use commucat_keys::{
    DeviceCertificate, DeviceKeyPair, decode_hex32, encode_hex, rotation_message, sign_rotation,
};
use commucat_store::DeviceKeyEvent;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The REST clients of a test server. [`Rest::call`] goes over HTTP/1.1 without ALPN, as the
/// deployed client calls; every answer is either a 200 with a JSON body or a problem.
pub(crate) struct Rest {
    clients: common::rest::Rest,
}

impl Rest {
    pub(crate) fn new(server: &TestServer) -> Self {
        Self {
            clients: common::rest::Rest::new(server),
        }
    }

    async fn call_on(
        &self,
        transport: Transport,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let answer = self
            .clients
            .call(transport, method, path, token, body)
            .await;
        if answer.status == StatusCode::OK {
            assert_eq!(answer.content_type, "application/json", "{answer}");
            answer.json();
        } else {
            answer.problem(answer.status, "");
        }
        answer
    }

    /// Over HTTP/1.1 without ALPN, as the deployed client calls.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        self.call_on(Transport::Http1NoAlpn, method, path, token, body)
            .await
    }

    async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub(crate) async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Answer {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// A call that must succeed; returns its body.
    async fn ok(&self, method: Method, path: &str, token: Option<&str>, body: &Value) -> Value {
        let answer = self.call(method, path, token, Some(body)).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
        answer.body
    }
}

fn expect(answer: &Answer, status: StatusCode) {
    answer.expect(status);
}

pub(crate) fn token(client: &Client) -> String {
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

/// What `/api/pair/claim` answered, as the deployed client reads it and as sent.
pub(crate) struct Claimed {
    pub(crate) deployed: deployed::PairingClaimResponse,
    pub(crate) body: Value,
}

/// Pairs a new device into `issuer`'s account as the deployed client does (server-key claim)
/// and connects it with the claimed identity.
pub(crate) async fn pair_and_connect(
    server: &TestServer,
    rest: &Rest,
    issuer: &Client,
) -> (Claimed, Client) {
    let ticket: deployed::PairingTicket = rest
        .call(
            Method::POST,
            "/api/pair",
            Some(&token(issuer)),
            Some(&json!({"ttl": null})),
        )
        .await
        .decode();
    let answer = rest
        .call(
            Method::POST,
            "/api/pair/claim",
            None,
            Some(&json!({"pair_code": ticket.pair_code})),
        )
        .await;
    let claimed = Claimed {
        deployed: answer.decode(),
        body: answer.body,
    };
    let client = server.connect_as(claimed_identity(&claimed.body)).await;
    (claimed, client)
}

/// The session ends with a `Device Revoked` ERROR.
pub(crate) async fn expect_closed_as_revoked(client: &mut Client) {
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
        pq: None,
    }
}

/// A `POST /api/devices/rotate` body: `device_id` from `current` to `new`, signed by `signer`.
fn rotation(
    device_id: &str,
    current: &[u8; 32],
    signer: &DeviceKeyPair,
    new: &[u8; 32],
    at: i64,
) -> Value {
    let message = rotation_message(device_id, current, new, at).unwrap();
    json!({
        "device_id": device_id,
        "public_key": encode_hex(new),
        "issued_at": at,
        "proof": encode_hex(&signer.sign(&message)),
    })
}

// The resources that live in the store run on both backends.
common::on_each_store!(
    pairing_flow_as_the_deployed_client_does_it,
    pairing_errors_and_ttl_clamp,
    revoke_rules_and_revoking_a_connected_device_ends_its_session,
    friends_are_stored_per_user,
);
