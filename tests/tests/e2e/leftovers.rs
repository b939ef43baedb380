//! Nothing escapes (issue 8): every process of an instance carries the
//! marker `PMDAEMON_HOME` + `PMD_ID` in its environment, and the daemon
//! finds by it what no process group or recorded pid leads to: children
//! that left their group and lost their parent, the processes of a state
//! file that could not be read, a process a crashed daemon never wrote
//! down, probe shells of a killed daemon.

use std::fs;
use std::process::{Command, Stdio};

use pmdaemon_tests::*;

/// The pids of live processes of `home` whose command line is `sleep
/// SECONDS` (the program maybe by its full path): the processes these
/// tests plant, each with its own number of seconds.
fn sleeps(d: &TestDaemon, seconds: &str) -> Vec<u32> {
    pids_with_home(d.home())
        .into_iter()
        .filter(|&pid| match cmdline_of(pid).as_slice() {
            [program, arg] => program.ends_with("sleep") && arg == seconds,
            _ => false,
        })
        .collect()
}

/// Waits until none of `pids` is alive.
fn wait_gone(what: &str, pids: &[u32]) {
    wait_for(what, WAIT, || pids.iter().all(|&p| !pid_alive(p)));
}

/// A process of this home that the daemon does not know (as one spawned
/// just before a crash, before it was on disk) is stopped when the next
/// daemon starts; a process that only has `PMDAEMON_HOME` (a user's shell
/// with the variable exported, say) but no `PMD_ID` is not an app's and is
/// left alone. Case 1 of issue 8.
#[test]
fn an_unknown_process_of_this_home_is_stopped_at_daemon_start() {
    let mut d = TestDaemon::new_stopped();
    let spawn = |with_id: bool| {
        let mut cmd = Command::new("sleep");
        cmd.arg("3601")
            .env(pmdaemon_proto::HOME_ENV, d.home())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if with_id {
            cmd.env("PMD_ID", "42");
        }
        cmd.spawn().expect("spawn sleep")
    };
    let mut unknown = spawn(true);
    let mut users = spawn(false);
    d.spawn_daemon();
    // Reaped here: a zombie child of this test would count as alive.
    let status =
        wait_child(&mut unknown, WAIT).expect("the daemon stopped the unknown app process");
    assert!(!status.success(), "{status}");
    // The fence: both were found in the one scan at start; the unknown one
    // is gone, so whatever the daemon did to the other is done.
    assert!(
        users.try_wait().expect("try_wait").is_none(),
        "a process without PMD_ID was stopped"
    );
    let _ = users.kill();
    let _ = users.wait();
}

/// A state file that cannot be read is kept aside, and the apps the
/// previous daemon ran are stopped, not left running unknown: `pmd
/// resurrect` then runs each app once, not twice. Case 2 of issue 8.
#[test]
fn a_corrupt_state_file_leaves_no_orphans() {
    let mut d = TestDaemon::start();
    for name in ["a", "b", "c"] {
        d.pmd_ok(&["start", "sleep", "--name", name, "--", "3602"]);
    }
    let old: Vec<u32> = ["a", "b", "c"].iter().map(|n| d.wait_online(n)).collect();
    d.pmd_ok(&["save"]);
    d.kill9_daemon();
    fs::write(d.state_path(), "{ truncated").unwrap();
    // No good state to fall back to either (state.json.bak is
    // `full_disk`'s case).
    fs::write(d.home().join("state.json.bak"), "{ truncated").unwrap();
    d.spawn_daemon();
    wait_gone("the previous daemon's apps stopped", &old);
    assert!(d.list_json().is_empty(), "{:?}", d.list_json());

    d.pmd_ok(&["resurrect"]);
    for name in ["a", "b", "c"] {
        d.wait_online(name);
    }
    assert_eq!(sleeps(&d, "3602").len(), 3, "{:?}", sleeps(&d, "3602"));
}

/// A child that left the app's group with setsid and lost its parent is
/// stopped with its instance: on each restart (so they do not pile up),
/// and on delete. Case 3 of issue 8.
#[test]
fn escaped_children_do_not_survive_restart_or_delete() {
    let d = TestDaemon::start();
    d.pmd_ok(&[
        "start",
        "bash",
        "--name",
        "esc",
        "--",
        "-c",
        "( setsid sleep 3603 & ) ; exec sleep 3600",
    ]);
    d.wait_online("esc");
    let mut stray = wait_for_value("the escaped sleep", WAIT, || {
        sleeps(&d, "3603").first().copied()
    });
    for _ in 0..3 {
        d.pmd_ok(&["restart", "esc"]);
        // The restart answers after the old run is stopped, strays included.
        assert!(
            !pid_alive(stray),
            "the escaped sleep {stray} outlived a restart"
        );
        stray = wait_for_value("the new run's escaped sleep", WAIT, || {
            sleeps(&d, "3603").into_iter().find(|&p| p != stray)
        });
        assert_eq!(sleeps(&d, "3603"), [stray]);
    }
    d.pmd_ok(&["delete", "esc"]);
    assert!(
        sleeps(&d, "3603").is_empty() && sleeps(&d, "3600").is_empty(),
        "left after delete: {:?}",
        pids_with_home(d.home())
    );
}

/// When an app's main process exits on its own, what it started that left
/// its group is stopped before the next run (systemd's default for a
/// service). Case 9 of issue 8.
#[test]
fn an_exited_apps_escaped_children_are_stopped() {
    let d = TestDaemon::start();
    d.pmd_ok(&[
        "start",
        "bash",
        "--name",
        "quitter",
        "--no-autorestart",
        "--",
        "-c",
        "( setsid sleep 3604 & ) ; sleep 0.5",
    ]);
    let stray = wait_for_value("the escaped sleep", WAIT, || {
        sleeps(&d, "3604").first().copied()
    });
    d.wait_status("quitter", "stopped");
    wait_gone("the escaped sleep stopped after its app exited", &[stray]);
}

/// A health probe still running when the daemon is killed is stopped by
/// the next daemon. Case 10 of issue 8.
#[test]
fn probe_shells_of_a_killed_daemon_are_swept() {
    let mut d = TestDaemon::start();
    d.pmd_ok(&[
        "start",
        "sleep",
        "--name",
        "probed",
        "--health-check-script",
        "sleep 3605",
        "--health-interval",
        "1m",
        "--health-timeout",
        "1m",
        "--",
        "3600",
    ]);
    let probe = wait_for_value("the probe's sleep", WAIT, || {
        sleeps(&d, "3605").first().copied()
    });
    d.kill9_daemon();
    d.spawn_daemon();
    wait_gone("the killed daemon's probe stopped", &[probe]);
}
