//! The two tower layers of the TCP listener.
//!
//! - [`AuthnLayer`] (outermost, on every HTTP request of a TCP connection):
//!   finds the bearer token (`Authorization: Bearer T`, or for a WebSocket
//!   upgrade a `Sec-WebSocket-Protocol` entry `bearer.T`; never a query
//!   string), checks it against the [`TokenStore`] and inserts the caller's
//!   [`Scope`] into the request's extensions. `GET /healthz` needs no token.
//!   A refusal is UNAUTHENTICATED: a gRPC request gets it as gRPC
//!   (HTTP 200, trailers-only, grpc-status 16), anything else as 401 with
//!   `WWW-Authenticate: Bearer` and the JSON error body of the REST gateway.
//!   The `Authorization` header is removed once checked, so nothing behind
//!   (a handler, a log line) can see the secret.
//! - [`AuthzLayer`] (around the gRPC services, which the REST gateway also
//!   calls in-process with the same extensions): decides each gRPC path
//!   from its `(pmdaemon.v1.access)` option against the Scope extension,
//!   failing closed: no Scope is UNAUTHENTICATED, a local-only RPC is
//!   PERMISSION_DENIED whatever the scope, a path the contract does not
//!   list needs an admin token (the generic health and reflection services
//!   are reads).
//!
//! Failed attempts are logged once per peer address per minute, from a
//! bounded table (a flood of addresses cannot grow memory).
//!
//! Talks to: `auth::token` (verify), `serve::tcp` (which installs both),
//! `serve::RemotePeer` (the peer address each connection inserts).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, StatusCode, header};
use pmdaemon_proto::v1::Access;
use tonic::Status;
use tower::{Layer, Service};

use super::token::{Scope, TokenStore};
use crate::serve::RemotePeer;
use crate::sync::LockExt;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// How often one peer's failed attempts are logged.
const FAILURE_LOG_WINDOW: Duration = Duration::from_secs(60);
/// Peers remembered for the rate limit of that warning.
const FAILURE_LOG_PEERS: usize = 1024;

/// The authentication layer (see the module header).
#[derive(Clone)]
pub struct AuthnLayer {
    tokens: TokenStore,
    failures: Arc<FailureLog>,
}

impl AuthnLayer {
    pub fn new(tokens: TokenStore) -> Self {
        AuthnLayer {
            tokens,
            failures: Arc::new(FailureLog::default()),
        }
    }
}

impl<S> Layer<S> for AuthnLayer {
    type Service = Authn<S>;
    fn layer(&self, inner: S) -> Authn<S> {
        Authn {
            inner,
            tokens: self.tokens.clone(),
            failures: self.failures.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authn<S> {
    inner: S,
    tokens: TokenStore,
    failures: Arc<FailureLog>,
}

/// Why a request was not authenticated (said to the client; never the
/// token).
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Missing,
    Malformed,
    Invalid,
}

impl Refusal {
    fn message(self) -> &'static str {
        match self {
            Refusal::Missing => {
                "a bearer token is required: send `Authorization: Bearer TOKEN` (the admin token is in $PMDAEMON_HOME/token on the daemon's host)"
            }
            Refusal::Malformed => {
                "the Authorization header is not `Bearer TOKEN` (send it once, with the Bearer scheme)"
            }
            Refusal::Invalid => "the token is unknown, revoked or expired",
        }
    }
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

fn is_exempt<B>(req: &Request<B>) -> bool {
    req.uri().path() == "/healthz"
        && matches!(*req.method(), http::Method::GET | http::Method::HEAD)
}

/// A WebSocket handshake: an HTTP/1.1 upgrade, or an HTTP/2 extended
/// CONNECT with `:protocol websocket` (RFC 8441).
fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let connect = req.method() == http::Method::CONNECT
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    upgrade || connect
}

/// The presented secret, or why there is none.
fn presented<B>(req: &Request<B>) -> Result<Vec<u8>, Refusal> {
    let mut auth = req.headers().get_all(header::AUTHORIZATION).iter();
    match (auth.next(), auth.next()) {
        (Some(_), Some(_)) => return Err(Refusal::Malformed),
        (Some(value), None) => {
            let value = value.as_bytes();
            let scheme = b"bearer ";
            if value.len() <= scheme.len() || !value[..scheme.len()].eq_ignore_ascii_case(scheme) {
                return Err(Refusal::Malformed);
            }
            return Ok(value[scheme.len()..].trim_ascii().to_vec());
        }
        (None, _) => {}
    }
    if is_websocket_upgrade(req) {
        for value in req.headers().get_all(header::SEC_WEBSOCKET_PROTOCOL) {
            let Ok(value) = value.to_str() else { continue };
            for entry in value.split(',') {
                if let Some(token) = entry.trim().strip_prefix("bearer.") {
                    return Ok(token.as_bytes().to_vec());
                }
            }
        }
    }
    Err(Refusal::Missing)
}

/// UNAUTHENTICATED as the caller speaks it.
fn refuse(grpc: bool, refusal: Refusal) -> Response<axum::body::Body> {
    let mut response = if grpc {
        Status::unauthenticated(refusal.message()).into_http::<axum::body::Body>()
    } else {
        let body = serde_json::json!({
            "code": tonic::Code::Unauthenticated as i32,
            "message": refusal.message(),
            "details": [],
        });
        let mut r = Response::new(axum::body::Body::from(body.to_string()));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

impl<S> Service<Request<axum::body::Body>> for Authn<S>
where
    S: Service<
            Request<axum::body::Body>,
            Response = Response<axum::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<axum::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<axum::body::Body>) -> Self::Future {
        // The ready service is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // Whatever is presented, the header does not go further in.
        let found = presented(&req);
        req.headers_mut().remove(header::AUTHORIZATION);
        let scope = match found {
            Ok(secret) => self.tokens.verify(&secret).ok_or(Refusal::Invalid),
            Err(refusal) => Err(refusal),
        };
        match scope {
            Ok(scope) => {
                req.extensions_mut().insert(scope);
            }
            Err(_) if is_exempt(&req) => {}
            Err(refusal) => {
                let peer = req.extensions().get::<RemotePeer>().map(|p| p.0.ip());
                self.failures.record(peer, refusal);
                let grpc = is_grpc(&req);
                return Box::pin(async move { Ok(refuse(grpc, refusal)) });
            }
        }
        Box::pin(inner.call(req))
    }
}

/// One warning per peer address per [`FAILURE_LOG_WINDOW`], with the count
/// of the attempts not logged since.
#[derive(Default)]
struct FailureLog {
    peers: Mutex<HashMap<Option<IpAddr>, (Instant, u64)>>,
}

impl FailureLog {
    fn record(&self, peer: Option<IpAddr>, refusal: Refusal) {
        let now = Instant::now();
        let mut peers = self.peers.locked();
        if !peers.contains_key(&peer) && peers.len() >= FAILURE_LOG_PEERS {
            peers.retain(|_, (at, _)| now.duration_since(*at) < FAILURE_LOG_WINDOW);
            if peers.len() >= FAILURE_LOG_PEERS {
                // Full of recent peers: this one stays unlogged for now,
                // the table bounded.
                return;
            }
        }
        match peers.get_mut(&peer) {
            Some((at, unlogged)) if now.duration_since(*at) < FAILURE_LOG_WINDOW => {
                *unlogged += 1;
            }
            entry => {
                let unlogged = entry.map(|(_, n)| *n).unwrap_or(0);
                let shown = peer.map(|p| p.to_string()).unwrap_or_else(|| "?".into());
                tracing::warn!(
                    peer = %shown,
                    reason = ?refusal,
                    earlier_unlogged = unlogged,
                    "refused a request without a valid token"
                );
                peers.insert(peer, (now, 0));
            }
        }
    }
}

/// The authorization layer (see the module header).
#[derive(Clone, Copy, Default)]
pub struct AuthzLayer;

impl<S> Layer<S> for AuthzLayer {
    type Service = Authz<S>;
    fn layer(&self, inner: S) -> Authz<S> {
        Authz { inner }
    }
}

#[derive(Clone)]
pub struct Authz<S> {
    inner: S,
}

/// Services outside the contract that only read: grpc.health.v1 and
/// reflection.
const GENERIC_READS: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Whether `scope` may call the gRPC method at `path`.
pub fn authorize(path: &str, scope: Option<Scope>) -> Result<(), Status> {
    let Some(scope) = scope else {
        return Err(Status::unauthenticated(Refusal::Missing.message()));
    };
    let access = match pmdaemon_proto::method_access(path) {
        Some(access) => access,
        None if GENERIC_READS.iter().any(|p| path.starts_with(p)) => Access::ReadOnly,
        // Not in the contract (ours or anyone's): fail closed.
        None => Access::Admin,
    };
    match (access, scope) {
        (Access::LocalOnly, _) => Err(Status::permission_denied(format!(
            "{path} is served on the local Unix socket only: run pmd on the daemon's host"
        ))),
        (Access::ReadOnly, _) | (Access::Admin, Scope::Admin) => Ok(()),
        (Access::Admin, Scope::ReadOnly) => Err(Status::permission_denied(format!(
            "{path} changes the daemon: a read-only token may not call it"
        ))),
    }
}

impl<S> Service<Request<tonic::body::Body>> for Authz<S>
where
    S: Service<
            Request<tonic::body::Body>,
            Response = Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        match authorize(req.uri().path(), req.extensions().get::<Scope>().copied()) {
            Ok(()) => Box::pin(inner.call(req)),
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PM: &str = "/pmdaemon.v1.ProcessManager/";

    #[test]
    fn fails_closed() {
        let code = |path: &str, scope| authorize(path, scope).err().map(|s| s.code());
        use tonic::Code::*;
        assert_eq!(
            code(&format!("{PM}ListProcesses"), None),
            Some(Unauthenticated)
        );
        assert_eq!(
            code(&format!("{PM}ListProcesses"), Some(Scope::ReadOnly)),
            None
        );
        assert_eq!(
            code(&format!("{PM}StartProcess"), Some(Scope::ReadOnly)),
            Some(PermissionDenied)
        );
        assert_eq!(code(&format!("{PM}StartProcess"), Some(Scope::Admin)), None);
        assert_eq!(
            code(&format!("{PM}Unknown"), Some(Scope::ReadOnly)),
            Some(PermissionDenied)
        );
        assert_eq!(
            code("/other.Service/Method", Some(Scope::ReadOnly)),
            Some(PermissionDenied)
        );
        assert_eq!(
            code("/grpc.health.v1.Health/Check", Some(Scope::ReadOnly)),
            None
        );
        for (path, access) in pmdaemon_proto::METHOD_ACCESS {
            if *access == Access::LocalOnly {
                assert_eq!(code(path, Some(Scope::Admin)), Some(PermissionDenied));
            }
        }
    }

    #[test]
    fn bearer_is_read_from_the_header_or_a_websocket_protocol() {
        let req = |headers: &[(&str, &str)]| {
            let mut b = Request::builder().uri("/v1/processes?access_token=x");
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.body(()).unwrap()
        };
        assert_eq!(
            presented(&req(&[("authorization", "Bearer abc")])).unwrap(),
            b"abc"
        );
        assert!(matches!(
            presented(&req(&[("authorization", "Basic abc")])),
            Err(Refusal::Malformed)
        ));
        assert!(matches!(presented(&req(&[])), Err(Refusal::Missing)));
        assert_eq!(
            presented(&req(&[
                ("upgrade", "websocket"),
                ("sec-websocket-protocol", "json, bearer.xyz")
            ]))
            .unwrap(),
            b"xyz"
        );
        // Only on an upgrade.
        assert!(matches!(
            presented(&req(&[("sec-websocket-protocol", "bearer.xyz")])),
            Err(Refusal::Missing)
        ));
    }
}
