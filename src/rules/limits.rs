//! Limits and defaults: the largest (and smallest) values the daemon
//! accepts for counts and sizes, each with the reason it is where it is;
//! what an app gets when it does not say (the daemon fills these in, the
//! CLI and its docs name them); and the instance count ([`Instances`]).

use std::fmt;
use std::str::FromStr;

use super::{InvalidInput, invalid};

/// Rotation below this size would rotate on nearly every line.
pub const MIN_LOG_MAX_BYTES: u64 = 1 << 10;
pub const MAX_LOG_MAX_BYTES: u64 = 1 << 40;
/// Most rotated files kept per log.
pub const MAX_LOG_MAX_FILES: u32 = 100;
/// A crash loop is stopped long before this; more is a typo.
pub const MAX_MAX_RESTARTS: u32 = 1_000_000;
/// More instances than this on one machine is a typo.
pub const MAX_INSTANCES: u32 = 1_024;

/// Most history lines one StreamLogs request may ask for per log.
pub const MAX_LOG_HISTORY_LINES: u32 = 100_000;

/// Consecutive unstable runs tolerated before an app is `errored`.
pub const DEFAULT_MAX_RESTARTS: u32 = 15;
/// A run shorter than this is unstable.
pub const DEFAULT_MIN_UPTIME_MS: u64 = 1_000;
/// Backoff before the 2nd consecutive unstable restart, doubling from there.
pub const DEFAULT_BACKOFF_INITIAL_MS: u64 = 100;
/// Backoff cap.
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 30_000;
/// Stop signal → SIGKILL.
pub const DEFAULT_KILL_TIMEOUT_MS: u64 = 5_000;
/// Rotation size of each log file.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 10 << 20;
/// Rotated files kept per log.
pub const DEFAULT_LOG_MAX_FILES: u32 = 5;
/// The signal that asks an app to stop.
pub const DEFAULT_STOP_SIGNAL: &str = "SIGTERM";
/// Quiet time after a file change before a watched app restarts.
pub const DEFAULT_WATCH_DELAY_MS: u64 = 1_000;

/// The start-rate limit (systemd's StartLimitBurst/StartLimitIntervalSec):
/// an instance restarted automatically more than this many times within
/// [`DEFAULT_START_LIMIT_INTERVAL_MS`] is errored, whatever `min_uptime`
/// says. Generous enough for an app that flaps once a second; what it
/// stops is the storm of an app that dies at once with `min_uptime: 0`.
pub const DEFAULT_START_LIMIT_BURST: u32 = 60;
pub const DEFAULT_START_LIMIT_INTERVAL_MS: u64 = 60_000;
/// 0 turns the start-rate limit off.
pub const MAX_START_LIMIT_BURST: u32 = 1_000_000;

/// The shortest period between two CPU/memory samples (`pmdaemond
/// --monitor-interval`, `pmd monit --interval`, StreamMetrics): CPU needs
/// two samples this far apart.
pub const MIN_SAMPLE_INTERVAL_MS: u64 = 200;

// Backoff starts below its cap.
const _: () = assert!(DEFAULT_BACKOFF_INITIAL_MS <= DEFAULT_BACKOFF_MAX_MS);

/// Checks a log rotation size against [`MIN_LOG_MAX_BYTES`] ..=
/// [`MAX_LOG_MAX_BYTES`].
pub fn check_log_max_size(flag: &str, bytes: u64) -> Result<u64, InvalidInput> {
    if bytes < MIN_LOG_MAX_BYTES {
        return Err(invalid(format!(
            "{flag}: {bytes} bytes is below the 1K minimum (rotating more often would rotate \
             on nearly every line)"
        )));
    }
    if bytes > MAX_LOG_MAX_BYTES {
        return Err(invalid(format!(
            "{flag}: {bytes} bytes is above the 1T maximum"
        )));
    }
    Ok(bytes)
}

/// A memory limit (`max_memory_restart`): more than 0 bytes. No limit is
/// no value, not 0.
pub fn check_max_memory(bytes: u64) -> Result<u64, InvalidInput> {
    if bytes == 0 {
        return Err(invalid(
            "must be more than 0 bytes: 0 would restart at once; leave it unset for no limit",
        ));
    }
    Ok(bytes)
}

/// How many instances an app runs, as PM2 writes it: a count, `max` (one
/// per CPU) or `-1` (one less than the CPUs, at least one). On the wire
/// (`AppSpec.instances`, `ScaleProcessRequest.instances`) `max` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instances {
    /// 1..=[`MAX_INSTANCES`].
    Count(u32),
    /// One per CPU.
    PerCpu,
    /// One less than the CPUs, at least one.
    AllCpusButOne,
}

impl Instances {
    /// A number as written: -1, 0 (one per CPU, as PM2 reads it), or a
    /// count (see [`check_instance_count`]).
    pub fn from_count(n: i64) -> Result<Self, InvalidInput> {
        match n {
            -1 => Ok(Instances::AllCpusButOne),
            0 => Ok(Instances::PerCpu),
            n => check_instance_count(n).map(Instances::Count),
        }
    }

    /// The wire form: 0 is `max`, -1 and counts as written.
    pub fn from_wire(n: i32) -> Result<Self, InvalidInput> {
        match n {
            0 => Ok(Instances::PerCpu),
            n => Self::from_count(n.into()),
        }
    }

    /// Inverse of [`Self::from_wire`].
    pub fn wire(self) -> i32 {
        match self {
            // At most MAX_INSTANCES, well inside i32.
            Instances::Count(n) => n as i32,
            Instances::PerCpu => 0,
            Instances::AllCpusButOne => -1,
        }
    }

    /// The number of instances on a machine with `cpus()` CPUs (asked
    /// only for `max` and -1: it reads cgroup files), at most
    /// [`MAX_INSTANCES`]: on a machine with more CPUs, `max` is the limit
    /// rather than a count the daemon would then refuse.
    pub fn resolve(self, cpus: impl FnOnce() -> u32) -> u32 {
        match self {
            Instances::Count(n) => n,
            Instances::PerCpu => cpus().clamp(1, MAX_INSTANCES),
            Instances::AllCpusButOne => cpus().saturating_sub(1).clamp(1, MAX_INSTANCES),
        }
    }
}

/// A count of instances: 1..=[`MAX_INSTANCES`].
pub fn check_instance_count(n: i64) -> Result<u32, InvalidInput> {
    match n {
        0 => Err(invalid(
            "0 is not an instance count; use `max` for one per CPU",
        )),
        n if n < 0 => Err(invalid(format!(
            "{n} is negative; use a number, `max` (one per CPU) or -1 (one less than the CPUs)"
        ))),
        n if n > i64::from(MAX_INSTANCES) => Err(invalid(format!(
            "{n} is more than the {MAX_INSTANCES} instances an app may have"
        ))),
        n => Ok(u32::try_from(n).unwrap_or(MAX_INSTANCES)),
    }
}

impl FromStr for Instances {
    type Err = InvalidInput;

    /// `max` (any case), `-1` or a count; surrounding whitespace is ignored.
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        let value = s.trim();
        if value.eq_ignore_ascii_case("max") {
            return Ok(Instances::PerCpu);
        }
        match value.parse::<i64>() {
            Ok(n) => Self::from_count(n),
            Err(_) => Err(invalid(format!(
                "{value:?} is not an instance count; use a number, `max` (one per CPU) or -1 \
                 (one less than the CPUs)"
            ))),
        }
    }
}

impl fmt::Display for Instances {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Instances::Count(n) => write!(f, "{n}"),
            Instances::PerCpu => f.write_str("max"),
            Instances::AllCpusButOne => f.write_str("-1"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_accept_pm2_forms() {
        assert_eq!("4".parse(), Ok(Instances::Count(4)));
        assert_eq!("max".parse(), Ok(Instances::PerCpu));
        assert_eq!(" MAX".parse(), Ok(Instances::PerCpu));
        assert_eq!("-1".parse(), Ok(Instances::AllCpusButOne));
        assert_eq!("1024".parse(), Ok(Instances::Count(MAX_INSTANCES)));
        // PM2 reads 0 as max (issue 11).
        assert_eq!("0".parse(), Ok(Instances::PerCpu));
        assert_eq!(Instances::from_count(0), Ok(Instances::PerCpu));
        for bad in ["-2", "1025", "four", ""] {
            assert!(bad.parse::<Instances>().is_err(), "{bad}");
        }
        let many = "2000".parse::<Instances>().unwrap_err().to_string();
        assert_eq!(many, "2000 is more than the 1024 instances an app may have");
        for text in ["4", "max", "-1"] {
            assert_eq!(text.parse::<Instances>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn instances_on_the_wire_and_on_a_machine() {
        for n in [0, -1, 1, 7, 1024] {
            assert_eq!(Instances::from_wire(n).unwrap().wire(), n);
        }
        assert_eq!(Instances::from_wire(0), Ok(Instances::PerCpu));
        assert!(Instances::from_wire(-4).is_err());
        assert!(Instances::from_wire(1025).is_err());
        assert_eq!(Instances::PerCpu.resolve(|| 8), 8);
        assert_eq!(Instances::AllCpusButOne.resolve(|| 8), 7);
        assert_eq!(Instances::AllCpusButOne.resolve(|| 1), 1);
        assert_eq!(Instances::PerCpu.resolve(|| 0), 1);
        // Found by proptest: `max` on a machine with more CPUs than an app
        // may have instances resolved to a count the daemon refused.
        assert_eq!(Instances::PerCpu.resolve(|| 4096), MAX_INSTANCES);
        assert_eq!(Instances::AllCpusButOne.resolve(|| 4096), MAX_INSTANCES);
        assert_eq!(
            Instances::Count(3).resolve(|| panic!("CPUs asked for a count")),
            3
        );
    }

    /// Every default is a value the daemon accepts.
    #[test]
    fn defaults_are_within_the_limits() {
        let count = |n: u32, max| crate::check_count("x", n.into(), max);
        assert_eq!(
            count(DEFAULT_MAX_RESTARTS, MAX_MAX_RESTARTS),
            Ok(DEFAULT_MAX_RESTARTS)
        );
        assert_eq!(
            count(DEFAULT_LOG_MAX_FILES, MAX_LOG_MAX_FILES),
            Ok(DEFAULT_LOG_MAX_FILES)
        );
        assert_eq!(
            check_log_max_size("x", DEFAULT_LOG_MAX_BYTES),
            Ok(DEFAULT_LOG_MAX_BYTES)
        );
        for ms in [
            DEFAULT_MIN_UPTIME_MS,
            DEFAULT_BACKOFF_INITIAL_MS,
            DEFAULT_BACKOFF_MAX_MS,
            DEFAULT_KILL_TIMEOUT_MS,
            DEFAULT_WATCH_DELAY_MS,
        ] {
            let duration = std::time::Duration::from_millis(ms);
            assert!(crate::check_duration("x", duration).is_ok(), "{ms}");
        }
        assert!(crate::parse_stop_signal("x", DEFAULT_STOP_SIGNAL).is_ok());
        assert_eq!(check_max_memory(1), Ok(1));
        assert!(
            check_max_memory(0)
                .unwrap_err()
                .0
                .starts_with("must be more than 0 bytes")
        );
    }
}
