//! `depends_on` across a file: every dependency names an app of the same
//! file, and the dependencies form no cycle (the daemon's rule,
//! `pmdaemon_proto::dependency_order`). Pure; the caller turns a finding
//! into a located error (see `Ctx::fail_at`).
//!
//! A dependency must be in the file even when `--only` leaves it out of
//! what is sent: the file is the unit that is checked, so `--only` cannot
//! change whether a file is valid; the daemon then finds the left-out
//! dependency among the apps it already runs.

use std::collections::HashMap;

use pmdaemon_proto::v1::{DependencyCondition, RestartPolicy};
use pmdaemon_proto::{DependencyNode, dependency_order};

use super::app::{AppDef, suggest};

/// The first problem, as (app index, `depends_on` entry index, message).
pub fn check(apps: &[AppDef]) -> Result<(), (usize, usize, String)> {
    let index: HashMap<&str, usize> = apps
        .iter()
        .enumerate()
        .map(|(i, a)| (a.spec.name.as_str(), i))
        .collect();
    for (i, app) in apps.iter().enumerate() {
        let name = &app.spec.name;
        for (j, dep) in app.spec.depends_on.iter().enumerate() {
            pmdaemon_proto::check_dependency(name, &dep.app)
                .map_err(|e| (i, j, format!("`depends_on`: {e}")))?;
            if dep.condition() == DependencyCondition::Completed
                && let Some(&k) = index.get(dep.app.as_str())
                && matches!(
                    apps[k].spec.autorestart(),
                    RestartPolicy::Always | RestartPolicy::Unspecified
                )
            {
                return Err((
                    i,
                    j,
                    format!(
                        "`depends_on`: {name} waits for {} to complete, but {} is restarted \
                         whenever it exits (autorestart: always), so it never completes; give \
                         it `autorestart: false` (a one-shot job) or wait for it to be `started`",
                        dep.app, dep.app
                    ),
                ));
            }
            if !index.contains_key(dep.app.as_str()) {
                let names = apps.iter().map(|a| a.spec.name.as_str());
                let hint = suggest(&dep.app, names)
                    .map(|best| format!(" (did you mean {best}?)"))
                    .unwrap_or_default();
                return Err((
                    i,
                    j,
                    format!(
                        "`depends_on`: {name} depends on {}, which is not an app of this \
                         file{hint}; its apps are {}",
                        dep.app,
                        apps.iter()
                            .map(|a| a.spec.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
    }
    let graph: Vec<DependencyNode<'_>> = apps
        .iter()
        .map(|a| {
            let deps = a.spec.depends_on.iter().map(|d| d.app.as_str()).collect();
            (a.spec.name.as_str(), deps)
        })
        .collect();
    match dependency_order(&graph) {
        Err(cycle) => Err((
            cycle.apps[0],
            cycle.entry,
            format!("`depends_on`: dependency cycle: {cycle}"),
        )),
        Ok(_) => Ok(()),
    }
}
