//! Words the daemon and `pmd` both print, written once so that both say the
//! same thing the same way: compact ages, and the report on an instance
//! that is not ready (the daemon's WaitReady failure; `pmd`'s details on a
//! failed reload or apply).

use std::time::Duration;

/// PM2-style compact age: `12s`, `5m`, `3h`, `2D`.
pub fn short_duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}D", s / 86400),
    }
}

/// What the report on one instance that is not ready says.
#[derive(Debug, Clone, Copy, Default)]
pub struct NotReady<'a> {
    /// The app's name; None when the instance was never seen (deleted).
    pub name: Option<&'a str>,
    pub id: u32,
    /// What it is doing or why it failed (`exited with code 1, waiting to
    /// restart`).
    pub why: &'a str,
    /// Set when the wait ran out rather than failed.
    pub timed_out: Option<Duration>,
    /// Why the instance is in its state, shown unless `why` says it.
    pub reason: &'a str,
    pub last_health_error: &'a str,
    pub last_health_error_at_ms: Option<i64>,
    /// Its last log lines; None when they could not be read.
    pub logs: Option<&'a [String]>,
}

impl NotReady<'_> {
    /// The report, a line per fact, `now_ms` dating the health error.
    pub fn report(&self, now_ms: i64) -> String {
        let who = match self.name {
            Some(name) => format!("{name} (id {})", self.id),
            None => format!("id {}", self.id),
        };
        let why = self.why;
        let mut text = match self.timed_out {
            Some(t) => format!(
                "{who} is not ready after {}: {why}\n",
                humantime::format_duration(t)
            ),
            None => format!("{who} is not ready: {why}\n"),
        };
        if !self.reason.is_empty() && !why.contains(self.reason) {
            text += &format!("  reason: {}\n", self.reason);
        }
        if !self.last_health_error.is_empty() {
            let when = self
                .last_health_error_at_ms
                .map(|at| {
                    let ago = u64::try_from(now_ms.saturating_sub(at)).unwrap_or(0);
                    format!(" ({} ago)", short_duration(ago))
                })
                .unwrap_or_default();
            text += &format!("  last health error: {}{when}\n", self.last_health_error);
        }
        match self.logs {
            Some([]) => text += "  no log lines\n",
            Some(lines) => {
                text += &format!("  last log lines of {who}:\n");
                for line in lines {
                    text += &format!("    {line}\n");
                }
            }
            None => {}
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_compact() {
        assert_eq!(short_duration(999), "0s");
        assert_eq!(short_duration(59_000), "59s");
        assert_eq!(short_duration(60_000), "1m");
        assert_eq!(short_duration(3_600_000), "1h");
        assert_eq!(short_duration(2 * 86_400_000), "2D");
    }

    #[test]
    fn a_report_names_the_instance_its_reason_health_and_logs() {
        let logs = ["3|api | listening".to_owned()];
        let text = NotReady {
            name: Some("api"),
            id: 3,
            why: "starting",
            timed_out: Some(Duration::from_secs(30)),
            reason: "restarted after: health check failed",
            last_health_error: "connection refused",
            last_health_error_at_ms: Some(1_000),
            logs: Some(&logs),
        }
        .report(13_000);
        assert_eq!(
            text,
            "api (id 3) is not ready after 30s: starting\n  reason: restarted after: health \
             check failed\n  last health error: connection refused (12s ago)\n  last log lines \
             of api (id 3):\n    3|api | listening\n"
        );
    }

    #[test]
    fn a_reason_already_said_is_not_repeated_and_no_logs_is_said() {
        let text = NotReady {
            id: 7,
            why: "errored (too many restarts)",
            reason: "too many restarts",
            logs: Some(&[]),
            ..NotReady::default()
        }
        .report(0);
        assert_eq!(
            text,
            "id 7 is not ready: errored (too many restarts)\n  no log lines\n"
        );
    }
}
