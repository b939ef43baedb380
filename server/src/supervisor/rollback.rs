//! Undoing what a failed state write did not record: the other half of
//! "answered means on disk". When the write that should hold a call's
//! change fails (a full disk), the live table is brought back to the last
//! state that IS on disk (`Persister::on_disk`), which is exactly what a
//! daemon started now would make of it, so live and disk disagree no
//! longer than one failed write:
//! - instances the disk does not have (created, scaled up) are stopped
//!   through their task (the normal stop, marker sweep included: nothing is
//!   orphaned) and dropped, with the log files the daemon made for them;
//! - instances the disk has and the table does not (deleted, scaled down)
//!   are made again from their records and started if the disk says they
//!   run; the error names them, since the call that removed them fails;
//! - instances whose definition, launch or port differ from the disk's
//!   (apply replaced them) are replaced by the disk's, started as it says;
//!   a definition that differs only in the instance count is set back
//!   without a restart;
//! - instances the call started are stopped, those it stopped are started,
//!   as the disk's `desired_running` says.
//!
//! Ids are never handed out twice in one daemon life: `next_id` stays.
//! Starts skip the `depends_on` waits (the disk's apps ran together
//! before). Called by `Supervisor::durably` with the turn held.

use std::collections::HashMap;
use std::sync::Arc;

use crate::store::{AppRecord, StateFile};
use crate::sync::LockExt;

use super::Supervisor;
use super::instance::Plan;
use super::lifecycle::Action;
use super::table::{App, InstanceView};

/// What bringing the table back to the disk's state takes.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Undo {
    /// Not on disk: stopped and dropped.
    pub(super) created: Vec<u32>,
    /// On disk with another definition: dropped, then made again.
    pub(super) replaced: Vec<u32>,
    /// On disk, not in the table: made again.
    pub(super) missing: Vec<u32>,
    /// Set back to the disk's definition (only the count differs).
    pub(super) recounted: Vec<u32>,
    pub(super) start: Vec<u32>,
    pub(super) stop: Vec<u32>,
}

/// One live instance as the rollback compares it with its record.
#[derive(Debug, Clone)]
pub(super) struct Live {
    pub(super) id: u32,
    pub(super) name: String,
    pub(super) index: u32,
    pub(super) plan: Plan,
    pub(super) desired_running: bool,
}

/// Compares the live instances with the state on disk (pure: the
/// decisions of [`Supervisor::roll_back_to_disk`]).
pub(super) fn plan_undo(live: &[Live], disk: &StateFile) -> Undo {
    let mut undo = Undo::default();
    let records: HashMap<u32, (&AppRecord, &crate::store::InstanceRecord)> = disk
        .apps
        .iter()
        .flat_map(|app| app.instances.iter().map(move |r| (r.id, (app, r))))
        .collect();
    for l in live {
        let Some((app, r)) = records.get(&l.id) else {
            undo.created.push(l.id);
            continue;
        };
        let mut counted = (*l.plan.spec).clone();
        counted.instances = app.spec.instances;
        let same_definition = app.spec.name == l.name
            && r.index == l.index
            && counted == app.spec
            && *l.plan.launch == app.launch
            && l.plan.port == r.port;
        if !same_definition {
            undo.replaced.push(l.id);
            if r.desired_running {
                undo.start.push(l.id);
            }
            continue;
        }
        if l.plan.spec.instances != app.spec.instances {
            undo.recounted.push(l.id);
        }
        match (l.desired_running, r.desired_running) {
            (false, true) => undo.start.push(l.id),
            (true, false) => undo.stop.push(l.id),
            _ => {}
        }
    }
    for (&id, (_, r)) in &records {
        if !live.iter().any(|l| l.id == id) {
            undo.missing.push(id);
            if r.desired_running {
                undo.start.push(id);
            }
        }
    }
    undo.missing.sort_unstable();
    undo.start.sort_unstable();
    undo
}

impl Supervisor {
    /// Brings the table back to the last state on disk (see the module
    /// header). Returns the instances a call had removed that are back,
    /// as `NAME (id N)`, for the error that call gets.
    pub(super) async fn roll_back_to_disk(&self) -> Vec<String> {
        let Some(disk) = self.inner.persister.on_disk() else {
            tracing::error!(
                "a state write failed before any state was read or written: nothing to go back to"
            );
            return Vec::new();
        };
        let live: Vec<Live> = {
            let table = self.table();
            table
                .apps
                .iter()
                .flat_map(|app| {
                    app.instances.iter().map(|i| Live {
                        id: i.id,
                        name: app.name.clone(),
                        index: i.index,
                        plan: i.plan.locked().clone(),
                        desired_running: i.shared.locked().desired_running,
                    })
                })
                .collect()
        };
        let undo = plan_undo(&live, &disk);
        if undo == Undo::default() {
            return Vec::new();
        }
        tracing::warn!(
            created = ?undo.created,
            replaced = ?undo.replaced,
            missing = ?undo.missing,
            start = ?undo.start,
            stop = ?undo.stop,
            "a state write failed: going back to the state on disk"
        );
        self.set_counts_back(&disk, &undo.recounted);
        if !undo.stop.is_empty() {
            let stop = &undo.stop;
            let picked = |table: &super::Table| pick_ids(table, stop);
            if let Err(e) = self.act_on(picked, Action::Stop).await {
                tracing::warn!(error = %e, "cannot stop what a failed call started");
            }
        }
        let created_views: Vec<InstanceView> = undo
            .created
            .iter()
            .filter_map(|&id| self.views(&pmdaemon_proto::Target::Id(id)).ok())
            .flatten()
            .collect();
        let dropped: Vec<u32> = undo.created.iter().chain(&undo.replaced).copied().collect();
        if !dropped.is_empty() {
            self.remove(&dropped).await;
            self.remove_logs(&created_views);
            self.announce_deleted(&created_views);
        }
        let remade: Vec<u32> = undo.replaced.iter().chain(&undo.missing).copied().collect();
        let kept = self.make_again(&disk, &remade, &undo.missing);
        if !undo.start.is_empty() {
            let start = &undo.start;
            let picked = |table: &super::Table| pick_ids(table, start);
            match self.act_on(picked, Action::Start).await {
                Ok(results) => {
                    if let Err(e) = super::lifecycle::first_error(results) {
                        tracing::warn!(error = %e, "cannot start again what a failed call stopped");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start again what a failed call stopped")
                }
            }
        }
        self.inner.persister.request();
        kept
    }

    /// Sets the definition of these instances back to the disk's (which
    /// differs only in the instance count).
    fn set_counts_back(&self, disk: &StateFile, ids: &[u32]) {
        let table = self.table();
        for app in &disk.apps {
            let spec = Arc::new(app.spec.clone());
            for inst in table.apps.iter().flat_map(|a| &a.instances) {
                if ids.contains(&inst.id) && app.instances.iter().any(|r| r.id == inst.id) {
                    inst.plan.locked().spec = spec.clone();
                }
            }
        }
    }

    /// Makes the instances `ids` again from their records on disk (not
    /// started). Returns those of `missing` that are back, as `NAME (id
    /// N)`.
    fn make_again(&self, disk: &StateFile, ids: &[u32], missing: &[u32]) -> Vec<String> {
        let mut kept = Vec::new();
        let mut table = self.table();
        for rec in &disk.apps {
            let records: Vec<_> = rec
                .instances
                .iter()
                .filter(|r| ids.contains(&r.id))
                .collect();
            if records.is_empty() {
                continue;
            }
            let spec = Arc::new(rec.spec.clone());
            let launch = Arc::new(rec.launch.clone());
            let mut made = Vec::new();
            for r in records {
                let plan = Plan::new(spec.clone(), launch.clone(), r.port);
                match self.new_instance(r.id, r.index, plan, Some(r), r.restarts) {
                    Ok(inst) => {
                        if missing.contains(&r.id) {
                            kept.push(format!("{} (id {})", rec.spec.name, r.id));
                        }
                        made.push(inst);
                    }
                    Err(e) => tracing::error!(
                        app = %rec.spec.name, id = r.id, error = %e,
                        "cannot make an instance of the state on disk again"
                    ),
                }
            }
            table.next_id = table
                .next_id
                .max(made.iter().map(|i| i.id + 1).max().unwrap_or(0));
            let watcher = self.start_watcher(&spec);
            let cron = self.start_cron(&spec);
            match table.app_mut(&rec.spec.name) {
                Some(app) => {
                    app.instances.extend(made);
                    app.instances.sort_by_key(|i| i.index);
                    app.watcher = watcher;
                    app.cron = cron;
                }
                None if !made.is_empty() => table.apps.push(App {
                    name: rec.spec.name.clone(),
                    created_at_ms: rec.created_at_ms,
                    instances: made,
                    watcher,
                    cron,
                }),
                None => {}
            }
        }
        // The disk's order (creation order) again.
        let order: HashMap<&str, usize> = disk
            .apps
            .iter()
            .enumerate()
            .map(|(n, a)| (a.spec.name.as_str(), n))
            .collect();
        table
            .apps
            .sort_by_key(|a| order.get(a.name.as_str()).copied().unwrap_or(usize::MAX));
        kept
    }
}

/// The (app, instance) positions of the instances with these ids.
fn pick_ids(table: &super::Table, ids: &[u32]) -> crate::error::Result<Vec<(usize, usize)>> {
    Ok(table
        .apps
        .iter()
        .enumerate()
        .flat_map(|(a, app)| {
            app.instances
                .iter()
                .enumerate()
                .filter(|(_, i)| ids.contains(&i.id))
                .map(move |(n, _)| (a, n))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::InstanceRecord;
    use crate::supervisor::spec::{AppSpec, Launch};

    fn spec(name: &str, instances: u32, args: &str) -> AppSpec {
        serde_json::from_value(serde_json::json!({
            "name": name, "script": "sleep", "args": [args], "interpreter": null,
            "interpreter_args": [], "cwd": "/tmp", "env": {}, "autorestart": "always",
            "max_restarts": 15, "min_uptime_ms": 1000, "restart_delay_ms": 0,
            "exp_backoff_initial_ms": 100, "exp_backoff_max_ms": 30000,
            "kill_timeout_ms": 5000, "stop_signal": "SIGTERM", "time": false,
            "log_max_bytes": 10485760, "log_max_files": 5, "instances": instances,
            "port": null, "port_env": "PORT", "watch": false, "watch_paths": [],
            "ignore_watch": [], "watch_delay_ms": 1000, "out_file": null,
            "error_file": null, "health_check": null, "max_memory_bytes": null,
            "depends_on": [], "start_limit_burst": 60, "start_limit_interval_ms": 60000
        }))
        .unwrap()
    }

    fn launch() -> Launch {
        Launch {
            program: "/usr/bin/sleep".into(),
            argv: vec!["/usr/bin/sleep".into(), "1000".into()],
            cwd: "/tmp".into(),
        }
    }

    fn record(id: u32, index: u32, desired_running: bool) -> InstanceRecord {
        InstanceRecord {
            id,
            index,
            desired_running,
            state: "online".into(),
            pid: None,
            start_ticks: None,
            boot_id: None,
            restarts: 0,
            unstable_restarts: 0,
            last_exit_code: None,
            last_exit_signal: None,
            last_exit_at_ms: None,
            reason: String::new(),
            port: None,
        }
    }

    /// On disk: app `a` (ids 0, 1; 0 running, 1 stopped), app `d` (id 2,
    /// running).
    fn disk() -> StateFile {
        StateFile {
            version: crate::store::FORMAT_VERSION,
            next_id: 3,
            apps: vec![
                AppRecord {
                    spec: spec("a", 2, "1000"),
                    launch: launch(),
                    created_at_ms: 0,
                    instances: vec![record(0, 0, true), record(1, 1, false)],
                },
                AppRecord {
                    spec: spec("d", 1, "1000"),
                    launch: launch(),
                    created_at_ms: 0,
                    instances: vec![record(2, 0, true)],
                },
            ],
        }
    }

    fn live(id: u32, name: &str, index: u32, spec: AppSpec, desired_running: bool) -> Live {
        Live {
            id,
            name: name.into(),
            index,
            plan: Plan::new(Arc::new(spec), Arc::new(launch()), None),
            desired_running,
        }
    }

    #[test]
    fn a_table_like_the_disk_needs_nothing() {
        let table = [
            live(0, "a", 0, spec("a", 2, "1000"), true),
            live(1, "a", 1, spec("a", 2, "1000"), false),
            live(2, "d", 0, spec("d", 1, "1000"), true),
        ];
        assert_eq!(plan_undo(&table, &disk()), Undo::default());
    }

    #[test]
    fn created_started_stopped_and_deleted_are_undone() {
        let table = [
            // Stopped by the call: started again.
            live(0, "a", 0, spec("a", 2, "1000"), false),
            // Started by the call: stopped again.
            live(1, "a", 1, spec("a", 2, "1000"), true),
            // `d` deleted by the call: made again and started.
            // Created by the call: dropped.
            live(3, "new", 0, spec("new", 1, "1000"), true),
        ];
        let undo = plan_undo(&table, &disk());
        assert_eq!(undo.created, [3]);
        assert_eq!(undo.missing, [2]);
        assert_eq!(undo.start, [0, 2]);
        assert_eq!(undo.stop, [1]);
        assert!(undo.replaced.is_empty() && undo.recounted.is_empty());
    }

    #[test]
    fn a_new_definition_is_replaced_and_a_new_count_set_back() {
        let table = [
            // Scaled from 2 to 1 (id 1 gone): only the count differs.
            live(0, "a", 0, spec("a", 1, "1000"), true),
            // Applied with other args: replaced by the disk's.
            live(2, "d", 0, spec("d", 1, "2000"), true),
        ];
        let undo = plan_undo(&table, &disk());
        assert_eq!(undo.recounted, [0]);
        assert_eq!(undo.missing, [1]);
        assert_eq!(undo.replaced, [2]);
        // id 1 is stopped on disk: made again, not started.
        assert_eq!(undo.start, [2]);
        assert!(undo.created.is_empty() && undo.stop.is_empty());
    }
}
