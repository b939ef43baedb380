//! Raw gRPC to a daemon over its Unix socket, for the tests that speak the
//! `pmdaemon.v1` contract (and the generic services) without `pmd`.
//!
//! Talks to: a daemon's socket; runs futures on a throwaway tokio runtime.

use std::path::Path;

pub use pmdaemon_proto::v1;
pub use pmdaemon_proto::v1::process_manager_client::ProcessManagerClient;
pub use tonic::transport::Channel;

/// Runs a future to completion on a fresh current-thread runtime (for the
/// tests that speak raw gRPC).
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(fut)
}

/// A raw gRPC client over the daemon's Unix socket.
pub async fn connect(
    socket: &Path,
) -> Result<ProcessManagerClient<Channel>, tonic::transport::Error> {
    Ok(ProcessManagerClient::new(connect_channel(socket).await?))
}

/// A gRPC channel over the daemon's Unix socket, for any service on it.
pub async fn connect_channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    use hyper_util::rt::TokioIo;
    use tonic::transport::{Endpoint, Uri};
    let socket = socket.to_path_buf();
    // The authority is ignored: every connection goes to the socket.
    let channel = Endpoint::try_from("http://localhost")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await?;
    Ok(channel)
}
