//! [`Sampler`]: follows the process tree of each managed instance and sums
//! its CPU and memory. Only the processes it follows are read: it never
//! lists all of `/proc`, never refreshes sysinfo's full process list, and
//! never reads system-wide CPU or memory counters.
//!
//! Which processes make up an instance: the leader, then every process
//! found by walking `children` lists down from it. Once a process has been
//! found, it stays followed until it is reaped, even if it is reparented
//! later (a daemonizing grandchild, a worker whose parent died). It is
//! dropped only when the instance's leader changes (restart) or the
//! instance leaves the target list. Process-group members that were
//! reparented before the sampler ever saw them (a double fork finished
//! within one interval) are missed. Finding them would need a full
//! `/proc` scan.
//!
//! One tick, over all instances at once:
//!
//! 1. Read every followed process's CPU clock. A process whose clock did
//!    not move did not run, so it cannot have forked or grown its memory:
//!    nothing more is read for it, except on a memory-sweep tick (every
//!    [`STATM_EVERY`], for reclaim). For the ones that ran, read their
//!    `children` lists and start following new children.
//! 2. Refresh exactly the processes that ran or were just found (all
//!    followed ones on a sweep tick), plus the pids found gone, in ONE
//!    sysinfo call: `refresh_processes_specifics(ProcessesToUpdate::Some(
//!    pids), true, ProcessRefreshKind::nothing().with_memory()
//!    .without_tasks())`. No call at all when nothing ran.
//! 3. Take each refreshed process's RSS from sysinfo's `memory()` (bytes),
//!    after confirming with the kept-open `statm` fd that the pid still
//!    names the process first followed (pid reuse, see `procfs.rs`).
//!
//! CPU stays on the per-process CPU clocks rather than sysinfo's
//! `cpu_usage()`: that needs `ProcessRefreshKind::with_cpu()`, which makes
//! every refresh re-read the system-wide CPU times (`/proc/stat`, and
//! `/proc/cpuinfo` the first time). And it divides a process's utime +
//! stime delta since its own previous refresh (10 ms clock ticks) by the
//! system's CPU time since the previous refresh of any process, so a
//! process skipped for some ticks would be over-counted. The clocks are
//! read anyway for gating, count all threads to the nanosecond, and give
//! the share of one core directly.
//!
//! sysinfo's table holds only the pids it was asked about. It drops a pid
//! that it is asked about and cannot read; other stale entries are
//! cleared by rebuilding the `System` (see [`SYSINFO_SLACK`]).
//!
//! Cost, measured in release builds on 2 cores (see the `cost_` tests): a
//! process that did not run costs one `clock_gettime` (under 1 µs; a tick
//! for 50 idle apps takes 15 µs back to back, 70 µs at a real 1 s
//! interval, when caches are cold). A process that ran costs a sysinfo
//! read, which opens and reads its `status`, `stat` and `statm` (plus
//! `/proc/uptime` once per call), and the sampler's `pread` of its
//! `children` and `statm` fds: about 30 to 40 µs in a batch, 60 to 100 µs
//! alone on a cold tick. So 5 busy apps add some 250 µs a tick, and the
//! memory sweep of 50 idle apps costs about 1.5 to 2 ms once every
//! [`STATM_EVERY`].
//!
//! Owned by the sampling task in `mod.rs`; nothing else touches it.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

use super::procfs::{self, Observed, ProcHandle};
use super::{Sample, Snapshot, Target};

/// How many processes are followed per instance at most. Each one holds
/// two fds (`statm` and `children`), so this bounds what a fork bomb can
/// cost the daemon.
pub const MAX_PROCESSES_PER_INSTANCE: usize = 256;

/// How often the threads of processes that ran since the previous sweep
/// are searched for children they forked (the main thread's children are
/// looked for on every tick that the process ran). Listing threads costs a
/// directory read plus one open per thread, about 4 µs each, or some 40 µs
/// for a busy 10-thread node app. So it runs on a slower cadence, and idle
/// processes are skipped. A child that a worker thread forks (Go's
/// os/exec, a thread pool) is counted at most this long after it
/// appears. Its own children are then followed like any other's.
pub const THREAD_SWEEP_EVERY: Duration = Duration::from_secs(10);

/// How often the memory of the processes that have not run is read again
/// (through sysinfo, which reads `statm`), all of them on the same tick.
/// Without running, a process cannot fault pages in, fork or exit (its
/// exit runs, and the tick that sees it reads the zombie's zero RSS), so
/// only the kernel's own work changes its RSS: reclaim and swap-out shrink
/// it (khugepaged may add a little). A figure is stale for at most this
/// long.
///
/// The period is about cost. A sysinfo read of one process costs about
/// 40 µs in a batch, and 70 to 100 µs when a call reads only a few
/// processes on an otherwise cache-cold tick. So the re-reads are batched
/// into one sweep (one sysinfo call, about 2 ms for 50 apps, merged with
/// that tick's refresh of the processes that ran) rather than spread over
/// the ticks, and 30 s puts one sweep in the daemon's 30 s budget window
/// (measured in the daemon: 1.8 to 2 ms for 50 `sleep` apps, against
/// 0.25 ms for a plain tick).
pub const STATM_EVERY: Duration = Duration::from_secs(30);

/// sysinfo's table is rebuilt when it holds more than this many entries
/// beyond twice the followed processes, or any entry once nothing is
/// followed. It only loses entries for pids it is asked about and cannot
/// read, so processes that are still alive when the sampler stops
/// following them (an instance deleted or restarted while a reparented
/// descendant lives on, a pid reused by another process) would otherwise
/// stay in it for good.
const SYSINFO_SLACK: usize = 64;

/// What sysinfo reads for each refreshed process: its memory only. No
/// tasks (that would list `/proc/PID/task`), no CPU (that would read
/// `/proc/stat`), no user, command line, environment or paths.
fn refresh_kind() -> ProcessRefreshKind {
    ProcessRefreshKind::nothing().with_memory().without_tasks()
}

/// Samples managed instances. Keeps per-process fds and the previous CPU
/// readings between calls, so CPU percentages come from the second call
/// on. State for instances that are no longer passed in is dropped on the
/// next call, so memory and fds stay bounded by what is managed.
pub struct Sampler {
    /// sysinfo's view of the followed processes, and only of them. `None`
    /// while `System::new` fails (it cannot on Linux in sysinfo 0.40:
    /// it only reads the boot time, with a fallback); retried each tick.
    system: Option<System>,
    /// Whether a failed `System::new` was logged already.
    warned_no_system: bool,
    /// False when the kernel lacks `/proc/PID/task/TID/children`. Then
    /// only the leader of each instance is sampled.
    children_supported: bool,
    thread_sweep_every: Duration,
    memory_every: Duration,
    /// When the memory of every followed process was last re-read.
    last_memory_sweep: Option<Instant>,
    /// Per instance id. An entry lives as long as its id is targeted with
    /// the same leader pid.
    instances: HashMap<u32, Instance>,
    /// Counts `sample` calls; marks which instances the current call saw.
    generation: u64,
    /// Buffers reused on every call, so that a tick where nothing ran
    /// allocates nothing but the result map (a sysinfo refresh allocates
    /// its own buffers).
    scratch: Scratch,
}

#[derive(Default)]
struct Scratch {
    /// Contents of a `children` file.
    buf: Vec<u8>,
    /// Pids that ran this tick, then whose children are still to be
    /// looked for.
    queue: Vec<u32>,
    /// Children found for the pid being visited.
    found: Vec<u32>,
    /// The pids for this tick's sysinfo refresh: those to read, and those
    /// found gone (so that sysinfo drops them too).
    refresh: Vec<sysinfo::Pid>,
}

/// One followed process.
struct Proc {
    handle: ProcHandle,
    /// Resident set size in bytes, from the latest sysinfo refresh.
    rss_bytes: u64,
    /// It ran since the previous tick (or was just found), going by its
    /// CPU clock.
    ran: bool,
    /// Part of this tick's sysinfo refresh.
    refreshing: bool,
}

impl Proc {
    fn new(handle: ProcHandle) -> Self {
        Self {
            handle,
            rss_bytes: 0,
            ran: true,
            refreshing: false,
        }
    }
}

/// What is known about one instance between samples.
struct Instance {
    leader: u32,
    /// The leader and every descendant found so far, by pid.
    procs: HashMap<u32, Proc>,
    /// When the previous sample was taken (`None` before the first one).
    last_at: Option<Instant>,
    /// When the children of non-main threads were last looked for.
    last_thread_sweep: Option<Instant>,
    /// `Sampler::generation` of the last call that targeted this instance.
    generation: u64,
    /// The leader is gone. Nothing is sampled until the target changes.
    dead: bool,
    /// Whether the "too many processes" warning was already logged.
    warned_cap: bool,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampler {
    pub fn new() -> Self {
        let children_supported = procfs::children_supported();
        if !children_supported {
            tracing::warn!(
                "this kernel has no /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN): \
                 metrics count only each instance's main process, not its children"
            );
        }
        let mut sampler = Self {
            system: None,
            warned_no_system: false,
            children_supported,
            thread_sweep_every: THREAD_SWEEP_EVERY,
            memory_every: STATM_EVERY,
            last_memory_sweep: None,
            instances: HashMap::new(),
            generation: 0,
            scratch: Scratch::default(),
        };
        sampler.ensure_system();
        sampler
    }

    /// Creates sysinfo's `System` if there is none yet. It starts empty
    /// (`System::new` refreshes nothing; it reads the boot time once).
    fn ensure_system(&mut self) {
        if self.system.is_some() {
            return;
        }
        match System::new() {
            Ok(system) => self.system = Some(system),
            Err(error) => {
                if !self.warned_no_system {
                    self.warned_no_system = true;
                    tracing::error!(%error, "sysinfo is unavailable: metrics report no memory");
                }
            }
        }
    }

    /// Samples `targets`. The snapshot holds one [`Sample`] per instance
    /// whose leader is still alive, keyed by instance id. Targets whose
    /// process is gone are absent. CPU is `None` on an instance's first
    /// sample and after its leader pid changes.
    pub fn sample(&mut self, targets: &[Target]) -> Snapshot {
        let now = Instant::now();
        let at_ms = unix_ms();
        self.generation += 1;
        self.ensure_system();
        let memory_sweep = self
            .last_memory_sweep
            .is_none_or(|at| now.duration_since(at) >= self.memory_every);
        if memory_sweep {
            self.last_memory_sweep = Some(now);
        }
        let ctx = Ctx {
            children_supported: self.children_supported,
            thread_sweep_every: self.thread_sweep_every,
            memory_sweep,
            now,
            at_ms,
        };

        // 1. CPU clocks and children, noting what sysinfo must read.
        self.scratch.refresh.clear();
        for target in targets {
            let instance = self
                .instances
                .entry(target.id)
                .or_insert_with(|| Instance::new(target.pid));
            if instance.leader != target.pid {
                *instance = Instance::new(target.pid);
            }
            if instance.generation != self.generation {
                instance.generation = self.generation;
                instance.observe(&ctx, &mut self.scratch);
            }
        }
        let generation = self.generation;
        self.instances.retain(|_, i| i.generation == generation);

        // 2. One sysinfo refresh of exactly those processes.
        if let Some(system) = &mut self.system
            && !self.scratch.refresh.is_empty()
        {
            system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&self.scratch.refresh),
                true,
                refresh_kind(),
            );
        }

        // 3. Memory from sysinfo, identity checks, sums.
        let mut out = HashMap::with_capacity(self.instances.len());
        for (id, instance) in &mut self.instances {
            if let Some(sample) = instance.finish(&ctx, self.system.as_ref()) {
                out.insert(*id, sample);
            }
        }

        let followed = self.followed_processes();
        if let Some(system) = &self.system {
            let held = system.processes().len();
            if held > 2 * followed + SYSINFO_SLACK || (followed == 0 && held > 0) {
                // Entries for processes no longer followed: start afresh.
                // The next refresh reads the followed ones as new, at the
                // same cost.
                self.system = None;
                self.ensure_system();
            }
        }
        Snapshot {
            at_ms,
            samples: out,
        }
    }

    /// How many processes are followed over all instances (each holds two
    /// fds). For diagnostics and tests.
    pub fn followed_processes(&self) -> usize {
        self.instances.values().map(|i| i.procs.len()).sum()
    }

    /// The pids followed for instance `id`.
    #[cfg(test)]
    pub(super) fn followed_pids(&self, id: u32) -> Vec<u32> {
        self.instances
            .get(&id)
            .map(|i| i.procs.keys().copied().collect())
            .unwrap_or_default()
    }

    /// How many processes sysinfo's table holds.
    #[cfg(test)]
    pub(super) fn sysinfo_processes(&self) -> usize {
        self.system.as_ref().map_or(0, |s| s.processes().len())
    }

    #[cfg(test)]
    pub(super) fn set_thread_sweep_every(&mut self, every: Duration) {
        self.thread_sweep_every = every;
    }

    #[cfg(test)]
    pub(super) fn set_memory_every(&mut self, every: Duration) {
        self.memory_every = every;
    }
}

/// What one `sample` call passes down to each instance.
struct Ctx {
    children_supported: bool,
    thread_sweep_every: Duration,
    /// This tick re-reads the memory of every followed process.
    memory_sweep: bool,
    now: Instant,
    at_ms: i64,
}

impl Instance {
    fn new(leader: u32) -> Self {
        Self {
            leader,
            procs: HashMap::new(),
            last_at: None,
            last_thread_sweep: None,
            generation: 0,
            dead: false,
            warned_cap: false,
        }
    }

    /// Step 1 of a tick: reads the CPU clocks, follows new children, and
    /// appends to `scratch.refresh` the pids whose memory is to be read
    /// (marking them `refreshing`) and those found gone.
    fn observe(&mut self, ctx: &Ctx, scratch: &mut Scratch) {
        if self.dead {
            return;
        }
        if self.procs.is_empty() {
            let Some(handle) = ProcHandle::open(self.leader, ctx.children_supported) else {
                self.dead = true;
                return;
            };
            self.procs.insert(self.leader, Proc::new(handle));
        }

        // Look at every followed process and note the ones that ran: only
        // they can have forked since the previous tick.
        let Scratch { queue, refresh, .. } = scratch;
        queue.clear();
        self.procs.retain(|pid, proc| match proc.handle.observe() {
            Observed::Gone => {
                // No process has this pid now: forget it (closes its fds),
                // and let sysinfo drop it too.
                refresh.push(sysinfo::Pid::from_u32(*pid));
                false
            }
            Observed::Idle => {
                proc.ran = false;
                true
            }
            Observed::Ran => {
                proc.ran = true;
                queue.push(*pid);
                true
            }
        });
        if !self.procs.contains_key(&self.leader) {
            self.leader_gone();
            return;
        }
        self.discover(ctx, scratch);

        for (pid, proc) in &mut self.procs {
            proc.refreshing = proc.ran || ctx.memory_sweep;
            if proc.refreshing {
                scratch.refresh.push(sysinfo::Pid::from_u32(*pid));
            }
        }
    }

    /// Step 3 of a tick, after sysinfo's refresh: takes the memory of the
    /// refreshed processes, drops those that are gone or whose pid now
    /// names another process, and sums.
    fn finish(&mut self, ctx: &Ctx, system: Option<&System>) -> Option<Sample> {
        if self.dead {
            return None;
        }
        self.procs.retain(|pid, proc| {
            if !std::mem::take(&mut proc.refreshing) {
                return true;
            }
            // Checked after the clock and the refresh were read by pid
            // number: if the original process is not reaped yet, both
            // read it.
            if !proc.handle.same_process() {
                return false;
            }
            match system {
                Some(system) => match system.process(sysinfo::Pid::from_u32(*pid)) {
                    Some(process) => {
                        proc.rss_bytes = process.memory();
                        true
                    }
                    // sysinfo could not read it: it exited in between.
                    None => false,
                },
                None => true,
            }
        });
        if !self.procs.contains_key(&self.leader) {
            self.leader_gone();
            return None;
        }

        let mut memory_bytes = 0u64;
        let mut cpu_delta_ns = 0u64;
        for proc in self.procs.values() {
            memory_bytes = memory_bytes.saturating_add(proc.rss_bytes);
            cpu_delta_ns = cpu_delta_ns.saturating_add(proc.handle.cpu_delta_ns().unwrap_or(0));
        }
        let cpu_percent = self.last_at.and_then(|before| {
            let wall_ns = ctx.now.duration_since(before).as_nanos();
            (wall_ns > 0).then(|| cpu_delta_ns as f64 * 100.0 / wall_ns as f64)
        });
        self.last_at = Some(ctx.now);
        Some(Sample {
            cpu_percent,
            memory_bytes,
            processes: u32::try_from(self.procs.len()).unwrap_or(u32::MAX),
            at_ms: ctx.at_ms,
        })
    }

    /// The leader was reaped. The supervisor drains what is left of the
    /// group and drops the target. Stop following it now.
    fn leader_gone(&mut self) {
        self.dead = true;
        self.procs = HashMap::new();
    }

    /// Starts following the children of the processes in `scratch.queue`
    /// (those that ran this tick) that are not followed yet, and then their
    /// children, in the same call. On a thread-sweep tick, the threads of
    /// the processes that ran since the previous sweep are searched too.
    /// New processes are read by sysinfo in this tick's refresh.
    fn discover(&mut self, ctx: &Ctx, scratch: &mut Scratch) {
        if !ctx.children_supported {
            return;
        }
        let sweep_threads = self
            .last_thread_sweep
            .is_none_or(|at| ctx.now.duration_since(at) >= ctx.thread_sweep_every);
        let Scratch {
            buf, queue, found, ..
        } = scratch;
        if sweep_threads {
            self.last_thread_sweep = Some(ctx.now);
            // Processes that ran earlier but are idle now still owe a sweep.
            for (pid, proc) in &self.procs {
                if proc.handle.ran_since_thread_sweep && !queue.contains(pid) {
                    queue.push(*pid);
                }
            }
        }
        let mut next = 0;
        while let Some(&pid) = queue.get(next) {
            next += 1;
            found.clear();
            let Some(proc) = self.procs.get_mut(&pid) else {
                continue;
            };
            proc.handle.children(buf, found);
            if sweep_threads {
                proc.handle.ran_since_thread_sweep = false;
                procfs::thread_children(pid, buf, found);
            }
            for &child in found.iter() {
                if self.procs.contains_key(&child) {
                    continue;
                }
                if self.procs.len() >= MAX_PROCESSES_PER_INSTANCE {
                    if !self.warned_cap {
                        self.warned_cap = true;
                        tracing::warn!(
                            pid = self.leader,
                            limit = MAX_PROCESSES_PER_INSTANCE,
                            "instance has too many processes; metrics count only the first ones"
                        );
                    }
                    return;
                }
                if let Some(mut handle) = ProcHandle::open(child, true)
                    && handle.observe() != Observed::Gone
                {
                    self.procs.insert(child, Proc::new(handle));
                    queue.push(child);
                }
            }
        }
    }
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
