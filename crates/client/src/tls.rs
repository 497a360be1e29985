//! TLS client configuration: trust a CA certificate, or pin the server certificate's SHA-256.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::ClientError;

/// How the client authenticates the server's TLS certificate.
#[derive(Debug, Clone)]
pub enum TlsTrust {
    /// Verify the chain against these PEM-encoded roots (e.g. the server's dev certificate).
    CaPem(Vec<u8>),
    /// Accept exactly the end-entity certificate with this SHA-256 digest (as `serve` prints
    /// it), checking the TLS handshake signature with its key. Names are not checked: the pin
    /// is the identity.
    Fingerprint([u8; 32]),
}

impl TlsTrust {
    /// Parses a fingerprint as printed by the server (hex, colons optional).
    ///
    /// # Errors
    /// [`ClientError::Config`] for anything but 32 hex-encoded bytes.
    pub fn fingerprint(text: &str) -> Result<Self, ClientError> {
        let compact: String = text.chars().filter(|c| *c != ':').collect();
        commucat_keys::decode_hex32(&compact)
            .map(TlsTrust::Fingerprint)
            .map_err(|e| ClientError::Config(format!("certificate fingerprint: {e}")))
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A TLS 1.3 client configuration offering `h2`.
///
/// # Errors
/// [`ClientError::Config`] for unusable PEM.
pub fn client_config(trust: &TlsTrust) -> Result<ClientConfig, ClientError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Config(e.to_string()))?;
    let mut config = match trust {
        TlsTrust::CaPem(pem) => {
            let mut roots = RootCertStore::empty();
            let mut found = false;
            for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(pem) {
                let cert: CertificateDer<'static> =
                    cert.map_err(|e| ClientError::Config(format!("CA PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| ClientError::Config(format!("CA certificate: {e}")))?;
                found = true;
            }
            if !found {
                return Err(ClientError::Config(
                    "CA PEM holds no certificate".to_owned(),
                ));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        TlsTrust::Fingerprint(digest) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCertificate {
                digest: *digest,
                algorithms: provider().signature_verification_algorithms,
            }))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Accepts one certificate by digest; handshake signatures are still verified with its key.
#[derive(Debug)]
struct PinnedCertificate {
    digest: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if digest == self.digest {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
