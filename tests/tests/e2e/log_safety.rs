//! Log files that cannot be turned against the daemon (issue 8, cases 4,
//! 5 and 11, log side): custom log directories judged by who may write
//! them and by their resolved path, directories held open so that a swap
//! changes nothing, idle log files closed, and a disk reserve that keeps
//! app logs from filling the disk under the state file.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use pmdaemon_tests::*;

/// `nobody`: owns the "foreign" directory.
const OTHER_UID: u32 = 65534;

fn refused(d: &TestDaemon, name: &str, out_file: &Path) -> String {
    let out = d.pmd(&[
        "start",
        "sleep",
        "--name",
        name,
        "--log-max-size",
        "1K",
        "-o",
        arg(out_file),
        "--",
        "3608",
    ]);
    assert!(
        !out.status.success(),
        "{} was accepted\n{}",
        out_file.display(),
        describe_output(&out)
    );
    assert!(d.app(name).is_none(), "{name} was created");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A directory of another user is refused, naming it and its owner, and a
/// link planted in it is never followed; so is a directory others may
/// write without the sticky bit, and a stranger's file in a sticky one.
/// Needs root (chown); skipped otherwise.
#[test]
fn log_directories_other_users_could_write_are_refused() {
    if !is_root() {
        eprintln!("skipped: giving a directory to uid {OTHER_UID} needs root");
        return;
    }
    let d = TestDaemon::start();
    let victim = d.write_file("root-only.txt", "precious\n");
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();

    let foreign = d.work().join("foreign");
    fs::create_dir(&foreign).unwrap();
    let link = foreign.join("out.log");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    std::os::unix::fs::chown(&foreign, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    for path in [link.clone(), foreign.join("fresh.log")] {
        let text = refused(&d, "foreign", &path);
        assert!(text.contains(&foreign.display().to_string()), "{text}");
        assert!(text.contains(&format!("uid {OTHER_UID}")), "{text}");
    }
    assert!(!foreign.join("fresh.log").exists());

    let open = d.work().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let text = refused(&d, "open", &open.join("out.log"));
    assert!(text.contains("without the sticky bit"), "{text}");

    // Sticky, like /tmp: a file of the daemon's user is fine, a stranger's
    // is not.
    fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
    let theirs = open.join("theirs.log");
    fs::write(&theirs, "theirs\n").unwrap();
    std::os::unix::fs::chown(&theirs, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    let text = refused(&d, "sticky", &theirs);
    assert!(text.contains("belongs to uid"), "{text}");
    d.pmd_ok(&[
        "start",
        "sleep",
        "--name",
        "mine",
        "-o",
        arg(&open.join("mine.log")),
        "--",
        "3608",
    ]);
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(fs::read_to_string(&theirs).unwrap(), "theirs\n");
}

/// `--out-file` through a symbolic link into the daemon's home is refused
/// like the home itself: rotation would rename `state.json` away.
#[test]
fn a_log_path_through_a_link_into_the_home_is_refused() {
    let d = TestDaemon::start();
    d.pmd_ok(&["start", "sleep", "--name", "keeper", "--", "3608"]);
    let link = d.work().join("link-to-home");
    std::os::unix::fs::symlink(d.home(), &link).unwrap();
    let before = fs::read(d.state_path()).unwrap();
    let text = refused(&d, "sneaky", &link.join("state.json"));
    assert!(text.contains("daemon's home"), "{text}");
    assert_eq!(fs::read(d.state_path()).unwrap(), before);
}

/// A custom log directory is held open: swapped for a link after the app
/// started, its rotations and a flush still happen in the directory that
/// was opened, and the link's target is never touched.
#[test]
fn a_log_directory_swapped_for_a_link_is_not_followed() {
    let d = TestDaemon::start();
    let logs = d.work().join("applogs");
    fs::create_dir(&logs).unwrap();
    let decoy = d.work().join("decoy");
    fs::create_dir(&decoy).unwrap();
    fs::write(decoy.join("app.log"), "precious\n").unwrap();
    d.pmd_ok(&[
        "start",
        "sh",
        "--name",
        "swapped",
        "--cwd",
        arg(d.work()),
        "--log-max-size",
        "1K",
        "-o",
        arg(&logs.join("app.log")),
        "--",
        "-c",
        "echo started; while [ ! -e go ]; do sleep 0.05; done; \
         i=0; while [ $i -lt 100 ]; do echo line-$i-with-some-padding-to-fill-a-kilobyte; \
         i=$((i+1)); done; exec sleep 3608",
    ]);
    d.wait_online("swapped");
    wait_for("the first line", WAIT, || {
        fs::read_to_string(logs.join("app.log")).is_ok_and(|t| t.contains("started"))
    });
    let moved = d.work().join("applogs-moved");
    fs::rename(&logs, &moved).unwrap();
    std::os::unix::fs::symlink(&decoy, &logs).unwrap();
    d.write_file("go", "");
    wait_for("the last line in the moved directory", WAIT, || {
        fs::read_to_string(moved.join("app.log")).is_ok_and(|t| t.contains("line-99-"))
    });
    assert!(moved.join("app.log.1").exists(), "no rotation happened");
    d.pmd_ok(&["flush", "swapped"]);
    assert_eq!(fs::read(moved.join("app.log")).unwrap(), b"");
    let names: Vec<_> = fs::read_dir(&decoy)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["app.log"], "files appeared in the link's target");
    assert_eq!(
        fs::read_to_string(decoy.join("app.log")).unwrap(),
        "precious\n"
    );
}

/// The log files the daemon holds open (from /proc/PID/fd).
fn open_log_files(pid: u32) -> Vec<String> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .filter(|p| p.ends_with(".log") || p.contains(".log."))
        .filter(|p| !p.ends_with("pmdaemond.log"))
        .collect()
}

/// Log files are closed once idle, so an app costs the daemon its pipes,
/// not its files; the next line reopens the same file.
#[test]
fn idle_log_files_are_closed_and_reopened() {
    let d = TestDaemon::start();
    for n in 0..10 {
        d.pmd_ok(&[
            "start",
            "sh",
            "--name",
            &format!("idle{n}"),
            "--",
            "-c",
            "echo out-line; echo err-line >&2; exec sleep 3608",
        ]);
    }
    for n in 0..10 {
        let name = format!("idle{n}");
        d.wait_online(&name);
        let err = d.logs_dir().join(format!("{name}-{n}-err.log"));
        wait_for("both lines in the files", WAIT, || {
            fs::read_to_string(&err).is_ok_and(|t| t == "err-line\n")
        });
    }
    let pid = d.daemon_pid();
    wait_for("every log file closed", WAIT, || {
        open_log_files(pid).is_empty()
    });
    d.pmd_ok(&["restart", "idle3"]);
    let out = d.logs_dir().join("idle3-3-out.log");
    wait_for("the restarted run's line in the same file", WAIT, || {
        fs::read_to_string(&out).is_ok_and(|t| t == "out-line\nout-line\n")
    });
    wait_for("closed again", WAIT, || open_log_files(pid).is_empty());
}

/// Free bytes (for an unprivileged writer) of the file system of `path`.
fn free_bytes(path: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(path).unwrap();
    st.blocks_available() * st.fragment_size()
}

/// An app that floods its log on a small file system stops being written
/// near the reserve: one `logs_paused` event, one warning, and the state
/// file can still be written (`pmd start` works and is on disk). Freeing
/// space resumes writes, with a `logs_resumed` event. Needs root for the
/// tmpfs; skipped otherwise.
#[test]
fn app_logs_stop_at_the_disk_reserve() {
    const RESERVE: u64 = 4 << 20;
    let Some(mut d) = TestDaemon::new_stopped_on_tmpfs(8 << 20) else {
        return;
    };
    d.set_daemon_args(&["--log-reserve", "4M"]);
    d.spawn_daemon();
    let mut events = d.events();
    d.pmd_ok(&[
        "start",
        "sh",
        "--name",
        "flood",
        "--",
        "-c",
        "exec yes 0123456789abcdef0123456789abcdef0123456789abcdef",
    ]);
    events.wait_event("logs_paused of flood", |e| {
        e["name"] == "flood" && kind_of(e) == "logs_paused"
    });
    // The app keeps writing all along: without the reserve the disk would
    // be full by the time these are done.
    d.pmd_ok(&["start", "sleep", "--name", "newapp", "--", "3600"]);
    assert!(d.state().to_string().contains("newapp"));
    let free = free_bytes(d.home());
    assert!(
        free >= RESERVE - (1 << 20),
        "only {free} bytes free under a {RESERVE}-byte reserve"
    );
    let warnings = d
        .daemon_log()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("log files paused"))
        .count();
    assert_eq!(warnings, 1, "{}", d.daemon_log());
    let out_log = fs::read_dir(d.logs_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .ends_with("-out.log")
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("flood-")
        })
        .expect("flood's log file");
    assert!(fs::metadata(&out_log).unwrap().len() > 1 << 20);

    d.pmd_ok(&["flush", "flood"]);
    events.wait_event("logs_resumed of flood", |e| {
        e["name"] == "flood" && kind_of(e) == "logs_resumed"
    });
    d.pmd_ok(&["delete", "flood"]);
}
