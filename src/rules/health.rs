//! Health checks: what a probe target may be (an `http://` URL, a TCP
//! `HOST:PORT`, a script), where `{port}` may stand for an instance's port,
//! the timing limits and defaults, and which parts go together. The daemon
//! runs the probes (`server/src/health/`); both it and the CLI check a
//! check with these rules.
//!
//! The refusals of a probe target start with the target itself (`"x:1" has
//! no port: ...`), so a caller puts only its field in front (`tcp`,
//! `--health-check-tcp:`).

use super::{InvalidInput, MAX_DURATION, invalid};
use crate::v1;

/// Time between the end of one probe and the start of the next.
pub const DEFAULT_INTERVAL_MS: u64 = 5_000;
/// How long one probe may take before it counts as failed (never more than
/// the interval: a shorter interval shortens the default).
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;
/// Consecutive failures that make an instance unhealthy (3: one slow
/// answer or dropped connection is not an outage).
pub const DEFAULT_RETRIES: u32 = 3;
/// Failures this long after a start do not count (0: from the start).
pub const DEFAULT_START_PERIOD_MS: u64 = 0;
/// Shortest interval and timeout: probing faster than this measures the
/// prober more than the app.
pub const MIN_INTERVAL_MS: u64 = 100;
/// Longest interval, timeout and start period (24 h, as every duration);
/// more is a typo.
pub const MAX_DURATION_MS: u64 = MAX_DURATION.as_millis() as u64;
/// More consecutive failures than this is a typo.
pub const MAX_RETRIES: u32 = 100;

// The default timing is a timing the rules below accept.
const _: () = assert!(
    MIN_INTERVAL_MS <= DEFAULT_TIMEOUT_MS
        && DEFAULT_TIMEOUT_MS <= DEFAULT_INTERVAL_MS
        && DEFAULT_INTERVAL_MS <= MAX_DURATION_MS
        && 1 <= DEFAULT_RETRIES
        && DEFAULT_RETRIES <= MAX_RETRIES
);

/// Where an instance's port goes in an HTTP URL or a TCP target.
pub const PORT_PLACEHOLDER: &str = "{port}";

const HTTP_EXAMPLE: &str = "http://127.0.0.1:{port}/health";
const TCP_EXAMPLE: &str = "127.0.0.1:{port}";

/// The parts of an `http://` URL that a probe needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl<'a> {
    /// Host name or address, IPv6 without brackets.
    pub host: &'a str,
    /// 0 where the URL has `{port}` (a template).
    pub port: u16,
    /// `host[:port]` as written: the `Host` header.
    pub authority: &'a str,
    /// Path and query, at least `/`; the fragment is dropped.
    pub path: String,
}

/// Splits an `http://HOST[:PORT][/PATH]` URL (plain HTTP: the probe speaks
/// no TLS). With `template`, `{port}` may stand for the port (returned as
/// port 0) and appear in the path; in the host never. Whitespace and
/// control characters are refused: the URL is written into the request as
/// is.
pub fn parse_http_url(url: &str, template: bool) -> Result<HttpUrl<'_>, InvalidInput> {
    no_blanks(url, HTTP_EXAMPLE)?;
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(invalid(format!(
            "{url:?} is not a URL: write http://HOST[:PORT]/PATH (it must start with http://), \
             e.g. {HTTP_EXAMPLE}"
        )));
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(invalid(format!(
            "{url:?}: the HTTP probe does not speak TLS, https is not supported yet; use a tcp \
             check or a script with curl (such as `curl -fsS URL`), or probe the app's plain \
             HTTP port (e.g. {HTTP_EXAMPLE})"
        )));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(invalid(format!(
            "{url:?}: the scheme is {}, not http: the URL must start with http://, e.g. \
             {HTTP_EXAMPLE} (for other protocols use a tcp or script probe)",
            scheme.to_ascii_lowercase()
        )));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err(invalid(format!(
            "{url:?}: credentials in the URL are not supported; use a script probe with curl"
        )));
    }
    let (host, port) = split_host_port(url, authority, template, Some(80))?;
    let tail = tail.split('#').next().unwrap_or("");
    let path = if tail.starts_with('/') {
        tail.to_string()
    } else {
        format!("/{tail}")
    };
    Ok(HttpUrl {
        host,
        port,
        authority,
        path,
    })
}

/// Splits a TCP target `HOST:PORT` (`[v6]:PORT`); with `template`, the port
/// may be `{port}` (returned as 0).
pub fn parse_tcp_target(target: &str, template: bool) -> Result<(&str, u16), InvalidInput> {
    no_blanks(target, TCP_EXAMPLE)?;
    if target.contains("://") {
        return Err(invalid(format!(
            "{target:?}: a tcp probe takes HOST:PORT without a scheme, e.g. {TCP_EXAMPLE} (for \
             a URL use an http probe)"
        )));
    }
    split_host_port(target, target, template, None)
}

/// A script probe: a shell command, not blank, without NUL.
pub fn check_probe_script(command: &str) -> Result<(), InvalidInput> {
    if command.trim().is_empty() {
        return Err(invalid(
            "is empty: give a shell command that exits 0 when the app is healthy",
        ));
    }
    if command.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    Ok(())
}

/// Refuses an empty target and one with whitespace or control characters.
fn no_blanks(value: &str, example: &str) -> Result<(), InvalidInput> {
    if value.is_empty() {
        return Err(invalid(format!("{value:?} is empty; e.g. {example}")));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(format!(
            "{value:?} contains spaces, other whitespace or control characters; percent-encode \
             them in a URL's path"
        )));
    }
    Ok(())
}

/// `host[:port]` of `whole` (named in errors): IPv6 in brackets, the port
/// required unless a default is given. The placeholder, allowed with
/// `template`, reads as port 0.
fn split_host_port<'a>(
    whole: &str,
    text: &'a str,
    template: bool,
    default_port: Option<u16>,
) -> Result<(&'a str, u16), InvalidInput> {
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(invalid(format!(
                "{whole:?}: an IPv6 address opened with '[' is not closed with ']'"
            )));
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid(format!(
                "{whole:?}: \"[{host}]\" is not a host: {host} is not an IPv6 address"
            )));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => {
                    return Err(invalid(format!(
                        "{whole:?}: unexpected {after:?} after the IPv6 address"
                    )));
                }
            },
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err(invalid(format!(
                    "{whole:?}: an IPv6 address needs brackets, such as [::1]:8080"
                )));
            }
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(invalid(format!(
            "{whole:?} has no host: the host is missing, such as 127.0.0.1 or localhost"
        )));
    }
    if host.contains(PORT_PLACEHOLDER) {
        return Err(invalid(format!(
            "{whole:?}: {PORT_PLACEHOLDER} can only stand for the port, not in the host"
        )));
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(invalid(format!(
            "{whole:?}: {host:?} is not a host name or address (IPv6 goes in brackets: [::1])"
        )));
    }
    let ports = if template {
        format!("1-65535, or {PORT_PLACEHOLDER} for the instance's port")
    } else {
        "1-65535".to_string()
    };
    let port = match port {
        None => default_port.ok_or_else(|| {
            invalid(format!(
                "{whole:?} has no port: write HOST:PORT, e.g. {host}:3000 or \
                 {host}:{PORT_PLACEHOLDER} (the port is missing)"
            ))
        })?,
        Some(p) if template && p == PORT_PLACEHOLDER => 0,
        Some("") => {
            return Err(invalid(format!(
                "{whole:?}: the port after ':' is missing; give {ports}"
            )));
        }
        Some(p) => match p.parse::<u16>() {
            Ok(0) => {
                return Err(invalid(format!(
                    "{whole:?}: \"0\" is not a port: port 0 cannot be probed; give {ports}"
                )));
            }
            Ok(n) if p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return Err(invalid(format!(
                    "{whole:?}: {p:?} is not a port: give {ports}"
                )));
            }
        },
    };
    Ok((host, port))
}

/// The HTTP status an HTTP probe expects instead of any 2xx.
pub fn check_expected_status(code: u64) -> Result<u16, InvalidInput> {
    match u16::try_from(code) {
        Ok(code @ 100..=599) => Ok(code),
        _ => Err(invalid(format!(
            "{code} is not an HTTP status code (100-599)"
        ))),
    }
}

/// A probe interval or timeout: [`MIN_INTERVAL_MS`] ..= [`MAX_DURATION_MS`].
pub fn check_probe_interval(ms: u64) -> Result<u64, InvalidInput> {
    if ms < MIN_INTERVAL_MS {
        return Err(invalid(format!(
            "{ms}ms is below the {} minimum",
            human_ms(MIN_INTERVAL_MS)
        )));
    }
    check_start_period(ms)
}

/// A start period: at most [`MAX_DURATION_MS`].
pub fn check_start_period(ms: u64) -> Result<u64, InvalidInput> {
    if ms > MAX_DURATION_MS {
        return Err(invalid(format!(
            "{} is above the {} maximum",
            human_ms(ms),
            human_ms(MAX_DURATION_MS)
        )));
    }
    Ok(ms)
}

/// Consecutive failures that make an instance unhealthy: 1 ..=
/// [`MAX_RETRIES`].
pub fn check_retries(n: u64) -> Result<u32, InvalidInput> {
    match u32::try_from(n) {
        Ok(0) => Err(invalid(format!(
            "0 is outside 1 ..= {MAX_RETRIES}: at least 1 failed check in a row makes an \
             instance unhealthy"
        ))),
        Ok(n @ 1..=MAX_RETRIES) => Ok(n),
        _ => Err(invalid(format!(
            "{n} is outside 1 ..= {MAX_RETRIES} (consecutive failures that make an instance \
             unhealthy)"
        ))),
    }
}

/// A probe may not take longer than the time between two probes.
pub fn check_timeout_within_interval(
    timeout_ms: u64,
    interval_ms: u64,
) -> Result<(), InvalidInput> {
    if timeout_ms > interval_ms {
        return Err(invalid(format!(
            "timeout ({}) is longer than interval ({}): lower the timeout or raise the interval",
            human_ms(timeout_ms),
            human_ms(interval_ms)
        )));
    }
    Ok(())
}

/// The check's probe: a check has one, and an expected status goes only
/// with an HTTP probe.
pub fn probe_of(check: &v1::HealthCheck) -> Result<&v1::health_check::Probe, InvalidInput> {
    use v1::health_check::Probe;
    let Some(probe) = &check.probe else {
        return Err(invalid(
            "no probe; give one of http (a URL), tcp (HOST:PORT) or script (a command)",
        ));
    };
    let other = match probe {
        Probe::Http(_) => return Ok(probe),
        Probe::Tcp(_) => "a tcp one",
        Probe::Script(_) => "a script",
    };
    if check.expected_status.is_some() {
        return Err(invalid(format!(
            "an expected status goes with an http probe, not {other}"
        )));
    }
    Ok(probe)
}

/// The text of a check's probe (URL, TCP target or command).
pub fn probe_text(check: &v1::HealthCheck) -> Option<&str> {
    use v1::health_check::Probe;
    match check.probe.as_ref()? {
        Probe::Http(text) | Probe::Tcp(text) | Probe::Script(text) => Some(text),
    }
}

/// `{port}` in a probe needs an app with a port to stand for (a script
/// gets no substitution, so there it can only be a mistake without one).
pub fn check_port_placeholder(probe: &str, app_has_port: bool) -> Result<(), InvalidInput> {
    if probe.contains(PORT_PLACEHOLDER) && !app_has_port {
        return Err(invalid(format!(
            "{probe:?} uses {PORT_PLACEHOLDER}, but the app has no port; give it one (3000, \
             3000-3003 or auto:4000-4100) or write the port in the probe"
        )));
    }
    Ok(())
}

/// A duration as people write it: `250ms`, `2s`, `2.5s`, `5min`, `24h`.
pub fn human_ms(ms: u64) -> String {
    match ms {
        0 => "0s".into(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}min", ms / 60_000),
        ms if ms < 1_000 => format!("{ms}ms"),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => {
            let fraction = format!("{:03}", ms % 1_000);
            format!("{}.{}s", ms / 1_000, fraction.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_probes_are_plain_http_urls() {
        for ok in [
            "http://127.0.0.1:{port}/health",
            "http://localhost/",
            "http://localhost",
            "HTTP://api.internal:8080/ready?full=1",
            "http://[::1]:{port}/health",
            "http://10.0.0.1:3000#x",
            "http://127.0.0.1:{port}/health/{port}",
        ] {
            assert!(parse_http_url(ok, true).is_ok(), "{ok}");
        }
        let url = parse_http_url("http://[::1]:8080/a?b=1#c", false).unwrap();
        assert_eq!(
            url,
            HttpUrl {
                host: "::1",
                port: 8080,
                authority: "[::1]:8080",
                path: "/a?b=1".into(),
            }
        );
        assert_eq!(parse_http_url("http://h", false).unwrap().port, 80);
        assert_eq!(parse_http_url("http://h", false).unwrap().path, "/");
        assert_eq!(parse_http_url("http://h:{port}/", true).unwrap().port, 0);
        for (bad, why) in [
            (
                "https://x/",
                "does not speak TLS, https is not supported yet",
            ),
            (
                "localhost:3000/health",
                "is not a URL: write http://HOST[:PORT]/PATH",
            ),
            ("ftp://x/", "the scheme is ftp, not http"),
            ("http://:3000/", "has no host"),
            ("http:///health", "the host is missing"),
            ("http://{port}/h", "not in the host"),
            ("http://x:0/", "port 0 cannot be probed"),
            ("http://x:70000/", "\"70000\" is not a port"),
            ("http://x:{prot}/", "is not a port"),
            ("http://x:/", "the port after ':' is missing"),
            ("http://a b/", "contains spaces"),
            ("http://x/\r\nX: y", "control characters"),
            ("http://u:p@x/", "credentials"),
            ("http://[zz]:1/", "is not a host"),
            ("http://[::1/", "is not closed"),
            ("http://::1:80/", "needs brackets"),
            ("", "is empty"),
        ] {
            let err = parse_http_url(bad, true).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{bad:?}")), "{bad}: {err}");
            assert!(err.contains(why), "{bad}: {err}");
        }
        // A resolved URL names a real port.
        let err = parse_http_url("http://x:{port}/", false).unwrap_err();
        assert!(err.to_string().contains("give 1-65535"), "{err}");
    }

    #[test]
    fn tcp_probes_are_host_and_port() {
        assert_eq!(parse_tcp_target("db:5432", false), Ok(("db", 5432)));
        assert_eq!(parse_tcp_target("[::1]:6379", false), Ok(("::1", 6379)));
        assert_eq!(
            parse_tcp_target("127.0.0.1:{port}", true),
            Ok(("127.0.0.1", 0))
        );
        for (bad, why) in [
            ("localhost", "\"localhost\" has no port: write HOST:PORT"),
            ("tcp://x:1", "without a scheme"),
            (":80", "has no host"),
            ("x:http", "is not a port"),
            ("[::1]", "has no port"),
            ("[::1]x", "unexpected \"x\""),
            ("bad host:80", "whitespace"),
            ("127.0.0.1:{prt}", "not a port"),
        ] {
            let err = parse_tcp_target(bad, true).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn scripts_statuses_and_timing() {
        assert_eq!(check_probe_script("test -f /tmp/ready"), Ok(()));
        assert!(
            check_probe_script("  ")
                .unwrap_err()
                .0
                .starts_with("is empty")
        );
        assert!(check_probe_script("a\0b").unwrap_err().0.contains("NUL"));
        assert_eq!(check_expected_status(204), Ok(204));
        for bad in [99, 600, 70_000] {
            assert!(check_expected_status(bad).is_err(), "{bad}");
        }
        assert_eq!(check_probe_interval(MIN_INTERVAL_MS), Ok(MIN_INTERVAL_MS));
        assert_eq!(check_probe_interval(MAX_DURATION_MS), Ok(MAX_DURATION_MS));
        assert_eq!(
            check_probe_interval(0).unwrap_err().0,
            "0ms is below the 100ms minimum"
        );
        assert_eq!(
            check_probe_interval(MAX_DURATION_MS + 1).unwrap_err().0,
            "86400.001s is above the 24h maximum"
        );
        assert!(check_start_period(MAX_DURATION_MS + 1).is_err());
        assert_eq!(check_start_period(0), Ok(0));
        assert_eq!(check_retries(1), Ok(1));
        assert_eq!(check_retries(100), Ok(100));
        assert!(
            check_retries(0)
                .unwrap_err()
                .0
                .starts_with("0 is outside 1 ..= 100")
        );
        assert!(
            check_retries(101)
                .unwrap_err()
                .0
                .starts_with("101 is outside 1 ..= 100")
        );
        assert!(check_retries(u64::MAX).is_err());
        assert_eq!(check_timeout_within_interval(1000, 1000), Ok(()));
        assert_eq!(
            check_timeout_within_interval(2500, 1000).unwrap_err().0,
            "timeout (2.5s) is longer than interval (1s): lower the timeout or raise the interval"
        );
    }

    #[test]
    fn a_check_has_one_probe_that_fits_its_app() {
        use v1::HealthCheck;
        use v1::health_check::Probe;
        let check = |probe: Probe, status: Option<u32>| HealthCheck {
            probe: Some(probe),
            expected_status: status,
            ..Default::default()
        };
        let url = Probe::Http("http://localhost:{port}/".into());
        assert_eq!(probe_of(&check(url.clone(), Some(204))), Ok(&url));
        let script = Probe::Script("true".into());
        assert_eq!(probe_of(&check(script.clone(), None)), Ok(&script));
        let err = probe_of(&check(script, Some(200))).unwrap_err();
        assert_eq!(
            err.0,
            "an expected status goes with an http probe, not a script"
        );
        let err = probe_of(&check(Probe::Tcp("x:1".into()), Some(200))).unwrap_err();
        assert!(err.0.ends_with("not a tcp one"), "{err}");
        let err = probe_of(&HealthCheck::default()).unwrap_err();
        assert!(err.0.starts_with("no probe"), "{err}");

        let with_port = check(url, None);
        let text = probe_text(&with_port).unwrap();
        assert_eq!(check_port_placeholder(text, true), Ok(()));
        let err = check_port_placeholder(text, false).unwrap_err();
        assert!(
            err.0
                .starts_with("\"http://localhost:{port}/\" uses {port}, but the app has no port"),
            "{err}"
        );
        assert_eq!(check_port_placeholder("curl localhost:3000", false), Ok(()));
        assert!(check_port_placeholder("curl localhost:{port}", false).is_err());
        assert_eq!(probe_text(&HealthCheck::default()), None);
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human_ms(0), "0s");
        assert_eq!(human_ms(250), "250ms");
        assert_eq!(human_ms(2_500), "2.5s");
        assert_eq!(human_ms(2_000), "2s");
        assert_eq!(human_ms(300_000), "5min");
        assert_eq!(human_ms(MAX_DURATION_MS), "24h");
    }
}
