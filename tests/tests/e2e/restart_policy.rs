//! What happens when an app exits on its own: restarts, backoff, the
//! `errored` end of a crash loop, and the autorestart modes.

use pmdaemon_tests::*;

use crate::{gaps_ms, lines_of, timestamps_ns};

/// A script that appends its start time (ns) to `starts` and exits with
/// `code`.
fn crasher(d: &TestDaemon, file: &str, code: i32) -> String {
    let path = d.write_script(file, &format!("date +%s%N >> starts\nexit {code}"));
    arg(&path).to_owned()
}

/// An app that always crashes is restarted `max_restarts` times, first
/// immediately and then with a doubling backoff (100, 200, 400, 800 ms), and
/// ends `errored` with restarts == max_restarts, where it stays.
#[test]
fn a_crash_loop_backs_off_and_ends_errored() {
    let d = TestDaemon::start();
    let script = crasher(&d, "crash.sh", 1);
    d.pmd_ok(&["start", &script, "--name", "crashy", "--max-restarts", "5"]);
    let app = d.wait_status("crashy", "errored");
    assert_eq!(app["restarts"], 5, "{app}");
    assert!(app["pid"].is_null(), "{app}");
    assert_eq!(app["exit_code"], 1, "{app}");

    let starts = timestamps_ns(&d.work().join("starts"));
    assert_eq!(
        starts.len(),
        6,
        "1 start + 5 restarts expected, got {starts:?}"
    );
    let gaps = gaps_ms(&starts);
    // Gap k (1-based) contains the backoff before restart k: 0, then
    // 100 ms doubling. A little slack for the clock of `date`.
    for (k, gap) in gaps.iter().enumerate().skip(1) {
        let backoff = 100.0 * f64::from(1u32 << (k - 1));
        assert!(
            *gap >= backoff * 0.9,
            "restart {} came {gap:.0} ms after the previous start, before its {backoff} ms backoff; gaps: {gaps:?}",
            k + 1
        );
    }
    assert!(
        gaps[2] < gaps[3] && gaps[3] < gaps[4] && gaps[1] < gaps[4],
        "delays do not grow: {gaps:?}"
    );

    // Nothing may happen any more. The fence is a timer of the daemon's
    // own: an app started now that fails once and is restarted after a
    // fixed 2 s delay, longer than the 1.6 s backoff a sixth restart of
    // crashy would have waited after crashy's last exit, which came before.
    // Once the pacer runs again, that restart would have been due.
    let pacer = d.write_script(
        "pacer.sh",
        "date +%s%N >> pacer-starts\n[ $(wc -l < pacer-starts) -ge 2 ] && exec sleep 100000\nexit 1",
    );
    d.pmd_ok(&[
        "start",
        arg(&pacer),
        "--name",
        "pacer",
        "--restart-delay",
        "2s",
        "--min-uptime",
        "0",
    ]);
    wait_for("the pacer's second run", WAIT, || {
        lines_of(&d.work().join("pacer-starts")).len() >= 2
    });
    assert_eq!(
        timestamps_ns(&d.work().join("starts")).len(),
        6,
        "an errored app was restarted"
    );
    let app = d.app("crashy").unwrap();
    assert_eq!(app["status"], "errored", "{app}");
    assert_eq!(app["restarts"], 5, "{app}");
    let zombies = zombie_children(d.daemon_pid());
    assert!(zombies.is_empty(), "the daemon left zombies: {zombies:?}");
}

/// A run longer than `min_uptime` is stable: the unstable counter resets, so
/// an app that crashes only after a while is restarted indefinitely, without
/// backoff and without ever being errored.
#[test]
fn stable_runs_reset_the_crash_counters() {
    let d = TestDaemon::start();
    // Each run's own sleep makes it longer than `--min-uptime 200ms`.
    let script = d.write_script("slowcrash.sh", "date +%s%N >> starts\nsleep 0.4\nexit 1");
    d.pmd_ok(&[
        "start",
        arg(&script),
        "--name",
        "slowcrash",
        "--min-uptime",
        "200ms",
        "--max-restarts",
        "1",
    ]);
    wait_for("five runs", WAIT, || {
        lines_of(&d.work().join("starts")).len() >= 5
    });
    let app = d.app("slowcrash").unwrap();
    assert_ne!(app["status"], "errored", "{app}");
    assert!(app["restarts"].as_u64().unwrap() >= 4, "{app}");
    assert_eq!(app["unstable_restarts"], 0, "{app}");
    let gaps = gaps_ms(&timestamps_ns(&d.work().join("starts")));
    // 400 ms of run time and no backoff; a backoff of 100 ms doubling would
    // have pushed the 4th gap beyond 1.2 s.
    assert!(
        gaps.iter().all(|&g| g < 1200.0),
        "stable restarts were delayed: {gaps:?}"
    );
    d.pmd_ok(&["stop", "slowcrash"]);
}

/// After a few quick crashes, a run that stays up past `min_uptime` clears
/// the unstable count while it runs: `list` does not go on showing a crash
/// loop that is over.
#[test]
fn a_run_that_stays_up_clears_the_unstable_count() {
    let d = TestDaemon::start();
    let script = d.write_script(
        "settles.sh",
        "echo x >> runs\n[ $(wc -l < runs) -ge 3 ] || exit 1\nexec sleep 100000",
    );
    d.pmd_ok(&[
        "start",
        arg(&script),
        "--name",
        "settles",
        "--min-uptime",
        "300ms",
    ]);
    let app = wait_for_value("the third run to stay up and be stable", WAIT, || {
        let app = d.app("settles")?;
        (app["restarts"] == 2 && app["unstable_restarts"] == 0 && app["status"] == "online")
            .then_some(app)
    });
    assert!(pid_of(&app).is_some_and(pid_alive), "{app}");
}

/// `--restart-delay` is waited before every restart (with `--min-uptime 0`
/// there is no backoff), during which the app is `waiting-restart`.
#[test]
fn restart_delay_is_waited_before_each_restart() {
    let d = TestDaemon::start();
    let script = crasher(&d, "delayed.sh", 1);
    d.pmd_ok(&[
        "start",
        &script,
        "--name",
        "delayed",
        "--restart-delay",
        "700ms",
        "--min-uptime",
        "0",
    ]);
    d.wait_status("delayed", "waiting-restart");
    wait_for("three runs", WAIT, || {
        lines_of(&d.work().join("starts")).len() >= 3
    });
    d.pmd_ok(&["stop", "delayed"]);
    let gaps = gaps_ms(&timestamps_ns(&d.work().join("starts")));
    assert!(
        gaps.iter().all(|&g| g >= 630.0),
        "restarted before the 700 ms delay: {gaps:?}"
    );
    assert_eq!(d.app("delayed").unwrap()["status"], "stopped");
}

/// With `--no-autorestart` an app that exits stays down with its exit code
/// kept and no restarts: `stopped` after a clean exit, `errored` after a
/// failed one (like systemd's `failed`; PM2 would show `stopped`).
#[test]
fn no_autorestart_leaves_an_exited_app_down() {
    let d = TestDaemon::start();
    let clean = crasher(&d, "clean.sh", 0);
    let failed = d.write_script("failed.sh", "date +%s%N >> failed-starts\nexit 3");
    d.pmd_ok(&["start", &clean, "--name", "clean", "--no-autorestart"]);
    d.pmd_ok(&[
        "start",
        arg(&failed),
        "--name",
        "failed",
        "--no-autorestart",
    ]);
    let app = d.wait_status("clean", "stopped");
    assert_eq!(app["exit_code"], 0, "{app}");
    assert_eq!(app["restarts"], 0, "{app}");
    assert!(app["pid"].is_null(), "{app}");
    let app = d.wait_status("failed", "errored");
    assert_eq!(app["exit_code"], 3, "{app}");
    assert_eq!(app["restarts"], 0, "{app}");
    assert!(app["pid"].is_null(), "{app}");
    assert_eq!(lines_of(&d.work().join("starts")).len(), 1);
    assert_eq!(lines_of(&d.work().join("failed-starts")).len(), 1);
}

/// `--autorestart on-failure` restarts after a non-zero exit but not after
/// a clean one.
#[test]
fn on_failure_restarts_only_failed_runs() {
    let d = TestDaemon::start();
    // Fails on its first run, succeeds on the second.
    let script = d.write_script(
        "flaky.sh",
        "date +%s%N >> starts\nif [ -e ran-once ]; then exit 0; fi\ntouch ran-once\nexit 1",
    );
    d.pmd_ok(&[
        "start",
        arg(&script),
        "--name",
        "flaky",
        "--autorestart",
        "on-failure",
    ]);
    wait_for("the second run", WAIT, || {
        lines_of(&d.work().join("starts")).len() >= 2
    });
    let app = d.wait_status("flaky", "stopped");
    assert_eq!(app["exit_code"], 0, "{app}");
    assert_eq!(app["restarts"], 1, "{app}");
    assert_eq!(lines_of(&d.work().join("starts")).len(), 2);
}

/// An errored app can be brought back by hand with `pmd restart`.
#[test]
fn an_errored_app_can_be_restarted_by_hand() {
    let d = TestDaemon::start();
    let script = crasher(&d, "broken.sh", 1);
    d.pmd_ok(&["start", &script, "--name", "broken", "--max-restarts", "1"]);
    d.wait_status("broken", "errored");
    let runs = lines_of(&d.work().join("starts")).len();
    assert_eq!(runs, 2, "1 start + 1 restart expected");
    d.pmd_ok(&["restart", "broken"]);
    wait_for("the app to run again", WAIT, || {
        lines_of(&d.work().join("starts")).len() > runs
    });
    d.wait_status("broken", "errored");
}

/// No setting allows a restart storm (issue 8, case 9): with
/// `--min-uptime 0` every run counts as stable, so the unstable-run count
/// never grows, but the start-rate limit still ends the loop in `errored`
/// after `--start-limit-burst` restarts within the interval, saying so.
/// A start by hand gives it a fresh budget.
#[test]
fn the_start_rate_limit_ends_a_storm_whatever_min_uptime_says() {
    let d = TestDaemon::start();
    let script = crasher(&d, "storm.sh", 1);
    d.pmd_ok(&[
        "start",
        &script,
        "--name",
        "storm",
        "--min-uptime",
        "0",
        "--start-limit-burst",
        "5",
        "--start-limit-interval",
        "1m",
    ]);
    let app = d.wait_status("storm", "errored");
    assert_eq!(app["restarts"], 5, "{app}");
    let reason = app["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("restarted 5 times within 1m") && reason.contains("start_limit_burst"),
        "{app}"
    );
    assert_eq!(timestamps_ns(&d.work().join("starts")).len(), 6);

    // The restart by hand starts a run without counting as a restart; the
    // fresh budget allows 5 more.
    d.pmd_ok(&["restart", "storm"]);
    let app = d.wait_status("storm", "errored");
    assert_eq!(
        app["restarts"], 10,
        "a fresh budget of 5 after the restart: {app}"
    );
}

/// The default start-rate limit also ends such a storm: an app that dies at
/// once with `--min-uptime 0` and nothing else set is errored after
/// [`pmdaemon_proto::DEFAULT_START_LIMIT_BURST`] restarts, not restarted
/// hundreds of times a second for ever.
#[test]
fn by_default_a_storm_ends_errored() {
    let d = TestDaemon::start();
    let script = crasher(&d, "storm.sh", 1);
    d.pmd_ok(&["start", &script, "--name", "storm", "--min-uptime", "0"]);
    let app = d.wait_status("storm", "errored");
    assert_eq!(
        app["restarts"],
        pmdaemon_proto::DEFAULT_START_LIMIT_BURST,
        "{app}"
    );
}
