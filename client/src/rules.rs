//! The value rules as the command line and ecosystem files apply them:
//! instance counts, port specs, environment variables, health checks, log
//! date formats and log types. The
//! rules themselves are the shared crate's (`pmdaemon_proto`), the same
//! code the daemon checks every request with; each function here takes
//! the flag or field it checks (`--port`, `` `port` ``) and puts it at the
//! head of the refusal, so flags and files report the same thing the same
//! way. The one rule of its own is the name of a file's environment
//! section, which only pmd reads. Pure functions, no I/O.

use pmdaemon_proto::{Instances, InvalidInput, PortSpec, health};

/// Puts `what` (a flag, a field) at the head of a shared rule's refusal.
fn named(what: &str) -> impl FnOnce(InvalidInput) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Most instances one app may have (`pmdaemon_proto::MAX_INSTANCES`), as
/// the CLI counts them.
pub const MAX_INSTANCES: i32 = pmdaemon_proto::MAX_INSTANCES as i32;

/// Most rotated log files kept per log (the daemon's limit too).
pub const MAX_LOG_FILES: u32 = pmdaemon_proto::MAX_LOG_MAX_FILES;

/// An instance count as PM2 writes it (`pmdaemon_proto::Instances`: `max`,
/// -1 or 1..=[`MAX_INSTANCES`]), in its wire form (`max` is 0).
pub fn parse_instances(what: &str, value: &str) -> Result<i32, String> {
    value
        .parse::<Instances>()
        .map(Instances::wire)
        .map_err(named(what))
}

/// The numeric part of [`parse_instances`].
pub fn check_instances(what: &str, n: i64) -> Result<i32, String> {
    Instances::from_count(n)
        .map(Instances::wire)
        .map_err(named(what))
}

/// A port spec (`pmdaemon_proto::PortSpec`: `3000`, `3000-3003` or
/// `auto:4000-4100`), returned as the daemon takes it (`auto:` in lower
/// case).
pub fn parse_port_spec(what: &str, value: &str) -> Result<String, String> {
    value
        .parse::<PortSpec>()
        .map(|spec| spec.to_string())
        .map_err(named(what))
}

/// Checks that `instances` instances fit the ports of `port` (a spec as
/// [`parse_port_spec`] returns it): one port serves one instance. `max` and
/// -1 (0 and -1 here) depend on the daemon's CPUs and are left to it.
pub fn check_port_room(what: &str, port: &str, instances: Option<i32>) -> Result<(), String> {
    let Some(wanted) = instances.and_then(|n| u32::try_from(n).ok()) else {
        return Ok(());
    };
    match port.parse::<PortSpec>() {
        Ok(spec) => spec.check_room(wanted).map_err(named(what)),
        Err(_) => Ok(()), // no port, or not a spec parse_port_spec made: the daemon says
    }
}

/// Where an app's port goes (`pmdaemon_proto::check_port_env`).
pub fn check_port_env(what: &str, name: &str) -> Result<(), String> {
    pmdaemon_proto::check_port_env(name).map_err(named(what))
}

/// PM2's `log_date_format` (`pmdaemon_proto::DateFormat`), as written.
pub fn check_date_format(what: &str, value: &str) -> Result<String, String> {
    value
        .parse::<pmdaemon_proto::DateFormat>()
        .map(|f| f.to_string())
        .map_err(named(what))
}

/// PM2's `cron_restart` (`pmdaemon_proto::CronSchedule`), as written
/// (trimmed).
pub fn check_cron(what: &str, value: &str) -> Result<String, String> {
    value
        .parse::<pmdaemon_proto::CronSchedule>()
        .map(|c| c.to_string())
        .map_err(named(what))
}

/// PM2's `log_type` (`pmdaemon_proto::LogType`) in its wire form.
pub fn parse_log_type(what: &str, value: &str) -> Result<i32, String> {
    use pmdaemon_proto::v1::LogType as Wire;
    Ok(match value.parse().map_err(named(what))? {
        pmdaemon_proto::LogType::Json => Wire::Json,
        pmdaemon_proto::LogType::Text => Wire::Text,
    } as i32)
}

/// The variable that receives the instance index
/// (`pmdaemon_proto::check_instance_var`).
pub fn check_instance_var(what: &str, name: &str) -> Result<(), String> {
    pmdaemon_proto::check_instance_var(name).map_err(named(what))
}

/// The variable raised by the instance index
/// (`pmdaemon_proto::check_increment_var`).
pub fn check_increment_var(what: &str, name: &str) -> Result<(), String> {
    pmdaemon_proto::check_increment_var(name).map_err(named(what))
}

/// One exit code of `stop_exit_codes` (0-255).
pub fn check_stop_exit_code(what: &str, code: i64) -> Result<i32, String> {
    pmdaemon_proto::check_stop_exit_code(code).map_err(named(what))
}

/// One variable of an app's environment (`pmdaemon_proto::check_env_var`).
pub fn check_env_var(what: &str, name: &str, value: &str) -> Result<(), String> {
    pmdaemon_proto::check_env_var(name, value).map_err(named(what))
}

/// The name of an ecosystem file's environment section (`env_NAME`), as
/// `--env NAME` selects it: non-empty, letters, digits, `_`, `-` and `.`.
pub fn check_environment_name(what: &str, name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        Ok(())
    } else {
        Err(format!(
            "{what}: {name:?} is not an environment name such as production (letters, digits, \
             '_', '-' and '.')"
        ))
    }
}

/// An HTTP probe (`pmdaemon_proto::health::parse_http_url`):
/// `http://HOST[:PORT][/PATH]`, where the port may be `{port}`.
pub fn check_http_probe(what: &str, value: &str) -> Result<(), String> {
    health::parse_http_url(value, true)
        .map(drop)
        .map_err(named(what))
}

/// A TCP probe (`pmdaemon_proto::health::parse_tcp_target`): `HOST:PORT`,
/// where the port may be `{port}`.
pub fn check_tcp_probe(what: &str, value: &str) -> Result<(), String> {
    health::parse_tcp_target(value, true)
        .map(drop)
        .map_err(named(what))
}

/// A script probe: a shell command.
pub fn check_script_probe(what: &str, value: &str) -> Result<(), String> {
    health::check_probe_script(value).map_err(named(what))
}

/// An HTTP status an HTTP probe expects instead of any 2xx.
pub fn check_status_code(what: &str, code: u64) -> Result<u32, String> {
    health::check_expected_status(code)
        .map(u32::from)
        .map_err(named(what))
}

/// A health-check interval or timeout, in milliseconds.
pub fn check_health_duration(what: &str, ms: u64) -> Result<u64, String> {
    health::check_probe_interval(ms).map_err(named(what))
}

/// Consecutive failures of a health check.
pub fn check_health_retries(what: &str, n: u64) -> Result<u32, String> {
    health::check_retries(n).map_err(named(what))
}

/// A timeout longer than the interval, when both are given.
pub fn check_health_timeout(
    what: &str,
    check: &pmdaemon_proto::v1::HealthCheck,
) -> Result<(), String> {
    match (check.timeout_ms, check.interval_ms) {
        (Some(timeout), Some(interval)) => {
            health::check_timeout_within_interval(timeout, interval).map_err(named(what))
        }
        _ => Ok(()),
    }
}

/// What a health check needs from itself and the rest of its app: one
/// probe, `expected_status` only with an HTTP probe, and a `port` for
/// `{port}` to stand for.
pub fn check_health_check(
    what: &str,
    check: &pmdaemon_proto::v1::HealthCheck,
    app_has_port: bool,
) -> Result<(), String> {
    health::probe_of(check).map_err(named(what))?;
    let probe = health::probe_text(check).unwrap_or_default();
    health::check_port_placeholder(probe, app_has_port).map_err(named(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_accept_pm2_forms() {
        assert_eq!(parse_instances("-i", "4"), Ok(4));
        assert_eq!(parse_instances("-i", "max"), Ok(0));
        assert_eq!(parse_instances("-i", "MAX"), Ok(0));
        assert_eq!(parse_instances("-i", "-1"), Ok(-1));
        // PM2 reads 0 as max (issue 11).
        assert_eq!(parse_instances("-i", "0"), Ok(0));
        for bad in ["-2", "1025", "four", ""] {
            let err = parse_instances("-i", bad).unwrap_err();
            assert!(err.starts_with("-i: "), "{bad}: {err}");
        }
    }

    #[test]
    fn port_specs_take_the_flag_name() {
        assert_eq!(parse_port_spec("--port", "3000"), Ok("3000".into()));
        assert_eq!(
            parse_port_spec("--port", "AUTO:4000-4100"),
            Ok("auto:4000-4100".into())
        );
        for bad in ["0", "65536", "3003-3000", "auto:4000", "", "http", "+80"] {
            let err = parse_port_spec("--port", bad).unwrap_err();
            assert!(err.starts_with("--port: invalid port"), "{bad}: {err}");
        }
        assert_eq!(check_port_room("--port", "3000-3003", Some(4)), Ok(()));
        assert_eq!(check_port_room("--port", "3000", Some(0)), Ok(()));
        assert_eq!(check_port_room("--port", "3000", Some(-1)), Ok(()));
        assert_eq!(check_port_room("--port", "", Some(4)), Ok(()));
        let err = check_port_room("--port", "3000", Some(2)).unwrap_err();
        assert!(
            err.starts_with("--port: port 3000 with 2 instances: one port serves one instance"),
            "{err}"
        );
    }

    #[test]
    fn env_names() {
        assert!(check_port_env("x", "HTTP_PORT").is_ok());
        for reserved in ["PATH", "PMD_ID", "NODE_APP_INSTANCE", "PMDAEMON_HOME"] {
            let err = check_port_env("--port-env", reserved).unwrap_err();
            assert!(
                err.starts_with("--port-env:") && err.contains(reserved),
                "{err}"
            );
        }
        let err = check_port_env("`port_env`", "1P").unwrap_err();
        assert!(
            err.starts_with("`port_env`: \"1P\" is not an environment variable name"),
            "{err}"
        );
        assert!(check_env_var("--env", "A", "1").is_ok());
        let err = check_env_var("`env`", "A=B", "1").unwrap_err();
        assert!(err.starts_with("`env`: \"A=B\" is not a valid"), "{err}");
        assert!(check_environment_name("x", "production").is_ok());
        assert!(check_environment_name("x", "pre-prod.eu_1").is_ok());
        for bad in ["", "a=b", "a b", "a/b"] {
            assert!(check_environment_name("x", bad).is_err(), "{bad}");
        }
    }

    /// The health rules are `pmdaemon_proto::health`'s; here each refusal
    /// is checked to carry its flag.
    #[test]
    fn health_checks_take_the_flag_name() {
        use pmdaemon_proto::v1::HealthCheck;
        use pmdaemon_proto::v1::health_check::Probe;
        assert_eq!(
            check_http_probe("--health-check-url", "http://127.0.0.1:{port}/health"),
            Ok(())
        );
        let err = check_http_probe("--health-check-url", "https://x/").unwrap_err();
        assert!(
            err.starts_with(
                "--health-check-url: \"https://x/\": the HTTP probe does not speak TLS"
            ),
            "{err}"
        );
        assert_eq!(check_tcp_probe("`tcp`", "[::1]:6379"), Ok(()));
        let err = check_tcp_probe("`tcp`", "localhost").unwrap_err();
        assert!(
            err.starts_with("`tcp`: \"localhost\" has no port: write HOST:PORT"),
            "{err}"
        );
        let err = check_script_probe("--health-check-script", " ").unwrap_err();
        assert!(err.starts_with("--health-check-script: is empty"), "{err}");
        assert_eq!(check_status_code("s", 204), Ok(204));
        assert!(
            check_status_code("s", 600)
                .unwrap_err()
                .starts_with("s: 600")
        );
        assert_eq!(check_health_duration("i", 100), Ok(100));
        assert_eq!(
            check_health_duration("i", 99).unwrap_err(),
            "i: 99ms is below the 100ms minimum"
        );
        assert_eq!(check_health_retries("r", 100), Ok(100));
        assert!(
            check_health_retries("r", 0)
                .unwrap_err()
                .starts_with("r: 0 is outside")
        );

        let check = |probe: Probe, status: Option<u32>| HealthCheck {
            probe: Some(probe),
            expected_status: status,
            ..Default::default()
        };
        let url = Probe::Http("http://localhost:{port}/".into());
        assert!(check_health_check("h", &check(url.clone(), Some(204)), true).is_ok());
        let err = check_health_check("h", &check(url, None), false).unwrap_err();
        assert!(
            err.starts_with("h: ") && err.contains("the app has no port"),
            "{err}"
        );
        let err = check_health_check("h", &check(Probe::Script("true".into()), Some(200)), true)
            .unwrap_err();
        assert!(err.contains("goes with an http probe"), "{err}");
        let err = check_health_check("h", &HealthCheck::default(), true).unwrap_err();
        assert!(err.starts_with("h: no probe"), "{err}");
        let timing = HealthCheck {
            interval_ms: Some(1000),
            timeout_ms: Some(2000),
            ..Default::default()
        };
        let err = check_health_timeout("--health-timeout", &timing).unwrap_err();
        assert_eq!(
            err,
            "--health-timeout: timeout (2s) is longer than interval (1s): lower the timeout or \
             raise the interval"
        );
        let untimed = HealthCheck {
            timeout_ms: Some(2000),
            ..Default::default()
        };
        assert_eq!(check_health_timeout("--health-timeout", &untimed), Ok(()));
    }
}
