//! The Python client (`sdk/python`): its pytest suite, run here so that the
//! one test command (`cargo build --workspace && cargo test --workspace`,
//! and so `.ci/run`) runs it too.
//!
//! A virtualenv under `target/sdk-venv` (`$CARGO_TARGET_DIR/sdk-venv`) gets
//! `pip install -e sdk/python[test]` from PyPI
//! (`pmdaemon_tests::python_package_venv`, reused while
//! `sdk/python/pyproject.toml` and the Python version are unchanged). pytest then starts its own daemons
//! from the binaries under test (`PMDAEMON_TEST_PMDAEMOND`,
//! `PMDAEMON_TEST_PMD`), each on its own temporary home, stopped by pid at
//! the end of each Python test.
//!
//! Without python3 (with venv and pip) the test fails and says what to
//! install: it never passes without having run the suite.

use std::fs;
use std::process::Command;

use pmdaemon_tests::*;

/// TCP ports handed to pytest, one per daemon it starts (more fall back
/// to any free port).
const PORTS: u16 = 32;

/// The whole pytest suite of sdk/python against the binaries under test:
/// over the socket and over TCP with tokens (start, list, logs followed as
/// they are written, wait-ready, stop, delete, a read-only token refused on
/// stop, a wrong token unauthenticated, TLS with a CA file) and the
/// freshness of the committed stubs.
#[test]
fn python_client_suite_passes() {
    let root = repo_root();
    let bins = binaries();
    let python = python_package_venv("sdk/python", "test", "sdk-venv").join("python");
    // A CA and a server certificate for the TLS test.
    let tls = tempfile::tempdir().expect("temp dir for TLS files");
    let ca = TestCa::new();
    let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]);
    for (name, pem) in [("ca.pem", ca.pem()), ("cert.pem", cert), ("key.pem", key)] {
        fs::write(tls.path().join(name), pem).expect("write a TLS file");
    }
    let mut pytest = Command::new(&python);
    pytest
        .args([
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "tests",
        ])
        .current_dir(root.join("sdk/python"))
        .env("PMDAEMON_TEST_PMDAEMOND", &bins.pmdaemond)
        .env("PMDAEMON_TEST_PMD", &bins.pmd)
        .env("PMDAEMON_TEST_PORT_BASE", free_ports(PORTS).to_string())
        .env("PMDAEMON_TEST_PORT_COUNT", PORTS.to_string())
        .env("PMDAEMON_TEST_TLS_DIR", tls.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("PMDAEMON_HOME");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PMD_") {
            pytest.env_remove(key);
        }
    }
    let out = run_with_timeout(&mut pytest, WAIT.times(20));
    assert!(
        out.status.success(),
        "pytest of sdk/python failed ({}):\n{}",
        out.status,
        output_text(&out)
    );
    // Here everything a test may skip for (TLS files) is given: a skip
    // would be a test that silently did not run.
    let said = output_text(&out);
    assert!(
        !said.contains(" skipped"),
        "pytest of sdk/python skipped tests:\n{said}"
    );
}
