//! One balanced connection: pick an instance (waiting for one while none is
//! ready, within the hold timeout), connect to its private port, send the
//! PROXY protocol v2 header when asked, then copy both ways until both
//! sides are done (`copy_bidirectional`: half-close passed on, 16 KiB
//! buffers each way, a slow side slows the other down instead of filling
//! memory). A refused client is reset, never left hanging.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{MAX_HELD_CONNECTIONS, Picked, Pool, Stats};

/// Bytes buffered each way per connection.
const BUFFER: usize = 16 * 1024;

/// How soon a held connection tries again when every ready instance just
/// refused it (an instance in the pool that is closing its listener).
const RETRY_REFUSED: Duration = Duration::from_millis(25);

/// The PROXY protocol v2 signature.
const PROXY_V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

impl Drop for Picked {
    fn drop(&mut self) {
        self.stats.release();
    }
}

/// Serves one accepted connection to its end.
pub(super) async fn serve(
    pool: Arc<Pool>,
    mut client: TcpStream,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) {
    let _ = client.set_nodelay(true);
    let Some((picked, backend)) = connect(&pool).await else {
        reset(client);
        return;
    };
    let _ = backend.set_nodelay(true);
    let mut backend = Counted {
        inner: backend,
        stats: picked.stats.clone(),
    };
    if pool.proxy_protocol() {
        let header = proxy_v2_header(peer, local.unwrap_or(peer));
        if backend.write_all(&header).await.is_err() {
            return;
        }
    }
    if let Err(e) =
        tokio::io::copy_bidirectional_with_sizes(&mut client, &mut backend, BUFFER, BUFFER).await
    {
        tracing::debug!(app = %pool.name, id = picked.id, error = %e, "balanced connection ended");
    }
}

/// Decrements the count of held connections when a wait ends.
struct Held<'a>(&'a Pool);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An instance and a connection to it; None when the connection is to be
/// refused (the reason is counted and reported by the pool).
async fn connect(pool: &Pool) -> Option<(Picked, TcpStream)> {
    let mut joined = pool.joined.subscribe();
    let mut deadline: Option<Instant> = None;
    let mut held: Option<Held<'_>> = None;
    loop {
        joined.borrow_and_update();
        let mut refused_by = Vec::new();
        while let Some(picked) = pool.pick(&refused_by) {
            match TcpStream::connect((Ipv4Addr::LOCALHOST, picked.port)).await {
                Ok(stream) => return Some((picked, stream)),
                Err(e) => {
                    tracing::debug!(app = %pool.name, id = picked.id, port = picked.port, error = %e, "instance refused a balanced connection");
                    refused_by.push(picked.id);
                }
            }
        }
        let hold = match pool.hold() {
            Ok(hold) => hold,
            Err(why) => {
                pool.refuse(why);
                return None;
            }
        };
        let until = *deadline.get_or_insert_with(|| Instant::now() + hold);
        if held.is_none() {
            if pool.held.fetch_add(1, Ordering::Relaxed) >= MAX_HELD_CONNECTIONS {
                pool.held.fetch_sub(1, Ordering::Relaxed);
                pool.refuse(&format!(
                    "{MAX_HELD_CONNECTIONS} connections already wait for a ready instance"
                ));
                return None;
            }
            held = Some(Held(pool));
        }
        let wake = match refused_by.is_empty() {
            true => until,
            false => until.min(Instant::now() + RETRY_REFUSED),
        };
        let woke = tokio::time::timeout_at(wake, joined.changed()).await;
        if matches!(woke, Ok(Err(_))) || Instant::now() >= until {
            pool.refuse(&format!(
                "no instance became ready within hold_timeout ({})",
                humantime::format_duration(hold)
            ));
            return None;
        }
    }
}

/// Closes a refused client with a reset, so it fails at once instead of
/// reading an empty answer.
fn reset(client: TcpStream) {
    let _ = client.set_zero_linger();
    drop(client);
}

/// The PROXY protocol v2 header for a TCP connection from `peer` to
/// `local` (IPv4-mapped IPv6 addresses, which a dual-stack listener
/// reports, are sent as IPv4).
pub(super) fn proxy_v2_header(peer: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (peer, local) = (canonical(peer), canonical(local));
    let mut header = Vec::with_capacity(16 + 36);
    header.extend_from_slice(&PROXY_V2_SIGNATURE);
    header.push(0x21); // version 2, PROXY
    match (peer.ip(), local.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            header.push(0x11); // TCP over IPv4
            header.extend_from_slice(&12u16.to_be_bytes());
            header.extend_from_slice(&src.octets());
            header.extend_from_slice(&dst.octets());
        }
        (src, dst) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            header.push(0x21); // TCP over IPv6
            header.extend_from_slice(&36u16.to_be_bytes());
            header.extend_from_slice(&v6(src).octets());
            header.extend_from_slice(&v6(dst).octets());
        }
    }
    header.extend_from_slice(&peer.port().to_be_bytes());
    header.extend_from_slice(&local.port().to_be_bytes());
    header
}

/// The instance's side of a connection, counting the bytes that pass:
/// read from it goes to the client (`bytes_out`), written to it came
/// from the client (`bytes_in`). One relaxed add per read or write.
struct Counted {
    inner: TcpStream,
    stats: Arc<Stats>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.stats
                .bytes_out
                .fetch_add(read as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
