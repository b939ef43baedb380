//! Value rules that command-line flags and ecosystem files share: instance
//! counts, port specs, environment variable names, health-check probes.
//! Each function takes the name of the flag or field it checks (`--port`,
//! `` `port` ``) and puts it at the head of its error, so both callers
//! report the same thing the same way. Pure functions, no I/O; the daemon
//! checks everything again.

use pmdaemon_proto::{Instances, InvalidInput, PortSpec};

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

/// Where `{port}` stands for the instance's port in a probe target.
pub const PORT_PLACEHOLDER: &str = "{port}";

/// A port in a probe target: 1-65535, or `{port}`.
fn probe_port(what: &str, value: &str, port: &str) -> Result<(), String> {
    if port == PORT_PLACEHOLDER {
        return Ok(());
    }
    match port.parse::<u32>() {
        Ok(1..=65535) if port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(format!(
            "{what}: {value:?}: {port:?} is not a port (1-65535, or {PORT_PLACEHOLDER} for the \
             instance's port)"
        )),
    }
}

/// A host in a probe target: a name or IPv4 address, or an IPv6 address
/// in brackets.
fn probe_host(what: &str, value: &str, host: &str) -> Result<(), String> {
    let ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    };
    if ok {
        Ok(())
    } else if host.is_empty() {
        Err(format!("{what}: {value:?} has no host; e.g. 127.0.0.1"))
    } else {
        Err(format!(
            "{what}: {value:?}: {host:?} is not a host name or address (IPv6 goes in brackets: \
             [::1])"
        ))
    }
}

/// Splits `HOST:PORT` (`[V6]:PORT` too); the port is `None` when absent.
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => {
                let (host, rest) = authority.split_at(end + 1);
                (host, rest.strip_prefix(':'))
            }
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

fn no_blanks(what: &str, value: &str, example: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what}: is empty; e.g. {example}"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{what}: {value:?} contains spaces or control characters"
        ));
    }
    Ok(())
}

/// An HTTP probe: `http://HOST[:PORT][/PATH]`, where the port may be
/// `{port}`. Only plain HTTP: the daemon's probe speaks no TLS.
pub fn check_http_probe(what: &str, value: &str) -> Result<(), String> {
    const EXAMPLE: &str = "http://127.0.0.1:{port}/health";
    no_blanks(what, value, EXAMPLE)?;
    let scheme_end = value.find("://");
    let rest = match scheme_end.map(|i| (value[..i].to_ascii_lowercase(), &value[i + 3..])) {
        Some((scheme, rest)) if scheme == "http" => rest,
        Some((scheme, _)) if scheme == "https" => {
            return Err(format!(
                "{what}: {value:?}: the HTTP probe does not speak TLS; probe the app's plain \
                 HTTP port (e.g. {EXAMPLE}), or use a script probe such as `curl -fsS URL`"
            ));
        }
        Some((scheme, _)) => {
            return Err(format!(
                "{what}: {value:?}: the scheme is {scheme}, not http; e.g. {EXAMPLE} (for other \
                 protocols use a tcp or script probe)"
            ));
        }
        None => {
            return Err(format!(
                "{what}: {value:?} is not a URL: write http://HOST[:PORT]/PATH, e.g. {EXAMPLE}"
            ));
        }
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if authority.contains('@') {
        return Err(format!(
            "{what}: {value:?}: credentials in the URL are not supported; use a script probe"
        ));
    }
    let (host, port) = split_host_port(authority);
    probe_host(what, value, host)?;
    if let Some(port) = port {
        probe_port(what, value, port)?;
    }
    Ok(())
}

/// A TCP probe: `HOST:PORT`, where the port may be `{port}`.
pub fn check_tcp_probe(what: &str, value: &str) -> Result<(), String> {
    const EXAMPLE: &str = "127.0.0.1:{port}";
    no_blanks(what, value, EXAMPLE)?;
    if value.contains("://") {
        return Err(format!(
            "{what}: {value:?}: a tcp probe takes HOST:PORT without a scheme, e.g. {EXAMPLE} \
             (for a URL use an http probe)"
        ));
    }
    let (host, port) = split_host_port(value);
    let Some(port) = port else {
        return Err(format!(
            "{what}: {value:?} has no port: write HOST:PORT, e.g. {EXAMPLE}"
        ));
    };
    probe_host(what, value, host)?;
    probe_port(what, value, port)
}

/// An HTTP status an HTTP probe expects instead of any 2xx.
pub fn check_status_code(what: &str, code: u64) -> Result<u32, String> {
    match u32::try_from(code) {
        Ok(code @ 100..=599) => Ok(code),
        _ => Err(format!(
            "{what}: {code} is not an HTTP status code (100-599)"
        )),
    }
}

/// Shortest health-check interval and timeout (the daemon's limit too).
pub const MIN_HEALTH_INTERVAL_MS: u64 = 100;

/// Most consecutive failures a health check may wait for (the daemon's
/// limit too).
pub const MAX_HEALTH_RETRIES: u64 = 100;

/// A health-check interval or timeout: at least [`MIN_HEALTH_INTERVAL_MS`].
pub fn check_health_duration(what: &str, ms: u64) -> Result<u64, String> {
    if ms < MIN_HEALTH_INTERVAL_MS {
        return Err(format!(
            "{what}: {ms}ms is below the {MIN_HEALTH_INTERVAL_MS}ms minimum"
        ));
    }
    Ok(ms)
}

/// Consecutive failures of a health check: 1..=[`MAX_HEALTH_RETRIES`].
pub fn check_health_retries(what: &str, n: u64) -> Result<u32, String> {
    match n {
        0 => Err(format!("{what}: must be at least 1")),
        n if n > MAX_HEALTH_RETRIES => {
            Err(format!("{what}: {n} is more than {MAX_HEALTH_RETRIES}"))
        }
        n => Ok(u32::try_from(n).unwrap_or(u32::MAX)),
    }
}

/// A timeout longer than the interval, when both are given: `what` names
/// the timeout.
pub fn check_health_timeout(
    what: &str,
    check: &pmdaemon_proto::v1::HealthCheck,
) -> Result<(), String> {
    match (check.timeout_ms, check.interval_ms) {
        (Some(timeout), Some(interval)) if timeout > interval => {
            let human = |ms| humantime::format_duration(std::time::Duration::from_millis(ms));
            Err(format!(
                "{what}: {} is longer than the interval ({}); lower the timeout or raise the \
                 interval",
                human(timeout),
                human(interval)
            ))
        }
        _ => Ok(()),
    }
}

/// What a health check needs from the rest of its app: `{port}` in its
/// target needs a `port`; `expected_status` only goes with an HTTP probe;
/// some probe must be set.
pub fn check_health_check(
    what: &str,
    check: &pmdaemon_proto::v1::HealthCheck,
    app_has_port: bool,
) -> Result<(), String> {
    use pmdaemon_proto::v1::health_check::Probe;
    let target = match &check.probe {
        None => {
            return Err(format!(
                "{what}: no probe; give one of http (a URL), tcp (HOST:PORT) or script (a \
                 command)"
            ));
        }
        Some(Probe::Http(url)) => url,
        Some(Probe::Tcp(address)) => address,
        Some(Probe::Script(_)) => {
            if check.expected_status.is_some() {
                return Err(format!(
                    "{what}: an expected status goes with an http probe, not a script"
                ));
            }
            return Ok(());
        }
    };
    if matches!(check.probe, Some(Probe::Tcp(_))) && check.expected_status.is_some() {
        return Err(format!(
            "{what}: an expected status goes with an http probe, not a tcp one"
        ));
    }
    if target.contains(PORT_PLACEHOLDER) && !app_has_port {
        return Err(format!(
            "{what}: {target:?} uses {PORT_PLACEHOLDER}, but the app has no port; give it one \
             (3000, 3000-3003 or auto:4000-4100) or write the port in the probe"
        ));
    }
    Ok(())
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
        for bad in ["0", "-2", "1025", "four", ""] {
            let err = parse_instances("-i", bad).unwrap_err();
            assert!(err.starts_with("-i: "), "{bad}: {err}");
        }
        assert!(parse_instances("-i", "0").unwrap_err().contains("max"));
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

    #[test]
    fn http_probes_are_plain_http_urls() {
        for ok in [
            "http://127.0.0.1:{port}/health",
            "http://localhost/",
            "http://localhost",
            "HTTP://api.internal:8080/ready?full=1",
            "http://[::1]:{port}/health",
            "http://10.0.0.1:3000#x",
        ] {
            assert_eq!(check_http_probe("--health-check-url", ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("https://x/", "does not speak TLS"),
            ("localhost:3000/health", "is not a URL"),
            ("ftp://x/", "the scheme is ftp"),
            ("http://:3000/", "has no host"),
            ("http://x:0/", "is not a port"),
            ("http://x:70000/", "is not a port"),
            ("http://x:{prot}/", "is not a port"),
            ("http://a b/", "contains spaces"),
            ("http://u:p@x/", "credentials"),
            ("http://[zz]:1/", "is not a host"),
            ("", "is empty"),
        ] {
            let err = check_http_probe("--health-check-url", bad).unwrap_err();
            assert!(err.starts_with("--health-check-url: "), "{bad}: {err}");
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn tcp_probes_are_host_and_port() {
        for ok in ["127.0.0.1:{port}", "db:5432", "[::1]:6379"] {
            assert_eq!(check_tcp_probe("`tcp`", ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("localhost", "has no port"),
            ("tcp://x:1", "without a scheme"),
            (":80", "has no host"),
            ("x:http", "is not a port"),
            ("[::1]", "has no port"),
        ] {
            let err = check_tcp_probe("`tcp`", bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn health_checks_fit_their_app() {
        use pmdaemon_proto::v1::HealthCheck;
        use pmdaemon_proto::v1::health_check::Probe;
        let check = |probe: Probe, status: Option<u32>| HealthCheck {
            probe: Some(probe),
            expected_status: status,
            ..Default::default()
        };
        let url = Probe::Http("http://localhost:{port}/".into());
        assert!(check_health_check("h", &check(url.clone(), Some(204)), true).is_ok());
        let err = check_health_check("h", &check(url, None), false).unwrap_err();
        assert!(err.contains("the app has no port"), "{err}");
        let err = check_health_check("h", &check(Probe::Script("true".into()), Some(200)), true)
            .unwrap_err();
        assert!(err.contains("goes with an http probe"), "{err}");
        let err = check_health_check("h", &HealthCheck::default(), true).unwrap_err();
        assert!(err.contains("no probe"), "{err}");
        assert_eq!(check_status_code("s", 204), Ok(204));
        let timing = HealthCheck {
            interval_ms: Some(1000),
            timeout_ms: Some(2000),
            ..Default::default()
        };
        let err = check_health_timeout("--health-timeout", &timing).unwrap_err();
        assert_eq!(
            err,
            "--health-timeout: 2s is longer than the interval (1s); lower the timeout or raise \
             the interval"
        );
        assert!(check_health_duration("i", 99).is_err());
        assert_eq!(check_health_duration("i", 100), Ok(100));
        assert!(check_health_retries("r", 0).is_err() && check_health_retries("r", 101).is_err());
        assert_eq!(check_health_retries("r", 100), Ok(100));
        assert!(check_status_code("s", 99).is_err());
        assert!(check_status_code("s", 600).is_err());
    }
}
