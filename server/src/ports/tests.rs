//! Specs of port assignment, with real sockets (the port spec itself, its
//! forms and its serde form, is specified in `pmdaemon_proto`). Ports come from the OS
//! (bind port 0) and stay held by the test while it relies on them, since
//! other tests on the machine bind ports too.

use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, TcpStream};

use super::host::holder_of;
use super::*;

/// A listener on the IPv4 wildcard address and an OS-chosen port, held for
/// as long as the test keeps it.
fn listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

fn claim(app: &str, spec: Option<&str>, assigned: &[u16]) -> Claim {
    Claim {
        app: app.to_string(),
        spec: spec.map(|s| s.parse().unwrap()),
        assigned: assigned.to_vec(),
    }
}

fn auto(first: u16, last: u16) -> PortSpec {
    PortSpec::Auto { first, last }
}

fn own_comm() -> String {
    std::fs::read_to_string(format!("/proc/{}/comm", std::process::id()))
        .unwrap()
        .trim_end()
        .to_string()
}

/// One port serves one instance; more is refused with a range to use.
#[test]
fn fixed_port_with_several_instances_is_refused() {
    let err = assign("api", PortSpec::Fixed(3000), 3, &[], &[]).unwrap_err();
    assert!(matches!(err, PortError::Invalid(_)));
    assert_eq!(
        err.to_string(),
        "port 3000 with 3 instances: one port serves one instance; give a range such as 3000-3002, or auto:3000-3100"
    );
    // Near the top of the port space the suggestion still fits.
    let err = assign("api", PortSpec::Fixed(65535), 2, &[], &[]).unwrap_err();
    assert!(err.to_string().contains("65534-65535"), "{err}");
}

/// A range must have a port per instance.
#[test]
fn range_smaller_than_instances_is_refused() {
    let spec = "3000-3001".parse().unwrap();
    let err = assign("api", spec, 3, &[], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "port range 3000-3001 has 2 ports for 3 instances: widen it (3000-3002) or use auto:3000-3100"
    );
    let err = assign("api", auto(4000, 4001), 3, &[], &[]).unwrap_err();
    assert!(matches!(err, PortError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("auto:4000-4002"), "{err}");
}

/// A range hands consecutive ports to instances in order (here all kept, so
/// no host check is involved).
#[test]
fn range_distributes_ports_in_order() {
    let spec = "5000-5009".parse().unwrap();
    let ports = assign("api", spec, 3, &[], &[5000, 5001, 5002]).unwrap();
    assert_eq!(ports, vec![5000, 5001, 5002]);
    assert_eq!(assign("api", spec, 0, &[], &[]).unwrap(), Vec::<u16>::new());
}

/// Another app's fixed port or range (used or not, running or stopped) and
/// its assigned auto ports are refused, naming that app.
#[test]
fn overlap_with_another_app_names_it() {
    let others = [
        claim("web", Some("8080-8089"), &[8080]),
        claim("worker", Some("auto:9000-9100"), &[9005]),
    ];
    let err = assign("api", PortSpec::Fixed(8085), 1, &others, &[]).unwrap_err();
    assert!(
        matches!(&err, PortError::Conflict { port: 8085, app } if app == "web"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "port 8085 is already used by app \"web\"; pick another port or range"
    );

    // The first overlapping port is reported, even beyond the instances.
    let spec = "8000-8080".parse().unwrap();
    let err = assign("api", spec, 1, &others, &[]).unwrap_err();
    assert!(
        matches!(&err, PortError::Conflict { port: 8080, app } if app == "web"),
        "{err:?}"
    );

    let err = assign("api", PortSpec::Fixed(9005), 1, &others, &[]).unwrap_err();
    assert!(
        matches!(&err, PortError::Conflict { port: 9005, app } if app == "worker"),
        "{err:?}"
    );

    // An app's own claim is no conflict.
    let spec = "8080-8089".parse().unwrap();
    let ports = assign("web", spec, 2, &others, &[8080, 8081]).unwrap();
    assert_eq!(ports, vec![8080, 8081]);
}

/// A fixed port that a process outside pmdaemon listens on is refused,
/// naming the process (here: this test binary).
#[test]
fn fixed_port_bound_on_the_host_is_refused() {
    let (_held, port) = listener();
    let err = assign("api", PortSpec::Fixed(port), 1, &[], &[]).unwrap_err();
    let PortError::Bound {
        port: bound,
        holder: Some(holder),
    } = &err
    else {
        panic!("expected Bound with a holder: {err:?}");
    };
    assert_eq!(*bound, port);
    assert_eq!(holder.pid, std::process::id());
    assert_eq!(
        err.to_string(),
        format!(
            "port {port} is already in use on this host by {} (pid {}): stop it or pick another port",
            own_comm(),
            std::process::id()
        )
    );

    // The app's own instance holding it (kept) is fine.
    let ports = assign("api", PortSpec::Fixed(port), 1, &[], &[port]).unwrap();
    assert_eq!(ports, vec![port]);
}

/// Only the ports instances get are host-checked: a held port in the unused
/// part of a range does not block, one that an instance gets does.
#[test]
fn range_checks_the_ports_it_hands_out() {
    let (_held, port) = listener();
    let spec = PortSpec::Range {
        first: port - 1,
        last: port,
    };
    // Instance 0 gets port - 1 (kept, so not host-checked); port is unused.
    assert_eq!(
        assign("api", spec, 1, &[], &[port - 1]).unwrap(),
        vec![port - 1]
    );
    let err = assign("api", spec, 2, &[], &[port - 1]).unwrap_err();
    assert!(
        matches!(err, PortError::Bound { port: p, .. } if p == port),
        "{err:?}"
    );
}

/// Auto skips ports other apps claim and ports bound on the host.
#[test]
fn auto_skips_claimed_and_bound_ports() {
    let (_held, port) = listener();
    let others = [claim("web", Some(&(port + 1).to_string()), &[])];
    let spec = auto(port, port + 30);
    let ports = assign("api", spec, 2, &others, &[]).unwrap();
    assert_eq!(ports.len(), 2);
    assert!(ports[0] >= port + 2, "{ports:?} (held {port})");
    assert!(ports[0] < ports[1] && ports[1] <= port + 30, "{ports:?}");
    assert_eq!(
        assign("api", spec, 0, &others, &[]).unwrap(),
        Vec::<u16>::new()
    );
}

/// Ports the app already has are reused while still valid, without a host
/// check (its own instance may be listening on them).
#[test]
fn auto_keeps_the_apps_own_ports() {
    let (_held, port) = listener();
    let spec = auto(port, port + 30);
    assert_eq!(assign("api", spec, 1, &[], &[port]).unwrap(), vec![port]);

    // Outside the range, or now claimed by another app: a fresh port.
    let outside = assign("api", spec, 1, &[], &[port + 100]).unwrap();
    assert!(outside[0] > port && outside[0] <= port + 30, "{outside:?}");
    let others = [claim("web", None, &[port])];
    let taken = assign("api", spec, 1, &others, &[port]).unwrap();
    assert_ne!(taken[0], port);

    // A port kept for a later instance is not handed to an earlier one,
    // and a port kept twice serves only the first instance.
    let later = port + 2;
    let ports = assign("api", spec, 2, &[], &[port + 100, later]).unwrap();
    assert_eq!(ports[1], later);
    assert!(ports[0] != later && ports[0] != port, "{ports:?}");
    let ports = assign("api", spec, 2, &[], &[later, later]).unwrap();
    assert_eq!(ports[0], later);
    assert!(ports[1] != later && ports[1] != port, "{ports:?}");
}

/// An auto range with every port taken says so.
#[test]
fn auto_range_without_free_port_is_exhausted() {
    let (_held, port) = listener();
    let spec = auto(port, port);
    let err = assign("api", spec, 1, &[], &[]).unwrap_err();
    assert!(
        matches!(err, PortError::Exhausted { spec: s, instances: 1 } if s == spec),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "no free port left in auto:{port}-{port} for 1 instance (ports are taken by apps or other processes on this host); widen the range or free some ports"
        )
    );

    let others = [claim("web", Some(&(port + 1).to_string()), &[])];
    let err = assign("api", auto(port, port + 1), 1, &others, &[]).unwrap_err();
    assert!(matches!(err, PortError::Exhausted { .. }), "{err:?}");
}

/// holder_of finds this very process behind a listener it holds.
#[test]
fn holder_of_finds_this_process() {
    let (_held, port) = listener();
    assert_eq!(
        holder_of(port),
        Some(Holder {
            pid: std::process::id(),
            name: own_comm(),
        })
    );
}

/// A listener on a single address (loopback) or on IPv6 only still makes
/// the port busy for the wildcard bind an app would do.
#[test]
fn host_free_sees_loopback_and_ipv6_listeners() {
    let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = v4.local_addr().unwrap().port();
    assert!(matches!(host_free(port), Err(PortError::Bound { .. })));
    drop(v4);

    // Skipped where the machine has no IPv6.
    if let Ok(v6) = TcpListener::bind((Ipv6Addr::UNSPECIFIED, 0)) {
        let port = v6.local_addr().unwrap().port();
        let err = host_free(port).unwrap_err();
        assert!(
            matches!(&err, PortError::Bound { holder: Some(h), .. } if h.pid == std::process::id()),
            "{err:?}"
        );
    }
}

/// A port whose connections linger in TIME_WAIT after their listener went
/// away (an instance that just stopped) counts as free.
#[test]
fn time_wait_leftovers_do_not_block() {
    use std::io::Read;

    let (held, port) = listener();
    let mut client = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    let (served, _) = held.accept().unwrap();
    drop(held);
    // The server side closes first, so its socket on `port` ends in
    // TIME_WAIT once the client closes too.
    drop(served);
    assert_eq!(client.read(&mut [0; 1]).unwrap(), 0);
    drop(client);

    match host_free(port) {
        Ok(()) => {}
        // Another process on the machine may have taken the port since.
        Err(PortError::Bound {
            holder: Some(holder),
            ..
        }) if holder.pid != std::process::id() => {}
        Err(e) => panic!("port {port} with only TIME_WAIT leftovers: {e:?}"),
    }
}

/// accepts_connections sees a listener, and sees it go.
#[tokio::test]
async fn accepts_connections_follows_a_listener() {
    let (held, port) = listener();
    assert!(accepts_connections(port).await);
    drop(held);
    assert!(!accepts_connections(port).await);

    if let Ok(v6) = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) {
        let port = v6.local_addr().unwrap().port();
        assert!(accepts_connections(port).await, "[::1] fallback");
    }
}
