//! PM2 users' files as PM2 takes them (issue 11, the file format): every
//! PM2 key accepted (honoured, or warned about once per key and file with
//! FILE:LINE:COL), JSON5 `.json` files, one app without `apps:`, a
//! directory or a command line as `script`, names with spaces and their
//! safe log file names, the warning for a cluster with one fixed PORT,
//! and `pmd validate` / `pmd start --strict` for CI.

use std::fs;

use pmdaemon_tests::*;

use crate::{IDLE, said};

/// The `[pmd] warning:` lines of `pmd`'s stderr.
fn warnings(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("[pmd] warning: "))
        .map(str::to_owned)
        .collect()
}

/// A JS file with comments and PM2's log keys starts with the keys
/// honoured (issue 11): PM2's aliases (`output`, `err_file`,
/// `combine_logs`) are read, `log_date_format` puts PM2's date before each
/// line, `merge_logs` gives one set of files; only the keys pmd ignores
/// or does not know warn, once per key and file, at the place node's JSON
/// has them. Skipped where node is not on PATH.
#[test]
fn a_js_file_with_comments_and_pm2_log_keys_starts_with_the_keys_honoured() {
    if node().is_none() {
        eprintln!("skipped: node is not on PATH");
        return;
    }
    let d = TestDaemon::start();
    d.write_executable(
        "talk.sh",
        "#!/bin/sh\necho listening\necho careful >&2\nexec sleep 100000\n",
    );
    d.write_executable("idle.sh", IDLE);
    fs::create_dir(d.work().join("logs")).unwrap();
    d.write_file(
        "ecosystem.config.js",
        r#"// PM2's own template, more or less
module.exports = {
  apps: [
    {
      name: "api", // the web front
      script: "./talk.sh",
      instances: 2,
      output: "./logs/api.out",
      err_file: "./logs/api.err",
      log_date_format: "YYYY-MM-DD HH:mm Z",
      merge_logs: true,
      /* PM2 writes its pid files; pmd does not */
      pid_file: "/tmp/api.pid",
    },
    {
      name: "worker",
      script: "./idle.sh",
      combine_logs: true,
      log: true,
      max_restart: 3,
    },
  ],
};
"#,
    );
    let out = d.pmd(&["start", "ecosystem.config.js"]);
    assert!(out.status.success(), "{}", describe_output(&out));
    let warned = warnings(&out);
    assert!(
        !said(&out).contains("not honoured yet"),
        "PM2's log keys are honoured: {}",
        said(&out)
    );
    assert_eq!(warned.len(), 2, "one line per key and file:\n{warned:#?}");
    let has = |words: &[&str]| warned.iter().any(|w| words.iter().all(|x| w.contains(x)));
    assert!(
        has(&[
            "ecosystem.config.js (evaluated by node; line ",
            "app 1 (api): `pid_file` is ignored"
        ]),
        "{warned:#?}"
    );
    assert!(
        has(&["app 2 (worker): unknown field `max_restart`, did you mean `max_restarts`?"]),
        "{warned:#?}"
    );
    let apis = d.wait_instances_online("api", 2);
    d.wait_online("worker");
    // merge_logs: both instances write the file as named, no -INDEX.
    let logs = fs::canonicalize(d.work().join("logs")).unwrap();
    for api in &apis {
        assert_eq!(api["out_log_path"].as_str(), logs.join("api.out").to_str());
        assert_eq!(api["err_log_path"].as_str(), logs.join("api.err").to_str());
    }
    let out_file = logs.join("api.out");
    wait_for("both instances' lines", WAIT, || {
        crate::lines_of(&out_file).len() == 2
    });
    // PM2's `<date>: <line>`, the date in the file's format.
    for line in crate::lines_of(&out_file) {
        let (date, text) = line.split_once(": ").unwrap_or_else(|| panic!("{line:?}"));
        assert_eq!(text, "listening", "{line:?}");
        assert_eq!(date.len(), "2026-03-07 09:05 +01:00".len(), "{line:?}");
        assert!(
            date.as_bytes()[4] == b'-' && date.as_bytes()[10] == b' ',
            "{line:?}"
        );
    }
    // `log: true` (with combine_logs): logs/worker.log in the home.
    let worker = d.describe_one("worker");
    assert_eq!(
        worker["log_path"].as_str(),
        d.logs_dir().join("worker.log").to_str(),
        "{worker}"
    );
    assert_eq!(worker["merge_logs"], true);
}

/// A `.json` file is JSON5 as PM2 reads it (comments, trailing commas,
/// unquoted keys, single quotes), and `instances: 0` is one per CPU, as
/// `-i max` is.
#[test]
fn a_json5_file_starts_as_pm2_reads_it() {
    let d = TestDaemon::start();
    d.write_executable("idle.sh", IDLE);
    let file = d.write_file(
        "process.json",
        "// a PM2 process file\n{\n  apps: [\n    {\n      name: 'five', /* unquoted, single \
         quotes */\n      script: './idle.sh',\n      instances: 0,\n      env: {MODE: 'json5',},\n    },\n  ],\n}\n",
    );
    let out = d.pmd(&["start", arg(&file)]);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(warnings(&out).is_empty(), "{}", said(&out));
    d.pmd_ok(&[
        "start", "sleep", "--name", "percpu", "-i", "max", "--", "100000",
    ]);
    let per_cpu = d.instances("percpu").len();
    let fives = d.wait_instances_online("five", per_cpu);
    assert_eq!(fives.len(), per_cpu);
    assert_eq!(env_of(pid_of(&fives[0]).unwrap())["MODE"], "json5");
    // A JSON5 error keeps its place.
    let bad = d.write_file(
        "bad.json",
        "{\n  apps: [{script: 'x',\n    instances: 'lots'}],\n}\n",
    );
    let out = d.pmd(&["start", arg(&bad)]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.json:3:16: app 1 (x): `instances`"),
        "{}",
        describe_output(&out)
    );
}

/// A YAML file that is one app (no `apps:`) starts it; its name has a
/// space, as PM2 allows, and its log file is named after a safe form of
/// the name (with the id), so the name never reaches a path.
#[test]
fn a_bare_app_with_a_spaced_name_starts_and_logs_to_a_safe_file() {
    let d = TestDaemon::start();
    d.write_executable(
        "talk.sh",
        "#!/bin/sh\necho hello from my api\nexec sleep 100000\n",
    );
    let file = d.write_file("one.yaml", "name: my api\nscript: ./talk.sh\n");
    let out = d.pmd(&["start", arg(&file)]);
    assert!(out.status.success(), "{}", describe_output(&out));
    d.wait_online("my api");
    let id = d.app("my api").unwrap()["id"].as_u64().unwrap();
    let log = d.logs_dir().join(format!("my_api-{id}-out.log"));
    wait_for(&format!("{} to have the line", log.display()), WAIT, || {
        fs::read_to_string(&log).is_ok_and(|t| t.contains("hello from my api"))
    });
    let logs = d.pmd_ok(&["logs", "my api", "--lines", "5"]);
    assert!(logs.contains("hello from my api"), "{logs}");
    // Names that would be a path or forge a log line stay refused.
    for bad in ["../x", "a\nb"] {
        let out = d.pmd(&["start", "sleep", "--name", bad, "--", "100000"]);
        assert!(!out.status.success(), "{bad:?} accepted: {}", said(&out));
    }
    d.pmd_ok(&["stop", "my api"]);
    d.wait_status("my api", "stopped");
}

/// A directory as `script` runs its package.json `main`; a command line
/// as `script` (in a file, or on the command line) is split like a shell.
#[test]
fn directory_and_command_line_scripts_run_as_pm2_runs_them() {
    let d = TestDaemon::start();
    d.write_executable("web/bin/serve.sh", IDLE);
    d.write_file(
        "web/package.json",
        r#"{"name": "web", "main": "bin/serve.sh"}"#,
    );
    let file = d.write_file(
        "apps.yaml",
        "apps:\n  - name: web\n    script: web\n  - name: cmd\n    script: sh -c 'exec sleep \
         100001'\n",
    );
    let out = d.pmd(&["start", arg(&file)]);
    assert!(out.status.success(), "{}", describe_output(&out));
    let web = cmdline_of(d.wait_online("web"));
    assert!(
        web.iter().any(|a| a.ends_with("web/bin/serve.sh")),
        "web runs {web:?}"
    );
    let cmd = cmdline_of(d.wait_online("cmd"));
    assert!(cmd.ends_with(&["100001".into()]), "cmd runs {cmd:?}");
    // Shell syntax: run by sh -c, as PM2 runs command lines with bash -c.
    d.pmd_ok(&["start", "sleep 100003; exit 0", "--name", "shelled"]);
    let shelled = cmdline_of(d.wait_online("shelled"));
    assert!(
        shelled.len() == 3
            && shelled[0].ends_with("/sh")
            && shelled[1..] == ["-c", "sleep 100003; exit 0"],
        "shelled runs {shelled:?}"
    );
    d.pmd_ok(&["start", "sleep 100002", "--name", "typed"]);
    let typed = cmdline_of(d.wait_online("typed"));
    assert!(
        typed.len() == 2 && typed[0].ends_with("/sleep") && typed[1] == "100002",
        "typed runs {typed:?}"
    );
}

/// A cluster file with one fixed PORT in `env` and `balance: false` (no
/// balanced port, which is the default: see the balancer tests) warns at
/// start with the range to use (its instances are separate processes).
#[test]
fn an_unbalanced_cluster_with_one_fixed_port_warns_at_start() {
    let d = TestDaemon::start();
    let file = d.write_file(
        "cluster.yaml",
        "apps:\n  - name: api\n    script: sleep\n    args: \"100000\"\n    instances: 2\n    \
         env:\n      PORT: 3000\n    balance: false\n",
    );
    let out = d.pmd(&["start", arg(&file)]);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(
        warnings(&out),
        [format!(
            "[pmd] warning: {}:6:5: app 1 (api): `env` sets PORT=3000 for 2 instances: pmd's \
             instances are separate processes, so all but one would fail to bind it; give each \
             its own with `port: 3000-3001` (PORT is set per instance) and drop PORT from `env`",
            file.display()
        )]
    );
    d.wait_instances_online("api", 2);
}

/// `pmd validate FILE` needs no daemon: exit 0 when clean; exit 1 with
/// every warning, and every bad value with the warnings.
/// `pmd start --strict` refuses a file with warnings and starts nothing;
/// without it the same file starts.
#[test]
fn validate_and_strict_make_warnings_errors() {
    let d = TestDaemon::new_stopped();
    let clean = d.write_file("clean.yaml", "apps:\n  - name: a\n    script: sleep\n");
    let warned = d.write_file(
        "warned.yaml",
        "apps:\n  - name: a\n    script: sleep\n    args: \"100000\"\n    vizion: false\n    \
         cmd: npm start\n",
    );
    let broken = d.write_file(
        "broken.yaml",
        "apps:\n  - name: a\n    script: sleep\n    vizion: false\n    instances: lots\n    \
         kill_timeout: soon\n",
    );
    let out = d.pmd_code(0, &["validate", arg(&clean)]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 app (a), no problems"),
        "{}",
        describe_output(&out)
    );
    let out = d.pmd_code(1, &["validate", arg(&warned)]);
    let text = said(&out);
    let at = |line: usize| format!("{}:{line}:5: app 1 (a): ", warned.display());
    assert!(
        text.contains("2 warnings that --strict makes errors")
            && text.contains(&format!("{}`vizion` is ignored", at(5)))
            && text.contains(&format!(
                "{}unknown field `cmd`, did you mean `script`?",
                at(6)
            )),
        "{text}"
    );
    let out = d.pmd_code(1, &["validate", arg(&broken)]);
    let text = said(&out);
    assert!(
        text.contains(&format!(
            "{}:5:16: app 1 (a): `instances`",
            broken.display()
        )) && text.contains(&format!(
            "error: {}:6:19: app 1 (a): `kill_timeout`",
            broken.display()
        )) && text.contains(&format!(
            "warning: {}:4:5: app 1 (a): `vizion` is ignored",
            broken.display()
        )),
        "{text}"
    );
    assert!(
        !d.socket().exists() && d.daemon_pids().is_empty(),
        "pmd validate started a daemon"
    );
    // --strict refuses and starts nothing; without it the file starts.
    let mut d = d;
    d.spawn_daemon();
    let out = d.pmd_code(1, &["start", "--strict", arg(&warned)]);
    assert!(said(&out).contains("--strict"), "{}", describe_output(&out));
    assert!(d.list_json().is_empty(), "--strict started something");
    let out = d.pmd(&["start", arg(&warned)]);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(warnings(&out).len(), 2, "{}", said(&out));
    d.wait_online("a");
}
