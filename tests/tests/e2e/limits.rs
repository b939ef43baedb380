//! Resource limits (issue 8): the daemon's own open-file limit and the one
//! its apps get.

use std::fs;

use pmdaemon_tests::*;

/// A process's (soft, hard) open-file limits, as `/proc/PID/limits`
/// shows them.
fn nofile_limits(pid: u32) -> (String, String) {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open-file limit in {limits}"));
    let mut fields = line["Max open files".len()..].split_whitespace();
    (
        fields.next().unwrap().to_owned(),
        fields.next().unwrap().to_owned(),
    )
}

/// The daemon raises its soft open-file limit to the hard one (so that a
/// few hundred apps do not exhaust the 1024 most shells give), and its
/// apps get back the limit the daemon was started with. Issue 8, case 11.
#[test]
fn the_daemon_raises_its_open_file_limit_and_apps_keep_theirs() {
    let mut d = TestDaemon::new_stopped();
    d.set_daemon_nofile_soft(256);
    d.spawn_daemon();
    let (soft, hard) = nofile_limits(d.daemon_pid());
    assert_eq!(soft, hard, "the daemon's own soft limit was not raised");
    assert_ne!(soft, "256");
    d.pmd_ok(&["start", "sleep", "--name", "limited", "--", "3607"]);
    let app = d.wait_online("limited");
    assert_eq!(nofile_limits(app), ("256".to_owned(), hard));
}
