//! The open-file limit: the daemon raises its own soft limit to the hard
//! one at start ([`raise_limit`]), gives each app back the limit it was
//! started with ([`app_limit`], [`give_back`]), and says so, naming the limit, when
//! descriptors still run out ([`explain_exhaustion`]), and how many log
//! files may stay open ([`log_file_budget`]); and keeps the descriptors
//! the daemon inherited out of its apps ([`cloexec_inherited`]).

use std::io;

/// The open-file limit (soft, hard) the daemon was started with: what apps
/// get, whatever the daemon raised its own to. Set once by
/// [`raise_limit`].
static APP_NOFILE: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();

/// Raises the daemon's soft open-file limit to its hard one: every app
/// costs the daemon a few descriptors (pipes, log files, a pidfd), and the
/// soft limit most shells give (1024) would run out at a few hundred apps.
/// Apps get back the limit the daemon was started with (see
/// [`give_back`]). Returns (before, after) when it changed.
pub(crate) fn raise_limit() -> std::io::Result<Option<(u64, u64)>> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let _ = APP_NOFILE.set((soft, hard));
    if soft >= hard {
        return Ok(None);
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(Some((soft, hard)))
}

/// Marks every descriptor above stderr close-on-exec: the daemon opens
/// its own that way, but what it inherited open (a jobserver's pipe, a
/// shell's descriptor) would otherwise reach every app it starts, which
/// gets 0, 1, 2 and, with `wait_ready`, its IPC channel only. One
/// close_range(2) (Linux 5.11); before it, each descriptor of /proc/self/fd.
pub(crate) fn cloexec_inherited() -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: nix::libc::c_uint = 1 << 2;
    // SAFETY: a plain syscall on this process's descriptor table; marking
    // descriptors close-on-exec changes nothing for the daemon itself.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            3 as nix::libc::c_uint,
            nix::libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on a descriptor number: at worst EBADF for the
        // directory's own descriptor, closed since.
        unsafe { nix::libc::fcntl(fd, nix::libc::F_SETFD, nix::libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// The open-file limit (soft, hard) an app gets when it differs from the
/// daemon's (the daemon raised its own): what [`give_back`] sets, and what
/// a child started with clone3 sets itself before its exec.
pub(crate) fn app_limit() -> Option<(u64, u64)> {
    let &(soft, hard) = APP_NOFILE.get()?;
    // Not raised: the app inherits the same limit.
    (soft < hard).then_some((soft, hard))
}

/// Puts an app just started with posix_spawn back on the open-file limit
/// the daemon was started with. posix_spawn cannot set limits, so this
/// happens as soon as it returns, once the new program runs: a program
/// that reads its limit in its very first instructions could still see
/// the daemon's. (A child started with clone3 sets it before its exec.)
pub(crate) fn give_back(pid: nix::unistd::Pid) {
    let Some((soft, hard)) = app_limit() else {
        return;
    };
    let limit = nix::libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: prlimit on our own child with a valid rlimit and no old-value
    // pointer; nix has no wrapper for another process's limits.
    let rc = unsafe {
        nix::libc::prlimit(
            pid.as_raw(),
            nix::libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    if rc != 0 {
        tracing::warn!(pid = pid.as_raw(), error = %std::io::Error::last_os_error(), "cannot give the app its open-file limit back");
    }
}

/// An error of running out of descriptors, said so with the limit and what
/// raises it; any other error as it is.
pub(crate) fn explain_exhaustion(e: io::Error) -> io::Error {
    use nix::sys::resource::{Resource, getrlimit};
    match e.raw_os_error() {
        Some(nix::libc::EMFILE) => {
            let limit = match getrlimit(Resource::RLIMIT_NOFILE) {
                Ok((soft, hard)) => format!("{soft} open files (hard limit {hard})"),
                Err(_) => "its open-file limit".to_owned(),
            };
            io::Error::new(
                e.kind(),
                format!(
                    "the daemon is out of file descriptors: it may have {limit}; raise the hard \
                     limit of the daemon (`ulimit -Hn` in the shell that starts it, \
                     LimitNOFILE= in its systemd unit) or run fewer apps ({e})"
                ),
            )
        }
        Some(nix::libc::ENFILE) => io::Error::new(
            e.kind(),
            format!("the system is out of file descriptors (fs.file-max): {e}"),
        ),
        _ => e,
    }
}

/// How many log files the daemon keeps open at once (the log sinks close
/// the least recently written ones past it): a quarter of its open-file
/// limit as it stands (raised already, when the daemon could), between 16
/// and 4096. The rest is for what cannot be closed: each app's pipes and
/// pidfd, sockets, directory handles.
pub(crate) fn log_file_budget() -> usize {
    use nix::sys::resource::{Resource, getrlimit};
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    usize::try_from(soft / 4)
        .unwrap_or(usize::MAX)
        .clamp(16, 4096)
}
