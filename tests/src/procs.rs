//! Processes as the kernel sees them: liveness, zombies, and what a process
//! really got (environment, command line, cwd), read from `/proc`; finding
//! every process of a `PMDAEMON_HOME` and SIGKILLing them all, with the
//! cgroups its daemon made.
//!
//! Talks to: `/proc`, the cgroup2 file system (only the home's own
//! directory, `pmdaemond::cgroup_dir_of`), and signals (only to the
//! processes of a test's own home).

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Instant;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::wait::{DAEMON_STOP_TIMEOUT, POLL_INTERVAL};

/// True if `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 follows the parenthesised command name, which may itself
        // contain spaces and parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// The parent of `pid` (`PPid:` in its status), None once it is gone.
pub fn ppid_of(pid: u32) -> Option<u32> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))?
        .trim()
        .parse()
        .ok()
}

/// Zombie children of `parent`: processes it has not reaped.
pub fn zombie_children(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let mut fields = stat
                    .rsplit_once(')')
                    .map(|(_, r)| r)
                    .unwrap_or("")
                    .split_whitespace();
                fields.next() == Some("Z") && fields.next() == Some(parent.to_string().as_str())
            })
        })
        .collect()
}

/// Pids of live (non-zombie) processes whose environment contains exactly
/// the entry `PMDAEMON_HOME=<home>` (this test process excluded).
pub fn pids_with_home(home: &Path) -> Vec<u32> {
    let mut needle = b"PMDAEMON_HOME=".to_vec();
    needle.extend_from_slice(home.as_os_str().as_encoded_bytes());
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|entry| entry == needle))
        })
        .filter(|&pid| pid_alive(pid))
        .collect()
}

/// SIGKILLs every process of `home` (see [`pids_with_home`]), with its
/// process group, until none is left or [`DAEMON_STOP_TIMEOUT`] has
/// passed. The last resort of a test's cleanup: apps inherit their
/// daemon's `PMDAEMON_HOME`, so this reaches them and their descendants.
pub fn kill_home_processes(home: &Path) {
    let deadline = DAEMON_STOP_TIMEOUT.deadline();
    remove_home_cgroups(home, deadline);
    loop {
        let pids = pids_with_home(home);
        if pids.is_empty() || Instant::now() >= deadline {
            return;
        }
        for pid in pids {
            let p = Pid::from_raw(pid as i32);
            // Apps lead their own process groups; grandchildren share them.
            let _ = killpg(p, Signal::SIGKILL);
            let _ = kill(p, Signal::SIGKILL);
        }
        // Until their parents reap them, the killed are zombies for a
        // moment; this pause is the poll interval, not a deadline.
        thread::sleep(POLL_INTERVAL);
    }
}

/// SIGKILLs the processes of every home under `root` ([`kill_home_processes`]
/// on each `PMDAEMON_HOME` found in a live process's environment that lies
/// under `root`): the last resort after a test runner that starts daemons
/// of its own homes (the TypeScript client's suite) was killed or failed.
pub fn kill_homes_under(root: &Path) {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return;
    };
    let mut homes: Vec<PathBuf> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && pid_alive(pid))
        .filter_map(|pid| {
            let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
            env.split(|&b| b == 0).find_map(|entry| {
                let home = entry.strip_prefix(b"PMDAEMON_HOME=")?;
                let home = Path::new(std::ffi::OsStr::from_bytes(home));
                home.starts_with(root).then(|| home.to_path_buf())
            })
        })
        .collect();
    homes.sort();
    homes.dedup();
    for home in homes {
        kill_home_processes(&home);
    }
}

/// Whether a daemon started by this test process can give each run its own
/// cgroup: root, a writable cgroup2 with `cgroup.kill` (Linux 5.14+). Found
/// by making (and removing) a cgroup where the daemon would.
pub fn cgroups_usable() -> bool {
    // Probed once per test process: tests run in parallel threads, and
    // two probes of the same name made one of them skip its test.
    static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USABLE.get_or_init(probe_cgroups)
}

fn probe_cgroups() -> bool {
    if !is_root() {
        return false;
    }
    let Some(home_dir) = pmdaemond::cgroup_dir_of(Path::new("/")) else {
        return false;
    };
    let Some(own) = home_dir.parent() else {
        return false;
    };
    let probe = own.join(format!("pmdaemon-tests-probe-{}", std::process::id()));
    let usable = fs::create_dir(&probe).is_ok() && probe.join("cgroup.kill").exists();
    let _ = fs::remove_dir(&probe);
    usable
}

/// The cgroup directory the daemon of `home` makes (it may not exist).
pub fn home_cgroup_dir(home: &Path) -> Option<PathBuf> {
    pmdaemond::cgroup_dir_of(home)
}

/// The run cgroups in the home's cgroup directory.
pub fn run_cgroups(home: &Path) -> Vec<PathBuf> {
    let Some(dir) = home_cgroup_dir(home) else {
        return Vec::new();
    };
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// `cgroup.kill` on every run cgroup of `home`'s daemon, then removes them
/// and the home's directory: processes that left their group and cleared
/// their environment are out of [`pids_with_home`]'s reach, not of this.
fn remove_home_cgroups(home: &Path, deadline: Instant) {
    let Some(dir) = home_cgroup_dir(home) else {
        return;
    };
    if !dir.exists() {
        return;
    }
    for run in run_cgroups(home) {
        let _ = fs::write(run.join("cgroup.kill"), "1");
        while fs::read_to_string(run.join("cgroup.events"))
            .is_ok_and(|events| events.lines().any(|l| l == "populated 1"))
            && Instant::now() < deadline
        {
            // The poll interval, not a deadline: SIGKILLed processes take
            // a moment to exit.
            thread::sleep(POLL_INTERVAL);
        }
        let _ = fs::remove_dir(&run);
    }
    let _ = fs::remove_dir(&dir);
}

/// The executable of `pid`, if it can be read.
pub fn exe_of(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The environment a process was started with (`/proc/PID/environ`).
pub fn env_of(pid: u32) -> HashMap<String, String> {
    let raw = fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_else(|e| panic!("cannot read the environment of pid {pid}: {e}"));
    raw.split(|&b| b == 0)
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (k, v) = entry.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// The command line of a process (`/proc/PID/cmdline`).
pub fn cmdline_of(pid: u32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_else(|e| panic!("cannot read the command line of pid {pid}: {e}"));
    // Each argument ends with a NUL.
    raw.strip_suffix(&[0])
        .unwrap_or(&raw)
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The working directory of a process (`/proc/PID/cwd`).
pub fn cwd_of(pid: u32) -> PathBuf {
    fs::read_link(format!("/proc/{pid}/cwd"))
        .unwrap_or_else(|e| panic!("cannot read the cwd of pid {pid}: {e}"))
}

/// Whether the test runs as root (for the tests that switch uid).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
