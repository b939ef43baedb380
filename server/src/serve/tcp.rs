//! The TCP listener (`--listen ADDR:PORT`, repeatable; off by default). One
//! port serves gRPC (HTTP/2; h2c without TLS), gRPC-Web, and HTTP/1.1 and
//! HTTP/2 for the HTTP routes (`/healthz`, `/metrics`, the REST gateway),
//! through hyper-util's auto connection builder, optionally over TLS
//! (rustls, ring provider, ALPN h2 and http/1.1, optional client
//! certificates).
//!
//! Every request goes through `auth::layer::AuthnLayer` (the token, its
//! Scope); the gRPC services behind `auth::layer::AuthzLayer` (the RPC's
//! access against that Scope) as [`Grpc`], which the gateway calls too.
//! Each connection marks its requests [`Transport::Remote`] with its
//! [`RemotePeer`].
//!
//! Limits enforced here: connections (a semaphore: beyond it, the kernel's
//! backlog waits), the time to a connection's first byte and HTTP/1 header
//! read time (no slowloris), idle HTTP/1 connections ([`Activity`]), HTTP/2
//! concurrent streams per connection, the request body size (the gateway
//! answers 413), the TLS handshake time. HTTP/2 accepts extended CONNECT
//! (RFC 8441), so the gateway's WebSockets work over h2 too.
//!
//! Talks to: `auth` (the layers), `crate::run` (which builds the routes and
//! hands over the gateway's router), `metrics` (`/metrics`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use http::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

use super::{RemotePeer, Routes, Transport};
use crate::StartError;
use crate::auth::layer::{AuthnLayer, AuthzLayer};
use crate::auth::token::TokenStore;

/// The gRPC services (ProcessManager, health, reflection) behind the
/// authorization layer: what the TCP listener serves for gRPC and gRPC-Web,
/// and what the REST gateway calls in-process, with the incoming request's
/// extensions (its Scope) copied onto each call.
pub type Grpc = BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    Infallible,
>;

/// What the TCP listener is told to do (flags over config.yaml).
#[derive(Debug, Clone, Default)]
pub struct RemoteOptions {
    /// Addresses to listen on; empty: no TCP listener.
    pub listen: Vec<SocketAddr>,
    pub tls: Option<TlsFiles>,
    /// Allow a non-loopback address without TLS (warned at every start).
    pub insecure_remote: bool,
    pub limits: Limits,
    /// Origins allowed by CORS; empty: CORS off.
    pub cors_origins: Vec<String>,
}

/// PEM files of the TLS server.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Clients must show a certificate signed by one of these (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// What one TCP listener allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request body larger than this is refused.
    pub max_body_bytes: u64,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: u32,
    /// HTTP/2 streams at once on one connection.
    pub max_concurrent_streams: u32,
    /// Time for a client to send its first byte, a request's headers
    /// (HTTP/1; hyper also counts the wait for the next request of a
    /// keep-alive connection), and the TLS handshake.
    pub header_read_timeout: Duration,
    /// HTTP/1: a connection with no request in flight (an answer, a stream
    /// included, not yet fully sent) for this long is closed. HTTP/2: a
    /// connection whose peer stops answering pings for this long is.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 * 1024 * 1024,
            max_connections: 256,
            max_concurrent_streams: 100,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Why the TCP listener cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "refusing to listen on {addr} without TLS: tokens would cross the network in clear. Add --tls-cert FILE --tls-key FILE (PEM; or tls: {{cert, key}} in config.yaml), listen on a loopback address (127.0.0.1, [::1]) behind your own TLS proxy, or pass --insecure-remote if the network is trusted"
    )]
    Insecure { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("--tls-cert and --tls-key go together")]
    TlsHalf,
}

impl From<ListenError> for StartError {
    fn from(e: ListenError) -> Self {
        StartError::Remote(e.to_string())
    }
}

/// Checks the exposure rule and binds every address, before anything is
/// served: a bad address or TLS file stops the daemon at start.
pub(crate) fn bind(
    options: &RemoteOptions,
) -> Result<(Vec<TcpListener>, Option<tokio_rustls::TlsAcceptor>), ListenError> {
    let tls = options.tls.as_ref().map(acceptor).transpose()?;
    for addr in &options.listen {
        if !addr.ip().is_loopback() && tls.is_none() {
            if !options.insecure_remote {
                return Err(ListenError::Insecure { addr: *addr });
            }
            tracing::warn!(
                %addr,
                "listening without TLS on a non-loopback address (--insecure-remote): tokens and everything else cross the network in clear"
            );
        }
    }
    let listeners = options
        .listen
        .iter()
        .map(|addr| {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()
            } else {
                tokio::net::TcpSocket::new_v6()
            };
            let bind = |socket: tokio::net::TcpSocket| {
                socket.set_reuseaddr(true)?;
                socket.bind(*addr)?;
                socket.listen(1024)
            };
            socket.and_then(bind).map_err(|source| ListenError::Bind {
                addr: *addr,
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((listeners, tls))
}

fn acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, ListenError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| ListenError::Tls(format!("{}: {e}", path.display())))
    };
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut read(&files.cert)?.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| ListenError::Tls(format!("{}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(ListenError::Tls(format!(
            "{}: no PEM certificate in it",
            files.cert.display()
        )));
    }
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut read(&files.key)?.as_slice())
            .map_err(|e| ListenError::Tls(format!("{}: {e}", files.key.display())))?
            .ok_or_else(|| {
                ListenError::Tls(format!("{}: no PEM private key in it", files.key.display()))
            })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ListenError::Tls(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut read(ca)?.as_slice()) {
                let cert = cert.map_err(|e| ListenError::Tls(format!("{}: {e}", ca.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| ListenError::Tls(format!("{}: {e}", ca.display())))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| ListenError::Tls(format!("{}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| ListenError::Tls(format!("{}: {e}", files.key.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The authorized gRPC services (see [`Grpc`]).
pub(crate) fn grpc(routes: Routes) -> Grpc {
    BoxCloneSyncService::new(AuthzLayer.layer(routes.prepare()))
}

/// What one TCP port serves, and each layer of it: an HTTP service that
/// never fails (errors are responses), cheap to clone per connection.
pub(crate) trait HttpService:
    Service<
        Request<axum::body::Body>,
        Response = Response<axum::body::Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> HttpService for S where
    S: Service<
            Request<axum::body::Body>,
            Response = Response<axum::body::Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// Everything one TCP port serves, behind the authentication layer:
/// `/healthz`, `/metrics`, `extra` (the REST gateway), and gRPC / gRPC-Web
/// for requests whose content type says so.
pub(crate) fn app(
    grpc: Grpc,
    extra: Router,
    metrics: Router,
    tokens: TokenStore,
    cors_origins: Vec<String>,
) -> impl HttpService {
    let grpc_web = tonic_web::GrpcWebLayer::new().layer(grpc);
    let grpc_or_not_found = tower::service_fn(move |req: Request<axum::body::Body>| {
        let grpc_web = grpc_web.clone();
        async move {
            let is_grpc = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with("application/grpc"));
            if is_grpc {
                return grpc_web.oneshot(req).await.map(IntoResponse::into_response);
            }
            let body = serde_json::json!({
                "code": tonic::Code::NotFound as i32,
                "message": format!("no route for {} {}", req.method(), req.uri().path()),
                "details": [],
            });
            Ok::<_, Infallible>(
                (
                    StatusCode::NOT_FOUND,
                    [(header::CONTENT_TYPE, "application/json")],
                    body.to_string(),
                )
                    .into_response(),
            )
        }
    });
    let router = Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .merge(metrics)
        .merge(extra)
        // A wrong method on /healthz, /metrics or /v1/openapi.json: axum's
        // 405 and Allow, with the gateway's JSON error body (the gateway's
        // own routes answer theirs).
        .method_not_allowed_fallback(|method: http::Method, uri: http::Uri| async move {
            let body = serde_json::json!({
                "code": tonic::Code::Unimplemented as i32,
                "message": format!("{method} is not a method of {}", uri.path()),
                "details": [],
            });
            (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
        })
        .fallback_service(grpc_or_not_found);
    cors(cors_origins, AuthnLayer::new(tokens).layer(router))
}

/// CORS for the configured origins only (none: no CORS header, browsers
/// keep other sites out). Outside the token check: a browser's preflight
/// carries no Authorization header.
fn cors<S>(origins: Vec<String>, inner: S) -> impl HttpService
where
    S: HttpService,
{
    use http::HeaderValue;
    let origins = Arc::new(origins);
    tower::service_fn(move |req: Request<axum::body::Body>| {
        let inner = inner.clone();
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .filter(|o| {
                origins
                    .iter()
                    .any(|allowed| allowed.as_bytes() == o.as_bytes())
            })
            .cloned();
        async move {
            let Some(origin) = origin else {
                return inner.oneshot(req).await;
            };
            let preflight = req.method() == http::Method::OPTIONS
                && req
                    .headers()
                    .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
            let mut response = if preflight {
                let mut r = Response::new(axum::body::Body::empty());
                *r.status_mut() = StatusCode::NO_CONTENT;
                let h = r.headers_mut();
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"),
                );
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static(
                        "authorization, content-type, x-grpc-web, x-user-agent, grpc-timeout",
                    ),
                );
                h.insert(
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static("600"),
                );
                r
            } else {
                inner.oneshot(req).await?
            };
            let h = response.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.append(header::VARY, HeaderValue::from_static("origin"));
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("grpc-status, grpc-message, www-authenticate"),
            );
            Ok(response)
        }
    })
}

/// Resolves once the daemon stops serving (the guard of `wait_for` is not
/// `Send`: it must not live across the select's await).
async fn stopping(until: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = until.wait_for(|s| *s).await;
}

/// Serves `app` on `listener` until `until` resolves, then lets open
/// connections finish (their streams end with the daemon's).
pub(crate) async fn serve<S>(
    listener: TcpListener,
    app: S,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
    mut until: tokio::sync::watch::Receiver<bool>,
) where
    S: HttpService,
{
    let local = listener.local_addr().ok();
    tracing::info!(addr = ?local, tls = tls.is_some(), "listening on TCP");
    // One permit per connection being served: when all are back, every
    // connection has ended.
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections as usize));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stopping(&mut until) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and the like: the next accept may succeed.
                    tracing::warn!(error = %e, "cannot accept a TCP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopping(&mut until) => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let until = until.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let served = match tls {
                None => connection(stream, peer, app, limits, until).await,
                Some(tls) => {
                    let stream =
                        match tokio::time::timeout(limits.header_read_timeout, tls.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    connection(stream, peer, app, limits, until).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "TCP connection ended with an error");
            }
        });
    }
    drop(listener);
    // Streams end when the daemon shuts down; a client that does not read
    // its last bytes does not hold the daemon.
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        slots.acquire_many(limits.max_connections),
    )
    .await;
}

/// Serves one connection (plain or TLS) until it ends, the daemon stops,
/// or it is idle (see [`Activity`]); the last two close it gracefully: a
/// request in progress is answered first.
async fn connection<I, S>(
    io: I,
    peer: SocketAddr,
    app: S,
    limits: Limits,
    mut until: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService,
{
    let activity = Arc::new(Activity::default());
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let mut req = req.map(|body| {
            axum::body::Body::new(http_body_util::Limited::new(
                body,
                limits.max_body_bytes.min(usize::MAX as u64) as usize,
            ))
        });
        req.extensions_mut().insert(Transport::Remote);
        req.extensions_mut().insert(RemotePeer(peer));
        // The gateway answers a body over the limit with 413 and says which.
        req.extensions_mut().insert(limits);
        let in_flight = tracked.begin(req.version());
        let answer = app.clone().oneshot(req);
        async move {
            let response = answer.await?;
            Ok::<_, Infallible>(response.map(|body| {
                axum::body::Body::new(Tracked {
                    body,
                    _in_flight: in_flight,
                })
            }))
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .keep_alive_interval(limits.idle_timeout / 2)
        .keep_alive_timeout(limits.idle_timeout / 2)
        // WebSocket over HTTP/2 (RFC 8441): the gateway's routes take an
        // extended CONNECT as they take an HTTP/1.1 upgrade.
        .enable_connect_protocol();
    let io = Watched {
        io,
        activity: activity.clone(),
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => return served,
            _ = stopping(&mut until), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = activity.idle(&limits), if !closing => {
                tracing::debug!(%peer, "closing an idle TCP connection");
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// What one connection has done, for the idle rule: a connection that has
/// sent no byte yet is closed after `header_read_timeout` (or
/// `idle_timeout`, if shorter), so silent sockets cannot hold the
/// connection slots; an HTTP/1 connection with no request in flight (its
/// answer, a stream included, not yet fully sent) after `idle_timeout`.
/// An HTTP/2 connection is left to its keep-alive pings: its streams
/// (gRPC, and WebSockets over extended CONNECT, which outlive their
/// request) are not all seen from here. An HTTP/1 WebSocket leaves the
/// connection when it upgrades and is never cut.
#[derive(Default)]
struct Activity {
    /// Any byte read from the peer.
    started: std::sync::atomic::AtomicBool,
    /// The peer speaks HTTP/2.
    http2: std::sync::atomic::AtomicBool,
    /// Requests whose answer is not yet fully sent.
    in_flight: std::sync::atomic::AtomicUsize,
    /// Woken at each change of the above.
    changed: tokio::sync::Notify,
}

impl Activity {
    fn begin(self: &Arc<Self>, version: http::Version) -> InFlight {
        use std::sync::atomic::Ordering::SeqCst;
        if version == http::Version::HTTP_2 {
            self.http2.store(true, SeqCst);
        }
        self.in_flight.fetch_add(1, SeqCst);
        self.changed.notify_waiters();
        InFlight(self.clone())
    }

    fn read_some(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        if !self.started.swap(true, SeqCst) {
            self.changed.notify_waiters();
        }
    }

    /// Resolves once the connection has been idle for as long as `limits`
    /// allow.
    async fn idle(&self, limits: &Limits) {
        use std::sync::atomic::Ordering::SeqCst;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the state is read: no change is missed.
            changed.as_mut().enable();
            let allowed = if !self.started.load(SeqCst) {
                Some(limits.header_read_timeout.min(limits.idle_timeout))
            } else if self.http2.load(SeqCst) || self.in_flight.load(SeqCst) > 0 {
                None
            } else {
                Some(limits.idle_timeout)
            };
            match allowed {
                None => changed.await,
                Some(allowed) => tokio::select! {
                    _ = changed => {}
                    _ = tokio::time::sleep(allowed) => return,
                },
            }
        }
    }
}

/// One request in flight, until its answer's body is done with.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// An answer's body that holds its request [`InFlight`] until hyper is done
/// with it (sent, or dropped when the peer left).
struct Tracked {
    body: axum::body::Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The connection's stream, telling its [`Activity`] when the first bytes
/// come and whether they are the HTTP/2 preface.
struct Watched<I> {
    io: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            // "PRI * HTTP/2.0": the peer speaks HTTP/2 from its first byte
            // (h2c with prior knowledge, or h2 by ALPN).
            if before == 0 && read.starts_with(b"PRI ") {
                self.activity
                    .http2
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
            self.activity.read_some();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
