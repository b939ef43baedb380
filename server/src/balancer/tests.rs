//! The pool's choices and the forwarding, on real loopback sockets (the
//! end-to-end tests run real apps behind a real daemon).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::proxy::proxy_v2_header;
use super::*;

fn settings(port: u16, strategy: BalanceStrategy, hold_ms: u64) -> Settings {
    Settings {
        public_port: port,
        address: Some(IpAddr::from([127, 0, 0, 1])),
        strategy,
        proxy_protocol: false,
        hold: Duration::from_millis(hold_ms),
    }
}

fn quiet() -> NoticeFn {
    Arc::new(|_, _| {})
}

#[test]
fn proxy_v2_headers_carry_both_addresses() {
    let peer: SocketAddr = "10.0.0.7:51000".parse().unwrap();
    let local: SocketAddr = "127.0.0.1:3000".parse().unwrap();
    let h = proxy_v2_header(peer, local);
    assert_eq!(&h[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(h[12], 0x21, "version 2, PROXY");
    assert_eq!(h[13], 0x11, "TCP over IPv4");
    assert_eq!(u16::from_be_bytes([h[14], h[15]]), 12);
    assert_eq!(&h[16..20], &[10, 0, 0, 7]);
    assert_eq!(&h[20..24], &[127, 0, 0, 1]);
    assert_eq!(u16::from_be_bytes([h[24], h[25]]), 51000);
    assert_eq!(u16::from_be_bytes([h[26], h[27]]), 3000);
    assert_eq!(h.len(), 28);

    // A dual-stack listener reports IPv4 clients as mapped addresses.
    let mapped: SocketAddr = "[::ffff:10.0.0.7]:51000".parse().unwrap();
    let local6: SocketAddr = "[::ffff:127.0.0.1]:3000".parse().unwrap();
    assert_eq!(proxy_v2_header(mapped, local6), h);

    let v6 = proxy_v2_header(
        "[2001:db8::1]:4000".parse().unwrap(),
        "[::1]:3000".parse().unwrap(),
    );
    assert_eq!(v6[13], 0x21, "TCP over IPv6");
    assert_eq!(u16::from_be_bytes([v6[14], v6[15]]), 36);
    assert_eq!(v6.len(), 16 + 36);
}

#[tokio::test]
async fn round_robin_takes_ready_instances_in_turn() {
    let pool = Pool::new("web", settings(0, BalanceStrategy::RoundRobin, 0), quiet());
    assert_eq!(pool.sync(1, true, Some(4001)), Some(Membership::Joined));
    assert_eq!(pool.sync(2, true, None), None);
    assert_eq!(pool.sync(3, true, Some(4003)), Some(Membership::Joined));
    let ports: Vec<u16> = (0..4).map(|_| pool.pick(&[]).unwrap().port).collect();
    assert_eq!(ports, [4001, 4003, 4001, 4003], "instance 2 is not ready");
    // Skipping the one that refused.
    assert_eq!(pool.pick(&[1]).unwrap().port, 4003);
    assert_eq!(pool.sync(3, true, None), Some(Membership::Left));
    assert!(pool.pick(&[1]).is_none());
    pool.close();
}

#[tokio::test]
async fn least_connections_takes_the_least_busy() {
    let pool = Pool::new(
        "web",
        settings(0, BalanceStrategy::LeastConnections, 0),
        quiet(),
    );
    pool.sync(1, true, Some(4001));
    pool.sync(2, true, Some(4002));
    let first = pool.pick(&[]).unwrap();
    let second = pool.pick(&[]).unwrap();
    assert_ne!(first.port, second.port, "ties go in turn");
    let busy = first.port;
    drop(second);
    // `first` still holds a connection: the other is the least busy.
    for _ in 0..3 {
        let p = pool.pick(&[]).unwrap();
        assert_ne!(p.port, busy);
    }
    drop(first);
    pool.close();
}

/// An echo server on a free loopback port.
async fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    port
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn connections_are_forwarded_counted_and_drained() {
    let backend = echo_server().await;
    let public = free_port();
    let pool = Pool::new(
        "web",
        settings(public, BalanceStrategy::RoundRobin, 0),
        quiet(),
    );
    pool.sync(7, true, Some(backend));
    pool.open().unwrap();

    let mut client = TcpStream::connect(("127.0.0.1", public)).await.unwrap();
    client.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
    let stats = pool.stats(7).unwrap();
    assert_eq!(stats.active.load(Ordering::Relaxed), 1);

    // Draining waits for the open connection; the half-close passes on and
    // the echo server's close ends it.
    let balancer = Balancer::new(quiet());
    balancer.pools.locked().insert("web".into(), pool.clone());
    let drained =
        tokio::spawn(async move { balancer.drain("web", 7, Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!drained.is_finished(), "a connection is open");
    client.shutdown().await.unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert_eq!(drained.await.unwrap(), 0);
    assert_eq!(stats.total.load(Ordering::Relaxed), 1);
    assert_eq!(stats.bytes_in.load(Ordering::Relaxed), 5);
    assert_eq!(stats.bytes_out.load(Ordering::Relaxed), 5);
    pool.close();
}

#[tokio::test]
async fn with_no_ready_instance_a_connection_waits_then_is_refused() {
    let public = free_port();
    let pool = Pool::new(
        "web",
        settings(public, BalanceStrategy::RoundRobin, 300),
        quiet(),
    );
    pool.sync(1, true, None);
    pool.open().unwrap();

    // Held, then served once an instance joins.
    let backend = echo_server().await;
    let mut client = TcpStream::connect(("127.0.0.1", public)).await.unwrap();
    client.write_all(b"x").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(pool.status().held, 1);
    pool.sync(1, true, Some(backend));
    let mut buf = [0u8; 1];
    client.read_exact(&mut buf).await.unwrap();
    drop(client);

    // Held past the hold timeout: reset, counted, and the reason shown.
    pool.sync(1, true, None);
    let mut client = TcpStream::connect(("127.0.0.1", public)).await.unwrap();
    let mut buf = [0u8; 1];
    let read = client.read(&mut buf).await;
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "refused, not answered: {read:?}"
    );
    let status = pool.status();
    assert_eq!(status.refused, 1);
    assert!(
        status.problem.contains("hold_timeout"),
        "{}",
        status.problem
    );
    assert_eq!(status.held, 0);

    // No instance should run: the port is closed.
    pool.sync(1, false, None);
    assert!(!pool.status().listening);
    assert!(TcpStream::connect(("127.0.0.1", public)).await.is_err());
    pool.close();
}

/// An HTTP/1.1 keep-alive server on a free loopback port: answers each
/// request (headers only) with a body of `name`.
async fn http_server(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
                            name.len()
                        );
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

/// Sends one request on `client` and reads its answer's body (one byte
/// per name, as `http_server` writes it).
async fn ask(client: &mut TcpStream) -> String {
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 256];
    while !answer.ends_with(b"\r\n\r\nA") && !answer.ends_with(b"\r\n\r\nB") {
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer[answer.len() - 1..]).into_owned()
}

#[tokio::test]
async fn a_keep_alive_client_moves_off_a_draining_instance_at_its_next_request() {
    let (a, b) = (http_server("A").await, http_server("B").await);
    let public = free_port();
    let pool = Pool::new(
        "web",
        settings(public, BalanceStrategy::RoundRobin, 1000),
        quiet(),
    );
    pool.sync(1, true, Some(a));
    pool.open().unwrap();
    let mut client = TcpStream::connect(("127.0.0.1", public)).await.unwrap();
    assert_eq!(ask(&mut client).await, "A");
    assert_eq!(ask(&mut client).await, "A", "kept while A serves");

    // A drains; B is ready: the next request on the same connection is B's,
    // and A's count of open connections drops to 0.
    pool.sync(2, true, Some(b));
    pool.sync(1, true, None);
    assert_eq!(ask(&mut client).await, "B");
    assert_eq!(pool.stats(1).unwrap().active.load(Ordering::Relaxed), 0);
    assert_eq!(pool.stats(2).unwrap().active.load(Ordering::Relaxed), 1);
    pool.close();
}

/// A restart stops an instance before it starts its replacement: a
/// keep-alive client of the only instance must let go of it while it waits
/// for the next one, or the drain and the wait hold each other up until
/// their timeouts.
#[tokio::test]
async fn a_keep_alive_client_lets_go_of_a_draining_instance_while_it_waits() {
    let (a, b) = (http_server("A").await, http_server("B").await);
    let public = free_port();
    let pool = Pool::new(
        "web",
        settings(public, BalanceStrategy::RoundRobin, 5000),
        quiet(),
    );
    pool.sync(1, true, Some(a));
    pool.open().unwrap();
    let mut client = TcpStream::connect(("127.0.0.1", public)).await.unwrap();
    assert_eq!(ask(&mut client).await, "A");

    // A drains with no other instance ready: the next request waits, and
    // A's connection is released meanwhile, so its drain ends at once.
    pool.sync(1, true, None);
    let next = tokio::spawn(async move { ask(&mut client).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(pool.stats(1).unwrap().active.load(Ordering::Relaxed), 0);
    assert_eq!(pool.status().held, 1);
    // The replacement joins: the waiting request is its.
    pool.sync(2, true, Some(b));
    assert_eq!(next.await.unwrap(), "B");
    assert_eq!(pool.stats(2).unwrap().active.load(Ordering::Relaxed), 1);
    pool.close();
}

#[tokio::test]
async fn other_protocols_stay_with_their_instance() {
    let (echo, other) = (echo_server().await, echo_server().await);
    let public = free_port();
    let pool = Pool::new(
        "tcp",
        settings(public, BalanceStrategy::RoundRobin, 1000),
        quiet(),
    );
    pool.sync(1, true, Some(echo));
    pool.open().unwrap();
    let mut client = TcpStream::connect(("127.0.0.1", public)).await.unwrap();
    let mut buf = [0u8; 5];
    client.write_all(b"hello").await.unwrap();
    client.read_exact(&mut buf).await.unwrap();
    pool.sync(2, true, Some(other));
    pool.sync(1, true, None);
    client.write_all(b"again").await.unwrap();
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"again");
    assert_eq!(
        pool.stats(1).unwrap().active.load(Ordering::Relaxed),
        1,
        "not moved"
    );
    assert_eq!(pool.stats(2).unwrap().total.load(Ordering::Relaxed), 0);
    pool.close();
}

#[test]
fn only_plain_http1_requests_may_move() {
    use super::proxy::{Http, classify};
    let get = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(classify(Http::Unknown, get), Http::Requests);
    assert_eq!(
        classify(Http::Unknown, b"\x16\x03\x01\x02\x00"),
        Http::Fixed,
        "TLS"
    );
    assert_eq!(
        classify(Http::Unknown, b"PRI * HTTP/2.0\r\n\r\nSM"),
        Http::Fixed
    );
    let ws = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    assert_eq!(classify(Http::Unknown, ws), Http::Fixed);
    let upload = b"PUT /f HTTP/1.1\r\nexpect: 100-continue\r\nContent-Length: 9\r\n\r\n";
    assert_eq!(classify(Http::Unknown, upload), Http::Fixed);
    assert_eq!(
        classify(Http::Requests, b"Upgrade: h2c\r\n"),
        Http::Requests,
        "a header's value, not a line start"
    );
    assert_eq!(
        classify(Http::Requests, b"x\r\nUpgrade: h2c\r\n"),
        Http::Fixed
    );
}
