//! REALITY material (`transport.reality_cert`, `transport.reality_fingerprint`): loaded and
//! checked, never presented.
//!
//! The seed lets an operator supply a certificate and its BLAKE3 fingerprint; the reference
//! servers hash the PEM file as read. This server checks the material the same way (file
//! readable, a PEM certificate that parses, inside its validity period, fingerprint equal) so an
//! operator learns at start — and from `commucat doctor` — whether it is usable. It provides no
//! REALITY transport, so REALITY is absent from every list and `reality_available` stays false
//! whatever the material.

use std::path::{Path, PathBuf};

use x509_parser::pem::Pem;

use crate::config::TransportSettings;

/// What the configured REALITY material is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealityMaterial {
    /// Neither setting is present.
    NotConfigured,
    /// Only one of the two settings is present.
    Incomplete {
        /// The setting that is missing.
        missing: &'static str,
    },
    /// The certificate file cannot be read or is not a PEM certificate.
    Unusable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file's BLAKE3 hash is not the configured fingerprint.
    Mismatch {
        /// Configured.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// The certificate parses and its fingerprint matches.
    Valid {
        /// Subject of the certificate.
        subject: String,
        /// End of validity, Unix seconds.
        not_after: i64,
        /// Whether `now` was inside the validity period.
        current: bool,
    },
}

impl RealityMaterial {
    /// Checks the material of `settings` at Unix time `now`.
    #[must_use]
    pub fn check(settings: &TransportSettings, now: i64) -> Self {
        match (&settings.reality_cert, &settings.reality_fingerprint) {
            (None, None) => Self::NotConfigured,
            (Some(_), None) => Self::Incomplete {
                missing: "transport.reality_fingerprint",
            },
            (None, Some(_)) => Self::Incomplete {
                missing: "transport.reality_cert",
            },
            (Some(path), Some(expected)) => match std::fs::read(path) {
                Err(e) => Self::Unusable {
                    path: path.clone(),
                    reason: e.to_string(),
                },
                Ok(pem) => Self::of_pem(path, &pem, expected, now),
            },
        }
    }

    /// Checks PEM bytes read from `path` against the `expected` fingerprint (hex).
    #[must_use]
    pub fn of_pem(path: &Path, pem: &[u8], expected: &str, now: i64) -> Self {
        let unusable = |reason: String| Self::Unusable {
            path: path.to_owned(),
            reason,
        };
        let parsed = match Pem::iter_from_buffer(pem).next() {
            None => return unusable("no PEM block".to_owned()),
            Some(Err(e)) => return unusable(format!("not PEM: {e}")),
            Some(Ok(block)) if block.label != "CERTIFICATE" => {
                return unusable(format!("a {} block, not a CERTIFICATE", block.label));
            }
            Some(Ok(block)) => block,
        };
        let cert = match parsed.parse_x509() {
            Ok(cert) => cert,
            Err(e) => return unusable(format!("not an X.509 certificate: {e}")),
        };
        let actual = blake3::hash(pem).to_hex().to_string();
        if !actual.eq_ignore_ascii_case(expected) {
            return Self::Mismatch {
                expected: expected.to_ascii_lowercase(),
                actual,
            };
        }
        let validity = cert.validity();
        let (from, to) = (
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        );
        Self::Valid {
            subject: cert.subject().to_string(),
            not_after: to,
            current: (from..=to).contains(&now),
        }
    }

    /// One line for the log and `commucat doctor`.
    #[must_use]
    pub fn describe(&self) -> String {
        const NOT_SERVED: &str =
            "this server provides no REALITY transport, so REALITY is not advertised";
        match self {
            Self::NotConfigured => "REALITY material not configured".to_owned(),
            Self::Incomplete { missing } => {
                format!("REALITY material incomplete: {missing} is not set; {NOT_SERVED}")
            }
            Self::Unusable { path, reason } => format!(
                "REALITY certificate {}: {reason}; {NOT_SERVED}",
                path.display()
            ),
            Self::Mismatch { expected, actual } => format!(
                "REALITY certificate's BLAKE3 fingerprint is {actual}, configured {expected}; {NOT_SERVED}"
            ),
            Self::Valid {
                subject,
                not_after,
                current,
            } => format!(
                "REALITY certificate valid ({subject}, fingerprint matches, {} until {}); {NOT_SERVED}",
                if *current {
                    "in its validity period"
                } else {
                    "OUTSIDE its validity period"
                },
                crate::clock::rfc3339(*not_after)
            ),
        }
    }

    /// Whether the material is fit for use (it is still not presented: no REALITY transport).
    #[must_use]
    pub const fn is_usable(&self) -> bool {
        matches!(self, Self::Valid { current: true, .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["reality.example".to_owned()]).unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    fn settings(cert: Option<PathBuf>, fp: Option<String>) -> TransportSettings {
        TransportSettings {
            reality_cert: cert,
            reality_fingerprint: fp,
            ..TransportSettings::default()
        }
    }

    #[test]
    fn matching_fingerprint_is_valid_and_still_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reality.pem");
        let pem = cert_pem();
        std::fs::write(&path, &pem).unwrap();
        let fp = blake3::hash(pem.as_bytes()).to_hex().to_string();
        let material = RealityMaterial::check(
            &settings(Some(path.clone()), Some(fp)),
            crate::clock::unix_now(),
        );
        assert!(material.is_usable(), "{material:?}");
        assert!(material.describe().contains("not advertised"));

        let wrong = "0".repeat(64);
        assert!(matches!(
            RealityMaterial::check(&settings(Some(path), Some(wrong)), 0),
            RealityMaterial::Mismatch { .. }
        ));
    }

    #[test]
    fn incomplete_unreadable_and_non_certificates_are_named() {
        assert_eq!(
            RealityMaterial::check(&settings(None, None), 0),
            RealityMaterial::NotConfigured
        );
        assert_eq!(
            RealityMaterial::check(&settings(Some("x.pem".into()), None), 0),
            RealityMaterial::Incomplete {
                missing: "transport.reality_fingerprint"
            }
        );
        assert!(matches!(
            RealityMaterial::check(
                &settings(Some("/nonexistent/x.pem".into()), Some("a".repeat(64))),
                0
            ),
            RealityMaterial::Unusable { .. }
        ));
        let key_pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let fp = blake3::hash(key_pem.as_bytes()).to_hex().to_string();
        let m = RealityMaterial::of_pem(Path::new("k.pem"), key_pem.as_bytes(), &fp, 0);
        assert!(
            matches!(m, RealityMaterial::Unusable { ref reason, .. } if reason.contains("PRIVATE KEY")),
            "{m:?}"
        );
        let m = RealityMaterial::of_pem(Path::new("j.pem"), b"junk", &fp, 0);
        assert!(matches!(m, RealityMaterial::Unusable { .. }), "{m:?}");
    }

    #[test]
    fn expired_certificate_is_not_usable() {
        let pem = cert_pem();
        let fp = blake3::hash(pem.as_bytes()).to_hex().to_string();
        let m = RealityMaterial::of_pem(Path::new("r.pem"), pem.as_bytes(), &fp, i64::MAX / 2);
        assert!(
            matches!(m, RealityMaterial::Valid { current: false, .. }),
            "{m:?}"
        );
        assert!(!m.is_usable());
        assert!(m.describe().contains("OUTSIDE"));
    }
}
