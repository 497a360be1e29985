//! Client errors.

use commucat_ccp::Problem;

/// Why a connection or session failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// TCP, TLS or HTTP/2 failure.
    #[error("transport: {0}")]
    Transport(String),
    /// The server answered `/connect` with a non-200 status.
    #[error("server answered /connect with HTTP {0}")]
    Status(u16),
    /// A REST call answered an error status; `detail` is the problem's `detail` (or the body).
    #[error("server answered {path} with HTTP {status}: {detail}")]
    Api {
        /// The request path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// What the server said.
        detail: String,
    },
    /// The server sent an ERROR frame.
    #[error("server error: {} ({})", .0.title.as_deref().unwrap_or("untitled"), .0.detail.as_deref().unwrap_or(""))]
    Rejected(Box<Problem>),
    /// The server broke the protocol (unexpected frame, bad AUTH, undecryptable message 2…).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// Local key or configuration problem.
    #[error("configuration: {0}")]
    Config(String),
    /// The server closed the stream.
    #[error("connection closed by the server")]
    Closed,
    /// Frame link failure.
    #[error(transparent)]
    Link(#[from] commucat_link::ConnError),
}

impl ClientError {
    /// The ERROR the server sent, if this is a rejection.
    #[must_use]
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ClientError::Rejected(problem) => Some(problem),
            _ => None,
        }
    }

    /// The ERROR title the server sent, if any.
    #[must_use]
    pub fn title(&self) -> Option<&str> {
        self.problem().and_then(|p| p.title.as_deref())
    }
}
