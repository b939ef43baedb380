//! CPU and memory sampling of the managed processes, on one daemon-wide
//! interval (`pmdaemond --monitor-interval`, default 1 s).
//!
//! Owns the sampling task ([`spawn_sampler`]) and its [`Sampler`], which
//! looks only at the managed processes: each instance's leader and its
//! descendants, summed per instance. CPU is a percentage of one core
//! (100 = one full core; more with several threads or processes). Memory
//! is the RSS in bytes. Uptime and restart counts are the supervisor's,
//! not sampled here.
//!
//! How, per tick (details in `sampler.rs` and `procfs.rs`):
//!
//! - Gating: every followed process's CPU-time clock
//!   (`clock_getcpuclockid` + `clock_gettime`, one syscall, no `/proc`) is
//!   read. A process whose clock did not move did not run, so it cannot
//!   have forked or changed its memory: it is skipped.
//! - sysinfo reads memory: the processes that ran (and, every
//!   [`STATM_EVERY`], all followed ones, for reclaim) are refreshed in one
//!   `System::refresh_processes_specifics(ProcessesToUpdate::Some(pids),
//!   ..)` call that reads memory only, and their RSS is sysinfo's
//!   `Process::memory()`. sysinfo is never asked for all processes, nor
//!   for CPUs or system memory.
//! - CPU is the delta of those same clocks over the interval: exact to the
//!   nanosecond, all threads, where sysinfo's `cpu_usage()` would need a
//!   system-wide `/proc/stat` refresh every tick and counts 10 ms ticks.
//! - Children are found from `/proc/PID/task/*/children` of the processes
//!   that ran: sysinfo can only tell a process's parent, and only for a
//!   pid it already knows, so finding children through it would take a
//!   refresh of every process on the system.
//! - Pid reuse: a clock that did not move to the nanosecond is the same
//!   process; whatever sysinfo read by pid number is confirmed afterwards
//!   by a kept-open `/proc/PID/statm` fd (only its read succeeding counts),
//!   which fails once the original process is reaped. sysinfo's own
//!   `start_time()` check has 1 s resolution, so it is not relied on.
//!
//! Cost (release, 2 cores, 50 `sleep` apps at 1 s): about 70 µs a tick,
//! plus some 2 ms for the memory sweep every [`STATM_EVERY`], so about
//! 4 ms of CPU per 30 s; each app that runs adds a sysinfo read (30 to
//! 100 µs) to every tick it ran in.
//!
//! Talks to: the supervisor, which supplies the current [`Target`]s
//! through a callback (called once per tick from the sampling task, so it
//! must not block: take the table lock, copy, release). Readers of the
//! results get them on a `tokio::sync::watch` channel of
//! `Arc<`[`Snapshot`]`>`: the API's metrics stream, `describe`/`list`,
//! and the supervisor's `max_memory_restart` check. Each reader keeps a
//! [`SnapshotReceiver`]. The sampling task holds the only sender. It drops
//! the sender when the targets callback says its owner is gone, so every
//! receiver's `changed()` then fails and the readers end.

mod procfs;
mod sampler;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

pub use sampler::Sampler;
#[cfg(test)]
pub use sampler::THREAD_SWEEP_EVERY;

/// The default `--monitor-interval` (what the tests assume).
#[cfg(test)]
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest interval accepted. The CPU clocks have nanosecond
/// resolution, so this floor is about cost, not accuracy: sampling far
/// more often would spend the daemon's CPU on watching.
pub const MIN_INTERVAL: Duration = Duration::from_millis(pmdaemon_proto::MIN_SAMPLE_INTERVAL_MS);

/// One instance's sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// CPU use since the previous sample, in percent of one core. `None`
    /// on an instance's first sample: a rate needs two readings. Processes
    /// that appeared or exited during the interval count only for the part
    /// that was seen.
    pub cpu_percent: Option<f64>,
    /// Resident set size, summed over the instance's processes. Pages
    /// shared between them (forked workers) count once per process, as in
    /// `ps` and PM2.
    pub memory_bytes: u64,
    /// How many processes were summed (the leader included).
    pub processes: u32,
    /// When the sample was taken, in ms since the Unix epoch.
    pub at_ms: i64,
}

/// Which processes make up an instance: `pid` is its leader, which
/// started the instance's process group. The sampler adds the leader's
/// descendants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The instance id, the key of [`Snapshot::samples`].
    pub id: u32,
    /// The leader's pid (= the process group id).
    pub pid: u32,
}

/// All samples of one tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// When the tick ran, in ms since the Unix epoch. It is 0 for the
    /// initial, empty snapshot that no tick produced.
    pub at_ms: i64,
    /// By instance id. Instances without a live process are absent.
    pub samples: HashMap<u32, Sample>,
}

/// The receiving end that metrics readers keep and clone.
pub type SnapshotReceiver = watch::Receiver<Arc<Snapshot>>;

/// The channel between [`spawn_sampler`] and its readers, starting with an
/// empty snapshot.
pub fn channel() -> (watch::Sender<Arc<Snapshot>>, SnapshotReceiver) {
    watch::channel(Arc::new(Snapshot::default()))
}

/// Starts the daemon-wide sampling task. Every `interval` (at least
/// [`MIN_INTERVAL`]), it asks `targets` for the live instances, samples
/// them and publishes a [`Snapshot`] on `tx`. The first tick runs at
/// once, and its samples have no CPU figure yet. While there are no
/// targets it does no sampling and publishes only the first empty
/// snapshot after the last instance went away. Sampling runs inline on
/// the runtime. It costs under 1 µs per process that did not run and 30 to
/// 100 µs per process that ran, and every [`STATM_EVERY`] one tick reads
/// all followed processes (about 2 ms for 50).
///
/// `targets` may return a `Vec<Target>` or an `Option<Vec<Target>>`.
/// `None` means its owner is gone (a `Weak` that no longer upgrades): the
/// task then ends and drops `tx`, and every receiver's `changed()` fails,
/// which ends the readers (the memory guard, metrics streams). It keeps
/// running while there are no receivers: a reader may subscribe later.
pub fn spawn_sampler<F, T>(
    interval: Duration,
    mut targets: F,
    tx: watch::Sender<Arc<Snapshot>>,
) -> JoinHandle<()>
where
    F: FnMut() -> T + Send + 'static,
    T: Into<Option<Vec<Target>>>,
{
    let interval = interval.max(MIN_INTERVAL);
    tokio::spawn(async move {
        let mut sampler = Sampler::new();
        let mut ticker = tokio::time::interval(interval);
        // After a stall (suspend, a starved runtime), sample once and carry
        // on from there rather than firing a burst of catch-up ticks.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tracing::debug!(
            interval_ms = interval.as_millis() as u64,
            "metrics sampler started"
        );
        // Whether the last published snapshot had samples. This lets an
        // idle daemon skip the work and the publish entirely.
        let mut published_any = false;
        loop {
            ticker.tick().await;
            let Some(current) = targets().into() else {
                break;
            };
            if current.is_empty() && !published_any && sampler.followed_processes() == 0 {
                continue;
            }
            let snapshot = sampler.sample(&current);
            published_any = !snapshot.samples.is_empty();
            tx.send_replace(Arc::new(snapshot));
        }
        tracing::debug!("metrics sampler stopped");
    })
}
