//! Per-IP rate limits on every route and transport.

use super::*;

/// Every `(method, path)` the router serves (besides `/connect`), for the per-route checks.
fn served_routes() -> BTreeSet<(&'static str, &'static str)> {
    SURFACE
        .iter()
        .filter(|(_, _, statuses)| *statuses != [404] && *statuses != [405])
        .map(|(method, path, _)| (*method, *path))
        .collect()
}

pub(super) fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).unwrap()
}

/// A 429 problem with a `retry-after` of 1..=`at_most` seconds.
pub(super) fn too_many(answer: &Answer, detail: &str, at_most: u64) {
    answer.problem(StatusCode::TOO_MANY_REQUESTS, detail);
    let retry: u64 = answer
        .retry_after
        .as_deref()
        .unwrap_or_else(|| panic!("{answer}: no retry-after"))
        .parse()
        .unwrap();
    assert!(
        (1..=at_most).contains(&retry),
        "{answer}: retry-after {retry}"
    );
}

#[tokio::test]
async fn per_ip_limits_answer_429_on_every_route_and_transport() {
    // One REST request and one /connect a minute; no claim limit of its own.
    let server = TestServer::start(|c| {
        c.rate_limits.rest_per_minute = 1;
        c.rate_limits.claim_per_minute = 0;
        c.rate_limits.connect_per_minute = 1;
    })
    .await;
    let rest = Rest::new(&server);
    let _alice = server.connect("alice-1").await;
    rest.call(Method::GET, "/healthz", None, None)
        .await
        .decode::<contract::Health>();
    for transport in Transport::ALL {
        for (name, path) in served_routes() {
            let body = (name != "GET").then(|| json!({}));
            let answer = rest
                .clients
                .call(transport, method(name), path, None, body.as_ref())
                .await;
            too_many(&answer, "too many requests from this address", 60);
        }
        // /connect has its own budget, spent by alice's handshake.
        let answer = rest
            .clients
            .call(transport, Method::POST, "/connect", None, None)
            .await;
        too_many(&answer, "too many connection attempts", 60);
    }
    let stream = transport::open(server.addr, "localhost", &server.trust, "/connect").await;
    let refused = match stream {
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
    assert!(refused, "a second /connect within the minute is refused");

    // Pairing claims have a budget of their own on top of the REST one.
    let server = TestServer::start(|c| {
        c.rate_limits.rest_per_minute = 0;
        c.rate_limits.claim_per_minute = 1;
    })
    .await;
    let rest = Rest::new(&server);
    let claim = json!({"pair_code": "NONE-NONE"});
    rest.post("/api/pair/claim", None, &claim)
        .await
        .problem(StatusCode::NOT_FOUND, "unknown pairing code");
    for transport in Transport::ALL {
        for path in ["/api/pair/claim", "/api/pairing/claim"] {
            let answer = rest
                .clients
                .call(transport, Method::POST, path, None, Some(&claim))
                .await;
            too_many(&answer, "too many pairing claims", 60);
        }
        // Other requests are not held back by it.
        rest.call_on(transport, Method::GET, "/healthz", None, None)
            .await
            .decode::<contract::Health>();
    }
}
