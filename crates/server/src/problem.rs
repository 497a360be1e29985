//! RFC 9457 problem details (`application/problem+json`) for REST errors.

use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Media type of problem responses.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// A problem details object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub(crate) struct Problem {
    /// Problem type URI; `about:blank` means the status code says it all.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Short summary: the status code's reason phrase.
    pub title: &'static str,
    /// HTTP status code.
    pub status: u16,
    /// What happened in this instance.
    pub detail: String,
    /// Seconds for the `retry-after` header (not part of the body).
    #[serde(skip)]
    #[schema(ignore)]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem of type `about:blank` with the reason phrase of `status` as title.
    #[must_use]
    pub(crate) fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            retry_after: None,
        }
    }
    /// A problem of `kind`: its `type` URI and title, with `status` (the kind's own status
    /// when it is a valid HTTP status).
    #[must_use]
    pub(crate) fn of_kind(kind: commucat_ccp::ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            kind: kind.type_uri(),
            title: kind.title(),
            status: kind.status(),
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// This problem, answered with `retry-after: secs` (at least 1).
    #[must_use]
    pub(crate) fn with_retry_after(self, secs: u64) -> Self {
        Self {
            retry_after: Some(secs.max(1)),
            ..self
        }
    }

    /// A 400 problem: the request itself is wrong.
    #[must_use]
    pub(crate) fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self.retry_after;
        let mut response = (status, axum::Json(self)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Fallback for unknown paths: 404.
pub(crate) async fn not_found(method: Method, uri: Uri) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        format!("no resource at {method} {}", uri.path()),
    )
}

/// Fallback for a known path with the wrong method: 405.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// Parses a JSON request body (an empty body counts as `{}`), answering 400 with the parser's
/// message if it does not fit `T`.
///
/// # Errors
/// A 400 problem.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!("request body is not the expected JSON: {e}"),
        )
    })
}
