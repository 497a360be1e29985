//! The console over plain HTTPS: what a browser would send, checked status by status.

use std::collections::HashMap;

use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};

use super::{ADMIN, console_server};
use crate::common::{TestServer, ledger_records};

/// An HTTPS client that does not follow redirects and keeps cookies by hand.
pub(crate) struct Browserless {
    http: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

/// The value of `name="…" value="…"` of the hidden CSRF field in `html`.
pub(crate) fn csrf_in(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[start..].split('"').next().unwrap().to_owned()
}

impl Browserless {
    pub(crate) fn new(server: &TestServer) -> Self {
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&server.pem).unwrap()])
            .resolve("localhost", server.addr)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            http,
            base: format!("https://localhost:{}", server.addr.port()),
            cookies: HashMap::new(),
        }
    }

    fn keep(&mut self, headers: &HeaderMap) {
        for value in headers.get_all(header::SET_COOKIE) {
            let value = value.to_str().unwrap();
            assert!(
                value.contains("Secure; HttpOnly; SameSite=Strict; Path=/"),
                "{value}"
            );
            let (pair, _) = value.split_once(';').unwrap();
            let (name, v) = pair.split_once('=').unwrap();
            if v.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), v.to_owned());
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub(crate) async fn get(&mut self, path: &str) -> (StatusCode, HeaderMap, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header(header::COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        self.keep(&headers);
        (status, headers, response.text().await.unwrap())
    }

    pub(crate) async fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header(header::COOKIE, self.cookie_header())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        self.keep(&headers);
        (status, headers, response.text().await.unwrap())
    }

    /// Opens the login form and submits `token`; returns the answer.
    pub(crate) async fn login(&mut self, token: &str) -> (StatusCode, HeaderMap, String) {
        let (status, _, form) = self.get("/admin/login").await;
        assert_eq!(status, StatusCode::OK);
        let csrf = csrf_in(&form);
        self.post("/admin/login", &[("csrf", &csrf), ("token", token)])
            .await
    }
}

fn location(headers: &HeaderMap) -> &str {
    headers[header::LOCATION].to_str().unwrap()
}

#[tokio::test]
async fn login_refuses_a_wrong_token_and_pages_need_a_session() {
    let (server, ledger, _dir) = console_server(|_| {}).await;
    let mut b = Browserless::new(&server);
    // Without a session every page sends the browser to the login form.
    for page in [
        "/admin/sessions",
        "/admin/devices",
        "/admin/metrics",
        "/admin/metrics.json",
    ] {
        let (status, headers, _) = b.get(page).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
        assert_eq!(location(&headers), "/admin/login");
    }
    let (status, headers, body) = b.login("not-the-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(body.contains("wrong admin token"), "{body}");
    assert!(!b.cookies.contains_key("__Host-commucat-console"));
    // The login POST needs the form's token too.
    let (status, _, body) = b.post("/admin/login", &[("token", ADMIN)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    ledger_records(&ledger, 1, |l| {
        l["scope"] == "console" && l["event"] == "login" && l["result"] == "refused"
    })
    .await;

    let (status, headers, _) = b.login(ADMIN).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location(&headers), "/admin/sessions");
    assert!(b.cookies.contains_key("__Host-commucat-console"));
    for page in [
        "/admin/sessions",
        "/admin/devices",
        "/admin/pairing",
        "/admin/groups",
        "/admin/queues",
        "/admin/federation",
        "/admin/metrics",
    ] {
        let (status, headers, body) = b.get(page).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert!(body.contains("Log out"), "{page}");
    }
    let (status, _, json) = b.get("/admin/metrics.json").await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        json["values"]["commucat_handshakes_total"].is_number(),
        "{json}"
    );
    ledger_records(&ledger, 1, |l| {
        l["scope"] == "console" && l["event"] == "login" && l["result"] == "ok"
    })
    .await;

    // Logging out ends the session on the server, not only in the browser.
    let old_cookie = b.cookies["__Host-commucat-console"].clone();
    let (_, _, page) = b.get("/admin/sessions").await;
    let csrf = csrf_in(&page);
    let (status, headers, _) = b.post("/admin/logout", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location(&headers), "/admin/login");
    b.cookies
        .insert("__Host-commucat-console".to_owned(), old_cookie);
    let (status, _, _) = b.get("/admin/sessions").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_revoke_without_the_csrf_token_is_refused_and_changes_nothing() {
    let (server, _ledger, _dir) = console_server(|_| {}).await;
    let mut alice = server.connect("alice-c").await;
    let mut b = Browserless::new(&server);
    b.login(ADMIN).await;
    let (_, _, page) = b.get("/admin/devices").await;
    assert!(page.contains("alice-c"), "{page}");
    let csrf = csrf_in(&page);

    let (status, headers, body) = b
        .post("/admin/devices/revoke", &[("device_id", "alice-c")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(body.contains("no CSRF token"), "{body}");
    let (status, _, body) = b
        .post(
            "/admin/devices/revoke",
            &[("device_id", "alice-c"), ("csrf", "0123")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("CSRF token is wrong"), "{body}");
    // The device is still active and connected.
    let store = server.store().await;
    let device = store.device("alice-c").await.unwrap().unwrap();
    assert_eq!(device.status, commucat_store::DeviceStatus::Active);
    alice
        .expect_quiet(std::time::Duration::from_millis(300))
        .await;

    // With the token: revoked, and its live session ends with `Device Revoked`.
    let (status, _, body) = b
        .post(
            "/admin/devices/revoke",
            &[("device_id", "alice-c"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("its live session was ended"), "{body}");
    crate::rest::expect_closed_as_revoked(&mut alice).await;
    let (status, _, body) = b
        .post(
            "/admin/devices/revoke",
            &[("device_id", "nobody"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn without_an_admin_token_the_console_is_disabled() {
    let server = TestServer::start(|_| {}).await;
    let mut b = Browserless::new(&server);
    let (status, _, body) = b.get("/admin/login").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("metrics.admin_token"), "{body}");
}

#[tokio::test]
async fn login_attempts_are_capped_per_address() {
    let (server, _ledger, _dir) = console_server(|c| c.rate_limits.rest_per_minute = 0).await;
    let mut b = Browserless::new(&server);
    let (_, _, form) = b.get("/admin/login").await;
    let csrf = csrf_in(&form);
    let mut statuses = Vec::new();
    for _ in 0..=commucat_server_login_cap() {
        let (status, headers, _) = b
            .post("/admin/login", &[("csrf", &csrf), ("token", "guess")])
            .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(headers.contains_key(header::RETRY_AFTER));
        }
        statuses.push(status);
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count(),
        usize::try_from(commucat_server_login_cap()).unwrap()
    );
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS));
    // The right token is refused too while the cap holds.
    let (status, _, _) = b
        .post("/admin/login", &[("csrf", &csrf), ("token", ADMIN)])
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

/// Login attempts per address and minute (`console::auth::LOGIN_ATTEMPTS_PER_MINUTE`).
fn commucat_server_login_cap() -> u32 {
    10
}
