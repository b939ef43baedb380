//! Deleting instances: the gap rule (only an app's highest instances may
//! go, since ports and `PMD_INSTANCE_ID` follow the index), stopping and
//! dropping instances from the table, the `deleted` events that end log
//! followers, and removing the log files the daemon made.

use std::sync::Arc;

use pmdaemon_proto::Target;

use crate::error::{Error, Result};
use crate::sync::LockExt;

use super::instance::State;
use super::table::{Instance, InstanceView};
use super::{Supervisor, events};

impl Supervisor {
    /// Removes the deleted instances' log files that the daemon made in
    /// its logs directory (after the instances left the table). Files the
    /// user named (`out_file`/`error_file`/`log_file`) are left alone:
    /// they may hold earlier content, or be /dev/null; so is a file that
    /// instances still in the table write (an app's merged files when
    /// only some of its instances go).
    pub(super) fn remove_logs(&self, views: &[InstanceView]) {
        let logs_dir = self.inner.logs.dir();
        let in_use: std::collections::HashSet<std::path::PathBuf> = self
            .table()
            .log_paths_except(&[])
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        for v in views {
            let own = [Some(&v.out_log), Some(&v.err_log), v.log.as_ref()]
                .into_iter()
                .flatten()
                .filter(|p| p.parent() == Some(logs_dir) && !in_use.contains(*p))
                .cloned();
            if let Err(e) = crate::logs::remove_log_files(own) {
                tracing::warn!(app = %v.name, id = v.id, error = %e, "cannot remove log files");
            }
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
        self.remove_logs(&views);
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
                inst.plan.locked().spec = spec.clone();
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
            let members: Vec<(u32, u32)> = app.instances.iter().map(|i| (i.id, i.index)).collect();
            if let Some((id, index, n)) = first_gap(&members, ids) {
                let name = &app.name;
                let count = app.instances.len();
                return Some((
                    id,
                    format!(
                        "id {id} is instance {index} of {name} ({count} instances); deleting it \
                         would leave a gap in the instance numbers that ports and \
                         PMD_INSTANCE_ID follow. `pmd scale {name} {n}` removes the highest \
                         instances; `pmd delete {name}` deletes the app"
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
        let balancer = &self.inner.balancer;
        for app in &mut table.apps {
            app.instances.retain(|i| {
                let gone = ids.contains(&i.id);
                if gone {
                    balancer.forget(&app.name, i.id);
                }
                !gone
            });
            if app.instances.is_empty() {
                balancer.remove(&app.name);
            }
        }
        table.apps.retain(|a| !a.instances.is_empty());
        drop(table);
        self.inner.persister.request();
    }
}

/// The gap rule on one app's instances, given as (id, index): when deleting
/// the instances whose ids are in `ids` would leave its indices other than
/// 0..n (n = how many are kept), the first deleted instance below n, as
/// (id, index, n). Deleting none or all of an app never makes a gap.
fn first_gap(members: &[(u32, u32)], ids: &[u32]) -> Option<(u32, u32, u32)> {
    let kept = members.iter().filter(|(id, _)| !ids.contains(id)).count() as u32;
    if kept == 0 || kept == members.len() as u32 {
        return None;
    }
    members
        .iter()
        .find(|(id, index)| ids.contains(id) && *index < kept)
        .map(|&(id, index)| (id, index, kept))
}

#[cfg(test)]
mod tests {
    use super::first_gap;

    /// An app of four instances: ids 10..13, indices 0..3.
    const FOUR: [(u32, u32); 4] = [(10, 0), (11, 1), (12, 2), (13, 3)];

    #[test]
    fn deleting_the_highest_instances_leaves_no_gap() {
        assert_eq!(first_gap(&FOUR, &[13]), None);
        assert_eq!(first_gap(&FOUR, &[12, 13]), None);
        assert_eq!(first_gap(&FOUR, &[11, 12, 13]), None);
    }

    #[test]
    fn deleting_none_or_all_of_an_app_leaves_no_gap() {
        assert_eq!(first_gap(&FOUR, &[]), None);
        assert_eq!(first_gap(&FOUR, &[99]), None);
        assert_eq!(first_gap(&FOUR, &[10, 11, 12, 13]), None);
    }

    #[test]
    fn deleting_a_middle_or_first_instance_is_a_gap() {
        assert_eq!(first_gap(&FOUR, &[11]), Some((11, 1, 3)));
        assert_eq!(first_gap(&FOUR, &[10]), Some((10, 0, 3)));
        // Two go, two stay: index 1 is below the two kept.
        assert_eq!(first_gap(&FOUR, &[11, 13]), Some((11, 1, 2)));
    }

    #[test]
    fn the_gap_rule_follows_indices_not_ids() {
        // Ids out of index order (instances replaced by apply keep theirs).
        let members = [(7, 1), (3, 0), (9, 2)];
        assert_eq!(first_gap(&members, &[9]), None);
        assert_eq!(first_gap(&members, &[3]), Some((3, 0, 2)));
    }
}
