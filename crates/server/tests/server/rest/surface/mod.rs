//! The whole surface: every endpoint and error status over HTTP/1.1 and HTTP/2.

use super::*;

mod devices;
mod friends;
mod rotations;

use devices::devices_and_pairing;
use friends::friends_and_assist;
use rotations::rotations;

/// Every `(method, path)` the server serves (besides `/connect`) and every status the surface
/// test drives it to, on each transport. A 429 of the per-IP limiters is checked on every route
/// by `per_ip_limits_answer_429_on_every_route_and_transport`; a 503 of an unreachable store by
/// `an_unreachable_store_is_a_503_on_every_route_that_needs_it`.
pub(super) const SURFACE: &[(&str, &str, &[u16])] = &[
    ("GET", "/healthz", &[200]),
    ("POST", "/healthz", &[405]),
    ("GET", "/readyz", &[200]),
    ("POST", "/readyz", &[405]),
    ("GET", "/metrics", &[200, 401]),
    ("POST", "/metrics", &[405]),
    ("GET", "/api/security-stats", &[200, 401]),
    ("POST", "/api/security-stats", &[405]),
    ("GET", "/openapi.json", &[200]),
    ("POST", "/openapi.json", &[405]),
    ("GET", "/api/server-info", &[200]),
    ("POST", "/api/server-info", &[405]),
    ("GET", "/api/server/info", &[200]),
    ("POST", "/api/server/info", &[405]),
    ("GET", "/api/devices", &[200, 401]),
    ("DELETE", "/api/devices", &[405]),
    (
        "POST",
        "/api/devices/revoke",
        &[200, 400, 401, 403, 404, 409],
    ),
    ("GET", "/api/devices/revoke", &[405]),
    (
        "POST",
        "/api/devices/rotate",
        &[200, 400, 401, 403, 409, 429],
    ),
    ("GET", "/api/devices/rotate", &[405]),
    ("POST", "/api/pair", &[200, 400, 401]),
    ("GET", "/api/pair", &[405]),
    ("POST", "/api/pairing", &[200, 400, 401]),
    ("GET", "/api/pairing", &[405]),
    ("POST", "/api/pair/claim", &[200, 400, 404]),
    ("GET", "/api/pair/claim", &[405]),
    ("POST", "/api/pairing/claim", &[200, 400, 404]),
    ("GET", "/api/pairing/claim", &[405]),
    ("GET", "/api/friends", &[200, 401]),
    ("PUT", "/api/friends", &[200, 400, 401, 413]),
    ("POST", "/api/friends", &[405]),
    ("GET", "/api/p2p/assist", &[200, 400, 401]),
    ("POST", "/api/p2p/assist", &[200, 400, 401]),
    ("PUT", "/api/p2p/assist", &[405]),
    ("GET", "/api/nothing-here", &[404]),
];

/// `metrics.admin_token` of the surface test's server.
const ADMIN: &str = "s3cret-admin-token-0123";

/// Requests over one transport, recording each `(method, path, status)` whose answer was
/// checked.
struct Surface<'a> {
    rest: &'a Rest,
    transport: Transport,
    seen: &'a mut BTreeSet<(Transport, String, String, u16)>,
}

impl Surface<'_> {
    fn record(&mut self, method: &Method, path: &str, status: StatusCode) {
        self.seen.insert((
            self.transport,
            method.to_string(),
            path.to_owned(),
            status.as_u16(),
        ));
    }

    async fn send(
        &mut self,
        method: &Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&[u8]>,
    ) -> Answer {
        self.rest
            .clients
            .send(self.transport, method.clone(), path, bearer, body)
            .await
    }

    /// A 200; the caller checks its body.
    async fn ok(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
        let answer = self.send(&method, path, bearer, bytes.as_deref()).await;
        answer.expect(StatusCode::OK);
        self.record(&method, path, StatusCode::OK);
        answer
    }

    /// A problem of `status` whose detail mentions `detail`.
    async fn err(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
        status: StatusCode,
        detail: &str,
    ) -> Answer {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
        self.err_raw(method, path, bearer, bytes.as_deref(), status, detail)
            .await
    }

    /// Like [`Self::err`] with a raw body.
    async fn err_raw(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&[u8]>,
        status: StatusCode,
        detail: &str,
    ) -> Answer {
        let answer = self.send(&method, path, bearer, body).await;
        answer.problem(status, detail);
        self.record(&method, path, status);
        answer
    }
}

/// What the surface test shares across transports.
struct World {
    server: TestServer,
    disabled: TestServer,
    rest: Rest,
    disabled_rest: Rest,
    alice: Client,
    bob: Client,
}

#[tokio::test]
async fn every_endpoint_and_error_status_over_http1_and_http2() {
    let server = TestServer::start(|c| {
        c.rate_limits.rest_per_minute = 0;
        c.rate_limits.claim_per_minute = 0;
        c.metrics.admin_token = Some(commucat_server::config::SecretString(ADMIN.to_owned()));
    })
    .await;
    let disabled = TestServer::start(|c| c.devices.rotation_enabled = false).await;
    let world = World {
        rest: Rest::new(&server),
        disabled_rest: Rest::new(&disabled),
        alice: server.connect("alice-1").await,
        bob: server.connect("bob-1").await,
        server,
        disabled,
    };
    let mut seen = BTreeSet::new();
    for (n, transport) in Transport::ALL.into_iter().enumerate() {
        let mut s = Surface {
            rest: &world.rest,
            transport,
            seen: &mut seen,
        };
        operations(&world, &mut s).await;
        devices_and_pairing(&world, &mut s).await;
        rotations(&world, &mut s, n).await;
        friends_and_assist(&world, &mut s).await;
        for &(name, path, statuses) in SURFACE {
            if statuses == [405] {
                s.err(
                    method(name),
                    path,
                    None,
                    None,
                    StatusCode::METHOD_NOT_ALLOWED,
                    &format!("{name} is not allowed on {path}"),
                )
                .await;
            }
        }
        s.err(
            Method::GET,
            "/api/nothing-here",
            None,
            None,
            StatusCode::NOT_FOUND,
            "no resource at GET /api/nothing-here",
        )
        .await;
    }

    // Every route and status of the table was driven and checked on every transport, and
    // nothing else.
    let want: BTreeSet<(Transport, String, String, u16)> = Transport::ALL
        .into_iter()
        .flat_map(|t| {
            SURFACE.iter().flat_map(move |(method, path, statuses)| {
                statuses
                    .iter()
                    .map(move |s| (t, (*method).to_owned(), (*path).to_owned(), *s))
            })
        })
        .collect();
    let missing: Vec<_> = want.difference(&seen).collect();
    let extra: Vec<_> = seen.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "not driven: {missing:?}; not in the table: {extra:?}"
    );

    // The table is the server's own: every path and method of the OpenAPI document is in it,
    // with the statuses the document lists (429 and 503 are driven by the limiter and outage
    // tests), and it drives no status the document does not list (besides the router's 405).
    let doc = world
        .rest
        .call(Method::GET, "/openapi.json", None, None)
        .await
        .body;
    let mut documented: BTreeMap<(String, String), BTreeSet<u16>> = BTreeMap::new();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (name, operation) in operations.as_object().unwrap() {
            if !["get", "post", "put", "delete", "patch"].contains(&name.as_str()) {
                continue;
            }
            let statuses = operation["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|s| s.parse().unwrap())
                .collect();
            documented.insert((name.to_uppercase(), path.clone()), statuses);
        }
    }
    let tested: BTreeMap<(String, String), BTreeSet<u16>> = SURFACE
        .iter()
        .filter(|(_, _, statuses)| *statuses != [405] && *statuses != [404])
        .filter(|(_, path, _)| *path != "/openapi.json")
        .map(|(method, path, statuses)| {
            (
                ((*method).to_owned(), (*path).to_owned()),
                statuses.iter().copied().collect(),
            )
        })
        .collect();
    assert_eq!(
        documented.keys().collect::<Vec<_>>(),
        tested.keys().collect::<Vec<_>>(),
        "the OpenAPI document and the surface table list different routes"
    );
    for (route, statuses) in &documented {
        let elsewhere: BTreeSet<u16> = [429, 503].into();
        let driven = &tested[route];
        assert!(
            statuses.difference(driven).all(|s| elsewhere.contains(s)),
            "{route:?}: documented {statuses:?}, driven {driven:?}"
        );
        assert!(
            driven.is_subset(statuses),
            "{route:?}: driven {driven:?}, documented {statuses:?}"
        );
    }
}

/// Health, readiness, metrics, security counters, the OpenAPI document and server-info.
async fn operations(world: &World, s: &mut Surface<'_>) {
    let health: contract::Health = s.ok(Method::GET, "/healthz", None, None).await.decode();
    assert_eq!(health.status, "ok");
    let ready: contract::Health = s.ok(Method::GET, "/readyz", None, None).await.decode();
    assert_eq!(ready.status, "ready");

    let a = token(&world.alice);
    let metrics = s.ok(Method::GET, "/metrics", Some(ADMIN), None).await;
    assert_eq!(
        metrics.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(
        metrics
            .text()
            .contains("commucat_handshakes_total{result=\"ok\"} "),
        "{}",
        metrics.text()
    );
    let stats: deployed::SecuritySnapshot = s
        .ok(Method::GET, "/api/security-stats", Some(ADMIN), None)
        .await
        .decode();
    assert!(stats.noise_handshakes >= 2, "{stats:?}");
    assert_eq!(stats.pq_handshakes, 0);
    for path in ["/metrics", "/api/security-stats"] {
        s.err(
            Method::GET,
            path,
            None,
            None,
            StatusCode::UNAUTHORIZED,
            "missing Authorization: Bearer <metrics.admin_token>",
        )
        .await;
        // A wrong token, and a device session (not an admin token).
        for bearer in ["wrong-token-wrong-token", a.as_str()] {
            s.err(
                Method::GET,
                path,
                Some(bearer),
                None,
                StatusCode::UNAUTHORIZED,
                "wrong admin token",
            )
            .await;
        }
    }

    let doc = s.ok(Method::GET, "/openapi.json", None, None).await;
    let doc: Value = doc.decode();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/pairing/claim"]["post"].is_object());

    let mut bodies = Vec::new();
    for path in ["/api/server-info", "/api/server/info"] {
        let answer = s.ok(Method::GET, path, None, None).await;
        let info: deployed::ServerInfo = answer.decode();
        assert_eq!(info.domain, "chat.test");
        assert_eq!(
            info.noise_public,
            hex::encode(world.server.params.server_static)
        );
        assert_eq!(info.device_ca_public.as_ref().map(String::len), Some(64));
        assert_eq!(info.supported_patterns, ["XK", "IK"]);
        assert_eq!(info.supported_versions, [1]);
        let pairing = info.pairing.unwrap();
        assert!(pairing.auto_approve);
        assert_eq!(pairing.pairing_ttl, 300);
        bodies.push(answer.body);
    }
    assert_eq!(bodies[0], bodies[1]);
}
