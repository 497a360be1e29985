//! The REST API as clients reach it, over the three ways a client can: HTTP/1.1 on a TLS
//! connection without ALPN (the deployed client: reqwest 0.11 with native-tls offers no ALPN),
//! HTTP/1.1 negotiated with ALPN, and HTTP/2. Every answer is checked for its framing (version,
//! negotiated protocol, content type); success bodies decode into the deployed client's own types
//! ([`deployed`]) or into the server's documented answers ([`contract`]), error bodies must be
//! `application/problem+json` with the status's reason phrase as title.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode, Version};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::TestServer;

/// Longest one request may take.
const REQUEST_WAIT: Duration = Duration::from_secs(10);

/// How a request reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    /// HTTP/1.1 on a TLS connection that offers no ALPN, as the deployed native-tls client.
    Http1NoAlpn,
    /// HTTP/1.1 after ALPN chose `http/1.1`.
    Http1Alpn,
    /// HTTP/2 after ALPN chose `h2`.
    Http2,
}

impl Transport {
    /// All three.
    pub const ALL: [Self; 3] = [Self::Http1NoAlpn, Self::Http1Alpn, Self::Http2];

    /// For messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Http1NoAlpn => "HTTP/1.1 without ALPN",
            Self::Http1Alpn => "HTTP/1.1 with ALPN",
            Self::Http2 => "HTTP/2",
        }
    }
}

/// One answer, with everything needed to check it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// How the request went.
    pub transport: Transport,
    /// `METHOD path`, for messages.
    pub request: String,
    /// The status.
    pub status: StatusCode,
    /// `content-type`, empty if absent.
    pub content_type: String,
    /// `retry-after`, if present.
    pub retry_after: Option<String>,
    /// The body as received.
    pub bytes: Vec<u8>,
    /// The body as JSON; `Null` if it is not JSON.
    pub body: Value,
}

impl Answer {
    /// The body as JSON (fails the test if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|e| {
            panic!(
                "{self}: body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.bytes)
            )
        })
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8(self.bytes.clone()).unwrap_or_else(|e| panic!("{self}: not UTF-8: {e}"))
    }

    /// Asserts the status.
    pub fn expect(&self, status: StatusCode) -> &Self {
        assert_eq!(
            self.status,
            status,
            "{self}: {}",
            String::from_utf8_lossy(&self.bytes)
        );
        self
    }

    /// A success as the deployed client accepts it: exactly 200 with a JSON body that decodes
    /// into `T` (what `response.json::<T>()` does). A missing required key fails the test.
    pub fn decode<T: DeserializeOwned>(&self) -> T {
        self.expect(StatusCode::OK);
        assert_eq!(self.content_type, "application/json", "{self}");
        serde_json::from_slice(&self.bytes).unwrap_or_else(|e| {
            panic!(
                "{self}: the body does not decode as {}: {e}: {}",
                std::any::type_name::<T>(),
                String::from_utf8_lossy(&self.bytes)
            )
        })
    }

    /// An error as RFC 9457 problem details: `status`, `application/problem+json`, type
    /// `about:blank`, the reason phrase as title, the status again and a detail containing
    /// `detail`. The deployed client's problem decoding sees the same detail. Returns the body.
    pub fn problem(&self, status: StatusCode, detail: &str) -> Value {
        self.expect(status);
        assert_eq!(self.content_type, "application/problem+json", "{self}");
        let problem: contract::Problem = serde_json::from_slice(&self.bytes).unwrap_or_else(|e| {
            panic!(
                "{self}: not a problem ({e}): {}",
                String::from_utf8_lossy(&self.bytes)
            )
        });
        assert_eq!(problem.kind, "about:blank", "{self}");
        assert_eq!(
            Some(problem.title.as_str()),
            status.canonical_reason(),
            "{self}"
        );
        assert_eq!(problem.status, status.as_u16(), "{self}");
        assert!(
            problem.detail.contains(detail),
            "{self}: detail {:?} does not mention {detail:?}",
            problem.detail
        );
        let shown: deployed::ProblemDetails = serde_json::from_slice(&self.bytes).unwrap();
        assert_eq!(shown.detail.as_deref(), Some(problem.detail.as_str()));
        self.json()
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} over {} → {}",
            self.request,
            self.transport.name(),
            self.status
        )
    }
}

/// Clients for the three transports, trusting the test server's certificate.
#[derive(Clone)]
pub struct Rest {
    addr: SocketAddr,
    no_alpn: tokio_rustls::TlsConnector,
    h1_alpn: tokio_rustls::TlsConnector,
    h2: reqwest::Client,
}

impl Rest {
    /// Clients for `server`.
    pub fn new(server: &TestServer) -> Self {
        let tls = |alpn: &[&[u8]]| {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(&server.pem).unwrap())
                .unwrap();
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            tokio_rustls::TlsConnector::from(Arc::new(config))
        };
        let h2 = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&server.pem).unwrap()])
            .resolve("localhost", server.addr)
            .https_only(true)
            .user_agent("commucat-cli-client/0.1")
            .build()
            .unwrap();
        Self {
            addr: server.addr,
            no_alpn: tls(&[]),
            h1_alpn: tls(&[b"http/1.1"]),
            h2,
        }
    }

    /// `method path` with an optional bearer and JSON body.
    pub async fn call(
        &self,
        transport: Transport,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
        self.send(transport, method, path, bearer, bytes.as_deref())
            .await
    }

    /// `method path` with an optional bearer and raw body (sent as `application/json`).
    pub async fn send(
        &self,
        transport: Transport,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&[u8]>,
    ) -> Answer {
        self.send_with(
            transport,
            method,
            path,
            bearer.map(|t| format!("Bearer {t}")).as_deref(),
            body,
        )
        .await
    }

    /// Like [`Self::send`] with a literal `authorization` header value.
    pub async fn send_with(
        &self,
        transport: Transport,
        method: Method,
        path: &str,
        authorization: Option<&str>,
        body: Option<&[u8]>,
    ) -> Answer {
        let request = format!("{method} {path}");
        let work = async {
            match transport {
                Transport::Http1NoAlpn => {
                    self.http1(&self.no_alpn, None, &method, path, authorization, body)
                        .await
                }
                Transport::Http1Alpn => {
                    self.http1(
                        &self.h1_alpn,
                        Some(b"http/1.1"),
                        &method,
                        path,
                        authorization,
                        body,
                    )
                    .await
                }
                Transport::Http2 => self.http2(&method, path, authorization, body).await,
            }
        };
        let (status, content_type, retry_after, bytes) = tokio::time::timeout(REQUEST_WAIT, work)
            .await
            .unwrap_or_else(|_| panic!("{request} over {}: no answer", transport.name()));
        Answer {
            transport,
            request,
            status,
            content_type,
            retry_after,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            bytes,
        }
    }

    async fn http2(
        &self,
        method: &Method,
        path: &str,
        authorization: Option<&str>,
        body: Option<&[u8]>,
    ) -> (StatusCode, String, Option<String>, Vec<u8>) {
        let url = format!("https://localhost:{}{path}", self.addr.port());
        let mut request = self.h2.request(method.clone(), url);
        if let Some(value) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.version(),
            Version::HTTP_2,
            "{method} {path}: ALPN did not choose h2"
        );
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_owned())
        };
        let content_type = header(reqwest::header::CONTENT_TYPE).unwrap_or_default();
        let retry_after = header(reqwest::header::RETRY_AFTER);
        let status = response.status();
        let bytes = response.bytes().await.unwrap().to_vec();
        (status, content_type, retry_after, bytes)
    }

    /// One HTTP/1.1 exchange on a fresh TLS connection (`Connection: close`), written and
    /// parsed by hand so that nothing but the bytes on the wire decides what is checked.
    async fn http1(
        &self,
        connector: &tokio_rustls::TlsConnector,
        alpn: Option<&[u8]>,
        method: &Method,
        path: &str,
        authorization: Option<&str>,
        body: Option<&[u8]>,
    ) -> (StatusCode, String, Option<String>, Vec<u8>) {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let mut tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(
            tls.get_ref().1.alpn_protocol(),
            alpn,
            "{method} {path}: negotiated protocol"
        );
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost:{}\r\nUser-Agent: commucat-cli-client/0.1\r\n\
             Accept: */*\r\nConnection: close\r\n",
            self.addr.port()
        );
        if let Some(value) = authorization {
            head.push_str(&format!("Authorization: {value}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        } else if *method != Method::GET {
            head.push_str("Content-Length: 0\r\n");
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body.unwrap_or_default());
        tls.write_all(&request).await.unwrap();
        tls.flush().await.unwrap();

        let mut raw = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(parsed) = parse_http1(&raw) {
                return parsed;
            }
            match tls.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
                // A peer that closes without close_notify: whatever arrived is judged below.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => panic!("{method} {path}: read failed: {e}"),
            }
        }
        parse_http1(&raw).unwrap_or_else(|| {
            panic!(
                "{method} {path}: incomplete HTTP/1.1 answer: {:?}",
                String::from_utf8_lossy(&raw)
            )
        })
    }
}

/// A complete HTTP/1.1 response in `raw`: status, content type, retry-after and body (de-chunked);
/// `None` while incomplete. A status line other than `HTTP/1.1 …` fails the test.
fn parse_http1(raw: &[u8]) -> Option<(StatusCode, String, Option<String>, Vec<u8>)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let rest = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let code = status_line
        .strip_prefix("HTTP/1.1 ")
        .unwrap_or_else(|| panic!("not an HTTP/1.1 status line: {status_line:?}"));
    let status = StatusCode::from_u16(code[..3].parse().unwrap()).unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (name, value) = l.split_once(':').unwrap();
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else {
        let length: usize = header("content-length")
            .unwrap_or_else(|| panic!("{status_line}: neither content-length nor chunked"))
            .parse()
            .unwrap();
        if rest.len() < length {
            return None;
        }
        assert_eq!(rest.len(), length, "{status_line}: bytes after the body");
        rest.to_vec()
    };
    Some((
        status,
        header("content-type").unwrap_or_default(),
        header("retry-after"),
        body,
    ))
}

/// A chunked body; `None` while the last chunk has not arrived.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        raw = &raw[line_end + 2..];
        if size == 0 {
            return raw.windows(2).any(|w| w == b"\r\n").then_some(body);
        }
        if raw.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

pub use super::poll::eventually;

/// `value` without the key at the JSON pointer `pointer` (which must exist).
pub fn without(value: &Value, pointer: &str) -> Value {
    let mut copy = value.clone();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let removed = copy
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|o| o.remove(key));
    assert!(removed.is_some(), "{pointer} is not in {value}");
    copy
}

/// `value` with the key at `pointer` set to `replacement` (the key must exist).
pub fn with(value: &Value, pointer: &str, replacement: Value) -> Value {
    let mut copy = value.clone();
    let slot = copy
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer} is not in {value}"));
    *slot = replacement;
    copy
}

/// Checks that the deployed type `T` accepts `body`, refuses it without any of the `required`
/// keys (JSON pointers), and still accepts it without any of the `optional` ones: the mirror is
/// exactly as strict as the deployed client.
pub fn check_strictness<T: DeserializeOwned>(body: &Value, required: &[&str], optional: &[&str]) {
    let name = std::any::type_name::<T>();
    serde_json::from_value::<T>(body.clone())
        .unwrap_or_else(|e| panic!("{name} refuses the server's body: {e}: {body}"));
    for pointer in required {
        assert!(
            serde_json::from_value::<T>(without(body, pointer)).is_err(),
            "{name} decodes without the required {pointer}"
        );
    }
    for pointer in optional {
        serde_json::from_value::<T>(without(body, pointer))
            .unwrap_or_else(|e| panic!("{name} needs the optional {pointer}: {e}"));
    }
}

pub mod deployed;

pub mod contract;
