//! Services: the store is reachable and its schema up to date (read only: nothing is created
//! or migrated), its clock agrees with ours (PostgreSQL), and Redis answers when configured.

use std::time::Duration;

use commucat_server::Config;
use commucat_server::config::redact_url;
use commucat_server::router::presence::Presence;
use commucat_server::router::presence_redis::RedisPresence;
use commucat_server::server::DATABASE_FILE;
use commucat_store::SchemaStatus;

use super::Check;

/// Largest accepted difference between this host's clock and the database's.
const MAX_CLOCK_SKEW_SECS: f64 = 5.0;
/// How long Redis may take to connect and answer PING.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn checks(config: &Config) -> Vec<Check> {
    let mut out = vec![store(config).await];
    if let Some(url) = &config.store.url {
        out.push(store_clock(config, url).await);
    }
    if let Some(url) = &config.presence.redis_url {
        out.push(redis(config, url).await);
    }
    out
}

async fn store(config: &Config) -> Check {
    let Some(url) = &config.store.url else {
        let path = config.server.data_dir.join(DATABASE_FILE);
        return match commucat_store::sqlite_schema_status(&path).await {
            Ok(None) => Check::ok(
                "store",
                format!(
                    "SQLite {} absent; created and migrated on first start (or by commucat migrate)",
                    path.display()
                ),
            ),
            Ok(Some(status)) => schema("SQLite", &path.display().to_string(), &status),
            Err(e) => Check::fail(
                "store",
                format!("SQLite {}: {e}", path.display()),
                "restore the database from a backup, or move it away to start empty",
            ),
        };
    };
    let shown = redact_url(url);
    match commucat_store::postgres_schema_status(url, &config.store.postgres()).await {
        Ok(status) => schema("PostgreSQL", &shown, &status),
        Err(e) => Check::fail(
            "store",
            format!("PostgreSQL {shown} cannot be reached: {e}"),
            "start PostgreSQL, or correct store.url (COMMUCAT_STORE_URL) and store.schema",
        ),
    }
}

fn schema(kind: &str, location: &str, status: &SchemaStatus) -> Check {
    if status.up_to_date() {
        return Check::ok(
            "store",
            format!(
                "{kind} {location} reachable, schema up to date ({} migrations)",
                status.applied
            ),
        );
    }
    if !status.failed.is_empty() {
        return Check::fail(
            "store",
            format!(
                "{kind} {location}: migration {:?} failed half-way",
                status.failed
            ),
            "restore the database from a backup taken before the upgrade, then run commucat migrate",
        );
    }
    if !status.unknown.is_empty() {
        return Check::fail(
            "store",
            format!(
                "{kind} {location} has migrations {:?} this build does not know",
                status.unknown
            ),
            "run the newer commucat that migrated this store",
        );
    }
    Check::fail(
        "store",
        format!(
            "{kind} {location} reachable, {} of {} migrations pending: {}",
            status.pending.len(),
            status.known,
            status.pending.join(", ")
        ),
        "run commucat migrate (serve also migrates when it starts)",
    )
}

async fn store_clock(config: &Config, url: &str) -> Check {
    #[allow(
        clippy::cast_precision_loss,
        reason = "microseconds since 1970 fit an f64's mantissa"
    )]
    let local = commucat_server::clock::unix_micros_now() as f64 / 1e6;
    match commucat_store::postgres_clock_offset(url, &config.store.postgres(), local).await {
        Ok(offset) if offset.abs() <= MAX_CLOCK_SKEW_SECS => Check::ok(
            "store clock",
            format!("PostgreSQL's clock is {offset:+.2} s from this host's"),
        ),
        Ok(offset) => Check::fail(
            "store clock",
            format!(
                "PostgreSQL's clock is {offset:+.1} s from this host's (more than {MAX_CLOCK_SKEW_SECS} s)"
            ),
            "synchronise both hosts' clocks (timedatectl set-ntp true)",
        ),
        // The store check above reports why it cannot be reached.
        Err(e) => Check::fail(
            "store clock",
            format!("not compared: {e}"),
            "make the store reachable first",
        ),
    }
}

async fn redis(config: &Config, url: &str) -> Check {
    let shown = redact_url(url);
    let answered = tokio::time::timeout(REDIS_TIMEOUT, async {
        let presence = RedisPresence::connect(url, &config.presence.key_prefix).await?;
        presence.ping().await
    })
    .await;
    match answered {
        Ok(Ok(())) => Check::ok("redis", format!("{shown} answers PING")),
        Ok(Err(e)) => Check::fail(
            "redis",
            format!("{shown} cannot be reached: {e}"),
            "start Redis, or correct presence.redis_url (COMMUCAT_REDIS_URL)",
        ),
        Err(_) => Check::fail(
            "redis",
            format!(
                "{shown} did not answer within {} s",
                REDIS_TIMEOUT.as_secs()
            ),
            "start Redis, or correct presence.redis_url (COMMUCAT_REDIS_URL)",
        ),
    }
}
