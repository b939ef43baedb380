//! What survives the daemon: graceful restarts, crashes (`kill -9`),
//! `pmd kill`, save/resurrect, and the state file itself.

use std::fs;

use pmdaemon_tests::*;

use crate::{lines_of, said};

/// After a graceful daemon restart (SIGTERM, start again) the apps that were
/// online are online again under the same ids, and a stopped app stays
/// stopped; no process is duplicated.
#[test]
fn daemon_restart_brings_online_apps_back() {
    let mut d = TestDaemon::start();
    d.pmd_ok(&["start", "sleep", "--name", "keeper", "--", "100000"]);
    d.pmd_ok(&["start", "sleep", "--name", "idle", "--", "100000"]);
    let old = d.wait_online("keeper");
    d.wait_online("idle");
    d.pmd_ok(&["stop", "idle"]);
    d.wait_status("idle", "stopped");
    let ids_before: Vec<_> = d
        .list_json()
        .iter()
        .map(|a| (a["name"].clone(), a["id"].clone()))
        .collect();

    d.restart_daemon();
    let new = d.wait_online("keeper");
    assert!(pid_alive(new));
    if new != old {
        assert!(
            !pid_alive(old),
            "the previous instance {old} survived next to {new}"
        );
    }
    assert_eq!(d.status("idle").as_deref(), Some("stopped"));
    let ids_after: Vec<_> = d
        .list_json()
        .iter()
        .map(|a| (a["name"].clone(), a["id"].clone()))
        .collect();
    assert_eq!(ids_after, ids_before, "ids changed across a daemon restart");
    assert_eq!(d.app_pids(), [new], "exactly the keeper should be running");
}

/// After `kill -9` of the daemon, the next daemon does not start a duplicate
/// of an app whose previous instance (and its grandchild) still runs:
/// exactly one instance with its grandchild runs, the one the daemon
/// reports; a replaced instance is gone with its whole group.
#[test]
fn daemon_kill9_then_start_leaves_no_duplicates() {
    let mut d = TestDaemon::start();
    let script = d.write_script("survivor.sh", "sleep 100000 &\nexec sleep 100000");
    d.pmd_ok(&["start", arg(&script), "--name", "survivor"]);
    let old = d.wait_online("survivor");
    wait_for("the app and its grandchild", WAIT, || {
        d.app_pids().len() == 2
    });
    let old_pids = d.app_pids();
    // kill -9 gives the daemon no chance to flush: let it record the pid first.
    d.wait_pid_recorded(old);

    d.kill9_daemon();
    d.spawn_daemon();
    let pid = d.wait_online("survivor");
    wait_for(
        "a single instance of the app with its grandchild",
        WAIT,
        || d.app_pids().len() == 2,
    );
    assert!(
        d.app_pids().contains(&pid),
        "the reported pid {pid} is not running: {:?}",
        d.app_pids()
    );
    if pid != old {
        wait_for(
            "the replaced instance and its grandchild to be gone",
            WAIT,
            || old_pids.iter().all(|&p| !pid_alive(p)),
        );
    }
    wait_for("the app and its grandchild, once", WAIT, || {
        d.app_pids().len() == 2
    });
    assert_eq!(d.list_json().len(), 1, "{:?}", d.list_json());
    assert_eq!(d.daemon_pids(), [d.daemon_pid()], "more than one daemon");
}

/// What pmd was told happened is on disk: a daemon killed (-9) right after
/// answering `pmd start` knows the app at its next start (and leaves no
/// untracked process behind), and one killed right after `pmd stop`
/// does not bring the stopped app back.
#[test]
fn a_change_pmd_was_told_about_survives_a_kill9_right_after() {
    let mut d = TestDaemon::start();
    d.pmd_ok(&["start", "sleep", "--name", "kept", "--", "100000"]);
    d.pmd_ok(&["start", "sleep", "--name", "halted", "--", "100001"]);
    d.wait_online("halted");
    d.pmd_ok(&["stop", "halted"]);
    d.kill9_daemon();
    d.spawn_daemon();
    d.wait_online("kept");
    assert_eq!(d.status("halted").as_deref(), Some("stopped"));
    wait_for("a single process of kept", WAIT, || d.app_pids().len() == 1);
}

/// After `kill -9` of the daemon, an app that writes to stdout dies of
/// SIGPIPE, but its background child lives on in the app's group. The next
/// daemon terminates that orphan (found by its group and PMDAEMON_HOME)
/// before starting the app again: one background child runs, not two.
#[test]
fn orphans_of_an_instance_that_died_with_the_daemon_are_terminated() {
    let mut d = TestDaemon::start();
    let script = d.write_script(
        "ticker.sh",
        "sleep 100000 &\nwhile :; do echo tick; sleep 0.1; done",
    );
    d.pmd_ok(&["start", arg(&script), "--name", "ticker"]);
    let leader = d.wait_online("ticker");
    d.wait_pid_recorded(leader);
    let orphan = wait_for_value("the background sleep", WAIT, || {
        d.app_pids()
            .into_iter()
            .find(|&p| p != leader && cmdline(p).contains("100000"))
    });

    d.kill9_daemon();
    wait_for("the app to die of SIGPIPE", WAIT, || !pid_alive(leader));
    assert!(pid_alive(orphan), "the orphan is already gone: no test");

    d.spawn_daemon();
    let pid = d.wait_online("ticker");
    wait_for("the orphan to be terminated", WAIT, || !pid_alive(orphan));
    wait_for("exactly one background sleep", WAIT, || {
        d.app_pids()
            .into_iter()
            .filter(|&p| cmdline(p).contains("100000"))
            .count()
            == 1
    });
    assert!(pid_alive(pid));
}

/// The command line of `pid`, arguments joined by spaces; empty when gone.
fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .unwrap_or_default()
}

/// `pmd kill` stops the apps and the daemon; the next daemon brings the apps
/// that were online back.
#[test]
fn kill_stops_apps_and_daemon_and_the_next_daemon_restores_them() {
    let mut d = TestDaemon::start();
    d.pmd_ok(&["start", "sleep", "--name", "sturdy", "--", "100000"]);
    let old = d.wait_online("sturdy");

    d.pmd_ok(&["kill"]);
    let status = d.wait_daemon_exit();
    assert!(
        status.success(),
        "daemon exited with {status} after pmd kill"
    );
    assert!(!pid_alive(old), "app {old} survived pmd kill");
    assert!(
        d.app_pids().is_empty(),
        "processes left: {:?}",
        d.app_pids()
    );

    d.spawn_daemon();
    let new = d.wait_online("sturdy");
    assert_ne!(new, old);
}

/// `pmd save`, `pmd delete all`, `pmd resurrect` brings the saved apps back
/// with their arguments and environment.
#[test]
fn save_then_delete_all_then_resurrect_restores_apps() {
    let d = TestDaemon::start();
    let script = d.write_script(
        "painter.sh",
        "echo \"color=$COLOR args=$*\"\nexec sleep 100000",
    );
    d.pmd_ok(&[
        "start",
        arg(&script),
        "--name",
        "red",
        "--env",
        "COLOR=red",
        "--",
        "x",
        "y",
    ]);
    d.pmd_ok(&["start", "sleep", "--name", "plain", "--", "100000"]);
    d.wait_online("red");
    d.wait_online("plain");

    d.pmd_ok(&["save"]);
    assert!(
        d.home().join("dump.json").is_file(),
        "no dump.json after pmd save"
    );
    d.pmd_ok(&["delete", "all"]);
    assert!(d.list_json().is_empty());
    wait_for("all apps gone", WAIT, || d.app_pids().is_empty());

    d.pmd_ok(&["resurrect"]);
    d.wait_online("red");
    d.wait_online("plain");
    let out_log = d.describe_one("red")["out_log_path"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for("the resurrected app's output", WAIT, || {
        !lines_of(out_log.as_ref()).is_empty()
    });
    assert_eq!(lines_of(out_log.as_ref()), ["color=red args=x y"]);
    assert_eq!(d.list_json().len(), 2);
}

/// An app of the dump that cannot be created again (its script is gone)
/// makes `pmd resurrect` exit 1 naming it and why, while the others come
/// back; an app that is already known is reported as skipped, not failed.
#[test]
fn resurrect_reports_apps_it_cannot_create_and_fails() {
    let d = TestDaemon::start();
    let script = d.write_script("gone.sh", "exec sleep 100000");
    d.pmd_ok(&["start", arg(&script), "--name", "gone"]);
    d.pmd_ok(&["start", "sleep", "--name", "keep", "--", "100000"]);
    d.pmd_ok(&["start", "sleep", "--name", "known", "--", "100000"]);
    for name in ["gone", "keep", "known"] {
        d.wait_online(name);
    }
    d.pmd_ok(&["save"]);
    d.pmd_ok(&["delete", "gone"]);
    d.pmd_ok(&["delete", "keep"]);
    fs::remove_file(&script).unwrap();

    let out = d.pmd_code(1, &["resurrect"]);
    let text = said(&out);
    assert!(text.contains("gone") && text.contains("gone.sh"), "{text}");
    assert!(!text.contains("gone (already known)"), "{text}");
    assert!(text.contains("skipped known (already known)"), "{text}");
    d.wait_online("keep");
    assert!(d.app("gone").is_none(), "{:?}", d.app("gone"));
}

/// A bare command name is looked up on the PATH of the `pmd` that starts
/// it, not only on the daemon's; the resolved path is recorded, so the app
/// comes back after a daemon restart.
#[test]
fn a_bare_command_is_found_on_the_callers_path() {
    let mut d = TestDaemon::start();
    let bin = d.work().join("bin");
    fs::create_dir(&bin).unwrap();
    d.write_executable("bin/mycmd", "#!/bin/sh\nexec sleep 100000\n");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = run_with_timeout(
        d.pmd_command(&["start", "mycmd"]).env("PATH", &path),
        PMD_TIMEOUT,
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    let pid = d.wait_online("mycmd");
    let argv = d.describe_one("mycmd")["argv"].to_string();
    assert!(argv.contains("bin/mycmd"), "{argv}");

    d.restart_daemon();
    let again = d.wait_online("mycmd");
    assert_ne!(again, pid);
}

/// A corrupt state.json does not stop the daemon and is not silently lost:
/// it is kept under another name and the daemon says so.
#[test]
fn a_corrupt_state_file_is_kept_aside() {
    let mut d = TestDaemon::new_stopped();
    let garbage = "{ this is not json";
    fs::write(d.state_path(), garbage).unwrap();
    d.spawn_daemon();
    assert!(d.list_json().is_empty());

    let aside: Vec<_> = fs::read_dir(d.home())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p != &d.state_path())
        .filter(|p| fs::read_to_string(p).is_ok_and(|s| s == garbage))
        .collect();
    assert_eq!(
        aside.len(),
        1,
        "the corrupt state was not kept aside: {aside:?}"
    );
    let aside_name = aside[0].file_name().unwrap().to_str().unwrap().to_owned();
    let said = format!("{}{}", d.daemon_log(), d.daemon_stderr());
    assert!(
        said.contains(&aside_name),
        "the daemon does not say where it kept the corrupt state ({aside_name}):\n{said}"
    );
    // Users see it too, not only the daemon's log.
    let pong = d.pmd(&["ping"]);
    let warned = String::from_utf8_lossy(&pong.stderr);
    assert!(warned.contains(&aside_name), "pmd ping: {warned}");

    // A second corrupt file in the same second does not replace the first.
    d.stop_daemon();
    let second = "{ also not json";
    fs::write(d.state_path(), second).unwrap();
    d.spawn_daemon();
    let kept: Vec<String> = fs::read_dir(d.home())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p != &d.state_path())
        .filter_map(|p| fs::read_to_string(p).ok())
        .filter(|s| s == garbage || s == second)
        .collect();
    assert_eq!(kept.len(), 2, "a corrupt copy was lost: {kept:?}");

    d.pmd_ok(&["start", "sleep", "--name", "fresh", "--", "100000"]);
    d.wait_online("fresh");
    // `pmd start` answered once its change was on disk.
    let state = d.state().to_string();
    assert!(state.contains("fresh"), "state.json: {state}");
}

/// state.json is written as apps change and names them.
#[test]
fn the_state_file_records_apps() {
    let d = TestDaemon::start();
    d.pmd_ok(&["start", "sleep", "--name", "recorded", "--", "100000"]);
    d.wait_online("recorded");
    // `pmd start` answered once its change was on disk.
    let state = d.state().to_string();
    assert!(state.contains("recorded"), "state.json: {state}");
    let leftovers: Vec<_> = fs::read_dir(d.home())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state"))
        // The state, its backup and its reserve are meant to stay.
        .filter(|n| !["state.json", "state.json.bak", "state.reserve"].contains(&n.as_str()))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary state files left: {leftovers:?}"
    );
}

/// `pmd ping`, `pmd version` and `pmd kill` do not start a daemon when none
/// runs.
#[test]
fn ping_version_and_kill_do_not_autostart_a_daemon() {
    let d = TestDaemon::new_stopped();
    let out = d.pmd_code(1, &["ping"]);
    assert!(!out.stderr.is_empty(), "ping without a daemon says nothing");
    let version = d.pmd_ok(&["version"]);
    assert!(version.contains(pmdaemon_proto::VERSION), "{version}");
    let _ = d.pmd(&["kill"]);
    assert!(
        d.daemon_pids().is_empty(),
        "a daemon was started: {:?}",
        d.daemon_pids()
    );
    assert!(!d.socket().exists(), "a socket appeared");
}

/// `pmd list` with no daemon running starts one, and the next command uses
/// it rather than starting another.
#[test]
fn list_autostarts_a_single_daemon() {
    let d = TestDaemon::new_stopped();
    let out = d.pmd_ok(&["list"]);
    assert!(
        d.socket().exists(),
        "no socket after an auto-start; list said: {out}"
    );
    let daemons = d.daemon_pids();
    assert_eq!(daemons.len(), 1, "{daemons:?}");
    d.pmd_ok(&["list"]);
    d.pmd_ok(&["ping"]);
    assert_eq!(d.daemon_pids(), daemons, "a second daemon was started");
    d.pmd_ok(&["kill"]);
    wait_for("the auto-started daemon to exit", WAIT, || {
        d.daemon_pids().is_empty()
    });

    // Four at once: one daemon, and only the pmd whose daemon won says so.
    let children: Vec<_> = (0..4)
        .map(|_| {
            d.pmd_command(&["list"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let said: Vec<String> = children
        .into_iter()
        .map(|c| String::from_utf8_lossy(&c.wait_with_output().unwrap().stderr).into_owned())
        .collect();
    let announced = said.iter().filter(|s| s.contains("daemon started")).count();
    assert_eq!(announced, 1, "{said:#?}");
    assert_eq!(d.daemon_pids().len(), 1, "{:?}", d.daemon_pids());
}

/// A hand-edited state file is checked like API input, entry by entry: an
/// app listed twice (same name, same id) is loaded once, and `pmd ping`
/// says which entry was not loaded and why; one process runs, not two.
/// Issue 8, case 6.
#[test]
fn a_state_file_with_an_app_twice_loads_it_once() {
    let mut d = TestDaemon::start();
    d.pmd_ok(&["start", "sleep", "--name", "dup", "--", "3606"]);
    d.wait_online("dup");
    assert!(d.stop_daemon().success());
    let mut state = d.state();
    let app = state["apps"][0].clone();
    state["apps"].as_array_mut().unwrap().push(app);
    fs::write(d.state_path(), state.to_string()).unwrap();

    d.spawn_daemon();
    d.wait_online("dup");
    let listed = d.list_json();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], 0, "{listed:?}");
    let running: Vec<u32> = pids_with_home(d.home())
        .into_iter()
        .filter(|&pid| cmdline_of(pid).last().is_some_and(|a| a == "3606"))
        .collect();
    assert_eq!(running.len(), 1, "{running:?}");
    let ping = said(&d.pmd(&["ping"]));
    assert!(
        ping.contains("app \"dup\" not loaded: an earlier entry has the same name"),
        "pmd ping: {ping}"
    );
}
