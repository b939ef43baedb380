//! `--wait-ready` of `start`, `restart` and `reload` (also with a FILE):
//! after the verb's RPC, poll ListProcesses every [`POLL_INTERVAL`] until
//! every instance it returned is ready, one of them fails, or the timeout
//! passes.
//!
//! Ready means online and healthy for an app with a health check, else
//! online for its `min_uptime` (`started_at_ms + min_uptime_ms`); a one-shot
//! job (autorestart never / on-failure) that exited 0 has completed, which
//! counts as done. Failed means errored, stopped, stopping, waiting to
//! restart, restarted since the verb (its `restarts` grew), or deleted. On a
//! failure or a timeout the error names each instance that is not ready
//! with its state and reason, its last health error and its last
//! [`LOG_LINES`] log lines (StreamLogs without follow).
//!
//! Polling rather than WatchEvents: a poll sees the state as it is, so no
//! event can be missed between the verb's answer and the subscription, and
//! 20 small unary calls a second cost the daemon nothing.
//!
//! On a terminal stderr, one indicatif spinner per app shows where it is
//! (`api  starting (health: connection refused)` → `api  ready`); the
//! spinners are cleared at the end and the outcome goes to stdout like the
//! verb's own lines.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use pmdaemon_proto::v1::{
    GetProcessRequest, HealthState, ListProcessesRequest, ProcessInfo, ProcessState, RestartPolicy,
    StreamLogsRequest,
};

use super::{RpcResultExt, print_processes};
use crate::cli::{OutputFormat, WaitArg};
use crate::connect::Client;
use crate::render;
use crate::term;

/// Time between two looks at the process table.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Log lines per log file shown for an instance that is not ready.
pub const LOG_LINES: u32 = 10;

/// Instances whose logs a failure report shows (the others are listed).
const MAX_REPORTED: usize = 4;

/// min_uptime when the daemon did not report the effective value.
const DEFAULT_MIN_UPTIME_MS: u64 = 1000;

/// Where one instance is, as far as `--wait-ready` is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// A one-shot job that exited 0 and is not restarted.
    Completed,
    /// Not ready yet; what it is waiting for.
    Waiting(String),
    /// It will not become ready; why.
    Failed(String),
}

impl Readiness {
    fn is_done(&self) -> bool {
        matches!(self, Readiness::Ready | Readiness::Completed)
    }
}

/// `state (reason)`, or the state alone.
fn state_text(info: &ProcessInfo) -> String {
    let state = info.state().word();
    if info.status_reason.is_empty() {
        state.to_string()
    } else {
        format!("{state} ({})", info.status_reason)
    }
}

/// How the last run ended: `exited with code 1`, `killed by SIGKILL`.
fn last_exit(info: &ProcessInfo) -> Option<String> {
    match (&info.last_exit_signal, info.last_exit_code) {
        (Some(signal), _) => Some(format!("killed by {signal}")),
        (None, Some(code)) => Some(format!("exited with code {code}")),
        (None, None) => None,
    }
}

/// The health error of the current run, if the latest check failed.
fn current_health_error(info: &ProcessInfo) -> Option<&str> {
    if info.last_health_error.is_empty() {
        return None;
    }
    // The error is kept after recovery and across restarts: only one
    // of the latest check of this run counts.
    if info.last_health_check_passed == Some(true) {
        return None;
    }
    match (info.last_health_error_at_ms, info.started_at_ms) {
        (Some(failed), Some(started)) if failed < started => None,
        _ => Some(&info.last_health_error),
    }
}

/// Where `info` is, given its restart count when the verb answered.
pub fn readiness(info: &ProcessInfo, baseline_restarts: u32, now_ms: i64) -> Readiness {
    let spec = info.spec.clone().unwrap_or_default();
    if info.restarts > baseline_restarts {
        let n = info.restarts - baseline_restarts;
        let times = if n == 1 { "once" } else { "several times" };
        let why = last_exit(info).map_or_else(String::new, |e| format!(" (last run {e})"));
        return Readiness::Failed(format!("restarted {times} while starting{why}"));
    }
    match info.state() {
        ProcessState::Errored => Readiness::Failed(state_text(info)),
        ProcessState::Stopped
            if info.last_exit_code == Some(0)
                && info.last_exit_signal.is_none()
                && matches!(
                    spec.autorestart(),
                    RestartPolicy::Never | RestartPolicy::OnFailure
                ) =>
        {
            Readiness::Completed
        }
        ProcessState::Stopped | ProcessState::Stopping => {
            let mut text = state_text(info);
            if info.status_reason.is_empty()
                && let Some(exit) = last_exit(info)
            {
                text += &format!(" ({exit})");
            }
            Readiness::Failed(text)
        }
        ProcessState::WaitingRestart => {
            let exit = last_exit(info).unwrap_or_else(|| "exited".into());
            Readiness::Failed(format!("{exit}, waiting to restart"))
        }
        ProcessState::Online if spec.health_check.is_some() => match info.health() {
            HealthState::Healthy => Readiness::Ready,
            health => Readiness::Waiting(health_wait_text(info, health)),
        },
        ProcessState::Online => {
            let min_uptime = spec.min_uptime_ms.unwrap_or(DEFAULT_MIN_UPTIME_MS);
            let started = info.started_at_ms.unwrap_or(now_ms);
            let up = u64::try_from(now_ms.saturating_sub(started)).unwrap_or(0);
            if up >= min_uptime {
                Readiness::Ready
            } else {
                let left = Duration::from_millis((min_uptime - up).div_ceil(100) * 100);
                Readiness::Waiting(format!(
                    "online, stable in {}",
                    humantime::format_duration(left)
                ))
            }
        }
        ProcessState::Starting | ProcessState::Unspecified => {
            let mut text = state_text(info);
            if spec.health_check.is_some()
                && let Some(error) = current_health_error(info)
            {
                text += &format!(" (health: {error})");
            }
            Readiness::Waiting(text)
        }
    }
}

/// `online (health: connection refused)`, `online (health: not checked
/// yet)`.
fn health_wait_text(info: &ProcessInfo, health: HealthState) -> String {
    let detail = match (current_health_error(info), health) {
        (Some(error), _) => error.to_string(),
        (None, HealthState::Unhealthy) => "unhealthy".into(),
        (None, _) => "not checked yet".into(),
    };
    format!("online (health: {detail})")
}

/// The spinner text of one app: `ready`, `starting (health: ...)`, or for
/// several instances `2/4 ready; id 3 starting (...)` (the first instance
/// not ready speaks for the others).
pub fn app_line(instances: &[(u32, Readiness)]) -> String {
    let done = instances.iter().filter(|(_, r)| r.is_done()).count();
    if done == instances.len() {
        let completed = instances
            .iter()
            .all(|(_, r)| matches!(r, Readiness::Completed));
        return if completed { "completed" } else { "ready" }.into();
    }
    let first = instances
        .iter()
        .find(|(_, r)| matches!(r, Readiness::Failed(_)))
        .or_else(|| instances.iter().find(|(_, r)| !r.is_done()));
    let text = match first {
        Some((_, Readiness::Waiting(text) | Readiness::Failed(text))) => text.clone(),
        _ => String::new(),
    };
    match (instances.len(), first) {
        (1, _) | (_, None) => text,
        (n, Some((id, _))) => format!("{done}/{n} ready; id {id} {text}"),
    }
}

/// The spinners, one per app, on a terminal stderr.
struct Spinners {
    multi: indicatif::MultiProgress,
    bars: BTreeMap<String, indicatif::ProgressBar>,
}

impl Spinners {
    fn new(names: impl Iterator<Item = String>) -> Option<Spinners> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let names: Vec<String> = names.collect();
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        let multi = indicatif::MultiProgress::new();
        let bars = names
            .into_iter()
            .map(|name| {
                let bar = multi.add(indicatif::ProgressBar::new_spinner());
                let style = indicatif::ProgressStyle::with_template("{spinner} {prefix}  {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
                bar.set_style(style);
                bar.set_prefix(format!("{name:<width$}"));
                bar.set_message("starting");
                bar.enable_steady_tick(Duration::from_millis(100));
                (name, bar)
            })
            .collect();
        Some(Spinners { multi, bars })
    }

    fn update(&self, name: &str, line: &str) {
        if let Some(bar) = self.bars.get(name)
            && bar.message() != line
        {
            bar.set_message(line.to_string());
        }
    }

    fn clear(self) {
        for bar in self.bars.values() {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

/// Prints what a verb did, waiting first when `--wait-ready` asks: table
/// lines at once (then `ready NAME (ids)` lines), JSON / YAML once the wait
/// is over, with the states it ended on.
pub async fn print_and_wait(
    client: &mut Client,
    verb: &str,
    processes: &[ProcessInfo],
    output: OutputFormat,
    wait: WaitArg,
) -> anyhow::Result<()> {
    if output == OutputFormat::Table {
        print_processes(verb, processes, output, &format!("no process {verb}"))?;
    }
    finish(client, processes, output, wait).await
}

/// The `--wait-ready` part of [`print_and_wait`], for verbs that printed
/// their table lines their own way: waits if asked, then prints JSON /
/// YAML (with the final states) or the `ready` lines.
pub async fn finish(
    client: &mut Client,
    processes: &[ProcessInfo],
    output: OutputFormat,
    wait: WaitArg,
) -> anyhow::Result<()> {
    if !wait.wait_ready {
        if output != OutputFormat::Table {
            print_processes("", processes, output, "")?;
        }
        return Ok(());
    }
    let (last, outcome) = wait_ready(client, processes, wait).await;
    match output {
        OutputFormat::Table => {
            if outcome.is_ok() {
                term::print(&ready_lines(&last))?;
            }
        }
        _ => print_processes("", &last, output, "")?,
    }
    outcome
}

/// `ready api (ids 0-3)` per app, in first-seen order; `completed` for
/// one-shot jobs.
fn ready_lines(processes: &[ProcessInfo]) -> String {
    let mut order: Vec<&str> = Vec::new();
    let mut by_app: HashMap<&str, Vec<&ProcessInfo>> = HashMap::new();
    for p in processes {
        if !by_app.contains_key(p.name.as_str()) {
            order.push(&p.name);
        }
        by_app.entry(&p.name).or_default().push(p);
    }
    order
        .into_iter()
        .map(|name| {
            let instances = &by_app[name];
            let completed = instances.iter().all(|p| p.state() == ProcessState::Stopped);
            let word = if completed { "completed" } else { "ready" };
            let ids = render::id_list(instances.iter().map(|p| p.id));
            format!("{word} {name} ({ids})\n")
        })
        .collect()
}

/// Polls until every process of `processes` is ready or completed, at most
/// until `wait.wait_timeout` after `wait.since`. Returns the last states
/// seen (for printing) and the outcome.
pub async fn wait_ready(
    client: &mut Client,
    processes: &[ProcessInfo],
    wait: WaitArg,
) -> (Vec<ProcessInfo>, anyhow::Result<()>) {
    let timeout = wait.wait_timeout;
    let baseline: HashMap<u32, u32> = processes.iter().map(|p| (p.id, p.restarts)).collect();
    let mut names: Vec<String> = Vec::new();
    for p in processes {
        if !names.contains(&p.name) {
            names.push(p.name.clone());
        }
    }
    let spinners = Spinners::new(names.iter().cloned());
    let deadline = wait.since.unwrap_or_else(Instant::now) + timeout;
    let mut last: Vec<ProcessInfo> = processes.to_vec();
    let outcome = loop {
        let listed = match client.list_processes(ListProcessesRequest {}).await.rpc() {
            Ok(listed) => listed.processes,
            Err(e) => break Err(e.context("waiting for the apps to be ready")),
        };
        let now = render::now_ms();
        let mut states: Vec<(ProcessInfo, Readiness)> = Vec::new();
        for p in processes {
            match listed.iter().find(|l| l.id == p.id) {
                Some(current) => {
                    let r = readiness(current, baseline[&p.id], now);
                    states.push((current.clone(), r));
                }
                None => states.push((p.clone(), Readiness::Failed("deleted".into()))),
            }
        }
        last = states.iter().map(|(p, _)| p.clone()).collect();
        if let Some(spinners) = &spinners {
            for name in &names {
                let instances: Vec<(u32, Readiness)> = states
                    .iter()
                    .filter(|(p, _)| &p.name == name)
                    .map(|(p, r)| (p.id, r.clone()))
                    .collect();
                spinners.update(name, &app_line(&instances));
            }
        }
        if states.iter().all(|(_, r)| r.is_done()) {
            break Ok(());
        }
        let failed: Vec<(&ProcessInfo, String)> = states
            .iter()
            .filter_map(|(p, r)| match r {
                Readiness::Failed(why) => Some((p, why.clone())),
                _ => None,
            })
            .collect();
        if !failed.is_empty() {
            break Err(failure(client, &failed, None).await);
        }
        if Instant::now() >= deadline {
            let waiting: Vec<(&ProcessInfo, String)> = states
                .iter()
                .filter_map(|(p, r)| match r {
                    Readiness::Waiting(what) => Some((p, what.clone())),
                    _ => None,
                })
                .collect();
            break Err(failure(client, &waiting, Some(timeout)).await);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    if let Some(spinners) = spinners {
        spinners.clear();
    }
    (last, outcome)
}

/// The error for instances that are not ready: what each is doing, its
/// last health error and its last log lines.
/// `error` (a failed reload, say) with the details `--wait-ready` gives:
/// for each instance of `target` that is not online, its state, last
/// health error and last log lines.
pub async fn explain(client: &mut Client, target: &str, error: anyhow::Error) -> anyhow::Error {
    let Ok(listed) = client
        .get_process(GetProcessRequest {
            target: target.to_owned(),
        })
        .await
    else {
        return error;
    };
    let processes = listed.into_inner().processes;
    let stuck: Vec<(&ProcessInfo, String)> = processes
        .iter()
        .filter(|p| p.state() != ProcessState::Online)
        .map(|p| (p, format!("it is {}", p.state().word())))
        .collect();
    if stuck.is_empty() {
        return error;
    }
    let details = failure(client, &stuck, None).await;
    anyhow::anyhow!("{error:#}\n{details}")
}

async fn failure(
    client: &mut Client,
    instances: &[(&ProcessInfo, String)],
    timed_out: Option<Duration>,
) -> anyhow::Error {
    let mut text = String::new();
    for (i, (info, why)) in instances.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        let logs = if i < MAX_REPORTED {
            last_log_lines(client, info.id).await
        } else {
            None
        };
        text += &report(info, why, timed_out, logs.as_deref(), render::now_ms());
    }
    anyhow::anyhow!("{}", text.trim_end())
}

/// One instance's part of a failure report (pure, for tests).
pub fn report(
    info: &ProcessInfo,
    why: &str,
    timed_out: Option<Duration>,
    logs: Option<&[String]>,
    now_ms: i64,
) -> String {
    let head = match timed_out {
        Some(t) => format!(
            "{} (id {}) is not ready after {}: {why}",
            info.name,
            info.id,
            humantime::format_duration(t)
        ),
        None => format!("{} (id {}) is not ready: {why}", info.name, info.id),
    };
    let mut text = head + "\n";
    if !info.status_reason.is_empty() && !why.contains(&info.status_reason) {
        text += &format!("  reason: {}\n", info.status_reason);
    }
    if !info.last_health_error.is_empty() {
        // The check time is the latest check's: the error's only while the
        // instance is not healthy.
        let when = info
            .last_health_error_at_ms
            .map(|at| {
                let ago = u64::try_from(now_ms.saturating_sub(at)).unwrap_or(0);
                format!(" ({} ago)", render::short_duration(ago))
            })
            .unwrap_or_default();
        text += &format!("  last health error: {}{when}\n", info.last_health_error);
    }
    match logs {
        Some([]) => text += "  no log lines\n",
        Some(lines) => {
            text += &format!("  last log lines of {} (id {}):\n", info.name, info.id);
            for line in lines {
                text += &format!("    {line}\n");
            }
        }
        None => {}
    }
    text
}

/// The last [`LOG_LINES`] lines of each log of instance `id`, tagged
/// `ID|NAME |`; `None` if the daemon could not send them.
async fn last_log_lines(client: &mut Client, id: u32) -> Option<Vec<String>> {
    let request = StreamLogsRequest {
        target: id.to_string(),
        lines: LOG_LINES,
        follow: false,
        ..Default::default()
    };
    let mut stream = client.stream_logs(request).await.ok()?.into_inner();
    let mut lines = Vec::new();
    // A non-follow stream ends by itself; bound it anyway.
    let read = async {
        while let Ok(Some(message)) = stream.message().await {
            for line in message.lines {
                let data = String::from_utf8_lossy(&line.data);
                lines.push(format!("{}|{} | {data}", line.id, line.name));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(2), read)
        .await
        .ok()?;
    Some(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmdaemon_proto::v1::health_check::Probe;
    use pmdaemon_proto::v1::{AppSpec, HealthCheck};

    const NOW: i64 = 1_700_000_000_000;

    fn process(state: ProcessState) -> ProcessInfo {
        let mut info = ProcessInfo {
            id: 3,
            name: "api".into(),
            pid: Some(99),
            started_at_ms: Some(NOW - 400),
            spec: Some(AppSpec {
                min_uptime_ms: Some(1000),
                ..Default::default()
            }),
            ..Default::default()
        };
        info.set_state(state);
        info
    }

    fn with_check(mut info: ProcessInfo) -> ProcessInfo {
        info.spec.as_mut().unwrap().health_check = Some(HealthCheck {
            probe: Some(Probe::Http("http://127.0.0.1:{port}/health".into())),
            ..Default::default()
        });
        info
    }

    /// Without a check: online for min_uptime.
    #[test]
    fn ready_without_a_check_is_online_for_min_uptime() {
        let young = process(ProcessState::Online);
        assert_eq!(
            readiness(&young, 0, NOW),
            Readiness::Waiting("online, stable in 600ms".into())
        );
        assert_eq!(readiness(&young, 0, NOW + 600), Readiness::Ready);
        let starting = process(ProcessState::Starting);
        assert_eq!(
            readiness(&starting, 0, NOW),
            Readiness::Waiting("starting".into())
        );
    }

    /// With a check: online and healthy; the wait says why not yet.
    #[test]
    fn ready_with_a_check_is_healthy() {
        let mut info = with_check(process(ProcessState::Online));
        info.set_health(HealthState::Unknown);
        assert_eq!(
            readiness(&info, 0, NOW + 5000),
            Readiness::Waiting("online (health: not checked yet)".into())
        );
        info.last_health_error = "connection refused".into();
        info.last_health_error_at_ms = Some(NOW - 100);
        info.last_health_check_at_ms = Some(NOW - 100);
        info.last_health_check_passed = Some(false);
        assert_eq!(
            readiness(&info, 0, NOW),
            Readiness::Waiting("online (health: connection refused)".into())
        );
        // An error from before this run does not count.
        info.last_health_error_at_ms = Some(NOW - 1000);
        assert_eq!(
            readiness(&info, 0, NOW),
            Readiness::Waiting("online (health: not checked yet)".into())
        );
        // Nor one the latest check has since passed.
        info.last_health_error_at_ms = Some(NOW - 100);
        info.last_health_check_passed = Some(true);
        assert_eq!(
            readiness(&info, 0, NOW),
            Readiness::Waiting("online (health: not checked yet)".into())
        );
        info.set_health(HealthState::Healthy);
        assert_eq!(readiness(&info, 0, NOW), Readiness::Ready);
    }

    /// Errored, stopped, waiting to restart, restarted: failed at once.
    #[test]
    fn crashes_fail_the_wait() {
        let mut errored = process(ProcessState::Errored);
        errored.status_reason = "too many unstable restarts".into();
        assert_eq!(
            readiness(&errored, 0, NOW),
            Readiness::Failed("errored (too many unstable restarts)".into())
        );
        let mut waiting = process(ProcessState::WaitingRestart);
        waiting.last_exit_code = Some(1);
        assert_eq!(
            readiness(&waiting, 0, NOW),
            Readiness::Failed("exited with code 1, waiting to restart".into())
        );
        let mut restarted = process(ProcessState::Online);
        restarted.restarts = 2;
        restarted.last_exit_signal = Some("SIGKILL".into());
        assert_eq!(
            readiness(&restarted, 1, NOW + 5000),
            Readiness::Failed("restarted once while starting (last run killed by SIGKILL)".into())
        );
        assert_eq!(readiness(&restarted, 2, NOW + 5000), Readiness::Ready);
        let mut stopped = process(ProcessState::Stopped);
        stopped.last_exit_code = Some(3);
        assert_eq!(
            readiness(&stopped, 0, NOW),
            Readiness::Failed("stopped (exited with code 3)".into())
        );
    }

    /// A one-shot job that exited 0 and is not restarted has completed.
    #[test]
    fn one_shot_jobs_complete() {
        let mut job = process(ProcessState::Stopped);
        job.last_exit_code = Some(0);
        job.spec
            .as_mut()
            .unwrap()
            .set_autorestart(RestartPolicy::Never);
        assert_eq!(readiness(&job, 0, NOW), Readiness::Completed);
        // With autorestart always, a stop is not a completion.
        job.spec
            .as_mut()
            .unwrap()
            .set_autorestart(RestartPolicy::Always);
        assert!(matches!(readiness(&job, 0, NOW), Readiness::Failed(_)));
    }

    #[test]
    fn spinner_lines_per_app() {
        let waiting = Readiness::Waiting("starting (health: connection refused)".into());
        assert_eq!(
            app_line(&[(0, waiting.clone())]),
            "starting (health: connection refused)"
        );
        assert_eq!(app_line(&[(0, Readiness::Ready)]), "ready");
        assert_eq!(app_line(&[(0, Readiness::Completed)]), "completed");
        assert_eq!(
            app_line(&[(0, Readiness::Ready), (1, Readiness::Ready), (2, waiting)]),
            "2/3 ready; id 2 starting (health: connection refused)"
        );
        assert_eq!(
            app_line(&[
                (0, Readiness::Waiting("starting".into())),
                (1, Readiness::Failed("errored".into()))
            ]),
            "0/2 ready; id 1 errored"
        );
    }

    #[test]
    fn failure_report_has_reason_health_and_logs() {
        let mut info = with_check(process(ProcessState::Online));
        info.status_reason = "health check failing".into();
        info.last_health_error = "GET /health: 503".into();
        info.last_health_error_at_ms = Some(NOW - 2000);
        info.last_health_check_at_ms = Some(NOW - 2000);
        let logs = vec!["3|api | listening on 3000".to_string()];
        let text = report(
            &info,
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
            &info,
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
    }

    #[test]
    fn ready_lines_group_instances() {
        let mut a = process(ProcessState::Online);
        a.id = 0;
        let mut b = process(ProcessState::Online);
        b.id = 1;
        let mut job = process(ProcessState::Stopped);
        job.name = "migrate".into();
        job.id = 2;
        assert_eq!(
            ready_lines(&[a, b, job]),
            "ready api (ids 0-1)\ncompleted migrate (id 2)\n"
        );
    }
}
