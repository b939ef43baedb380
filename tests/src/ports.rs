//! Free TCP ports for the tests that bind them: each test gets its own
//! block, even with tests (and runs of this suite) in parallel.
//!
//! Talks to: the kernel's TCP stack (probe binds) and
//! `/proc/sys/net/ipv4/ip_local_port_range`.

use std::fs;
use std::sync::{Mutex, PoisonError};

/// The first of `count` consecutive TCP ports that nothing binds now (on
/// `0.0.0.0` and `[::]`), for one test's fixed ports, ranges and `auto:`
/// ranges.
///
/// Tests run in parallel, and so may several runs of this suite: blocks
/// are handed out once per process from a cursor that starts at a
/// pid-dependent place, on 32-port boundaries, below the kernel's
/// ephemeral range (so outgoing connections never take them meanwhile).
/// Another process could still bind one between this check and the app's
/// bind; `auto:` ranges tolerate that by design.
pub fn free_ports(count: u16) -> u16 {
    const LOW: u32 = 10_000;
    const BLOCK: u32 = 32;
    static CURSOR: Mutex<Option<u32>> = Mutex::new(None);
    assert!(
        (1..=BLOCK as u16).contains(&count),
        "ask for 1 to {BLOCK} ports"
    );
    let high = ephemeral_low().clamp(LOW + 64 * BLOCK, 65_536);
    let blocks = (high - LOW) / BLOCK;
    let mut cursor = CURSOR.lock().unwrap_or_else(PoisonError::into_inner);
    let mut block = cursor.unwrap_or_else(|| std::process::id().wrapping_mul(7919) % blocks);
    for _ in 0..blocks {
        block = (block + 1) % blocks;
        let first = LOW + block * BLOCK;
        let all_free = (first..first + u32::from(count)).all(|p| port_free(p as u16));
        if all_free {
            *cursor = Some(block);
            return first as u16;
        }
    }
    panic!("no {count} consecutive free ports between {LOW} and {high}");
}

/// Whether nothing binds TCP `port` on `0.0.0.0` or `[::]` right now.
pub fn port_free(port: u16) -> bool {
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
    // The IPv4 probe is dropped before the IPv6 one: [::] is dual-stack by
    // default and would see it.
    let v4_free = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok();
    v4_free
        && match TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)) {
            Ok(_) => true,
            // No IPv6 here: nothing can listen there either.
            Err(e) => e.kind() != std::io::ErrorKind::AddrInUse,
        }
}

/// The first port of the kernel's ephemeral range (32768 by default).
fn ephemeral_low() -> u32 {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}
