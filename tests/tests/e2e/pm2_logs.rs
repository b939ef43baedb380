//! PM2's log options, honoured (issue 11): `log_date_format` before each
//! line in the daemon's local time, `merge_logs` (one file for every
//! instance, whole lines), `log_file` (both streams in one more file,
//! rotated), `log_type: json`, `NULL` and `/dev/null` (no file, lines still
//! followed), `~` in log paths, missing log directories created, and all
//! of it kept by save/resurrect; bad values refused over the CLI and gRPC.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use pmdaemon_tests::*;
use tonic::Code;

use crate::{lines_of, said};

/// `date` in `tz`, as `YYYY-MM-DD HH:MM:SS`.
fn date_in(tz: &str) -> String {
    let out = Command::new("date")
        .arg("+%Y-%m-%d %H:%M:%S")
        .env("TZ", tz)
        .output()
        .expect("run date");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The id of a single-instance app.
fn id_of(d: &TestDaemon, name: &str) -> u64 {
    d.app(name).unwrap()["id"].as_u64().unwrap()
}

/// `--log-date-format` puts PM2's `<date>: ` before each line of the
/// files, in the daemon's zone: tokens, the offset and bracketed text as
/// dayjs writes them, and the time is the time the line was read.
#[test]
fn log_date_format_prefixes_each_line_with_the_local_date() {
    const TZ: &str = "PMD-02:30";
    let mut d = TestDaemon::new_stopped();
    d.set_daemon_env("TZ", TZ);
    d.spawn_daemon();
    let script = d.write_script(
        "say.sh",
        "echo one\necho two >&2\necho three\nexec sleep 100000",
    );
    let before = date_in(TZ);
    d.pmd_ok(&[
        "start",
        arg(&script),
        "--name",
        "dated",
        "--log-date-format",
        "YYYY-MM-DD HH:mm:ss.SSS Z [at]",
    ]);
    d.wait_online("dated");
    let id = id_of(&d, "dated");
    let out = d.logs_dir().join(format!("dated-{id}-out.log"));
    let err = d.logs_dir().join(format!("dated-{id}-err.log"));
    wait_for("the three lines", WAIT, || {
        lines_of(&out).len() == 2 && lines_of(&err).len() == 1
    });
    let after = date_in(TZ);
    let mut texts = Vec::new();
    for line in lines_of(&out).into_iter().chain(lines_of(&err)) {
        // 2026-03-07 09:05:04.032 +02:30 at: one
        let (stamp, text) = line.split_once(": ").unwrap_or_else(|| panic!("{line:?}"));
        let b = stamp.as_bytes();
        assert_eq!(
            stamp.len(),
            "2026-03-07 09:05:04.032 +02:30 at".len(),
            "{line:?}"
        );
        assert_eq!(&stamp[23..], " +02:30 at", "the zone's offset: {line:?}");
        assert!(
            b[19] == b'.' && b[20..23].iter().all(u8::is_ascii_digit),
            "{line:?}"
        );
        let seconds = &stamp[..19];
        assert!(
            before.as_str() <= seconds && seconds <= after.as_str(),
            "{seconds} is not between {before} and {after} in {TZ}"
        );
        texts.push(text.to_owned());
    }
    assert_eq!(texts, ["one", "three", "two"]);
    let shown = d.describe_one("dated");
    assert_eq!(shown["log_date_format"], "YYYY-MM-DD HH:mm:ss.SSS Z [at]");
}

/// `--log-type json`: each line of the files is PM2's object (the message
/// with its newline, the stream, the instance id, the app name, an ISO
/// timestamp); `pmd logs` still shows the text.
#[test]
fn json_log_type_writes_pm2s_objects_and_logs_shows_the_text() {
    let d = TestDaemon::start();
    let script = d.write_script(
        "say.sh",
        "echo 'hello \"you\"'\necho 'an error' >&2\nexec sleep 100000",
    );
    d.pmd_ok(&[
        "start",
        arg(&script),
        "--name",
        "j son",
        "--log-type",
        "json",
    ]);
    d.wait_online("j son");
    let id = id_of(&d, "j son");
    let out = d.logs_dir().join(format!("j_son-{id}-out.log"));
    let err = d.logs_dir().join(format!("j_son-{id}-err.log"));
    wait_for("a line in each file", WAIT, || {
        lines_of(&out).len() == 1 && lines_of(&err).len() == 1
    });
    for (file, message, kind) in [
        (&out, "hello \"you\"\n", "out"),
        (&err, "an error\n", "err"),
    ] {
        let line = &lines_of(file)[0];
        let object: serde_json::Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&str> = object
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            ["app_name", "message", "process_id", "timestamp", "type"]
        );
        assert_eq!(object["message"], message, "{line}");
        assert_eq!(object["type"], kind);
        assert_eq!(object["process_id"], id);
        assert_eq!(object["app_name"], "j son");
        // JavaScript's toISOString: 2026-03-07T08:05:04.032Z.
        let stamp = object["timestamp"].as_str().unwrap();
        assert_eq!(stamp.len(), 24, "{stamp}");
        assert!(
            stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
            "{stamp}"
        );
        // PM2's field order.
        assert!(line.starts_with("{\"message\":"), "{line}");
        assert!(line.contains(",\"timestamp\":"), "{line}");
    }
    let logs = d.pmd_ok(&["logs", "j son", "--lines", "5", "--raw", "--out"]);
    assert_eq!(logs, "hello \"you\"\n");
    assert_eq!(d.describe_one("j son")["log_type"], "json");
}

/// `--merge-logs` with three instances printing as fast as they can: one
/// file (`logs/NAME-out.log`, no per-instance file), every line whole,
/// each instance's lines in its order.
#[test]
fn merged_instances_write_whole_lines_to_one_file() {
    let d = TestDaemon::start();
    const LINES: usize = 3000;
    let pad = "x".repeat(150);
    let script = d.write_script(
        "burst.sh",
        &format!(
            "i=0\nwhile [ $i -lt {LINES} ]; do echo \"$PMD_INSTANCE_ID-$i-{pad}\"; i=$((i+1)); \
             done\nexec sleep 100000"
        ),
    );
    d.pmd_ok(&[
        "start",
        arg(&script),
        "--name",
        "burst",
        "-i",
        "3",
        "--merge-logs",
    ]);
    let instances = d.wait_instances_online("burst", 3);
    let merged = d.logs_dir().join("burst-out.log");
    for inst in &instances {
        assert_eq!(inst["out_log_path"].as_str(), merged.to_str());
    }
    wait_for("every instance's lines", WAIT, || {
        lines_of(&merged).len() == 3 * LINES
    });
    let mut next = [0usize; 3];
    for line in lines_of(&merged) {
        let mut parts = line.splitn(3, '-');
        let who: usize = parts
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("{line:?}"));
        let n: usize = parts
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("{line:?}"));
        assert_eq!(parts.next(), Some(pad.as_str()), "a mixed line: {line:?}");
        assert_eq!(n, next[who], "instance {who}'s lines out of order");
        next[who] += 1;
    }
    assert_eq!(next, [LINES; 3]);
    let names: Vec<String> = fs::read_dir(d.logs_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["burst-out.log"], "no per-instance file");
    // Scaling down keeps the file the remaining instances write.
    d.pmd_ok(&["scale", "burst", "2"]);
    assert!(merged.is_file());
    assert_eq!(d.instances("burst")[0]["merge_logs"], true);
}

/// `--log` alone: both streams also go to `logs/NAME-ID.log`, whole lines,
/// rotated at `--log-max-size` with `--log-max-files` kept, like the
/// others.
#[test]
fn the_combined_log_file_gets_both_streams_and_rotates() {
    let d = TestDaemon::start();
    let script = d.write_script(
        "both.sh",
        "i=0\nwhile [ $i -lt 200 ]; do echo \"out $i\"; echo \"err $i\" >&2; i=$((i+1)); \
         done\nexec sleep 100000",
    );
    d.pmd_ok(&[
        "start",
        arg(&script),
        "--name",
        "both",
        "--log-max-size",
        "1K",
        "--log-max-files",
        "2",
        "--log",
    ]);
    d.wait_online("both");
    let id = id_of(&d, "both");
    let combined = d.logs_dir().join(format!("both-{id}.log"));
    assert_eq!(
        d.describe_one("both")["log_path"].as_str(),
        combined.to_str()
    );
    let rotated = |n: u32| Path::new(&format!("{}.{n}", combined.display())).to_path_buf();
    let out = d.logs_dir().join(format!("both-{id}-out.log"));
    // The last line of each stream in the combined files (either may be
    // the one that made the file rotate).
    let all_text = || {
        [rotated(2), rotated(1), combined.clone()]
            .iter()
            .map(|f| fs::read_to_string(f).unwrap_or_default())
            .collect::<String>()
    };
    wait_for("the last lines", WAIT, || {
        let text = all_text();
        text.contains("out 199\n") && text.contains("err 199\n")
    });
    assert!(rotated(1).is_file() && rotated(2).is_file());
    assert!(!rotated(3).exists(), "only --log-max-files are kept");
    let mut lines = Vec::new();
    for file in [rotated(2), rotated(1), combined.clone()] {
        let text = fs::read_to_string(&file).unwrap();
        assert!(
            text.len() <= 1024,
            "{} is {} bytes",
            file.display(),
            text.len()
        );
        lines.extend(text.lines().map(str::to_owned));
    }
    assert!(lines.iter().any(|l| l.starts_with("out ")));
    assert!(lines.iter().any(|l| l.starts_with("err ")));
    for line in &lines {
        let (kind, n) = line.split_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        assert!(kind == "out" || kind == "err", "{line:?}");
        assert!(n.parse::<u32>().is_ok_and(|n| n < 200), "{line:?}");
    }
    // The files of its own still have only their stream.
    assert!(lines_of(&out).iter().all(|l| l.starts_with("out ")));
}

/// A log directory that does not exist is created, 0750, as PM2 creates
/// it; `--log=PATH` is relative to the app's cwd.
#[test]
fn missing_log_directories_are_created() {
    let d = TestDaemon::start();
    let script = d.write_script("say.sh", "echo hi\necho ho >&2\nexec sleep 100000");
    d.pmd_ok(&[
        "start",
        arg(&script),
        "--name",
        "deep",
        "-o",
        "new/a/out.log",
        "--log=new/b/c/all.log",
    ]);
    d.wait_online("deep");
    let all = d.work().join("new/b/c/all.log");
    wait_for("both lines in the combined file", WAIT, || {
        lines_of(&all).len() == 2
    });
    assert_eq!(lines_of(&d.work().join("new/a/out.log")), ["hi"]);
    for dir in ["new", "new/a", "new/b", "new/b/c"] {
        let mode = fs::metadata(d.work().join(dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o750, "{dir}: {mode:o}");
    }
}

/// PM2's `NULL` (and `/dev/null`) discards a stream: no file is made, but
/// `pmd logs -f` still shows its lines as they come.
#[test]
fn null_discards_a_stream_but_follow_still_shows_it() {
    let d = TestDaemon::start();
    d.write_executable(
        "quiet.sh",
        "#!/bin/sh\necho ready >&2\nwhile [ ! -e trigger ]; do sleep 0.05; done\necho \
         marker\nexec sleep 100000\n",
    );
    d.write_file(
        "quiet.yaml",
        // Quoted: YAML reads a bare NULL as no value.
        "apps:\n  - name: quiet\n    script: ./quiet.sh\n    out_file: \"NULL\"\n",
    );
    let out = d.pmd(&["start", "quiet.yaml"]);
    assert!(out.status.success(), "{}", said(&out));
    d.wait_online("quiet");
    let shown = d.describe_one("quiet");
    assert_eq!(shown["out_log_path"], "/dev/null");
    let id = id_of(&d, "quiet");
    let err = d.logs_dir().join(format!("quiet-{id}-err.log"));
    wait_for("the stderr line", WAIT, || lines_of(&err) == ["ready"]);

    let mut follower = d
        .pmd_command(&["logs", "quiet", "-f", "--raw"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<String> = Vec::new();
    let mut await_line = |needle: &str| {
        let deadline = WAIT.deadline();
        while !seen.iter().any(|l| l == needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_) => panic!("`pmd logs -f` never printed {needle:?}; printed: {seen:?}"),
            }
        }
    };
    // The history (stderr's file) first: the follower is set up.
    await_line("ready");
    fs::write(d.work().join("trigger"), "").unwrap();
    await_line("marker");
    let _ = follower.kill();
    let _ = follower.wait();
    let names: Vec<String> = fs::read_dir(d.logs_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, [format!("quiet-{id}-err.log")], "no stdout file");

    // Both streams to /dev/null, PM2's idiom, is accepted too.
    let script = d.write_script("mute.sh", "echo gone\nexec sleep 100000");
    d.pmd_ok(&[
        "start",
        arg(&script),
        "--name",
        "mute",
        "-o",
        "/dev/null",
        "-e",
        "/dev/null",
    ]);
    d.wait_online("mute");
    assert_eq!(d.describe_one("mute")["err_log_path"], "/dev/null");
}

/// `~` in a log path is the home of the user `pmd` runs as (its HOME),
/// expanded before the spec is sent, on the command line and in files.
#[test]
fn tilde_in_log_paths_is_the_callers_home() {
    let d = TestDaemon::start();
    let home = d.work().join("someone");
    fs::create_dir(&home).unwrap();
    let script = d.write_script("say.sh", "echo hi\nexec sleep 100000");
    let out = run_with_timeout(
        d.pmd_command(&[
            "start",
            arg(&script),
            "--name",
            "tilde",
            "-o",
            "~/logs/out.log",
        ])
        .env("HOME", &home),
        WAIT,
    );
    assert!(out.status.success(), "{}", said(&out));
    d.wait_online("tilde");
    let file = home.join("logs/out.log");
    assert_eq!(
        d.describe_one("tilde")["out_log_path"].as_str(),
        file.to_str()
    );
    wait_for("the line in ~/logs/out.log", WAIT, || {
        lines_of(&file) == ["hi"]
    });

    d.write_file(
        "t.yaml",
        "apps:\n  - name: tfile\n    script: sleep\n    args: '100000'\n    log_file: \
         ~/all/file.log\n",
    );
    let out = run_with_timeout(d.pmd_command(&["start", "t.yaml"]).env("HOME", &home), WAIT);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(
        d.describe_one("tfile")["log_path"].as_str(),
        home.join("all/file.log").to_str()
    );
}

/// The log settings survive `pmd save`, `delete all` and `pmd resurrect`:
/// the app comes back merged, with its combined file, date format and
/// JSON lines.
#[test]
fn save_and_resurrect_keep_the_log_settings() {
    let d = TestDaemon::start();
    let script = d.write_script("say.sh", "echo \"hi $PMD_INSTANCE_ID\"\nexec sleep 100000");
    d.pmd_ok(&[
        "start",
        arg(&script),
        "--name",
        "kept",
        "-i",
        "2",
        "--merge-logs",
        "--log-date-format",
        "HH:mm",
        "--log-type",
        "json",
        "--log=all.log",
    ]);
    d.wait_instances_online("kept", 2);
    d.pmd_ok(&["save"]);
    d.pmd_ok(&["delete", "all"]);
    wait_for("the apps gone", WAIT, || d.app_pids().is_empty());
    let all = d.work().join("all.log");
    fs::remove_file(&all).unwrap();
    d.pmd_ok(&["resurrect"]);
    let instances = d.wait_instances_online("kept", 2);
    for inst in &instances {
        assert_eq!(inst["merge_logs"], true);
        assert_eq!(inst["log_type"], "json");
        assert_eq!(inst["log_date_format"], "HH:mm");
        assert_eq!(inst["log_path"].as_str(), all.to_str());
    }
    wait_for("both instances' lines in all.log", WAIT, || {
        lines_of(&all).len() == 2
    });
    let mut messages: Vec<String> = lines_of(&all)
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let stamp = v["timestamp"].as_str().unwrap();
            assert_eq!(stamp.len(), 5, "HH:mm: {stamp}");
            v["message"].as_str().unwrap().to_owned()
        })
        .collect();
    messages.sort();
    assert_eq!(messages, ["hi 0\n", "hi 1\n"]);
}

/// Bad values are refused with what to write instead, by the CLI (exit 2)
/// and by the daemon over gRPC (INVALID_ARGUMENT), and nothing is created.
#[test]
fn bad_log_settings_are_refused_and_change_nothing() {
    let d = TestDaemon::start();
    let out = d.pmd_code(2, &["start", "sleep", "--log-date-format=---", "--", "100"]);
    assert!(said(&out).contains("no date token"), "{}", said(&out));
    let out = d.pmd_code(2, &["start", "sleep", "--log-type", "xml", "--", "100"]);
    assert!(
        said(&out).contains("\"xml\" is not a log type"),
        "{}",
        said(&out)
    );
    let work = arg(d.work()).to_owned();
    let statuses = block_on(async {
        let mut client = d.client().await;
        let mut refused = Vec::new();
        for spec in [
            v1::AppSpec {
                log_date_format: "[just text]".into(),
                ..Default::default()
            },
            v1::AppSpec {
                log_type: 7,
                ..Default::default()
            },
            v1::AppSpec {
                log_file: Some("~/x.log".into()),
                ..Default::default()
            },
            v1::AppSpec {
                out_file: "same.log".into(),
                log_file: Some("same.log".into()),
                ..Default::default()
            },
        ] {
            let status = client
                .start_process(v1::StartProcessRequest {
                    spec: Some(v1::AppSpec {
                        name: "bad".into(),
                        script: "sleep".into(),
                        args: vec!["100".into()],
                        ..spec
                    }),
                    caller_cwd: work.clone(),
                    ..Default::default()
                })
                .await
                .expect_err("a bad log setting was accepted");
            refused.push(status);
        }
        refused
    });
    let wanted = [
        "log_date_format",
        "log_type",
        "log_file: \"~/x.log\" starts with ~",
        "also this app's out_file",
    ];
    for (status, words) in statuses.iter().zip(wanted) {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(words), "{}", status.message());
    }
    assert!(d.list_json().is_empty());
    assert!(!d.work().join("same.log").exists());
}
