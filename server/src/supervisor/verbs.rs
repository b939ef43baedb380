//! PM2's smaller verbs on existing instances: `reset` (restart counters
//! back to 0), `sendSignal` (a signal to each running instance's process),
//! `env` (the environment an instance's processes get), and the captured
//! environment that `restart`/`reload --update-env` replace. Counters and
//! signals go to the instance tasks as commands (`Cmd::Reset`,
//! `Cmd::Signal`), since a task is the only writer of its record and the
//! only owner of its child; the captured environment is part of the
//! instances' `Plan`, written under the table lock. `--update-env` merges
//! the caller's environment over the captured one, as PM2 does
//! (`Utility.extend` in its restartProcessId): a variable the new shell
//! lacks is kept.

use std::collections::BTreeMap;
use std::sync::Arc;

use nix::sys::signal::Signal;
use pmdaemon_proto::Target;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::sync::LockExt;

use super::Supervisor;
use super::instance::{self, Cmd};
use super::table::InstanceView;

/// The environment of one instance, for GetProcessEnv.
pub struct InstanceEnv {
    pub id: u32,
    pub name: String,
    pub env: BTreeMap<String, String>,
}

impl Supervisor {
    /// Sets the restart counters of the target's instances to 0.
    pub(super) async fn reset_counters(&self, target: &Target) -> Result<Vec<InstanceView>> {
        self.check_running()?;
        let waits: Vec<_> = {
            let table = self.table();
            table
                .select(target)?
                .into_iter()
                .map(|(a, i)| {
                    let (tx, rx) = oneshot::channel();
                    let _ = table.apps[a].instances[i].cmd.send(Cmd::Reset(tx));
                    rx
                })
                .collect()
        };
        for rx in waits {
            rx.await.map_err(|_| Error::ShuttingDown)?;
        }
        self.views(target)
    }

    /// Sends `signal` to the process of each running instance of the
    /// target; returns the instances that got it. None running is
    /// FAILED_PRECONDITION: a signal that reached nobody is not a success.
    pub async fn signal(&self, target: &Target, signal: Signal) -> Result<Vec<InstanceView>> {
        self.check_running()?;
        let waits: Vec<_> = {
            let table = self.table();
            table
                .select(target)?
                .into_iter()
                .map(|(a, i)| {
                    let inst = &table.apps[a].instances[i];
                    let (tx, rx) = oneshot::channel();
                    let _ = inst.cmd.send(Cmd::Signal(signal, tx));
                    (inst.id, rx)
                })
                .collect()
        };
        let mut sent = Vec::new();
        for (id, rx) in waits {
            match rx.await.map_err(|_| Error::ShuttingDown)? {
                Ok(true) => sent.push(id),
                Ok(false) => {}
                Err(e) => {
                    return Err(Error::FailedPrecondition(format!(
                        "cannot send {} to process {id}: {e}",
                        signal.as_str()
                    )));
                }
            }
        }
        if sent.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "no process of {target} is running to receive {}; start it first",
                signal.as_str()
            )));
        }
        tracing::info!(%target, signal = signal.as_str(), ids = ?sent, "signal sent");
        let mut views = self.views(target)?;
        views.retain(|v| sent.contains(&v.id));
        Ok(views)
    }

    /// The environment each instance of the target runs with: the
    /// daemon's own, with what its current (or last) run set over it
    /// (`instance::overlay_env`: captured, the daemon's variables, the
    /// app's `env`, its port).
    pub fn environments(&self, target: &Target) -> Result<Vec<InstanceEnv>> {
        let home = self.inner.home.to_str();
        let base: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let table = self.table();
        Ok(table
            .select(target)?
            .into_iter()
            .map(|(a, i)| {
                let inst = &table.apps[a].instances[i];
                let (spec, port) = {
                    let s = inst.shared.locked();
                    (s.spec.clone(), s.port)
                };
                let mut env = base.clone();
                env.extend(instance::overlay_env(
                    &spec, inst.id, inst.index, port, home,
                ));
                InstanceEnv {
                    id: inst.id,
                    name: table.apps[a].name.clone(),
                    env,
                }
            })
            .collect())
    }

    /// Merges `caller_env` over the captured environment of the apps the
    /// target selects (all their instances: they share one definition),
    /// for their next runs. Checked first; nothing changes when a variable
    /// is invalid.
    pub(super) fn update_caller_env(
        &self,
        target: &Target,
        caller_env: &BTreeMap<String, String>,
    ) -> Result<()> {
        for (k, v) in caller_env {
            pmdaemon_proto::check_env_var(k, v).map_err(|e| e.named("caller_env"))?;
        }
        let table = self.table();
        let mut apps: Vec<usize> = table.select(target)?.into_iter().map(|(a, _)| a).collect();
        apps.dedup();
        for a in apps {
            let app = &table.apps[a];
            let Some(old) = app.spec() else { continue };
            let mut spec = (*old).clone();
            spec.caller_env
                .extend(caller_env.iter().map(|(k, v)| (k.clone(), v.clone())));
            let spec = Arc::new(spec);
            for inst in &app.instances {
                inst.plan.locked().spec = spec.clone();
            }
            tracing::info!(app = %app.name, vars = caller_env.len(), "captured environment updated");
        }
        self.inner.persister.request();
        Ok(())
    }
}
