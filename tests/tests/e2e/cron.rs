//! `cron_restart` (PM2's scheduled restarts): a six-field schedule every
//! two seconds (`*/2 * * * * *`) so that no test waits a minute. Each test
//! has a fence: an app whose schedule must fire, so that "nothing
//! happened" to the other one is measured against something that did.

use pmdaemon_tests::*;
use serde_json::Value;

const EVERY_2S: &str = "*/2 * * * * *";

fn restarts(d: &TestDaemon, name: &str) -> u64 {
    d.describe_one(name)["restarts"].as_u64().unwrap()
}

/// Waits until `name` was restarted at least `more` times after `from`.
fn wait_restarts(d: &TestDaemon, name: &str, from: u64, more: u64) -> u64 {
    wait_for_value(&format!("{name} restarted by its schedule"), WAIT, || {
        let n = restarts(d, name);
        (n >= from + more && d.status(name).as_deref() == Some("online")).then_some(n)
    })
}

fn start_scheduled(d: &TestDaemon, name: &str) -> u32 {
    d.pmd_ok(&[
        "start",
        "sleep",
        "--name",
        name,
        "--cron-restart",
        EVERY_2S,
        "--",
        "1000",
    ]);
    d.wait_online(name)
}

/// The schedule fires: the running app gets a new pid, its restart count
/// grows and a `cron_restart` event names the schedule; a stopped app
/// with the same schedule stays stopped; describe shows the next run.
#[test]
fn a_schedule_restarts_running_apps_and_leaves_stopped_ones() {
    let d = TestDaemon::start();
    let mut events = d.events();
    let first_pid = start_scheduled(&d, "on");
    start_scheduled(&d, "off");
    d.pmd_ok(&["stop", "off"]);

    let fired = events.wait_event("cron_restart of on", |e| {
        e["name"] == "on" && kind_of(e) == "cron_restart"
    });
    assert_eq!(
        fired["detail"],
        format!("cron_restart {EVERY_2S}"),
        "{fired}"
    );
    // Two firings of the fence: the stopped app's schedule fired too.
    let n = wait_restarts(&d, "on", 0, 2);
    let on = d.describe_one("on");
    assert_ne!(pid_of(&on), Some(first_pid), "{on}");
    assert!(n >= 2);

    let off = d.describe_one("off");
    assert_eq!(off["status"], "stopped", "{off}");
    assert_eq!(off["pid"], Value::Null, "{off}");
    assert_eq!(off["next_cron_restart_at_ms"], Value::Null, "{off}");
    assert!(
        events
            .seen_of("off")
            .iter()
            .all(|e| kind_of(e) != "cron_restart"),
        "{}",
        events.seen_lines()
    );

    assert_eq!(on["cron_restart"], EVERY_2S);
    let next = on["next_cron_restart_at_ms"].as_i64().expect("a next run");
    assert!(next > on["created_at_ms"].as_i64().unwrap(), "{on}");
    let text = d.pmd_ok(&["describe", "on"]);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("cron restart"))
        .unwrap_or_else(|| panic!("no cron restart line in\n{text}"));
    assert!(line.contains(&format!("{EVERY_2S}  (next 20")), "{line}");
    let text = d.pmd_ok(&["describe", "off"]);
    assert!(text.contains("(not while stopped)"), "{text}");
}

/// A bad expression is refused before anything is sent, from the command
/// line and from an ecosystem file, naming the flag or the key.
#[test]
fn bad_expressions_are_refused_and_create_nothing() {
    let d = TestDaemon::start();
    let out = d.pmd_code(
        2,
        &[
            "start",
            "sleep",
            "--name",
            "x",
            "--cron-restart",
            "0 3 * *",
            "--",
            "100",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--cron-restart"), "{stderr}");
    assert!(stderr.contains("has 4 fields"), "{stderr}");

    let file = d.write_file(
        "eco.yaml",
        "apps:\n  - name: y\n    script: sleep\n    args: '100'\n    cron_restart: '0 25 * * *'\n",
    );
    let out = d.pmd(&["start", arg(&file)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A file's bad value fails the file with exit 1, as every other bad
    // value of a file does (the flag above is a usage error: 2).
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    assert!(
        stderr.contains("app 1 (y): `cron_restart`: \"0 25 * * *\" is not a cron expression"),
        "{stderr}"
    );
    assert!(d.list_json().is_empty(), "{:?}", d.list_json());
}

/// state.json keeps the schedule: after a daemon restart the app comes
/// back and its schedule still fires.
#[test]
fn the_schedule_survives_a_daemon_restart() {
    let mut d = TestDaemon::start();
    start_scheduled(&d, "nightly");
    d.restart_daemon();
    d.wait_online("nightly");
    let before = restarts(&d, "nightly");
    let pid = pid_of(&d.describe_one("nightly"));
    wait_restarts(&d, "nightly", before, 1);
    let after = d.describe_one("nightly");
    assert_ne!(pid_of(&after), pid, "{after}");
    assert_eq!(after["cron_restart"], EVERY_2S);
}

/// Applying a file without the key removes the schedule: that app is no
/// longer restarted while its neighbour, which keeps its schedule, is.
#[test]
fn apply_without_cron_restart_stops_the_restarts() {
    let d = TestDaemon::start();
    let both = format!(
        "apps:\n  - name: kept\n    script: sleep\n    args: '1000'\n    cron_restart: '{EVERY_2S}'\n  \
         - name: dropped\n    script: sleep\n    args: '1000'\n    cron: '{EVERY_2S}'\n"
    );
    let file = d.write_file("eco.yaml", &both);
    d.pmd_ok(&["start", arg(&file)]);
    wait_restarts(&d, "dropped", 0, 1);
    d.write_file(
        "eco.yaml",
        &format!(
            "apps:\n  - name: kept\n    script: sleep\n    args: '1000'\n    cron_restart: '{EVERY_2S}'\n  \
             - name: dropped\n    script: sleep\n    args: '1000'\n"
        ),
    );
    let out = d.pmd_ok(&["start", arg(&file)]);
    assert!(out.contains("dropped"), "{out}");
    d.wait_online("dropped");
    let dropped = d.describe_one("dropped");
    assert_eq!(dropped["cron_restart"], Value::Null, "{dropped}");
    let (pid, count) = (pid_of(&dropped), restarts(&d, "dropped"));
    // The fence: two more firings of the schedule that stayed.
    let kept = restarts(&d, "kept");
    wait_restarts(&d, "kept", kept, 2);
    let dropped = d.describe_one("dropped");
    assert_eq!(pid_of(&dropped), pid, "{dropped}");
    assert_eq!(restarts(&d, "dropped"), count, "{dropped}");
}

/// A balanced app's schedule restarts its instances one at a time: the
/// second leaves the pool only once the first is back in it, so the
/// public port always has a ready instance.
#[test]
fn a_balanced_app_is_restarted_one_instance_at_a_time() {
    let d = TestDaemon::start();
    let public = loop {
        let base = free_ports(1);
        // Outside the private ports' default range.
        if !(20000..30000).contains(&base) {
            break base;
        }
    };
    let server = d.write_http_server("server.py");
    let mut events = d.events();
    d.pmd_ok(&[
        "start",
        arg(&server),
        "--name",
        "web",
        "-i",
        "2",
        "--port",
        &public.to_string(),
        "--balance",
        "--cron-restart",
        EVERY_2S,
    ]);
    d.wait_instances_online("web", 2);
    let web = |e: &Value, kind: &str| e["name"] == "web" && kind_of(e) == kind;
    events.wait_event("a cron_restart of web", |e| web(e, "cron_restart"));
    let first_left = events.wait_event("an instance of web leaves its pool", |e| {
        web(e, "pool_left")
    });
    let first = first_left["id"].clone();
    let back = events.wait_event("it is back in the pool", |e| {
        web(e, "pool_joined") && e["id"] == first
    });
    let second_left = events.wait_event("the other one leaves its pool", |e| {
        web(e, "pool_left") && e["id"] != first
    });
    assert!(
        second_left["seq"].as_u64() > back["seq"].as_u64(),
        "{}",
        events.seen_lines()
    );
}
