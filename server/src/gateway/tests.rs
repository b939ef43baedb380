//! The gateway over a real loopback socket: `router(grpc)` served by axum,
//! with `grpc` the tonic routes of a small test ProcessManager (test code
//! only), called with hyper's client and a tungstenite WebSocket. A test
//! layer puts a marker extension on every outer request; the test service
//! refuses any call that does not carry it, which proves the extensions
//! are copied onto the in-process call. Streams are driven through
//! channels: the test decides when each message is produced.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{Method, Request, StatusCode};
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use pmdaemon_proto::v1;
use pmdaemon_proto::v1::process_manager_server::{ProcessManager, ProcessManagerServer};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};
use tower::ServiceExt;

use super::{Grpc, OPENAPI_PATH, router};

/// What the test layer puts on the outer request.
#[derive(Clone)]
struct Marker;

type Stream<T> = ReceiverStream<Result<T, Status>>;

/// The test service: records the requests the tests inspect and serves
/// the streams from channels the tests hold.
#[derive(Default)]
struct TestPm {
    logs_requests: Mutex<Option<mpsc::Sender<v1::StreamLogsRequest>>>,
    logs_stream: Mutex<Option<mpsc::Receiver<Result<v1::StreamLogsResponse, Status>>>>,
}

fn marked<T>(request: &tonic::Request<T>) -> Result<(), Status> {
    match request.extensions().get::<Marker>() {
        Some(_) => Ok(()),
        None => Err(Status::failed_precondition(
            "the outer request's extensions were not copied",
        )),
    }
}

fn info(name: &str) -> v1::ProcessInfo {
    v1::ProcessInfo {
        id: 7,
        name: name.to_string(),
        state: v1::ProcessState::Online as i32,
        created_at_ms: 1_700_000_000_123,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl ProcessManager for TestPm {
    async fn start_process(
        &self,
        request: tonic::Request<v1::StartProcessRequest>,
    ) -> Result<tonic::Response<v1::StartProcessResponse>, Status> {
        marked(&request)?;
        let r = request.into_inner();
        let spec = r.spec.unwrap_or_default();
        let mut p = info(&spec.name);
        p.cwd = r.caller_cwd;
        p.memory_bytes = spec.max_memory_bytes;
        p.argv = spec
            .env
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        Ok(tonic::Response::new(v1::StartProcessResponse {
            processes: vec![p],
        }))
    }

    async fn stop_process(
        &self,
        request: tonic::Request<v1::StopProcessRequest>,
    ) -> Result<tonic::Response<v1::StopProcessResponse>, Status> {
        marked(&request)?;
        Ok(tonic::Response::new(v1::StopProcessResponse {
            processes: vec![info(&request.into_inner().target)],
        }))
    }

    async fn restart_process(
        &self,
        _: tonic::Request<v1::RestartProcessRequest>,
    ) -> Result<tonic::Response<v1::RestartProcessResponse>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn create_token(
        &self,
        _: tonic::Request<v1::CreateTokenRequest>,
    ) -> Result<tonic::Response<v1::CreateTokenResponse>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn list_tokens(
        &self,
        _: tonic::Request<v1::ListTokensRequest>,
    ) -> Result<tonic::Response<v1::ListTokensResponse>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn revoke_token(
        &self,
        _: tonic::Request<v1::RevokeTokenRequest>,
    ) -> Result<tonic::Response<v1::RevokeTokenResponse>, Status> {
        Err(Status::unimplemented("test"))
    }

    type ReloadProcessStream = Stream<v1::ReloadProcessResponse>;
    async fn reload_process(
        &self,
        _: tonic::Request<v1::ReloadProcessRequest>,
    ) -> Result<tonic::Response<Self::ReloadProcessStream>, Status> {
        Err(Status::unimplemented("test"))
    }

    type WaitReadyStream = Stream<v1::WaitReadyResponse>;
    async fn wait_ready(
        &self,
        _: tonic::Request<v1::WaitReadyRequest>,
    ) -> Result<tonic::Response<Self::WaitReadyStream>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn scale_process(
        &self,
        request: tonic::Request<v1::ScaleProcessRequest>,
    ) -> Result<tonic::Response<v1::ScaleProcessResponse>, Status> {
        marked(&request)?;
        let r = request.into_inner();
        Ok(tonic::Response::new(v1::ScaleProcessResponse {
            processes: vec![info(&r.name)],
            delta: r.instances,
        }))
    }

    async fn apply_apps(
        &self,
        _: tonic::Request<v1::ApplyAppsRequest>,
    ) -> Result<tonic::Response<v1::ApplyAppsResponse>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn delete_process(
        &self,
        request: tonic::Request<v1::DeleteProcessRequest>,
    ) -> Result<tonic::Response<v1::DeleteProcessResponse>, Status> {
        marked(&request)?;
        let r = request.into_inner();
        let status =
            v1::ProcessState::try_from(r.status).map_err(|_| Status::invalid_argument("status"))?;
        Ok(tonic::Response::new(v1::DeleteProcessResponse {
            processes: vec![info(&r.target)],
            kept: vec![status.as_str_name().to_string()],
        }))
    }

    async fn list_processes(
        &self,
        request: tonic::Request<v1::ListProcessesRequest>,
    ) -> Result<tonic::Response<v1::ListProcessesResponse>, Status> {
        marked(&request)?;
        Ok(tonic::Response::new(v1::ListProcessesResponse {
            processes: vec![info("api")],
        }))
    }

    /// A numeric target fails with that gRPC code (the error table).
    async fn get_process(
        &self,
        request: tonic::Request<v1::GetProcessRequest>,
    ) -> Result<tonic::Response<v1::GetProcessResponse>, Status> {
        marked(&request)?;
        let target = request.into_inner().target;
        if let Ok(code) = target.parse::<i32>() {
            return Err(Status::new(
                Code::from_i32(code),
                format!("failed with {code}"),
            ));
        }
        Ok(tonic::Response::new(v1::GetProcessResponse {
            processes: vec![info(&target)],
        }))
    }

    type StreamLogsStream = Stream<v1::StreamLogsResponse>;
    async fn stream_logs(
        &self,
        request: tonic::Request<v1::StreamLogsRequest>,
    ) -> Result<tonic::Response<Self::StreamLogsStream>, Status> {
        marked(&request)?;
        let r = request.into_inner();
        if r.target == "denied" {
            return Err(Status::permission_denied("d".repeat(300)));
        }
        let seen = self.logs_requests.lock().unwrap().clone();
        if let Some(seen) = seen {
            let _ = seen.send(r).await;
        }
        let stream = self.logs_stream.lock().unwrap().take();
        let stream = stream.ok_or_else(|| Status::unavailable("one log stream per test"))?;
        Ok(tonic::Response::new(ReceiverStream::new(stream)))
    }

    async fn flush_logs(
        &self,
        _: tonic::Request<v1::FlushLogsRequest>,
    ) -> Result<tonic::Response<v1::FlushLogsResponse>, Status> {
        Err(Status::unimplemented("test"))
    }

    type StreamMetricsStream = Stream<v1::StreamMetricsResponse>;
    async fn stream_metrics(
        &self,
        _: tonic::Request<v1::StreamMetricsRequest>,
    ) -> Result<tonic::Response<Self::StreamMetricsStream>, Status> {
        Err(Status::unimplemented("test"))
    }

    type WatchEventsStream = Stream<v1::WatchEventsResponse>;
    async fn watch_events(
        &self,
        _: tonic::Request<v1::WatchEventsRequest>,
    ) -> Result<tonic::Response<Self::WatchEventsStream>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn ping(
        &self,
        request: tonic::Request<v1::PingRequest>,
    ) -> Result<tonic::Response<v1::PingResponse>, Status> {
        marked(&request)?;
        Ok(tonic::Response::new(v1::PingResponse {
            version: "test".into(),
            ..Default::default()
        }))
    }

    async fn save_processes(
        &self,
        _: tonic::Request<v1::SaveProcessesRequest>,
    ) -> Result<tonic::Response<v1::SaveProcessesResponse>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn resurrect(
        &self,
        _: tonic::Request<v1::ResurrectRequest>,
    ) -> Result<tonic::Response<v1::ResurrectResponse>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn shutdown(
        &self,
        _: tonic::Request<v1::ShutdownRequest>,
    ) -> Result<tonic::Response<v1::ShutdownResponse>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn reset_process(
        &self,
        _: tonic::Request<v1::ResetProcessRequest>,
    ) -> Result<tonic::Response<v1::ResetProcessResponse>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn signal_process(
        &self,
        _: tonic::Request<v1::SignalProcessRequest>,
    ) -> Result<tonic::Response<v1::SignalProcessResponse>, Status> {
        Err(Status::unimplemented("test"))
    }

    async fn get_process_env(
        &self,
        _: tonic::Request<v1::GetProcessEnvRequest>,
    ) -> Result<tonic::Response<v1::GetProcessEnvResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
}

/// The test's ends of the log stream: the requests StreamLogs received and
/// the sender of its messages.
struct LogStream {
    requests: mpsc::Receiver<v1::StreamLogsRequest>,
    messages: mpsc::Sender<Result<v1::StreamLogsResponse, Status>>,
}

/// Serves `router(grpc)` on a loopback port, each outer request marked
/// when `mark`.
async fn serve_with(mark: bool) -> (SocketAddr, LogStream) {
    let (req_tx, requests) = mpsc::channel(4);
    // Capacity 1: the test produces each message only when it wants.
    let (messages, stream_rx) = mpsc::channel(1);
    let pm = TestPm {
        logs_requests: Mutex::new(Some(req_tx)),
        logs_stream: Mutex::new(Some(stream_rx)),
    };
    let grpc = Grpc::new(tonic::service::Routes::new(ProcessManagerServer::new(pm)));
    let mut app = router(grpc).expect("routes from the descriptor");
    if mark {
        app = app.layer(tower::util::MapRequestLayer::new(
            |mut request: axum::extract::Request| {
                request.extensions_mut().insert(Marker);
                // What the authentication layer inserts for an admin
                // token (a HEAD of a stream asks its rule directly).
                request
                    .extensions_mut()
                    .insert(crate::auth::token::Scope::Admin);
                request
            },
        ));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, LogStream { requests, messages })
}

async fn serve() -> (SocketAddr, LogStream) {
    serve_with(true).await
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: &str,
) -> hyper::Response<hyper::body::Incoming> {
    let request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    client().request(request).await.expect("HTTP answer")
}

/// One unary call: the HTTP status and the JSON body.
async fn call(addr: SocketAddr, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
    let response = send(addr, method, path, body).await;
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{path}: not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, json)
}

/// Reads an NDJSON body line by line, as the frames arrive.
struct Lines {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
}

impl Lines {
    /// The next line, None at the end of the body.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return Some(serde_json::from_slice(&line).expect("a JSON line"));
            }
            match self.body.frame().await {
                Some(frame) => {
                    if let Ok(data) = frame.unwrap().into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                None => {
                    assert!(self.buf.is_empty(), "partial last line");
                    return None;
                }
            }
        }
    }
}

fn log_line(seq: u64, text: &str) -> v1::StreamLogsResponse {
    v1::StreamLogsResponse {
        lines: vec![v1::LogLine {
            seq,
            name: "api".into(),
            stream: v1::LogStream::Stdout as i32,
            data: text.as_bytes().to_vec(),
            ..Default::default()
        }],
        missed_lines: 0,
    }
}

#[tokio::test]
async fn unary_get_is_proto3_json_with_defaults() {
    let (addr, _) = serve().await;
    let (status, body) = call(addr, Method::GET, "/v1/processes", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let p = &body["processes"][0];
    assert_eq!(p["name"], "api");
    assert_eq!(p["state"], "PROCESS_STATE_ONLINE");
    assert_eq!(p["createdAtMs"], "1700000000123");
    // Defaults are written, as grpc-gateway's default marshaler does.
    assert_eq!(p["restarts"], 0);
    assert_eq!(p["statusReason"], "");
    let (status, body) = call(addr, Method::GET, "/v1/processes/web", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["processes"][0]["name"], "web");
    let (status, body) = call(addr, Method::GET, "/v1/ping", "").await;
    assert_eq!((status, &body["version"]), (StatusCode::OK, &json!("test")));
}

#[tokio::test]
async fn post_body_path_fields_and_verbs() {
    let (addr, _) = serve().await;
    let body = r#"{"spec": {"name": "web", "script": "/bin/true", "env": {"A": "1"},
                   "maxMemoryBytes": "1048576"}, "caller_cwd": "/srv"}"#;
    let (status, reply) = call(addr, Method::POST, "/v1/processes", body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let p = &reply["processes"][0];
    assert_eq!(p["name"], "web");
    assert_eq!(p["cwd"], "/srv");
    assert_eq!(p["memoryBytes"], "1048576");
    assert_eq!(p["argv"], json!(["A=1"]));

    // `:verb` with the path variable, an empty body.
    let (status, reply) = call(addr, Method::POST, "/v1/processes/api%2Dx:stop", "").await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["processes"][0]["name"], "api-x");
    // Path field plus body, the path winning over the body's copy.
    let (status, reply) = call(
        addr,
        Method::POST,
        "/v1/processes/web:scale",
        r#"{"instances": 3, "name": "other"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["processes"][0]["name"], "web");
    assert_eq!(reply["delta"], 3);
    // A verb rule owns its path: GET there is not GetProcess of a target
    // `web:stop` but a 405 naming the rule's method; an unknown verb is
    // not a route of any method.
    let response = send(addr, Method::GET, "/v1/processes/web:stop", "").await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");
    let (status, reply) = call(addr, Method::POST, "/v1/processes/web:nope", "{}").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{reply}");
}

#[tokio::test]
async fn delete_with_an_enum_query_by_name_or_number() {
    let (addr, _) = serve().await;
    for query in ["status=PROCESS_STATE_ERRORED", "status=5"] {
        let path = format!("/v1/processes/all?{query}");
        let (status, reply) = call(addr, Method::DELETE, &path, "").await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(reply["processes"][0]["name"], "all");
        assert_eq!(reply["kept"], json!(["PROCESS_STATE_ERRORED"]));
    }
}

#[tokio::test]
async fn unknown_fields_are_refused_by_name() {
    let (addr, _) = serve().await;
    let (status, reply) = call(
        addr,
        Method::POST,
        "/v1/processes",
        r#"{"spec": {"name": "web", "bogusField": 1}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reply["code"], Code::InvalidArgument as i32);
    assert!(
        reply["message"].as_str().unwrap().contains("bogusField"),
        "{reply}"
    );
    let (status, reply) = call(addr, Method::GET, "/v1/logs?target=a&nosuch=1", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        reply["message"].as_str().unwrap().contains("nosuch"),
        "{reply}"
    );
    let (status, reply) = call(addr, Method::GET, "/v1/logs?follow=maybe", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        reply["message"].as_str().unwrap().contains("follow"),
        "{reply}"
    );
}

/// A value of the wrong type or range is refused with the dotted path of
/// its field, in the body and in the query: found by the schemathesis run
/// (tests/tests/e2e/schemathesis.rs), where `{"timeoutMs": ""}` and
/// `?afterSeq=` were answered "cannot parse integer from empty string"
/// without saying which field.
#[tokio::test]
async fn refused_values_name_their_field() {
    let (addr, _) = serve().await;
    for (method, path, body, field) in [
        (
            Method::POST,
            "/v1/processes/web:waitReady",
            r#"{"timeoutMs": ""}"#,
            "timeoutMs:",
        ),
        (
            Method::POST,
            "/v1/processes/web:waitReady",
            r#"{"timeoutMs": -1}"#,
            "timeoutMs:",
        ),
        (
            Method::POST,
            "/v1/processes/web:waitReady",
            r#"{"baseline": [{"id": 1}, {"restarts": "q"}]}"#,
            "baseline[1].restarts:",
        ),
        (
            Method::POST,
            "/v1/processes",
            r#"{"spec": {"name": "web", "killTimeoutMs": "soon"}}"#,
            "spec.killTimeoutMs:",
        ),
        (
            Method::POST,
            "/v1/processes",
            r#"{"spec": {"name": "web", "env": {"A": 1}}}"#,
            "spec.env.A:",
        ),
        (Method::GET, "/v1/logs?afterSeq=", "", "afterSeq:"),
        (Method::GET, "/v1/logs?lines=-1", "", "lines:"),
        (Method::GET, "/v1/logs?stream=LOUD", "", "stream:"),
    ] {
        let (status, reply) = call(addr, method.clone(), path, body).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {body}: {reply}"
        );
        assert_eq!(reply["code"], Code::InvalidArgument as i32);
        assert!(
            reply["message"].as_str().unwrap().contains(field),
            "{method} {path} {body}: the message does not name {field} {reply}"
        );
    }
}

#[tokio::test]
async fn grpc_codes_become_http_statuses() {
    let (addr, _) = serve().await;
    let table = [
        (Code::Cancelled, 500),
        (Code::Unknown, 500),
        (Code::InvalidArgument, 400),
        (Code::DeadlineExceeded, 504),
        (Code::NotFound, 404),
        (Code::AlreadyExists, 409),
        (Code::PermissionDenied, 403),
        (Code::ResourceExhausted, 429),
        (Code::FailedPrecondition, 400),
        (Code::Aborted, 409),
        (Code::OutOfRange, 400),
        (Code::Unimplemented, 501),
        (Code::Internal, 500),
        (Code::Unavailable, 503),
        (Code::DataLoss, 500),
        (Code::Unauthenticated, 401),
    ];
    for (code, http) in table {
        let n = code as i32;
        let response = send(addr, Method::GET, &format!("/v1/processes/{n}"), "").await;
        assert_eq!(response.status().as_u16(), http, "{code:?}");
        if code == Code::Unauthenticated {
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
        }
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            body,
            json!({"code": n, "message": format!("failed with {n}"), "details": []})
        );
    }
}

#[tokio::test]
async fn extensions_of_the_outer_request_reach_the_service() {
    // Without the test layer's marker, the test service refuses the call:
    // what the marked tests see is the marker copied through.
    let (addr, _) = serve_with(false).await;
    let (status, reply) = call(addr, Method::GET, "/v1/processes", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        reply["message"].as_str().unwrap().contains("not copied"),
        "{reply}"
    );
}

#[tokio::test]
async fn ndjson_delivers_each_message_as_it_is_produced() {
    let (addr, mut logs) = serve().await;
    let response = send(
        addr,
        Method::GET,
        "/v1/logs?target=api&lines=5&follow=true&stream=LOG_STREAM_STDERR&afterSeq=12345678901234",
        "",
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let seen = logs.requests.recv().await.unwrap();
    assert_eq!(
        (
            seen.target.as_str(),
            seen.lines,
            seen.follow,
            seen.stream,
            seen.after_seq
        ),
        (
            "api",
            5,
            true,
            v1::LogStream::Stderr as i32,
            Some(12_345_678_901_234)
        )
    );
    let mut lines = Lines {
        body: response.into_body(),
        buf: Vec::new(),
    };
    // Each line is read before the next message exists.
    for seq in 1..=3u64 {
        logs.messages
            .send(Ok(log_line(seq, "hello")))
            .await
            .unwrap();
        let line = lines.next().await.unwrap();
        assert_eq!(line["result"]["lines"][0]["seq"], seq.to_string());
        assert_eq!(line["result"]["lines"][0]["data"], "aGVsbG8=");
    }
    logs.messages
        .send(Err(Status::unavailable("daemon shutting down")))
        .await
        .unwrap();
    let last = lines.next().await.unwrap();
    assert_eq!(
        last,
        json!({"error": {"code": 14, "message": "daemon shutting down", "details": []}})
    );
    assert_eq!(lines.next().await, None);
}

/// HEAD of a streaming GET: the stream's head, no body, and no call (the
/// service records every StreamLogs request before it answers, so one
/// made for the HEAD would be there once the answer came).
#[tokio::test]
async fn head_of_a_stream_starts_no_call() {
    let (addr, mut logs) = serve().await;
    let response = send(addr, Method::HEAD, "/v1/logs?target=api&follow=true", "").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
    assert!(logs.requests.try_recv().is_err(), "StreamLogs was called");
    // HEAD of a unary GET is its call, answered without the body.
    let response = send(addr, Method::HEAD, "/v1/processes", "").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
}

#[tokio::test]
async fn a_stream_failing_at_once_is_an_http_error() {
    let (addr, _) = serve().await;
    let (status, reply) = call(addr, Method::GET, "/v1/logs?target=denied", "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(reply["code"], Code::PermissionDenied as i32);
}

async fn websocket(
    addr: SocketAddr,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
        .await
        .expect("WebSocket handshake");
    socket
}

use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test]
async fn websocket_streams_then_closes_normally() {
    let (addr, mut logs) = serve().await;
    let mut socket = websocket(addr, "/v1/logs?target=api&follow=1").await;
    let seen = logs.requests.recv().await.unwrap();
    assert_eq!((seen.target.as_str(), seen.follow), ("api", true));
    for seq in 1..=2u64 {
        logs.messages.send(Ok(log_line(seq, "hi"))).await.unwrap();
        let WsMessage::Text(text) = socket.next().await.unwrap().unwrap() else {
            panic!("a text message");
        };
        let message: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(message["lines"][0]["seq"], seq.to_string());
    }
    drop(logs.messages);
    match socket.next().await.unwrap().unwrap() {
        WsMessage::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn websocket_errors_close_with_1011() {
    let (addr, logs) = serve().await;
    let mut socket = websocket(addr, "/v1/logs?follow=true").await;
    logs.messages
        .send(Err(Status::internal("the log hub went away")))
        .await
        .unwrap();
    let WsMessage::Text(text) = socket.next().await.unwrap().unwrap() else {
        panic!("the error as a text message");
    };
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["error"]["code"], Code::Internal as i32);
    match socket.next().await.unwrap().unwrap() {
        WsMessage::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::Error);
            assert_eq!(frame.reason.as_str(), "the log hub went away");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn websocket_refusals_close_with_1008_and_a_cut_reason() {
    let (addr, _) = serve().await;
    let mut socket = websocket(addr, "/v1/logs?target=denied").await;
    let WsMessage::Text(text) = socket.next().await.unwrap().unwrap() else {
        panic!("the error as a text message");
    };
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["error"]["message"].as_str().unwrap().len(), 300);
    match socket.next().await.unwrap().unwrap() {
        WsMessage::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::Policy);
            assert_eq!(frame.reason.as_str(), "d".repeat(123));
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    // A bad query is reported the same way, after the handshake.
    let mut socket = websocket(addr, "/v1/logs?bogus=1").await;
    let _ = socket.next().await.unwrap().unwrap();
    match socket.next().await.unwrap().unwrap() {
        WsMessage::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Error),
        other => panic!("expected a close frame, got {other:?}"),
    }
    let _ = socket.close(None).await;
}

/// Every operation of the OpenAPI document reaches, through the router,
/// the gRPC method it names; every annotated RPC (but the local-only ones)
/// is in the document; a path the document does not have is not routed.
#[tokio::test]
async fn openapi_document_and_routes_agree() {
    let called: Arc<Mutex<Vec<String>>> = Arc::default();
    let recorder = called.clone();
    let grpc = Grpc::new(tower::service_fn(
        move |request: axum::http::Request<tonic::body::Body>| {
            let recorder = recorder.clone();
            async move {
                recorder
                    .lock()
                    .unwrap()
                    .push(request.uri().path().to_string());
                Ok::<_, Infallible>(Status::unimplemented("stub").into_http())
            }
        },
    ));
    let app = router(grpc).unwrap();
    let response = app
        .clone()
        .oneshot(
            Request::get(OPENAPI_PATH)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    let mut documented = Vec::new();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, op) in operations.as_object().unwrap() {
            assert_eq!(op["security"], json!([{"bearer": []}]), "{method} {path}");
            if path == OPENAPI_PATH {
                continue;
            }
            let grpc_path = op["x-grpc-method"].as_str().unwrap().to_string();
            let concrete = super::template::Template::parse(path)
                .unwrap()
                .fill(|_| "x1".to_string());
            let request = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&concrete)
                .body(axum::body::Body::from(if op.get("requestBody").is_some() {
                    "{}"
                } else {
                    ""
                }))
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::NOT_IMPLEMENTED,
                "{method} {concrete} did not reach the stub"
            );
            assert_eq!(
                called.lock().unwrap().pop().as_deref(),
                Some(grpc_path.as_str()),
                "{method} {concrete}"
            );
            let streaming = op["responses"]["200"]["content"]
                .get("application/x-ndjson")
                .is_some();
            documented.push((grpc_path, streaming));
        }
    }
    documented.sort();

    // Every RPC with an HTTP rule, from the descriptor itself.
    let pool = prost_reflect::DescriptorPool::decode(pmdaemon_proto::API_DESCRIPTOR_SET).unwrap();
    let http = pool.get_extension_by_name("google.api.http").unwrap();
    let mut annotated = Vec::new();
    for service in pool.services() {
        for method in service.methods() {
            let path = format!("/{}/{}", service.full_name(), method.name());
            let local = pmdaemon_proto::method_access(&path) == Some(v1::Access::LocalOnly);
            if method.options().has_extension(&http) && !local {
                annotated.push((path, method.is_server_streaming()));
            }
        }
    }
    annotated.sort();
    assert_eq!(documented, annotated);
    assert!(
        annotated
            .iter()
            .any(|(p, s)| p.ends_with("/StreamLogs") && *s)
    );

    // A path of no rule is not routed.
    for (method, path) in [
        (Method::GET, "/v1/nowhere"),
        (Method::POST, "/v1/apps:nope"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    assert!(called.lock().unwrap().is_empty());
}

/// Every operation documents exactly the statuses it can answer, each
/// error with the error body: no `default`, so a status the document does
/// not list is a bug (schemathesis' status_code_conformance holds the
/// daemon to it). Pinned: 504 (DEADLINE_EXCEEDED, e.g. WaitReady) and 501
/// were missing while `default` hid them; 403 is only where a read-only
/// token is refused, 413 and 415 only where a body is read; 401 carries
/// `WWW-Authenticate`.
#[test]
fn openapi_error_responses_are_those_the_gateway_answers() {
    let pool = prost_reflect::DescriptorPool::decode(pmdaemon_proto::API_DESCRIPTOR_SET).unwrap();
    let routes = super::rules::routes(&pool).unwrap();
    let doc = super::openapi::document(&routes);
    let mut from_mapping: Vec<u16> = (1..=16)
        .map(|c| super::respond::http_status(Code::from_i32(c)).as_u16())
        .collect();
    from_mapping.sort();
    from_mapping.dedup();
    for route in &routes {
        let method = route.http_method.as_str().to_ascii_lowercase();
        let op = &doc["paths"][&route.pattern][&method];
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.get("default").is_none(),
            "{method} {}",
            route.pattern
        );
        let read_only =
            pmdaemon_proto::method_access(&route.grpc_path) == Some(v1::Access::ReadOnly);
        let has_body = op.get("requestBody").is_some();
        let mut expected: Vec<u16> = from_mapping
            .iter()
            .copied()
            .filter(|s| !(read_only && *s == 403))
            .collect();
        if has_body {
            expected.extend([413, 415]);
        }
        expected.push(200);
        expected.sort();
        let mut listed: Vec<u16> = responses.keys().map(|k| k.parse().unwrap()).collect();
        listed.sort();
        assert_eq!(listed, expected, "{method} {}", route.pattern);
        for (status, response) in responses {
            if status != "200" {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Status",
                    "{method} {} {status}",
                    route.pattern
                );
            }
        }
        assert!(
            responses["401"]["headers"]
                .get("WWW-Authenticate")
                .is_some()
        );
    }
    for status in ["500", "501", "503", "504"] {
        assert!(
            doc["paths"]["/v1/processes/{target}:waitReady"]["post"]["responses"]
                .get(status)
                .is_some(),
            "{status}"
        );
    }
}

/// The schemas hold what the JSON mapping accepts and writes: 64-bit
/// integers are decimal strings (a pattern says which), 32-bit integers
/// carry their range, messages allow no other fields (they are refused),
/// and one NDJSON line is exactly one of `result` and `error`.
#[test]
fn openapi_schemas_say_the_json_mapping_limits() {
    let pool = prost_reflect::DescriptorPool::decode(pmdaemon_proto::API_DESCRIPTOR_SET).unwrap();
    let routes = super::rules::routes(&pool).unwrap();
    let doc = super::openapi::document(&routes);
    let schemas = &doc["components"]["schemas"];
    let spec = &schemas["pmdaemon.v1.AppSpec"];
    assert_eq!(spec["additionalProperties"], false);
    let kill = &spec["properties"]["killTimeoutMs"];
    assert_eq!(kill["type"], "string");
    assert_eq!(kill["pattern"], "^[0-9]{1,20}$");
    let info = &schemas["pmdaemon.v1.ProcessInfo"]["properties"];
    assert_eq!(info["createdAtMs"]["pattern"], "^-?[0-9]{1,19}$");
    assert_eq!(info["lastExitCode"]["minimum"], i32::MIN);
    assert_eq!(info["lastExitCode"]["maximum"], i32::MAX);
    assert_eq!(info["id"]["minimum"], 0);
    assert_eq!(info["id"]["maximum"], u32::MAX);
    // Maps are objects of any key: not closed.
    assert_eq!(
        spec["properties"]["env"]["additionalProperties"]["type"],
        "string"
    );
    let logs = &doc["paths"]["/v1/logs"]["get"];
    let after = logs["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "afterSeq")
        .unwrap();
    assert_eq!(after["schema"]["pattern"], "^[0-9]{1,20}$");
    let line = &logs["responses"]["200"]["content"]["application/x-ndjson"]["schema"];
    assert_eq!(line["minProperties"], 1);
    assert_eq!(line["maxProperties"], 1);
}

#[test]
fn openapi_schemas_follow_the_json_mapping() {
    let pool = prost_reflect::DescriptorPool::decode(pmdaemon_proto::API_DESCRIPTOR_SET).unwrap();
    let routes = super::rules::routes(&pool).unwrap();
    let doc = super::openapi::document(&routes);
    let schemas = &doc["components"]["schemas"];
    let info = &schemas["pmdaemon.v1.ProcessInfo"]["properties"];
    assert_eq!(info["createdAtMs"]["type"], "string");
    assert_eq!(info["createdAtMs"]["format"], "int64");
    assert_eq!(
        info["state"]["$ref"],
        "#/components/schemas/pmdaemon.v1.ProcessState"
    );
    let state = &schemas["pmdaemon.v1.ProcessState"];
    assert_eq!(state["type"], "string");
    assert!(
        state["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("PROCESS_STATE_ONLINE"))
    );
    let env = &schemas["pmdaemon.v1.AppSpec"]["properties"]["env"];
    assert_eq!(env["additionalProperties"]["type"], "string");
    // Comments from the proto are descriptions.
    let logs = &doc["paths"]["/v1/logs"]["get"];
    assert!(
        logs["description"]
            .as_str()
            .unwrap()
            .contains("missed_lines"),
        "{logs}"
    );
    let names: Vec<&str> = logs["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["target", "lines", "follow", "stream", "afterSeq"]);
    let stop = &doc["paths"]["/v1/processes/{target}:stop"]["post"];
    assert_eq!(stop["parameters"][0]["in"], "path");
    assert_eq!(
        stop["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/pmdaemon.v1.StopProcessRequest"
    );
}
