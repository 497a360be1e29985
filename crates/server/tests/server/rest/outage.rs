//! An unreachable store: 503 on every route that needs it.

use super::*;

/// A TCP relay to PostgreSQL that the test can cut: cutting drops every relayed connection and
/// closes each new one at once, until the relay is restored.
struct Relay {
    addr: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let links = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let (open, links) = (open.clone(), links.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        continue;
                    }
                    let upstream = upstream.clone();
                    let link = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    links.lock().unwrap().push(link.abort_handle());
                }
            }
        });
        Self {
            addr,
            open,
            links,
            accept,
        }
    }

    fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Drops a PostgreSQL schema when dropped, even when the test panics.
struct DropSchema {
    url: String,
    name: String,
}

impl Drop for DropSchema {
    fn drop(&mut self) {
        // Outside async code (possibly while unwinding inside a runtime): a thread with a runtime
        // of its own does it, bounded in time.
        let url = self.url.clone();
        let statement = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let _ = tokio::time::timeout(Duration::from_secs(20), async {
                    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await?;
                    sqlx::query(sqlx::AssertSqlSafe(statement))
                        .execute(&mut conn)
                        .await
                        .map(drop)
                })
                .await;
            });
        });
        let _ = cleanup.join();
    }
}

/// `url` split around its `host:port`.
fn split_url(url: &str) -> (&str, &str, &str) {
    let start = url.find("://").unwrap() + 3;
    let start = url[start..].find('@').map_or(start, |at| start + at + 1);
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |end| start + end);
    (&url[..start], &url[start..end], &url[end..])
}

/// While the PostgreSQL store cannot be reached, every route that needs it answers 503 (the
/// bearer check itself needs it), on every transport; `/readyz` names the store; the routes
/// that need no store keep answering; and every 503 is one the OpenAPI document lists. Once
/// the store is back, so is the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(commucat_test_postgres), ignore = "needs COMMUCAT_TEST_POSTGRES")]
async fn an_unreachable_store_is_a_503_on_every_route_that_needs_it() {
    let url = common::pg::test_url().expect("COMMUCAT_TEST_POSTGRES is unset: this test needs it");
    let (scheme, upstream, rest_of_url) = split_url(&url);
    let relay = Relay::start(upstream.to_owned()).await;
    let schema = format!(
        "commucat_test_rest503_{}_{}",
        std::process::id(),
        commucat_server::clock::unix_micros_now()
    );
    let _cleanup = DropSchema {
        url: url.clone(),
        name: schema.clone(),
    };
    let server = TestServer::start(|c| {
        c.store.url = Some(format!("{scheme}{}{rest_of_url}", relay.addr));
        c.store.schema = Some(schema.clone());
        c.store.acquire_timeout = Duration::from_secs(1);
    })
    .await;
    let rest = Rest::new(&server);
    let alice = server.connect("alice-1").await;
    let a = token(&alice);
    let code = rest
        .ok(Method::POST, "/api/pair", Some(&a), &json!({"ttl": null}))
        .await["pair_code"]
        .clone();
    let doc = rest
        .call(Method::GET, "/openapi.json", None, None)
        .await
        .body;

    relay.cut();
    let down: contract::NotReady = eventually("/readyz 503", Duration::from_secs(10), || async {
        let answer = rest
            .clients
            .call(Transport::Http1NoAlpn, Method::GET, "/readyz", None, None)
            .await;
        (answer.status == StatusCode::SERVICE_UNAVAILABLE).then(|| {
            assert_eq!(answer.content_type, "application/problem+json");
            serde_json::from_slice(&answer.bytes).unwrap()
        })
    })
    .await;
    assert_eq!(down.down, ["store"]);
    assert_eq!(
        (down.kind.as_str(), down.title.as_str(), down.status),
        ("about:blank", "Service Unavailable", 503)
    );
    assert!(
        down.detail.starts_with("store unreachable"),
        "{}",
        down.detail
    );

    let body = |v: Value| Some(v);
    let needs_store: Vec<(Method, &str, Option<&str>, Option<Value>)> = vec![
        (Method::GET, "/api/devices", Some(&a), None),
        (
            Method::POST,
            "/api/devices/revoke",
            Some(&a),
            body(json!({"device_id": "x"})),
        ),
        (
            Method::POST,
            "/api/devices/rotate",
            Some(&a),
            body(json!({})),
        ),
        (
            Method::POST,
            "/api/pair",
            Some(&a),
            body(json!({"ttl": null})),
        ),
        (
            Method::POST,
            "/api/pairing",
            Some(&a),
            body(json!({"ttl": null})),
        ),
        (
            Method::POST,
            "/api/pair/claim",
            None,
            body(json!({"pair_code": code})),
        ),
        (
            Method::POST,
            "/api/pairing/claim",
            None,
            body(json!({"pair_code": code})),
        ),
        (Method::GET, "/api/friends", Some(&a), None),
        (
            Method::PUT,
            "/api/friends",
            Some(&a),
            body(json!({"friends": []})),
        ),
        (Method::GET, "/api/p2p/assist", Some(&a), None),
        (Method::POST, "/api/p2p/assist", Some(&a), body(json!({}))),
    ];
    let rest = &rest;
    let calls = Transport::ALL.into_iter().flat_map(|transport| {
        needs_store
            .iter()
            .map(move |(method, path, bearer, body)| async move {
                let answer = rest
                    .clients
                    .call(transport, method.clone(), path, *bearer, body.as_ref())
                    .await;
                answer.problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage is unavailable; retry shortly",
                );
                (method.to_string().to_lowercase(), (*path).to_owned())
            })
    });
    for (method, path) in futures_util::future::join_all(calls).await {
        assert!(
            doc["paths"][&path][&method]["responses"]["503"].is_object(),
            "{method} {path} answers 503 but the OpenAPI document does not say so"
        );
    }
    for transport in Transport::ALL {
        for path in ["/readyz"] {
            let answer = rest
                .clients
                .call(transport, Method::GET, path, None, None)
                .await;
            answer.expect(StatusCode::SERVICE_UNAVAILABLE);
        }
        for path in [
            "/healthz",
            "/api/server-info",
            "/api/server/info",
            "/openapi.json",
            "/api/security-stats",
        ] {
            rest.call_on(transport, Method::GET, path, None, None)
                .await
                .expect(StatusCode::OK);
        }
        rest.clients
            .call(transport, Method::GET, "/metrics", None, None)
            .await
            .expect(StatusCode::OK);
    }

    // Back: the same server serves again.
    relay.restore();
    eventually("/readyz 200", Duration::from_secs(30), || async {
        let answer = rest
            .clients
            .call(Transport::Http1NoAlpn, Method::GET, "/readyz", None, None)
            .await;
        (answer.status == StatusCode::OK).then_some(())
    })
    .await;
    let list: deployed::DevicesEnvelope = rest.get("/api/devices", &a).await.decode();
    assert_eq!(list.devices.len(), 1);
}
