//! Deleting instances: the gap rule (only an app's highest instances may
//! go, since ports and `PMD_INSTANCE_ID` follow the index), stopping and
//! dropping instances from the table, the `deleted` events that end log
//! followers, and removing the log files the daemon made.

use super::Supervisor;
use super::events;
use super::instance::State;
use super::table::Instance;
use super::table::InstanceView;
use crate::error::{Error, Result};
use pmdaemon_proto::Target;
use std::path::Path;
use std::sync::Arc;

/// Removes the log files of these instances (after they were removed).
/// Removes the deleted instances' log files that the daemon made in its
/// logs directory. Files the user named (`out_file`/`error_file`) are left
/// alone: they may hold earlier content, or be /dev/null.
pub(super) fn remove_logs(logs_dir: &Path, views: &[InstanceView]) {
    for v in views {
        let own = [&v.out_log, &v.err_log]
            .into_iter()
            .filter(|p| p.parent() == Some(logs_dir))
            .cloned();
        if let Err(e) = crate::logs::remove_log_files(own) {
            tracing::warn!(app = %v.name, id = v.id, error = %e, "cannot remove log files");
        }
    }
}

impl Supervisor {
    /// Stops and removes the target's instances (only those in `only_state`
    /// when given), with their log files.
    /// With `only_state` (a bulk delete by status), an instance whose
    /// deletion would leave a gap in its app's instance numbers is kept and
    /// returned with why, and the others go; otherwise such a delete is
    /// refused whole.
    pub(super) async fn delete_instances(
        &self,
        target: &Target,
        only_state: Option<State>,
    ) -> Result<(Vec<InstanceView>, Vec<String>)> {
        self.check_running()?;
        let mut views: Vec<InstanceView> = self
            .views(target)?
            .into_iter()
            .filter(|v| only_state.is_none_or(|s| v.shared.state == s))
            .collect();
        let mut kept = Vec::new();
        if only_state.is_some() {
            let mut ids: Vec<u32> = views.iter().map(|v| v.id).collect();
            while let Some((id, why)) = self.gap_maker(&ids) {
                ids.retain(|&i| i != id);
                kept.push(why);
            }
            views.retain(|v| ids.contains(&v.id));
        }
        let ids: Vec<u32> = views.iter().map(|v| v.id).collect();
        self.shrink_for_delete(&ids)?;
        self.remove(&ids).await;
        remove_logs(self.inner.logs.dir(), &views);
        self.announce_deleted(&views);
        Ok((views, kept))
    }

    /// Logs and emits the deletion of these instances (delete, or scale
    /// removing the top ones): followers of their logs end on it.
    pub(super) fn announce_deleted(&self, views: &[InstanceView]) {
        for v in views {
            tracing::info!(app = %v.name, id = v.id, "deleted");
            let name: Arc<str> = Arc::from(v.name.as_str());
            // The view was taken before the stop: announce the state after.
            let mut after = v.shared.clone();
            after.state = State::Stopped;
            after.pid = None;
            self.inner
                .events
                .emit(v.id, &name, events::EventKind::Deleted, &after, "deleted");
        }
    }

    /// Deleting some instances of an app (by id, or by status) must leave
    /// it with indices 0..n, because ports and `PMD_INSTANCE_ID` follow the
    /// index: only the highest ones may go, and the app's instance count
    /// drops with them (as `pmd scale` does). Anything else is refused
    /// before any change, saying what would work.
    pub(super) fn shrink_for_delete(&self, ids: &[u32]) -> Result<()> {
        if let Some((_, why)) = self.gap_maker(ids) {
            return Err(Error::FailedPrecondition(why));
        }
        let table = self.table();
        let mut shrunk = Vec::new();
        for app in &table.apps {
            let (gone, kept): (Vec<&Instance>, Vec<&Instance>) =
                app.instances.iter().partition(|i| ids.contains(&i.id));
            if gone.is_empty() || kept.is_empty() {
                continue; // untouched, or deleted whole
            }
            if let Some(spec) = app.spec() {
                let mut spec = (*spec).clone();
                spec.instances = kept.len() as u32;
                shrunk.push((kept, Arc::new(spec)));
            }
        }
        for (kept, spec) in shrunk {
            for inst in kept {
                inst.shared.lock().unwrap_or_else(|e| e.into_inner()).spec = spec.clone();
            }
        }
        Ok(())
    }

    /// The first of `ids` whose deletion (with the others) would leave a
    /// gap in its app's instance numbers, with a message that says what
    /// would work instead.
    pub(super) fn gap_maker(&self, ids: &[u32]) -> Option<(u32, String)> {
        let table = self.table();
        for app in &table.apps {
            let (gone, kept): (Vec<&Instance>, Vec<&Instance>) =
                app.instances.iter().partition(|i| ids.contains(&i.id));
            if gone.is_empty() || kept.is_empty() {
                continue;
            }
            let n = kept.len() as u32;
            if let Some(hole) = gone.iter().find(|i| i.index < n) {
                return Some((
                    hole.id,
                    format!(
                        "id {} is instance {} of {} ({} instances); deleting it would leave a \
                         gap in the instance numbers that ports and PMD_INSTANCE_ID follow. \
                         `pmd scale {} {n}` removes the highest instances; `pmd delete {}` \
                         deletes the app",
                        hole.id,
                        hole.index,
                        app.name,
                        app.instances.len(),
                        app.name,
                        app.name
                    ),
                ));
            }
        }
        None
    }

    /// Stops the instances with these ids, then drops them from the table.
    pub(super) async fn remove(&self, ids: &[u32]) {
        self.exit_instances(|id| ids.contains(&id)).await;
        let mut table = self.table();
        for app in &mut table.apps {
            app.instances.retain(|i| !ids.contains(&i.id));
        }
        table.apps.retain(|a| !a.instances.is_empty());
        drop(table);
        self.inner.persister.request();
    }
}
