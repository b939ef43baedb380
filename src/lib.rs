//! The `pmdaemon.v1` API crate: the generated protobuf/gRPC module, the
//! descriptor set for reflection, and the small rules that the daemon and the
//! CLI must agree on (names, targets, durations, sizes, signals, state words,
//! where `PMDAEMON_HOME` and the socket are).
//!
//! Layout of the workspace:
//! - this crate (`pmdaemon-proto`): contract + shared validation;
//! - `server/` (`pmdaemond`): the daemon, `run(listener, shutdown)`;
//! - `client/` (`pmd`): the CLI;
//! - `tests/`: end-to-end tests against the real binaries.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub mod v1 {
    #![allow(clippy::all)]
    tonic::include_proto!("pmdaemon.v1");
}

/// Encoded `FileDescriptorSet` of the contract, for gRPC reflection: the
/// pmdaemon.v1 file without its `google.api.http` options (see build.rs).
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("pmdaemon_descriptor");

/// Version of the workspace, reported by `pmd version` and `Ping`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Environment variable naming the state directory.
pub const HOME_ENV: &str = "PMDAEMON_HOME";

/// The state directory: `$PMDAEMON_HOME`, else `~/.pmdaemon`.
pub fn home_dir() -> PathBuf {
    if let Some(home) = std::env::var_os(HOME_ENV).filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    let user_home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into());
    PathBuf::from(user_home).join(".pmdaemon")
}

/// The daemon's gRPC Unix socket inside `home`.
pub fn socket_path(home: &std::path::Path) -> PathBuf {
    home.join("pmd.sock")
}

/// A validation failure of user input, naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

fn invalid(msg: impl Into<String>) -> InvalidInput {
    InvalidInput(msg.into())
}

/// Longest app name; names become file names (`logs/NAME-ID-out.log`).
pub const MAX_NAME_LEN: usize = 64;

/// Checks an app name: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`, not `all`, not all
/// digits (those are targets of their own).
pub fn validate_name(name: &str) -> Result<(), InvalidInput> {
    let rule = "names are 1-64 characters of letters, digits, '.', '_' and '-', starting with a letter or digit";
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err(invalid(format!("app name is empty: {rule}")));
    };
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(format!(
            "app name {name:?} is {} characters long: {rule}",
            name.len()
        )));
    }
    if !first.is_ascii_alphanumeric()
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(invalid(format!("invalid app name {name:?}: {rule}")));
    }
    if name == "all" {
        return Err(invalid("'all' cannot be an app name: it selects every app"));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!(
            "app name {name:?} is all digits, which would read as a process id"
        )));
    }
    Ok(())
}

/// What a `target` string selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    All,
    Id(u32),
    Name(String),
}

impl FromStr for Target {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "all" {
            return Ok(Target::All);
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(Target::Id)
                .map_err(|_| invalid(format!("process id {s} is out of range")));
        }
        validate_name(s).map_err(|e| invalid(format!("invalid target: {e}")))?;
        Ok(Target::Name(s.to_string()))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::All => f.write_str("all"),
            Target::Id(id) => write!(f, "{id}"),
            Target::Name(name) => f.write_str(name),
        }
    }
}

/// Upper bound for every configurable duration: anything longer is a typo.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Parses a duration flag: a plain integer is milliseconds (PM2's unit),
/// otherwise a humantime string such as `500ms`, `5s` or `2m`. `flag` names
/// the option in the error.
pub fn parse_duration(flag: &str, value: &str) -> Result<Duration, InvalidInput> {
    let value = value.trim();
    let parsed = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        value.parse::<u64>().ok().map(Duration::from_millis)
    } else {
        humantime::parse_duration(value).ok()
    };
    let Some(duration) = parsed else {
        return Err(invalid(format!(
            "{flag}: {value:?} is not a duration; use e.g. 500ms, 5s, 2m, or a number of milliseconds"
        )));
    };
    check_duration(flag, duration)
}

/// Rejects durations above [`MAX_DURATION`].
pub fn check_duration(flag: &str, duration: Duration) -> Result<Duration, InvalidInput> {
    if duration > MAX_DURATION {
        return Err(invalid(format!(
            "{flag}: {} is longer than the 24h maximum",
            humantime::format_duration(duration)
        )));
    }
    Ok(duration)
}

/// Parses a size: bytes, or a number with K/M/G/T (binary units, optional
/// trailing `B`/`iB`), e.g. `10M`, `512KiB`, `1.5G` (rounded down to a
/// byte).
pub fn parse_size(flag: &str, value: &str) -> Result<u64, InvalidInput> {
    let v = value.trim();
    let num_end = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(num_end);
    let err = || {
        invalid(format!(
            "{flag}: {value:?} is not a size; use e.g. 10M, 1.5G, 512K or a number of bytes"
        ))
    };
    let mult: u128 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return Err(err()),
    };
    let (whole, fraction) = num.split_once('.').unwrap_or((num, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') || fraction.len() > 9 {
        return Err(err());
    }
    // A fraction of a byte is no size.
    if mult == 1 && !fraction.is_empty() {
        return Err(err());
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| err())?
    };
    let fraction_value: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| err())?
    };
    let scale = 10u128.pow(fraction.len() as u32);
    let bytes = whole
        .checked_mul(mult)
        .and_then(|b| b.checked_add(fraction_value * mult / scale))
        .ok_or_else(err)?;
    u64::try_from(bytes).map_err(|_| invalid(format!("{flag}: {value:?} is too large")))
}

/// Rotation below this size would rotate on nearly every line.
pub const MIN_LOG_MAX_BYTES: u64 = 1 << 10;
pub const MAX_LOG_MAX_BYTES: u64 = 1 << 40;
/// Most rotated files kept per log.
pub const MAX_LOG_MAX_FILES: u32 = 100;
/// A crash loop is stopped long before this; more is a typo.
pub const MAX_MAX_RESTARTS: u32 = 1_000_000;
/// Why an app's port may not go in environment variable `name`
/// (`port_env`): the daemon sets it itself (`PMD_*`, `NODE_APP_INSTANCE`,
/// `PMDAEMON_HOME`), or replacing it breaks the app's start (`PATH`,
/// `HOME`). None when the name is free.
pub fn reserved_port_env(name: &str) -> Option<&'static str> {
    if name.starts_with("PMD_") || name == "NODE_APP_INSTANCE" || name == HOME_ENV {
        Some("the daemon sets it for every app")
    } else if matches!(
        name,
        "PATH" | "HOME" | "USER" | "SHELL" | "LD_LIBRARY_PATH" | "LD_PRELOAD"
    ) {
        Some("the app and its interpreter need it as it is")
    } else {
        None
    }
}

/// Most history lines one StreamLogs request may ask for per log.
pub const MAX_LOG_HISTORY_LINES: u32 = 100_000;

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

/// Checks a count against `max`, naming the flag or field.
pub fn check_count(flag: &str, n: u64, max: u32) -> Result<u32, InvalidInput> {
    u32::try_from(n)
        .ok()
        .filter(|&n| n <= max)
        .ok_or_else(|| invalid(format!("{flag}: {n} is more than the {max} maximum")))
}

/// Parses a signal name (`SIGTERM`, `TERM`, `term`) or number (`15`). SIGKILL
/// and SIGSTOP are refused as stop signals by [`parse_stop_signal`].
pub fn parse_signal(value: &str) -> Result<nix::sys::signal::Signal, InvalidInput> {
    use nix::sys::signal::Signal;
    let v = value.trim();
    let sig = if let Ok(n) = v.parse::<i32>() {
        Signal::try_from(n).ok()
    } else {
        let upper = v.to_ascii_uppercase();
        let full = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        Signal::from_str(&full).ok()
    };
    sig.ok_or_else(|| {
        invalid(format!(
            "{v:?} is not a signal; use a name such as SIGTERM, SIGINT, SIGQUIT or SIGHUP"
        ))
    })
}

/// A signal that may be sent to ask an app to stop.
pub fn parse_stop_signal(
    flag: &str,
    value: &str,
) -> Result<nix::sys::signal::Signal, InvalidInput> {
    use nix::sys::signal::Signal;
    let sig = parse_signal(value).map_err(|e| invalid(format!("{flag}: {e}")))?;
    if matches!(
        sig,
        Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGCONT | Signal::SIGCHLD
    ) {
        return Err(invalid(format!(
            "{flag}: {sig} does not stop a process; use SIGTERM, SIGINT, SIGQUIT or SIGHUP"
        )));
    }
    Ok(sig)
}

impl v1::ProcessState {
    /// The word users see and scripts match (`pmd list -o json` `status`).
    pub fn word(self) -> &'static str {
        use v1::ProcessState as S;
        match self {
            S::Unspecified => "unknown",
            S::Starting => "starting",
            S::Online => "online",
            S::Stopping => "stopping",
            S::Stopped => "stopped",
            S::Errored => "errored",
            S::WaitingRestart => "waiting-restart",
        }
    }

    /// Inverse of [`Self::word`].
    pub fn from_word(word: &str) -> Option<Self> {
        use v1::ProcessState as S;
        [
            S::Starting,
            S::Online,
            S::Stopping,
            S::Stopped,
            S::Errored,
            S::WaitingRestart,
        ]
        .into_iter()
        .find(|s| s.word() == word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_file_name_rule() {
        for ok in ["api", "a", "web-1", "x.y_z", "9lives"] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in [
            "",
            "all",
            "123",
            "-x",
            ".hidden",
            "a/b",
            "a b",
            "é",
            long.as_str(),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_parse_to_all_id_or_name() {
        assert_eq!("all".parse(), Ok(Target::All));
        assert_eq!("12".parse(), Ok(Target::Id(12)));
        assert_eq!("api".parse(), Ok(Target::Name("api".into())));
        assert!("99999999999".parse::<Target>().is_err());
        assert!("../x".parse::<Target>().is_err());
    }

    #[test]
    fn durations_accept_ms_and_units_and_reject_absurd() {
        assert_eq!(parse_duration("--x", "250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("--x", "2s"), Ok(Duration::from_secs(2)));
        assert_eq!(
            parse_duration("--x", "500ms"),
            Ok(Duration::from_millis(500))
        );
        assert!(parse_duration("--x", "-1").unwrap_err().0.contains("--x"));
        assert!(parse_duration("--x", "3d").is_err());
        assert!(parse_duration("--x", "soon").is_err());
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(parse_size("--s", "10M"), Ok(10 << 20));
        assert_eq!(parse_size("--s", "512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("--s", "42"), Ok(42));
        assert!(parse_size("--s", "-5").is_err());
        assert!(parse_size("--s", "99999999999999G").is_err());
        assert_eq!(parse_size("--s", "1T"), Ok(1 << 40));
        assert_eq!(parse_size("--s", "1.5M"), Ok(3 << 19));
        assert_eq!(parse_size("--s", "0.5k"), Ok(512));
        for bad in ["1.2.3M", ".", "M", "1,5M", "1.5X", "1.5", "2.5B"] {
            assert!(parse_size("--s", bad).is_err(), "{bad}");
        }
        let huge = parse_size("--s", "99999999T").unwrap_err().0;
        assert!(huge.contains("too large"), "{huge}");
        assert!(check_log_max_size("--s", 100).is_err());
        assert!(check_log_max_size("--s", 1 << 41).is_err());
        assert_eq!(check_log_max_size("--s", 1 << 40), Ok(1 << 40));
        assert_eq!(check_count("--n", 5, 5), Ok(5));
        assert!(check_count("--n", 6, 5).unwrap_err().0.starts_with("--n:"));
    }

    #[test]
    fn signals_by_name_or_number() {
        use nix::sys::signal::Signal;
        assert_eq!(parse_signal("SIGINT"), Ok(Signal::SIGINT));
        assert_eq!(parse_signal("term"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_stop_signal("--stop-signal", "SIGSTOP").is_err());
    }

    #[test]
    fn state_words_round_trip() {
        for w in [
            "starting",
            "online",
            "stopping",
            "stopped",
            "errored",
            "waiting-restart",
        ] {
            assert_eq!(v1::ProcessState::from_word(w).unwrap().word(), w);
        }
    }
}
