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

mod cluster;
pub mod events;
pub mod instance;
pub mod process;
pub mod spec;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use pmdaemon_proto::Target;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::logs::{LogHub, LogSink, Stream};
use crate::ports::Claim;
use crate::store::{self, AppRecord, InstanceRecord, Persister, StateFile};
use instance::{Cmd, ExitInfo, Shared, State};
use spec::{AppSpec, Launch};

/// One log stream of one instance: (id, app name, stream, sink).
pub type SinkRef = (u32, Arc<str>, Stream, Arc<LogSink>);

/// A read-only copy of one instance for the API.
#[derive(Debug, Clone)]
pub struct InstanceView {
    pub id: u32,
    pub index: u32,
    pub name: String,
    pub shared: Shared,
    pub created_at_ms: i64,
    pub out_log: PathBuf,
    pub err_log: PathBuf,
    /// Latest CPU/memory sample while running.
    pub sample: Option<crate::metrics::Sample>,
}

/// An instance as the table holds it.
struct Instance {
    id: u32,
    index: u32,
    shared: Arc<Mutex<Shared>>,
    /// To the instance task; closing it (drop) stops the task.
    cmd: mpsc::UnboundedSender<Cmd>,
    out: Arc<LogSink>,
    err: Arc<LogSink>,
}

struct App {
    name: String,
    created_at_ms: i64,
    /// In index order.
    instances: Vec<Instance>,
    /// Restarts the app on file changes while `watch` is on; dropping it
    /// stops the watcher.
    watcher: Option<crate::watch::WatchHandle>,
}

impl App {
    fn spec(&self) -> Option<Arc<AppSpec>> {
        let first = self.instances.first()?;
        Some(
            first
                .shared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .spec
                .clone(),
        )
    }

    /// Each instance's own assigned port, in index order (no overrides):
    /// what `ports::assign` keeps position by position.
    fn assigned_ports(&self) -> Vec<u16> {
        self.instances
            .iter()
            .filter_map(|i| i.shared.lock().unwrap_or_else(|p| p.into_inner()).port)
            .collect()
    }

    /// This app's `--port` overrides as a claim, so that its new ports keep
    /// clear of them. None without overrides.
    fn override_claim(&self) -> Option<crate::ports::Claim> {
        let overrides: Vec<u16> = self
            .instances
            .iter()
            .filter_map(|i| {
                i.shared
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .port_override
            })
            .collect();
        (!overrides.is_empty()).then(|| crate::ports::Claim {
            app: format!("{} (a --port override of this run)", self.name),
            spec: None,
            assigned: overrides,
        })
    }

    /// The ports this app holds: assigned and overridden, in index order.
    fn ports(&self) -> Vec<u16> {
        let mut ports = Vec::new();
        for i in &self.instances {
            let s = i.shared.lock().unwrap_or_else(|p| p.into_inner());
            ports.extend(s.port);
            ports.extend(s.port_override);
        }
        ports
    }
}

#[derive(Default)]
struct Table {
    next_id: u32,
    /// In creation order, which is also id order.
    apps: Vec<App>,
}

impl Table {
    fn app(&self, name: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.name == name)
    }

    fn app_mut(&mut self, name: &str) -> Option<&mut App> {
        self.apps.iter_mut().find(|a| a.name == name)
    }

    /// What every app not named in `except` holds of the port space.
    fn claims_except(&self, except: &[&str]) -> Vec<Claim> {
        self.apps
            .iter()
            .filter(|a| !except.contains(&a.name.as_str()))
            .map(|a| Claim {
                app: a.name.clone(),
                spec: a.spec().and_then(|s| s.port),
                assigned: a.ports(),
            })
            .collect()
    }

    /// The log files of every instance of the apps not in `except`, with
    /// who writes them (`app api (id 3)`).
    fn log_paths_except(&self, except: &[&str]) -> Vec<(PathBuf, String)> {
        self.apps
            .iter()
            .filter(|a| !except.contains(&a.name.as_str()))
            .flat_map(|a| {
                a.instances.iter().flat_map(move |i| {
                    let who = format!("app {} (id {})", a.name, i.id);
                    [
                        (i.out.path().to_path_buf(), who.clone()),
                        (i.err.path().to_path_buf(), who),
                    ]
                })
            })
            .collect()
    }

    /// The instances a target selects, as (app index, instance index).
    fn select(&self, target: &Target) -> Result<Vec<(usize, usize)>> {
        let all = self
            .apps
            .iter()
            .enumerate()
            .flat_map(|(a, app)| (0..app.instances.len()).map(move |i| (a, i)));
        let picked: Vec<_> = match target {
            Target::All => all.collect(),
            Target::Id(id) => all
                .filter(|&(a, i)| self.apps[a].instances[i].id == *id)
                .collect(),
            Target::Name(name) => all.filter(|&(a, _)| self.apps[a].name == *name).collect(),
        };
        if picked.is_empty() && !matches!(target, Target::All) {
            return Err(Error::NotFound {
                target: target.to_string(),
            });
        }
        Ok(picked)
    }
}

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

/// A recorded instance of a previous daemon life that may have left
/// processes behind (see `Supervisor::restore`).
struct Leftover {
    pgid: u32,
    /// None: the recorded leader still runs, its group is drained. Some:
    /// the leader is gone; what it left is found by `process::drain_orphans`
    /// among processes started since these ticks.
    since_ticks: Option<u64>,
    signal: nix::sys::signal::Signal,
    grace: std::time::Duration,
}

/// Handle to the process table. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

/// What to do with a selected instance.
#[derive(Debug, Clone, Copy)]
enum Action {
    Start,
    Stop,
    /// `keep_override`: the caller just set `restart --port` overrides;
    /// otherwise a restart returns to the app's own ports.
    Restart {
        keep_override: bool,
    },
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

    /// Resolves and validates `spec` (bare names on `path_var`, else the
    /// daemon's PATH), adds the app and starts it. Nothing is created when
    /// anything is wrong, including when the first spawn fails.
    pub async fn create(
        &self,
        spec: AppSpec,
        path_var: Option<&std::ffi::OsStr>,
        dependency_timeout: std::time::Duration,
    ) -> Result<Vec<InstanceView>> {
        self.check_running()?;
        spec.validate()?;
        let launch = spec::resolve(&spec, path_var.or(self.inner.path_var.as_deref()))?;
        cluster::validate_watch(&spec)?;
        let ports = {
            let table = self.table();
            if let Some(app) = table.app(&spec.name) {
                return Err(Error::AlreadyExists {
                    name: spec.name.clone(),
                    id: app.instances.first().map(|i| i.id).unwrap_or(0),
                });
            }
            check_log_paths(&spec, &self.inner.home, &table.log_paths_except(&[]))?;
            for dep in &spec.depends_on {
                if table.app(&dep.app).is_none() {
                    return Err(Error::InvalidArgument(format!(
                        "app {:?} depends on {:?}, which is not a known app",
                        spec.name, dep.app
                    )));
                }
            }
            cluster::assign_ports(&spec, &table.claims_except(&[spec.name.as_str()]), &[])?
        };
        // As for a file: its dependencies first meet their conditions.
        let deadline = tokio::time::Instant::now() + dependency_timeout;
        for dep in &spec.depends_on {
            self.wait_condition(&spec.name, dep, deadline).await?;
        }
        self.create_resolved(spec, launch, ports).await
    }

    /// Adds an already validated app with its ports and starts every
    /// instance; on a failed first spawn the whole app is removed again.
    async fn create_resolved(
        &self,
        spec: AppSpec,
        launch: Launch,
        ports: Vec<u16>,
    ) -> Result<Vec<InstanceView>> {
        let name = spec.name.clone();
        let spec = Arc::new(spec);
        let launch = Arc::new(launch);
        let ids: Vec<u32> = {
            let mut table = self.table();
            if let Some(app) = table.app(&name) {
                return Err(Error::AlreadyExists {
                    name: name.clone(),
                    id: app.instances.first().map(|i| i.id).unwrap_or(0),
                });
            }
            let first_id = table.next_id;
            let mut instances = Vec::new();
            for index in 0..spec.instances {
                let port = ports.get(index as usize).copied();
                instances.push(self.new_instance(
                    first_id + index,
                    index,
                    spec.clone(),
                    launch.clone(),
                    None,
                    port,
                )?);
            }
            table.next_id += spec.instances;
            let watcher = self.start_watcher(&spec);
            table.apps.push(App {
                name: name.clone(),
                created_at_ms: instance::now_ms(),
                instances,
                watcher,
            });
            (first_id..first_id + spec.instances).collect()
        };
        tracing::info!(app = %name, ids = ?ids, "created");
        let results = self.act(&Target::Name(name.clone()), Action::Start).await?;
        if let Err(e) = first_error(results) {
            // Nothing is created when the app cannot even be spawned.
            let views = self.views(&Target::Name(name.clone())).unwrap_or_default();
            self.remove(&ids).await;
            remove_logs(self.inner.logs.dir(), &views);
            return Err(e);
        }
        self.views(&Target::Name(name))
    }

    /// Builds an instance record, its log sinks and its task.
    fn new_instance(
        &self,
        id: u32,
        index: u32,
        spec: Arc<AppSpec>,
        launch: Arc<Launch>,
        record: Option<&InstanceRecord>,
        port: Option<u16>,
    ) -> Result<Instance> {
        let logs = &self.inner.logs;
        let cfg = spec.log_config();
        let open = |stream| {
            let custom = spec.custom_log_path(stream, index);
            let path = custom
                .clone()
                .unwrap_or_else(|| logs.path(&spec.name, id, stream));
            logs.open_sink(&spec.name, id, stream, custom, cfg)
                .map_err(|e| Error::io("cannot open log file", path, e))
        };
        let (out, err) = (open(Stream::Out)?, open(Stream::Err)?);
        let mut shared = Shared::new(spec.clone(), launch);
        shared.port = port;
        if let Some(r) = record {
            shared.desired_running = r.desired_running;
            shared.restarts = r.restarts;
            shared.unstable_restarts = r.unstable_restarts;
            shared.reason = r.reason.clone();
            // Instances that should run are shown as starting from the first
            // answer on: their spawn may wait for a crashed daemon's
            // leftovers to be terminated first.
            shared.state = match State::from_word(&r.state) {
                _ if r.desired_running => State::Starting,
                Some(State::Errored) => State::Errored,
                _ => State::Stopped,
            };
            if r.desired_running {
                shared.reason = "restoring after a daemon start".into();
            }
            shared.last_exit = r.last_exit_at_ms.map(|at_ms| ExitInfo {
                code: r.last_exit_code,
                signal: r.last_exit_signal.clone(),
                at_ms,
            });
        }
        let shared = Arc::new(Mutex::new(shared));
        let (tx, rx) = mpsc::unbounded_channel();
        let weak = Arc::downgrade(&self.inner);
        let ctx = instance::Ctx {
            id,
            index,
            name: Arc::from(spec.name.as_str()),
            home: self.inner.home.to_str().map(Arc::from),
            shared: shared.clone(),
            out: out.clone(),
            err: err.clone(),
            changed: Arc::new(move || {
                if let Some(inner) = weak.upgrade() {
                    inner.persister.request();
                }
            }),
            events: self.inner.events.clone(),
        };
        tokio::spawn(instance::run(ctx, rx));
        Ok(Instance {
            id,
            index,
            shared,
            cmd: tx,
            out,
            err,
        })
    }

    /// Sends `action` to every selected instance and waits for all of them
    /// (concurrently: stopping ten apps takes one kill timeout, not ten).
    async fn act(&self, target: &Target, action: Action) -> Result<Vec<Result<()>>> {
        self.act_on(|table| table.select(target), action).await
    }

    /// `act` on the instances `pick` selects from the table.
    async fn act_on(
        &self,
        pick: impl FnOnce(&Table) -> Result<Vec<(usize, usize)>>,
        action: Action,
    ) -> Result<Vec<Result<()>>> {
        self.check_running()?;
        let waits: Vec<_> = {
            let table = self.table();
            pick(&table)?
                .into_iter()
                .map(|(a, i)| {
                    let inst = &table.apps[a].instances[i];
                    let (tx, rx) = oneshot::channel::<Result<()>>();
                    if matches!(
                        action,
                        Action::Stop
                            | Action::Restart {
                                keep_override: false
                            }
                    ) {
                        inst.shared
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .port_override = None;
                    }
                    let cmd = match action {
                        Action::Start => Cmd::Start(tx),
                        Action::Restart { .. } => Cmd::Restart(tx),
                        Action::Stop => Cmd::Stop(tx),
                    };
                    let _ = inst.cmd.send(cmd);
                    rx
                })
                .collect()
        };
        let mut results = Vec::with_capacity(waits.len());
        for rx in waits {
            results.push(rx.await.unwrap_or(Err(Error::ShuttingDown)));
        }
        self.inner.persister.request();
        Ok(results)
    }

    /// Starts the target's instances that are not running.
    /// Starts the target's instances; an app with `depends_on` starts only
    /// once its dependencies meet their conditions (they are started
    /// first when selected too).
    /// Dependencies wait at most `dependency_timeout` in all.
    pub async fn start(
        &self,
        target: &Target,
        dependency_timeout: std::time::Duration,
    ) -> Result<Vec<InstanceView>> {
        let ids = self.ids_of(target)?;
        self.in_levels(&ids, Action::Start, dependency_timeout)
            .await?;
        self.views(target)
    }

    fn ids_of(&self, target: &Target) -> Result<Vec<u32>> {
        let table = self.table();
        let picked = table.select(target)?;
        Ok(picked
            .into_iter()
            .map(|(a, i)| table.apps[a].instances[i].id)
            .collect())
    }

    /// Starts (or restarts) these instances level by level along
    /// `depends_on` (dependencies first), each level once the dependencies
    /// of its apps meet their conditions, waiting at most
    /// `dependency_timeout` in all. Every level is tried; returns the first
    /// error.
    async fn in_levels(
        &self,
        ids: &[u32],
        action: Action,
        dependency_timeout: std::time::Duration,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + dependency_timeout;
        let keep_override = !matches!(
            action,
            Action::Restart {
                keep_override: false
            }
        );
        let mut first = Ok(());
        for level in self.stop_levels().into_iter().rev() {
            let level: Vec<u32> = level.into_iter().filter(|id| ids.contains(id)).collect();
            if level.is_empty() {
                continue;
            }
            let waits: Vec<(String, spec::Dependency)> = {
                let table = self.table();
                table
                    .apps
                    .iter()
                    .filter(|a| a.instances.iter().any(|i| level.contains(&i.id)))
                    .filter_map(|a| Some((a.name.clone(), a.spec()?)))
                    .flat_map(|(name, spec)| {
                        spec.depends_on
                            .iter()
                            .map(|d| (name.clone(), d.clone()))
                            .collect::<Vec<_>>()
                    })
                    .collect()
            };
            let mut blocked: Vec<String> = Vec::new();
            for (name, dep) in &waits {
                if blocked.contains(name) {
                    continue;
                }
                if let Err(e) = self.wait_condition(name, dep, deadline).await {
                    blocked.push(name.clone());
                    // Instances being brought back say why they are not.
                    let stuck: Vec<(u32, Error)> = self
                        .views(&Target::Name(name.clone()))
                        .unwrap_or_default()
                        .iter()
                        .filter(|v| level.contains(&v.id))
                        .map(|v| (v.id, Error::FailedPrecondition(e.to_string())))
                        .collect();
                    self.note_refused(&stuck);
                    if first.is_ok() {
                        first = Err(e);
                    }
                }
            }
            // An instance whose port is taken does not start; the others do.
            let refused = self.recheck_ports(&level, keep_override);
            self.note_refused(&refused);
            if let Some((_, e)) = refused.first()
                && first.is_ok()
            {
                first = Err(Error::FailedPrecondition(e.to_string()));
            }
            let pick = |table: &Table| {
                Ok(table
                    .select(&Target::All)?
                    .into_iter()
                    .filter(|&(a, i)| {
                        let id = table.apps[a].instances[i].id;
                        level.contains(&id)
                            && !blocked.contains(&table.apps[a].name)
                            && !refused.iter().any(|(r, _)| *r == id)
                    })
                    .collect())
            };
            let started = match self.act_on(pick, action).await {
                Ok(results) => first_error(results),
                Err(e) => Err(e),
            };
            if let Err(e) = started
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }

    /// Before instances start (or restart), checks that the port each
    /// will bind is still free on the host: a stopped instance holds its
    /// port only on paper, and a plain restart returns from a `--port`
    /// override to the app's own port. An `auto:` instance moves to the
    /// first free port of its range (free among the apps and on the host);
    /// a fixed port, a range or an override is refused, naming the process
    /// that holds it. Returns the refused instances with why; the others
    /// may start. `keep_override`: the next run keeps a `--port` override.
    fn recheck_ports(&self, ids: &[u32], keep_override: bool) -> Vec<(u32, Error)> {
        let table = self.table();
        let claims = table.claims_except(&[]);
        let mut taken: Vec<u16> = Vec::new();
        let mut moved = false;
        let mut refused = Vec::new();
        for app in &table.apps {
            let Some(spec) = app.spec() else { continue };
            let Some(port_spec) = spec.port else { continue };
            for inst in app.instances.iter().filter(|i| ids.contains(&i.id)) {
                let mut s = inst.shared.lock().unwrap_or_else(|e| e.into_inner());
                let next = if keep_override {
                    s.effective_port()
                } else {
                    s.port
                };
                let Some(port) = next else { continue };
                if s.pid.is_some() && s.effective_port() == next {
                    continue; // its own process holds the port
                }
                let Err(busy) = crate::ports::host_free(port) else {
                    continue;
                };
                let auto = matches!(port_spec, crate::ports::PortSpec::Auto { .. });
                let overridden = keep_override && s.port_override.is_some();
                let free = (auto && !overridden)
                    .then(|| {
                        port_spec.ports().find(|&p| {
                            !claims.iter().any(|c| c.holds(p))
                                && !taken.contains(&p)
                                && crate::ports::host_free(p).is_ok()
                        })
                    })
                    .flatten();
                match free {
                    Some(free) => {
                        tracing::info!(app = %app.name, id = inst.id, from = port, to = free, "port taken meanwhile; moved");
                        taken.push(free);
                        s.port = Some(free);
                        moved = true;
                    }
                    None => {
                        let why = if auto && !overridden {
                            format!("{busy}, and no other port of {port_spec} is free")
                        } else {
                            busy.to_string()
                        };
                        refused.push((
                            inst.id,
                            Error::FailedPrecondition(format!(
                                "{} (id {}) cannot start: {why}",
                                app.name, inst.id
                            )),
                        ));
                    }
                }
            }
        }
        drop(table);
        if moved {
            self.inner.persister.request();
        }
        refused
    }

    /// Records why instances could not start. One the daemon was bringing
    /// back (restore) is `errored` with the reason rather than `starting`
    /// for ever; a stopped one stays stopped, the caller is told.
    fn note_refused(&self, refused: &[(u32, Error)]) {
        let table = self.table();
        for (id, why) in refused {
            let Some(inst) = table
                .apps
                .iter()
                .flat_map(|a| &a.instances)
                .find(|i| i.id == *id)
            else {
                continue;
            };
            let mut s = inst.shared.lock().unwrap_or_else(|e| e.into_inner());
            if s.pid.is_none() && s.state == State::Starting {
                s.state = State::Errored;
                s.reason = why.to_string();
                let name: Arc<str> = Arc::from(s.spec.name.as_str());
                let snapshot = s.clone();
                drop(s);
                self.inner.events.emit(
                    *id,
                    &name,
                    events::EventKind::Errored,
                    &snapshot,
                    why.to_string(),
                );
            }
        }
        drop(table);
        self.inner.persister.request();
    }

    /// Stops the target's instances; waits until their groups are gone.
    /// `all` stops dependents before the apps they depend on.
    pub async fn stop(&self, target: &Target) -> Result<Vec<InstanceView>> {
        if *target == Target::All {
            for level in self.stop_levels() {
                let in_level = |table: &Table| {
                    let all = table.select(&Target::All)?;
                    Ok(all
                        .into_iter()
                        .filter(|&(a, i)| level.contains(&table.apps[a].instances[i].id))
                        .collect())
                };
                first_error(self.act_on(in_level, Action::Stop).await?)?;
            }
        } else {
            first_error(self.act(target, Action::Stop).await?)?;
        }
        self.views(target)
    }

    /// Instance ids grouped for stopping: apps that others depend on come
    /// after their dependents; apps of one group can stop concurrently.
    fn stop_levels(&self) -> Vec<Vec<u32>> {
        let table = self.table();
        let deps: Vec<(String, Vec<String>)> = table
            .apps
            .iter()
            .map(|a| {
                let deps = a
                    .spec()
                    .map(|s| s.depends_on.iter().map(|d| d.app.clone()).collect())
                    .unwrap_or_default();
                (a.name.clone(), deps)
            })
            .collect();
        // height = length of the longest chain of apps below it; a cycle
        // (possible only through hand-edited state) is cut by the depth cap.
        fn height(name: &str, deps: &[(String, Vec<String>)], depth: usize) -> usize {
            if depth > deps.len() {
                return 0;
            }
            deps.iter()
                .find(|(n, _)| n == name)
                .map(|(_, d)| {
                    d.iter()
                        .map(|dep| 1 + height(dep, deps, depth + 1))
                        .max()
                        .unwrap_or(0)
                })
                .unwrap_or(0)
        }
        let mut levels: std::collections::BTreeMap<std::cmp::Reverse<usize>, Vec<u32>> =
            Default::default();
        for app in &table.apps {
            let h = height(&app.name, &deps, 0);
            levels
                .entry(std::cmp::Reverse(h))
                .or_default()
                .extend(app.instances.iter().map(|i| i.id));
        }
        levels.into_values().collect()
    }

    /// Restarts the target's instances, dependencies first, each level
    /// once the dependencies of its apps meet their conditions (at most
    /// `dependency_timeout` in all); the next runs bind the apps' own ports,
    /// checked first.
    pub async fn restart(
        &self,
        target: &Target,
        dependency_timeout: std::time::Duration,
    ) -> Result<Vec<InstanceView>> {
        let ids = self.ids_of(target)?;
        let restart = Action::Restart {
            keep_override: false,
        };
        self.in_levels(&ids, restart, dependency_timeout).await?;
        self.views(target)
    }

    /// Stops and removes the target's instances (only those in `only_state`
    /// when given), with their log files.
    /// With `only_state` (a bulk delete by status), an instance whose
    /// deletion would leave a gap in its app's instance numbers is kept and
    /// returned with why, and the others go; otherwise such a delete is
    /// refused whole.
    pub async fn delete(
        &self,
        target: &Target,
        only_state: Option<State>,
    ) -> Result<(Vec<InstanceView>, Vec<String>)> {
        self.check_running()?;
        let mut views: Vec<InstanceView> = self
            .views(target)?
            .into_iter()
            .filter(|v| only_state.is_none_or(|s| v.shared.state == s))
            .collect();
        let mut kept = Vec::new();
        if only_state.is_some() {
            let mut ids: Vec<u32> = views.iter().map(|v| v.id).collect();
            while let Some((id, why)) = self.gap_maker(&ids) {
                ids.retain(|&i| i != id);
                kept.push(why);
            }
            views.retain(|v| ids.contains(&v.id));
        }
        let ids: Vec<u32> = views.iter().map(|v| v.id).collect();
        self.shrink_for_delete(&ids)?;
        self.remove(&ids).await;
        remove_logs(self.inner.logs.dir(), &views);
        self.announce_deleted(&views);
        let generation = self.inner.persister.request();
        self.inner.persister.flushed(generation).await;
        Ok((views, kept))
    }

    /// Logs and emits the deletion of these instances (delete, or scale
    /// removing the top ones): followers of their logs end on it.
    fn announce_deleted(&self, views: &[InstanceView]) {
        for v in views {
            tracing::info!(app = %v.name, id = v.id, "deleted");
            let name: Arc<str> = Arc::from(v.name.as_str());
            // The view was taken before the stop: announce the state after.
            let mut after = v.shared.clone();
            after.state = State::Stopped;
            after.pid = None;
            self.inner
                .events
                .emit(v.id, &name, events::EventKind::Deleted, &after, "deleted");
        }
    }

    /// Deleting some instances of an app (by id, or by status) must leave
    /// it with indices 0..n, because ports and `PMD_INSTANCE_ID` follow the
    /// index: only the highest ones may go, and the app's instance count
    /// drops with them (as `pmd scale` does). Anything else is refused
    /// before any change, saying what would work.
    fn shrink_for_delete(&self, ids: &[u32]) -> Result<()> {
        if let Some((_, why)) = self.gap_maker(ids) {
            return Err(Error::FailedPrecondition(why));
        }
        let table = self.table();
        let mut shrunk = Vec::new();
        for app in &table.apps {
            let (gone, kept): (Vec<&Instance>, Vec<&Instance>) =
                app.instances.iter().partition(|i| ids.contains(&i.id));
            if gone.is_empty() || kept.is_empty() {
                continue; // untouched, or deleted whole
            }
            if let Some(spec) = app.spec() {
                let mut spec = (*spec).clone();
                spec.instances = kept.len() as u32;
                shrunk.push((kept, Arc::new(spec)));
            }
        }
        for (kept, spec) in shrunk {
            for inst in kept {
                inst.shared.lock().unwrap_or_else(|e| e.into_inner()).spec = spec.clone();
            }
        }
        Ok(())
    }

    /// The first of `ids` whose deletion (with the others) would leave a
    /// gap in its app's instance numbers, with a message that says what
    /// would work instead.
    fn gap_maker(&self, ids: &[u32]) -> Option<(u32, String)> {
        let table = self.table();
        for app in &table.apps {
            let (gone, kept): (Vec<&Instance>, Vec<&Instance>) =
                app.instances.iter().partition(|i| ids.contains(&i.id));
            if gone.is_empty() || kept.is_empty() {
                continue;
            }
            let n = kept.len() as u32;
            if let Some(hole) = gone.iter().find(|i| i.index < n) {
                return Some((
                    hole.id,
                    format!(
                        "id {} is instance {} of {} ({} instances); deleting it would leave a \
                         gap in the instance numbers that ports and PMD_INSTANCE_ID follow. \
                         `pmd scale {} {n}` removes the highest instances; `pmd delete {}` \
                         deletes the app",
                        hole.id,
                        hole.index,
                        app.name,
                        app.instances.len(),
                        app.name,
                        app.name
                    ),
                ));
            }
        }
        None
    }

    /// Stops the instances with these ids, then drops them from the table.
    async fn remove(&self, ids: &[u32]) {
        self.exit_instances(|id| ids.contains(&id)).await;
        let mut table = self.table();
        for app in &mut table.apps {
            app.instances.retain(|i| !ids.contains(&i.id));
        }
        table.apps.retain(|a| !a.instances.is_empty());
        drop(table);
        self.inner.persister.request();
    }

    /// Ends the tasks of the instances whose id passes `pick`, stopping
    /// their processes (concurrently), and waits for all of them. The
    /// instances stay in the table.
    async fn exit_instances(&self, pick: impl Fn(u32) -> bool) {
        let waits: Vec<_> = {
            let table = self.table();
            table
                .apps
                .iter()
                .flat_map(|a| &a.instances)
                .filter(|i| pick(i.id))
                .map(|i| {
                    let (tx, rx) = oneshot::channel();
                    let _ = i.cmd.send(Cmd::Exit(tx));
                    rx
                })
                .collect()
        };
        for rx in waits {
            let _ = rx.await;
        }
    }

    /// Copies of the selected instances.
    pub fn views(&self, target: &Target) -> Result<Vec<InstanceView>> {
        let snapshot = self.inner.metrics.borrow().clone();
        let table = self.table();
        let picked = table.select(target)?;
        Ok(picked
            .into_iter()
            .map(|(a, i)| {
                let app = &table.apps[a];
                let inst = &app.instances[i];
                // Only a sample of the current run: right after a restart
                // the latest snapshot may still describe the previous one.
                let started_at_ms = {
                    let s = inst.shared.lock().unwrap_or_else(|p| p.into_inner());
                    s.pid.and(s.started_at_ms)
                };
                let sample = started_at_ms.and_then(|started| {
                    snapshot
                        .samples
                        .get(&inst.id)
                        .copied()
                        .filter(|m| m.at_ms >= started)
                });
                InstanceView {
                    sample,
                    id: inst.id,
                    index: inst.index,
                    name: app.name.clone(),
                    shared: inst
                        .shared
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone(),
                    created_at_ms: app.created_at_ms,
                    out_log: inst.out.path().to_path_buf(),
                    err_log: inst.err.path().to_path_buf(),
                }
            })
            .collect())
    }

    /// The log sinks of the selected instances: (id, name, stream, sink).
    pub fn sinks(&self, target: &Target) -> Result<Vec<SinkRef>> {
        let table = self.table();
        let picked = table.select(target)?;
        let mut out = Vec::new();
        for (a, i) in picked {
            let app = &table.apps[a];
            let inst = &app.instances[i];
            let name: Arc<str> = Arc::from(app.name.as_str());
            out.push((inst.id, name.clone(), Stream::Out, inst.out.clone()));
            out.push((inst.id, name, Stream::Err, inst.err.clone()));
        }
        Ok(out)
    }

    /// The table as persisted.
    fn snapshot(&self) -> StateFile {
        snapshot(&self.inner)
    }

    /// Writes `dump.json` (`pmd save`).
    pub async fn save_dump(&self) -> Result<(PathBuf, usize)> {
        let state = self.snapshot();
        let path = self.inner.home.join(store::DUMP_FILE);
        let count = state.apps.len();
        let p = path.clone();
        tokio::task::spawn_blocking(move || store::write_atomic(&p, &state))
            .await
            .map_err(|e| Error::io("cannot write", &path, std::io::Error::other(e)))?
            .map_err(|e| Error::io("cannot write", &path, e))?;
        Ok((path, count))
    }

    /// Creates and starts every app of `dump.json` whose name is not taken
    /// (bare names on `path_var`, else the daemon's PATH). Returns the
    /// started views, the names already known, and `NAME: reason` for the
    /// apps that could not be created.
    pub async fn resurrect(
        &self,
        path_var: Option<&std::ffi::OsStr>,
    ) -> Result<(Vec<InstanceView>, Vec<String>, Vec<String>)> {
        let path = self.inner.home.join(store::DUMP_FILE);
        let dump = store::load_dump(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::FailedPrecondition(format!(
                "no dump at {}: run `pmd save` first",
                path.display()
            )),
            _ => Error::io("cannot read dump", &path, e),
        })?;
        let mut started = Vec::new();
        let mut skipped = Vec::new();
        let mut failed = Vec::new();
        let mut fresh: Vec<AppSpec> = Vec::new();
        let resolve_path = path_var.or(self.inner.path_var.as_deref());
        for app in dump.apps {
            let name = app.spec.name.clone();
            if self.table().app(&name).is_some() {
                skipped.push(name);
                continue;
            }
            // One app that cannot be made again (its script is gone) must
            // not keep the others down: checked one by one first.
            match app
                .spec
                .validate()
                .and_then(|()| spec::resolve(&app.spec, resolve_path).map(drop))
            {
                Ok(()) => fresh.push(app.spec),
                Err(e) => failed.push(format!("{name}: {e}")),
            }
        }
        // Then together, as a file is applied: in depends_on order, each
        // app once its dependencies meet their conditions.
        loop {
            let names: Vec<String> = fresh.iter().map(|s| s.name.clone()).collect();
            let orphan = fresh.iter().position(|s| {
                s.depends_on
                    .iter()
                    .any(|d| !names.contains(&d.app) && self.table().app(&d.app).is_none())
            });
            let Some(i) = orphan else { break };
            let spec = fresh.remove(i);
            failed.push(format!(
                "{}: it depends on an app that is neither in the dump nor running",
                spec.name
            ));
        }
        if !fresh.is_empty() {
            let options = ApplyOptions {
                dependency: cluster::DEFAULT_DEPENDENCY_TIMEOUT,
                ready: cluster::DEFAULT_READY_TIMEOUT,
                path_var: path_var.map(Into::into),
            };
            for (name, result) in self.apply(fresh, ApplyMode::Start, options).await? {
                match result {
                    Ok(applied) => started.extend(applied.views),
                    Err(e) => failed.push(format!("{name}: {e}")),
                }
            }
        }
        Ok((started, skipped, failed))
    }

    /// Loads the persisted table at daemon start: terminates leftovers of a
    /// crashed daemon (same pid, start time and boot id), then starts the
    /// instances that should run. Returns once the table is filled; the
    /// leftover cleanup and starts continue in the background.
    pub fn restore(&self, state: StateFile) -> Result<()> {
        let mut leftovers = Vec::new();
        let mut to_start = Vec::new();
        {
            let mut table = self.table();
            table.next_id = state.next_id;
            for rec in state.apps {
                if let Err(e) = rec.spec.validate() {
                    tracing::error!(app = %rec.spec.name, error = %e, "skipping invalid app in state file");
                    continue;
                }
                let spec = Arc::new(rec.spec);
                let launch = Arc::new(rec.launch);
                let mut instances = Vec::new();
                for r in &rec.instances {
                    if let (Some(pid), Some(ticks), Some(boot)) = (r.pid, r.start_ticks, &r.boot_id)
                        && *boot == self.inner.boot_id
                    {
                        // The leader itself still runs: its whole group goes.
                        // Else only what it left, recognised by environment.
                        let leader =
                            process::is_same_process(pid, ticks, boot, &self.inner.boot_id);
                        leftovers.push(Leftover {
                            pgid: pid,
                            since_ticks: (!leader).then_some(ticks),
                            signal: spec.stop_signal(),
                            grace: spec.kill_timeout(),
                        });
                    }
                    if r.desired_running {
                        to_start.push(r.id);
                    }
                    table.next_id = table.next_id.max(r.id + 1);
                    instances.push(self.new_instance(
                        r.id,
                        r.index,
                        spec.clone(),
                        launch.clone(),
                        Some(r),
                        r.port,
                    )?);
                }
                if !instances.is_empty() {
                    table.apps.push(App {
                        name: spec.name.clone(),
                        created_at_ms: rec.created_at_ms,
                        instances,
                        watcher: self.start_watcher(&spec),
                    });
                }
            }
        }
        let sup = self.clone();
        tokio::spawn(async move {
            let leaders = leftovers.iter().filter(|l| l.since_ticks.is_none()).count();
            if leaders > 0 {
                tracing::warn!(
                    count = leaders,
                    "terminating processes left by a previous daemon"
                );
            }
            let kills: Vec<_> = leftovers
                .into_iter()
                .map(|l| {
                    let home = sup.inner.home.clone();
                    tokio::spawn(async move {
                        match l.since_ticks {
                            None => process::drain_group(l.pgid, l.signal, l.grace).await,
                            Some(since) => {
                                process::drain_orphans(l.pgid, since, &home, l.signal, l.grace)
                                    .await
                            }
                        }
                    })
                })
                .collect();
            for k in kills {
                let _ = k.await;
            }
            let start = sup.in_levels(
                &to_start,
                Action::Start,
                cluster::DEFAULT_DEPENDENCY_TIMEOUT,
            );
            if let Err(e) = start.await {
                tracing::warn!(error = %e, "cannot restart every app from state");
            }
        });
        Ok(())
    }

    /// Stops every app (concurrently), keeping their desired state so the
    /// next daemon starts them again, and writes the final state.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        for level in self.stop_levels() {
            self.exit_instances(|id| level.contains(&id)).await;
        }
        // Through the writer task, so this final write cannot race one of
        // its writes on the same temp file.
        let generation = self.inner.persister.request();
        self.inner.persister.flushed(generation).await;
    }
}

/// The running processes the sampler should look at.
fn sample_targets(inner: &Inner) -> Vec<crate::metrics::Target> {
    let table = inner.table.lock().unwrap_or_else(|p| p.into_inner());
    table
        .apps
        .iter()
        .flat_map(|a| &a.instances)
        .filter_map(|i| {
            let pid = i.shared.lock().unwrap_or_else(|p| p.into_inner()).pid?;
            Some(crate::metrics::Target { id: i.id, pid })
        })
        .collect()
}

/// `max_memory_restart`: after each sample, instances over their limit are
/// replaced (with the reason recorded). Ends with the supervisor.
async fn memory_guard(
    inner: Weak<Inner>,
    mut metrics: tokio::sync::watch::Receiver<Arc<crate::metrics::Snapshot>>,
) {
    while metrics.changed().await.is_ok() {
        let snapshot = metrics.borrow_and_update().clone();
        let Some(inner) = inner.upgrade() else { return };
        let table = inner.table.lock().unwrap_or_else(|p| p.into_inner());
        for inst in table.apps.iter().flat_map(|a| &a.instances) {
            let (limit, running) = {
                let s = inst.shared.lock().unwrap_or_else(|p| p.into_inner());
                (s.spec.max_memory_bytes, s.pid.is_some())
            };
            let (Some(limit), true, Some(sample)) =
                (limit, running, snapshot.samples.get(&inst.id))
            else {
                continue;
            };
            if sample.memory_bytes > limit {
                let reason = format!(
                    "memory {} exceeded max_memory_restart {}",
                    human_bytes(sample.memory_bytes),
                    human_bytes(limit)
                );
                let _ = inst.cmd.send(Cmd::Recycle(reason));
            }
        }
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Removes the log files of these instances (after they were removed).
/// Removes the deleted instances' log files that the daemon made in its
/// logs directory. Files the user named (`out_file`/`error_file`) are left
/// alone: they may hold earlier content, or be /dev/null.
fn remove_logs(logs_dir: &Path, views: &[InstanceView]) {
    for v in views {
        let own = [&v.out_log, &v.err_log]
            .into_iter()
            .filter(|p| p.parent() == Some(logs_dir))
            .cloned();
        if let Err(e) = crate::logs::remove_log_files(own) {
            tracing::warn!(app = %v.name, id = v.id, error = %e, "cannot remove log files");
        }
    }
}

/// Where an app's `out_file`/`error_file` may not point, checked before
/// anything is created: at a non-regular file other than /dev/null (a FIFO
/// would block logging, a device or directory break it), at the daemon's
/// own files, or at a log file another app (or another stream) writes.
/// `taken` holds the log paths in use, with who uses them.
fn check_log_paths(spec: &AppSpec, home: &Path, taken: &[(PathBuf, String)]) -> Result<()> {
    for (stream, path) in spec.custom_log_paths() {
        let field = match stream {
            crate::logs::Stream::Out => "out_file",
            crate::logs::Stream::Err => "error_file",
        };
        if path == Path::new(spec::DISCARD) {
            continue;
        }
        if let Ok(meta) = std::fs::metadata(&path)
            && !meta.is_file()
        {
            return Err(Error::InvalidArgument(format!(
                "{field}: {} is not a regular file; logs go to files (use {} to discard \
                 the output)",
                path.display(),
                spec::DISCARD
            )));
        }
        if path.parent() == Some(home) {
            return Err(Error::InvalidArgument(format!(
                "{field}: {} is in the daemon's home, next to its own files; choose another \
                 path",
                path.display()
            )));
        }
        if let Some((_, user)) = taken.iter().find(|(p, _)| *p == path) {
            return Err(Error::InvalidArgument(format!(
                "{field}: {} is already the log file of {user}; give each stream its own file",
                path.display()
            )));
        }
    }
    // The app's two streams may not share a file either.
    if spec.out_file.is_some()
        && spec.out_file == spec.error_file
        && spec.out_file.as_deref() != Some(Path::new(spec::DISCARD))
    {
        return Err(Error::InvalidArgument(format!(
            "out_file and error_file are the same file ({}); give each its own",
            spec.out_file.as_deref().unwrap_or(Path::new("")).display()
        )));
    }
    Ok(())
}

fn first_error(results: Vec<Result<()>>) -> Result<()> {
    results.into_iter().find(|r| r.is_err()).unwrap_or(Ok(()))
}

fn snapshot(inner: &Inner) -> StateFile {
    let table = inner.table.lock().unwrap_or_else(|p| p.into_inner());
    let apps = table
        .apps
        .iter()
        .filter_map(|app| {
            let first = app
                .instances
                .first()?
                .shared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let instances = app
                .instances
                .iter()
                .map(|i| {
                    let s = i.shared.lock().unwrap_or_else(|p| p.into_inner());
                    InstanceRecord {
                        id: i.id,
                        index: i.index,
                        desired_running: s.desired_running,
                        state: s.state.word().to_string(),
                        pid: s.pid,
                        start_ticks: s.start_ticks,
                        boot_id: s.pid.map(|_| inner.boot_id.clone()),
                        restarts: s.restarts,
                        unstable_restarts: s.unstable_restarts,
                        last_exit_code: s.last_exit.as_ref().and_then(|e| e.code),
                        last_exit_signal: s.last_exit.as_ref().and_then(|e| e.signal.clone()),
                        last_exit_at_ms: s.last_exit.as_ref().map(|e| e.at_ms),
                        reason: s.reason.clone(),
                        port: s.port,
                    }
                })
                .collect();
            Some(AppRecord {
                spec: (*first.spec).clone(),
                launch: (*first.launch).clone(),
                created_at_ms: app.created_at_ms,
                instances,
            })
        })
        .collect();
    StateFile {
        version: store::FORMAT_VERSION,
        next_id: table.next_id,
        apps,
    }
}

/// How long the writer waits after a change for more changes to join it.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(5);

/// The writer task: one atomic write of the latest snapshot per batch of
/// change requests. Ends when the supervisor is gone.
async fn persist_loop(persister: Arc<Persister>, inner: Weak<Inner>) {
    loop {
        let generation = persister.next_batch().await;
        // A burst of changes (50 apps started from one file, a crash loop)
        // becomes one write: gather what comes within a few milliseconds,
        // unless a caller waits for it.
        persister.batch_window(BATCH_WINDOW).await;
        let generation = generation.max(persister.requested());
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let state = snapshot(&strong);
        let path = strong.home.join(store::STATE_FILE);
        drop(strong);
        let result = tokio::task::spawn_blocking(move || store::write_atomic(&path, &state)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot write state.json"),
            Err(e) => tracing::error!(error = %e, "state writer panicked"),
        }
        persister.mark_done(generation);
    }
}

pub use cluster::{
    Applied, ApplyMode, ApplyOptions, ApplyOutcome, DEFAULT_DEPENDENCY_TIMEOUT,
    DEFAULT_READY_TIMEOUT,
};
pub use instance::State as InstanceState;
