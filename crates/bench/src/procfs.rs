//! Readings of another process from `/proc/PID`: CPU time and resident memory.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};

/// `USER_HZ`, the unit of `/proc/PID/stat` times, as the system states it (`sysconf(_SC_CLK_TCK)`,
/// which the kernel passes in the auxiliary vector).
pub(crate) fn ticks_per_second() -> Result<u64> {
    match rustix::param::clock_ticks_per_second() {
        0 => Err(anyhow!(
            "the system does not state its clock ticks per second"
        )),
        hz => Ok(hz),
    }
}

/// `ticks` of `hz` per second as a duration.
fn ticks_to_duration(ticks: u64, hz: u64) -> Duration {
    let nanos = u128::from(ticks) * 1_000_000_000 / u128::from(hz.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// User + system CPU time the process has used (all its threads).
///
/// # Errors
/// No such process, or an unreadable `stat` line.
pub(crate) fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; fields after its closing parenthesis are
    // space-separated, utime and stime being the 12th and 13th of them.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("/proc/{pid}/stat: no command field"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |index: usize| -> Result<u64> {
        fields
            .get(index)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| anyhow!("/proc/{pid}/stat: field {index} missing"))
    };
    let ticks = tick(11)?.saturating_add(tick(12)?);
    Ok(ticks_to_duration(ticks, ticks_per_second()?))
}

/// Resident set size in bytes (`VmRSS`).
///
/// # Errors
/// No such process, or no `VmRSS` line.
pub(crate) fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| anyhow!("/proc/{pid}/status has no VmRSS"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_ticks_come_from_the_system() {
        // `getconf` asks the C library, which reads the same value by another route.
        let out = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .unwrap();
        assert!(out.status.success());
        let getconf: u64 = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(ticks_per_second().unwrap(), getconf);
        assert_eq!(ticks_to_duration(250, 100), Duration::from_millis(2500));
        assert_eq!(ticks_to_duration(3, 300), Duration::from_millis(10));
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).unwrap() > 0);
        // Burn CPU until the kernel has accounted at least one tick (bounded in time).
        let begun = std::time::Instant::now();
        let mut x = 0u64;
        while cpu_time(pid).unwrap() == Duration::ZERO && begun.elapsed() < Duration::from_secs(30)
        {
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
        }
        assert!(cpu_time(pid).unwrap() > Duration::ZERO);
        assert!(cpu_time(u32::MAX).is_err());
    }
}
