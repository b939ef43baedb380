//! Clients of the daemon's TCP listener (`pmdaemond --listen`): gRPC over
//! TCP (h2c) or TLS with a bearer token, a raw call of any method with an
//! empty message ([`call_empty`], for the access matrix generated from
//! `pmdaemon_proto::METHOD_ACCESS`), raw HTTP/1.1 requests ([`http_raw`]),
//! the admin token of a home ([`admin_token`]), a test CA ([`TestCa`],
//! rcgen), and the REST gateway: unary calls and NDJSON streams ([`Rest`],
//! hyper's client), WebSockets over HTTP/1.1 ([`websocket`], tungstenite)
//! and over HTTP/2 extended CONNECT ([`h2_connect`], [`websocket_h2`]:
//! hyper's HTTP/2 client, h2c or TLS with ALPN h2).
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
    http_raw_with_body(port, method, path, headers, b"")
}

/// [`http_raw`] with `body` sent as is after the head (the caller says how
/// it is framed: Content-Length or Transfer-Encoding in `headers`).
pub fn http_raw_with_body(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> String {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(crate::WAIT.get()))
        .expect("read timeout");
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    tcp.write_all(&bytes).expect("send");
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: no whole response within {:?}: {e}",
            crate::WAIT
        )
    });
    String::from_utf8_lossy(&response).into_owned()
}

/// Waits until the peer closes `tcp` (a read returns end of file), reading
/// and returning whatever comes before; panics when it is still open after
/// [`crate::WAIT`].
pub fn read_until_closed(tcp: &mut std::net::TcpStream, what: &str) -> Vec<u8> {
    let deadline = std::time::Instant::now() + crate::WAIT.get();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(
            !left.is_zero(),
            "{what}: still open after {:?}",
            crate::WAIT
        );
        tcp.set_read_timeout(Some(left)).expect("read timeout");
        match tcp.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("{what}: still open after {:?} ({e})", crate::WAIT),
        }
    }
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

/// A REST client of a daemon's TCP port (HTTP/1.1, hyper), with a bearer
/// token or none.
pub struct Rest {
    port: u16,
    token: Option<String>,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<hyper::body::Bytes>,
    >,
}

/// A REST answer: its status, headers and (for a unary call) JSON body.
#[derive(Debug)]
pub struct RestReply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: serde_json::Value,
}

impl Rest {
    pub fn new(port: u16, token: Option<&str>) -> Self {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        Rest {
            port,
            token: token.map(str::to_string),
            client,
        }
    }

    /// Sends `method path` with `body` (JSON text) and returns as soon as
    /// the head of the answer came: a stream's body is read with
    /// [`NdjsonLines`].
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> hyper::Response<hyper::body::Incoming> {
        let json = [("content-type", "application/json")];
        let headers: &[(&str, &str)] = if body.is_some() { &json } else { &[] };
        self.send_with(method, path, headers, body).await
    }

    /// [`Rest::send`] with exactly these headers besides the token (no
    /// Content-Type unless given).
    pub async fn send_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> hyper::Response<hyper::body::Incoming> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{}{path}", self.port));
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(http_body_util::Full::new(hyper::body::Bytes::from(
                body.unwrap_or_default().to_string(),
            )))
            .expect("request");
        tokio::time::timeout(crate::WAIT.get(), self.client.request(request))
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer within {:?}", crate::WAIT))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// A unary call: the status, headers and the whole body as JSON
    /// (`Null` when the body is empty or not JSON).
    pub async fn call(&self, method: &str, path: &str, body: Option<&str>) -> RestReply {
        let json = [("content-type", "application/json")];
        let headers: &[(&str, &str)] = if body.is_some() { &json } else { &[] };
        self.call_with(method, path, headers, body).await
    }

    /// [`Rest::call`] with exactly these headers besides the token.
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> RestReply {
        use http_body_util::BodyExt;
        let response = self.send_with(method, path, headers, body).await;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = tokio::time::timeout(crate::WAIT.get(), response.into_body().collect())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{method} {path}: body not complete within {:?}",
                    crate::WAIT
                )
            })
            .expect("body")
            .to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        RestReply {
            status,
            headers,
            body,
        }
    }

    /// A server stream as NDJSON: the status and its lines.
    pub async fn stream(&self, method: &str, path: &str, body: Option<&str>) -> (u16, NdjsonLines) {
        let response = self.send(method, path, body).await;
        let status = response.status().as_u16();
        (
            status,
            NdjsonLines {
                body: response.into_body(),
                buf: Vec::new(),
            },
        )
    }
}

/// An NDJSON body read line by line as its frames arrive.
pub struct NdjsonLines {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
}

impl NdjsonLines {
    /// The next line as JSON; None at the end of the body. Panics when none
    /// comes within [`crate::WAIT`].
    pub async fn next(&mut self) -> Option<serde_json::Value> {
        use http_body_util::BodyExt;
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return Some(serde_json::from_slice(&line).unwrap_or_else(|e| {
                    panic!("not a JSON line ({e}): {}", String::from_utf8_lossy(&line))
                }));
            }
            let frame = tokio::time::timeout(crate::WAIT.get(), self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no NDJSON line within {:?}", crate::WAIT));
            match frame {
                Some(frame) => {
                    if let Ok(data) = frame.expect("a body frame").into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                None => {
                    assert!(self.buf.is_empty(), "a partial last line");
                    return None;
                }
            }
        }
    }

    /// Reads lines until `found` returns a value; panics if the body ends
    /// first (or no line comes within [`crate::WAIT`]).
    pub async fn until<T>(
        &mut self,
        what: &str,
        mut found: impl FnMut(&serde_json::Value) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + crate::WAIT.get();
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            let line = self
                .next()
                .await
                .unwrap_or_else(|| panic!("the stream ended before {what}"));
            if let Some(v) = found(&line) {
                return v;
            }
        }
    }
}

/// A WebSocket client stream (tungstenite).
pub type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to `ws://127.0.0.1:port{path}` offering
/// `protocols` as `Sec-WebSocket-Protocol` (no Authorization header): the
/// socket and the handshake's answer, or the error (a refused handshake
/// is `tungstenite::Error::Http` with the response).
pub async fn websocket(
    port: u16,
    path: &str,
    protocols: &[&str],
) -> Result<
    (
        WebSocket,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://127.0.0.1:{port}{path}")
        .into_client_request()
        .expect("WebSocket request");
    if !protocols.is_empty() {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            protocols.join(", ").parse().expect("header value"),
        );
    }
    tokio::time::timeout(crate::WAIT.get(), tokio_tungstenite::connect_async(request))
        .await
        .unwrap_or_else(|_| panic!("WebSocket {path}: no handshake within {:?}", crate::WAIT))
}

/// The next text message of a WebSocket as JSON; None once it is closed.
/// Panics when nothing comes within [`crate::WAIT`].
pub async fn ws_next<S>(
    socket: &mut tokio_tungstenite::WebSocketStream<S>,
) -> Option<serde_json::Value>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let message = tokio::time::timeout(crate::WAIT.get(), socket.next())
            .await
            .unwrap_or_else(|_| panic!("no WebSocket message within {:?}", crate::WAIT))?;
        match message.expect("a WebSocket message") {
            Message::Text(text) => {
                return Some(
                    serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("not a JSON message ({e}): {text}")),
                );
            }
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

/// The request side of an HTTP/2 connection (hyper's client).
pub type H2 = hyper::client::conn::http2::SendRequest<http_body_util::Full<hyper::body::Bytes>>;

/// A WebSocket over an HTTP/2 stream (RFC 8441).
pub type H2WebSocket =
    tokio_tungstenite::WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

/// An HTTP/2 connection to `127.0.0.1:port`: h2c with prior knowledge, or
/// TLS with ALPN h2 trusting `ca_pem` (as `localhost`). Returns once the
/// daemon's SETTINGS came (a first request, GET /healthz, was answered),
/// so what they enable (extended CONNECT) is known to the client. The
/// connection is driven by a task of the current runtime.
pub async fn h2_connect(port: u16, ca_pem: Option<&str>) -> H2 {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let executor = TokioExecutor::new();
    let mut send = match ca_pem {
        None => {
            let (send, conn) = hyper::client::conn::http2::handshake(executor, TokioIo::new(tcp))
                .await
                .expect("HTTP/2 handshake (h2c)");
            tokio::spawn(conn);
            send
        }
        Some(ca) => {
            let config = Arc::new(tls_client_config(ca, None, vec![b"h2".to_vec()]));
            let name = rustls::pki_types::ServerName::try_from("localhost")
                .expect("server name")
                .to_owned();
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .expect("TLS handshake");
            assert_eq!(
                tls.get_ref().1.alpn_protocol(),
                Some(&b"h2"[..]),
                "the daemon chose h2 by ALPN"
            );
            let (send, conn) = hyper::client::conn::http2::handshake(executor, TokioIo::new(tls))
                .await
                .expect("HTTP/2 handshake (TLS)");
            tokio::spawn(conn);
            send
        }
    };
    let scheme = if ca_pem.is_some() { "https" } else { "http" };
    let health = http::Request::get(format!("{scheme}://localhost:{port}/healthz"))
        .body(http_body_util::Full::default())
        .expect("request");
    let answered = tokio::time::timeout(crate::WAIT.get(), send.send_request(health))
        .await
        .expect("GET /healthz over HTTP/2 within WAIT")
        .expect("GET /healthz over HTTP/2");
    assert_eq!(answered.status(), 200);
    assert_eq!(answered.version(), http::Version::HTTP_2);
    send
}

/// Opens a WebSocket on `path` over the HTTP/2 connection `h2` (extended
/// CONNECT, `:protocol websocket`), offering `protocols` (no Authorization
/// header): the socket and the answer's headers, or the refused answer's
/// status and headers.
pub async fn websocket_h2(
    h2: &mut H2,
    scheme: &str,
    port: u16,
    path: &str,
    protocols: &[&str],
) -> Result<(H2WebSocket, http::HeaderMap), (u16, http::HeaderMap)> {
    use tokio_tungstenite::tungstenite::protocol::Role;
    let mut request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("{scheme}://localhost:{port}{path}"))
        .header("sec-websocket-version", "13");
    if !protocols.is_empty() {
        request = request.header("sec-websocket-protocol", protocols.join(", "));
    }
    let mut request = request
        .body(http_body_util::Full::default())
        .expect("request");
    request
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let response = tokio::time::timeout(crate::WAIT.get(), h2.send_request(request))
        .await
        .unwrap_or_else(|_| panic!("CONNECT {path}: no answer within {:?}", crate::WAIT))
        .unwrap_or_else(|e| panic!("CONNECT {path}: {e}"));
    if response.status() != 200 {
        return Err((response.status().as_u16(), response.headers().clone()));
    }
    let headers = response.headers().clone();
    let upgraded = hyper::upgrade::on(response)
        .await
        .unwrap_or_else(|e| panic!("CONNECT {path}: no upgraded stream: {e}"));
    let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
        hyper_util::rt::TokioIo::new(upgraded),
        Role::Client,
        None,
    )
    .await;
    Ok((socket, headers))
}
