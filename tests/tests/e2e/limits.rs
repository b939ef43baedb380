//! Resource limits (issue 8): the daemon's own open-file limit and the one
//! its apps get.

use std::fs;

use pmdaemon_tests::*;

/// A process's (soft, hard) open-file limits, as `/proc/PID/limits`
/// shows them.
fn nofile_limits(pid: u32) -> (String, String) {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open-file limit in {limits}"));
    let mut fields = line["Max open files".len()..].split_whitespace();
    (
        fields.next().unwrap().to_owned(),
        fields.next().unwrap().to_owned(),
    )
}

/// The daemon raises its soft open-file limit to the hard one (so that a
/// few hundred apps do not exhaust the 1024 most shells give), and its
/// apps get back the limit the daemon was started with. Issue 8, case 11.
#[test]
fn the_daemon_raises_its_open_file_limit_and_apps_keep_theirs() {
    let mut d = TestDaemon::new_stopped();
    d.set_daemon_nofile_soft(256);
    d.spawn_daemon();
    let (soft, hard) = nofile_limits(d.daemon_pid());
    assert_eq!(soft, hard, "the daemon's own soft limit was not raised");
    assert_ne!(soft, "256");
    d.pmd_ok(&["start", "sleep", "--name", "limited", "--", "3607"]);
    let app = d.wait_online("limited");
    assert_eq!(nofile_limits(app), ("256".to_owned(), hard));
}

/// `pmdaemond.log` is rotated like an app's log: a crash loop that writes
/// a few lines per restart keeps it within `--log-max-size`, in at most
/// `--log-max-files` rotated copies. Issue 8, case 8.
#[test]
fn the_daemon_log_is_rotated() {
    let mut d = TestDaemon::new_stopped();
    d.set_daemon_env("PMDAEMON_LOG", "info");
    // Every line written, as without coalescing: what is bounded here is
    // the rotation (coalescing has its own test below).
    d.set_daemon_args(&[
        "--log-max-size",
        "1K",
        "--log-max-files",
        "2",
        "--log-repeat-window",
        "0",
    ]);
    d.spawn_daemon();
    let script = d.write_script("crash.sh", "exit 1");
    d.pmd_ok(&[
        "start",
        arg(&script),
        "--name",
        "loop",
        "--min-uptime",
        "0",
        "--start-limit-burst",
        "40",
    ]);
    d.wait_status("loop", "errored");
    let log = d.home().join("pmdaemond.log");
    let rotated = |n: u32| d.home().join(format!("pmdaemond.log.{n}"));
    for path in [log.clone(), rotated(1), rotated(2)] {
        let len = fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len();
        assert!(len <= 1024, "{} holds {len} bytes", path.display());
    }
    assert!(!rotated(3).exists(), "more copies than --log-max-files");
}

/// A crash loop's repeated lines are coalesced in `pmdaemond.log`: 100+
/// restarts leave a handful of lines, and the summary lines count the
/// rest (issue 8: "repeated identical warnings are coalesced").
#[test]
fn a_crash_loop_leaves_a_few_lines_that_count_the_rest() {
    let mut d = TestDaemon::new_stopped();
    d.set_daemon_env("PMDAEMON_LOG", "info");
    // A window far longer than the test: the summaries come at shutdown.
    d.set_daemon_args(&["--log-repeat-window", "1h"]);
    d.spawn_daemon();
    let script = d.write_script("crash.sh", "exit 1");
    d.pmd_ok(&[
        "start",
        arg(&script),
        "--name",
        "loop",
        "--min-uptime",
        "0",
        "--start-limit-burst",
        "0",
    ]);
    wait_for("100 restarts of loop", WAIT, || {
        d.app("loop")
            .and_then(|app| app["restarts"].as_u64())
            .is_some_and(|n| n >= 100)
    });
    d.pmd_ok(&["stop", "loop"]);
    let spawned_runs = d.app("loop").unwrap()["restarts"].as_u64().unwrap() + 1;
    d.stop_daemon();
    let log = d.daemon_log();
    let spawned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("spawned app=loop"))
        .collect();
    assert!(
        spawned.len() < 10,
        "{} lines for {spawned_runs} spawns:\n{log}",
        spawned.len()
    );
    // Written lines plus the counts of the summaries: every spawn.
    let counted: u64 = spawned
        .iter()
        .map(|l| match l.split_once("message repeated ") {
            Some((_, rest)) => rest.split(' ').next().unwrap().parse::<u64>().unwrap(),
            None => 1,
        })
        .sum();
    assert_eq!(counted, spawned_runs, "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("message repeated ") && l.contains("exited app=loop")),
        "{log}"
    );
}

/// When descriptors run out all the same, the refusal says so and names
/// the limit and what raises it, instead of a bare "Too many open files"
/// (issue 8, case 11). The daemon runs with both limits at 48, so it
/// cannot raise its own; each app costs it a few descriptors.
#[test]
fn running_out_of_descriptors_names_the_limit() {
    let mut d = TestDaemon::new_stopped();
    d.set_daemon_nofile_limit(48);
    d.spawn_daemon();
    let refusal = (0..48)
        .find_map(|n| {
            let name = format!("fd{n}");
            let out = d.pmd(&["start", "sleep", "--name", &name, "--", "3609"]);
            (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
        })
        .expect("48 apps fit in 48 descriptors");
    assert!(
        refusal.contains("out of file descriptors") && refusal.contains("48 open files"),
        "{refusal}"
    );
}
