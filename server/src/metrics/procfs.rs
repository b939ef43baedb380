//! What sysinfo does not give cheaply, per followed process: the CPU-time
//! clock that gates every other read, the `children` lists that find an
//! instance's processes, and a kept-open fd that proves a pid still names
//! the process first seen under it. One [`ProcHandle`] per followed
//! process; memory comes from sysinfo (see `sampler.rs`).
//!
//! - CPU clock (`clock_getcpuclockid` + `clock_gettime`): the whole
//!   process's CPU time (all threads), to the nanosecond, in one syscall
//!   and without touching `/proc`. It is read for every followed process
//!   on every tick. If it did not move, the process did not run, so it
//!   cannot have forked or faulted pages in: nothing else is read for it.
//!   Its deltas are also the CPU figure (see `sampler.rs` for why not
//!   sysinfo's `cpu_usage`).
//! - `/proc/PID/task/PID/children`, kept open and re-read with `pread`
//!   when the process ran. sysinfo cannot list a process's children
//!   without refreshing every process on the system (its `parent()` is
//!   only known for processes it has read, which needs their pids), so
//!   children are found here, and children forked by other threads by a
//!   slower sweep of `/proc/PID/task/*/children` ([`thread_children`]).
//! - `/proc/PID/statm`, kept open only as an identity token
//!   ([`ProcHandle::same_process`]): a read of it fails with ESRCH once
//!   the process it was opened for is reaped, even if the pid number has
//!   been given to another process since. Its content is not used.
//!
//! Holds no locks; the fds are closed when a handle is dropped.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use nix::time::{ClockId, clock_getcpuclockid, clock_gettime};
use nix::unistd::Pid;

/// Upper bound on how much of a `children` file is read: enough for
/// thousands of pids, far more than an instance may have followed
/// (`MAX_PROCESSES_PER_INSTANCE`), so that a process with a huge number of
/// children cannot grow the scratch buffer without limit.
const MAX_CHILDREN_READ: usize = 64 * 1024;

/// One followed process.
pub(super) struct ProcHandle {
    /// `/proc/PID/statm`, kept open and bound to this very process (see
    /// [`ProcHandle::same_process`]).
    identity: File,
    /// `/proc/PID/task/PID/children`: the children forked by the main
    /// thread. `None` when the kernel lacks CONFIG_PROC_CHILDREN.
    children: Option<File>,
    /// The CPU-time clock of the whole process. It is addressed by pid
    /// number, so a reading is only trusted if it did not move (to the
    /// nanosecond, which a different process would not match) or if
    /// [`ProcHandle::same_process`] confirms it afterwards.
    clock: ClockId,
    /// CPU time at the latest and the previous reading, in nanoseconds.
    cpu_ns: Option<u64>,
    prev_cpu_ns: Option<u64>,
    /// The process ran since its threads were last searched for children
    /// (see `Instance::discover`).
    pub ran_since_thread_sweep: bool,
}

/// What one look at a process's CPU clock found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Observed {
    /// No process has this pid any more. Forget it.
    Gone,
    /// It has not run since the previous look (or it is a zombie).
    Idle,
    /// It ran (or this is the first look): it may have forked and its
    /// memory may have changed.
    Ran,
}

impl ProcHandle {
    /// Opens the handle of `pid`, or `None` if it is gone or cannot be
    /// opened (permission, fd limit). Never opens init or pid 0.
    pub fn open(pid: u32, with_children: bool) -> Option<Self> {
        let raw = i32::try_from(pid).ok().filter(|raw| *raw > 1)?;
        let identity = match File::open(format!("/proc/{pid}/statm")) {
            Ok(f) => f,
            Err(e) => {
                if e.raw_os_error() != Some(nix::libc::ENOENT) {
                    tracing::debug!(pid, error = %e, "cannot open /proc statm");
                }
                return None;
            }
        };
        let clock = clock_getcpuclockid(Pid::from_raw(raw)).ok()?;
        let children = with_children
            .then(|| File::open(format!("/proc/{pid}/task/{pid}/children")).ok())
            .flatten();
        Some(Self {
            identity,
            children,
            clock,
            cpu_ns: None,
            prev_cpu_ns: None,
            ran_since_thread_sweep: true,
        })
    }

    /// Reads the CPU clock (one syscall, no `/proc` access). It fails once
    /// no process has the pid any more. A reading that moved may belong to
    /// another process that reused the pid: the caller confirms it with
    /// [`ProcHandle::same_process`] after its other reads.
    pub fn observe(&mut self) -> Observed {
        let Some(cpu_ns) = clock_gettime(self.clock).ok().and_then(|t| {
            let secs = u64::try_from(t.tv_sec()).ok()?;
            let nanos = u64::try_from(t.tv_nsec()).ok()?;
            Some(secs * 1_000_000_000 + nanos)
        }) else {
            return Observed::Gone;
        };
        let ran = self.cpu_ns != Some(cpu_ns);
        self.prev_cpu_ns = self.cpu_ns;
        self.cpu_ns = Some(cpu_ns);
        if ran {
            self.ran_since_thread_sweep = true;
            Observed::Ran
        } else {
            Observed::Idle
        }
    }

    /// Whether the process this handle was opened for has not been reaped
    /// yet (zombies count as not reaped). If so, the pid still named it
    /// when anything was read by pid number before this call: the CPU
    /// clock, sysinfo's refresh. One `pread` of `statm` (about 1 µs).
    pub fn same_process(&self) -> bool {
        let mut buf = [0u8; 128];
        read_at_retry(&self.identity, &mut buf, 0).is_ok_and(|n| n > 0)
    }

    /// CPU time spent between the previous reading and the latest one, in
    /// nanoseconds. `None` until there are two readings.
    pub fn cpu_delta_ns(&self) -> Option<u64> {
        Some(self.cpu_ns?.saturating_sub(self.prev_cpu_ns?))
    }

    /// Appends the pids of the children that the main thread forked.
    pub fn children(&self, buf: &mut Vec<u8>, out: &mut Vec<u32>) {
        if let Some(file) = &self.children
            && let Ok(n) = read_all_at(file, buf)
        {
            parse_pids(&buf[..n], out);
        }
    }
}

/// Appends the children forked by `pid`'s threads other than the main one
/// (a Go program or a thread pool forks from any thread, and the kernel
/// lists a child under the thread that forked it). This lists
/// `/proc/PID/task` and opens one file per thread, so it runs on a slower
/// cadence than sampling.
pub(super) fn thread_children(pid: u32, buf: &mut Vec<u8>, out: &mut Vec<u32>) {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for tid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        if tid == pid {
            continue; // the main thread's list is read every tick anyway
        }
        if let Ok(file) = File::open(format!("/proc/{pid}/task/{tid}/children"))
            && let Ok(n) = read_all_at(&file, buf)
        {
            parse_pids(&buf[..n], out);
        }
    }
}

/// Whether this kernel has `/proc/PID/task/TID/children`
/// (CONFIG_PROC_CHILDREN), checked on the daemon itself.
pub(super) fn children_supported() -> bool {
    let me = std::process::id();
    std::path::Path::new(&format!("/proc/{me}/task/{me}/children")).exists()
}

fn read_at_retry(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Reads a whole seq_file from offset 0 into `buf` and returns its length.
/// `buf` is scratch space whose length is its usable size. It grows as
/// needed, up to [`MAX_CHILDREN_READ`], and is never zeroed again. An
/// empty file, the common case for a process without children, costs one
/// syscall.
fn read_all_at(file: &File, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.is_empty() {
        buf.resize(4096, 0);
    }
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            if buf.len() >= MAX_CHILDREN_READ {
                // Truncated: drop the pid cut in half at the end.
                let last_space = buf.iter().rposition(|b| *b == b' ').unwrap_or(0);
                return Ok(last_space);
            }
            buf.resize(buf.len() * 2, 0);
        }
        match read_at_retry(file, &mut buf[filled..], filled as u64)? {
            0 => return Ok(filled),
            n => filled += n,
        }
    }
}

/// Parses a space-separated list of pids (the `children` format).
fn parse_pids(bytes: &[u8], out: &mut Vec<u32>) {
    out.extend(
        bytes
            .split(|b| b.is_ascii_whitespace())
            .filter_map(|word| std::str::from_utf8(word).ok()?.parse::<u32>().ok()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_children_lists() {
        let mut pids = vec![7];
        parse_pids(b"123 4567 ", &mut pids);
        parse_pids(b"", &mut pids);
        assert_eq!(pids, [7, 123, 4567]);
    }

    #[test]
    fn own_process_is_observed() {
        let mut me = ProcHandle::open(std::process::id(), children_supported()).unwrap();
        assert_eq!(me.observe(), Observed::Ran);
        assert!(me.same_process());
        assert_eq!(me.cpu_delta_ns(), None);
        // Burn a little CPU; the clock has nanosecond resolution.
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert_eq!(me.observe(), Observed::Ran);
        assert!(me.cpu_delta_ns().unwrap() > 0);
        assert!(ProcHandle::open(0, true).is_none());
        assert!(ProcHandle::open(1, true).is_none());
    }
}
