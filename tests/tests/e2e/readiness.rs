//! Readiness decided by the daemon (issue 7): `ready` in `pmd list -o json`
//! and the `ready` event, for an app without a check (online for
//! `min_uptime`), with a check (its first passing probe) and for a one-shot
//! job (completed); the WaitReady RPC over raw gRPC, ending ok for a ready
//! app and failing with the reason (state, health error, log lines) for
//! one that crashes, times out, was restarted since its baseline or is
//! gone.

use std::net::{Ipv4Addr, TcpListener};

use pmdaemon_tests::*;
use serde_json::Value;
use tonic::Code;

use crate::IDLE;

/// The `ready` key of a list entry (panics when it is missing or not a
/// boolean).
fn ready(app: &Value) -> bool {
    app["ready"]
        .as_bool()
        .unwrap_or_else(|| panic!("no boolean `ready`: {app}"))
}

/// Waits until the list entry of `name` says ready; returns it.
fn wait_ready_in_list(d: &TestDaemon, name: &str) -> Value {
    wait_for_value(&format!("{name} ready in list -o json"), WAIT, || {
        d.app(name).filter(ready)
    })
}

/// Everything a WaitReady call streamed: its messages, then the error
/// status that ended it, if any.
struct Waited {
    messages: Vec<v1::WaitReadyResponse>,
    error: Option<tonic::Status>,
}

impl Waited {
    /// The last progress message (the states the wait ended on).
    fn last(&self) -> &v1::WaitReadyResponse {
        self.messages
            .last()
            .unwrap_or_else(|| panic!("no progress message before {:?}", self.error))
    }
}

/// Calls WaitReady and reads its stream to the end.
fn wait_ready_rpc(d: &TestDaemon, request: v1::WaitReadyRequest) -> Waited {
    block_on(async {
        let mut client = d.client().await;
        let mut stream = match client.wait_ready(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                return Waited {
                    messages: Vec::new(),
                    error: Some(status),
                };
            }
        };
        let mut messages = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => {
                    return Waited {
                        messages,
                        error: None,
                    };
                }
                Err(status) => {
                    return Waited {
                        messages,
                        error: Some(status),
                    };
                }
            }
        }
    })
}

fn request(target: &str, timeout_ms: u64) -> v1::WaitReadyRequest {
    v1::WaitReadyRequest {
        target: target.into(),
        timeout_ms,
        ..Default::default()
    }
}

/// Without a health check an instance is ready once it has been online for
/// min_uptime: an app whose min_uptime is an hour is online and not ready;
/// one with 300 ms becomes ready, says so with a `ready` event no earlier
/// than 300 ms after its `started`, and `list -o json` shows it.
#[test]
fn an_app_without_a_check_is_ready_after_min_uptime() {
    let d = TestDaemon::start();
    let mut events = d.events();
    d.pmd_ok(&[
        "start",
        "sleep",
        "--name",
        "slow",
        "--min-uptime",
        "1h",
        "--",
        "100000",
    ]);
    d.wait_online("slow");
    let slow = d.app("slow").unwrap();
    assert!(!ready(&slow), "ready before its min_uptime: {slow}");

    d.pmd_ok(&[
        "start",
        "sleep",
        "--name",
        "quick",
        "--min-uptime",
        "300ms",
        "--",
        "100000",
    ]);
    let became = events.wait_event("quick ready", |e| {
        e["name"] == "quick" && kind_of(e) == "ready"
    });
    assert_eq!(became["state"], "online", "{became}");
    let started = events
        .seen_of("quick")
        .into_iter()
        .find(|e| kind_of(e) == "started")
        .unwrap_or_else(|| panic!("no started event:\n{}", events.seen_lines()));
    let after_ms = became["at_ms"].as_i64().unwrap() - started["at_ms"].as_i64().unwrap();
    assert!(
        after_ms >= 300,
        "ready {after_ms} ms after the start, before min_uptime"
    );
    let quick = wait_ready_in_list(&d, "quick");
    assert_eq!(quick["status"], "online", "{quick}");
    let described = d.describe_one("quick");
    assert_eq!(described["ready"], true, "{described:#}");
    // A stopped app is not ready.
    d.pmd_ok(&["stop", "quick"]);
    assert!(!ready(&d.app("quick").unwrap()));
}

/// With a health check an instance is ready at its first passing probe,
/// not before and without waiting for min_uptime (an hour here): not ready
/// while the probed address refuses, ready once the test listens there.
#[test]
fn a_checked_app_is_ready_at_its_first_passing_probe() {
    let d = TestDaemon::start();
    let port = free_ports(1);
    d.write_executable("idle.sh", IDLE);
    d.pmd_ok(&[
        "start",
        "./idle.sh",
        "--name",
        "probed",
        "--min-uptime",
        "1h",
        "--health-check-tcp",
        &format!("127.0.0.1:{port}"),
        "--health-interval",
        "200ms",
    ]);
    let failing = wait_for_value("a failed probe of probed", WAIT, || {
        d.app("probed")
            .filter(|a| !a["last_health_error"].as_str().unwrap_or("").is_empty())
    });
    assert!(!ready(&failing), "ready before a probe passed: {failing}");
    assert_eq!(failing["status"], "starting", "{failing}");

    let _listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("bind the probed port");
    let app = wait_ready_in_list(&d, "probed");
    assert_eq!(app["status"], "online", "{app}");
    assert_eq!(app["health"], "healthy", "{app}");
}

/// A one-shot job that exited 0 counts as ready (completed); one that
/// failed does not.
#[test]
fn a_completed_job_counts_as_ready() {
    let d = TestDaemon::start();
    let job = d.write_script("job.sh", "exit 0");
    let bad = d.write_script("bad.sh", "exit 4");
    d.pmd_ok(&["start", arg(&job), "--name", "job", "--no-autorestart"]);
    d.pmd_ok(&["start", arg(&bad), "--name", "bad", "--no-autorestart"]);
    let done = wait_ready_in_list(&d, "job");
    assert_eq!(done["status"], "stopped", "{done}");
    let failed = d.wait_status("bad", "errored");
    assert!(!ready(&failed), "{failed}");
}

/// WaitReady on a ready app ends with a message whose `ready` is set,
/// every instance READY and its process `ready`; an app that is not ready
/// yet is waited for.
#[test]
fn wait_ready_ends_ok_for_a_ready_app() {
    let d = TestDaemon::start();
    d.pmd_ok(&[
        "start",
        "sleep",
        "--name",
        "pair",
        "-i",
        "2",
        "--min-uptime",
        "300ms",
        "--",
        "100000",
    ]);
    let waited = wait_ready_rpc(&d, request("pair", 30_000));
    assert!(waited.error.is_none(), "{:?}", waited.error);
    let last = waited.last();
    assert!(last.ready, "{last:?}");
    assert_eq!(last.instances.len(), 2, "{last:?}");
    for instance in &last.instances {
        assert_eq!(instance.readiness(), v1::Readiness::Ready, "{instance:?}");
        let process = instance.process.as_ref().expect("the process");
        assert!(process.ready, "{process:?}");
        assert_eq!(process.name, "pair");
    }
    assert!(
        waited.messages[..waited.messages.len() - 1]
            .iter()
            .all(|m| !m.ready),
        "only the last message is ready: {:?}",
        waited.messages
    );
}

/// WaitReady on an app that crashes fails with FAILED_PRECONDITION, before
/// its timeout, saying how it ended and with its last log lines; the last
/// progress message holds the failed instance.
#[test]
fn wait_ready_fails_with_the_reason_for_a_crashing_app() {
    let d = TestDaemon::start();
    let script = d.write_script(
        "crash.sh",
        "echo 'fatal: no database url' >&2\nsleep 0.2\nexit 3",
    );
    // The long restart delay holds it in waiting-restart after the crash.
    d.pmd_ok(&[
        "start",
        arg(&script),
        "--name",
        "crashy",
        "--restart-delay",
        "1h",
    ]);
    let waited = wait_ready_rpc(&d, request("crashy", 600_000));
    let status = waited.error.as_ref().expect("the wait failed");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let text = status.message();
    assert!(text.contains("crashy"), "{text}");
    assert!(text.contains("exited with code 3"), "{text}");
    assert!(text.contains("fatal: no database url"), "{text}");
    let last = waited.last();
    assert!(!last.ready);
    assert_eq!(
        last.instances[0].readiness(),
        v1::Readiness::Failed,
        "{last:?}"
    );
    assert_eq!(last.report, text, "the whole report precedes the status");
}

/// Long log lines do not break the failure: the status message is cut to
/// fit in a gRPC trailer and says so, the message before it has the whole
/// report, and `pmd start --wait-ready` prints every line in full.
#[test]
fn a_failure_with_long_log_lines_is_reported_whole() {
    let d = TestDaemon::start();
    let line = format!("{}-end", "x".repeat(3000));
    let script = d.write_script(
        "loud.sh",
        &format!("for i in 1 2 3 4 5 6 7 8 9 10; do echo {line}; echo {line} >&2; done\nsleep 0.2\nexit 5"),
    );
    let out = d.pmd_code(
        1,
        &[
            "start",
            arg(&script),
            "--name",
            "loud",
            "--restart-delay",
            "1h",
            "--wait-ready",
        ],
    );
    let text = crate::said(&out);
    assert!(text.contains("exited with code 5"), "{text}");
    assert_eq!(text.matches(&line).count(), 20, "not every line in full");

    let waited = wait_ready_rpc(&d, request("loud", 30_000));
    let status = waited.error.as_ref().expect("the wait failed");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("cut"), "{}", status.message());
    assert_eq!(waited.last().report.matches(&line).count(), 20);
}

/// At the timeout WaitReady fails with DEADLINE_EXCEEDED, naming what the
/// instance still waited for and its last health error.
#[test]
fn wait_ready_times_out_with_what_it_waited_for() {
    let d = TestDaemon::start();
    let address = format!("127.0.0.1:{}", free_ports(1));
    d.write_executable("idle.sh", IDLE);
    d.pmd_ok(&[
        "start",
        "./idle.sh",
        "--name",
        "never",
        "--health-check-tcp",
        &address,
        "--health-interval",
        "200ms",
    ]);
    let waited = wait_ready_rpc(&d, request("never", 1_000));
    let status = waited.error.as_ref().expect("the wait failed");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    let text = status.message();
    assert!(text.contains("never (id"), "{text}");
    assert!(text.contains("is not ready after 1s"), "{text}");
    assert!(text.contains(&address), "no health error: {text}");
    assert_eq!(
        waited.last().instances[0].readiness(),
        v1::Readiness::Waiting
    );
}

/// A baseline says which instances to wait for and their restart counts:
/// one restarted since fails at once, one that is gone fails as deleted.
#[test]
fn wait_ready_fails_for_a_restart_since_the_baseline_or_a_deleted_instance() {
    let d = TestDaemon::start();
    d.pmd_ok(&["start", "sleep", "--name", "again", "--", "100000"]);
    d.wait_online("again");
    d.pmd_ok(&["restart", "again"]);
    let id = d.app("again").unwrap()["id"].as_u64().unwrap() as u32;
    let waited = wait_ready_rpc(
        &d,
        v1::WaitReadyRequest {
            baseline: vec![
                v1::WaitReadyBaseline { id, restarts: 0 },
                v1::WaitReadyBaseline {
                    id: 999,
                    restarts: 0,
                },
            ],
            ..request("all", 30_000)
        },
    );
    let status = waited.error.as_ref().expect("the wait failed");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let text = status.message();
    assert!(text.contains("again (id"), "{text}");
    assert!(text.contains("restarted once while starting"), "{text}");
    assert!(text.contains("id 999 is not ready: deleted"), "{text}");
}

/// An unknown target is refused before any wait.
#[test]
fn wait_ready_refuses_an_unknown_target() {
    let d = TestDaemon::start();
    let waited = wait_ready_rpc(&d, request("nosuchapp", 1_000));
    let status = waited.error.expect("refused");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(waited.messages.is_empty());
}
