//! [`Sampler`]: follows the process tree of each managed instance and sums
//! its CPU and memory. Only the processes it follows are read: it never
//! lists all of `/proc` and never reads system-wide CPU counters.
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
//! Cost: a process that did not run since the previous tick costs one
//! `clock_gettime` (about 1 µs). One that ran also costs a `pread` of its
//! `statm` and `children` files on kept-open fds (about 3.5 µs more, cold).
//! See `procfs.rs`.
//!
//! Owned by the sampling task in `mod.rs`; nothing else touches it.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// How often the memory of a process that has not run is read again.
/// Without running, a process cannot grow its RSS, but reclaim can shrink
/// it, and a zombie's drops to zero.
pub const STATM_EVERY: Duration = Duration::from_secs(10);

/// Samples managed instances. Keeps per-process fds and the previous CPU
/// readings between calls, so CPU percentages come from the second call
/// on. State for instances that are no longer passed in is dropped on the
/// next call, so memory and fds stay bounded by what is managed.
pub struct Sampler {
    /// Bytes per page: `statm` counts pages.
    page_size: u64,
    /// False when the kernel lacks `/proc/PID/task/TID/children`. Then
    /// only the leader of each instance is sampled.
    children_supported: bool,
    thread_sweep_every: Duration,
    /// Per instance id. An entry lives as long as its id is targeted with
    /// the same leader pid.
    instances: HashMap<u32, Instance>,
    /// Counts `sample` calls; marks which instances the current call saw.
    generation: u64,
    /// Buffers reused on every call, so that a tick allocates nothing in
    /// the steady state except the result map.
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
}

/// What is known about one instance between samples.
struct Instance {
    leader: u32,
    /// The leader and every descendant found so far, by pid.
    procs: HashMap<u32, ProcHandle>,
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
        Self {
            page_size: procfs::page_size(),
            children_supported,
            thread_sweep_every: THREAD_SWEEP_EVERY,
            instances: HashMap::new(),
            generation: 0,
            scratch: Scratch::default(),
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
        let mut out = HashMap::with_capacity(targets.len());
        let ctx = Ctx {
            page_size: self.page_size,
            children_supported: self.children_supported,
            thread_sweep_every: self.thread_sweep_every,
            now,
            at_ms,
        };
        for target in targets {
            let instance = self
                .instances
                .entry(target.id)
                .or_insert_with(|| Instance::new(target.pid));
            if instance.leader != target.pid {
                *instance = Instance::new(target.pid);
            }
            instance.generation = self.generation;
            if let Some(sample) = instance.sample(&ctx, &mut self.scratch) {
                out.insert(target.id, sample);
            }
        }
        let generation = self.generation;
        self.instances.retain(|_, i| i.generation == generation);
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

    #[cfg(test)]
    pub(super) fn set_thread_sweep_every(&mut self, every: Duration) {
        self.thread_sweep_every = every;
    }
}

/// What one `sample` call passes down to each instance.
struct Ctx {
    page_size: u64,
    children_supported: bool,
    thread_sweep_every: Duration,
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

    fn sample(&mut self, ctx: &Ctx, scratch: &mut Scratch) -> Option<Sample> {
        if self.dead {
            return None;
        }
        if self.procs.is_empty() {
            let Some(handle) = ProcHandle::open(self.leader, ctx.children_supported) else {
                self.dead = true;
                return None;
            };
            self.procs.insert(self.leader, handle);
        }

        // Look at every followed process and note the ones that ran: only
        // they can have forked since the previous tick.
        let ran = &mut scratch.queue;
        ran.clear();
        self.procs
            .retain(|pid, handle| match handle.observe(ctx.now, STATM_EVERY) {
                Observed::Gone => false, // reaped: forget it (closes its fds)
                Observed::Idle => true,
                Observed::Ran => {
                    ran.push(*pid);
                    true
                }
            });
        if !self.procs.contains_key(&self.leader) {
            // The leader was reaped. The supervisor drains what is left of
            // the group and drops the target. Stop following it now.
            self.dead = true;
            self.procs = HashMap::new();
            return None;
        }
        self.discover(ctx, scratch);

        let mut rss_pages = 0u64;
        let mut cpu_delta_ns = 0u64;
        for handle in self.procs.values() {
            rss_pages = rss_pages.saturating_add(handle.rss_pages);
            cpu_delta_ns = cpu_delta_ns.saturating_add(handle.cpu_delta_ns().unwrap_or(0));
        }
        let cpu_percent = self.last_at.and_then(|before| {
            let wall_ns = ctx.now.duration_since(before).as_nanos();
            (wall_ns > 0).then(|| cpu_delta_ns as f64 * 100.0 / wall_ns as f64)
        });
        self.last_at = Some(ctx.now);
        Some(Sample {
            cpu_percent,
            memory_bytes: rss_pages.saturating_mul(ctx.page_size),
            processes: u32::try_from(self.procs.len()).unwrap_or(u32::MAX),
            at_ms: ctx.at_ms,
        })
    }

    /// Starts following the children of the processes in `scratch.queue`
    /// (those that ran this tick) that are not followed yet, and then their
    /// children, in the same call. On a thread-sweep tick, the threads of
    /// the processes that ran since the previous sweep are searched too.
    fn discover(&mut self, ctx: &Ctx, scratch: &mut Scratch) {
        if !ctx.children_supported {
            return;
        }
        let sweep_threads = self
            .last_thread_sweep
            .is_none_or(|at| ctx.now.duration_since(at) >= ctx.thread_sweep_every);
        let Scratch { buf, queue, found } = scratch;
        if sweep_threads {
            self.last_thread_sweep = Some(ctx.now);
            // Processes that ran earlier but are idle now still owe a sweep.
            for (pid, handle) in &self.procs {
                if handle.ran_since_thread_sweep && !queue.contains(pid) {
                    queue.push(*pid);
                }
            }
        }
        let mut next = 0;
        while let Some(&pid) = queue.get(next) {
            next += 1;
            found.clear();
            let Some(handle) = self.procs.get_mut(&pid) else {
                continue;
            };
            handle.children(buf, found);
            if sweep_threads {
                handle.ran_since_thread_sweep = false;
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
                    && handle.observe(ctx.now, STATM_EVERY) != Observed::Gone
                {
                    self.procs.insert(child, handle);
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
