//! Log capture: the per-app files, following, rotation, raw bytes, and
//! what a slow follower is told.

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use pmdaemon_tests::*;

use crate::lines_of;

/// Log paths of a single-instance app, from `pmd describe`.
fn log_paths(d: &TestDaemon, name: &str) -> (String, String) {
    let desc = d.describe_one(name);
    (
        desc["out_log_path"].as_str().unwrap().to_owned(),
        desc["err_log_path"].as_str().unwrap().to_owned(),
    )
}

/// Each run appends to the same stdout and stderr files: after two restarts
/// both hold three lines, one per run, in order.
#[test]
fn logs_are_appended_across_restarts() {
    let d = TestDaemon::start();
    let script = d.write_script(
        "chatty.sh",
        "echo \"out $$\"\necho \"err $$\" >&2\nexec sleep 100000",
    );
    d.pmd_ok(&["start", arg(&script), "--name", "chatty"]);
    let mut pids = vec![d.wait_online("chatty")];
    let (out_log, err_log) = log_paths(&d, "chatty");
    for run in 1..=3 {
        wait_for(&format!("run {run}'s lines"), WAIT, || {
            lines_of(out_log.as_ref()).len() == run && lines_of(err_log.as_ref()).len() == run
        });
        if run < 3 {
            let old = *pids.last().unwrap();
            d.pmd_ok(&["restart", "chatty"]);
            pids.push(wait_for_value("a new pid", WAIT, || {
                d.app("chatty")
                    .filter(|a| a["status"] == "online")
                    .and_then(|a| pid_of(&a))
                    .filter(|&p| p != old)
            }));
        }
    }
    let expect = |prefix: &str| {
        pids.iter()
            .map(|p| format!("{prefix} {p}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(lines_of(out_log.as_ref()), expect("out"));
    assert_eq!(lines_of(err_log.as_ref()), expect("err"));
}

/// `pmd logs NAME -f` shows the history and then lines written after it
/// started.
#[test]
fn follow_streams_new_lines() {
    let d = TestDaemon::start();
    let script = d.write_script(
        "waiter.sh",
        "echo ready\nwhile [ ! -e trigger ]; do sleep 0.05; done\necho marker\nexec sleep 100000",
    );
    d.pmd_ok(&["start", arg(&script), "--name", "waiter"]);
    d.wait_online("waiter");
    let (out_log, _) = log_paths(&d, "waiter");
    wait_for("the first line in the log", WAIT, || {
        !lines_of(out_log.as_ref()).is_empty()
    });

    let mut follower = d
        .pmd_command(&["logs", "waiter", "-f"])
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
    let mut seen = Vec::new();
    let mut await_line = |needle: &str| {
        let deadline = WAIT.deadline();
        while !seen.iter().any(|l: &String| l.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_) => panic!("`pmd logs -f` never printed {needle:?}; printed: {seen:?}"),
            }
        }
    };
    await_line("ready");
    fs::write(d.work().join("trigger"), "").unwrap();
    await_line("marker");
    let _ = follower.kill();
    let _ = follower.wait();
}

/// `pmd logs NAME -f` ends when NAME is deleted, saying so (exit 1),
/// instead of waiting forever for lines that cannot come.
#[test]
fn follow_ends_when_the_app_is_deleted() {
    let d = TestDaemon::start();
    let script = d.write_script("doomed.sh", "echo hello\nexec sleep 100000");
    d.pmd_ok(&["start", arg(&script), "--name", "doomed"]);
    d.wait_online("doomed");
    let (out_log, _) = log_paths(&d, "doomed");
    wait_for("the line in the log", WAIT, || {
        !lines_of(out_log.as_ref()).is_empty()
    });
    let mut follower = d
        .pmd_command(&["logs", "doomed", "-f"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The history line arrives once the stream is set up (and watching
    // for the delete).
    let mut first = String::new();
    BufReader::new(follower.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("hello"), "{first:?}");
    d.pmd_ok(&["delete", "doomed"]);
    let status = wait_child(&mut follower, WAIT);
    let mut stderr = String::new();
    if let Some(mut err) = follower.stderr.take() {
        use std::io::Read;
        let _ = err.read_to_string(&mut stderr);
    }
    let Some(status) = status else {
        let _ = follower.kill();
        let _ = follower.wait();
        panic!("`pmd logs -f` went on after its app was deleted");
    };
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("deleted"), "{stderr}");
}

/// `pmd logs NAME -f | head -3` ends with exit status 0 for the whole
/// pipeline: a closed pipe is success, not an error or a signal death.
#[test]
fn follow_into_head_exits_zero() {
    let d = TestDaemon::start();
    let script = d.write_script("ticker.sh", "while :; do echo tick; sleep 0.05; done");
    d.pmd_ok(&["start", arg(&script), "--name", "ticker"]);
    d.wait_online("ticker");
    let (out_log, _) = log_paths(&d, "ticker");
    wait_for("some ticks", WAIT, || lines_of(out_log.as_ref()).len() >= 3);

    let mut cmd = Command::new("bash");
    cmd.args(["-c", "set -o pipefail; \"$0\" logs ticker -f | head -3"])
        .arg(&binaries().pmd)
        .env("PMDAEMON_HOME", d.home())
        .env("NO_COLOR", "1")
        .current_dir(d.work());
    let out = run_with_timeout(&mut cmd, PMD_TIMEOUT);
    assert!(
        out.status.success(),
        "pipeline failed\n{}",
        describe_output(&out)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
}

/// Output that is not UTF-8 lands in the log file byte for byte, and raw
/// `StreamLogs` returns the same bytes.
#[test]
fn non_utf8_output_is_kept_intact() {
    let d = TestDaemon::start();
    let script = d.write_script(
        "latin1.sh",
        "printf '\\377\\376 caf\\351 \\000nul\\n'\nexec sleep 100000",
    );
    d.pmd_ok(&["start", arg(&script), "--name", "latin1"]);
    d.wait_online("latin1");
    let (out_log, _) = log_paths(&d, "latin1");
    let expected: &[u8] = b"\xff\xfe caf\xe9 \x00nul";
    wait_for("the line in the log file", WAIT, || {
        fs::read(&out_log).is_ok_and(|b| b.ends_with(b"\n"))
    });
    assert_eq!(fs::read(&out_log).unwrap(), [expected, b"\n"].concat());

    let lines = block_on(async {
        let mut client = d.client().await;
        let mut stream = client
            .stream_logs(v1::StreamLogsRequest {
                target: "latin1".into(),
                lines: 10,
                follow: false,
                stream: v1::LogStream::Stdout as i32,
                after_seq: None,
            })
            .await
            .expect("StreamLogs")
            .into_inner();
        let mut lines = Vec::new();
        while let Some(msg) = stream.message().await.expect("StreamLogs message") {
            lines.extend(msg.lines);
        }
        lines
    });
    let data: Vec<&[u8]> = lines.iter().map(|l| l.data.as_slice()).collect();
    assert_eq!(data, [expected]);
}

/// `--time` prefixes each log line with an RFC 3339 timestamp.
#[test]
fn time_option_prefixes_lines_with_a_timestamp() {
    let d = TestDaemon::start();
    let script = d.write_script("stamped.sh", "echo hello stamp\nexec sleep 100000");
    d.pmd_ok(&["start", arg(&script), "--name", "stamped", "--time"]);
    d.wait_online("stamped");
    let (out_log, _) = log_paths(&d, "stamped");
    wait_for("the line in the log file", WAIT, || {
        !lines_of(out_log.as_ref()).is_empty()
    });
    let line = lines_of(out_log.as_ref()).remove(0);
    let (stamp, rest) = line
        .split_once(' ')
        .unwrap_or_else(|| panic!("no timestamp prefix: {line:?}"));
    assert!(rest.ends_with("hello stamp"), "{line:?}");
    // 2025-11-26T04:26:00[.fraction](Z|+hh:mm)
    let b = stamp.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        r.into_iter()
            .all(|i| b.get(i).is_some_and(u8::is_ascii_digit))
    };
    assert!(
        b.len() >= 20
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && b[10] == b'T'
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19)
            && (stamp.ends_with('Z') || stamp[19..].contains(['+', '-'])),
        "not an RFC 3339 timestamp: {stamp:?}"
    );
}

/// Rotation caps the log: with `--log-max-size 4K --log-max-files 2`, after
/// ~40 KB of output there are exactly the live file and `.1`, `.2`, each
/// within the size limit, holding the most recent lines in order.
#[test]
fn rotation_caps_file_sizes_and_count() {
    let d = TestDaemon::start();
    // 400 lines of 100 bytes each, then "done".
    let script = d.write_script(
        "spammer.sh",
        "seq -f 'line %06g ...........................................................................................' 1 400 | cut -c1-99\necho done\nexec sleep 100000",
    );
    d.pmd_ok(&[
        "start",
        arg(&script),
        "--name",
        "spammer",
        "--log-max-size",
        "4K",
        "--log-max-files",
        "2",
    ]);
    d.wait_online("spammer");
    let (out_log, _) = log_paths(&d, "spammer");
    wait_for("the last line", WAIT, || {
        lines_of(out_log.as_ref())
            .last()
            .is_some_and(|l| l == "done")
    });

    let mut files: Vec<String> = fs::read_dir(d.logs_dir())
        .unwrap()
        .map(|e| e.unwrap().path().to_str().unwrap().to_owned())
        .filter(|p| p.starts_with(&out_log))
        .collect();
    files.sort();
    let expected = [
        out_log.clone(),
        format!("{out_log}.1"),
        format!("{out_log}.2"),
    ];
    assert_eq!(files, expected, "rotated files");
    for f in &files {
        let len = fs::metadata(f).unwrap().len();
        assert!(
            len <= 4096 + 100,
            "{f} is {len} bytes, over the 4 KiB cap (plus one line)"
        );
        let bytes = fs::read(f).unwrap();
        assert!(
            bytes.is_empty() || bytes.ends_with(b"\n"),
            "{f} ends with a partial line"
        );
    }
    // Oldest to newest, the kept lines are consecutive and end with "done".
    let kept: Vec<String> = [&expected[2], &expected[1], &expected[0]]
        .iter()
        .flat_map(|f| lines_of(f.as_ref()))
        .collect();
    assert_eq!(kept.last().map(String::as_str), Some("done"));
    let numbers: Vec<u32> = kept[..kept.len() - 1]
        .iter()
        .map(|l| {
            l[5..11]
                .parse()
                .unwrap_or_else(|_| panic!("bad line {l:?}"))
        })
        .collect();
    assert_eq!(numbers.last(), Some(&400), "{numbers:?}");
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "kept lines are not consecutive: {numbers:?}"
    );
    assert!(numbers.len() >= 60, "too few lines kept: {}", numbers.len());
}

/// A `StreamLogs` follower that stops reading while an app writes 200 000
/// lines is not waited for: when it reads again it is told how many lines it
/// missed, and received + missed accounts for every line.
#[test]
fn a_slow_follower_is_told_how_many_lines_it_missed() {
    let d = TestDaemon::start();
    let script = d.write_script(
        "flood.sh",
        "while [ ! -e go ]; do sleep 0.05; done\nseq -f 'flood %06g .....................................................................................' 1 200000 | cut -c1-99\necho done\nexec sleep 100000",
    );
    d.pmd_ok(&[
        "start",
        arg(&script),
        "--name",
        "flood",
        "--log-max-size",
        "100M",
    ]);
    d.wait_online("flood");
    let (out_log, _) = log_paths(&d, "flood");

    let (received, missed) = block_on(async {
        let mut client = d.client().await;
        let mut stream = client
            .stream_logs(v1::StreamLogsRequest {
                target: "flood".into(),
                lines: 0,
                follow: true,
                stream: v1::LogStream::Stdout as i32,
                after_seq: None,
            })
            .await
            .expect("StreamLogs")
            .into_inner();
        fs::write(d.work().join("go"), "").unwrap();
        // Do not read until the app has written everything.
        let deadline = WAIT.times(4).deadline();
        while !fs::read(&out_log).unwrap_or_default().ends_with(b"done\n") {
            assert!(Instant::now() < deadline, "the app never finished writing");
            // The poll interval: the app writes for seconds.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (mut received, mut missed) = (0u64, 0u64);
        loop {
            let msg = tokio::time::timeout(WAIT.get(), stream.message())
                .await
                .unwrap_or_else(|_| {
                    panic!("no \"done\" line after {received} lines and {missed} missed")
                })
                .expect("StreamLogs message")
                .expect("the follow stream ended early");
            missed += msg.missed_lines;
            received += msg.lines.len() as u64;
            if msg.lines.iter().any(|l| l.data == b"done") {
                return (received, missed);
            }
        }
    });
    assert!(
        missed > 0,
        "a reader that stopped for 200 000 lines missed none"
    );
    assert_eq!(
        received + missed,
        200_001,
        "received {received} + missed {missed}"
    );
    assert_eq!(
        lines_of(out_log.as_ref()).len(),
        200_001,
        "the log file lost lines"
    );
}

/// `pmd logs NAME --lines 2 --raw --out` prints the last two stdout lines
/// alone and exits; `pmd flush NAME` empties the app's log files.
#[test]
fn logs_prints_history_and_flush_empties_the_files() {
    let d = TestDaemon::start();
    let script = d.write_script(
        "history.sh",
        "for i in 1 2 3 4 5; do echo \"line $i\"; done\necho oops >&2\nexec sleep 100000",
    );
    d.pmd_ok(&["start", arg(&script), "--name", "history"]);
    d.wait_online("history");
    let (out_log, err_log) = log_paths(&d, "history");
    wait_for("the app's output", WAIT, || {
        lines_of(out_log.as_ref()).len() == 5 && lines_of(err_log.as_ref()).len() == 1
    });
    let printed = d.pmd_ok(&["logs", "history", "--lines", "2", "--raw", "--out"]);
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        ["line 4", "line 5"],
        "{printed:?}"
    );

    d.pmd_ok(&["flush", "history"]);
    assert_eq!(
        fs::metadata(&out_log).unwrap().len(),
        0,
        "stdout log not emptied"
    );
    assert_eq!(
        fs::metadata(&err_log).unwrap().len(),
        0,
        "stderr log not emptied"
    );
    assert_eq!(d.status("history").as_deref(), Some("online"));
}

/// A follower that reconnects with `after_seq` gets exactly the retained
/// lines after the last one it saw, in order: nothing lost, nothing twice.
#[test]
fn stream_logs_resumes_after_a_sequence_number() {
    let d = TestDaemon::start();
    let script = d.write_script(
        "resumable.sh",
        "while [ ! -e go1 ]; do sleep 0.05; done\nfor i in 1 2 3 4 5; do echo \"a$i\"; done\n\
         while [ ! -e go2 ]; do sleep 0.05; done\nfor i in 1 2 3; do echo \"b$i\"; done\nexec sleep 100000",
    );
    d.pmd_ok(&["start", arg(&script), "--name", "resumable"]);
    d.wait_online("resumable");
    let (out_log, _) = log_paths(&d, "resumable");
    let follow = |after_seq| v1::StreamLogsRequest {
        target: "resumable".into(),
        lines: 0,
        follow: true,
        stream: v1::LogStream::Stdout as i32,
        after_seq,
    };
    let resumed = block_on(async {
        let mut client = d.client().await;
        let mut first = client
            .stream_logs(follow(None))
            .await
            .expect("StreamLogs")
            .into_inner();
        fs::write(d.work().join("go1"), "").unwrap();
        let mut seen = Vec::new();
        while seen.len() < 5 {
            let msg = tokio::time::timeout(WAIT.get(), first.message())
                .await
                .expect("the first follower got no line")
                .expect("StreamLogs message")
                .expect("the stream ended");
            seen.extend(msg.lines);
        }
        let names: Vec<&[u8]> = seen.iter().map(|l| l.data.as_slice()).collect();
        assert_eq!(names, [&b"a1"[..], b"a2", b"a3", b"a4", b"a5"]);
        assert!(
            seen.iter().all(|l| l.seq > 0),
            "live lines without a sequence number"
        );
        let resume_at = seen[2].seq;
        drop(first);

        fs::write(d.work().join("go2"), "").unwrap();
        wait_for("the b lines in the log", WAIT, || {
            lines_of(out_log.as_ref()).len() == 8
        });
        let mut second = client
            .stream_logs(follow(Some(resume_at)))
            .await
            .expect("StreamLogs with after_seq")
            .into_inner();
        let mut resumed = Vec::new();
        while !resumed.iter().any(|l: &v1::LogLine| l.data == b"b3") {
            let msg = tokio::time::timeout(WAIT.get(), second.message())
                .await
                .unwrap_or_else(|_| panic!("resume stalled after {resumed:?}"))
                .expect("StreamLogs message")
                .expect("the stream ended");
            assert_eq!(msg.missed_lines, 0, "lines reported missed on resume");
            resumed.extend(msg.lines);
        }
        resumed
    });
    let data: Vec<String> = resumed
        .iter()
        .map(|l| String::from_utf8_lossy(&l.data).into_owned())
        .collect();
    assert_eq!(data, ["a4", "a5", "b1", "b2", "b3"]);
    assert!(
        resumed.windows(2).all(|w| w[0].seq < w[1].seq),
        "sequence numbers do not increase"
    );
}

/// `out_file`/`error_file` may not point where logging would hurt: a FIFO
/// (it would block), the daemon's own files, another app's log file; all
/// refused with nothing created. /dev/null discards output and survives
/// `pmd delete`, as does a file of the user's with earlier content: delete
/// removes only the logs the daemon made in its logs directory.
#[test]
fn log_paths_that_would_hurt_are_refused_and_user_files_survive_delete() {
    let d = TestDaemon::start();
    let fifo = d.work().join("pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    d.pmd_ok(&["start", "sleep", "--name", "first", "--", "100000"]);
    d.wait_online("first");
    let first_log = d.describe_one("first")["out_log_path"]
        .as_str()
        .unwrap()
        .to_owned();
    let daemon_log = d.home().join("pmdaemond.log");
    for (path, says) in [
        (arg(&fifo), "not a regular file"),
        (arg(&daemon_log), "daemon's home"),
        (first_log.as_str(), "app first"),
    ] {
        let out = d.pmd_code(
            1,
            &[
                "start", "sleep", "--name", "bad", "-o", path, "--", "100000",
            ],
        );
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(text.contains(says), "-o {path}: {text}");
        assert!(d.app("bad").is_none(), "-o {path}: the app was created");
    }
    assert!(daemon_log.is_file());

    let mine = d.write_file("mine.log", "written before\n");
    d.pmd_ok(&[
        "start",
        "sleep",
        "--name",
        "quiet",
        "-o",
        "/dev/null",
        "-e",
        arg(&mine),
        "--",
        "100000",
    ]);
    d.wait_online("quiet");
    d.pmd_ok(&["delete", "quiet"]);
    use std::os::unix::fs::FileTypeExt;
    assert!(
        fs::metadata("/dev/null").is_ok_and(|m| m.file_type().is_char_device()),
        "/dev/null is gone or replaced"
    );
    assert_eq!(fs::read_to_string(&mine).unwrap(), "written before\n");
}

/// History far larger than one gRPC message (100 lines of 60 KB, 6 MB)
/// reaches `pmd logs --lines 100` whole: the daemon sends it in messages
/// bounded by bytes, not only by line count.
#[test]
fn large_history_is_sent_in_bounded_messages() {
    let d = TestDaemon::start();
    let script = d.write_script(
        "wide.sh",
        "i=0\nwhile [ $i -lt 100 ]; do head -c 60000 /dev/zero | tr '\\0' x; echo; i=$((i+1)); done\nexec sleep 100000",
    );
    d.pmd_ok(&["start", arg(&script), "--name", "wide"]);
    d.wait_online("wide");
    let (out_log, _) = log_paths(&d, "wide");
    wait_for("the 100 wide lines", WAIT, || {
        lines_of(out_log.as_ref()).len() == 100
    });
    let out = d.pmd_ok(&["logs", "wide", "--lines", "100", "--out"]);
    let wide = out
        .lines()
        .filter(|l| l.ends_with(&"x".repeat(60000)))
        .count();
    assert_eq!(wide, 100, "{} lines printed", out.lines().count());
}
