//! Gives the release link of the `pmdaemond` binary the symbol ordering file
//! `link/pmdaemond.order` (written by `bench/text_order.py`): lld then puts
//! the functions the daemon runs at start and at idle first in `.text`, so
//! the pages an idle daemon keeps resident hold its own code rather than
//! the listener's and the gateway's (bench/README.md, "Idle RSS and the
//! binary's layout").
//!
//! Only for release builds of x86_64-unknown-linux-gnu, where Rust links
//! with its bundled lld (`--symbol-ordering-file` is lld's); debug builds,
//! tests and other targets link as before. `PMDAEMOND_TEXT_ORDER=0` turns it
//! off (to measure what it gives, or when linking with another linker).
//! The path is from `CARGO_MANIFEST_DIR`, so `cargo install --path server`
//! from a clean clone gets the ordered binary too.

use std::path::PathBuf;

fn main() {
    let order = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"))
        .join("link")
        .join("pmdaemond.order");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-env-changed=PMDAEMOND_TEXT_ORDER");

    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let lld_target = std::env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu");
    let wanted = std::env::var("PMDAEMOND_TEXT_ORDER").map_or(true, |v| v != "0");
    if !(release && lld_target && wanted) {
        return;
    }
    // Two -Xlinker arguments, not -Wl: a comma in the path would split it.
    // Names the binary no longer has (the file went stale) are skipped
    // without a warning each: `bench/text_order.py --check` counts them.
    for arg in [
        "--no-warn-symbol-ordering".to_owned(),
        format!("--symbol-ordering-file={}", order.display()),
    ] {
        println!("cargo:rustc-link-arg-bin=pmdaemond=-Xlinker");
        println!("cargo:rustc-link-arg-bin=pmdaemond={arg}");
    }
}
