//! `depends_on` across a file: every dependency names an app of the same
//! file, and the dependencies form no cycle. Pure; the caller turns a
//! finding into a located error (see `Ctx::fail_at`).
//!
//! A dependency must be in the file even when `--only` leaves it out of
//! what is sent: the file is the unit that is checked, so `--only` cannot
//! change whether a file is valid; the daemon then finds the left-out
//! dependency among the apps it already runs.

use std::collections::HashMap;

use pmdaemon_proto::v1::{DependencyCondition, RestartPolicy};

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
            if dep.app == *name {
                return Err((i, j, format!("`depends_on`: {name} depends on itself")));
            }
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
    match find_cycle(apps, &index) {
        Some((i, j, cycle)) => Err((
            i,
            j,
            format!("`depends_on`: dependency cycle: {}", cycle.join(" → ")),
        )),
        None => Ok(()),
    }
}

/// A cycle, as the app and entry that start it and the names around it
/// (`[a, b, a]`); searched depth-first from the apps in file order.
fn find_cycle<'a>(
    apps: &'a [AppDef],
    index: &HashMap<&str, usize>,
) -> Option<(usize, usize, Vec<&'a str>)> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks = vec![Mark::New; apps.len()];
    for root in 0..apps.len() {
        if marks[root] != Mark::New {
            continue;
        }
        // The path: (app, next entry to follow).
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        marks[root] = Mark::OnPath;
        while let Some(&mut (app, ref mut entry)) = path.last_mut() {
            let deps = &apps[app].spec.depends_on;
            let Some(dep) = deps.get(*entry) else {
                marks[app] = Mark::Done;
                path.pop();
                continue;
            };
            *entry += 1;
            let next = index[dep.app.as_str()];
            match marks[next] {
                Mark::New => {
                    marks[next] = Mark::OnPath;
                    path.push((next, 0));
                }
                Mark::OnPath => {
                    let start = path.iter().position(|&(a, _)| a == next)?;
                    let (first, first_entry) = path[start];
                    let mut names: Vec<&str> = path[start..]
                        .iter()
                        .map(|&(a, _)| apps[a].spec.name.as_str())
                        .collect();
                    names.push(apps[next].spec.name.as_str());
                    // Entries are advanced before following: the one taken
                    // is the previous.
                    return Some((first, first_entry - 1, names));
                }
                Mark::Done => {}
            }
        }
    }
    None
}
