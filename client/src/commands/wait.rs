//! `--wait-ready` of `start`, `restart` and `reload` (also with a FILE):
//! after the verb's RPC, one WaitReady stream for every instance it
//! returned. The daemon decides readiness (healthy with a health check,
//! else online for `min_uptime`; a one-shot job that exited 0 is done) and
//! failure (errored, stopped, waiting to restart, restarted since the verb,
//! deleted, or the timeout), and writes the report: each instance that is
//! not ready with its state and reason, its last health error and its last
//! log lines. This module only renders the stream.
//!
//! On a terminal stderr, one indicatif spinner per app shows where it is
//! (`api  starting (health: connection refused)` → `api  ready`), fed by
//! the stream's progress messages; the spinners are cleared at the end and
//! the outcome goes to stdout like the verb's own lines.
//!
//! [`explain`] adds the same kind of details to other errors (a failed
//! reload, an app an ecosystem file could not apply).

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::time::Duration;

use pmdaemon_proto::v1::{
    GetProcessRequest, InstanceReadiness, ProcessInfo, ProcessState, Readiness as ProtoReadiness,
    StreamLogsRequest, WaitReadyBaseline, WaitReadyRequest,
};

use super::{DaemonError, RpcResultExt, print_processes};
use crate::cli::{OutputFormat, WaitArg};
use crate::connect::Client;
use crate::render;
use crate::term;

/// Log lines per log file shown by [`explain`] for an instance that is not
/// online.
pub const LOG_LINES: u32 = 10;

/// Instances whose logs [`explain`] shows (the others are listed).
const MAX_REPORTED: usize = 4;

/// Where one instance is, as the daemon's WaitReady progress says.
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

    fn from_proto(instance: &InstanceReadiness) -> Readiness {
        let detail = instance.detail.clone();
        match instance.readiness() {
            ProtoReadiness::Ready => Readiness::Ready,
            ProtoReadiness::Completed => Readiness::Completed,
            ProtoReadiness::Failed => Readiness::Failed(detail),
            ProtoReadiness::Waiting | ProtoReadiness::Unspecified => Readiness::Waiting(detail),
        }
    }
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

/// Waits (WaitReady) until every process of `processes` is ready or
/// completed, at most until `wait.wait_timeout` after `wait.since`.
/// Returns the last states seen (for printing) and the outcome.
pub async fn wait_ready(
    client: &mut Client,
    processes: &[ProcessInfo],
    wait: WaitArg,
) -> (Vec<ProcessInfo>, anyhow::Result<()>) {
    if processes.is_empty() {
        return (Vec::new(), Ok(()));
    }
    let mut names: Vec<String> = Vec::new();
    for p in processes {
        if !names.contains(&p.name) {
            names.push(p.name.clone());
        }
    }
    let spinners = Spinners::new(names.iter().cloned());
    let mut last: Vec<ProcessInfo> = processes.to_vec();
    let outcome = follow(client, processes, wait, |message| {
        // A deleted instance the daemon never saw keeps the verb's view.
        last = message
            .iter()
            .map(|i| {
                let p = i.process.clone().unwrap_or_default();
                if p.name.is_empty() {
                    let verb_view = processes.iter().find(|q| q.id == p.id);
                    verb_view.cloned().unwrap_or(p)
                } else {
                    p
                }
            })
            .collect();
        if let Some(spinners) = &spinners {
            for name in &names {
                let instances: Vec<(u32, Readiness)> = last
                    .iter()
                    .zip(message)
                    .filter(|(p, _)| &p.name == name)
                    .map(|(p, i)| (p.id, Readiness::from_proto(i)))
                    .collect();
                spinners.update(name, &app_line(&instances));
            }
        }
    })
    .await;
    if let Some(spinners) = spinners {
        spinners.clear();
    }
    (last, outcome)
}

/// Reads the WaitReady stream for `processes` to its end, handing each
/// progress message to `progress`.
async fn follow(
    client: &mut Client,
    processes: &[ProcessInfo],
    wait: WaitArg,
    mut progress: impl FnMut(&[InstanceReadiness]),
) -> anyhow::Result<()> {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let request = WaitReadyRequest {
        target: "all".into(),
        timeout_ms: millis(wait.wait_timeout),
        since_ms: wait.since.map(|since| {
            render::now_ms().saturating_sub(i64::try_from(since.elapsed().as_millis()).unwrap_or(0))
        }),
        baseline: processes
            .iter()
            .map(|p| WaitReadyBaseline {
                id: p.id,
                restarts: p.restarts,
            })
            .collect(),
    };
    let context = "waiting for the apps to be ready";
    let mut stream = client
        .wait_ready(request)
        .await
        .rpc()
        .map_err(|e| e.context(context))?;
    // The whole report comes just before the failure status, whose
    // message may be cut to fit in a trailer.
    let mut report = String::new();
    loop {
        match stream.message().await {
            Ok(Some(message)) => {
                progress(&message.instances);
                if message.ready {
                    return Ok(());
                }
                report = message.report;
            }
            Ok(None) => anyhow::bail!("{context}: the daemon ended the wait without an outcome"),
            // The daemon's report, as it wrote it.
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::FailedPrecondition | tonic::Code::DeadlineExceeded
                ) =>
            {
                let mut error = DaemonError::from(status);
                if !report.is_empty() {
                    error.message = report;
                }
                return Err(error.into());
            }
            Err(status) => {
                return Err(anyhow::Error::from(DaemonError::from(status)).context(context));
            }
        }
    }
}

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
    let details = failure(client, &stuck).await;
    anyhow::anyhow!("{error:#}\n{details}")
}

/// The details for instances that are not online: a [`report`] each,
/// with log lines for the first [`MAX_REPORTED`].
async fn failure(client: &mut Client, instances: &[(&ProcessInfo, String)]) -> String {
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
        text += &report(info, why, logs.as_deref(), render::now_ms());
    }
    text.trim_end().to_owned()
}

/// One instance's part of [`explain`] (pure, for tests), worded as the
/// daemon's WaitReady report.
pub fn report(info: &ProcessInfo, why: &str, logs: Option<&[String]>, now_ms: i64) -> String {
    pmdaemon_proto::wording::NotReady {
        name: Some(&info.name),
        id: info.id,
        why,
        timed_out: None,
        reason: &info.status_reason,
        last_health_error: &info.last_health_error,
        last_health_error_at_ms: info.last_health_error_at_ms,
        logs,
    }
    .report(now_ms)
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
    use pmdaemon_proto::v1::AppSpec;

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

    /// The daemon's progress entries map onto the spinner's states.
    #[test]
    fn progress_from_the_daemon() {
        let entry = |readiness: ProtoReadiness, detail: &str| {
            let mut i = InstanceReadiness {
                detail: detail.into(),
                ..Default::default()
            };
            i.set_readiness(readiness);
            Readiness::from_proto(&i)
        };
        assert_eq!(entry(ProtoReadiness::Ready, ""), Readiness::Ready);
        assert_eq!(entry(ProtoReadiness::Completed, ""), Readiness::Completed);
        assert_eq!(
            entry(ProtoReadiness::Waiting, "starting"),
            Readiness::Waiting("starting".into())
        );
        assert_eq!(
            entry(ProtoReadiness::Failed, "errored"),
            Readiness::Failed("errored".into())
        );
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
    fn explain_reports_reason_health_and_logs() {
        let mut info = process(ProcessState::Starting);
        info.status_reason = "restoring after a daemon start".into();
        info.last_health_error = "GET /health: 503".into();
        info.last_health_error_at_ms = Some(NOW - 2000);
        let logs = vec!["3|api | listening on 3000".to_string()];
        let text = report(&info, "it is starting", Some(&logs), NOW);
        assert_eq!(
            text,
            "api (id 3) is not ready: it is starting\n  \
             reason: restoring after a daemon start\n  last health error: GET /health: 503 (2s \
             ago)\n  last log lines of api (id 3):\n    3|api | listening on 3000\n"
        );
        let text = report(
            &info,
            "errored (restoring after a daemon start)",
            Some(&[]),
            NOW,
        );
        assert!(
            text.starts_with(
                "api (id 3) is not ready: errored (restoring after a daemon start)\n  last"
            ),
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
