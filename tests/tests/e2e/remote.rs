//! The TCP listener (`pmdaemond --listen`): the token and scope matrix for
//! every RPC (generated from `pmdaemon_proto::METHOD_ACCESS`, so a new RPC
//! is covered without a change here), `/healthz`, the 401 of HTTP, gRPC
//! reflection over TCP, relative paths refused for remote callers, TLS and
//! mutual TLS with certificates made here, the rule against a non-loopback
//! address without TLS, the token files and verbs, and secrets kept out of
//! the daemon's logs.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use pmdaemon_proto::v1::Access;
use pmdaemon_tests::*;
use tonic::Code;

const SHUTDOWN: &str = "/pmdaemon.v1.ProcessManager/Shutdown";

fn listen_args(port: u16) -> Vec<String> {
    vec!["--listen".into(), format!("127.0.0.1:{port}")]
}

fn start_listening(port: u16, extra: &[&str]) -> TestDaemon {
    let mut args = listen_args(port);
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestDaemon::start_with_args(&args)
}

fn code_of(result: &Result<(), tonic::Status>) -> Option<Code> {
    result.as_ref().err().map(|s| s.code())
}

fn create_token(daemon: &TestDaemon, args: &[&str]) -> String {
    let mut all = vec!["token", "create"];
    all.extend_from_slice(args);
    let out = daemon.pmd_ok(&all);
    let secret = out.trim().to_string();
    assert_eq!(out.lines().count(), 1, "only the secret on stdout: {out:?}");
    assert!(secret.starts_with("pmd_"), "{secret}");
    secret
}

/// Every RPC, with every kind of token: refused without a valid one,
/// allowed for a read-only one exactly on the read-only RPCs, local-only
/// RPCs refused over TCP even for admin (and served on the socket). Then
/// the secrets are nowhere in the daemon's logs, and Shutdown over TCP
/// with the admin token stops the daemon.
#[test]
fn every_rpc_checks_token_and_scope_over_tcp() {
    let port = free_ports(1);
    let mut daemon = start_listening(port, &[]);
    let admin = admin_token(daemon.home());
    let read_only = create_token(&daemon, &["reader", "--read-only"]);
    let revoked = create_token(&daemon, &["gone"]);
    daemon.pmd_ok(&["token", "revoke", "gone"]);
    let expired = create_token(&daemon, &["brief", "--expires", "1ms"]);
    let truncated = admin[..admin.len() - 1].to_string();
    let wrong = format!("pmd_{}", "0".repeat(64));

    for file in ["token", "tokens.json"] {
        let mode = std::fs::metadata(daemon.home().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} mode {mode:o}");
    }
    let stored = std::fs::read_to_string(daemon.home().join("tokens.json")).unwrap();
    assert!(!stored.contains(&read_only), "tokens.json holds a secret");

    block_on(async {
        let channel = tcp_channel(port).await;
        for &(path, access) in pmdaemon_proto::METHOD_ACCESS {
            for (label, token) in [
                ("no token", None),
                ("a wrong token", Some(wrong.as_str())),
                ("a truncated token", Some(truncated.as_str())),
                ("a revoked token", Some(revoked.as_str())),
                ("an expired token", Some(expired.as_str())),
            ] {
                let got = call_empty(channel.clone(), path, token).await;
                assert_eq!(
                    code_of(&got),
                    Some(Code::Unauthenticated),
                    "{path} with {label}: {got:?}"
                );
            }
            let got = call_empty(channel.clone(), path, Some(&read_only)).await;
            match access {
                Access::ReadOnly => assert!(
                    !matches!(
                        code_of(&got),
                        Some(Code::Unauthenticated | Code::PermissionDenied)
                    ),
                    "{path} with a read-only token: {got:?}"
                ),
                Access::Admin | Access::LocalOnly => assert_eq!(
                    code_of(&got),
                    Some(Code::PermissionDenied),
                    "{path} with a read-only token: {got:?}"
                ),
            }
            if path == SHUTDOWN {
                continue;
            }
            let got = call_empty(channel.clone(), path, Some(&admin)).await;
            match access {
                Access::LocalOnly => assert_eq!(
                    code_of(&got),
                    Some(Code::PermissionDenied),
                    "{path} over TCP with the admin token: {got:?}"
                ),
                _ => assert!(
                    !matches!(
                        code_of(&got),
                        Some(Code::Unauthenticated | Code::PermissionDenied)
                    ),
                    "{path} with the admin token: {got:?}"
                ),
            }
        }
        // Local-only RPCs are served on the socket.
        let mut local = connect(&daemon.socket()).await.expect("socket");
        let listed = local
            .list_tokens(v1::ListTokensRequest {})
            .await
            .expect("ListTokens on the socket")
            .into_inner();
        let names: Vec<_> = listed.tokens.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["admin", "reader", "brief"]);
        let reader = &listed.tokens[1];
        assert!(reader.last_used_at_ms > 0, "last use recorded: {reader:?}");

        // Last: Shutdown with the admin token stops the daemon.
        let got = call_empty(channel.clone(), SHUTDOWN, Some(&admin)).await;
        assert!(got.is_ok(), "Shutdown with the admin token: {got:?}");
    });
    let status = daemon.wait_daemon_exit();
    assert!(status.success(), "{status}");

    let log = std::fs::read_to_string(daemon.home().join("pmdaemond.log")).unwrap();
    let stderr = daemon.daemon_stderr();
    assert!(
        log.contains("refused a request without a valid token"),
        "{log}"
    );
    for secret in [&admin, &read_only, &revoked, &expired, &truncated] {
        assert!(!log.contains(secret.as_str()), "a secret in pmdaemond.log");
        assert!(!stderr.contains(secret.as_str()), "a secret on stderr");
    }
    let hex_of_admin = &admin["pmd_".len()..];
    assert!(
        !log.contains(&hex_of_admin[..16]),
        "part of a secret in the log"
    );
}

/// `/healthz` needs no token; anything else over HTTP without one is a 401
/// with `WWW-Authenticate: Bearer` and the JSON error body; reflection is
/// served over TCP; a remote caller's relative script is refused with a
/// message saying why, an absolute one runs; ping says where it listens.
#[test]
fn healthz_http_errors_reflection_and_remote_paths() {
    let port = free_ports(1);
    let daemon = start_listening(port, &[]);
    let admin = admin_token(daemon.home());

    let health = http_raw(port, "GET", "/healthz", &[]);
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok"), "{health}");

    let refused = http_raw(port, "GET", "/v1/processes?access_token=x", &[]);
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(
        refused
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{refused}"
    );
    let body = refused.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(body["code"], 16, "{body}");
    assert!(
        body["details"].as_array().is_some_and(Vec::is_empty),
        "{body}"
    );

    let bearer = format!("Bearer {admin}");
    let unknown = http_raw(port, "GET", "/nowhere", &[("Authorization", &bearer)]);
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");

    let pong = daemon.pmd_ok(&["ping"]);
    assert!(
        pong.contains(&format!("listening on 127.0.0.1:{port}")),
        "{pong}"
    );

    let script = daemon.work().join("idle.sh");
    std::fs::write(&script, crate::IDLE).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    block_on(async {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let channel = tcp_channel(port).await;
        let auth: tonic::metadata::MetadataValue<_> = bearer.parse().unwrap();
        let with_token = move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", auth.clone());
            Ok(req)
        };
        let mut reflection =
            ServerReflectionClient::with_interceptor(channel.clone(), with_token.clone());
        let mut answers = reflection
            .server_reflection_info(tokio_stream::iter([ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            }]))
            .await
            .expect("reflection over TCP")
            .into_inner();
        let first = answers.message().await.expect("ok").expect("an answer");
        let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
            panic!("expected a service list, got {first:?}");
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"pmdaemon.v1.ProcessManager"), "{names:?}");

        let mut pm = ProcessManagerClient::with_interceptor(channel, with_token);
        let start = |script: String, cwd: String| v1::StartProcessRequest {
            spec: Some(v1::AppSpec {
                name: "far".into(),
                script,
                cwd,
                ..Default::default()
            }),
            // Ignored over TCP: it names a directory of the caller's host.
            caller_cwd: daemon.work().display().to_string(),
            ..Default::default()
        };
        let refused = pm
            .start_process(start("./idle.sh".into(), String::new()))
            .await
            .expect_err("a relative script over TCP");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains("absolute path"), "{refused:?}");
        let refused = pm
            .start_process(start("idle.sh".into(), "work".into()))
            .await
            .expect_err("a relative cwd over TCP");
        assert!(refused.message().contains("absolute path"), "{refused:?}");
        let started = pm
            .start_process(start(script.display().to_string(), String::new()))
            .await
            .expect("an absolute script over TCP")
            .into_inner();
        assert_eq!(started.processes.len(), 1);
        assert_eq!(
            started.processes[0].cwd,
            daemon.work().display().to_string()
        );
    });
    daemon.pmd_ok(&["delete", "all"]);
}

/// TLS end to end with a CA and certificates made here; with
/// `--tls-client-ca`, a client without a certificate is refused, and
/// plain TCP to the TLS port gets nothing.
#[test]
fn tls_and_mutual_tls() {
    let ca = TestCa::new();
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
    let admin = admin_token(daemon.home());
    let ca_pem = ca.pem();
    block_on(async {
        let channel = tls_channel(port, &ca_pem, Some((&client_cert, &client_key)))
            .await
            .expect("mutual TLS with a client certificate");
        let got = call_empty(
            channel,
            "/pmdaemon.v1.ProcessManager/ListProcesses",
            Some(&admin),
        )
        .await;
        assert!(got.is_ok(), "ListProcesses over TLS: {got:?}");

        let refused = match tls_channel(port, &ca_pem, None).await {
            Err(_) => None,
            Ok(channel) => Some(
                call_empty(
                    channel,
                    "/pmdaemon.v1.ProcessManager/ListProcesses",
                    Some(&admin),
                )
                .await,
            ),
        };
        assert!(
            refused.as_ref().is_none_or(|r| r.is_err()),
            "a client without a certificate was served: {refused:?}"
        );

        let plain = call_empty(
            tcp_channel_lazy(port),
            "/pmdaemon.v1.ProcessManager/ListProcesses",
            Some(&admin),
        )
        .await;
        assert!(plain.is_err(), "h2c on the TLS port: {plain:?}");
    });
    daemon.stop_daemon();
}

/// A channel that connects on first use (the TLS port refuses h2c, which a
/// connecting constructor would report as a panic in the harness).
fn tcp_channel_lazy(port: u16) -> Channel {
    tonic::transport::Endpoint::try_from(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_lazy()
}

/// A non-loopback address without TLS stops the daemon at start with a
/// message that says how to add TLS; `--insecure-remote` allows it, with a
/// warning at every start.
#[test]
fn non_loopback_without_tls_is_refused() {
    let port = free_ports(1);
    let daemon = TestDaemon::new_stopped();
    let out = run_with_timeout(
        Command::new(&binaries().pmdaemond)
            .args(["--listen", &format!("0.0.0.0:{port}")])
            .env(pmdaemon_proto::HOME_ENV, daemon.home()),
        WAIT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("without TLS"), "{said}");
    assert!(said.contains("--tls-cert FILE --tls-key FILE"), "{said}");
    assert!(!daemon.socket().exists(), "nothing served");
    drop(daemon);

    let daemon =
        TestDaemon::start_with_args(&["--listen", &format!("0.0.0.0:{port}"), "--insecure-remote"]);
    let health = http_raw(port, "GET", "/healthz", &[]);
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let log = std::fs::read_to_string(daemon.home().join("pmdaemond.log")).unwrap();
    assert!(log.contains("--insecure-remote"), "{log}");
}

/// The token verbs: a bad name or duplicate is refused, list shows no
/// secret, revoke of an unknown name fails.
#[test]
fn token_verbs() {
    let daemon = TestDaemon::start();
    let secret = create_token(&daemon, &["deploy", "--expires", "30d"]);
    let dup = daemon.pmd(&["token", "create", "deploy"]);
    assert!(!dup.status.success());
    assert!(
        crate::said(&dup).contains("already exists"),
        "{}",
        crate::said(&dup)
    );
    let list = daemon.pmd_ok(&["token", "list", "-o", "json"]);
    assert!(!list.contains(&secret));
    let list: serde_json::Value = parse_json("token list", &list);
    assert_eq!(list[1]["name"], "deploy");
    assert_eq!(list[1]["scope"], "admin");
    assert!(list[1]["expires_at_ms"].as_i64().is_some(), "{list}");
    let table = daemon.pmd_ok(&["token", "list"]);
    assert!(
        table.contains("deploy") && !table.contains(&secret),
        "{table}"
    );
    let missing = daemon.pmd(&["token", "revoke", "nobody"]);
    assert!(!missing.status.success());
    assert!(
        crate::said(&missing).contains("no token named"),
        "{}",
        crate::said(&missing)
    );
    let admin = daemon.pmd(&["token", "create", "admin"]);
    assert!(!admin.status.success(), "{}", crate::said(&admin));
}

/// config.yaml: its listen address and CORS origins are applied, a flag
/// overrides its address, and a bad file stops the daemon with FILE:LINE.
#[test]
fn config_file_applied_overridden_and_checked() {
    let ports = free_ports(2);
    let (from_file, from_flag) = (ports, ports + 1);
    let mut daemon = TestDaemon::new_stopped();
    let config = daemon.home().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: ['127.0.0.1:{from_file}']\ncors_origins: ['https://ui.example']\nlimits:\n  max_connections: 8\n  header_read_timeout: 5s\n"
        ),
    )
    .unwrap();
    daemon.spawn_daemon();
    let health = http_raw(from_file, "GET", "/healthz", &[]);
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let version = daemon.pmd_ok(&["version"]);
    assert!(
        version.contains(&format!("listening on 127.0.0.1:{from_file}")),
        "{version}"
    );
    // CORS for the configured origin only, preflight without a token.
    let preflight = http_raw(
        from_file,
        "OPTIONS",
        "/v1/processes",
        &[
            ("Origin", "https://ui.example"),
            ("Access-Control-Request-Method", "GET"),
        ],
    )
    .to_ascii_lowercase();
    assert!(preflight.starts_with("http/1.1 204"), "{preflight}");
    assert!(
        preflight.contains("access-control-allow-origin: https://ui.example"),
        "{preflight}"
    );
    let other = http_raw(
        from_file,
        "GET",
        "/healthz",
        &[("Origin", "https://evil.example")],
    );
    assert!(
        !other
            .to_ascii_lowercase()
            .contains("access-control-allow-origin"),
        "{other}"
    );
    daemon.stop_daemon();

    daemon.set_daemon_args(&["--listen", &format!("127.0.0.1:{from_flag}")]);
    daemon.spawn_daemon();
    let pong = daemon.pmd_ok(&["ping"]);
    assert!(pong.contains(&format!("127.0.0.1:{from_flag}")), "{pong}");
    assert!(!pong.contains(&format!("127.0.0.1:{from_file}")), "{pong}");
    daemon.stop_daemon();

    std::fs::write(&config, "listen: []\nlisen: ['127.0.0.1:1']\n").unwrap();
    let out = run_with_timeout(
        Command::new(&binaries().pmdaemond).env(pmdaemon_proto::HOME_ENV, daemon.home()),
        WAIT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains(&format!("{}:2:", config.display())), "{said}");
    assert!(said.contains("did you mean `listen`"), "{said}");
}

/// `GET /metrics`: Prometheus text for a running app (a read-only token is
/// enough; none is a 401).
#[test]
fn metrics_of_a_running_app() {
    let ports = free_ports(2);
    let (listen, app_port) = (ports, ports + 1);
    let mut args = listen_args(listen);
    args.extend(FAST_MONITOR.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let daemon = TestDaemon::start_with_args(&args);
    daemon.pmd_ok(&[
        "start",
        "sleep",
        "--name",
        "nap",
        "--port",
        &app_port.to_string(),
        "--",
        "1000",
    ]);
    daemon.wait_online("nap");
    let reader = create_token(&daemon, &["scraper", "--read-only"]);
    let bearer = format!("Bearer {reader}");
    let refused = http_raw(listen, "GET", "/metrics", &[]);
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let labels = r#"{name="nap",id="0",instance="0"}"#;
    let text = wait_for_value("metrics with a memory sample", WAIT, || {
        let text = http_raw(listen, "GET", "/metrics", &[("Authorization", &bearer)]);
        text.contains(&format!("pmdaemon_instance_resident_bytes{labels}"))
            .then_some(text)
    });
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for line in [
        format!("pmdaemon_instance_up{labels} 1"),
        r#"pmdaemon_instance_state{name="nap",id="0",instance="0",state="online"} 1"#.to_string(),
        format!("pmdaemon_instance_restarts_total{labels} 0"),
        format!("pmdaemon_instance_port{labels} {app_port}"),
        "pmdaemon_apps 1".to_string(),
        "# TYPE pmdaemon_daemon_resident_bytes gauge".to_string(),
    ] {
        assert!(text.contains(&line), "{line} missing in\n{text}");
    }
    for family in [
        "pmdaemon_instance_uptime_seconds{",
        "pmdaemon_daemon_cpu_seconds_total ",
        "pmdaemon_daemon_open_fds ",
    ] {
        assert!(text.contains(family), "{family} missing in\n{text}");
    }
    daemon.pmd_ok(&["delete", "all"]);
}

/// A log line of a StreamLogsResponse whose text is `line-go` (proto3
/// `bytes` are base64).
fn is_line_go(line: &serde_json::Value) -> bool {
    use base64::Engine;
    line["data"]
        .as_str()
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .is_some_and(|text| text.trim_ascii_end() == b"line-go")
}

/// `limits.idle_timeout` (config.yaml) closes an HTTP/1.1 connection with
/// no request in flight, whether it made a request and went quiet or never
/// sent a byte (the header read timeout is set far beyond the test, so it
/// is not what closes them); meanwhile an NDJSON and a WebSocket log
/// stream of a quiet app, open since before, are not idle and keep
/// receiving.
#[test]
fn idle_connections_are_closed_streams_are_not() {
    use std::io::{Read, Write};
    let port = free_ports(1);
    let mut daemon = TestDaemon::new_stopped();
    std::fs::write(
        daemon.home().join("config.yaml"),
        format!(
            "listen: ['127.0.0.1:{port}']\nlimits:\n  idle_timeout: 1s\n  header_read_timeout: 10m\n"
        ),
    )
    .unwrap();
    daemon.spawn_daemon();
    let admin = admin_token(daemon.home());
    let dir = daemon.work().display().to_string();
    // Writes nothing until the test creates `go`, then a line every 100 ms.
    daemon.write_script(
        "quiet.sh",
        &format!(
            "while [ ! -f {dir}/go ]; do sleep 0.1; done\nwhile :; do echo line-go; sleep 0.1; done"
        ),
    );
    daemon.pmd_ok(&["start", "quiet.sh", "--name", "quiet"]);
    daemon.wait_online("quiet");
    let path = "/v1/logs?target=quiet&follow=true";
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rest = Rest::new(port, Some(&admin));
    let bearer = format!("bearer.{admin}");
    let (mut lines, mut socket) = runtime.block_on(async {
        let (status, lines) = rest.stream("GET", path, None).await;
        assert_eq!(status, 200);
        let (socket, _) = websocket(port, path, &["pmdaemon.v1", &bearer])
            .await
            .expect("WebSocket");
        (lines, socket)
    });

    let mut asked = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    asked
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while !answer.ends_with(b"\r\n\r\nok") {
        asked.set_read_timeout(Some(WAIT.get())).unwrap();
        let n = asked.read(&mut buf).expect("the /healthz answer");
        assert!(n > 0, "closed before the answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let rest_of = read_until_closed(&mut asked, "a keep-alive connection idle after its request");
    assert!(rest_of.is_empty(), "{}", String::from_utf8_lossy(&rest_of));
    read_until_closed(&mut silent, "a connection that never sent a byte");

    // The streams, quiet for longer than the idle timeout, still deliver.
    std::fs::write(daemon.work().join("go"), "").unwrap();
    runtime.block_on(async {
        lines
            .until("a line on the NDJSON stream", |l| {
                assert!(l.get("error").is_none(), "{l}");
                let lines = l["result"]["lines"].as_array()?;
                lines.iter().any(is_line_go).then_some(())
            })
            .await;
        loop {
            let message = ws_next(&mut socket)
                .await
                .expect("the WebSocket stays open");
            assert!(message.get("error").is_none(), "{message}");
            let found = message["lines"]
                .as_array()
                .is_some_and(|l| l.iter().any(is_line_go));
            if found {
                break;
            }
        }
    });
    drop((lines, socket));
    daemon.pmd_ok(&["delete", "all"]);
}
