//! Ports (issue #3): a fixed port, a range spread over instances, `auto:`
//! assignment that avoids managed apps and foreign listeners and persists,
//! conflicts refused with the owner named, and `restart --port` for one
//! run. The apps are real HTTP servers ([`HTTP_SERVER`]) reached over TCP,
//! or `sleep` where only the assignment matters.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, TcpListener};

use pmdaemon_tests::*;

use crate::said;

/// `FIRST-LAST` for `--port`.
fn range(first: u16, last: u16) -> String {
    format!("{first}-{last}")
}

/// Asserts that `pmd args...` fails (exit 1 or 2) and returns what it said.
fn refused(d: &TestDaemon, args: &[&str]) -> String {
    let out = d.pmd(args);
    let code = out.status.code();
    assert!(
        code == Some(1) || code == Some(2),
        "pmd {args:?} should have been refused\n{}",
        describe_output(&out)
    );
    assert!(!out.stderr.is_empty(), "pmd {args:?}: no error message");
    said(&out)
}

/// (name, instance) → port of every listed instance.
fn port_map(d: &TestDaemon) -> BTreeMap<(String, u64), Option<u16>> {
    d.list_json()
        .iter()
        .map(|a| {
            (
                (
                    a["name"].as_str().unwrap().to_owned(),
                    a["instance"].as_u64().unwrap(),
                ),
                port_of(a),
            )
        })
        .collect()
}

/// `--port A-C` with three instances gives instance i port A+i: `PORT` in
/// its environment, `port` in list and describe, and a TCP connection to
/// 127.0.0.1:A+i reaches that very instance.
#[test]
fn a_port_range_reaches_each_instance_in_order() {
    let d = TestDaemon::start();
    let base = free_ports(3);
    let server = d.write_http_server("server.py");
    d.pmd_ok(&[
        "start",
        arg(&server),
        "--name",
        "web",
        "-i",
        "3",
        "--port",
        &range(base, base + 2),
    ]);
    let web = d.wait_instances_online("web", 3);
    for (index, row) in web.iter().enumerate() {
        let port = base + index as u16;
        let pid = pid_of(row).unwrap();
        assert_eq!(port_of(row), Some(port), "{row}");
        assert_eq!(env_of(pid)["PORT"], port.to_string());
        let reply = wait_http(port);
        assert_eq!(
            reply,
            HttpReply {
                instance: index.to_string(),
                pid,
                port
            }
        );
    }
    let described = match d.describe_json("web") {
        serde_json::Value::Array(rows) => rows,
        other => panic!("describe of 3 instances is not an array: {other}"),
    };
    let mut ports: Vec<_> = described.iter().map(port_of).collect();
    ports.sort();
    assert_eq!(ports, [Some(base), Some(base + 1), Some(base + 2)]);
    assert!(
        described.iter().all(|r| r["port_override"] == false),
        "{described:#?}"
    );
}

/// `port:` and `port_env:` in a file: the port arrives in the variable
/// `port_env` names (and the app answers there); an app without a port has
/// `port: null`.
#[test]
fn port_env_names_the_variable_that_gets_the_port() {
    let d = TestDaemon::start();
    let base = free_ports(1);
    d.write_http_server("server.py");
    let file = d.write_file(
        "apps.yaml",
        &format!(
            "apps:\n  - name: api\n    script: ./server.py\n    port: {base}\n    \
             port_env: HTTP_PORT\n    env:\n      PORT_VAR: HTTP_PORT\n  \
             - name: portless\n    script: sleep\n    args: \"100000\"\n"
        ),
    );
    d.pmd_ok(&["start", arg(&file)]);
    let pid = d.wait_online("api");
    let env = env_of(pid);
    assert_eq!(env["HTTP_PORT"], base.to_string());
    assert_ne!(env.get("PORT"), Some(&base.to_string()), "PORT set as well");
    assert_eq!(wait_http(base).pid, pid);
    assert_eq!(port_of(&d.app("api").unwrap()), Some(base));
    d.wait_online("portless");
    let portless = d.app("portless").unwrap();
    assert!(portless["port"].is_null(), "{portless}");
}

/// One port for two instances is refused with a hint to use a range, and a
/// range shorter than the instance count is refused; nothing is created.
#[test]
fn one_port_for_several_instances_or_a_short_range_is_refused() {
    let d = TestDaemon::start();
    let base = free_ports(2);
    let text = refused(
        &d,
        &[
            "start",
            "sleep",
            "--name",
            "many",
            "-i",
            "2",
            "--port",
            &base.to_string(),
            "--",
            "100000",
        ],
    );
    assert!(
        text.to_lowercase().contains("range"),
        "no range suggested: {text}"
    );
    refused(
        &d,
        &[
            "start",
            "sleep",
            "--name",
            "many",
            "-i",
            "3",
            "--port",
            &range(base, base + 1),
            "--",
            "100000",
        ],
    );
    assert!(d.list_json().is_empty(), "{:?}", d.list_json());
    assert!(d.app_pids().is_empty());
}

/// Two apps with the same `auto:` range never share a port; the ports are
/// kept across a daemon restart, and a later app (even with the first app
/// stopped) gets ports neither of them has.
#[test]
fn auto_ports_never_collide_and_persist_across_a_daemon_restart() {
    let mut d = TestDaemon::start();
    let base = free_ports(12);
    let auto = format!("auto:{}", range(base, base + 11));
    for name in ["left", "right"] {
        d.pmd_ok(&[
            "start", "sleep", "--name", name, "-i", "2", "--port", &auto, "--", "100000",
        ]);
    }
    d.wait_instances_online("left", 2);
    d.wait_instances_online("right", 2);
    let before = port_map(&d);
    let ports: BTreeSet<u16> = before.values().map(|p| p.expect("a port")).collect();
    assert_eq!(ports.len(), 4, "shared ports: {before:?}");
    assert!(ports.iter().all(|p| (base..=base + 11).contains(p)));
    for row in d.list_json() {
        let pid = pid_of(&row).unwrap();
        assert_eq!(env_of(pid)["PORT"], port_of(&row).unwrap().to_string());
    }

    d.restart_daemon();
    d.wait_instances_online("left", 2);
    d.wait_instances_online("right", 2);
    assert_eq!(
        port_map(&d),
        before,
        "ports changed across a daemon restart"
    );
    for row in d.list_json() {
        let pid = pid_of(&row).unwrap();
        assert_eq!(env_of(pid)["PORT"], port_of(&row).unwrap().to_string());
    }

    d.pmd_ok(&["stop", "left"]);
    d.pmd_ok(&[
        "start", "sleep", "--name", "late", "-i", "2", "--port", &auto, "--", "100000",
    ]);
    d.wait_instances_online("late", 2);
    let after = port_map(&d);
    let late: BTreeSet<u16> = after
        .iter()
        .filter(|((name, _), _)| name == "late")
        .map(|(_, p)| p.expect("a port"))
        .collect();
    assert_eq!(late.len(), 2, "{after:?}");
    assert!(
        late.is_disjoint(&ports),
        "late took a taken port: {after:?}"
    );
}

/// A port a foreign process listens on (here: this test) is skipped by
/// `auto:` and refuses a fixed port with a message naming the holder; the
/// refused app is not created.
#[test]
fn a_foreign_listener_is_skipped_by_auto_and_refuses_a_fixed_port() {
    let d = TestDaemon::start();
    let base = free_ports(3);
    let _holder = TcpListener::bind((Ipv4Addr::UNSPECIFIED, base)).expect("hold the port");

    d.pmd_ok(&[
        "start",
        "sleep",
        "--name",
        "dodger",
        "--port",
        &format!("auto:{}", range(base, base + 2)),
        "--",
        "100000",
    ]);
    d.wait_online("dodger");
    assert_eq!(port_of(&d.app("dodger").unwrap()), Some(base + 1));

    let text = refused(
        &d,
        &[
            "start",
            "sleep",
            "--name",
            "squatter",
            "--port",
            &base.to_string(),
            "--",
            "100000",
        ],
    );
    assert!(text.contains(&base.to_string()), "port not named: {text}");
    // The holder is this test process: same user, so it can be named.
    assert!(
        text.contains(&std::process::id().to_string()),
        "the holder (pid {}) is not named: {text}",
        std::process::id()
    );
    assert!(d.app("squatter").is_none(), "the refused app was created");
    assert_eq!(d.list_json().len(), 1);
}

/// A port taken by a foreign process while its app was stopped: `pmd start`
/// (or `restart`) of an app with a fixed port is refused naming the holder, and the app
/// stays stopped; an `auto:` app moves to the next free port of its range.
#[test]
fn a_port_taken_while_stopped_is_checked_again_at_start() {
    let d = TestDaemon::start();
    let base = free_ports(3);
    for (name, port) in [
        ("fixed", base.to_string()),
        ("roamer", format!("auto:{}", range(base + 1, base + 2))),
    ] {
        d.pmd_ok(&[
            "start", "sleep", "--name", name, "--port", &port, "--", "100000",
        ]);
        d.wait_online(name);
    }
    assert_eq!(port_of(&d.app("roamer").unwrap()), Some(base + 1));
    d.pmd_ok(&["stop", "all"]);
    let _fixed_holder = TcpListener::bind((Ipv4Addr::UNSPECIFIED, base)).expect("take the port");
    let _auto_holder = TcpListener::bind((Ipv4Addr::UNSPECIFIED, base + 1)).expect("take the port");

    let text = refused(&d, &["start", "fixed"]);
    assert!(text.contains(&base.to_string()), "port not named: {text}");
    let again = refused(&d, &["restart", "fixed"]);
    assert!(again.contains(&base.to_string()), "port not named: {again}");
    assert!(
        text.contains(&std::process::id().to_string()),
        "the holder (pid {}) is not named: {text}",
        std::process::id()
    );
    assert_eq!(d.status("fixed").as_deref(), Some("stopped"));

    d.pmd_ok(&["start", "roamer"]);
    let roamer = d.wait_status("roamer", "online");
    assert_eq!(port_of(&roamer), Some(base + 2), "{roamer:#}");
    let pid = pid_of(&roamer).unwrap();
    assert_eq!(env_of(pid)["PORT"], (base + 2).to_string());
}

/// A daemon restart while a foreign process holds one app's fixed port:
/// every other app comes back; that one is `errored` with the reason (not
/// `starting` for ever) and starts once the port is free again.
#[test]
fn a_port_taken_across_a_daemon_restart_blocks_only_its_app() {
    let mut d = TestDaemon::start();
    let port = free_ports(1);
    d.pmd_ok(&["start", "sleep", "--name", "before", "--", "100000"]);
    d.pmd_ok(&[
        "start",
        "sleep",
        "--name",
        "fixed",
        "--port",
        &port.to_string(),
        "--",
        "100000",
    ]);
    d.pmd_ok(&["start", "sleep", "--name", "after", "--", "100000"]);
    for name in ["before", "fixed", "after"] {
        d.wait_online(name);
    }
    d.stop_daemon();
    let holder = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("take the port");
    d.spawn_daemon();
    d.wait_online("before");
    d.wait_online("after");
    let fixed = d.wait_status("fixed", "errored");
    assert!(
        fixed.to_string().contains(&port.to_string()),
        "the reason does not name the port: {fixed:#}"
    );
    drop(holder);
    d.pmd_ok(&["restart", "fixed"]);
    d.wait_online("fixed");
}

/// `restart --port` overrides: a plain restart returns to the app's own
/// port, checked on the host first; an override cannot take a port another
/// instance of the same app runs on.
#[test]
fn overrides_are_checked_against_the_host_and_sibling_instances() {
    let d = TestDaemon::start();
    let base = free_ports(4);
    d.pmd_ok(&[
        "start",
        "sleep",
        "--name",
        "duo",
        "-i",
        "2",
        "--port",
        &range(base, base + 1),
        "--",
        "100000",
    ]);
    let duo = d.wait_instances_online("duo", 2);
    let (first, second) = (duo[0]["id"].to_string(), duo[1]["id"].to_string());

    let sibling = refused(&d, &["restart", &first, "--port", &(base + 1).to_string()]);
    assert!(sibling.contains("duo"), "{sibling}");

    d.pmd_ok(&["restart", &first, "--port", &(base + 3).to_string()]);
    d.wait_instances_online("duo", 2);
    let _holder = TcpListener::bind((Ipv4Addr::UNSPECIFIED, base)).expect("take the port");
    let text = refused(&d, &["restart", &first]);
    assert!(text.contains(&base.to_string()), "{text}");
    // The other instance was not touched by the refused restart of one.
    assert_eq!(d.instances("duo")[1]["id"].to_string(), second);
}

/// A fixed port or range overlapping another app's is refused with that
/// app named, even while the owner is stopped (its ports stay reserved);
/// `auto:` skips the reserved ports.
#[test]
fn an_overlapping_fixed_port_or_range_is_refused_naming_the_owner() {
    let d = TestDaemon::start();
    let base = free_ports(6);
    d.pmd_ok(&[
        "start",
        "sleep",
        "--name",
        "owner",
        "-i",
        "3",
        "--port",
        &range(base, base + 2),
        "--",
        "100000",
    ]);
    d.wait_instances_online("owner", 3);
    let intrude = |d: &TestDaemon| {
        for (instances, port) in [
            ("1", (base + 1).to_string()),
            ("3", range(base + 2, base + 4)),
        ] {
            let text = refused(
                d,
                &[
                    "start", "sleep", "--name", "intruder", "-i", instances, "--port", &port, "--",
                    "100000",
                ],
            );
            assert!(text.contains("owner"), "the owner is not named: {text}");
            assert!(d.app("intruder").is_none(), "the intruder was created");
        }
    };
    intrude(&d);
    d.pmd_ok(&["stop", "owner"]);
    intrude(&d);

    d.pmd_ok(&[
        "start",
        "sleep",
        "--name",
        "polite",
        "--port",
        &format!("auto:{}", range(base, base + 5)),
        "--",
        "100000",
    ]);
    d.wait_online("polite");
    assert_eq!(port_of(&d.app("polite").unwrap()), Some(base + 3));
}

/// `pmd restart NAME --port P` moves the app to P for that run only
/// (`port_override: true`); a later plain `pmd restart` returns it to its
/// own port.
#[test]
fn restart_with_a_port_overrides_one_run_then_reverts() {
    let d = TestDaemon::start();
    let base = free_ports(2);
    let server = d.write_http_server("server.py");
    d.pmd_ok(&[
        "start",
        arg(&server),
        "--name",
        "mover",
        "--port",
        &base.to_string(),
    ]);
    let first = d.wait_online("mover");
    assert_eq!(wait_http(base).pid, first);

    d.pmd_ok(&["restart", "mover", "--port", &(base + 1).to_string()]);
    let moved = wait_for_value("mover online on its override port", WAIT, || {
        d.app("mover")
            .filter(|a| a["status"] == "online" && port_of(a) == Some(base + 1))
    });
    assert_eq!(moved["port_override"], true, "{moved}");
    let pid = pid_of(&moved).unwrap();
    assert_ne!(pid, first);
    assert_eq!(env_of(pid)["PORT"], (base + 1).to_string());
    assert_eq!(wait_http(base + 1).pid, pid);
    assert_eq!(d.describe_one("mover")["port_override"], true);
    assert!(
        http_get(base).is_none(),
        "something still answers on {base}"
    );

    d.pmd_ok(&["restart", "mover"]);
    let back = wait_for_value("mover back on its own port", WAIT, || {
        d.app("mover")
            .filter(|a| a["status"] == "online" && port_of(a) == Some(base))
    });
    assert_eq!(back["port_override"], false, "{back}");
    let pid = pid_of(&back).unwrap();
    assert_eq!(env_of(pid)["PORT"], base.to_string());
    assert_eq!(wait_http(base).pid, pid);
}
