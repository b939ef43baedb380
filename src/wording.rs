//! Words the daemon and `pmd` both print, written once so that both say the
//! same thing the same way: compact ages, the report on an instance that is
//! not ready (the daemon's WaitReady failure; `pmd`'s details on a failed
//! reload or apply), and the bounds on how much of a caller's input an
//! error message echoes.

use std::fmt;
use std::time::Duration;

/// The longest error message the daemon sends, in bytes. A gRPC status
/// travels in the `grpc-message` header, and clients refuse headers over
/// 8-16 KiB: a refusal that echoed a 2 MB app name reached the caller as a
/// transport error ("metadata size exceeds hard limit") instead of the
/// refusal, after the daemon had built a 17 MB escaped string for it.
pub const MAX_MESSAGE_BYTES: usize = 2048;

/// Characters of a caller's value that [`Quoted`] shows before it elides
/// the rest.
pub const MAX_QUOTED_CHARS: usize = 80;

/// `msg` cut to [`MAX_MESSAGE_BYTES`] on a character boundary, saying so.
pub fn bounded(mut msg: String) -> String {
    if msg.len() <= MAX_MESSAGE_BYTES {
        return msg;
    }
    let total = msg.len();
    let mut cut = MAX_MESSAGE_BYTES;
    while !msg.is_char_boundary(cut) {
        cut -= 1;
    }
    msg.truncate(cut);
    msg.push_str(&format!("... (message cut: {total} bytes in all)"));
    msg
}

/// A caller's value in an error message: quoted and escaped as `{:?}`
/// would, but only its first [`MAX_QUOTED_CHARS`] characters, then its
/// size. Costs no more than that to format, whatever the value's size.
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(MAX_QUOTED_CHARS) {
            None => write!(f, "{:?}", self.0),
            Some((end, _)) => write!(f, "{:?}... ({} bytes)", &self.0[..end], self.0.len()),
        }
    }
}

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
    fn echoed_input_is_bounded() {
        assert_eq!(Quoted("api").to_string(), "\"api\"");
        let huge = "\u{1}".repeat(2 << 20);
        let shown = Quoted(&huge).to_string();
        assert!(shown.len() < 8 * MAX_QUOTED_CHARS, "{}", shown.len());
        assert!(
            shown.ends_with(&format!("... ({} bytes)", huge.len())),
            "{shown}"
        );

        assert_eq!(bounded("short".into()), "short");
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = bounded(long.clone());
        assert!(cut.len() < MAX_MESSAGE_BYTES + 64, "{}", cut.len());
        assert!(cut.ends_with(&format!("(message cut: {} bytes in all)", long.len())));
    }

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
