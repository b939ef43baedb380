//! `depends_on`: the order in which apps start (dependencies first, level by
//! level) and stop (dependents first), cycle checks of a set of
//! definitions (both with the shared rules, `pmdaemon_proto::dependency_*`),
//! and waiting until a dependency meets its condition (`started`,
//! `healthy`, `completed`).

use pmdaemon_proto::{
    DependencyCycle, DependencyNode, Target, dependency_levels_lenient, dependency_order,
};
use tokio::time::Instant;

use crate::error::{Error, Result};

use super::Supervisor;
use super::instance::{Readiness, ReadyMessage, State};
use super::lifecycle::{Action, first_error};
use super::spec::{self, AppSpec};
use super::table::Table;

/// The set as the shared ordering rules take it: each app's name and the
/// names it depends on.
pub(super) fn dependency_graph<'a>(
    specs: impl IntoIterator<Item = &'a AppSpec>,
) -> Vec<DependencyNode<'a>> {
    specs
        .into_iter()
        .map(|s| {
            let deps = s.depends_on.iter().map(|d| d.app.as_str()).collect();
            (s.name.as_str(), deps)
        })
        .collect()
}

/// The refusal of a set whose dependencies form a cycle.
pub(super) fn cycle_error(cycle: DependencyCycle) -> Error {
    Error::InvalidArgument(format!("depends_on has a cycle: {cycle}"))
}

impl Supervisor {
    /// Starts (or restarts) these instances level by level along
    /// `depends_on` (dependencies first), each level once the dependencies
    /// of its apps meet their conditions, waiting at most
    /// `dependency_timeout` in all. Every level is tried; returns the first
    /// error.
    pub(super) async fn in_levels(
        &self,
        ids: &[u32],
        action: Action,
        dependency_timeout: std::time::Duration,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + dependency_timeout;
        let keep_override = !matches!(
            action,
            Action::RestartIfWanted
                | Action::Restart {
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
                    self.note_refused(&stuck).await;
                    if first.is_ok() {
                        first = Err(e);
                    }
                }
            }
            // An instance whose port is taken does not start; the others do.
            let refused = self.recheck_ports(&level, keep_override);
            self.note_refused(&refused).await;
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

    /// Instance ids grouped for stopping: apps that others depend on come
    /// after their dependents; apps of one group can stop concurrently.
    pub(super) fn stop_levels(&self) -> Vec<Vec<u32>> {
        let table = self.table();
        let specs: Vec<_> = table.apps.iter().map(|a| a.spec()).collect();
        let graph: Vec<DependencyNode<'_>> = table
            .apps
            .iter()
            .zip(&specs)
            .map(|(app, spec)| {
                let deps = spec
                    .iter()
                    .flat_map(|s| s.depends_on.iter().map(|d| d.app.as_str()))
                    .collect();
                (app.name.as_str(), deps)
            })
            .collect();
        // Start levels, reversed. Each set is checked for cycles when it is
        // applied, but two sets applied one after the other can still close
        // one: those apps start last and stop first.
        dependency_levels_lenient(&graph)
            .into_iter()
            .rev()
            .map(|level| {
                level
                    .into_iter()
                    .flat_map(|a| table.apps[a].instances.iter().map(|i| i.id))
                    .collect()
            })
            .collect()
    }

    /// Checks the set's dependencies (each names an app of the set or a
    /// known app; no cycles) and returns the set in start order:
    /// dependencies first, otherwise in the given order.
    pub(super) fn order_by_dependencies(&self, specs: Vec<AppSpec>) -> Result<Vec<AppSpec>> {
        {
            let table = self.table();
            for s in &specs {
                for dep in &s.depends_on {
                    if !specs.iter().any(|o| o.name == dep.app) && table.app(&dep.app).is_none() {
                        return Err(Error::InvalidArgument(format!(
                            "app {:?} depends on {:?}, which is neither in this set nor a known app",
                            s.name, dep.app
                        )));
                    }
                }
            }
        }
        let order = dependency_order(&dependency_graph(&specs)).map_err(cycle_error)?;
        let mut specs: Vec<Option<AppSpec>> = specs.into_iter().map(Some).collect();
        Ok(order.into_iter().filter_map(|i| specs[i].take()).collect())
    }

    /// Waits until `dep.app` meets `dep.condition` for app `name`, at most
    /// until `deadline`, looking again at each change of an instance record
    /// (see `events::Changes`). A dependency that does not exist, or is
    /// stopped and not being started, fails at once.
    pub(super) async fn wait_condition(
        &self,
        name: &str,
        dep: &spec::Dependency,
        deadline: Instant,
    ) -> Result<()> {
        let started = Instant::now();
        let target = Target::Name(dep.app.clone());
        // Taken before the first look, so that a change in between is not
        // missed.
        let mut changes = self.changes();
        loop {
            // Dependencies of a set are applied first (by level), so one
            // that does not exist now will not come: it was deleted, or
            // never was.
            let views = match self.views(&target) {
                Ok(v) => v,
                Err(Error::NotFound { .. }) => {
                    return Err(Error::FailedPrecondition(format!(
                        "{name} depends on {}, which does not exist (deleted?); start it, or \
                         remove the dependency",
                        dep.app
                    )));
                }
                Err(e) => return Err(e),
            };
            if let Some(bad) = views.iter().find(|v| v.shared.state == State::Errored) {
                return Err(Error::FailedPrecondition(format!(
                    "{name} depends on {} being {}, but {} (id {}) errored: {}",
                    dep.app,
                    dep.condition.word(),
                    bad.name,
                    bad.id,
                    bad.shared.reason
                )));
            }
            let met = !views.is_empty()
                && views.iter().all(|v| match dep.condition {
                    spec::Condition::Started => {
                        v.shared.pid.is_some() || v.shared.state == State::Online
                    }
                    // Online is the health check passed (an app without
                    // one is online once spawned), as `healthy` promises;
                    // with wait_ready, the app's "ready" came too.
                    spec::Condition::Healthy => {
                        v.shared.state == State::Online
                            && v.shared.ready_message != ReadyMessage::Missed
                    }
                    spec::Condition::Completed => v.shared.readiness() == Readiness::Completed,
                });
            if met {
                return Ok(());
            }
            // Nothing will change without a start: say so now rather than
            // at the deadline.
            if !views.is_empty() && views.iter().all(|v| !v.shared.desired_running) {
                return Err(Error::FailedPrecondition(format!(
                    "{name} depends on {} being {}, but {} is {}: start it first, or both \
                     (`pmd start all`)",
                    dep.app,
                    dep.condition.word(),
                    dep.app,
                    views[0].shared.state.word()
                )));
            }
            if Instant::now() >= deadline {
                let now = match views.first() {
                    None => "gone".to_owned(),
                    Some(v) if v.shared.last_health_error.is_empty() => {
                        v.shared.state.word().to_owned()
                    }
                    Some(v) => format!(
                        "{} (last health check: {})",
                        v.shared.state.word(),
                        v.shared.last_health_error
                    ),
                };
                return Err(Error::FailedPrecondition(format!(
                    "{name} waited {:.1} s for {} to be {}; it is {now}",
                    started.elapsed().as_secs_f64(),
                    dep.app,
                    dep.condition.word(),
                )));
            }
            changes.next(deadline).await;
        }
    }
}
