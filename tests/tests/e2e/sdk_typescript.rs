//! The TypeScript client (`sdk/typescript`): its `node --test` suite, run
//! here so that the one test command (`cargo build --workspace && cargo
//! test --workspace`, and so `.ci/run`) runs it too.
//!
//! `npm ci` installs the locked packages (`package-lock.json`) into
//! `sdk/typescript/node_modules`, again only when a stamp in it no longer
//! matches the hash of the lock, `package.json` and the node version; `npm
//! run build` compiles the package and its tests (tsc, strict); node's test
//! runner then starts its own daemons from the binaries under test
//! (`PMDAEMON_TEST_PMDAEMOND`, `PMDAEMON_TEST_PMD`), each on its own
//! temporary home under a directory of this test, stopped by pid when each
//! node test ends; whatever is left there when the run ends (a runner
//! killed at its deadline) is SIGKILLed here.
//!
//! Without node 18+ and npm the test fails and says what to install: it
//! never passes without having run the suite.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pmdaemon_tests::*;

/// Inside node_modules, which `npm ci` removes first: a failed install
/// leaves no stamp behind.
const STAMP: &str = "node_modules/.pmdaemon-sdk-stamp";

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .join("sdk/typescript")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// FNV-1a 64: a stable hash of the install's inputs (std's hasher may
/// change between Rust releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

const MISSING: &str = "node 18 or newer and npm are needed for the TypeScript client's tests \
                       (sdk/typescript): install them, e.g. `apt-get install nodejs npm`";

/// `TOOL --version`, or a failure that says what to install.
fn version(tool: &str) -> String {
    match Command::new(tool).arg("--version").output() {
        Ok(out) if out.status.success() => text(&out).trim().to_string(),
        Ok(out) => panic!("{MISSING}\n`{tool} --version` failed: {}", text(&out)),
        Err(e) => panic!("{MISSING}\n(running {tool}: {e})"),
    }
}

/// node's version, checked to be 18 or newer, and npm's.
fn toolchain() -> String {
    let node = version("node");
    let major = node
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    assert!(
        major.is_some_and(|m| m >= 18),
        "{MISSING}\n(this node is {node})"
    );
    format!("node {node}, npm {}", version("npm"))
}

/// Runs an npm command in the SDK's directory, failing with its output.
fn npm(sdk: &Path, args: &[&str], timeout: Timeout, why: &str) {
    let out = run_with_timeout(
        Command::new("npm")
            .args(args)
            .current_dir(sdk)
            .env("npm_config_update_notifier", "false")
            .env("npm_config_fund", "false")
            .env("npm_config_audit", "false"),
        timeout,
    );
    assert!(
        out.status.success(),
        "`npm {}` in sdk/typescript failed ({why}):\n{}",
        args.join(" "),
        text(&out)
    );
}

/// `npm ci` when the stamp does not match the lock, package.json and the
/// toolchain.
fn install(sdk: &Path, toolchain: &str) {
    let mut inputs =
        fs::read(sdk.join("package-lock.json")).expect("sdk/typescript/package-lock.json");
    inputs.extend(fs::read(sdk.join("package.json")).expect("sdk/typescript/package.json"));
    inputs.extend_from_slice(toolchain.as_bytes());
    let stamp = format!("{:016x}\n", fnv1a(&inputs));
    if fs::read_to_string(sdk.join(STAMP)).is_ok_and(|s| s == stamp) {
        return;
    }
    npm(sdk, &["ci"], WAIT.times(20), "it needs the npm registry");
    fs::write(sdk.join(STAMP), stamp).expect("write the node_modules stamp");
}

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
    let sdk = sdk_dir();
    let bins = binaries();
    let toolchain = toolchain();
    install(&sdk, &toolchain);
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
    let said = text(&out);
    assert!(
        out.status.success(),
        "node --test of sdk/typescript failed ({toolchain}, {}):\n{said}",
        out.status
    );
    // Here everything a test may skip for (TLS files) is given: a skip
    // would be a test that silently did not run.
    assert!(
        said.contains("\n# skipped 0\n") && said.contains("\n# todo 0\n"),
        "node --test of sdk/typescript skipped tests:\n{said}"
    );
}
