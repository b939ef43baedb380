//! The file watcher of an app with `watch`: its configuration from the
//! spec (the app's and the daemon's own files ignored), validation before an
//! app is placed, and the restart of the app's running instances on a
//! change.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use pmdaemon_proto::Target;

use crate::error::{Error, Result};
use crate::store;

use super::lifecycle::{Action, first_error};
use super::spec::AppSpec;
use super::{Inner, Supervisor};

pub(super) fn watch_config(spec: &AppSpec) -> crate::watch::WatchConfig {
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
                if let Err(e) = sup.serialized(sup.restart_running(&name)).await {
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
    pub(super) async fn restart_running(&self, name: &str) -> Result<()> {
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
}
