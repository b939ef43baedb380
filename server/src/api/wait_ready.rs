//! WaitReady: waits until the instances of a target are ready, as each
//! instance decides (`Shared::readiness`, set by its task), and streams
//! their progress. The wait looks at the records again at each change
//! (`Supervisor::changes`, taken before the first look), never on a timer,
//! and ends with a message whose `ready` is set, or with the precise
//! failure as the status: FAILED_PRECONDITION as soon as an instance cannot
//! become ready, DEADLINE_EXCEEDED at the timeout, the message naming each
//! instance that is not ready with its state and reason, its last health
//! error and its last [`LOG_LINES`] log lines.
//!
//! This is the one implementation of `--wait-ready`: `pmd` renders this
//! stream, and HTTP or generated clients get the same behaviour. The wait
//! runs in its own task and ends early when the client goes away.

use std::pin::Pin;
use std::time::Duration;

use pmdaemon_proto::{Target, v1};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::convert::{info, parse_target};
use crate::error::Error;
use crate::supervisor::instance::{Health, Readiness, Shared, State, now_ms};
use crate::supervisor::{DEFAULT_READY_TIMEOUT, InstanceView, Supervisor};

/// The response stream of WaitReady.
pub type WaitReadyStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<v1::WaitReadyResponse, Status>> + Send>>;

/// Log lines per log file in a failure report.
pub const LOG_LINES: usize = 10;

/// Instances whose logs a failure report shows (the others are listed).
const MAX_REPORTED: usize = 4;

/// Most bytes of a status message once percent-encoded (see
/// [`fit_in_trailer`]): clients built on gRPC core (Python, C++) refuse
/// trailing metadata above 8 KiB by default, all headers included.
const MAX_STATUS_BYTES: usize = 6 * 1024;

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

    fn to_proto(&self) -> (v1::Readiness, &str) {
        match self {
            Progress::Ready => (v1::Readiness::Ready, ""),
            Progress::Completed => (v1::Readiness::Completed, ""),
            Progress::Waiting(what) => (v1::Readiness::Waiting, what),
            Progress::Failed(why) => (v1::Readiness::Failed, why),
        }
    }
}

/// One instance waited for.
struct Watched {
    id: u32,
    /// Its restart count when the caller's command answered.
    baseline_restarts: u32,
    /// As last seen; None if it never was (deleted before the wait).
    last: Option<InstanceView>,
}

pub fn wait_ready(sup: &Supervisor, req: v1::WaitReadyRequest) -> Result<WaitReadyStream, Status> {
    let target = parse_target(&req.target)?;
    let timeout = match req.timeout_ms {
        0 => DEFAULT_READY_TIMEOUT,
        ms => pmdaemon_proto::check_duration("timeout_ms", Duration::from_millis(ms))
            .map_err(|e| Status::invalid_argument(e.0))?,
    };
    // The time already spent since the caller's clock started counts.
    let spent_ms = req.since_ms.map_or(0, |since| {
        u64::try_from(now_ms().saturating_sub(since)).unwrap_or(0)
    });
    let deadline = Instant::now() + timeout.saturating_sub(Duration::from_millis(spent_ms));
    // Taken before the first look, so that a change in between is not
    // missed.
    let changes = sup.changes();
    let views = match sup.views(&target) {
        // Instances of the baseline that are gone fail as deleted.
        Err(Error::NotFound { .. }) if !req.baseline.is_empty() => Vec::new(),
        other => other?,
    };
    let watched: Vec<Watched> = if req.baseline.is_empty() {
        views
            .into_iter()
            .map(|v| Watched {
                id: v.id,
                baseline_restarts: v.shared.restarts,
                last: Some(v),
            })
            .collect()
    } else {
        req.baseline
            .iter()
            .map(|b| Watched {
                id: b.id,
                baseline_restarts: b.restarts,
                last: views.iter().find(|v| v.id == b.id).cloned(),
            })
            .collect()
    };
    let (tx, rx) = mpsc::channel(16);
    let sup = sup.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = run(&sup, &target, watched, deadline, timeout, changes, &tx) => {}
            // The client went away: nobody to tell.
            () = tx.closed() => {}
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// The wait itself: one look per change of an instance record until every
/// instance is done, one fails, or `deadline` passes.
async fn run(
    sup: &Supervisor,
    target: &Target,
    mut watched: Vec<Watched>,
    deadline: Instant,
    timeout: Duration,
    mut changes: crate::supervisor::events::Changes,
    tx: &mpsc::Sender<Result<v1::WaitReadyResponse, Status>>,
) {
    let mut sent: Option<Vec<(v1::Readiness, String)>> = None;
    loop {
        let views = sup.views(target).unwrap_or_default();
        let now = now_ms();
        let mut progress = Vec::with_capacity(watched.len());
        for w in &mut watched {
            match views.iter().find(|v| v.id == w.id) {
                Some(v) => {
                    progress.push(assess(&v.shared, w.baseline_restarts, now));
                    w.last = Some(v.clone());
                }
                None => progress.push(Progress::Failed("deleted".into())),
            }
        }
        let message = |ready: bool, report: String| v1::WaitReadyResponse {
            instances: watched
                .iter()
                .zip(&progress)
                .map(|(w, p)| {
                    let (readiness, detail) = p.to_proto();
                    v1::InstanceReadiness {
                        process: Some(w.last.as_ref().map_or_else(
                            || v1::ProcessInfo {
                                id: w.id,
                                ..Default::default()
                            },
                            info,
                        )),
                        readiness: readiness as i32,
                        detail: detail.to_owned(),
                    }
                })
                .collect(),
            ready,
            report,
        };
        if progress.iter().all(Progress::is_done) {
            let _ = tx.send(Ok(message(true, String::new()))).await;
            return;
        }
        let failed: Vec<(&Watched, &str)> = watched
            .iter()
            .zip(&progress)
            .filter_map(|(w, p)| match p {
                Progress::Failed(why) => Some((w, why.as_str())),
                _ => None,
            })
            .collect();
        let timed_out = failed.is_empty() && Instant::now() >= deadline;
        if !failed.is_empty() || timed_out {
            let (report, code) = if timed_out {
                let waiting: Vec<(&Watched, &str)> = watched
                    .iter()
                    .zip(&progress)
                    .filter_map(|(w, p)| match p {
                        Progress::Waiting(what) => Some((w, what.as_str())),
                        _ => None,
                    })
                    .collect();
                let report = failure(sup, &waiting, Some(timeout)).await;
                (report, tonic::Code::DeadlineExceeded)
            } else {
                let report = failure(sup, &failed, None).await;
                (report, tonic::Code::FailedPrecondition)
            };
            // The states the wait ended on and the whole report, then the
            // status.
            let status = Status::new(code, fit_in_trailer(&report));
            if tx.send(Ok(message(false, report))).await.is_err() {
                return;
            }
            let _ = tx.send(Err(status)).await;
            return;
        }
        let summary: Vec<(v1::Readiness, String)> = progress
            .iter()
            .map(|p| {
                let (readiness, detail) = p.to_proto();
                (readiness, detail.to_owned())
            })
            .collect();
        if sent.as_ref() != Some(&summary) {
            if tx.send(Ok(message(false, String::new()))).await.is_err() {
                return;
            }
            sent = Some(summary);
        }
        changes.next(deadline).await;
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
    let checked = s.spec.health_check.is_some();
    match s.state {
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
    instances: &[(&Watched, &str)],
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
    let who = match view {
        Some(v) => format!("{} (id {id})", v.name),
        None => format!("id {id}"),
    };
    let mut text = match timed_out {
        Some(t) => format!(
            "{who} is not ready after {}: {why}\n",
            humantime::format_duration(t)
        ),
        None => format!("{who} is not ready: {why}\n"),
    };
    if let Some(s) = view.map(|v| &v.shared) {
        if !s.reason.is_empty() && !why.contains(&s.reason) {
            text += &format!("  reason: {}\n", s.reason);
        }
        if !s.last_health_error.is_empty() {
            let when = s
                .last_health_error_at_ms
                .map(|at| {
                    let ago = u64::try_from(now_ms.saturating_sub(at)).unwrap_or(0);
                    format!(" ({} ago)", short_duration(ago))
                })
                .unwrap_or_default();
            text += &format!("  last health error: {}{when}\n", s.last_health_error);
        }
    }
    match logs {
        Some([]) => text += "  no log lines\n",
        Some(lines) => {
            text += &format!("  last log lines of {who}:\n");
            for line in lines {
                text += &format!("    {line}\n");
            }
        }
        None => {}
    }
    text
}

/// `report`, cut if needed so that the status message stays within
/// [`MAX_STATUS_BYTES`] once percent-encoded: log lines can make a report
/// longer than clients accept in trailing metadata.
pub fn fit_in_trailer(report: &str) -> String {
    const CUT: &str = "\n... (cut; the last WaitReady message has the whole report)";
    // What tonic percent-encodes: controls, non-ASCII, space and "#%<>`?{}.
    let encoded = |c: char| {
        if c.is_ascii_graphic() && !"\"#%<>`?{}".contains(c) {
            1
        } else {
            3 * c.len_utf8()
        }
    };
    let mut size = 0;
    for (at, c) in report.char_indices() {
        size += encoded(c);
        if size > MAX_STATUS_BYTES - 3 * CUT.len() {
            return format!("{}{CUT}", &report[..at]);
        }
    }
    report.to_owned()
}

/// `12s`, `5m`, `3h`, `2D`, as `pmd` shows ages.
fn short_duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}D", s / 86400),
    }
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
mod tests {
    use super::*;
    use crate::supervisor::instance::ExitInfo;
    use crate::supervisor::instance::tests::shared;

    const NOW: i64 = 1_700_000_000_000;

    /// A running record of `api` started 400 ms ago.
    fn running(checked: bool, state: State) -> Shared {
        let mut s = shared("always", checked, state);
        s.pid = Some(99);
        s.started_at_ms = Some(NOW - 400);
        if checked {
            s.health = Health::Unknown;
        }
        s
    }

    fn view(s: Shared) -> InstanceView {
        InstanceView {
            id: 3,
            index: 0,
            name: "api".into(),
            shared: s,
            created_at_ms: 0,
            out_log: "/o".into(),
            err_log: "/e".into(),
            sample: None,
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

    /// A report too long for a trailer is cut, within the limit once
    /// encoded, and says so; a short one is kept whole.
    #[test]
    fn long_reports_are_cut_to_fit_in_a_trailer() {
        assert_eq!(
            fit_in_trailer("api (id 3) is not ready"),
            "api (id 3) is not ready"
        );
        let long = "log line with spaces é\n".repeat(2000);
        let cut = fit_in_trailer(&long);
        assert!(cut.ends_with("has the whole report)"), "{cut}");
        assert!(long.starts_with(cut.split("\n...").next().unwrap()));
        let encoded = cut
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() {
                    1
                } else {
                    3 * c.len_utf8()
                }
            })
            .sum::<usize>();
        assert!(encoded <= MAX_STATUS_BYTES, "{encoded}");
    }

    #[test]
    fn failure_report_has_reason_health_and_logs() {
        let mut s = running(true, State::Online);
        s.reason = "health check failing".into();
        s.last_health_error = "GET /health: 503".into();
        s.last_health_error_at_ms = Some(NOW - 2000);
        let v = view(s);
        let logs = vec!["3|api | listening on 3000".to_string()];
        let text = report(
            3,
            Some(&v),
            "online (health: GET /health: 503)",
            Some(Duration::from_secs(30)),
            Some(&logs),
            NOW,
        );
        assert_eq!(
            text,
            "api (id 3) is not ready after 30s: online (health: GET /health: 503)\n  \
             reason: health check failing\n  last health error: GET /health: 503 (2s ago)\n  \
             last log lines of api (id 3):\n    3|api | listening on 3000\n"
        );
        let text = report(
            3,
            Some(&v),
            "errored (health check failing)",
            None,
            Some(&[]),
            NOW,
        );
        assert!(
            text.starts_with("api (id 3) is not ready: errored (health check failing)\n  last"),
            "{text}"
        );
        assert!(text.ends_with("  no log lines\n"), "{text}");
        assert_eq!(
            report(7, None, "deleted", None, None, NOW),
            "id 7 is not ready: deleted\n"
        );
    }
}
