//! RFC 9457 problem details: the payload of every ERROR frame.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{CodecError, ProblemKind};
use crate::frame::Frame;
use crate::frame_type::FrameType;

/// An ERROR payload in RFC 9457 shape (`type`, `title`, `status`, `detail`), plus the keys the
/// deployed clients read: `error` (a short machine tag such as `"handshake"` or `"decode"`) and
/// `pairing_required`.
///
/// All fields are optional on input, because peers running the reference server send only
/// `{"error":…,"detail":…}`; [`Problem::new`] always fills `type`, `title` and `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// URI identifying the problem type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_uri: Option<String>,
    /// Short human-readable summary; one of the diagnostic titles for protocol errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// HTTP-style status code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Explanation specific to this occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Deployed-client tag for the failing stage (`"handshake"`, `"decode"`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Set when the device must be paired before it may connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairing_required: Option<bool>,
    /// Further members (RFC 9457 extension members).
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

impl Problem {
    /// A problem of the given diagnostic kind.
    #[must_use]
    pub fn new(kind: ProblemKind) -> Self {
        Self::custom(kind.type_uri(), kind.title(), kind.status()).with_pairing_required(
            if kind == ProblemKind::PairingRequired {
                Some(true)
            } else {
                None
            },
        )
    }

    /// A problem with a type, title and status outside the codec diagnostics table.
    #[must_use]
    pub fn custom(type_uri: &str, title: &str, status: u16) -> Self {
        Self {
            type_uri: Some(type_uri.to_owned()),
            title: Some(title.to_owned()),
            status: Some(status),
            detail: None,
            error: None,
            pairing_required: None,
            extensions: Map::new(),
        }
    }

    /// Sets `detail`.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Sets the deployed-client `error` tag.
    #[must_use]
    pub fn with_error_tag(mut self, tag: impl Into<String>) -> Self {
        self.error = Some(tag.into());
        self
    }

    fn with_pairing_required(mut self, value: Option<bool>) -> Self {
        self.pairing_required = value;
        self
    }

    /// Adds an extension member.
    #[must_use]
    pub fn with_extension(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.into(), value.into());
        self
    }

    /// The diagnostic kind named by `title`, if it is one of the table's.
    #[must_use]
    pub fn kind(&self) -> Option<ProblemKind> {
        self.title.as_deref().and_then(ProblemKind::from_title)
    }

    /// An ERROR frame carrying this problem.
    ///
    /// # Errors
    /// Only if the serialized problem exceeds the control payload limit (a `detail` or
    /// extension over 256 KiB).
    pub fn to_frame(&self, channel_id: u32, sequence: u32) -> Result<Frame, CodecError> {
        Frame::control(FrameType::Error, channel_id, sequence, self)
    }
}

impl From<&CodecError> for Problem {
    /// The ERROR payload reporting a codec failure: the diagnostic title, the error's own text
    /// as `detail`, and the deployed clients' `"error":"decode"` tag.
    fn from(error: &CodecError) -> Self {
        Problem::new(error.kind())
            .with_detail(error.to_string())
            .with_error_tag("decode")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_rfc9457_members() {
        let problem = Problem::new(ProblemKind::FrameTooLarge).with_detail("too big");
        let json = serde_json::to_value(&problem).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "urn:commucat:problem:frame-too-large",
                "title": "Frame Too Large",
                "status": 413,
                "detail": "too big",
            })
        );
    }

    #[test]
    fn pairing_required_carries_the_flag() {
        let json = serde_json::to_value(Problem::new(ProblemKind::PairingRequired)).unwrap();
        assert_eq!(json["title"], "PairingRequired");
        assert_eq!(json["pairing_required"], true);
        assert_eq!(json["status"], 403);
    }

    #[test]
    fn parses_the_reference_servers_error_shape() {
        let problem: Problem =
            serde_json::from_str(r#"{"error":"handshake","detail":"invalid request"}"#).unwrap();
        assert_eq!(problem.error.as_deref(), Some("handshake"));
        assert_eq!(problem.title, None);
        assert_eq!(problem.kind(), None);
    }

    #[test]
    fn extensions_round_trip() {
        let problem = Problem::new(ProblemKind::InvalidControlPayload)
            .with_extension("frame_type", "join")
            .with_extension("sequence", u64::MAX);
        let frame = problem.to_frame(0, 9).unwrap();
        let back: Problem = frame.parse_control().unwrap();
        assert_eq!(back, problem);
        assert_eq!(back.extensions["sequence"].as_u64(), Some(u64::MAX));
    }
}
