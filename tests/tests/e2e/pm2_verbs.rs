//! PM2's environment rules and verbs (issue 11): the environment an app
//! gets (the daemon's, the caller's captured at start, the file's `env`
//! and `env_<name>`, `--env`), `restart --update-env` and what a restart
//! without it keeps (through save, a daemon restart and resurrect),
//! `describe` showing names and `--env-values` the values, `pmd env`,
//! env values refused to a read-only token over TCP, `reset`,
//! `send-signal`/`sendSignal`, `startOrRestart|startOrReload|
//! startOrGracefulReload FILE`, `jlist`/`prettylist`, `ls --sort`, `logs
//! --json|--raw|--nostream`, `--node-args`, and their bad input.

use std::process::Output;

use pmdaemon_tests::*;
use serde_json::Value;

use crate::{IDLE, said};

/// `pmd` with extra variables in its environment: the shell it runs in.
fn pmd_with_env(d: &TestDaemon, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = d.pmd_command(args);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    run_with_timeout(&mut cmd, PMD_TIMEOUT)
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", describe_output(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The layers, from the bottom: the daemon's environment, the caller's
/// captured at start, the file's `env`, its `env_production` with `--env
/// production`; on the command line `--env K=V` last. What must not
/// travel is not captured: the caller's `PMD_TOKEN`, or the `PMD_ID` of
/// an app that runs `pmd start` itself.
#[test]
fn an_apps_environment_is_daemon_then_caller_then_file_then_flags() {
    let mut d = TestDaemon::new_stopped();
    d.set_daemon_env("LAYER", "daemon");
    d.set_daemon_env("DAEMON_ONLY", "d");
    d.spawn_daemon();
    d.write_executable("idle.sh", IDLE);
    d.write_file(
        "eco.yaml",
        "apps:\n  - name: filed\n    script: ./idle.sh\n    env:\n      LAYER: file\n      \
         FILE_ONLY: f\n    env_production:\n      LAYER: production\n",
    );
    let shell = [
        ("LAYER", "caller"),
        ("CALLER_ONLY", "c"),
        ("PMD_TOKEN", "not-for-apps"),
        ("PMD_ID", "77"),
    ];
    ok(pmd_with_env(&d, &shell, &["start", "eco.yaml"]));
    ok(pmd_with_env(
        &d,
        &shell,
        &[
            "start",
            "./idle.sh",
            "--name",
            "flagged",
            "--env",
            "LAYER=flag",
        ],
    ));
    ok(pmd_with_env(
        &d,
        &shell,
        &["start", "./idle.sh", "--name", "plain"],
    ));
    let env = env_of(d.wait_online("filed"));
    assert_eq!(env["LAYER"], "file");
    assert_eq!(env["FILE_ONLY"], "f");
    assert_eq!(env["CALLER_ONLY"], "c");
    assert_eq!(env["DAEMON_ONLY"], "d");
    assert!(!env.contains_key("PMD_TOKEN"), "pmd's own settings stay");
    let flagged = d.wait_online("flagged");
    assert_eq!(env_of(flagged)["LAYER"], "flag");
    let plain = d.wait_online("plain");
    let env = env_of(plain);
    assert_eq!(env["LAYER"], "caller");
    let id = d.app("plain").unwrap()["id"].to_string();
    assert_eq!(env["PMD_ID"], id, "the daemon's marker, not the caller's");

    // --env production on a file: env_production over env over the
    // caller's. The definition changed: applied.
    ok(pmd_with_env(
        &d,
        &shell,
        &["start", "eco.yaml", "--env", "production"],
    ));
    wait_for("filed restarted with env_production", WAIT, || {
        d.app("filed")
            .and_then(|a| pid_of(&a))
            .is_some_and(|pid| env_of(pid).get("LAYER").map(String::as_str) == Some("production"))
    });
}

/// A restart keeps what was captured at start; `--update-env` merges the
/// current shell's over it (as PM2 does: a variable the new shell lacks
/// stays). What was captured survives `pmd save`, a daemon restart
/// (`pmd kill`, then the next command) and `pmd resurrect`.
#[test]
fn restart_keeps_the_captured_environment_and_update_env_takes_the_shells() {
    let d = TestDaemon::start();
    d.write_executable("idle.sh", IDLE);
    ok(pmd_with_env(
        &d,
        &[("STAGE", "one"), ("OLD_ONLY", "kept")],
        &["start", "./idle.sh", "--name", "api"],
    ));
    let pid = d.wait_online("api");
    assert_eq!(env_of(pid)["STAGE"], "one");

    ok(pmd_with_env(&d, &[("STAGE", "two")], &["restart", "api"]));
    let pid = d.wait_online("api");
    assert_eq!(
        env_of(pid)["STAGE"],
        "one",
        "restart keeps the captured one"
    );

    let out = ok(pmd_with_env(
        &d,
        &[("STAGE", "two"), ("NEW", "x")],
        &["restart", "api", "--update-env"],
    ));
    assert!(out.contains("restarted api"), "{out}");
    let pid = d.wait_online("api");
    let env = env_of(pid);
    assert_eq!(env["STAGE"], "two");
    assert_eq!(env["NEW"], "x");
    assert_eq!(env["OLD_ONLY"], "kept", "merged, as PM2's --update-env");

    // reload --update-env too.
    ok(pmd_with_env(
        &d,
        &[("STAGE", "three")],
        &["reload", "api", "--update-env"],
    ));
    let pid = wait_for_value("api reloaded with STAGE=three", WAIT, || {
        let pid = pid_of(&d.app("api")?)?;
        (env_of(pid).get("STAGE").map(String::as_str) == Some("three")).then_some(pid)
    });

    // save, a daemon restart, resurrect: still the captured environment.
    d.pmd_ok(&["save"]);
    d.pmd_ok(&["kill"]);
    assert!(!pid_alive(pid));
    ok(pmd_with_env(&d, &[("STAGE", "four")], &["list"]));
    let pid = d.wait_online("api");
    assert_eq!(env_of(pid)["STAGE"], "three", "the next daemon restores it");
    d.pmd_ok(&["delete", "api"]);
    ok(pmd_with_env(&d, &[("STAGE", "five")], &["resurrect"]));
    let pid = d.wait_online("api");
    assert_eq!(env_of(pid)["STAGE"], "three", "resurrect restores it");
    use std::os::unix::fs::PermissionsExt;
    for file in ["state.json", "dump.json"] {
        let meta = std::fs::metadata(d.home().join(file)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
    }
}

/// `start --update-env` on a file updates the file's existing apps; without
/// it their captured environment is no change at all.
#[test]
fn a_files_apps_keep_their_capture_unless_update_env() {
    let d = TestDaemon::start();
    d.write_executable("idle.sh", IDLE);
    d.write_file("eco.yaml", "apps:\n  - name: web\n    script: ./idle.sh\n");
    ok(pmd_with_env(
        &d,
        &[("STAGE", "one")],
        &["start", "eco.yaml"],
    ));
    let pid = d.wait_online("web");
    let out = ok(pmd_with_env(
        &d,
        &[("STAGE", "two")],
        &["start", "eco.yaml"],
    ));
    assert!(out.contains("web already running"), "{out}");
    assert_eq!(d.wait_online("web"), pid, "not restarted");
    let out = ok(pmd_with_env(
        &d,
        &[("STAGE", "two")],
        &["start", "eco.yaml", "--update-env"],
    ));
    assert!(out.contains("updated web: caller_env changed"), "{out}");
    let pid = wait_for_value("web with STAGE=two", WAIT, || {
        let pid = pid_of(&d.app("web")?)?;
        (env_of(pid).get("STAGE").map(String::as_str) == Some("two")).then_some(pid)
    });
    assert!(pid_alive(pid));
}

/// `describe` names the variables; their values only with `--env-values`
/// (`pmd env` prints them, as the process got them). Values never reach
/// the daemon's log.
#[test]
fn describe_shows_names_and_values_only_when_asked() {
    let d = TestDaemon::start();
    d.write_executable("idle.sh", IDLE);
    ok(pmd_with_env(
        &d,
        &[("SHELL_SECRET", "hunter2")],
        &[
            "start",
            "./idle.sh",
            "--name",
            "api",
            "--env",
            "API_KEY=k-123",
        ],
    ));
    d.wait_online("api");
    let text = d.pmd_ok(&["describe", "api"]);
    assert!(text.contains("\n    API_KEY\n"), "{text}");
    assert!(
        text.contains(" variables from the shell that started it"),
        "{text}"
    );
    assert!(
        !text.contains("k-123") && !text.contains("hunter2"),
        "{text}"
    );
    let json = d.describe_one("api");
    assert_eq!(json["env"]["API_KEY"], Value::Null, "{json}");
    assert_eq!(json["captured_env"]["SHELL_SECRET"], Value::Null);
    for verb in ["show", "desc", "info"] {
        let text = d.pmd_ok(&[verb, "api"]);
        assert!(
            text.contains("API_KEY") && !text.contains("k-123"),
            "{verb}"
        );
    }
    let text = d.pmd_ok(&["describe", "api", "--env-values"]);
    assert!(text.contains("API_KEY=k-123"), "{text}");
    assert!(text.contains("SHELL_SECRET=hunter2"), "{text}");
    let full = parse_json(
        "describe --env-values",
        &d.pmd_ok(&["describe", "api", "--env-values", "-o", "json"]),
    );
    assert_eq!(full["captured_env"]["SHELL_SECRET"], "hunter2");

    let env = d.pmd_ok(&["env", "api"]);
    let lines: Vec<&str> = env.lines().collect();
    for want in ["API_KEY=k-123", "SHELL_SECRET=hunter2", "PMD_ID=0"] {
        assert!(lines.contains(&want), "{want} in {env}");
    }
    let json = parse_json("env -o json", &d.pmd_ok(&["env", "0", "-o", "json"]));
    assert_eq!(json["env"]["API_KEY"], "k-123");
    assert_eq!(json["env"]["PMDAEMON_HOME"], arg(d.home()));

    let log = d.daemon_log();
    assert!(!log.contains("hunter2") && !log.contains("k-123"), "{log}");
    let out = d.pmd_code(1, &["env", "nope"]);
    assert!(said(&out).contains("nope"), "{}", said(&out));
}

/// Over TCP, a read-only token sees which variables an app has but not
/// their values (`envValuesHidden`), and may not call GetProcessEnv; an
/// admin token sees both.
#[test]
fn env_values_are_refused_to_a_read_only_token_over_tcp() {
    let port = free_ports(1);
    let d = TestDaemon::start_with_args(&["--listen", &format!("127.0.0.1:{port}")]);
    d.write_executable("idle.sh", IDLE);
    ok(pmd_with_env(
        &d,
        &[("SHELL_SECRET", "hunter2")],
        &[
            "start",
            "./idle.sh",
            "--name",
            "api",
            "--env",
            "API_KEY=k-123",
        ],
    ));
    d.wait_online("api");
    let reader = d
        .pmd_ok(&["token", "create", "reader", "--read-only"])
        .trim()
        .to_string();
    let admin = admin_token(d.home());
    block_on(async {
        let ro = Rest::new(port, Some(&reader));
        let got = ro.call("GET", "/v1/processes/api", None).await;
        assert_eq!(got.status, 200, "{got:?}");
        let info = &got.body["processes"][0];
        assert_eq!(info["envValuesHidden"], true, "{info}");
        assert_eq!(info["spec"]["env"]["API_KEY"], "", "{info}");
        assert_eq!(info["spec"]["callerEnv"]["SHELL_SECRET"], "", "{info}");
        let listed = ro.call("GET", "/v1/processes", None).await;
        assert!(!listed.body.to_string().contains("hunter2"), "{listed:?}");
        let refused = ro.call("GET", "/v1/processes/api/env", None).await;
        assert_eq!(refused.status, 403, "{refused:?}");

        let full = Rest::new(port, Some(&admin));
        let got = full.call("GET", "/v1/processes/api", None).await;
        let info = &got.body["processes"][0];
        assert_eq!(info["envValuesHidden"], false, "{info}");
        assert_eq!(info["spec"]["env"]["API_KEY"], "k-123", "{info}");
        assert_eq!(info["spec"]["callerEnv"]["SHELL_SECRET"], "hunter2");
        let env = full.call("GET", "/v1/processes/api/env", None).await;
        assert_eq!(env.status, 200, "{env:?}");
        assert_eq!(env.body["processes"][0]["env"]["API_KEY"], "k-123");
    });
}

/// `pmd reset` sets the restart counters to 0 without restarting.
#[test]
fn reset_sets_the_restart_counters_to_zero() {
    let d = TestDaemon::start();
    d.write_executable("idle.sh", IDLE);
    d.pmd_ok(&["start", "./idle.sh", "--name", "api", "-i", "2"]);
    d.wait_instances_online("api", 2);
    d.pmd_ok(&["restart", "api"]);
    d.pmd_ok(&["restart", "api"]);
    let before = d.wait_instances_online("api", 2);
    assert!(before.iter().all(|a| a["restarts"] == 2), "{before:?}");
    let out = d.pmd_ok(&["reset", "api"]);
    assert!(out.contains("reset api (id 0"), "{out}");
    let after = d.instances("api");
    assert!(after.iter().all(|a| a["restarts"] == 0), "{after:?}");
    assert_eq!(pids_of(&before), pids_of(&after), "nothing restarted");
    let out = d.pmd_code(1, &["reset", "nope"]);
    assert!(said(&out).contains("nope"), "{}", said(&out));
}

/// `send-signal` reaches each running instance's process; `sendSignal`
/// (PM2's spelling) takes an id. A bad signal is a usage error (and
/// INVALID_ARGUMENT from the daemon); a stopped app is an error; neither
/// changes anything.
#[test]
fn send_signal_reaches_each_running_instance() {
    let d = TestDaemon::start();
    d.write_script(
        "trap.sh",
        "trap 'echo usr2 \"$PMD_INSTANCE_ID\" >> got.txt' USR2\necho ready\nwhile :; do sleep \
         0.05; done",
    );
    d.pmd_ok(&["start", "./trap.sh", "--name", "trap", "-i", "2"]);
    let apps = d.wait_instances_online("trap", 2);
    wait_for("both instances ready for USR2", WAIT, || {
        std::fs::read_to_string(d.logs_dir().join("trap-0-out.log"))
            .is_ok_and(|l| l.contains("ready"))
            && std::fs::read_to_string(d.logs_dir().join("trap-1-out.log"))
                .is_ok_and(|l| l.contains("ready"))
    });
    let out = d.pmd_ok(&["send-signal", "SIGUSR2", "trap"]);
    assert!(out.contains("sent SIGUSR2 to trap (id 0"), "{out}");
    wait_for("both instances got USR2", WAIT, || {
        let mut got: Vec<String> = d.read_work("got.txt").lines().map(str::to_owned).collect();
        got.sort();
        got == ["usr2 0", "usr2 1"]
    });
    let second = apps[1]["id"].to_string();
    d.pmd_ok(&["sendSignal", "12", &second]);
    wait_for("instance 1 got a second USR2", WAIT, || {
        d.read_work("got.txt")
            .lines()
            .filter(|l| *l == "usr2 1")
            .count()
            == 2
    });

    let out = d.pmd_code(2, &["send-signal", "SIGNOPE", "trap"]);
    assert!(
        said(&out).contains("\"SIGNOPE\" is not a signal"),
        "{}",
        said(&out)
    );
    let refused = block_on(async {
        d.client()
            .await
            .signal_process(v1::SignalProcessRequest {
                target: "trap".into(),
                signal: "SIGNOPE".into(),
            })
            .await
            .unwrap_err()
    });
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().starts_with("signal: "), "{refused:?}");
    assert_eq!(
        pids_of(&d.instances("trap")),
        pids_of(&apps),
        "nothing changed"
    );

    d.pmd_ok(&["stop", "trap"]);
    let out = d.pmd_code(1, &["send-signal", "USR2", "trap"]);
    assert!(
        said(&out).contains("no process of trap is running"),
        "{}",
        said(&out)
    );
}

/// PM2's deploy verbs: a FILE's missing apps are created, the others
/// restarted (startOrRestart) or reloaded (startOrReload,
/// startOrGracefulReload).
#[test]
fn start_or_restart_and_reload_create_what_is_missing() {
    let d = TestDaemon::start();
    d.write_executable("idle.sh", IDLE);
    d.write_file(
        "eco.yaml",
        "apps:\n  - name: a\n    script: ./idle.sh\n  - name: b\n    script: ./idle.sh\n",
    );
    d.pmd_ok(&["start", "eco.yaml", "--only", "a"]);
    let a = d.wait_online("a");
    let out = d.pmd_ok(&["startOrRestart", "eco.yaml"]);
    assert!(
        out.contains("created b") && out.contains("restarted a"),
        "{out}"
    );
    assert_ne!(d.wait_online("a"), a);
    assert_eq!(d.app("a").unwrap()["restarts"], 1);
    for verb in ["startOrReload", "startOrGracefulReload"] {
        let b = d.wait_online("b");
        let out = d.pmd_ok(&[verb, "eco.yaml"]);
        assert!(
            out.contains("reloaded a") && out.contains("reloaded b"),
            "{out}"
        );
        assert_ne!(d.wait_online("b"), b, "{verb} replaced b");
    }
    let out = d.pmd_code(1, &["startOrRestart", "missing.yaml"]);
    assert!(
        said(&out).contains("missing.yaml: no such ecosystem file"),
        "{}",
        said(&out)
    );
    let out = d.pmd_code(2, &["startOrReload", "a"]);
    assert!(
        said(&out).contains("not an ecosystem file"),
        "{}",
        said(&out)
    );
}

/// `jlist` is `list -o json` on one line, `prettylist` the same indented;
/// `ls --sort FIELD[:desc]` orders the table as PM2's does.
#[test]
fn jlist_prettylist_and_sorted_lists() {
    let d = TestDaemon::start();
    d.write_executable("idle.sh", IDLE);
    for name in ["bravo", "alpha", "charlie"] {
        d.pmd_ok(&["start", "./idle.sh", "--name", name]);
        d.wait_online(name);
    }
    d.pmd_ok(&["restart", "charlie"]);
    d.wait_online("charlie");
    let jlist = d.pmd_ok(&["jlist"]);
    assert_eq!(jlist.lines().count(), 1, "{jlist}");
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(&parse_json("jlist", &jlist)),
        ["bravo", "alpha", "charlie"]
    );
    let pretty = d.pmd_ok(&["prettylist"]);
    assert!(pretty.lines().count() > 3, "{pretty}");
    assert_eq!(
        names(&parse_json("prettylist", &pretty)),
        ["bravo", "alpha", "charlie"]
    );

    let order = |args: &[&str]| -> Vec<String> {
        let out = d.pmd_ok(args);
        out.lines()
            .skip(1)
            .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        order(&["ls", "--sort", "name"]),
        ["alpha", "bravo", "charlie"]
    );
    assert_eq!(
        order(&["ls", "--sort", "name:desc"]),
        ["charlie", "bravo", "alpha"]
    );
    assert_eq!(order(&["list", "--sort", "restarts:desc"])[0], "charlie");
    assert_eq!(
        order(&["ls", "--sort", "id:desc"]),
        ["charlie", "alpha", "bravo"]
    );
    let sorted = parse_json("", &d.pmd_ok(&["ls", "--sort", "name", "-o", "json"]));
    assert_eq!(names(&sorted), ["alpha", "bravo", "charlie"]);
    let out = d.pmd_code(2, &["ls", "--sort", "colour"]);
    assert!(
        said(&out).contains("\"colour\" is not a field"),
        "{}",
        said(&out)
    );
    let out = d.pmd_code(2, &["ls", "--sort", "name:up"]);
    assert!(said(&out).contains("not an order"), "{}", said(&out));
}

/// `logs --json` writes PM2's objects, one per line; `--raw` the lines
/// alone; `--nostream` is accepted (printing and exiting is the default)
/// and refused with `-f`.
#[test]
fn logs_json_raw_and_nostream() {
    let d = TestDaemon::start();
    d.write_script(
        "talk.sh",
        "echo 'hello \"out\"'\necho oops >&2\nexec sleep 1000",
    );
    d.pmd_ok(&["start", "./talk.sh", "--name", "talk"]);
    d.wait_online("talk");
    wait_for("both lines logged", WAIT, || {
        d.pmd_ok(&["logs", "talk", "--raw"]).lines().count() >= 2
    });
    let json = d.pmd_ok(&["logs", "talk", "--json", "--nostream"]);
    let objects: Vec<Value> = json.lines().map(|l| parse_json("logs --json", l)).collect();
    let out = objects.iter().find(|o| o["type"] == "out").expect(&json);
    assert_eq!(out["message"], "hello \"out\"");
    assert_eq!(out["app_name"], "talk");
    assert_eq!(out["process_id"], 0);
    assert!(out.get("timestamp").is_some());
    assert!(
        objects
            .iter()
            .any(|o| o["type"] == "err" && o["message"] == "oops")
    );
    let mut raw: Vec<String> = d
        .pmd_ok(&["logs", "talk", "--raw"])
        .lines()
        .map(str::to_owned)
        .collect();
    raw.sort();
    assert_eq!(raw, ["hello \"out\"", "oops"]);
    d.pmd_code(2, &["logs", "talk", "--nostream", "-f"]);
    d.pmd_code(2, &["logs", "talk", "--json", "--raw"]);
}

/// `--node-args` is PM2's name of `--interpreter-args`.
#[test]
fn node_args_are_the_interpreters_arguments() {
    let d = TestDaemon::start();
    d.write_file("app.py", "import time\nwhile True: time.sleep(1)\n");
    let python = python3().display().to_string();
    d.pmd_ok(&[
        "start",
        "app.py",
        "--interpreter",
        &python,
        "--node-args",
        "-u -B",
    ]);
    let pid = d.wait_online("app");
    let cmdline = cmdline_of(pid);
    assert_eq!(
        cmdline[1..3],
        ["-u".to_string(), "-B".to_string()],
        "{cmdline:?}"
    );
    assert!(cmdline[3].ends_with("app.py"), "{cmdline:?}");
}

/// Fills in the placeholders of the PM2 fixture (tests/fixtures/pm2).
fn pm2_fixture(d: &TestDaemon) -> (std::path::PathBuf, std::path::PathBuf) {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pm2");
    let apps = d.work().join("apps");
    let pm2_home = d.work().join("pm2home");
    std::fs::create_dir_all(apps.join("logs")).unwrap();
    std::fs::create_dir_all(pm2_home.join("logs")).unwrap();
    for file in ["worker.js", "web.js", "tick.py"] {
        std::fs::copy(fixtures.join(file), apps.join(file)).unwrap();
    }
    let dump = std::fs::read_to_string(fixtures.join("dump.pm2"))
        .unwrap()
        .replace("{{APPS}}", arg(&apps))
        .replace("{{PM2_HOME}}", arg(&pm2_home))
        .replace("{{HOME}}", arg(d.work()))
        .replace("{{PATH}}", &std::env::var("PATH").unwrap());
    std::fs::write(pm2_home.join("dump.pm2"), dump).unwrap();
    (apps, pm2_home)
}

/// `pmd import pm2` reads PM2's dump (made by PM2 7: a fork app with env,
/// args, log files and restart settings; a cluster of two with node
/// arguments; a stopped python app logging to /dev/null; a bare command)
/// and runs the apps as PM2 ran them. A second import skips them all.
/// Skipped where node is not on PATH.
#[test]
fn import_pm2_runs_the_apps_as_pm2_ran_them() {
    if node().is_none() {
        eprintln!("skipped: node is not on PATH");
        return;
    }
    let d = TestDaemon::start();
    let (apps, pm2_home) = pm2_fixture(&d);
    let mut cmd = d.pmd_command(&["import", "pm2"]);
    cmd.env("PM2_HOME", &pm2_home);
    let out = run_with_timeout(&mut cmd, PMD_TIMEOUT);
    let text = said(&out);
    assert!(out.status.success(), "{}", describe_output(&out));
    for line in [
        "imported worker (node ",
        "imported web (node ",
        "2 instances",
        "imported tick (python3 ",
        "stopped as in PM2",
        "imported nap (/bin/sleep)",
        "web: cluster mode: 2 separate processes",
        "web: out log: pmd's own file (PM2 kept it at ",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    // Everything of PM2's own dump is mapped or PM2's bookkeeping.
    assert_eq!(text.matches("not mapped").count(), 0, "{text}");

    let worker = d.wait_online("worker");
    let env = env_of(worker);
    assert_eq!(env["QUEUE"], "high");
    assert_eq!(env["NODE_ENV"], "production");
    assert_eq!(env["MY_SHELL_VAR"], "from-shell");
    assert!(!env.contains_key("PM2_HOME") && !env.contains_key("unique_id"));
    assert_eq!(
        cmdline_of(worker)[2..],
        ["--queue".to_string(), "high".to_string()]
    );
    let info = d.describe_one("worker");
    assert_eq!(info["max_restarts"], 7);
    assert_eq!(info["min_uptime_ms"], 2000);
    assert_eq!(info["restart_delay_ms"], 250);
    assert_eq!(info["kill_timeout_ms"], 3000);
    assert_eq!(info["max_memory_bytes"], 200 << 20);
    assert_eq!(info["cwd"], arg(&apps));
    let out_log = apps.join("logs/worker-out.log");
    assert_eq!(info["out_file"], arg(&out_log));
    wait_for("worker's line in its PM2 log file", WAIT, || {
        std::fs::read_to_string(&out_log).is_ok_and(|l| l.contains("worker --queue high high"))
    });

    let web = d.wait_instances_online("web", 2);
    for (index, instance) in web.iter().enumerate() {
        let pid = pid_of(instance).unwrap();
        assert!(cmdline_of(pid).contains(&"--max-old-space-size=64".to_string()));
        let env = env_of(pid);
        assert_eq!(env["GREETING"], "hello");
        assert_eq!(env["NODE_APP_INSTANCE"], index.to_string());
    }
    let web_log = d.describe_json("web")[0]["out_log_path"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        web_log.starts_with(arg(d.home())),
        "pmd's own log: {web_log}"
    );
    // PM2's cron_restart comes along.
    assert_eq!(d.describe_json("web")[0]["cron_restart"], "0 3 * * *");

    let tick = d.app("tick").unwrap();
    assert_eq!(tick["status"], "stopped", "{tick}");
    assert_eq!(tick["out_file"], "/dev/null");
    assert_eq!(tick["autorestart"], "never");
    assert_eq!(tick["interpreter"], "python3");
    d.pmd_ok(&["start", "tick"]);
    d.wait_online("tick");
    assert_runs(&d, "nap", "/bin/sleep", "1000");

    // Again: every app is known, nothing changes.
    let pids = pids_of(&d.list_json());
    let out = run_with_timeout(&mut cmd, PMD_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(said(&out).matches("skipped ").count(), 4, "{}", said(&out));
    assert_eq!(pids_of(&d.list_json()), pids);
}

fn assert_runs(d: &TestDaemon, name: &str, program: &str, arg1: &str) {
    let pid = d.wait_online(name);
    let cmdline = cmdline_of(pid);
    assert_eq!(cmdline, [program.to_string(), arg1.to_string()], "{name}");
}

/// Bad input: no dump, a dump that is not PM2's list, and a dump with an
/// app that cannot be read or run: clear errors, and nothing is created
/// for what failed.
#[test]
fn import_pm2_refuses_bad_dumps_and_changes_nothing_for_them() {
    let d = TestDaemon::start();
    let out = d.pmd_code(2, &["import", "pm2", "nowhere/dump.pm2"]);
    assert!(
        said(&out).contains("nowhere/dump.pm2: no such file; run `pm2 save` first"),
        "{}",
        said(&out)
    );
    let mut cmd = d.pmd_command(&["import", "pm2"]);
    cmd.env("PM2_HOME", d.work().join("empty"))
        .env_remove("HOME");
    let out = run_with_timeout(&mut cmd, PMD_TIMEOUT);
    assert_eq!(out.status.code(), Some(2), "{}", describe_output(&out));
    assert!(
        said(&out).contains("empty/dump.pm2: no such file"),
        "{}",
        said(&out)
    );

    d.write_file("corrupt.pm2", "[{\"name\": \"x\", \"pm_exec_path\": ");
    let out = d.pmd_code(1, &["import", "pm2", "corrupt.pm2"]);
    assert!(
        said(&out).contains("not PM2's saved process list: not JSON")
            && said(&out).contains("nothing was imported"),
        "{}",
        said(&out)
    );
    assert!(d.list_json().is_empty());

    d.write_file(
        "mixed.pm2",
        r#"[{"name":"good","pm_exec_path":"/bin/sleep","args":["1000"],"exec_interpreter":"none"},
            {"name":"gone","pm_exec_path":"/nonexistent/app.js","exec_interpreter":"none"},
            {"name":"odd","pm_exec_path":"/bin/sleep","args":{"not":"a list"}}]"#,
    );
    let out = d.pmd_code(1, &["import", "pm2", "mixed.pm2"]);
    let text = said(&out);
    assert!(text.contains("imported good"), "{text}");
    assert!(text.contains("not imported gone: "), "{text}");
    assert!(text.contains("not imported odd: `args` is"), "{text}");
    assert!(text.contains("2 apps of mixed.pm2 not imported"), "{text}");
    let names: Vec<Value> = d.list_json().iter().map(|a| a["name"].clone()).collect();
    assert_eq!(names, ["good"]);
}

/// What a command needs gets a clear usage error and sends nothing:
/// `start --update-env` of an existing app, `--update-env` with `--port`.
#[test]
fn update_env_misuse_is_a_usage_error() {
    let d = TestDaemon::start();
    d.write_executable("idle.sh", IDLE);
    d.pmd_ok(&["start", "./idle.sh", "--name", "api"]);
    let pid = d.wait_online("api");
    let out = d.pmd_code(2, &["start", "api", "--update-env"]);
    assert!(
        said(&out).contains("`pmd restart api --update-env`"),
        "{}",
        said(&out)
    );
    d.pmd_code(2, &["restart", "api", "--update-env", "--port", "3000"]);
    assert_eq!(d.wait_online("api"), pid, "nothing restarted");
}

/// A remote `pmd` (`--host`) sends its environment only with
/// `--update-env`: a laptop's variables do not reach a server's apps
/// unless asked for.
#[test]
fn a_remote_pmd_sends_its_environment_only_with_update_env() {
    let port = free_ports(1);
    let daemon = TestDaemon::start_with_args(&["--listen", &format!("127.0.0.1:{port}")]);
    let host = format!("http://127.0.0.1:{port}");
    let token = daemon.home().join("token");
    let mut client = RemoteClient::new();
    client.set_env("LAPTOP_ONLY", "yes");
    let script = daemon.write_executable("idle.sh", IDLE);
    let remote = |args: &[&str]| {
        let mut all = vec!["--host", host.as_str(), "--token-file", arg(&token)];
        all.extend_from_slice(args);
        client.pmd_ok(&all)
    };
    remote(&["start", arg(&script), "--name", "far"]);
    let pid = daemon.wait_online("far");
    assert!(!env_of(pid).contains_key("LAPTOP_ONLY"), "not sent");
    remote(&["restart", "far", "--update-env"]);
    wait_for("far restarted with the laptop's variable", WAIT, || {
        daemon
            .app("far")
            .and_then(|a| pid_of(&a))
            .is_some_and(|pid| env_of(pid).get("LAPTOP_ONLY").map(String::as_str) == Some("yes"))
    });
    remote(&["start", arg(&script), "--name", "near", "--update-env"]);
    assert_eq!(env_of(daemon.wait_online("near"))["LAPTOP_ONLY"], "yes");
    client.assert_no_local_daemon();
}

/// The daemon checks a captured environment as it checks `env`: a
/// variable it sets itself is refused, over gRPC, and nothing changes.
#[test]
fn the_daemon_refuses_a_captured_environment_it_cannot_pass() {
    let d = TestDaemon::start();
    d.write_executable("idle.sh", IDLE);
    let refused = block_on(async {
        let spec = v1::AppSpec {
            name: "api".into(),
            script: "./idle.sh".into(),
            caller_env: [("PMDAEMON_HOME".to_string(), "/elsewhere".to_string())].into(),
            ..Default::default()
        };
        d.client()
            .await
            .start_process(v1::StartProcessRequest {
                spec: Some(spec),
                caller_cwd: arg(d.work()).into(),
                ..Default::default()
            })
            .await
            .unwrap_err()
    });
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused
            .message()
            .starts_with("caller_env: PMDAEMON_HOME is set by the daemon"),
        "{refused:?}"
    );
    assert!(d.list_json().is_empty());

    d.pmd_ok(&["start", "./idle.sh", "--name", "api"]);
    let pid = d.wait_online("api");
    let refused = block_on(async {
        d.client()
            .await
            .restart_process(v1::RestartProcessRequest {
                target: "api".into(),
                update_env: true,
                caller_env: [("BAD=NAME".to_string(), "x".to_string())].into(),
                ..Default::default()
            })
            .await
            .unwrap_err()
    });
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().starts_with("caller_env: "), "{refused:?}");
    assert_eq!(d.wait_online("api"), pid, "not restarted");
}
