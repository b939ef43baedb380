//! Monitoring (issue #4): CPU (percent of one core) and memory (RSS) of
//! each instance's process tree in `list`, `--max-memory` restarts, and
//! `pmd monit`'s one-shot snapshot when stdout is not a terminal. The
//! daemons here sample every 200 ms ([`FAST_MONITOR`]).
//!
//! CPU figures are lenient (busy > 30 %, idle < 5 %) and awaited rather
//! than read once: the machine may have 2 cores shared with parallel tests.

use pmdaemon_tests::*;
use serde_json::Value;

use crate::{IDLE, lines_of, said};

/// Appends its pid to `starts`; on its first run only (no `allocated`
/// file yet) it fills 200 MiB; then it sleeps.
const HOG: &str = r#"
import os, time
with open("starts", "a") as f:
    f.write("{}\n".format(os.getpid()))
if not os.path.exists("allocated"):
    open("allocated", "w").close()
    hog = b"x" * (200 << 20)
time.sleep(100000)
"#;

/// A shell loop that burns one core.
const BUSY: &str = "while :; do :; done";

/// The `cpu_percent` of a list entry, `None` while null.
fn cpu(app: &Value) -> Option<f64> {
    app["cpu_percent"].as_f64()
}

/// The `memory_bytes` of a list entry, `None` while null.
fn memory(app: &Value) -> Option<u64> {
    app["memory_bytes"].as_u64()
}

/// Waits until the list entry of `name` satisfies `cond`; returns it.
fn wait_sample(d: &TestDaemon, name: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    wait_for_value(&format!("{name}: {what}"), WAIT, || {
        d.app(name).filter(|a| cond(a))
    })
}

/// A busy-looping app shows well above 30 % CPU, a sleeping one below 5 %
/// (a number, not null, once sampled); both have a memory figure, and the
/// `list` table has CPU and MEM columns.
#[test]
fn cpu_percent_tells_a_busy_app_from_an_idle_one() {
    let d = TestDaemon::start_with_args(FAST_MONITOR);
    let busy = d.write_script("busy.sh", BUSY);
    d.write_executable("idle.sh", IDLE);
    d.pmd_ok(&["start", arg(&busy), "--name", "busy"]);
    d.pmd_ok(&["start", "./idle.sh", "--name", "idle"]);

    let app = wait_sample(&d, "busy", "CPU above 30 %", |a| {
        cpu(a).is_some_and(|c| c > 30.0)
    });
    assert!(memory(&app).is_some_and(|m| m > 0), "{app:#}");
    // Measured; stop burning the core the rest of the suite shares.
    d.pmd_ok(&["delete", "busy"]);
    let app = wait_sample(&d, "idle", "CPU sampled and below 5 %", |a| {
        cpu(a).is_some_and(|c| c < 5.0)
    });
    assert!(memory(&app).is_some_and(|m| m > 0), "{app:#}");

    let table = d.pmd_ok(&["list"]);
    let header = table.lines().next().unwrap_or("");
    assert!(
        header.split_whitespace().any(|c| c == "CPU")
            && header.split_whitespace().any(|c| c == "MEM"),
        "no CPU and MEM columns:\n{table}"
    );
    let row = table
        .lines()
        .find(|l| l.split_whitespace().any(|c| c == "idle"))
        .unwrap_or_else(|| panic!("no row for idle:\n{table}"));
    assert!(row.contains('%'), "no CPU figure in the row: {row}");
}

/// The figures cover the instance's whole process tree: a shell app whose
/// children hold 120 MB and burn a core shows that memory and that CPU,
/// although the shell itself does neither.
#[test]
fn the_whole_process_tree_is_measured() {
    let d = TestDaemon::start_with_args(FAST_MONITOR);
    let script = d.write_script(
        "tree.sh",
        &format!(
            "{python} -c 'import time; b = b\"x\" * (120 << 20); time.sleep(100000)' &\n\
             ( {BUSY} ) &\n\
             wait",
            python = python3().display()
        ),
    );
    d.pmd_ok(&["start", arg(&script), "--name", "tree"]);
    wait_sample(&d, "tree", "memory above 100 MiB and CPU above 30 %", |a| {
        memory(a).is_some_and(|m| m > 100 << 20) && cpu(a).is_some_and(|c| c > 30.0)
    });
}

/// An instance whose memory passes `--max-memory` is replaced, and the
/// events give the reason ("memory X exceeded max_memory_restart 50.0
/// MiB"). The app allocates 200 MB on its first run only, so the
/// replacement stays online: one restart, two starts.
#[test]
fn an_app_past_max_memory_is_restarted_with_the_reason() {
    let d = TestDaemon::start_with_args(FAST_MONITOR);
    let mut events = d.events();
    let app = d.write_executable("hog.py", &format!("#!{}\n{HOG}", python3().display()));
    d.pmd_ok(&["start", arg(&app), "--name", "hog", "--max-memory", "50M"]);
    let restarting = events.wait_event("hog restarting for its memory", |e| {
        e["name"] == "hog" && kind_of(e) == "restarting"
    });
    let reason = restarting["detail"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("memory ") && reason.contains("exceeded max_memory_restart"),
        "restart reason: {restarting}\nevents:\n{}",
        events.seen_lines()
    );
    assert!(reason.contains("50"), "the limit is not given: {reason}");

    // The replacement records its pid once it runs.
    let starts = wait_for_value("the replacement running", WAIT, || {
        let starts = lines_of(&d.work().join("starts"));
        (starts.len() >= 2).then_some(starts)
    });
    assert_eq!(starts.len(), 2, "{starts:?}");
    let app = wait_sample(&d, "hog", "the replacement online", |a| {
        a["status"] == "online"
    });
    assert_eq!(app["restarts"], 1, "{app:#}");
    assert_eq!(pid_of(&app).map(|p| p.to_string()), Some(starts[1].clone()));
    let described = d.describe_one("hog");
    assert_eq!(described["max_memory_bytes"], 50 << 20, "{described:#}");
}

/// `pmd monit` with stdout not a terminal prints one snapshot table with
/// every app and its CPU and memory columns, and exits 0.
#[test]
fn monit_without_a_terminal_prints_one_snapshot() {
    let d = TestDaemon::start_with_args(FAST_MONITOR);
    d.write_executable("idle.sh", IDLE);
    d.pmd_ok(&["start", "./idle.sh", "--name", "alpha"]);
    d.pmd_ok(&["start", "./idle.sh", "--name", "beta"]);
    d.wait_online("alpha");
    d.wait_online("beta");
    let out = d.pmd_code(0, &["monit"]);
    let text = said(&out);
    for word in ["alpha", "beta", "CPU", "MEM"] {
        assert!(
            text.contains(word),
            "{word} missing from the snapshot:\n{text}"
        );
    }
    assert!(
        !text.contains('\x1b'),
        "terminal escapes on a non-terminal:\n{text:?}"
    );
}
