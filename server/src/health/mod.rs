//! Health: owns an app's `health_check` as the daemon keeps it
//! ([`HealthCheck`], a [`Probe`] plus its timing, checked with the shared
//! rules of `pmdaemon_proto::health`), how one probe runs against one instance
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
use std::time::Duration;

pub use probe::probe_once;
pub use prober::{ProbeResult, ProberHandle, spawn_prober};
pub use tracker::{HealthTracker, Transition};

// What a probe target may be, the timing limits and the defaults are value
// rules of the shared crate; the daemon fills in the defaults.
pub(crate) use pmdaemon_proto::health::human_ms;
pub use pmdaemon_proto::health::{
    DEFAULT_INTERVAL_MS, DEFAULT_RETRIES, DEFAULT_START_PERIOD_MS, DEFAULT_TIMEOUT_MS,
    PORT_PLACEHOLDER,
};

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

    /// Checks every field with the shared rules. Messages name the field as
    /// users write it in an ecosystem file (`interval`, `http`...), without
    /// a `health_check` prefix: the caller adds it.
    pub fn validate(&self) -> Result<(), String> {
        use pmdaemon_proto::health as rule;
        match &self.probe {
            Probe::Http {
                url,
                expected_status,
            } => {
                rule::parse_http_url(url, true).map_err(|e| format!("http {e}"))?;
                if let Some(status) = expected_status {
                    rule::check_expected_status((*status).into())
                        .map_err(|e| format!("expected_status: {e}"))?;
                }
            }
            Probe::Tcp { target } => {
                rule::parse_tcp_target(target, true).map_err(|e| format!("tcp {e}"))?;
            }
            Probe::Script { command } => {
                rule::check_probe_script(command).map_err(|e| format!("script {e}"))?;
            }
        }
        for (field, ms) in [("interval", self.interval_ms), ("timeout", self.timeout_ms)] {
            rule::check_probe_interval(ms).map_err(|e| format!("{field}: {e}"))?;
        }
        rule::check_timeout_within_interval(self.timeout_ms, self.interval_ms)
            .map_err(|e| e.to_string())?;
        rule::check_start_period(self.start_period_ms).map_err(|e| format!("start_period: {e}"))?;
        rule::check_retries(self.retries.into()).map_err(|e| format!("retries: {e}"))?;
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

/// [`human_ms`] of a [`Duration`] (sub-millisecond parts dropped).
pub(crate) fn human(duration: Duration) -> String {
    human_ms(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}
