//! The services every generic gRPC client relies on: `grpc.health.v1` and
//! server reflection (v1 and v1alpha), on the same socket as the API.

use pmdaemon_tests::{TestDaemon, block_on, connect_channel};
use tokio_stream::StreamExt;

/// grpc.health.v1 answers SERVING for the daemon and for the API service.
#[test]
fn health_reports_serving() {
    let daemon = TestDaemon::start();
    block_on(async {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let channel = connect_channel(&daemon.socket()).await.expect("connect");
        let mut health = HealthClient::new(channel);
        for service in ["", "pmdaemon.v1.ProcessManager"] {
            let status = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap_or_else(|e| panic!("health check of {service:?}: {e}"))
                .into_inner()
                .status;
            assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
        }
    });
}

/// Asks reflection `$v` (`v1` or `v1alpha`) on `$socket` to list the
/// services and for the file of `$symbol`: the version, the service names
/// and the serialized FileDescriptorProtos. A macro, as each version has its own
/// generated types.
macro_rules! reflect {
    ($v:ident, $socket:expr, $symbol:expr) => {{
        use tonic_reflection::pb::$v::ServerReflectionRequest;
        use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;
        let channel = connect_channel($socket).await.expect("connect");
        let mut reflection = ServerReflectionClient::new(channel);
        let requests = [
            MessageRequest::ListServices(String::new()),
            MessageRequest::FileContainingSymbol($symbol.into()),
        ]
        .map(|m| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(m),
        });
        let mut answers = reflection
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .expect("reflection stream")
            .into_inner();
        let first = answers.next().await.expect("an answer").expect("ok");
        let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
            panic!("expected a service list, got {first:?}");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        let second = answers.next().await.expect("an answer").expect("ok");
        let Some(MessageResponse::FileDescriptorResponse(files)) = second.message_response else {
            panic!("expected file descriptors, got {second:?}");
        };
        (stringify!($v), names, files.file_descriptor_proto)
    }};
}

/// Reflection, v1 and v1alpha (what Python's grpcio-reflection client
/// speaks), lists the API and serves its file, self-contained, so that
/// grpcurl and generated clients need no .proto files. Each version is
/// built by its first call: each daemon gets the versions in another
/// order.
#[test]
fn reflection_v1_and_v1alpha_list_and_describe_the_api() {
    for v1_first in [true, false] {
        let daemon = TestDaemon::start();
        let socket = daemon.socket();
        block_on(async {
            let symbol = "pmdaemon.v1.ProcessManager";
            let method = "pmdaemon.v1.ProcessManager.ListProcesses";
            let answers = if v1_first {
                [
                    reflect!(v1, &socket, symbol),
                    reflect!(v1alpha, &socket, method),
                ]
            } else {
                [
                    reflect!(v1alpha, &socket, method),
                    reflect!(v1, &socket, symbol),
                ]
            };
            for (version, names, files) in answers {
                let itself = format!("grpc.reflection.{version}.ServerReflection");
                for service in [
                    "pmdaemon.v1.ProcessManager",
                    "grpc.health.v1.Health",
                    &itself,
                ] {
                    assert!(names.iter().any(|n| n == service), "{service}: {names:?}");
                }
                // The serialized FileDescriptorProto names its file; served
                // self-contained: no import a client would have to resolve
                // (the http annotations live in proto/ for the tools that
                // want them).
                let text = String::from_utf8_lossy(&files.concat()).into_owned();
                assert!(text.contains("pmdaemon/v1/process_manager.proto"), "{text}");
                assert_eq!(files.len(), 1, "{text}");
                assert!(!text.contains("google/api/annotations.proto"), "{text}");
            }
        });
    }
}
