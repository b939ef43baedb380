//! The balancer: owns each balanced app's public port and its pool, the
//! instances that new connections may go to. PM2's cluster mode for any
//! language: the app listens on its private `$PORT` as ever; the daemon
//! listens on the public port and forwards each TCP connection to a ready
//! instance (`proxy.rs`), round-robin or to the least busy.
//!
//! Who tells it what:
//! - the supervisor, when it builds an instance of a balanced app
//!   ([`Balancer::prepare`]: the pool, and the public port bound at once so
//!   that a taken port refuses the start), when it starts one again
//!   ([`Balancer::open`]), and when an app goes ([`Balancer::remove`],
//!   [`Balancer::forget`]);
//! - each instance task, after every change of its record
//!   ([`Balancer::sync`]): in the pool exactly while it is online and
//!   ready (its health check, or for an app without one the implied TCP
//!   check of its private port, passed), out of it the moment it stops
//!   being ready or starts stopping. Readiness comes from the core, never
//!   from polling here. Before its stop signal a stopping instance waits
//!   for its open connections ([`Balancer::drain`], up to the drain
//!   timeout).
//!
//! The public port is bound while an instance of the app should run and
//! closed when none should (a stopped app refuses connections at once).
//! While none is ready (a single instance restarting), new connections wait
//! up to the hold timeout, at most [`MAX_HELD_CONNECTIONS`] of them, then
//! are refused; the reason is in [`PoolStatus::problem`] and, once per
//! outage, a `ConnectionsRefused` notice.
//!
//! Nothing here holds a lock across an await; the pool's lock is held for
//! a pick (a few comparisons), never for I/O.

mod proxy;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pmdaemon_proto::{BalanceStrategy, MAX_HELD_CONNECTIONS};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::ports::PortError;
use crate::supervisor::spec::{AppSpec, Balance};
use crate::sync::LockExt;

/// How long an accept loop pauses after a failed accept (out of file
/// descriptors, say) before it tries again, instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Something worth an event, about an app's public port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Connections are refused (why); once per outage.
    Refusing(String),
}

/// Called with the app's name and what happened.
pub type NoticeFn = Arc<dyn Fn(&str, Notice) + Send + Sync>;

/// One instance's counters, kept while the daemon runs (they survive the
/// instance leaving and rejoining the pool).
#[derive(Debug, Default)]
pub struct Stats {
    pub active: AtomicU32,
    pub total: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// In the pool: false once the instance is draining (or not ready),
    /// which moves its HTTP/1 keep-alive clients at their next request.
    in_pool: std::sync::atomic::AtomicBool,
    /// Woken when `active` drops to 0 (for [`Balancer::drain`]).
    idle: Notify,
}

impl Stats {
    /// A connection to the instance ended.
    fn release(&self) {
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// An instance's part, as `describe` and the metrics show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstanceStatus {
    pub in_pool: bool,
    pub active: u32,
    pub total: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// The public side of a balanced app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStatus {
    pub public_port: u16,
    pub address: String,
    pub listening: bool,
    pub ready_instances: u32,
    pub held: u32,
    pub refused: u64,
    pub problem: String,
}

/// What a [`Balancer::sync`] changed for the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Joined,
    Left,
}

/// Every balanced app's pool, by app name.
pub struct Balancer {
    pools: Mutex<HashMap<String, Arc<Pool>>>,
    notice: NoticeFn,
}

struct Member {
    id: u32,
    /// Should it run (its record's `desired_running`).
    desired: bool,
    /// In the pool, with its private port.
    port: Option<u16>,
    stats: Arc<Stats>,
}

/// A pool's settings, from the app's definition.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    public_port: u16,
    address: Option<IpAddr>,
    strategy: BalanceStrategy,
    proxy_protocol: bool,
    hold: Duration,
}

impl Settings {
    fn of(balance: &Balance, public_port: u16) -> Self {
        Settings {
            public_port,
            address: balance.address,
            strategy: balance.strategy,
            proxy_protocol: balance.proxy_protocol,
            hold: Duration::from_millis(balance.hold_timeout_ms),
        }
    }
}

struct PoolState {
    settings: Settings,
    members: Vec<Member>,
    /// Round-robin position.
    next: usize,
    /// The accept loop while the public port is bound.
    listener: Option<JoinHandle<()>>,
    /// The address the listener got (for describe).
    bound: Option<SocketAddr>,
    problem: String,
    /// A refusal was reported since the pool last had a ready instance.
    outage_reported: bool,
}

pub(crate) struct Pool {
    name: Arc<str>,
    state: Mutex<PoolState>,
    /// Bumped when an instance joins: held connections look again.
    joined: watch::Sender<u64>,
    held: AtomicUsize,
    refused: AtomicU64,
    notice: NoticeFn,
}

/// A picked instance: its port, and its counters with this connection
/// counted (released by [`Picked::release`] or the forwarder).
pub(crate) struct Picked {
    pub id: u32,
    pub port: u16,
    pub stats: Arc<Stats>,
}

impl Balancer {
    pub fn new(notice: NoticeFn) -> Self {
        Balancer {
            pools: Mutex::new(HashMap::new()),
            notice,
        }
    }

    fn pool(&self, name: &str) -> Option<Arc<Pool>> {
        self.pools.locked().get(name).cloned()
    }

    /// Makes (or updates) the pool of a balanced app, and unbinds the pool
    /// of an app that is not balanced (any more). With `open`, the public
    /// port is bound now: a port another process holds is the error, and
    /// nothing changes.
    pub fn prepare(&self, spec: &AppSpec, open: bool) -> Result<(), PortError> {
        let (Some(balance), Some(public)) = (&spec.balance, spec.public_port()) else {
            self.remove(&spec.name);
            return Ok(());
        };
        let settings = Settings::of(balance, public);
        let (pool, new) = {
            let mut pools = self.pools.locked();
            match pools.get(&spec.name) {
                Some(pool) => (pool.clone(), false),
                None => {
                    let pool = Pool::new(&spec.name, settings.clone(), self.notice.clone());
                    pools.insert(spec.name.clone(), pool.clone());
                    (pool, true)
                }
            }
        };
        pool.configure(settings);
        if !open {
            return Ok(());
        }
        pool.open().inspect_err(|_| {
            // Nothing changes: a pool made for this start goes again.
            if new {
                self.remove(&spec.name);
            }
        })
    }

    /// Binds the app's public port if it is not bound (a start of a stopped
    /// app). No pool: nothing to do.
    pub fn open(&self, name: &str) -> Result<(), PortError> {
        match self.pool(name) {
            Some(pool) => pool.open(),
            None => Ok(()),
        }
    }

    /// The app is gone (or no longer balanced): its port is closed.
    pub fn remove(&self, name: &str) {
        if let Some(pool) = self.pools.locked().remove(name) {
            pool.close();
        }
    }

    /// The instance is gone (deleted, scaled away).
    pub fn forget(&self, name: &str, id: u32) {
        if let Some(pool) = self.pool(name) {
            let close = {
                let mut st = pool.state.locked();
                st.members.retain(|m| m.id != id);
                !st.members.is_empty() && !st.members.iter().any(|m| m.desired)
            };
            if close {
                pool.close_listener();
            }
        }
    }

    /// An instance's record changed: `desired` (should it run) and
    /// `in_pool` (online and ready, with its private port). Returns whether
    /// it joined or left the pool. The public port is bound while any
    /// instance should run, closed when none should.
    pub fn sync(
        &self,
        name: &str,
        id: u32,
        desired: bool,
        in_pool: Option<u16>,
    ) -> Option<Membership> {
        let pool = self.pool(name)?;
        pool.sync(id, desired, in_pool)
    }

    /// Waits until the instance has no open connection through the public
    /// port, or `timeout` passed. Returns how many were still open.
    pub async fn drain(&self, name: &str, id: u32, timeout: Duration) -> u32 {
        let Some(stats) = self.pool(name).and_then(|p| p.stats(id)) else {
            return 0;
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let idle = stats.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            let open = stats.active.load(Ordering::Acquire);
            if open == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return stats.active.load(Ordering::Acquire);
            }
        }
    }

    /// The app's public side, if it is balanced.
    pub fn status(&self, name: &str) -> Option<PoolStatus> {
        Some(self.pool(name)?.status())
    }

    /// The instance's part, if its app is balanced.
    pub fn instance(&self, name: &str, id: u32) -> Option<InstanceStatus> {
        let pool = self.pool(name)?;
        let st = pool.state.locked();
        let member = st.members.iter().find(|m| m.id == id);
        Some(match member {
            Some(m) => InstanceStatus {
                in_pool: m.port.is_some(),
                active: m.stats.active.load(Ordering::Relaxed),
                total: m.stats.total.load(Ordering::Relaxed),
                bytes_in: m.stats.bytes_in.load(Ordering::Relaxed),
                bytes_out: m.stats.bytes_out.load(Ordering::Relaxed),
            },
            None => InstanceStatus::default(),
        })
    }
}

impl Pool {
    fn new(name: &str, settings: Settings, notice: NoticeFn) -> Arc<Self> {
        Arc::new(Pool {
            name: Arc::from(name),
            state: Mutex::new(PoolState {
                settings,
                members: Vec::new(),
                next: 0,
                listener: None,
                bound: None,
                problem: String::new(),
                outage_reported: false,
            }),
            joined: watch::channel(0).0,
            held: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            notice,
        })
    }

    /// New settings; a new public port or address rebinds.
    fn configure(self: &Arc<Self>, settings: Settings) {
        let rebind = {
            let mut st = self.state.locked();
            let moved = st.settings.public_port != settings.public_port
                || st.settings.address != settings.address;
            st.settings = settings;
            moved && st.listener.is_some()
        };
        if rebind {
            self.close_listener();
            if let Err(e) = self.open() {
                tracing::warn!(app = %self.name, error = %e, "cannot bind the new public port");
            }
        }
    }

    fn stats(&self, id: u32) -> Option<Arc<Stats>> {
        let st = self.state.locked();
        st.members
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.stats.clone())
    }

    fn sync(self: &Arc<Self>, id: u32, desired: bool, in_pool: Option<u16>) -> Option<Membership> {
        let (change, open, close) = {
            let mut st = self.state.locked();
            let index = match st.members.iter().position(|m| m.id == id) {
                Some(index) => index,
                None => {
                    st.members.push(Member {
                        id,
                        desired: false,
                        port: None,
                        stats: Arc::default(),
                    });
                    st.members.len() - 1
                }
            };
            let member = &mut st.members[index];
            let was = member.port.is_some();
            member.desired = desired;
            member.port = in_pool;
            member
                .stats
                .in_pool
                .store(in_pool.is_some(), Ordering::Release);
            let change = match (was, in_pool.is_some()) {
                (false, true) => Some(Membership::Joined),
                (true, false) => Some(Membership::Left),
                _ => None,
            };
            if change == Some(Membership::Joined) {
                st.outage_reported = false;
                if !st.problem.is_empty() && st.listener.is_some() {
                    st.problem.clear();
                }
            }
            let any_desired = st.members.iter().any(|m| m.desired);
            (
                change,
                any_desired && st.listener.is_none(),
                !any_desired && st.listener.is_some(),
            )
        };
        if change == Some(Membership::Joined) {
            self.joined.send_modify(|n| *n = n.wrapping_add(1));
        }
        if open && let Err(e) = self.open() {
            tracing::warn!(app = %self.name, error = %e, "cannot bind the public port");
        }
        if close {
            self.close_listener();
        }
        change
    }

    /// Binds the public port and starts accepting, unless bound already.
    fn open(self: &Arc<Self>) -> Result<(), PortError> {
        let mut st = self.state.locked();
        if st.listener.is_some() {
            return Ok(());
        }
        let port = st.settings.public_port;
        let listener = match bind(st.settings.address, port) {
            Ok(listener) => listener,
            Err(e) => {
                let e = match e.kind() {
                    io::ErrorKind::AddrInUse => PortError::Bound {
                        port,
                        holder: crate::ports::holder_of(port),
                    },
                    _ => PortError::HostCheck { port, source: e },
                };
                st.problem = format!("the public port is not bound: {e}");
                return Err(e);
            }
        };
        st.bound = listener.local_addr().ok();
        st.problem.clear();
        let pool = Arc::downgrade(self);
        st.listener = Some(tokio::spawn(accept_loop(listener, pool)));
        tracing::info!(app = %self.name, port, "listening on the balanced port");
        Ok(())
    }

    fn close_listener(&self) {
        let mut st = self.state.locked();
        if let Some(task) = st.listener.take() {
            task.abort();
            st.bound = None;
            tracing::info!(app = %self.name, port = st.settings.public_port, "closed the balanced port");
        }
    }

    fn close(&self) {
        self.close_listener();
        // Held connections stop waiting: nothing will join.
        self.joined.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn status(&self) -> PoolStatus {
        let st = self.state.locked();
        let address = match (st.bound, st.settings.address) {
            (Some(addr), _) => addr.ip().to_string(),
            (None, Some(ip)) => ip.to_string(),
            (None, None) => String::new(),
        };
        PoolStatus {
            public_port: st.settings.public_port,
            address,
            listening: st.listener.is_some(),
            ready_instances: st.members.iter().filter(|m| m.port.is_some()).count() as u32,
            held: self.held.load(Ordering::Relaxed) as u32,
            refused: self.refused.load(Ordering::Relaxed),
            problem: st.problem.clone(),
        }
    }

    /// The instance for a new connection, counted as one of its open
    /// connections; `skip` are instances that just refused this one.
    fn pick(&self, skip: &[u32]) -> Option<Picked> {
        let mut st = self.state.locked();
        let n = st.members.len();
        let start = st.next;
        let eligible = |m: &Member| m.port.is_some() && !skip.contains(&m.id);
        let chosen = match st.settings.strategy {
            BalanceStrategy::RoundRobin => (0..n)
                .map(|k| (start + k) % n)
                .find(|&i| eligible(&st.members[i])),
            // The fewest open connections; ties go in turn, so an idle
            // pool still spreads.
            BalanceStrategy::LeastConnections => (0..n)
                .map(|k| (start + k) % n)
                .filter(|&i| eligible(&st.members[i]))
                .min_by_key(|&i| st.members[i].stats.active.load(Ordering::Relaxed)),
        }?;
        st.next = (chosen + 1) % n.max(1);
        let m = &st.members[chosen];
        m.stats.active.fetch_add(1, Ordering::AcqRel);
        m.stats.total.fetch_add(1, Ordering::Relaxed);
        Some(Picked {
            id: m.id,
            port: m.port?,
            stats: m.stats.clone(),
        })
    }

    /// How long a connection with no ready instance may wait: the hold
    /// timeout while some instance should run; else why it may not.
    fn hold(&self) -> Result<Duration, &'static str> {
        let st = self.state.locked();
        if !st.members.iter().any(|m| m.desired) {
            Err("no instance of the app is running")
        } else if st.settings.hold.is_zero() {
            Err("no instance is ready (hold_timeout is 0)")
        } else {
            Ok(st.settings.hold)
        }
    }

    fn proxy_protocol(&self) -> bool {
        self.state.locked().settings.proxy_protocol
    }

    /// A connection was refused, for `why`: counted, and reported once per
    /// outage.
    fn refuse(&self, why: &str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let report = {
            let mut st = self.state.locked();
            st.problem = format!("connections are refused: {why}");
            !std::mem::replace(&mut st.outage_reported, true)
        };
        if report {
            tracing::warn!(app = %self.name, "connections to the balanced port are refused: {why}");
            (self.notice)(&self.name, Notice::Refusing(why.to_string()));
        }
    }
}

/// A listening socket on `address` (none: `[::]` for IPv6 and IPv4, else
/// `0.0.0.0`), with `SO_REUSEADDR` so a daemon restart rebinds while old
/// connections sit in TIME_WAIT.
fn bind(address: Option<IpAddr>, port: u16) -> io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let listen = |addr: SocketAddr, dual: bool| -> io::Result<tokio::net::TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(!dual)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        tokio::net::TcpListener::from_std(socket.into())
    };
    match address {
        Some(ip) => listen(SocketAddr::new(ip, port), false),
        None => match listen(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)), true) {
            Ok(listener) => Ok(listener),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(e),
            // No IPv6 here.
            Err(_) => listen(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), false),
        },
    }
}

/// Accepts connections until the listener is closed (the task aborted) or
/// the pool is gone; each connection is served by its own task.
async fn accept_loop(listener: tokio::net::TcpListener, pool: std::sync::Weak<Pool>) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept a connection on a balanced port");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Some(pool) = pool.upgrade() else { return };
        let local = client.local_addr().ok();
        tokio::spawn(proxy::serve(pool, client, peer, local));
    }
}
