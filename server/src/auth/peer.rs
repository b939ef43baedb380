//! Peer credentials on the Unix socket (0600, in a 0700 home): the peer's
//! uid, read with SO_PEERCRED when the connection is accepted, must be the
//! daemon's own uid or root. A request without Unix peer credentials is
//! refused: this check belongs to the Unix listener only (a TCP listener
//! brings its own token check).

use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};

/// The interceptor of every service on the Unix socket.
pub(crate) fn peer_uid_check(
    daemon_uid: u32,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut req: Request<()>| {
        // Tells the API that the caller's cwd and PATH are this host's.
        req.extensions_mut().insert(crate::serve::Transport::Local);
        let cred = req
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|info| info.peer_cred);
        match cred {
            Some(c) if c.uid() == daemon_uid || c.uid() == 0 => Ok(req),
            Some(c) => {
                tracing::warn!(
                    peer_uid = c.uid(),
                    peer_pid = c.pid().unwrap_or(0),
                    "refused a client of another user"
                );
                Err(Status::permission_denied(format!(
                    "uid {} may not use this pmdaemond: it belongs to uid {daemon_uid}; run pmd as that user or start your own daemon with your own PMDAEMON_HOME",
                    c.uid()
                )))
            }
            None => Err(Status::unauthenticated(
                "no peer credentials: only the local Unix socket is served",
            )),
        }
    }
}
