//! Bad input is refused at the edge with a clear error and changes nothing;
//! exit codes follow the convention (0 ok, 1 failure, 2 usage).

use std::fs;

use pmdaemon_tests::*;
use tonic::Code;

/// Asserts that the daemon knows no app, runs no app process and has
/// written no log file.
fn assert_nothing_created(d: &TestDaemon) {
    assert_eq!(
        d.list_json(),
        Vec::<serde_json::Value>::new(),
        "an app was created"
    );
    assert!(
        d.app_pids().is_empty(),
        "processes were started: {:?}",
        d.app_pids()
    );
    let logs: Vec<_> = fs::read_dir(d.logs_dir())
        .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(logs.is_empty(), "log files were created: {logs:?}");
}

/// Invalid app names are refused by `pmd start` and nothing is created.
/// Names PM2 takes (spaces, dots, unicode) are names since issue 11
/// (pm2_files.rs); what would be a path, a flag, a target or a forged log
/// line is not.
#[test]
fn bad_names_are_rejected_with_nothing_created() {
    let d = TestDaemon::start();
    let script = d.write_script("ok.sh", "exec sleep 100000");
    let long = "a".repeat(65);
    for name in [
        "all",
        "123",
        "a/b",
        "../x",
        "..",
        "-dash",
        "line\nforged",
        " padded",
        long.as_str(),
    ] {
        let out = d.pmd(&["start", arg(&script), &format!("--name={name}")]);
        assert!(
            !out.status.success(),
            "name {name:?} was accepted\n{}",
            describe_output(&out)
        );
        assert!(!out.stderr.is_empty(), "no error message for {name:?}");
    }
    assert_nothing_created(&d);
}

/// A script that does not exist, or a command not on PATH, is refused with
/// exit 1 and an error naming it; nothing is created.
#[test]
fn missing_executables_are_rejected_with_nothing_created() {
    let d = TestDaemon::start();
    for script in [
        "./does-not-exist.sh",
        "/nonexistent/dir/app",
        "no-such-command-pmd-e2e",
    ] {
        let out = d.pmd_code(1, &["start", script, "--name", "ghost"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let shown = script.trim_start_matches("./");
        assert!(
            stderr.contains(shown),
            "error does not name {script}\n{}",
            describe_output(&out)
        );
    }
    assert_nothing_created(&d);
}

/// A script that exists but is not executable (and has no interpreter to
/// run it) is refused, not crash-looped.
#[test]
fn a_non_executable_file_is_rejected() {
    let d = TestDaemon::start();
    fs::write(d.work().join("data.bin"), [0u8, 1, 2, 3]).unwrap();
    let out = d.pmd(&["start", "./data.bin", "--name", "data"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    assert_nothing_created(&d);
}

/// An executable the kernel refuses to run (exec bit, no shebang, not a
/// binary: ENOEXEC) fails at the first spawn; the start is refused with the
/// reason and the half-made app, its state entry and log files are removed.
#[test]
fn a_file_the_kernel_cannot_execute_is_refused_with_nothing_created() {
    let d = TestDaemon::start();
    d.write_executable("garbage", "this is not a program\n");
    let out = d.pmd_code(1, &["start", "./garbage"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("garbage"), "{stderr}");
    assert!(stderr.to_lowercase().contains("exec"), "{stderr}");
    assert_nothing_created(&d);
}

/// A second app with a taken name is refused (ALREADY_EXISTS → exit 1).
#[test]
fn a_duplicate_name_is_refused() {
    let d = TestDaemon::start();
    d.pmd_ok(&["start", "sleep", "--name", "twin", "--", "100000"]);
    let pid = d.wait_online("twin");
    let out = d.pmd_code(1, &["start", "sleep", "--name", "twin", "--", "100000"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        stderr.contains("twin") && stderr.contains("exist"),
        "{}",
        describe_output(&out)
    );
    assert_eq!(d.list_json().len(), 1);
    assert_eq!(d.app_pids(), [pid]);
}

/// Usage errors exit 2; failures such as an unknown target exit 1; both
/// explain themselves on stderr.
#[test]
fn exit_codes_distinguish_usage_errors_from_failures() {
    let d = TestDaemon::start();
    for args in [
        &["frobnicate"][..],
        &["start"],
        &["list", "--bogus-flag"],
        &["list", "-o", "xml"],
    ] {
        let out = d.pmd_code(2, args);
        assert!(!out.stderr.is_empty(), "pmd {args:?}: no message");
    }
    for args in [
        &["stop", "nosuch"][..],
        &["restart", "nosuch"],
        &["delete", "42"],
        &["describe", "7"],
    ] {
        let out = d.pmd_code(1, args);
        assert!(!out.stderr.is_empty(), "pmd {args:?}: no message");
    }
    assert_nothing_created(&d);
}

/// Malformed flag values (durations, sizes, signals, counts) are usage
/// errors: exit 2, a message naming the flag, nothing created.
#[test]
fn invalid_flag_values_are_usage_errors() {
    let d = TestDaemon::start();
    let script = d.write_script("ok.sh", "exec sleep 100000");
    let bad: &[(&str, &str)] = &[
        ("--kill-timeout", "soon"),
        ("--kill-timeout", "3d"),
        ("--restart-delay", "-5"),
        ("--min-uptime", "1parsec"),
        ("--log-max-size", "lots"),
        ("--stop-signal", "SIGNOPE"),
        ("--stop-signal", "SIGSTOP"),
        ("--max-restarts", "-1"),
        ("--autorestart", "sometimes"),
    ];
    for (flag, value) in bad {
        let out = d.pmd(&[
            "start",
            arg(&script),
            "--name",
            "valid",
            &format!("{flag}={value}"),
        ]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "pmd start {flag} {value}: expected a usage error\n{}",
            describe_output(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(flag.trim_start_matches('-')),
            "{flag} not named:\n{stderr}"
        );
    }
    assert_nothing_created(&d);
}

/// The daemon validates on its own (other clients skip the CLI): raw
/// `StartProcess` requests with bad input get INVALID_ARGUMENT, unknown
/// targets NOT_FOUND, and nothing is created.
#[test]
fn the_api_rejects_bad_requests_with_precise_codes() {
    let d = TestDaemon::start();
    let script = d.write_script("ok.sh", "exec sleep 100000");
    let good = v1::AppSpec {
        name: "fine".into(),
        script: arg(&script).into(),
        ..Default::default()
    };
    let work = arg(d.work()).to_owned();
    let start = |spec: Option<v1::AppSpec>, target: &str| v1::StartProcessRequest {
        spec,
        target: target.into(),
        caller_cwd: work.clone(),
        caller_path: String::new(),
        dependency_timeout_ms: 0,
    };
    let cases: Vec<(&str, v1::StartProcessRequest)> = vec![
        (
            "bad name",
            start(
                Some(v1::AppSpec {
                    name: "a/b".into(),
                    ..good.clone()
                }),
                "",
            ),
        ),
        (
            "name all",
            start(
                Some(v1::AppSpec {
                    name: "all".into(),
                    ..good.clone()
                }),
                "",
            ),
        ),
        (
            "empty script",
            start(
                Some(v1::AppSpec {
                    script: String::new(),
                    ..good.clone()
                }),
                "",
            ),
        ),
        (
            "bad stop signal",
            start(
                Some(v1::AppSpec {
                    stop_signal: "SIGNOPE".into(),
                    ..good.clone()
                }),
                "",
            ),
        ),
        (
            "absurd kill timeout",
            start(
                Some(v1::AppSpec {
                    kill_timeout_ms: Some(10 * 24 * 3600 * 1000),
                    ..good.clone()
                }),
                "",
            ),
        ),
        (
            "bad env key",
            start(
                Some(v1::AppSpec {
                    env: [("A=B".to_string(), "x".to_string())].into(),
                    ..good.clone()
                }),
                "",
            ),
        ),
        (
            "unknown dependency",
            start(
                Some(v1::AppSpec {
                    depends_on: vec![v1::Dependency {
                        app: "nope".into(),
                        condition: v1::DependencyCondition::Started as i32,
                    }],
                    ..good.clone()
                }),
                "",
            ),
        ),
        (
            "{port} without a port",
            start(
                Some(v1::AppSpec {
                    health_check: Some(v1::HealthCheck {
                        probe: Some(v1::health_check::Probe::Tcp("127.0.0.1:{port}".into())),
                        ..Default::default()
                    }),
                    ..good.clone()
                }),
                "",
            ),
        ),
        (
            "expected_status on tcp",
            start(
                Some(v1::AppSpec {
                    health_check: Some(v1::HealthCheck {
                        probe: Some(v1::health_check::Probe::Tcp("127.0.0.1:9".into())),
                        expected_status: Some(200),
                        ..Default::default()
                    }),
                    ..good.clone()
                }),
                "",
            ),
        ),
        // Issue 8, case 7: a NUL byte answered INTERNAL.
        (
            "NUL in out_file",
            start(
                Some(v1::AppSpec {
                    out_file: format!("{work}/out\0.log"),
                    ..good.clone()
                }),
                "",
            ),
        ),
        (
            "NUL in error_file",
            start(
                Some(v1::AppSpec {
                    error_file: format!("{work}/err\0.log"),
                    ..good.clone()
                }),
                "",
            ),
        ),
        (
            "NUL in cwd",
            start(
                Some(v1::AppSpec {
                    cwd: format!("{work}/x\0y"),
                    ..good.clone()
                }),
                "",
            ),
        ),
        ("spec and target", start(Some(good.clone()), "fine")),
        ("neither spec nor target", start(None, "")),
    ];
    let codes = block_on(async {
        let mut client = d.client().await;
        let mut codes = Vec::new();
        for (what, req) in cases {
            let code = match client.start_process(req).await {
                Ok(resp) => panic!("{what}: accepted: {:?}", resp.into_inner()),
                Err(status) => status.code(),
            };
            codes.push((what, code));
        }
        let missing = client
            .start_process(start(
                Some(v1::AppSpec {
                    script: "/nonexistent/app".into(),
                    ..good.clone()
                }),
                "",
            ))
            .await
            .expect_err("a missing script was accepted");
        codes.push(("missing script", missing.code()));
        let stop = client
            .stop_process(v1::StopProcessRequest {
                target: "../x".into(),
            })
            .await
            .expect_err("a bad target was accepted");
        codes.push(("bad target", stop.code()));
        let unknown = client
            .stop_process(v1::StopProcessRequest {
                target: "nobody".into(),
            })
            .await
            .expect_err("an unknown target was accepted");
        codes.push(("unknown target", unknown.code()));
        codes
    });
    for (what, code) in &codes {
        let expected: &[Code] = match *what {
            "unknown target" => &[Code::NotFound],
            "missing script" => &[Code::InvalidArgument, Code::FailedPrecondition],
            _ => &[Code::InvalidArgument],
        };
        assert!(
            expected.contains(code),
            "{what}: got {code:?}, expected one of {expected:?}; all codes: {codes:?}"
        );
    }
    assert_nothing_created(&d);
}

/// A refusal that echoes its input stays small enough to send: a 2 MiB
/// target of control characters used to make a 17 MB error message, which
/// the client got as a transport error instead of the refusal. Both an
/// oversized name in a spec and an oversized target are answered with
/// INVALID_ARGUMENT and a short message that says how long the value was.
#[test]
fn huge_values_are_refused_with_a_short_message() {
    let d = TestDaemon::start();
    let huge_target = "\u{1}".repeat(2 << 20);
    let huge_name = "x".repeat(3 << 20);
    let work = arg(d.work()).to_owned();
    let statuses = block_on(async {
        let mut client = d.client().await;
        let stop = client
            .stop_process(v1::StopProcessRequest {
                target: huge_target.clone(),
            })
            .await
            .expect_err("a huge target was accepted");
        let start = client
            .start_process(v1::StartProcessRequest {
                spec: Some(v1::AppSpec {
                    name: huge_name.clone(),
                    script: "sleep".into(),
                    ..Default::default()
                }),
                caller_cwd: work,
                ..Default::default()
            })
            .await
            .expect_err("a huge name was accepted");
        [stop, start]
    });
    for (status, len) in statuses.iter().zip([huge_target.len(), huge_name.len()]) {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let message = status.message();
        assert!(
            message.len() < 1024,
            "{} bytes: {message:.200}",
            message.len()
        );
        assert!(message.contains(&format!("({len} bytes)")), "{message}");
    }
    assert!(d.list_json().is_empty());
}
