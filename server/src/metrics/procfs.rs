//! The `/proc` side of sampling: one [`ProcHandle`] per followed process,
//! holding file descriptors that are opened once and re-read with `pread`
//! on every tick, plus the slow-path listing of children forked by
//! non-main threads.
//!
//! Why by hand rather than sysinfo: sysinfo opens and reads `status`,
//! `stat` and `statm` for every pid on every refresh, plus `/proc/stat`
//! and `/proc/uptime`. That measured 29 µs per pid here. Over 30 s at 1 s
//! with 50 apps, that is 44 ms, against a 10 ms budget for the whole
//! daemon. Here, a process that did not run since the previous tick costs
//! one `clock_gettime`, and one that ran costs a `pread` of `statm` and
//! of `children` on kept-open fds on top of that (see
//! [`ProcHandle::observe`]).
//!
//! Holds no locks; the fds are closed when a handle is dropped.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use nix::time::{ClockId, clock_getcpuclockid, clock_gettime};
use nix::unistd::Pid;

/// Upper bound on how much of a `children` file is read: enough for
/// thousands of pids, far more than an instance may have followed
/// (`MAX_PROCESSES_PER_INSTANCE`), so that a process with a huge number of
/// children cannot grow the scratch buffer without limit.
const MAX_CHILDREN_READ: usize = 64 * 1024;

/// One followed process.
pub(super) struct ProcHandle {
    /// `/proc/PID/statm`, kept open. Re-reading it is a single `pread`, and
    /// the fd stays bound to this very process: once it is reaped, reads
    /// fail with ESRCH even if the pid number is reused.
    statm: File,
    /// `/proc/PID/task/PID/children`: the children forked by the main
    /// thread. `None` when the kernel lacks CONFIG_PROC_CHILDREN.
    children: Option<File>,
    /// The CPU-time clock of the whole process (all threads, nanosecond
    /// resolution). It is addressed by pid number, so [`ProcHandle::observe`]
    /// only trusts a reading that `statm` confirms or that did not move.
    clock: ClockId,
    /// CPU time at the latest and the previous reading, in nanoseconds.
    cpu_ns: Option<u64>,
    prev_cpu_ns: Option<u64>,
    /// Resident set size at the latest `statm` read, in pages.
    pub rss_pages: u64,
    /// When `statm` was last read.
    statm_read_at: Option<Instant>,
    /// The process ran since its threads were last searched for children
    /// (see `Instance::discover`).
    pub ran_since_thread_sweep: bool,
}

/// What one look at a process found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Observed {
    /// It was reaped. Forget it.
    Gone,
    /// It has not run since the previous look (or it is a zombie).
    Idle,
    /// It ran (or this is the first look): it may have forked, and its
    /// memory was re-read.
    Ran,
}

impl ProcHandle {
    /// Opens the handle of `pid`, or `None` if it is gone or cannot be
    /// opened (permission, fd limit). Never opens init or pid 0.
    pub fn open(pid: u32, with_children: bool) -> Option<Self> {
        let raw = i32::try_from(pid).ok().filter(|raw| *raw > 1)?;
        let statm = match File::open(format!("/proc/{pid}/statm")) {
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
            statm,
            children,
            clock,
            cpu_ns: None,
            prev_cpu_ns: None,
            rss_pages: 0,
            statm_read_at: None,
            ran_since_thread_sweep: true,
        })
    }

    /// Takes a reading, as cheaply as the process allows:
    ///
    /// - The CPU clock always (one syscall). It fails once the pid no
    ///   longer exists.
    /// - `statm` only if the process ran since the previous look, or if
    ///   the last read is older than `statm_every`. A process that did not
    ///   run cannot have faulted pages in or forked. Only reclaim (swap,
    ///   page-cache eviction) or its exit can change its RSS then, and the
    ///   periodic re-read catches those.
    ///
    /// Pid reuse: a reading that did not move, to the nanosecond, is the
    /// same process (a new one would not have spent exactly that time). A
    /// reading that moved is confirmed by `statm`, whose fd fails with
    /// ESRCH once the original process is reaped. It is read after the
    /// clock, so if it still answers, the pid was not reused before the
    /// clock was read.
    pub fn observe(&mut self, now: Instant, statm_every: Duration) -> Observed {
        let Some(cpu_ns) = clock_gettime(self.clock).ok().and_then(|t| {
            let secs = u64::try_from(t.tv_sec()).ok()?;
            let nanos = u64::try_from(t.tv_nsec()).ok()?;
            Some(secs * 1_000_000_000 + nanos)
        }) else {
            return Observed::Gone;
        };
        let ran = self.cpu_ns != Some(cpu_ns);
        let stale = self
            .statm_read_at
            .is_none_or(|at| now.duration_since(at) >= statm_every);
        if ran || stale {
            let mut buf = [0u8; 256];
            let Some(rss_pages) = read_at_retry(&self.statm, &mut buf, 0)
                .ok()
                .filter(|n| *n > 0)
                .and_then(|n| parse_statm_resident(&buf[..n]))
            else {
                return Observed::Gone;
            };
            self.rss_pages = rss_pages;
            self.statm_read_at = Some(now);
        }
        self.prev_cpu_ns = self.cpu_ns;
        self.cpu_ns = Some(cpu_ns);
        if ran {
            self.ran_since_thread_sweep = true;
            Observed::Ran
        } else {
            Observed::Idle
        }
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

/// The size of a memory page, the unit of `statm`.
pub(super) fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(4096)
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

/// The resident field (second) of `/proc/PID/statm`.
fn parse_statm_resident(bytes: &[u8]) -> Option<u64> {
    let word = bytes.split(|b| b.is_ascii_whitespace()).nth(1)?;
    std::str::from_utf8(word).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_statm_and_children_lists() {
        assert_eq!(
            parse_statm_resident(b"29742 28985 1668 1 0 27620 0\n"),
            Some(28985)
        );
        assert_eq!(parse_statm_resident(b"0 0 0 0 0 0 0\n"), Some(0));
        assert_eq!(parse_statm_resident(b""), None);
        let mut pids = vec![7];
        parse_pids(b"123 4567 ", &mut pids);
        parse_pids(b"", &mut pids);
        assert_eq!(pids, [7, 123, 4567]);
    }

    #[test]
    fn own_process_is_observed() {
        let mut me = ProcHandle::open(std::process::id(), children_supported()).unwrap();
        let start = Instant::now();
        assert_eq!(me.observe(start, Duration::from_secs(10)), Observed::Ran);
        assert!(me.rss_pages > 0);
        assert_eq!(me.cpu_delta_ns(), None);
        // Burn a little CPU; the clock has nanosecond resolution.
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert_eq!(me.observe(start, Duration::from_secs(10)), Observed::Ran);
        assert!(me.cpu_delta_ns().unwrap() > 0);
        assert!(ProcHandle::open(0, true).is_none());
        assert!(ProcHandle::open(1, true).is_none());
    }
}
