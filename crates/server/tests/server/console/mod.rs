//! The operator web console at `/admin`: login, sessions and CSRF over plain HTTPS
//! ([`http`]), and the whole operator flow in headless Chromium driven over WebDriver
//! ([`browser`], needs `COMMUCAT_TEST_CHROMEDRIVER`).

mod browser;
mod driver;
mod federation;
pub(crate) mod http;

use std::path::PathBuf;

use commucat_server::config::SecretString;

use crate::common::TestServer;

/// The admin token of the console tests' servers.
pub(crate) const ADMIN: &str = "console-test-admin-token";

/// A server with the admin token set and its ledger at the returned path.
async fn console_server(
    tweak: impl FnOnce(&mut commucat_server::Config),
) -> (TestServer, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.jsonl");
    let path = ledger.clone();
    let server = TestServer::start(move |c| {
        c.metrics.admin_token = Some(SecretString(ADMIN.to_owned()));
        c.ledger.path = Some(path);
        tweak(c);
    })
    .await;
    (server, ledger, dir)
}
