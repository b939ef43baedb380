//! The core: the process table, each instance's lifecycle, and the public
//! operations every transport calls (create, start, stop, restart,
//! restart with ports, delete, scale, apply, reload, resurrect, save,
//! views). The only place that forks or signals (through `instance` and
//! `process`). Transports (`api/`, later TCP and HTTP) only convert and
//! authorize; the rules that make a call safe live here:
//! - every public operation answers only once the table as it left it is
//!   on disk ([`Supervisor::durably`]); when that write fails (a full
//!   disk), the call fails and the table goes back to the last state on
//!   disk, which is what a daemon restart would make of it: what the call
//!   created is stopped and removed, what it deleted is back, what it
//!   started or stopped is stopped or started again (`rollback.rs`), under
//!   the turn;
//! - operations that add, remove or replace instances, or walk an app's
//!   instances one by one (create, delete, scale, apply, reload,
//!   resurrect, `restart --port`, the watcher's restarts, a balanced
//!   app's cron_restart, restore at daemon start),
//!   run one at a time ([`Supervisor::serialized`]).
//!
//! Concurrency: the table is a `std::sync::Mutex<Table>` that is never held
//! across an await. Each instance has a task (`instance::run`) that owns its
//! child and is the only writer of its `Shared` record; the table keeps the
//! task's command sender and is the only writer of the instance's `Plan`
//! (what the next run uses: definition, launch, port, `--port` override),
//! which it changes only while it holds the table lock, so a port decision
//! and the claims it was checked against are one step. Anything else the
//! table decides about an instance is a command to its task. Lock order:
//! the turn, then the table, then an instance's `Plan`, then its
//! `Shared`. Every change requests a write of
//! `state.json` from the store's [`Persister`]; the writer task in
//! `persistence.rs` coalesces them.
//!
//! Files: `table` (apps, instances, selection, views), `lifecycle`
//! (create, instance tasks, start/stop/restart commands, shutdown),
//! `delete`, `scale`, `apply`, `reload`, `dependencies` (order, cycles,
//! conditions), `port_checks`, `watching`, `cron` (cron_restart's timers
//! and what a firing restarts), `persistence` (snapshot,
//! writer, save, resurrect, loading the state, restore), `rollback`
//! (undoing a change whose state could not be written), `memory` (the
//! memory guard),
//! `instance` (the per-instance task, which decides readiness),
//! `wait_ready` (waiting for readiness, the failure report), `process`
//! (the OS boundary; finding an app's processes by their marker), `cgroup`
//! (each run's cgroup v2, where the daemon can make them), `spec`
//! (an app's definition), `events` (the event bus, change wake-ups),
//! `verbs` (PM2's reset, sendSignal and env; the captured environment that
//! `--update-env` replaces).

mod apply;
pub mod cgroup;
mod clone;
mod cron;
mod delete;
mod dependencies;
pub mod events;
pub mod instance;
mod ipc;
mod lifecycle;
mod memory;
mod persistence;
mod port_checks;
pub mod process;
mod reload;
mod rollback;
mod scale;
pub mod spec;
mod table;
mod verbs;
pub mod wait_ready;
mod watching;

use crate::sync::LockExt;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pmdaemon_proto::Target;

use crate::error::{Error, Result};
use crate::logs::LogHub;
use crate::store::Persister;

struct Inner {
    home: PathBuf,
    table: Mutex<Table>,
    logs: LogHub,
    /// Shared with the writer task (`persist_loop`).
    persister: Arc<Persister>,
    boot_id: String,
    /// PATH for resolving bare command names: the daemon's own.
    path_var: Option<OsString>,
    shutting_down: AtomicBool,
    /// Finds this home's marked processes (`process::marked`) for every
    /// instance task, one scan for the callers that ask at once.
    scans: Arc<process::MarkedScans>,
    /// This home's cgroup directory, when each run gets its own cgroup
    /// (decided once at daemon start); None: process group and marker.
    cgroups: Option<Arc<cgroup::Tree>>,
    /// State changes, for WatchEvents.
    events: Arc<events::EventBus>,
    /// Balanced apps' public ports and pools.
    balancer: Arc<crate::balancer::Balancer>,
    /// Latest CPU/memory samples, published by the sampler task.
    metrics: crate::metrics::SnapshotReceiver,
    monitor_interval: std::time::Duration,
    /// Whose turn it is to reshape the table: held for the whole of each
    /// serialized operation (see [`Supervisor::serialized`]). Never taken
    /// while the table lock is held.
    turn: tokio::sync::Mutex<()>,
}

/// Handle to the process table. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl Supervisor {
    /// An empty table using `home` for state and `logs` for output. Spawns
    /// the state writer and the CPU/memory sampler (needs a runtime);
    /// `monitor_interval` is the sampling period; `cgroups`, where each
    /// run gets its own cgroup (None: process group and marker only).
    pub fn new(
        home: PathBuf,
        logs: LogHub,
        monitor_interval: std::time::Duration,
        cgroups: Option<Arc<cgroup::Tree>>,
    ) -> Self {
        let (metrics_tx, metrics_rx) = crate::metrics::channel();
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| Inner {
            balancer: Arc::new(crate::balancer::Balancer::new({
                let weak = weak.clone();
                Arc::new(move |app: &str, notice| {
                    if let Some(inner) = weak.upgrade() {
                        Supervisor { inner }.balancer_event(app, notice);
                    }
                })
            })),
            scans: Arc::new(process::MarkedScans::new(home.clone())),
            cgroups,
            home,
            table: Mutex::new(Table::default()),
            logs,
            persister: Arc::new(Persister::default()),
            boot_id: process::boot_id(),
            path_var: std::env::var_os("PATH"),
            shutting_down: AtomicBool::new(false),
            turn: tokio::sync::Mutex::new(()),
            events: Arc::new(events::EventBus::default()),
            metrics: metrics_rx,
            monitor_interval,
        });
        tokio::spawn(persist_loop(
            inner.persister.clone(),
            Arc::downgrade(&inner),
        ));
        let weak = Arc::downgrade(&inner);
        crate::metrics::spawn_sampler(
            monitor_interval,
            move || {
                weak.upgrade()
                    .map(|inner| sample_targets(&inner))
                    .unwrap_or_default()
            },
            metrics_tx,
        );
        tokio::spawn(memory_guard(Arc::downgrade(&inner), inner.metrics.clone()));
        Supervisor { inner }
    }

    /// Runs `op` as one transaction of the table: it waits for its turn
    /// (the operations that add, remove or replace instances, or walk an
    /// app's instances one by one, never interleave: two `pmd scale` at
    /// once would otherwise each decide from a table the other is changing)
    /// and, once it is done, waits until the table as it is then is on disk
    /// ([`Self::durably`]).
    async fn serialized<T>(&self, op: impl Future<Output = Result<T>>) -> Result<T> {
        let turn = self.inner.turn.lock().await;
        self.answer(op, Some(turn)).await
    }

    /// Runs `op`, then waits until the table as it is then is on disk (no
    /// batching window), whatever `op` returned: a daemon killed right
    /// after an answer neither forgets an app it started (whose process
    /// would then run untracked) nor revives one it stopped. When that
    /// write fails, `op`'s change is undone and the call fails (see
    /// [`Self::answer`]).
    async fn durably<T>(&self, op: impl Future<Output = Result<T>>) -> Result<T> {
        self.answer(op, None).await
    }

    /// The end of every public operation: `op`, then its state on disk.
    /// When the write that covers it fails, the table goes back to the
    /// last state on disk (`rollback.rs`) under the turn (`turn`, when the
    /// caller holds it already; else taken here, after `op`, so a start or
    /// stop never waits for a long apply unless its own write failed), and
    /// the call fails with [`Error::StateNotWritten`], or with `op`'s own
    /// error when it had one.
    async fn answer<T>(
        &self,
        op: impl Future<Output = Result<T>>,
        turn: Option<tokio::sync::MutexGuard<'_, ()>>,
    ) -> Result<T> {
        let result = op.await;
        let Err(failure) = self.inner.persister.flush().await else {
            return result;
        };
        let _turn = match turn {
            Some(held) => held,
            None => self.inner.turn.lock().await,
        };
        let kept = self.roll_back_to_disk().await;
        result.and(Err(Error::StateNotWritten {
            path: failure.path,
            source: failure.error,
            kept,
        }))
    }

    // The public operations. Every caller (the gRPC service, the daemon's
    // own watchers and timers, any future transport) gets the same
    // guarantees from here: each answers only once its change is on disk;
    // those that reshape the table are serialized. start, stop and restart
    // are not serialized: they only send commands to existing instances,
    // whose tasks take them one at a time, and a `pmd stop` must be able to
    // interrupt a long apply or reload.

    /// Resolves and validates `spec` (bare names on `path_var`, else the
    /// daemon's PATH), waits for its dependencies (at most
    /// `dependency_timeout`), adds the app and starts it. Nothing is
    /// created when anything is wrong, including when the first spawn
    /// fails.
    pub async fn create(
        &self,
        spec: spec::AppSpec,
        path_var: Option<&std::ffi::OsStr>,
        dependency_timeout: Duration,
    ) -> Result<Vec<InstanceView>> {
        // Serialized: it places ports before it waits for the dependencies
        // and adds the app after, and nothing may place the same ports in
        // between.
        self.serialized(self.create_app(spec, path_var, dependency_timeout))
            .await
    }

    /// Starts the target's instances that are not running, dependencies
    /// first, each level once the dependencies of its apps meet their
    /// conditions (at most `dependency_timeout` in all).
    pub async fn start(
        &self,
        target: &Target,
        dependency_timeout: Duration,
    ) -> Result<Vec<InstanceView>> {
        self.durably(self.start_targets(target, dependency_timeout))
            .await
    }

    /// Stops the target's instances and waits until their groups are gone;
    /// `all` stops dependents before the apps they depend on.
    pub async fn stop(&self, target: &Target) -> Result<Vec<InstanceView>> {
        self.durably(self.stop_targets(target)).await
    }

    /// Restarts the target's instances, dependencies first (at most
    /// `dependency_timeout` for their conditions); the next runs bind the
    /// apps' own ports, checked first.
    pub async fn restart(
        &self,
        target: &Target,
        dependency_timeout: Duration,
    ) -> Result<Vec<InstanceView>> {
        self.durably(self.restart_targets(target, dependency_timeout))
            .await
    }

    /// `restart --update-env`: `caller_env` is merged over the target's
    /// apps' captured environment, then they restart as [`Self::restart`]
    /// does.
    pub async fn restart_with_env(
        &self,
        target: &Target,
        caller_env: &std::collections::BTreeMap<String, String>,
        dependency_timeout: Duration,
    ) -> Result<Vec<InstanceView>> {
        self.durably(async {
            self.update_caller_env(target, caller_env)?;
            self.restart_targets(target, dependency_timeout).await
        })
        .await
    }

    /// Sets the restart counters of the target's instances back to 0
    /// (PM2's `reset`); nothing is stopped or started.
    pub async fn reset(&self, target: &Target) -> Result<Vec<InstanceView>> {
        self.durably(self.reset_counters(target)).await
    }

    /// `restart --port`: the selected instances (of one app) get ports from
    /// `port` for this run only, then restart.
    pub async fn restart_with_port(
        &self,
        target: &Target,
        port: crate::ports::PortSpec,
    ) -> Result<Vec<InstanceView>> {
        self.serialized(self.override_ports_and_restart(target, port))
            .await
    }

    /// Stops and removes the target's instances (only those in
    /// `only_state` when given) with their log files; returns them and, for
    /// a bulk delete by status, the instances kept with why (see
    /// `delete.rs`).
    pub async fn delete(
        &self,
        target: &Target,
        only_state: Option<instance::State>,
    ) -> Result<(Vec<InstanceView>, Vec<String>)> {
        self.serialized(self.delete_instances(target, only_state))
            .await
    }

    /// Grows or shrinks app `name` to `count` instances; returns its
    /// instances and the change in count.
    pub async fn scale(&self, name: &str, count: u32) -> Result<(Vec<InstanceView>, i64)> {
        self.serialized(self.resize(name, count)).await
    }

    /// Makes a set of definitions run as defined (ApplyApps, see
    /// `apply.rs`); each app gets its own outcome.
    pub async fn apply(
        &self,
        specs: Vec<spec::AppSpec>,
        mode: ApplyMode,
        options: ApplyOptions,
    ) -> Result<Vec<(String, Result<Applied>)>> {
        self.serialized(self.apply_set(specs, mode, options)).await
    }

    /// Rolling restart of the target's instances, each ready before the
    /// next goes; `progress` receives each replaced instance with the count
    /// done and the total.
    /// With `caller_env` (`reload --update-env`), it is merged over the
    /// target's apps' captured environment first.
    pub async fn reload(
        &self,
        target: &Target,
        ready_timeout: Duration,
        caller_env: Option<&std::collections::BTreeMap<String, String>>,
        progress: impl Fn(&InstanceView, usize, usize),
    ) -> Result<Vec<InstanceView>> {
        self.serialized(async {
            if let Some(env) = caller_env {
                self.update_caller_env(target, env)?;
            }
            self.roll(target, ready_timeout, progress).await
        })
        .await
    }

    /// Creates and starts every app of `dump.json` whose name is not taken;
    /// returns the started instances, the names already known, and `NAME:
    /// reason` for the apps that could not be created.
    pub async fn resurrect(
        &self,
        path_var: Option<&std::ffi::OsStr>,
    ) -> Result<(Vec<InstanceView>, Vec<String>, Vec<String>)> {
        self.serialized(self.resurrect_dump(path_var)).await
    }

    pub fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<Arc<events::Event>> {
        self.inner.events.subscribe()
    }

    pub fn monitor_interval(&self) -> std::time::Duration {
        self.inner.monitor_interval
    }

    /// Every instance, read while no reshape (apply, scale, delete, reload)
    /// is under way: between two of its steps, an app being replaced may
    /// have no instance at all. For `pmdaemond run`'s end rule.
    pub async fn settled_views(&self) -> Vec<InstanceView> {
        let _turn = self.inner.turn.lock().await;
        self.views(&Target::All).unwrap_or_default()
    }

    pub fn logs(&self) -> &LogHub {
        &self.inner.logs
    }

    pub fn home(&self) -> &std::path::Path {
        &self.inner.home
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.table.locked()
    }

    fn check_running(&self) -> Result<()> {
        if self.inner.shutting_down.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        Ok(())
    }
}

pub use apply::{Applied, ApplyMode, ApplyOptions, ApplyOutcome, DEFAULT_DEPENDENCY_TIMEOUT};
use memory::{memory_guard, sample_targets};
pub use persistence::load_state;
use persistence::persist_loop;
pub use reload::DEFAULT_READY_TIMEOUT;
pub use table::InstanceView;
use table::Table;
