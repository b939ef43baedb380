//! ApplyApps: makes a set of definitions (an ecosystem file) run as
//! defined. Validates and places the whole set first (nothing changes when
//! anything is wrong), then creates, starts, restarts, reloads, scales or
//! replaces each app level by level along `depends_on`; each app gets its
//! own outcome.

use std::sync::Arc;
use std::time::Duration;

use pmdaemon_proto::{Target, dependency_levels};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::ports::Claim;
use crate::sync::LockExt;

use super::Supervisor;
use super::dependencies::{cycle_error, dependency_graph};
use super::instance::{Cmd, Plan};
use super::lifecycle::{Action, first_error};
use super::port_checks::{assign_ports, check_log_paths};
use super::spec::{self, AppSpec, Launch};
use super::table::{App, InstanceView};
use super::watching::validate_watch;

/// How ApplyApps resolves and how long it may wait.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// For the dependencies' conditions, in all.
    pub dependency: Duration,
    /// For each replacement of a rolling reload to be ready.
    pub ready: Duration,
    /// PATH for bare command names (the caller's); None: the daemon's.
    pub path_var: Option<std::ffi::OsString>,
    /// Existing apps get the specs' captured environment merged over
    /// theirs (PM2's `--update-env`); otherwise they keep the one captured
    /// when they were created, and a different one is no change.
    pub update_env: bool,
}

/// What one app of an ApplyApps set may wait for, and how long.
#[derive(Debug, Clone, Copy)]
pub(super) struct Waits {
    /// For its dependencies' conditions.
    dependency_deadline: Instant,
    /// For each replacement of a rolling reload to be ready.
    ready_timeout: Duration,
}

/// How long the apps of an ApplyApps set wait, in all, for their
/// dependencies' conditions when the request does not say.
pub const DEFAULT_DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(60);

/// How `apply` treats the apps of the set that already exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// Start what is not running; restart what changed.
    Start,
    /// Restart every app of the set.
    Restart,
    /// Rolling restart of every app of the set.
    Reload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    Created,
    Unchanged,
    Started,
    Updated,
    Restarted,
    /// Only the instance count changed: instances were added or removed,
    /// the others left running.
    Scaled,
}

/// What `apply` did with one app.
#[derive(Debug, Clone)]
pub struct Applied {
    pub outcome: ApplyOutcome,
    pub changed_fields: Vec<&'static str>,
    pub views: Vec<InstanceView>,
}

impl Supervisor {
    /// Makes a set of apps run as defined. Everything is validated first
    /// (names, duplicates, resolution, watch paths, ports against the other
    /// apps and within the set): when anything is wrong, nothing changes.
    /// Apps with dependencies wait for their conditions until
    /// `options.dependency` from now. Once the set is valid, each app gets
    /// its own outcome: one that fails (a dependency that never got ready,
    /// say) does not undo the others, which the caller is told about.
    pub(super) async fn apply_set(
        &self,
        specs: Vec<AppSpec>,
        mode: ApplyMode,
        options: ApplyOptions,
    ) -> Result<Vec<(String, Result<Applied>)>> {
        self.check_running()?;
        let dependency_deadline = Instant::now() + options.dependency;
        let path_var = options
            .path_var
            .as_deref()
            .or(self.inner.path_var.as_deref());
        let mut seen = std::collections::HashSet::new();
        for s in &specs {
            if !seen.insert(s.name.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "app {:?} is defined twice",
                    s.name
                )));
            }
        }
        let specs = self.order_by_dependencies(specs)?;
        // Validation and planning, under the table lock for the port part.
        let mut plans = Vec::with_capacity(specs.len());
        for spec in specs {
            spec.validate()?;
            let launch = spec::resolve(&spec, path_var)
                .map_err(|e| Error::InvalidArgument(format!("app {:?}: {e}", spec.name)))?;
            validate_watch(&spec)
                .map_err(|e| Error::InvalidArgument(format!("app {:?}: {e}", spec.name)))?;
            plans.push((spec, launch));
        }
        let mut planned = Vec::with_capacity(plans.len());
        {
            let table = self.table();
            let names: Vec<&str> = plans.iter().map(|(s, _)| s.name.as_str()).collect();
            // Apps outside the set keep their claims; apps of the set claim
            // what they will hold once applied.
            let mut claims = table.claims_except(&names);
            let mut logs_taken = table.log_paths_except(&names);
            for (mut spec, launch) in plans {
                check_log_paths(&spec, &self.inner.home, &logs_taken)
                    .map_err(|e| Error::InvalidArgument(format!("app {:?}: {e}", spec.name)))?;
                let who = format!("app {}", spec.name);
                logs_taken.extend(spec.custom_log_paths().map(|(_, path)| (path, who.clone())));
                let existing = table.app(&spec.name);
                let current = existing.and_then(App::spec);
                if let Some(current) = &current {
                    // Kept as captured; with update_env the caller's is
                    // merged over it, as PM2's --update-env does.
                    let mut captured = current.caller_env.clone();
                    if options.update_env {
                        captured.append(&mut spec.caller_env);
                    }
                    spec.caller_env = captured;
                }
                let changed = current.as_ref().map(|c| c.changed_fields(&spec));
                let keep = existing.map(App::assigned_ports).unwrap_or_default();
                let ports = match &changed {
                    Some(fields) if fields.is_empty() => keep.clone(),
                    _ => assign_ports(&spec, &claims, &keep)
                        .map_err(|e| Error::InvalidArgument(format!("app {:?}: {e}", spec.name)))?,
                };
                claims.push(Claim {
                    app: spec.name.clone(),
                    spec: spec.port,
                    assigned: ports.clone(),
                });
                planned.push((spec, launch, ports, changed));
            }
        }

        // Level by level along depends_on (level 0: no dependency in the
        // set), each level's apps at once (two cores spawn faster than one).
        // An app is applied only once its dependencies of the set have been
        // (started, restarted or reloaded), and then waits for their
        // conditions: in restart and reload modes a dependency's old,
        // healthy run must not count.
        let names: Vec<String> = planned.iter().map(|p| p.0.name.clone()).collect();
        let levels = dependency_levels(&dependency_graph(planned.iter().map(|p| &p.0)))
            .map_err(cycle_error)?;
        let mut results: Vec<Option<Result<Applied>>> = (0..planned.len()).map(|_| None).collect();
        let mut planned: Vec<_> = planned.into_iter().map(Some).collect();
        for level in levels {
            let runs: Vec<_> = level
                .into_iter()
                .filter_map(|i| {
                    let (spec, launch, ports, changed) = planned[i].take()?;
                    let failed = spec.depends_on.iter().find_map(|d| {
                        let j = names.iter().position(|n| *n == d.app)?;
                        match &results[j] {
                            Some(Err(e)) => Some((d.app.clone(), e.to_string())),
                            _ => None,
                        }
                    });
                    Some(async move {
                        let result = match failed {
                            Some((dep, why)) => Err(Error::FailedPrecondition(format!(
                                "{} was not applied: its dependency {dep} failed: {why}",
                                spec.name
                            ))),
                            None => {
                                let waits = Waits {
                                    dependency_deadline,
                                    ready_timeout: options.ready,
                                };
                                self.apply_one(spec, launch, ports, changed, mode, waits)
                                    .await
                            }
                        };
                        (i, result)
                    })
                })
                .collect();
            for (i, result) in futures_util::future::join_all(runs).await {
                results[i] = Some(result);
            }
        }
        Ok(names
            .into_iter()
            .zip(results)
            .map(|(name, r)| (name, r.expect("every app belongs to one level")))
            .collect())
    }

    pub(super) async fn apply_one(
        &self,
        spec: AppSpec,
        launch: Launch,
        ports: Vec<u16>,
        changed: Option<Vec<&'static str>>,
        mode: ApplyMode,
        waits: Waits,
    ) -> Result<Applied> {
        let Waits {
            dependency_deadline,
            ready_timeout,
        } = waits;
        let name = spec.name.clone();
        for dep in &spec.depends_on {
            self.wait_condition(&name, dep, dependency_deadline).await?;
        }
        let target = Target::Name(name.clone());
        let (outcome, changed_fields) = match changed {
            None => {
                self.create_resolved(spec, launch, ports).await?;
                (ApplyOutcome::Created, Vec::new())
            }
            Some(fields) if fields.is_empty() => match mode {
                ApplyMode::Start => {
                    let views = self.views(&target)?;
                    if views.iter().all(|v| v.shared.state.is_running()) {
                        (ApplyOutcome::Unchanged, fields)
                    } else {
                        let left = dependency_deadline.saturating_duration_since(Instant::now());
                        self.start_targets(&target, left).await?;
                        (ApplyOutcome::Started, fields)
                    }
                }
                ApplyMode::Restart => {
                    let left = dependency_deadline.saturating_duration_since(Instant::now());
                    self.restart_targets(&target, left).await?;
                    (ApplyOutcome::Restarted, fields)
                }
                ApplyMode::Reload => {
                    self.roll(&target, ready_timeout, |_, _, _| {}).await?;
                    (ApplyOutcome::Restarted, fields)
                }
            },
            // Only the count changed (say, after a `pmd scale`): scale rather
            // than replace every instance.
            Some(fields) if fields == ["instances"] && mode == ApplyMode::Start => {
                self.resize(&name, spec.instances).await?;
                (ApplyOutcome::Scaled, fields)
            }
            Some(fields) => {
                let rolling = (mode == ApplyMode::Reload).then_some(ready_timeout);
                self.replace_definition(spec, launch, ports, rolling)
                    .await?;
                (ApplyOutcome::Updated, fields)
            }
        };
        tracing::info!(app = %name, ?outcome, changed = ?changed_fields, "applied");
        Ok(Applied {
            outcome,
            changed_fields,
            views: self.views(&target)?,
        })
    }

    /// Puts a new definition in place for an existing app: each instance is
    /// replaced (same id and index, new spec, port and log files) and
    /// started; `rolling` waits for each to be ready before the next. Extra
    /// instances are added or removed to match the new count.
    pub(super) async fn replace_definition(
        &self,
        spec: AppSpec,
        launch: Launch,
        ports: Vec<u16>,
        rolling: Option<Duration>,
    ) -> Result<()> {
        let name = spec.name.clone();
        let spec = Arc::new(spec);
        let launch = Arc::new(launch);
        let old: Vec<(u32, u32, u32)> = {
            let table = self.table();
            let app = table.app(&name).ok_or_else(|| Error::NotFound {
                target: name.clone(),
            })?;
            app.instances
                .iter()
                .map(|i| (i.id, i.index, i.shared.locked().restarts))
                .collect()
        };
        for index in 0..spec.instances.max(old.len() as u32) {
            let current = old.iter().find(|(_, i, _)| *i == index).copied();
            if index >= spec.instances {
                if let Some((id, _, _)) = current {
                    let views = self.views(&Target::Id(id))?;
                    self.remove(&[id]).await;
                    self.remove_logs(&views);
                    self.announce_deleted(&views);
                }
                continue;
            }
            let port = ports.get(index as usize).copied();
            let id = match current {
                Some((id, _, restarts)) => {
                    // Stop the old instance's process, then swap in the new one.
                    let rx = {
                        let table = self.table();
                        let app = table.app(&name).ok_or_else(|| Error::NotFound {
                            target: name.clone(),
                        })?;
                        let inst = app.instances.iter().find(|i| i.id == id).ok_or_else(|| {
                            Error::NotFound {
                                target: id.to_string(),
                            }
                        })?;
                        let (tx, rx) = oneshot::channel();
                        let _ = inst.cmd.send(Cmd::Exit(tx));
                        rx
                    };
                    let _ = rx.await;
                    // The replacement counts as a restart of the instance.
                    let fresh = self.new_instance(
                        id,
                        index,
                        Plan::new(spec.clone(), launch.clone(), port),
                        None,
                        restarts + 1,
                    )?;
                    let mut table = self.table();
                    let app = table.app_mut(&name).ok_or_else(|| Error::NotFound {
                        target: name.clone(),
                    })?;
                    if let Some(slot) = app.instances.iter_mut().find(|i| i.id == id) {
                        *slot = fresh;
                    }
                    id
                }
                None => {
                    let mut table = self.table();
                    let id = table.next_id;
                    let fresh = self.new_instance(
                        id,
                        index,
                        Plan::new(spec.clone(), launch.clone(), port),
                        None,
                        0,
                    )?;
                    table.next_id += 1;
                    let app = table.app_mut(&name).ok_or_else(|| Error::NotFound {
                        target: name.clone(),
                    })?;
                    app.instances.push(fresh);
                    id
                }
            };
            first_error(self.act(&Target::Id(id), Action::Start).await?)?;
            if let Some(ready_timeout) = rolling {
                self.wait_replacement_ready(id, ready_timeout).await?;
            }
        }
        // The watcher and the schedule follow the new definition.
        let watcher = self.start_watcher(&spec);
        let cron = self.start_cron(&spec);
        if let Some(app) = self.table().app_mut(&name) {
            app.watcher = watcher;
            app.cron = cron;
            app.instances.sort_by_key(|i| i.index);
        }
        self.inner.persister.request();
        Ok(())
    }
}
