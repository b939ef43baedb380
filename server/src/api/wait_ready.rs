//! WaitReady: converts the core's readiness wait
//! (`Supervisor::wait_ready`, the one implementation of `--wait-ready`:
//! `pmd` renders this stream, HTTP and generated clients get the same) into
//! the response stream: a message per progress, then a last one with
//! `ready` set, or the last states with the whole report followed by a
//! FAILED_PRECONDITION or DEADLINE_EXCEEDED status. Ends early when the
//! client goes away.

use std::pin::Pin;
use std::time::Duration;

use pmdaemon_proto::v1;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::convert::{EnvValues, info, parse_target};
use crate::supervisor::instance::now_ms;
use crate::supervisor::wait_ready::{Progress, ReadyUpdate, Waited};
use crate::supervisor::{DEFAULT_READY_TIMEOUT, Supervisor};

/// The response stream of WaitReady.
pub type WaitReadyStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<v1::WaitReadyResponse, Status>> + Send>>;

/// Longest status message (a percent-encoded trailer, see
/// [`fit_in_trailer`]): clients built on gRPC core (Python, C++) refuse
/// trailing metadata above 8 KiB by default, all headers included.
const MAX_STATUS_BYTES: usize = 6 * 1024;

pub fn wait_ready(
    sup: &Supervisor,
    req: v1::WaitReadyRequest,
    env_values: EnvValues,
) -> Result<WaitReadyStream, Status> {
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
    let baseline: Vec<(u32, u32)> = req.baseline.iter().map(|b| (b.id, b.restarts)).collect();
    let mut updates =
        sup.wait_ready(&target, &baseline, timeout, Duration::from_millis(spent_ms))?;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(update) = updates.recv().await {
            let sent = match update {
                ReadyUpdate::Progress(w) => {
                    tx.send(Ok(message(&w, false, String::new(), env_values)))
                        .await
                }
                ReadyUpdate::Ready(w) => {
                    tx.send(Ok(message(&w, true, String::new(), env_values)))
                        .await
                }
                ReadyUpdate::Failed {
                    instances,
                    report,
                    timed_out,
                } => {
                    let code = if timed_out {
                        tonic::Code::DeadlineExceeded
                    } else {
                        tonic::Code::FailedPrecondition
                    };
                    // The states the wait ended on and the whole report,
                    // then the status.
                    let status = Status::new(code, fit_in_trailer(&report));
                    match tx
                        .send(Ok(message(&instances, false, report, env_values)))
                        .await
                    {
                        Ok(()) => tx.send(Err(status)).await,
                        gone => gone,
                    }
                }
            };
            if sent.is_err() {
                return; // the client went away; dropping `updates` ends the wait
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

fn message(
    watched: &[Waited],
    ready: bool,
    report: String,
    env_values: EnvValues,
) -> v1::WaitReadyResponse {
    v1::WaitReadyResponse {
        instances: watched
            .iter()
            .map(|w| {
                let (readiness, detail) = match &w.progress {
                    Progress::Ready => (v1::Readiness::Ready, ""),
                    Progress::Completed => (v1::Readiness::Completed, ""),
                    Progress::Waiting(what) => (v1::Readiness::Waiting, what.as_str()),
                    Progress::Failed(why) => (v1::Readiness::Failed, why.as_str()),
                };
                v1::InstanceReadiness {
                    process: Some(w.last.as_ref().map_or_else(
                        || v1::ProcessInfo {
                            id: w.id,
                            ..Default::default()
                        },
                        |view| {
                            let mut process = info(view);
                            env_values.apply(&mut process);
                            process
                        },
                    )),
                    readiness: readiness as i32,
                    detail: detail.to_owned(),
                }
            })
            .collect(),
        ready,
        report,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::instance::State;
    use crate::supervisor::wait_ready::report;
    use crate::supervisor::wait_ready::tests::{NOW, running, view};

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
