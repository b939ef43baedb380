//! The local listener: `$PMDAEMON_HOME/pmd.sock`, mode 0600, whose peers
//! must be the daemon's own user or root (`auth::peer`).

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use super::Routes;
use crate::{HomeLock, StartError, io_err};

/// Binds `$home/pmd.sock` with mode 0600, replacing a stale socket (the
/// caller holds the home lock, so no live daemon owns it).
pub fn bind(home: &Path, _lock: &HomeLock) -> Result<UnixListener, StartError> {
    let path = pmdaemon_proto::socket_path(home);
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed stale socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot remove stale socket", &path)(e)),
    }
    let listener = UnixListener::bind(&path).map_err(io_err("cannot listen on", &path))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err("cannot restrict permissions of", &path))?;
    Ok(listener)
}

/// Serves `routes` on `listener` until `until` resolves; open streams are
/// waited for (they end when the daemon shuts down).
pub(crate) async fn serve(
    listener: UnixListener,
    routes: Routes,
    until: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let daemon_uid = nix::unistd::geteuid().as_raw();
    tonic::transport::Server::builder()
        .layer(tonic::service::InterceptorLayer::new(
            crate::auth::peer::peer_uid_check(daemon_uid),
        ))
        .add_routes(routes)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), until)
        .await
}
