//! `depends_on` (issue #4): an app starts only once its dependencies are
//! started, healthy or completed; `pmd stop all` and `pmd kill` stop
//! dependents before their dependencies; a cycle or a missing dependency
//! is refused when the file is loaded (and by the daemon for any client),
//! and nothing starts. Dependents are listed before their dependencies in
//! the files, so that file order alone never gives the right order.

use pmdaemon_tests::*;
use serde_json::Value;
use tonic::Code;

use crate::{said, timestamps_ns};

/// A script that appends its start time to `started-NAME` ($1) and idles.
const STAMP_START: &str = "date +%s%N >> \"started-$1\"\nexec sleep 100000";

/// A script that records when it gets SIGTERM in `stopped-NAME` ($1), then
/// exits; until then it idles.
const STAMP_STOP: &str = "trap 'date +%s%N > \"stopped-$1\"; exit 0' TERM\n\
                          while :; do sleep 1000 & wait $!; done";

/// The single timestamp in work file `file`.
fn stamp(d: &TestDaemon, file: &str) -> u128 {
    let stamps = timestamps_ns(&d.work().join(file));
    assert_eq!(
        stamps.len(),
        1,
        "{file}: expected one timestamp: {stamps:?}"
    );
    stamps[0]
}

/// The `seq` of the first event of app `name` of kind `kind`.
fn seq_of(events: &[Value], name: &str, kind: &str) -> u64 {
    events
        .iter()
        .find(|e| e["name"] == name && kind_of(e) == kind)
        .and_then(|e| e["seq"].as_u64())
        .unwrap_or_else(|| {
            panic!(
                "no {kind} event of {name}:\n{}",
                events
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
}

/// The dependent starts only once each dependency meets its condition: a
/// database that answers its health check after 1.5 s (`healthy`), a
/// migration job that exits 0 (`completed`) and a cache that is merely
/// running (`started`). Checked twice: the dependent's own start stamp is
/// after the database began to listen and after the migration finished,
/// and in the event stream its only `started` comes after the database's
/// `online`, the migration's `exited` with code 0 and the cache's
/// `started`. `pmd start FILE --wait-ready` returns with all of it done
/// (the completed job counts as ready).
#[test]
fn a_dependent_starts_once_its_dependencies_meet_their_conditions() {
    let d = TestDaemon::start();
    let mut events = d.events();
    let port = free_ports(1);
    d.write_script("stamp.sh", STAMP_START);
    // The job's own sleep: a migration that takes a while, so that a
    // dependent that did not wait for it would start first.
    d.write_script("migrate.sh", "sleep 1\ndate +%s%N > migrated\nexit 0");
    d.write_health_server("db.py");
    let file = d.write_file(
        "apps.yaml",
        &format!(
            "apps:
  - name: web
    script: ./stamp.sh
    args: web
    depends_on: [{{db: healthy}}, {{migrate: completed}}, cache]
  - name: db
    script: ./db.py
    port: {port}
    env:
      LISTEN_AFTER_MS: \"1500\"
      STAMP_FILE: db-listening
    health_check:
      http: \"http://127.0.0.1:{{port}}/\"
      interval: 200ms
  - name: migrate
    script: ./migrate.sh
    autorestart: false
  - name: cache
    script: ./stamp.sh
    args: cache
"
        ),
    );
    d.pmd_ok(&["start", arg(&file), "--wait-ready"]);
    let web = d.describe_one("web");
    assert_eq!(
        web["status"], "online",
        "start FILE --wait-ready returned early: {web:#}"
    );
    events.wait_event("web online", |e| {
        e["name"] == "web" && kind_of(e) == "online"
    });

    let web_started = stamp(&d, "started-web");
    let db_listening = stamp(&d, "db-listening");
    let migrated = stamp(&d, "migrated");
    assert!(
        web_started > db_listening,
        "web started {:.0} ms before db listened",
        (db_listening - web_started) as f64 / 1e6
    );
    assert!(
        web_started > migrated,
        "web started {:.0} ms before the migration completed",
        (migrated - web_started) as f64 / 1e6
    );
    stamp(&d, "started-cache");

    let seen = events.seen();
    let web = seq_of(seen, "web", "started");
    assert!(
        seq_of(seen, "db", "online") < web,
        "{}",
        events.seen_lines()
    );
    assert!(
        seq_of(seen, "cache", "started") < web,
        "{}",
        events.seen_lines()
    );
    let migration_end = seen
        .iter()
        .find(|e| e["name"] == "migrate" && kind_of(e) == "exited")
        .unwrap_or_else(|| panic!("no exit of migrate:\n{}", events.seen_lines()));
    assert_eq!(migration_end["exit_code"], 0, "{migration_end}");
    assert!(
        migration_end["seq"].as_u64() < Some(web),
        "{}",
        events.seen_lines()
    );
    let web_starts = events
        .seen_of("web")
        .iter()
        .filter(|e| kind_of(e) == "started")
        .count();
    assert_eq!(web_starts, 1, "{}", events.seen_lines());
}

/// `depends_on` holds on every path that starts apps again, not only
/// `pmd start FILE`: `pmd restart FILE`, `pmd stop all` then `pmd start
/// all`, a daemon restart, `pmd restart all` and `pmd resurrect` each start api only after db (which listens
/// 1 s after it starts) answers its health check. Each start of both is
/// stamped; the k-th api start comes after db's k-th listen.
#[test]
fn dependencies_hold_on_restart_start_all_and_daemon_restart() {
    let mut d = TestDaemon::start();
    let port = free_ports(1);
    d.write_script("stamp.sh", STAMP_START);
    d.write_health_server("db.py");
    let file = d.write_file(
        "pair.yaml",
        &format!(
            "apps:
  - name: api
    script: ./stamp.sh
    args: api
    depends_on: [{{db: healthy}}]
  - name: db
    script: ./db.py
    port: {port}
    env:
      LISTEN_AFTER_MS: \"1000\"
      STAMP_FILE: db-listening
    health_check:
      http: \"http://127.0.0.1:{{port}}/\"
      interval: 100ms
"
        ),
    );
    let check = |d: &TestDaemon, runs: usize, after: &str| {
        d.wait_online("api");
        let path = d.work().join("started-api");
        wait_for("api's start stamp", WAIT, || {
            timestamps_ns(&path).len() == runs
        });
        let api = timestamps_ns(&path);
        let db = timestamps_ns(&d.work().join("db-listening"));
        assert_eq!(db.len(), runs, "{after}: db listened {} times", db.len());
        assert!(
            api[runs - 1] > db[runs - 1],
            "{after}: api started {:.0} ms before db listened",
            (db[runs - 1] - api[runs - 1]) as f64 / 1e6
        );
    };
    d.pmd_ok(&["start", arg(&file)]);
    check(&d, 1, "start FILE");
    d.pmd_ok(&["restart", arg(&file)]);
    check(&d, 2, "restart FILE");
    d.pmd_ok(&["stop", "all"]);
    d.pmd_ok(&["start", "all"]);
    check(&d, 3, "stop all, start all");
    d.restart_daemon();
    check(&d, 4, "daemon restart");
    d.pmd_ok(&["restart", "all"]);
    check(&d, 5, "restart all");
    d.pmd_ok(&["save"]);
    d.pmd_ok(&["delete", "all"]);
    d.pmd_ok(&["resurrect"]);
    check(&d, 6, "resurrect");

    // api alone while db is stopped: refused at once, naming db, by start
    // and by restart.
    d.pmd_ok(&["stop", "db"]);
    let out = d.pmd_code(1, &["restart", "api"]);
    let text = said(&out);
    assert!(text.contains("db") && text.contains("stopped"), "{text}");
    d.pmd_ok(&["stop", "all"]);
    let out = d.pmd_code(1, &["start", "api"]);
    let text = said(&out);
    assert!(text.contains("db") && text.contains("stopped"), "{text}");
    assert_eq!(d.status("api").as_deref(), Some("stopped"));

    // Brought back by a daemon restart without its (stopped) dependency,
    // api is errored with the reason, not `starting` for ever; a stop then
    // makes it stopped.
    d.pmd_ok(&["start", "all"]);
    d.wait_online("api");
    d.pmd_ok(&["stop", "db"]);
    d.restart_daemon();
    let api = d.wait_status("api", "errored");
    assert!(api.to_string().contains("db"), "{api:#}");
    d.pmd_ok(&["stop", "api"]);
    assert_eq!(d.status("api").as_deref(), Some("stopped"));
}

/// Starts `api`, `web` and `db` from one file, where web depends on api and
/// api on db, each recording its SIGTERM time; waits until all are online.
fn start_chain(d: &TestDaemon) {
    d.write_script("stop-stamp.sh", STAMP_STOP);
    let file = d.write_file(
        "chain.yaml",
        "apps:
  - name: api
    script: ./stop-stamp.sh
    args: api
    depends_on: [db]
  - name: web
    script: ./stop-stamp.sh
    args: web
    depends_on: [api]
  - name: db
    script: ./stop-stamp.sh
    args: db
",
    );
    d.pmd_ok(&["start", arg(&file)]);
    for name in ["db", "api", "web"] {
        d.wait_online(name);
    }
}

/// Asserts that web got SIGTERM before api, and api before db.
fn assert_stopped_dependents_first(d: &TestDaemon) {
    let [web, api, db] = ["stopped-web", "stopped-api", "stopped-db"].map(|f| stamp(d, f));
    assert!(
        web < api && api < db,
        "stop order (ms after web): api {:+.1}, db {:+.1}; expected web, then api, then db",
        (api as f64 - web as f64) / 1e6,
        (db as f64 - web as f64) / 1e6
    );
}

/// `pmd stop all` stops a dependent before its dependency, along a chain
/// web → api → db that neither file order nor its reverse gives.
#[test]
fn stop_all_stops_dependents_before_their_dependencies() {
    let d = TestDaemon::start();
    start_chain(&d);
    d.pmd_ok(&["stop", "all"]);
    for name in ["web", "api", "db"] {
        d.wait_status(name, "stopped");
    }
    assert_stopped_dependents_first(&d);
}

/// `pmd stop FILE` stops the file's apps dependents first too.
#[test]
fn stop_file_stops_dependents_before_their_dependencies() {
    let d = TestDaemon::start();
    start_chain(&d);
    d.pmd_ok(&["stop", "chain.yaml"]);
    for name in ["web", "api", "db"] {
        d.wait_status(name, "stopped");
    }
    assert_stopped_dependents_first(&d);
}

/// `pmd kill` (daemon shutdown) also stops dependents first.
#[test]
fn kill_stops_dependents_before_their_dependencies() {
    let mut d = TestDaemon::start();
    start_chain(&d);
    d.pmd_ok(&["kill"]);
    let status = d.wait_daemon_exit();
    assert!(status.success(), "pmdaemond exited with {status}");
    assert_stopped_dependents_first(&d);
}

/// Asserts that the daemon knows no app and runs no app process.
fn assert_nothing_started(d: &TestDaemon, what: &str) {
    assert_eq!(d.list_json(), Vec::<Value>::new(), "{what}");
    assert!(
        d.app_pids().is_empty(),
        "{what}: processes were started: {:?}",
        d.app_pids()
    );
}

/// A dependency cycle in a file (alpha → gamma → beta → alpha) is an error when the file
/// is loaded that names the apps of the cycle; a dependency on an app the
/// file does not have is one that names it; either way nothing starts.
#[test]
fn a_cycle_or_a_missing_dependency_is_refused_and_nothing_starts() {
    let d = TestDaemon::start();
    let app = |name: &str, deps: &str| {
        format!(
            "  - name: {name}\n    script: sleep\n    args: \"100000\"\n    depends_on: {deps}\n"
        )
    };
    let cycle = d.write_file(
        "cycle.yaml",
        &format!(
            "apps:\n{}{}{}  - name: bystander\n    script: sleep\n    args: \"100000\"\n",
            app("alpha", "[gamma]"),
            app("beta", "[alpha]"),
            app("gamma", "[{beta: healthy}]")
        ),
    );
    let out = d.pmd_code(1, &["start", arg(&cycle)]);
    let text = said(&out);
    assert!(text.contains("cycle"), "no cycle reported:\n{text}");
    for name in ["alpha", "beta", "gamma"] {
        assert!(text.contains(name), "{name} not named:\n{text}");
    }
    assert!(
        !text.contains("bystander"),
        "an app outside the cycle is blamed:\n{text}"
    );
    assert_nothing_started(&d, "after a cycle");

    let missing = d.write_file(
        "missing.yaml",
        &format!(
            "apps:\n{}  - name: db\n    script: sleep\n    args: \"100000\"\n",
            app("api", "[dbx]")
        ),
    );
    let out = d.pmd_code(1, &["start", arg(&missing)]);
    let text = said(&out);
    assert!(
        text.contains("api") && text.contains("dbx"),
        "the app and its missing dependency are not named:\n{text}"
    );
    assert_nothing_started(&d, "after a missing dependency");
}

/// The daemon checks `depends_on` itself (other clients skip the CLI): an
/// ApplyApps set with a cycle, or with a dependency on an app that is
/// neither in the set nor known, is refused with a message naming the apps,
/// as is an absurd dependency timeout, and nothing is created.
#[test]
fn the_api_refuses_a_cycle_or_an_unknown_dependency() {
    let d = TestDaemon::start();
    let spec = |name: &str, deps: &[&str]| v1::AppSpec {
        name: name.into(),
        script: "sleep".into(),
        args: vec!["100000".into()],
        depends_on: deps
            .iter()
            .map(|dep| v1::Dependency {
                app: (*dep).into(),
                condition: v1::DependencyCondition::Started as i32,
            })
            .collect(),
        ..Default::default()
    };
    let work = arg(d.work()).to_owned();
    let apply = |apps: Vec<v1::AppSpec>| v1::ApplyAppsRequest {
        apps,
        caller_cwd: work.clone(),
        mode: v1::ApplyMode::Unspecified as i32,
        dependency_timeout_ms: 0,
        ready_timeout_ms: None,
        caller_path: String::new(),
        update_env: false,
    };
    let refusals = block_on(async {
        let mut client = d.client().await;
        let mut refusals = Vec::new();
        for (what, req) in [
            (
                "cycle",
                apply(vec![
                    spec("alpha", &["gamma"]),
                    spec("beta", &["alpha"]),
                    spec("gamma", &["beta"]),
                ]),
            ),
            ("unknown dependency", apply(vec![spec("api", &["dbx"])])),
        ] {
            let status = client
                .apply_apps(req)
                .await
                .expect_err(&format!("{what}: accepted"));
            refusals.push((what, status.code(), status.message().to_owned()));
        }
        let absurd = v1::ApplyAppsRequest {
            dependency_timeout_ms: u64::MAX,
            ..apply(vec![spec("api", &[])])
        };
        let status = client
            .apply_apps(absurd)
            .await
            .expect_err("an absurd dependency timeout was accepted");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("dependency_timeout_ms"),
            "{status:?}"
        );
        refusals
    });
    for (what, code, message) in &refusals {
        assert!(
            [Code::InvalidArgument, Code::FailedPrecondition].contains(code),
            "{what}: {code:?}: {message}"
        );
        let names: &[&str] = match *what {
            "cycle" => &["alpha", "beta", "gamma"],
            _ => &["api", "dbx"],
        };
        for name in names {
            assert!(
                message.contains(name),
                "{what}: {name} is not named: {message}"
            );
        }
    }
    assert_nothing_started(&d, "after refused ApplyApps");
}

/// `--wait-timeout` bounds the whole `pmd start FILE --wait-ready`, the
/// daemon's wait for dependencies included: with a dependency that never
/// gets healthy, the start fails after about the 2 s asked for (not after
/// the daemon's 60 s default), naming the dependent, the dependency, the
/// condition and the dependency's last health error; the dependent was
/// never started, and the dependency's start is reported.
#[test]
fn wait_timeout_bounds_the_wait_for_dependencies() {
    let d = TestDaemon::start();
    let refused = free_ports(1); // nothing listens there: never healthy
    let file = d.write_file(
        "stack.yaml",
        &format!(
            "apps:\n\
             \x20 - name: api\n    script: sleep\n    args: \"100000\"\n    depends_on: [{{db: healthy}}]\n\
             \x20 - name: db\n    script: sleep\n    args: \"100000\"\n    health_check:\n      tcp: 127.0.0.1:{refused}\n      interval: 200ms\n"
        ),
    );
    let t0 = std::time::Instant::now();
    let out = d.pmd_code(
        1,
        &["start", arg(&file), "--wait-ready", "--wait-timeout", "2s"],
    );
    let took = t0.elapsed();
    let text = said(&out);
    assert!(
        took >= std::time::Duration::from_secs(2),
        "gave up after {took:?}, before its 2 s:\n{text}"
    );
    // Not a harness deadline, so not scaled: it must stay below the
    // daemon's own 60 s default wait to tell the two apart.
    assert!(
        took < std::time::Duration::from_secs(30),
        "the dependency wait was not bounded by --wait-timeout ({took:?}):\n{text}"
    );
    let probed = format!("127.0.0.1:{refused}");
    for word in ["api", "db", "healthy", &probed] {
        assert!(text.contains(word), "{word} is not named:\n{text}");
    }
    assert!(
        d.app("api").is_none(),
        "the dependent was created: {:?}",
        d.app("api")
    );
    assert_eq!(d.status("db").as_deref(), Some("starting"));
    // What was applied is said too: db runs.
    assert!(
        text.contains("created db"),
        "db's start is not reported:\n{text}"
    );
}

/// A dependency that was deleted fails a restart at once, naming it,
/// rather than after the 60 s wait for its condition.
#[test]
fn a_deleted_dependency_fails_at_once() {
    let d = TestDaemon::start();
    let file = d.write_file(
        "pair.yaml",
        "apps:\n  - name: api\n    script: sleep\n    args: \"100000\"\n    depends_on: [db]\n  - name: db\n    script: sleep\n    args: \"100001\"\n",
    );
    d.pmd_ok(&["start", arg(&file)]);
    d.wait_online("api");
    d.pmd_ok(&["delete", "db"]);
    let t0 = std::time::Instant::now();
    let out = d.pmd_code(1, &["restart", "api"]);
    let text = said(&out);
    assert!(
        text.contains("db") && text.contains("does not exist"),
        "{text}"
    );
    // Not scaled: it must stay below the daemon's 60 s default wait.
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(30),
        "waited {:?} for a dependency that is gone",
        t0.elapsed()
    );
}
