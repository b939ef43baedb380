//! Ecosystem files (issue #3): `pmd start|stop|restart|reload|delete FILE`
//! with YAML, JSON and `ecosystem.config.js` files in PM2's shape;
//! loading that starts nothing on an error; `--env NAME` and `--only`;
//! a second start that changes nothing and a changed definition that is
//! applied.

use std::collections::BTreeSet;
use std::fs;

use pmdaemon_tests::*;

use crate::{IDLE, said};

/// The names `pmd list` shows.
fn listed_names(d: &TestDaemon) -> BTreeSet<String> {
    d.list_json()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts that the daemon knows no app and runs no app process.
fn assert_nothing_started(d: &TestDaemon, what: &str) {
    assert_eq!(d.list_json(), Vec::<serde_json::Value>::new(), "{what}");
    assert!(
        d.app_pids().is_empty(),
        "{what}: processes were started: {:?}",
        d.app_pids()
    );
}

/// `LINE:COL` right after `file_name:` in `text`, if present.
fn location_after(text: &str, file_name: &str) -> Option<(usize, usize)> {
    let needle = format!("{file_name}:");
    text.match_indices(&needle).find_map(|(at, _)| {
        let mut parts = text[at + needle.len()..].splitn(3, ':');
        let line = parts.next()?.parse().ok()?;
        let col = parts
            .next()?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()?;
        Some((line, col))
    })
}

/// Asserts that `pid` runs `sleep 100000` (argv[0] is the absolute path
/// the daemon resolved).
fn assert_runs_sleep(pid: u32) {
    let argv = cmdline_of(pid);
    assert!(
        argv.len() == 2 && argv[0].ends_with("/sleep") && argv[1] == "100000",
        "pid {pid} runs {argv:?}"
    );
}

/// Waits until the app `name` runs a process whose environment has
/// `key=value`; returns that pid.
fn wait_env(d: &TestDaemon, name: &str, key: &str, value: &str) -> u32 {
    wait_for_value(&format!("{name} running with {key}={value}"), WAIT, || {
        d.app(name)
            .filter(|a| a["status"] == "online")
            .and_then(|a| pid_of(&a))
            .filter(|&pid| env_of(pid).get(key).map(String::as_str) == Some(value))
    })
}

/// A YAML file starts each of its apps with the script, arguments (a list,
/// or a string split on spaces), environment and cwd it gives; relative
/// `script` and `cwd` resolve against the file's directory, not the
/// caller's.
#[test]
fn a_yaml_file_starts_its_apps_as_described() {
    let d = TestDaemon::start();
    d.write_executable("eco/bin/idle.sh", IDLE);
    fs::create_dir_all(d.work().join("eco/data")).unwrap();
    let file = d.write_file(
        "eco/apps.yaml",
        r#"apps:
  - name: web
    script: ./bin/idle.sh
    args: ["--listen", "a b"]
    env:
      GREETING: hello world
      MODE: "web"
  - name: splitter
    script: bin/idle.sh
    args: one two
  - name: worker
    script: sleep
    args: "100000"
    cwd: data
"#,
    );
    // Run from elsewhere: paths must not resolve against the caller.
    let elsewhere = d.work().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let out = run_with_timeout(
        d.pmd_command(&["start", arg(&file)])
            .current_dir(&elsewhere),
        PMD_TIMEOUT,
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(
        listed_names(&d),
        ["splitter", "web", "worker"].map(String::from).into(),
    );
    let eco = fs::canonicalize(d.work().join("eco")).unwrap();

    let web = d.wait_online("web");
    let argv = cmdline_of(web);
    assert!(
        argv.ends_with(&["--listen".into(), "a b".into()]),
        "{argv:?}"
    );
    assert!(
        argv.iter().any(|a| a.ends_with("eco/bin/idle.sh")),
        "web does not run eco/bin/idle.sh: {argv:?}"
    );
    let env = env_of(web);
    assert_eq!(env["GREETING"], "hello world");
    assert_eq!(env["MODE"], "web");
    assert_eq!(
        cwd_of(web),
        eco,
        "an app without cwd runs in the file's dir"
    );

    let splitter = d.wait_online("splitter");
    let argv = cmdline_of(splitter);
    assert!(argv.ends_with(&["one".into(), "two".into()]), "{argv:?}");
    assert!(!env_of(splitter).contains_key("GREETING"), "env leaked");

    let worker = d.wait_online("worker");
    assert_runs_sleep(worker);
    assert_eq!(cwd_of(worker), eco.join("data"));
}

/// A JSON file works the same way, `instances` included; `pmd describe`
/// reports the arguments and environment it gave.
#[test]
fn a_json_file_starts_its_apps_as_described() {
    let d = TestDaemon::start();
    d.write_executable("idle.sh", IDLE);
    let file = d.write_file(
        "apps.json",
        r#"{
  "apps": [
    {
      "name": "jay",
      "script": "./idle.sh",
      "args": ["x", "y z"],
      "env": {"FORMAT": "json"},
      "instances": 2
    },
    {"name": "solo", "script": "sleep", "args": ["100000"]}
  ]
}
"#,
    );
    d.pmd_ok(&["start", arg(&file)]);
    let jays = d.wait_instances_online("jay", 2);
    for (index, jay) in jays.iter().enumerate() {
        assert_eq!(jay["instance"], index, "{jay}");
        let pid = pid_of(jay).unwrap();
        assert!(cmdline_of(pid).ends_with(&["x".into(), "y z".into()]));
        assert_eq!(env_of(pid)["FORMAT"], "json");
        assert_eq!(jay["args"], serde_json::json!(["x", "y z"]), "{jay}");
        assert_eq!(jay["env"]["FORMAT"], "json", "{jay}");
    }
    assert_runs_sleep(d.wait_online("solo"));
}

/// A file with one bad app (wrong type, invalid value, duplicate name;
/// YAML and JSON) is refused whole: the error names FILE:LINE:COL of the
/// problem, and no app of the file starts, not even the valid ones before
/// it. (An unknown key is a warning since issue 11: pm2_files.rs.)
#[test]
fn a_bad_file_is_located_and_starts_nothing() {
    let d = TestDaemon::start();
    let good = "  - name: good\n    script: sleep\n    args: \"100000\"\n";
    let cases: [(&str, String, usize, &[&str]); 4] = [
        (
            "wrongtype.yaml",
            format!("apps:\n{good}  - name: wrong\n    script: sleep\n    max_restarts: lots\n"),
            7,
            &["max_restarts"],
        ),
        (
            "badvalue.yaml",
            format!("apps:\n{good}  - name: bad\n    script: sleep\n    kill_timeout: soon\n"),
            7,
            &["kill_timeout"],
        ),
        (
            "duplicate.yaml",
            format!("apps:\n{good}  - script: sleep\n    name: good\n"),
            6,
            &["good"],
        ),
        (
            "wrongtype.json",
            r#"{
  "apps": [
    {"name": "good", "script": "sleep", "args": ["100000"]},
    {"name": "wrong", "script": "sleep", "instances": [2]}
  ]
}
"#
            .to_owned(),
            4,
            &["instances"],
        ),
    ];
    for (file_name, text, line, words) in cases {
        let file = d.write_file(file_name, &text);
        let out = d.pmd(&["start", arg(&file)]);
        let code = out.status.code();
        assert!(
            code == Some(1) || code == Some(2),
            "{file_name}: expected exit 1 or 2\n{}",
            describe_output(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let at = location_after(&stderr, file_name);
        assert!(
            matches!(at, Some((l, c)) if l == line && c > 0),
            "{file_name}: expected {file_name}:{line}:COL in the error, found {at:?}\n{stderr}"
        );
        for word in words {
            assert!(
                stderr.contains(word),
                "{file_name}: the error does not say {word:?}\n{stderr}"
            );
        }
        assert_nothing_started(&d, file_name);
    }
}

/// `--env production` merges `env_production` over `env` (its variables
/// win, the others stay); without it the app gets `env` alone.
#[test]
fn env_production_is_merged_over_env_with_dash_dash_env() {
    let d = TestDaemon::start();
    let file = d.write_file(
        "apps.yaml",
        r#"apps:
  - name: envy
    script: sleep
    args: "100000"
    env:
      SHARED: base
      ONLY_BASE: kept
    env_production:
      SHARED: prod
      ONLY_PROD: here
"#,
    );
    d.pmd_ok(&["start", arg(&file)]);
    let pid = d.wait_online("envy");
    let env = env_of(pid);
    assert_eq!(env["SHARED"], "base");
    assert_eq!(env["ONLY_BASE"], "kept");
    assert!(!env.contains_key("ONLY_PROD"), "env_production applied");

    d.pmd_ok(&["delete", arg(&file)]);
    assert_nothing_started(&d, "after delete FILE");
    d.pmd_ok(&["start", arg(&file), "--env", "production"]);
    let pid = d.wait_online("envy");
    let env = env_of(pid);
    assert_eq!(env["SHARED"], "prod");
    assert_eq!(env["ONLY_BASE"], "kept");
    assert_eq!(env["ONLY_PROD"], "here");
}

/// `--only a,c` starts just those apps of the file; a later `--only b`
/// adds b and leaves the others alone.
#[test]
fn only_limits_a_file_to_the_named_apps() {
    let d = TestDaemon::start();
    let app = |name: &str| format!("  - name: {name}\n    script: sleep\n    args: \"100000\"\n");
    let file = d.write_file(
        "apps.yaml",
        &format!("apps:\n{}{}{}", app("alpha"), app("beta"), app("gamma")),
    );
    d.pmd_ok(&["start", arg(&file), "--only", "alpha,gamma"]);
    assert_eq!(
        listed_names(&d),
        ["alpha", "gamma"].map(String::from).into()
    );
    let alpha = d.wait_online("alpha");
    let gamma = d.wait_online("gamma");

    d.pmd_ok(&["start", arg(&file), "--only", "beta"]);
    d.wait_online("beta");
    assert_eq!(d.wait_online("alpha"), alpha);
    assert_eq!(d.wait_online("gamma"), gamma);
    assert_eq!(d.list_json().len(), 3);
}

/// Starting the same file twice succeeds, changes nothing (same pids, no
/// restart) and says the apps are already running.
#[test]
fn starting_a_file_twice_is_idempotent() {
    let d = TestDaemon::start();
    let file = d.write_file(
        "apps.yaml",
        "apps:\n  - name: once\n    script: sleep\n    args: \"100000\"\n    instances: 2\n  \
         - name: twice\n    script: sleep\n    args: \"100000\"\n",
    );
    d.pmd_ok(&["start", arg(&file)]);
    let once = pids_of(&d.wait_instances_online("once", 2));
    let twice = d.wait_online("twice");

    let out = d.pmd_code(0, &["start", arg(&file)]);
    let text = said(&out).to_lowercase();
    assert!(text.contains("already running"), "{text}");
    assert_eq!(pids_of(&d.wait_instances_online("once", 2)), once);
    assert_eq!(d.wait_online("twice"), twice);
    assert_eq!(d.list_json().len(), 3);
    assert!(
        d.list_json().iter().all(|a| a["restarts"] == 0),
        "{:?}",
        d.list_json()
    );
    let mut running = d.app_pids();
    running.sort_unstable();
    let mut expected = [once.as_slice(), &[twice]].concat();
    expected.sort_unstable();
    assert_eq!(running, expected, "duplicate processes");
}

/// A changed `env` in the file is applied by `pmd start FILE` (new pid, the
/// app sees the new value, the output names the changed field) and by
/// `pmd restart FILE`.
#[test]
fn a_changed_env_is_applied_by_start_and_by_restart() {
    let d = TestDaemon::start();
    let write = |colour: &str| {
        d.write_file(
            "apps.yaml",
            &format!(
                "apps:\n  - name: chameleon\n    script: sleep\n    args: \"100000\"\n    \
                 env:\n      COLOUR: {colour}\n"
            ),
        )
    };
    let file = write("red");
    d.pmd_ok(&["start", arg(&file)]);
    let red = wait_env(&d, "chameleon", "COLOUR", "red");

    write("blue");
    let out = d.pmd_code(0, &["start", arg(&file)]);
    let text = said(&out);
    assert!(
        text.lines()
            .any(|l| l.contains("chameleon") && l.contains("env") && l.contains("chang")),
        "the output does not say that env changed: {text}"
    );
    let blue = wait_env(&d, "chameleon", "COLOUR", "blue");
    assert_ne!(blue, red);
    assert!(!pid_alive(red), "the old process {red} survived");

    write("green");
    d.pmd_ok(&["restart", arg(&file)]);
    let green = wait_env(&d, "chameleon", "COLOUR", "green");
    assert_ne!(green, blue);
    assert_eq!(d.list_json().len(), 1);
}

/// `pmd stop|restart|reload|delete FILE` act on exactly the file's apps: an
/// app started otherwise is left alone.
#[test]
fn file_verbs_act_on_exactly_the_files_apps() {
    let d = TestDaemon::start();
    d.pmd_ok(&["start", "sleep", "--name", "outsider", "--", "100000"]);
    let outsider = d.wait_online("outsider");
    let file = d.write_file(
        "apps.yaml",
        "apps:\n  - name: one\n    script: sleep\n    args: \"100000\"\n  \
         - name: two\n    script: sleep\n    args: \"100000\"\n    min_uptime: 100\n",
    );
    d.pmd_ok(&["start", arg(&file)]);
    let (one, two) = (d.wait_online("one"), d.wait_online("two"));

    d.pmd_ok(&["stop", arg(&file)]);
    d.wait_status("one", "stopped");
    d.wait_status("two", "stopped");
    assert!(!pid_alive(one) && !pid_alive(two));

    d.pmd_ok(&["restart", arg(&file)]);
    let (one, two) = (d.wait_online("one"), d.wait_online("two"));

    d.pmd_ok(&["reload", arg(&file)]);
    let one_after = d.wait_online("one");
    let two_after = d.wait_online("two");
    assert_ne!(one_after, one, "reload FILE did not replace one");
    assert_ne!(two_after, two, "reload FILE did not replace two");

    d.pmd_ok(&["delete", arg(&file)]);
    assert_eq!(listed_names(&d), ["outsider".to_owned()].into());
    assert_eq!(d.wait_online("outsider"), outsider);
    assert_eq!(d.app("outsider").unwrap()["restarts"], 0);
}

/// An `ecosystem.config.js` is evaluated with node (JavaScript, not just
/// JSON) and its apps start. Skipped when node is not on PATH.
#[test]
fn an_ecosystem_config_js_is_loaded_with_node() {
    if node().is_none() {
        eprintln!("skipped: node is not on PATH");
        return;
    }
    let d = TestDaemon::start();
    let file = d.write_file(
        "ecosystem.config.js",
        r#"const base = { script: "sleep", args: "100000" };
module.exports = {
  apps: ["js-one", "js-two"].map((name, i) => ({
    ...base,
    name,
    env: { FROM: "node-" + (i + 1) * 2 },
  })),
};
"#,
    );
    assert_eq!(file.parent(), Some(d.work()));
    d.pmd_ok(&["start", "ecosystem.config.js"]);
    assert_eq!(env_of(d.wait_online("js-one"))["FROM"], "node-2");
    assert_eq!(env_of(d.wait_online("js-two"))["FROM"], "node-4");
}
