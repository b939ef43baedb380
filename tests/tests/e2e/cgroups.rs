//! Exact membership with cgroup v2 (issue 8): where the daemon can make
//! cgroups (root here), each run of an app gets its own, and a process
//! that both left the app's process group (setsid) and cleared its
//! environment (`env -i`), which neither the group nor the marker finds,
//! is still stopped by stop, restart, delete, the exit of its main
//! process, and the next daemon after a crash. Skipped, with a message,
//! where cgroups are not usable. `--no-cgroups` forces the fallback.

use std::fs;
use std::path::PathBuf;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pmdaemon_tests::*;

/// The escaped, environment-cleared processes an app plants: each run
/// appends the pid of its `sleep SECONDS` to a file. No cleanup that goes
/// by the marker finds them, so this guard SIGKILLs what is left of them
/// when the test ends, passed or failed.
struct Escapees {
    file: PathBuf,
    seconds: &'static str,
}

impl Escapees {
    fn new(d: &TestDaemon, seconds: &'static str) -> Self {
        Escapees {
            file: d.work().join(format!("escapees-{seconds}")),
            seconds,
        }
    }

    /// The app's command: plants one escapee first thing, then runs
    /// `main`. The daemon starts the app in its run's cgroup (clone3), so
    /// even what it forks in its first instant is a member.
    fn script(&self, main: &str) -> String {
        format!(
            "( setsid env -i sleep {} & echo $! >> {} ) ; {main}",
            self.seconds,
            self.file.display()
        )
    }

    /// Every escapee planted so far, in order.
    fn planted(&self) -> Vec<u32> {
        fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// The pid of the `count`th escapee, once written (it may not have
    /// exec'd `sleep` yet, and may be gone already).
    fn wait_written(&self, count: usize) -> u32 {
        wait_for_value(&format!("escapee {count} written"), WAIT, || {
            self.planted().get(count - 1).copied()
        })
    }

    /// The `count`th escapee, once planted and running `sleep` with its
    /// environment cleared (its pid is written before `env` and `sleep`
    /// have exec'd).
    fn wait_planted(&self, count: usize) -> u32 {
        wait_for_value(&format!("escapee {count} planted"), WAIT, || {
            let pid = self.planted().get(count - 1).copied()?;
            self.alive().contains(&pid).then_some(pid)
        })
    }

    /// Those still running (and still what was planted: `sleep SECONDS`
    /// with an empty environment, so a reused pid is never touched).
    fn alive(&self) -> Vec<u32> {
        self.planted()
            .into_iter()
            .filter(|&pid| {
                pid_alive(pid)
                    && fs::read(format!("/proc/{pid}/environ")).is_ok_and(|e| e.is_empty())
                    && matches!(cmdline_of_opt(pid).as_deref(),
                        Some([program, arg]) if program.ends_with("sleep") && arg == self.seconds)
            })
            .collect()
    }
}

impl Drop for Escapees {
    fn drop(&mut self) {
        for pid in self.alive() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// The command line of `pid`, None once it is gone.
fn cmdline_of_opt(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let raw = raw.strip_suffix(&[0]).unwrap_or(&raw);
    Some(
        raw.split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// A daemon that tracks by cgroup, or None (with a message) where this
/// machine cannot give it cgroups.
fn cgroup_daemon() -> Option<TestDaemon> {
    if !cgroups_usable() {
        eprintln!("skipped: needs root and a writable cgroup2 with cgroup.kill");
        return None;
    }
    Some(TestDaemon::start())
}

/// The tracking `pmd describe` shows for `name`.
fn tracking(d: &TestDaemon, name: &str) -> String {
    let text = d.pmd_ok(&["describe", name]);
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix("tracking "))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no tracking line in:\n{text}"))
}

/// Stop, restart (three times: nothing piles up) and delete each end the
/// escaped, environment-cleared process of the run they end; describe says
/// the app is tracked by cgroup, and delete leaves no cgroup behind.
#[test]
fn env_cleared_escapees_do_not_survive_stop_restart_or_delete() {
    let Some(d) = cgroup_daemon() else { return };
    let esc = Escapees::new(&d, "3621");
    d.pmd_ok(&[
        "start",
        "bash",
        "--name",
        "esc",
        "--",
        "-c",
        &esc.script("exec sleep 3600"),
    ]);
    d.wait_online("esc");
    let first = esc.wait_planted(1);
    assert_eq!(tracking(&d, "esc"), "cgroup");
    assert_eq!(d.describe_one("esc")["tracking"], "cgroup");

    // Stop answers after the run is stopped, escapee included.
    d.pmd_ok(&["stop", "esc"]);
    assert!(!pid_alive(first), "the escapee {first} outlived a stop");
    assert!(
        run_cgroups(d.home()).is_empty(),
        "{:?}",
        run_cgroups(d.home())
    );

    d.pmd_ok(&["start", "esc"]);
    let mut last = esc.wait_planted(2);
    for n in 3..=5 {
        d.pmd_ok(&["restart", "esc"]);
        assert!(!pid_alive(last), "the escapee {last} outlived a restart");
        last = esc.wait_planted(n);
        assert_eq!(esc.alive(), [last], "escapees left: {:?}", esc.alive());
    }
    d.pmd_ok(&["delete", "esc"]);
    assert!(
        esc.alive().is_empty(),
        "left after delete: {:?}",
        esc.alive()
    );
    assert!(
        run_cgroups(d.home()).is_empty(),
        "{:?}",
        run_cgroups(d.home())
    );
}

/// When the main process exits on its own, what remains in its run's
/// cgroup is stopped, the escaped, environment-cleared process included,
/// and the cgroup is removed.
#[test]
fn an_exited_apps_env_cleared_escapee_is_stopped() {
    let Some(d) = cgroup_daemon() else { return };
    let esc = Escapees::new(&d, "3622");
    d.pmd_ok(&[
        "start",
        "bash",
        "--name",
        "quitter",
        "--no-autorestart",
        "--",
        "-c",
        &esc.script("exit 0"),
    ]);
    let stray = esc.wait_written(1);
    d.wait_status("quitter", "stopped");
    wait_for("the escapee stopped after its app exited", WAIT, || {
        !pid_alive(stray)
    });
    wait_for("the run's cgroup removed", WAIT, || {
        run_cgroups(d.home()).is_empty()
    });
}

/// After `kill -9` of the daemon, the next daemon ends an escaped,
/// environment-cleared process of an app the state no longer has (a
/// truncated state file and backup), found through its run's cgroup, and
/// removes that cgroup before anything starts.
#[test]
fn a_crashed_daemons_env_cleared_escapee_is_stopped_by_the_next_daemon() {
    let Some(mut d) = cgroup_daemon() else { return };
    let esc = Escapees::new(&d, "3623");
    d.pmd_ok(&[
        "start",
        "bash",
        "--name",
        "orphaned",
        "--",
        "-c",
        &esc.script("exec sleep 3600"),
    ]);
    d.wait_online("orphaned");
    let stray = esc.wait_planted(1);
    d.kill9_daemon();
    // The backup too: whether it already holds the app depends on how the
    // writes of the start fell (one write, or one before the spawn and
    // one after).
    fs::write(d.state_path(), "{ truncated").unwrap();
    fs::write(d.home().join("state.json.bak"), "{ truncated").unwrap();
    d.spawn_daemon();
    assert!(d.list_json().is_empty(), "{:?}", d.list_json());
    wait_for("the previous life's escapee stopped", WAIT, || {
        !pid_alive(stray)
    });
    wait_for("the previous life's cgroup removed", WAIT, || {
        run_cgroups(d.home()).is_empty()
    });
}

/// The same after an app was deleted from a state file by hand: its
/// cgroup is not accounted for, and goes.
#[test]
fn a_cgroup_the_state_does_not_know_is_ended_at_daemon_start() {
    let Some(mut d) = cgroup_daemon() else { return };
    let esc = Escapees::new(&d, "3624");
    d.pmd_ok(&[
        "start",
        "bash",
        "--name",
        "forgotten",
        "--",
        "-c",
        &esc.script("exec sleep 3600"),
    ]);
    d.pmd_ok(&["start", "sleep", "--name", "kept", "--", "3600"]);
    d.wait_online("forgotten");
    d.wait_online("kept");
    let stray = esc.wait_planted(1);
    d.kill9_daemon();
    let mut state = d.state();
    state["apps"]
        .as_array_mut()
        .expect("apps in state.json")
        .retain(|app| app["spec"]["name"] != "forgotten");
    fs::write(d.state_path(), state.to_string()).unwrap();
    d.spawn_daemon();
    wait_for("the forgotten app's escapee stopped", WAIT, || {
        !pid_alive(stray)
    });
    d.wait_online("kept");
    assert_eq!(tracking(&d, "kept"), "cgroup");
    // Only the kept app's new run has a cgroup.
    wait_for("one run cgroup left", WAIT, || {
        run_cgroups(d.home()).len() == 1
    });
}

/// `--no-cgroups` forces the fallback: describe says process-group, no
/// cgroup is made, and an escapee that kept the marker is still stopped.
#[test]
fn no_cgroups_falls_back_to_process_group_and_marker() {
    let d = TestDaemon::start_with_args(&["--no-cgroups"]);
    d.pmd_ok(&[
        "start",
        "bash",
        "--name",
        "fallback",
        "--",
        "-c",
        "( setsid sleep 3625 & echo $! > escapee ) ; exec sleep 3600",
    ]);
    d.wait_online("fallback");
    assert_eq!(tracking(&d, "fallback"), "process-group");
    assert!(
        home_cgroup_dir(d.home()).is_none_or(|dir| !dir.exists()),
        "a cgroup directory was made with --no-cgroups"
    );
    let stray: u32 = wait_for_value("the escaped sleep", WAIT, || {
        fs::read_to_string(d.work().join("escapee"))
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    d.pmd_ok(&["stop", "fallback"]);
    assert!(!pid_alive(stray), "the escapee {stray} outlived a stop");
}
