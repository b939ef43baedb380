//! State on disk: the snapshot of the table (`state.json`), the writer task
//! that coalesces change requests into atomic writes and reports how each
//! went (spending the state reserve on a full disk), `pmd save`
//! (`dump.json`) and `pmd resurrect`, reading the state at daemon start
//! (`state.json`, else `state.json.bak`, with the notices that say so), and
//! `restore`, which terminates what a crashed daemon left running before
//! starting the apps again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::error::{Error, Result};
use crate::store::{self, AppRecord, InstanceRecord, Persister, StateFile};
use crate::sync::LockExt;

use super::apply::{ApplyMode, ApplyOptions};
use super::instance::{Plan, State};
use super::lifecycle::Action;
use super::spec::{self, AppSpec};
use super::table::{App, InstanceView};
use super::{Inner, Supervisor, process};

/// The recorded leader of an instance of a previous daemon life that still
/// runs (same pid, start time and boot id): its whole group is drained
/// (see `Supervisor::restore`). What a leader that is gone left behind is
/// found by the marker instead.
pub(super) struct Leftover {
    pgid: u32,
    signal: nix::sys::signal::Signal,
    grace: std::time::Duration,
}

pub(super) fn snapshot(inner: &Inner) -> StateFile {
    let table = inner.table.locked();
    let apps = table
        .apps
        .iter()
        .filter_map(|app| {
            let first = app.instances.first()?.plan.locked().clone();
            let instances = app
                .instances
                .iter()
                .map(|i| {
                    let port = i.plan.locked().port;
                    let s = i.shared.locked();
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
                        port,
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
pub(super) const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(5);

/// The writer task: one atomic write of the latest snapshot per batch of
/// change requests, which tells the [`Persister`] how it went (the state
/// it wrote, or why it could not). On a full disk it spends the reserve
/// (`store/reserve.rs`) and says so in the daemon log. Ends when the
/// supervisor is gone.
pub(super) async fn persist_loop(persister: Arc<Persister>, inner: Weak<Inner>) {
    // The reserve was spent and not made again yet.
    let mut reserve_spent = false;
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
        let state = Arc::new(snapshot(&strong));
        let path = strong.home.join(store::STATE_FILE);
        let reserve = store::Reserve::in_dir(&strong.home);
        drop(strong);
        let (to_write, at) = (state.clone(), path.clone());
        let result = tokio::task::spawn_blocking(move || {
            store::write_state_with_reserve(&at, &to_write, &reserve)
        })
        .await
        .unwrap_or_else(|e| {
            Err(std::io::Error::other(format!(
                "the state writer panicked: {e}"
            )))
        });
        let outcome = match result {
            Ok((_, store::ReserveUse::Spent)) => {
                reserve_spent = true;
                tracing::warn!(
                    file = %path.display(),
                    reserve = store::RESERVE_FILE,
                    "the disk is full: the state reserve was deleted to write the state; free some space (it is made again once there is room)"
                );
                Ok(state)
            }
            Ok((_, store::ReserveUse::Remade)) if reserve_spent => {
                reserve_spent = false;
                tracing::info!(reserve = store::RESERVE_FILE, "the state reserve is back");
                Ok(state)
            }
            Ok(_) => Ok(state),
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "cannot write the state");
                Err(store::WriteFailure {
                    path,
                    error: Arc::new(e),
                })
            }
        };
        persister.mark_done(generation, outcome);
    }
}

impl Supervisor {
    /// The table as persisted.
    pub(super) fn snapshot(&self) -> StateFile {
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
    pub(super) async fn resurrect_dump(
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
                dependency: super::DEFAULT_DEPENDENCY_TIMEOUT,
                ready: super::DEFAULT_READY_TIMEOUT,
                path_var: path_var.map(Into::into),
                update_env: false,
            };
            for (name, result) in self.apply_set(fresh, ApplyMode::Start, options).await? {
                match result {
                    Ok(applied) => started.extend(applied.views),
                    Err(e) => failed.push(format!("{name}: {e}")),
                }
            }
        }
        Ok((started, skipped, failed))
    }

    /// Loads the persisted table at daemon start (an empty one when there
    /// is no usable state file): terminates what a previous daemon life
    /// left running, then starts the instances that should run. Returns
    /// once the table is filled; the cleanup and the starts continue in the
    /// background.
    ///
    /// What is left running is found twice over: by the recorded leaders
    /// (same pid, start time and boot id: their groups are drained with
    /// their apps' stop signals), and by the marker in the environment
    /// (`process::marked`), which also finds what no record leads to: a
    /// process spawned just before a crash and not yet on disk, the
    /// processes of a state file that could not be read, children that
    /// escaped their group, probe shells. Where runs get cgroups, every run
    /// cgroup left in this home's directory is a previous life's too, and
    /// is ended as a whole (its app's stop signal, then `cgroup.kill`) and
    /// removed: that also finds a process that left its group and cleared
    /// its environment. Restore never adopts a previous life's process, so
    /// the state accounts for none of them.
    ///
    /// The file is checked like API input, entry by entry: an app whose
    /// definition is invalid, whose name an earlier entry has, or one of
    /// whose ids is taken (a hand-edited file) is not loaded; each says why
    /// in the returned notices.
    ///
    /// `running_only` (`pmdaemond run FILE`, whose file is the container's
    /// source of truth): only these apps are started again; every other
    /// app of the state comes back stopped, its reason saying why, so a
    /// persistent home's old apps are listed but never run unasked.
    pub fn restore(
        &self,
        state: StateFile,
        running_only: Option<&std::collections::HashSet<String>>,
    ) -> Result<Vec<String>> {
        let mut notices = Vec::new();
        let mut names = std::collections::HashSet::new();
        let mut ids = std::collections::HashSet::new();
        // Before anything of this life runs (the listener does not serve
        // yet): every marked process is a previous life's.
        let strays = process::marked(&self.inner.home);
        let stale_cgroups = self
            .inner
            .cgroups
            .as_ref()
            .map(|tree| tree.stale())
            .unwrap_or_default();
        let mut how_to_end: HashMap<u32, (Signal, Duration)> = HashMap::new();
        let mut leftovers = Vec::new();
        let mut to_start = Vec::new();
        {
            let mut table = self.table();
            table.next_id = state.next_id;
            for mut rec in state.apps {
                if running_only.is_some_and(|names| !names.contains(&rec.spec.name)) {
                    for r in &mut rec.instances {
                        r.desired_running = false;
                        r.state = State::Stopped.word().to_owned();
                        r.reason = "not in the file of `pmdaemond run`".to_owned();
                    }
                }
                let refusal = match rec.spec.validate() {
                    Err(e) => Some(e.to_string()),
                    Ok(()) if names.contains(&rec.spec.name) => {
                        Some("an earlier entry has the same name".to_owned())
                    }
                    Ok(()) => rec
                        .instances
                        .iter()
                        .enumerate()
                        .find(|&(n, r)| {
                            ids.contains(&r.id) || rec.instances[..n].iter().any(|o| o.id == r.id)
                        })
                        .map(|(_, r)| format!("id {} is already taken", r.id)),
                };
                if let Some(why) = refusal {
                    let notice = format!("state file: app {:?} not loaded: {why}", rec.spec.name);
                    tracing::error!("{notice}");
                    notices.push(notice);
                    continue;
                }
                names.insert(rec.spec.name.clone());
                ids.extend(rec.instances.iter().map(|r| r.id));
                let spec = Arc::new(rec.spec);
                let launch = Arc::new(rec.launch);
                let mut instances = Vec::new();
                for r in &rec.instances {
                    how_to_end.insert(r.id, (spec.stop_signal(), spec.kill_timeout()));
                    if let (Some(pid), Some(ticks), Some(boot)) = (r.pid, r.start_ticks, &r.boot_id)
                        && process::is_same_process(pid, ticks, boot, &self.inner.boot_id)
                    {
                        leftovers.push(Leftover {
                            pgid: pid,
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
                        Plan::new(spec.clone(), launch.clone(), r.port),
                        Some(r),
                        0,
                    )?);
                }
                if !instances.is_empty() {
                    table.apps.push(App {
                        name: spec.name.clone(),
                        created_at_ms: rec.created_at_ms,
                        instances,
                        watcher: self.start_watcher(&spec),
                        cron: self.start_cron(&spec),
                    });
                }
            }
        }
        // What a failed write goes back to (see `rollback.rs`) until the
        // first write: the table as read.
        self.inner.persister.set_on_disk(snapshot(&self.inner));
        let sup = self.clone();
        // In the background, but as a serialized operation: no scale or
        // delete may walk the table while it is being brought back.
        tokio::spawn(async move {
            let sup = &sup;
            let bring_back = async move {
                let by_marker = async {
                    drain_leftovers(leftovers).await;
                    end_strays(&strays, &how_to_end).await;
                };
                tokio::join!(by_marker, end_stale_cgroups(stale_cgroups, &how_to_end));
                sup.in_levels(&to_start, Action::Start, super::DEFAULT_DEPENDENCY_TIMEOUT)
                    .await
            };
            if let Err(e) = sup.serialized(bring_back).await {
                tracing::warn!(error = %e, "cannot restart every app from state");
            }
        });
        Ok(notices)
    }
}

/// Reads the state at daemon start from `home`: `state.json`, or when it
/// cannot be used, `state.json.bak` (the state before its last replace);
/// each file that cannot be used is moved aside. Returns the state to
/// restore (empty when there is none) and the notices for `pmd` (Ping).
pub fn load_state(home: &std::path::Path) -> (StateFile, Vec<String>) {
    let path = home.join(store::STATE_FILE);
    let report = store::load_with_backup(&path);
    let mut notices = Vec::new();
    for (n, bad) in report.unusable.iter().enumerate() {
        let next = match (n, &report.from_backup) {
            (0, Some(backup)) => format!(
                "the daemon starts from its backup {} (the state before the last change)",
                backup.display()
            ),
            (0, None) if report.unusable.len() == 1 => {
                "there is no backup, so the daemon starts with no apps (what the previous daemon left running is stopped). Inspect it, or `pmd resurrect` from a dump".to_owned()
            }
            (0, None) => "its backup is tried".to_owned(),
            _ => "the daemon starts with no apps (what the previous daemon left running is stopped). Inspect them, or `pmd resurrect` from a dump".to_owned(),
        };
        let notice = format!(
            "state file {} is unusable ({}); it was moved to {} and {next}",
            bad.path.display(),
            bad.error,
            bad.moved_to.display()
        );
        tracing::error!("{notice}");
        notices.push(notice);
    }
    let state = report.state.unwrap_or_else(|| StateFile {
        version: store::FORMAT_VERSION,
        next_id: 0,
        apps: Vec::new(),
    });
    (state, notices)
}

/// Drains the groups of a crashed daemon's recorded leaders that still
/// run, all at once, and waits until they are gone.
async fn drain_leftovers(leftovers: Vec<Leftover>) {
    if leftovers.is_empty() {
        return;
    }
    tracing::warn!(
        count = leftovers.len(),
        "terminating processes left by a previous daemon"
    );
    let drains = leftovers
        .into_iter()
        .map(|l| process::drain_group(l.pgid, l.signal, l.grace));
    futures_util::future::join_all(drains).await;
}

/// Ends what the run cgroups a previous daemon life left hold and removes
/// them, each with its app's stop signal and kill timeout when its instance
/// is known (`how_to_end`, by id), else SIGTERM and the default kill
/// timeout, then `cgroup.kill`; all at once.
async fn end_stale_cgroups(
    stale: Vec<super::cgroup::Stale>,
    how_to_end: &HashMap<u32, (Signal, Duration)>,
) {
    if stale.is_empty() {
        return;
    }
    let populated = stale.iter().filter(|s| s.cgroup.populated()).count();
    if populated > 0 {
        tracing::warn!(
            count = populated,
            "terminating processes in cgroups that a previous daemon life left"
        );
    }
    let default = (
        Signal::SIGTERM,
        Duration::from_millis(pmdaemon_proto::DEFAULT_KILL_TIMEOUT_MS),
    );
    let ends = stale.into_iter().map(|s| {
        let (signal, grace) =
            s.id.and_then(|id| how_to_end.get(&id).copied())
                .unwrap_or(default);
        s.cgroup.end(signal, grace)
    });
    futures_util::future::join_all(ends).await;
}

/// Ends the marked processes a previous daemon life left (`strays`), each
/// with its app's stop signal and kill timeout when its instance is known
/// (`how_to_end`, by id), else SIGTERM and the default kill timeout; all at
/// once, and waits until they are gone.
async fn end_strays(strays: &[process::Marked], how_to_end: &HashMap<u32, (Signal, Duration)>) {
    let alive: Vec<&process::Marked> = strays
        .iter()
        .filter(|m| process::read_stat(m.pid).is_some_and(|s| s.start_ticks == m.start_ticks))
        .collect();
    if alive.is_empty() {
        return;
    }
    tracing::warn!(
        count = alive.len(),
        pids = ?alive.iter().map(|m| m.pid).collect::<Vec<_>>(),
        "terminating processes of this home that a previous daemon life left running"
    );
    let default = (
        Signal::SIGTERM,
        Duration::from_millis(pmdaemon_proto::DEFAULT_KILL_TIMEOUT_MS),
    );
    let mut by_how: HashMap<(Signal, Duration), Vec<(u32, u64)>> = HashMap::new();
    for m in alive {
        let how = how_to_end.get(&m.id).copied().unwrap_or(default);
        by_how.entry(how).or_default().push(m.ident());
    }
    let ends = by_how
        .into_iter()
        .map(|((signal, grace), procs)| async move {
            process::end_all(&procs, signal, grace).await;
        });
    futures_util::future::join_all(ends).await;
}
