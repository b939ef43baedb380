//! The REST gateway and its WebSockets against the real daemon
//! (`pmdaemond --listen`): every route once with proto3 JSON, the gRPC
//! codes as HTTP statuses, NDJSON and WebSocket log streams that deliver
//! lines written after they started, the 401/403 matrix of every route
//! (generated from the daemon's own `/v1/openapi.json` and
//! `pmdaemon_proto::METHOD_ACCESS`, so a new route is covered without a
//! change here), a slow WebSocket reader that blocks nothing and is told
//! what it missed, the OpenAPI document against the routes served,
//! `/metrics` and `/healthz`.

use std::collections::BTreeSet;

use base64::Engine;
use pmdaemon_proto::v1::Access;
use pmdaemon_tests::*;
use serde_json::{Value, json};

fn start_listening(port: u16) -> TestDaemon {
    TestDaemon::start_with_args(&["--listen", &format!("127.0.0.1:{port}")])
}

fn create_token(daemon: &TestDaemon, args: &[&str]) -> String {
    let mut all = vec!["token", "create"];
    all.extend_from_slice(args);
    daemon.pmd_ok(&all).trim().to_string()
}

/// The proto3 `bytes` of a log line, decoded.
fn text_of(line: &Value) -> String {
    let data = line["data"].as_str().expect("data is base64 text");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("base64");
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The texts of the log lines of one StreamLogsResponse.
fn texts(response: &Value) -> Vec<String> {
    response["lines"]
        .as_array()
        .map(|lines| lines.iter().map(text_of).collect())
        .unwrap_or_default()
}

/// Every key of `value`, at any depth, outside string maps (`env`), is
/// lowerCamelCase.
fn assert_lower_camel(value: &Value, at: &str) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                assert!(
                    !key.contains('_') && key.starts_with(|c: char| c.is_ascii_lowercase()),
                    "{at}.{key} is not lowerCamelCase"
                );
                if key != "env" {
                    assert_lower_camel(inner, &format!("{at}.{key}"));
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| assert_lower_camel(v, at)),
        _ => {}
    }
}

/// An int64 field written as a string of digits, as proto3 JSON does.
fn int64_string(value: &Value, what: &str) -> i64 {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"))
        .parse()
        .unwrap_or_else(|_| panic!("{what} is not an integer: {value}"))
}

fn names_of(reply: &Value) -> Vec<String> {
    reply["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_string())
        .collect()
}

/// Every REST route once against the real core, with proto3 JSON both ways;
/// Shutdown last.
#[test]
fn every_route_with_proto3_json() {
    let port = free_ports(1);
    let mut daemon = start_listening(port);
    let admin = admin_token(daemon.home());
    let script = daemon.write_script("idle.sh", "while :; do sleep 1000; done");
    let script = script.display().to_string();
    let rest = Rest::new(port, Some(&admin));

    block_on(async {
        // StartProcess: a relative script is refused, an absolute one runs.
        let refused = rest
            .call(
                "POST",
                "/v1/processes",
                Some(r#"{"spec":{"name":"web","script":"./idle.sh"}}"#),
            )
            .await;
        assert_eq!(refused.status, 400, "{refused:?}");
        assert_eq!(refused.body["code"], 3, "{refused:?}");
        assert!(
            refused.body["message"]
                .as_str()
                .is_some_and(|m| m.contains("absolute path")),
            "{refused:?}"
        );
        let body = json!({"spec": {
            "name": "web",
            "script": script,
            "logMaxBytes": "1048576",
            "autorestart": "RESTART_POLICY_ALWAYS",
        }})
        .to_string();
        let created = rest.call("POST", "/v1/processes", Some(&body)).await;
        assert_eq!(created.status, 200, "{created:?}");
        assert_eq!(
            created.headers["content-type"], "application/json",
            "{created:?}"
        );
        assert_lower_camel(&created.body, "StartProcessResponse");
        let web = &created.body["processes"][0];
        assert_eq!(web["name"], "web");
        assert!(web["id"].is_u64(), "uint32 as a number: {web}");
        assert!(
            web["state"]
                .as_str()
                .is_some_and(|s| s.starts_with("PROCESS_STATE_")),
            "enum by name: {web}"
        );
        int64_string(&web["createdAtMs"], "createdAtMs");
        assert_eq!(web["spec"]["logMaxBytes"], "1048576", "uint64 as a string");
        assert_eq!(web["spec"]["autorestart"], "RESTART_POLICY_ALWAYS");
        assert_eq!(web["restarts"], 0, "defaults are written: {web}");
        assert_eq!(web["cwd"], daemon.work().display().to_string());

        // WaitReady (a read-only stream, POST): until ready.
        let (status, mut lines) = rest
            .stream("POST", "/v1/processes/web:waitReady", Some("{}"))
            .await;
        assert_eq!(status, 200);
        lines
            .until("waitReady says ready", |l| {
                assert!(l.get("error").is_none(), "{l}");
                (l["result"]["ready"] == true).then_some(())
            })
            .await;

        // ListProcesses, GetProcess.
        let list = rest.call("GET", "/v1/processes", None).await;
        assert_eq!(list.status, 200, "{list:?}");
        assert_eq!(names_of(&list.body), ["web"]);
        assert_lower_camel(&list.body, "ListProcessesResponse");
        let got = rest.call("GET", "/v1/processes/web", None).await;
        assert_eq!(got.status, 200, "{got:?}");
        let got = &got.body["processes"][0];
        assert_eq!(got["state"], "PROCESS_STATE_ONLINE", "{got}");
        assert_eq!(got["ready"], true, "{got}");
        assert!(got["pid"].is_u64(), "{got}");
        int64_string(&got["startedAtMs"], "startedAtMs");

        // StopProcess, RestartProcess.
        let stopped = rest
            .call("POST", "/v1/processes/web:stop", Some("{}"))
            .await;
        assert_eq!(stopped.status, 200, "{stopped:?}");
        assert_eq!(
            stopped.body["processes"][0]["state"],
            "PROCESS_STATE_STOPPED"
        );
        let restarted = rest
            .call("POST", "/v1/processes/web:restart", Some("{}"))
            .await;
        assert_eq!(restarted.status, 200, "{restarted:?}");
        assert_eq!(names_of(&restarted.body), ["web"]);

        // ReloadProcess: a stream of replacements, ending when all are done.
        let (status, mut lines) = rest
            .stream("POST", "/v1/processes/web:reload", Some("{}"))
            .await;
        assert_eq!(status, 200);
        let mut last = Value::Null;
        while let Some(line) = lines.next().await {
            assert!(line.get("error").is_none(), "{line}");
            last = line;
        }
        assert_eq!(last["result"]["done"], 1, "{last}");
        assert_eq!(last["result"]["total"], 1, "{last}");
        assert_eq!(last["result"]["process"]["name"], "web", "{last}");

        // ScaleProcess.
        let scaled = rest
            .call(
                "POST",
                "/v1/processes/web:scale",
                Some(r#"{"instances":2}"#),
            )
            .await;
        assert_eq!(scaled.status, 200, "{scaled:?}");
        assert_eq!(scaled.body["delta"], 1, "{scaled:?}");
        assert_eq!(names_of(&scaled.body), ["web", "web"]);

        // StreamMetrics: a first sample of both instances.
        let (status, mut lines) = rest
            .stream("GET", "/v1/metrics?target=web&intervalMs=200", None)
            .await;
        assert_eq!(status, 200);
        let sample = lines.next().await.expect("a metrics sample");
        int64_string(&sample["result"]["atMs"], "atMs");
        assert_eq!(
            sample["result"]["processes"].as_array().map(Vec::len),
            Some(2),
            "{sample}"
        );
        drop(lines);

        // WatchEvents: a restart requested after the stream began.
        let (status, mut events) = rest.stream("GET", "/v1/events?target=web", None).await;
        assert_eq!(status, 200);
        let restarted = rest
            .call("POST", "/v1/processes/web:restart", Some("{}"))
            .await;
        assert_eq!(restarted.status, 200, "{restarted:?}");
        let kind = events
            .until("an event of web", |l| {
                let event = &l["result"]["event"];
                (event["name"] == "web").then(|| event["kind"].clone())
            })
            .await;
        assert!(
            kind.as_str().is_some_and(|k| k.starts_with("EVENT_KIND_")),
            "{kind}"
        );
        drop(events);

        // FlushLogs.
        let flushed = rest
            .call("POST", "/v1/logs:flush", Some(r#"{"target":"web"}"#))
            .await;
        assert_eq!(flushed.status, 200, "{flushed:?}");
        assert!(
            flushed.body["files"]
                .as_array()
                .is_some_and(|f| !f.is_empty()),
            "{flushed:?}"
        );

        // ApplyApps.
        let apply = json!({"apps": [{"name": "job", "script": script}]}).to_string();
        let applied = rest.call("POST", "/v1/apps:apply", Some(&apply)).await;
        assert_eq!(applied.status, 200, "{applied:?}");
        assert_lower_camel(&applied.body, "ApplyAppsResponse");

        // Ping.
        let ping = rest.call("GET", "/v1/ping", None).await;
        assert_eq!(ping.status, 200, "{ping:?}");
        assert_eq!(ping.body["daemonPid"], daemon.daemon_pid(), "{ping:?}");
        int64_string(&ping.body["startedAtMs"], "startedAtMs");
        assert_eq!(
            ping.body["listen"],
            json!([format!("127.0.0.1:{port}")]),
            "{ping:?}"
        );

        // SaveProcesses, DeleteProcess, Resurrect.
        let saved = rest.call("POST", "/v1/dump:save", Some("{}")).await;
        assert_eq!(saved.status, 200, "{saved:?}");
        assert_eq!(saved.body["apps"], 2, "{saved:?}");
        for name in ["job", "web"] {
            let deleted = rest
                .call("DELETE", &format!("/v1/processes/{name}"), None)
                .await;
            assert_eq!(deleted.status, 200, "{deleted:?}");
            assert!(names_of(&deleted.body).iter().all(|n| n == name));
        }
        let empty = rest.call("GET", "/v1/processes", None).await;
        assert_eq!(empty.body, json!({"processes": []}), "{empty:?}");
        let back = rest.call("POST", "/v1/dump:resurrect", Some("{}")).await;
        assert_eq!(back.status, 200, "{back:?}");
        let mut names = names_of(&back.body);
        names.sort();
        assert_eq!(names, ["job", "web", "web"], "{back:?}");
        // A DELETE with a query parameter: only stopped instances (none).
        let none = rest
            .call(
                "DELETE",
                "/v1/processes/all?status=PROCESS_STATE_STOPPED",
                None,
            )
            .await;
        assert_eq!(none.status, 200, "{none:?}");
        assert_eq!(none.body["processes"], json!([]), "{none:?}");
        let all = rest.call("DELETE", "/v1/processes/all", None).await;
        assert_eq!(all.status, 200, "{all:?}");
        assert_eq!(names_of(&all.body).len(), 3, "{all:?}");

        // Shutdown, last.
        let down = rest.call("POST", "/v1/daemon:shutdown", Some("{}")).await;
        assert_eq!(down.status, 200, "{down:?}");
        assert_eq!(down.body, json!({}), "{down:?}");
    });
    let status = daemon.wait_daemon_exit();
    assert!(status.success(), "{status}");
}

/// gRPC codes become HTTP statuses with grpc-gateway's error body, end to
/// end through the real core.
#[test]
fn errors_map_to_statuses_and_bodies() {
    let port = free_ports(1);
    let daemon = start_listening(port);
    let admin = admin_token(daemon.home());
    let script = daemon.write_script("idle.sh", "while :; do sleep 1000; done");
    let rest = Rest::new(port, Some(&admin));
    let spec = |name: &str| json!({"spec": {"name": name, "script": script}});
    block_on(async {
        let missing = rest.call("GET", "/v1/processes/nope", None).await;
        assert_eq!(missing.status, 404, "{missing:?}");
        assert_eq!(missing.body["code"], 5, "{missing:?}");
        assert!(missing.body["message"].is_string(), "{missing:?}");
        assert_eq!(missing.body["details"], json!([]), "{missing:?}");
        let missing = rest
            .call("POST", "/v1/processes/nope:stop", Some("{}"))
            .await;
        assert_eq!(missing.status, 404, "{missing:?}");

        let bad = rest
            .call("POST", "/v1/processes", Some(&spec("bad/name").to_string()))
            .await;
        assert_eq!(bad.status, 400, "{bad:?}");
        assert_eq!(bad.body["code"], 3, "{bad:?}");

        let first = rest
            .call("POST", "/v1/processes", Some(&spec("dup").to_string()))
            .await;
        assert_eq!(first.status, 200, "{first:?}");
        let again = rest
            .call("POST", "/v1/processes", Some(&spec("dup").to_string()))
            .await;
        assert_eq!(again.status, 409, "{again:?}");
        assert_eq!(again.body["code"], 6, "{again:?}");

        for (body, field) in [
            (
                r#"{"spec":{"name":"x","script":"/bin/true"},"bogus":1}"#,
                "bogus",
            ),
            (r#"{"spec":{"name":"x","scriptt":"/bin/true"}}"#, "scriptt"),
        ] {
            let unknown = rest.call("POST", "/v1/processes", Some(body)).await;
            assert_eq!(unknown.status, 400, "{unknown:?}");
            assert_eq!(unknown.body["code"], 3, "{unknown:?}");
            assert!(
                unknown.body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(field)),
                "{field} not named: {unknown:?}"
            );
        }
        let unknown_query = rest.call("GET", "/v1/ping?bogus=1", None).await;
        assert_eq!(unknown_query.status, 400, "{unknown_query:?}");
    });
    assert_eq!(daemon.list_json().len(), 1, "only dup was created");
    daemon.pmd_ok(&["delete", "all"]);
}

/// NDJSON and WebSocket log streams deliver a line the app writes after
/// the stream began (the app writes it once a file appears, which the test
/// creates only then). The WebSocket authenticates with the subprotocol
/// pair and is answered `pmdaemon.v1`; without a token (or with a wrong
/// one) the handshake is a 401.
#[test]
fn log_streams_deliver_lines_as_written() {
    let port = free_ports(1);
    let daemon = start_listening(port);
    let reader = create_token(&daemon, &["reader", "--read-only"]);
    let dir = daemon.work().display().to_string();
    daemon.write_script(
        "talker.sh",
        &format!(
            "echo started\nwhile :; do\n  for f in go-ndjson go-ws; do [ -f {dir}/$f ] && echo \"line-$f\"; done\n  sleep 0.1\ndone"
        ),
    );
    daemon.pmd_ok(&["start", "talker.sh", "--name", "talker"]);
    daemon.wait_online("talker");
    let rest = Rest::new(port, Some(&reader));
    let path = "/v1/logs?target=talker&follow=true";
    block_on(async {
        let (status, mut lines) = rest.stream("GET", path, None).await;
        assert_eq!(status, 200);
        // The stream is open (its head came) before the line exists.
        std::fs::write(daemon.work().join("go-ndjson"), "").unwrap();
        lines
            .until("line-go-ndjson over NDJSON", |l| {
                assert!(l.get("error").is_none(), "{l}");
                texts(&l["result"])
                    .iter()
                    .any(|t| t == "line-go-ndjson")
                    .then_some(())
            })
            .await;
        drop(lines);

        let bearer = format!("bearer.{reader}");
        let (mut socket, answer) = websocket(port, path, &["pmdaemon.v1", &bearer])
            .await
            .expect("WebSocket with the subprotocol pair");
        assert_eq!(answer.status(), 101);
        assert_eq!(
            answer.headers()["sec-websocket-protocol"],
            "pmdaemon.v1",
            "{answer:?}"
        );
        std::fs::write(daemon.work().join("go-ws"), "").unwrap();
        loop {
            let message = ws_next(&mut socket).await.expect("the socket stays open");
            assert!(message.get("error").is_none(), "{message}");
            assert!(message.get("result").is_none(), "one message per frame");
            if texts(&message).iter().any(|t| t == "line-go-ws") {
                break;
            }
        }
        drop(socket);

        let wrong = format!("bearer.pmd_{}", "0".repeat(64));
        for (label, protocols) in [
            ("no token", vec!["pmdaemon.v1"]),
            ("a wrong token", vec!["pmdaemon.v1", wrong.as_str()]),
        ] {
            match websocket(port, path, &protocols).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    assert_eq!(response.status(), 401, "{label}: {response:?}");
                    assert_eq!(response.headers()["www-authenticate"], "Bearer");
                }
                other => panic!("{label}: {:?}", other.map(|(_, r)| r)),
            }
        }
    });
    daemon.pmd_ok(&["delete", "all"]);
}

/// A route of the OpenAPI document.
struct Route {
    method: String,
    path: String,
    /// The gRPC method (`x-grpc-method`), None for the document itself.
    grpc: Option<String>,
}

/// The routes the daemon documents at `/v1/openapi.json`, with path
/// parameters filled with `fill`.
async fn documented_routes(rest: &Rest, fill: &str) -> Vec<Route> {
    let doc = rest.call("GET", "/v1/openapi.json", None).await;
    assert_eq!(doc.status, 200, "{doc:?}");
    assert_eq!(doc.body["openapi"], "3.0.3");
    let mut routes = Vec::new();
    for (template, ops) in doc.body["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            let mut path = String::new();
            let mut rest_of = template.as_str();
            while let Some(open) = rest_of.find('{') {
                let close = rest_of[open..].find('}').expect("a closing brace") + open;
                path.push_str(&rest_of[..open]);
                path.push_str(fill);
                rest_of = &rest_of[close + 1..];
            }
            path.push_str(rest_of);
            routes.push(Route {
                method: method.to_ascii_uppercase(),
                path,
                grpc: op["x-grpc-method"].as_str().map(str::to_string),
            });
        }
    }
    assert!(routes.len() > 10, "too few routes documented");
    routes
}

fn body_for(method: &str) -> Option<&'static str> {
    (method != "GET" && method != "DELETE").then_some("{}")
}

/// The 401/403 matrix of every documented route: without a token or with
/// a wrong one, 401 with `WWW-Authenticate: Bearer`; with a read-only
/// token, 403 exactly on the routes of admin RPCs and never 401/403 on
/// read-only ones. Then `/metrics` and `/healthz`, and Shutdown with the
/// admin token last.
#[test]
fn access_matrix_for_every_route() {
    let port = free_ports(1);
    let mut daemon = start_listening(port);
    let admin = admin_token(daemon.home());
    let reader = create_token(&daemon, &["reader", "--read-only"]);
    let wrong = format!("pmd_{}", "0".repeat(64));
    let truncated = admin[..admin.len() - 1].to_string();
    block_on(async {
        let routes = documented_routes(&Rest::new(port, Some(&admin)), "no-such-app").await;
        for route in &routes {
            let (method, path) = (route.method.as_str(), route.path.as_str());
            for (label, token) in [
                ("no token", None),
                ("a wrong token", Some(wrong.as_str())),
                ("a truncated token", Some(truncated.as_str())),
            ] {
                let got = Rest::new(port, token)
                    .call(method, path, body_for(method))
                    .await;
                assert_eq!(got.status, 401, "{method} {path} with {label}: {got:?}");
                assert_eq!(
                    got.headers["www-authenticate"], "Bearer",
                    "{method} {path} with {label}"
                );
                assert_eq!(got.body["code"], 16, "{method} {path}: {got:?}");
            }
            // Only the head: a stream may stay open.
            let got = Rest::new(port, Some(&reader))
                .send(method, path, body_for(method))
                .await;
            let status = got.status().as_u16();
            let access = match &route.grpc {
                None => Access::ReadOnly,
                Some(grpc) => pmdaemon_proto::method_access(grpc)
                    .unwrap_or_else(|| panic!("{grpc} is not an RPC of the contract")),
            };
            match access {
                Access::ReadOnly => assert!(
                    status != 401 && status != 403,
                    "{method} {path} with a read-only token: {status}"
                ),
                Access::Admin => {
                    assert_eq!(status, 403, "{method} {path} with a read-only token")
                }
                Access::LocalOnly => panic!("{method} {path}: a local-only RPC has a route"),
            }
        }

        let metrics = Rest::new(port, None).call("GET", "/metrics", None).await;
        assert_eq!(metrics.status, 401, "{metrics:?}");
        assert_eq!(metrics.headers["www-authenticate"], "Bearer");
        let metrics = Rest::new(port, Some(&reader))
            .send("GET", "/metrics", None)
            .await;
        assert_eq!(metrics.status(), 200);
        let health = Rest::new(port, None).send("GET", "/healthz", None).await;
        assert_eq!(health.status(), 200);

        let down = Rest::new(port, Some(&admin))
            .call("POST", "/v1/daemon:shutdown", Some("{}"))
            .await;
        assert_eq!(down.status, 200, "{down:?}");
    });
    let status = daemon.wait_daemon_exit();
    assert!(status.success(), "{status}");
}

/// `/v1/openapi.json` lists exactly the routes served: one for every RPC
/// that is not local-only, each of which answers (read-only RPCs with the
/// admin token and an existing app: 2xx; admin RPCs, not to run them, with
/// a read-only token: 403, i.e. routed and refused by scope), a path that
/// is not documented is a 404 and a method that is not, a 405.
#[test]
fn openapi_lists_exactly_the_routes_served() {
    let port = free_ports(1);
    let daemon = start_listening(port);
    let admin = admin_token(daemon.home());
    let reader = create_token(&daemon, &["reader", "--read-only"]);
    daemon.write_script("idle.sh", "while :; do sleep 1000; done");
    daemon.pmd_ok(&["start", "idle.sh", "--name", "web"]);
    daemon.wait_online("web");
    block_on(async {
        let as_admin = Rest::new(port, Some(&admin));
        let as_reader = Rest::new(port, Some(&reader));
        let routes = documented_routes(&as_admin, "web").await;
        let documented: BTreeSet<&str> = routes.iter().filter_map(|r| r.grpc.as_deref()).collect();
        let remote: BTreeSet<&str> = pmdaemon_proto::METHOD_ACCESS
            .iter()
            .filter(|(_, access)| *access != Access::LocalOnly)
            .map(|(path, _)| *path)
            .collect();
        assert_eq!(documented, remote, "documented RPCs vs the contract's");
        for route in &routes {
            let (method, path) = (route.method.as_str(), route.path.as_str());
            let admin_rpc = route
                .grpc
                .as_deref()
                .and_then(pmdaemon_proto::method_access)
                == Some(Access::Admin);
            let client = if admin_rpc { &as_reader } else { &as_admin };
            let status = client.send(method, path, body_for(method)).await.status();
            if admin_rpc {
                assert_eq!(status, 403, "{method} {path}");
            } else {
                assert!(status.is_success(), "{method} {path}: {status}");
            }
        }
        let nowhere = as_admin.call("GET", "/v1/nowhere", None).await;
        assert_eq!(nowhere.status, 404, "{nowhere:?}");
        let wrong_method = as_admin.call("PUT", "/v1/processes", Some("{}")).await;
        assert_eq!(wrong_method.status, 405, "{wrong_method:?}");
        let wrong_verb = as_admin
            .call("POST", "/v1/processes/web:frobnicate", Some("{}"))
            .await;
        assert!(
            wrong_verb.status == 404 || wrong_verb.status == 405,
            "{wrong_verb:?}"
        );
    });
    daemon.pmd_ok(&["delete", "all"]);
}

/// A WebSocket follower that reads nothing blocks neither the app nor the
/// daemon: the app floods its stdout, its log file keeps growing far past
/// what the socket buffers hold, the daemon answers meanwhile, and once
/// the reader reads again it is told how many lines it missed
/// (`missedLines`, as on gRPC).
#[test]
fn slow_websocket_reader_blocks_nothing() {
    let port = free_ports(1);
    let daemon = start_listening(port);
    let admin = admin_token(daemon.home());
    // About 20 MB/s of 100-byte lines.
    let flood = daemon.write_executable(
        "flood.py",
        &format!(
            "#!{}\nimport sys, time\nline = 'x' * 99 + '\\n'\nchunk = line * 2000\nwhile True:\n    sys.stdout.write(chunk)\n    sys.stdout.flush()\n    time.sleep(0.01)\n",
            python3().display()
        ),
    );
    let rest = Rest::new(port, Some(&admin));
    let spec = json!({"spec": {
        "name": "flood",
        "script": flood.display().to_string(),
        "logMaxBytes": "4294967296",
    }})
    .to_string();
    let log = block_on(async {
        let created = rest.call("POST", "/v1/processes", Some(&spec)).await;
        assert_eq!(created.status, 200, "{created:?}");
        created.body["processes"][0]["outLogPath"]
            .as_str()
            .expect("outLogPath")
            .to_string()
    });
    let pid = daemon.wait_online("flood");
    let size = || std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let bearer = format!("bearer.{admin}");
    let path = "/v1/logs?target=flood&follow=true";
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut socket = runtime.block_on(async {
        let (mut socket, _) = websocket(port, path, &["pmdaemon.v1", &bearer])
            .await
            .expect("WebSocket");
        let first = ws_next(&mut socket).await.expect("a first message");
        assert!(!texts(&first).is_empty(), "{first}");
        socket
    });
    // The reader reads nothing now. Far more than the socket buffers hold
    // (tcp_rmem + tcp_wmem maxima, base64 and JSON make each line longer
    // on the wire) must reach the log file meanwhile.
    let stalled_at = size();
    let buffers: u64 = ["/proc/sys/net/ipv4/tcp_rmem", "/proc/sys/net/ipv4/tcp_wmem"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .filter_map(|t| t.split_whitespace().last()?.parse::<u64>().ok())
        .sum();
    let enough = 2 * buffers.max(8 << 20);
    wait_for(
        "the log file to grow while the WebSocket reader reads nothing",
        WAIT,
        || size() > stalled_at + enough,
    );
    let grown = size();
    // The app and the daemon were not held up.
    let now = daemon.app("flood").expect("flood is listed");
    assert_eq!(now["status"], "online", "{now}");
    assert_eq!(pid_of(&now), Some(pid), "the app was not restarted: {now}");
    wait_for("the log file to keep growing", WAIT, || size() > grown);

    let missed = runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + WAIT.get();
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no missedLines within {WAIT:?}"
            );
            let message = ws_next(&mut socket).await.expect("the socket stays open");
            assert!(message.get("error").is_none(), "{message}");
            let missed = int64_string(&message["missedLines"], "missedLines");
            if missed > 0 {
                break missed;
            }
        }
    });
    assert!(missed > 0);
    drop(socket);
    daemon.pmd_ok(&["delete", "all"]);
}

/// The messages of a WebSocket until its close frame, and that frame's
/// code.
async fn ws_until_close<S>(socket: &mut tokio_tungstenite::WebSocketStream<S>) -> (Vec<Value>, u16)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut messages = Vec::new();
    loop {
        let message = tokio::time::timeout(WAIT.get(), socket.next())
            .await
            .unwrap_or_else(|_| panic!("no WebSocket message within {WAIT:?}"))
            .expect("a close frame before the end")
            .expect("a WebSocket message");
        match message {
            Message::Text(text) => messages.push(serde_json::from_str(&text).expect("JSON")),
            Message::Close(frame) => {
                return (messages, frame.map(|f| u16::from(f.code)).unwrap_or(0));
            }
            _ => {}
        }
    }
}

/// The streaming POST routes (`:reload`, `:waitReady`) are WebSockets too,
/// on their own path: not GetProcess with the target `web:reload`. An
/// admin RPC with a read-only token closes with 1008.
#[test]
fn websocket_on_verb_routes() {
    let port = free_ports(1);
    let daemon = start_listening(port);
    let admin = admin_token(daemon.home());
    let reader = create_token(&daemon, &["reader", "--read-only"]);
    daemon.write_script("idle.sh", "while :; do sleep 1000; done");
    daemon.pmd_ok(&["start", "idle.sh", "--name", "web"]);
    daemon.wait_online("web");
    let (as_admin, as_reader) = (format!("bearer.{admin}"), format!("bearer.{reader}"));
    block_on(async {
        let (mut socket, _) = websocket(
            port,
            "/v1/processes/web:waitReady",
            &["pmdaemon.v1", &as_reader],
        )
        .await
        .expect("WebSocket");
        let (messages, code) = ws_until_close(&mut socket).await;
        assert_eq!(code, 1000, "{messages:?}");
        assert_eq!(
            messages.last().expect("a message")["ready"],
            true,
            "{messages:?}"
        );

        let (mut socket, _) = websocket(
            port,
            "/v1/processes/web:reload",
            &["pmdaemon.v1", &as_reader],
        )
        .await
        .expect("WebSocket");
        let (messages, code) = ws_until_close(&mut socket).await;
        assert_eq!(code, 1008, "{messages:?}");
        assert_eq!(messages[0]["error"]["code"], 7, "{messages:?}");

        let (mut socket, _) = websocket(
            port,
            "/v1/processes/web:reload",
            &["pmdaemon.v1", &as_admin],
        )
        .await
        .expect("WebSocket");
        let (messages, code) = ws_until_close(&mut socket).await;
        assert_eq!(code, 1000, "{messages:?}");
        let last = messages.last().expect("a message");
        assert_eq!(
            (&last["done"], &last["total"]),
            (&json!(1), &json!(1)),
            "{messages:?}"
        );
        assert_eq!(last["process"]["name"], "web", "{messages:?}");
    });
    daemon.pmd_ok(&["delete", "all"]);
}

/// A request body for `method` in the generated checks: `{}` where a body
/// may go, none on GET, HEAD and DELETE.
fn body_of(method: &str) -> Option<&'static str> {
    (!matches!(method, "GET" | "HEAD" | "DELETE")).then_some("{}")
}

/// The head of a raw HTTP/1.1 answer (up to the blank line) and what came
/// after it.
fn split_raw(raw: &str) -> (&str, &str) {
    raw.split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {raw:?}"))
}

/// A header of a raw HTTP/1.1 head, by name (any case).
fn raw_header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// HEAD answers as GET does, without a body (RFC 9110 9.3.2), on every GET
/// route of `/v1/openapi.json` (so a new one is covered) and on `/healthz`
/// and `/metrics`: the same status and Content-Type, the Content-Length of
/// the GET's body where it is stable, and nothing after the head on the
/// wire. A stream's HEAD ends at once (no stream is started); a HEAD is
/// checked as its GET is (a bad query is a 400, no token a 401).
#[test]
fn head_is_get_without_a_body() {
    let port = free_ports(1);
    let daemon = start_listening(port);
    let admin = admin_token(daemon.home());
    let bearer = format!("Bearer {admin}");
    daemon.write_script("idle.sh", "while :; do sleep 1000; done");
    daemon.pmd_ok(&["start", "idle.sh", "--name", "web"]);
    daemon.wait_online("web");
    let rest = Rest::new(port, Some(&admin));
    let mut paths: Vec<String> = block_on(documented_routes(&rest, "web"))
        .into_iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.path)
        .collect();
    assert!(paths.iter().any(|p| p == "/v1/logs"), "{paths:?}");
    paths.extend(["/healthz", "/metrics", "/v1/logs?target=web&follow=true"].map(String::from));
    for path in &paths {
        let (get_status, get_type) = block_on(async {
            let get = rest.send("GET", path, None).await;
            (
                get.status().as_u16(),
                get.headers().get("content-type").cloned(),
            )
        });
        let raw = http_raw(port, "HEAD", path, &[("Authorization", &bearer)]);
        let (head, after) = split_raw(&raw);
        assert!(
            head.starts_with(&format!("HTTP/1.1 {get_status} ")),
            "HEAD {path} vs GET's {get_status}: {head}"
        );
        assert_eq!(after, "", "HEAD {path}: a body on the wire");
        assert_eq!(
            raw_header(head, "content-type"),
            get_type.as_ref().map(|t| t.to_str().unwrap()),
            "HEAD {path}: {head}"
        );
    }
    // Where the GET's body is the same each time, so is the length.
    for path in ["/healthz", "/v1/ping", "/v1/openapi.json"] {
        let got = http_raw(port, "GET", path, &[("Authorization", &bearer)]);
        let (_, body) = split_raw(&got);
        let raw = http_raw(port, "HEAD", path, &[("Authorization", &bearer)]);
        let (head, _) = split_raw(&raw);
        assert_eq!(
            raw_header(head, "content-length"),
            Some(body.len().to_string().as_str()),
            "HEAD {path}: {head}"
        );
    }
    let bad_query = http_raw(
        port,
        "HEAD",
        "/v1/logs?bogus=1",
        &[("Authorization", &bearer)],
    );
    assert!(bad_query.starts_with("HTTP/1.1 400 "), "{bad_query}");
    let no_token = http_raw(port, "HEAD", "/v1/processes", &[]);
    let (head, after) = split_raw(&no_token);
    assert!(head.starts_with("HTTP/1.1 401 "), "{head}");
    assert_eq!(raw_header(head, "www-authenticate"), Some("Bearer"));
    assert_eq!(after, "");
    daemon.pmd_ok(&["delete", "all"]);
}

/// Every path of `/v1/openapi.json` (generated from the descriptor, so a
/// new route is covered), with every method it does not take: 405, an
/// `Allow` header naming exactly the methods it takes (HEAD with GET), and
/// the JSON error body. A verb rule owns its path: `GET
/// /v1/processes/web:restart` is not GetProcess of `web:restart`, and
/// `DELETE /v1/processes/web:stop` deletes nothing. The same for the
/// routes outside the gateway (`/healthz`, `/metrics`).
#[test]
fn wrong_methods_are_405_with_allow() {
    use std::collections::BTreeMap;
    let port = free_ports(1);
    let daemon = start_listening(port);
    let admin = admin_token(daemon.home());
    daemon.write_script("idle.sh", "while :; do sleep 1000; done");
    daemon.pmd_ok(&["start", "idle.sh", "--name", "web"]);
    let pid = daemon.wait_online("web");
    let rest = Rest::new(port, Some(&admin));
    block_on(async {
        let mut by_path: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for route in documented_routes(&rest, "web").await {
            by_path.entry(route.path).or_default().insert(route.method);
        }
        for path in ["/healthz", "/metrics"] {
            by_path.insert(path.into(), ["GET".to_string()].into());
        }
        assert!(
            by_path.contains_key("/v1/processes/web:restart"),
            "{by_path:?}"
        );
        let mut checked = 0;
        for (path, methods) in &by_path {
            let mut allowed = methods.clone();
            if allowed.contains("GET") {
                allowed.insert("HEAD".into());
            }
            for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] {
                if allowed.contains(method) {
                    continue;
                }
                let got = rest.call(method, path, body_of(method)).await;
                assert_eq!(got.status, 405, "{method} {path}: {got:?}");
                let allow: BTreeSet<String> = got
                    .headers
                    .get("allow")
                    .unwrap_or_else(|| panic!("{method} {path}: no Allow: {got:?}"))
                    .to_str()
                    .expect("Allow is text")
                    .split(',')
                    .map(|m| m.trim().to_string())
                    .collect();
                assert_eq!(allow, allowed, "{method} {path}: Allow");
                if method != "HEAD" {
                    assert_eq!(
                        got.headers["content-type"], "application/json",
                        "{method} {path}"
                    );
                    assert_eq!(got.body["code"], 12, "{method} {path}: {got:?}");
                    assert!(
                        got.body["message"]
                            .as_str()
                            .is_some_and(|m| m.contains(method)),
                        "{method} {path}: {got:?}"
                    );
                    assert_eq!(got.body["details"], json!([]), "{method} {path}");
                }
                checked += 1;
            }
        }
        assert!(checked > 50, "only {checked} wrong methods tried");
        let unknown = rest.call("GET", "/v1/processes/web:frobnicate", None).await;
        assert_ne!(unknown.status, 200, "{unknown:?}");
    });
    let web = daemon.app("web").expect("web is still there");
    assert_eq!(pid_of(&web), Some(pid), "web was not touched: {web}");
    assert_eq!(daemon.list_json().len(), 1);
    daemon.pmd_ok(&["delete", "all"]);
}

/// A body over `limits.max_body_bytes` (config.yaml) is a 413 with the
/// JSON error body, whether it is declared (Content-Length) or not
/// (chunked), and nothing is created; one under it is served. A body whose
/// Content-Type is neither JSON nor form-urlencoded (`curl -d`) is a 415
/// that says what to send, and creates nothing; no Content-Type is JSON.
#[test]
fn body_size_and_content_type() {
    let port = free_ports(1);
    let mut daemon = TestDaemon::new_stopped();
    std::fs::write(
        daemon.home().join("config.yaml"),
        format!("listen: ['127.0.0.1:{port}']\nlimits:\n  max_body_bytes: 1K\n"),
    )
    .unwrap();
    daemon.spawn_daemon();
    let admin = admin_token(daemon.home());
    let bearer = format!("Bearer {admin}");
    let script = daemon.write_script("idle.sh", "while :; do sleep 1000; done");
    let spec = json!({"spec": {"name": "web", "script": script}}).to_string();
    // Valid JSON either way: the size alone decides.
    let padded = |len: usize| format!("{spec}{}", " ".repeat(len - spec.len()));
    let rest = Rest::new(port, Some(&admin));
    block_on(async {
        let over = rest
            .call("POST", "/v1/processes", Some(&padded(1025)))
            .await;
        assert_eq!(over.status, 413, "{over:?}");
        assert_eq!(over.body["code"], 3, "{over:?}");
        assert!(
            over.body["message"]
                .as_str()
                .is_some_and(|m| m.contains("max_body_bytes") && m.contains("1024")),
            "{over:?}"
        );
    });
    // Chunked: no length declared, the limit is met while reading.
    let body = padded(2000);
    let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let raw = http_raw_with_body(
        port,
        "POST",
        "/v1/processes",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked"),
        ],
        chunked.as_bytes(),
    );
    assert!(raw.starts_with("HTTP/1.1 413 "), "{raw}");
    assert!(raw.contains("max_body_bytes"), "{raw}");
    assert!(daemon.list_json().is_empty(), "nothing was created");

    block_on(async {
        for content_type in [
            "text/plain",
            "application/xml",
            "application/octet-stream",
            "multipart/form-data; boundary=x",
        ] {
            let refused = rest
                .call_with(
                    "POST",
                    "/v1/processes",
                    &[("content-type", content_type)],
                    Some(&spec),
                )
                .await;
            assert_eq!(refused.status, 415, "{content_type}: {refused:?}");
            assert_eq!(refused.body["code"], 3, "{content_type}: {refused:?}");
            assert!(
                refused.body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("application/json")),
                "{content_type}: {refused:?}"
            );
            assert_eq!(refused.headers["accept"], "application/json");
        }
        for content_type in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/vnd.pmdaemon+json",
            "application/x-www-form-urlencoded",
        ] {
            let served = rest
                .call_with(
                    "POST",
                    "/v1/dump:save",
                    &[("content-type", content_type)],
                    Some("{}"),
                )
                .await;
            assert_eq!(served.status, 200, "{content_type}: {served:?}");
        }
        let bare = rest
            .call_with("POST", "/v1/dump:save", &[], Some("{}"))
            .await;
        assert_eq!(bare.status, 200, "no Content-Type: {bare:?}");
    });
    assert!(daemon.list_json().is_empty(), "nothing was created");
    block_on(async {
        let under = rest
            .call("POST", "/v1/processes", Some(&padded(1024)))
            .await;
        assert_eq!(under.status, 200, "{under:?}");
    });
    daemon.wait_online("web");
    daemon.pmd_ok(&["delete", "all"]);
}

/// WebSocket over HTTP/2 (RFC 8441 extended CONNECT) on the gateway's
/// routes, with hyper's HTTP/2 client: h2c with prior knowledge on a plain
/// port, and TLS with ALPN h2 on another daemon's TLS port. On each, a log
/// stream delivers a line written after it opened, a verb route
/// (`:waitReady`) runs to its 1000 close on the same connection, the
/// bearer subprotocol is checked (a wrong token is a 401) and the daemon
/// answers `pmdaemon.v1`.
#[test]
fn websocket_over_http2() {
    let ca = TestCa::new();
    let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]);
    let ports = free_ports(2);
    let plain = start_listening(ports);
    let mut tls = TestDaemon::new_stopped();
    let dir = tls.work().to_path_buf();
    for (name, text) in [("cert.pem", &cert), ("key.pem", &key)] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let file = |name: &str| dir.join(name).display().to_string();
    tls.set_daemon_args(&[
        "--listen",
        &format!("127.0.0.1:{}", ports + 1),
        "--tls-cert",
        &file("cert.pem"),
        "--tls-key",
        &file("key.pem"),
    ]);
    tls.spawn_daemon();
    let ca_pem = ca.pem();
    for (daemon, port, ca) in [
        (&plain, ports, None),
        (&tls, ports + 1, Some(ca_pem.as_str())),
    ] {
        let scheme = if ca.is_some() { "https" } else { "http" };
        let admin = admin_token(daemon.home());
        let work = daemon.work().display().to_string();
        daemon.write_script(
            "talker.sh",
            &format!(
                "echo started\nwhile :; do\n  [ -f {work}/go ] && echo line-go-h2\n  sleep 0.1\ndone"
            ),
        );
        daemon.pmd_ok(&["start", "talker.sh", "--name", "talker"]);
        daemon.wait_online("talker");
        let bearer = format!("bearer.{admin}");
        let wrong = format!("bearer.pmd_{}", "0".repeat(64));
        let path = "/v1/logs?target=talker&follow=true";
        block_on(async {
            let mut h2 = h2_connect(port, ca).await;
            let refused = websocket_h2(&mut h2, scheme, port, path, &["pmdaemon.v1", &wrong])
                .await
                .map(|(_, headers)| headers);
            match refused {
                Err((401, headers)) => assert_eq!(headers["www-authenticate"], "Bearer"),
                other => panic!("{scheme}: a wrong token: {other:?}"),
            }
            let (mut socket, headers) =
                websocket_h2(&mut h2, scheme, port, path, &["pmdaemon.v1", &bearer])
                    .await
                    .unwrap_or_else(|e| panic!("{scheme}: WebSocket over HTTP/2: {e:?}"));
            assert_eq!(headers["sec-websocket-protocol"], "pmdaemon.v1");
            // The stream is open before the line exists.
            std::fs::write(daemon.work().join("go"), "").unwrap();
            loop {
                let message = ws_next(&mut socket).await.expect("the socket stays open");
                assert!(message.get("error").is_none(), "{message}");
                if texts(&message).iter().any(|t| t == "line-go-h2") {
                    break;
                }
            }
            // A verb route on the same connection, beside the open stream.
            let (mut ready, _) = websocket_h2(
                &mut h2,
                scheme,
                port,
                "/v1/processes/talker:waitReady",
                &["pmdaemon.v1", &bearer],
            )
            .await
            .unwrap_or_else(|e| panic!("{scheme}: :waitReady over HTTP/2: {e:?}"));
            let (messages, code) = ws_until_close(&mut ready).await;
            assert_eq!(code, 1000, "{messages:?}");
            assert_eq!(messages.last().expect("a message")["ready"], true);
            let more = ws_next(&mut socket)
                .await
                .expect("the log stream is still open");
            assert!(more.get("error").is_none(), "{more}");
        });
        daemon.pmd_ok(&["delete", "all"]);
    }
}
