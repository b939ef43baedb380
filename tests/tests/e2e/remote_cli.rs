//! `pmd` driving a remote daemon (`--host`, `PMD_HOST`/`PMD_TOKEN`,
//! contexts) with the real binary against a real `pmdaemond --listen` on a
//! free loopback port. Every `pmd` here runs as a [`RemoteClient`]: its
//! own empty `PMDAEMON_HOME`, so a fall-back to the local socket would
//! start a second daemon there, which each test checks did not happen.
//! Covered: the verbs (start with an absolute script, list, describe,
//! stop, restart, delete, logs and `logs -f`, events, `--wait-ready`,
//! ping, version, kill), TLS with a test CA and mutual TLS (a wrong CA
//! fails with the TLS message), the environment, contexts, and the
//! refusals: no token, a read-only token, a relative script, `pmd token`.

use std::os::unix::fs::PermissionsExt;

use pmdaemon_tests::*;
use serde_json::Value;

fn start_listening(port: u16) -> TestDaemon {
    TestDaemon::start_with_args(&["--listen", &format!("127.0.0.1:{port}")])
}

/// `--host http://127.0.0.1:PORT --token-file FILE` then `args`.
fn with_host<'a>(host: &'a str, token: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--host", host, "--token-file", token];
    all.extend_from_slice(args);
    all
}

/// A script that says `started`, then prints `after-follow` each time the
/// file `trigger` appears in its directory (which it removes).
const TRIGGERED: &str = "#!/bin/sh\necho started\nwhile :; do\n  if [ -e trigger ]; then rm -f trigger; echo after-follow; fi\n  sleep 0.05\ndone\n";

fn list(client: &RemoteClient, host: &str, token: &str) -> Vec<Value> {
    let out = client.pmd_ok(&with_host(host, token, &["list", "-o", "json"]));
    match parse_json("pmd list -o json", &out) {
        Value::Array(apps) => apps,
        other => panic!("expected an array: {other}"),
    }
}

fn status_of(apps: &[Value], name: &str) -> Option<String> {
    apps.iter()
        .find(|a| a["name"] == name)
        .and_then(|a| a["status"].as_str().map(str::to_string))
}

/// Start, list, describe, logs (-f), events, stop, restart, delete,
/// --wait-ready, ping, version and kill, all over TCP from a client whose
/// own home stays empty.
#[test]
fn every_verb_over_tcp() {
    let port = free_ports(1);
    let mut daemon = start_listening(port);
    let host = format!("http://127.0.0.1:{port}");
    let token = daemon.home().join("token");
    let token = arg(&token).to_string();
    let client = RemoteClient::new();
    let pmd = |args: &[&str]| client.pmd_ok(&with_host(&host, &token, args));

    let script = daemon.write_executable("triggered.sh", TRIGGERED);
    let out = pmd(&["start", arg(&script), "--name", "far"]);
    assert!(out.contains("started far"), "{out}");
    client.assert_no_local_daemon();
    let apps = wait_for_value("far online, seen over TCP", WAIT, || {
        let apps = list(&client, &host, &token);
        (status_of(&apps, "far").as_deref() == Some("online")).then_some(apps)
    });
    assert_eq!(apps.len(), 1, "{apps:?}");
    // The daemon ran the script of its own host, in its directory.
    let described = parse_json("describe", &pmd(&["describe", "far", "-o", "json"]));
    let described = described.as_array().map_or(&described, |a| &a[0]);
    assert_eq!(described["cwd"], arg(daemon.work()), "{described}");

    // logs: the history, then with -f a line written after the follow
    // began.
    let out = wait_for_value("the first log line over TCP", WAIT, || {
        let out = pmd(&["logs", "far", "--raw", "--lines", "5"]);
        out.contains("started").then_some(out)
    });
    assert!(!out.contains("after-follow"), "{out}");
    let mut follow = client.spawn_lines(&with_host(&host, &token, &["logs", "far", "-f", "--raw"]));
    follow.wait_line("with the history", |l| l == "started");
    std::fs::write(daemon.work().join("trigger"), "").unwrap();
    follow.wait_line("written after the follow began", |l| l == "after-follow");
    drop(follow);

    // events: a stop seen from a remote `pmd events`, once it is live.
    let mut events = client.spawn_lines(&with_host(&host, &token, &["events", "-o", "json"]));
    let deadline = WAIT.deadline();
    loop {
        pmd(&["restart", "far"]);
        let seen = events.next_matching(WAIT.div(60), |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|e| e["name"] == "far")
        });
        if seen.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pmd events over TCP showed nothing; stderr: {}",
            events.stderr()
        );
    }
    let out = pmd(&["stop", "far"]);
    assert!(out.contains("stopped far"), "{out}");
    events.wait_line("for the stop", |l| {
        serde_json::from_str::<Value>(l)
            .is_ok_and(|e| e["name"] == "far" && kind_of(&e) == "stopped")
    });
    drop(events);
    assert_eq!(
        status_of(&list(&client, &host, &token), "far").as_deref(),
        Some("stopped")
    );

    // start of an existing app, reload, scale, monit (a snapshot off a
    // terminal), an ecosystem file read here whose script is the daemon's.
    let out = pmd(&["start", "far"]);
    assert!(out.contains("started far"), "{out}");
    let out = pmd(&["reload", "far"]);
    assert!(out.contains("reloaded far"), "{out}");
    let out = pmd(&["monit"]);
    assert!(out.contains("far"), "{out}");
    let eco = client.work().join("ecosystem.yaml");
    std::fs::write(
        &eco,
        format!("apps:\n  - name: eco\n    script: {}\n", arg(&script)),
    )
    .unwrap();
    let out = pmd(&["start", arg(&eco)]);
    assert!(out.contains("eco"), "{out}");
    let out = pmd(&["scale", "eco", "2"]);
    assert!(out.contains("eco"), "{out}");
    let out = pmd(&["delete", arg(&eco)]);
    assert!(out.contains("deleted eco"), "{out}");
    let out = pmd(&["restart", "far"]);
    assert!(out.contains("restarted far"), "{out}");
    let out = pmd(&["flush", "far"]);
    assert!(out.contains("flushed"), "{out}");

    // --wait-ready returns once the app is ready.
    let out = pmd(&[
        "start",
        "sleep",
        "--name",
        "nap",
        "--wait-ready",
        "--",
        "1000",
    ]);
    assert!(out.contains("nap"), "{out}");
    assert_eq!(
        status_of(&list(&client, &host, &token), "nap").as_deref(),
        Some("online")
    );
    let out = pmd(&["delete", "nap"]);
    assert!(out.contains("deleted nap"), "{out}");

    let out = pmd(&["ping"]);
    assert!(out.contains(&format!("at {host}")), "{out}");
    let out = pmd(&["version"]);
    assert!(
        out.contains(&format!("pmdaemond {}", pmdaemon_proto::VERSION)) && out.contains(&host),
        "{out}"
    );
    let out = pmd(&["save"]);
    assert!(out.contains("saved 1 app"), "{out}");

    // kill: Shutdown over TCP, and pmd waits until the port is closed.
    let out = pmd(&["kill"]);
    assert!(out.contains(&format!("daemon at {host} stopped")), "{out}");
    let status = daemon.wait_daemon_exit();
    assert!(status.success(), "{status}");
    let out = client.pmd_code(1, &with_host(&host, &token, &["ping"]));
    assert!(out.contains("connection refused"), "{out}");
    client.assert_no_local_daemon();
}

/// TLS with a CA made here: `--ca-cert` trusts it; another CA fails with
/// the TLS message; a daemon with `--tls-client-ca` needs
/// `--client-cert/--client-key`.
#[test]
fn tls_with_the_test_ca_and_mutual_tls() {
    let ca = TestCa::new();
    let other_ca = TestCa::new();
    let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]);
    let (client_cert, client_key) = ca.issue(&["client"]);
    let port = free_ports(1);
    let mut daemon = TestDaemon::new_stopped();
    let dir = daemon.work().to_path_buf();
    for (name, text) in [("ca.pem", ca.pem()), ("cert.pem", cert), ("key.pem", key)] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let path = |name: &str| dir.join(name).display().to_string();
    daemon.set_daemon_args(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--tls-cert",
        &path("cert.pem"),
        "--tls-key",
        &path("key.pem"),
        "--tls-client-ca",
        &path("ca.pem"),
    ]);
    daemon.spawn_daemon();
    let client = RemoteClient::new();
    let ca_file = client.write_file("ca.pem", &ca.pem(), 0o644);
    let wrong_ca = client.write_file("other-ca.pem", &other_ca.pem(), 0o644);
    let cert_file = client.write_file("client.pem", &client_cert, 0o644);
    let key_file = client.write_file("client.key", &client_key, 0o600);
    let token = daemon.home().join("token");
    for host in [
        format!("https://127.0.0.1:{port}"),
        format!("localhost:{port}"),
    ] {
        let out = client.pmd_ok(&[
            "--host",
            &host,
            "--token-file",
            arg(&token),
            "--ca-cert",
            arg(&ca_file),
            "--client-cert",
            arg(&cert_file),
            "--client-key",
            arg(&key_file),
            "list",
            "-o",
            "json",
        ]);
        assert_eq!(parse_json("list", &out), Value::Array(vec![]), "{host}");
    }
    let host = format!("https://127.0.0.1:{port}");
    let out = client.pmd_code(
        1,
        &[
            "--host",
            &host,
            "--token-file",
            arg(&token),
            "--ca-cert",
            arg(&wrong_ca),
            "--client-cert",
            arg(&cert_file),
            "--client-key",
            arg(&key_file),
            "list",
        ],
    );
    assert!(out.contains(&format!("TLS with {host} failed")), "{out}");
    assert!(out.contains("--ca-cert"), "{out}");
    let out = client.pmd_code(
        1,
        &[
            "--host",
            &host,
            "--token-file",
            arg(&token),
            "--ca-cert",
            arg(&ca_file),
            "list",
        ],
    );
    assert!(out.contains(&format!("TLS with {host} failed")), "{out}");
    assert!(out.contains("--client-cert"), "{out}");
    client.assert_no_local_daemon();
}

/// PMD_HOST and PMD_TOKEN; a context added (paths made absolute, no token
/// inside, mode 0600), used, listed and removed.
#[test]
fn environment_and_contexts() {
    let port = free_ports(1);
    let daemon = start_listening(port);
    let host = format!("http://127.0.0.1:{port}");
    let secret = admin_token(daemon.home());
    let mut from_env = RemoteClient::new();
    from_env.set_env("PMD_HOST", &host);
    from_env.set_env("PMD_TOKEN", &secret);
    daemon.pmd_ok(&["start", "sleep", "--name", "nap", "--", "1000"]);
    let out = from_env.pmd_ok(&["list", "-o", "json"]);
    assert!(out.contains("\"nap\""), "{out}");
    from_env.assert_no_local_daemon();

    let client = RemoteClient::new();
    client.write_file("work/lab.token", &format!("{secret}\n"), 0o600);
    let out = client.pmd_ok(&[
        "context",
        "add",
        "lab",
        "--host",
        &host,
        "--token-file",
        "lab.token",
    ]);
    assert!(out.contains("context lab added"), "{out}");
    let file = client.contexts_file();
    assert!(is_private_file(&file), "contexts.yaml is not 0600");
    let dir_mode = std::fs::metadata(file.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700, "{dir_mode:o}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&secret), "the token is in contexts.yaml");
    let token_path = client.work().join("lab.token");
    assert!(text.contains(arg(&token_path)), "{text}");
    // Not current yet: the context is used when named.
    let out = client.pmd_ok(&["--context", "lab", "list", "-o", "json"]);
    assert!(out.contains("\"nap\""), "{out}");
    client.pmd_ok(&["context", "use", "lab"]);
    let out = client.pmd_ok(&["list", "-o", "json"]);
    assert!(out.contains("\"nap\""), "{out}");
    let listed = parse_json(
        "context list",
        &client.pmd_ok(&["context", "list", "-o", "json"]),
    );
    assert_eq!(listed[0]["name"], "local");
    assert_eq!(listed[0]["current"], false);
    assert_eq!(listed[1]["name"], "lab");
    assert_eq!(listed[1]["current"], true);
    assert_eq!(listed[1]["host"], host.as_str());
    assert_eq!(listed[1]["token_file"], arg(&token_path));
    let table = client.pmd_ok(&["context", "list"]);
    assert!(table.contains("*  lab"), "{table}");
    client.assert_no_local_daemon();

    // Bad input changes nothing.
    let before = std::fs::read_to_string(&file).unwrap();
    let out = client.pmd_code(2, &["context", "add", "lab", "--host", &host]);
    assert!(out.contains("exists"), "{out}");
    let out = client.pmd_code(2, &["context", "add", "other", "--host", "https://h"]);
    assert!(out.contains("has no port"), "{out}");
    let out = client.pmd_code(2, &["context", "use", "nowhere"]);
    assert!(out.contains("no context named \"nowhere\""), "{out}");
    let out = client.pmd_code(2, &["context", "add", "local", "--host", &host]);
    assert!(out.contains("reserved"), "{out}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);

    let out = client.pmd_ok(&["context", "remove", "lab"]);
    assert!(out.contains("context lab removed"), "{out}");
    let listed = parse_json(
        "context list",
        &client.pmd_ok(&["context", "list", "-o", "json"]),
    );
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["current"], true);
    client.assert_no_local_daemon();
    daemon.pmd_ok(&["delete", "all"]);
}

/// Without a token, with a read-only one, a relative script, `pmd token`:
/// each refused with a message that says why, and the daemon unchanged.
#[test]
fn refusals_say_why_and_change_nothing() {
    let port = free_ports(1);
    let daemon = start_listening(port);
    let host = format!("http://127.0.0.1:{port}");
    daemon.pmd_ok(&["start", "sleep", "--name", "nap", "--", "1000"]);
    daemon.wait_online("nap");
    let client = RemoteClient::new();

    let out = client.pmd_code(1, &["--host", &host, "list"]);
    assert!(
        out.contains(&format!(
            "{host} needs a token: --token-file FILE or PMD_TOKEN"
        )),
        "{out}"
    );

    let reader = daemon.pmd_ok(&["token", "create", "reader", "--read-only"]);
    let reader = reader.trim();
    let reader_file = client.write_file("reader.token", reader, 0o600);
    let reader_path = arg(&reader_file);
    let out = client.pmd_ok(&with_host(&host, reader_path, &["list", "-o", "json"]));
    assert!(out.contains("\"nap\""), "{out}");
    let out = client.pmd_code(1, &with_host(&host, reader_path, &["stop", "nap"]));
    assert!(out.contains("read-only"), "{out}");
    assert!(
        out.contains(&format!("the token in {}", arg(&reader_file))),
        "{out}"
    );
    assert!(
        !out.contains(reader),
        "the token's value in a message: {out}"
    );

    // A token file open to others works, with a warning that says the fix.
    let open_file = client.write_file("open.token", reader, 0o644);
    let out = client.pmd_code(0, &with_host(&host, arg(&open_file), &["list"]));
    assert!(
        out.contains(&format!("chmod 600 {}", arg(&open_file))),
        "{out}"
    );

    let revoked_file = client.write_file("bad.token", "pmd_00000000", 0o600);
    let out = client.pmd_code(
        1,
        &["--host", &host, "--token-file", arg(&revoked_file), "list"],
    );
    assert!(out.contains("unknown, revoked or expired"), "{out}");

    let admin = daemon.home().join("token");
    let admin = arg(&admin);
    std::fs::write(client.work().join("local.sh"), crate::IDLE).unwrap();
    for script in ["./local.sh", "local.sh", "sub/local.sh"] {
        let out = client.pmd_code(
            2,
            &with_host(&host, admin, &["start", script, "--name", "wrong"]),
        );
        assert!(out.contains("relative to this machine"), "{script}: {out}");
    }
    let out = client.pmd_code(
        2,
        &with_host(
            &host,
            admin,
            &["start", "sleep", "--cwd", "work", "--", "1"],
        ),
    );
    assert!(out.contains("--cwd \"work\" is relative"), "{out}");
    let eco = client.write_file(
        "work/ecosystem.yaml",
        "apps:\n  - name: eco\n    script: ./local.sh\n",
        0o644,
    );
    let out = client.pmd_code(2, &with_host(&host, admin, &["start", arg(&eco)]));
    assert!(
        out.contains("app eco: script \"./local.sh\" is relative"),
        "{out}"
    );

    let out = client.pmd_code(2, &with_host(&host, admin, &["token", "list"]));
    assert!(
        out.contains("tokens are managed on the daemon's host over its Unix socket"),
        "{out}"
    );
    let names: Vec<String> = daemon
        .list_json()
        .iter()
        .map(|a| a["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names, ["nap"]);
    assert_eq!(daemon.status("nap").as_deref(), Some("online"));
    client.assert_no_local_daemon();
    daemon.pmd_ok(&["delete", "all"]);
}
