//! Waiting for readiness (WaitReady, `--wait-ready`): until the instances
//! of a target are ready, as each instance decides
//! (`Shared::readiness`, set by its task), one fails, or a deadline passes.
//! The wait looks at the records again at each change
//! ([`Supervisor::changes`], taken before the first look), never on a
//! timer, and reports each instance's progress whenever it changes; a
//! failure comes with the precise report: each instance that is not ready
//! with its state and reason, its last health error and its last
//! [`LOG_LINES`] log lines. Transports only convert its updates.

use std::time::Duration;

use pmdaemon_proto::Target;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::instance::{Health, Readiness, ReadyMessage, Shared, State, now_ms};
use super::{InstanceView, Supervisor};
use crate::error::{Error, Result};

/// Log lines per log file shown for an instance that is not ready.
pub const LOG_LINES: usize = 10;

/// Instances whose logs a failure report shows (the others are listed).
const MAX_REPORTED: usize = 4;

/// Where one instance is on its way to readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Ready,
    Completed,
    /// Not ready yet; what it is waiting for.
    Waiting(String),
    /// It will not become ready; why.
    Failed(String),
}

impl Progress {
    fn is_done(&self) -> bool {
        matches!(self, Progress::Ready | Progress::Completed)
    }
}

/// One instance waited for, as the wait last saw it.
#[derive(Debug, Clone)]
pub struct Waited {
    pub id: u32,
    /// Its restart count when the caller's command answered: more means it
    /// crashed or was restarted since.
    pub baseline_restarts: u32,
    /// As last seen; None if it never was (deleted before the wait).
    pub last: Option<InstanceView>,
    pub progress: Progress,
}

/// What a wait says, in order: progress whenever it changes, then one
/// `Ready` or `Failed`, after which the channel closes.
#[derive(Debug)]
pub enum ReadyUpdate {
    Progress(Vec<Waited>),
    /// Every instance is ready or completed.
    Ready(Vec<Waited>),
    /// An instance cannot become ready (`timed_out` false), or the deadline
    /// passed; `report` says why for each instance that is not ready.
    Failed {
        instances: Vec<Waited>,
        report: String,
        timed_out: bool,
    },
}

impl Supervisor {
    /// Starts waiting until the instances are ready: those of `target`
    /// with their restart counts now, or exactly `baseline` (id, restart
    /// count when the caller's command answered; an id the target no
    /// longer selects fails as deleted). `timeout` counts from `spent`
    /// ago. The wait runs in its own task and ends early when the receiver
    /// is dropped.
    pub fn wait_ready(
        &self,
        target: &Target,
        baseline: &[(u32, u32)],
        timeout: Duration,
        spent: Duration,
    ) -> Result<mpsc::Receiver<ReadyUpdate>> {
        let deadline = Instant::now() + timeout.saturating_sub(spent);
        // Taken before the first look, so that a change in between is not
        // missed.
        let changes = self.changes();
        let views = match self.views(target) {
            // Instances of the baseline that are gone fail as deleted.
            Err(Error::NotFound { .. }) if !baseline.is_empty() => Vec::new(),
            other => other?,
        };
        let watched: Vec<Waited> = if baseline.is_empty() {
            views
                .into_iter()
                .map(|v| Waited {
                    id: v.id,
                    baseline_restarts: v.shared.restarts,
                    last: Some(v),
                    progress: Progress::Waiting(String::new()),
                })
                .collect()
        } else {
            baseline
                .iter()
                .map(|&(id, restarts)| Waited {
                    id,
                    baseline_restarts: restarts,
                    last: views.iter().find(|v| v.id == id).cloned(),
                    progress: Progress::Waiting(String::new()),
                })
                .collect()
        };
        let (tx, rx) = mpsc::channel(16);
        let sup = self.clone();
        let target = target.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = sup.follow_readiness(&target, watched, deadline, timeout, changes, &tx) => {}
                // Nobody listens any more.
                () = tx.closed() => {}
            }
        });
        Ok(rx)
    }

    /// The wait itself: one look per change of an instance record until
    /// every instance is done, one fails, or `deadline` passes.
    async fn follow_readiness(
        &self,
        target: &Target,
        mut watched: Vec<Waited>,
        deadline: Instant,
        timeout: Duration,
        mut changes: super::events::Changes,
        tx: &mpsc::Sender<ReadyUpdate>,
    ) {
        let mut sent: Option<Vec<Progress>> = None;
        loop {
            let views = self.views(target).unwrap_or_default();
            let now = now_ms();
            for w in &mut watched {
                match views.iter().find(|v| v.id == w.id) {
                    Some(v) => {
                        w.progress = assess(&v.shared, w.baseline_restarts, now);
                        w.last = Some(v.clone());
                    }
                    None => w.progress = Progress::Failed("deleted".into()),
                }
            }
            if watched.iter().all(|w| w.progress.is_done()) {
                let _ = tx.send(ReadyUpdate::Ready(watched)).await;
                return;
            }
            let failed: Vec<(&Waited, &str)> = watched
                .iter()
                .filter_map(|w| match &w.progress {
                    Progress::Failed(why) => Some((w, why.as_str())),
                    _ => None,
                })
                .collect();
            let timed_out = failed.is_empty() && Instant::now() >= deadline;
            if !failed.is_empty() || timed_out {
                let report = if timed_out {
                    let waiting: Vec<(&Waited, &str)> = watched
                        .iter()
                        .filter_map(|w| match &w.progress {
                            Progress::Waiting(what) => Some((w, what.as_str())),
                            _ => None,
                        })
                        .collect();
                    failure(self, &waiting, Some(timeout)).await
                } else {
                    failure(self, &failed, None).await
                };
                let _ = tx
                    .send(ReadyUpdate::Failed {
                        instances: watched,
                        report,
                        timed_out,
                    })
                    .await;
                return;
            }
            let summary: Vec<Progress> = watched.iter().map(|w| w.progress.clone()).collect();
            if sent.as_ref() != Some(&summary) {
                if tx
                    .send(ReadyUpdate::Progress(watched.clone()))
                    .await
                    .is_err()
                {
                    return;
                }
                sent = Some(summary);
            }
            changes.next(deadline).await;
        }
    }
}

/// Where instance record `s` is, given its restart count when the caller's
/// command answered (pure, for tests).
pub fn assess(s: &Shared, baseline_restarts: u32, now_ms: i64) -> Progress {
    if s.restarts > baseline_restarts {
        let n = s.restarts - baseline_restarts;
        let times = if n == 1 { "once" } else { "several times" };
        let why = s
            .last_exit
            .as_ref()
            .map_or_else(String::new, |e| format!(" (last run {e})"));
        return Progress::Failed(format!("restarted {times} while starting{why}"));
    }
    match s.readiness() {
        Readiness::Ready => return Progress::Ready,
        Readiness::Completed => return Progress::Completed,
        Readiness::NotReady => {}
    }
    let checked = s.spec.checked();
    match s.state {
        // PM2 goes on after listen_timeout; a wait for readiness cannot.
        State::Online if s.ready_message == ReadyMessage::Missed => {
            Progress::Failed(super::instance::missed_ready_reason(&s.spec))
        }
        State::Errored => Progress::Failed(state_text(s)),
        State::Stopped | State::Stopping => {
            let mut text = state_text(s);
            if s.reason.is_empty()
                && let Some(exit) = &s.last_exit
            {
                text += &format!(" ({exit})");
            }
            Progress::Failed(text)
        }
        State::WaitingRestart => {
            let exit = s
                .last_exit
                .as_ref()
                .map_or_else(|| "exited".into(), ToString::to_string);
            Progress::Failed(format!("{exit}, waiting to restart"))
        }
        State::Online if checked => {
            let detail = match (current_health_error(s), s.health) {
                (Some(error), _) => error.to_owned(),
                (None, Health::Unhealthy) => "unhealthy".into(),
                (None, _) => "not checked yet".into(),
            };
            Progress::Waiting(format!("online (health: {detail})"))
        }
        State::Online => {
            let up = u64::try_from(now_ms.saturating_sub(s.started_at_ms.unwrap_or(now_ms)))
                .unwrap_or(0);
            let left = s.spec.min_uptime_ms.saturating_sub(up);
            let left = Duration::from_millis(left.div_ceil(100) * 100);
            Progress::Waiting(format!(
                "online, stable in {}",
                humantime::format_duration(left)
            ))
        }
        State::Starting => {
            let mut text = state_text(s);
            if checked && let Some(error) = current_health_error(s) {
                text += &format!(" (health: {error})");
            }
            if s.ready_message == ReadyMessage::Awaited {
                text += &format!(
                    " (waiting for its 'ready' message, listen_timeout {} ms)",
                    s.spec.listen_timeout_ms
                );
            }
            Progress::Waiting(text)
        }
    }
}

/// `state (reason)`, or the state alone.
fn state_text(s: &Shared) -> String {
    if s.reason.is_empty() {
        s.state.word().to_owned()
    } else {
        format!("{} ({})", s.state.word(), s.reason)
    }
}

/// The health error of the current run, if its latest check failed.
fn current_health_error(s: &Shared) -> Option<&str> {
    if s.last_health_error.is_empty() || s.last_health_check_passed == Some(true) {
        return None;
    }
    // The error is kept after recovery and across restarts: only one of
    // this run counts.
    match (s.last_health_error_at_ms, s.started_at_ms) {
        (Some(failed), Some(started)) if failed < started => None,
        _ => Some(&s.last_health_error),
    }
}

/// The status message for instances that are not ready: one [`report`]
/// each, with log lines for the first [`MAX_REPORTED`].
async fn failure(
    sup: &Supervisor,
    instances: &[(&Waited, &str)],
    timed_out: Option<Duration>,
) -> String {
    let mut text = String::new();
    for (i, (w, why)) in instances.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        let logs = if i < MAX_REPORTED {
            last_log_lines(sup, w.id).await
        } else {
            None
        };
        text += &report(
            w.id,
            w.last.as_ref(),
            why,
            timed_out,
            logs.as_deref(),
            now_ms(),
        );
    }
    text.trim_end().to_owned()
}

/// One instance's part of a failure report (pure, for tests): what it is
/// doing, its reason, its last health error and its last log lines.
pub fn report(
    id: u32,
    view: Option<&InstanceView>,
    why: &str,
    timed_out: Option<Duration>,
    logs: Option<&[String]>,
    now_ms: i64,
) -> String {
    let s = view.map(|v| &v.shared);
    pmdaemon_proto::wording::NotReady {
        name: view.map(|v| v.name.as_str()),
        id,
        why,
        timed_out,
        reason: s.map_or("", |s| s.reason.as_str()),
        last_health_error: s.map_or("", |s| s.last_health_error.as_str()),
        last_health_error_at_ms: s.and_then(|s| s.last_health_error_at_ms),
        logs,
    }
    .report(now_ms)
}

/// The last [`LOG_LINES`] lines of each log of instance `id` (stdout,
/// then stderr, as `Supervisor::sinks` lists them), tagged `ID|NAME |`, as
/// `pmd logs` shows them; None if they cannot be read.
async fn last_log_lines(sup: &Supervisor, id: u32) -> Option<Vec<String>> {
    let sinks = sup.sinks(&Target::Id(id)).ok()?;
    let mut lines = Vec::new();
    for (id, name, stream, sink) in sinks {
        let read = tokio::task::spawn_blocking(move || sink.tail(LOG_LINES)).await;
        let Ok(Ok((data, _))) = read else {
            tracing::warn!(
                id,
                stream = stream.as_str(),
                "cannot read the log for a failure report"
            );
            return None;
        };
        lines.extend(
            data.iter()
                .map(|d| format!("{id}|{name} | {}", String::from_utf8_lossy(d))),
        );
    }
    Some(lines)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::supervisor::instance::ExitInfo;
    use crate::supervisor::instance::tests::shared;

    pub(crate) const NOW: i64 = 1_700_000_000_000;

    /// A running record of `api` started 400 ms ago.
    pub(crate) fn running(checked: bool, state: State) -> Shared {
        let mut s = shared("always", checked, state);
        s.pid = Some(99);
        s.started_at_ms = Some(NOW - 400);
        if checked {
            s.health = Health::Unknown;
        }
        s
    }

    pub(crate) fn view(s: Shared) -> InstanceView {
        InstanceView {
            id: 3,
            index: 0,
            name: "api".into(),
            plan: crate::supervisor::instance::tests::plan_of(&s),
            shared: s,
            created_at_ms: 0,
            out_log: "/o".into(),
            err_log: "/e".into(),
            log: None,
            sample: None,
            balance: None,
            next_cron_restart_at_ms: None,
        }
    }

    /// Without a check: waiting until the instance says it is ready, with
    /// the time left of min_uptime.
    #[test]
    fn without_a_check_ready_is_online_for_min_uptime() {
        let mut young = running(false, State::Online);
        assert_eq!(
            assess(&young, 0, NOW),
            Progress::Waiting("online, stable in 600ms".into())
        );
        young.ready = true;
        assert_eq!(assess(&young, 0, NOW + 600), Progress::Ready);
        assert_eq!(
            assess(&running(false, State::Starting), 0, NOW),
            Progress::Waiting("starting".into())
        );
    }

    /// With a check: the wait says which health error keeps it starting;
    /// an error of an earlier run, or one a check has since passed, does
    /// not count.
    #[test]
    fn with_a_check_the_wait_names_the_health_error() {
        let mut s = running(true, State::Starting);
        assert_eq!(assess(&s, 0, NOW), Progress::Waiting("starting".into()));
        s.last_health_error = "connection refused".into();
        s.last_health_error_at_ms = Some(NOW - 100);
        s.last_health_check_at_ms = Some(NOW - 100);
        s.last_health_check_passed = Some(false);
        assert_eq!(
            assess(&s, 0, NOW),
            Progress::Waiting("starting (health: connection refused)".into())
        );
        s.last_health_error_at_ms = Some(NOW - 1000);
        assert_eq!(assess(&s, 0, NOW), Progress::Waiting("starting".into()));
        s.last_health_error_at_ms = Some(NOW - 100);
        s.last_health_check_passed = Some(true);
        assert_eq!(assess(&s, 0, NOW), Progress::Waiting("starting".into()));
        let mut online = running(true, State::Online);
        assert_eq!(
            assess(&online, 0, NOW),
            Progress::Waiting("online (health: not checked yet)".into())
        );
        online.health = Health::Healthy;
        online.ready = true;
        assert_eq!(assess(&online, 0, NOW), Progress::Ready);
    }

    /// Errored, stopped, waiting to restart, restarted since the baseline:
    /// failed at once, saying how.
    #[test]
    fn crashes_fail_the_wait() {
        let mut errored = running(false, State::Errored);
        errored.reason = "too many unstable restarts".into();
        assert_eq!(
            assess(&errored, 0, NOW),
            Progress::Failed("errored (too many unstable restarts)".into())
        );
        let mut waiting = running(false, State::WaitingRestart);
        waiting.last_exit = Some(ExitInfo {
            code: Some(1),
            signal: None,
            at_ms: NOW,
        });
        assert_eq!(
            assess(&waiting, 0, NOW),
            Progress::Failed("exited with code 1, waiting to restart".into())
        );
        let mut restarted = running(false, State::Online);
        restarted.ready = true;
        restarted.restarts = 2;
        restarted.last_exit = Some(ExitInfo {
            code: None,
            signal: Some("SIGKILL".into()),
            at_ms: NOW,
        });
        assert_eq!(
            assess(&restarted, 1, NOW),
            Progress::Failed("restarted once while starting (last run killed by SIGKILL)".into())
        );
        assert_eq!(assess(&restarted, 2, NOW), Progress::Ready);
        let mut stopped = running(false, State::Stopped);
        stopped.last_exit = Some(ExitInfo {
            code: Some(3),
            signal: None,
            at_ms: NOW,
        });
        assert_eq!(
            assess(&stopped, 0, NOW),
            Progress::Failed("stopped (exited with code 3)".into())
        );
    }

    /// With wait_ready: waiting for the message while starting; ready
    /// once it came; failed, naming listen_timeout, once that passed.
    #[test]
    fn wait_ready_waits_for_the_message_within_listen_timeout() {
        let mut s = running(false, State::Starting);
        let mut spec = (*s.spec).clone();
        spec.wait_ready = true;
        spec.listen_timeout_ms = 3000;
        s.spec = std::sync::Arc::new(spec);
        s.ready_message = ReadyMessage::Awaited;
        assert_eq!(
            assess(&s, 0, NOW),
            Progress::Waiting(
                "starting (waiting for its 'ready' message, listen_timeout 3000 ms)".into()
            )
        );
        let mut missed = s.clone();
        missed.state = State::Online;
        missed.ready_message = ReadyMessage::Missed;
        match assess(&missed, 0, NOW) {
            Progress::Failed(why) => assert!(
                why.starts_with("no 'ready' message within listen_timeout (3000 ms)"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
        s.state = State::Online;
        s.ready_message = ReadyMessage::Received;
        s.ready = true;
        assert_eq!(assess(&s, 0, NOW), Progress::Ready);
    }

    /// A one-shot job that exited 0 is done; with autorestart always, a
    /// stop is a failure.
    #[test]
    fn one_shot_jobs_complete() {
        let exit_0 = Some(ExitInfo {
            code: Some(0),
            signal: None,
            at_ms: NOW,
        });
        let mut job = shared("never", false, State::Stopped);
        job.last_exit = exit_0.clone();
        assert_eq!(assess(&job, 0, NOW), Progress::Completed);
        let mut served = shared("always", false, State::Stopped);
        served.last_exit = exit_0;
        assert!(matches!(assess(&served, 0, NOW), Progress::Failed(_)));
    }
}
