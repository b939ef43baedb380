//! PM2's runtime keys (issue 11): `wait_ready` and `listen_timeout` over
//! the IPC channel Node opens from `NODE_CHANNEL_FD` (`process.send('ready')`
//! makes an instance ready; `--wait-ready`, reload and readiness use it),
//! `shutdown_with_message`, `instance_var`, `increment_var` and
//! `stop_exit_codes`, with real Node apps where node is installed (skipped
//! with a message otherwise) and shell scripts speaking the same protocol
//! on fd 3.

use std::fs;

use pmdaemon_tests::*;

use crate::{IDLE, lines_of, said};

/// Skips the test (with a message) where node is not on PATH.
macro_rules! need_node {
    () => {
        if node().is_none() {
            eprintln!("skipped: node is not on PATH");
            return;
        }
    };
}

/// The sorted names of `/proc/PID/fd`.
fn fds_of(pid: u32) -> Vec<String> {
    let mut fds: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    fds.sort();
    fds
}

/// A Node app that calls `process.send('ready')` after a delay returns
/// from `pmd start --wait-ready` only after it did: the file it writes
/// just before sending is there when pmd returns. Before it, the instance
/// is `starting`, not ready.
#[test]
fn wait_ready_returns_only_after_the_app_sends_ready() {
    need_node!();
    let d = TestDaemon::start();
    d.write_file(
        "app.js",
        "const fs = require('fs');\nsetTimeout(() => {\n  fs.writeFileSync('sent-ready', 'yes');\n  \
         process.send('ready');\n}, 1500);\nsetInterval(() => {}, 1000);\n",
    );
    // min_uptime 100ms: without the message the app would be ready long
    // before it sends.
    let file = d.write_file(
        "eco.yaml",
        "apps:\n  - name: api\n    script: ./app.js\n    wait_ready: true\n    min_uptime: 100\n",
    );
    let out = d.pmd(&["start", arg(&file), "--wait-ready"]);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(
        d.work().join("sent-ready").is_file(),
        "pmd returned before the app sent 'ready': {}",
        said(&out)
    );
    let api = d.describe_one("api");
    assert_eq!(api["status"], "online", "{api}");
    assert_eq!(api["ready"], true, "{api}");
    assert_eq!(api["wait_ready"], true, "{api}");
    assert_eq!(api["listen_timeout_ms"], 3000, "PM2's default: {api}");

    // The same from the command line, watched while it waits.
    d.write_file(
        "late.js",
        "setTimeout(() => process.send('ready'), 2000);\nsetInterval(() => {}, 1000);\n",
    );
    d.pmd_ok(&[
        "start",
        "late.js",
        "--ready-message",
        "--listen-timeout",
        "20s",
        "--min-uptime",
        "100ms",
    ]);
    let starting = d.wait_status("late", "starting");
    assert_eq!(starting["ready"], false, "{starting}");
    d.pmd_ok(&["restart", "late", "--wait-ready"]);
    assert_eq!(d.describe_one("late")["ready"], true);
}

/// A Node app gets the channel without wait_ready too, as every app PM2
/// forks does: an unguarded `process.send('ready')` (and any other
/// message) does not throw, and the app stays up; its "ready" does not
/// stand for readiness, which min_uptime gives.
#[test]
fn a_node_app_without_wait_ready_may_send_messages() {
    need_node!();
    let d = TestDaemon::start();
    d.write_file(
        "sends.js",
        "process.send('ready');\nprocess.send({type: 'axm:monitor', data: {}});\n\
         setInterval(() => {}, 1000);\n",
    );
    d.pmd_ok(&["start", "sends.js", "--min-uptime", "500ms", "--wait-ready"]);
    let app = d.describe_one("sends");
    assert_eq!(
        (app["status"].as_str(), app["restarts"].as_u64()),
        (Some("online"), Some(0)),
        "{app}"
    );
    assert_eq!(app["ready"], true, "{app}");
    let pid = pid_of(&app).unwrap();
    // Node opens descriptors of its own: fd 3 is the channel.
    let channel = fs::read_link(format!("/proc/{pid}/fd/3")).unwrap();
    assert!(
        channel.to_string_lossy().starts_with("socket:"),
        "{channel:?}"
    );
    assert_eq!(env_of(pid)["NODE_CHANNEL_FD"], "3");
    assert!(
        !d.daemon_log().contains("dropped a message"),
        "{}",
        d.daemon_log()
    );
}

/// An app that never sends "ready" fails `pmd start --wait-ready` once
/// listen_timeout passes, with a message naming it; as in PM2 the app runs
/// on (online, not ready, the reason in describe).
#[test]
fn no_ready_message_fails_the_wait_naming_listen_timeout() {
    need_node!();
    let d = TestDaemon::start();
    d.write_file("mute.js", "setInterval(() => {}, 1000);\n");
    let out = d.pmd(&[
        "start",
        "mute.js",
        "--ready-message",
        "--listen-timeout",
        "1s",
        "--wait-ready",
        "--wait-timeout",
        "1m",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no 'ready' message within listen_timeout (1000 ms)")
            && err.contains("process.send('ready')"),
        "{err}"
    );
    let mute = d.describe_one("mute");
    assert_eq!(mute["status"], "online", "{mute}");
    assert_eq!(mute["ready"], false, "{mute}");
    assert!(
        mute["status_reason"]
            .as_str()
            .is_some_and(|r| r.contains("listen_timeout")),
        "{mute}"
    );
}

/// shutdown_with_message: stop and restart send 'shutdown' over the
/// channel instead of the stop signal; the app hears it (and no SIGTERM)
/// and exits 0 on its own, long before kill_timeout's SIGKILL.
#[test]
fn shutdown_with_message_reaches_the_app_instead_of_the_signal() {
    need_node!();
    let d = TestDaemon::start();
    d.write_file(
        "polite.js",
        "const fs = require('fs');\nprocess.on('SIGTERM', () => fs.appendFileSync('heard', \
         'SIGTERM\\n'));\nprocess.on('message', (m) => {\n  fs.appendFileSync('heard', \
         JSON.stringify(m) + '\\n');\n  if (m === 'shutdown') process.exit(0);\n});\n",
    );
    let file = d.write_file(
        "eco.json",
        r#"{"apps": [{"name": "polite", "script": "./polite.js", "shutdown_with_message": true, "kill_timeout": 60000}]}"#,
    );
    d.pmd_ok(&["start", arg(&file)]);
    d.wait_online("polite");
    d.pmd_ok(&["restart", "polite"]);
    d.wait_online("polite");
    d.pmd_ok(&["stop", "polite"]);
    let stopped = d.wait_status("polite", "stopped");
    assert_eq!(
        lines_of(&d.work().join("heard")),
        ["\"shutdown\"", "\"shutdown\""],
        "one message per stop, no signal"
    );
    assert_eq!(stopped["exit_code"], 0, "exited on its own: {stopped}");
    assert!(stopped["exit_signal"].is_null(), "{stopped}");
}

/// A rolling reload of a cluster waits for each replacement's "ready"
/// before it replaces the next: in the apps' own record of what happened,
/// each new instance started after the previous one sent "ready".
#[test]
fn a_cluster_reload_waits_for_each_instances_ready() {
    need_node!();
    let d = TestDaemon::start();
    d.write_file(
        "worker.js",
        "const fs = require('fs');\nconst me = process.env.NODE_APP_INSTANCE + ' ' + \
         process.pid;\nfs.appendFileSync('record', 'start ' + me + '\\n');\nsetTimeout(() => {\n  \
         fs.appendFileSync('record', 'ready ' + me + '\\n');\n  process.send('ready');\n}, \
         1200);\nsetInterval(() => {}, 1000);\n",
    );
    let file = d.write_file(
        "eco.yaml",
        "apps:\n  - name: workers\n    script: ./worker.js\n    instances: 2\n    wait_ready: \
         true\n    listen_timeout: 20s\n    min_uptime: 100\n",
    );
    d.pmd_ok(&["start", arg(&file), "--wait-ready"]);
    let record = d.work().join("record");
    let before = lines_of(&record).len();
    assert_eq!(before, 4, "{:?}", lines_of(&record));
    d.pmd_ok(&["reload", "workers"]);
    let reload: Vec<String> = lines_of(&record)[before..].to_vec();
    let words: Vec<(String, String)> = reload
        .iter()
        .map(|l| {
            let mut w = l.split(' ');
            (w.next().unwrap().into(), w.next().unwrap().into())
        })
        .collect();
    assert_eq!(
        words,
        [
            ("start".into(), "0".into()),
            ("ready".into(), "0".into()),
            ("start".into(), "1".into()),
            ("ready".into(), "1".into()),
        ],
        "{reload:#?}"
    );
}

/// An app that never sends "ready": the reload goes on to the next
/// instance after listen_timeout, as PM2's does, and succeeds.
#[test]
fn a_reload_goes_on_after_listen_timeout() {
    let d = TestDaemon::start();
    d.write_executable("mute.sh", IDLE);
    d.pmd_ok(&[
        "start",
        "mute.sh",
        "-i",
        "2",
        "--ready-message",
        "--listen-timeout",
        "300ms",
    ]);
    let before: Vec<u32> = d
        .wait_instances_online("mute", 2)
        .iter()
        .filter_map(pid_of)
        .collect();
    let out = d.pmd(&["reload", "mute"]);
    assert!(out.status.success(), "{}", describe_output(&out));
    let after: Vec<u32> = d
        .wait_instances_online("mute", 2)
        .iter()
        .filter_map(pid_of)
        .collect();
    assert!(
        before.iter().all(|p| !after.contains(p)),
        "{before:?} {after:?}"
    );
}

/// Any program speaks the protocol on fd 3: a shell script that writes
/// "ready" is ready. Its descriptors are 0, 1, 2 and the channel (a
/// socket), with NODE_CHANNEL_FD=3 in its environment; an app without
/// wait_ready has 0, 1 and 2 only, and no NODE_CHANNEL_FD. Non-JSON and
/// huge lines before "ready" are dropped with one line in the daemon's
/// log, and do not hurt it.
#[test]
fn an_app_gets_only_stdio_and_its_channel_and_bad_messages_are_dropped() {
    let d = TestDaemon::start();
    d.write_executable(
        "speaker.sh",
        "#!/bin/sh\nhead -c 300000 /dev/zero | tr '\\0' x >&3\necho >&3\necho 'not json' >&3\n\
         echo '\"ready\"' >&3\nexec sleep 100000\n",
    );
    d.pmd_ok(&[
        "start",
        "speaker.sh",
        "--ready-message",
        "--listen-timeout",
        "1m",
        "--wait-ready",
    ]);
    d.pmd_ok(&["start", "sleep", "--name", "plain", "--", "100000"]);
    let speaker = d.describe_one("speaker");
    assert_eq!(speaker["ready"], true, "{speaker}");
    let pid = pid_of(&speaker).unwrap();
    assert_eq!(fds_of(pid), ["0", "1", "2", "3"]);
    let channel = fs::read_link(format!("/proc/{pid}/fd/3")).unwrap();
    assert!(
        channel.to_string_lossy().starts_with("socket:"),
        "{channel:?}"
    );
    let env = env_of(pid);
    assert_eq!(env["NODE_CHANNEL_FD"], "3");
    assert_eq!(env["NODE_CHANNEL_SERIALIZATION_MODE"], "json");
    let plain = d.wait_online("plain");
    assert_eq!(fds_of(plain), ["0", "1", "2"]);
    assert!(!env_of(plain).contains_key("NODE_CHANNEL_FD"));
    let log = d.daemon_log();
    assert_eq!(
        log.matches("dropped a message from the app's IPC channel")
            .count(),
        1,
        "{log}"
    );
    d.pmd_ok(&["ping"]);
}

/// instance_var names the variable that gets the index (NODE_APP_INSTANCE
/// is then not set, as in PM2); increment_var raises a variable of env by
/// the index, and a cluster with a fixed PORT made per instance that way
/// gets no shared-port warning.
#[test]
fn instance_var_and_increment_var_reach_each_instance() {
    let d = TestDaemon::start();
    d.write_executable("idle.sh", IDLE);
    let file = d.write_file(
        "eco.yaml",
        "apps:\n  - name: web\n    script: ./idle.sh\n    instances: 3\n    instance_var: \
         WORKER\n    increment_var: PORT\n    env:\n      PORT: 4100\n",
    );
    let out = d.pmd(&["start", arg(&file)]);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{}",
        said(&out)
    );
    let mut seen: Vec<(String, String, String)> = d
        .wait_instances_online("web", 3)
        .iter()
        .map(|i| {
            let env = env_of(pid_of(i).unwrap());
            assert!(!env.contains_key("NODE_APP_INSTANCE"), "{env:?}");
            assert_eq!(env["WORKER"], env["PMD_INSTANCE_ID"]);
            (
                env["WORKER"].clone(),
                env["PORT"].clone(),
                i["instance"].to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("0".into(), "4100".into(), "0".into()),
            ("1".into(), "4101".into(), "1".into()),
            ("2".into(), "4102".into(), "2".into()),
        ]
    );
    // The fixed-PORT warning is still there without increment_var.
    let shared = d.write_file(
        "shared.yaml",
        "apps:\n  - name: shared\n    script: ./idle.sh\n    instances: 2\n    env:\n      PORT: \
         4200\n",
    );
    let out = d.pmd(&["validate", arg(&shared)]);
    assert!(said(&out).contains("PORT=4200"), "{}", said(&out));
}

/// A base that is not an integer, or missing, is refused with a clear
/// message, over a file and the command line, and nothing is created.
#[test]
fn a_bad_increment_var_is_refused_and_changes_nothing() {
    let d = TestDaemon::start();
    d.write_executable("idle.sh", IDLE);
    let file = d.write_file(
        "eco.yaml",
        "apps:\n  - name: web\n    script: ./idle.sh\n    instances: 2\n    increment_var: \
         PORT\n    env:\n      PORT: http\n",
    );
    let out = d.pmd(&["start", arg(&file)]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        said(&out).contains("increment_var: PORT=\"http\" in the app's env is not an integer"),
        "{}",
        said(&out)
    );
    let out = d.pmd(&[
        "start",
        "sleep",
        "--increment-var",
        "HTTP_PORT",
        "--",
        "100000",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        said(&out).contains("HTTP_PORT is not in the app's env"),
        "{}",
        said(&out)
    );
    let out = d.pmd(&["start", "sleep", "--instance-var", "PMD_ID", "--", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    let out = d.pmd(&["start", "sleep", "--stop-exit-codes", "256", "--", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(d.list_json().is_empty());
}

/// stop_exit_codes: an exit with one of them leaves the instance stopped
/// (under autorestart always, which would restart it), saying why; an exit
/// with another code restarts it as usual.
#[test]
fn stop_exit_codes_keep_the_app_stopped_and_other_codes_restart_it() {
    let d = TestDaemon::start();
    d.write_executable("three.sh", "#!/bin/sh\nsleep 0.2\nexit 3\n");
    d.write_executable(
        "once.sh",
        "#!/bin/sh\nif [ -e ran ]; then exec sleep 100000; fi\ntouch ran\nexit 1\n",
    );
    for (script, policy) in [("three.sh", "always"), ("once.sh", "always")] {
        d.pmd_ok(&[
            "start",
            script,
            "--stop-exit-codes",
            "0,3",
            "--autorestart",
            policy,
        ]);
    }
    let three = d.wait_status("three", "stopped");
    assert_eq!(three["exit_code"], 3, "{three}");
    assert_eq!(three["restarts"], 0, "{three}");
    assert!(
        three["status_reason"]
            .as_str()
            .is_some_and(|r| r.contains("one of stop_exit_codes [0, 3]: not restarted")),
        "{three}"
    );
    assert_eq!(three["stop_exit_codes"], serde_json::json!([0, 3]));
    d.wait_online("once");
    let once = d.describe_one("once");
    assert_eq!(once["restarts"], 1, "{once}");
}

/// Every runtime setting survives `pmd save`, a daemon killed with -9 and
/// `pmd resurrect`; the resurrected instance gets its variables again.
#[test]
fn save_and_resurrect_keep_the_runtime_settings() {
    let mut d = TestDaemon::start();
    d.write_executable("idle.sh", IDLE);
    let file = d.write_file(
        "eco.yaml",
        "apps:\n  - name: keeper\n    script: ./idle.sh\n    wait_ready: true\n    \
         listen_timeout: 2500\n    shutdown_with_message: true\n    kill_timeout: 300\n    \
         instance_var: W\n    increment_var: PORT\n    stop_exit_codes: [3, 7]\n    env:\n      \
         PORT: 5000\n",
    );
    d.pmd_ok(&["start", arg(&file)]);
    let expected = |v: &serde_json::Value| {
        assert_eq!(v["wait_ready"], true, "{v}");
        assert_eq!(v["listen_timeout_ms"], 2500, "{v}");
        assert_eq!(v["shutdown_with_message"], true, "{v}");
        assert_eq!(v["instance_var"], "W", "{v}");
        assert_eq!(v["increment_var"], "PORT", "{v}");
        assert_eq!(v["stop_exit_codes"], serde_json::json!([3, 7]), "{v}");
    };
    expected(&d.describe_one("keeper"));
    d.pmd_ok(&["save"]);
    d.kill9_daemon();
    d.spawn_daemon();
    expected(&d.describe_one("keeper"));
    d.pmd_ok(&["delete", "all"]);
    d.pmd_ok(&["resurrect"]);
    let keeper = d.wait_status("keeper", "online");
    expected(&keeper);
    let env = env_of(pid_of(&keeper).unwrap());
    assert_eq!((env["W"].as_str(), env["PORT"].as_str()), ("0", "5000"));
}

/// `depends_on: {db: healthy}` waits for db's "ready" message when db has
/// wait_ready: api starts only after db sent it.
#[test]
fn a_dependent_waits_for_the_ready_message() {
    let d = TestDaemon::start();
    d.write_executable(
        "db.sh",
        "#!/bin/sh\nsleep 1\ntouch db-ready\necho '\"ready\"' >&3\nexec sleep 100000\n",
    );
    d.write_executable(
        "api.sh",
        "#!/bin/sh\nif [ -e db-ready ]; then echo after; else echo before; fi > api-saw\nexec \
         sleep 100000\n",
    );
    let file = d.write_file(
        "deps.yaml",
        "apps:\n  - name: db\n    script: ./db.sh\n    wait_ready: true\n    listen_timeout: \
         1m\n    min_uptime: 100\n  - name: api\n    script: ./api.sh\n    depends_on:\n      \
         - db: healthy\n",
    );
    let out = d.pmd(&["start", arg(&file), "--wait-ready"]);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(lines_of(&d.work().join("api-saw")), ["after"]);
}
