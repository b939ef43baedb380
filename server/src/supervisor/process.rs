//! The OS boundary of the supervisor: spawning an instance in its own
//! process group with piped stdio (glibc's posix_spawn, exit awaited on a
//! pidfd), signalling and draining that group and the descendants that left
//! it, finding what a previous daemon life left behind, and reading `/proc`
//! to identify processes across daemon lives (start time and boot id, so a
//! reused pid is never touched).
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
///
/// With glibc's posix_spawn(3) (a vfork-like clone that waits for the
/// exec): no copy of the daemon's page tables per spawn, and exec errors
/// (ENOENT, EACCES, ENOEXEC) come back as the return value; glibc's
/// posix_spawn, unlike execvp, never hands an ENOEXEC file to /bin/sh.
/// std's Command would fork instead in a static binary (it finds glibc's
/// newer posix_spawn helpers through dlsym, which static binaries lack).
pub fn spawn(launch: &Launch, env: &[(String, String)]) -> std::io::Result<Spawned> {
    use nix::libc;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    let image = ExecImage::new(launch, env)?;
    let cwd = CString::new(launch.cwd.as_os_str().as_bytes()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "cwd contains a NUL byte")
    })?;
    let devnull = std::fs::File::open("/dev/null")?;
    let pipe = || -> std::io::Result<(OwnedFd, OwnedFd)> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills both fds on success; they are owned below.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fresh descriptors nobody else owns.
        Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;

    unsafe extern "C" {
        // glibc 2.29+; not declared by the libc crate for Linux.
        fn posix_spawn_file_actions_addchdir_np(
            actions: *mut libc::posix_spawn_file_actions_t,
            path: *const c_char,
        ) -> libc::c_int;
    }
    let check = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::from_raw_os_error(rc))
        }
    };
    // SAFETY: the attr and file actions are initialised before use and
    // destroyed on every path; every pointer handed to glibc (cwd, program,
    // argv, envp) outlives the posix_spawn call; the fds are open.
    let pid = unsafe {
        let mut actions = std::mem::MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
        let mut attr = std::mem::MaybeUninit::<libc::posix_spawnattr_t>::uninit();
        check(libc::posix_spawn_file_actions_init(actions.as_mut_ptr()))?;
        if let Err(e) = check(libc::posix_spawnattr_init(attr.as_mut_ptr())) {
            libc::posix_spawn_file_actions_destroy(actions.as_mut_ptr());
            return Err(e);
        }
        let actions_ptr = actions.as_mut_ptr();
        let attr_ptr = attr.as_mut_ptr();
        let spawned = (|| -> std::io::Result<libc::pid_t> {
            check(libc::posix_spawn_file_actions_adddup2(
                actions_ptr,
                devnull.as_raw_fd(),
                0,
            ))?;
            check(libc::posix_spawn_file_actions_adddup2(
                actions_ptr,
                out_w.as_raw_fd(),
                1,
            ))?;
            check(libc::posix_spawn_file_actions_adddup2(
                actions_ptr,
                err_w.as_raw_fd(),
                2,
            ))?;
            check(posix_spawn_file_actions_addchdir_np(
                actions_ptr,
                cwd.as_ptr(),
            ))?;
            // Own process group; default dispositions (the daemon ignores
            // SIGPIPE, which an exec would otherwise pass on) and an empty
            // signal mask.
            let mut all = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigfillset(all.as_mut_ptr());
            let mut none = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(none.as_mut_ptr());
            check(libc::posix_spawnattr_setsigdefault(attr_ptr, all.as_ptr()))?;
            check(libc::posix_spawnattr_setsigmask(attr_ptr, none.as_ptr()))?;
            check(libc::posix_spawnattr_setpgroup(attr_ptr, 0))?;
            let flags = libc::POSIX_SPAWN_SETPGROUP
                | libc::POSIX_SPAWN_SETSIGDEF
                | libc::POSIX_SPAWN_SETSIGMASK;
            check(libc::posix_spawnattr_setflags(
                attr_ptr,
                flags as libc::c_short,
            ))?;
            let mut pid: libc::pid_t = 0;
            check(libc::posix_spawn(
                &mut pid,
                image.program.as_ptr(),
                actions_ptr,
                attr_ptr,
                image.argv.as_ptr().cast(),
                image.envp.as_ptr().cast(),
            ))?;
            Ok(pid)
        })();
        libc::posix_spawn_file_actions_destroy(actions_ptr);
        libc::posix_spawnattr_destroy(attr_ptr);
        spawned?
    };
    // The child has its copies; the daemon keeps the read ends only.
    drop((out_w, err_w, devnull));
    let pid = u32::try_from(pid).unwrap_or(0);
    let receiver = |fd: OwnedFd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok();
    Ok(Spawned {
        pid,
        pidfd: pidfd_open(pid),
        status: None,
        stdout: receiver(out_r),
        stderr: receiver(err_r),
    })
}

/// A process started by [`spawn`]: its pid, output pipes, and its exit,
/// awaited through a pidfd. Like tokio's child with kill_on_drop(false):
/// dropping it neither kills nor reaps.
pub struct Spawned {
    pid: u32,
    /// Readable once the process exited; None where pidfds are missing
    /// (kernels before 5.3), then exit is polled.
    pidfd: Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>>,
    /// Kept once reaped, so a wait cancelled in a select does not lose it.
    status: Option<std::process::ExitStatus>,
    pub stdout: Option<tokio::net::unix::pipe::Receiver>,
    pub stderr: Option<tokio::net::unix::pipe::Receiver>,
}

impl Spawned {
    pub fn id(&self) -> Option<u32> {
        (self.status.is_none()).then_some(self.pid)
    }

    /// Waits for the process to exit and reaps it. Cancel-safe.
    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            match &self.pidfd {
                Some(fd) => {
                    let mut ready = fd.readable().await?;
                    ready.clear_ready();
                }
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        use std::os::unix::process::ExitStatusExt;
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let Ok(pid) = i32::try_from(self.pid) else {
            return Err(std::io::Error::other("no process"));
        };
        let mut raw = 0;
        // SAFETY: waitpid on our own child, WNOHANG.
        match unsafe { nix::libc::waitpid(pid, &mut raw, nix::libc::WNOHANG) } {
            0 => Ok(None),
            -1 => Err(std::io::Error::last_os_error()),
            _ => {
                let status = std::process::ExitStatus::from_raw(raw);
                self.status = Some(status);
                Ok(Some(status))
            }
        }
    }
}

/// A pidfd for `pid` registered with the runtime, if the kernel has them.
fn pidfd_open(pid: u32) -> Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    use std::os::fd::FromRawFd;
    let pid = nix::libc::pid_t::try_from(pid).ok()?;
    // SAFETY: a plain syscall; a returned fd is ours to own.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: a fresh descriptor nobody else owns.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: OwnedFd keeps the descriptor open and unchanged for as long
    // as the AsyncFd owns it.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE).ok()
    }
}

/// Program, argv and environment as C arrays, built before the spawn:
/// the daemon's own environment with the app's set over it.
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
/// joined it from elsewhere. The stop signal to each, SIGKILL to what is
/// left after `grace`.
pub async fn drain_orphans(
    pgid: u32,
    since_ticks: u64,
    home: &Path,
    signal: Signal,
    grace: Duration,
) {
    let mut marker = format!("{}=", pmdaemon_proto::HOME_ENV).into_bytes();
    marker.extend_from_slice(home.as_os_str().as_bytes());
    // With their start times: signal_each and finish_off never hit a
    // reused pid.
    let orphans: Vec<(u32, u64)> = group_members(pgid)
        .into_iter()
        .filter_map(|pid| {
            let ticks = read_stat(pid)?.start_ticks;
            let marked = std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == marker));
            (ticks >= since_ticks && marked).then_some((pid, ticks))
        })
        .collect();
    if orphans.is_empty() {
        return;
    }
    tracing::warn!(pgid, pids = ?orphans, "terminating processes an instance left behind");
    signal_each(&orphans, signal);
    finish_off(&orphans, Instant::now() + grace).await;
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
