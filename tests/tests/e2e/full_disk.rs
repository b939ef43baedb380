//! "Answered means on disk" on a full disk (issue 8, case 4): a change
//! whose state cannot be written fails with the file and the errno and is
//! undone, never acknowledged; the state reserve keeps state writes
//! possible when something else fills the disk; `state.json.bak` is used
//! when `state.json` cannot be read. The full-disk tests put the home on
//! its own small tmpfs and are skipped (with a message) when not root.

use std::fs;

use pmdaemon_tests::*;

/// 4 MiB: room for the daemon's files, the reserve and little else.
const TMPFS_BYTES: u64 = 4 * 1024 * 1024;

/// The pids of live processes of `home` whose command line is `sleep
/// SECONDS`: each test's apps sleep their own number of seconds.
fn sleeps(d: &TestDaemon, seconds: &str) -> Vec<u32> {
    pids_with_home(d.home())
        .into_iter()
        .filter(|&pid| match cmdline_of(pid).as_slice() {
            [program, arg] => program.ends_with("sleep") && arg == seconds,
            _ => false,
        })
        .collect()
}

fn reserve(d: &TestDaemon) -> std::path::PathBuf {
    d.home().join("state.reserve")
}

/// A daemon on a full tmpfs with one app, `first`, online; the reserve
/// deleted too when `spend_reserve`. None when the test cannot mount.
fn full_home(spend_reserve: bool) -> Option<TestDaemon> {
    let mut d = TestDaemon::new_stopped_on_tmpfs(TMPFS_BYTES)?;
    d.spawn_daemon();
    d.pmd_ok(&["start", "sleep", "--name", "first", "--", "3611"]);
    d.wait_online("first");
    // The write that `pmd start` waited for made the reserve.
    assert!(
        spend_reserve || reserve(&d).exists(),
        "no state.reserve after a write"
    );
    fill_disk(d.work(), "filler");
    if spend_reserve {
        let _ = fs::remove_file(reserve(&d));
        fill_disk(d.work(), "filler2");
        assert!(
            !reserve(&d).exists(),
            "the reserve came back on a full disk"
        );
    }
    assert_eq!(free_bytes(d.home()), 0, "the tmpfs is not full");
    Some(d)
}

/// With no byte free and no reserve, `pmd start` fails with the file and
/// the errno, and nothing of the app remains: not listed, no process, not
/// revived by the next daemon. Stop and delete fail the same way and are
/// undone. Once there is room, the same start succeeds.
#[test]
fn a_change_that_cannot_be_written_fails_and_is_undone() {
    let Some(mut d) = full_home(true) else { return };
    let first = d.wait_online("first");

    let out = d.pmd_code(1, &["start", "sleep", "--name", "newapp", "--", "3612"]);
    let said = String::from_utf8_lossy(&out.stderr);
    let state_path = d.state_path();
    for part in [
        format!("cannot write {}", state_path.display()),
        "No space left on device (os error 28)".to_owned(),
        "nothing was changed".to_owned(),
        "free some space and retry".to_owned(),
    ] {
        assert!(said.contains(&part), "expected {part:?} in: {said}");
    }
    assert!(d.app("newapp").is_none(), "{:?}", d.list_json());
    assert!(sleeps(&d, "3612").is_empty(), "newapp's process was left");
    // Undoing newapp touched nothing else.
    assert_eq!(d.wait_online("first"), first);

    // A stop that cannot be written: first runs again, as the disk says.
    d.pmd_code(1, &["stop", "first"]);
    let first = d.wait_online("first");
    // A delete that cannot be written: first is back, and the error says so.
    let out = d.pmd_code(1, &["delete", "first"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("first (id 0)") && said.contains("back"),
        "{said}"
    );
    d.wait_online("first");
    assert_eq!(sleeps(&d, "3611").len(), 1, "{:?}", sleeps(&d, "3611"));

    // The next daemon (the disk still full) knows first and not newapp.
    d.kill9_daemon();
    d.spawn_daemon();
    let again = d.wait_online("first");
    assert_ne!(again, first);
    assert!(d.app("newapp").is_none(), "{:?}", d.list_json());
    assert!(sleeps(&d, "3612").is_empty());

    // Room again: the same start succeeds and is kept.
    fs::remove_file(d.work().join("filler")).unwrap();
    fs::remove_file(d.work().join("filler2")).unwrap();
    d.pmd_ok(&["start", "sleep", "--name", "newapp", "--", "3612"]);
    d.wait_online("newapp");
    d.kill9_daemon();
    d.spawn_daemon();
    d.wait_online("newapp");
    assert_eq!(sleeps(&d, "3612").len(), 1);
}

/// When logs (here a plain file) fill the disk, the state reserve is spent
/// for the state: `pmd start` succeeds, the daemon log says the reserve was
/// used, and the app survives a `kill -9` of the daemon.
#[test]
fn the_reserve_keeps_the_state_writable_on_a_full_disk() {
    let Some(mut d) = full_home(false) else {
        return;
    };
    d.pmd_ok(&["start", "sleep", "--name", "newapp", "--", "3613"]);
    d.wait_online("newapp");
    assert!(!reserve(&d).exists(), "the reserve was not spent");
    wait_for("the daemon log to say the reserve was used", WAIT, || {
        d.daemon_log().contains("state reserve was deleted")
    });
    d.kill9_daemon();
    d.spawn_daemon();
    d.wait_online("first");
    d.wait_online("newapp");
    assert_eq!(sleeps(&d, "3613").len(), 1, "{:?}", sleeps(&d, "3613"));
}

/// A truncated state.json: the daemon starts from state.json.bak (the
/// state before the last write), says so on `pmd ping`, and stops what the
/// previous daemon left running before it starts the apps again. When the
/// backup cannot be read either, both are moved aside and it starts empty,
/// saying both.
#[test]
fn the_backup_is_used_when_the_state_file_is_unreadable() {
    let mut d = TestDaemon::start();
    for name in ["a", "b"] {
        d.pmd_ok(&["start", "sleep", "--name", name, "--", "3614"]);
    }
    let old: Vec<u32> = ["a", "b"].iter().map(|n| d.wait_online(n)).collect();
    // One more write, so that the backup has both apps.
    d.pmd_ok(&["restart", "a"]);
    let old_a = d.wait_online("a");
    d.kill9_daemon();
    let text = fs::read(d.state_path()).unwrap();
    fs::write(d.state_path(), &text[..text.len() / 2]).unwrap();

    d.spawn_daemon();
    let a = d.wait_online("a");
    let b = d.wait_online("b");
    assert!(!old.contains(&a) && a != old_a && !old.contains(&b));
    wait_for("the previous daemon's apps stopped", WAIT, || {
        sleeps(&d, "3614").len() == 2
    });
    let pong = d.pmd(&["ping"]);
    let said = String::from_utf8_lossy(&pong.stderr);
    assert!(
        said.contains("state.json.bak") && said.contains("unusable"),
        "pmd ping: {said}"
    );

    // Both unreadable: nothing loaded, both named, nothing left running.
    d.kill9_daemon();
    let backup = d.home().join("state.json.bak");
    fs::write(d.state_path(), "{ trunc").unwrap();
    fs::write(&backup, "{ also trunc").unwrap();
    d.spawn_daemon();
    assert!(d.list_json().is_empty(), "{:?}", d.list_json());
    wait_for("the previous daemon's apps stopped", WAIT, || {
        sleeps(&d, "3614").is_empty()
    });
    let pong = d.pmd(&["ping"]);
    let said = String::from_utf8_lossy(&pong.stderr);
    assert!(
        said.matches("is unusable").count() == 2 && said.contains("state.json.bak"),
        "pmd ping: {said}"
    );
}
