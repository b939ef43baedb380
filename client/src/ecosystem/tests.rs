//! The loader as a spec: what files mean, and what errors say (file, line,
//! column, app, and a way out).

use std::path::Path;

use pmdaemon_proto::v1::health_check::Probe;
use pmdaemon_proto::v1::{AppSpec, Dependency, DependencyCondition, HealthCheck, RestartPolicy};

use super::*;

fn yaml(text: &str) -> anyhow::Result<Vec<AppDef>> {
    parse("ecosystem.yaml", Format::Yaml, text).map(|p| p.apps)
}

fn json(text: &str) -> anyhow::Result<Vec<AppDef>> {
    parse("ecosystem.json", Format::Json, text).map(|p| p.apps)
}

fn yaml_err(text: &str) -> String {
    yaml(text).unwrap_err().to_string()
}

fn eco(text: &str) -> Ecosystem {
    let parsed = parse("eco.yaml", Format::Yaml, text).unwrap();
    Ecosystem {
        display: "eco.yaml".into(),
        dir: "/srv".into(),
        apps: parsed.apps,
        notes: parsed.notes,
        warnings: parsed.warnings,
    }
}

const ALL_FIELDS_YAML: &str = r#"
apps:
  - name: api
    script: ./server.js
    args: --port 80 "two words"
    interpreter: node
    interpreter_args: [--max-old-space-size=64, --inspect]
    cwd: api
    instances: 4
    exec_mode: cluster
    env:
      NODE_ENV: development
      WORKERS: 2
      DEBUG: true
    env_production:
      NODE_ENV: production
    autorestart: on-failure
    max_restarts: 3
    start_limit_burst: 20
    start_limit_interval: 30s
    min_uptime: 5s
    restart_delay: 250
    exp_backoff_restart_delay: 100
    exp_backoff_max: 10s
    kill_timeout: 1600
    stop_signal: SIGINT
    time: true
    watch: [src, lib]
    ignore_watch: ["*.log", tmp]
    watch_delay: 2s
    out_file: logs/out.log
    error_file: logs/err.log
    port: 3000-3003
    port_env: HTTP_PORT
    log_max_size: 10M
    log_max_files: 3
"#;

fn all_fields_spec() -> AppSpec {
    let mut spec = AppSpec {
        name: "api".into(),
        script: "./server.js".into(),
        args: vec!["--port".into(), "80".into(), "two words".into()],
        interpreter: Some("node".into()),
        interpreter_args: vec!["--max-old-space-size=64".into(), "--inspect".into()],
        cwd: "api".into(),
        instances: Some(4),
        max_restarts: Some(3),
        start_limit_burst: Some(20),
        start_limit_interval_ms: Some(30_000),
        min_uptime_ms: Some(5000),
        restart_delay_ms: Some(250),
        exp_backoff_initial_ms: Some(100),
        exp_backoff_max_ms: Some(10_000),
        kill_timeout_ms: Some(1600),
        stop_signal: "SIGINT".into(),
        time: true,
        watch: true,
        watch_paths: vec!["src".into(), "lib".into()],
        ignore_watch: vec!["*.log".into(), "tmp".into()],
        watch_delay_ms: Some(2000),
        out_file: "logs/out.log".into(),
        error_file: "logs/err.log".into(),
        port: "3000-3003".into(),
        port_env: "HTTP_PORT".into(),
        log_max_bytes: Some(10 << 20),
        log_max_files: Some(3),
        ..Default::default()
    };
    spec.set_autorestart(RestartPolicy::OnFailure);
    spec
}

/// Every field of a YAML app lands in the spec it sends.
#[test]
fn yaml_with_every_field() {
    let apps = yaml(ALL_FIELDS_YAML).unwrap();
    assert_eq!(apps.len(), 1);
    let app = &apps[0];
    assert_eq!(app.spec, all_fields_spec());
    assert_eq!(app.env["NODE_ENV"], "development");
    assert_eq!(app.env["WORKERS"], "2");
    assert_eq!(app.env["DEBUG"], "true");
    assert_eq!(app.environments["production"]["NODE_ENV"], "production");
}

/// The same app written as JSON means the same thing.
#[test]
fn json_with_every_field() {
    let text = r#"{
  "apps": [
    {
      "name": "api",
      "script": "./server.js",
      "args": ["--port", 80, "two words"],
      "interpreter": "node",
      "interpreter_args": "--max-old-space-size=64 --inspect",
      "cwd": "api",
      "instances": 4,
      "exec_mode": "cluster_mode",
      "env": {"NODE_ENV": "development", "WORKERS": 2, "DEBUG": true},
      "env_production": {"NODE_ENV": "production"},
      "autorestart": "on-failure",
      "max_restarts": 3,
      "start_limit_burst": 20,
      "start_limit_interval": 30000,
      "min_uptime": "5s",
      "restart_delay": 250,
      "exp_backoff_restart_delay": 100,
      "exp_backoff_max": "10s",
      "kill_timeout": 1600,
      "kill_signal": "int",
      "time": true,
      "watch": ["src", "lib"],
      "ignore_watch": ["*.log", "tmp"],
      "watch_delay": 2000,
      "out_file": "logs/out.log",
      "error_file": "logs/err.log",
      "port": "3000-3003",
      "port_env": "HTTP_PORT",
      "log_max_size": 10485760,
      "log_max_files": "3"
    }
  ]
}"#;
    let apps = json(text).unwrap();
    assert_eq!(apps[0].spec, all_fields_spec());
    assert_eq!(apps[0].env, yaml(ALL_FIELDS_YAML).unwrap()[0].env);
}

/// A minimal app sends only what it says: the daemon's defaults apply.
#[test]
fn a_minimal_app_leaves_the_rest_unset() {
    let apps = yaml("apps:\n  - script: ./worker.py\n").unwrap();
    assert_eq!(
        apps[0].spec,
        AppSpec {
            name: "worker".into(),
            script: "./worker.py".into(),
            ..Default::default()
        }
    );
}

/// A bare list (PM2's `module.exports = [...]`) is a list of apps too.
#[test]
fn a_bare_list_of_apps() {
    let apps = json(r#"[{"name": "a", "script": "a.sh"}, {"script": "b.sh"}]"#).unwrap();
    let names: Vec<_> = apps.iter().map(|a| a.spec.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
}

fn yaml_warnings(text: &str) -> Vec<String> {
    parse("ecosystem.yaml", Format::Yaml, text)
        .unwrap()
        .warnings
}

/// Unknown keys are accepted with a warning at their line and column (PM2
/// ignores them), with one suggestion when one is close, never a list.
#[test]
fn unknown_field_names_its_place_and_a_suggestion() {
    let warnings = yaml_warnings("apps:\n  - name: api\n    script: a.js\n    max_restart: 3\n");
    assert_eq!(
        warnings,
        [
            "ecosystem.yaml:4:5: app 1 (api): unknown field `max_restart`, did you mean \
          `max_restarts`? (ignored)"
        ]
    );
    let parsed = parse(
        "ecosystem.json",
        Format::Json,
        "{\"apps\": [\n  {\"script\": \"a.js\",\n   \"intances\": 2, \"name\": \"web\"}\n]}",
    )
    .unwrap();
    assert_eq!(parsed.apps[0].spec.instances, None);
    assert_eq!(
        parsed.warnings,
        [
            "ecosystem.json:3:4: app 1 (web): unknown field `intances`, did you mean `instances`? \
          (ignored)"
        ]
    );
    // Nothing near: no suggestion, and no list of fields either.
    let warnings = yaml_warnings("apps:\n  - script: a.js\n    zzzzzz: 1\n");
    assert_eq!(
        warnings,
        [
            "ecosystem.yaml:3:5: app 1 (a): unknown field `zzzzzz`, ignored (PM2 does not know it \
          either)"
        ]
    );
    // `cmd` is one edit from `cwd`, but means the command.
    let warnings = yaml_warnings("apps:\n  - script: a.js\n    cmd: npm start\n");
    assert!(warnings[0].ends_with("unknown field `cmd`, did you mean `script`? (ignored)"));
}

/// A key set to null is a key not given, as in PM2 (YAML's bare `NULL`
/// and `~` are null too; PM2's string "NULL" discards a log).
#[test]
fn null_values_are_keys_not_given() {
    let text = "apps:\n  - script: a.js\n    name: null\n    out_file: NULL\n    error_file: ~\n    \
                log_file: null\n    max_restarts: null\n    env: null\n    instances: ~\n";
    let apps = yaml(text).unwrap();
    let spec = &apps[0].spec;
    assert_eq!(spec.name, "a");
    assert_eq!((spec.out_file.as_str(), spec.error_file.as_str()), ("", ""));
    assert_eq!(spec.log_file, None);
    assert_eq!((spec.max_restarts, spec.instances), (None, None));
    assert!(apps[0].env.is_empty());
    assert!(yaml_warnings(text).is_empty());
    let apps = json(r#"{"apps": [{"script": "a.js", "out_file": null, "cwd": null}]}"#).unwrap();
    assert_eq!(
        (apps[0].spec.out_file.as_str(), apps[0].spec.cwd.as_str()),
        ("", "")
    );
}

/// PM2's keys that pmd does not honour (yet) are accepted with a warning
/// that says what to use; PM2's aliases of pmd's keys are read as them.
#[test]
fn pm2_keys_are_accepted_honoured_or_warned() {
    let apps = yaml(
        "apps:\n  - exec: a.js\n    node_args: --inspect\n    output: o.log\n    err_file: \
         e.log\n    exec_interpreter: node\n    kill_signal: SIGINT\n    maxRestarts: 4\n",
    )
    .unwrap();
    let spec = &apps[0].spec;
    assert_eq!(spec.script, "a.js");
    assert_eq!(spec.interpreter_args, ["--inspect"]);
    assert_eq!(
        (spec.out_file.as_str(), spec.error_file.as_str()),
        ("o.log", "e.log")
    );
    assert_eq!(spec.interpreter.as_deref(), Some("node"));
    assert_eq!(spec.stop_signal, "SIGINT");
    assert_eq!(spec.max_restarts, Some(4));
    // PM2's log keys are honoured, in their aliases too.
    let text = "apps:\n  - script: a.js\n    log_date_format: YYYY-MM-DD HH:mm Z\n    \
                wait_ready: true\n    vizion: false\n    combine_logs: true\n    log: true\n    \
                log_type: json\n";
    let spec = &yaml(text).unwrap()[0].spec;
    assert_eq!(spec.log_date_format, "YYYY-MM-DD HH:mm Z");
    assert!(spec.merge_logs);
    assert_eq!(spec.log_file.as_deref(), Some(""));
    assert_eq!(spec.log_type, pmdaemon_proto::v1::LogType::Json as i32);
    assert!(spec.wait_ready);
    let warnings = yaml_warnings(text);
    assert_eq!(
        warnings,
        [
            "ecosystem.yaml:5:5: app 1 (a): `vizion` is ignored by pmd: PM2's version-control \
             metadata",
        ]
    );
    // What PM2 would print as a date is refused where it is written.
    let err = yaml_err("apps:\n  - script: a.js\n    log_date_format: '---'\n");
    assert!(
        err.starts_with("ecosystem.yaml:3:22: app 1 (a): `log_date_format`: ")
            && err.contains("no date token"),
        "{err}"
    );
    let err = yaml_err("apps:\n  - script: a.js\n    log_type: xml\n");
    assert!(
        err.contains("`log_type`: \"xml\" is not a log type"),
        "{err}"
    );
    let err = yaml_err("apps:\n  - script: a.js\n    log_file: 3\n");
    assert!(err.contains("true, false or a path"), "{err}");
}

/// One warning per key and file, at its first occurrence, naming the
/// other apps that have it.
#[test]
fn one_warning_per_key_and_file() {
    let text = "apps:\n  - name: a\n    script: a.js\n    uid: www\n  - name: \
                b\n    script: b.js\n    user: www\n    time: true\n  - name: c\n    \
                script: c.js\n    uid: web\n    pid_file: /tmp/x\n";
    let warnings = yaml_warnings(text);
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(
        warnings[0].starts_with("ecosystem.yaml:4:5: app 1 (a): `uid` is ignored")
            && warnings[0].ends_with("(also in apps 2, 3)"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].starts_with("ecosystem.yaml:12:5: app 3 (c): `pid_file` is ignored"),
        "{}",
        warnings[1]
    );
}

/// Warnings found before an error are listed after it.
#[test]
fn an_error_lists_the_warnings_before_it() {
    let err = yaml_err("apps:\n  - script: a.js\n    vizion: true\n    instances: many\n");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("ecosystem.yaml:4:16: app 1 (a): `instances`"),
        "{err}"
    );
    assert!(
        lines[1].starts_with("warning: ecosystem.yaml:3:5: app 1 (a): `vizion` is ignored"),
        "{err}"
    );
}

/// A value of the wrong type is refused at the value, naming the field.
#[test]
fn wrong_type_names_the_value_location() {
    let err = yaml_err("apps:\n  - name: api\n    script: a.js\n    instances: {a: 1}\n");
    assert_eq!(
        err,
        "ecosystem.yaml:4:16: app 1 (api): `instances`: expected a number or \"max\", found a map"
    );
    let err = yaml_err("apps:\n  - script: a.js\n    time: yes please\n");
    assert_eq!(
        err,
        "ecosystem.yaml:3:11: app 1 (a): `time`: expected true or false, found the string \
         \"yes please\""
    );
    let err = json("{\"apps\": [{\"script\": \"a.js\",\n \"env\": {\"A\": [1]}}]}")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("ecosystem.json:2:")
            && err.ends_with("`env`: A is a list; values are strings, numbers or booleans"),
        "{err}"
    );
    // The app's name comes from the file even when `name` follows the error.
    let err = yaml_err("apps:\n  - script: a.js\n    args: 3\n    name: late\n");
    assert!(err.contains("app 1 (late): `args`"), "{err}");
}

/// Two apps with one name: the second `name` is the error.
#[test]
fn duplicate_names_are_refused_where_they_repeat() {
    let err = yaml_err(
        "apps:\n  - name: api\n    script: a.js\n  - name: web\n    script: b.js\n  - name: api\n    script: c.js\n",
    );
    assert_eq!(
        err,
        "ecosystem.yaml:6:11: app 3 (api): `name`: \"api\" is already the name of app 1"
    );
    // A name taken from the script's file name counts too.
    let err = yaml_err("apps:\n  - script: ./api.js\n  - name: api\n    script: b.js\n");
    assert!(
        err.contains("app 2 (api): `name`: \"api\" is already the name of app 1"),
        "{err}"
    );
    let err = yaml_err("apps:\n  - name: api\n    script: b.js\n  - script: lib/api.js\n");
    assert!(
        err.starts_with("ecosystem.yaml:4:")
            && err
                .contains("app 2 (api): no `name`, and the script's file name \"api\" is already"),
        "{err}"
    );
}

/// Bad durations, signals, ports, names, counts: each at its value.
#[test]
fn invalid_values_are_refused_with_their_location() {
    let cases = [
        (
            "kill_timeout: soon",
            "ecosystem.yaml:3:19: app 1 (a): `kill_timeout`: \"soon\" is not a duration",
        ),
        (
            "min_uptime: -5",
            "ecosystem.yaml:3:17: app 1 (a): `min_uptime`: -5 is negative",
        ),
        (
            "restart_delay: 48h",
            "ecosystem.yaml:3:20: app 1 (a): `restart_delay`: 2days is longer than the 24h maximum",
        ),
        (
            "stop_signal: SIGSTOP",
            "ecosystem.yaml:3:18: app 1 (a): `stop_signal`: SIGSTOP does not stop a process",
        ),
        (
            "stop_signal: SIGNOPE",
            "ecosystem.yaml:3:18: app 1 (a): `stop_signal`: \"SIGNOPE\" is not a signal",
        ),
        (
            "port: 3003-3000",
            "ecosystem.yaml:3:11: app 1 (a): `port`: invalid port \"3003-3000\": the range runs \
             backwards",
        ),
        (
            "port: 70000",
            "ecosystem.yaml:3:11: app 1 (a): `port`: invalid port \"70000\": 70000 is too large",
        ),
        (
            "port: auto:4000",
            "ecosystem.yaml:3:11: app 1 (a): `port`: invalid port \"auto:4000\": auto: needs a range",
        ),
        (
            "instances: -2",
            "ecosystem.yaml:3:16: app 1 (a): `instances`: -2 is negative",
        ),
        (
            "instances: -4",
            "ecosystem.yaml:3:16: app 1 (a): `instances`: -4 is negative",
        ),
        (
            "max_restarts: -1",
            "ecosystem.yaml:3:19: app 1 (a): `max_restarts`: -1 is negative",
        ),
        (
            "log_max_files: 1000",
            "ecosystem.yaml:3:20: app 1 (a): `log_max_files`: 1000 is more than 100",
        ),
        (
            "log_max_size: 0",
            "ecosystem.yaml:3:19: app 1 (a): `log_max_size`: must be more than 0 bytes",
        ),
        (
            "port_env: 1PORT",
            "ecosystem.yaml:3:15: app 1 (a): `port_env`: \"1PORT\" is not an environment variable",
        ),
        (
            "exec_mode: threads",
            "ecosystem.yaml:3:16: app 1 (a): `exec_mode`: \"threads\" is not an exec mode",
        ),
        (
            "autorestart: sometimes",
            "ecosystem.yaml:3:18: app 1 (a): `autorestart`: \"sometimes\" is not a restart policy",
        ),
        (
            "args: \"'unclosed\"",
            "ecosystem.yaml:3:11: app 1 (a): `args`: cannot split",
        ),
        (
            "cwd: \"\"",
            "ecosystem.yaml:3:10: app 1 (a): `cwd`: is empty",
        ),
        (
            "watch: []",
            "ecosystem.yaml:3:12: app 1 (a): `watch`: the list is empty",
        ),
        (
            "env_: {A: 1}",
            "ecosystem.yaml:3:5: app 1 (a): `env_`: \"\" is not an environment name",
        ),
    ];
    for (line, expected) in cases {
        let text = format!("apps:\n  - name: a\n    {line}\n    script: a.js\n");
        let err = yaml_err(&text);
        assert!(
            err.starts_with(expected),
            "{line}:\n  got  {err}\n  want {expected}"
        );
    }
    let err = yaml_err("apps:\n  - name: all\n    script: a.js\n");
    assert!(
        err.starts_with("ecosystem.yaml:2:11: app 1 (all): `name`: 'all' cannot be an app name"),
        "{err}"
    );
}

/// What concerns the whole app or file is reported at the app or the file.
#[test]
fn structural_errors() {
    let err = yaml_err("apps:\n  - name: a\n    args: x\n");
    assert_eq!(
        err,
        "ecosystem.yaml:2:5: app 1 (a): missing `script`: the file or command to run"
    );
    let err = yaml_err("apps:\n  - name: a\n    script: a.js\n    script: b.js\n");
    assert!(err.contains("script"), "{err}");
    let err = json(r#"{"apps": [{"script": "a", "stop_signal": "INT", "kill_signal": "INT"}]}"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`kill_signal` and `stop_signal` both set `stop_signal`; give only one"),
        "{err}"
    );
    assert!(yaml_err("apps: []\n").contains("the list of apps is empty"));
    assert!(yaml_err("").contains("the file is empty"));
    let err = yaml_err("appz:\n  - script: a.js\n");
    assert_eq!(
        err,
        "ecosystem.yaml:1:1: unknown top-level key `appz`, did you mean `apps`?"
    );
    let err = yaml_err("foo: 1\n");
    assert!(err.contains("unknown top-level key `foo`"), "{err}");
    let err = yaml_err("deploy: {}\n");
    assert!(err.contains("no `apps:` list and no `script`"), "{err}");
    let err = yaml_err("apps:\n  - 3\n");
    assert!(err.starts_with("ecosystem.yaml:2:5: app 1: "), "{err}");
    let err = yaml_err("apps:\n  - name: a\n    script: [\n");
    assert!(err.starts_with("ecosystem.yaml:"), "{err}");
    let err = json("{\"apps\": [{\"script\": \"a\"}]} trailing")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("ecosystem.json:1:"), "{err}");
}

/// `deploy:` is accepted (PM2 files have it) and a note says it is ignored.
#[test]
fn deploy_sections_are_ignored_with_a_note() {
    let Parsed { apps, notes, .. } = parse(
        "e.yaml",
        Format::Yaml,
        "deploy:\n  production: {user: x}\napps:\n  - script: a.js\n",
    )
    .unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(notes.len(), 1);
    assert!(notes[0].contains("`deploy` section is ignored"));
}

/// `--env production` merges env_production over env; an app without that
/// section keeps its env alone.
#[test]
fn environments_merge_over_env() {
    let file = eco(
        "apps:\n  - name: api\n    script: a.js\n    env: {A: base, B: base}\n    env_production: {B: prod, C: prod}\n  - name: worker\n    script: w.js\n    env: {A: w}\n",
    );
    let specs = file.specs(Some("production"), &[]).unwrap();
    let env = |i: usize, k: &str| specs[i].env.get(k).cloned();
    assert_eq!(env(0, "A").as_deref(), Some("base"));
    assert_eq!(env(0, "B").as_deref(), Some("prod"));
    assert_eq!(env(0, "C").as_deref(), Some("prod"));
    assert_eq!(env(1, "A").as_deref(), Some("w"));
    assert_eq!(specs[1].env.len(), 1);
    let plain = file.specs(None, &[]).unwrap();
    assert_eq!(plain[0].env.get("B").map(String::as_str), Some("base"));
    assert!(!plain[0].env.contains_key("C"));
    assert!(file.has_environment("production"));
    assert!(!file.has_environment("staging"));
}

/// `--only` keeps the named apps in file order; an unknown name is a usage
/// error that lists the file's apps.
#[test]
fn only_selects_apps() {
    let file = eco(
        "apps:\n  - name: api\n    script: a.js\n  - name: web\n    script: w.js\n  - name: cron\n    script: c.js\n",
    );
    let only = |names: &[&str]| -> Vec<String> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        file.specs(None, &names)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect()
    };
    assert_eq!(only(&["cron", "api"]), ["api", "cron"]);
    assert_eq!(only(&[]), ["api", "web", "cron"]);
    let err = file.specs(None, &["wbe".into()]).unwrap_err();
    assert!(err.is::<crate::UsageError>());
    assert_eq!(
        err.to_string(),
        "--only: eco.yaml has no app named wbe (did you mean web?); its apps are api, web, cron"
    );
}

/// `instances: max` is 0 on the wire, -1 passes, and cluster mode without
/// instances means max, as in PM2.
#[test]
fn instances_max_and_cluster_mode() {
    let apps = yaml(
        "apps:\n  - {name: a, script: a.js, instances: max}\n  - {name: b, script: b.js, instances: -1}\n  - {name: c, script: c.js, exec_mode: cluster}\n  - {name: d, script: d.js, exec_mode: fork}\n  - {name: e, script: e.js, exec_mode: cluster, instances: 2}\n  - {name: f, script: f.js, instances: \"3\"}\n",
    )
    .unwrap();
    let instances: Vec<_> = apps.iter().map(|a| a.spec.instances).collect();
    assert_eq!(
        instances,
        [Some(0), Some(-1), Some(0), None, Some(2), Some(3)]
    );
}

/// `args` and `interpreter_args` strings split like a shell; `watch` takes
/// a bool or paths; autorestart takes bools or policy words.
#[test]
fn shapes_of_args_watch_and_autorestart() {
    let apps = yaml(
        r#"apps:
  - name: a
    script: a.sh
    args: "-c 'echo hi' --x=\"y z\""
    watch: true
    autorestart: false
  - name: b
    script: b.sh
    args: [one, 2]
    watch: src
    ignore_watch: "*.tmp"
    autorestart: true
"#,
    )
    .unwrap();
    assert_eq!(apps[0].spec.args, ["-c", "echo hi", "--x=y z"]);
    assert!(apps[0].spec.watch && apps[0].spec.watch_paths.is_empty());
    assert_eq!(apps[0].spec.autorestart(), RestartPolicy::Never);
    assert_eq!(apps[1].spec.args, ["one", "2"]);
    assert!(apps[1].spec.watch);
    assert_eq!(apps[1].spec.watch_paths, ["src"]);
    assert_eq!(apps[1].spec.ignore_watch, ["*.tmp"]);
    assert_eq!(apps[1].spec.autorestart(), RestartPolicy::Always);
    assert_eq!(apps[1].spec.port, "");
    let port = yaml("apps:\n  - {script: a.js, port: 8080}\n").unwrap();
    assert_eq!(port[0].spec.port, "8080");
}

/// Which paths are ecosystem files.
#[test]
fn file_names_that_are_ecosystem_files() {
    let fmt = |p: &str| format_of(Path::new(p));
    assert_eq!(fmt("ecosystem.yaml"), Some(Format::Yaml));
    assert_eq!(fmt("dir/apps.YML"), Some(Format::Yaml));
    assert_eq!(fmt("apps.json"), Some(Format::Json));
    assert_eq!(fmt("ecosystem.config.js"), Some(Format::JavaScript));
    assert_eq!(fmt("pm2.config.cjs"), Some(Format::JavaScript));
    assert_eq!(fmt("/x/app.config.mjs"), Some(Format::JavaScript));
    assert_eq!(fmt("ecosystem.js"), Some(Format::JavaScript));
    assert_eq!(fmt("ecosystem-prod.js"), Some(Format::JavaScript));
    assert_eq!(fmt("server.js"), None);
    assert_eq!(fmt("config.js"), None);
    assert_eq!(fmt("run.sh"), None);
    assert_eq!(fmt("yaml"), None);
    assert!(!is_file_target("/nonexistent/ecosystem.yaml"));
}

/// Without node, a JS file's error says how to convert it.
#[test]
fn js_without_node_explains_the_conversion() {
    let err = node::evaluate(
        Path::new("/x/ecosystem.config.js"),
        "ecosystem.config.js",
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("`node` is not on PATH"), "{err}");
    assert!(
        err.contains(
            "node -e 'console.log(JSON.stringify(require(\"./ecosystem.config.js\"), null, 2))' > ecosystem.json"
        ),
        "{err}"
    );
    assert!(err.contains("YAML"), "{err}");
    let mjs = node::conversion_hint("app.config.mjs");
    assert!(mjs.contains("--input-type=module"), "{mjs}");
}

/// A temp directory removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("pmd-eco-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `load` reads a YAML file and reports its directory as caller_cwd.
#[test]
fn load_reads_a_file_and_its_directory() {
    let dir = TempDir::new("load");
    let path = dir.write("ecosystem.yml", "apps:\n  - script: ./a.js\n");
    let file = load(&path, false).unwrap();
    assert_eq!(
        file.dir,
        std::fs::canonicalize(&dir.0).unwrap().to_str().unwrap()
    );
    assert_eq!(file.names(), ["a"]);
    assert!(is_file_target(&path));
    let err = load(&dir.0.join("missing.yaml").to_string_lossy(), false)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("cannot open "), "{err}");
}

/// PM2's own format: `module.exports`, ESM default and named exports, a
/// bare array; errors point into the evaluated JSON and say so.
#[test]
fn js_files_evaluated_with_node() {
    let Some(node_bin) = node::find() else {
        println!("SKIPPED js_files_evaluated_with_node: `node` is not on PATH");
        return;
    };
    let _ = node_bin;
    let dir = TempDir::new("js");
    let cjs = dir.write(
        "ecosystem.config.js",
        r#"const base = { NODE_ENV: "development" };
module.exports = {
  apps: [{
    name: "api",
    script: "./server.js",
    instances: "max",
    env: base,
    env_production: { NODE_ENV: "production", PORT: 8080 },
    kill_timeout: 3000,
  }],
};
"#,
    );
    let file = load(&cjs, false).unwrap();
    let spec = &file.specs(Some("production"), &[]).unwrap()[0];
    assert_eq!(spec.name, "api");
    assert_eq!(spec.instances, Some(0));
    assert_eq!(spec.kill_timeout_ms, Some(3000));
    assert_eq!(spec.env["PORT"], "8080");
    assert_eq!(spec.env["NODE_ENV"], "production");

    let mjs = dir.write(
        "app.config.mjs",
        "export default { apps: [{ script: 'worker.py', args: ['-v'] }] };\n",
    );
    assert_eq!(load(&mjs, false).unwrap().apps[0].spec.args, ["-v"]);
    let named = dir.write(
        "named.config.mjs",
        "export const apps = [{ name: 'n', script: 'n.sh' }];\n",
    );
    assert_eq!(load(&named, false).unwrap().names(), ["n"]);
    let bare = dir.write(
        "ecosystem.cjs",
        "module.exports = [{ name: 'x', script: 'x.sh' }];\n",
    );
    assert_eq!(load(&bare, false).unwrap().names(), ["x"]);
    // What the file prints itself (dotenv does) does not spoil the JSON.
    let chatty = dir.write(
        "chatty.config.js",
        "console.log('loading config'); process.stdout.write('more\\n');\n\
         module.exports = { apps: [{ name: 'c', script: 'c.sh' }] };\n",
    );
    assert_eq!(load(&chatty, false).unwrap().names(), ["c"]);

    let bad = dir.write(
        "bad.config.js",
        "module.exports = { apps: [{ name: 'api', script: 'a.js', max_restart: 3 }] };\n",
    );
    assert_eq!(load(&bad, false).unwrap().warnings.len(), 1);
    let err = load(&bad, true).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{bad}: 1 warning that --strict makes an error:\n  {bad} (evaluated by node; line 6:"
        )) && err.ends_with(
            "of its JSON): app 1 (api): unknown field `max_restart`, did you mean \
                 `max_restarts`? (ignored)"
        ),
        "{err}"
    );
    let throws = dir.write("throws.config.js", "throw new Error('boom');\n");
    let err = format!("{:#}", load(&throws, false).unwrap_err());
    assert!(
        err.contains("node could not evaluate") && err.contains("boom"),
        "{err}"
    );
}

/// The example of the README's "Ecosystem files" section loads.
#[test]
fn the_readme_example_loads() {
    let readme = include_str!("../../../README.md");
    let start = readme
        .find("# ecosystem.yaml\n")
        .expect("the README has the example");
    let end = start + readme[start..].find("```").unwrap();
    let file = eco(&readme[start..end]);
    assert_eq!(file.names(), ["api", "worker"]);
    let specs = file.specs(Some("production"), &[]).unwrap();
    assert_eq!(specs[0].env["NODE_ENV"], "production");
    assert_eq!(specs[0].port, "3000-3003");
    assert_eq!(specs[1].watch_paths, ["src"]);
}

// ---- issue #4: health checks, memory limits, dependencies -------------------

fn dep(app: &str, condition: DependencyCondition) -> Dependency {
    let mut d = Dependency {
        app: app.into(),
        ..Default::default()
    };
    d.set_condition(condition);
    d
}

/// `health_check` with each probe, `max_memory_restart` with PM2's sizes,
/// and `depends_on` as names or `{NAME: CONDITION}`.
#[test]
fn health_checks_memory_limits_and_dependencies() {
    let apps = yaml(
        r#"apps:
  - name: db
    script: db.sh
    health_check:
      tcp: 127.0.0.1:5432
  - name: migrate
    script: migrate.sh
    autorestart: false
    depends_on: db
  - name: api
    script: server.js
    port: 3000-3001
    max_memory_restart: 200M
    health_check:
      http: http://127.0.0.1:{port}/health
      interval: 5s
      timeout: 1500
      retries: 3
      start_period: 10s
      expected_status: 204
    depends_on: [db, {migrate: completed}, {cache: healthy}]
  - name: cache
    script: cache.sh
    max_memory_restart: 1048576
    health_check: {script: "redis-cli ping | grep -q PONG"}
"#,
    )
    .unwrap();
    assert_eq!(
        apps[0].spec.health_check,
        Some(HealthCheck {
            probe: Some(Probe::Tcp("127.0.0.1:5432".into())),
            ..Default::default()
        })
    );
    assert_eq!(
        apps[1].spec.depends_on,
        [dep("db", DependencyCondition::Started)]
    );
    let api = &apps[2].spec;
    assert_eq!(api.max_memory_bytes, Some(200 << 20));
    assert_eq!(
        api.health_check,
        Some(HealthCheck {
            probe: Some(Probe::Http("http://127.0.0.1:{port}/health".into())),
            interval_ms: Some(5000),
            timeout_ms: Some(1500),
            retries: Some(3),
            start_period_ms: Some(10_000),
            expected_status: Some(204),
        })
    );
    assert_eq!(
        api.depends_on,
        [
            dep("db", DependencyCondition::Started),
            dep("migrate", DependencyCondition::Completed),
            dep("cache", DependencyCondition::Healthy),
        ]
    );
    let cache = &apps[3].spec;
    assert_eq!(cache.max_memory_bytes, Some(1 << 20));
    assert_eq!(
        cache.health_check.as_ref().unwrap().probe,
        Some(Probe::Script("redis-cli ping | grep -q PONG".into()))
    );
    // The same in JSON.
    let apps = json(
        r#"{"apps": [
  {"name": "db", "script": "db.sh"},
  {"name": "api", "script": "a.js", "max_memory_restart": "1G",
   "health_check": {"tcp": "localhost:6000", "retries": "2"},
   "depends_on": ["db"]}
]}"#,
    )
    .unwrap();
    assert_eq!(apps[1].spec.max_memory_bytes, Some(1 << 30));
    assert_eq!(apps[1].spec.health_check.as_ref().unwrap().retries, Some(2));
    assert_eq!(
        apps[1].spec.depends_on,
        [dep("db", DependencyCondition::Started)]
    );
}

/// A bad probe is refused where it is written, with what to write.
#[test]
fn bad_health_checks_are_located() {
    let cases = [
        (
            "health_check: {http: \"https://x/health\"}",
            "ecosystem.yaml:3:26: app 1 (a): `health_check.http`: \"https://x/health\": the HTTP \
             probe does not speak TLS",
        ),
        (
            "health_check: {http: \"localhost:3000/health\"}",
            "ecosystem.yaml:3:26: app 1 (a): `health_check.http`: \"localhost:3000/health\" is \
             not a URL: write http://HOST[:PORT]/PATH",
        ),
        (
            "health_check: {tcp: localhost}",
            "ecosystem.yaml:3:25: app 1 (a): `health_check.tcp`: \"localhost\" has no port: \
             write HOST:PORT",
        ),
        (
            "health_check: {tcp: 3000}",
            "ecosystem.yaml:3:25: app 1 (a): `health_check.tcp`: expected HOST:PORT such as \
             \"127.0.0.1:{port}\", found the number 3000",
        ),
        (
            "health_check: {http: \"http://x/\", intervall: 5s}",
            "ecosystem.yaml:3:39: app 1 (a): `health_check`: unknown key `intervall`, did you \
             mean `interval`?",
        ),
        (
            "health_check: {url: \"http://x/\"}",
            "ecosystem.yaml:3:20: app 1 (a): `health_check`: unknown key `url`, did you mean \
             `http`?",
        ),
        (
            "health_check: {http: \"http://x/\", tcp: \"x:1\"}",
            "ecosystem.yaml:3:39: app 1 (a): `health_check`: `http` and `tcp` are both given; \
             a check has one probe",
        ),
        (
            "health_check: {interval: 5s}",
            "ecosystem.yaml:3:19: app 1 (a): `health_check`: no probe; give one of http",
        ),
        (
            "health_check: {script: ./check.sh, expected_status: 200}",
            "ecosystem.yaml:3:19: app 1 (a): `health_check`: an expected status goes with an \
             http probe",
        ),
        (
            "health_check: {http: \"http://x/\", expected_status: 700}",
            "ecosystem.yaml:3:56: app 1 (a): `health_check.expected_status`: 700 is not an HTTP \
             status code",
        ),
        (
            "health_check: {http: \"http://x/\", retries: 0}",
            "ecosystem.yaml:3:48: app 1 (a): `health_check.retries`: 0 is outside 1 ..= 100",
        ),
        (
            "health_check: {http: \"http://x/\", interval: 0}",
            "ecosystem.yaml:3:49: app 1 (a): `health_check.interval`: 0ms is below the 100ms \
             minimum",
        ),
        (
            "health_check: {http: \"http://x/\", retries: 1000}",
            "ecosystem.yaml:3:48: app 1 (a): `health_check.retries`: 1000 is outside 1 ..= 100",
        ),
        (
            "health_check: {http: \"http://x/\", interval: 1s, timeout: 2s}",
            "ecosystem.yaml:3:19: app 1 (a): `health_check`: timeout (2s) is longer than \
             interval (1s)",
        ),
        (
            "health_check: \"http://x/\"",
            "ecosystem.yaml:3:19: app 1 (a): `health_check`: expected a map with one probe",
        ),
        (
            "health_check: {http: \"http://x:{port}/\"}",
            "ecosystem.yaml:2:5: app 1 (a): `health_check`: \"http://x:{port}/\" uses {port}, \
             but the app has no port",
        ),
        (
            "max_memory_restart: lots",
            "ecosystem.yaml:3:25: app 1 (a): `max_memory_restart`: \"lots\" is not a size",
        ),
        (
            "max_memory_restart: 0",
            "ecosystem.yaml:3:25: app 1 (a): `max_memory_restart`: must be more than 0 bytes",
        ),
    ];
    for (line, expected) in cases {
        let text = format!("apps:\n  - name: a\n    {line}\n    script: a.js\n");
        let err = yaml_err(&text);
        assert!(
            err.starts_with(expected),
            "{line}:\n  got  {err}\n  want {expected}"
        );
    }
}

/// Entries of `depends_on` are checked at their place: names, conditions,
/// repeats.
#[test]
fn bad_dependency_entries_are_located() {
    let cases = [
        (
            "depends_on: [db, {cache: ready}]",
            "ecosystem.yaml:3:22: app 1 (a): `depends_on`: cache: \"ready\" is not a condition; \
             use started, healthy or completed",
        ),
        (
            "depends_on: [db, {cache: helthy}]",
            "ecosystem.yaml:3:22: app 1 (a): `depends_on`: cache: \"helthy\" is not a condition \
             (did you mean healthy?)",
        ),
        (
            "depends_on: [db, db]",
            "ecosystem.yaml:3:22: app 1 (a): `depends_on`: db is given twice",
        ),
        (
            "depends_on: [\"all\"]",
            "ecosystem.yaml:3:18: app 1 (a): `depends_on`: 'all' cannot be an app name",
        ),
        (
            "depends_on: [{db: started, cache: healthy}]",
            "ecosystem.yaml:3:18: app 1 (a): `depends_on`: one app per entry",
        ),
        (
            "depends_on: {db: started}",
            "ecosystem.yaml:3:17: app 1 (a): `depends_on`: expected a list such as [db, {cache: \
             healthy}], found a map",
        ),
        (
            "depends_on: 3",
            "ecosystem.yaml:3:17: app 1 (a): `depends_on`: expected a list of app names, found \
             the number 3",
        ),
    ];
    for (line, expected) in cases {
        let text = format!(
            "apps:\n  - name: a\n    {line}\n    script: a.js\n  - {{name: db, script: d}}\n  - \
             {{name: cache, script: c}}\n"
        );
        let err = yaml_err(&text);
        assert!(
            err.starts_with(expected),
            "{line}:\n  got  {err}\n  want {expected}"
        );
    }
}

/// A dependency that is not an app of the file, on itself, or in a cycle
/// fails the file at the entry, naming the apps.
#[test]
fn missing_dependencies_and_cycles_name_the_apps() {
    let err = yaml_err(
        "apps:\n  - name: api\n    script: a.js\n    depends_on: [dbb]\n  - name: db\n    script: d.sh\n",
    );
    assert_eq!(
        err,
        "ecosystem.yaml:4:18: app 1 (api): `depends_on`: api depends on dbb, which is not an app \
         of this file (did you mean db?); its apps are api, db"
    );
    let err = yaml_err("apps:\n  - name: api\n    script: a.js\n    depends_on: api\n");
    assert_eq!(
        err,
        "ecosystem.yaml:4:17: app 1 (api): `depends_on`: api depends on itself"
    );
    let err = yaml_err(
        r#"apps:
  - name: web
    script: w.js
    depends_on: [api]
  - name: api
    script: a.js
    depends_on:
      - cache
      - {db: healthy}
  - name: db
    script: d.sh
    depends_on: [cache, {api: started}]
  - name: cache
    script: c.sh
"#,
    );
    assert_eq!(
        err,
        "ecosystem.yaml:9:9: app 2 (api): `depends_on`: dependency cycle: api → db → api"
    );
    // In JSON too, and a longer cycle.
    let err = json(
        r#"{"apps": [
  {"name": "a", "script": "a", "depends_on": ["b"]},
  {"name": "b", "script": "b", "depends_on": [{"c": "healthy"}]},
  {"name": "c", "script": "c", "depends_on": ["a"]}
]}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("ecosystem.json:2:")
            && err.ends_with("app 1 (a): `depends_on`: dependency cycle: a → b → c → a"),
        "{err}"
    );
}

/// `--only` sends the dependencies as written; those it leaves out are
/// reported so that a note can say the daemon looks for running ones.
#[test]
fn only_keeps_dependencies_as_written() {
    let file = eco(
        "apps:\n  - name: db\n    script: d.sh\n  - name: api\n    script: a.js\n    depends_on: [db, {cache: healthy}]\n  - name: cache\n    script: c.sh\n",
    );
    let specs = file.specs(None, &["api".into(), "cache".into()]).unwrap();
    assert_eq!(specs.len(), 2);
    assert_eq!(specs[0].depends_on.len(), 2);
    assert_eq!(
        file.dependencies_left_out(&["api".into(), "cache".into()]),
        [("api", "db")]
    );
    assert!(file.dependencies_left_out(&[]).is_empty());
    assert!(file.dependencies_left_out(&["db".into()]).is_empty());
}

/// The example of the README's "Health checks" section loads, and the
/// errors it shows are the ones the loader prints.
#[test]
fn the_readme_health_example_loads() {
    let readme = include_str!("../../../README.md");
    let start = readme
        .find("# deploy.yaml\n")
        .expect("the README has the example");
    let end = start + readme[start..].find("```").unwrap();
    let text = &readme[start..end];
    let parse_as = |text: &str| parse("deploy.yaml", Format::Yaml, text).map(|p| p.apps);
    let apps = parse_as(text).unwrap();
    let names: Vec<&str> = apps.iter().map(|a| a.spec.name.as_str()).collect();
    assert_eq!(names, ["db", "migrate", "api"]);
    assert_eq!(apps[2].spec.max_memory_bytes, Some(200 << 20));
    assert_eq!(apps[2].spec.depends_on.len(), 2);

    let missing = text.replace("[{db: healthy}, {migrate", "[{dbb: healthy}, {migrate");
    let err = parse_as(&missing).unwrap_err().to_string();
    assert!(readme.contains(&format!("error: {err}\n")), "{err}");
    let cycle = text.replace(
        "script: ./db.sh\n",
        "script: ./db.sh\n    depends_on: [migrate]\n",
    );
    let err = parse_as(&cycle).unwrap_err().to_string();
    assert!(readme.contains(&format!("error: {err}\n")), "{err}");
}

/// Ports the file alone shows to be wrong are errors with their place: too
/// few ports for the instances, and two apps of the file on one port.
#[test]
fn port_room_and_overlaps_are_checked_in_the_file() {
    let short =
        yaml_err("apps:\n  - name: web\n    script: w.js\n    instances: 3\n    port: 3000-3001\n");
    assert!(
        short.starts_with("ecosystem.yaml:")
            && short
                .contains("app 1 (web): `port`: port range 3000-3001 has 2 ports for 3 instances")
            && short.contains("3000-3002"),
        "{short}"
    );
    let one = yaml_err(
        "apps:\n  - name: web\n    script: w.js\n    instances: 2\n    port: 3000\n    balance: false\n",
    );
    assert!(
        one.contains("`port`: port 3000 with 2 instances: one port serves one instance"),
        "{one}"
    );

    let overlap = yaml_err(
        "apps:\n  - name: a\n    script: a.js\n    port: 3000-3003\n  - name: b\n    script: b.js\n    port: 3002\n",
    );
    assert!(
        overlap.contains("app 2 (b): `port`: 3002 overlaps port 3000-3003 of app a"),
        "{overlap}"
    );
    // auto: ranges share a pool; max is left to the daemon.
    assert!(yaml(
        "apps:\n  - name: a\n    script: a.js\n    port: auto:3000-3010\n  - name: b\n    script: b.js\n    port: auto:3000-3010\n  - name: c\n    script: c.js\n    instances: max\n    port: 4000\n"
    )
    .is_ok());
}

/// A key given twice in an app is reported at its second line, as the
/// loader says it for other fields (serde_yaml alone would point at the
/// start of the app).
#[test]
fn a_duplicate_key_is_reported_at_its_own_line() {
    let err =
        yaml_err("apps:\n  - name: dk\n    script: sleep\n    args: \"1\"\n    args: \"2\"\n");
    assert!(
        err.starts_with("ecosystem.yaml:5:5: app 1") && err.ends_with("`args` is given twice"),
        "{err}"
    );
}

/// Waiting for an app to complete that is restarted whenever it exits can
/// never end: an error at that `depends_on` entry.
#[test]
fn completed_needs_an_app_that_is_not_restarted() {
    let err = yaml_err(
        "apps:\n  - name: api\n    script: a.js\n    depends_on: [{migrate: completed}]\n  - name: migrate\n    script: m.sh\n",
    );
    assert!(
        err.starts_with("ecosystem.yaml:4:") && err.contains("never completes"),
        "{err}"
    );
    assert!(yaml(
        "apps:\n  - name: api\n    script: a.js\n    depends_on: [{migrate: completed}]\n  - name: migrate\n    script: m.sh\n    autorestart: false\n"
    )
    .is_ok());
}

/// `interpreter_args` that nothing would receive is an error with its place.
#[test]
fn interpreter_args_without_an_interpreter_are_refused_in_the_file() {
    let err = yaml_err(
        "apps:\n  - name: raw\n    script: ./raw\n    interpreter: none\n    interpreter_args: [-a]\n",
    );
    assert!(
        err.starts_with("ecosystem.yaml:")
            && err.contains("app 1 (raw)")
            && err.contains("nothing would receive"),
        "{err}"
    );
}

/// `.json` files are JSON5, as PM2 reads them: comments, trailing commas,
/// unquoted keys, single-quoted strings; errors keep their line and column.
#[test]
fn json_files_are_json5() {
    let text = "// PM2's JSON\n{\n  apps: [\n    {\n      name: 'api', /* inline */\n      \
                script: \"a.js\",\n      instances: 0,\n      env: {PORT: 3000,},\n    },\n  ],\n}\n";
    let apps = json(text).unwrap();
    assert_eq!(apps[0].spec.name, "api");
    assert_eq!(
        apps[0].spec.instances,
        Some(0),
        "instances: 0 is max, as in PM2"
    );
    assert_eq!(apps[0].env["PORT"], "3000");
    let err = json("{\n  apps: [{script: 'a.js',\n    instances: 'many'}]}")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("ecosystem.json:3:16: app 1 (a): `instances`"),
        "{err}"
    );
    let err = json("{apps: [{script: 'a.js'}]} trailing")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("ecosystem.json:1:28: "), "{err}");
    let deep = "[".repeat(200);
    let err = json(&deep).unwrap_err().to_string();
    assert!(err.contains("nested more than 128 levels deep"), "{err}");
    // Brackets in strings and comments do not count.
    let quoted = format!(
        "// {}\n[{{name: 'q', script: '{}'}}]",
        "[".repeat(200),
        "{".repeat(200)
    );
    assert_eq!(json(&quoted).unwrap().len(), 1);
}

/// PM2 takes one app without `apps:`, and `apps:` holding one app.
#[test]
fn one_app_alone_is_a_file() {
    let apps = yaml("name: api\nscript: a.js\ninstances: 2\n").unwrap();
    assert_eq!((apps.len(), apps[0].spec.instances), (1, Some(2)));
    let apps = json("{\"script\": \"w.js\", \"env\": {\"A\": 1}}").unwrap();
    assert_eq!(apps[0].spec.name, "w");
    let apps = yaml("apps:\n  name: one\n  script: a.js\n").unwrap();
    assert_eq!(apps[0].spec.name, "one");
    let err = yaml_err("name: api\ninstances: 2\n");
    assert!(err.contains("app 1 (api): missing `script`"), "{err}");
    // PM2's `pm2:` for `apps:`; unknown top-level keys beside apps warn.
    let parsed = parse(
        "e.yaml",
        Format::Yaml,
        "pm2:\n  - script: a.js\nstatic: []\nextra: 1\n",
    )
    .unwrap();
    assert_eq!(parsed.apps.len(), 1);
    assert_eq!(
        parsed.warnings,
        ["e.yaml:4:1: unknown top-level key `extra`, ignored"]
    );
    assert!(parsed.notes[0].contains("`static` section is ignored"));
}

/// The README's "Coming from PM2" key table is the catalogue's (issue 11):
/// a key missing from the README, or described otherwise there, fails.
#[test]
fn the_readme_key_table_is_the_catalogue() {
    // The table is in a list item: compared without its indent.
    let readme: String = include_str!("../../../README.md")
        .lines()
        .map(|l| l.trim_start().to_string() + "\n")
        .collect();
    let table = keys::readme_table();
    assert!(
        readme.contains(&table),
        "README.md's key table differs from the catalogue (client/src/ecosystem/keys.rs); it \
         should read:\n{table}"
    );
}

/// `script` as PM2 takes it: a command line is split (its words before
/// `args`), and a directory runs its package.json `main`.
#[test]
fn scripts_that_are_command_lines_or_directories() {
    let apps = yaml("apps:\n  - script: npm run start\n    args: --verbose\n").unwrap();
    assert_eq!(apps[0].spec.script, "npm");
    assert_eq!(apps[0].spec.args, ["run", "start", "--verbose"]);
    assert_eq!(apps[0].spec.name, "npm");
    let dir = TempDir::new("script");
    std::fs::create_dir_all(dir.0.join("srv/web")).unwrap();
    std::fs::write(dir.0.join("srv/web/package.json"), r#"{"main": "main.js"}"#).unwrap();
    std::fs::write(dir.0.join("srv/web/main.js"), "").unwrap();
    let path = dir.write(
        "eco.yaml",
        "apps:\n  - name: web\n    cwd: srv\n    script: web\n",
    );
    let file = load(&path, false).unwrap();
    assert_eq!(file.apps[0].spec.script, "web/main.js");
    let path = dir.write("bad.yaml", "apps:\n  - name: x\n    script: srv\n");
    let err = load(&path, false).unwrap_err().to_string();
    assert!(
        err.contains("app 1 (x): `script`: ") && err.contains("is a directory without"),
        "{err}"
    );
}

/// A cluster with one fixed PORT in `env` (or one `port`) is what PM2's
/// cluster mode shares between its workers: a balanced port on that number,
/// with a note; the chosen environment's value is the public port.
/// `balance: false` keeps the instances unbalanced, with a warning at the
/// `env` that all but one would fail to bind, and the fix.
#[test]
fn a_fixed_port_for_several_instances_is_balanced() {
    let text =
        "apps:\n  - name: api\n    script: a.js\n    instances: 4\n    env:\n      PORT: 3000\n";
    let parsed = parse("ecosystem.yaml", Format::Yaml, text).unwrap();
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    assert!(
        parsed.notes.iter().any(
            |n| n.contains("app api: `env` sets PORT=3000 for 4 instances")
                && n.contains("pmd balances that port")
                && n.contains("`balance: false`")
        ),
        "{:?}",
        parsed.notes
    );
    let spec = parsed.apps[0].spec_for(None);
    assert_eq!(spec.port, "3000");
    assert!(spec.balance.is_some());

    // The environment chosen at start decides the public port.
    let text = "apps:\n  - name: api\n    script: a.js\n    exec_mode: cluster\n    env_production:\n      PORT: 8080\n";
    let apps = yaml(text).unwrap();
    let production = apps[0].spec_for(Some("production"));
    assert_eq!(
        (production.port.as_str(), production.balance.is_some()),
        ("8080", true)
    );
    let plain = apps[0].spec_for(None);
    assert_eq!((plain.port.as_str(), plain.balance.is_some()), ("", false));

    // `port: 3000` with several instances: balanced on it.
    let apps =
        yaml("apps:\n  - name: web\n    script: w.js\n    instances: 2\n    port: 3000\n").unwrap();
    assert!(apps[0].spec.balance.is_some());

    // balance: false: unbalanced, and told why that cannot work.
    let warnings = yaml_warnings(
        "apps:\n  - name: api\n    script: a.js\n    instances: 4\n    balance: false\n    env:\n      PORT: 3000\n",
    );
    assert_eq!(
        warnings,
        [
            "ecosystem.yaml:6:5: app 1 (api): `env` sets PORT=3000 for 4 instances: pmd's \
          instances are separate processes, so all but one would fail to bind it; give each its \
          own with `port: 3000-3003` (PORT is set per instance) and drop PORT from `env`"
        ]
    );
    let warnings = yaml_warnings(
        "apps:\n  - name: api\n    script: a.js\n    exec_mode: cluster\n    balance: false\n    env_production:\n      \
         PORT: 8080\n",
    );
    assert!(
        warnings[0].contains("`env_production` sets PORT=8080 for one instance per CPU")
            && warnings[0].contains("`port: auto:8080-8179`"),
        "{warnings:?}"
    );
    // One instance, or ports given per instance: nothing to say.
    assert!(yaml_warnings("apps:\n  - script: a.js\n    env: {PORT: 3000}\n").is_empty());
    let apps = yaml(
        "apps:\n  - script: a.js\n    instances: 2\n    port: 3000-3001\n    env: {PORT: 1}\n",
    )
    .unwrap();
    assert!(apps[0].spec.balance.is_none());
}

/// `balance`: true, false or a map of settings, each checked with its
/// place.
#[test]
fn balance_settings_are_read_and_checked() {
    let apps = yaml(
        "apps:\n  - name: web\n    script: w.js\n    instances: 2\n    port: 3000\n    balance:\n      strategy: least-connections\n      proxy_protocol: true\n      drain_timeout: 10s\n      hold_timeout: 2s\n      address: 127.0.0.1\n      instance_ports: auto:5000-5099\n",
    )
    .unwrap();
    let b = apps[0].spec.balance.clone().unwrap();
    assert_eq!(
        b.strategy(),
        pmdaemon_proto::v1::BalanceStrategy::LeastConnections
    );
    assert!(b.proxy_protocol);
    assert_eq!(
        (b.drain_timeout_ms, b.hold_timeout_ms),
        (Some(10_000), Some(2_000))
    );
    assert_eq!(b.address, "127.0.0.1");
    assert_eq!(b.instance_ports, "auto:5000-5099");

    for (line, error) in [
        ("balance: yes", "`balance`: expected true, false or a map"),
        (
            "balance: {strategy: random}",
            "`balance.strategy`: \"random\" is not a balance strategy",
        ),
        (
            "balance: {address: localhost}",
            "`balance.address`: \"localhost\" is not an IP address",
        ),
        (
            "balance: {sticky: true}",
            "`balance`: `sticky` is not a balance setting",
        ),
    ] {
        let err = yaml_err(&format!(
            "apps:\n  - script: a.js\n    port: 3000\n    {line}\n"
        ));
        assert!(err.contains(error), "{line}: {err}");
    }
    let err = yaml_err("apps:\n  - script: a.js\n    balance: true\n");
    assert!(
        err.contains("`balance`: a balanced app needs its public port"),
        "{err}"
    );
    let err = yaml_err("apps:\n  - script: a.js\n    port: 3000-3003\n    balance: true\n");
    assert!(err.contains("one public port, not 3000-3003"), "{err}");
}

/// A key many apps share is named with a few of them, then counted.
#[test]
fn a_warning_names_a_few_other_apps_then_counts() {
    let text: String = std::iter::once("apps:\n".to_string())
        .chain((0..9).map(|i| format!("  - name: a{i}\n    script: s\n    vizion: false\n")))
        .collect();
    let warnings = yaml_warnings(&text);
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].ends_with("(also in apps 2, 3, 4, 5, 6, 3 more)"),
        "{}",
        warnings[0]
    );
}

/// Every bad value is listed in one run (each read skips the values
/// refused before), with the warnings; an error that only follows from a
/// skip is not said.
#[test]
fn every_bad_value_is_listed() {
    let err = yaml_err(
        "apps:\n  - name: a\n    script: a.js\n    instances: many\n    vizion: 1\n  - name: \
         b\n    script: b.js\n    kill_timeout: soon\n    env: {A: [1]}\n",
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(
        lines[0].starts_with("ecosystem.yaml:4:16: app 1 (a): `instances`"),
        "{err}"
    );
    assert!(
        lines[1].starts_with("error: ecosystem.yaml:8:19: app 2 (b): `kill_timeout`"),
        "{err}"
    );
    assert!(
        lines[2].starts_with("error: ecosystem.yaml:9:10: app 2 (b): `env`"),
        "{err}"
    );
    assert!(
        lines[3].starts_with("warning: ecosystem.yaml:5:5: app 1 (a): `vizion` is ignored"),
        "{err}"
    );
    // A bad `script` value skipped would leave the app without one: that
    // follows from the skip and is not listed.
    let err = yaml_err("apps:\n  - name: a\n    script: [1]\n");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// PM2's runtime keys: booleans, a duration, variable names, and exit
/// codes as one number or a list (digit strings too, as PM2 parses them);
/// bad values are refused at their place.
#[test]
fn pm2_runtime_keys_are_read() {
    let apps = yaml(
        "apps:\n  - script: a.js\n    wait_ready: true\n    listen_timeout: 8000\n    \
         shutdown_with_message: true\n    instance_var: INSTANCE_ID\n    increment_var: PORT\n    \
         stop_exit_codes: [0, '3']\n  - script: b.js\n    stop_exit_codes: 2\n    listenTimeout: \
         2s\n",
    )
    .unwrap();
    let a = &apps[0].spec;
    assert!(a.wait_ready && a.shutdown_with_message);
    assert_eq!(a.listen_timeout_ms, Some(8000));
    assert_eq!(
        (a.instance_var.as_str(), a.increment_var.as_str()),
        ("INSTANCE_ID", "PORT")
    );
    assert_eq!(a.stop_exit_codes, [0, 3]);
    let b = &apps[1].spec;
    assert_eq!(b.stop_exit_codes, [2]);
    assert_eq!(b.listen_timeout_ms, Some(2000));
    assert!(!b.wait_ready);
    for (line, error) in [
        (
            "stop_exit_codes: [1, 300]",
            "ecosystem.yaml:3:22: app 1 (a): `stop_exit_codes` item 2: 300 is more than 255",
        ),
        (
            "instance_var: PMD_ID",
            "ecosystem.yaml:3:19: app 1 (a): `instance_var`: PMD_ID cannot carry the instance index",
        ),
        (
            "increment_var: 'A B'",
            "ecosystem.yaml:3:20: app 1 (a): `increment_var`: \"A B\" is not an environment variable name",
        ),
        (
            "wait_ready: yes please",
            "ecosystem.yaml:3:17: app 1 (a): `wait_ready`: expected true or false",
        ),
    ] {
        let err = yaml_err(&format!("apps:\n  - script: a.js\n    {line}\n"));
        assert!(err.starts_with(error), "{line}: {err}");
    }
}

/// With increment_var on the port's variable, each instance has its own
/// port: not a shared port, neither balanced nor warned about.
#[test]
fn increment_var_on_port_is_not_a_shared_port() {
    let text = "apps:\n  - script: a.js\n    instances: 4\n    env:\n      PORT: 3000\n";
    assert!(yaml(text).unwrap()[0].balance_env.is_some());
    let text = format!("{text}    increment_var: PORT\n");
    assert_eq!(yaml_warnings(&text), Vec::<String>::new());
    assert!(yaml(&text).unwrap()[0].spec.balance.is_none());
}

/// PM2's `cron_restart` (and its alias `cron`, and camelCase) is read as
/// written; `""` and null are no schedule, as in PM2.
#[test]
fn cron_restart_is_honoured() {
    let text = "apps:\n  - name: a\n    script: a.js\n    cron_restart: '0 3 * * *'\n  - name: \
                b\n    script: b.js\n    cron: '*/2 * * * * *'\n  - name: c\n    \
                script: c.js\n    cronRestart: ' @daily '\n  - name: d\n    script: d.js\n    \
                cron_restart: ''\n  - name: e\n    script: e.js\n    cron_restart: null\n";
    let apps = yaml(text).unwrap();
    let crons: Vec<&str> = apps.iter().map(|a| a.spec.cron_restart.as_str()).collect();
    assert_eq!(crons, ["0 3 * * *", "*/2 * * * * *", "@daily", "", ""]);
    assert!(yaml_warnings(text).is_empty(), "{:?}", yaml_warnings(text));
}

/// A bad expression fails the file, naming the place, the app and the
/// field.
#[test]
fn bad_cron_restart_is_an_error_at_its_place() {
    let err = yaml_err("apps:\n  - name: a\n    script: a.js\n    cron_restart: '0 3 * *'\n");
    assert!(
        err.starts_with("ecosystem.yaml:4:19: app 1 (a): `cron_restart`: \"0 3 * *\" has 4 fields"),
        "{err}"
    );
    let err = yaml_err("apps:\n  - name: a\n    script: a.js\n    cron: '0 25 * * *'\n");
    assert!(
        err.contains("`cron`: \"0 25 * * *\" is not a cron expression"),
        "{err}"
    );
    let err = yaml_err("apps:\n  - name: a\n    script: a.js\n    cron_restart: 3\n");
    assert!(err.contains("`cron_restart`"), "{err}");
}
