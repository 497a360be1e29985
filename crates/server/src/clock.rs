//! Wall-clock time as the store and the wire count it: whole Unix seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Current Unix time in seconds (0 if the clock is before 1970).
#[must_use]
#[allow(
    clippy::disallowed_methods,
    reason = "the clock module is where the server reads the wall clock"
)]
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Current Unix time in microseconds (0 if the clock is before 1970).
#[must_use]
#[allow(
    clippy::disallowed_methods,
    reason = "the clock module is where the server reads the wall clock"
)]
pub fn unix_micros_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Whole seconds of `d` as a signed count (saturating).
#[must_use]
pub fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Formats Unix seconds as an RFC 3339 UTC timestamp (`2026-01-02T03:04:05Z`); a time outside
/// what the calendar type holds shows as the epoch.
#[must_use]
pub fn rfc3339(unix_secs: i64) -> String {
    let time = time::OffsetDateTime::from_unix_timestamp(unix_secs)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

/// Current Unix time in nanoseconds (0 if the clock is before 1970 or past 2262).
#[must_use]
#[allow(
    clippy::disallowed_methods,
    reason = "the clock module is where the server reads the wall clock"
)]
pub fn unix_nanos_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(0))
}
