//! The process table: which apps exist, their instances, and the commands
//! that change them (create, start, stop, restart, delete, restore at boot,
//! shutdown). The only place that forks or signals (through `instance` and
//! `process`).
//!
//! Concurrency: the table is a `std::sync::Mutex<Table>` that is never held
//! across an await. Each instance has a task (`instance::run`) that owns its
//! child and writes its `Shared` record (the table only sets what the next
//! run uses: `spec`, `port_override`); the table keeps the task's command
//! sender. Lock order: table, then an instance's `Shared`.
//! Every change requests a write of `state.json` from the store's
//! [`Persister`]; the writer task here coalesces them.

mod apply;
mod delete;
mod dependencies;
pub mod events;
pub mod instance;
mod lifecycle;
mod memory;
mod persistence;
mod port_checks;
pub mod process;
mod reload;
mod scale;
pub mod spec;
mod table;
mod watching;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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
    /// State changes, for WatchEvents.
    events: Arc<events::EventBus>,
    /// Latest CPU/memory samples, published by the sampler task.
    metrics: tokio::sync::watch::Receiver<Arc<crate::metrics::Snapshot>>,
    monitor_interval: std::time::Duration,
    /// Held by operations that add or remove instances or walk an app's
    /// instances one by one (scale, delete, apply, resurrect, reload), so
    /// that two of them never interleave: see [`Supervisor::reshape`].
    reshape: Arc<tokio::sync::Mutex<()>>,
}

/// Handle to the process table. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl Supervisor {
    /// An empty table using `home` for state and `logs` for output. Spawns
    /// the state writer and the CPU/memory sampler (needs a runtime);
    /// `monitor_interval` is the sampling period.
    pub fn new(home: PathBuf, logs: LogHub, monitor_interval: std::time::Duration) -> Self {
        let (metrics_tx, metrics_rx) =
            tokio::sync::watch::channel(Arc::new(crate::metrics::Snapshot::default()));
        let inner = Arc::new(Inner {
            home,
            table: Mutex::new(Table::default()),
            logs,
            persister: Arc::new(Persister::default()),
            boot_id: process::boot_id(),
            path_var: std::env::var_os("PATH"),
            shutting_down: AtomicBool::new(false),
            reshape: Arc::default(),
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

    /// State changes from now on.
    /// Waits until the table as it is now is on disk (no batching window):
    /// the API calls it after each change before it answers, so a daemon
    /// killed right after answering neither forgets an app it started
    /// (whose process would then run untracked) nor revives one it stopped.
    pub async fn durable(&self) {
        self.inner.persister.flush().await;
    }

    /// Waits for, then holds, the right to change the instances of apps
    /// (scale, delete, apply, resurrect, reload): two `pmd scale` at once
    /// would otherwise each decide from a table the other is changing.
    /// Taken by the API for the whole call; internal calls do not take it.
    pub async fn reshape(&self) -> tokio::sync::OwnedMutexGuard<()> {
        Arc::clone(&self.inner.reshape).lock_owned().await
    }

    pub fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<Arc<events::Event>> {
        self.inner.events.subscribe()
    }

    /// The latest samples, changing once per monitor interval.
    pub fn metrics(&self) -> tokio::sync::watch::Receiver<Arc<crate::metrics::Snapshot>> {
        self.inner.metrics.clone()
    }

    pub fn monitor_interval(&self) -> std::time::Duration {
        self.inner.monitor_interval
    }

    pub fn logs(&self) -> &LogHub {
        &self.inner.logs
    }

    pub fn home(&self) -> &std::path::Path {
        &self.inner.home
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_running(&self) -> Result<()> {
        if self.inner.shutting_down.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        Ok(())
    }
}

pub use apply::{Applied, ApplyMode, ApplyOptions, ApplyOutcome, DEFAULT_DEPENDENCY_TIMEOUT};
pub use instance::State as InstanceState;
use memory::{memory_guard, sample_targets};
use persistence::persist_loop;
pub use reload::DEFAULT_READY_TIMEOUT;
use table::Table;
pub use table::{InstanceView, SinkRef};
