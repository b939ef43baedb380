//! Who may talk to the daemon. On the Unix socket (0600, in a 0700 home)
//! the peer's uid, read with SO_PEERCRED when the connection is accepted,
//! must be the daemon's own uid or root. Requests without Unix peer
//! credentials are refused: the only listener today is the Unix socket, and
//! TCP access will come with its own token check.

use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};

/// An interceptor for every service on the socket.
pub fn peer_uid_check(
    daemon_uid: u32,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| {
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
