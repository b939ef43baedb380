//! PID 1 duties of `pmdaemond run`, done by a process of their own, as tini
//! does: [`split`] forks before anything else runs; the parent becomes the
//! init (reaper and signal relay), the child goes on as the daemon.
//!
//! Why two processes: the daemon reaps its own children (each instance's
//! exit is awaited on a pidfd and collected with `waitpid(pid)`, probe
//! shells through tokio), and a reaper in the same process calling
//! `waitpid(-1)` could take one of those exit statuses first. Here the init
//! calls `waitpid(-1)`, which only ever returns the init's own children:
//! the daemon, and the orphans the kernel re-parents to it (it is PID 1, or
//! a child subreaper when it is not). The daemon is no subreaper, so every
//! process an app leaves behind goes to the init, and no child of the
//! daemon is ever the init's while the daemon lives. Race-free by
//! construction, with no list of pids to keep in step.
//!
//! Signals: SIGTERM, SIGINT, SIGQUIT and SIGHUP are blocked in the init and
//! taken with sigwait (as PID 1, a signal without a handler would be
//! ignored), then sent on to the daemon, which stops every app gracefully
//! on the first three. When the daemon exits, the init reaps what is left
//! and exits with the daemon's status (128 + N after a signal N). The
//! daemon gets SIGTERM if the init dies first (PR_SET_PDEATHSIG), so it
//! never runs on without its reaper.

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::unistd::{ForkResult, Pid, fork, getpid, getppid};

/// The signals the init relays to the daemon.
const RELAYED: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
];

/// Forks the init. Returns in the daemon (the child); the init never
/// returns. Must run before any thread is started (no runtime, no tracing
/// thread): it checks that the process has one thread.
pub fn split() -> std::io::Result<()> {
    let threads = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse::<u32>().ok())
        });
    if threads.is_some_and(|n| n != 1) {
        return Err(std::io::Error::other(
            "the init must be forked before any thread starts",
        ));
    }
    if getpid().as_raw() != 1 {
        // Orphans of the apps come to us, not to the machine's init.
        nix::sys::prctl::set_child_subreaper(true)?;
    }
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for s in RELAYED {
        mask.add(s);
    }
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old))?;
    let init = getpid();
    // SAFETY: the process is single-threaded (checked above), so the child
    // may run any code after the fork.
    match unsafe { fork() }? {
        ForkResult::Child => {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
            if getppid() != init {
                // The init died before the line above.
                std::process::exit(1);
            }
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None)?;
            Ok(())
        }
        ForkResult::Parent { child } => init_loop(child, &mask),
    }
}

/// The init: relays signals to `daemon`, reaps every child, exits with
/// the daemon's status once it is gone.
fn init_loop(daemon: Pid, mask: &SigSet) -> ! {
    loop {
        match mask.wait() {
            Ok(Signal::SIGCHLD) => {
                if let Some(code) = reap(daemon) {
                    // Orphans that exited meanwhile go too.
                    while reap_one().is_some() {}
                    std::process::exit(code);
                }
            }
            Ok(signal) => {
                let _ = kill(daemon, signal);
            }
            Err(_) => {}
        }
    }
}

/// Reaps every exited child; the daemon's exit code when it was one of
/// them.
fn reap(daemon: Pid) -> Option<i32> {
    let mut daemon_code = None;
    while let Some((pid, code)) = reap_one() {
        if pid == daemon.as_raw() {
            daemon_code = Some(code);
        }
    }
    daemon_code
}

/// One exited child, if any: its pid and exit code (128 + N after signal
/// N). libc's waitpid: nix's loses the status of a real-time signal.
fn reap_one() -> Option<(i32, i32)> {
    use nix::libc;
    let mut raw = 0;
    // SAFETY: plain waitpid with a valid out-pointer.
    let pid = unsafe { libc::waitpid(-1, &mut raw, libc::WNOHANG) };
    if pid <= 0 {
        return None;
    }
    let code = if libc::WIFEXITED(raw) {
        libc::WEXITSTATUS(raw)
    } else if libc::WIFSIGNALED(raw) {
        128 + libc::WTERMSIG(raw)
    } else {
        1
    };
    Some((pid, code))
}
