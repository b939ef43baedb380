//! Ports: owns what an app's `port` setting means ([`PortSpec`]: one port,
//! a range, or `auto:` assignment from a range), which ports each instance
//! gets ([`assign`]), and the conflict rules between apps and with the host.
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
use std::ops::RangeInclusive;
use std::str::FromStr;

pub use host::{accepts_connections, host_free, listening};

/// A port request as users write it: `3000`, `3000-3003`, `auto:4000-4100`.
/// Serialized as that string, so `state.json` stores `"auto:4000-4100"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum PortSpec {
    /// One port for the app's single instance.
    Fixed(u16),
    /// Consecutive ports, instance `i` gets `first + i`; the whole range is
    /// reserved for the app. `first <= last`.
    Range { first: u16, last: u16 },
    /// Each instance gets the first free port of the range. `first <= last`.
    Auto { first: u16, last: u16 },
}

impl PortSpec {
    /// Every port the spec names: the one port, the range, or the auto
    /// candidates.
    pub fn ports(&self) -> RangeInclusive<u16> {
        match *self {
            PortSpec::Fixed(port) => port..=port,
            PortSpec::Range { first, last } | PortSpec::Auto { first, last } => first..=last,
        }
    }

    /// The ports this spec keeps for its app whether instances use them or
    /// not: all of a fixed port or range, none of an auto range (there only
    /// the assigned ports count, see [`Claim`]).
    pub fn reserved(&self) -> Option<RangeInclusive<u16>> {
        match self {
            PortSpec::Fixed(_) | PortSpec::Range { .. } => Some(self.ports()),
            PortSpec::Auto { .. } => None,
        }
    }

    /// How many ports [`PortSpec::ports`] has (1..=65535).
    pub fn port_count(&self) -> u32 {
        let range = self.ports();
        u32::from(*range.end()) - u32::from(*range.start()) + 1
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSpec::Fixed(port) => write!(f, "{port}"),
            PortSpec::Range { first, last } => write!(f, "{first}-{last}"),
            PortSpec::Auto { first, last } => write!(f, "auto:{first}-{last}"),
        }
    }
}

impl FromStr for PortSpec {
    type Err = PortError;

    /// Parses the forms [`Display`](fmt::Display) writes. Surrounding
    /// whitespace is ignored and `auto:` is case-insensitive.
    fn from_str(s: &str) -> Result<Self, PortError> {
        let text = s.trim();
        let auto_body = text
            .get(..5)
            .filter(|prefix| prefix.eq_ignore_ascii_case("auto:"))
            .map(|_| &text[5..]);
        let body = auto_body.unwrap_or(text);
        let Some((first, last)) = body.split_once('-') else {
            if auto_body.is_some() {
                return Err(invalid_spec(
                    s,
                    "auto: needs a range to pick from, such as auto:4000-4100",
                ));
            }
            return Ok(PortSpec::Fixed(parse_port(s, body)?));
        };
        let (first, last) = (parse_port(s, first)?, parse_port(s, last)?);
        if first > last {
            return Err(invalid_spec(
                s,
                &format!("the range runs backwards ({first} > {last}); write {last}-{first}"),
            ));
        }
        Ok(match auto_body {
            Some(_) => PortSpec::Auto { first, last },
            None => PortSpec::Range { first, last },
        })
    }
}

impl TryFrom<String> for PortSpec {
    type Error = PortError;

    fn try_from(s: String) -> Result<Self, PortError> {
        s.parse()
    }
}

impl From<PortSpec> for String {
    fn from(spec: PortSpec) -> String {
        spec.to_string()
    }
}

/// One number of a spec: digits only (no sign), 1..=65535.
fn parse_port(whole: &str, part: &str) -> Result<u16, PortError> {
    let part = part.trim();
    if part.is_empty() {
        return Err(invalid_spec(whole, "a port number is missing"));
    }
    if !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid_spec(
            whole,
            &format!("{part:?} is not a port number"),
        ));
    }
    match part.parse::<u32>() {
        Ok(0) => Err(invalid_spec(
            whole,
            "port 0 cannot be assigned; ports are 1-65535",
        )),
        Ok(n) => u16::try_from(n)
            .map_err(|_| invalid_spec(whole, &format!("{n} is too large; ports are 1-65535"))),
        Err(_) => Err(invalid_spec(
            whole,
            &format!("{part} is too large; ports are 1-65535"),
        )),
    }
}

fn invalid_spec(whole: &str, why: &str) -> PortError {
    PortError::Invalid(format!(
        "invalid port {:?}: {why}; write a port (3000), a range (3000-3003) or auto:FIRST-LAST (auto:4000-4100)",
        whole.trim()
    ))
}

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

fn instances_text(instances: u32) -> String {
    match instances {
        1 => "1 instance".to_string(),
        n => format!("{n} instances"),
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
    let count = spec.port_count();
    if instances > count {
        return Err(too_few_ports(spec, instances));
    }

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

/// The error for a spec with fewer ports than instances, with a suggestion
/// that would fit.
fn too_few_ports(spec: PortSpec, instances: u32) -> PortError {
    let first = *spec.ports().start();
    let (wide_first, wide_last) = span(first, instances);
    let (auto_first, auto_last) = span(first, instances.max(101));
    let count = spec.port_count();
    PortError::Invalid(match spec {
        PortSpec::Fixed(port) => format!(
            "port {port} with {}: one port serves one instance; give a range such as {wide_first}-{wide_last}, or auto:{auto_first}-{auto_last}",
            instances_text(instances)
        ),
        PortSpec::Range { .. } => format!(
            "port range {spec} has {count} ports for {}: widen it ({wide_first}-{wide_last}) or use auto:{auto_first}-{auto_last}",
            instances_text(instances)
        ),
        PortSpec::Auto { .. } => format!(
            "port range {spec} has {count} ports for {}: widen it (auto:{wide_first}-{wide_last})",
            instances_text(instances)
        ),
    })
}

/// `len` consecutive ports starting at `first`, moved down if they would
/// run past 65535.
fn span(first: u16, len: u32) -> (u16, u16) {
    let len = len.clamp(1, 65_535);
    let first = u32::from(first).min(65_536 - len);
    // Both bounds are within 1..=65535 by the clamps above.
    (first as u16, (first + len - 1) as u16)
}
