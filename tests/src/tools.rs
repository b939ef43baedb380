//! Tools and packages from other ecosystems that tests install for
//! themselves from files committed in the repository: buf from the npm
//! registry ([`npm_tools`], `npm ci` of `tests/contract/package-lock.json`),
//! the TypeScript client's own `node_modules` ([`npm_package`]),
//! schemathesis from PyPI ([`python_venv`], a virtualenv with pinned
//! requirements) and the Python client ([`python_package_venv`], `pip
//! install -e`). Each is reused while a stamp in its directory matches the
//! hash of what it was made from (lock file, interpreter version) and made
//! anew otherwise. A file lock per directory serializes the tests (and
//! concurrent `cargo test` runs) that want the same install.
//!
//! A missing `npm`, `node` or `python3` fails the test with what to
//! install: a test never passes without having run its tool.

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

/// node (18 or newer) and npm, as `node vX, npm Y`, or a failure that says
/// what to install for `package_dir`.
fn node_toolchain(package_dir: &str) -> String {
    let missing = format!(
        "node 18 or newer and npm are needed here ({package_dir} comes from the npm \
         registry): install them, e.g. `apt-get install nodejs npm`"
    );
    let node = version_of("node", &missing);
    let major = node
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    assert!(
        major.is_some_and(|m| m >= 18),
        "{missing}\n(this node is {node})"
    );
    format!("node {node}, npm {}", version_of("npm", &missing))
}

/// Runs `npm ARGS` in `dir`, failing with its output and `why` it may
/// have failed.
pub fn npm(dir: &Path, args: &[&str], timeout: crate::wait::Timeout, why: &str) {
    let out = run_with_timeout(
        Command::new("npm")
            .args(args)
            .current_dir(dir)
            .env("npm_config_update_notifier", "false")
            .env("npm_config_fund", "false")
            .env("npm_config_audit", "false")
            .env("npm_config_loglevel", "error"),
        timeout,
    );
    assert!(
        out.status.success(),
        "`npm {}` in {} failed ({why}):\n{}",
        args.join(" "),
        dir.display(),
        output_text(&out)
    );
}

/// The lock and package files of the npm package in `package_dir`
/// (relative to the repository) and the toolchain: what an install of it
/// is made from.
fn npm_inputs(package_dir: &str) -> Vec<u8> {
    let source = repo_root().join(package_dir);
    let mut inputs = Vec::new();
    for file in ["package-lock.json", "package.json"] {
        inputs.extend(
            fs::read(source.join(file))
                .unwrap_or_else(|e| panic!("read {package_dir}/{file}: {e}")),
        );
    }
    inputs.extend_from_slice(node_toolchain(package_dir).as_bytes());
    inputs
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
    cached(&dir, &npm_inputs(package_dir), |dir| {
        for file in ["package.json", "package-lock.json"] {
            fs::copy(source.join(file), dir.join(file))
                .unwrap_or_else(|e| panic!("copy {package_dir}/{file}: {e}"));
        }
        npm(
            dir,
            &["ci", "--ignore-scripts"],
            WAIT.times(10),
            "it needs the npm registry",
        );
    });
    dir.join("node_modules/.bin")
}

/// `package_dir` (relative to the repository) with its own
/// `node_modules` from `npm ci`, for a package that is built and tested
/// where it is (the TypeScript client). The stamp lives in `node_modules`,
/// which `npm ci` empties first, so an interrupted install leaves none.
pub fn npm_package(package_dir: &str) -> PathBuf {
    let dir = repo_root().join(package_dir);
    cached(&dir.join("node_modules"), &npm_inputs(package_dir), |_| {
        npm(&dir, &["ci"], WAIT.times(20), "it needs the npm registry");
    });
    dir
}

const PYTHON_MISSING: &str = "python3 with venv and pip is needed here: install Python 3.9 or \
                              newer, e.g. `apt-get install python3 python3-venv python3-pip`";

/// A new virtualenv in `dir` (which exists and is empty).
fn make_venv(dir: &Path) {
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
}

/// Runs the venv's `pip install ARGS`, failing with what it said.
fn pip_install(dir: &Path, args: &[&std::ffi::OsStr], what: &str) {
    let out = run_with_timeout(
        Command::new(dir.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(args)
            .env("PIP_NO_INPUT", "1"),
        WAIT.times(20),
    );
    assert!(
        out.status.success(),
        "pip install {what} into {} failed (it needs PyPI):\n{}",
        dir.display(),
        output_text(&out)
    );
}

/// The `bin/` of a virtualenv under `<target>/<name>` with the pinned
/// `requirements` (a file relative to the repository) installed from PyPI.
pub fn python_venv(requirements: &str, name: &str) -> PathBuf {
    let dir = target_dir().join(name);
    let file = repo_root().join(requirements);
    let mut inputs = fs::read(&file).unwrap_or_else(|e| panic!("read {requirements}: {e}"));
    inputs.extend_from_slice(version_of("python3", PYTHON_MISSING).as_bytes());
    cached(&dir, &inputs, |dir| {
        make_venv(dir);
        pip_install(
            dir,
            &["--no-deps".as_ref(), "-r".as_ref(), file.as_os_str()],
            &format!("-r {requirements}"),
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

/// The `bin/` of a virtualenv under `<target>/<name>` with the Python
/// package in `package_dir` (relative to the repository) installed
/// editable with its `extra` (`pip install -e DIR[extra]`), remade when
/// its `pyproject.toml` or the interpreter changes.
pub fn python_package_venv(package_dir: &str, extra: &str, name: &str) -> PathBuf {
    let dir = target_dir().join(name);
    let source = repo_root().join(package_dir);
    let mut inputs = fs::read(source.join("pyproject.toml"))
        .unwrap_or_else(|e| panic!("read {package_dir}/pyproject.toml: {e}"));
    inputs.extend_from_slice(version_of("python3", PYTHON_MISSING).as_bytes());
    cached(&dir, &inputs, |dir| {
        make_venv(dir);
        let package = format!("{}[{extra}]", source.display());
        pip_install(
            dir,
            &["-e".as_ref(), package.as_ref()],
            &format!("-e {package_dir}[{extra}]"),
        );
    });
    dir.join("bin")
}
