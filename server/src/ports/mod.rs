//! Ports: owns which ports each instance gets ([`assign`]) and the conflict
//! rules between apps and with the host. What an app's `port` setting
//! means ([`PortSpec`]: one port, a range, or `auto:` assignment from a
//! range) and whether it has room for the instances is a value rule of the
//! shared crate (`pmdaemon_proto::PortSpec`), re-exported here.
//!
//! Talks to: the supervisor, which calls [`assign`] when an app is created,
//! scaled, or restarted with a new `--port` (passing the [`Claim`]s of every
//! *other* app, stopped ones included) and puts the result in each
//! instance's environment; reload, which waits on [`accepts_connections`]
//! before retiring an old instance. The host side ([`host_free`],
//! [`holder_of`]) binds throwaway sockets and reads `/proc`; nothing here
//! keeps state, holds a lock or spawns a task.
//!
//! Rules, in one place:
//! - a fixed port or a range is *reserved* whole for its app, used or not,
//!   running or stopped; another app asking for any of it is refused with
//!   the owner's name;
//! - an `auto:` range reserves nothing; only the ports actually assigned
//!   are claimed (and persisted, so they survive restarts);
//! - a port some process outside pmdaemon listens on is refused (fixed,
//!   range) or skipped (auto).

mod host;
#[cfg(test)]
mod tests;

use std::fmt;

use pmdaemon_proto::{InvalidInput, instances_text};

pub use host::{accepts_connections, holder_of, host_free, listening};
pub use pmdaemon_proto::PortSpec;

/// What another app holds, for the conflict check and auto assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub app: String,
    pub spec: Option<PortSpec>,
    /// Ports its instances were given (for an auto spec, the persisted
    /// assignment), whether they run or not.
    pub assigned: Vec<u16>,
}

impl Claim {
    /// Whether the app holds `port`: every port of its fixed port or range
    /// (used or not), plus its assigned ports. Stopped apps still hold.
    pub fn holds(&self, port: u16) -> bool {
        self.spec
            .and_then(|spec| spec.reserved())
            .is_some_and(|reserved| reserved.contains(&port))
            || self.assigned.contains(&port)
    }
}

/// A process that listens on a port and that pmdaemon does not manage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// `/proc/PID/comm` (at most 15 bytes); empty when unreadable.
    pub name: String,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "pid {}", self.pid)
        } else {
            write!(f, "{} (pid {})", self.name, self.pid)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Bad syntax, or fewer ports than instances. The message names the
    /// value and suggests a form that works.
    #[error("{0}")]
    Invalid(String),

    /// Another app holds the port (see [`Claim::holds`]).
    #[error("port {port} is already used by app {app:?}; pick another port or range")]
    Conflict { port: u16, app: String },

    /// A process outside pmdaemon listens on the port.
    #[error(
        "port {port} is already in use on this host by {}: stop it or pick another port",
        holder_text(*.port, .holder)
    )]
    Bound { port: u16, holder: Option<Holder> },

    /// An auto range large enough for the instances, but with too few
    /// ports left free.
    #[error(
        "no free port left in {spec} for {} (ports are taken by apps or other processes on this host); widen the range or free some ports",
        instances_text(*.instances)
    )]
    Exhausted { spec: PortSpec, instances: u32 },

    /// The host check itself failed (out of file descriptors, say): nothing
    /// is known about the port.
    #[error("cannot check whether port {port} is free on this host: {source}")]
    HostCheck {
        port: u16,
        #[source]
        source: std::io::Error,
    },
}

fn holder_text(port: u16, holder: &Option<Holder>) -> String {
    match holder {
        Some(holder) => holder.to_string(),
        None => format!("another process (`ss -ltnp 'sport = :{port}'` may name it)"),
    }
}

impl From<InvalidInput> for PortError {
    fn from(e: InvalidInput) -> Self {
        PortError::Invalid(e.0)
    }
}

/// The ports for `instances` instances of `app` under `spec`, in instance
/// order.
///
/// `others` are the claims of the other apps (a claim named `app` is
/// ignored, so passing every app is harmless). `keep` lists ports this app
/// already has, in instance order (its persisted assignment; for a scale or
/// a `restart --port`, what its running instances hold): they are never
/// host-checked, since the app's own instance may be listening on them.
///
/// - Fixed / Range: at most one instance per port. Every port of the spec
///   must be free of other claims (the error names the app holding it);
///   the ports that instances get (`first + i`) must also be free on the
///   host unless kept. Unused ports of a range are not host-checked: a
///   scale-up checks them when it hands them out.
/// - Auto: instance `i` keeps `keep[i]` while it is inside the range, not
///   claimed by another app and not kept twice; any other instance gets the
///   lowest port of the range that no other app claims, no instance of
///   this call got or keeps, and that is free on the host.
pub fn assign(
    app: &str,
    spec: PortSpec,
    instances: u32,
    others: &[Claim],
    keep: &[u16],
) -> Result<Vec<u16>, PortError> {
    let claimant = |port: u16| {
        others
            .iter()
            .find(|claim| claim.app != app && claim.holds(port))
    };
    spec.check_room(instances)?;

    match spec {
        PortSpec::Fixed(_) | PortSpec::Range { .. } => {
            if let Some((port, claim)) = spec.ports().find_map(|p| Some((p, claimant(p)?))) {
                return Err(PortError::Conflict {
                    port,
                    app: claim.app.clone(),
                });
            }
            // `instances <= count`, so the ports stay inside the spec.
            let given: Vec<u16> = spec.ports().take(instances as usize).collect();
            for &port in &given {
                if !keep.contains(&port) {
                    host_free(port)?;
                }
            }
            Ok(given)
        }
        PortSpec::Auto { .. } => {
            let range = spec.ports();
            let mut kept: Vec<Option<u16>> = vec![None; instances as usize];
            for (slot, &port) in kept.iter_mut().zip(keep) {
                *slot = Some(port);
            }
            for i in 0..kept.len() {
                if let Some(port) = kept[i]
                    && (!range.contains(&port)
                        || claimant(port).is_some()
                        || kept[..i].contains(&Some(port)))
                {
                    kept[i] = None;
                }
            }

            // Fresh ports are handed out in ascending order, so one pass
            // over the range serves every instance.
            let mut candidates = range;
            let mut given = Vec::with_capacity(kept.len());
            for &slot in &kept {
                if let Some(port) = slot {
                    given.push(port);
                    continue;
                }
                loop {
                    let Some(port) = candidates.next() else {
                        return Err(PortError::Exhausted { spec, instances });
                    };
                    if kept.contains(&Some(port)) || claimant(port).is_some() {
                        continue;
                    }
                    match host_free(port) {
                        Ok(()) => {
                            given.push(port);
                            break;
                        }
                        Err(PortError::Bound { .. }) => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(given)
        }
    }
}
