//! HTML rendering of the console: escaping, the page layout (navigation, logout form), the
//! error page, and the headers every console answer carries. Pages are plain server-rendered
//! HTML that works without JavaScript; the stylesheet and the metrics chart script are
//! embedded in the binary (`console.css`, `charts.js`).

use std::fmt::Write as _;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The stylesheet, served at `/admin/console.css`.
pub(crate) const STYLESHEET: &str = include_str!("console.css");

/// Everything may come from the server itself only; no framing, no inline script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                   base-uri 'none'";

/// Escapes text for HTML element content and double-quoted attribute values.
#[must_use]
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The pages of the navigation bar: (path, label).
pub(crate) const NAV: &[(&str, &str)] = &[
    ("/admin/sessions", "Live sessions"),
    ("/admin/devices", "Devices"),
    ("/admin/pairing", "Pairing codes"),
    ("/admin/groups", "Groups"),
    ("/admin/queues", "Offline queues"),
    ("/admin/federation", "Federation"),
    ("/admin/metrics", "Metrics"),
];

/// A hidden form field carrying the session's CSRF token.
#[must_use]
pub(crate) fn csrf_field(csrf: &str) -> String {
    format!(r#"<input type="hidden" name="csrf" value="{}">"#, esc(csrf))
}

/// A whole page: `title`, the navigation (with `current` marked) and a logout form when the
/// operator is logged in (`csrf` given), then `body` (already HTML).
#[must_use]
pub(crate) fn page(
    title: &str,
    current: &str,
    csrf: Option<&str>,
    node: &str,
    body: &str,
) -> Response {
    let mut html = String::with_capacity(body.len() + 2048);
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · CommuCat console</title>\
         <link rel=\"stylesheet\" href=\"/admin/console.css\"></head><body>\
         <header><span class=\"brand\">CommuCat console</span>\
         <span class=\"node\">node {}</span>",
        esc(title),
        esc(node)
    );
    if let Some(csrf) = csrf {
        html.push_str("<nav>");
        for (path, label) in NAV {
            let class = if *path == current {
                " class=\"current\""
            } else {
                ""
            };
            let _ = write!(html, "<a href=\"{path}\"{class}>{label}</a>");
        }
        let _ = write!(
            html,
            "</nav><form method=\"post\" action=\"/admin/logout\" class=\"logout\">{}\
             <button type=\"submit\" id=\"logout\">Log out</button></form>",
            csrf_field(csrf)
        );
    }
    let _ = writeln!(
        html,
        "</header><main><h1>{}</h1>{body}</main></body></html>",
        esc(title)
    );
    with_headers(StatusCode::OK, html)
}

/// `html` with status `status` and the console's security headers.
#[must_use]
pub(crate) fn with_headers(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(headers);
    response
}

/// The headers every console answer carries: no caching, no framing, no referrer, the CSP.
pub(crate) fn secure(headers: &mut axum::http::HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// A console failure, answered as an HTML page naming the status and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsoleError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the operator.
    pub detail: String,
}

impl ConsoleError {
    /// A failure with `status` and `detail`.
    pub(crate) fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
        }
    }
}

impl From<crate::problem::Problem> for ConsoleError {
    fn from(problem: crate::problem::Problem) -> Self {
        Self {
            status: StatusCode::from_u16(problem.status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            detail: problem.detail,
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let reason = self.status.canonical_reason().unwrap_or("Error");
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>{code} {reason} · CommuCat console</title>\
             <link rel=\"stylesheet\" href=\"/admin/console.css\"></head><body>\
             <header><span class=\"brand\">CommuCat console</span></header><main>\
             <h1 id=\"error-status\">{code} {reason}</h1><p id=\"error-detail\">{detail}</p>\
             <p><a href=\"/admin/sessions\">Back to the console</a></p></main></body></html>\n",
            code = self.status.as_u16(),
            detail = esc(&self.detail),
        );
        with_headers(self.status, html)
    }
}

/// A table: `headers` then `rows` of cells already rendered as HTML; `empty` when no rows.
#[must_use]
pub(crate) fn table(id: &str, headers: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p class=\"empty\" id=\"{id}-empty\">{}</p>", esc(empty));
    }
    let mut html = format!("<table id=\"{id}\"><thead><tr>");
    for h in headers {
        let _ = write!(html, "<th>{}</th>", esc(h));
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            let _ = write!(html, "<td>{cell}</td>");
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    html
}

/// A unix time as RFC 3339, escaped.
#[must_use]
pub(crate) fn time(unix_secs: i64) -> String {
    esc(&crate::clock::rfc3339(unix_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn errors_are_html_pages_with_their_status() {
        let response =
            ConsoleError::new(StatusCode::FORBIDDEN, "the <form> had no token").into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "DENY");
    }
}
