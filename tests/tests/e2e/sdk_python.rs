//! The Python client (`sdk/python`): its pytest suite, run here so that the
//! one test command (`cargo build --workspace && cargo test --workspace`,
//! and so `.ci/run`) runs it too.
//!
//! A virtualenv under `target/sdk-venv` (`$CARGO_TARGET_DIR/sdk-venv`) gets
//! `pip install -e sdk/python[test]` from PyPI; it is reused while a stamp
//! in it matches the hash of `sdk/python/pyproject.toml` and the Python
//! version, and made anew otherwise. pytest then starts its own daemons
//! from the binaries under test (`PMDAEMON_TEST_PMDAEMOND`,
//! `PMDAEMON_TEST_PMD`), each on its own temporary home, stopped by pid at
//! the end of each Python test.
//!
//! Without python3 (with venv and pip) the test fails and says what to
//! install: it never passes without having run the suite.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pmdaemon_tests::*;

const STAMP: &str = "pmdaemon-sdk-stamp";
/// TCP ports handed to pytest, one per daemon it starts (more fall back
/// to any free port).
const PORTS: u16 = 32;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// FNV-1a 64: a stable hash of the venv's inputs (std's hasher may change
/// between Rust releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `python3 --version`, or a failure that says what to install.
fn python_version() -> String {
    let missing = "python3 is needed for the Python client's tests (sdk/python): install \
                   Python 3.9 or newer with venv and pip, e.g. `apt-get install python3 \
                   python3-venv python3-pip`";
    match Command::new("python3").arg("--version").output() {
        Ok(out) if out.status.success() => text(&out).trim().to_string(),
        Ok(out) => panic!("{missing}\n`python3 --version` failed: {}", text(&out)),
        Err(e) => panic!("{missing}\n(running python3: {e})"),
    }
}

/// The virtualenv with `pmdaemon-client[test]` installed, made when its
/// stamp does not match.
fn venv(root: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { root.join(t) })
        .unwrap_or_else(|| root.join("target"));
    let venv = target.join("sdk-venv");
    let python = venv.join("bin/python");
    let pyproject =
        fs::read(root.join("sdk/python/pyproject.toml")).expect("sdk/python/pyproject.toml");
    let version = python_version();
    let mut inputs = pyproject;
    inputs.extend_from_slice(version.as_bytes());
    let stamp = format!("{:016x}\n", fnv1a(&inputs));
    if python.is_file() && fs::read_to_string(venv.join(STAMP)).is_ok_and(|s| s == stamp) {
        return python;
    }
    if venv.exists() {
        fs::remove_dir_all(&venv).expect("remove the stale sdk-venv");
    }
    let out = run_with_timeout(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        WAIT.times(4),
    );
    assert!(
        out.status.success(),
        "`python3 -m venv {}` failed ({version}): install the venv module, e.g. \
         `apt-get install python3-venv`\n{}",
        venv.display(),
        text(&out)
    );
    let out = run_with_timeout(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-e",
            ])
            .arg(format!("{}[test]", root.join("sdk/python").display()))
            .env("PIP_NO_INPUT", "1"),
        WAIT.times(20),
    );
    assert!(
        out.status.success(),
        "pip install -e sdk/python[test] into {} failed (it needs PyPI):\n{}",
        venv.display(),
        text(&out)
    );
    fs::write(venv.join(STAMP), stamp).expect("write the sdk-venv stamp");
    python
}

/// The whole pytest suite of sdk/python against the binaries under test:
/// over the socket and over TCP with tokens (start, list, logs followed as
/// they are written, wait-ready, stop, delete, a read-only token refused on
/// stop, a wrong token unauthenticated, TLS with a CA file) and the
/// freshness of the committed stubs.
#[test]
fn python_client_suite_passes() {
    let root = repo_root();
    let bins = binaries();
    let python = venv(&root);
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
        text(&out)
    );
    // Here everything a test may skip for (TLS files) is given: a skip
    // would be a test that silently did not run.
    let said = text(&out);
    assert!(
        !said.contains(" skipped"),
        "pytest of sdk/python skipped tests:\n{said}"
    );
}
