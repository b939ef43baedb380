//! Port decisions made by the table: ports for new instances
//! (`assign_ports`, over every other app's claims), rechecks against the
//! host before an instance starts again, `restart --port` overrides, and
//! the log-path rules (`check_log_paths`) checked before an app is
//! placed.

use std::path::{Path, PathBuf};

use pmdaemon_proto::Target;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::ports::{self, Claim, PortSpec};
use crate::sync::LockExt;

use super::Supervisor;
use super::instance::Cmd;
use super::lifecycle::{Action, first_error};
use super::spec::{self, AppSpec};
use super::table::InstanceView;

/// Ports for every instance of `spec` (none without a port spec; a
/// balanced app's private ones, from its instance range).
pub(super) fn assign_ports(spec: &AppSpec, others: &[Claim], keep: &[u16]) -> Result<Vec<u16>> {
    // A balanced app's public port is its claim too: another app's port
    // (running or stopped) is refused naming that app, as a fixed port is.
    if let Some(public) = spec.public_port()
        && let Some(claim) = others
            .iter()
            .find(|c| c.app != spec.name && c.holds(public))
    {
        return Err(ports::PortError::Conflict {
            port: public,
            app: claim.app.clone(),
        }
        .into());
    }
    match spec.instance_ports() {
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

/// Where an app's `out_file`/`error_file`/`log_file` may not point,
/// checked before anything is started, on the resolved path (`logs::paths`
/// has the rules; a missing directory is created there, as PM2 does): at
/// a non-regular file other than /dev/null (a FIFO would block logging, a
/// device or directory break it), into a directory another user could
/// swap files in, at the daemon's own files, at a log file another app
/// writes, or at another of the app's own files (out and error, or
/// either and the combined one). `taken` holds the log paths in use, with
/// who uses them.
pub(super) fn check_log_paths(
    spec: &AppSpec,
    home: &Path,
    taken: &[(PathBuf, String)],
) -> Result<()> {
    let mut own: Vec<(PathBuf, String)> = Vec::new();
    for (field, path) in spec.custom_log_paths() {
        if path == Path::new(spec::DISCARD) {
            continue;
        }
        let refused =
            |e: crate::logs::paths::LogPathError| Error::InvalidArgument(format!("{field}: {e}"));
        let placed = crate::logs::paths::place_custom(&path, home).map_err(refused)?;
        placed.check_regular(&path).map_err(refused)?;
        if let Some(user) = crate::logs::paths::taken_by(&placed, taken) {
            return Err(Error::InvalidArgument(format!(
                "{field}: {} is already the log file of {user}; give each stream its own file",
                path.display()
            )));
        }
        if let Some(other) = crate::logs::paths::taken_by(&placed, &own) {
            return Err(Error::InvalidArgument(
                if other == "out_file" && field == "error_file" {
                    format!(
                        "out_file and error_file are the same file ({}); give each its own",
                        path.display()
                    )
                } else {
                    format!(
                        "{field}: {} is also this app's {other}; give each its own file",
                        path.display()
                    )
                },
            ));
        }
        own.push((path, field.to_string()));
    }
    Ok(())
}

impl Supervisor {
    /// Before instances start (or restart), checks that the port each
    /// will bind is still free on the host: a stopped instance holds its
    /// port only on paper, and a plain restart returns from a `--port`
    /// override to the app's own port. An `auto:` instance moves to the
    /// first free port of its range (free among the apps and on the host);
    /// a fixed port, a range or an override is refused, naming the process
    /// that holds it. Returns the refused instances with why; the others
    /// may start. `keep_override`: the next run keeps a `--port` override.
    pub(super) fn recheck_ports(&self, ids: &[u32], keep_override: bool) -> Vec<(u32, Error)> {
        let table = self.table();
        let claims = table.claims_except(&[]);
        let mut taken: Vec<u16> = Vec::new();
        let mut moved = false;
        let mut refused = Vec::new();
        for app in &table.apps {
            let Some(spec) = app.spec() else { continue };
            let picked = || app.instances.iter().filter(|i| ids.contains(&i.id));
            // A balanced app's public port, closed while it was stopped,
            // is bound again before its instances start.
            if spec.balance.is_some()
                && picked().next().is_some()
                && let Err(e) = self.inner.balancer.open(&app.name)
            {
                for inst in picked() {
                    refused.push((
                        inst.id,
                        Error::FailedPrecondition(format!(
                            "{} (id {}) cannot start: its public port: {e}",
                            app.name, inst.id
                        )),
                    ));
                }
                continue;
            }
            let Some(port_spec) = spec.instance_ports() else {
                continue;
            };
            for inst in app.instances.iter().filter(|i| ids.contains(&i.id)) {
                let mut plan = inst.plan.locked();
                let next = if keep_override {
                    plan.effective_port()
                } else {
                    plan.port
                };
                let Some(port) = next else { continue };
                {
                    let s = inst.shared.locked();
                    if s.pid.is_some() && s.port == next {
                        continue; // its own process holds the port
                    }
                }
                let overridden = keep_override && plan.port_override.is_some();
                let claimed = |p: u16| claims.iter().any(|c| c.holds(p)) || taken.contains(&p);
                match recheck(
                    port_spec,
                    port,
                    overridden,
                    claimed,
                    crate::ports::host_free,
                ) {
                    PortRecheck::Free => {}
                    PortRecheck::MoveTo(free) => {
                        tracing::info!(app = %app.name, id = inst.id, from = port, to = free, "port taken meanwhile; moved");
                        taken.push(free);
                        plan.port = Some(free);
                        moved = true;
                    }
                    PortRecheck::Refuse(why) => refused.push((
                        inst.id,
                        Error::FailedPrecondition(format!(
                            "{} (id {}) cannot start: {why}",
                            app.name, inst.id
                        )),
                    )),
                }
            }
        }
        drop(table);
        if moved {
            self.inner.persister.request();
        }
        refused
    }

    /// Tells instances why they could not start ([`Cmd::Refuse`]): one the
    /// daemon was bringing back (restore) becomes `errored` with the reason
    /// rather than `starting` for ever; a stopped one stays stopped, the
    /// caller is told.
    pub(super) async fn note_refused(&self, refused: &[(u32, Error)]) {
        let replies: Vec<_> = {
            let table = self.table();
            refused
                .iter()
                .filter_map(|(id, why)| {
                    let inst = table
                        .apps
                        .iter()
                        .flat_map(|a| &a.instances)
                        .find(|i| i.id == *id)?;
                    let (tx, rx) = oneshot::channel();
                    let _ = inst.cmd.send(Cmd::Refuse(why.to_string(), tx));
                    Some(rx)
                })
                .collect()
        };
        for rx in replies {
            let _ = rx.await;
        }
    }

    /// `restart --port`: the selected instances (of one app) get ports from
    /// `port` for this run only, then restart.
    pub(super) async fn override_ports_and_restart(
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
                .filter_map(|(_, inst)| inst.plan.locked().effective_port())
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
                app.instances[*i].plan.locked().port_override = Some(p);
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
}

/// What a start does about the port its instance's next run binds.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum PortRecheck {
    /// Free on the host: start there.
    Free,
    /// Taken; an `auto:` port moves here.
    MoveTo(u16),
    /// Taken, with nowhere to go: why.
    Refuse(String),
}

/// The recheck rule for one instance whose next run binds `port` of
/// `spec`: free on the host (`host_free`), it starts there. Taken, an
/// `auto:` port that is not a `--port` override (`overridden`) moves to the
/// first port of its range that is not `claimed` (by an app, or by an
/// instance moved earlier in the same round) and is free on the host; a
/// fixed port, a range or an override is refused, naming the holder.
pub(super) fn recheck(
    spec: PortSpec,
    port: u16,
    overridden: bool,
    claimed: impl Fn(u16) -> bool,
    host_free: impl Fn(u16) -> std::result::Result<(), crate::ports::PortError>,
) -> PortRecheck {
    let Err(busy) = host_free(port) else {
        return PortRecheck::Free;
    };
    let movable = matches!(spec, PortSpec::Auto { .. }) && !overridden;
    if !movable {
        return PortRecheck::Refuse(busy.to_string());
    }
    match spec.ports().find(|&p| !claimed(p) && host_free(p).is_ok()) {
        Some(free) => PortRecheck::MoveTo(free),
        None => PortRecheck::Refuse(format!("{busy}, and no other port of {spec} is free")),
    }
}

#[cfg(test)]
mod tests {
    use super::{PortRecheck, recheck};
    use crate::ports::{PortError, PortSpec};

    /// A host on which `busy` ports are taken by another process.
    fn host(busy: &'static [u16]) -> impl Fn(u16) -> Result<(), PortError> {
        move |port| match busy.contains(&port) {
            true => Err(PortError::Bound { port, holder: None }),
            false => Ok(()),
        }
    }

    fn spec(s: &str) -> PortSpec {
        s.parse().unwrap()
    }

    #[test]
    fn a_free_port_is_kept_whatever_the_spec() {
        for s in ["4000", "4000-4003", "auto:4000-4010"] {
            assert_eq!(
                recheck(spec(s), 4000, false, |_| false, host(&[])),
                PortRecheck::Free
            );
        }
    }

    #[test]
    fn a_taken_fixed_port_or_range_is_refused_naming_the_port() {
        for s in ["4000", "4000-4003"] {
            let PortRecheck::Refuse(why) = recheck(spec(s), 4000, false, |_| false, host(&[4000]))
            else {
                panic!("{s}: a taken fixed port must be refused");
            };
            assert!(why.contains("port 4000 is already in use"), "{why}");
        }
    }

    #[test]
    fn a_taken_auto_port_moves_to_the_first_unclaimed_free_one() {
        // 4000 taken on the host, 4001 claimed by another app, 4002 taken
        // on the host too: 4003 is the first that is both.
        let claimed = |p: u16| p == 4001;
        assert_eq!(
            recheck(
                spec("auto:4000-4010"),
                4000,
                false,
                claimed,
                host(&[4000, 4002])
            ),
            PortRecheck::MoveTo(4003)
        );
    }

    #[test]
    fn an_override_never_moves() {
        let PortRecheck::Refuse(why) =
            recheck(spec("auto:4000-4010"), 4000, true, |_| false, host(&[4000]))
        else {
            panic!("a --port override is what the user asked for: refuse, do not move");
        };
        assert!(!why.contains("no other port"), "{why}");
    }

    #[test]
    fn a_full_auto_range_is_refused_saying_so() {
        let PortRecheck::Refuse(why) = recheck(
            spec("auto:4000-4001"),
            4000,
            false,
            |p| p == 4001,
            host(&[4000]),
        ) else {
            panic!("nowhere to go");
        };
        assert!(
            why.contains("no other port of auto:4000-4001 is free"),
            "{why}"
        );
    }
}
