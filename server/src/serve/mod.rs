//! The daemon's listeners. Each one serves the same [`Routes`] (the
//! ProcessManager service, gRPC health and reflection, built once by
//! [`crate::run`]) behind the checks of its kind, and stops accepting when
//! its shutdown future resolves: `unix` is the local socket (peer uid,
//! `auth::peer`); `tcp` is `--listen` (bearer tokens and scopes,
//! `auth::layer`; TLS), with `/healthz`, `/metrics` and the REST gateway on
//! the same port.
//!
//! Each listener tells the API which transport a call came on
//! ([`Transport`], a request extension): the core has no TCP-specific code,
//! only the API's rule that a remote call has no caller cwd or PATH.

pub(crate) mod metrics;
pub(crate) mod tcp;
pub(crate) mod unix;

pub(crate) use tonic::service::Routes;

/// Which kind of listener a request came on, inserted by the listener into
/// the request's extensions. A request without one is treated as remote
/// (fail closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The Unix socket: the caller is on this host, as this user.
    Local,
    /// TCP (gRPC or HTTP): the caller's directories and PATH mean nothing
    /// here.
    Remote,
}

impl Transport {
    pub fn of(extensions: &http::Extensions) -> Transport {
        extensions
            .get::<Transport>()
            .copied()
            .unwrap_or(Transport::Remote)
    }
}

/// The peer address of a TCP connection, in each request's extensions (for
/// the failed-attempt log).
#[derive(Debug, Clone, Copy)]
pub struct RemotePeer(pub std::net::SocketAddr);
