//! The process table and selection: apps, their instances (the command
//! sender of each instance task, its `Shared` record and log sinks), which
//! instances a [`Target`] selects, and read-only copies of them
//! ([`InstanceView`]) for the API. The table lives in a
//! `std::sync::Mutex` owned by the handle (`mod.rs`), never held across an
//! await.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pmdaemon_proto::Target;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::logs::{LogSink, Stream};
use crate::ports::Claim;
use crate::sync::LockExt;

use super::Supervisor;
use super::instance::{Cmd, Plan, Shared};
use super::spec::AppSpec;

/// One log stream of one instance: (id, app name, stream, sink).
pub type SinkRef = (u32, Arc<str>, Stream, Arc<LogSink>);

/// A read-only copy of one instance for the API.
#[derive(Debug, Clone)]
pub struct InstanceView {
    pub id: u32,
    pub index: u32,
    pub name: String,
    /// What its task reports.
    pub shared: Shared,
    /// What its next run uses.
    pub plan: Plan,
    pub created_at_ms: i64,
    pub out_log: PathBuf,
    pub err_log: PathBuf,
    /// The combined file (PM2's `log_file`), if the app has one.
    pub log: Option<PathBuf>,
    /// Latest CPU/memory sample while running.
    pub sample: Option<crate::metrics::Sample>,
    /// A balanced app's public side and this instance's part of it.
    pub balance: Option<(crate::balancer::PoolStatus, crate::balancer::InstanceStatus)>,
    /// When the app's cron_restart fires next, while this instance should
    /// run (a stopped one is not restarted by it).
    pub next_cron_restart_at_ms: Option<i64>,
}

/// An instance as the table holds it.
pub(super) struct Instance {
    pub(super) id: u32,
    pub(super) index: u32,
    /// Written by the instance task only.
    pub(super) shared: Arc<Mutex<Shared>>,
    /// Written by the table only (under its lock), read by the task.
    pub(super) plan: Arc<Mutex<Plan>>,
    /// To the instance task; closing it (drop) stops the task.
    pub(super) cmd: mpsc::UnboundedSender<Cmd>,
    pub(super) out: Arc<LogSink>,
    pub(super) err: Arc<LogSink>,
}

pub(super) struct App {
    pub(super) name: String,
    pub(super) created_at_ms: i64,
    /// In index order.
    pub(super) instances: Vec<Instance>,
    /// Restarts the app on file changes while `watch` is on; dropping it
    /// stops the watcher.
    pub(super) watcher: Option<crate::watch::WatchHandle>,
    /// Restarts the app on its `cron_restart` schedule; dropping it stops
    /// the timer.
    pub(super) cron: Option<super::cron::CronTimer>,
}

impl App {
    /// The app's definition (its instances share one).
    pub(super) fn spec(&self) -> Option<Arc<AppSpec>> {
        Some(self.instances.first()?.plan.locked().spec.clone())
    }

    /// Each instance's own assigned port, in index order (no overrides):
    /// what `ports::assign` keeps position by position.
    pub(super) fn assigned_ports(&self) -> Vec<u16> {
        self.instances
            .iter()
            .filter_map(|i| i.plan.locked().port)
            .collect()
    }

    /// This app's `--port` overrides as a claim, so that its new ports keep
    /// clear of them. None without overrides.
    pub(super) fn override_claim(&self) -> Option<crate::ports::Claim> {
        let overrides: Vec<u16> = self
            .instances
            .iter()
            .filter_map(|i| i.plan.locked().port_override)
            .collect();
        (!overrides.is_empty()).then(|| crate::ports::Claim {
            app: format!("{} (a --port override of this run)", self.name),
            spec: None,
            assigned: overrides,
        })
    }

    /// The ports this app holds: assigned and overridden, in index order.
    pub(super) fn ports(&self) -> Vec<u16> {
        let mut ports = Vec::new();
        for i in &self.instances {
            let p = i.plan.locked();
            ports.extend(p.port);
            ports.extend(p.port_override);
        }
        ports
    }
}

#[derive(Default)]
pub(super) struct Table {
    pub(super) next_id: u32,
    /// In creation order, which is also id order.
    pub(super) apps: Vec<App>,
}

impl Table {
    pub(super) fn app(&self, name: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.name == name)
    }

    pub(super) fn app_mut(&mut self, name: &str) -> Option<&mut App> {
        self.apps.iter_mut().find(|a| a.name == name)
    }

    /// What every app not named in `except` holds of the port space.
    pub(super) fn claims_except(&self, except: &[&str]) -> Vec<Claim> {
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
    pub(super) fn log_paths_except(&self, except: &[&str]) -> Vec<(PathBuf, String)> {
        self.apps
            .iter()
            .filter(|a| !except.contains(&a.name.as_str()))
            .flat_map(|a| {
                a.instances.iter().flat_map(move |i| {
                    let who = format!("app {} (id {})", a.name, i.id);
                    [
                        Some((i.out.path().to_path_buf(), who.clone())),
                        Some((i.err.path().to_path_buf(), who.clone())),
                        i.out.combined_path().map(|p| (p.to_path_buf(), who)),
                    ]
                    .into_iter()
                    .flatten()
                })
            })
            .collect()
    }

    /// The instances a target selects, as (app index, instance index).
    pub(super) fn select(&self, target: &Target) -> Result<Vec<(usize, usize)>> {
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

impl Supervisor {
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
                    let s = inst.shared.locked();
                    s.pid.and(s.started_at_ms)
                };
                let sample = started_at_ms.and_then(|started| {
                    snapshot
                        .samples
                        .get(&inst.id)
                        .copied()
                        .filter(|m| m.at_ms >= started)
                });
                let balancer = &self.inner.balancer;
                let balance = balancer
                    .status(&app.name)
                    .zip(balancer.instance(&app.name, inst.id));
                let shared = inst.shared.locked().clone();
                let next_cron_restart_at_ms = app
                    .cron
                    .as_ref()
                    .and_then(|c| c.next_at_ms())
                    .filter(|_| shared.desired_running);
                InstanceView {
                    balance,
                    sample,
                    next_cron_restart_at_ms,
                    id: inst.id,
                    index: inst.index,
                    name: app.name.clone(),
                    shared,
                    plan: inst.plan.locked().clone(),
                    created_at_ms: app.created_at_ms,
                    out_log: inst.out.path().to_path_buf(),
                    err_log: inst.err.path().to_path_buf(),
                    log: inst.out.combined_path().map(Path::to_path_buf),
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

    pub(super) fn ids_of(&self, target: &Target) -> Result<Vec<u32>> {
        let table = self.table();
        let picked = table.select(target)?;
        Ok(picked
            .into_iter()
            .map(|(a, i)| table.apps[a].instances[i].id)
            .collect())
    }
}
