//! `max_memory_restart`: which processes the sampler looks at, and the
//! guard that replaces an instance whose memory went over its limit (a
//! `Recycle` command to its task).

use std::sync::{Arc, Weak};

use crate::sync::LockExt;

use super::Inner;
use super::instance::Cmd;

/// The running processes the sampler should look at.
pub(super) fn sample_targets(inner: &Inner) -> Vec<crate::metrics::Target> {
    let table = inner.table.locked();
    table
        .apps
        .iter()
        .flat_map(|a| &a.instances)
        .filter_map(|i| {
            let pid = i.shared.locked().pid?;
            Some(crate::metrics::Target { id: i.id, pid })
        })
        .collect()
}

/// `max_memory_restart`: after each sample, instances over their limit are
/// replaced (with the reason recorded). Ends with the supervisor.
pub(super) async fn memory_guard(
    inner: Weak<Inner>,
    mut metrics: tokio::sync::watch::Receiver<Arc<crate::metrics::Snapshot>>,
) {
    while metrics.changed().await.is_ok() {
        let snapshot = metrics.borrow_and_update().clone();
        let Some(inner) = inner.upgrade() else { return };
        let table = inner.table.locked();
        for inst in table.apps.iter().flat_map(|a| &a.instances) {
            let (limit, running) = {
                let s = inst.shared.locked();
                (s.spec.max_memory_bytes, s.pid.is_some())
            };
            let (Some(limit), true, Some(sample)) =
                (limit, running, snapshot.samples.get(&inst.id))
            else {
                continue;
            };
            if sample.memory_bytes > limit {
                let reason = format!(
                    "memory {} exceeded max_memory_restart {}",
                    human_bytes(sample.memory_bytes),
                    human_bytes(limit)
                );
                let _ = inst.cmd.send(Cmd::Recycle(reason));
            }
        }
    }
}

pub(super) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
