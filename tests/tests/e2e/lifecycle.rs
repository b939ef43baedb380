//! Start, stop, restart and delete of apps, and what `pmd list` /
//! `pmd describe` say about them.

use std::fs;
use std::time::{Duration, Instant};

use pmdaemon_tests::*;

use crate::lines_of;

/// `pmd start` of a command found on PATH gives an `online` app whose pid is
/// a live process running that command, with no restarts.
#[test]
fn start_brings_an_app_online_with_a_live_pid() {
    let d = TestDaemon::start();
    d.pmd_ok(&["start", "sleep", "--name", "napper", "--", "100000"]);
    let pid = d.wait_online("napper");
    assert!(pid_alive(pid), "pid {pid} of an online app is not alive");
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        cmdline.starts_with(b"sleep\0") || cmdline.windows(6).any(|w| w == b"sleep\0"),
        "pid {pid} runs {:?}, not sleep",
        String::from_utf8_lossy(&cmdline)
    );
    let app = d.app("napper").unwrap();
    assert_eq!(app["restarts"], 0, "{app}");
    assert!(app["id"].is_u64(), "{app}");
}

/// `pmd stop` takes down the app and a grandchild it forked into the
/// background (the whole process group), and leaves it `stopped` with no pid.
#[test]
fn stop_kills_the_app_and_its_grandchild() {
    let d = TestDaemon::start();
    let script = d.write_script("forker.sh", "sleep 1000 &\nexec sleep 1000");
    d.pmd_ok(&["start", arg(&script), "--name", "forker"]);
    let pid = d.wait_online("forker");
    wait_for("the app and its grandchild to run", WAIT, || {
        d.app_pids().len() == 2
    });
    let pids = d.app_pids();
    assert!(pids.contains(&pid), "app pid {pid} not among {pids:?}");

    d.pmd_ok(&["stop", "forker"]);
    let app = d.app("forker").unwrap();
    assert_eq!(app["status"], "stopped", "{app}");
    assert!(app["pid"].is_null(), "stopped app still has a pid: {app}");
    wait_for("the app and its grandchild to be gone", WAIT, || {
        pids.iter().all(|&p| !pid_alive(p))
    });
}

/// A descendant that left the app's process group (`setsid`) is not out of
/// reach: `pmd stop` takes it down too.
#[test]
fn stop_kills_a_descendant_that_left_the_group() {
    let d = TestDaemon::start();
    let script = d.write_script(
        "escaper.sh",
        "setsid sleep 100002 &
exec sleep 100000",
    );
    d.pmd_ok(&["start", arg(&script), "--name", "escaper"]);
    d.wait_online("escaper");
    wait_for("the app and its escaped child to run", WAIT, || {
        d.app_pids().len() == 2
    });
    let pids = d.app_pids();
    d.pmd_ok(&["stop", "escaper"]);
    wait_for("the app and its escaped child to be gone", WAIT, || {
        pids.iter().all(|&p| !pid_alive(p))
    });
}

/// `pmd restart` replaces the process: a new pid, the old one gone, and the
/// restart counter up by one.
#[test]
fn restart_gives_a_new_pid_and_counts_one_restart() {
    let d = TestDaemon::start();
    d.pmd_ok(&["start", "sleep", "--name", "phoenix", "--", "100000"]);
    let old = d.wait_online("phoenix");
    let before = d.app("phoenix").unwrap()["restarts"].as_u64().unwrap();

    d.pmd_ok(&["restart", "phoenix"]);
    let new = wait_for_value("phoenix online with a new pid", WAIT, || {
        d.app("phoenix")
            .filter(|a| a["status"] == "online")
            .and_then(|a| pid_of(&a))
            .filter(|&p| p != old)
    });
    assert!(pid_alive(new));
    assert!(!pid_alive(old), "old pid {old} survived the restart");
    let app = d.app("phoenix").unwrap();
    assert_eq!(app["restarts"].as_u64(), Some(before + 1), "{app}");
}

/// A stopped app is started again by `pmd start NAME`.
#[test]
fn start_by_name_starts_a_stopped_app_again() {
    let d = TestDaemon::start();
    d.pmd_ok(&["start", "sleep", "--name", "lazarus", "--", "100000"]);
    let old = d.wait_online("lazarus");
    d.pmd_ok(&["stop", "lazarus"]);
    d.wait_status("lazarus", "stopped");
    d.pmd_ok(&["start", "lazarus"]);
    let new = d.wait_online("lazarus");
    assert_ne!(new, old);
    assert!(pid_alive(new));
    assert_eq!(
        d.list_json().len(),
        1,
        "starting by name must not add an app"
    );
}

/// An app that ignores SIGTERM is SIGKILLed once `--kill-timeout` has passed,
/// and its last exit is reported as SIGKILL.
#[test]
fn an_app_ignoring_sigterm_is_killed_after_kill_timeout() {
    let d = TestDaemon::start();
    let script = d.write_script("stubborn.sh", "trap '' TERM\necho ready\nexec sleep 100000");
    d.pmd_ok(&[
        "start",
        arg(&script),
        "--name",
        "stubborn",
        "--kill-timeout",
        "1s",
    ]);
    let pid = d.wait_online("stubborn");
    let desc = d.describe_one("stubborn");
    assert_eq!(desc["kill_timeout_ms"], 1000, "{desc}");
    let out_log = desc["out_log_path"].as_str().unwrap().to_owned();
    wait_for("the app to ignore SIGTERM", WAIT, || {
        lines_of(out_log.as_ref()).contains(&"ready".to_owned())
    });

    let t0 = Instant::now();
    d.pmd_ok(&["stop", "stubborn"]);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "stop returned after {took:?}, before the 1 s kill timeout could pass"
    );
    wait_for("the stubborn app to be gone", WAIT, || !pid_alive(pid));
    let app = d.wait_status("stubborn", "stopped");
    assert_eq!(app["exit_signal"], "SIGKILL", "{app}");
}

/// `--stop-signal SIGINT` is what the app receives on stop.
#[test]
fn stop_sends_the_configured_stop_signal() {
    let d = TestDaemon::start();
    let script = d.write_script(
        "polite.sh",
        "trap 'echo got INT; exit 0' INT\ntrap '' TERM\necho ready\nwhile :; do sleep 0.1; done",
    );
    d.pmd_ok(&[
        "start",
        arg(&script),
        "--name",
        "polite",
        "--stop-signal",
        "SIGINT",
        "--kill-timeout",
        "60s",
    ]);
    d.wait_online("polite");
    let out_log = d.describe_one("polite")["out_log_path"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for("the app to be ready", WAIT, || {
        lines_of(out_log.as_ref()).contains(&"ready".to_owned())
    });
    d.pmd_ok(&["stop", "polite"]);
    let app = d.wait_status("polite", "stopped");
    assert!(
        lines_of(out_log.as_ref()).contains(&"got INT".to_owned()),
        "the app never saw SIGINT: {:?}",
        lines_of(out_log.as_ref())
    );
    assert_eq!(
        app["exit_code"], 0,
        "the app should have exited by itself: {app}"
    );
}

/// `--env K=V` reaches the app, and `--cwd` is its working directory.
#[test]
fn env_and_cwd_reach_the_app() {
    let d = TestDaemon::start();
    let sub = d.work().join("sub");
    fs::create_dir(&sub).unwrap();
    let script = d.write_script(
        "envy.sh",
        "echo \"greeting=$GREETING\"\npwd\nexec sleep 100000",
    );
    d.pmd_ok(&[
        "start",
        arg(&script),
        "--name",
        "envy",
        "--env",
        "GREETING=hello world",
        "--cwd",
        arg(&sub),
    ]);
    d.wait_online("envy");
    let out_log = d.describe_one("envy")["out_log_path"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for("the app's output", WAIT, || {
        lines_of(out_log.as_ref()).len() >= 2
    });
    let lines = lines_of(out_log.as_ref());
    assert_eq!(lines[0], "greeting=hello world");
    assert_eq!(
        fs::canonicalize(&lines[1]).unwrap(),
        fs::canonicalize(&sub).unwrap()
    );
}

/// `pmd delete` stops the app and forgets it: gone from the list, from
/// state.json, and its log files are removed.
#[test]
fn delete_removes_the_app_its_state_entry_and_its_logs() {
    let d = TestDaemon::start();
    let script = d.write_script("doomed.sh", "echo out\necho err >&2\nexec sleep 100000");
    d.pmd_ok(&["start", arg(&script), "--name", "doomed"]);
    let pid = d.wait_online("doomed");
    let desc = d.describe_one("doomed");
    let id = desc["id"].as_u64().unwrap();
    let out_log = d.logs_dir().join(format!("doomed-{id}-out.log"));
    let err_log = d.logs_dir().join(format!("doomed-{id}-err.log"));
    assert_eq!(desc["out_log_path"], arg(&out_log), "{desc}");
    assert_eq!(desc["err_log_path"], arg(&err_log), "{desc}");
    wait_for("both logs to be written", WAIT, || {
        lines_of(&out_log) == ["out"] && lines_of(&err_log) == ["err"]
    });
    // `pmd start` answered once its change was on disk.
    let state = d.state().to_string();
    assert!(state.contains("doomed"), "state.json: {state}");

    d.pmd_ok(&["delete", "doomed"]);
    assert!(d.app("doomed").is_none(), "deleted app still listed");
    wait_for("the deleted app's process to be gone", WAIT, || {
        !pid_alive(pid)
    });
    let left: Vec<_> = fs::read_dir(d.logs_dir())
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !left
            .iter()
            .any(|f| f.to_string_lossy().starts_with("doomed-")),
        "log files left behind: {left:?}"
    );
    // `pmd delete` answered once its change was on disk.
    let state = d.state().to_string();
    assert!(!state.contains("doomed"), "state.json: {state}");
}

/// `pmd delete all --status stopped` deletes only the stopped apps.
#[test]
fn delete_with_status_only_deletes_apps_in_that_state() {
    let d = TestDaemon::start();
    d.pmd_ok(&["start", "sleep", "--name", "runner", "--", "100000"]);
    d.pmd_ok(&["start", "sleep", "--name", "sleeper", "--", "100000"]);
    let runner = d.wait_online("runner");
    d.wait_online("sleeper");
    d.pmd_ok(&["stop", "sleeper"]);
    d.wait_status("sleeper", "stopped");

    d.pmd_ok(&["delete", "all", "--status", "stopped"]);
    let names: Vec<_> = d.list_json().iter().map(|a| a["name"].clone()).collect();
    assert_eq!(names, ["runner"]);
    assert_eq!(d.app("runner").and_then(|a| pid_of(&a)), Some(runner));
    assert!(pid_alive(runner));
}

/// `pmd list -o json` gives id, name, pid (null when stopped), status and
/// restarts for every app.
#[test]
fn list_json_has_the_documented_keys() {
    let d = TestDaemon::start();
    d.pmd_ok(&["start", "sleep", "--name", "up", "--", "100000"]);
    d.pmd_ok(&["start", "sleep", "--name", "down", "--", "100000"]);
    let pid = d.wait_online("up");
    d.wait_online("down");
    d.pmd_ok(&["stop", "down"]);
    d.wait_status("down", "stopped");

    let apps = d.list_json();
    assert_eq!(apps.len(), 2, "{apps:?}");
    for app in &apps {
        for key in [
            "id",
            "name",
            "pid",
            "status",
            "restarts",
            "uptime_ms",
            "unstable_restarts",
            "tracking",
        ] {
            assert!(app.get(key).is_some(), "key {key} missing: {app}");
        }
        assert!(app["id"].is_u64() && app["restarts"].is_u64(), "{app}");
    }
    let up = apps.iter().find(|a| a["name"] == "up").unwrap();
    let down = apps.iter().find(|a| a["name"] == "down").unwrap();
    assert_eq!(pid_of(up), Some(pid));
    assert_eq!(up["status"], "online");
    assert!(down["pid"].is_null(), "{down}");
    assert_eq!(down["status"], "stopped");
    assert_ne!(up["id"], down["id"]);
}

/// `pmd describe -o json` carries the effective spec: kill timeout, stop
/// signal, resolved argv, cwd and log paths.
#[test]
fn describe_json_shows_the_effective_spec() {
    let d = TestDaemon::start();
    let script = d.write_script("specced.sh", "exec sleep 100000");
    d.pmd_ok(&[
        "start",
        arg(&script),
        "--name",
        "specced",
        "--kill-timeout",
        "1500",
        "--stop-signal",
        "SIGINT",
        "--",
        "alpha",
        "beta",
    ]);
    let pid = d.wait_online("specced");
    let desc = d.describe_one("specced");
    assert_eq!(pid_of(&desc), Some(pid), "{desc}");
    assert_eq!(desc["name"], "specced");
    assert_eq!(desc["status"], "online");
    assert_eq!(desc["kill_timeout_ms"], 1500, "{desc}");
    assert_eq!(desc["stop_signal"], "SIGINT", "{desc}");
    let argv: Vec<&str> = desc["argv"]
        .as_array()
        .unwrap_or_else(|| panic!("argv is not an array: {desc}"))
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        argv[0].starts_with('/'),
        "argv[0] is not absolute: {argv:?}"
    );
    assert_eq!(argv[argv.len() - 2..], ["alpha", "beta"], "{argv:?}");
    let out_log = desc["out_log_path"].as_str().unwrap();
    assert!(out_log.starts_with(arg(&d.logs_dir())), "{out_log}");
}

/// `pmd describe` of a name nobody started fails with exit 1 and says so.
#[test]
fn describe_of_an_unknown_app_fails() {
    let d = TestDaemon::start();
    let out = d.pmd_code(1, &["describe", "ghost"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ghost"),
        "{}",
        describe_output(&out)
    );
}

/// `pmd stop all` and `pmd restart all` act on every app.
#[test]
fn all_targets_every_app() {
    let d = TestDaemon::start();
    for name in ["one", "two", "three"] {
        d.pmd_ok(&["start", "sleep", "--name", name, "--", "100000"]);
    }
    for name in ["one", "two", "three"] {
        d.wait_online(name);
    }
    d.pmd_ok(&["stop", "all"]);
    for app in d.list_json() {
        assert_eq!(app["status"], "stopped", "{app}");
    }
    assert!(
        d.app_pids().is_empty(),
        "processes left: {:?}",
        d.app_pids()
    );
    d.pmd_ok(&["restart", "all"]);
    for name in ["one", "two", "three"] {
        d.wait_online(name);
    }
}
