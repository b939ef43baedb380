//! Durations, sizes, counts and signals as users write them on the command
//! line and in ecosystem files (`500ms`, `10M`, `SIGINT`). These functions
//! take the flag or field name and put it in their errors themselves.

use std::str::FromStr;
use std::time::Duration;

use super::{InvalidInput, invalid};

/// Upper bound for every configurable duration: anything longer is a typo.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Parses a duration flag: a plain integer is milliseconds (PM2's unit),
/// otherwise a humantime string such as `500ms`, `5s` or `2m`. `flag` names
/// the option in the error.
pub fn parse_duration(flag: &str, value: &str) -> Result<Duration, InvalidInput> {
    check_duration(flag, read_duration(flag, value, "500ms, 5s, 2m")?)
}

/// A plain integer as milliseconds, else a humantime string; `examples`
/// go into the error.
fn read_duration(flag: &str, value: &str, examples: &str) -> Result<Duration, InvalidInput> {
    let value = value.trim();
    let parsed = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        value.parse::<u64>().ok().map(Duration::from_millis)
    } else {
        humantime::parse_duration(value).ok()
    };
    parsed.ok_or_else(|| {
        invalid(format!(
            "{flag}: {value:?} is not a duration; use e.g. {examples}, or a number of milliseconds"
        ))
    })
}

/// Longest lifetime of a bearer token (`pmd token create --expires`).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// Parses a token lifetime (`--expires`): as [`parse_duration`] (also
/// `30d`, `12w`), more than zero, at most [`MAX_TOKEN_LIFETIME`].
pub fn parse_token_lifetime(flag: &str, value: &str) -> Result<Duration, InvalidInput> {
    check_token_lifetime(flag, read_duration(flag, value, "12h, 30d")?)
}

/// Rejects a zero or longer-than-[`MAX_TOKEN_LIFETIME`] token lifetime.
pub fn check_token_lifetime(flag: &str, duration: Duration) -> Result<Duration, InvalidInput> {
    if duration.is_zero() {
        return Err(invalid(format!("{flag}: must be more than 0")));
    }
    if duration > MAX_TOKEN_LIFETIME {
        return Err(invalid(format!(
            "{flag}: {} is longer than the 366-day maximum",
            humantime::format_duration(duration)
        )));
    }
    Ok(duration)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check_log_max_size;

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
}
