//! Readiness and liveness as a pure state machine over probe results: no
//! clock, no I/O, so the supervisor's rules are unit-tested here. The
//! supervisor keeps one [`HealthTracker`] per instance run and acts on the
//! [`Transition`]s it returns.

use std::time::Duration;

use super::{HealthCheck, ProbeResult};

/// An instance's health as the tracker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// No probe passed yet in this run (the instance is `starting`).
    Unknown,
    Healthy,
    /// `retries` consecutive counted failures, and no pass since.
    Unhealthy,
}

/// What a recorded result changed. Reported once per change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    None,
    /// A pass after no pass yet (readiness: `starting` → `online`) or after
    /// being unhealthy (recovered).
    BecameHealthy,
    /// The `retries`-th consecutive counted failure.
    BecameUnhealthy {
        consecutive_failures: u32,
        last_error: String,
        /// Whether the instance had passed before in this run (it is
        /// `online`, so liveness applies and it should be restarted); false
        /// for an instance that never became ready.
        was_ready: bool,
    },
}

/// Readiness and liveness of one instance run:
/// - the first passing probe makes it [`HealthState::Healthy`] (ready);
/// - a failure counts unless it comes within `start_period` of the start;
///   a pass resets the count;
/// - `retries` consecutive counted failures make it
///   [`HealthState::Unhealthy`], whether it was ready or not (see
///   [`Transition::BecameUnhealthy::was_ready`]).
#[derive(Debug, Clone)]
pub struct HealthTracker {
    retries: u32,
    start_period: Duration,
    state: HealthState,
    /// Counted failures since the last pass (or the start).
    consecutive_failures: u32,
    /// Some probe passed in this run.
    ready: bool,
    /// The last failure's reason, kept after a pass for `describe`.
    last_error: Option<String>,
}

impl HealthTracker {
    /// A tracker for a fresh run (state unknown, nothing counted).
    pub fn new(check: &HealthCheck) -> Self {
        HealthTracker {
            retries: check.retries.max(1),
            start_period: check.start_period(),
            state: HealthState::Unknown,
            consecutive_failures: 0,
            ready: false,
            last_error: None,
        }
    }

    /// Applies one result; `since_start` is the time from the instance's
    /// spawn to the probe.
    pub fn record(&mut self, result: &ProbeResult, since_start: Duration) -> Transition {
        if result.ok {
            self.consecutive_failures = 0;
            self.ready = true;
            if self.state == HealthState::Healthy {
                return Transition::None;
            }
            self.state = HealthState::Healthy;
            return Transition::BecameHealthy;
        }
        let error = result
            .error
            .clone()
            .unwrap_or_else(|| "health check failed".into());
        self.last_error = Some(error.clone());
        if since_start < self.start_period {
            return Transition::None;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.consecutive_failures < self.retries || self.state == HealthState::Unhealthy {
            return Transition::None;
        }
        self.state = HealthState::Unhealthy;
        Transition::BecameUnhealthy {
            consecutive_failures: self.consecutive_failures,
            last_error: error,
            was_ready: self.ready,
        }
    }

    #[cfg(test)]
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// Whether a probe passed in this run.
    #[cfg(test)]
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    #[cfg(test)]
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    #[cfg(test)]
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Probe;

    fn check(retries: u32, start_period_ms: u64) -> HealthCheck {
        HealthCheck {
            retries,
            start_period_ms,
            ..HealthCheck::new(Probe::Tcp {
                target: "127.0.0.1:{port}".into(),
            })
        }
    }

    fn pass() -> ProbeResult {
        ProbeResult {
            ok: true,
            error: None,
            at_ms: 0,
            took: Duration::ZERO,
        }
    }

    fn fail(why: &str) -> ProbeResult {
        ProbeResult {
            ok: false,
            error: Some(why.into()),
            at_ms: 0,
            took: Duration::ZERO,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// The first pass is readiness; later passes change nothing.
    #[test]
    fn first_pass_makes_ready() {
        let mut t = HealthTracker::new(&check(3, 0));
        assert_eq!(t.state(), HealthState::Unknown);
        assert!(!t.is_ready());
        assert_eq!(t.record(&fail("refused"), secs(0)), Transition::None);
        assert_eq!(t.record(&pass(), secs(1)), Transition::BecameHealthy);
        assert!(t.is_ready());
        assert_eq!(t.record(&pass(), secs(2)), Transition::None);
        assert_eq!(t.state(), HealthState::Healthy);
        assert_eq!(t.consecutive_failures(), 0);
        // The last failure stays visible after a pass.
        assert_eq!(t.last_error(), Some("refused"));
    }

    /// Liveness: `retries` consecutive failures of a ready instance are
    /// reported once, with the count and the last reason.
    #[test]
    fn consecutive_failures_of_a_ready_instance() {
        let mut t = HealthTracker::new(&check(3, 0));
        t.record(&pass(), secs(0));
        assert_eq!(t.record(&fail("a"), secs(1)), Transition::None);
        assert_eq!(t.record(&fail("b"), secs(2)), Transition::None);
        assert_eq!(
            t.record(&fail("c"), secs(3)),
            Transition::BecameUnhealthy {
                consecutive_failures: 3,
                last_error: "c".into(),
                was_ready: true,
            }
        );
        assert_eq!(t.state(), HealthState::Unhealthy);
        // Reported once, counted on.
        assert_eq!(t.record(&fail("d"), secs(4)), Transition::None);
        assert_eq!(t.consecutive_failures(), 4);
        // A pass recovers.
        assert_eq!(t.record(&pass(), secs(5)), Transition::BecameHealthy);
        assert_eq!(t.consecutive_failures(), 0);
    }

    /// A pass between failures resets the count: failures must be
    /// consecutive.
    #[test]
    fn a_pass_resets_the_count() {
        let mut t = HealthTracker::new(&check(2, 0));
        t.record(&pass(), secs(0));
        t.record(&fail("a"), secs(1));
        t.record(&pass(), secs(2));
        assert_eq!(t.record(&fail("b"), secs(3)), Transition::None);
        assert!(matches!(
            t.record(&fail("c"), secs(4)),
            Transition::BecameUnhealthy { .. }
        ));
    }

    /// Failures within the start period do not count, before or after the
    /// first pass; later ones do.
    #[test]
    fn start_period_failures_do_not_count() {
        let mut t = HealthTracker::new(&check(1, 10_000));
        for s in 0..10 {
            assert_eq!(t.record(&fail("booting"), secs(s)), Transition::None);
        }
        assert_eq!(t.consecutive_failures(), 0);
        assert_eq!(t.state(), HealthState::Unknown);
        assert_eq!(t.last_error(), Some("booting"));
        assert_eq!(
            t.record(&fail("still down"), secs(10)),
            Transition::BecameUnhealthy {
                consecutive_failures: 1,
                last_error: "still down".into(),
                was_ready: false,
            }
        );

        let mut t = HealthTracker::new(&check(1, 10_000));
        t.record(&pass(), secs(1));
        assert_eq!(t.record(&fail("blip"), secs(2)), Transition::None);
        assert_eq!(t.state(), HealthState::Healthy);
    }

    /// An instance that never passes becomes unhealthy too, marked as never
    /// ready, and becomes ready at its first pass after that.
    #[test]
    fn never_ready_instance() {
        let mut t = HealthTracker::new(&check(2, 0));
        t.record(&fail("refused"), secs(0));
        assert_eq!(
            t.record(&fail("refused"), secs(5)),
            Transition::BecameUnhealthy {
                consecutive_failures: 2,
                last_error: "refused".into(),
                was_ready: false,
            }
        );
        assert!(!t.is_ready());
        assert_eq!(t.record(&pass(), secs(10)), Transition::BecameHealthy);
        assert!(t.is_ready());
    }

    /// A result without a reason still gets one.
    #[test]
    fn failure_without_a_reason() {
        let mut t = HealthTracker::new(&check(1, 0));
        let mut r = fail("");
        r.error = None;
        assert!(matches!(
            t.record(&r, secs(0)),
            Transition::BecameUnhealthy { last_error, .. } if last_error == "health check failed"
        ));
    }
}
