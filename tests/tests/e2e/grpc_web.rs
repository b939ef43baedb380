//! gRPC-Web on the TCP listener, as a browser speaks it: unary calls framed
//! as gRPC-Web over HTTP/1.1, binary (`application/grpc-web+proto`) and
//! base64 text (`application/grpc-web-text`), with the bearer token; a
//! server stream; without a token UNAUTHENTICATED as a gRPC-Web client
//! reads it; a read-only token refused on an admin method; and the CORS
//! preflight a browser sends before a cross-origin gRPC-Web call.

use base64::Engine;
use pmdaemon_proto::v1;
use pmdaemon_tests::*;
use prost::Message;

/// A gRPC-Web answer, its body split into data frames and trailers.
#[derive(Debug)]
struct WebReply {
    status: u16,
    headers: http::HeaderMap,
    messages: Vec<Vec<u8>>,
    /// The trailer frame's text (`grpc-status:0\r\n...`), lower-cased.
    trailers: String,
}

impl WebReply {
    /// The gRPC status: from the trailer frame, or from the headers of a
    /// trailers-only answer.
    fn grpc_status(&self) -> Option<i32> {
        let in_trailers = self
            .trailers
            .lines()
            .find_map(|l| l.trim().strip_prefix("grpc-status:"))
            .map(|v| v.trim().parse().expect("a numeric grpc-status"));
        in_trailers.or_else(|| {
            self.headers
                .get("grpc-status")
                .map(|v| v.to_str().unwrap().parse().expect("a numeric grpc-status"))
        })
    }
}

/// One length-prefixed gRPC message frame.
fn frame(message: &impl Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    framed.extend(body);
    framed
}

/// Splits a gRPC-Web body into its message frames and its trailer frame
/// (flag 0x80).
fn split_frames(mut body: &[u8]) -> (Vec<Vec<u8>>, String) {
    let (mut messages, mut trailers) = (Vec::new(), String::new());
    while !body.is_empty() {
        assert!(body.len() >= 5, "a truncated frame header: {body:?}");
        let flag = body[0];
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        assert!(body.len() >= 5 + len, "a truncated frame");
        let payload = &body[5..5 + len];
        if flag & 0x80 != 0 {
            trailers.push_str(&String::from_utf8_lossy(payload).to_ascii_lowercase());
        } else {
            messages.push(payload.to_vec());
        }
        body = &body[5 + len..];
    }
    (messages, trailers)
}

/// Decodes a `grpc-web-text` body: base64 chunks, each padded on its own,
/// so it is decoded four characters at a time.
fn decode_text(body: &[u8]) -> Vec<u8> {
    let clean: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    assert_eq!(
        clean.len() % 4,
        0,
        "base64 text of a length not 4n: {:?}",
        String::from_utf8_lossy(&clean)
    );
    clean
        .chunks(4)
        .flat_map(|quad| {
            base64::engine::general_purpose::STANDARD
                .decode(quad)
                .expect("base64 text")
        })
        .collect()
}

/// Calls `method` of the ProcessManager over gRPC-Web (HTTP/1.1).
async fn call(
    port: u16,
    method: &str,
    token: Option<&str>,
    text: bool,
    request: &impl Message,
) -> WebReply {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let framed = frame(request);
    let (content_type, body) = if text {
        let encoded = base64::engine::general_purpose::STANDARD.encode(&framed);
        ("application/grpc-web-text", encoded.into_bytes())
    } else {
        ("application/grpc-web+proto", framed)
    };
    let mut builder = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://127.0.0.1:{port}/pmdaemon.v1.ProcessManager/{method}"
        ))
        .header("content-type", content_type)
        // What the grpc-web JS client sends: the answer's framing follows
        // it.
        .header("accept", content_type)
        .header("x-grpc-web", "1");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let request = builder
        .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
        .unwrap();
    let response = tokio::time::timeout(WAIT.get(), client.request(request))
        .await
        .unwrap_or_else(|_| panic!("{method}: no answer within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("{method}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = tokio::time::timeout(WAIT.get(), response.into_body().collect())
        .await
        .unwrap_or_else(|_| panic!("{method}: body not complete within {WAIT:?}"))
        .expect("body")
        .to_bytes();
    let raw = if text {
        decode_text(&bytes)
    } else {
        bytes.to_vec()
    };
    let (messages, trailers) = split_frames(&raw);
    WebReply {
        status,
        headers,
        messages,
        trailers,
    }
}

#[test]
fn grpc_web_calls_with_tokens_and_cors() {
    let port = free_ports(1);
    let daemon = TestDaemon::start_with_args(&["--listen", &format!("127.0.0.1:{port}")]);
    let admin = admin_token(daemon.home());
    let reader = daemon
        .pmd_ok(&["token", "create", "viewer", "--read-only"])
        .trim()
        .to_string();
    daemon.pmd_ok(&["start", "sleep", "--name", "web-app", "--", "600"]);

    block_on(async {
        // Binary and text framing answer the same Ping.
        for text in [false, true] {
            let reply = call(port, "Ping", Some(&admin), text, &v1::PingRequest {}).await;
            assert_eq!(reply.status, 200, "{reply:?}");
            let content_type = reply.headers["content-type"].to_str().unwrap();
            let expected = if text {
                "application/grpc-web-text"
            } else {
                "application/grpc-web+proto"
            };
            assert!(content_type.starts_with(expected), "{content_type}");
            assert_eq!(reply.grpc_status(), Some(0), "{reply:?}");
            assert_eq!(reply.messages.len(), 1, "{reply:?}");
            let pong = v1::PingResponse::decode(reply.messages[0].as_slice()).unwrap();
            assert_eq!(pong.version, pmdaemon_proto::VERSION);
            assert!(
                pong.listen.contains(&format!("127.0.0.1:{port}")),
                "{pong:?}"
            );
        }

        // A read-only token lists (the app is there) ...
        let reply = call(
            port,
            "ListProcesses",
            Some(&reader),
            false,
            &v1::ListProcessesRequest::default(),
        )
        .await;
        assert_eq!(reply.grpc_status(), Some(0), "{reply:?}");
        let list = v1::ListProcessesResponse::decode(reply.messages[0].as_slice()).unwrap();
        assert!(
            list.processes.iter().any(|p| p.name == "web-app"),
            "{list:?}"
        );

        // ... and is refused a stop, which changes nothing.
        let stop = v1::StopProcessRequest {
            target: "web-app".into(),
        };
        let reply = call(port, "StopProcess", Some(&reader), false, &stop).await;
        assert_eq!(
            reply.grpc_status(),
            Some(tonic::Code::PermissionDenied as i32),
            "{reply:?}"
        );
        assert!(reply.messages.is_empty(), "{reply:?}");

        // No token, or a wrong one: UNAUTHENTICATED, as a gRPC-Web client
        // reads it (a trailers-only answer), with the Bearer challenge.
        for token in [None, Some("not-a-token")] {
            let reply = call(port, "Ping", token, false, &v1::PingRequest {}).await;
            assert_eq!(
                reply.grpc_status(),
                Some(tonic::Code::Unauthenticated as i32),
                "{reply:?}"
            );
            assert_eq!(
                reply.headers.get("www-authenticate").map(|v| v.as_bytes()),
                Some(&b"Bearer"[..]),
                "{reply:?}"
            );
        }

        // A server stream: WatchEvents ends only when asked, so read
        // WaitReady for the running app instead: one or more messages,
        // then OK in the trailers.
        let wait = v1::WaitReadyRequest {
            target: "web-app".into(),
            ..Default::default()
        };
        let reply = call(port, "WaitReady", Some(&reader), true, &wait).await;
        assert_eq!(reply.grpc_status(), Some(0), "{reply:?}");
        assert!(!reply.messages.is_empty(), "{reply:?}");
    });

    // The app is still online: the refused stop did nothing.
    let listed = daemon.pmd_ok(&["list", "-o", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["status"], "online", "{listed}");
}

/// The preflight a browser sends before a cross-origin gRPC-Web call names
/// the headers gRPC-Web uses; the answer to the call exposes the gRPC
/// status to the page.
#[test]
fn grpc_web_cors_preflight() {
    let port = free_ports(1);
    let daemon = TestDaemon::new_stopped();
    std::fs::write(
        daemon.home().join("config.yaml"),
        format!("listen: ['127.0.0.1:{port}']\ncors_origins: ['https://console.example']\n"),
    )
    .unwrap();
    let mut daemon = daemon;
    daemon.spawn_daemon();
    let preflight = http_raw(
        port,
        "OPTIONS",
        "/pmdaemon.v1.ProcessManager/Ping",
        &[
            ("Origin", "https://console.example"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization,content-type,x-grpc-web,x-user-agent",
            ),
        ],
    )
    .to_ascii_lowercase();
    assert!(preflight.starts_with("http/1.1 204"), "{preflight}");
    assert!(
        preflight.contains("access-control-allow-origin: https://console.example"),
        "{preflight}"
    );
    let allowed = preflight
        .lines()
        .find_map(|l| l.strip_prefix("access-control-allow-headers:"))
        .unwrap_or_else(|| panic!("no allowed headers: {preflight}"));
    for needed in [
        "authorization",
        "content-type",
        "x-grpc-web",
        "x-user-agent",
    ] {
        assert!(
            allowed.contains(needed),
            "{needed} not allowed: {preflight}"
        );
    }
    let exposed = preflight.contains("access-control-expose-headers");
    assert!(exposed, "{preflight}");
    daemon.stop_daemon();
}
