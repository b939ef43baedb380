//! The host side of ports: whether a port can be bound right now (a real
//! bind, then the sockets are dropped), who listens on it (`/proc/net/tcp*`
//! and `/proc/*/fd`), and whether something accepts connections on it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::{Holder, PortError};

/// How long [`accepts_connections`] waits for one connect; a listener on
/// loopback answers in microseconds, a refused port at once.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);

/// `st` of a listening socket in `/proc/net/tcp*` (TCP_LISTEN).
const LISTEN_STATE: &str = "0A";

/// Whether `port` can be bound on the host right now: binds TCP sockets on
/// `0.0.0.0:port` and, with `IPV6_V6ONLY` so the two do not collide,
/// `[::]:port`, then drops them (bound, never listening, so they leave no
/// TIME_WAIT behind). A machine without IPv6 is checked on IPv4 only.
///
/// `SO_REUSEADDR` is set on purpose. On Linux it does not let a bind
/// succeed against a socket in LISTEN (on any address of that port), which
/// is what "in use" means here; but without it, the TIME_WAIT connections an
/// instance that just stopped leaves behind would make its port look taken
/// for a minute, and the replacement (which sets `SO_REUSEADDR` itself, as
/// Node, Go, Python's servers and Rust's std all do) would bind it fine.
///
/// A port below `net.ipv4.ip_unprivileged_port_start` that the daemon may
/// not bind is judged from `/proc/net/tcp*` instead (an app with
/// `CAP_NET_BIND_SERVICE` may still bind it).
pub fn host_free(port: u16) -> Result<(), PortError> {
    // IPv4 first: it always exists; its socket is kept until the IPv6 check
    // is done (V6ONLY keeps them apart).
    let _v4 = match bind_probe(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))) {
        Ok(socket) => Some(socket),
        Err(e) => {
            refused(port, e)?;
            None
        }
    };
    match bind_probe(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))) {
        Ok(_v6) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
            ) =>
        {
            refused(port, e)
        }
        // No IPv6 on this machine (EAFNOSUPPORT, EADDRNOTAVAIL...): nothing
        // can listen there either.
        Err(_) => Ok(()),
    }
}

/// A bound, never listening, close-on-exec TCP socket on `addr`.
fn bind_probe(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// What a failed probe bind means for `port`.
fn refused(port: u16, error: io::Error) -> Result<(), PortError> {
    match error.kind() {
        io::ErrorKind::AddrInUse => Err(PortError::Bound {
            port,
            holder: holder_of(port),
        }),
        // A privileged port: the bind says nothing about who uses it.
        io::ErrorKind::PermissionDenied if listening_inodes(port).is_empty() => Ok(()),
        io::ErrorKind::PermissionDenied => Err(PortError::Bound {
            port,
            holder: holder_of(port),
        }),
        _ => Err(PortError::HostCheck {
            port,
            source: error,
        }),
    }
}

/// Who listens on TCP `port`: the lowest pid with a LISTEN socket on it
/// (a pre-forking server's parent, usually). Best effort: `None` when
/// nothing listens, or the owner's `/proc/PID/fd` is unreadable (another
/// user's process when the daemon is not root). Only the daemon's network
/// namespace is seen.
pub fn holder_of(port: u16) -> Option<Holder> {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return None;
    }
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let pid = pids.into_iter().find(|&pid| owns_socket(pid, &inodes))?;
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|comm| comm.trim_end_matches('\n').to_string())
        .unwrap_or_default();
    Some(Holder { pid, name })
}

/// Socket inodes in LISTEN on `port`, IPv4 and IPv6.
fn listening_inodes(port: u16) -> Vec<u64> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| listeners_on(&table, port))
        .collect()
}

/// Parses a `/proc/net/tcp` or `/proc/net/tcp6` table: the inodes of the
/// LISTEN sockets whose local port is `port`. Lines look like
/// `0: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000 1000 0 12345 ...`
/// (sl, local address:port in hex, remote, st, queues, timers, retransmits,
/// uid, timeout, inode).
fn listeners_on(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1) // header
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            let inode = fields.nth(5)?;
            let (_, local_port) = local.rsplit_once(':')?;
            let matches =
                state == LISTEN_STATE && u16::from_str_radix(local_port, 16).ok()? == port;
            inode.parse().ok().filter(|&inode| matches && inode != 0)
        })
        .collect()
}

/// Whether one of `pid`'s file descriptors is one of `inodes`.
fn owns_socket(pid: u32, inodes: &[u64]) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| socket_inode(target.to_str()?))
        .any(|inode| inodes.contains(&inode))
}

/// The inode of an fd link `socket:[INODE]`.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Whether something accepts TCP connections on `127.0.0.1:port`, or on
/// `[::1]:port` for a server that listens on IPv6 loopback only. Each
/// attempt gives up after [`CONNECT_TIMEOUT`]; the connection is closed at
/// once (the app sees a connect without a request).
pub async fn accepts_connections(port: u16) -> bool {
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let connect = tokio::net::TcpStream::connect((ip, port));
        if let Ok(Ok(_stream)) = tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            return true;
        }
    }
    false
}

/// Whether any socket listens on `port`, on any address: for an app bound
/// to one address only (127.0.0.2, a LAN address), which loopback cannot
/// reach. Reads /proc/net/tcp{,6} (milliseconds on a busy host), so it
/// runs on the blocking pool and callers use it as a fallback only.
pub async fn listening(port: u16) -> bool {
    tokio::task::spawn_blocking(move || !listening_inodes(port).is_empty())
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_lines_are_parsed() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0BB8 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000  1000        0 777 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:0BB9 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4343 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(listeners_on(table, 3000), vec![4242]);
        assert_eq!(listeners_on(table, 3001), vec![4343]);
        assert!(listeners_on(table, 3002).is_empty());
        let table6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(listeners_on(table6, 8080), vec![99]);
    }

    #[test]
    fn fd_links_name_socket_inodes() {
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("pipe:[12345]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }
}
