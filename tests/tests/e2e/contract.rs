//! The contract (`proto/`) checked with buf, from the one test command:
//! `buf lint` with `proto/buf.yaml`, and `buf breaking` against the
//! committed baseline image `proto/baseline/pmdaemon-v1.binpb`, which must
//! also be the image of `proto/` as it is (so a compatible change updates
//! it in the same commit, and what it adds is protected from then on).
//!
//! Why a committed baseline and not `.git#ref=HEAD~1`: it works on a
//! shallow clone and offline, and it catches a break spread over several
//! commits (against HEAD~1, a field removed one commit ago is already
//! gone from the reference). An incompatible change cannot pass without
//! rewriting the baseline, a binary diff that review sees; it belongs in a
//! new package, `pmdaemon.v2`, beside v1.
//!
//! buf comes from the npm registry (`@bufbuild/buf`, pinned by
//! `tests/contract/package-lock.json`), installed by `npm ci` into
//! `target/contract-tools` (see `pmdaemon_tests::npm_tools`). The other
//! tests here prove the check refuses what it must: a removed field, a
//! renumbered field, and a compatible change without its baseline.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use pmdaemon_tests::*;

/// The baseline image, relative to `proto/`.
const BASELINE: &str = "baseline/pmdaemon-v1.binpb";

/// buf, installed from the committed lock file.
fn buf() -> PathBuf {
    npm_tools("tests/contract", "contract-tools").join("buf")
}

/// Runs buf in `proto` (a module root with its buf.yaml) with `args`;
/// `Err` with everything buf said when it fails.
fn run_buf(proto: &Path, args: &[&str]) -> Result<(), String> {
    // buf's cache (modules, never needed offline here) in a temp dir, so a
    // run leaves nothing in the user's home.
    let cache = tempfile::tempdir().expect("temp dir for buf's cache");
    let out = run_with_timeout(
        Command::new(buf())
            .args(args)
            .current_dir(proto)
            .env("BUF_CACHE_DIR", cache.path()),
        WAIT,
    );
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "`buf {}` in {} failed ({}):\n{}",
            args.join(" "),
            proto.display(),
            out.status,
            output_text(&out)
        )),
    }
}

/// The whole check of a contract directory, as CI runs it on `proto/`:
/// lint, breaking against the baseline, and the baseline is the current
/// image.
fn check_contract(proto: &Path) -> Result<(), String> {
    run_buf(proto, &["lint"])?;
    run_buf(proto, &["breaking", "--against", BASELINE])
        .map_err(|e| format!("{e}\nAn incompatible change goes to a new package, pmdaemon.v2."))?;
    let built = tempfile::tempdir().expect("temp dir for the image");
    let image = built.path().join("current.binpb");
    run_buf(
        proto,
        &[
            "build",
            "--exclude-source-info",
            "-o",
            image.to_str().expect("a UTF-8 temp path"),
        ],
    )?;
    let current = fs::read(&image).expect("read the image buf built");
    let baseline = fs::read(proto.join(BASELINE))
        .map_err(|e| format!("read {}: {e}", proto.join(BASELINE).display()))?;
    if current != baseline {
        return Err(format!(
            "the contract changed compatibly (buf breaking passed) but its baseline was not \
             updated: rebuild it in the same commit with\n  cd proto && {} build \
             --exclude-source-info -o {BASELINE}",
            buf().display()
        ));
    }
    Ok(())
}

/// A copy of the repository's `proto/` in a temp dir, to break.
fn proto_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir for a copy of proto/");
    let out = Command::new("cp")
        .arg("-R")
        .arg(repo_root().join("proto/."))
        .arg(dir.path())
        .output()
        .expect("run cp");
    assert!(out.status.success(), "cp -R proto: {}", output_text(&out));
    dir
}

/// Replaces `from` (which must occur exactly once) by `to` in the copy's
/// process_manager.proto.
fn edit(proto: &Path, from: &str, to: &str) {
    let file = proto.join("pmdaemon/v1/process_manager.proto");
    let text = fs::read_to_string(&file).expect("read process_manager.proto");
    assert_eq!(
        text.matches(from).count(),
        1,
        "the edit needs `{from}` exactly once in process_manager.proto"
    );
    fs::write(&file, text.replacen(from, to, 1)).expect("write process_manager.proto");
}

/// `proto/` is lint-clean, compatible with its baseline, and the baseline
/// is up to date.
#[test]
fn contract_passes_buf_lint_and_breaking() {
    if let Err(failure) = check_contract(&repo_root().join("proto")) {
        panic!("{failure}");
    }
}

/// The check refuses a wire-incompatible change: a field removed from a
/// response, and a field given another number.
#[test]
fn buf_breaking_refuses_a_removed_or_renumbered_field() {
    let removed = proto_copy();
    edit(removed.path(), "  uint32 restarts = 6;\n", "");
    let failure = check_contract(removed.path()).expect_err("a removed field must fail");
    assert!(
        failure.contains("buf breaking")
            && failure.contains("\"restarts\"")
            && failure.contains("ProcessInfo"),
        "buf breaking did not name the removed field:\n{failure}"
    );

    let renumbered = proto_copy();
    edit(
        renumbered.path(),
        "uint32 unstable_restarts = 7;",
        "uint32 unstable_restarts = 99;",
    );
    let failure = check_contract(renumbered.path()).expect_err("a renumbered field must fail");
    assert!(
        failure.contains("buf breaking") && failure.contains("unstable_restarts"),
        "buf breaking did not name the renumbered field:\n{failure}"
    );
}

/// A compatible change (a new field) passes buf breaking and is then
/// refused until the baseline is rebuilt; rebuilt as the message says, the
/// check passes.
#[test]
fn a_compatible_change_must_update_the_baseline() {
    let copy = proto_copy();
    let proto = copy.path();
    edit(
        proto,
        "uint32 unstable_restarts = 7;",
        "uint32 unstable_restarts = 7;\n  uint32 added_in_a_test = 900;",
    );
    let failure = check_contract(proto).expect_err("a stale baseline must fail");
    assert!(
        failure.contains("baseline was not updated") && failure.contains("build"),
        "a stale baseline was not reported as such:\n{failure}"
    );
    run_buf(proto, &["build", "--exclude-source-info", "-o", BASELINE])
        .expect("rebuild the baseline");
    if let Err(failure) = check_contract(proto) {
        panic!("the rebuilt baseline still fails:\n{failure}");
    }
}
