//! The binaries under test: `pmdaemond` and `pmd`, taken from the target
//! directory of the running test executable, never from `PATH`, and
//! refused when a source file changed after they were linked.
//!
//! Talks to: the filesystem only (the binaries and cargo's dep-info files).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Paths of the binaries under test.
#[derive(Debug)]
pub struct Binaries {
    pub pmdaemond: PathBuf,
    pub pmd: PathBuf,
}

/// The workspace's `pmdaemond` and `pmd`, next to this test executable
/// (`target/<host-tuple>/debug/deps/e2e-HASH` → `target/<host-tuple>/debug/`). Panics with a hint when
/// they have not been built.
pub fn binaries() -> &'static Binaries {
    static BINS: OnceLock<Binaries> = OnceLock::new();
    BINS.get_or_init(|| {
        let exe = std::env::current_exe().expect("path of the test executable");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable lives in target/<profile>/deps/");
        let bins = Binaries {
            pmdaemond: dir.join("pmdaemond"),
            pmd: dir.join("pmd"),
        };
        for bin in [&bins.pmdaemond, &bins.pmd] {
            assert!(
                bin.is_file(),
                "{} is missing: build the workspace first: cargo build --workspace",
                bin.display()
            );
            if let Some(newer) = newer_source(bin) {
                panic!(
                    "{} is older than {}: rebuild first: cargo build --workspace",
                    bin.display(),
                    newer.display()
                );
            }
        }
        bins
    })
}

/// A source file of `bin` modified after it was linked, according to the
/// dep-info file cargo writes next to it (`target/debug/pmd.d`).
fn newer_source(bin: &Path) -> Option<PathBuf> {
    let built = fs::metadata(bin).and_then(|m| m.modified()).ok()?;
    let mut dep_info = bin.as_os_str().to_owned();
    dep_info.push(".d");
    let text = fs::read_to_string(dep_info).ok()?;
    // `target: dep dep ...`, spaces inside paths escaped as `\ `.
    let (_, deps) = text.lines().next()?.split_once(": ")?;
    let deps = deps.replace("\\ ", "\0");
    deps.split_whitespace()
        .map(|d| PathBuf::from(d.replace('\0', " ")))
        .find(|dep| {
            fs::metadata(dep)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t > built)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    /// A binary is stale when a file in its dep-info changed after it.
    #[test]
    fn newer_source_reads_cargo_dep_info() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("pmd");
        let dep = dir.path().join("with space.rs");
        fs::write(&bin, "").unwrap();
        fs::write(&dep, "").unwrap();
        let dep_line = dep.to_str().unwrap().replace(' ', "\\ ");
        fs::write(
            dir.path().join("pmd.d"),
            format!("{}: {dep_line}\n", bin.display()),
        )
        .unwrap();
        let set = |path: &Path, t: SystemTime| {
            fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(t)
                .unwrap()
        };
        let now = SystemTime::now();
        set(&bin, now);
        set(&dep, now - Duration::from_secs(60));
        assert_eq!(newer_source(&bin), None);
        set(&dep, now + Duration::from_secs(60));
        assert_eq!(newer_source(&bin), Some(dep));
    }
}
