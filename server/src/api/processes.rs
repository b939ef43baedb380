//! Lifecycle RPCs: start, stop, restart, delete, list, get.

use pmdaemon_proto::{Target, v1};
use tonic::Status;

use super::convert::{info, parse_target, spec_from_proto, state_from_proto};
use crate::supervisor::Supervisor;

pub async fn start(
    sup: &Supervisor,
    req: v1::StartProcessRequest,
) -> Result<v1::StartProcessResponse, Status> {
    let views = match (req.spec, req.target.is_empty()) {
        (Some(spec), true) => {
            let spec = spec_from_proto(spec, &req.caller_cwd)?;
            sup.create(spec).await?
        }
        (None, false) => sup.start(&parse_target(&req.target)?).await?,
        (Some(_), false) => {
            return Err(Status::invalid_argument(
                "give either spec (a new app) or target (an existing app), not both",
            ));
        }
        (None, true) => {
            return Err(Status::invalid_argument(
                "nothing to start: give spec (a new app) or target (an existing app)",
            ));
        }
    };
    Ok(v1::StartProcessResponse {
        processes: views.iter().map(info).collect(),
    })
}

pub async fn stop(
    sup: &Supervisor,
    req: v1::StopProcessRequest,
) -> Result<v1::StopProcessResponse, Status> {
    let views = sup.stop(&parse_target(&req.target)?).await?;
    Ok(v1::StopProcessResponse {
        processes: views.iter().map(info).collect(),
    })
}

pub async fn restart(
    sup: &Supervisor,
    req: v1::RestartProcessRequest,
) -> Result<v1::RestartProcessResponse, Status> {
    let views = sup.restart(&parse_target(&req.target)?).await?;
    Ok(v1::RestartProcessResponse {
        processes: views.iter().map(info).collect(),
    })
}

pub async fn delete(
    sup: &Supervisor,
    req: v1::DeleteProcessRequest,
) -> Result<v1::DeleteProcessResponse, Status> {
    let target = parse_target(&req.target)?;
    let only = state_from_proto(req.status)?;
    let views = sup.delete(&target, only).await?;
    Ok(v1::DeleteProcessResponse {
        processes: views.iter().map(info).collect(),
    })
}

pub fn list(sup: &Supervisor) -> Result<v1::ListProcessesResponse, Status> {
    let views = sup.views(&Target::All)?;
    Ok(v1::ListProcessesResponse {
        processes: views.iter().map(info).collect(),
    })
}

pub fn get(sup: &Supervisor, req: v1::GetProcessRequest) -> Result<v1::GetProcessResponse, Status> {
    let views = sup.views(&parse_target(&req.target)?)?;
    Ok(v1::GetProcessResponse {
        processes: views.iter().map(info).collect(),
    })
}
