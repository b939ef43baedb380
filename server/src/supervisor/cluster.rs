//! Operations on whole apps as sets of instances: scaling, per-run port
//! overrides, rolling reloads, applying a set of definitions (ecosystem
//! files), and the file watcher that restarts an app on changes.
//!
//! Built on the table primitives of `mod.rs` (`act`, `new_instance`,
//! `remove`) and on `ports::assign` for every port decision, made while the
//! table lock is held so that two requests never hand out the same port.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use pmdaemon_proto::Target;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::instance::{Cmd, State};
use super::spec::{self, AppSpec, Launch};
use super::{Action, App, Inner, InstanceView, Supervisor, first_error, remove_logs};
use crate::error::{Error, Result};
use crate::ports::{self, Claim, PortSpec};
use crate::store;

/// Default time a replacement may take to become ready during a reload.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How ApplyApps resolves and how long it may wait.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// For the dependencies' conditions, in all.
    pub dependency: Duration,
    /// For each replacement of a rolling reload to be ready.
    pub ready: Duration,
    /// PATH for bare command names (the caller's); None: the daemon's.
    pub path_var: Option<std::ffi::OsString>,
}

/// What one app of an ApplyApps set may wait for, and how long.
#[derive(Debug, Clone, Copy)]
struct Waits {
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
    pub name: String,
    pub outcome: ApplyOutcome,
    pub changed_fields: Vec<&'static str>,
    pub views: Vec<InstanceView>,
}

/// Ports for every instance of `spec` (none without a port spec).
pub(super) fn assign_ports(spec: &AppSpec, others: &[Claim], keep: &[u16]) -> Result<Vec<u16>> {
    match spec.port {
        None => Ok(Vec::new()),
        Some(port) => Ok(ports::assign(
            &spec.name,
            port,
            spec.instances,
            others,
            keep,
        )?),
    }
}

fn watch_config(spec: &AppSpec) -> crate::watch::WatchConfig {
    let paths = if spec.watch_paths.is_empty() {
        vec![spec.cwd.clone()]
    } else {
        spec.watch_paths.clone()
    };
    // The app's own log files (and their rotated `.N` copies) live in its
    // tree when out_file/error_file say so: writing them must not restart it.
    let ignore_paths = spec.custom_log_paths().map(|(_, path)| path).collect();
    crate::watch::WatchConfig {
        paths,
        ignore: spec.ignore_watch.clone(),
        ignore_paths,
        delay: Duration::from_millis(spec.watch_delay_ms),
    }
}

/// Checks that the watch paths exist and the globs compile, before anything
/// is created.
pub(super) fn validate_watch(spec: &AppSpec) -> Result<()> {
    if !spec.watch {
        return Ok(());
    }
    crate::watch::validate(&watch_config(spec)).map_err(|e| Error::InvalidArgument(e.to_string()))
}

impl Supervisor {
    /// Starts the file watcher of an app with `watch` on (None otherwise or
    /// when the OS refuses: then the reason is logged). A change restarts the
    /// app's running instances.
    pub(super) fn start_watcher(&self, spec: &AppSpec) -> Option<crate::watch::WatchHandle> {
        if !spec.watch {
            return None;
        }
        let mut cfg = watch_config(spec);
        // The daemon's own files (logs, state) must never trigger a restart.
        // Only those: an app may well live inside PMDAEMON_HOME.
        let home = &self.inner.home;
        cfg.ignore_paths.extend(
            [
                "logs",
                store::STATE_FILE,
                store::DUMP_FILE,
                "pmdaemond.log",
                "pmdaemond.lock",
                "pmd.sock",
            ]
            .map(|f| home.join(f)),
        );
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let name = spec.name.clone();
        // One restart at a time per app: a burst that arrives while the app
        // restarts is already seen by the new process.
        let restarting = Arc::new(AtomicBool::new(false));
        let on_change = move |changed: Vec<std::path::PathBuf>| {
            let Some(inner) = weak.upgrade() else { return };
            if restarting.swap(true, Ordering::AcqRel) {
                return;
            }
            let sup = Supervisor { inner };
            let name = name.clone();
            let restarting = restarting.clone();
            tokio::spawn(async move {
                tracing::info!(app = %name, changed = ?changed, "files changed; restarting");
                if let Err(e) = sup.restart_running(&name).await {
                    tracing::warn!(app = %name, error = %e, "restart after a file change failed");
                }
                restarting.store(false, Ordering::Release);
            });
        };
        match crate::watch::watch(cfg, on_change) {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::error!(app = %spec.name, error = %e, "cannot watch files");
                None
            }
        }
    }

    /// Restarts the instances of `name` that should be running (watch).
    async fn restart_running(&self, name: &str) -> Result<()> {
        let ids: Vec<u32> = self
            .views(&Target::Name(name.to_string()))?
            .into_iter()
            .filter(|v| v.shared.desired_running)
            .map(|v| v.id)
            .collect();
        for id in ids {
            first_error(
                self.act(
                    &Target::Id(id),
                    Action::Restart {
                        keep_override: false,
                    },
                )
                .await?,
            )?;
        }
        Ok(())
    }

    /// `restart --port`: the selected instances (of one app) get ports from
    /// `port` for this run only, then restart.
    pub async fn restart_with_port(
        &self,
        target: &Target,
        port: PortSpec,
    ) -> Result<Vec<InstanceView>> {
        self.check_running()?;
        {
            let table = self.table();
            let picked = table.select(target)?;
            let mut apps: Vec<usize> = picked.iter().map(|(a, _)| *a).collect();
            apps.dedup();
            let [a] = apps[..] else {
                return Err(Error::InvalidArgument(
                    "--port applies to the instances of one app: give its name or an id".into(),
                ));
            };
            let app = &table.apps[a];
            let mut others = table.claims_except(&[app.name.as_str()]);
            // The app's instances that keep running hold their ports too.
            let siblings: Vec<u16> = app
                .instances
                .iter()
                .enumerate()
                .filter(|(i, _)| !picked.iter().any(|(_, p)| p == i))
                .filter_map(|(_, inst)| {
                    inst.shared
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .effective_port()
                })
                .collect();
            if !siblings.is_empty() {
                others.push(Claim {
                    app: format!("{} (another of its instances)", app.name),
                    spec: None,
                    assigned: siblings,
                });
            }
            let ports = ports::assign(&app.name, port, picked.len() as u32, &others, &app.ports())?;
            for ((_, i), p) in picked.iter().zip(ports) {
                app.instances[*i]
                    .shared
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .port_override = Some(p);
            }
        }
        first_error(
            self.act(
                target,
                Action::Restart {
                    keep_override: true,
                },
            )
            .await?,
        )?;
        self.views(target)
    }

    /// Grows or shrinks app `name` to `count` instances. Shrinking stops and
    /// removes the highest indexes first. Returns the app's instances and the
    /// change in count.
    pub async fn scale(&self, name: &str, count: u32) -> Result<(Vec<InstanceView>, i64)> {
        self.check_running()?;
        let target = Target::Name(name.to_string());
        let (old_count, new_ids, removed_ids, running) = {
            let mut table = self.table();
            let others = table.claims_except(&[name]);
            let next_id = table.next_id;
            let app = table.app(name).ok_or_else(|| Error::NotFound {
                target: name.to_string(),
            })?;
            // New instances follow the app: started if any of its instances
            // is meant to run, else added stopped.
            let running = app.instances.iter().any(|i| {
                i.shared
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .desired_running
            });
            let old_spec = app.spec().ok_or_else(|| Error::NotFound {
                target: name.to_string(),
            })?;
            let mut spec = (*old_spec).clone();
            spec.instances = count;
            spec.validate()?;
            let old_count = app.instances.len() as u32;
            let ports = if count > old_count {
                let mut others = others.clone();
                others.extend(app.override_claim());
                assign_ports(&spec, &others, &app.assigned_ports())?
            } else {
                Vec::new()
            };
            let launch = app.instances[0]
                .shared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .launch
                .clone();
            let spec = Arc::new(spec);
            let mut added = Vec::new();
            for index in old_count..count {
                let id = next_id + (index - old_count);
                added.push(self.new_instance(
                    id,
                    index,
                    spec.clone(),
                    launch.clone(),
                    None,
                    ports.get(index as usize).copied(),
                )?);
            }
            let app = table.app_mut(name).expect("app exists: checked above");
            for inst in &app.instances {
                inst.shared.lock().unwrap_or_else(|e| e.into_inner()).spec = spec.clone();
            }
            let removed_ids: Vec<u32> = app
                .instances
                .iter()
                .filter(|i| i.index >= count)
                .map(|i| i.id)
                .collect();
            let new_ids: Vec<u32> = added.iter().map(|i| i.id).collect();
            app.instances.extend(added);
            table.next_id += count.saturating_sub(old_count);
            (old_count, new_ids, removed_ids, running)
        };
        for id in new_ids.iter().filter(|_| running) {
            first_error(self.act(&Target::Id(*id), Action::Start).await?)?;
        }
        if !removed_ids.is_empty() {
            let views: Vec<InstanceView> = self
                .views(&target)?
                .into_iter()
                .filter(|v| removed_ids.contains(&v.id))
                .collect();
            self.remove(&removed_ids).await;
            remove_logs(self.inner.logs.dir(), &views);
            self.announce_deleted(&views);
        }
        self.inner.persister.request();
        tracing::info!(app = %name, from = old_count, to = count, "scaled");
        Ok((
            self.views(&target)?,
            i64::from(count) - i64::from(old_count),
        ))
    }

    /// Rolling restart: one instance at a time, each ready before the next
    /// goes. `progress` receives each replaced instance with the count done.
    pub async fn reload(
        &self,
        target: &Target,
        ready_timeout: Duration,
        progress: impl Fn(&InstanceView, usize, usize),
    ) -> Result<Vec<InstanceView>> {
        self.check_running()?;
        // Instances that are down go first: replacing a serving one while
        // another is down would leave N-2 serving.
        let mut views = self.views(target)?;
        views.sort_by_key(|v| v.shared.state == State::Online);
        let ids: Vec<u32> = views.iter().map(|v| v.id).collect();
        let total = ids.len();
        for (done, id) in ids.iter().enumerate() {
            let one = Target::Id(*id);
            first_error(
                self.act(
                    &one,
                    Action::Restart {
                        keep_override: false,
                    },
                )
                .await?,
            )?;
            let view = self.wait_ready(*id, ready_timeout).await?;
            progress(&view, done + 1, total);
        }
        self.views(target)
    }

    /// Waits until instance `id` serves: its port accepts connections, or,
    /// without a port, it has been online for min_uptime.
    async fn wait_ready(&self, id: u32, timeout: Duration) -> Result<InstanceView> {
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            let view = self
                .views(&Target::Id(id))?
                .pop()
                .ok_or_else(|| Error::NotFound {
                    target: id.to_string(),
                })?;
            let s = &view.shared;
            match s.state {
                State::Online => {
                    let ready = match s.effective_port() {
                        // Loopback first; after a second, any address
                        // (the slower check of /proc/net/tcp).
                        Some(port) => {
                            ports::accepts_connections(port).await
                                || (started.elapsed() > Duration::from_secs(1)
                                    && ports::listening(port).await)
                        }
                        None => s.started_at_ms.is_some_and(|t| {
                            super::instance::now_ms() - t >= s.spec.min_uptime_ms as i64
                        }),
                    };
                    if ready {
                        return Ok(view);
                    }
                }
                State::Errored | State::Stopped => {
                    return Err(Error::FailedPrecondition(format!(
                        "{} (id {id}) did not come back: {}",
                        view.name, s.reason
                    )));
                }
                // The replacement died: the rollout stops here rather than
                // wait out the timeout on a crash loop, leaving the other
                // instances on the old run.
                State::WaitingRestart => {
                    let how = s
                        .last_exit
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_else(|| "exited".into());
                    return Err(Error::FailedPrecondition(format!(
                        "{} (id {id}) {how} right after the reload replaced it; the reload \
                         stopped there",
                        view.name
                    )));
                }
                State::Starting | State::Stopping => {}
            }
            if Instant::now() >= deadline {
                // With a health check an instance is `starting` until it
                // passes: that is what it did not do.
                let what = match s.effective_port() {
                    _ if s.state != State::Online && s.spec.health_check.is_some() => {
                        match s.last_health_error.as_str() {
                            "" => "pass its health check".to_owned(),
                            last => format!("pass its health check (last: {last})"),
                        }
                    }
                    _ if s.state != State::Online => "come online".to_owned(),
                    Some(port) => format!("accept connections on port {port}"),
                    None => format!("stay online for {} ms", s.spec.min_uptime_ms),
                };
                return Err(Error::FailedPrecondition(format!(
                    "{} (id {id}) did not {what} within {} s; the reload stopped there (state {})",
                    view.name,
                    timeout.as_secs(),
                    s.state.word()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Makes a set of apps run as defined. Everything is validated first
    /// (names, duplicates, resolution, watch paths, ports against the other
    /// apps and within the set): when anything is wrong, nothing changes.
    /// Apps with dependencies wait for their conditions until
    /// `options.dependency` from now. Once the set is valid, each app gets
    /// its own outcome: one that fails (a dependency that never got ready,
    /// say) does not undo the others, which the caller is told about.
    pub async fn apply(
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
            for (spec, launch) in plans {
                super::check_log_paths(&spec, &self.inner.home, &logs_taken)
                    .map_err(|e| Error::InvalidArgument(format!("app {:?}: {e}", spec.name)))?;
                let who = format!("app {}", spec.name);
                logs_taken.extend(spec.custom_log_paths().map(|(_, path)| (path, who.clone())));
                let existing = table.app(&spec.name);
                let current = existing.and_then(App::spec);
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
        let mut levels = vec![0usize; planned.len()];
        for (i, (spec, ..)) in planned.iter().enumerate() {
            // `planned` is in dependency order: dependencies come first.
            levels[i] = spec
                .depends_on
                .iter()
                .filter_map(|d| names.iter().position(|n| *n == d.app))
                .map(|j| levels[j] + 1)
                .max()
                .unwrap_or(0);
        }
        let mut results: Vec<Option<Result<Applied>>> = (0..planned.len()).map(|_| None).collect();
        let mut planned: Vec<_> = planned.into_iter().map(Some).collect();
        for level in 0..=levels.iter().copied().max().unwrap_or(0) {
            let runs: Vec<_> = (0..planned.len())
                .filter(|&i| levels[i] == level)
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

    async fn apply_one(
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
                        self.start(&target, left).await?;
                        (ApplyOutcome::Started, fields)
                    }
                }
                ApplyMode::Restart => {
                    let left = dependency_deadline.saturating_duration_since(Instant::now());
                    self.restart(&target, left).await?;
                    (ApplyOutcome::Restarted, fields)
                }
                ApplyMode::Reload => {
                    self.reload(&target, ready_timeout, |_, _, _| {}).await?;
                    (ApplyOutcome::Restarted, fields)
                }
            },
            // Only the count changed (say, after a `pmd scale`): scale rather
            // than replace every instance.
            Some(fields) if fields == ["instances"] && mode == ApplyMode::Start => {
                self.scale(&name, spec.instances).await?;
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
            name,
            outcome,
            changed_fields,
            views: self.views(&target)?,
        })
    }

    /// Checks the set's dependencies (each names an app of the set or a
    /// known app; no cycles) and returns the set in start order:
    /// dependencies first, otherwise in the given order.
    fn order_by_dependencies(&self, specs: Vec<AppSpec>) -> Result<Vec<AppSpec>> {
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
        let mut ordered: Vec<AppSpec> = Vec::with_capacity(specs.len());
        let mut pending = specs;
        while !pending.is_empty() {
            let ready = pending.iter().position(|s| {
                s.depends_on.iter().all(|d| {
                    ordered.iter().any(|o| o.name == d.app)
                        || !pending.iter().any(|p| p.name == d.app)
                })
            });
            match ready {
                Some(i) => ordered.push(pending.remove(i)),
                None => {
                    return Err(Error::InvalidArgument(format!(
                        "depends_on has a cycle: {}",
                        describe_cycle(&pending)
                    )));
                }
            }
        }
        Ok(ordered)
    }

    /// Waits until `dep.app` meets `dep.condition` for app `name`, at most
    /// until `deadline`. A dependency that does not exist, or is stopped and
    /// not being started, fails at once.
    pub(super) async fn wait_condition(
        &self,
        name: &str,
        dep: &spec::Dependency,
        deadline: Instant,
    ) -> Result<()> {
        let started = Instant::now();
        let target = Target::Name(dep.app.clone());
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
                    spec::Condition::Healthy => v.shared.state == State::Online,
                    spec::Condition::Completed => {
                        v.shared.state == State::Stopped
                            && v.shared
                                .last_exit
                                .as_ref()
                                .is_some_and(|e| e.code == Some(0))
                    }
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
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Puts a new definition in place for an existing app: each instance is
    /// replaced (same id and index, new spec, port and log files) and
    /// started; `rolling` waits for each to be ready before the next. Extra
    /// instances are added or removed to match the new count.
    async fn replace_definition(
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
                .map(|i| {
                    (
                        i.id,
                        i.index,
                        i.shared.lock().unwrap_or_else(|e| e.into_inner()).restarts,
                    )
                })
                .collect()
        };
        for index in 0..spec.instances.max(old.len() as u32) {
            let current = old.iter().find(|(_, i, _)| *i == index).copied();
            if index >= spec.instances {
                if let Some((id, _, _)) = current {
                    let views = self.views(&Target::Id(id))?;
                    self.remove(&[id]).await;
                    remove_logs(self.inner.logs.dir(), &views);
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
                    let fresh =
                        self.new_instance(id, index, spec.clone(), launch.clone(), None, port)?;
                    fresh
                        .shared
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .restarts = restarts + 1;
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
                    let fresh =
                        self.new_instance(id, index, spec.clone(), launch.clone(), None, port)?;
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
                self.wait_ready(id, ready_timeout).await?;
            }
        }
        // The watcher follows the new definition.
        let watcher = self.start_watcher(&spec);
        if let Some(app) = self.table().app_mut(&name) {
            app.watcher = watcher;
            app.instances.sort_by_key(|i| i.index);
        }
        self.inner.persister.request();
        Ok(())
    }
}

/// `a → b → a` for the first cycle found among `specs` (all of which are
/// blocked on each other).
fn describe_cycle(specs: &[AppSpec]) -> String {
    let mut path: Vec<&str> = vec![specs[0].name.as_str()];
    loop {
        let current = path[path.len() - 1];
        let next = specs
            .iter()
            .find(|s| s.name == current)
            .and_then(|s| {
                s.depends_on
                    .iter()
                    .find(|d| specs.iter().any(|o| o.name == d.app))
            })
            .map(|d| d.app.as_str());
        match next {
            Some(n) if path.contains(&n) => {
                let start = path.iter().position(|p| *p == n).unwrap_or(0);
                let mut cycle: Vec<&str> = path[start..].to_vec();
                cycle.push(n);
                return cycle.join(" → ");
            }
            Some(n) => path.push(n),
            None => return path.join(" → "),
        }
    }
}
