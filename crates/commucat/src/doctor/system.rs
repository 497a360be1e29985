//! The host: the listen address is free, the clock is sane, the open-file limit covers
//! `limits.max_connections`.

use std::io::ErrorKind;
use std::net::TcpListener;

use commucat_server::Config;
use commucat_server::clock::{rfc3339, unix_now};

use super::Check;

/// Descriptors the server needs besides one per connection: listener, store pool, ledger,
/// Redis, standard streams, the runtime's own.
pub(super) const DESCRIPTOR_RESERVE: u64 = 64;
/// 2026-01-01T00:00:00Z: a clock before this is wrong (certificates and expiries would be).
const EARLIEST_SANE: i64 = 1_767_225_600;
/// 2100-01-01T00:00:00Z: a clock after this is wrong too.
const LATEST_SANE: i64 = 4_102_444_800;

pub(super) fn checks(config: &Config) -> Vec<Check> {
    vec![listen(config), clock(), descriptors(config)]
}

fn listen(config: &Config) -> Check {
    let addr = config.server.listen;
    if addr.port() == 0 {
        return Check::ok(
            "listen address",
            format!("{addr}: any free port is taken at start"),
        );
    }
    match TcpListener::bind(addr) {
        Ok(listener) => {
            drop(listener);
            Check::ok("listen address", format!("{addr} is free"))
        }
        Err(e) if e.kind() == ErrorKind::AddrInUse => Check::fail(
            "listen address",
            format!("{addr} is in use by another process"),
            "stop that process (is commucat already running?) or change server.listen",
        ),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Check::fail(
            "listen address",
            format!("{addr}: permission denied"),
            "listen on a port from 1024 up, or grant CAP_NET_BIND_SERVICE (AmbientCapabilities= in the systemd unit)",
        ),
        Err(e) => Check::fail(
            "listen address",
            format!("{addr}: {e}"),
            "listen on an address of this host (server.listen)",
        ),
    }
}

fn clock() -> Check {
    let now = unix_now();
    if (EARLIEST_SANE..LATEST_SANE).contains(&now) {
        Check::ok("clock", format!("system clock reads {}", rfc3339(now)))
    } else {
        Check::fail(
            "clock",
            format!("system clock reads {}, which cannot be right", rfc3339(now)),
            "set the clock and keep it synchronised (timedatectl set-ntp true)",
        )
    }
}

/// What `limits.max_connections` needs against the soft `RLIMIT_NOFILE`.
fn descriptors(config: &Config) -> Check {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let connections = u64::try_from(config.limits.max_connections).unwrap_or(u64::MAX);
    descriptor_check(connections, limit.current, limit.maximum)
}

/// `soft`/`hard`: the limits (`None`: unlimited).
pub(super) fn descriptor_check(connections: u64, soft: Option<u64>, hard: Option<u64>) -> Check {
    let needed = connections.saturating_add(DESCRIPTOR_RESERVE);
    let Some(soft) = soft else {
        return Check::ok("open files", "no descriptor limit");
    };
    if soft >= needed {
        return Check::ok(
            "open files",
            format!(
                "limit {soft} covers limits.max_connections {connections} + {DESCRIPTOR_RESERVE}"
            ),
        );
    }
    let found = format!(
        "limit {soft} < limits.max_connections {connections} + {DESCRIPTOR_RESERVE}: connections beyond it fail with EMFILE"
    );
    let fix = if hard.is_none_or(|hard| hard >= needed) {
        format!(
            "raise the soft limit to {needed} (ulimit -n {needed}; LimitNOFILE={needed} in the systemd unit)"
        )
    } else {
        let fits = soft.saturating_sub(DESCRIPTOR_RESERVE);
        format!(
            "raise the hard limit to {needed} (LimitNOFILE={needed}, /etc/security/limits.conf), or lower limits.max_connections to {fits}"
        )
    };
    Check::fail("open files", found, fix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    #[test]
    fn descriptor_limit_against_max_connections() {
        assert_eq!(descriptor_check(100, None, None).status, Status::Ok);
        assert_eq!(
            descriptor_check(100, Some(164), Some(164)).status,
            Status::Ok
        );
        let soft = descriptor_check(10_000, Some(1024), Some(524_288));
        assert_eq!(soft.status, Status::Fail);
        assert!(soft.fix.unwrap().contains("ulimit -n 10064"));
        let hard = descriptor_check(10_000, Some(1024), Some(4096));
        assert!(
            hard.fix
                .unwrap()
                .contains("lower limits.max_connections to 960")
        );
    }
}
