//! The OS boundary of the supervisor: spawning an instance in its own
//! process group with piped stdio (glibc's posix_spawn through nix's
//! wrappers, or clone3 into its cgroup; exit awaited on a pidfd), signalling and draining that group
//! and the descendants that left it, finding what a previous daemon life
//! left behind, and reading `/proc` to identify processes across daemon
//! lives (start time and boot id, so a reused pid is never touched).
//!
//! Where the daemon tracks by cgroup, a child starts as a member of its
//! run's cgroup (`cgroup.rs`) through clone3 (`clone.rs`); on a kernel
//! without it, it is moved in right after posix_spawn.
//!
//! Nothing here holds state; `instance.rs` owns the children.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::cgroup::RunCgroup;
use super::spec::Launch;

/// Spawns `launch` in a new process group (pgid = pid) with stdin from
/// /dev/null and stdout/stderr piped to the daemon, as a member of
/// `cgroup` when given ([`Spawned::in_cgroup`] says whether that worked).
///
/// Into a cgroup with clone3 (`clone.rs`), which does what posix_spawn
/// does here, in a child of its own, with the same errors. Otherwise, or
/// where the kernel lacks it, with glibc's posix_spawn(3) (a vfork-like clone that waits for the
/// exec): no copy of the daemon's page tables per spawn, and exec errors
/// (ENOENT, EACCES, ENOEXEC, a bad cwd) come back as the return value;
/// glibc's posix_spawn, unlike execvp, never hands an ENOEXEC file to
/// /bin/sh. std's Command would fork instead in a static binary (it finds
/// glibc's newer posix_spawn helpers through dlsym, which static binaries
/// lack).
///
/// `channel`, the app's end of its IPC channel (`ipc.rs`), becomes the
/// child's fd 3; every other descriptor of the daemon is close-on-exec and
/// stays out of the child.
pub fn spawn(
    launch: &Launch,
    env: &[(String, String)],
    cgroup: Option<&RunCgroup>,
    channel: Option<std::os::fd::BorrowedFd<'_>>,
) -> std::io::Result<Spawned> {
    spawn_process(launch, env, cgroup, channel).map_err(crate::fds::explain_exhaustion)
}

fn spawn_process(
    launch: &Launch,
    env: &[(String, String)],
    cgroup: Option<&RunCgroup>,
    channel: Option<std::os::fd::BorrowedFd<'_>>,
) -> std::io::Result<Spawned> {
    use nix::fcntl::OFlag;
    use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawn};
    use nix::sys::signal::SigSet;
    use std::os::fd::{AsRawFd, OwnedFd};

    let image = ExecImage::new(launch, env)?;
    let cwd = CString::new(launch.cwd.as_os_str().as_bytes()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "cwd contains a NUL byte")
    })?;
    let devnull = std::fs::File::open("/dev/null")?;
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let receiver = |fd: OwnedFd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok();

    if let Some(cg) = cgroup
        && super::clone::available()
    {
        use super::clone::{Exec, Failure};
        use std::os::fd::AsFd;
        let exec = Exec {
            program: &image.program,
            argv: &image.argv,
            envp: &image.envp,
            cwd: &cwd,
            stdio: [devnull.as_fd(), out_w.as_fd(), err_w.as_fd()],
            channel,
            nofile: crate::fds::app_limit(),
        };
        let started = cg
            .open()
            .map_err(Failure::Clone)
            .and_then(|dir| super::clone::spawn(&exec, dir.as_fd()));
        match started {
            Ok(started) => {
                drop((out_w, err_w, devnull));
                return Ok(Spawned {
                    pid: started.pid,
                    pidfd: watch_pidfd(started.pidfd),
                    in_cgroup: true,
                    status: None,
                    stdout: receiver(out_r),
                    stderr: receiver(err_r),
                });
            }
            Err(Failure::Spawn(e)) => return Err(e),
            Err(Failure::Unsupported(e)) => {
                tracing::info!(error = %e, "the kernel cannot start a process in a cgroup (clone3 with CLONE_INTO_CGROUP, Linux 5.7): processes are moved into their cgroups after posix_spawn");
            }
            Err(Failure::Clone(e)) => {
                tracing::warn!(cgroup = %cg.dir().display(), error = %e, "cannot start the process in its cgroup; moving it in after posix_spawn");
            }
        }
    }

    // nix's setters below read only -1 as failure, while these functions
    // return an error number; with open fds and valid flags glibc's only
    // one left is ENOMEM from adddup2, which nix would drop.
    let mut actions = PosixSpawnFileActions::init()?;
    actions.add_dup2(devnull.as_raw_fd(), 0)?;
    actions.add_dup2(out_w.as_raw_fd(), 1)?;
    actions.add_dup2(err_w.as_raw_fd(), 2)?;
    if let Some(channel) = channel {
        // glibc clears close-on-exec when both numbers are the same.
        actions.add_dup2(channel.as_raw_fd(), pmdaemon_proto::IPC_CHANNEL_FD)?;
    }
    add_chdir(&mut actions, &cwd)?;
    // Own process group; default dispositions (the daemon ignores SIGPIPE,
    // which an exec would otherwise pass on) and an empty signal mask.
    let mut attr = PosixSpawnAttr::init()?;
    attr.set_sigdefault(&SigSet::all())?;
    attr.set_sigmask(&SigSet::empty())?;
    attr.set_pgroup(Pid::from_raw(0))?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETPGROUP
            | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF
            | PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK,
    )?;
    let pid = posix_spawn(
        image.program.as_c_str(),
        &actions,
        &attr,
        &image.argv,
        &image.envp,
    )?;
    let pid_u32 = u32::try_from(pid.as_raw()).unwrap_or(0);
    // The fallback when clone3 could not start it there: posix_spawn
    // cannot start a child in a cgroup (glibc has no
    // posix_spawnattr_setcgroup_np), so the child is moved in first thing
    // after its exec. The move waits for the kernel (an RCU grace period: a
    // few milliseconds), so a process it forks in that first instant stays
    // in the daemon's cgroup; it is in the run's process group and carries
    // the marker, and terminate's group and marker sweep still ends it
    // (only one that also clears its environment in that instant escapes).
    let in_cgroup = cgroup.is_some_and(|cg| match cg.adopt(pid_u32) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(pid = pid_u32, cgroup = %cg.dir().display(), error = %e, "cannot move the process into its cgroup; tracking it by process group");
            false
        }
    });
    // The child has its copies; the daemon keeps the read ends only.
    drop((out_w, err_w, devnull));
    crate::fds::give_back(pid);
    let pid = pid_u32;
    Ok(Spawned {
        pid,
        pidfd: pidfd_open(pid),
        in_cgroup,
        status: None,
        stdout: receiver(out_r),
        stderr: receiver(err_r),
    })
}

/// Adds "chdir to `dir`" to `actions`: glibc's
/// posix_spawn_file_actions_addchdir_np (2.29+), for which nix has no
/// wrapper and its file actions type no accessor.
fn add_chdir(actions: &mut nix::spawn::PosixSpawnFileActions, dir: &CStr) -> std::io::Result<()> {
    use nix::libc::posix_spawn_file_actions_t;
    use nix::spawn::PosixSpawnFileActions;
    // nix 0.30 declares PosixSpawnFileActions `#[repr(transparent)]` over
    // the glibc object, but as a private detail: fail the build if the
    // layout no longer matches (equal size leaves no room for another
    // field with a size, so the glibc object sits at offset 0).
    const _: () = assert!(
        size_of::<PosixSpawnFileActions>() == size_of::<posix_spawn_file_actions_t>()
            && align_of::<PosixSpawnFileActions>() == align_of::<posix_spawn_file_actions_t>()
    );
    let raw = std::ptr::from_mut(actions).cast::<posix_spawn_file_actions_t>();
    // SAFETY: `raw` points at the initialised glibc object that `actions`
    // wraps (layout checked above) and is used only for this call, while
    // `actions` is borrowed mutably; `dir` is NUL-terminated and glibc
    // copies it.
    let rc = unsafe { nix::libc::posix_spawn_file_actions_addchdir_np(raw, dir.as_ptr()) };
    // Like every posix_spawn function, it returns the error number.
    match rc {
        0 => Ok(()),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

/// A process started by [`spawn`]: its pid, output pipes, and its exit,
/// awaited through a pidfd. Like tokio's child with kill_on_drop(false):
/// dropping it neither kills nor reaps.
pub struct Spawned {
    pid: u32,
    /// Readable once the process exited; None where pidfds are missing
    /// (kernels before 5.3), then exit is polled.
    pidfd: Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>>,
    /// Whether it is in the cgroup [`spawn`] was given.
    pub in_cgroup: bool,
    /// Kept once reaped, so a wait cancelled in a select does not lose it.
    status: Option<std::process::ExitStatus>,
    pub stdout: Option<tokio::net::unix::pipe::Receiver>,
    pub stderr: Option<tokio::net::unix::pipe::Receiver>,
}

impl Spawned {
    pub fn id(&self) -> Option<u32> {
        (self.status.is_none()).then_some(self.pid)
    }

    /// Sends `signal` to the process itself (not its group). Safe from pid
    /// reuse: the process is this daemon's child and not reaped yet, so
    /// its pid cannot name another process.
    pub fn signal(&mut self, signal: Signal) -> std::io::Result<()> {
        if self.try_wait()?.is_some() {
            return Err(std::io::Error::other("the process has exited"));
        }
        let pid = nix::unistd::Pid::from_raw(
            i32::try_from(self.pid).map_err(|_| std::io::Error::other("no process"))?,
        );
        nix::sys::signal::kill(pid, signal).map_err(std::io::Error::from)
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
        // Not nix's waitpid: it reaps a child killed by a real-time signal
        // (which has no nix `Signal`) and then returns EINVAL, losing the
        // status; ExitStatus takes the raw status as it is.
        // SAFETY: waitpid on our own child, WNOHANG; `raw` is a valid
        // out-pointer for the call.
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
/// A raw syscall: nix has no pidfd_open.
fn pidfd_open(pid: u32) -> Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    use std::os::fd::FromRawFd;
    let pid = nix::libc::pid_t::try_from(pid).ok()?;
    // SAFETY: a plain syscall; a returned fd is ours to own.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: a fresh descriptor nobody else owns.
    watch_pidfd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// `pidfd` registered with the runtime, to await the exit on.
fn watch_pidfd(
    owned: std::os::fd::OwnedFd,
) -> Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    // SAFETY: OwnedFd keeps the descriptor open and unchanged for as long
    // as the AsyncFd owns it.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE).ok()
    }
}

/// Program, argv and environment as C strings, built before the spawn:
/// the daemon's own environment with the app's set over it.
struct ExecImage {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

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
        let argv = launch
            .argv
            .iter()
            .map(|a| c(a.clone().into_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut vars: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
        // Node's IPC variables of the daemon's own start name a descriptor
        // no app has: an app with a channel gets its own in `env`.
        for var in ["NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE"] {
            vars.remove(std::ffi::OsStr::new(var));
        }
        for (k, v) in env {
            vars.insert(k.into(), v.into());
        }
        let envp = vars
            .into_iter()
            .map(|(k, v)| {
                let mut kv = k.into_vec();
                kv.push(b'=');
                kv.extend(v.into_vec());
                c(kv)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ExecImage {
            program,
            argv,
            envp,
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

/// Now, in the clock ticks since boot that `/proc/PID/stat` counts start
/// times in (CLOCK_BOOTTIME, as the kernel does).
pub fn now_ticks() -> Option<u64> {
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    let per_second = u64::try_from(per_second).ok().filter(|&t| t > 0)?;
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    let ns =
        u64::try_from(now.tv_sec()).ok()? * 1_000_000_000 + u64::try_from(now.tv_nsec()).ok()?;
    Some(ns / (1_000_000_000 / per_second))
}

/// A live process that carries the marker of an instance of this home.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marked {
    pub pid: u32,
    /// Its start time in clock ticks since boot (see [`ProcStat`]).
    pub start_ticks: u64,
    /// Its `PMD_ID`: the instance it belongs to.
    pub id: u32,
}

impl Marked {
    /// (pid, start ticks), as [`signal_each`] and [`finish_off`] take them.
    pub fn ident(&self) -> (u32, u64) {
        (self.pid, self.start_ticks)
    }
}

/// Every live process of this home's instances, found by the marker each
/// instance's environment carries and every descendant inherits, whatever
/// process group or session it moves to: `PMDAEMON_HOME=home` and a
/// `PMD_ID`. This is how the daemon finds what no process group or
/// recorded pid leads to: children that escaped with setsid and were
/// reparented, a process spawned just before a crash and not yet on disk,
/// the processes of a state file that could not be read, a probe shell
/// left by a killed daemon. The daemon itself is left out. A process whose
/// environment cannot be read (another user's) is not found; it could not
/// be signalled either.
pub fn marked(home: &Path) -> Vec<Marked> {
    let mut home_kv = format!("{}=", pmdaemon_proto::HOME_ENV).into_bytes();
    home_kv.extend_from_slice(home.as_os_str().as_bytes());
    let own = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    // One buffer for every environment read: a fresh one per process would
    // leave the daemon's heap fragmented (and larger) after each scan.
    let mut env = Vec::with_capacity(16 << 10);
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != own)
        .filter_map(|pid| {
            use std::io::Read;
            env.clear();
            std::fs::File::open(format!("/proc/{pid}/environ"))
                .ok()?
                .read_to_end(&mut env)
                .ok()?;
            let mut ours = false;
            let mut id = None;
            for kv in env.split(|&b| b == 0) {
                if kv == home_kv.as_slice() {
                    ours = true;
                } else if let Some(value) = kv.strip_prefix(b"PMD_ID=") {
                    id = std::str::from_utf8(value).ok()?.parse().ok();
                }
            }
            let id = id.filter(|_| ours)?;
            let stat = read_stat(pid).filter(|s| s.state != 'Z' && s.state != 'X')?;
            Some(Marked {
                pid,
                start_ticks: stat.start_ticks,
                id,
            })
        })
        .collect()
}

/// Scans for marked processes ([`marked`]), shared by the callers that ask
/// at the same time: a scan that started after a caller asked serves that
/// caller too, so that stopping a thousand instances at once reads `/proc`
/// a few times, not a thousand. Owned by the supervisor; every instance
/// task holds it.
pub struct MarkedScans {
    home: std::path::PathBuf,
    /// The latest scan: when it started, and what it found. Held across the
    /// scan, so that callers queue behind it instead of scanning too.
    last: tokio::sync::Mutex<Option<(Instant, std::sync::Arc<Vec<Marked>>)>>,
}

impl MarkedScans {
    pub fn new(home: std::path::PathBuf) -> Self {
        MarkedScans {
            home,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The marked processes as a scan that started at or after `asked`
    /// found them.
    pub async fn since(&self, asked: Instant) -> std::sync::Arc<Vec<Marked>> {
        let mut last = self.last.lock().await;
        if let Some((started, found)) = &*last
            && *started >= asked
        {
            return found.clone();
        }
        let started = Instant::now();
        let home = self.home.clone();
        let found = tokio::task::spawn_blocking(move || marked(&home))
            .await
            .unwrap_or_default();
        let found = std::sync::Arc::new(found);
        *last = Some((started, found.clone()));
        found
    }
}

/// Ends these processes: `signal` to each, SIGKILL to what is left after
/// `grace`.
pub async fn end_all(procs: &[(u32, u64)], signal: Signal, grace: Duration) {
    if procs.is_empty() {
        return;
    }
    signal_each(procs, signal);
    finish_off(procs, Instant::now() + grace).await;
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
    use std::os::fd::AsFd;

    #[test]
    fn stat_parsing_survives_odd_command_names() {
        let line = "1234 (my (weird) app) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 100";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.pgrp, 1234);
        assert_eq!(s.start_ticks, 98765);
    }

    fn spawn_test(launch: &Launch, env: &[(String, String)]) -> std::io::Result<Spawned> {
        spawn(launch, env, None, None)
    }

    /// A run cgroup made for a test and removed after it, where this
    /// machine lets the test make one (root, a writable cgroup2 with
    /// cgroup.kill); None, with a message, elsewhere.
    struct TestCgroup {
        run: Option<RunCgroup>,
        tree: super::super::cgroup::Tree,
        _home: tempfile::TempDir,
    }

    impl TestCgroup {
        fn new() -> Option<TestCgroup> {
            let home = tempfile::tempdir().unwrap();
            let tree = super::super::cgroup::Tree::detect(home.path())
                .inspect_err(|e| eprintln!("skipped: no cgroup to spawn into: {e}"))
                .ok()?;
            let run = tree.create(0).unwrap();
            Some(TestCgroup {
                run: Some(run),
                tree,
                _home: home,
            })
        }

        fn run(&self) -> &RunCgroup {
            self.run.as_ref().unwrap()
        }
    }

    impl Drop for TestCgroup {
        fn drop(&mut self) {
            if let Some(run) = self.run.take() {
                run.kill();
                for pid in run.pids() {
                    let _ = nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None);
                }
                run.discard();
            }
            self.tree.remove();
        }
    }

    /// The clone3 path starts the child in its cgroup with what posix_spawn
    /// gives it: cwd, environment, stdio, its own group, an empty signal
    /// mask and no ignored signal.
    #[tokio::test]
    async fn clone3_spawns_into_the_cgroup_like_posix_spawn() {
        let Some(cg) = TestCgroup::new() else { return };
        let dir = tempfile::tempdir().unwrap();
        // The shell reads its own status with builtins: while it waits for
        // a child, dash blocks every signal (then sigsuspends), so a status
        // read by a forked grep could show that instead of the mask it was
        // started with.
        let script = r#"pwd -P; readlink /proc/self/fd/0; echo "$PMD_SPAWN_TEST"; grep '^0::' /proc/$$/cgroup; while read -r l; do case $l in NSpgid:*|SigBlk:*|SigIgn:*) echo "$l";; esac; done </proc/$$/status; echo $$; echo oops >&2; exit 3"#;
        let env = [("PMD_SPAWN_TEST".to_string(), "set by the app".to_string())];
        let child = spawn(
            &launch("/bin/sh", &["-c", script], dir.path()),
            &env,
            Some(cg.run()),
            None,
        )
        .unwrap();
        assert!(child.in_cgroup);
        assert!(
            super::super::clone::available(),
            "clone3 into a cgroup was found missing on this kernel"
        );
        let (out, err, status) = finish(child).await;
        let lines: Vec<&str> = out.lines().collect();
        let [pwd, stdin, var, cgroup, pgid, blocked, ignored, pid] = lines[..] else {
            panic!("unexpected output: {out}");
        };
        assert_eq!(pwd, dir.path().canonicalize().unwrap().to_str().unwrap());
        assert_eq!(stdin, "/dev/null");
        assert_eq!(var, "set by the app");
        assert!(
            cg.run().dir().ends_with(cgroup.trim_start_matches("0::/")),
            "{cgroup} is not {}",
            cg.run().dir().display()
        );
        assert_eq!(pgid.split_whitespace().nth(1), Some(pid));
        assert_eq!(blocked, "SigBlk:\t0000000000000000");
        assert_eq!(ignored, "SigIgn:\t0000000000000000");
        assert_eq!(err, "oops\n");
        assert_eq!(status.code(), Some(3));
    }

    /// An error of the clone3 child before its exec comes back over its
    /// pipe as the very error posix_spawn returns: same kind, same message.
    #[test]
    fn clone3_exec_errors_are_posix_spawns() {
        use std::os::unix::fs::PermissionsExt;
        let Some(cg) = TestCgroup::new() else { return };
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let not_executable = dir.path().join("not-executable");
        std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();
        let no_format = dir.path().join("no-format");
        std::fs::write(&no_format, "true\n").unwrap();
        std::fs::set_permissions(&no_format, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cases = [
            (
                launch(missing.to_str().unwrap(), &[], dir.path()),
                nix::libc::ENOENT,
            ),
            (
                launch(not_executable.to_str().unwrap(), &[], dir.path()),
                nix::libc::EACCES,
            ),
            (
                launch(no_format.to_str().unwrap(), &[], dir.path()),
                nix::libc::ENOEXEC,
            ),
            (launch("/bin/true", &[], &missing), nix::libc::ENOENT),
        ];
        for (launch, errno) in cases {
            let cloned = spawn(&launch, &[], Some(cg.run()), None)
                .err()
                .expect("clone3 spawn failed");
            let spawned = spawn(&launch, &[], None, None)
                .err()
                .expect("posix_spawn failed");
            assert_eq!(cloned.raw_os_error(), Some(errno), "{cloned}");
            assert_eq!(cloned.raw_os_error(), spawned.raw_os_error());
            assert_eq!(cloned.kind(), spawned.kind());
            assert_eq!(cloned.to_string(), spawned.to_string());
        }
        assert!(super::super::clone::available());
        // The failed children were reaped, and nothing is left in the cgroup.
        assert!(cg.run().pids().is_empty(), "{:?}", cg.run().pids());
    }

    fn launch(program: &str, args: &[&str], cwd: &Path) -> Launch {
        Launch {
            program: program.into(),
            argv: std::iter::once(program)
                .chain(args.iter().copied())
                .map(String::from)
                .collect(),
            cwd: cwd.to_path_buf(),
        }
    }

    /// Everything `child` wrote to stdout and stderr, and its exit.
    async fn finish(mut child: Spawned) -> (String, String, std::process::ExitStatus) {
        use tokio::io::AsyncReadExt;
        let (mut out, mut err) = (String::new(), String::new());
        let mut stdout = child.stdout.take().expect("stdout piped");
        let mut stderr = child.stderr.take().expect("stderr piped");
        let (read_out, read_err) = tokio::join!(
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err)
        );
        read_out.unwrap();
        read_err.unwrap();
        let status = child.wait().await.unwrap();
        (out, err, status)
    }

    #[tokio::test]
    async fn spawn_sets_cwd_env_and_stdio() {
        let dir = tempfile::tempdir().unwrap();
        let script =
            r#"pwd -P; readlink /proc/self/fd/0; echo "$PMD_SPAWN_TEST"; echo oops >&2; exit 3"#;
        let env = [("PMD_SPAWN_TEST".to_string(), "set by the app".to_string())];
        let child = spawn_test(&launch("/bin/sh", &["-c", script], dir.path()), &env).unwrap();
        let (out, err, status) = finish(child).await;
        let cwd = dir.path().canonicalize().unwrap();
        assert_eq!(
            out,
            format!("{}\n/dev/null\nset by the app\n", cwd.display())
        );
        assert_eq!(err, "oops\n");
        assert_eq!(status.code(), Some(3));
    }

    #[tokio::test]
    async fn spawned_process_leads_its_group_with_default_signals() {
        // The test harness ignores SIGPIPE, as the daemon does: the child
        // must not inherit that.
        let dir = tempfile::tempdir().unwrap();
        let child =
            spawn_test(&launch("/bin/cat", &["/proc/self/status"], dir.path()), &[]).unwrap();
        let pid = child.id().unwrap().to_string();
        let (out, _, status) = finish(child).await;
        assert!(status.success());
        let field = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
                .unwrap_or_else(|| panic!("{name} missing from {out}"))
        };
        assert_eq!(field("Pid"), pid);
        assert_eq!(field("NSpgid"), pid);
        assert_eq!(field("SigBlk"), "0000000000000000");
        // Signals 1-31: glibc's spawn leaves its own two internal signals
        // (32 and 33) ignored in the child, as it always has here.
        let ignored = u64::from_str_radix(field("SigIgn"), 16).unwrap();
        assert_eq!(ignored & 0x7fff_ffff, 0, "ignored signals: {ignored:#x}");
    }

    #[test]
    fn exec_errors_are_spawn_errors() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let errno = |launch: Launch| {
            spawn(&launch, &[], None, None)
                .err()
                .and_then(|e| e.raw_os_error())
                .map(nix::errno::Errno::from_raw)
        };
        let missing = dir.path().join("missing");
        assert_eq!(
            errno(launch(missing.to_str().unwrap(), &[], dir.path())),
            Some(nix::errno::Errno::ENOENT)
        );
        let not_executable = dir.path().join("not-executable");
        std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            errno(launch(not_executable.to_str().unwrap(), &[], dir.path())),
            Some(nix::errno::Errno::EACCES)
        );
        // No shebang: an error, never a run through /bin/sh.
        let no_format = dir.path().join("no-format");
        std::fs::write(&no_format, "true\n").unwrap();
        std::fs::set_permissions(&no_format, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            errno(launch(no_format.to_str().unwrap(), &[], dir.path())),
            Some(nix::errno::Errno::ENOEXEC)
        );
        assert_eq!(
            errno(launch("/bin/true", &[], &missing)),
            Some(nix::errno::Errno::ENOENT)
        );
    }

    #[tokio::test]
    async fn death_by_a_realtime_signal_is_reported() {
        let rtmin = nix::libc::SIGRTMIN();
        let dir = tempfile::tempdir().unwrap();
        let script = format!("kill -{rtmin} $$");
        let child = spawn_test(&launch("/bin/sh", &["-c", &script], dir.path()), &[]).unwrap();
        let (_, _, status) = finish(child).await;
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(rtmin));
    }

    /// The descriptors of a child: 0, 1 and 2, and the IPC channel as 3
    /// when it has one; nothing else of the daemon's (its end of the
    /// channel included), through posix_spawn and through clone3.
    #[tokio::test]
    async fn a_child_gets_only_stdio_and_its_channel() {
        // The descriptors of `pid` once they are `expected`, or what it
        // still has (with their targets) after a while.
        let fds = |pid: u32, expected: &[&str]| -> Vec<String> {
            // The spawn returns once the child's exec replaced its memory,
            // a moment before the kernel closes its close-on-exec
            // descriptors; the new command name comes after that. Then the
            // dynamic loader of /bin/sleep opens (and closes) its cache and
            // libraries: wait for those to go too.
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap() != "sleep\n" {
                assert!(Instant::now() < deadline, "the child never exec'ed");
                std::thread::sleep(Duration::from_millis(1));
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
                fds.sort();
                if fds == expected || Instant::now() > deadline {
                    return fds
                        .into_iter()
                        .map(|fd| match expected.contains(&fd.as_str()) {
                            true => fd,
                            false => {
                                let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"));
                                format!("{fd} -> {link:?}")
                            }
                        })
                        .collect();
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        // As the daemon does at start: what the test runner left open
        // (cargo's jobserver) is not the spawn's to pass on.
        crate::fds::cloexec_inherited().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sleep = launch("/bin/sleep", &["30"], dir.path());
        let cg = TestCgroup::new();
        for cgroup in [None, cg.as_ref().map(TestCgroup::run)] {
            let (app, daemon) = crate::supervisor::ipc::pair().unwrap();
            let mut with = spawn(&sleep, &[], cgroup, Some(app.as_fd())).unwrap();
            drop(app);
            let mut without = spawn(&sleep, &[], cgroup, None).unwrap();
            let (a, b) = (with.id().unwrap(), without.id().unwrap());
            let (with_fds, without_fds) = (fds(a, &["0", "1", "2", "3"]), fds(b, &["0", "1", "2"]));

            let channel = std::fs::read_link(format!("/proc/{a}/fd/3")).unwrap();
            for pid in [a, b] {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            with.wait().await.unwrap();
            without.wait().await.unwrap();
            assert_eq!(
                with_fds,
                ["0", "1", "2", "3"],
                "in a cgroup: {}",
                cgroup.is_some()
            );
            assert_eq!(
                without_fds,
                ["0", "1", "2"],
                "in a cgroup: {}",
                cgroup.is_some()
            );
            assert!(
                channel.to_string_lossy().starts_with("socket:"),
                "{channel:?}"
            );
            // The child's fd 3 is the peer of the daemon's end.
            use std::io::Write;
            let mut daemon = std::os::unix::net::UnixStream::from(daemon);
            assert!(daemon.write_all(b"x").is_err(), "the app's end is closed");
        }
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
