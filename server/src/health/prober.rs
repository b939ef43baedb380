//! The prober: one tokio task per checked instance run, probing it on the
//! check's schedule and sending each result to the supervisor.
//!
//! Channel: the supervisor's instance holds the receiving end of
//! `results` and the [`ProberHandle`]. The task ends when either is
//! dropped; it never outlives the run it probes.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{HealthCheck, Probe, probe_once};

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub ok: bool,
    /// Why it failed (`None` when `ok`), as [`probe_once`] says it.
    pub error: Option<String>,
    /// When the probe started, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// How long the probe ran.
    pub took: Duration,
}

/// Owns a prober task: dropping it (or [`ProberHandle::stop`]) aborts the
/// task, which kills a script probe in flight with its process group.
#[must_use = "dropping the handle stops the prober"]
#[derive(Debug)]
pub struct ProberHandle {
    /// `None` only inside `stop`.
    task: Option<JoinHandle<()>>,
}

impl ProberHandle {
    /// Stops the prober and returns once its task is gone, so a script
    /// probe that was running has been killed.
    #[cfg(test)]
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Whether the task ended (its receiver was dropped).
    #[cfg(test)]
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for ProberHandle {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// First pause between probes while an instance has not passed yet.
const READINESS_FIRST_PAUSE: Duration = Duration::from_millis(100);

/// Probes one instance with `probe` (the check's probe [resolved](super::resolve)
/// for it) on `check`'s schedule: the first probe at once (readiness should
/// be quick), faster ones until the first pass, then each `interval` after
/// the previous one ended, so runs
/// never overlap or pile up. Each result is sent on `results`; a full
/// channel delays the next probe rather than queueing results. Stops when
/// `results`' receiver or the returned handle is dropped.
///
/// `env` and `cwd` are the instance's (for script probes). Must be called
/// within a tokio runtime.
pub fn spawn_prober(
    check: HealthCheck,
    probe: Probe,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    results: mpsc::Sender<ProbeResult>,
) -> ProberHandle {
    let task = tokio::spawn(async move {
        let (interval, timeout) = (check.interval(), check.timeout());
        // Until the first pass, probe sooner (100 ms, doubling up to the
        // interval): readiness (`--wait-ready`, reload) should not wait a
        // whole interval for an app that came up in 300 ms.
        let mut ready = false;
        let mut readiness_pause = READINESS_FIRST_PAUSE;
        loop {
            let at_ms = now_ms();
            let started = Instant::now();
            let outcome = tokio::select! {
                outcome = probe_once(&probe, timeout, &env, &cwd) => outcome,
                // Dropping the probe kills a running script.
                () = results.closed() => return,
            };
            let took = started.elapsed();
            if let Err(error) = &outcome {
                tracing::debug!(%error, "health probe failed");
            }
            ready |= outcome.is_ok();
            let result = ProbeResult {
                ok: outcome.is_ok(),
                error: outcome.err(),
                at_ms,
                took,
            };
            if results.send(result).await.is_err() {
                return;
            }
            let pause = if ready {
                interval
            } else {
                let pause = readiness_pause.min(interval);
                readiness_pause = readiness_pause.saturating_mul(2);
                pause
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = results.closed() => return,
            }
        }
    });
    ProberHandle { task: Some(task) }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
