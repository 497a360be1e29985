//! Operator login and logout, the session cookie, and CSRF checks.
//!
//! The credential is the server's admin token (`metrics.admin_token`); without one the console
//! is disabled (503). `GET /admin/login` sets a short-lived login cookie whose value the form
//! repeats (double-submit), so the login POST carries a CSRF token too. A correct token opens
//! an operator session ([`super::operator_sessions`]): cookie `__Host-commucat-console`,
//! `Secure; HttpOnly; SameSite=Strict; Path=/`, expiring on the server after
//! [`SESSION_TTL`]. Every POST of a session carries its CSRF token (hidden `csrf` field).
//! Login attempts are capped per client address ([`LOGIN_ATTEMPTS_PER_MINUTE`]) on top of the
//! REST budget every console request counts against.

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use zeroize::Zeroizing;

use super::ConsoleState;
use super::html::{ConsoleError, csrf_field, page, secure};
use super::operator_sessions::SESSION_TTL;
use crate::listener::http::PeerAddr;

/// The operator session cookie.
pub(crate) const SESSION_COOKIE: &str = "__Host-commucat-console";
/// The login form's double-submit cookie.
pub(crate) const LOGIN_COOKIE: &str = "__Host-commucat-login";
/// Login attempts one client address may make per minute.
pub(crate) const LOGIN_ATTEMPTS_PER_MINUTE: u32 = 10;
/// Largest form body the console reads.
pub(crate) const MAX_FORM_BYTES: usize = 16 * 1024;
/// How long a login form stays valid, seconds.
const LOGIN_FORM_SECS: u64 = 600;

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(name: &str, value: &str, max_age_secs: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{name}={value}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}"
    ))
    .ok()
}

/// The fields of a `application/x-www-form-urlencoded` body (the last of a repeated name).
pub(crate) fn form(body: &[u8]) -> HashMap<String, Zeroizing<String>> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), Zeroizing::new(v.into_owned())))
        .collect()
}

/// Compares two secrets without leaking where they differ (BLAKE3 hashes compare in constant
/// time).
fn same_secret(a: &str, b: &str) -> bool {
    blake3::hash(a.as_bytes()) == blake3::hash(b.as_bytes())
}

/// A logged-in operator: the request carried a live session cookie.
#[derive(Debug)]
pub(crate) struct Operator {
    /// The session id (the cookie's value).
    pub id: Zeroizing<String>,
    /// The session's CSRF token.
    pub csrf: Zeroizing<String>,
}

impl Operator {
    /// Checks the `csrf` field of a POSTed form against the session's token.
    ///
    /// # Errors
    /// 403 when it is missing or wrong.
    pub(crate) fn check_csrf(
        &self,
        fields: &HashMap<String, Zeroizing<String>>,
    ) -> Result<(), ConsoleError> {
        match fields.get("csrf") {
            Some(token) if same_secret(token, &self.csrf) => Ok(()),
            Some(_) => Err(ConsoleError::new(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is wrong; reload the page and try again",
            )),
            None => Err(ConsoleError::new(
                StatusCode::FORBIDDEN,
                "the form carries no CSRF token",
            )),
        }
    }
}

/// Without a live session: back to the login form.
#[derive(Debug)]
pub(crate) struct LoginRequired;

impl IntoResponse for LoginRequired {
    fn into_response(self) -> Response {
        let mut response = Redirect::to("/admin/login").into_response();
        secure(response.headers_mut());
        response
    }
}

impl FromRequestParts<ConsoleState> for Operator {
    type Rejection = LoginRequired;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, LoginRequired> {
        let id = cookie(&parts.headers, SESSION_COOKIE).ok_or(LoginRequired)?;
        let csrf = state
            .console
            .sessions
            .check(id, Instant::now())
            .ok_or(LoginRequired)?;
        Ok(Self {
            id: Zeroizing::new(id.to_owned()),
            csrf,
        })
    }
}

fn disabled() -> ConsoleError {
    ConsoleError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the console is disabled: set metrics.admin_token (COMMUCAT_METRICS_TOKEN) to \
         enable it",
    )
}

/// `GET /admin/login`: the login form (or the console, for a logged-in operator).
pub(crate) async fn login_form(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    if state.console.admin_token.is_none() {
        return Err(disabled());
    }
    let logged_in = cookie(&headers, SESSION_COOKIE)
        .and_then(|id| state.console.sessions.check(id, Instant::now()))
        .is_some();
    if logged_in {
        return Ok(Redirect::to("/admin/sessions").into_response());
    }
    let nonce = Zeroizing::new(crate::registry::random_id());
    let body = format!(
        "<form method=\"post\" action=\"/admin/login\" class=\"login\" id=\"login\">{}\
         <label for=\"token\">Admin token (<code>metrics.admin_token</code>)</label>\
         <input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"current-password\" \
         required autofocus><button type=\"submit\" id=\"login-submit\">Log in</button></form>",
        csrf_field(&nonce)
    );
    let mut response = page("Log in", "", None, &state.node(), &body);
    if let Some(cookie) = set_cookie(LOGIN_COOKIE, &nonce, LOGIN_FORM_SECS) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `POST /admin/login` `token=…&csrf=…`: opens an operator session and goes to the console.
///
/// # Errors
/// 429 past the login cap; 403 without the login form's token; 401 wrong admin token; 503
/// console disabled.
pub(crate) async fn login(
    State(state): State<ConsoleState>,
    request: Request,
) -> Result<Response, ConsoleError> {
    let (parts, body) = request.into_parts();
    let peer = parts.extensions.get::<PeerAddr>().map(|p| p.0);
    if let Some(peer) = peer
        && let Err(retry) = state.console.login_limiter.check(peer.ip())
    {
        let secs = retry.0.as_secs().saturating_add(1);
        let mut response = ConsoleError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many login attempts from this address; retry in {secs} s"),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return Ok(response);
    }
    let Some(expected) = state.console.admin_token else {
        return Err(disabled());
    };
    let body = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| ConsoleError::new(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large"))?;
    let fields = form(&body);
    let nonce = cookie(&parts.headers, LOGIN_COOKIE);
    match (nonce, fields.get("csrf")) {
        (Some(nonce), Some(sent)) if same_secret(nonce, sent) => {}
        _ => {
            return Err(ConsoleError::new(
                StatusCode::FORBIDDEN,
                "the login form's CSRF token is missing or stale; open the login page again",
            ));
        }
    }
    let remote = peer.map(|p| p.ip().to_string()).unwrap_or_default();
    let ledger = &state.app.sessions.messaging().ledger;
    let token_ok = fields
        .get("token")
        .is_some_and(|t| blake3::hash(t.as_bytes()) == expected);
    if !token_ok {
        tracing::warn!(scope = "console", action = "login", remote = %remote, "console login refused: wrong admin token");
        ledger.record("console", || {
            serde_json::json!({"event": "login", "result": "refused", "reason": "wrong admin token", "remote": remote})
        });
        return Err(ConsoleError::new(
            StatusCode::UNAUTHORIZED,
            "wrong admin token",
        ));
    }
    let opened = state.console.sessions.open(Instant::now());
    tracing::info!(scope = "console", action = "login", remote = %remote, "operator logged in to the console");
    ledger.record(
        "console",
        || serde_json::json!({"event": "login", "result": "ok", "remote": remote}),
    );
    let mut response = Redirect::to("/admin/sessions").into_response();
    let headers = response.headers_mut();
    secure(headers);
    if let Some(c) = set_cookie(SESSION_COOKIE, &opened.id, SESSION_TTL.as_secs()) {
        headers.append(header::SET_COOKIE, c);
    }
    if let Some(c) = set_cookie(LOGIN_COOKIE, "", 0) {
        headers.append(header::SET_COOKIE, c);
    }
    Ok(response)
}

/// `POST /admin/logout` `csrf=…`: ends the operator session.
///
/// # Errors
/// 403 without the session's CSRF token.
pub(crate) async fn logout(
    State(state): State<ConsoleState>,
    operator: Operator,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    operator.check_csrf(&form(&body))?;
    state.console.sessions.close(&operator.id);
    state
        .app
        .sessions
        .messaging()
        .ledger
        .record("console", || serde_json::json!({"event": "logout"}));
    let mut response = Redirect::to("/admin/login").into_response();
    secure(response.headers_mut());
    if let Some(c) = set_cookie(SESSION_COOKIE, "", 0) {
        response.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        headers.append(header::COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "c"), Some("3"));
        assert_eq!(cookie(&headers, "d"), None);
    }

    #[test]
    fn forms_decode() {
        let fields = form(b"csrf=ab%2Bc&token=x+y");
        assert_eq!(fields["csrf"].as_str(), "ab+c");
        assert_eq!(fields["token"].as_str(), "x y");
    }
}
