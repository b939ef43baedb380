//! A bounded property-based run of the REST API against its own
//! `/v1/openapi.json`, with schemathesis (PyPI, pinned in
//! `tests/contract/requirements.txt`, installed into
//! `target/schemathesis-venv` by `pmdaemon_tests::python_venv`), on a live
//! daemon (`pmdaemond --listen`) with its admin token.
//!
//! Checks: no 5xx (`not_a_server_error`), every response conforms to the
//! documented schema, status code and content type, and each line of an
//! NDJSON stream to the documented line (`ndjson_lines_conform`, in
//! `tests/contract/schemathesis_hooks.py`). Deterministic generation (no
//! seed varies, no example database) and one worker, so a failure in CI
//! is reproduced by running the test again; a hard deadline on the whole
//! run and a timeout per request.
//!
//! Safety: the daemon runs with PATH set to an empty directory, so a
//! generated `script` that is a bare command name runs nothing (remote
//! starts accept only absolute paths or commands found on PATH), and the
//! hooks strip a generated `env.PATH`. Two apps started from absolute
//! paths exist before the run (and are restored when a generated call
//! deletes them), so the read routes answer with data.

use std::fs;
use std::process::Command;

use pmdaemon_tests::*;
use serde_json::{Value, json};

/// Operations left out of the run, with why.
const EXCLUDED_PATHS: &[&str] = &[
    // Shutdown stops the daemon under test: every later request would
    // fail to connect. Its refusals are covered by the rest tests.
    "/v1/daemon:shutdown",
    // Endless server streams (no field ends them): schemathesis reads a
    // whole body, so a call would only end at its timeout. The rest tests
    // read them line by line.
    "/v1/events",
    "/v1/metrics",
    // The document itself, which the run is generated from (and whose
    // text, e.g. "http://HOST[:PORT]/PATH", schemathesis 4.32.5 crashes on
    // while looking for links in 2xx bodies).
    "/v1/openapi.json",
];

/// Test cases generated per operation in the fuzzing phase (the coverage
/// phase adds its boundary values: about 1,300 requests in all).
const MAX_EXAMPLES: &str = "10";

/// The apps that exist before the run, as StartProcess bodies.
fn fixtures(work: &str) -> Value {
    json!([
        { "spec": { "name": "sleeper", "script": "/bin/sleep", "args": ["3600"], "cwd": work } },
        {
            "spec": {
                "name": "talker",
                "script": "/bin/sh",
                "args": ["-c", "echo out line; echo err line >&2; exec /bin/sleep 3600"],
                "cwd": work,
            }
        },
    ])
}

/// schemathesis with the four conformance checks and ours, against the
/// document the daemon serves, finds no failure.
#[test]
fn rest_api_conforms_to_its_openapi_document() {
    let bin = python_venv("tests/contract/requirements.txt", "schemathesis-venv");
    let port = free_ports(1);
    let mut daemon = TestDaemon::new_stopped();
    let empty_path = daemon.home().join("empty-path");
    fs::create_dir(&empty_path).expect("create the empty PATH dir");
    daemon.set_daemon_env("PATH", arg(&empty_path));
    daemon.set_daemon_args(&["--listen", &format!("127.0.0.1:{port}")]);
    daemon.spawn_daemon();
    let token = admin_token(daemon.home());
    let rest = Rest::new(port, Some(&token));

    let fixtures = fixtures(arg(daemon.work()));
    for body in fixtures.as_array().expect("a list") {
        let reply = block_on(rest.call("POST", "/v1/processes", Some(&body.to_string())));
        assert_eq!(reply.status, 200, "start a fixture: {:?}", reply.body);
    }
    daemon.wait_online("sleeper");
    daemon.wait_online("talker");
    let document = block_on(rest.call("GET", "/v1/openapi.json", None));
    assert_eq!(document.status, 200);

    let run = tempfile::tempdir().expect("temp dir for the run");
    let spec = run.path().join("openapi.json");
    fs::write(&spec, document.body.to_string()).expect("write the document");
    let lines = run.path().join("ndjson-lines");
    let base = format!("http://127.0.0.1:{port}");
    let mut schemathesis = Command::new(bin.join("schemathesis"));
    schemathesis
        .arg("run")
        .arg(&spec)
        .args(["--url", &base])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,\
             content_type_conformance,ndjson_lines_conform",
        ])
        .args(["--phases", "coverage,fuzzing"])
        .args(["--max-examples", MAX_EXAMPLES])
        .arg("--generation-deterministic")
        .args(["--workers", "1"])
        .args(["--request-timeout", "20"])
        .arg("--no-color");
    for path in EXCLUDED_PATHS {
        schemathesis.args(["--exclude-path", path]);
    }
    schemathesis
        // Hypothesis and schemathesis write their files where they run.
        .current_dir(run.path())
        .env("PYTHONPATH", repo_root().join("tests/contract"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env("PMD_ST_BASE_URL", &base)
        .env("PMD_ST_TOKEN", &token)
        .env("PMD_ST_SPEC", &spec)
        .env("PMD_ST_FIXTURES", fixtures.to_string())
        .env("PMD_ST_LINES", &lines)
        .env("NO_COLOR", "1");
    let out = run_with_timeout(&mut schemathesis, WAIT.times(10));
    let said = output_text(&out);
    assert!(
        out.status.success(),
        "schemathesis found failures ({}):\n{said}\ndaemon stderr:\n{}",
        out.status,
        daemon.daemon_stderr()
    );

    // The run was the run we meant: every operation but the excluded
    // ones, hundreds of requests, and NDJSON lines really checked.
    let operations = document.body["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|p| p.as_object().expect("operations").len())
        .sum::<usize>()
        - EXCLUDED_PATHS.len();
    assert!(
        said.contains(&format!("Tested: {operations}")),
        "schemathesis did not test the {operations} operations:\n{said}"
    );
    let generated: u64 = said
        .lines()
        .find_map(|l| l.trim().split_once(" generated")?.0.parse().ok())
        .unwrap_or_else(|| panic!("no count of test cases in:\n{said}"));
    assert!(generated >= 300, "only {generated} test cases:\n{said}");
    let checked: u64 = fs::read_to_string(&lines)
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(checked > 0, "no NDJSON line was checked:\n{said}");
    // The daemon is still there, with its fixtures.
    let reply = block_on(rest.call("GET", "/v1/processes", None));
    assert_eq!(reply.status, 200);
    eprintln!("schemathesis: {generated} test cases, {checked} NDJSON lines checked");
}
