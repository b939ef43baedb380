//! Deadlines and polling: the one base deadline [`WAIT`] that every other
//! deadline of the harness derives from, scaled by
//! `PMDAEMON_TEST_TIMEOUT_SCALE`, and the loops that poll a condition (or
//! a child process) until such a deadline.
//!
//! Talks to: nothing but the clock; every other module waits through here.

use std::fmt;
use std::process::{Child, ExitStatus};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The environment variable that multiplies every deadline of the harness
/// (a float, default 1): `PMDAEMON_TEST_TIMEOUT_SCALE=3` on a slow machine.
pub const TIMEOUT_SCALE_ENV: &str = "PMDAEMON_TEST_TIMEOUT_SCALE";

/// Default patience for a state change: generous, because the suite runs in
/// parallel on small machines. Only a failing test waits this long. Every
/// other deadline is a multiple or a fraction of this one.
pub const WAIT: Timeout = Timeout {
    base: Duration::from_secs(30),
};

/// How long a single `pmd` invocation may take before the harness kills it.
pub const PMD_TIMEOUT: Timeout = WAIT.times(3);

/// How long a daemon gets to exit after SIGTERM before it is SIGKILLed (and
/// how long the last SIGKILL sweep of a home may take).
pub const DAEMON_STOP_TIMEOUT: Timeout = WAIT.div(3);

/// How often a condition is polled.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A deadline of the harness, as a duration: its base times the factor in
/// [`TIMEOUT_SCALE_ENV`]. Built only from [`WAIT`] (with [`Timeout::times`]
/// and [`Timeout::div`]), so that one variable scales them all. Prints as
/// the scaled duration.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Timeout {
    /// Unscaled.
    base: Duration,
}

impl Timeout {
    /// This deadline `factor` times as long.
    pub const fn times(self, factor: u32) -> Timeout {
        Timeout {
            base: self.base.saturating_mul(factor),
        }
    }

    /// This deadline divided by `divisor`.
    pub const fn div(self, divisor: u32) -> Timeout {
        Timeout {
            base: self.base.checked_div(divisor).expect("divisor is not 0"),
        }
    }

    /// The scaled duration.
    pub fn get(self) -> Duration {
        self.base.mul_f64(scale())
    }

    /// The instant this long from now.
    pub fn deadline(self) -> Instant {
        Instant::now() + self.get()
    }
}

impl From<Timeout> for Duration {
    fn from(timeout: Timeout) -> Duration {
        timeout.get()
    }
}

impl fmt::Debug for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

/// The factor in [`TIMEOUT_SCALE_ENV`], 1 when unset; panics on a value that
/// is not a positive number rather than silently ignoring it (except while
/// a thread already unwinds from that panic: cleanup must not panic again,
/// which would abort the test process and leave its daemons running).
pub fn scale() -> f64 {
    static SCALE: OnceLock<Result<f64, String>> = OnceLock::new();
    let scale = SCALE.get_or_init(|| match std::env::var(TIMEOUT_SCALE_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(1.0),
        Ok(text) if text.trim().is_empty() => Ok(1.0),
        Ok(text) => parse_scale(&text).ok_or_else(|| {
            format!("{TIMEOUT_SCALE_ENV}={text:?}: expected a positive number such as 2 or 0.5")
        }),
        Err(e) => Err(format!("{TIMEOUT_SCALE_ENV}: {e}")),
    });
    match scale {
        Ok(factor) => *factor,
        Err(_) if thread::panicking() => 1.0,
        Err(message) => panic!("{message}"),
    }
}

/// A positive, finite factor that keeps 30 s × 3 representable.
fn parse_scale(text: &str) -> Option<f64> {
    let factor: f64 = text.trim().parse().ok()?;
    (factor.is_finite() && factor > 0.0 && factor < 1e6).then_some(factor)
}

/// Polls `cond` every 20 ms until it returns true; panics after `timeout`
/// saying what was awaited.
pub fn wait_for(what: &str, timeout: Timeout, mut cond: impl FnMut() -> bool) {
    wait_for_value(what, timeout, || cond().then_some(()))
}

/// Polls `probe` every 20 ms until it yields a value; panics after `timeout`
/// saying what was awaited.
pub fn wait_for_value<T>(what: &str, timeout: Timeout, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = timeout.deadline();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Waits for `child` up to `timeout`; `None` if it is still running.
pub fn wait_child(child: &mut Child, timeout: Timeout) -> Option<ExitStatus> {
    let deadline = timeout.deadline();
    // Short first pauses: most children of the harness (`pmd`) end within
    // milliseconds.
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait().expect("waitpid") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(pause);
        pause = (pause * 2).min(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_derive_from_wait() {
        assert_eq!(PMD_TIMEOUT.base, Duration::from_secs(90));
        assert_eq!(DAEMON_STOP_TIMEOUT.base, Duration::from_secs(10));
        assert_eq!(WAIT.div(60).base, Duration::from_millis(500));
    }

    #[test]
    fn the_scale_is_a_positive_number() {
        assert_eq!(parse_scale("2"), Some(2.0));
        assert_eq!(parse_scale(" 0.5 "), Some(0.5));
        for bad in ["0", "-1", "NaN", "inf", "fast", ""] {
            assert_eq!(parse_scale(bad), None, "{bad:?}");
        }
    }
}
