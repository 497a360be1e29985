//! Pairing brute force, through the HTTP API only: wrong guesses are counted per client address,
//! per account and per code, and refused with 429 `Too Many Pairing Attempts` past the caps,
//! while a legitimate claim from another address still pairs.
//!
//! Clients bind distinct loopback source addresses (127.0.0.x) to act as distinct IPs.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};

use crate::common::{StoreBackend, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Defaults of `bounds.pairing_guesses_per_ip` and `bounds.pairing_guesses_per_code`.
const PER_IP: usize = 20;
const PER_CODE: usize = 5;
/// Default of `bounds.pairing_guesses_per_account`.
const PER_ACCOUNT: usize = 20;

/// An HTTPS client whose connections come from `127.0.0.<host>`.
struct From {
    http: reqwest::Client,
    base: String,
}

impl From {
    fn new(server: &TestServer, host: u8) -> Self {
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&server.pem).unwrap()])
            .resolve("localhost", server.addr)
            .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)))
            .build()
            .unwrap();
        Self {
            http,
            base: format!("https://localhost:{}", server.addr.port()),
        }
    }

    async fn post(&self, path: &str, bearer: Option<&str>, body: &Value) -> (StatusCode, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let retry_after = response.headers().get("retry-after").cloned();
        let mut body: Value = response.json().await.unwrap_or(Value::Null);
        if let Some(value) = retry_after {
            body["retry-after"] = json!(value.to_str().unwrap());
        }
        (status, body)
    }

    async fn claim(&self, code: &str) -> (StatusCode, Value) {
        self.post("/api/pair/claim", None, &json!({ "pair_code": code }))
            .await
    }

    async fn metrics(&self) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap();
        response.text().await.unwrap()
    }
}

/// A server whose per-minute claim limiter is off, so only the wrong-guess caps apply.
async fn server(backend: StoreBackend) -> TestServer {
    TestServer::start_on(backend, |c| {
        c.rate_limits.claim_per_minute = 0;
        c.rate_limits.rest_per_minute = 0;
    })
    .await
}

/// A pairing code of `issuer`'s account, issued through `POST /api/pair`.
async fn issue(server: &TestServer, issuer: &common::Client) -> String {
    let token = issuer.session.info().session_id.clone();
    let (status, body) = From::new(server, 1)
        .post("/api/pair", Some(&token), &json!({ "ttl": null }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["pair_code"].as_str().unwrap().to_owned()
}

fn assert_too_many(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["title"], "Too Many Pairing Attempts", "{body}");
    assert_eq!(body["status"], 429);
}

/// Distinct codes in the code alphabet that were never issued.
fn guess(n: usize) -> String {
    let alphabet = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let symbol = |k: usize| char::from(alphabet[k % alphabet.len()]);
    format!(
        "{}{}{}{}-{}{}{}{}",
        symbol(n),
        symbol(n / 31),
        symbol(n / 961),
        'Z',
        'Z',
        symbol(n + 7),
        symbol(n / 31 + 3),
        '9'
    )
}

async fn wrong_guesses_from_one_address_are_capped(backend: StoreBackend) {
    let server = server(backend).await;
    let alice = server.connect("alice-1").await;
    let code = issue(&server, &alice).await;
    let attacker = From::new(&server, 66);
    for n in 0..PER_IP {
        let (status, body) = attacker.claim(&guess(n)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "guess {n}: {body}");
    }
    // Past the cap, every claim from that address is refused, even the right code.
    let (status, body) = attacker.claim(&guess(PER_IP)).await;
    assert_too_many(status, &body);
    assert!(body["retry-after"].as_str().is_some(), "{body}");
    let (status, body) = attacker.claim(&code).await;
    assert_too_many(status, &body);

    // The legitimate claim from another address still pairs.
    let (status, body) = From::new(&server, 2).claim(&code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["device_id"].as_str().is_some());

    let metrics = attacker.metrics().await;
    assert!(
        metrics.contains("commucat_bound_refusals_total{bound=\"pairing_guesses_per_ip\"} 2"),
        "{metrics}"
    );
}

async fn failed_claims_of_one_code_block_it(backend: StoreBackend) {
    let server = server(backend).await;
    let alice = server.connect("alice-1").await;
    let code = issue(&server, &alice).await;
    let (status, body) = From::new(&server, 2).claim(&code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Claims of the redeemed code, each from its own address: each is refused and counted
    // against the code, until the code is blocked.
    for n in 0..PER_CODE {
        let host = u8::try_from(10 + n).unwrap();
        let (status, body) = From::new(&server, host).claim(&code).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "claim {n}: {body}");
    }
    let (status, body) = From::new(&server, 40).claim(&code).await;
    assert_too_many(status, &body);
    assert!(
        body["detail"].as_str().unwrap().contains("blocked"),
        "{body}"
    );
}

async fn wrong_guesses_for_one_account_are_capped(backend: StoreBackend) {
    let server = server(backend).await;
    let alice = server.connect("alice-1").await;
    let leaked = issue(&server, &alice).await;
    let (status, _) = From::new(&server, 2).claim(&leaked).await;
    assert_eq!(status, StatusCode::OK);
    // Twenty refused claims of alice's codes, from twenty addresses (no address reaches its
    // own cap): 400 while the code lives, 429 once it is blocked.
    for n in 0..PER_ACCOUNT {
        let host = u8::try_from(100 + n).unwrap();
        let (status, body) = From::new(&server, host).claim(&leaked).await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::TOO_MANY_REQUESTS,
            "claim {n}: {status} {body}"
        );
    }
    // Alice's next code is refused for now, from any address; bob's account is unaffected.
    let fresh = issue(&server, &alice).await;
    let (status, body) = From::new(&server, 200).claim(&fresh).await;
    assert_too_many(status, &body);
    assert!(
        body["detail"].as_str().unwrap().contains("account"),
        "{body}"
    );
    let bob = server.connect("bob-1").await;
    let bobs = issue(&server, &bob).await;
    let (status, body) = From::new(&server, 200).claim(&bobs).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

common::on_each_store!(
    wrong_guesses_for_one_account_are_capped,
    wrong_guesses_from_one_address_are_capped,
    failed_claims_of_one_code_block_it,
);
