//! `pmd events -o json` (issue #4): one JSON object per line, as state
//! changes happen, read here from a background `pmd events` with piped
//! stdout ([`TestDaemon::events`]).

use pmdaemon_tests::*;
use serde_json::Value;

/// The keys every event line has (null when not applicable).
const KEYS: [&str; 12] = [
    "seq",
    "at_ms",
    "id",
    "name",
    "kind",
    "state",
    "pid",
    "exit_code",
    "signal",
    "port",
    "health",
    "detail",
];

/// The kinds of `events`, in order.
fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(kind_of).collect()
}

/// A crash and its restart appear in order: `started` (with the pid),
/// `online`, `exited` (exit code 3, no signal), `restarting` (saying why),
/// `started` (the new pid, the one `list` shows), `online`; every line has
/// every key, `seq` increases and `at_ms` never goes back.
#[test]
fn events_show_a_crash_and_the_restart_in_order() {
    let d = TestDaemon::start();
    let mut events = d.events();
    // The first run's own sleep keeps it up long enough to be `online`
    // before it crashes.
    let script = d.write_script(
        "once.sh",
        "if [ ! -e crashed ]; then touch crashed; sleep 0.3; exit 3; fi\nexec sleep 100000",
    );
    d.pmd_ok(&["start", arg(&script), "--name", "once"]);
    let online_again = |e: &Value| e["name"] == "once" && kind_of(e) == "online";
    events.wait_event("once online", online_again);
    events.wait_event("once online again after its crash", online_again);

    let once = events.seen_of("once");
    assert_eq!(
        kinds(&once),
        [
            "started",
            "online",
            "exited",
            "restarting",
            "started",
            "online"
        ],
        "events of once:\n{}",
        events.seen_lines()
    );
    for event in &once {
        let keys: Vec<&str> = event
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        for key in KEYS {
            assert!(keys.contains(&key), "{key} missing: {event}");
        }
        assert_eq!(event["id"], once[0]["id"], "{event}");
    }
    for pair in once.windows(2) {
        assert!(
            pair[0]["seq"].as_u64() < pair[1]["seq"].as_u64(),
            "{pair:?}"
        );
        assert!(
            pair[0]["at_ms"].as_i64() <= pair[1]["at_ms"].as_i64(),
            "{pair:?}"
        );
    }
    let (first, exited, restarting, second) = (&once[0], &once[2], &once[3], &once[4]);
    assert!(pid_of(first).is_some(), "{first}");
    assert_eq!(exited["exit_code"], 3, "{exited}");
    assert!(exited["signal"].is_null(), "{exited}");
    assert!(
        restarting["detail"]
            .as_str()
            .is_some_and(|why| why.contains('3')),
        "the restart does not say why: {restarting}"
    );
    let new_pid = pid_of(second).expect("pid of the second start");
    assert_ne!(pid_of(first), Some(new_pid));
    assert_eq!(d.wait_online("once"), new_pid);
}

/// Deleting a running app is announced as `stopped` (state `stopped`, no
/// pid) and then `deleted`, which no longer claims a process: no pid, and
/// a state other than starting or online.
#[test]
fn deleting_a_running_app_is_announced_with_the_state_after_it() {
    let d = TestDaemon::start();
    let mut events = d.events();
    d.pmd_ok(&["start", "sleep", "--name", "brief", "--", "100000"]);
    let pid = d.wait_online("brief");
    d.pmd_ok(&["delete", "brief"]);
    let deleted = events.wait_event("brief deleted", |e| {
        e["name"] == "brief" && kind_of(e) == "deleted"
    });
    let brief = events.seen_of("brief");
    let stopped = brief
        .iter()
        .find(|e| kind_of(e) == "stopped")
        .unwrap_or_else(|| panic!("no stopped event:\n{}", events.seen_lines()));
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert!(stopped["pid"].is_null(), "{stopped}");
    assert!(!pid_alive(pid), "pid {pid} survived its delete");
    assert!(
        deleted["pid"].is_null() && deleted["state"] != "online" && deleted["state"] != "starting",
        "the deleted event still describes the process it stopped: {deleted}\nevents:\n{}",
        events.seen_lines()
    );
}

/// `pmd kill` stops every app before the event stream ends: a follower sees
/// the apps stop.
#[test]
fn the_event_stream_sees_the_apps_stop_at_shutdown() {
    let mut d = TestDaemon::start();
    d.pmd_ok(&["start", "sleep", "--name", "last", "--", "100000"]);
    d.wait_online("last");
    let mut events = d.events();
    d.pmd_ok(&["kill"]);
    events.wait_event("the app stopping at shutdown", |e| {
        e["name"] == "last" && kind_of(e) == "stopped"
    });
    d.wait_daemon_exit();
}
