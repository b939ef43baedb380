//! One instance's lifecycle: a tokio task per instance that owns the child
//! process and runs the state machine
//!
//! ```text
//!   idle (stopped/errored) --start--> running --exit--> waiting-restart --delay--> running
//!                                        |                    |
//!                                        +--stop--> stopping --+--> idle
//! ```
//!
//! The task is the only owner of the [`Child`] and the only writer of the
//! instance's [`Shared`] record (readers: the table, for list/describe and
//! persistence), so exits and commands are handled in one place without
//! races; what the table decides about a run that never reached the task
//! (a start refused for its port, say) is a command too ([`Cmd::Refuse`]).
//! What the next run uses (definition, launch, port) is the instance's
//! [`Plan`], which only the table writes, under its lock; the task reads
//! it at each spawn and copies what the run got into [`Shared`].
//! Commands arrive on an unbounded mpsc channel whose sender lives in the
//! supervisor's table; the task ends on `Cmd::Exit` or when the sender is
//! dropped (after stopping its process).
//!
//! Readiness is decided here, once for the whole daemon (`WaitReady`,
//! reload, `depends_on`, `ProcessInfo.ready`): the task sets
//! [`Shared::ready`] when the run's health check first passes (an app with
//! a check), when the app sent "ready" over its IPC channel (`wait_ready`,
//! see `ipc.rs`; with a check too, once both happened), or when the run has
//! lasted `min_uptime` (an app with neither), clears it when the run ends, stops or is replaced, and publishes a
//! `Ready` event; [`Shared::readiness`] adds completion (a one-shot job
//! that exited 0). Every change of the record also wakes the daemon's
//! waiters through the event bus (`EventBus::touch`).

use crate::sync::LockExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::process::Spawned;
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use pmdaemon_proto::v1;

use super::cgroup::{self, RunCgroup, Tracking};
use super::events::{EventBus, EventKind};
use super::process;
use super::spec::{AppSpec, Autorestart, Launch};
use crate::error::{Error, Result};
use crate::logs::{self, LogSink};

/// Lifecycle states (see the module header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Starting,
    Online,
    Stopping,
    Stopped,
    Errored,
    WaitingRestart,
}

impl State {
    pub fn is_running(self) -> bool {
        matches!(self, State::Starting | State::Online | State::Stopping)
    }

    /// The word users see and state.json stores; the words have one home,
    /// `v1::ProcessState::word` in the shared crate.
    pub fn word(self) -> &'static str {
        self.to_proto().word()
    }

    /// Inverse of [`Self::word`].
    pub fn from_word(word: &str) -> Option<Self> {
        v1::ProcessState::from_word(word).and_then(Self::from_proto)
    }

    pub fn to_proto(self) -> v1::ProcessState {
        use v1::ProcessState as P;
        match self {
            State::Starting => P::Starting,
            State::Online => P::Online,
            State::Stopping => P::Stopping,
            State::Stopped => P::Stopped,
            State::Errored => P::Errored,
            State::WaitingRestart => P::WaitingRestart,
        }
    }

    /// None for UNSPECIFIED.
    pub fn from_proto(state: v1::ProcessState) -> Option<Self> {
        use v1::ProcessState as P;
        match state {
            P::Unspecified => None,
            P::Starting => Some(State::Starting),
            P::Online => Some(State::Online),
            P::Stopping => Some(State::Stopping),
            P::Stopped => Some(State::Stopped),
            P::Errored => Some(State::Errored),
            P::WaitingRestart => Some(State::WaitingRestart),
        }
    }
}

/// Result of an instance's health check, as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The app has no health check.
    None,
    /// Not passed yet since the last spawn.
    Unknown,
    Healthy,
    Unhealthy,
}

/// Whether an instance counts as up, for every wait of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    NotReady,
    /// Online and healthy with a health check, else online for min_uptime.
    Ready,
    /// A one-shot job (autorestart never or on-failure) that exited 0 and
    /// is not restarted: done, which counts as ready.
    Completed,
}

impl Readiness {
    /// Ready or completed.
    pub fn is_done(self) -> bool {
        !matches!(self, Readiness::NotReady)
    }
}

/// How the last run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<String>,
    pub at_ms: i64,
}

/// `killed by SIGTERM`, `exited with code 1`: for the daemon's log.
impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.signal, self.code) {
            (Some(sig), _) => write!(f, "killed by {sig}"),
            (None, Some(code)) => write!(f, "exited with code {code}"),
            (None, None) => f.write_str("exited"),
        }
    }
}

/// What the next run of an instance uses. Owned by the table: written only
/// by the core's operations while they hold the table lock, so that a port
/// decision and the claims it was made against are one step; read by the
/// instance task at each spawn. Guarded by a `std::sync::Mutex` that is
/// never held across an await.
#[derive(Debug, Clone)]
pub struct Plan {
    pub spec: Arc<AppSpec>,
    pub launch: Arc<Launch>,
    /// The port assigned to this instance (persisted).
    pub port: Option<u16>,
    /// `restart --port`: replaces `port` until the next stop or plain
    /// restart; never persisted.
    pub port_override: Option<u16>,
}

impl Plan {
    pub fn new(spec: Arc<AppSpec>, launch: Arc<Launch>, port: Option<u16>) -> Self {
        Plan {
            spec,
            launch,
            port,
            port_override: None,
        }
    }

    /// The port the next run gets.
    pub fn effective_port(&self) -> Option<u16> {
        self.port_override.or(self.port)
    }
}

/// The instance record: written by its task only, read by the table (list,
/// describe, persistence, waits). Guarded by a `std::sync::Mutex` that is
/// never held across an await.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The definition of the current (or last) run, copied from the plan at
    /// its spawn; until the first spawn, the plan's at creation.
    pub spec: Arc<AppSpec>,
    pub state: State,
    /// Should this instance be running? Set by user commands; cleared when
    /// the restart policy gives up. Persisted: the next daemon starts the
    /// instances that have it. A daemon shutdown leaves it untouched.
    pub desired_running: bool,
    pub pid: Option<u32>,
    /// `/proc/PID/stat` start time of `pid`, to recognise it after a crash.
    pub start_ticks: Option<u64>,
    pub restarts: u32,
    pub unstable_restarts: u32,
    pub started_at_ms: Option<i64>,
    pub last_exit: Option<ExitInfo>,
    pub next_restart_at_ms: Option<i64>,
    /// Why the instance is in its state (e.g. why it errored).
    pub reason: String,
    /// The port given to the current (or last) run; until the first
    /// spawn, the plan's at creation.
    pub port: Option<u16>,
    pub health: Health,
    /// Why the pending automatic restart happens; shown as "restarted
    /// after: ..." once the new process runs, so describe keeps the reason.
    pub restart_cause: Option<String>,
    /// Reason of the last failed check (kept after recovery, for describe).
    pub last_health_error: String,
    pub last_health_error_at_ms: Option<i64>,
    pub last_health_check_passed: Option<bool>,
    pub last_health_check_at_ms: Option<i64>,
    /// The current run is ready: its health check passed (with a check),
    /// or it has been online for min_uptime (without one). Set and cleared
    /// by the task only; never persisted (a restored instance runs anew).
    pub ready: bool,
    /// How the processes of the current (or last) run are tracked: set at
    /// each spawn; until the first, what the daemon uses.
    pub tracking: Tracking,
    /// Where the current run is with the app's "ready" message
    /// (`wait_ready`); never persisted.
    pub ready_message: ReadyMessage,
}

/// The "ready" message of an app with `wait_ready` (PM2's
/// `process.send('ready')`), for the current run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyMessage {
    /// The app has no `wait_ready`.
    NotAwaited,
    /// Within listen_timeout, not sent yet.
    Awaited,
    Received,
    /// listen_timeout passed without it: the run goes on, not ready (a
    /// late "ready" still makes it ready).
    Missed,
}

impl Shared {
    /// The instance's readiness: [`Shared::ready`], or completion of a
    /// one-shot job, recognised from the record alone (stopped after an
    /// exit with code 0, under a policy that does not restart it) so that
    /// a job completed before a daemon restart still counts.
    pub fn readiness(&self) -> Readiness {
        let exited_0 = self
            .last_exit
            .as_ref()
            .is_some_and(|e| e.code == Some(0) && e.signal.is_none());
        if self.ready {
            Readiness::Ready
        } else if self.state == State::Stopped
            && exited_0
            && self.spec.autorestart != Autorestart::Always
        {
            Readiness::Completed
        } else {
            Readiness::NotReady
        }
    }
}

impl Shared {
    pub fn new(spec: Arc<AppSpec>, port: Option<u16>) -> Self {
        Shared {
            spec,
            state: State::Stopped,
            desired_running: false,
            pid: None,
            start_ticks: None,
            restarts: 0,
            unstable_restarts: 0,
            started_at_ms: None,
            last_exit: None,
            next_restart_at_ms: None,
            reason: String::new(),
            port,
            health: Health::None,
            restart_cause: None,
            last_health_error: String::new(),
            last_health_error_at_ms: None,
            last_health_check_passed: None,
            last_health_check_at_ms: None,
            ready: false,
            tracking: Tracking::ProcessGroup,
            ready_message: ReadyMessage::NotAwaited,
        }
    }
}

/// Requests from the supervisor. Each carries a reply sent when it is done.
#[derive(Debug)]
pub enum Cmd {
    /// Spawn unless already running or about to (waiting-restart spawns
    /// now). Clears the unstable-run count of an idle instance.
    Start(oneshot::Sender<Result<()>>),
    /// Stop if running, then spawn; counts as a restart.
    Restart(oneshot::Sender<Result<()>>),
    /// [`Cmd::Restart`] only if the instance should run (running, or
    /// waiting to restart); an idle one (stopped, errored, done) stays
    /// idle. A cron_restart's: decided by the task, in the order of its
    /// commands, so a `pmd stop` just before the schedule fires wins.
    RestartIfWanted(oneshot::Sender<Result<()>>),
    /// Stop the process group; the instance stays, idle.
    Stop(oneshot::Sender<Result<()>>),
    /// Stop and end the task (delete, daemon shutdown).
    Exit(oneshot::Sender<()>),
    /// Replace the running process because it is unwell (memory over its
    /// limit): counts as a failed run in the restart policy.
    Recycle(String),
    /// The table refused to start the instance before asking it (its port
    /// is taken, a dependency failed), for this reason: one being brought
    /// back (starting, nothing running: a restore) becomes errored with
    /// it rather than starting for ever; any other stays as it is.
    Refuse(String, oneshot::Sender<()>),
    /// Set the restart counters (restarts, unstable restarts) back to 0,
    /// PM2's `reset`. The start-rate limit keeps its window: a reset never
    /// lets a crash loop restart faster than the limit allows.
    Reset(oneshot::Sender<()>),
    /// Send a signal to the running process (not its group, as PM2's
    /// `sendSignal`); replies whether one was running to receive it.
    Signal(Signal, oneshot::Sender<std::io::Result<bool>>),
}

/// What the task needs besides its command channel.
pub struct Ctx {
    pub id: u32,
    pub index: u32,
    pub name: Arc<str>,
    /// The daemon's home, set as `PMDAEMON_HOME` in every instance's
    /// environment (when it is UTF-8): apps that run `pmd` reach this
    /// daemon, and the daemon recognises the processes of this home, with
    /// `PMD_ID`, wherever they went (see `process::marked`).
    pub home: Option<Arc<str>>,
    /// Finds this home's marked processes; shared by every instance.
    pub scans: Arc<process::MarkedScans>,
    /// Where each run gets its own cgroup; None: process group and marker
    /// only.
    pub cgroups: Option<Arc<cgroup::Tree>>,
    /// When the automatic restarts within the start-limit interval
    /// happened, oldest first (see [`Ctx::over_start_limit`]). Only the
    /// task uses it; a start by hand empties it.
    pub recent_restarts: Mutex<std::collections::VecDeque<Instant>>,
    pub shared: Arc<Mutex<Shared>>,
    /// The table writes it, the task reads it at each spawn.
    pub plan: Arc<Mutex<Plan>>,
    pub out: Arc<LogSink>,
    pub err: Arc<LogSink>,
    /// Called after every change worth persisting (spawn, exit, stop).
    pub changed: Arc<dyn Fn() + Send + Sync>,
    pub events: Arc<EventBus>,
    /// Balanced apps' pools: told after every change of the record whether
    /// the instance should run and is in its pool.
    pub balancer: Arc<crate::balancer::Balancer>,
    /// Checks the instance's port on the host again before an automatic
    /// restart, moving an `auto:` one that another process took meanwhile
    /// (`Supervisor::recheck_ports`).
    pub recheck_port: Arc<dyn Fn(u32) + Send + Sync>,
}

struct Run {
    child: Spawned,
    pid: u32,
    /// The run's own cgroup, which every process of it stays in (None:
    /// tracked by process group and marker).
    cgroup: Option<RunCgroup>,
    started: Instant,
    /// The health check of this run, if the app has one.
    health: Option<HealthRun>,
    /// The daemon's end of the run's IPC channel, if the app has one.
    ipc: Option<super::ipc::Ipc>,
    /// When listen_timeout ends, while a "ready" message is awaited.
    listen_deadline: Option<Instant>,
    /// When this run becomes stable (min_uptime after its start), if that
    /// changes something: an app without a health check is ready then, and
    /// after unstable runs the count of unstable restarts goes back to 0,
    /// as the next exit would do, so `list` and `describe` do not show a
    /// crash loop that is over.
    stable_at: Option<Instant>,
}

struct HealthRun {
    /// Dropping it stops the prober (and kills a running script probe).
    _prober: crate::health::ProberHandle,
    results: mpsc::Receiver<crate::health::ProbeResult>,
    /// Readiness/liveness rules: start period, consecutive failures.
    tracker: crate::health::HealthTracker,
}

enum Phase {
    Idle,
    /// Boxed: a run (child, prober) is much larger than the other phases.
    Running(Box<Run>),
    Waiting(Instant),
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Ctx {
    /// See [`Cmd::Reset`].
    fn reset_counters(&self) {
        self.update(|s| {
            s.restarts = 0;
            s.unstable_restarts = 0;
        });
    }

    fn update<R>(&self, f: impl FnOnce(&mut Shared) -> R) -> R {
        let r = f(&mut self.shared.locked());
        (self.changed)();
        self.touched();
        r
    }

    /// The record changed: the daemon's waiters wake, and a balanced app's
    /// pool learns whether the instance should run and whether it takes
    /// connections (online and ready), with an event when it joins or
    /// leaves.
    fn touched(&self) {
        self.events.touch();
        // The plan before the record: the lock order is Plan, then Shared.
        let planned = self.plan.locked().spec.balance.is_some();
        let (desired, in_pool) = {
            let s = self.shared.locked();
            if !planned && s.spec.balance.is_none() {
                return;
            }
            let serving = s.ready && s.state == State::Online;
            (s.desired_running, s.port.filter(|_| serving))
        };
        match self.balancer.sync(&self.name, self.id, desired, in_pool) {
            Some(crate::balancer::Membership::Joined) => {
                let port = in_pool.unwrap_or_default();
                self.emit(EventKind::PoolJoined, format!("private port {port}"));
            }
            Some(crate::balancer::Membership::Left) => {
                let why = {
                    let s = self.shared.locked();
                    match s.state {
                        State::Stopping => "stopping".to_string(),
                        State::Online => "not ready".to_string(),
                        other => other.word().to_string(),
                    }
                };
                self.emit(EventKind::PoolLeft, why);
            }
            None => {}
        }
    }

    fn emit(&self, kind: EventKind, detail: impl Into<String>) {
        let shared = self.shared.locked();
        self.events.emit(self.id, &self.name, kind, &shared, detail);
    }

    /// The definition and launch of the next run, from the plan.
    fn spec(&self) -> (Arc<AppSpec>, Arc<Launch>) {
        let p = self.plan.locked();
        (p.spec.clone(), p.launch.clone())
    }

    /// The port of the next run, from the plan.
    fn port(&self) -> Option<u16> {
        self.plan.locked().effective_port()
    }

    /// Spawns the process, wires its pipes to the log sinks and marks the
    /// instance online (no health checks yet: online once spawned).
    fn spawn(&self) -> std::io::Result<Run> {
        let (spec, launch) = self.spec();
        let port = self.port();
        let mut env = overlay_env(&spec, self.id, self.index, port, self.home.as_deref());
        let channel = match spec.ipc(&launch) {
            true => {
                env.extend(super::ipc::env());
                Some(super::ipc::pair()?)
            }
            false => None,
        };
        let cgroup = self.cgroups.as_ref().and_then(|tree| {
            tree.create(self.id)
                .inspect_err(|e| tracing::warn!(app = %self.name, id = self.id, error = %e, "cannot create a cgroup for the run; tracking it by process group"))
                .ok()
        });
        let app_end = channel.as_ref().map(|(app, _)| {
            use std::os::fd::AsFd;
            app.as_fd()
        });
        let spawned = process::spawn(&launch, &env, cgroup.as_ref(), app_end);
        // The child has its copy (as fd 3); the daemon keeps its own end.
        let ipc = channel.and_then(|(app, daemon)| {
            drop(app);
            super::ipc::Ipc::start(daemon, self.name.clone(), self.id)
                .inspect_err(|e| tracing::warn!(app = %self.name, id = self.id, error = %e, "cannot read the app's IPC channel"))
                .ok()
        });
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                if let Some(cg) = cgroup {
                    cg.discard();
                }
                return Err(e);
            }
        };
        let cgroup = match cgroup {
            Some(cg) if child.in_cgroup => Some(cg),
            Some(cg) => {
                cg.discard();
                None
            }
            None => None,
        };
        let tracking = if cgroup.is_some() {
            Tracking::Cgroup
        } else {
            Tracking::ProcessGroup
        };
        let pid = child.id().unwrap_or(0);
        if let Some(out) = child.stdout.take() {
            logs::capture(out, self.out.clone());
        }
        if let Some(err) = child.stderr.take() {
            logs::capture(err, self.err.clone());
        }
        let start_ticks = process::read_stat(pid).map(|s| s.start_ticks);
        tracing::info!(app = %self.name, id = self.id, pid, "spawned");
        let checked = spec.checked();
        // With a health check, online only after its first pass; with
        // wait_ready, after the app's "ready" (or listen_timeout).
        let gated = checked || spec.wait_ready;
        self.update(|s| {
            s.spec = spec.clone();
            s.port = port;
            s.state = if gated {
                State::Starting
            } else {
                State::Online
            };
            s.ready_message = if spec.wait_ready {
                ReadyMessage::Awaited
            } else {
                ReadyMessage::NotAwaited
            };
            s.health = if checked {
                Health::Unknown
            } else {
                Health::None
            };
            s.pid = Some(pid);
            s.tracking = tracking;
            s.start_ticks = start_ticks;
            s.started_at_ms = Some(now_ms());
            s.next_restart_at_ms = None;
            s.ready = false;
            s.reason = s
                .restart_cause
                .take()
                .map(|cause| format!("restarted after: {cause}"))
                .unwrap_or_default();
        });
        self.emit(EventKind::Started, format!("pid {pid}"));
        if let Some(port) = port {
            self.emit(EventKind::PortAssigned, format!("{}={port}", spec.port_env));
        }
        if !gated {
            self.emit(EventKind::Online, "");
        }
        let health = spec
            .effective_health_check()
            .and_then(|check| self.start_prober(&check, &launch, env));
        let started = Instant::now();
        let unstable = self.shared.locked().unstable_restarts;
        Ok(Run {
            child,
            pid,
            cgroup,
            started,
            health,
            listen_deadline: (spec.wait_ready && ipc.is_some())
                .then(|| started + Duration::from_millis(spec.listen_timeout_ms)),
            ipc,
            stable_at: (unstable > 0 || !checked).then(|| started + spec.min_uptime()),
        })
    }

    /// The run has lasted min_uptime: a crash loop is over, and an app
    /// without a health check is ready.
    fn on_stable(&self) {
        let (spec, _) = self.spec();
        let (reset, became_ready) = {
            let mut s = self.shared.locked();
            let reset = s.unstable_restarts > 0;
            s.unstable_restarts = 0;
            let became_ready = becomes_ready_when_stable(&s);
            if became_ready {
                s.ready = true;
            }
            (reset, became_ready)
        };
        // Readiness is not persisted: only a reset count is worth a write.
        if reset {
            (self.changed)();
        }
        self.touched();
        if became_ready {
            let uptime = humantime::format_duration(spec.min_uptime());
            self.emit(
                EventKind::Ready,
                format!("online for min_uptime ({uptime})"),
            );
        }
    }

    /// Starts probing a fresh run. A probe that cannot be resolved (it
    /// uses `{port}` and the instance has none) is reported as the health
    /// error and the instance stays starting.
    fn start_prober(
        &self,
        check: &crate::health::HealthCheck,
        launch: &Launch,
        env: Vec<(String, String)>,
    ) -> Option<HealthRun> {
        let probe = match crate::health::resolve(&check.probe, self.port()) {
            Ok(p) => p,
            Err(e) => {
                self.update(|s| {
                    s.last_health_error = e;
                    s.last_health_error_at_ms = Some(now_ms());
                });
                return None;
            }
        };
        let (tx, results) = mpsc::channel(4);
        let prober = crate::health::spawn_prober(check.clone(), probe, env, launch.cwd.clone(), tx);
        Some(HealthRun {
            _prober: prober,
            results,
            tracker: crate::health::HealthTracker::new(check),
        })
    }

    /// Applies one probe result. Returns a reason when the instance must be
    /// replaced (liveness: `retries` consecutive failures while online).
    fn on_probe(&self, run: &mut Run, result: crate::health::ProbeResult) -> Option<String> {
        use crate::health::Transition;
        let health = run.health.as_mut()?;
        let transition = health.tracker.record(&result, run.started.elapsed());
        let mut events: Vec<(EventKind, String)> = Vec::new();
        let mut recycle = None;
        {
            let mut s = self.shared.locked();
            s.last_health_check_at_ms = Some(result.at_ms);
            s.last_health_check_passed = Some(result.error.is_none());
            if let Some(error) = &result.error {
                s.last_health_error = error.clone();
                s.last_health_error_at_ms = Some(result.at_ms);
            }
            match transition {
                Transition::BecameHealthy => {
                    s.health = Health::Healthy;
                    events.push((EventKind::HealthChanged, "healthy".into()));
                    events.extend(advance(&mut s, "health check passed"));
                }
                // Liveness: an instance that was ready fails `retries`
                // times in a row and is replaced.
                Transition::BecameUnhealthy {
                    consecutive_failures,
                    last_error,
                    was_ready: true,
                } => {
                    s.health = Health::Unhealthy;
                    s.ready = false;
                    events.push((EventKind::HealthChanged, last_error.clone()));
                    recycle = Some(format!(
                        "health check failed {consecutive_failures} times in a row: {last_error}"
                    ));
                }
                // Before its first pass an instance is starting, not
                // unhealthy: fast readiness probes failing is expected.
                Transition::BecameUnhealthy {
                    was_ready: false, ..
                }
                | Transition::None => {}
            }
        }
        (self.changed)();
        self.touched();
        for (kind, detail) in events {
            self.emit(kind, detail);
        }
        recycle
    }

    /// The app sent "ready" over its channel: online and ready once its
    /// health check (if any) passed too.
    fn on_ready_message(&self, run: &mut Run) {
        run.listen_deadline = None;
        let events = {
            let mut s = self.shared.locked();
            match s.ready_message {
                ReadyMessage::Received | ReadyMessage::NotAwaited => return,
                ReadyMessage::Missed => s.reason.clear(),
                ReadyMessage::Awaited => {}
            }
            s.ready_message = ReadyMessage::Received;
            advance(&mut s, "the app sent 'ready'")
        };
        (self.changed)();
        self.touched();
        for (kind, detail) in events {
            self.emit(kind, detail);
        }
    }

    /// listen_timeout passed without "ready": as PM2, the run goes on
    /// (online once its health check passed), but it is not ready, and
    /// the record says why.
    fn on_listen_timeout(&self) {
        let events = {
            let mut s = self.shared.locked();
            if s.ready_message != ReadyMessage::Awaited {
                return;
            }
            s.ready_message = ReadyMessage::Missed;
            s.reason = missed_ready_reason(&s.spec);
            tracing::warn!(app = %self.name, id = self.id, "{}", s.reason);
            let why = format!(
                "listen_timeout ({} ms) passed without a 'ready' message",
                s.spec.listen_timeout_ms
            );
            advance(&mut s, &why)
        };
        (self.changed)();
        self.touched();
        for (kind, detail) in events {
            self.emit(kind, detail);
        }
    }

    /// Stops a running process at the user's request.
    async fn stop(&self, run: &mut Run) {
        let exit = self.terminate(run).await;
        self.update(|s| {
            s.state = State::Stopped;
            s.pid = None;
            s.health = not_checked(s);
            s.start_ticks = None;
            s.started_at_ms = None;
            s.next_restart_at_ms = None;
            s.last_exit = Some(exit);
            s.reason = "stopped by request".into();
            s.restart_cause = None;
        });
        self.emit(EventKind::Stopped, "stopped by request");
    }

    /// Replaces an unwell process: stops it, then the restart policy decides
    /// as after a failed run, with `reason` recorded.
    async fn recycle(&self, mut run: Run, reason: String) -> Phase {
        // The Restarting event comes from after_exit, with the delay.
        tracing::warn!(app = %self.name, id = self.id, pid = run.pid, %reason, "replacing the process");
        let ran_for = run.started.elapsed();
        let exit = self.terminate(&mut run).await;
        self.after_exit(exit, Some(ran_for), Some(reason))
    }

    /// Stop signal to the group, SIGKILL after kill_timeout; nothing of the
    /// group is left alive on return. Returns how the leader ended.
    async fn terminate(&self, run: &mut Run) -> ExitInfo {
        let (spec, _) = self.spec();
        let signal = spec.stop_signal();
        let kill_timeout = spec.kill_timeout();
        self.update(|s| {
            s.state = State::Stopping;
            s.ready = false;
        });
        // Out of its pool already (the update above): its open connections
        // get the drain timeout to finish before the stop signal.
        if spec.balance.is_some() {
            let open = self
                .balancer
                .drain(&self.name, self.id, spec.drain_timeout())
                .await;
            if open > 0 {
                tracing::info!(app = %self.name, id = self.id, open, "drain timeout passed with connections open; stopping");
            }
        }
        let deadline = Instant::now() + kill_timeout;
        // Processes outside the group (setsid; reparented) get the same
        // signal, and SIGKILL with the rest: no grandchild survives a stop.
        let asked = std::time::Instant::now();
        let escaped = outside_group(&self.scans, self.id, Some(run.pid), asked, None).await;
        // shutdown_with_message: "shutdown" instead of the signal, as PM2
        // does; the signal after all when the channel cannot take it.
        let by_message = spec.shutdown_with_message
            && run.ipc.as_ref().is_some_and(|ipc| {
                ipc.send_shutdown()
                    .inspect_err(|e| tracing::warn!(app = %self.name, id = self.id, error = %e, "cannot send 'shutdown' over the IPC channel; sending {signal} instead"))
                    .is_ok()
            });
        if !by_message {
            process::signal_each(&escaped, signal);
            process::signal_group(run.pid, signal);
            // With a cgroup, every process of the run gets it, however far
            // it went (a new session and a cleared environment included).
            if let Some(cg) = &run.cgroup {
                cg.signal_all(signal);
            }
        }
        let status = match tokio::time::timeout_at(deadline, run.child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                tracing::warn!(app = %self.name, id = self.id, pid = run.pid, kill_timeout = %humantime::format_duration(kill_timeout), "did not stop in time; sending SIGKILL");
                process::signal_group(run.pid, Signal::SIGKILL);
                if let Some(cg) = &run.cgroup {
                    cg.kill();
                }
                run.child.wait().await
            }
        };
        // The leader is gone; members of its group (and of its cgroup) that
        // outlive it get the rest of the kill timeout, then SIGKILL.
        let remaining = deadline.saturating_duration_since(Instant::now());
        let cgroup = async {
            if let Some(cg) = run.cgroup.take() {
                cg.wait_empty(deadline.into_std()).await;
                cg.kill_and_remove().await;
            }
        };
        tokio::join!(
            process::drain_group(run.pid, signal, remaining),
            process::finish_off(&escaped, deadline.into_std()),
            cgroup,
        );
        let exit = exit_info(status);
        tracing::info!(app = %self.name, id = self.id, pid = run.pid, exit = %exit, "stopped");
        exit
    }

    /// Applies the restart policy after the process exited on its own (or
    /// could not be spawned) and says what comes next.
    fn after_exit(
        &self,
        exit: ExitInfo,
        ran_for: Option<Duration>,
        cause: Option<String>,
    ) -> Phase {
        let (spec, _) = self.spec();
        let failed = cause.is_some() || exit.code != Some(0);
        let stable = ran_for.is_some_and(|d| d >= spec.min_uptime());
        let how = cause.clone().unwrap_or_else(|| exit.to_string());
        // An exit code the app declared final (`stop_exit_codes`) ends it
        // under every policy, as in PM2; only an exit of its own counts.
        let final_code = cause.is_none() && spec.stops_on(exit.code);
        let restart = match spec.autorestart {
            _ if final_code => false,
            Autorestart::Always => true,
            Autorestart::OnFailure => failed,
            Autorestart::Never => false,
        };
        let mut shared = self.shared.locked();
        let exited_pid = shared.pid;
        shared.pid = None;
        shared.ready = false;
        // The check spoke of the run that ended.
        shared.health = not_checked(&shared);
        shared.start_ticks = None;
        shared.started_at_ms = None;
        shared.last_exit = Some(exit);
        if shared.health != Health::None {
            shared.health = Health::Unknown;
        }
        shared.unstable_restarts = if stable {
            0
        } else {
            shared.unstable_restarts + 1
        };
        let phase = if final_code {
            shared.state = State::Stopped;
            shared.desired_running = false;
            shared.reason = format!(
                "{how}, one of stop_exit_codes {:?}: not restarted",
                spec.stop_exit_codes
            );
            Phase::Idle
        } else if !restart {
            shared.state = if failed {
                State::Errored
            } else {
                State::Stopped
            };
            shared.desired_running = false;
            shared.reason = format!("{how}; autorestart is {}", spec.autorestart.word());
            Phase::Idle
        } else if let Some(count) = self.over_start_limit(&spec) {
            shared.state = State::Errored;
            shared.desired_running = false;
            shared.reason = format!(
                "{how}; restarted {count} times within {} (start_limit_burst {} per start_limit_interval): not restarting. Fix the app, then `pmd restart {}`",
                humantime::format_duration(Duration::from_millis(spec.start_limit_interval_ms)),
                spec.start_limit_burst,
                self.name
            );
            Phase::Idle
        } else if shared.unstable_restarts > spec.max_restarts {
            shared.state = State::Errored;
            shared.desired_running = false;
            shared.reason = format!(
                "{how}; {} runs in a row ended within min_uptime ({} ms), more than max_restarts ({}): not restarting. Fix the app, then `pmd restart {}`",
                shared.unstable_restarts, spec.min_uptime_ms, spec.max_restarts, self.name
            );
            Phase::Idle
        } else {
            let delay = spec.restart_delay(shared.unstable_restarts);
            shared.state = State::WaitingRestart;
            shared.restart_cause = Some(how.clone());
            shared.next_restart_at_ms = Some(now_ms() + delay.as_millis() as i64);
            shared.reason = format!("{how}; restarting in {} ms", delay.as_millis());
            Phase::Waiting(Instant::now() + delay)
        };
        tracing::info!(app = %self.name, id = self.id, state = shared.state.word(), reason = %shared.reason, "exited");
        let next = match shared.state {
            State::WaitingRestart => EventKind::Restarting,
            State::Errored => EventKind::Errored,
            _ => EventKind::Stopped,
        };
        let reason = shared.reason.clone();
        // The exited event names the process that exited.
        let mut exited = shared.clone();
        exited.pid = exited_pid;
        self.events
            .emit(self.id, &self.name, EventKind::Exited, &exited, how);
        self.events.emit(self.id, &self.name, next, &shared, reason);
        if shared.readiness() == Readiness::Completed {
            self.events
                .emit(self.id, &self.name, EventKind::Ready, &shared, "completed");
        }
        drop(shared);
        (self.changed)();
        self.touched();
        phase
    }

    /// An automatic restart of a balanced instance first checks its private
    /// port again: a run on a port another process took would fail to bind
    /// it while its implied TCP check passed on that process, and the pool
    /// would hand it the clients.
    fn respawn(&self) -> Phase {
        let balanced = self.plan.locked().spec.balance.is_some();
        if balanced {
            (self.recheck_port)(self.id);
        }
        self.spawn_or_fail().0
    }

    /// Spawns for a (re)start; a failure goes through the restart policy
    /// like a crash would, so it ends in `errored`, never in a loop.
    fn spawn_or_fail(&self) -> (Phase, Result<()>) {
        match self.spawn() {
            Ok(run) => (Phase::Running(Box::new(run)), Ok(())),
            Err(e) => {
                let (_, launch) = self.spec();
                let msg = format!("cannot execute {}: {e}", launch.program.display());
                tracing::warn!(app = %self.name, id = self.id, "{msg}");
                let exit = ExitInfo {
                    code: None,
                    signal: None,
                    at_ms: now_ms(),
                };
                let phase = self.after_exit(exit, None, Some(format!("could not be spawned: {e}")));
                (phase, Err(Error::FailedPrecondition(msg)))
            }
        }
    }

    /// Records an automatic restart about to happen and says whether it
    /// goes over the start-rate limit: with the number of restarts within
    /// the interval when it does. Independent of min_uptime, so that no
    /// setting allows a restart storm.
    fn over_start_limit(&self, spec: &AppSpec) -> Option<usize> {
        if spec.start_limit_burst == 0 {
            return None;
        }
        let now = Instant::now();
        let window = Duration::from_millis(spec.start_limit_interval_ms);
        let mut recent = self.recent_restarts.locked();
        while recent
            .front()
            .is_some_and(|&at| now.duration_since(at) > window)
        {
            recent.pop_front();
        }
        recent.push_back(now);
        (recent.len() > spec.start_limit_burst as usize).then(|| {
            let count = recent.len() - 1;
            recent.clear();
            count
        })
    }

    /// See [`Cmd::Refuse`].
    fn refuse(&self, why: String) {
        let refused = self.update(|s| {
            let restoring = s.pid.is_none() && s.state == State::Starting;
            if restoring {
                s.state = State::Errored;
                s.reason = why.clone();
            }
            restoring
        });
        if refused {
            self.emit(EventKind::Errored, why);
        }
    }

    fn set_desired(&self, running: bool) {
        self.update(|s| s.desired_running = running);
    }

    fn count_restart(&self, reset_unstable: bool) {
        self.update(|s| {
            s.restarts += 1;
            if reset_unstable {
                s.unstable_restarts = 0;
            }
        });
    }
}

fn exit_info(status: std::io::Result<std::process::ExitStatus>) -> ExitInfo {
    use std::os::unix::process::ExitStatusExt;
    let (code, signal) = match status {
        Ok(s) => (s.code(), s.signal().map(process::signal_name)),
        Err(_) => (None, None),
    };
    ExitInfo {
        code,
        signal,
        at_ms: now_ms(),
    }
}

/// The instance task. Runs until `Cmd::Exit` or until every command sender
/// is gone; a running process is stopped before the task ends.
pub async fn run(ctx: Ctx, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    if ctx.cgroups.is_some() {
        ctx.shared.locked().tracking = Tracking::Cgroup;
    }
    let mut phase = Phase::Idle;
    loop {
        phase = match phase {
            Phase::Idle => match rx.recv().await {
                Some(Cmd::Start(reply)) | Some(Cmd::Restart(reply)) => {
                    // A start by hand gives a crash-looped app a fresh budget.
                    ctx.recent_restarts.locked().clear();
                    ctx.update(|s| {
                        s.unstable_restarts = 0;
                        s.desired_running = true;
                    });
                    let (next, result) = ctx.spawn_or_fail();
                    let _ = reply.send(result);
                    next
                }
                Some(Cmd::RestartIfWanted(reply)) => {
                    let _ = reply.send(Ok(()));
                    Phase::Idle
                }
                Some(Cmd::Stop(reply)) => {
                    // Nothing runs; one still to be brought back (restored,
                    // waiting for a dependency) or errored is now stopped.
                    ctx.update(|s| {
                        s.desired_running = false;
                        if matches!(s.state, State::Starting | State::Errored) {
                            s.state = State::Stopped;
                            s.reason = "stopped by request".into();
                        }
                    });
                    let _ = reply.send(Ok(()));
                    Phase::Idle
                }
                Some(Cmd::Exit(reply)) => {
                    let _ = reply.send(());
                    return;
                }
                // Nothing runs: nothing to replace.
                Some(Cmd::Recycle(_)) => Phase::Idle,
                Some(Cmd::Refuse(why, reply)) => {
                    ctx.refuse(why);
                    let _ = reply.send(());
                    Phase::Idle
                }
                Some(Cmd::Reset(reply)) => {
                    ctx.reset_counters();
                    let _ = reply.send(());
                    Phase::Idle
                }
                Some(Cmd::Signal(_, reply)) => {
                    let _ = reply.send(Ok(false));
                    Phase::Idle
                }
                None => return,
            },
            Phase::Running(mut run) => {
                let stable_at = run.stable_at;
                let became_stable = async {
                    match stable_at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                let probe_result = async {
                    match run.health.as_mut() {
                        Some(h) => h.results.recv().await,
                        None => std::future::pending().await,
                    }
                };
                let message = async {
                    match run.ipc.as_mut() {
                        Some(ipc) => ipc.messages.recv().await,
                        None => std::future::pending().await,
                    }
                };
                let listen_deadline = run.listen_deadline;
                let listen_timeout = async {
                    match listen_deadline {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                let cmd = tokio::select! {
                    status = run.child.wait() => {
                        let ran_for = run.started.elapsed();
                        // Background workers of the exited leader, in its
                        // group or escaped from it, would be orphans, and
                        // would run into the next run: end them, without
                        // delaying the restart. Only processes started
                        // before this moment: the next run's are not theirs.
                        let (spec, _) = ctx.spec();
                        let (signal, grace) = (spec.stop_signal(), spec.kill_timeout());
                        let (leader, id) = (run.pid, ctx.id);
                        let (asked, before) = (std::time::Instant::now(), process::now_ticks());
                        let scans = ctx.scans.clone();
                        // The run's cgroup holds only this run's processes
                        // (the next run gets a fresh one): all of them go.
                        let cgroup = run.cgroup.take();
                        tokio::spawn(async move {
                            let group = process::drain_group(leader, signal, grace);
                            let cgroup = async {
                                if let Some(cg) = cgroup {
                                    cg.end(signal, grace).await;
                                }
                            };
                            // After the respawn, not beside it (a scan
                            // reads all of /proc), and in a crash loop
                            // one scan for many exits (MarkedScans).
                            // The leader's pid may lead the next run by
                            // now: no descendants of it, only the marker.
                            let outside = async {
                                tokio::time::sleep(EXIT_SWEEP_DELAY).await;
                                let outside = match before {
                                    Some(before) => {
                                        outside_group(&scans, id, None, asked, Some(before)).await
                                    }
                                    None => Vec::new(),
                                };
                                process::end_all(&outside, signal, grace).await;
                            };
                            tokio::join!(group, outside, cgroup);
                        });
                        phase = ctx.after_exit(exit_info(status), Some(ran_for), None);
                        continue;
                    }
                    () = became_stable => {
                        run.stable_at = None;
                        ctx.on_stable();
                        phase = Phase::Running(run);
                        continue;
                    }
                    Some(super::ipc::Message::Ready) = message => {
                        ctx.on_ready_message(&mut run);
                        phase = Phase::Running(run);
                        continue;
                    }
                    () = listen_timeout => {
                        run.listen_deadline = None;
                        ctx.on_listen_timeout();
                        phase = Phase::Running(run);
                        continue;
                    }
                    Some(result) = probe_result => {
                        phase = match ctx.on_probe(&mut run, result) {
                            Some(reason) => ctx.recycle(*run, reason).await,
                            None => Phase::Running(run),
                        };
                        continue;
                    }
                    cmd = rx.recv() => cmd,
                };
                match cmd {
                    Some(Cmd::Start(reply)) => {
                        let _ = reply.send(Ok(()));
                        Phase::Running(run)
                    }
                    Some(Cmd::Restart(reply)) | Some(Cmd::RestartIfWanted(reply)) => {
                        ctx.emit(EventKind::Restarting, "restart requested");
                        ctx.stop(&mut run).await;
                        ctx.count_restart(true);
                        ctx.set_desired(true);
                        let (next, result) = ctx.spawn_or_fail();
                        let _ = reply.send(result);
                        next
                    }
                    Some(Cmd::Recycle(reason)) => ctx.recycle(*run, reason).await,
                    // It runs: the refusal was about a start it did not need.
                    Some(Cmd::Refuse(_, reply)) => {
                        let _ = reply.send(());
                        Phase::Running(run)
                    }
                    Some(Cmd::Reset(reply)) => {
                        ctx.reset_counters();
                        let _ = reply.send(());
                        Phase::Running(run)
                    }
                    Some(Cmd::Signal(signal, reply)) => {
                        let _ = reply.send(run.child.signal(signal).map(|()| true));
                        Phase::Running(run)
                    }
                    Some(Cmd::Stop(reply)) => {
                        ctx.set_desired(false);
                        ctx.stop(&mut run).await;
                        let _ = reply.send(Ok(()));
                        Phase::Idle
                    }
                    Some(Cmd::Exit(reply)) => {
                        ctx.stop(&mut run).await;
                        let _ = reply.send(());
                        return;
                    }
                    None => {
                        ctx.stop(&mut run).await;
                        return;
                    }
                }
            }
            // No delay: spawn at once rather than through the timer, whose
            // millisecond granularity would add up to a millisecond to every
            // respawn.
            Phase::Waiting(until) if until <= Instant::now() => {
                ctx.count_restart(false);
                ctx.respawn()
            }
            Phase::Waiting(until) => {
                let cmd = tokio::select! {
                    _ = tokio::time::sleep_until(until) => {
                        ctx.count_restart(false);
                        phase = ctx.respawn();
                        continue;
                    }
                    cmd = rx.recv() => cmd,
                };
                match cmd {
                    Some(Cmd::Start(reply))
                    | Some(Cmd::Restart(reply))
                    | Some(Cmd::RestartIfWanted(reply)) => {
                        ctx.count_restart(true);
                        let (next, result) = ctx.spawn_or_fail();
                        let _ = reply.send(result);
                        next
                    }
                    Some(Cmd::Stop(reply)) => {
                        ctx.set_desired(false);
                        ctx.update(|s| {
                            s.state = State::Stopped;
                            s.next_restart_at_ms = None;
                            s.reason = "stopped by request".into();
                            s.restart_cause = None;
                        });
                        ctx.emit(EventKind::Stopped, "stopped by request");
                        let _ = reply.send(Ok(()));
                        Phase::Idle
                    }
                    Some(Cmd::Exit(reply)) => {
                        let _ = reply.send(());
                        return;
                    }
                    Some(Cmd::Recycle(_)) => Phase::Waiting(until),
                    Some(Cmd::Refuse(_, reply)) => {
                        let _ = reply.send(());
                        Phase::Waiting(until)
                    }
                    Some(Cmd::Reset(reply)) => {
                        ctx.reset_counters();
                        let _ = reply.send(());
                        Phase::Waiting(until)
                    }
                    Some(Cmd::Signal(_, reply)) => {
                        let _ = reply.send(Ok(false));
                        Phase::Waiting(until)
                    }
                    None => return,
                }
            }
        };
    }
}

/// What a run of instance `id` (index `index`) sets over the daemon's own
/// environment, in order, later entries winning: the caller's environment
/// captured at start, the daemon's variables (so a captured `PMD_ID` of
/// an app that ran `pmd start` never marks this one as that app), the
/// app's `env`, its port, and `PMDAEMON_HOME`. One list for the spawn and
/// for GetProcessEnv, so `pmd env` shows what the process got.
pub fn overlay_env(
    spec: &AppSpec,
    id: u32,
    index: u32,
    port: Option<u16>,
    home: Option<&str>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = spec
        .caller_env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.extend([
        ("PMD_APP_NAME".to_string(), spec.name.clone()),
        ("PMD_ID".to_string(), id.to_string()),
        ("PMD_INSTANCE_ID".to_string(), index.to_string()),
    ]);
    env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    // After `env`, as PM2 sets them over it: the index in `instance_var`,
    // `increment_var` raised by the index.
    env.extend(spec.instance_env(index));
    if let Some(port) = port {
        env.push((spec.port_env.clone(), port.to_string()));
    }
    if let Some(home) = home {
        env.push((pmdaemon_proto::HOME_ENV.to_owned(), home.to_string()));
    }
    env
}

/// Whether a run that has just lasted min_uptime becomes ready by that:
/// only without a health check (with one, its first pass decides), and
/// only while it is online and not ready yet.
fn becomes_ready_when_stable(s: &Shared) -> bool {
    !s.spec.checked() && !s.spec.wait_ready && s.state == State::Online && !s.ready
}

/// After a gate of a run passed (its health check, the app's "ready" or
/// the end of listen_timeout): a starting instance whose gates all passed
/// is online, and an online one ready once its check passed and its
/// "ready" came (for apps with a check or `wait_ready`; the others are
/// ready after min_uptime). Returns the events to publish, with `why`.
fn advance(s: &mut Shared, why: &str) -> Vec<(EventKind, String)> {
    let mut events = Vec::new();
    let healthy = !s.spec.checked() || s.health == Health::Healthy;
    let message = s.ready_message;
    if s.state == State::Starting && healthy && message != ReadyMessage::Awaited {
        s.state = State::Online;
        events.push((EventKind::Online, why.to_owned()));
    }
    let gated = s.spec.checked() || s.spec.wait_ready;
    let sent = matches!(message, ReadyMessage::NotAwaited | ReadyMessage::Received);
    if gated && s.state == State::Online && !s.ready && healthy && sent {
        s.ready = true;
        events.push((EventKind::Ready, why.to_owned()));
    }
    events
}

/// Why an instance with `wait_ready` is not ready after listen_timeout.
pub fn missed_ready_reason(spec: &AppSpec) -> String {
    format!(
        "no 'ready' message within listen_timeout ({} ms): with wait_ready the app must call \
                 process.send('ready') (or write \"ready\" and a newline to fd 3)",
        spec.listen_timeout_ms
    )
}

/// How long after an exit its escaped processes are looked for: long
/// enough that the scan does not compete with the respawn, short enough
/// that they do not run long into the next run.
const EXIT_SWEEP_DELAY: Duration = Duration::from_millis(50);

/// Instance `id`'s processes outside the group its leader led, with their
/// start times: descendants of a live `leader` that left the group
/// (setsid, setpgid), and, by the marker (`PMDAEMON_HOME` and this
/// `PMD_ID`, see `process::marked`), those that also lost their parent, of
/// any run of the instance, as a scan that started at or after `asked`
/// sees them. `before`: only processes started before these clock ticks,
/// so that a next run's are left alone.
async fn outside_group(
    scans: &process::MarkedScans,
    id: u32,
    leader: Option<u32>,
    asked: std::time::Instant,
    before: Option<u64>,
) -> Vec<(u32, u64)> {
    let mut procs = leader.map(process::escaped_descendants).unwrap_or_default();
    for m in scans.since(asked).await.iter() {
        if m.id == id && !procs.iter().any(|&(pid, _)| pid == m.pid) {
            procs.push(m.ident());
        }
    }
    if let Some(before) = before {
        procs.retain(|&(_, ticks)| ticks < before);
    }
    procs
}

/// The health of an instance with no run to check: unknown with a check,
/// none without.
fn not_checked(s: &Shared) -> Health {
    if s.spec.checked() {
        Health::Unknown
    } else {
        Health::None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record of app `api` (min_uptime 1 s, autorestart `policy`), with
    /// a TCP health check when `checked`, in `state`.
    pub(crate) fn shared(policy: &str, checked: bool, state: State) -> Shared {
        let check = serde_json::json!({
            "probe": {"tcp": {"target": "127.0.0.1:9"}},
            "interval_ms": 5000, "timeout_ms": 2000, "retries": 3, "start_period_ms": 0,
        });
        let spec: AppSpec = serde_json::from_value(serde_json::json!({
            "name": "api", "script": "sleep", "args": [], "interpreter": null,
            "interpreter_args": [], "cwd": "/", "env": {}, "autorestart": policy,
            "max_restarts": 15, "min_uptime_ms": 1000, "restart_delay_ms": 0,
            "exp_backoff_initial_ms": 100, "exp_backoff_max_ms": 30000,
            "kill_timeout_ms": 5000, "stop_signal": "SIGTERM", "time": false,
            "log_max_bytes": 1024, "log_max_files": 1,
            "health_check": if checked { check } else { serde_json::Value::Null },
        }))
        .expect("a valid spec");
        let mut s = Shared::new(Arc::new(spec), None);
        s.state = state;
        s
    }

    /// The plan of the record `shared` made.
    pub(crate) fn plan_of(s: &Shared) -> Plan {
        let launch = Launch {
            program: "/bin/sleep".into(),
            argv: vec!["/bin/sleep".into()],
            cwd: "/".into(),
        };
        Plan::new(s.spec.clone(), Arc::new(launch), s.port)
    }

    fn exit(code: Option<i32>, signal: Option<&str>) -> Option<ExitInfo> {
        Some(ExitInfo {
            code,
            signal: signal.map(str::to_owned),
            at_ms: 1,
        })
    }

    /// Ready is what the task set; a fresh or crashed record is not ready.
    #[test]
    fn ready_is_the_flag_of_the_task() {
        let mut s = shared("always", false, State::Online);
        assert_eq!(s.readiness(), Readiness::NotReady);
        s.ready = true;
        assert_eq!(s.readiness(), Readiness::Ready);
        assert!(s.readiness().is_done());
        let mut crashed = shared("always", false, State::WaitingRestart);
        crashed.last_exit = exit(Some(1), None);
        assert_eq!(crashed.readiness(), Readiness::NotReady);
    }

    /// A one-shot job that exited 0 has completed, also as a restored
    /// record; an exit by a signal, a failure, or a policy that restarts
    /// it is no completion.
    #[test]
    fn a_one_shot_job_that_exited_0_has_completed() {
        for policy in ["never", "on-failure"] {
            let mut job = shared(policy, false, State::Stopped);
            job.last_exit = exit(Some(0), None);
            assert_eq!(job.readiness(), Readiness::Completed, "{policy}");
            assert!(job.readiness().is_done());
            job.last_exit = exit(Some(3), None);
            assert_eq!(job.readiness(), Readiness::NotReady, "{policy}");
            job.last_exit = exit(None, Some("SIGTERM"));
            assert_eq!(job.readiness(), Readiness::NotReady, "{policy}");
            job.last_exit = None;
            assert_eq!(job.readiness(), Readiness::NotReady, "{policy}");
        }
        let mut served = shared("always", false, State::Stopped);
        served.last_exit = exit(Some(0), None);
        assert_eq!(served.readiness(), Readiness::NotReady);
        let mut errored = shared("never", false, State::Errored);
        errored.last_exit = exit(Some(0), None);
        assert_eq!(errored.readiness(), Readiness::NotReady);
    }

    /// min_uptime makes an online app without a check ready, once; with a
    /// check only its first pass does.
    #[test]
    fn min_uptime_makes_only_an_unchecked_online_app_ready() {
        assert!(becomes_ready_when_stable(&shared(
            "always",
            false,
            State::Online
        )));
        assert!(!becomes_ready_when_stable(&shared(
            "always",
            true,
            State::Online
        )));
        assert!(!becomes_ready_when_stable(&shared(
            "always",
            false,
            State::Stopping
        )));
        let mut ready = shared("always", false, State::Online);
        ready.ready = true;
        assert!(!becomes_ready_when_stable(&ready));
    }
}
