//! Which `/connect` mode a request asks for (wire-compat §2.2): a pure function of the query
//! string and the headers.

use axum::http::{HeaderMap, header};

/// One way of carrying a session's frames over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectMode {
    /// Raw frame bytes in the request body and the response body (HTTP/2 or HTTP/1.1 chunked).
    Binary,
    /// Raw frame bytes upstream; `text/event-stream` downstream.
    Sse,
    /// Raw frame bytes upstream; newline-delimited JSON downstream (the reference's `long-poll`).
    Ndjson,
    /// RFC 6455 WebSocket (HTTP/1.1 upgrade or RFC 8441 extended CONNECT over HTTP/2).
    WebSocket,
}

impl ConnectMode {
    /// Every mode.
    pub(crate) const ALL: [Self; 4] = [Self::Binary, Self::Sse, Self::Ndjson, Self::WebSocket];

    /// The value of the `x-commucat-connect-mode` response header.
    #[must_use]
    pub(crate) const fn label(self) -> &'static str {
        match self {
            Self::Binary => "binary",
            Self::Sse => "sse",
            Self::Ndjson => "long-poll",
            Self::WebSocket => "websocket",
        }
    }

    /// The response `content-type` of the HTTP modes.
    #[must_use]
    pub(crate) const fn content_type(self) -> &'static str {
        match self {
            Self::Binary | Self::WebSocket => "application/octet-stream",
            Self::Sse => "text/event-stream",
            Self::Ndjson => "application/x-ndjson",
        }
    }

    /// Parses a mode name as the query and the mode headers spell it (case-insensitive).
    #[must_use]
    pub(crate) fn parse(value: &str) -> Option<Self> {
        let value = value.trim().to_ascii_lowercase();
        match value.as_str() {
            "binary" | "stream" => Some(Self::Binary),
            "sse" | "event-stream" | "eventstream" => Some(Self::Sse),
            "long-poll" | "longpoll" | "poll" | "ndjson" => Some(Self::Ndjson),
            "websocket" | "ws" => Some(Self::WebSocket),
            _ => None,
        }
    }
}

/// Selects the mode; first match wins: query `mode=` / `transport=` → `x-connect-mode` →
/// `x-commucat-connect-mode` → `Upgrade: websocket` with `Connection: …upgrade…` (or an HTTP/2
/// extended CONNECT with `:protocol websocket`) → `Accept` containing `text/event-stream` →
/// binary. Values that name no mode do not match and fall through to the next rule.
#[must_use]
pub(crate) fn select(query: Option<&str>, headers: &HeaderMap, h2_websocket: bool) -> ConnectMode {
    let from_query = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            matches!(key, "mode" | "transport")
                .then(|| ConnectMode::parse(value))
                .flatten()
        });
    if let Some(mode) = from_query {
        return mode;
    }
    for name in ["x-connect-mode", "x-commucat-connect-mode"] {
        if let Some(mode) = header_str(headers, name).and_then(ConnectMode::parse) {
            return mode;
        }
    }
    let upgrade_ws = header_str(headers, header::UPGRADE.as_str())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
        && header_str(headers, header::CONNECTION.as_str())
            .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"));
    if upgrade_ws || h2_websocket {
        return ConnectMode::WebSocket;
    }
    if header_str(headers, header::ACCEPT.as_str())
        .is_some_and(|v| v.to_ascii_lowercase().contains("text/event-stream"))
    {
        return ConnectMode::Sse;
    }
    ConnectMode::Binary
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn query_aliases_case_insensitive() {
        let none = HeaderMap::new();
        for (query, mode) in [
            ("mode=binary", ConnectMode::Binary),
            ("mode=STREAM", ConnectMode::Binary),
            ("mode=sse", ConnectMode::Sse),
            ("transport=event-stream", ConnectMode::Sse),
            ("mode=EventStream", ConnectMode::Sse),
            ("mode=long-poll", ConnectMode::Ndjson),
            ("transport=longpoll", ConnectMode::Ndjson),
            ("mode=poll", ConnectMode::Ndjson),
            ("mode=websocket", ConnectMode::WebSocket),
            ("a=b&transport=WS", ConnectMode::WebSocket),
        ] {
            assert_eq!(select(Some(query), &none, false), mode, "{query}");
        }
    }

    #[test]
    fn first_match_wins() {
        let all = headers(&[
            ("x-connect-mode", "sse"),
            ("x-commucat-connect-mode", "ws"),
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade"),
            ("accept", "text/event-stream"),
        ]);
        assert_eq!(select(Some("mode=poll"), &all, false), ConnectMode::Ndjson);
        assert_eq!(select(None, &all, false), ConnectMode::Sse);
        // An unknown value falls through to the next rule.
        assert_eq!(
            select(Some("mode=carrier-pigeon"), &all, false),
            ConnectMode::Sse
        );
        let no_x = headers(&[
            ("x-connect-mode", "bogus"),
            ("x-commucat-connect-mode", "ws"),
            ("accept", "text/event-stream"),
        ]);
        assert_eq!(select(None, &no_x, false), ConnectMode::WebSocket);
        let upgrade = headers(&[
            ("upgrade", "WebSocket"),
            ("connection", "Upgrade"),
            ("accept", "text/event-stream"),
        ]);
        assert_eq!(select(None, &upgrade, false), ConnectMode::WebSocket);
    }

    #[test]
    fn upgrade_needs_connection_upgrade() {
        let half = headers(&[("upgrade", "websocket"), ("connection", "keep-alive")]);
        assert_eq!(select(None, &half, false), ConnectMode::Binary);
        assert_eq!(select(None, &half, true), ConnectMode::WebSocket);
    }

    #[test]
    fn accept_event_stream_then_default_binary() {
        let sse = headers(&[("accept", "application/json, Text/Event-Stream;q=0.9")]);
        assert_eq!(select(None, &sse, false), ConnectMode::Sse);
        assert_eq!(select(None, &HeaderMap::new(), false), ConnectMode::Binary);
        assert_eq!(
            select(Some(""), &HeaderMap::new(), false),
            ConnectMode::Binary
        );
    }

    #[test]
    fn labels_and_content_types() {
        assert_eq!(ConnectMode::Ndjson.label(), "long-poll");
        assert_eq!(ConnectMode::Ndjson.content_type(), "application/x-ndjson");
        assert_eq!(ConnectMode::Sse.content_type(), "text/event-stream");
        assert_eq!(
            ConnectMode::Binary.content_type(),
            "application/octet-stream"
        );
    }
}
