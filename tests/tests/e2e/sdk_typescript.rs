//! The TypeScript client (`sdk/typescript`): its `node --test` suite, run
//! here so that the one test command (`cargo build --workspace && cargo
//! test --workspace`, and so `.ci/run`) runs it too.
//!
//! `npm ci` installs the locked packages (`package-lock.json`) into
//! `sdk/typescript/node_modules` (`pmdaemon_tests::npm_package`, again only
//! when the lock, `package.json` or the node version changed); `npm run
//! build` compiles the package and its tests (tsc, strict); node's test
//! runner then starts its own daemons from the binaries under test
//! (`PMDAEMON_TEST_PMDAEMOND`, `PMDAEMON_TEST_PMD`), each on its own
//! temporary home under a directory of this test, stopped by pid when each
//! node test ends; whatever is left there when the run ends (a runner
//! killed at its deadline) is SIGKILLed here.
//!
//! Without node 18+ and npm the test fails and says what to install: it
//! never passes without having run the suite.

use std::fs;
use std::path::Path;
use std::process::Command;

use pmdaemon_tests::*;

/// Kills what the suite left of its daemons and apps, however the run ended.
struct Sweep<'a>(&'a Path);

impl Drop for Sweep<'_> {
    fn drop(&mut self) {
        kill_homes_under(self.0);
    }
}

/// The whole `node --test` suite of sdk/typescript against the binaries
/// under test: over the Unix socket, gRPC over TCP and gRPC-Web over TCP
/// with tokens (start, list, logs followed as they are written, wait
/// ready, stop, delete, a read-only token refused on stop, wrong tokens
/// unauthenticated, TLS with a CA file, a browser's CORS check) and the
/// freshness of the committed generated code.
#[test]
fn typescript_client_suite_passes() {
    let sdk = npm_package("sdk/typescript");
    let bins = binaries();
    npm(&sdk, &["run", "build"], WAIT.times(4), "tsc");

    // The suite's temporary homes live here (TMPDIR), so that the sweep
    // finds whatever a killed runner left.
    let tmp = tempfile::tempdir().expect("temp dir for the suite");
    let sweep = Sweep(tmp.path());
    // A CA and a server certificate for the TLS test.
    let tls = tmp.path().join("tls");
    fs::create_dir(&tls).expect("TLS dir");
    let ca = TestCa::new();
    let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]);
    for (name, pem) in [("ca.pem", ca.pem()), ("cert.pem", cert), ("key.pem", key)] {
        fs::write(tls.join(name), pem).expect("write a TLS file");
    }
    let mut files: Vec<String> = fs::read_dir(sdk.join("dist-test"))
        .expect("dist-test/ after the build")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".test.js"))
        .map(|name| format!("dist-test/{name}"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the build made no dist-test/*.test.js");
    let mut node = Command::new("node");
    node.arg("--test")
        .args(&files)
        .current_dir(&sdk)
        .env("PMDAEMON_TEST_PMDAEMOND", &bins.pmdaemond)
        .env("PMDAEMON_TEST_PMD", &bins.pmd)
        .env("PMDAEMON_TEST_TLS_DIR", &tls)
        .env("TMPDIR", tmp.path())
        .env_remove("PMDAEMON_HOME")
        .env_remove("NODE_OPTIONS");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PMD_") {
            node.env_remove(key);
        }
    }
    let out = run_with_timeout(&mut node, WAIT.times(10));
    drop(sweep);
    let said = output_text(&out);
    assert!(
        out.status.success(),
        "node --test of sdk/typescript failed ({}):\n{said}",
        out.status
    );
    // Here everything a test may skip for (TLS files) is given: a skip
    // would be a test that silently did not run.
    assert!(
        said.contains("\n# skipped 0\n") && said.contains("\n# todo 0\n"),
        "node --test of sdk/typescript skipped tests:\n{said}"
    );
}
