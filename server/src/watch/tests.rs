//! Real files in a temp dir, real inotify. Negative checks wait a few
//! debounce delays and then prove the watcher was alive by changing a file
//! that is not ignored and getting exactly that path back.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::filter::Filter;
use super::*;

const DELAY: Duration = Duration::from_millis(100);

/// How long to wait for a callback that must come; generous, for loaded
/// CI machines. Only a failing test waits this long.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long nothing must happen for a negative check.
const QUIET: Duration = Duration::from_millis(300);

fn config(paths: &[&Path]) -> WatchConfig {
    WatchConfig {
        paths: paths.iter().map(|p| p.to_path_buf()).collect(),
        ignore: Vec::new(),
        ignore_paths: Vec::new(),
        delay: DELAY,
    }
}

/// Starts a watcher whose calls arrive on the returned receiver.
fn start(cfg: WatchConfig) -> (WatchHandle, mpsc::UnboundedReceiver<Vec<PathBuf>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = watch(cfg, move |paths| {
        let _ = tx.send(paths);
    })
    .expect("watch");
    (handle, rx)
}

async fn next_call(rx: &mut mpsc::UnboundedReceiver<Vec<PathBuf>>) -> BTreeSet<PathBuf> {
    tokio::time::timeout(EVENT_TIMEOUT, rx.recv())
        .await
        .expect("no on_change call in time")
        .expect("watcher task ended")
        .into_iter()
        .collect()
}

async fn assert_quiet(rx: &mut mpsc::UnboundedReceiver<Vec<PathBuf>>) {
    if let Ok(call) = tokio::time::timeout(QUIET, rx.recv()).await {
        panic!("unexpected on_change call: {call:?}");
    }
}

fn set(paths: &[&Path]) -> BTreeSet<PathBuf> {
    paths.iter().map(|p| p.to_path_buf()).collect()
}

fn write(path: &Path, contents: &str) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, contents).unwrap();
}

/// A burst of writes to watched files gives one call, after the delay,
/// naming each file once.
#[tokio::test]
async fn a_burst_of_writes_fires_once_after_the_quiet_delay() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("src/app.js");
    let main = dir.path().join("main.js");
    write(&app, "v0");
    let (_handle, mut rx) = start(config(&[dir.path()]));

    for i in 0..5 {
        write(&app, &format!("v{i}"));
    }
    write(&main, "new");
    let last_write = Instant::now();

    assert_eq!(next_call(&mut rx).await, set(&[&app, &main]));
    assert!(
        last_write.elapsed() >= DELAY,
        "fired before the quiet delay"
    );
    assert_quiet(&mut rx).await;
}

/// Built-in ignores, user globs and `ignore_paths` hide changes; a change
/// elsewhere still fires and reports only itself.
#[tokio::test]
async fn ignored_changes_do_not_fire() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let app = root.join("src/app.js");
    write(&app, "v0");
    write(&root.join("node_modules/pkg/index.js"), "v0");
    write(&root.join("logs/app.txt"), "v0");
    write(&root.join(".git/HEAD"), "v0");
    write(&root.join("data/a.txt"), "v0");
    write(&root.join("home/state.json"), "v0");
    let mut cfg = config(&[root]);
    cfg.ignore = vec!["*.tmp".into(), "data/**".into()];
    cfg.ignore_paths = vec![root.join("home"), root.join("out.txt")];
    let (_handle, mut rx) = start(cfg);

    // Built-in: dependencies, VCS, logs, editor files, bytecode.
    write(&root.join("node_modules/pkg/index.js"), "v1");
    write(&root.join("node_modules/newpkg/index.js"), "v1");
    write(&root.join("logs/app.txt"), "v1");
    write(&root.join("src/logs/late.txt"), "v1");
    write(&root.join(".git/HEAD"), "v1");
    write(&root.join("src/debug.log"), "v1");
    write(&root.join("src/.app.js.swp"), "v1");
    write(&root.join("src/app.js~"), "v1");
    write(&root.join("src/.#app.js"), "v1");
    write(&root.join("src/__pycache__/m.pyc"), "v1");
    // User globs.
    write(&root.join("scratch.tmp"), "v1");
    write(&root.join("src/cache.tmp"), "v1");
    write(&root.join("data/a.txt"), "v1");
    write(&root.join("data/new/b.txt"), "v1");
    // ignore_paths, and a rotated sibling of an ignored file.
    write(&root.join("home/state.json"), "v1");
    write(&root.join("out.txt"), "v1");
    write(&root.join("out.txt.1"), "v1");
    assert_quiet(&mut rx).await;

    write(&app, "v1");
    assert_eq!(next_call(&mut rx).await, set(&[&app]));
}

/// Reading a file or changing only its permissions is not a change.
#[tokio::test]
async fn reads_and_chmod_do_not_fire() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.js");
    write(&app, "v0");
    let (_handle, mut rx) = start(config(&[dir.path()]));

    assert_eq!(fs::read_to_string(&app).unwrap(), "v0");
    fs::set_permissions(&app, fs::Permissions::from_mode(0o600)).unwrap();
    assert_quiet(&mut rx).await;

    write(&app, "v1");
    assert_eq!(next_call(&mut rx).await, set(&[&app]));
}

/// A directory created after the watch started is reported and watched:
/// later changes inside it fire too.
#[tokio::test]
async fn a_new_file_in_a_new_subdirectory_fires_and_is_then_watched() {
    let dir = tempfile::tempdir().unwrap();
    let new_file = dir.path().join("a/b/new.rs");
    let (_handle, mut rx) = start(config(&[dir.path()]));

    write(&new_file, "v0");
    let first = next_call(&mut rx).await;
    assert!(first.contains(&dir.path().join("a")), "{first:?}");

    write(&new_file, "v1");
    assert_eq!(next_call(&mut rx).await, set(&[&new_file]));
}

/// Watching a single file survives editors that save by renaming a new
/// file over it; its siblings are not watched.
#[tokio::test]
async fn a_watched_file_survives_atomic_saves() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.js");
    write(&app, "v0");
    let (_handle, mut rx) = start(config(&[&app]));

    for version in ["v1", "v2"] {
        let temp = dir.path().join("app.js.new");
        write(&temp, version);
        fs::rename(&temp, &app).unwrap();
        write(&dir.path().join("sibling.js"), version);
        assert_eq!(next_call(&mut rx).await, set(&[&app]));
    }
}

/// A watched directory deleted and created again (`rm -rf dist && build`)
/// is watched again: changes inside it fire as before; its siblings do not.
#[tokio::test]
async fn a_watched_directory_that_comes_back_is_watched_again() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    write(&sub.join("f"), "v0");
    let (_handle, mut rx) = start(config(&[&sub]));

    fs::remove_dir_all(&sub).unwrap();
    let gone = next_call(&mut rx).await;
    assert!(gone.iter().all(|p| p.starts_with(&sub)), "{gone:?}");
    fs::create_dir(&sub).unwrap();
    let back = next_call(&mut rx).await;
    assert!(back.contains(&sub), "{back:?}");

    write(&dir.path().join("sibling.txt"), "x");
    assert_quiet(&mut rx).await;
    let file = sub.join("f");
    write(&file, "v1");
    assert_eq!(next_call(&mut rx).await, set(&[&file]));
}

/// Dropping the handle stops the callbacks.
#[tokio::test]
async fn dropping_the_handle_stops_callbacks() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.js");
    let (handle, mut rx) = start(config(&[dir.path()]));
    write(&app, "v0");
    assert_eq!(next_call(&mut rx).await, set(&[&app]));

    drop(handle);
    write(&app, "v1");
    // The task is gone, and with it the callback's sender.
    let after = tokio::time::timeout(QUIET, rx.recv()).await;
    assert!(matches!(after, Ok(None)), "{after:?}");
}

/// Bad configs are refused with a message naming the culprit.
#[test]
fn validate_rejects_missing_paths_and_bad_globs() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("src");
    let err = validate(&config(&[&missing])).unwrap_err();
    assert!(matches!(err, WatchError::PathNotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("watch path {} does not exist", missing.display())
    );

    let mut cfg = config(&[dir.path()]);
    cfg.ignore = vec!["*.tmp".into(), "[".into()];
    let err = validate(&cfg).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("ignore_watch: invalid glob \"[\": "),
        "{err}"
    );

    let err = validate(&config(&[Path::new("./src")])).unwrap_err();
    assert!(matches!(err, WatchError::RelativePath { .. }), "{err:?}");
    assert!(matches!(validate(&config(&[])), Err(WatchError::NoPaths)));
    assert!(validate(&config(&[dir.path()])).is_ok());
}

/// Outside a runtime `watch` says so instead of panicking.
#[test]
fn watch_outside_a_runtime_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = watch(config(&[dir.path()]), |_| {}).unwrap_err();
    assert!(matches!(err, WatchError::NoRuntime), "{err:?}");
}

/// Globs without a `/` match any component; with one, relative to the
/// root; built-ins apply below the root only.
#[test]
fn ignore_rules_match_like_gitignore() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("logs"); // a root named like a built-in
    fs::create_dir(&root).unwrap();
    let mut cfg = config(&[&root]);
    cfg.ignore = vec![
        "*.tmp".into(),
        "data/**".into(),
        "/build".into(),
        "cache".into(),
        "./dist/".into(),
        format!("{}/gen/**", root.display()),
    ];
    cfg.ignore_paths = vec![root.join("home"), root.join("out.txt")];
    let filter = Filter::new(&cfg).unwrap();
    let ignored = |p: &str| filter.is_ignored(&root.join(p));

    for p in [
        "x.tmp",
        "a/b/x.tmp",
        "data",
        "data/a",
        "data/a/b",
        "gen",
        "build",
        "build/x",
        "sub/cache",
        "sub/cache/x",
        "dist/x",
        "gen/a",
        "node_modules/x",
        "a/node_modules",
        "a/logs/x",
        ".git/HEAD",
        "a.log",
        ".#a.js",
        "a.js~",
        "a.swp",
        "m.pyc",
        "__pycache__/m",
        "home",
        "home/x",
        "out.txt",
        "out.txt.1",
    ] {
        assert!(ignored(p), "{p} should be ignored");
    }
    for p in [
        "",
        "app.js",
        "src/app.js",
        "database",
        "sub/data/a",
        "sub/build",
        "dist.js",
        "homework",
        "out.txtx",
        "a.tmp.js",
        "sub/gen/a",
    ] {
        assert!(!ignored(p), "{p} should not be ignored");
    }
    assert!(filter.is_ignored(&dir.path().join("elsewhere.js")));
}
