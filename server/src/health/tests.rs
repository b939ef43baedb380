//! Specs of health checks: validation and `{port}` resolution, then each
//! probe against real sockets and processes (test servers on 127.0.0.1
//! port 0, scripts in temp dirs), then the prober's schedule and shutdown.
//! Durations are short but assertions only bound them loosely.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;
use pmdaemon_proto::health::{MAX_DURATION_MS, MAX_RETRIES, MIN_INTERVAL_MS};

fn http(url: &str) -> Probe {
    Probe::Http {
        url: url.into(),
        expected_status: None,
    }
}

fn tcp(target: &str) -> Probe {
    Probe::Tcp {
        target: target.into(),
    }
}

fn script(command: &str) -> Probe {
    Probe::Script {
        command: command.into(),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `probe` with the default timing.
fn check_of(probe: Probe) -> HealthCheck {
    HealthCheck::new(probe)
}

fn validation_error(check: HealthCheck) -> String {
    check.validate().expect_err("should be refused")
}

// ---------------------------------------------------------------- config

/// Every documented form of a probe is accepted with the default timing.
#[test]
fn valid_checks() {
    for probe in [
        http("http://127.0.0.1:3000/health"),
        http("http://localhost:{port}/health?deep=1"),
        http("HTTP://example.com"),
        http("http://[::1]:{port}/"),
        http("http://app.internal/ready#ignored"),
        http("http://127.0.0.1:{port}/health/{port}"),
        Probe::Http {
            url: "http://127.0.0.1:8080/".into(),
            expected_status: Some(204),
        },
        tcp("127.0.0.1:{port}"),
        tcp("localhost:5432"),
        tcp("[::1]:6379"),
        script("test -f /tmp/ready"),
    ] {
        check_of(probe.clone())
            .validate()
            .unwrap_or_else(|e| panic!("{probe} refused: {e}"));
    }
    assert_eq!(check_of(tcp("h:1")).interval_ms, DEFAULT_INTERVAL_MS);
}

/// Bad probes are refused with a message that names the field and says
/// what to write instead.
#[test]
fn invalid_probes_say_why() {
    let cases: &[(Probe, &str)] = &[
        (
            http("https://127.0.0.1/"),
            "not supported yet; use a tcp check or a script with curl",
        ),
        (http("ftp://127.0.0.1/"), "must start with http://"),
        (http("127.0.0.1:3000/health"), "must start with http://"),
        (http("http://127.0.0.1:3000/a b"), "whitespace"),
        (http("http://127.0.0.1:3000/\r\nX: y"), "whitespace"),
        (http("http:///health"), "host is missing"),
        (http("http://{port}/health"), "not in the host"),
        (http("http://127.0.0.1:port/"), "not a port"),
        (http("http://127.0.0.1:0/"), "port 0"),
        (http("http://127.0.0.1:70000/"), "not a port"),
        (http("http://127.0.0.1:/"), "port after ':' is missing"),
        (http("http://::1:80/"), "needs brackets"),
        (http("http://[::1/"), "not closed"),
        (http("http://user:pw@host/"), "credentials"),
        (
            Probe::Http {
                url: "http://h/".into(),
                expected_status: Some(42),
            },
            "expected_status: 42",
        ),
        (tcp("127.0.0.1"), "port is missing"),
        (tcp("127.0.0.1:{prt}"), "not a port"),
        (tcp(":80"), "host is missing"),
        (tcp("bad host:80"), "whitespace"),
        (script("   "), "script is empty"),
        (script("a\0b"), "NUL"),
    ];
    for (probe, expected) in cases {
        let error = validation_error(check_of(probe.clone()));
        assert!(
            error.contains(expected),
            "{probe}: {error:?} should mention {expected:?}"
        );
    }
    let error = validation_error(check_of(http("https://h/")));
    assert!(error.starts_with("http \"https://h/\""), "{error}");
}

/// Timing bounds: 100 ms ..= 24 h, timeout within the interval, retries
/// 1..=100.
#[test]
fn invalid_timing_says_why() {
    let base = check_of(tcp("h:1"));
    let cases = [
        (
            HealthCheck {
                interval_ms: 50,
                timeout_ms: 50,
                ..base.clone()
            },
            "interval: 50ms is below the 100ms minimum",
        ),
        (
            HealthCheck {
                timeout_ms: 10,
                ..base.clone()
            },
            "timeout: 10ms is below",
        ),
        (
            HealthCheck {
                interval_ms: MAX_DURATION_MS + 1,
                ..base.clone()
            },
            "above the 24h maximum",
        ),
        (
            HealthCheck {
                interval_ms: 1_000,
                timeout_ms: 2_500,
                ..base.clone()
            },
            "timeout (2.5s) is longer than interval (1s)",
        ),
        (
            HealthCheck {
                retries: 0,
                ..base.clone()
            },
            "retries: 0 is outside 1 ..= 100",
        ),
        (
            HealthCheck {
                retries: 101,
                ..base.clone()
            },
            "retries: 101",
        ),
        (
            HealthCheck {
                start_period_ms: MAX_DURATION_MS + 1,
                ..base.clone()
            },
            "start_period",
        ),
    ];
    for (check, expected) in cases {
        let error = validation_error(check);
        assert!(
            error.contains(expected),
            "{error:?} should mention {expected:?}"
        );
    }
    // The edges themselves are fine.
    HealthCheck {
        interval_ms: MIN_INTERVAL_MS,
        timeout_ms: MIN_INTERVAL_MS,
        retries: MAX_RETRIES,
        start_period_ms: MAX_DURATION_MS,
        ..base
    }
    .validate()
    .unwrap();
}

/// `{port}` becomes the instance's port in URLs and TCP targets, so one
/// check serves every instance; without a port it is an error that says
/// so; scripts are left alone (they read `$PORT`).
#[test]
fn port_placeholder_is_resolved() {
    assert_eq!(
        resolve(&http("http://127.0.0.1:{port}/h?p={port}"), Some(3001)).unwrap(),
        http("http://127.0.0.1:3001/h?p=3001")
    );
    assert_eq!(
        resolve(&tcp("localhost:{port}"), Some(3002)).unwrap(),
        tcp("localhost:3002")
    );
    let expecting = Probe::Http {
        url: "http://h:{port}/".into(),
        expected_status: Some(204),
    };
    assert_eq!(
        resolve(&expecting, Some(1)).unwrap(),
        Probe::Http {
            url: "http://h:1/".into(),
            expected_status: Some(204),
        }
    );
    let error = resolve(&tcp("localhost:{port}"), None).unwrap_err();
    assert!(error.contains("has no port"), "{error}");
    assert_eq!(resolve(&tcp("h:80"), None).unwrap(), tcp("h:80"));
    let s = script("curl -f localhost:{port}");
    assert_eq!(resolve(&s, Some(5)).unwrap(), s);
    // A resolved template is a valid check.
    check_of(resolve(&http("http://[::1]:{port}/x"), Some(65535)).unwrap())
        .validate()
        .unwrap();
}

/// The persisted form is plain JSON, expected_status omitted when unset.
#[test]
fn serde_round_trip() {
    let check = HealthCheck {
        retries: 5,
        ..check_of(http("http://127.0.0.1:{port}/health"))
    };
    let json = serde_json::to_value(&check).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "probe": {"http": {"url": "http://127.0.0.1:{port}/health"}},
            "interval_ms": 5000, "timeout_ms": 2000, "retries": 5, "start_period_ms": 0
        })
    );
    assert_eq!(serde_json::from_value::<HealthCheck>(json).unwrap(), check);
    for probe in [tcp("h:1"), script("true")] {
        let check = check_of(probe);
        let text = serde_json::to_string(&check).unwrap();
        assert_eq!(serde_json::from_str::<HealthCheck>(&text).unwrap(), check);
    }
}

#[test]
fn durations_read_like_people_write_them() {
    for (ms, text) in [
        (0, "0s"),
        (100, "100ms"),
        (2_000, "2s"),
        (2_500, "2.5s"),
        (2_050, "2.05s"),
        (300_000, "5min"),
        (MAX_DURATION_MS, "24h"),
    ] {
        assert_eq!(human_ms(ms), text);
    }
}

// ---------------------------------------------------------------- probes

/// A one-shot HTTP server on 127.0.0.1: answers every connection with
/// `response` (`None`: accepts and never answers) and sends each request
/// head it read on the returned channel.
async fn http_server(
    response: Option<&'static str>,
) -> (
    u16,
    mpsc::UnboundedReceiver<String>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let Some(response) = response else {
                held.push(stream); // silent: keep it open
                continue;
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    (port, rx, task)
}

const OK_200: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const UNAVAILABLE_503: &str = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown";
const NO_CONTENT_204: &str = "HTTP/1.1 204 No Content\r\n\r\n";

async fn once(probe: &Probe, timeout: Duration) -> Result<(), String> {
    probe_once(probe, timeout, &[], Path::new("/")).await
}

/// A port nothing listens on (bound by the OS, then released).
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// 2xx is healthy; the request is a plain GET of the path and query with
/// the URL's authority as Host.
#[tokio::test]
async fn http_2xx_is_healthy() {
    let (port, mut requests, _server) = http_server(Some(OK_200)).await;
    let template = http("http://127.0.0.1:{port}/health?deep=1");
    let probe = resolve(&template, Some(port)).unwrap();
    once(&probe, ms(2_000)).await.unwrap();
    let head = requests.recv().await.unwrap();
    assert!(
        head.starts_with("GET /health?deep=1 HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
        "{head}"
    );
    assert!(head.contains("\r\nConnection: close\r\n"), "{head}");

    // No path at all asks for `/`.
    once(&http(&format!("http://127.0.0.1:{port}")), ms(2_000))
        .await
        .unwrap();
    let head = requests.recv().await.unwrap();
    assert!(head.starts_with("GET / HTTP/1.1\r\n"), "{head}");
}

/// Any other status is a failure that names it and the URL.
#[tokio::test]
async fn http_503_is_unhealthy() {
    let (port, _requests, _server) = http_server(Some(UNAVAILABLE_503)).await;
    let url = format!("http://127.0.0.1:{port}/health");
    let error = once(&http(&url), ms(2_000)).await.unwrap_err();
    assert_eq!(error, format!("HTTP 503 from {url}"));
}

/// With expected_status, exactly that status is healthy (even a non-2xx),
/// and a plain 200 is not.
#[tokio::test]
async fn http_expected_status_is_honoured() {
    let (port, _r, _s) = http_server(Some(NO_CONTENT_204)).await;
    let expect = |status| Probe::Http {
        url: format!("http://127.0.0.1:{port}/"),
        expected_status: Some(status),
    };
    once(&expect(204), ms(2_000)).await.unwrap();
    let error = once(&expect(200), ms(2_000)).await.unwrap_err();
    assert!(
        error.contains("HTTP 204") && error.contains("expected 200"),
        "{error}"
    );

    let (port, _r, _s) = http_server(Some(UNAVAILABLE_503)).await;
    let probe = Probe::Http {
        url: format!("http://127.0.0.1:{port}/"),
        expected_status: Some(503),
    };
    once(&probe, ms(2_000)).await.unwrap();
}

/// A server that accepts but never answers fails at the timeout, not
/// later.
#[tokio::test]
async fn http_silent_server_times_out() {
    let (port, _r, _s) = http_server(None).await;
    let started = Instant::now();
    let error = once(&http(&format!("http://127.0.0.1:{port}/")), ms(300))
        .await
        .unwrap_err();
    assert_eq!(error, "timed out after 300ms");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Nothing listening: refused, at once.
#[tokio::test]
async fn http_connection_refused() {
    let port = closed_port().await;
    let error = once(&http(&format!("http://127.0.0.1:{port}/")), ms(2_000))
        .await
        .unwrap_err();
    assert!(error.contains("connection refused"), "{error}");
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
}

/// Something that is not HTTP, or closes without a word, is unhealthy
/// with a reason that says so.
#[tokio::test]
async fn http_garbage_is_unhealthy() {
    let (port, _r, _s) = http_server(Some("SSH-2.0-OpenSSH_9.6\r\n")).await;
    let error = once(&http(&format!("http://127.0.0.1:{port}/")), ms(2_000))
        .await
        .unwrap_err();
    assert!(error.contains("not an HTTP response"), "{error}");
    assert!(error.contains("SSH-2.0"), "{error}");

    let (port, _r, _s) = http_server(Some("")).await;
    let error = once(&http(&format!("http://127.0.0.1:{port}/")), ms(2_000))
        .await
        .unwrap_err();
    assert!(error.contains("closed without an HTTP response"), "{error}");
}

/// `localhost` reaches an app listening on 127.0.0.1 only, whatever
/// address the resolver lists first.
#[tokio::test]
async fn http_localhost_finds_ipv4_listener() {
    let (port, _r, _s) = http_server(Some(OK_200)).await;
    once(&http(&format!("http://localhost:{port}/")), ms(2_000))
        .await
        .unwrap();
}

/// An unresolved template is refused at probe time rather than sent.
#[tokio::test]
async fn unresolved_placeholder_is_an_error() {
    let error = once(&tcp("127.0.0.1:{port}"), ms(500)).await.unwrap_err();
    assert!(error.contains("not resolved"), "{error}");
}

/// TCP: a listener is healthy, a closed port is refused; `{port}` works.
#[tokio::test]
async fn tcp_connect_and_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = resolve(&tcp("127.0.0.1:{port}"), Some(port)).unwrap();
    once(&probe, ms(2_000)).await.unwrap();
    once(&tcp(&format!("localhost:{port}")), ms(2_000))
        .await
        .unwrap();
    drop(listener);
    let error = once(&probe, ms(2_000)).await.unwrap_err();
    assert!(error.contains("connection refused"), "{error}");
}

/// IPv6 literals work in brackets, for TCP and HTTP (skipped on a machine
/// without IPv6 loopback).
#[tokio::test]
async fn ipv6_loopback() {
    let Ok(listener) = TcpListener::bind("[::1]:0").await else {
        return;
    };
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let response = if head.contains(&format!("\r\nHost: [::1]:{port}\r\n")) {
                OK_200
            } else {
                UNAVAILABLE_503
            };
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    once(&tcp(&format!("[::1]:{port}")), ms(2_000))
        .await
        .unwrap();
    let probe = resolve(&http("http://[::1]:{port}/health"), Some(port)).unwrap();
    once(&probe, ms(2_000)).await.unwrap();
    server.abort();
}

/// An unknown host fails with a resolver reason.
#[tokio::test]
async fn tcp_unknown_host() {
    let error = once(&tcp("no-such-host.invalid:80"), ms(5_000))
        .await
        .unwrap_err();
    assert!(
        error.contains("cannot resolve no-such-host.invalid") || error.starts_with("timed out"),
        "{error}"
    );
}

/// Whether `pid` is dead: gone, or a zombie waiting for its (new) parent.
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rfind(')')
            .and_then(|at| stat[at + 1..].split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// Waits (up to 5 s) for `condition`.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(ms(20)).await;
    }
}

/// Pids the script wrote to `file`, one a line, once there are `count`.
async fn read_pids(file: &Path, count: usize) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids: Vec<u32> = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.len() >= count {
            return pids;
        }
        assert!(
            Instant::now() < deadline,
            "the script did not write its pids"
        );
        tokio::time::sleep(ms(20)).await;
    }
}

/// Exit 0 is healthy; any other exit is a failure quoting the last line of
/// stderr (else stdout).
#[tokio::test]
async fn script_exit_status() {
    once(&script("true"), ms(2_000)).await.unwrap();
    let error = once(
        &script("echo starting; echo 'db unreachable' >&2; echo; exit 1"),
        ms(2_000),
    )
    .await
    .unwrap_err();
    assert_eq!(error, "script exited with code 1: db unreachable");
    let error = once(&script("echo first; echo 'not ready'; exit 3"), ms(2_000))
        .await
        .unwrap_err();
    assert_eq!(error, "script exited with code 3: not ready");
    let error = once(&script("exit 7"), ms(2_000)).await.unwrap_err();
    assert_eq!(error, "script exited with code 7");
    let error = once(&script("kill -TERM $$"), ms(2_000)).await.unwrap_err();
    assert_eq!(error, "script was killed by SIGTERM");
}

/// The quoted line is bounded, and a script writing a lot neither blocks
/// on its pipe nor grows the daemon.
#[tokio::test]
async fn script_output_is_bounded() {
    let error = once(
        &script("yes line | head -c 1000000; printf '%0500d\\n' 0 >&2; exit 1"),
        ms(5_000),
    )
    .await
    .unwrap_err();
    let quoted = error.strip_prefix("script exited with code 1: ").unwrap();
    assert!(quoted.len() <= 200 + '…'.len_utf8(), "{}", quoted.len());
    assert!(
        quoted.ends_with('…') && quoted.starts_with("000"),
        "{quoted}"
    );
}

/// The script runs with the instance's env (on top of the daemon's) and
/// in its cwd.
#[tokio::test]
async fn script_sees_env_and_cwd() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().canonicalize().unwrap();
    let env = vec![("X".to_string(), "1".to_string())];
    let check = format!(
        "test \"$X\" = 1 && test \"$(pwd -P)\" = '{}' && test -n \"$PATH\"",
        cwd.display()
    );
    probe_once(&script(&check), ms(2_000), &env, &cwd)
        .await
        .unwrap();
    let error = probe_once(&script(&check), ms(2_000), &[], &cwd)
        .await
        .unwrap_err();
    assert_eq!(error, "script exited with code 1");
    let error = probe_once(&script("true"), ms(2_000), &[], &cwd.join("missing"))
        .await
        .unwrap_err();
    assert!(error.starts_with("cannot run the script in "), "{error}");
}

/// A script past its timeout is killed with everything it started (its
/// process group), and the failure says it timed out.
#[tokio::test]
async fn script_timeout_kills_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let command = format!(
        "echo $$ > '{p}'; sleep 30 & echo $! >> '{p}'; echo waiting for db; wait",
        p = pids.display()
    );
    let started = Instant::now();
    let error = once(&script(&command), ms(500)).await.unwrap_err();
    assert_eq!(error, "timed out after 500ms: waiting for db");
    assert!(started.elapsed() < Duration::from_secs(5));
    let pids = read_pids(&pids, 2).await;
    assert_eq!(pids.len(), 2);
    // The shell is our child: reaped, not even a zombie.
    assert!(!Path::new(&format!("/proc/{}", pids[0])).exists());
    eventually("the background child is dead", || dead(pids[1])).await;
}

/// A script that exits 0 but leaves a background process holding its
/// stdout is healthy at once, and the leftover is killed.
#[tokio::test]
async fn script_leftovers_are_killed_on_exit() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let command = format!("sleep 30 & echo $! > '{}'; exit 0", pids.display());
    let started = Instant::now();
    once(&script(&command), ms(10_000)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let pids = read_pids(&pids, 1).await;
    eventually("the leftover is dead", || dead(pids[0])).await;
}

// ---------------------------------------------------------------- prober

fn timing(probe: Probe, interval_ms: u64, timeout_ms: u64) -> HealthCheck {
    HealthCheck {
        interval_ms,
        timeout_ms,
        ..HealthCheck::new(probe)
    }
}

/// Results arrive one per interval, each probe starting no sooner than an
/// interval after the previous one ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prober_reports_each_interval() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let check = timing(tcp("127.0.0.1:{port}"), 150, 150);
    let probe = resolve(&check.probe, Some(port)).unwrap();
    let (tx, mut rx) = mpsc::channel(1);
    let _handle = spawn_prober(check, probe, Vec::new(), "/".into(), tx);
    let mut last: Option<ProbeResult> = None;
    for _ in 0..4 {
        let result = rx.recv().await.unwrap();
        assert!(result.ok, "{result:?}");
        assert_eq!(result.error, None);
        if let Some(last) = last {
            let gap = result.at_ms - last.at_ms;
            let min = 150 + i64::try_from(last.took.as_millis()).unwrap();
            assert!(gap >= min - 2, "probes {gap} ms apart, expected >= {min}");
        }
        last = Some(result);
    }
    drop(listener);
    // Failures are reported too, with their reason.
    let result = loop {
        let r = rx.recv().await.unwrap();
        if !r.ok {
            break r;
        }
    };
    assert!(result.error.unwrap().contains("connection refused"));
}

/// A probe slower than the interval never runs twice at once: the next
/// starts an interval after the previous one ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prober_never_overlaps() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // mkdir is atomic: a second concurrent run cannot take the lock.
    let command = format!(
        "mkdir '{d}/running' || echo overlap >> '{d}/overlaps'; echo run >> '{d}/runs'; \
         sleep 0.3; rmdir '{d}/running'"
    );
    // Built directly: validation would refuse a timeout above the interval.
    let check = timing(script(&command), 100, 5_000);
    let (tx, mut rx) = mpsc::channel(8);
    let handle = spawn_prober(check.clone(), check.probe, Vec::new(), "/".into(), tx);
    for _ in 0..4 {
        let result = rx.recv().await.unwrap();
        assert!(result.ok, "{result:?}");
        assert!(result.took >= ms(300), "{result:?}");
    }
    handle.stop().await;
    assert!(!dir.path().join("overlaps").exists(), "two runs overlapped");
    let runs = std::fs::read_to_string(dir.path().join("runs")).unwrap();
    assert!(runs.lines().count() >= 4);
}

/// Stopping the prober kills a script probe in flight with its group, and
/// no more results come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prober_stop_kills_running_script() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let command = format!(
        "echo $$ > '{p}'; sleep 30 & echo $! >> '{p}'; wait",
        p = pids.display()
    );
    let check = timing(script(&command), 60_000, 60_000);
    let (tx, mut rx) = mpsc::channel(1);
    let handle = spawn_prober(check.clone(), check.probe, Vec::new(), "/".into(), tx);
    let pids = read_pids(&pids, 2).await;
    handle.stop().await;
    // The sender went with the task: the channel is closed, empty.
    assert_eq!(rx.recv().await, None);
    eventually("the script's shell is reaped", || {
        !Path::new(&format!("/proc/{}", pids[0])).exists()
    })
    .await;
    eventually("the script's child is dead", || dead(pids[1])).await;
}

/// Merely dropping the handle does the same (the supervisor drops it with
/// the run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prober_drop_kills_running_script() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let command = format!(
        "echo $$ > '{p}'; sleep 30 & echo $! >> '{p}'; wait",
        p = pids.display()
    );
    let check = timing(script(&command), 60_000, 60_000);
    let (tx, mut rx) = mpsc::channel(1);
    let handle = spawn_prober(check.clone(), check.probe, Vec::new(), "/".into(), tx);
    let pids = read_pids(&pids, 2).await;
    drop(handle);
    assert_eq!(rx.recv().await, None);
    for pid in pids {
        eventually("the script's processes are dead", || dead(pid)).await;
    }
}

/// Dropping the receiver ends the prober, even mid-probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prober_ends_when_receiver_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let command = format!("echo $$ > '{}'; exec sleep 30", pids.display());
    let check = timing(script(&command), 60_000, 60_000);
    let (tx, rx) = mpsc::channel(1);
    let handle = spawn_prober(check.clone(), check.probe, Vec::new(), "/".into(), tx);
    let pids = read_pids(&pids, 1).await;
    drop(rx);
    eventually("the prober ended", || handle.is_finished()).await;
    eventually("the script is dead", || dead(pids[0])).await;
}
