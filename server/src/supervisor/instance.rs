//! One instance's lifecycle: a tokio task per instance that owns the child
//! process and runs the state machine
//!
//! ```text
//!   idle (stopped/errored) --start--> running --exit--> waiting-restart --delay--> running
//!                                        |                    |
//!                                        +--stop--> stopping --+--> idle
//! ```
//!
//! The task is the only writer of the instance's [`Shared`] record (readers:
//! the table, for list/describe and persistence) and the only owner of the
//! [`Child`], so exits and commands are handled in one place without races.
//! Commands arrive on an unbounded mpsc channel whose sender lives in the
//! supervisor's table; the task ends on `Cmd::Exit` or when the sender is
//! dropped (after stopping its process).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::process;
use super::spec::{AppSpec, Autorestart, Launch};
use crate::error::{Error, Result};
use crate::logs::{self, LogSink};

/// Lifecycle states, as in DESIGN.md.
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

    pub fn word(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Online => "online",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Errored => "errored",
            State::WaitingRestart => "waiting-restart",
        }
    }

    pub fn from_word(word: &str) -> Option<Self> {
        [
            State::Starting,
            State::Online,
            State::Stopping,
            State::Stopped,
            State::Errored,
            State::WaitingRestart,
        ]
        .into_iter()
        .find(|s| s.word() == word)
    }
}

/// How the last run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<String>,
    pub at_ms: i64,
}

/// The instance record shared between its task (the only writer) and the
/// table (readers). Guarded by a `std::sync::Mutex` that is never held
/// across an await.
#[derive(Debug, Clone)]
pub struct Shared {
    pub spec: Arc<AppSpec>,
    pub launch: Arc<Launch>,
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
    /// The port assigned to this instance (persisted).
    pub port: Option<u16>,
    /// `restart --port`: replaces `port` until the next stop or plain
    /// restart; never persisted.
    pub port_override: Option<u16>,
}

impl Shared {
    /// The port the current (or next) run gets.
    pub fn effective_port(&self) -> Option<u16> {
        self.port_override.or(self.port)
    }
}

impl Shared {
    pub fn new(spec: Arc<AppSpec>, launch: Arc<Launch>) -> Self {
        Shared {
            spec,
            launch,
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
            port: None,
            port_override: None,
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
    /// Stop the process group; the instance stays, idle.
    Stop(oneshot::Sender<()>),
    /// Stop and end the task (delete, daemon shutdown).
    Exit(oneshot::Sender<()>),
}

/// What the task needs besides its command channel.
pub struct Ctx {
    pub id: u32,
    pub index: u32,
    pub name: Arc<str>,
    pub shared: Arc<Mutex<Shared>>,
    pub out: Arc<LogSink>,
    pub err: Arc<LogSink>,
    /// Called after every change worth persisting (spawn, exit, stop).
    pub changed: Arc<dyn Fn() + Send + Sync>,
}

struct Run {
    child: Child,
    pid: u32,
    started: Instant,
}

enum Phase {
    Idle,
    Running(Run),
    Waiting(Instant),
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Ctx {
    fn update<R>(&self, f: impl FnOnce(&mut Shared) -> R) -> R {
        let r = f(&mut self.shared.lock().unwrap_or_else(|p| p.into_inner()));
        (self.changed)();
        r
    }

    fn spec(&self) -> (Arc<AppSpec>, Arc<Launch>) {
        let s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        (s.spec.clone(), s.launch.clone())
    }

    fn port(&self) -> Option<u16> {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .effective_port()
    }

    /// Spawns the process, wires its pipes to the log sinks and marks the
    /// instance online (no health checks yet: online once spawned).
    fn spawn(&self) -> std::io::Result<Run> {
        let (spec, launch) = self.spec();
        let index = self.index.to_string();
        let mut env = vec![
            ("PMD_APP_NAME".to_string(), self.name.to_string()),
            ("PMD_ID".to_string(), self.id.to_string()),
            ("PMD_INSTANCE_ID".to_string(), index.clone()),
            ("NODE_APP_INSTANCE".to_string(), index),
        ];
        env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(port) = self.port() {
            env.push((spec.port_env.clone(), port.to_string()));
        }
        let mut child = process::spawn(&launch, &env)?;
        let pid = child.id().unwrap_or(0);
        if let Some(out) = child.stdout.take() {
            logs::capture(out, self.out.clone());
        }
        if let Some(err) = child.stderr.take() {
            logs::capture(err, self.err.clone());
        }
        let start_ticks = process::read_stat(pid).map(|s| s.start_ticks);
        tracing::info!(app = %self.name, id = self.id, pid, "spawned");
        self.update(|s| {
            s.state = State::Online;
            s.pid = Some(pid);
            s.start_ticks = start_ticks;
            s.started_at_ms = Some(now_ms());
            s.next_restart_at_ms = None;
            s.reason.clear();
        });
        Ok(Run {
            child,
            pid,
            started: Instant::now(),
        })
    }

    /// Stops a running process: stop signal to the group, SIGKILL after
    /// kill_timeout, and nothing of the group left alive on return.
    async fn stop(&self, run: &mut Run) {
        let (spec, _) = self.spec();
        let signal = spec.stop_signal();
        let kill_timeout = spec.kill_timeout();
        self.update(|s| s.state = State::Stopping);
        let deadline = Instant::now() + kill_timeout;
        process::signal_group(run.pid, signal);
        let status = match tokio::time::timeout_at(deadline, run.child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                tracing::warn!(app = %self.name, id = self.id, pid = run.pid, ?kill_timeout, "did not stop in time; sending SIGKILL");
                process::signal_group(run.pid, Signal::SIGKILL);
                run.child.wait().await
            }
        };
        // The leader is gone; members of its group that outlive it get the
        // rest of the kill timeout, then SIGKILL.
        let remaining = deadline.saturating_duration_since(Instant::now());
        process::drain_group(run.pid, signal, remaining).await;
        let exit = exit_info(status);
        tracing::info!(app = %self.name, id = self.id, pid = run.pid, ?exit, "stopped");
        self.update(|s| {
            s.state = State::Stopped;
            s.pid = None;
            s.start_ticks = None;
            s.started_at_ms = None;
            s.next_restart_at_ms = None;
            s.last_exit = Some(exit);
            s.reason = "stopped by request".into();
        });
    }

    /// Applies the restart policy after the process exited on its own (or
    /// could not be spawned) and says what comes next.
    fn after_exit(
        &self,
        exit: ExitInfo,
        ran_for: Option<Duration>,
        spawn_error: Option<String>,
    ) -> Phase {
        let (spec, _) = self.spec();
        let failed = spawn_error.is_some() || exit.code != Some(0);
        let stable = ran_for.is_some_and(|d| d >= spec.min_uptime());
        let how = match (&spawn_error, exit.code, &exit.signal) {
            (Some(e), _, _) => format!("could not be spawned: {e}"),
            (None, _, Some(sig)) => format!("killed by {sig}"),
            (None, Some(code), None) => format!("exited with code {code}"),
            (None, None, None) => "exited".to_string(),
        };
        let restart = match spec.autorestart {
            Autorestart::Always => true,
            Autorestart::OnFailure => failed,
            Autorestart::Never => false,
        };
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.pid = None;
        shared.start_ticks = None;
        shared.started_at_ms = None;
        shared.last_exit = Some(exit);
        shared.unstable_restarts = if stable {
            0
        } else {
            shared.unstable_restarts + 1
        };
        let phase = if !restart {
            shared.state = if failed {
                State::Errored
            } else {
                State::Stopped
            };
            shared.desired_running = false;
            shared.reason = format!("{how}; autorestart is {}", spec.autorestart.word());
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
            shared.next_restart_at_ms = Some(now_ms() + delay.as_millis() as i64);
            shared.reason = format!("{how}; restarting in {} ms", delay.as_millis());
            Phase::Waiting(Instant::now() + delay)
        };
        tracing::info!(app = %self.name, id = self.id, state = shared.state.word(), reason = %shared.reason, "exited");
        drop(shared);
        (self.changed)();
        phase
    }

    /// Spawns for a (re)start; a failure goes through the restart policy
    /// like a crash would, so it ends in `errored`, never in a loop.
    fn spawn_or_fail(&self) -> (Phase, Result<()>) {
        match self.spawn() {
            Ok(run) => (Phase::Running(run), Ok(())),
            Err(e) => {
                let (_, launch) = self.spec();
                let msg = format!("cannot execute {}: {e}", launch.program.display());
                tracing::warn!(app = %self.name, id = self.id, "{msg}");
                let exit = ExitInfo {
                    code: None,
                    signal: None,
                    at_ms: now_ms(),
                };
                let phase = self.after_exit(exit, None, Some(e.to_string()));
                (phase, Err(Error::FailedPrecondition(msg)))
            }
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
    let mut phase = Phase::Idle;
    loop {
        phase = match phase {
            Phase::Idle => match rx.recv().await {
                Some(Cmd::Start(reply)) | Some(Cmd::Restart(reply)) => {
                    // A start by hand gives a crash-looped app a fresh budget.
                    ctx.update(|s| {
                        s.unstable_restarts = 0;
                        s.desired_running = true;
                    });
                    let (next, result) = ctx.spawn_or_fail();
                    let _ = reply.send(result);
                    next
                }
                Some(Cmd::Stop(reply)) => {
                    ctx.set_desired(false);
                    let _ = reply.send(());
                    Phase::Idle
                }
                Some(Cmd::Exit(reply)) => {
                    let _ = reply.send(());
                    return;
                }
                None => return,
            },
            Phase::Running(mut run) => {
                let cmd = tokio::select! {
                    status = run.child.wait() => {
                        let ran_for = run.started.elapsed();
                        // Background workers of the exited leader would be
                        // orphans: end them without delaying the restart.
                        let (spec, _) = ctx.spec();
                        tokio::spawn(process::drain_group(run.pid, spec.stop_signal(), spec.kill_timeout()));
                        let next = ctx.after_exit(exit_info(status), Some(ran_for), None);
                        phase = next;
                        continue;
                    }
                    cmd = rx.recv() => cmd,
                };
                match cmd {
                    Some(Cmd::Start(reply)) => {
                        let _ = reply.send(Ok(()));
                        Phase::Running(run)
                    }
                    Some(Cmd::Restart(reply)) => {
                        ctx.stop(&mut run).await;
                        ctx.count_restart(true);
                        ctx.set_desired(true);
                        let (next, result) = ctx.spawn_or_fail();
                        let _ = reply.send(result);
                        next
                    }
                    Some(Cmd::Stop(reply)) => {
                        ctx.set_desired(false);
                        ctx.stop(&mut run).await;
                        let _ = reply.send(());
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
                ctx.spawn_or_fail().0
            }
            Phase::Waiting(until) => {
                let cmd = tokio::select! {
                    _ = tokio::time::sleep_until(until) => {
                        ctx.count_restart(false);
                        phase = ctx.spawn_or_fail().0;
                        continue;
                    }
                    cmd = rx.recv() => cmd,
                };
                match cmd {
                    Some(Cmd::Start(reply)) | Some(Cmd::Restart(reply)) => {
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
                        });
                        let _ = reply.send(());
                        Phase::Idle
                    }
                    Some(Cmd::Exit(reply)) => {
                        let _ = reply.send(());
                        return;
                    }
                    None => return,
                }
            }
        };
    }
}
