//! ReloadProcess: a rolling restart whose progress is streamed, one message
//! per replaced instance. The reload runs in its own task feeding a bounded
//! channel; it goes on to the end even if the client disconnects (stopping
//! half-way would leave the app in a mixed state for no reason).

use std::pin::Pin;
use std::time::Duration;

use pmdaemon_proto::v1;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::convert::{info, parse_target};
use crate::supervisor::spec::MAX_READY_TIMEOUT_MS;
use crate::supervisor::{DEFAULT_READY_TIMEOUT, Supervisor};

/// The response stream of ReloadProcess.
pub type ReloadStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<v1::ReloadProcessResponse, Status>> + Send>>;

pub fn reload(sup: &Supervisor, req: v1::ReloadProcessRequest) -> Result<ReloadStream, Status> {
    let target = parse_target(&req.target)?;
    let timeout = match req.ready_timeout_ms {
        None => DEFAULT_READY_TIMEOUT,
        Some(ms) => ready_timeout(ms)?,
    };
    let caller_env = req.update_env.then(|| {
        req.caller_env
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>()
    });
    // Fail fast on an unknown target, before a stream exists.
    sup.views(&target)?;
    let (tx, rx) = mpsc::channel(16);
    let sup = sup.clone();
    tokio::spawn(async move {
        let progress_tx = tx.clone();
        let result = sup
            .reload(
                &target,
                timeout,
                caller_env.as_ref(),
                move |view, done, total| {
                    let _ = progress_tx.try_send(Ok(v1::ReloadProcessResponse {
                        process: Some(info(view)),
                        done: done as u32,
                        total: total as u32,
                    }));
                },
            )
            .await;
        if let Err(e) = result {
            let _ = tx.send(Err(Status::from(e))).await;
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// A `ready_timeout_ms` of a request, checked.
pub(super) fn ready_timeout(ms: u64) -> Result<Duration, Status> {
    if ms == 0 || ms > MAX_READY_TIMEOUT_MS {
        return Err(Status::invalid_argument(format!(
            "ready_timeout_ms: {ms} is outside 1 ..= {MAX_READY_TIMEOUT_MS}"
        )));
    }
    Ok(Duration::from_millis(ms))
}
