//! Clients of the daemon's TCP listener (`pmdaemond --listen`): gRPC over
//! TCP (h2c) or TLS with a bearer token, a raw call of any method with an
//! empty message ([`call_empty`], for the access matrix generated from
//! `pmdaemon_proto::METHOD_ACCESS`), raw HTTP/1.1 requests ([`http_raw`]),
//! the admin token of a home ([`admin_token`]) and a test CA
//! ([`TestCa`], rcgen).
//!
//! Talks to: a daemon's TCP port; the home's `token` file.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use tonic::transport::{Channel, Endpoint, Uri};

/// The admin token of a daemon's home (`$PMDAEMON_HOME/token`).
pub fn admin_token(home: &Path) -> String {
    std::fs::read_to_string(home.join("token"))
        .expect("read the admin token")
        .trim()
        .to_string()
}

/// A gRPC channel over plain TCP (h2c) to `127.0.0.1:port`.
pub async fn tcp_channel(port: u16) -> Channel {
    Endpoint::try_from(format!("http://127.0.0.1:{port}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect over TCP")
}

/// A gRPC channel over TLS to `127.0.0.1:port` trusting `ca_pem`, as
/// `localhost`, with a client certificate when given (mutual TLS).
pub async fn tls_channel(
    port: u16,
    ca_pem: &str,
    client: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let config = Arc::new(tls_client_config(ca_pem, client, vec![b"h2".to_vec()]));
    Endpoint::try_from("http://localhost")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let config = config.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                let name = rustls::pki_types::ServerName::try_from("localhost")
                    .expect("server name")
                    .to_owned();
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
}

fn tls_client_config(
    ca_pem: &str,
    client: Option<(&str, &str)>,
    alpn: Vec<Vec<u8>>,
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(ca_pem) {
        roots.add(cert).expect("add the test CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            use rustls::pki_types::{PrivateKeyDer, pem::PemObject};
            builder
                .with_client_auth_cert(
                    rustls_pemfile_certs(cert),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("client key"),
                )
                .expect("client certificate")
        }
    };
    config.alpn_protocols = alpn;
    config
}

fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

/// Calls the gRPC method at `path` with an empty message (valid for every
/// message type) and `token` as bearer; Ok once the call is accepted (for
/// a stream: its headers came), else the status.
pub async fn call_empty(
    channel: Channel,
    path: &'static str,
    token: Option<&str>,
) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(());
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header value"),
        );
    }
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let path = http::uri::PathAndQuery::from_static(path);
    // A server stream for every method: a unary answer is a stream of one,
    // and a stream that stays open (WatchEvents) is accepted as soon as its
    // headers come.
    grpc.server_streaming(request, path, codec).await.map(drop)
}

/// One HTTP/1.1 request to `127.0.0.1:port` (Connection: close); the whole
/// response, head and body.
pub fn http_raw(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).expect("send");
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).expect("read the response");
    String::from_utf8_lossy(&response).into_owned()
}

/// A certificate authority made for one test, and certificates it signs.
pub struct TestCa {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pmdaemon test CA");
        let key = rcgen::KeyPair::generate().expect("CA key");
        let ca = rcgen::CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        TestCa { ca }
    }

    pub fn pem(&self) -> String {
        self.ca.pem()
    }

    /// A certificate for `names` (server: localhost, 127.0.0.1) signed by
    /// this CA: (certificate PEM, key PEM).
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}
