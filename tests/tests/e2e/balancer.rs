//! The load balancer (`pmd start app -i N --port P --balance`): the daemon
//! listens on the public port P and hands each TCP connection to an
//! instance that is ready, each instance listening on its own private port
//! (`$PORT`). Real HTTP servers ([`HTTP_SERVER`], whose answer names the
//! instance, its pid and its private port) reached through the public port
//! by real TCP clients, in a loop while the app is reloaded, restarted or
//! scaled; refusals (a taken port, another app's port, no `--port`); a
//! stopped app's closed port; the port across a daemon restart; the PROXY
//! protocol header; least-connections; PM2 files balanced by default; what
//! `list`, `describe` and `events` say.
//!
//! Most tests give the instances private ports from their own block
//! (`--balance-ports auto:...` next to the public port from
//! [`free_ports`]), so that tests running in parallel never race for the
//! default range; the first test and the ecosystem one use the default,
//! one at a time ([`DEFAULT_RANGE`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use pmdaemon_tests::*;
use serde_json::Value;

use crate::said;

/// Held by the tests whose daemons give out private ports from the default
/// range (auto:20000-29999): two daemons of parallel tests would each find
/// 20000 free and give it out at once (independent daemons on one host do
/// not see each other's assignments until a port is bound).
static DEFAULT_RANGE: Mutex<()> = Mutex::new(());

/// The request every client here sends (HTTP/1.0: one request per
/// connection, closed after the answer).
const REQUEST: &[u8] = b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";

/// A public port and a block of private ports next to it, for one test.
struct Ports {
    public: u16,
    /// `auto:FIRST-LAST` for `--balance-ports`.
    private: String,
    first_private: u16,
    last_private: u16,
}

/// A public port and eleven private ones, all free now.
fn ports() -> Ports {
    let base = free_ports(12);
    Ports {
        public: base,
        private: format!("auto:{}-{}", base + 1, base + 11),
        first_private: base + 1,
        last_private: base + 11,
    }
}

/// The first of `count` free ports, all outside the default range of the
/// instances' private ports (auto:20000-29999), which may not hold the
/// public port.
fn ports_outside_default_range(count: u16) -> u16 {
    loop {
        let base = free_ports(count);
        if base + count <= 20000 || base >= 30000 {
            return base;
        }
    }
}

/// The `balancer` object of a list/describe row (panics when it is null:
/// the app is not balanced).
fn lb(row: &Value) -> &Value {
    let lb = &row["balancer"];
    assert!(lb.is_object(), "no balancer object: {row:#}");
    lb
}

/// A counter of the `balancer` object.
fn counter(row: &Value, key: &str) -> u64 {
    lb(row)[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number balancer.{key}: {row:#}"))
}

/// The `id` of a row.
fn id_of(row: &Value) -> u64 {
    row["id"].as_u64().expect("an id")
}

/// Waits until app `name` has `count` instances, every one online and in
/// the pool, the pool saying `count` are ready; returns the rows by
/// instance index.
fn wait_pool(d: &TestDaemon, name: &str, count: usize) -> Vec<Value> {
    wait_for_value(
        &format!("{count} instances of {name} online and in the pool"),
        WAIT,
        || {
            let rows = d.instances(name);
            let full = rows.len() == count
                && rows.iter().all(|r| {
                    r["status"] == "online"
                        && r["balancer"]["in_pool"] == true
                        && r["balancer"]["ready_instances"] == count
                });
            full.then_some(rows)
        },
    )
}

/// Sends [`REQUEST`] to 127.0.0.1:`port` on a new connection and reads the
/// whole answer; the error says which step failed. Patient (a connection
/// held while no instance is ready waits for one): a slow answer is not a
/// failure here, a refused, reset or empty one is.
fn exchange(port: u16) -> Result<Vec<u8>, String> {
    let timeout = WAIT.times(2).get();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("socket options: {e}"))?;
    stream
        .write_all(REQUEST)
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("read: {e} (after {} bytes)", response.len()))?;
    if response.is_empty() {
        return Err("closed without an answer".into());
    }
    Ok(response)
}

/// The status code and body of an HTTP answer.
fn status_and_body(response: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status: {text:?}"))?;
    Ok((status, body.to_owned()))
}

/// What [`HTTP_SERVER`] answered, from a whole response.
fn reply_of(response: &[u8]) -> Result<HttpReply, String> {
    let (status, body) = status_and_body(response)?;
    if status != 200 {
        return Err(format!("status {status}: {body:?}"));
    }
    let field = |key: &str| {
        body.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
            .ok_or_else(|| format!("no {key} in {body:?}"))
    };
    Ok(HttpReply {
        instance: field("instance")?,
        pid: field("pid")?
            .parse()
            .map_err(|_| format!("pid in {body:?}"))?,
        port: field("port")?
            .parse()
            .map_err(|_| format!("port in {body:?}"))?,
    })
}

/// One request through `port` to an [`HTTP_SERVER`].
fn fetch(port: u16) -> Result<HttpReply, String> {
    reply_of(&exchange(port)?)
}

/// `count` requests through `port`, one after the other; panics on the
/// first that fails.
fn fetch_n(port: u16, count: usize) -> Vec<HttpReply> {
    (0..count)
        .map(|n| fetch(port).unwrap_or_else(|e| panic!("request {n} through {port}: {e}")))
        .collect()
}

/// How many replies came from each pid.
fn by_pid(replies: &[HttpReply]) -> BTreeMap<u32, usize> {
    let mut counts = BTreeMap::new();
    for reply in replies {
        *counts.entry(reply.pid).or_default() += 1;
    }
    counts
}

/// Whether a TCP connection to 127.0.0.1:`port` is refused (ECONNREFUSED);
/// the error otherwise.
fn connect_refused(port: u16) -> Result<(), String> {
    match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(()),
        Err(e) => Err(format!("connect failed, but not refused: {e}")),
        Ok(_) => Err("connected".into()),
    }
}

/// A client that sends requests through a balanced port in a loop, a new
/// connection each, until it is finished (or dropped), keeping every
/// outcome in order.
struct Load {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Result<HttpReply, String>>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Load {
    /// Starts the loop and returns once its first request succeeded.
    fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, outcomes) = (Arc::clone(&stop), Arc::clone(&outcomes));
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let outcome = fetch(port);
                    outcomes
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(outcome);
                }
            })
        };
        let load = Load {
            stop,
            outcomes,
            thread: Some(thread),
        };
        load.wait_reply("a first answer to the request loop", |_| true);
        load
    }

    fn outcomes(&self) -> Vec<Result<HttpReply, String>> {
        self.outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until the loop got a reply that satisfies `pred`.
    fn wait_reply(&self, what: &str, pred: impl Fn(&HttpReply) -> bool) {
        wait_for(what, WAIT, || {
            self.outcomes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .flatten()
                .any(&pred)
        });
    }

    /// How many requests ended so far.
    fn count(&self) -> usize {
        self.outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Stops the loop (after its request in flight) and returns every
    /// outcome.
    fn finish(mut self) -> Vec<Result<HttpReply, String>> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the request loop panicked");
        }
        self.outcomes()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Asserts that no request of `outcomes` failed, listing the failures.
fn assert_no_failure(what: &str, outcomes: &[Result<HttpReply, String>]) {
    let failed: Vec<(usize, &String)> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(n, o)| o.as_ref().err().map(|e| (n, e)))
        .collect();
    assert!(
        failed.is_empty(),
        "{what}: {} of {} requests failed: {failed:?}",
        failed.len(),
        outcomes.len()
    );
}

/// Starts `script` as `name`, `count` instances balanced on `p.public` with
/// private ports from `p.private`, plus `extra` flags; waits until every
/// instance is in the pool and returns the rows.
fn start_balanced(
    d: &TestDaemon,
    script: &str,
    name: &str,
    count: usize,
    p: &Ports,
    extra: &[&str],
) -> Vec<Value> {
    let count_text = count.to_string();
    let public = p.public.to_string();
    let mut args = vec![
        "start",
        script,
        "--name",
        name,
        "-i",
        &count_text,
        "--port",
        &public,
        "--balance",
        "--balance-ports",
        &p.private,
    ];
    args.extend_from_slice(extra);
    d.pmd_ok(&args);
    wait_pool(d, name, count)
}

/// Four instances behind one port, each on its own private port from the
/// default range (auto:20000-29999) in its `PORT`: `list -o json` says the
/// public port and each private one; eight requests through the public
/// port go round-robin, two to each instance, each answered on the
/// instance's own private port.
#[test]
fn four_instances_share_one_public_port_round_robin() {
    let _default_range = DEFAULT_RANGE.lock().unwrap_or_else(PoisonError::into_inner);
    let d = TestDaemon::start();
    let public = ports_outside_default_range(1);
    let server = d.write_http_server("server.py");
    d.pmd_ok(&[
        "start",
        arg(&server),
        "--name",
        "web",
        "-i",
        "4",
        "--port",
        &public.to_string(),
        "--balance",
    ]);
    let rows = wait_pool(&d, "web", 4);
    let mut private = BTreeSet::new();
    for row in &rows {
        let port = port_of(row).unwrap_or_else(|| panic!("no private port: {row:#}"));
        assert!((20000..=29999).contains(&port), "{row:#}");
        private.insert(port);
        assert_eq!(row["public_port"], public, "{row:#}");
        assert_eq!(lb(row)["public_port"], public, "{row:#}");
        assert_eq!(lb(row)["listening"], true, "{row:#}");
        assert_eq!(lb(row)["strategy"], "round-robin", "{row:#}");
        let pid = pid_of(row).unwrap();
        assert_eq!(env_of(pid)["PORT"], port.to_string(), "pid {pid}");
    }
    assert_eq!(private.len(), 4, "instances share a port: {rows:#?}");
    assert!(!private.contains(&public));

    let replies = fetch_n(public, 8);
    let pids: BTreeSet<u32> = pids_of(&rows).into_iter().collect();
    for reply in &replies {
        let row = rows
            .iter()
            .find(|r| pid_of(r) == Some(reply.pid))
            .unwrap_or_else(|| panic!("{reply:?} is from no instance of {pids:?}"));
        assert_eq!(Some(reply.port), port_of(row), "{reply:?} vs {row:#}");
        assert_eq!(reply.instance, row["instance"].to_string(), "{reply:?}");
    }
    let counts = by_pid(&replies);
    assert_eq!(
        counts.keys().copied().collect::<BTreeSet<_>>(),
        pids,
        "not every instance got traffic: {replies:?}"
    );
    assert!(
        counts.values().all(|&n| n == 2),
        "not round-robin: {counts:?}"
    );
}

/// An instance whose health check fails leaves the pool and gets no
/// traffic: three HTTP instances checked on their own private port
/// (`{port}`), instance 1 failing once its flag file exists. After its
/// retries it is out of the pool (liveness replaces it; its new run fails
/// its check too and stays out), and requests through the public port all
/// reach the others: every answer is a 200 (instance 1 answers 500) and
/// its connection count does not move. Once the flag is gone it passes,
/// rejoins and gets traffic again.
#[test]
fn an_instance_failing_its_health_check_gets_no_traffic() {
    let d = TestDaemon::start();
    let p = ports();
    let server = d.write_health_server("health.py");
    let rows = start_balanced(
        &d,
        arg(&server),
        "checked",
        3,
        &p,
        &[
            "--env",
            "FAIL_FLAG=fail-{i}",
            "--health-check-url",
            "http://127.0.0.1:{port}/",
            "--health-interval",
            "200ms",
            "--health-retries",
            "2",
        ],
    );
    let sick_id = id_of(&rows[1]);
    let sick_pid = pid_of(&rows[1]).unwrap();

    d.write_file("fail-1", "");
    let out = wait_for_value("instance 1 replaced and out of the pool", WAIT, || {
        let rows = d.instances("checked");
        let sick = &rows[1];
        (sick["restarts"].as_u64() >= Some(1)
            && pid_of(sick) != Some(sick_pid)
            && sick["balancer"]["in_pool"] == false
            && sick["balancer"]["ready_instances"] == 2)
            .then_some(rows)
    });
    assert!(out[0]["balancer"]["in_pool"] == true, "{:#}", out[0]);
    assert!(out[2]["balancer"]["in_pool"] == true, "{:#}", out[2]);
    let before: Vec<u64> = out
        .iter()
        .map(|r| counter(r, "total_connections"))
        .collect();

    let requests = 12;
    for n in 0..requests {
        let response = exchange(p.public).unwrap_or_else(|e| panic!("request {n}: {e}"));
        let (status, body) = status_and_body(&response).unwrap();
        assert_eq!(
            (status, body.as_str()),
            (200, "ok"),
            "request {n} reached the failing instance"
        );
    }
    let after = d.instances("checked");
    assert_eq!(id_of(&after[1]), sick_id);
    let totals: Vec<u64> = after
        .iter()
        .map(|r| counter(r, "total_connections"))
        .collect();
    assert_eq!(
        totals[1], before[1],
        "the instance out of the pool got connections: {after:#?}"
    );
    assert_eq!(
        totals[0] + totals[2],
        before[0] + before[2] + requests,
        "{after:#?}"
    );
    assert!(totals[0] > before[0] && totals[2] > before[2], "{after:#?}");

    std::fs::remove_file(d.work().join("fail-1")).unwrap();
    let back = wait_pool(&d, "checked", 3);
    let rejoined = counter(&back[1], "total_connections");
    fetch_n_ok(p.public, 6);
    let again = d.instances("checked");
    assert!(
        counter(&again[1], "total_connections") > rejoined,
        "instance 1 got no traffic after it rejoined: {again:#?}"
    );
}

/// `count` requests through `port` to a [`HEALTH_SERVER`], every one a 200.
fn fetch_n_ok(port: u16, count: usize) {
    for n in 0..count {
        let response = exchange(port).unwrap_or_else(|e| panic!("request {n}: {e}"));
        let (status, _) = status_and_body(&response).unwrap();
        assert_eq!(status, 200, "request {n}");
    }
}

/// A connection through a balanced port that has sent nothing yet, and
/// the instance (id) the balancer gave it: open on that instance until
/// [`Pinned::finish`] sends its request.
struct Pinned {
    stream: TcpStream,
    id: u64,
}

impl Pinned {
    /// Sends the request and reads the answer to the end.
    fn finish(mut self) -> Result<HttpReply, String> {
        self.stream
            .write_all(REQUEST)
            .map_err(|e| format!("write: {e}"))?;
        let mut response = Vec::new();
        self.stream
            .read_to_end(&mut response)
            .map_err(|e| format!("read: {e} (after {} bytes)", response.len()))?;
        reply_of(&response)
    }
}

/// The open connections of a row's instance through the public port.
fn active(row: &Value) -> u64 {
    counter(row, "active_connections")
}

/// Opens `count` connections through `port` to app `name` (no other
/// client about), one at a time, each seen open on its instance before
/// the next; round-robin gives each its own instance.
fn pin(d: &TestDaemon, name: &str, port: u16, count: usize) -> Vec<Pinned> {
    let mut pinned: Vec<Pinned> = Vec::new();
    for open in 1..=count as u64 {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
        stream.set_read_timeout(Some(WAIT.times(2).get())).unwrap();
        let id = wait_for_value(
            &format!("connection {open} open on its instance"),
            WAIT,
            || {
                let rows = d.instances(name);
                if rows.iter().map(active).sum::<u64>() != open {
                    return None;
                }
                rows.iter()
                    .find(|r| active(r) == 1 && pinned.iter().all(|p| p.id != id_of(r)))
                    .map(id_of)
            },
        );
        pinned.push(Pinned { stream, id });
    }
    pinned
}

/// While `change` runs, every pinned connection whose instance starts
/// stopping is finished there, the instance draining it: answered by the
/// instance's old process (`pids` by id), not cut by its stop signal.
/// Returns `change`'s result and the pins of instances that did not stop.
fn drain_pins<T: Send>(
    d: &TestDaemon,
    name: &str,
    mut pinned: Vec<Pinned>,
    stopping: &[u64],
    pids: &BTreeMap<u64, u32>,
    change: impl FnOnce() -> T + Send,
) -> (T, Vec<Pinned>) {
    thread::scope(|scope| {
        let change = scope.spawn(change);
        for _ in stopping {
            let row = wait_for_value("an instance draining its pinned connection", WAIT, || {
                d.instances(name).into_iter().find(|r| {
                    r["status"] == "stopping"
                        && stopping.contains(&id_of(r))
                        && pinned.iter().any(|p| p.id == id_of(r))
                })
            });
            let id = id_of(&row);
            assert_eq!(lb(&row)["in_pool"], false, "draining in the pool: {row:#}");
            let at = pinned
                .iter()
                .position(|p| p.id == id)
                .unwrap_or_else(|| panic!("no pinned connection on id {id}"));
            let reply = pinned.remove(at).finish().unwrap_or_else(|e| {
                panic!("the open connection of the stopping instance {id} was cut: {e}")
            });
            assert_eq!(reply.pid, pids[&id], "id {id}: {reply:?}");
        }
        (change.join().expect("the change panicked"), pinned)
    })
}

/// `pmd reload` of four instances while a client sends request after
/// request (a new connection each) through the public port: not one
/// fails, every instance is replaced (new pids, the old ones gone), and
/// the client reaches every new instance. Each instance drains before its
/// stop: a connection opened on each beforehand and left idle is answered
/// by its old process once that process is stopping.
#[test]
fn reload_under_load_fails_no_request() {
    let d = TestDaemon::start();
    let p = ports();
    let server = d.write_http_server("server.py");
    let before = start_balanced(
        &d,
        arg(&server),
        "rolling",
        4,
        &p,
        &["--drain-timeout", "1m"],
    );
    let old_pids = pids_of(&before);
    let ids: Vec<u64> = before.iter().map(id_of).collect();
    let by_id: BTreeMap<u64, u32> = ids.iter().copied().zip(old_pids.clone()).collect();

    let pinned = pin(&d, "rolling", p.public, 4);
    let load = Load::start(p.public);
    let (out, left) = drain_pins(&d, "rolling", pinned, &ids, &by_id, || {
        d.pmd(&["reload", "rolling"])
    });
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(left.is_empty());
    let after = wait_pool(&d, "rolling", 4);
    let new_pids = pids_of(&after);
    for (index, (old, new)) in old_pids.iter().zip(&new_pids).enumerate() {
        assert_ne!(old, new, "instance {index} was not replaced");
        load.wait_reply(&format!("an answer from new instance {index}"), |r| {
            r.pid == *new
        });
    }
    let outcomes = load.finish();
    assert_no_failure("pmd reload under load", &outcomes);
    for old in &old_pids {
        assert!(!pid_alive(*old), "old instance {old} survived the reload");
    }
}

/// Waits for the file `GATE` (relative to the cwd; when `GATE` is set)
/// before the rest of the script: an app whose next run can be held back
/// until the test lets it listen.
const GATE_WAIT: &str = r#"
import os, time
gate = os.environ.get("GATE", "")
while gate and not os.path.exists(gate):
    time.sleep(0.02)
"#;

/// Writes [`HTTP_SERVER`] behind [`GATE_WAIT`], run by python3.
fn write_gated_server(d: &TestDaemon, file_name: &str) -> std::path::PathBuf {
    d.write_executable(
        file_name,
        &format!("#!{}\n{GATE_WAIT}\n{HTTP_SERVER}", python3().display()),
    )
}

/// A single instance restarted under a request loop: while no instance is
/// ready, new connections are held (seen in `held_connections`), not
/// refused, and they are served by the replacement once it is ready. The
/// replacement waits for a gate file before it listens, so the test sees
/// connections held, then opens the gate: not one request fails.
#[test]
fn a_single_instance_restart_holds_connections_until_the_replacement_is_ready() {
    let d = TestDaemon::start();
    let p = ports();
    let server = write_gated_server(&d, "gated.py");
    d.write_file("open", "");
    let rows = start_balanced(
        &d,
        arg(&server),
        "solo",
        1,
        &p,
        &["--env", "GATE=open", "--hold-timeout", "1m"],
    );
    let old_pid = pid_of(&rows[0]).unwrap();

    let load = Load::start(p.public);
    std::fs::remove_file(d.work().join("open")).unwrap();
    thread::scope(|scope| {
        let restart = scope.spawn(|| d.pmd(&["restart", "solo"]));
        let held = wait_for_value("a connection held for the restarting app", WAIT, || {
            d.instances("solo")
                .pop()
                .filter(|r| r["balancer"]["held_connections"].as_u64() >= Some(1))
        });
        assert_eq!(lb(&held)["in_pool"], false, "{held:#}");
        assert_eq!(lb(&held)["ready_instances"], 0, "{held:#}");
        let during = load.count();
        d.write_file("open", "");
        let out = restart.join().expect("pmd restart panicked");
        assert!(out.status.success(), "{}", describe_output(&out));
        load.wait_reply("an answer from the replacement", |r| r.pid != old_pid);
        assert!(load.count() > during);
    });
    let outcomes = load.finish();
    assert_no_failure("pmd restart of a single instance under load", &outcomes);
    let row = wait_pool(&d, "solo", 1).remove(0);
    assert_ne!(pid_of(&row), Some(old_pid));
    assert!(!pid_alive(old_pid), "the old run survived the restart");
    assert_eq!(lb(&row)["refused_connections"], 0, "{row:#}");
    assert_eq!(lb(&row)["held_connections"], 0, "{row:#}");
}

/// `pmd scale` from four instances to two and back to four under a
/// request loop: not one request fails; the two removed instances drain
/// (a connection left open on each is answered once they are stopping)
/// and go, the two new ones join and get traffic.
#[test]
fn scale_down_and_up_under_load_fails_no_request() {
    let d = TestDaemon::start();
    let p = ports();
    let server = d.write_http_server("server.py");
    let four = start_balanced(
        &d,
        arg(&server),
        "elastic",
        4,
        &p,
        &["--drain-timeout", "1m"],
    );
    let by_id: BTreeMap<u64, u32> = four
        .iter()
        .map(|r| (id_of(r), pid_of(r).unwrap()))
        .collect();
    let removed: Vec<u64> = four[2..].iter().map(id_of).collect();
    let pinned = pin(&d, "elastic", p.public, 4);
    let load = Load::start(p.public);

    let (out, kept) = drain_pins(&d, "elastic", pinned, &removed, &by_id, || {
        d.pmd(&["scale", "elastic", "2"])
    });
    assert!(out.status.success(), "{}", describe_output(&out));
    let two = wait_pool(&d, "elastic", 2);
    assert_eq!(pids_of(&two), pids_of(&four[..2]), "kept instances changed");
    for gone in pids_of(&four[2..]) {
        wait_for(&format!("removed instance {gone} to exit"), WAIT, || {
            !pid_alive(gone)
        });
    }
    for pin in kept {
        let id = pin.id;
        let reply = pin
            .finish()
            .expect("the open connection of a kept instance");
        assert_eq!(reply.pid, by_id[&id], "{reply:?}");
    }
    let served = load.count();
    wait_for("answers after the scale down", WAIT, || {
        load.count() > served + 2
    });

    d.pmd_ok(&["scale", "elastic", "4"]);
    let again = wait_pool(&d, "elastic", 4);
    for row in &again[2..] {
        let pid = pid_of(row).unwrap();
        load.wait_reply(&format!("an answer from new instance {pid}"), |r| {
            r.pid == pid
        });
    }
    let outcomes = load.finish();
    assert_no_failure("pmd scale 2 then 4 under load", &outcomes);
}

/// Refusals, nothing created by any: a public port another process (here
/// this test) listens on, named with its holder; another app's port
/// (its public port, running or stopped, or one of its instances' private
/// ports), named with that app; `--balance` without `--port` or with a
/// range, a usage error (exit 2) naming `--port`.
#[test]
fn public_port_conflicts_are_refused_with_nothing_created() {
    let d = TestDaemon::start();
    let p = ports();
    let server = d.write_http_server("server.py");
    let public = p.public.to_string();

    let held = free_ports(1);
    let _holder = TcpListener::bind((Ipv4Addr::UNSPECIFIED, held)).expect("hold the port");
    let out = d.pmd_code(
        1,
        &[
            "start",
            arg(&server),
            "--name",
            "squatter",
            "-i",
            "2",
            "--port",
            &held.to_string(),
            "--balance",
            "--balance-ports",
            &p.private,
        ],
    );
    let text = said(&out);
    assert!(text.contains(&held.to_string()), "port not named: {text}");
    assert!(
        text.contains(&std::process::id().to_string()),
        "the holder (pid {}) is not named: {text}",
        std::process::id()
    );
    assert!(d.list_json().is_empty(), "{:#?}", d.list_json());
    assert!(d.app_pids().is_empty(), "processes: {:?}", d.app_pids());

    let first = start_balanced(&d, arg(&server), "first", 2, &p, &[]);
    let first_private = port_of(&first[0]).unwrap().to_string();
    let other = free_ports(4);
    let other_private = format!("auto:{}-{}", other, other + 3);
    let second = |port: &str, balanced: bool| {
        let mut args = vec!["start", arg(&server), "--name", "second", "--port", port];
        if balanced {
            args.extend(["-i", "2", "--balance", "--balance-ports", &other_private]);
        }
        let out = d.pmd(&args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "second app on {port} (balanced: {balanced}) not refused\n{}",
            describe_output(&out)
        );
        let text = said(&out);
        assert!(text.contains(port), "port {port} not named: {text}");
        assert!(
            text.contains("\"first\""),
            "second app on {port} (balanced: {balanced}): the app holding it is not named: {text}"
        );
        assert!(d.app("second").is_none(), "the refused app was created");
    };
    second(&public, true);
    second(&public, false);
    second(&first_private, true);
    d.pmd_ok(&["stop", "first"]);
    second(&public, true);
    assert_eq!(d.instances("first").len(), 2);
    assert_eq!(d.list_json().len(), 2, "{:#?}", d.list_json());

    let range = format!("{}-{}", other, other + 1);
    for (port, says) in [(None, "--port"), (Some(range.as_str()), "one public port")] {
        let mut args = vec!["start", arg(&server), "--name", "portless", "-i", "2"];
        if let Some(port) = port {
            args.extend(["--port", port]);
        }
        args.push("--balance");
        let out = d.pmd_code(2, &args);
        let text = said(&out);
        assert!(text.contains(says), "{says:?} not said: {text}");
        assert!(d.app("portless").is_none(), "the refused app was created");
    }
    assert_eq!(d.list_json().len(), 2, "{:#?}", d.list_json());
}

/// A stopped app's public port is closed: right after `pmd stop` a
/// connection is refused (ECONNREFUSED), not accepted and held. A foreign
/// listener that took the port meanwhile makes `pmd start` fail naming the
/// port, the app staying stopped; once it is gone, `pmd start` listens
/// again. After `pmd delete` the port is closed too.
#[test]
fn a_stopped_app_refuses_connections() {
    let d = TestDaemon::start();
    let p = ports();
    let server = d.write_http_server("server.py");
    start_balanced(&d, arg(&server), "pausable", 2, &p, &[]);
    fetch(p.public).expect("an answer before the stop");

    d.pmd_ok(&["stop", "pausable"]);
    connect_refused(p.public).expect("a connection to the stopped app's public port");
    let rows = d.instances("pausable");
    assert!(
        rows.iter()
            .all(|r| r["status"] == "stopped" && r["balancer"]["listening"] == false),
        "{rows:#?}"
    );

    {
        let _squatter =
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, p.public)).expect("take the public port");
        let out = d.pmd_code(1, &["start", "pausable"]);
        let text = said(&out);
        assert!(
            text.contains(&p.public.to_string()),
            "port not named: {text}"
        );
        assert!(
            d.instances("pausable")
                .iter()
                .all(|r| r["status"] == "stopped"),
            "{:#?}",
            d.instances("pausable")
        );
    }
    d.pmd_ok(&["start", "pausable"]);
    wait_pool(&d, "pausable", 2);
    fetch(p.public).expect("an answer after the start");

    d.pmd_ok(&["delete", "pausable"]);
    connect_refused(p.public).expect("a connection to the deleted app's public port");
}

/// The public port is saved with the app: after `pmd kill` nothing
/// listens on it; the next daemon brings the app back on the same public
/// port (and the same private ports) and it answers again.
#[test]
fn the_public_port_is_restored_after_a_daemon_restart() {
    let mut d = TestDaemon::start();
    let p = ports();
    let server = d.write_http_server("server.py");
    let before = start_balanced(&d, arg(&server), "durable", 2, &p, &[]);
    fetch(p.public).expect("an answer before pmd kill");

    d.pmd_ok(&["kill"]);
    let status = d.wait_daemon_exit();
    assert!(
        status.success(),
        "daemon exited with {status} after pmd kill"
    );
    connect_refused(p.public).expect("a connection while no daemon runs");

    d.spawn_daemon();
    let after = wait_pool(&d, "durable", 2);
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(new["public_port"], p.public, "{new:#}");
        assert_eq!(port_of(new), port_of(old), "private port moved: {new:#}");
        assert_ne!(pid_of(new), pid_of(old));
    }
    let replies = fetch_n(p.public, 4);
    let pids: BTreeSet<u32> = pids_of(&after).into_iter().collect();
    assert_eq!(
        replies.iter().map(|r| r.pid).collect::<BTreeSet<_>>(),
        pids,
        "{replies:?}"
    );
}

/// A TCP server (not HTTP) for the PROXY protocol: on each connection it
/// reads the 16-byte v2 header and the addresses it announces, then what
/// the client sent up to its end, and answers with what it parsed, e.g.
/// `version=0x21 family=0x11 src=127.0.0.1:40000 dst=127.0.0.1:3000
/// then=...`; without a header, `no header: ...`. A connection that ends
/// before 16 bytes (a TCP health check) gets nothing.
const PROXY_SERVER: &str = r#"
import os, socket, socketserver, struct

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"

def read(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data

def read_rest(sock):
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk

class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        head = read(sock, 16)
        if head is None:
            return
        if head[:12] != SIGNATURE:
            sock.sendall(b"no header: " + head + read_rest(sock))
            return
        length = struct.unpack("!H", head[14:16])[0]
        body = read(sock, length)
        if head[13] == 0x11:
            src = socket.inet_ntop(socket.AF_INET, body[0:4])
            dst = socket.inet_ntop(socket.AF_INET, body[4:8])
            sport, dport = struct.unpack("!HH", body[8:12])
        else:
            src = socket.inet_ntop(socket.AF_INET6, body[0:16])
            dst = socket.inet_ntop(socket.AF_INET6, body[16:32])
            sport, dport = struct.unpack("!HH", body[32:36])
        answer = "version={:#x} family={:#x} src={}:{} dst={}:{} then=".format(
            head[12], head[13], src, sport, dst, dport)
        sock.sendall(answer.encode() + read_rest(sock))

class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// Sends `payload` through `port`, ends its side, and returns the answer.
fn say(port: u16, payload: &[u8]) -> (String, SocketAddr) {
    let timeout = WAIT.get();
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    stream.set_read_timeout(Some(timeout)).unwrap();
    let local = stream.local_addr().unwrap();
    stream.write_all(payload).expect("send");
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    (answer, local)
}

/// `--proxy-protocol`: the instance first gets a PROXY protocol v2 header
/// with the client's address (127.0.0.1 and the client's own port, an
/// IPv4 address although the public port is dual-stack) and the public
/// address it connected to, then the client's bytes unchanged. Without the
/// flag the instance gets the client's bytes alone.
#[test]
fn proxy_protocol_tells_the_instance_the_clients_address() {
    let d = TestDaemon::start();
    let server = d.write_executable(
        "proxy.py",
        &format!("#!{}\n{PROXY_SERVER}", python3().display()),
    );
    let payload = b"GET / HTTP/1.0\r\n\r\n";
    let p = ports();
    start_balanced(&d, arg(&server), "told", 2, &p, &["--proxy-protocol"]);
    for _ in 0..2 {
        let (answer, client) = say(p.public, payload);
        let expected = format!(
            "version=0x21 family=0x11 src=127.0.0.1:{} dst=127.0.0.1:{} then={}",
            client.port(),
            p.public,
            String::from_utf8_lossy(payload)
        );
        assert_eq!(answer, expected);
    }

    let plain = ports();
    start_balanced(&d, arg(&server), "untold", 1, &plain, &[]);
    let (answer, _) = say(plain.public, payload);
    assert_eq!(
        answer,
        format!("no header: {}", String::from_utf8_lossy(payload))
    );
}

/// `--balance-strategy least-connections`: while one connection stays
/// open on one instance, every new connection goes to the other (round-
/// robin would alternate); the held connection, once it sends its request,
/// is answered by the instance the list showed it on. With none open the
/// two take turns again.
#[test]
fn least_connections_avoids_the_busy_instance() {
    let d = TestDaemon::start();
    let p = ports();
    let server = d.write_http_server("server.py");
    let rows = start_balanced(
        &d,
        arg(&server),
        "fair",
        2,
        &p,
        &["--balance-strategy", "least-connections"],
    );
    assert_eq!(lb(&rows[0])["strategy"], "least-connections");

    let mut held = TcpStream::connect((Ipv4Addr::LOCALHOST, p.public)).expect("connect");
    held.set_read_timeout(Some(WAIT.get())).unwrap();
    let busy = wait_for_value("an instance with the open connection", WAIT, || {
        d.instances("fair")
            .into_iter()
            .find(|r| r["balancer"]["active_connections"] == 1)
    });
    let busy_pid = pid_of(&busy).unwrap();
    let idle_pid = pids_of(&rows)
        .into_iter()
        .find(|&pid| pid != busy_pid)
        .unwrap();

    // Each request once the previous one is over on the daemon's side too
    // (the proxy counts a connection open until the client closes it):
    // the idle instance has none open, the busy one has one.
    let mut replies = Vec::new();
    for _ in 0..6 {
        wait_for("the idle instance without open connections", WAIT, || {
            d.instances("fair")
                .iter()
                .any(|r| pid_of(r) == Some(idle_pid) && r["balancer"]["active_connections"] == 0)
        });
        replies.push(fetch(p.public).expect("a request to the least busy instance"));
    }
    assert!(
        replies.iter().all(|r| r.pid == idle_pid),
        "a new connection went to the busy instance {busy_pid}: {replies:?}"
    );

    held.write_all(REQUEST).unwrap();
    let mut response = Vec::new();
    held.read_to_end(&mut response).unwrap();
    let reply = reply_of(&response).unwrap();
    assert_eq!(reply.pid, busy_pid, "{reply:?}");
    drop(held);

    wait_for("no open connection left", WAIT, || {
        d.instances("fair")
            .iter()
            .all(|r| r["balancer"]["active_connections"] == 0)
    });
    let replies = fetch_n(p.public, 4);
    assert_eq!(
        by_pid(&replies).len(),
        2,
        "idle instances not in turn: {replies:?}"
    );
}

/// A PM2-style ecosystem file: two instances and one fixed `PORT` in `env`
/// (or `port:`) are balanced on that port with no `balance` key (and a
/// note at start); each instance gets a private port in its `PORT`, and
/// the public port reaches both. With `balance: false` the instances are
/// not balanced (no public port, no balancer; each gets the same PORT, as
/// under PM2) and the daemon does not listen on the port.
#[test]
fn a_pm2_cluster_on_one_port_is_balanced_by_default() {
    let _default_range = DEFAULT_RANGE.lock().unwrap_or_else(PoisonError::into_inner);
    let d = TestDaemon::start();
    d.write_http_server("server.py");
    let base = ports_outside_default_range(3);
    let (env_port, key_port, apart_port) = (base, base + 1, base + 2);
    let file = d.write_file(
        "ecosystem.yaml",
        &format!(
            "apps:
  - name: from-env
    script: ./server.py
    instances: 2
    env:
      PORT: {env_port}
  - name: from-key
    script: ./server.py
    instances: 2
    port: {key_port}
  - name: apart
    script: sleep
    args: \"100000\"
    instances: 2
    env:
      PORT: {apart_port}
    balance: false
"
        ),
    );
    let out = d.pmd(&["start", arg(&file)]);
    assert!(out.status.success(), "{}", describe_output(&out));
    let text = said(&out);
    for (name, port) in [("from-env", env_port), ("from-key", key_port)] {
        assert!(
            text.lines().any(|l| l.contains(&format!("app {name}:"))
                && l.contains("pmd balances")
                && l.contains(&port.to_string())),
            "no note that {name} is balanced on {port}:\n{text}"
        );
        let rows = wait_pool(&d, name, 2);
        for row in &rows {
            assert_eq!(row["public_port"], port, "{row:#}");
            let private = port_of(row).unwrap();
            assert_ne!(private, port, "{row:#}");
            assert_eq!(env_of(pid_of(row).unwrap())["PORT"], private.to_string());
        }
        let replies = fetch_n(port, 4);
        assert_eq!(
            by_pid(&replies).keys().copied().collect::<BTreeSet<_>>(),
            pids_of(&rows).into_iter().collect(),
            "{name}: {replies:?}"
        );
    }

    let apart = d.wait_instances_online("apart", 2);
    for row in &apart {
        assert!(row["public_port"].is_null(), "{row:#}");
        assert!(row["balancer"].is_null(), "{row:#}");
        assert_eq!(env_of(pid_of(row).unwrap())["PORT"], apart_port.to_string());
    }
    connect_refused(apart_port).expect("a connection to the unbalanced app's port");
}

/// What `list -o json`, `describe -o json` and `pmd events` say: the public
/// port and each instance's private port; `pool_joined` for each instance
/// with its private port; counters that match the requests made (each
/// instance's total connections and bytes, none left open); after
/// `pmd stop` of one instance, `pool_left` (stopping), and the pool
/// counts one ready instance, which gets every request.
#[test]
fn list_describe_and_events_show_the_pool() {
    let d = TestDaemon::start();
    let mut events = d.events();
    let p = ports();
    let server = d.write_http_server("server.py");
    let rows = start_balanced(&d, arg(&server), "shown", 2, &p, &[]);
    for row in &rows {
        let id = id_of(row);
        let private = port_of(row).unwrap();
        assert!(
            (p.first_private..=p.last_private).contains(&private),
            "{row:#}"
        );
        let is_joined =
            |e: &Value| e["name"] == "shown" && e["id"] == id && kind_of(e) == "pool_joined";
        // The other instance's may have come (and been read) first.
        let seen = events.seen().iter().find(|e| is_joined(e)).cloned();
        let joined = seen
            .unwrap_or_else(|| events.wait_event(&format!("pool_joined of id {id}"), is_joined));
        assert!(
            joined["detail"]
                .as_str()
                .is_some_and(|s| s.contains(&private.to_string())),
            "{joined}"
        );
    }

    let mut sent = BTreeMap::<u32, (u64, u64, u64)>::new();
    for n in 0..10 {
        let response = exchange(p.public).unwrap_or_else(|e| panic!("request {n}: {e}"));
        let reply = reply_of(&response).unwrap();
        let entry = sent.entry(reply.pid).or_default();
        entry.0 += 1;
        entry.1 += REQUEST.len() as u64;
        entry.2 += response.len() as u64;
    }
    assert_eq!(sent.len(), 2, "{sent:?}");

    let listed = wait_for_value("no connection open any more", WAIT, || {
        let rows = d.instances("shown");
        rows.iter()
            .all(|r| r["balancer"]["active_connections"] == 0)
            .then_some(rows)
    });
    let described = match d.describe_json("shown") {
        Value::Array(mut rows) => {
            rows.sort_by_key(|r| r["instance"].as_u64());
            rows
        }
        other => panic!("describe of 2 instances is not an array: {other}"),
    };
    assert_eq!(described.len(), 2, "{described:#?}");
    for (index, (list_row, describe_row)) in listed.iter().zip(&described).enumerate() {
        for row in [list_row, describe_row] {
            let pid = pid_of(row).unwrap();
            let (total, bytes_in, bytes_out) = sent[&pid];
            assert_eq!(row["public_port"], p.public, "{row:#}");
            assert_eq!(port_of(row), port_of(&rows[index]), "{row:#}");
            let lb = lb(row);
            assert_eq!(lb["public_port"], p.public, "{row:#}");
            assert_eq!(lb["listening"], true, "{row:#}");
            assert_eq!(lb["in_pool"], true, "{row:#}");
            assert_eq!(lb["ready_instances"], 2, "{row:#}");
            assert_eq!(lb["refused_connections"], 0, "{row:#}");
            assert!(lb["problem"].is_null(), "{row:#}");
            assert_eq!(lb["total_connections"], total, "{row:#}");
            assert_eq!(lb["bytes_in"], bytes_in, "{row:#}");
            assert_eq!(lb["bytes_out"], bytes_out, "{row:#}");
            assert!(!lb["address"].as_str().unwrap_or("").is_empty(), "{row:#}");
        }
    }

    let stopped_id = id_of(&rows[1]);
    d.pmd_ok(&["stop", &stopped_id.to_string()]);
    let left = events.wait_event("pool_left of the stopped instance", |e| {
        e["name"] == "shown" && e["id"] == stopped_id && kind_of(e) == "pool_left"
    });
    assert_eq!(left["detail"], "stopping", "{left}");
    let now = d.instances("shown");
    assert_eq!(now[1]["balancer"]["in_pool"], false, "{:#}", now[1]);
    assert_eq!(now[0]["balancer"]["ready_instances"], 1, "{:#}", now[0]);
    let replies = fetch_n(p.public, 4);
    let running = pid_of(&now[0]).unwrap();
    assert!(replies.iter().all(|r| r.pid == running), "{replies:?}");
}

/// While no instance is ready (here: one that never listens, so its
/// implied TCP check never passes), a new connection waits the hold
/// timeout, then is closed without an answer; the pool counts it as
/// refused and says why, and `pmd events` records `connections_refused`.
#[test]
fn connections_are_refused_after_the_hold_timeout_with_an_event() {
    let d = TestDaemon::start();
    let mut events = d.events();
    let p = ports();
    d.pmd_ok(&[
        "start",
        "sleep",
        "--name",
        "mute",
        "--port",
        &p.public.to_string(),
        "--balance",
        "--balance-ports",
        &p.private,
        "--hold-timeout",
        "500ms",
        "--",
        "100000",
    ]);
    d.wait_status("mute", "starting");

    let outcome = exchange(p.public);
    assert!(outcome.is_err(), "answered: {outcome:?}");
    let refused = events.wait_event("connections_refused of mute", |e| {
        e["name"] == "mute" && kind_of(e) == "connections_refused"
    });
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|s| s.contains("hold_timeout")),
        "{refused}"
    );
    let row = d.app("mute").unwrap();
    let lb = lb(&row);
    assert_eq!(lb["refused_connections"], 1, "{row:#}");
    assert_eq!(lb["held_connections"], 0, "{row:#}");
    assert_eq!(lb["ready_instances"], 0, "{row:#}");
    assert!(
        lb["problem"]
            .as_str()
            .is_some_and(|s| s.contains("refused")),
        "{row:#}"
    );
}

/// A TCP listener of this test on 127.0.0.1:`port`, standing in for a
/// foreign process that took an instance's private port: it counts the
/// connections that send it anything (a client's request; a TCP health
/// check connects and closes) and answers them `IMPOSTOR`.
struct Impostor {
    stop: Arc<AtomicBool>,
    fed: Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Impostor {
    fn bind(port: u16) -> std::io::Result<Impostor> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let fed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let thread = {
            let (stop, fed) = (Arc::clone(&stop), Arc::clone(&fed));
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let mut stream = match listener.accept() {
                        Ok((stream, _)) => stream,
                        Err(_) => {
                            thread::sleep(std::time::Duration::from_millis(10));
                            continue;
                        }
                    };
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(WAIT.div(30).get()));
                    let mut buf = [0u8; 1024];
                    if matches!(stream.read(&mut buf), Ok(n) if n > 0) {
                        fed.fetch_add(1, Ordering::SeqCst);
                        let _ = stream
                            .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 8\r\n\r\nIMPOSTOR");
                    }
                }
            })
        };
        Ok(Impostor {
            stop,
            fed,
            thread: Some(thread),
        })
    }

    /// Connections that sent it something so far.
    fn fed(&self) -> usize {
        self.fed.load(Ordering::SeqCst)
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Another process takes an instance's private port while the instance
/// waits to restart after a crash (two daemons on one host handing out the
/// same `auto:` port, or any program): the restarted instance cannot bind
/// it. Clients of the public port must never be handed to that other
/// process, and the instance must serve again (an `auto:` port moves to a
/// free one of its range, as it does at `pmd start`).
#[test]
fn a_foreign_listener_on_a_private_port_gets_no_client() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let d = TestDaemon::start();
    let p = ports();
    let server = d.write_http_server("server.py");
    let rows = start_balanced(
        &d,
        arg(&server),
        "victim",
        1,
        &p,
        &["--restart-delay", "2s"],
    );
    let taken = port_of(&rows[0]).unwrap();
    let mut pid = pid_of(&rows[0]).unwrap();

    // Kill the instance and take its port before its restart; if the
    // restart came first (a slow poll), again.
    let impostor = loop {
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill the instance");
        let row = wait_for_value("the instance down or back", WAIT, || {
            d.app("victim").filter(|r| {
                r["status"] == "waiting-restart"
                    || (r["status"] == "online" && pid_of(r) != Some(pid))
            })
        });
        if row["status"] == "waiting-restart"
            && let Ok(impostor) = Impostor::bind(taken)
        {
            break impostor;
        }
        pid = pid_of(&wait_pool(&d, "victim", 1)[0]).unwrap();
    };

    let deadline = WAIT.deadline();
    let mut answers = Vec::new();
    let served = loop {
        if impostor.fed() > 0 || std::time::Instant::now() >= deadline {
            break None;
        }
        let outcome = exchange(p.public).and_then(|r| reply_of(&r));
        let row = d.app("victim").unwrap();
        if let Ok(reply) = &outcome
            && Some(reply.pid) == pid_of(&row)
        {
            break Some((reply.clone(), row));
        }
        answers.push(outcome);
    };
    let fed = impostor.fed();
    assert_eq!(
        fed,
        0,
        "the balancer handed {fed} client connection(s) to another process listening on the \
         instance's private port {taken}; answers: {answers:?}\n{:#}",
        d.app("victim").unwrap()
    );
    let (reply, row) = served.unwrap_or_else(|| {
        panic!(
            "the instance did not serve again within {WAIT:?}; answers: {answers:?}\n{:#}",
            d.app("victim").unwrap()
        )
    });
    assert_ne!(reply.port, taken, "{reply:?}");
    assert_eq!(port_of(&row), Some(reply.port), "{row:#}");
}
