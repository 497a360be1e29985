//! `commucat doctor`: checks a configuration and its environment before `serve` runs on it, and
//! prints one line per check: `ok`, `warn` or `FAIL`, what was found, and for anything not ok
//! how to fix it. Exits non-zero when any check fails. Nothing is created, migrated or
//! changed: missing keys and a missing dev certificate are reported as generated on first
//! start.

mod files;
mod services;
mod system;

use std::fmt;

use anyhow::Result;

use crate::context::{self, ConfigArgs};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Nothing to do.
    Ok,
    /// Works, but worth a look (the hint says why).
    Warn,
    /// `serve` would fail or run unsafely.
    Fail,
}

/// One check's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Check {
    pub(crate) status: Status,
    /// Short name of what was checked (`config`, `tls key mode`, …).
    pub(crate) name: &'static str,
    /// What was found.
    pub(crate) found: String,
    /// How to fix it (for warnings and failures).
    pub(crate) fix: Option<String>,
}

impl Check {
    pub(crate) fn ok(name: &'static str, found: impl Into<String>) -> Self {
        Self {
            status: Status::Ok,
            name,
            found: found.into(),
            fix: None,
        }
    }

    pub(crate) fn warn(
        name: &'static str,
        found: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            status: Status::Warn,
            name,
            found: found.into(),
            fix: Some(fix.into()),
        }
    }

    pub(crate) fn fail(
        name: &'static str,
        found: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            status: Status::Fail,
            name,
            found: found.into(),
            fix: Some(fix.into()),
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        // One line per check: a multi-line message (a TOML parse error with its excerpt) is
        // joined, without the excerpt's gutter lines.
        let found = self
            .found
            .lines()
            .map(str::trim)
            .filter(|l| !l.trim_start_matches('|').trim().is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        write!(f, "{status:<4}  {:<16}  {found}", self.name)?;
        if let Some(fix) = &self.fix {
            write!(f, " — fix: {fix}")?;
        }
        Ok(())
    }
}

/// Runs every check, printing each line on standard output as it completes; returns how many
/// failed.
pub(crate) fn run(args: &ConfigArgs) -> Result<usize> {
    let config = match args.load() {
        Ok(config) => {
            let shown = args.config.as_ref().map_or_else(
                || "defaults and COMMUCAT_* variables".to_owned(),
                |p| format!("{} and COMMUCAT_* variables", p.display()),
            );
            println!(
                "{}",
                Check::ok("config", format!("{shown} parse and validate"))
            );
            config
        }
        Err(error) => {
            println!(
                "{}",
                Check::fail(
                    "config",
                    format!("{error:#}"),
                    "correct the setting named (see docs/operations.md); no other check can run"
                )
            );
            return Ok(1);
        }
    };
    let mut failed = 0;
    let mut emit = |checks: Vec<Check>| {
        for check in checks {
            failed += usize::from(check.status == Status::Fail);
            println!("{check}");
        }
    };
    emit(files::checks(&config));
    emit(system::checks(&config));
    let services = context::runtime()?.block_on(services::checks(&config));
    emit(services);
    Ok(failed)
}
