//! Files: the data directory, the key files (owner-only), the TLS certificate and key (readable,
//! key owner-only, the pair matching), the certificate's names and validity.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use commucat_server::Config;
use commucat_server::clock::{rfc3339, unix_now};
use commucat_server::keys::pq::{PQ_KEM_FILE, PQ_SIGN_FILE};
use commucat_server::keys::{DEVICE_CA_FILE, KEYS_DIR, NOISE_STATIC_FILE};
use commucat_server::server::DATABASE_FILE;
use commucat_server::tls::{DEV_CERT_FILE, DEV_KEY_FILE, TLS_DIR, TlsIdentity};
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use super::Check;

/// Certificates expiring within this many days are a warning.
const EXPIRY_WARNING_DAYS: i64 = 14;
const DAY: i64 = 86_400;

/// Every file check of `config`.
pub(super) fn checks(config: &Config) -> Vec<Check> {
    let data = &config.server.data_dir;
    let mut out = vec![data_dir(data)];
    let keys = data.join(KEYS_DIR);
    for (file, what) in [
        (NOISE_STATIC_FILE, "Noise static key"),
        (DEVICE_CA_FILE, "device CA key"),
        (
            commucat_server::keys::keyring::KEYRING_FILE,
            "Noise key ring",
        ),
        (PQ_KEM_FILE, "ML-KEM key"),
        (PQ_SIGN_FILE, "ML-DSA key"),
    ] {
        out.push(secret_file("key file", &keys.join(file), what, true));
    }
    if config.store.url.is_none() {
        out.push(secret_file(
            "database file",
            &data.join(DATABASE_FILE),
            "SQLite store",
            true,
        ));
    }
    let (cert, key, generated) = match &config.tls.files {
        Some(files) => (files.cert.clone(), files.key.clone(), false),
        None => {
            let dir = data.join(TLS_DIR);
            (dir.join(DEV_CERT_FILE), dir.join(DEV_KEY_FILE), true)
        }
    };
    out.extend(tls(config, &cert, &key, generated));
    out.push(reality(config));
    out
}

/// `[transport]` REALITY material: absent is fine; configured, it must be complete, parse and
/// match its fingerprint (the server provides no REALITY transport either way, and says so).
fn reality(config: &Config) -> Check {
    use commucat_server::transport::reality::RealityMaterial;
    let material = RealityMaterial::check(&config.transport, unix_now());
    let found = material.describe();
    match material {
        RealityMaterial::NotConfigured | RealityMaterial::Valid { current: true, .. } => {
            Check::ok("reality", found)
        }
        RealityMaterial::Incomplete { missing } => Check::warn(
            "reality",
            found,
            format!("set {missing}, or remove the other REALITY setting"),
        ),
        RealityMaterial::Valid { .. } => Check::warn(
            "reality",
            found,
            "renew the REALITY certificate and update transport.reality_fingerprint",
        ),
        RealityMaterial::Mismatch { actual, .. } => Check::fail(
            "reality",
            found,
            format!(
                "set transport.reality_fingerprint = \"{actual}\" if this is the intended certificate"
            ),
        ),
        RealityMaterial::Unusable { .. } => Check::fail(
            "reality",
            found,
            "point transport.reality_cert at a readable PEM certificate",
        ),
    }
}

fn mode(path: &Path) -> std::io::Result<u32> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

fn data_dir(dir: &Path) -> Check {
    let shown = dir.display();
    match mode(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => Check::ok(
            "data directory",
            format!("{shown} absent; created (0700) on first start"),
        ),
        Err(e) => Check::fail(
            "data directory",
            format!("{shown}: {e}"),
            "run doctor as the user serve runs as, or give that user the directory",
        ),
        Ok(m) if m & 0o077 != 0 => Check::warn(
            "data directory",
            format!("{shown} is mode {m:04o}: others can list its files"),
            format!("chmod 700 {shown}"),
        ),
        Ok(m) => Check::ok("data directory", format!("{shown} (mode {m:04o})")),
    }
}

/// A file that must be readable and owner-only; `generated`: `serve` creates it when absent.
fn secret_file(name: &'static str, path: &Path, what: &str, generated: bool) -> Check {
    let shown = path.display();
    let m = match mode(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound && generated => {
            return Check::ok(
                name,
                format!("{what} {shown} absent; generated (0600) on first start"),
            );
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Check::fail(
                name,
                format!("{what} {shown} does not exist"),
                format!("put the {what} at {shown} or correct the setting that names it"),
            );
        }
        Err(e) => {
            return Check::fail(
                name,
                format!("{what} {shown}: {e}"),
                "run doctor as the user serve runs as",
            );
        }
    };
    if let Err(e) = std::fs::File::open(path) {
        return Check::fail(
            name,
            format!("{what} {shown} is not readable: {e}"),
            format!("chown it to the user serve runs as and chmod 600 {shown}"),
        );
    }
    if m & 0o077 != 0 {
        return Check::fail(
            name,
            format!("{what} {shown} is mode {m:04o}: group or others can access it"),
            format!("chmod 600 {shown}"),
        );
    }
    Check::ok(name, format!("{what} {shown} (mode {m:04o})"))
}

fn tls(config: &Config, cert: &Path, key: &Path, generated: bool) -> Vec<Check> {
    match (cert.exists(), key.exists(), generated) {
        (false, false, true) => {
            return vec![Check::ok(
                "tls certificate",
                format!(
                    "no dev certificate yet; one for {} is generated on first start",
                    config.server.domain
                ),
            )];
        }
        (true, false, true) | (false, true, true) => {
            let (present, missing) = if cert.exists() {
                (cert, key)
            } else {
                (key, cert)
            };
            return vec![Check::fail(
                "tls certificate",
                format!("{} exists without {}", present.display(), missing.display()),
                "restore the missing file, or delete both to have a new dev certificate generated",
            )];
        }
        _ => {}
    }
    let mut out = vec![
        readable("tls certificate", cert),
        secret_file("tls key", key, "TLS private key", false),
    ];
    if out.iter().any(|c| c.status == super::Status::Fail) {
        return out;
    }
    out.extend(certificate(config, cert));
    out.push(
        match TlsIdentity::load_or_generate(config).map(|id| id.server_config()) {
            Ok(Ok(_)) => Check::ok("tls key pair", "the key matches the certificate"),
            Ok(Err(e)) | Err(e) => Check::fail(
                "tls key pair",
                e.to_string(),
                "configure the key that belongs to the certificate (tls.cert, tls.key)",
            ),
        },
    );
    out
}

fn readable(name: &'static str, path: &Path) -> Check {
    match std::fs::File::open(path) {
        Ok(_) => Check::ok(name, format!("{} readable", path.display())),
        Err(e) => Check::fail(
            name,
            format!("{}: {e}", path.display()),
            "correct tls.cert, or make the file readable by the user serve runs as",
        ),
    }
}

/// The leaf certificate's names against `server.domain`, and its validity against now.
fn certificate(config: &Config, path: &Path) -> Vec<Check> {
    let shown = path.display();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            return vec![Check::fail(
                "tls certificate",
                format!("{shown}: {e}"),
                "make it readable",
            )];
        }
    };
    let leaf = Pem::iter_from_buffer(&bytes)
        .next()
        .and_then(Result::ok)
        .filter(|pem| pem.label == "CERTIFICATE");
    let Some(pem) = leaf else {
        return vec![Check::fail(
            "tls certificate",
            format!("{shown} holds no PEM CERTIFICATE block first"),
            "put the server certificate first in the file, then its chain",
        )];
    };
    let cert = match pem.parse_x509() {
        Ok(cert) => cert,
        Err(e) => {
            return vec![Check::fail(
                "tls certificate",
                format!("{shown}: not an X.509 certificate: {e}"),
                "configure a PEM certificate (tls.cert)",
            )];
        }
    };
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push((*dns).to_owned()),
                GeneralName::IPAddress(ip) => names.push(ip_text(ip)),
                _ => {}
            }
        }
    }
    let domain = &config.server.domain;
    let names_check = if names.iter().any(|n| matches_name(n, domain)) {
        Check::ok(
            "tls names",
            format!("{domain} is among {}", names.join(", ")),
        )
    } else {
        Check::fail(
            "tls names",
            format!(
                "server.domain {domain} is not among the certificate's names ({})",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ),
            "use a certificate issued for server.domain, or correct server.domain",
        )
    };
    let now = unix_now();
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    let days_left = (not_after - now) / DAY;
    let expiry = if now < not_before {
        Check::fail(
            "tls expiry",
            format!(
                "not valid before {} (now {})",
                rfc3339(not_before),
                rfc3339(now)
            ),
            "check the system clock, or use a certificate valid now",
        )
    } else if now > not_after {
        Check::fail(
            "tls expiry",
            format!("expired {}", rfc3339(not_after)),
            renew_hint(config),
        )
    } else if days_left < EXPIRY_WARNING_DAYS {
        Check::warn(
            "tls expiry",
            format!("expires {} ({days_left} days left)", rfc3339(not_after)),
            renew_hint(config),
        )
    } else {
        Check::ok(
            "tls expiry",
            format!("valid until {} ({days_left} days left)", rfc3339(not_after)),
        )
    };
    vec![names_check, expiry]
}

fn renew_hint(config: &Config) -> String {
    if config.tls.files.is_some() {
        "renew the certificate and replace the file named by tls.cert".to_owned()
    } else {
        let dir: PathBuf = config.server.data_dir.join(TLS_DIR);
        format!(
            "delete {}/{DEV_CERT_FILE} and {DEV_KEY_FILE} to have a new dev certificate generated (clients pinning the old one must re-pin)",
            dir.display()
        )
    }
}

fn ip_text(bytes: &[u8]) -> String {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        std::net::Ipv4Addr::from(v4).to_string()
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        std::net::Ipv6Addr::from(v6).to_string()
    } else {
        hex::encode(bytes)
    }
}

/// Whether certificate name `name` (possibly `*.example.org`) covers `domain`.
fn matches_name(name: &str, domain: &str) -> bool {
    if name.eq_ignore_ascii_case(domain) {
        return true;
    }
    match (name.strip_prefix("*."), domain.split_once('.')) {
        (Some(suffix), Some((label, rest))) => {
            !label.is_empty() && suffix.eq_ignore_ascii_case(rest)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(matches_name("chat.example.org", "CHAT.example.org"));
        assert!(matches_name("*.example.org", "chat.example.org"));
        assert!(!matches_name("*.example.org", "a.chat.example.org"));
        assert!(!matches_name("*.example.org", "example.org"));
        assert!(!matches_name("other.example.org", "chat.example.org"));
        assert_eq!(ip_text(&[127, 0, 0, 1]), "127.0.0.1");
    }
}
