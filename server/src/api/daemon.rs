//! Daemon-level RPCs: ping, save, resurrect. (Shutdown only flips the
//! shutdown channel, in `mod.rs`.)

use pmdaemon_proto::v1;
use tonic::Status;

use super::convert::info;
use crate::supervisor::Supervisor;

pub fn ping(
    sup: &Supervisor,
    started_at_ms: i64,
    notices: &[String],
    listen: &[String],
) -> v1::PingResponse {
    v1::PingResponse {
        version: pmdaemon_proto::VERSION.to_string(),
        daemon_pid: std::process::id(),
        started_at_ms,
        home: sup.home().display().to_string(),
        notices: notices.to_vec(),
        listen: listen.to_vec(),
    }
}

pub async fn save(sup: &Supervisor) -> Result<v1::SaveProcessesResponse, Status> {
    let (path, apps) = sup.save_dump().await?;
    Ok(v1::SaveProcessesResponse {
        path: path.display().to_string(),
        apps: apps as u32,
    })
}

pub async fn resurrect(
    sup: &Supervisor,
    req: v1::ResurrectRequest,
    transport: crate::serve::Transport,
) -> Result<v1::ResurrectResponse, Status> {
    let path = super::processes::caller_path(transport, &req.caller_path);
    let (views, skipped, failed) = sup.resurrect(path.as_deref()).await?;
    Ok(v1::ResurrectResponse {
        processes: views.iter().map(info).collect(),
        skipped,
        failed,
    })
}
