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

/// Reflection lists the API and serves its file, self-contained, so that
/// grpcurl and generated clients need no .proto files.
#[test]
fn reflection_lists_and_describes_the_api() {
    let daemon = TestDaemon::start();
    block_on(async {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let channel = connect_channel(&daemon.socket()).await.expect("connect");
        let mut reflection = ServerReflectionClient::new(channel);
        let requests = [
            MessageRequest::ListServices(String::new()),
            MessageRequest::FileContainingSymbol("pmdaemon.v1.ProcessManager".into()),
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
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"pmdaemon.v1.ProcessManager"), "{names:?}");
        assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

        let second = answers.next().await.expect("an answer").expect("ok");
        let Some(MessageResponse::FileDescriptorResponse(files)) = second.message_response else {
            panic!("expected file descriptors, got {second:?}");
        };
        assert!(!files.file_descriptor_proto.is_empty());
        // The serialized FileDescriptorProto names its file and its imports.
        let all: Vec<u8> = files.file_descriptor_proto.concat();
        let text = String::from_utf8_lossy(&all);
        assert!(text.contains("pmdaemon/v1/process_manager.proto"), "{text}");
        // Served self-contained: no import a client would have to resolve
        // (the http annotations live in proto/ for the tools that want them).
        assert_eq!(files.file_descriptor_proto.len(), 1, "{text}");
        assert!(!text.contains("google/api/annotations.proto"), "{text}");
    });
}

/// Reflection v1alpha (what Python's grpcio-reflection client speaks)
/// lists the API and serves the file that defines it, like v1. Both are
/// built by their first call: this daemon's first reflection call is a
/// v1alpha one.
#[test]
fn reflection_v1alpha_lists_and_describes_the_api() {
    let daemon = TestDaemon::start();
    block_on(async {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let channel = connect_channel(&daemon.socket()).await.expect("connect");
        let mut reflection = ServerReflectionClient::new(channel);
        let requests = [
            MessageRequest::ListServices(String::new()),
            MessageRequest::FileContainingSymbol("pmdaemon.v1.ProcessManager.ListProcesses".into()),
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
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"pmdaemon.v1.ProcessManager"), "{names:?}");
        assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
        assert!(
            names.contains(&"grpc.reflection.v1alpha.ServerReflection"),
            "{names:?}"
        );

        let second = answers.next().await.expect("an answer").expect("ok");
        let Some(MessageResponse::FileDescriptorResponse(files)) = second.message_response else {
            panic!("expected file descriptors, got {second:?}");
        };
        let all: Vec<u8> = files.file_descriptor_proto.concat();
        let text = String::from_utf8_lossy(&all);
        assert!(text.contains("pmdaemon/v1/process_manager.proto"), "{text}");
    });
}
