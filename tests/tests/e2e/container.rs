//! `pmdaemond run FILE` (the container mode): prefixed, raw and JSON
//! output on the right streams, orphans reaped by the run process (a child
//! subreaper here), managed apps' exit codes intact, SIGTERM stopping
//! everything with exit 0, exit 1 when every app errored, exit 2 and
//! nothing started for an unusable file, `pmd list` on the socket, a
//! persistent home's other apps restored stopped, and the same output,
//! reaping and SIGTERM as PID 1 of a PID namespace.
//!
//! The run process is spawned in its own process group; [`Run`]'s drop
//! SIGKILLs that group and [`TestDaemon`]'s drop every process of the home,
//! so nothing survives a failed test.

use std::fs;
use std::process::{Child, Command, ExitStatus, Stdio};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use pmdaemon_tests::*;

/// One `pmdaemond run` of a test, stdout and stderr into files of the home.
struct Run {
    child: Option<Child>,
    out: std::path::PathBuf,
    err: std::path::PathBuf,
}

impl Run {
    fn start(d: &TestDaemon, args: &[&str]) -> Run {
        use std::os::unix::process::CommandExt;
        let out = d.home().join("run-stdout.txt");
        let err = d.home().join("run-stderr.txt");
        let child = Command::new(&binaries().pmdaemond)
            .arg("run")
            .args(args)
            .arg("--no-cgroups")
            .env(pmdaemon_proto::HOME_ENV, d.home())
            .env("NO_COLOR", "1")
            .current_dir(d.work())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .expect("spawn pmdaemond run");
        Run {
            child: Some(child),
            out,
            err,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn stdout(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let status = wait_child(child, WAIT)
            .unwrap_or_else(|| panic!("pmdaemond run did not exit\nstderr:\n{}", self.stderr()));
        self.child = None;
        status
    }

    fn terminate(&mut self) -> ExitStatus {
        let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGTERM);
        self.wait_exit()
    }

    /// Waits until stdout (or stderr) has `text`.
    fn wait_output(&self, text: &str, stderr: bool) {
        wait_for(&format!("{text:?} in the run's output"), WAIT, || {
            if stderr {
                self.stderr().contains(text)
            } else {
                self.stdout().contains(text)
            }
        });
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

fn ecosystem(d: &TestDaemon, body: &str) -> String {
    arg(&d.write_file("ecosystem.yaml", body)).to_owned()
}

const TALKER: &str = "apps:
  - name: talker
    script: sh
    args: [\"-c\", \"echo to-out; echo to-err >&2; exec sleep 1000\"]
";

/// The apps' lines are tagged `ID|NAME | `, stdout lines on stdout and
/// stderr lines on stderr; `pmd list` reaches the daemon on the home's
/// socket, and an app started there later is printed too; SIGTERM stops
/// the apps and the run exits 0 leaving nothing.
#[test]
fn prints_tagged_lines_and_stops_on_sigterm() {
    let d = TestDaemon::new_stopped();
    let file = ecosystem(&d, TALKER);
    let mut run = Run::start(&d, &[&file]);
    run.wait_output("0|talker | to-out", false);
    run.wait_output("0|talker | to-err", true);
    assert!(!run.stdout().contains("to-err"), "{}", run.stdout());
    let pid = d.wait_online("talker");
    d.pmd_ok(&[
        "start",
        "sh",
        "--name",
        "late",
        "--",
        "-c",
        "echo late-line; exec sleep 1000",
    ]);
    run.wait_output("1|late | late-line", false);
    let status = run.terminate();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", run.stderr());
    assert!(!pid_alive(pid), "the app survived the run");
    assert!(pids_with_home(d.home()).is_empty());
}

/// `--raw` prints the line alone; `--json` one object per line with PM2's
/// keys, every line on stdout.
#[test]
fn raw_and_json_output() {
    let d = TestDaemon::new_stopped();
    let file = ecosystem(&d, TALKER);
    let mut run = Run::start(&d, &[&file, "--raw"]);
    run.wait_output("to-err", true);
    run.wait_output("to-out", false);
    assert!(
        run.stdout().lines().any(|l| l == "to-out"),
        "{}",
        run.stdout()
    );
    assert_eq!(run.terminate().code(), Some(0));

    let mut run = Run::start(&d, &[&file, "--json"]);
    run.wait_output("to-err", false);
    let lines: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| parse_json("a --json line", l))
        .collect();
    let err_line = lines
        .iter()
        .find(|v| v["message"] == "to-err")
        .expect("the stderr line");
    assert_eq!(err_line["type"], "err");
    assert_eq!(err_line["app_name"], "talker");
    assert!(err_line["timestamp"].is_string());
    assert_eq!(run.terminate().code(), Some(0));
}

/// An app whose background grandchild outlives its parent: the orphan is
/// re-parented to the run process (PID 1's stand-in, a child subreaper)
/// and reaped when it exits, not left a zombie; meanwhile a managed app's
/// exit code 3 is still seen by the daemon.
#[test]
fn reaps_orphans_and_keeps_exit_codes() {
    let d = TestDaemon::new_stopped();
    let file = ecosystem(
        &d,
        "apps:
  - name: forker
    script: sh
    args: [\"-c\", \"(sleep 2 & echo $! > gc.pid); exec sleep 1000\"]
  - name: three
    script: sh
    args: [\"-c\", \"exit 3\"]
    autorestart: false
",
    );
    let mut run = Run::start(&d, &[&file]);
    let init = run.pid();
    let gc: u32 = wait_for_value("gc.pid", WAIT, || d.read_work("gc.pid").trim().parse().ok());
    // Adopted by the run process once its subshell is gone: the orphan did
    // not go to the machine's init.
    wait_for("the orphan adopted by the run process", WAIT, || {
        ppid_of(gc) == Some(init)
    });
    wait_for("the orphan to be reaped", WAIT, || {
        !std::path::Path::new(&format!("/proc/{gc}")).exists()
    });
    assert!(zombie_children(init).is_empty());
    let three = d.wait_status("three", "errored");
    assert_eq!(d.describe_one("three")["exit_code"], 3, "{three}");
    assert_eq!(run.terminate().code(), Some(0));
}

/// An app that ignores SIGTERM is killed after its kill timeout; the run
/// still exits 0 (the kill timeout is part of a graceful stop).
#[test]
fn an_app_ignoring_sigterm_is_killed_and_the_exit_is_clean() {
    let d = TestDaemon::new_stopped();
    let file = ecosystem(
        &d,
        "apps:
  - name: stubborn
    script: sh
    args: [\"-c\", \"trap '' TERM; echo up; while :; do sleep 1; done\"]
    kill_timeout: 500
",
    );
    let mut run = Run::start(&d, &[&file]);
    run.wait_output("0|stubborn | up", false);
    assert_eq!(run.terminate().code(), Some(0), "{}", run.stderr());
    assert!(d.app_pids().is_empty(), "left: {:?}", d.app_pids());
}

/// Every app errored: the run says why and exits 1, nothing left running.
#[test]
fn every_app_errored_exits_1() {
    let d = TestDaemon::new_stopped();
    let file = ecosystem(
        &d,
        "apps:
  - name: crasher
    script: sh
    args: [\"-c\", \"exit 7\"]
    max_restarts: 1
    min_uptime: 5s
",
    );
    let mut run = Run::start(&d, &[&file]);
    let status = run.wait_exit();
    assert_eq!(status.code(), Some(1), "stderr:\n{}", run.stderr());
    assert!(
        run.stderr()
            .contains("no app is left running (crasher[0] errored"),
        "{}",
        run.stderr()
    );
    assert!(pids_with_home(d.home()).is_empty());
}

/// An invalid file: the error on stderr, exit 2, no daemon and no app.
#[test]
fn an_invalid_file_exits_2_and_starts_nothing() {
    let d = TestDaemon::new_stopped();
    let file = ecosystem(
        &d,
        "apps:
  - name: bad
    script: sh
    instances: many
",
    );
    let mut run = Run::start(&d, &[&file]);
    let status = run.wait_exit();
    assert_eq!(status.code(), Some(2), "stderr:\n{}", run.stderr());
    assert!(run.stderr().contains("instances"), "{}", run.stderr());
    assert!(!d.socket().exists());
    assert!(!d.home().join("state.json").exists());
    let mut run = Run::start(&d, &["missing.yaml"]);
    assert_eq!(run.wait_exit().code(), Some(2), "{}", run.stderr());
}

/// As PID 1 of a new PID namespace (`unshare --pid --fork --mount-proc`,
/// root only; skipped otherwise): the app's output is printed, an orphaned
/// grandchild is adopted by PID 1 and reaped when it exits, and SIGTERM,
/// which the kernel would ignore for a PID 1 without a handler, stops the
/// apps and the run exits 0.
#[test]
fn as_pid_1_reaps_orphans_and_handles_sigterm() {
    if !is_root() {
        eprintln!("skipped: a PID namespace needs root");
        return;
    }
    let d = TestDaemon::new_stopped();
    let file = ecosystem(
        &d,
        &format!(
            "{TALKER}  - name: forker
    script: bash
    args: [\"-c\", \"(exec -a pmd-test-orphan sleep 2 &); exec sleep 1000\"]
"
        ),
    );
    let out = d.home().join("ns-stdout.txt");
    let err = d.home().join("ns-stderr.txt");
    let spawned = {
        use std::os::unix::process::CommandExt;
        Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc"])
            .arg(&binaries().pmdaemond)
            .args(["run", &file, "--no-cgroups"])
            .env(pmdaemon_proto::HOME_ENV, d.home())
            .current_dir(d.work())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
    };
    let Ok(child) = spawned else {
        eprintln!("skipped: no unshare");
        return;
    };
    let mut run = Run {
        child: Some(child),
        out,
        err,
    };
    let unshare = run.pid();
    // The run process: unshare's child, pid 1 in its namespace.
    let init: u32 = wait_for_value("the run process in its namespace", WAIT, || {
        fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let ppid = status.lines().find_map(|l| l.strip_prefix("PPid:"))?.trim();
            let nspid = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
            (ppid == unshare.to_string() && nspid.split_whitespace().last() == Some("1"))
                .then_some(pid)
        })
    });
    run.wait_output("0|talker | to-out", false);
    // Its pid is the namespace's: the app is found by its home instead.
    d.wait_online("talker");
    assert!(!d.app_pids().is_empty());
    // The orphan (its subshell gone) is PID 1's child, then reaped: no
    // /proc entry left, not even a zombie's.
    let orphan: u32 = wait_for_value("the orphan adopted by PID 1", WAIT, || {
        fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            (cmdline.starts_with(b"pmd-test-orphan\0") && ppid_of(pid) == Some(init)).then_some(pid)
        })
    });
    wait_for("the orphan to be reaped", WAIT, || {
        !std::path::Path::new(&format!("/proc/{orphan}")).exists()
    });
    assert!(zombie_children(init).is_empty());
    let _ = kill(Pid::from_raw(init as i32), Signal::SIGTERM);
    let status = run.wait_exit();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", run.stderr());
    assert!(d.app_pids().is_empty(), "the app survived");
}

/// A persistent home: an app a plain daemon left online there but that is
/// not in the file comes back stopped (listed, with the reason), not
/// running; the file's apps run.
#[test]
fn saved_apps_not_in_the_file_come_back_stopped() {
    let mut d = TestDaemon::start();
    d.pmd_ok(&[
        "start",
        "sh",
        "--name",
        "old",
        "--",
        "-c",
        "exec sleep 1000",
    ]);
    d.wait_online("old");
    d.stop_daemon();
    let file = ecosystem(&d, TALKER);
    let mut run = Run::start(&d, &[&file]);
    // id 0 is old's.
    run.wait_output("1|talker | to-out", false);
    d.wait_online("talker");
    let old = d.describe_one("old");
    assert_eq!(old["status"], "stopped", "{old}");
    assert!(
        old["status_reason"]
            .as_str()
            .is_some_and(|r| r.contains("not in the file")),
        "{old}"
    );
    assert_eq!(
        d.app_pids().len(),
        1,
        "only talker runs: {:?}",
        d.app_pids()
    );
    assert_eq!(run.terminate().code(), Some(0), "{}", run.stderr());
}
