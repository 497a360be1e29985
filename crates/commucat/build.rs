//! Marks the service-backed tests as runnable when their service is configured.
//!
//! Tests that need PostgreSQL (or PostgreSQL and Redis) carry
//! `#[cfg_attr(not(commucat_test_postgres), ignore = "needs COMMUCAT_TEST_POSTGRES")]` (or the
//! Redis equivalent): without the variable they are reported as ignored, with the reason, and
//! counted in the closing totals instead of passing silently; with it they run, and an
//! unreachable service fails them.

fn main() {
    for (var, cfg) in [
        ("COMMUCAT_TEST_POSTGRES", "commucat_test_postgres"),
        ("COMMUCAT_TEST_REDIS", "commucat_test_redis"),
    ] {
        println!("cargo::rerun-if-env-changed={var}");
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if std::env::var(var).is_ok_and(|value| !value.trim().is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
