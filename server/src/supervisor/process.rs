//! The OS boundary of the supervisor: spawning an instance in its own
//! process group with piped stdio, signalling and draining that group, and
//! reading `/proc` to identify processes across daemon lives (start time and
//! boot id, so a reused pid is never touched).
//!
//! Nothing here holds state; `instance.rs` owns the children.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString, c_char};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::spec::Launch;

/// Spawns `launch` in a new process group (pgid = pid) with stdin from
/// /dev/null and stdout/stderr piped to the daemon.
pub fn spawn(launch: &Launch, env: &[(String, String)]) -> std::io::Result<Child> {
    let image = ExecImage::new(launch, env)?;
    let mut cmd = Command::new(&launch.program);
    cmd.arg0(&launch.argv[0])
        .args(&launch.argv[1..])
        .current_dir(&launch.cwd)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        // The instance task always waits for its child; if it is gone
        // anyway (daemon shutting down hard), the child must survive for the
        // next daemon to find and terminate it, not be killed half-way.
        .kill_on_drop(false);
    // SAFETY: the closure runs in the forked child and only calls execve(2)
    // on memory prepared before the fork; it neither allocates nor locks.
    unsafe {
        cmd.pre_exec(move || Err(image.exec()));
    }
    cmd.spawn()
}

/// Program, argv and environment as C arrays, built before the fork.
///
/// The child is started with a plain execve(2) from `pre_exec` instead of
/// std's exec because std ends in execvp(3), and glibc's execvp runs a file
/// the kernel refuses (ENOEXEC: exec bit, no `#!`, not a binary) through
/// /bin/sh instead of failing. Whether std gets there depends on how it was
/// linked (posix_spawn is skipped in static binaries), so the daemon does
/// not leave it to chance: an unrunnable file is a spawn error, as with
/// systemd and supervisord. When execve fails, the error goes back to
/// `spawn` through std's error pipe.
struct ExecImage {
    program: CString,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    // Own the strings the pointers above point into.
    _strings: Vec<CString>,
}

// SAFETY: the pointers point into `_strings`, which the struct owns and
// never changes; they are only read, by execve in the child.
unsafe impl Send for ExecImage {}
unsafe impl Sync for ExecImage {}

impl ExecImage {
    /// The daemon's own environment with `env` set over it, as std would
    /// have built it.
    fn new(launch: &Launch, env: &[(String, String)]) -> std::io::Result<Self> {
        let c = |bytes: Vec<u8>| {
            CString::new(bytes).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a program path, argument or environment variable contains a NUL byte",
                )
            })
        };
        let program = c(launch.program.as_os_str().as_bytes().to_vec())?;
        let args = launch
            .argv
            .iter()
            .map(|a| c(a.clone().into_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut vars: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
        for (k, v) in env {
            vars.insert(k.into(), v.into());
        }
        let vars = vars
            .into_iter()
            .map(|(k, v)| {
                let mut kv = k.into_vec();
                kv.push(b'=');
                kv.extend(v.into_vec());
                c(kv)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let nul_terminated = |strings: &[CString]| {
            strings
                .iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        let argv = nul_terminated(&args);
        let envp = nul_terminated(&vars);
        let mut strings = args;
        strings.extend(vars);
        Ok(ExecImage {
            program,
            argv,
            envp,
            _strings: strings,
        })
    }

    /// execve(2); returns only on failure, with its error. Safe to call
    /// between fork and exec: no allocation, no locks.
    fn exec(&self) -> std::io::Error {
        // SAFETY: every pointer is a NUL-terminated string owned by `self`,
        // and both arrays end with a null pointer.
        unsafe {
            nix::libc::execve(
                self.program.as_ptr(),
                self.argv.as_ptr(),
                self.envp.as_ptr(),
            );
        }
        std::io::Error::last_os_error()
    }
}

/// `/bin/sh -c command` in a new process group with stdin from /dev/null
/// and stdout/stderr piped: health script probes. Dropping the child makes
/// tokio kill and reap the shell; the caller kills the rest of its group.
pub fn spawn_shell(command: &str, env: &[(String, String)], cwd: &Path) -> std::io::Result<Child> {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
}

/// Sends `signal` to a whole process group. A group that is already gone is
/// not an error.
pub fn signal_group(pgid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pgid) else { return };
    if raw <= 1 {
        return; // never signal "every process" or init by accident
    }
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, %signal, error = %e, "cannot signal process group"),
    }
}

/// Pids of live (non-zombie) processes whose process group is `pgid`.
/// killpg alone cannot tell: it succeeds while only zombies remain.
pub fn group_members(pgid: u32) -> Vec<u32> {
    // Fast path: ESRCH means no process at all (not even a zombie) is left
    // in the group, which is the common case right after a leader exits;
    // the /proc scan below costs a read per process on the machine.
    if let Ok(raw) = i32::try_from(pgid)
        && raw > 1
        && killpg(Pid::from_raw(raw), None) == Err(nix::errno::Errno::ESRCH)
    {
        return Vec::new();
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            read_stat(*pid).is_some_and(|s| s.pgrp == pgid && s.state != 'Z' && s.state != 'X')
        })
        .collect()
}

/// Waits until no live process is left in `pgid`, up to `deadline`.
/// Returns whether the group is empty.
pub async fn wait_group_empty(pgid: u32, deadline: Instant) -> bool {
    let mut pause = Duration::from_millis(2);
    loop {
        if group_members(pgid).is_empty() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Empties a process group with no leader to wait() on: what is left after
/// the leader exited (background workers of a shell script, say), or a
/// group left by a previous daemon life. The stop signal, SIGKILL after
/// `grace`, then a bounded wait for the group to disappear.
pub async fn drain_group(pgid: u32, signal: Signal, grace: Duration) {
    if group_members(pgid).is_empty() {
        return;
    }
    signal_group(pgid, signal);
    if !wait_group_empty(pgid, Instant::now() + grace).await {
        signal_group(pgid, Signal::SIGKILL);
        wait_group_empty(pgid, Instant::now() + Duration::from_secs(5)).await;
    }
}

/// Empties what is left of an instance whose leader died while no daemon
/// watched it (a daemon `kill -9`, then the app died of SIGPIPE or by
/// hand): live members of group `pgid` that started at or after the
/// recorded leader (`since_ticks`) and carry `PMDAEMON_HOME=home` in their
/// environment, as every instance does. While any of them lives, the
/// kernel cannot hand the number `pgid` to a new process, so the group is
/// still that instance's; the environment check keeps out anything that
/// joined it from elsewhere. The stop signal to each, SIGKILL after
/// `grace`, then a bounded wait.
pub async fn drain_orphans(
    pgid: u32,
    since_ticks: u64,
    home: &Path,
    signal: Signal,
    grace: Duration,
) {
    let mut marker = format!("{}=", pmdaemon_proto::HOME_ENV).into_bytes();
    marker.extend_from_slice(home.as_os_str().as_bytes());
    let orphans = || -> Vec<u32> {
        group_members(pgid)
            .into_iter()
            .filter(|&pid| {
                read_stat(pid).is_some_and(|s| s.start_ticks >= since_ticks)
                    && std::fs::read(format!("/proc/{pid}/environ"))
                        .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == marker))
            })
            .collect()
    };
    let signal_each = |pids: &[u32], signal: Signal| {
        for &pid in pids {
            if let Ok(raw) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(Pid::from_raw(raw), signal);
            }
        }
    };
    let found = orphans();
    if found.is_empty() {
        return;
    }
    tracing::warn!(pgid, pids = ?found, "terminating processes an instance left behind");
    signal_each(&found, signal);
    for (wait, last_signal) in [
        (grace, Some(Signal::SIGKILL)),
        (Duration::from_secs(5), None),
    ] {
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(2);
        loop {
            let left = orphans();
            if left.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                if let Some(sig) = last_signal {
                    signal_each(&left, sig);
                }
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

/// Descendants of `pid` that left its process group (`setsid`, `setpgid`):
/// killpg does not reach them. Found through
/// `/proc/PID/task/*/children`, with their start times, so that a later
/// signal never hits a reused pid.
pub fn escaped_descendants(pid: u32) -> Vec<(u32, u64)> {
    let mut found = Vec::new();
    let mut todo = vec![pid];
    let mut seen = std::collections::HashSet::new();
    while let Some(parent) = todo.pop() {
        if !seen.insert(parent) || seen.len() > 4096 {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let path = task.path().join("children");
            let Ok(list) = std::fs::read_to_string(path) else {
                continue;
            };
            for child in list
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
            {
                todo.push(child);
                if let Some(stat) = read_stat(child)
                    && stat.pgrp != pid
                {
                    found.push((child, stat.start_ticks));
                }
            }
        }
    }
    found
}

/// Whether `pid` is still the process that started at `ticks` (and not a
/// zombie).
fn still(pid: u32, ticks: u64) -> bool {
    read_stat(pid).is_some_and(|s| s.start_ticks == ticks && s.state != 'Z')
}

/// Sends `signal` to each of `procs` that is still the process recorded.
pub fn signal_each(procs: &[(u32, u64)], signal: Signal) {
    for &(pid, ticks) in procs {
        if still(pid, ticks)
            && let Ok(raw) = i32::try_from(pid)
        {
            let _ = nix::sys::signal::kill(Pid::from_raw(raw), signal);
        }
    }
}

/// Waits until none of `procs` is left, up to `deadline`, then SIGKILLs
/// what is.
pub async fn finish_off(procs: &[(u32, u64)], deadline: Instant) {
    while procs.iter().any(|&(pid, ticks)| still(pid, ticks)) {
        if Instant::now() >= deadline {
            signal_each(procs, Signal::SIGKILL);
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The fields of `/proc/PID/stat` the supervisor needs.
#[derive(Debug, Clone, Copy)]
pub struct ProcStat {
    pub state: char,
    pub pgrp: u32,
    /// Start time in clock ticks since boot: with the boot id, identifies a
    /// process across pid reuse.
    pub start_ticks: u64,
}

pub fn read_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<ProcStat> {
    // The command name (field 2) may contain spaces and ')'; the fields
    // after the last ')' are fixed.
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // after[0] is field 3 (state); field N is after[N - 3].
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(5 - 3)?.parse().ok()?,
        start_ticks: fields.get(22 - 3)?.parse().ok()?,
    })
}

/// This boot's id; changes on every reboot.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Is `pid` still the very process that was recorded?
pub fn is_same_process(pid: u32, start_ticks: u64, recorded_boot: &str, boot: &str) -> bool {
    !boot.is_empty()
        && recorded_boot == boot
        && read_stat(pid).is_some_and(|s| s.start_ticks == start_ticks && s.state != 'Z')
}

/// Human name of a signal number, e.g. `SIGKILL`.
pub fn signal_name(signo: i32) -> String {
    Signal::try_from(signo)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signo}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_survives_odd_command_names() {
        let line = "1234 (my (weird) app) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 100";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.pgrp, 1234);
        assert_eq!(s.start_ticks, 98765);
    }

    #[test]
    fn own_process_is_recognised() {
        let me = std::process::id();
        let stat = read_stat(me).unwrap();
        let boot = boot_id();
        assert!(is_same_process(me, stat.start_ticks, &boot, &boot));
        assert!(!is_same_process(me, stat.start_ticks + 1, &boot, &boot));
        assert!(!is_same_process(me, stat.start_ticks, "other-boot", &boot));
    }
}
