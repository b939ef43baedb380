//! Tools from other ecosystems that the contract tests install for
//! themselves from lock files committed in `tests/contract/`: buf from the
//! npm registry ([`npm_tools`], `npm ci` of `package-lock.json`) and
//! schemathesis from PyPI ([`python_venv`], a virtualenv with
//! `requirements.txt`). Each lands in its own directory under the cargo
//! target directory (gitignored) and is reused while a stamp in it
//! matches the hash of its lock file and the interpreter's version; it is
//! made anew otherwise. A file lock per directory serializes the tests
//! (and concurrent `cargo test` runs) that want the same tools.
//!
//! A missing `npm` or `python3` fails the test with what to install: a
//! test never passes without having run its tool.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::command::run_with_timeout;
use crate::wait::WAIT;

/// Written last into a tools directory: the hash of what it was made
/// from. A directory without it (an interrupted install) is made anew.
const STAMP: &str = "pmdaemon-tools-stamp";

/// The repository's root (the parent of `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// `$CARGO_TARGET_DIR`, or `target/` in the repository.
pub fn target_dir() -> PathBuf {
    let root = repo_root();
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { root.join(t) })
        .unwrap_or_else(|| root.join("target"))
}

/// What a command wrote, stdout then stderr, for a failure message.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// FNV-1a 64: a stable hash of a stamp's inputs (std's hasher may change
/// between Rust releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `program --version`, or a failure that says what to install.
fn version_of(program: &str, missing: &str) -> String {
    match Command::new(program).arg("--version").output() {
        Ok(out) if out.status.success() => output_text(&out).trim().to_string(),
        Ok(out) => panic!(
            "{missing}\n`{program} --version` failed: {}",
            output_text(&out)
        ),
        Err(e) => panic!("{missing}\n(running {program}: {e})"),
    }
}

/// Runs `make` into `dir` unless `dir` holds a stamp of `inputs`; holds a
/// lock on `dir`'s lock file meanwhile, so concurrent callers wait for one
/// install instead of racing on the same files.
fn cached(dir: &Path, inputs: &[u8], make: impl FnOnce(&Path)) {
    fs::create_dir_all(dir.parent().expect("a tools dir has a parent"))
        .expect("create the target dir");
    let lock = fs::File::create(dir.with_extension("lock")).expect("create a tools lock file");
    lock.lock().expect("lock the tools dir");
    let stamp = format!("{:016x}\n", fnv1a(inputs));
    if fs::read_to_string(dir.join(STAMP)).is_ok_and(|s| s == stamp) {
        return;
    }
    if dir.exists() {
        fs::remove_dir_all(dir).expect("remove a stale tools dir");
    }
    fs::create_dir_all(dir).expect("create a tools dir");
    make(dir);
    fs::write(dir.join(STAMP), stamp).expect("write a tools stamp");
    // The lock is released when `lock` drops.
}

/// The `node_modules/.bin` of `npm ci` run on the `package.json` and
/// `package-lock.json` of `package_dir` (relative to the repository),
/// installed under `<target>/<name>`. Install scripts are not run: the
/// packages' own launchers find their binaries without them.
pub fn npm_tools(package_dir: &str, name: &str) -> PathBuf {
    let source = repo_root().join(package_dir);
    let dir = target_dir().join(name);
    let missing = "node and npm are needed for the contract checks (buf comes from the npm \
                   registry as @bufbuild/buf): install Node.js 18 or newer with npm, e.g. \
                   `apt-get install nodejs npm`";
    let mut inputs = fs::read(source.join("package-lock.json"))
        .unwrap_or_else(|e| panic!("read {package_dir}/package-lock.json: {e}"));
    inputs.extend_from_slice(version_of("node", missing).as_bytes());
    version_of("npm", missing);
    cached(&dir, &inputs, |dir| {
        for file in ["package.json", "package-lock.json"] {
            fs::copy(source.join(file), dir.join(file))
                .unwrap_or_else(|e| panic!("copy {package_dir}/{file}: {e}"));
        }
        let out = run_with_timeout(
            Command::new("npm")
                .args([
                    "ci",
                    "--ignore-scripts",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                ])
                .current_dir(dir),
            WAIT.times(10),
        );
        assert!(
            out.status.success(),
            "`npm ci` of {package_dir}/package-lock.json into {} failed (it needs the npm \
             registry):\n{}",
            dir.display(),
            output_text(&out)
        );
    });
    dir.join("node_modules/.bin")
}

/// The `bin/` of a virtualenv under `<target>/<name>` with the pinned
/// `requirements` (a file relative to the repository) installed from PyPI.
pub fn python_venv(requirements: &str, name: &str) -> PathBuf {
    let dir = target_dir().join(name);
    let missing = "python3 with venv and pip is needed here: install Python 3.9 or newer, \
                   e.g. `apt-get install python3 python3-venv python3-pip`";
    let file = repo_root().join(requirements);
    let mut inputs = fs::read(&file).unwrap_or_else(|e| panic!("read {requirements}: {e}"));
    inputs.extend_from_slice(version_of("python3", missing).as_bytes());
    cached(&dir, &inputs, |dir| {
        let out = run_with_timeout(
            Command::new("python3").args(["-m", "venv"]).arg(dir),
            WAIT.times(4),
        );
        assert!(
            out.status.success(),
            "`python3 -m venv {}` failed: install the venv module, e.g. `apt-get install \
             python3-venv`\n{}",
            dir.display(),
            output_text(&out)
        );
        let out = run_with_timeout(
            Command::new(dir.join("bin/python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-deps",
                    "-r",
                ])
                .arg(&file)
                .env("PIP_NO_INPUT", "1"),
            WAIT.times(20),
        );
        assert!(
            out.status.success(),
            "pip install -r {requirements} into {} failed (it needs PyPI):\n{}",
            dir.display(),
            output_text(&out)
        );
        // `--no-deps` installs exactly the pins; `pip check` proves the
        // pins are the whole set (a missing one would be fetched unpinned).
        let out = run_with_timeout(
            Command::new(dir.join("bin/python")).args(["-m", "pip", "check"]),
            WAIT.times(2),
        );
        assert!(
            out.status.success(),
            "{requirements} is not a complete set of pins:\n{}",
            output_text(&out)
        );
    });
    dir.join("bin")
}
