//! Rolling `pmd reload` and restarts on file changes (issue #3).

use std::collections::BTreeSet;
use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use pmdaemon_tests::*;

use crate::said;

/// Waits until app `name` is online with a pid other than `old`, and
/// returns its list entry.
fn wait_replaced(d: &TestDaemon, name: &str, old: u32) -> serde_json::Value {
    wait_for_value(
        &format!("{name} online with a pid other than {old}"),
        WAIT,
        || {
            d.app(name)
                .filter(|a| a["status"] == "online" && pid_of(a).is_some_and(|p| p != old))
        },
    )
}

/// A daemon whose log records each watch restart with the changed files
/// (`info`, whatever `PMDAEMON_LOG` the suite runs with), for
/// [`watch_restarts`].
fn start_logging_watch_restarts() -> TestDaemon {
    let mut d = TestDaemon::new_stopped();
    d.set_daemon_env("PMDAEMON_LOG", "info");
    // Each restart's line counts here, the same one twice included.
    d.set_daemon_args(&["--log-repeat-window", "0"]);
    d.spawn_daemon();
    d
}

/// The file names behind each watch restart of `app` so far, in order, from
/// the daemon's log (`files changed; restarting app=NAME changed=[PATHS]`).
/// A file that must not restart the app shows up here even when it came in
/// the same debounced burst as one that must, where the restart count alone
/// would not tell.
fn watch_restarts(d: &TestDaemon, app: &str) -> Vec<Vec<String>> {
    let log = d.daemon_log();
    let app_field = format!("app={app} ");
    log.lines()
        .filter(|l| l.contains("files changed; restarting") && l.contains(&app_field))
        .map(|line| {
            let list = line
                .split_once("changed=[")
                .and_then(|(_, rest)| rest.rsplit_once(']'))
                .map(|(list, _)| list)
                .unwrap_or_else(|| panic!("no changed=[...] in the log line {line:?}"));
            list.split(", ")
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let path = std::path::Path::new(p.trim_matches('"'));
                    path.file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_else(|| p.to_owned())
                })
                .collect()
        })
        .collect()
}

/// Waits until `name` was restarted for a file change (online with a pid
/// other than `old`) and that restart is over (its pid recorded), so that
/// the next change is not folded into it; returns its list entry.
fn wait_watch_restart(d: &TestDaemon, name: &str, old: u32) -> serde_json::Value {
    let app = wait_replaced(d, name, old);
    d.wait_pid_recorded(pid_of(&app).unwrap());
    app
}

/// `pmd reload` of three HTTP instances on a port range replaces every
/// instance (new pids, each answering on its own port) while at least two
/// of the three answer at every moment: a poller GETs every port in a loop
/// for the whole reload.
///
/// The poller asks the ports from the highest instance down while the
/// daemon replaces instances from the lowest up, so one round cannot see
/// two different instances down one after the other; a round with fewer
/// than two answers means two were down at the same time.
#[test]
fn reload_keeps_all_but_one_instance_answering() {
    let d = TestDaemon::start();
    let base = free_ports(3);
    let server = d.write_http_server("server.py");
    d.pmd_ok(&[
        "start",
        arg(&server),
        "--name",
        "rolling",
        "-i",
        "3",
        "--port",
        &format!("{base}-{}", base + 2),
    ]);
    let old_pids = pids_of(&d.wait_instances_online("rolling", 3));
    for (index, pid) in old_pids.iter().enumerate() {
        assert_eq!(wait_http(base + index as u16).pid, *pid);
    }

    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut rounds = Vec::new();
            while !done.load(Ordering::SeqCst) {
                let round: Vec<Option<HttpReply>> =
                    (0..3).rev().map(|i| http_get(base + i)).collect();
                rounds.push(round);
            }
            rounds
        })
    };
    let out = d.pmd(&["reload", "rolling"]);
    done.store(true, Ordering::SeqCst);
    let rounds = poller.join().expect("the poller panicked");
    assert!(out.status.success(), "{}", describe_output(&out));

    assert!(!rounds.is_empty());
    for (n, round) in rounds.iter().enumerate() {
        let answered = round.iter().flatten().count();
        assert!(
            answered >= 2,
            "poll round {n} of {}: only {answered} of 3 instances answered: {round:?}",
            rounds.len()
        );
    }
    let after = d.wait_instances_online("rolling", 3);
    let new_pids = pids_of(&after);
    for (index, (old, new)) in old_pids.iter().zip(&new_pids).enumerate() {
        assert_ne!(old, new, "instance {index} was not replaced");
        assert!(!pid_alive(*old), "old instance {index} ({old}) survived");
        let reply = wait_http(base + index as u16);
        assert_eq!((reply.instance, reply.pid), (index.to_string(), *new));
    }
    let seen: BTreeSet<u32> = rounds.iter().flatten().flatten().map(|r| r.pid).collect();
    assert!(
        new_pids.iter().any(|p| seen.contains(p)),
        "the poller never saw a new instance: `pmd reload` returned before replacing any"
    );
}

/// With a single instance, `pmd reload` is a restart: a new pid, online.
#[test]
fn reload_of_one_instance_restarts_it() {
    let d = TestDaemon::start();
    d.pmd_ok(&[
        "start",
        "sleep",
        "--name",
        "single",
        "--min-uptime",
        "200ms",
        "--",
        "100000",
    ]);
    let old = d.wait_online("single");
    d.pmd_ok(&["reload", "single"]);
    let app = wait_replaced(&d, "single", old);
    assert!(!pid_alive(old), "the old process survived");
    assert_eq!(d.list_json().len(), 1, "{app}");
}

/// A reload starts instances that are down first: replacing a serving one
/// while another is down would leave only N-2 serving.
#[test]
fn reload_brings_down_instances_back_first() {
    let d = TestDaemon::start();
    d.pmd_ok(&[
        "start",
        "sleep",
        "--name",
        "trio",
        "-i",
        "3",
        "--min-uptime",
        "100ms",
        "--",
        "100000",
    ]);
    let trio = d.wait_instances_online("trio", 3);
    let down = trio[1]["id"].as_u64().unwrap();
    d.pmd_ok(&["stop", &down.to_string()]);
    let mut events = d.events();
    d.pmd_ok(&["reload", "trio"]);
    let first = events.wait_event("the first start of the reload", |e| {
        e["name"] == "trio" && kind_of(e) == "started"
    });
    assert_eq!(first["id"].as_u64(), Some(down), "{}", events.seen_lines());
    d.wait_instances_online("trio", 3);
}

/// `--watch` restarts the app when a file below its cwd changes (new pid,
/// restarts + 1), but not for a file matching `--ignore-watch` nor for the
/// built-in ignores (node_modules, *.log); new files count too.
#[test]
fn watch_restarts_on_a_change_but_not_on_ignored_files() {
    let d = start_logging_watch_restarts();
    let src = d.work().join("src");
    d.write_file("src/app.conf", "v1\n");
    d.write_file("src/node_modules/dep.js", "// v1\n");
    d.pmd_ok(&[
        "start",
        "sleep",
        "--name",
        "watched",
        "--cwd",
        arg(&src),
        "--watch",
        "--ignore-watch",
        "*.tmp",
        "--watch-delay",
        "200ms",
        "--",
        "100000",
    ]);
    let first = d.wait_online("watched");
    assert_eq!(d.app("watched").unwrap()["restarts"], 0);

    // A change first, which also proves the watch is in place.
    fs::write(src.join("app.conf"), "v2\n").unwrap();
    let second = wait_watch_restart(&d, "watched", first);
    assert_eq!(second["restarts"], 1, "{second}");
    let second = pid_of(&second).unwrap();

    fs::write(src.join("scratch.tmp"), "ignored\n").unwrap();
    fs::write(src.join("node_modules/dep.js"), "// v2\n").unwrap();
    fs::write(src.join("debug.log"), "ignored\n").unwrap();
    // The fence: a new file after the ignored ones. The watcher sees events
    // in order, so once the restart for it has happened, any restart (or
    // debounced burst) that the ignored files caused has happened too.
    fs::write(src.join("new.conf"), "new\n").unwrap();
    let third = wait_replaced(&d, "watched", second);
    assert_eq!(third["restarts"], 2, "{third}");
    assert_eq!(
        watch_restarts(&d, "watched"),
        [["app.conf"], ["new.conf"]],
        "restarts for other files than app.conf and new.conf"
    );
}

/// `watch: [paths]` in a file watches those paths only (relative to the
/// app's cwd), with `ignore_watch` globs and `watch_delay`.
#[test]
fn watch_paths_from_a_file_are_the_only_ones_watched() {
    let d = start_logging_watch_restarts();
    d.write_file("conf/settings.ini", "v1\n");
    let file = d.write_file(
        "apps.yaml",
        "apps:\n  - name: watcher\n    script: sleep\n    args: \"100000\"\n    \
         watch: [conf]\n    ignore_watch: [\"*.bak\"]\n    watch_delay: 200\n",
    );
    d.pmd_ok(&["start", arg(&file)]);
    let first = d.wait_online("watcher");

    d.write_file("conf/settings.ini", "v2\n");
    let second = pid_of(&wait_watch_restart(&d, "watcher", first)).unwrap();

    d.write_file("conf/settings.bak", "ignored\n");
    d.write_file("elsewhere.txt", "not watched\n");
    // The fence: a watched change after those (see the test above).
    d.write_file("conf/settings.ini", "v3\n");
    let third = wait_replaced(&d, "watcher", second);
    assert_eq!(third["restarts"], 2, "{third}");
    assert_eq!(
        watch_restarts(&d, "watcher"),
        [["settings.ini"], ["settings.ini"]],
        "restarts for an ignored or unwatched file"
    );
}

/// An app may watch a tree that holds the daemon's own files (here: all of
/// PMDAEMON_HOME, its work dir included): its log lines, and the state file
/// rewritten at every restart, never restart it, so one change gives one
/// restart and no loop.
#[test]
fn the_daemons_own_files_never_trigger_a_watch_restart() {
    let d = start_logging_watch_restarts();
    let chatty = d.write_script("chatty.sh", "while :; do echo tick; sleep 0.05; done");
    d.pmd_ok(&[
        "start",
        arg(&chatty),
        "--name",
        "chatty",
        "--watch",
        "--watch-path",
        arg(d.home()),
        // This harness's daemon stderr files live in the home too.
        "--ignore-watch",
        "daemon-stderr-*",
        "--watch-delay",
        "200ms",
    ]);
    let first = d.wait_online("chatty");
    let out_log = d.describe_one("chatty")["out_log_path"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for("the app to log", WAIT, || {
        fs::metadata(&out_log).is_ok_and(|m| m.len() > 0)
    });

    d.write_file("app.conf", "v2\n");
    // Returns once the restart's state write (the new pid) has landed.
    let second = pid_of(&wait_watch_restart(&d, "chatty", first)).unwrap();
    // The fence: a change after that write, while the app goes on logging.
    // The watcher sees events in order, so a restart for the state file or
    // a log line would have come before (or with) the one for this change.
    d.write_file("app.conf", "v3\n");
    let third = wait_replaced(&d, "chatty", second);
    assert_eq!(third["restarts"], 2, "{third}");
    assert_eq!(
        watch_restarts(&d, "chatty"),
        [["app.conf"], ["app.conf"]],
        "restarts for the daemon's own files"
    );
}

/// A replacement that crashes stops the reload at once, saying how it
/// ended, instead of waiting out the ready timeout on a crash loop.
#[test]
fn a_crashing_replacement_stops_the_reload_at_once() {
    let d = TestDaemon::start();
    let script = d.write_script(
        "fragile.sh",
        "[ -e crash.flag ] && exit 3\nexec sleep 100000",
    );
    d.pmd_ok(&["start", arg(&script), "--name", "fragile", "-i", "2"]);
    d.wait_instances_online("fragile", 2);
    d.write_file("crash.flag", "");
    let t0 = std::time::Instant::now();
    let out = d.pmd_code(1, &["reload", "fragile"]);
    let text = said(&out);
    assert!(text.contains("code 3"), "{text}");
    // Not scaled: it must stay below the daemon's 30 s default ready
    // timeout, which a reload stuck on the crash loop would wait out.
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "the reload waited {:?} on a crash loop",
        t0.elapsed()
    );
    // The second instance was not touched.
    let second = &d.instances("fragile")[1];
    assert_eq!(second["status"], "online", "{second}");
    assert_eq!(second["restarts"], 0, "{second}");
}

/// A watch restart takes its turn like every operation that changes the
/// table (issue 7): it never runs in the middle of a reload. The reload of
/// `held` is kept open by its replacement's health check, which passes only
/// once a flag file exists; `watched` changes while the reload waits (the
/// daemon logs that it saw the change), and only then does the flag
/// appear. The watched app's restart must come after the replacement is
/// ready, in the daemon's own event order.
#[test]
fn a_watch_restart_waits_for_a_reload_in_progress() {
    let d = start_logging_watch_restarts();
    let flag = d.work().join("ready.flag");
    fs::write(&flag, "").unwrap();
    let check = format!("test -f {}", arg(&flag));
    d.pmd_ok(&[
        "start",
        "sleep",
        "--name",
        "held",
        "--health-check-script",
        &check,
        "--health-interval",
        "100ms",
        "--",
        "100000",
    ]);
    d.wait_online("held");
    let src = d.work().join("src");
    d.write_file("src/app.conf", "v1\n");
    d.pmd_ok(&[
        "start",
        "sleep",
        "--name",
        "watched",
        "--cwd",
        arg(&src),
        "--watch",
        "--watch-delay",
        "100ms",
        "--",
        "100000",
    ]);
    d.wait_online("watched");
    // Subscribed before the reload: the stream syncs through pmd start and
    // delete, which would wait for the reload's turn.
    let mut events = d.events();

    fs::remove_file(&flag).unwrap();
    let mut reload = spawn_retrying_busy(&mut d.pmd_command(&["reload", "held"]));
    events.wait_event("the reload replacing held", |e| {
        e["name"] == "held" && kind_of(e) == "restarting"
    });
    fs::write(src.join("app.conf"), "v2\n").unwrap();
    wait_for("the watcher saw the change to app.conf", WAIT, || {
        !watch_restarts(&d, "watched").is_empty()
    });
    fs::write(&flag, "").unwrap();
    events.wait_event("watched restarted", |e| {
        e["name"] == "watched" && kind_of(e) == "restarting"
    });
    let status = wait_child(&mut reload, PMD_TIMEOUT).expect("pmd reload ended");
    assert!(status.success(), "pmd reload failed: {status}");
    let held_ready = |e: &serde_json::Value| e["name"] == "held" && kind_of(e) == "ready";
    if !events.seen().iter().any(held_ready) {
        // It comes after the watched restart: the assertion below says so.
        events.wait_event("held ready", held_ready);
    }

    let position = |name: &str, kind: &str| {
        events
            .seen()
            .iter()
            .position(|e| e["name"] == name && kind_of(e) == kind)
            .unwrap_or_else(|| panic!("no {kind} event of {name}: {}", events.seen_lines()))
    };
    assert!(
        position("held", "ready") < position("watched", "restarting"),
        "watched restarted while the reload of held was still waiting: {}",
        events.seen_lines()
    );
}
