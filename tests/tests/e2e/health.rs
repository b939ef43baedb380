//! Health checks (issue #4): HTTP, TCP and script probes that keep an
//! instance `starting` until it first passes; `--wait-ready` that returns
//! only once the app really answers and fails with the reason and the
//! app's log lines; liveness restarts after `retries` failures; `{port}`
//! giving each instance of a cluster its own check. The apps are real
//! servers ([`HEALTH_SERVER`]) probed over real sockets.

use std::net::{Ipv4Addr, TcpListener};
use std::time::Instant;

use pmdaemon_tests::*;
use serde_json::Value;

use crate::{IDLE, said, timestamps_ns};

/// The `health` word of a list/describe entry (`null` → "none").
fn health(app: &Value) -> &str {
    app["health"].as_str().unwrap_or("none")
}

/// The `last_health_error` of a describe entry, empty when none.
fn last_health_error(app: &Value) -> &str {
    app["last_health_error"].as_str().unwrap_or("")
}

/// Waits until the single-instance app `name` is online and healthy;
/// returns its describe entry.
fn wait_healthy(d: &TestDaemon, name: &str) -> Value {
    wait_for_value(&format!("{name} online and healthy"), WAIT, || {
        let app = d.describe_one(name);
        (app["status"] == "online" && health(&app) == "healthy").then_some(app)
    })
}

/// Waits until a probe of `name` has failed while the app is still
/// `starting` (health unknown); returns its describe entry.
fn wait_failed_probe(d: &TestDaemon, name: &str) -> Value {
    let app = wait_for_value(&format!("a failed health check of {name}"), WAIT, || {
        let app = d.describe_one(name);
        (!last_health_error(&app).is_empty()).then_some(app)
    });
    assert_eq!(app["status"], "starting", "{app:#}");
    assert_eq!(health(&app), "unknown", "{app:#}");
    assert!(
        app["last_health_check_at_ms"].is_i64(),
        "no time of the last check: {app:#}"
    );
    app
}

/// `start --wait-ready` with an HTTP check on an app that only listens
/// after 2 s returns once the app is healthy and not before: the command
/// ends after the moment the app stamped when it began to listen, and the
/// app is then online and healthy. `restart --wait-ready` and `reload
/// --wait-ready` wait the same way for the new process.
#[test]
fn wait_ready_returns_only_once_the_app_is_healthy() {
    let d = TestDaemon::start();
    let port = free_ports(1).to_string();
    let server = d.write_health_server("slow.py");
    let stamps = d.work().join("listening");
    d.pmd_ok(&[
        "start",
        arg(&server),
        "--name",
        "slow",
        "--port",
        &port,
        "--env",
        "LISTEN_AFTER_MS=2000",
        "--env",
        "STAMP_FILE=listening",
        "--health-check-url",
        "http://127.0.0.1:{port}/health",
        "--wait-ready",
    ]);
    let returned = now_ns();
    let listened = timestamps_ns(&stamps);
    assert_eq!(
        listened.len(),
        1,
        "the app did not listen once: {listened:?}"
    );
    assert!(
        returned > listened[0],
        "start --wait-ready returned {:.0} ms before the app listened",
        (listened[0] - returned) as f64 / 1e6
    );
    let app = d.describe_one("slow");
    assert_eq!(app["status"], "online", "{app:#}");
    assert_eq!(health(&app), "healthy", "{app:#}");
    assert!(app["last_health_check_at_ms"].is_i64(), "{app:#}");
    let first_pid = pid_of(&app).unwrap();

    d.pmd_ok(&["restart", "slow", "--wait-ready"]);
    let returned = now_ns();
    let listened = timestamps_ns(&stamps);
    assert_eq!(
        listened.len(),
        2,
        "the new process did not listen: {listened:?}"
    );
    assert!(
        returned > listened[1],
        "restart --wait-ready returned {:.0} ms before the new process listened",
        (listened[1] - returned) as f64 / 1e6
    );
    let app = d.describe_one("slow");
    assert_eq!(app["status"], "online", "{app:#}");
    assert_eq!(health(&app), "healthy", "{app:#}");
    let second_pid = pid_of(&app).unwrap();
    assert_ne!(second_pid, first_pid, "not restarted: {app:#}");

    d.pmd_ok(&["reload", "slow", "--wait-ready"]);
    let returned = now_ns();
    let listened = timestamps_ns(&stamps);
    assert_eq!(
        listened.len(),
        3,
        "the reloaded process did not listen: {listened:?}"
    );
    assert!(
        returned > listened[2],
        "reload --wait-ready returned {:.0} ms before the new process listened",
        (listened[2] - returned) as f64 / 1e6
    );
    let app = d.describe_one("slow");
    assert_eq!(app["status"], "online", "{app:#}");
    assert_eq!(health(&app), "healthy", "{app:#}");
    assert_ne!(pid_of(&app), Some(second_pid), "not reloaded: {app:#}");
}

/// An app that never passes its check makes `--wait-ready` exit 1 once
/// `--wait-timeout` has passed (not earlier), and say why: the last health
/// error (naming the probed address) and the app's last log lines, from
/// stdout and stderr. The app is left `starting`.
#[test]
fn wait_ready_on_a_never_healthy_app_fails_with_the_error_and_its_logs() {
    let d = TestDaemon::start();
    // Nothing listens there: this test holds the port block.
    let address = format!("127.0.0.1:{}", free_ports(1));
    let script = d.write_script(
        "never.sh",
        "echo 'booting the never-ready app'\n\
         echo 'warning: no upstream configured' >&2\n\
         exec sleep 100000",
    );
    let t0 = Instant::now();
    let out = d.pmd_code(
        1,
        &[
            "start",
            arg(&script),
            "--name",
            "never",
            "--health-check-tcp",
            &address,
            "--wait-ready",
            "--wait-timeout",
            "3s",
        ],
    );
    let took = t0.elapsed();
    let text = said(&out);
    assert!(
        took.as_secs_f64() >= 3.0,
        "gave up after {took:?}, before its 3 s timeout:\n{text}"
    );
    assert!(text.contains("never"), "the app is not named:\n{text}");
    assert!(text.contains(&address), "no health error:\n{text}");
    for line in [
        "booting the never-ready app",
        "warning: no upstream configured",
    ] {
        assert!(text.contains(line), "log line {line:?} missing:\n{text}");
    }
    let app = d.describe_one("never");
    assert_eq!(app["status"], "starting", "{app:#}");
    assert_eq!(health(&app), "unknown", "{app:#}");
    assert!(last_health_error(&app).contains(&address), "{app:#}");
}

/// An app without a check that exits during `--wait-ready` makes it exit
/// 1 at once, long before its timeout, with the exit code and the app's
/// last log lines.
#[test]
fn wait_ready_fails_at_once_when_the_app_crashes() {
    let d = TestDaemon::start();
    // The app's own sleep: it crashes while `--wait-ready` waits, not
    // before the wait began.
    let script = d.write_script(
        "crash.sh",
        "echo 'fatal: missing config file' >&2\nsleep 0.2\nexit 7",
    );
    let t0 = Instant::now();
    let out = d.pmd_code(
        1,
        &[
            "start",
            arg(&script),
            "--name",
            "crashy",
            "--wait-ready",
            "--wait-timeout",
            "60s",
        ],
    );
    let took = t0.elapsed();
    let text = said(&out);
    assert!(
        took.as_secs() < 60,
        "waited for the timeout ({took:?}) instead of failing on the crash:\n{text}"
    );
    assert!(text.contains("crashy"), "the app is not named:\n{text}");
    assert!(text.contains("code 7"), "no exit code:\n{text}");
    assert!(
        text.contains("fatal: missing config file"),
        "no log line:\n{text}"
    );
}

/// A TCP check keeps an app `starting` (health unknown, the failed probe
/// recorded) while nothing accepts on its address, and makes it `online`
/// and healthy once something listens there (here, the test itself). The
/// address names `localhost`: the daemon (linked statically) resolves host
/// names.
#[test]
fn a_tcp_check_makes_the_app_online_once_its_address_accepts() {
    let d = TestDaemon::start();
    let port = free_ports(1);
    let address = format!("localhost:{port}");
    d.write_executable("idle.sh", IDLE);
    d.pmd_ok(&[
        "start",
        "./idle.sh",
        "--name",
        "tcp",
        "--health-check-tcp",
        &address,
        "--health-interval",
        "200ms",
    ]);
    let app = wait_failed_probe(&d, "tcp");
    assert!(last_health_error(&app).contains(&address), "{app:#}");

    let _listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("bind the probed port");
    let app = wait_healthy(&d, "tcp");
    assert!(pid_of(&app).is_some_and(pid_alive), "{app:#}");
    assert_eq!(app["restarts"], 0, "{app:#}");
    // A stopped app is not healthy: nothing runs to be checked.
    d.pmd_ok(&["stop", "tcp"]);
    assert_eq!(health(&d.describe_one("tcp")), "unknown");
}

/// A script check runs with the app's environment and working directory:
/// `test -f "$READY_FILE"` keeps the app `starting` until the test creates
/// that file (relative to the app's cwd), and then the app is `online` and
/// healthy.
#[test]
fn a_script_check_makes_the_app_online_once_it_exits_0() {
    let d = TestDaemon::start();
    let idle = d.write_executable("idle.sh", IDLE);
    std::fs::create_dir(d.work().join("app")).unwrap();
    d.pmd_ok(&[
        "start",
        arg(&idle),
        "--name",
        "scripted",
        "--cwd",
        "app",
        "--env",
        "READY_FILE=ready.flag",
        "--health-check-script",
        "test -f \"$READY_FILE\"",
        "--health-interval",
        "200ms",
    ]);
    wait_failed_probe(&d, "scripted");

    d.write_file("app/ready.flag", "");
    let app = wait_healthy(&d, "scripted");
    assert_eq!(app["restarts"], 0, "{app:#}");
}

/// Liveness: an online app whose endpoint starts answering 500 goes
/// unhealthy and is replaced after `retries` consecutive failures; the
/// events say why ("health check failed 2 times in a row: ...500..."), the
/// restart is counted, and the new process is healthy once the endpoint
/// recovers.
#[test]
fn an_app_whose_health_check_starts_failing_is_restarted_with_the_reason() {
    let d = TestDaemon::start();
    let mut events = d.events();
    let port = free_ports(1).to_string();
    let server = d.write_health_server("flaky.py");
    d.pmd_ok(&[
        "start",
        arg(&server),
        "--name",
        "flaky",
        "--port",
        &port,
        "--env",
        "FAIL_FLAG=fail.flag",
        "--health-check-url",
        "http://127.0.0.1:{port}/",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
    ]);
    let first_pid = pid_of(&wait_healthy(&d, "flaky")).unwrap();

    d.write_file("fail.flag", "");
    let restarting = events.wait_event("flaky restarting after failed health checks", |e| {
        e["name"] == "flaky" && kind_of(e) == "restarting"
    });
    let reason = restarting["detail"].as_str().unwrap_or("");
    assert!(
        reason.contains("health check failed 2 times in a row") && reason.contains("500"),
        "restart reason: {restarting}\nevents:\n{}",
        events.seen_lines()
    );
    let unhealthy = events
        .seen_of("flaky")
        .into_iter()
        .find(|e| kind_of(e) == "health_changed" && e["health"] == "unhealthy");
    assert!(
        unhealthy.is_some_and(|e| e["seq"].as_u64() < restarting["seq"].as_u64()),
        "no health_changed to unhealthy before the restart:\n{}",
        events.seen_lines()
    );

    std::fs::remove_file(d.work().join("fail.flag")).unwrap();
    let app = wait_healthy(&d, "flaky");
    assert_ne!(pid_of(&app), Some(first_pid), "{app:#}");
    assert!(
        !pid_alive(first_pid),
        "the unhealthy process {first_pid} lives on"
    );
    assert_eq!(app["restarts"], 1, "{app:#}");
    // The last failure (the new run's first probes, before it listened)
    // is kept with its own time; the latest check passed.
    let app = wait_for_value("a passing check after recovery", WAIT, || {
        let app = d.describe_one("flaky");
        (app["last_health_check_passed"] == true).then_some(app)
    });
    assert!(!last_health_error(&app).is_empty(), "{app:#}");
    assert!(
        app["last_health_error_at_ms"].as_i64() < app["last_health_check_at_ms"].as_i64(),
        "{app:#}"
    );
}

/// `{port}` in the check is each instance's own port: two instances on a
/// port range both become healthy; when only instance 1's endpoint fails,
/// only instance 1 is replaced (its error names its own port), while
/// instance 0 keeps its process and stays healthy, still being checked.
#[test]
fn port_placeholder_gives_each_instance_its_own_check() {
    let d = TestDaemon::start();
    let base = free_ports(2);
    let server = d.write_health_server("web.py");
    d.pmd_ok(&[
        "start",
        arg(&server),
        "--name",
        "web",
        "-i",
        "2",
        "--port",
        &format!("{base}-{}", base + 1),
        "--env",
        "FAIL_FLAG=fail-{i}",
        "--health-check-url",
        "http://127.0.0.1:{port}/",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
    ]);
    let healthy = |rows: &[Value]| {
        rows.len() == 2
            && rows
                .iter()
                .all(|a| a["status"] == "online" && health(a) == "healthy")
    };
    let before = wait_for_value("both instances of web healthy", WAIT, || {
        let rows = d.instances("web");
        healthy(&rows).then_some(rows)
    });
    assert_eq!(port_of(&before[0]), Some(base));
    assert_eq!(port_of(&before[1]), Some(base + 1));
    let pids = pids_of(&before);

    let flagged_ms = now_ns() / 1_000_000;
    d.write_file("fail-1", "");
    let described = || match d.describe_json("web") {
        Value::Array(mut rows) => {
            rows.sort_by_key(|a| a["instance"].as_u64());
            rows
        }
        other => panic!("describe of 2 instances is not an array: {other}"),
    };
    let own_error = format!("127.0.0.1:{}", base + 1);
    let after = wait_for_value("instance 1 replaced after its checks failed", WAIT, || {
        let rows = described();
        (rows[1]["restarts"].as_u64() >= Some(1)
            && last_health_error(&rows[1]).contains(&own_error))
        .then_some(rows)
    });
    assert_ne!(pid_of(&after[1]), Some(pids[1]), "{:#}", after[1]);
    let zero = &after[0];
    assert_eq!(
        pid_of(zero),
        Some(pids[0]),
        "instance 0 was replaced: {zero:#}"
    );
    assert_eq!(zero["restarts"], 0, "{zero:#}");
    assert_eq!(zero["status"], "online", "{zero:#}");
    assert_eq!(health(zero), "healthy", "{zero:#}");
    // Instance 0 is still checked (and passes) after instance 1 failed.
    wait_for("a new passing check of instance 0", WAIT, || {
        let zero = &described()[0];
        health(zero) == "healthy"
            && zero["last_health_check_at_ms"]
                .as_u64()
                .is_some_and(|at| u128::from(at) > flagged_ms)
    });
}

/// `pmd reload NAME --wait-ready --wait-timeout 2s` on an app whose new
/// run never passes its check gives up after about 2 s (not the 30 s
/// default of one replacement), exit 1, saying it did not pass its health
/// check, with the last health error and the app's last log lines. The
/// same for `pmd reload FILE`.
#[test]
fn reload_wait_ready_is_bounded_by_wait_timeout_and_explains() {
    let d = TestDaemon::start();
    let port = free_ports(1);
    d.write_health_server("srv.py");
    let file = d.write_file(
        "srv.yaml",
        &format!(
            "apps:
  - name: srv
    script: ./srv.py
    port: {port}
    env:
      FAIL_FLAG: fail.flag
    health_check:
      http: \"http://127.0.0.1:{{port}}/\"
      interval: 30s
"
        ),
    );
    d.pmd_ok(&["start", arg(&file), "--wait-ready"]);
    // From now on every check fails; the running instance is not probed
    // again for 30 s, its replacement (probed fast until it passes) is.
    d.write_file("fail.flag", "");
    for target in ["srv", arg(&file)] {
        let t0 = Instant::now();
        let out = d.pmd_code(
            1,
            &["reload", target, "--wait-ready", "--wait-timeout", "2s"],
        );
        let took = t0.elapsed();
        let text = said(&out);
        assert!(
            took.as_secs() < 20,
            "reload {target}: not bounded by --wait-timeout ({took:?}):\n{text}"
        );
        assert!(text.contains("health check"), "reload {target}:\n{text}");
        assert!(
            text.contains("500"),
            "reload {target}: no health error:\n{text}"
        );
        assert!(
            text.contains("listening on"),
            "reload {target}: no log lines:\n{text}"
        );
    }
}
