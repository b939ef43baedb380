//! Health: owns what an app's `health_check` means ([`HealthCheck`], a
//! [`Probe`] plus its timing), how one probe runs against one instance
//! ([`probe_once`]: an HTTP GET, a TCP connect or a shell script), the
//! per-instance prober task ([`spawn_prober`]) and the readiness/liveness
//! rules applied to its results ([`HealthTracker`]).
//!
//! Talks to: the supervisor, which validates the check with the app spec,
//! calls [`resolve`] with each instance's assigned port, starts one prober
//! per running instance (the [`ProberHandle`] lives as long as that run;
//! dropping it stops the prober and kills a script probe in flight) and
//! feeds the [`ProbeResult`]s it receives to a [`HealthTracker`] to decide
//! `starting` → `online` and when to replace an instance. Nothing here
//! touches the process table; script probes are spawned through
//! `supervisor::process`, each in its own process group that is always
//! killed and reaped.
//!
//! Rules, in one place:
//! - the first probe runs as soon as the prober starts, then one every
//!   `interval` counted from the end of the previous one: runs of one check
//!   never overlap and never pile up, whatever the probe's duration;
//! - every probe is bounded by `timeout` (a script's whole process group is
//!   SIGKILLed at that point);
//! - an instance is ready at its first passing probe; `retries` consecutive
//!   failures outside the `start_period` (counted from the instance's
//!   start) make it unhealthy, and a pass makes it healthy again.

mod probe;
mod prober;
#[cfg(test)]
mod tests;
mod tracker;

use std::fmt;
use std::net::Ipv6Addr;
use std::time::Duration;

pub use probe::probe_once;
pub use prober::{ProbeResult, ProberHandle, spawn_prober};
pub use tracker::{HealthTracker, Transition};

/// Time between the end of one probe and the start of the next.
pub const DEFAULT_INTERVAL_MS: u64 = 5_000;
/// How long one probe may take before it counts as failed.
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;
/// Consecutive failures that make an instance unhealthy (3: one slow
/// answer or dropped connection is not an outage).
pub const DEFAULT_RETRIES: u32 = 3;
/// Failures this long after a start do not count (0: from the start).
pub const DEFAULT_START_PERIOD_MS: u64 = 0;
/// Shortest interval and timeout: probing faster than this measures the
/// prober more than the app.
pub const MIN_INTERVAL_MS: u64 = 100;
/// Longest interval, timeout and start period (24 h); more is a typo.
pub const MAX_DURATION_MS: u64 = 86_400_000;
/// More consecutive failures than this is a typo.
pub const MAX_RETRIES: u32 = 100;

/// The placeholder that [`resolve`] replaces with an instance's port.
pub const PORT_PLACEHOLDER: &str = "{port}";

/// What to probe, as configured: validated by [`HealthCheck::validate`],
/// `{port}` not yet substituted (see [`resolve`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// `GET url`: healthy on any 2xx, or on exactly `expected_status` when
    /// set. `http://HOST[:PORT][/PATH]`; `{port}` may stand for the port and
    /// appear in the path.
    Http {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_status: Option<u16>,
    },
    /// `HOST:PORT` (or `HOST:{port}`) that must accept a TCP connection.
    Tcp { target: String },
    /// `sh -c command` with the instance's env and cwd; exit 0 is healthy.
    Script { command: String },
}

impl fmt::Display for Probe {
    /// How the check reads in messages: `http http://...`, `tcp host:port`,
    /// `script "cmd"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Http {
                url,
                expected_status: None,
            } => write!(f, "http {url}"),
            Probe::Http {
                url,
                expected_status: Some(status),
            } => write!(f, "http {url} (expecting {status})"),
            Probe::Tcp { target } => write!(f, "tcp {target}"),
            Probe::Script { command } => write!(f, "script {command:?}"),
        }
    }
}

/// An app's health check with every default filled in. Durations are
/// milliseconds so the persisted JSON is plain numbers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HealthCheck {
    pub probe: Probe,
    /// From the end of one probe to the start of the next.
    pub interval_ms: u64,
    /// Bound on one probe; never longer than the interval.
    pub timeout_ms: u64,
    /// Consecutive counted failures that make an instance unhealthy.
    pub retries: u32,
    /// Failures this long after the instance started do not count.
    pub start_period_ms: u64,
}

impl HealthCheck {
    /// `probe` with the default timing.
    #[cfg(test)]
    pub fn new(probe: Probe) -> Self {
        HealthCheck {
            probe,
            interval_ms: DEFAULT_INTERVAL_MS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            retries: DEFAULT_RETRIES,
            start_period_ms: DEFAULT_START_PERIOD_MS,
        }
    }

    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn start_period(&self) -> Duration {
        Duration::from_millis(self.start_period_ms)
    }

    /// Checks every field. Messages name the field as users write it in an
    /// ecosystem file (`interval`, `http`...), without a `health_check`
    /// prefix: the caller adds it.
    pub fn validate(&self) -> Result<(), String> {
        match &self.probe {
            Probe::Http {
                url,
                expected_status,
            } => {
                parse_http_url(url, true).map_err(|e| format!("http {url:?}: {e}"))?;
                if let Some(status) = expected_status
                    && !(100..=599).contains(status)
                {
                    return Err(format!(
                        "expected_status: {status} is not an HTTP status (100-599)"
                    ));
                }
            }
            Probe::Tcp { target } => {
                parse_host_port(target, true).map_err(|e| format!("tcp {target:?}: {e}"))?;
            }
            Probe::Script { command } => {
                if command.trim().is_empty() {
                    return Err(
                        "script is empty: give a shell command that exits 0 when the app is healthy"
                            .into(),
                    );
                }
                if command.contains('\0') {
                    return Err("script cannot contain NUL bytes".into());
                }
            }
        }
        for (field, ms) in [("interval", self.interval_ms), ("timeout", self.timeout_ms)] {
            if ms < MIN_INTERVAL_MS {
                return Err(format!(
                    "{field}: {} is below the {} minimum",
                    human_ms(ms),
                    human_ms(MIN_INTERVAL_MS)
                ));
            }
            if ms > MAX_DURATION_MS {
                return Err(format!(
                    "{field}: {} is above the {} maximum",
                    human_ms(ms),
                    human_ms(MAX_DURATION_MS)
                ));
            }
        }
        if self.timeout_ms > self.interval_ms {
            return Err(format!(
                "timeout ({}) is longer than interval ({}): lower the timeout or raise the interval",
                human_ms(self.timeout_ms),
                human_ms(self.interval_ms)
            ));
        }
        if self.start_period_ms > MAX_DURATION_MS {
            return Err(format!(
                "start_period: {} is above the {} maximum",
                human_ms(self.start_period_ms),
                human_ms(MAX_DURATION_MS)
            ));
        }
        if !(1..=MAX_RETRIES).contains(&self.retries) {
            return Err(format!(
                "retries: {} is outside 1 ..= {MAX_RETRIES} (consecutive failures that make an instance unhealthy)",
                self.retries
            ));
        }
        Ok(())
    }
}

/// The probe one instance runs: `{port}` in an HTTP URL or TCP target
/// replaced by `port`. A script is returned as is (it reads the port from
/// the instance's environment, e.g. `$PORT`). Fails when the check uses
/// `{port}` and the instance has no port.
pub fn resolve(probe: &Probe, port: Option<u16>) -> Result<Probe, String> {
    let substitute = |text: &str| -> Result<String, String> {
        if !text.contains(PORT_PLACEHOLDER) {
            return Ok(text.to_string());
        }
        match port {
            Some(port) => Ok(text.replace(PORT_PLACEHOLDER, &port.to_string())),
            None => Err(format!(
                "the health check {text:?} uses {PORT_PLACEHOLDER} but the instance has no port: \
                 give the app a port, or write the port in the check"
            )),
        }
    };
    Ok(match probe {
        Probe::Http {
            url,
            expected_status,
        } => Probe::Http {
            url: substitute(url)?,
            expected_status: *expected_status,
        },
        Probe::Tcp { target } => Probe::Tcp {
            target: substitute(target)?,
        },
        Probe::Script { .. } => probe.clone(),
    })
}

/// The parts of an `http://` URL that a probe needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HttpUrl<'a> {
    /// Host name or address, IPv6 without brackets.
    host: &'a str,
    port: u16,
    /// `host[:port]` as written: the `Host` header.
    authority: &'a str,
    /// Path and query, at least `/`; the fragment is dropped.
    path: String,
}

/// Splits an `http://HOST[:PORT][/PATH]` URL. With `template`, `{port}`
/// may stand for the port (it is returned as port 0) and appear in the
/// path; the host never. Whitespace and control characters are refused:
/// the URL is written into the request as is.
fn parse_http_url(url: &str, template: bool) -> Result<HttpUrl<'_>, String> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or a control character; percent-encode it".into());
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("must start with http://, such as http://127.0.0.1:{port}/health".into());
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err("https is not supported yet; use a tcp check or a script with curl".into());
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(format!(
            "{scheme}:// is not supported; the URL must start with http://"
        ));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err("credentials in the URL are not supported; use a script with curl".into());
    }
    let (host, port) = split_host_port(authority, template, Some(80))?;
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
fn parse_host_port(target: &str, template: bool) -> Result<(&str, u16), String> {
    if target.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or a control character".into());
    }
    split_host_port(target, template, None)
}

/// `host[:port]`: IPv6 in brackets, the port required unless a default is
/// given. The placeholder, allowed with `template`, reads as port 0.
fn split_host_port(
    text: &str,
    template: bool,
    default_port: Option<u16>,
) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err("an IPv6 address opened with '[' is not closed with ']'".into());
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("[{host}] is not an IPv6 address"));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("unexpected {after:?} after the IPv6 address")),
            },
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err("an IPv6 address needs brackets, such as [::1]:8080".into());
            }
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err("the host is missing, such as 127.0.0.1 or localhost".into());
    }
    if host.contains(PORT_PLACEHOLDER) {
        return Err(format!(
            "{PORT_PLACEHOLDER} can only stand for the port, not in the host"
        ));
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(format!("{host:?} is not a host name or address"));
    }
    let port = match port {
        None => default_port.ok_or_else(|| {
            format!("the port is missing: write {host}:PORT, or {host}:{PORT_PLACEHOLDER} for the instance's port")
        })?,
        Some(p) if template && p == PORT_PLACEHOLDER => 0,
        Some("") => return Err("the port after ':' is missing".into()),
        Some(p) => match p.parse::<u16>() {
            Ok(0) => return Err("port 0 cannot be probed; ports are 1-65535".into()),
            Ok(n) if p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ if template => {
                return Err(format!(
                    "{p:?} is not a port: give 1-65535 or {PORT_PLACEHOLDER}"
                ));
            }
            _ => return Err(format!("{p:?} is not a port (1-65535)")),
        },
    };
    Ok((host, port))
}

/// A duration as people write it: `250ms`, `2s`, `2.5s`, `5min`, `24h`.
pub(crate) fn human_ms(ms: u64) -> String {
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

/// [`human_ms`] of a [`Duration`] (sub-millisecond parts dropped).
pub(crate) fn human(duration: Duration) -> String {
    human_ms(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}
