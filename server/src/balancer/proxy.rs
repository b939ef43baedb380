//! One balanced connection: pick an instance (waiting for one while none is
//! ready, within the hold timeout), connect to its private port, send the
//! PROXY protocol v2 header when asked, then copy both ways until both
//! sides are done ([`Relay`]: half-close passed on, 8 KiB buffers each
//! way, a slow side slows the other down instead of filling memory). A
//! refused client is reset, never left hanging.
//!
//! HTTP/1 keep-alive: a client keeps its connection, so draining its
//! instance would wait for the whole drain timeout and then cut it, maybe
//! under a request. Instead, once the instance is out of the pool, the next
//! request on such a connection (bytes from the client after the whole
//! answer reached it) goes to a ready instance over a new connection, and
//! the old one is closed while idle. Only connections that began with an
//! HTTP/1 request line and asked for no upgrade and no `100 Continue`
//! move; anything else stays with its instance until it ends or the drain
//! timeout passes. A pipelining client (requests sent before the answers)
//! is not told apart and could lose a pipelined request in a move;
//! browsers and common clients do not pipeline.

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

/// Bytes buffered each way per connection (tokio's `copy_bidirectional`
/// default): 16 KiB per open connection in all.
const BUFFER: usize = 8 * 1024;

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
    client: TcpStream,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) {
    let _ = client.set_nodelay(true);
    let Some((picked, backend)) = connect(&pool).await else {
        reset(client);
        return;
    };
    let header = pool
        .proxy_protocol()
        .then(|| proxy_v2_header(peer, local.unwrap_or(peer)));
    let Some(backend) = attach(backend, &picked, header.as_deref()).await else {
        return;
    };
    let mut relay = Relay {
        client,
        backend,
        picked,
        up: Pipe::new(),
        down: Pipe::new(),
        http: Http::Unknown,
        turn: Turn::Request,
    };
    loop {
        match relay.run().await {
            Ok(Step::Done) => return,
            Ok(Step::Move) => {
                // The instance drains: this keep-alive client's next request
                // goes to a ready one. The draining one is let go first: its
                // drain waits for this connection, and a restart starts the
                // replacement only once the drain is over, so waiting for a
                // ready instance while still holding it would stall both
                // until the drain and hold timeouts and then cut the request
                // (every keep-alive client of a restarted single instance,
                // or of instances all restarted at once). Nothing is lost:
                // the connection to it is idle (its last answer passed on
                // whole, the new request not sent). None ready within the
                // hold timeout: the client is reset, as a new one would be.
                let Relay {
                    client,
                    backend,
                    picked,
                    up,
                    http,
                    turn,
                    ..
                } = relay;
                let from = picked.id;
                drop(backend);
                drop(picked);
                let Some((picked, backend)) = connect(&pool).await else {
                    reset(client);
                    return;
                };
                let Some(backend) = attach(backend, &picked, header.as_deref()).await else {
                    return;
                };
                tracing::debug!(app = %pool.name, from, to = picked.id, "moved a keep-alive connection off a draining instance");
                relay = Relay {
                    client,
                    backend,
                    picked,
                    up,
                    down: Pipe::new(),
                    http,
                    turn,
                };
            }
            Err(e) => {
                tracing::debug!(app = %pool.name, id = relay.picked.id, error = %e, "balanced connection ended");
                return;
            }
        }
    }
}

/// Wraps a fresh connection to an instance for counting, after the PROXY
/// header if there is one.
async fn attach(backend: TcpStream, picked: &Picked, header: Option<&[u8]>) -> Option<Counted> {
    let _ = backend.set_nodelay(true);
    let mut backend = Counted {
        inner: backend,
        stats: picked.stats.clone(),
    };
    if let Some(header) = header {
        backend.write_all(header).await.ok()?;
    }
    Some(backend)
}

/// What the client speaks, as far as moving it between instances goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Http {
    /// Nothing read yet.
    Unknown,
    /// HTTP/1 requests one after the other: a request that starts after
    /// the previous answer may go to another instance.
    Requests,
    /// Anything else (another protocol, an upgrade to WebSocket, a body
    /// sent after `100 Continue`): the connection stays where it is.
    Fixed,
}

/// Which side sent last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    Request,
    Response,
}

/// How a relay's run ended.
enum Step {
    /// Both directions are done.
    Done,
    /// A new request arrived for an instance out of the pool.
    Move,
}

/// One direction's buffer: bytes read from one side, not yet all written
/// to the other.
struct Pipe {
    buf: Box<[u8]>,
    pos: usize,
    cap: usize,
    /// The reading side ended; the writing side gets a shutdown.
    eof: bool,
    done: bool,
    /// The buffer holds a chunk none of which was written yet.
    fresh: bool,
}

impl Pipe {
    fn new() -> Self {
        Pipe {
            buf: vec![0; BUFFER].into_boxed_slice(),
            pos: 0,
            cap: 0,
            eof: false,
            done: false,
            fresh: false,
        }
    }

    fn is_empty(&self) -> bool {
        self.pos == self.cap
    }

    /// Reads the next chunk into the empty buffer; EOF sets `eof`.
    fn poll_fill<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut R,
    ) -> Poll<io::Result<()>> {
        let mut read = ReadBuf::new(&mut self.buf);
        std::task::ready!(Pin::new(from).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        (self.pos, self.cap) = (0, n);
        self.eof = n == 0;
        self.fresh = n > 0;
        Poll::Ready(Ok(()))
    }

    /// Writes what the buffer holds.
    fn poll_drain<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        to: &mut W,
    ) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            let n = std::task::ready!(
                Pin::new(&mut *to).poll_write(cx, &self.buf[self.pos..self.cap])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pos += n;
            self.fresh = false;
        }
        Poll::Ready(Ok(()))
    }
}

/// A client and the instance it is with, copied both ways in one task:
/// each direction goes on while the other waits (no deadlock on a full
/// buffer), a side that ends is shut down on the other (half-close), and
/// 8 KiB is read ahead each way at most (backpressure).
struct Relay {
    client: TcpStream,
    backend: Counted,
    picked: Picked,
    up: Pipe,
    down: Pipe,
    http: Http,
    turn: Turn,
}

impl Relay {
    async fn run(&mut self) -> io::Result<Step> {
        std::future::poll_fn(|cx| self.poll_step(cx)).await
    }

    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Step>> {
        if let Poll::Ready(step) = self.poll_up(cx)? {
            return Poll::Ready(Ok(step));
        }
        let _ = self.poll_down(cx)?;
        match self.up.done && self.down.done {
            true => Poll::Ready(Ok(Step::Done)),
            false => Poll::Pending,
        }
    }

    /// Client to instance. Ready with `Move` when a new request should go
    /// to another instance; `Done` never comes from here alone.
    fn poll_up(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Step>> {
        loop {
            if self.up.done {
                return Poll::Pending;
            }
            if !self.up.is_empty() {
                if self.up.fresh && self.should_move() {
                    return Poll::Ready(Ok(Step::Move));
                }
                std::task::ready!(self.up.poll_drain(cx, &mut self.backend))?;
                self.turn = Turn::Request;
                continue;
            }
            if self.up.eof {
                std::task::ready!(Pin::new(&mut self.backend).poll_shutdown(cx))?;
                self.up.done = true;
                // The other direction may be finished already.
                return match self.down.done {
                    true => Poll::Ready(Ok(Step::Done)),
                    false => Poll::Pending,
                };
            }
            std::task::ready!(self.up.poll_fill(cx, &mut self.client))?;
            let chunk = &self.up.buf[..self.up.cap];
            self.http = classify(self.http, chunk);
        }
    }

    /// Instance to client.
    fn poll_down(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.down.done {
                return Poll::Ready(Ok(()));
            }
            if !self.down.is_empty() {
                std::task::ready!(self.down.poll_drain(cx, &mut self.client))?;
                self.turn = Turn::Response;
                continue;
            }
            if self.down.eof {
                std::task::ready!(Pin::new(&mut self.client).poll_shutdown(cx))?;
                self.down.done = true;
                return Poll::Ready(Ok(()));
            }
            std::task::ready!(self.down.poll_fill(cx, &mut self.backend))?;
        }
    }

    /// A request that starts after the whole previous answer reached the
    /// client, on an HTTP/1 connection whose instance left the pool.
    fn should_move(&self) -> bool {
        self.http == Http::Requests
            && self.turn == Turn::Response
            && self.down.is_empty()
            && !self.down.eof
            && !self.picked.stats.in_pool.load(Ordering::Acquire)
    }
}

/// What a chunk from the client says about the connection: its first
/// bytes an HTTP/1 request line, or not; a header asking to upgrade the
/// connection or to send the body after `100 Continue` fixes it to its
/// instance. (A header split across two reads may be missed: then a move
/// happens only if the next request starts after the answer, as ever.)
pub(super) fn classify(http: Http, chunk: &[u8]) -> Http {
    let http = match http {
        Http::Unknown if is_request_line(chunk) => Http::Requests,
        Http::Unknown => Http::Fixed,
        other => other,
    };
    if http == Http::Requests && fixes_connection(chunk) {
        return Http::Fixed;
    }
    http
}

/// `METHOD target HTTP/1.x` up to the first line's end.
fn is_request_line(chunk: &[u8]) -> bool {
    let Some(end) = chunk.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    let line = &chunk[..end];
    let Some(space) = line.iter().position(|&b| b == b' ') else {
        return false;
    };
    space > 0
        && line[..space].iter().all(u8::is_ascii_uppercase)
        && (line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0"))
}

/// Whether the chunk has an `Upgrade:` or `Expect:` header line.
fn fixes_connection(chunk: &[u8]) -> bool {
    chunk.split(|&b| b == b'\n').skip(1).any(|line| {
        let name = |n: &[u8]| line.len() > n.len() && line[..n.len()].eq_ignore_ascii_case(n);
        name(b"upgrade:") || name(b"expect:")
    })
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
