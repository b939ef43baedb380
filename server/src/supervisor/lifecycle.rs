//! Creating apps and driving their instances: `create` (validate, place,
//! spawn; nothing is left behind when the first spawn fails), the instance
//! records and tasks (`new_instance`), and the start/stop/restart commands
//! sent to instance tasks (`act`), concurrently, waiting for each reply.
//! Shutdown stops every instance, dependents first.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use pmdaemon_proto::Target;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::logs::Stream;
use crate::store::InstanceRecord;
use crate::sync::LockExt;

use super::Supervisor;
use super::instance::{self, Cmd, ExitInfo, Plan, Shared, State};
use super::port_checks::{assign_ports, check_log_paths};
use super::spec::{self, AppSpec, Launch};
use super::table::{App, Instance, InstanceView, Table};
use super::watching::validate_watch;

/// What to do with a selected instance.
#[derive(Debug, Clone, Copy)]
pub(super) enum Action {
    Start,
    Stop,
    /// `keep_override`: the caller just set `restart --port` overrides;
    /// otherwise a restart returns to the app's own ports.
    Restart {
        keep_override: bool,
    },
    /// A restart of an instance that should run, left alone otherwise
    /// (cron_restart); returns to the app's own ports.
    RestartIfWanted,
}

pub(super) fn first_error(results: Vec<Result<()>>) -> Result<()> {
    results.into_iter().find(|r| r.is_err()).unwrap_or(Ok(()))
}

impl Supervisor {
    /// Resolves and validates `spec` (bare names on `path_var`, else the
    /// daemon's PATH), adds the app and starts it. Nothing is created when
    /// anything is wrong, including when the first spawn fails.
    pub(super) async fn create_app(
        &self,
        spec: AppSpec,
        path_var: Option<&std::ffi::OsStr>,
        dependency_timeout: std::time::Duration,
    ) -> Result<Vec<InstanceView>> {
        self.check_running()?;
        spec.validate()?;
        let launch = spec::resolve(&spec, path_var.or(self.inner.path_var.as_deref()))?;
        validate_watch(&spec)?;
        let ports = {
            let table = self.table();
            if let Some(app) = table.app(&spec.name) {
                return Err(Error::AlreadyExists {
                    name: spec.name.clone(),
                    id: app.instances.first().map(|i| i.id).unwrap_or(0),
                });
            }
            for dep in &spec.depends_on {
                if table.app(&dep.app).is_none() {
                    return Err(Error::InvalidArgument(format!(
                        "app {:?} depends on {:?}, which is not a known app",
                        spec.name, dep.app
                    )));
                }
            }
            // Last of the checks: it may create a missing log directory.
            check_log_paths(&spec, &self.inner.home, &table.log_paths_except(&[]))?;
            assign_ports(&spec, &table.claims_except(&[spec.name.as_str()]), &[])?
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
    pub(super) async fn create_resolved(
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
                    Plan::new(spec.clone(), launch.clone(), port),
                    None,
                    0,
                )?);
            }
            table.next_id += spec.instances;
            let watcher = self.start_watcher(&spec);
            table.apps.push(App {
                name: name.clone(),
                created_at_ms: instance::now_ms(),
                instances,
                watcher,
                cron: self.start_cron(&spec),
            });
            (first_id..first_id + spec.instances).collect()
        };
        tracing::info!(app = %name, ids = ?ids, "created");
        let results = self.act(&Target::Name(name.clone()), Action::Start).await?;
        if let Err(e) = first_error(results) {
            // Nothing is created when the app cannot even be spawned.
            let views = self.views(&Target::Name(name.clone())).unwrap_or_default();
            self.remove(&ids).await;
            self.remove_logs(&views);
            return Err(e);
        }
        self.views(&Target::Name(name))
    }

    /// Builds an instance (its record, its plan, its log sinks) and starts
    /// its task; `restarts` carries the count of an instance it replaces.
    pub(super) fn new_instance(
        &self,
        id: u32,
        index: u32,
        plan: Plan,
        record: Option<&InstanceRecord>,
        restarts: u32,
    ) -> Result<Instance> {
        let spec = plan.spec.clone();
        // A balanced app's pool, its public port bound now when the
        // instance is to run (a port someone else holds refuses the
        // start); an app no longer balanced loses its pool.
        let open = record.is_none_or(|r| r.desired_running);
        self.inner.balancer.prepare(&spec, open)?;
        let logs = &self.inner.logs;
        let cfg = spec.log_config();
        let open = |stream| {
            let targets = spec.log_targets(stream, index);
            let path = spec.custom_log_path(stream, index).unwrap_or_else(|| {
                logs.default_path(&spec.name, id, Some(stream), spec.merge_logs)
            });
            logs.open_sink_with(&spec.name, id, stream, &targets, cfg.clone())
                .map_err(|e| Error::io("cannot open log file", path, e))
        };
        let (out, err) = (open(Stream::Out)?, open(Stream::Err)?);
        let mut shared = Shared::new(spec.clone(), plan.port);
        let plan = Arc::new(Mutex::new(plan));
        shared.restarts = restarts;
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
        let recheck = weak.clone();
        let ctx = instance::Ctx {
            id,
            index,
            name: Arc::from(spec.name.as_str()),
            home: self.inner.home.to_str().map(Arc::from),
            scans: self.inner.scans.clone(),
            cgroups: self.inner.cgroups.clone(),
            recent_restarts: Default::default(),
            shared: shared.clone(),
            plan: plan.clone(),
            out: out.clone(),
            err: err.clone(),
            changed: Arc::new(move || {
                if let Some(inner) = weak.upgrade() {
                    inner.persister.request();
                }
            }),
            events: self.inner.events.clone(),
            balancer: self.inner.balancer.clone(),
            recheck_port: Arc::new(move |id| {
                if let Some(inner) = recheck.upgrade() {
                    for (_, why) in (Supervisor { inner }).recheck_ports(&[id], true) {
                        tracing::warn!(id, "{why}");
                    }
                }
            }),
        };
        tokio::spawn(instance::run(ctx, rx));
        Ok(Instance {
            id,
            index,
            shared,
            plan,
            cmd: tx,
            out,
            err,
        })
    }

    /// Sends `action` to every selected instance and waits for all of them
    /// (concurrently: stopping ten apps takes one kill timeout, not ten).
    pub(super) async fn act(&self, target: &Target, action: Action) -> Result<Vec<Result<()>>> {
        self.act_on(|table| table.select(target), action).await
    }

    /// `act` on the instances `pick` selects from the table.
    pub(super) async fn act_on(
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
                            | Action::RestartIfWanted
                            | Action::Restart {
                                keep_override: false
                            }
                    ) {
                        inst.plan.locked().port_override = None;
                    }
                    let cmd = match action {
                        Action::Start => Cmd::Start(tx),
                        Action::Restart { .. } => Cmd::Restart(tx),
                        Action::RestartIfWanted => Cmd::RestartIfWanted(tx),
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
    pub(super) async fn start_targets(
        &self,
        target: &Target,
        dependency_timeout: std::time::Duration,
    ) -> Result<Vec<InstanceView>> {
        let ids = self.ids_of(target)?;
        self.in_levels(&ids, Action::Start, dependency_timeout)
            .await?;
        self.views(target)
    }

    /// Stops the target's instances; waits until their groups are gone.
    /// `all` stops dependents before the apps they depend on.
    pub(super) async fn stop_targets(&self, target: &Target) -> Result<Vec<InstanceView>> {
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

    /// Restarts the target's instances, dependencies first, each level
    /// once the dependencies of its apps meet their conditions (at most
    /// `dependency_timeout` in all); the next runs bind the apps' own ports,
    /// checked first.
    pub(super) async fn restart_targets(
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

    /// Ends the tasks of the instances whose id passes `pick`, stopping
    /// their processes (concurrently), and waits for all of them. The
    /// instances stay in the table.
    pub(super) async fn exit_instances(&self, pick: impl Fn(u32) -> bool) {
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
        // A failed final write is in the daemon log; the apps are stopped
        // already, there is nothing left to undo.
        let _ = self.inner.persister.flushed(generation).await;
    }
}
