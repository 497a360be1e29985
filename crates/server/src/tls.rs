//! TLS: the certificate the server presents and its rustls configuration.
//!
//! With `tls.cert`/`tls.key` configured, those PEM files are used. Otherwise a self-signed
//! development certificate is generated on first run into `<data_dir>/tls/` (ECDSA P-256,
//! SANs `localhost`, `127.0.0.1`, `::1` and the configured domain, valid ten years) and reused
//! afterwards; clients pin it by the SHA-256 fingerprint printed at startup.
//!
//! The server speaks TLS 1.3 only and offers ALPN `h2` and `http/1.1`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::config::Config;
use crate::keys::secrets::{self, FileError};

/// Directory under the data directory holding the dev certificate.
pub const TLS_DIR: &str = "tls";
/// File name of the dev certificate (PEM).
pub const DEV_CERT_FILE: &str = "dev_cert.pem";
/// File name of the dev certificate's private key (PEM, PKCS#8).
pub const DEV_KEY_FILE: &str = "dev_key.pem";
/// ALPN protocols offered, in preference order.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// Validity of a generated dev certificate.
const DEV_CERT_VALIDITY_DAYS: i64 = 3650;

/// Why the TLS identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Reading or writing a file failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// A PEM file exists but does not hold what it should.
    #[error("{path}: {reason}")]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Only one of the dev certificate and its key exists.
    #[error(
        "{present} exists but {missing} does not; restore it, or delete both to generate a new dev certificate"
    )]
    HalfDevPair {
        /// The file found.
        present: PathBuf,
        /// The file missing.
        missing: PathBuf,
    },
    /// Generating the dev certificate failed.
    #[error("generating the dev certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate and key (for example they do not match).
    #[error("TLS certificate {cert} with key {key}: {source}")]
    Rustls {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
}

/// Where the certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertSource {
    /// Operator-supplied `tls.cert` / `tls.key`.
    Configured,
    /// Generated dev certificate, reused from the data directory.
    DevReused,
    /// Generated dev certificate, created on this run.
    DevGenerated,
}

/// The certificate chain and key the server presents.
#[derive(Debug)]
pub struct TlsIdentity {
    /// Certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// The certificate file.
    pub cert_path: PathBuf,
    /// The key file.
    pub key_path: PathBuf,
    /// SHA-256 of the leaf certificate (DER), uppercase hex pairs joined by colons.
    pub fingerprint: String,
    /// Where the certificate came from.
    pub source: CertSource,
}

impl TlsIdentity {
    /// Loads the configured certificate, or loads or generates the dev certificate.
    pub fn load_or_generate(config: &Config) -> Result<Self, TlsError> {
        if let Some(files) = &config.tls.files {
            return Self::load(&files.cert, &files.key, CertSource::Configured);
        }
        let dir = config.server.data_dir.join(TLS_DIR);
        let cert_path = dir.join(DEV_CERT_FILE);
        let key_path = dir.join(DEV_KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => Self::load(&cert_path, &key_path, CertSource::DevReused),
            (false, false) => {
                secrets::create_private_dir(&dir)?;
                let (cert_pem, key_pem) = generate_dev_cert(&config.server.domain)?;
                // Key first: a crash in between leaves a key without certificate, which is
                // reported rather than silently replaced.
                secrets::write_private_atomic(&key_path, key_pem.as_bytes())?;
                secrets::write_private_atomic(&cert_path, cert_pem.as_bytes())?;
                tracing::info!(cert = %cert_path.display(), "generated dev TLS certificate");
                Self::load(&cert_path, &key_path, CertSource::DevGenerated)
            }
            (true, false) => Err(TlsError::HalfDevPair {
                present: cert_path,
                missing: key_path,
            }),
            (false, true) => Err(TlsError::HalfDevPair {
                present: key_path,
                missing: cert_path,
            }),
        }
    }

    fn load(cert_path: &Path, key_path: &Path, source: CertSource) -> Result<Self, TlsError> {
        let bad = |path: &Path, reason: String| TlsError::BadPem {
            path: path.to_owned(),
            reason,
        };
        let cert_pem = read_required(cert_path)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(cert_path, format!("invalid PEM certificate: {e}")))?;
        let leaf = chain
            .first()
            .ok_or_else(|| bad(cert_path, "no CERTIFICATE block found".to_owned()))?;
        let fingerprint = fingerprint(leaf);
        let key_pem = read_required(key_path)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| bad(key_path, format!("invalid PEM private key: {e}")))?;
        Ok(Self {
            chain,
            key,
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            fingerprint,
            source,
        })
    }

    /// The rustls server configuration: TLS 1.3 only, ALPN `h2` then `http/1.1`, aws-lc-rs.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let rustls_error = |source| TlsError::Rustls {
            cert: self.cert_path.clone(),
            key: self.key_path.clone(),
            source,
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(rustls_error)?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(rustls_error)?;
        config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
        config.max_early_data_size = 0;
        Ok(Arc::new(config))
    }

    /// The rustls configuration of the HTTP/3 (QUIC) listener: the same certificate, provider
    /// and TLS 1.3, ALPN `h3` only, no 0-RTT.
    pub fn quic_server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let shared = self.server_config()?;
        let mut config = rustls::ServerConfig::clone(&shared);
        config.alpn_protocols = vec![ALPN_H3.to_vec()];
        Ok(config)
    }
}

/// ALPN of the HTTP/3 listener.
pub const ALPN_H3: &[u8] = b"h3";

fn read_required(path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    secrets::read_secret(path)?.ok_or_else(|| TlsError::BadPem {
        path: path.to_owned(),
        reason: "file not found".to_owned(),
    })
}

/// SHA-256 of a DER certificate as uppercase hex pairs joined by colons (`AB:CD:…`), the
/// format `openssl x509 -fingerprint -sha256` prints.
#[must_use]
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A self-signed certificate for `localhost`, `127.0.0.1`, `::1` and `domain`; returns the
/// certificate and key PEM.
fn generate_dev_cert(domain: &str) -> Result<(String, Zeroizing<String>), TlsError> {
    let mut names: Vec<&str> = vec!["localhost", "127.0.0.1", "::1"];
    if !names.contains(&domain) {
        names.push(domain);
    }
    let subject_alt_names = names
        .into_iter()
        .map(|name| match name.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => name.try_into().map(SanType::DnsName),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = subject_alt_names;
    let mut subject = DistinguishedName::new();
    subject.push(
        DnType::CommonName,
        format!("CommuCat dev certificate ({domain})"),
    );
    params.distinguished_name = subject;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(DEV_CERT_VALIDITY_DAYS);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), Zeroizing::new(key.serialize_pem())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    use crate::config::TlsFiles;

    fn config_in(dir: &Path) -> Config {
        let mut config = Config::default();
        config.server.data_dir = dir.to_owned();
        config.server.domain = "chat.example.org".to_owned();
        config
    }

    #[test]
    fn dev_cert_is_generated_once_and_reused() {
        let data = tempfile::tempdir().unwrap();
        let config = config_in(data.path());
        let first = TlsIdentity::load_or_generate(&config).unwrap();
        assert_eq!(first.source, CertSource::DevGenerated);
        assert_eq!(first.cert_path, data.path().join("tls").join(DEV_CERT_FILE));
        let second = TlsIdentity::load_or_generate(&config).unwrap();
        assert_eq!(second.source, CertSource::DevReused);
        assert_eq!(first.fingerprint, second.fingerprint);
        assert_eq!(first.chain, second.chain);
        // 32 bytes: 64 hex digits and 31 colons.
        assert_eq!(first.fingerprint.len(), 95);
        assert!(
            first
                .fingerprint
                .chars()
                .all(|c| c == ':' || c.is_ascii_hexdigit())
        );
        first.server_config().unwrap();
    }

    #[test]
    fn dev_cert_covers_loopback_and_the_domain() {
        let (cert_pem, _key) = generate_dev_cert("chat.example.org").unwrap();
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        let anchor = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(anchor).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        let now = rustls_pki_types::UnixTime::now();
        for name in ["localhost", "127.0.0.1", "::1", "chat.example.org"] {
            let server_name = rustls_pki_types::ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&der, &[], &server_name, &[], now)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = rustls_pki_types::ServerName::try_from("evil.example").unwrap();
        assert!(
            verifier
                .verify_server_cert(&der, &[], &other, &[], now)
                .is_err()
        );
    }

    #[test]
    fn half_pair_and_corrupt_pem_are_errors_naming_the_file() {
        let data = tempfile::tempdir().unwrap();
        let config = config_in(data.path());
        let identity = TlsIdentity::load_or_generate(&config).unwrap();
        std::fs::remove_file(&identity.key_path).unwrap();
        let message = TlsIdentity::load_or_generate(&config)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(&format!("{} exists but", identity.cert_path.display())),
            "{message}"
        );
        std::fs::write(&identity.key_path, "garbage").unwrap();
        let message = TlsIdentity::load_or_generate(&config)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(&format!(
                "{}: invalid PEM private key",
                identity.key_path.display()
            )),
            "{message}"
        );
        std::fs::write(&identity.cert_path, "garbage").unwrap();
        let message = TlsIdentity::load_or_generate(&config)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(&format!("{}: no CERTIFICATE", identity.cert_path.display())),
            "{message}"
        );
    }

    #[test]
    fn configured_files_are_used_and_a_mismatched_key_is_refused() {
        let data = tempfile::tempdir().unwrap();
        let (cert_pem, key_pem) = generate_dev_cert("ops.example").unwrap();
        let (_, other_key_pem) = generate_dev_cert("ops.example").unwrap();
        let cert = data.path().join("cert.pem");
        let key = data.path().join("key.pem");
        let other_key = data.path().join("other.pem");
        std::fs::write(&cert, &cert_pem).unwrap();
        std::fs::write(&key, key_pem.as_bytes()).unwrap();
        std::fs::write(&other_key, other_key_pem.as_bytes()).unwrap();

        let mut config = config_in(&data.path().join("unused"));
        config.tls.files = Some(TlsFiles {
            cert: cert.clone(),
            key,
        });
        let identity = TlsIdentity::load_or_generate(&config).unwrap();
        assert_eq!(identity.source, CertSource::Configured);
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        assert_eq!(identity.fingerprint, fingerprint(&der));
        identity.server_config().unwrap();
        assert!(
            !data.path().join("unused").exists(),
            "no dev cert generated"
        );

        config.tls.files = Some(TlsFiles {
            cert,
            key: other_key,
        });
        let identity = TlsIdentity::load_or_generate(&config).unwrap();
        let message = identity.server_config().unwrap_err().to_string();
        assert!(message.contains("other.pem"), "{message}");
    }

    #[test]
    fn fingerprint_format() {
        // SHA-256("") = e3b0c442…
        assert!(fingerprint(b"").starts_with("E3:B0:C4:42:"));
        assert!(fingerprint(b"").ends_with(":B8:55"));
    }

    #[test]
    fn server_config_offers_tls13_only_and_both_alpns() {
        let data = tempfile::tempdir().unwrap();
        let identity = TlsIdentity::load_or_generate(&config_in(data.path())).unwrap();
        let config = identity.server_config().unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
