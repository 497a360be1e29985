//! `GET /openapi.json`: the OpenAPI 3.1 description of the REST API, generated at compile time
//! from the handlers' `#[utoipa::path]` attributes and the request and answer types (nothing is
//! written by hand or fetched at build time). Alias paths get the same operations as the paths
//! they alias.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{devices, friends, health, metrics, p2p, pairing, rotate, server_info};

/// Alias paths and the paths whose operations they share.
pub(crate) const ALIASES: [(&str, &str); 3] = [
    ("/api/server/info", "/api/server-info"),
    ("/api/pairing", "/api/pair"),
    ("/api/pairing/claim", "/api/pair/claim"),
];

/// The API description.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "CommuCat REST API",
        description = "REST API of the CommuCat relay server, on the same TLS port as /connect \
                       (HTTP/1.1 and HTTP/2). Success is always 200 with a JSON body; errors are \
                       application/problem+json (RFC 9457)."
    ),
    paths(
        health::healthz,
        health::readyz,
        metrics::metrics,
        metrics::security_stats,
        server_info::server_info,
        devices::list,
        devices::revoke,
        rotate::rotate,
        pairing::issue,
        pairing::claim,
        friends::list,
        friends::replace,
        p2p::handle,
    ),
    modifiers(&Extras)
)]
pub(crate) struct ApiDoc;

/// Adds the security schemes and the alias paths.
#[derive(Debug)]
struct Extras;

impl Modify for Extras {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The session id a device received at the end of its /connect handshake",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("metrics.admin_token, when configured"))
                    .build(),
            ),
        );
        for (alias, path) in ALIASES {
            if let Some(item) = openapi.paths.paths.get(path).cloned() {
                openapi.paths.paths.insert(alias.to_owned(), item);
            }
        }
    }
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
});

/// `GET /openapi.json` → 200 the OpenAPI document.
pub(crate) async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described_with_its_errors() {
        let doc: serde_json::Value = serde_json::from_str(&DOCUMENT).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        for (path, methods) in [
            ("/healthz", &["get"][..]),
            ("/readyz", &["get"]),
            ("/metrics", &["get"]),
            ("/api/security-stats", &["get"]),
            ("/api/server-info", &["get"]),
            ("/api/server/info", &["get"]),
            ("/api/devices", &["get"]),
            ("/api/devices/revoke", &["post"]),
            ("/api/devices/rotate", &["post"]),
            ("/api/pair", &["post"]),
            ("/api/pairing", &["post"]),
            ("/api/pair/claim", &["post"]),
            ("/api/pairing/claim", &["post"]),
            ("/api/friends", &["get", "put"]),
            ("/api/p2p/assist", &["get", "post"]),
        ] {
            for method in methods {
                assert!(
                    paths[path][method]["responses"]["200"].is_object(),
                    "{method} {path}"
                );
            }
        }
        let revoke = &paths["/api/devices/revoke"]["post"]["responses"];
        for status in ["400", "401", "403", "404", "409", "503"] {
            assert!(
                revoke[status]["content"]["application/problem+json"].is_object(),
                "{status}"
            );
        }
        let rotate = &paths["/api/devices/rotate"]["post"];
        for status in ["400", "401", "403", "409", "429", "503"] {
            assert!(
                rotate["responses"][status]["content"]["application/problem+json"].is_object(),
                "{status}"
            );
        }
        assert!(rotate["requestBody"].is_object());
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in [
            "Assist",
            "PqBundle",
            "SecuritySnapshot",
            "Claimed",
            "RotateRequest",
            "Rotated",
            "Problem",
        ] {
            assert!(schemas.contains_key(name), "{name}");
        }
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }
}
