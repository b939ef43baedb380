//! State-change events (`WatchEvents`, `pmd events`): a daemon-wide
//! broadcast that instance tasks and the table publish into. A reader that
//! falls behind loses the oldest events and is told how many (broadcast
//! lag); no publisher ever waits for a reader.
//!
//! The daemon's own waits (readiness for `WaitReady` and reload,
//! `depends_on` conditions) wake on [`Changes`] instead: a signal raised
//! with every event and with every quieter change of an instance record
//! (a failed probe of a starting instance, say), which cannot lag. A
//! waiter takes it before it reads the records it waits on, so nothing
//! that happens in between is missed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::instance::{Health, Shared, State};

/// Events a reader may lag behind before it starts missing some.
const CAPACITY: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A process was spawned.
    Started,
    /// Ready: spawned, and healthy when it has a check.
    Online,
    HealthChanged,
    /// The process exited; exit code or signal set.
    Exited,
    /// A restart is coming; `detail` says why.
    Restarting,
    Errored,
    Stopped,
    Deleted,
    PortAssigned,
    /// Ready (see `Readiness`): health check passed, online for
    /// min_uptime, or a one-shot job completed.
    Ready,
    /// Log writes stopped under the disk reserve (this instance's write
    /// noticed it; they stop for every log on that file system).
    LogsPaused,
    /// Log writes resumed (free space back above the reserve).
    LogsResumed,
    /// A balanced instance joined its pool.
    PoolJoined,
    /// It left the pool (not ready, stopping).
    PoolLeft,
    /// The app's public port refused connections (about its first
    /// instance; once per outage).
    ConnectionsRefused,
    /// The app's cron_restart fired: this instance restarts now (`detail`
    /// names the schedule).
    CronRestart,
}

/// One state change of one instance, with the state after it.
#[derive(Debug, Clone)]
pub struct Event {
    pub seq: u64,
    pub at_ms: i64,
    pub id: u32,
    pub name: Arc<str>,
    pub kind: EventKind,
    pub state: State,
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub port: Option<u16>,
    pub health: Health,
    pub detail: String,
}

/// The publishing side, shared by the table and every instance task.
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
    seq: AtomicU64,
    /// Counts changes of any instance record, for [`Changes`].
    changes: watch::Sender<u64>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(CAPACITY).0,
            seq: AtomicU64::new(0),
            changes: watch::channel(0).0,
        }
    }
}

impl EventBus {
    /// Publishes an event about instance `id` in the state `shared` shows.
    /// Costs nothing but the sequence number when nobody listens.
    pub fn emit(
        &self,
        id: u32,
        name: &Arc<str>,
        kind: EventKind,
        shared: &Shared,
        detail: impl Into<String>,
    ) {
        self.touch();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        if self.tx.receiver_count() == 0 {
            return;
        }
        let exited = matches!(kind, EventKind::Exited);
        let exit = shared.last_exit.as_ref().filter(|_| exited);
        let _ = self.tx.send(Arc::new(Event {
            seq,
            at_ms: super::instance::now_ms(),
            id,
            name: name.clone(),
            kind,
            state: shared.state,
            pid: shared.pid,
            exit_code: exit.and_then(|e| e.code),
            signal: exit.and_then(|e| e.signal.clone()),
            port: shared.port,
            health: shared.health,
            detail: detail.into(),
        }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Says that an instance record changed without an event: wakes the
    /// daemon's waiters (see [`Changes`]).
    pub fn touch(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wake-ups for a waiter, counted from now: take it before reading the
    /// records it waits on.
    pub fn changes(&self) -> Changes {
        Changes(self.changes.subscribe())
    }
}

impl super::Supervisor {
    /// The event of a pause or resume of log writes under the disk
    /// reserve, about the instance whose write noticed it (none for
    /// pmdaemond.log's own writes, or when it is gone).
    pub(crate) fn log_reserve_event(&self, change: &crate::logs::reserve::ReserveChange) {
        let Some((id, name)) = &change.app else {
            return;
        };
        let shared = {
            let table = self.table();
            table
                .apps
                .iter()
                .flat_map(|a| &a.instances)
                .find(|i| i.id == *id)
                .map(|i| std::sync::Arc::clone(&i.shared))
        };
        let Some(shared) = shared else { return };
        let kind = match change.paused {
            true => EventKind::LogsPaused,
            false => EventKind::LogsResumed,
        };
        let shared = crate::sync::LockExt::locked(&*shared);
        self.inner
            .events
            .emit(*id, name, kind, &shared, change.to_string());
    }

    /// The event of a balanced port refusing connections, about the app's
    /// first instance.
    pub(crate) fn balancer_event(&self, app: &str, notice: crate::balancer::Notice) {
        let crate::balancer::Notice::Refusing(why) = notice;
        let first = {
            let table = self.table();
            table
                .app(app)
                .and_then(|a| a.instances.first())
                .map(|i| (i.id, std::sync::Arc::clone(&i.shared)))
        };
        let Some((id, shared)) = first else { return };
        let shared = crate::sync::LockExt::locked(&*shared);
        let name: std::sync::Arc<str> = std::sync::Arc::from(app);
        self.inner
            .events
            .emit(id, &name, EventKind::ConnectionsRefused, &shared, why);
    }

    /// Wake-ups on every change of an instance record from now on (see
    /// [`Changes`]): take them before reading what you wait on.
    pub fn changes(&self) -> Changes {
        self.inner.events.changes()
    }
}

/// A waiter's wake-ups: every event and every quieter record change since
/// it was taken (or since the last [`Changes::next`]) wakes it once.
pub struct Changes(watch::Receiver<u64>);

impl Changes {
    /// Waits until some instance record changed since the last call, then
    /// returns true; false once `deadline` passes first.
    pub async fn next(&mut self, deadline: Instant) -> bool {
        match tokio::time::timeout_at(deadline, self.0.changed()).await {
            Ok(Ok(())) => true,
            // The bus lives as long as the supervisor: nothing will change.
            Ok(Err(_)) => {
                tokio::time::sleep_until(deadline).await;
                false
            }
            Err(_) => false,
        }
    }
}
