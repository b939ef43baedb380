//! `depends_on`: what an app may wait for in another
//! ([`DependencyCondition`]: started, healthy, completed) and the order a
//! set of apps starts in ([`dependency_order`], [`dependency_levels`]), with
//! the cycle that makes a set impossible ([`DependencyCycle`]). Waiting
//! for a condition is the daemon's (`server/src/supervisor/dependencies.rs`).
//!
//! A set is given as `(name, names it depends on)` per app, in the order
//! the user wrote it; results are indices into it. A dependency on a name
//! outside the set is not an edge: whether it must exist is the caller's
//! rule (the file loader wants it in the file, the daemon among its apps).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use super::{InvalidInput, invalid};
use crate::v1;

/// What an app waits for in another before it starts. Serialized as its
/// word (`state.json` stores `"healthy"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DependencyCondition {
    /// Every instance spawned.
    #[default]
    Started,
    /// Every instance passed its health check (online without one).
    Healthy,
    /// Every instance exited with code 0.
    Completed,
}

impl DependencyCondition {
    pub const ALL: [DependencyCondition; 3] = [
        DependencyCondition::Started,
        DependencyCondition::Healthy,
        DependencyCondition::Completed,
    ];

    /// The word users write and see.
    pub fn word(self) -> &'static str {
        match self {
            DependencyCondition::Started => "started",
            DependencyCondition::Healthy => "healthy",
            DependencyCondition::Completed => "completed",
        }
    }

    /// The wire form (`Dependency.condition`); unspecified is `started`.
    pub fn from_wire(raw: i32) -> Result<Self, InvalidInput> {
        v1::DependencyCondition::try_from(raw)
            .map(Self::from)
            .map_err(|_| {
                invalid(format!(
                    "{raw} is not a condition (started, healthy, completed)"
                ))
            })
    }
}

impl From<v1::DependencyCondition> for DependencyCondition {
    fn from(wire: v1::DependencyCondition) -> Self {
        match wire {
            v1::DependencyCondition::Unspecified | v1::DependencyCondition::Started => {
                DependencyCondition::Started
            }
            v1::DependencyCondition::Healthy => DependencyCondition::Healthy,
            v1::DependencyCondition::Completed => DependencyCondition::Completed,
        }
    }
}

impl From<DependencyCondition> for v1::DependencyCondition {
    fn from(condition: DependencyCondition) -> Self {
        match condition {
            DependencyCondition::Started => v1::DependencyCondition::Started,
            DependencyCondition::Healthy => v1::DependencyCondition::Healthy,
            DependencyCondition::Completed => v1::DependencyCondition::Completed,
        }
    }
}

impl FromStr for DependencyCondition {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        Self::ALL
            .into_iter()
            .find(|c| c.word() == s)
            .ok_or_else(|| {
                invalid(format!(
                    "{s:?} is not a condition; use started, healthy or completed"
                ))
            })
    }
}

impl fmt::Display for DependencyCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// One dependency of app `app`: another app's name.
pub fn check_dependency(app: &str, dependency: &str) -> Result<(), InvalidInput> {
    super::validate_name(dependency)?;
    if dependency == app {
        return Err(invalid(format!("{app} depends on itself")));
    }
    Ok(())
}

/// Apps that depend on each other in a ring, so none can start first.
/// Displays as the ring of names: `a → b → a`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyCycle {
    /// Indices of the apps around the ring, the first one again at the end.
    pub apps: Vec<usize>,
    /// Which entry of the first app's dependencies leads to the second:
    /// where the file loader points.
    pub entry: usize,
    names: Vec<String>,
}

impl fmt::Display for DependencyCycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names.join(" → "))
    }
}

impl std::error::Error for DependencyCycle {}

/// One app of a set: its name and the names it depends on, as written.
pub type DependencyNode<'a> = (&'a str, Vec<&'a str>);

/// The set in start order: each app after the apps of the set it depends
/// on, otherwise in the given order (the first app whose dependencies are
/// placed goes next).
pub fn dependency_order(apps: &[DependencyNode<'_>]) -> Result<Vec<usize>, DependencyCycle> {
    let index = index_of(apps);
    if let Some(cycle) = find_cycle(apps, &index) {
        return Err(cycle);
    }
    let mut placed = vec![false; apps.len()];
    let mut order = Vec::with_capacity(apps.len());
    // Without a cycle some app is always ready, so this places them all.
    while let Some(next) =
        (0..apps.len()).find(|&i| !placed[i] && edges(apps, &index, i).all(|j| placed[j]))
    {
        placed[next] = true;
        order.push(next);
    }
    Ok(order)
}

/// The set in levels: level 0 depends on no app of the set, level n + 1 on
/// apps of levels up to n (at least one of level n). The apps of a level
/// can start together, once the levels before them have; each level lists
/// its apps in the given order.
pub fn dependency_levels(apps: &[DependencyNode<'_>]) -> Result<Vec<Vec<usize>>, DependencyCycle> {
    let index = index_of(apps);
    if let Some(cycle) = find_cycle(apps, &index) {
        return Err(cycle);
    }
    Ok(group(levels_of(apps, &index)))
}

/// [`dependency_levels`] for a set that may have a cycle (apps made by
/// several sets, each checked alone): the apps on or behind a cycle come
/// in one last level.
pub fn dependency_levels_lenient(apps: &[DependencyNode<'_>]) -> Vec<Vec<usize>> {
    let index = index_of(apps);
    group(levels_of(apps, &index))
}

/// Name → index of the first app with that name.
fn index_of<'a>(apps: &[DependencyNode<'a>]) -> HashMap<&'a str, usize> {
    let mut index = HashMap::with_capacity(apps.len());
    for (i, (name, _)) in apps.iter().enumerate() {
        index.entry(*name).or_insert(i);
    }
    index
}

/// The apps of the set that app `i` depends on.
fn edges<'s>(
    apps: &'s [DependencyNode<'_>],
    index: &'s HashMap<&str, usize>,
    i: usize,
) -> impl Iterator<Item = usize> + 's {
    apps[i].1.iter().filter_map(|dep| index.get(dep).copied())
}

/// Each app's level, None for the apps on or behind a cycle.
fn levels_of(apps: &[DependencyNode<'_>], index: &HashMap<&str, usize>) -> Vec<Option<usize>> {
    let mut levels: Vec<Option<usize>> = vec![None; apps.len()];
    loop {
        let mut progressed = false;
        for i in 0..apps.len() {
            if levels[i].is_some() {
                continue;
            }
            let below: Option<Vec<usize>> = edges(apps, index, i).map(|j| levels[j]).collect();
            if let Some(below) = below {
                levels[i] = Some(below.into_iter().max().map_or(0, |level| level + 1));
                progressed = true;
            }
        }
        if !progressed {
            return levels;
        }
    }
}

/// Indices grouped by level, in the given order; None last.
fn group(levels: Vec<Option<usize>>) -> Vec<Vec<usize>> {
    let known = levels.iter().flatten().max().map_or(0, |top| top + 1);
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); known + 1];
    for (i, level) in levels.into_iter().enumerate() {
        groups[level.unwrap_or(known)].push(i);
    }
    groups.retain(|g| !g.is_empty());
    groups
}

/// The first cycle met walking the dependencies depth-first from each app
/// in the given order.
fn find_cycle(
    apps: &[DependencyNode<'_>],
    index: &HashMap<&str, usize>,
) -> Option<DependencyCycle> {
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
            let Some(dep) = apps[app].1.get(*entry) else {
                marks[app] = Mark::Done;
                path.pop();
                continue;
            };
            *entry += 1;
            let Some(&next) = index.get(dep) else {
                continue; // outside the set
            };
            match marks[next] {
                Mark::New => {
                    marks[next] = Mark::OnPath;
                    path.push((next, 0));
                }
                Mark::OnPath => {
                    let start = path.iter().position(|&(a, _)| a == next)?;
                    let mut ring: Vec<usize> = path[start..].iter().map(|&(a, _)| a).collect();
                    ring.push(next);
                    return Some(DependencyCycle {
                        names: ring.iter().map(|&a| apps[a].0.to_string()).collect(),
                        apps: ring,
                        // Entries are advanced before they are followed:
                        // the one taken is the previous.
                        entry: path[start].1 - 1,
                    });
                }
                Mark::Done => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set<'a>(apps: &[(&'a str, &[&'a str])]) -> Vec<DependencyNode<'a>> {
        apps.iter().map(|(n, d)| (*n, d.to_vec())).collect()
    }

    #[test]
    fn conditions_are_words() {
        for c in DependencyCondition::ALL {
            assert_eq!(c.word().parse(), Ok(c));
            assert_eq!(c.to_string(), c.word());
            let wire = v1::DependencyCondition::from(c);
            assert_eq!(DependencyCondition::from_wire(wire as i32), Ok(c));
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.word()));
            assert_eq!(
                serde_json::from_str::<DependencyCondition>(&json).unwrap(),
                c
            );
        }
        assert_eq!(
            DependencyCondition::from_wire(0),
            Ok(DependencyCondition::Started)
        );
        assert_eq!(
            DependencyCondition::from_wire(9).unwrap_err().0,
            "9 is not a condition (started, healthy, completed)"
        );
        assert_eq!(
            "ready".parse::<DependencyCondition>().unwrap_err().0,
            "\"ready\" is not a condition; use started, healthy or completed"
        );
        assert!("Healthy".parse::<DependencyCondition>().is_err());
    }

    #[test]
    fn an_app_depends_on_another_app() {
        assert_eq!(check_dependency("api", "db"), Ok(()));
        assert_eq!(
            check_dependency("api", "api").unwrap_err().0,
            "api depends on itself"
        );
        assert!(check_dependency("api", "a/b").is_err());
        assert!(check_dependency("api", "all").is_err());
    }

    #[test]
    fn independent_apps_keep_the_given_order() {
        let apps = set(&[("c", &[]), ("a", &[]), ("b", &[])]);
        assert_eq!(dependency_order(&apps), Ok(vec![0, 1, 2]));
        assert_eq!(dependency_levels(&apps), Ok(vec![vec![0, 1, 2]]));
        assert_eq!(dependency_order(&[]), Ok(vec![]));
        assert_eq!(dependency_levels(&[]), Ok(vec![]));
    }

    #[test]
    fn a_chain_starts_from_its_end() {
        let apps = set(&[("web", &["api"]), ("api", &["db"]), ("db", &[]), ("x", &[])]);
        assert_eq!(dependency_order(&apps), Ok(vec![2, 1, 0, 3]));
        assert_eq!(
            dependency_levels(&apps),
            Ok(vec![vec![2, 3], vec![1], vec![0]])
        );
    }

    #[test]
    fn a_diamond_has_three_levels() {
        let apps = set(&[
            ("top", &["left", "right"]),
            ("left", &["base"]),
            ("right", &["base"]),
            ("base", &[]),
        ]);
        assert_eq!(dependency_order(&apps), Ok(vec![3, 1, 2, 0]));
        assert_eq!(
            dependency_levels(&apps),
            Ok(vec![vec![3], vec![1, 2], vec![0]])
        );
        // A level is one above the highest dependency, not the nearest.
        let apps = set(&[("a", &["b", "c"]), ("b", &["c"]), ("c", &[])]);
        assert_eq!(
            dependency_levels(&apps),
            Ok(vec![vec![2], vec![1], vec![0]])
        );
    }

    #[test]
    fn names_outside_the_set_are_not_edges() {
        let apps = set(&[("api", &["db", "elsewhere"]), ("db", &["nowhere"])]);
        assert_eq!(dependency_order(&apps), Ok(vec![1, 0]));
        assert_eq!(dependency_levels(&apps), Ok(vec![vec![1], vec![0]]));
    }

    #[test]
    fn cycles_are_named_with_the_entry_that_closes_them() {
        let me = set(&[("ok", &[]), ("me", &["ok", "me"])]);
        let cycle = dependency_order(&me).unwrap_err();
        assert_eq!(cycle.to_string(), "me → me");
        assert_eq!((cycle.apps, cycle.entry), (vec![1, 1], 1));

        let ring = set(&[
            ("web", &["api"]),
            ("api", &["cache", "db"]),
            ("db", &["api"]),
            ("cache", &[]),
        ]);
        let cycle = dependency_levels(&ring).unwrap_err();
        assert_eq!(cycle.to_string(), "api → db → api");
        assert_eq!((cycle.apps.clone(), cycle.entry), (vec![1, 2, 1], 1));
        assert_eq!(dependency_order(&ring), Err(cycle));

        let long = set(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &[])]);
        assert_eq!(
            dependency_order(&long).unwrap_err().to_string(),
            "a → b → c → a"
        );
    }

    #[test]
    fn lenient_levels_put_a_cycle_last() {
        let apps = set(&[
            ("a", &["b"]),
            ("b", &["a"]),
            ("c", &["a"]),
            ("d", &[]),
            ("e", &["d"]),
        ]);
        assert_eq!(
            dependency_levels_lenient(&apps),
            vec![vec![3], vec![4], vec![0, 1, 2]]
        );
        let fine = set(&[("web", &["db"]), ("db", &[])]);
        assert_eq!(
            dependency_levels_lenient(&fine),
            dependency_levels(&fine).unwrap()
        );
    }
}
