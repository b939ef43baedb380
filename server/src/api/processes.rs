//! Lifecycle RPCs: start, stop, restart, delete, list, get; PM2's reset,
//! sendSignal (SignalProcess) and env (GetProcessEnv).

use std::time::Duration;

use pmdaemon_proto::{Target, v1};
use tonic::Status;

use super::convert::{
    Caller, EnvValues, info, parse_target, resolve_instances, spec_from_proto, state_from_proto,
};
use crate::ports::PortSpec;
use crate::serve::Transport;
use crate::supervisor::{
    ApplyMode, ApplyOptions, ApplyOutcome, DEFAULT_DEPENDENCY_TIMEOUT, DEFAULT_READY_TIMEOUT,
    Supervisor,
};

pub async fn start(
    sup: &Supervisor,
    req: v1::StartProcessRequest,
    transport: Transport,
) -> Result<v1::StartProcessResponse, Status> {
    let views = match (req.spec, req.target.is_empty()) {
        (Some(spec), true) => {
            let spec = spec_from_proto(spec, Caller::of(transport, &req.caller_cwd))?;
            let timeout = dependency_timeout(req.dependency_timeout_ms)?;
            sup.create(
                spec,
                caller_path(transport, &req.caller_path).as_deref(),
                timeout,
            )
            .await?
        }
        (None, false) => {
            let timeout = dependency_timeout(req.dependency_timeout_ms)?;
            sup.start(&parse_target(&req.target)?, timeout).await?
        }
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
    let target = parse_target(&req.target)?;
    let views = if req.update_env {
        if !req.port.trim().is_empty() {
            return Err(Status::invalid_argument(
                "port and update_env: give one; a restart with another port keeps the \
                 captured environment",
            ));
        }
        let timeout = dependency_timeout(req.dependency_timeout_ms)?;
        let env = req.caller_env.into_iter().collect();
        sup.restart_with_env(&target, &env, timeout).await?
    } else if req.port.trim().is_empty() {
        let timeout = dependency_timeout(req.dependency_timeout_ms)?;
        sup.restart(&target, timeout).await?
    } else {
        let port: PortSpec = req.port.parse().map_err(crate::error::Error::from)?;
        sup.restart_with_port(&target, port).await?
    };
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
    let (views, kept) = sup.delete(&target, only).await?;
    Ok(v1::DeleteProcessResponse {
        processes: views.iter().map(info).collect(),
        kept,
    })
}

pub fn list(sup: &Supervisor, env_values: EnvValues) -> Result<v1::ListProcessesResponse, Status> {
    let views = sup.views(&Target::All)?;
    Ok(v1::ListProcessesResponse {
        processes: env_values.infos(&views),
    })
}

pub fn get(
    sup: &Supervisor,
    req: v1::GetProcessRequest,
    env_values: EnvValues,
) -> Result<v1::GetProcessResponse, Status> {
    let views = sup.views(&parse_target(&req.target)?)?;
    Ok(v1::GetProcessResponse {
        processes: env_values.infos(&views),
    })
}

pub async fn reset(
    sup: &Supervisor,
    req: v1::ResetProcessRequest,
) -> Result<v1::ResetProcessResponse, Status> {
    let views = sup.reset(&parse_target(&req.target)?).await?;
    Ok(v1::ResetProcessResponse {
        processes: views.iter().map(info).collect(),
    })
}

pub async fn signal(
    sup: &Supervisor,
    req: v1::SignalProcessRequest,
) -> Result<v1::SignalProcessResponse, Status> {
    let target = parse_target(&req.target)?;
    let signal = pmdaemon_proto::parse_signal(&req.signal)
        .map_err(|e| Status::invalid_argument(e.named("signal").0))?;
    let views = sup.signal(&target, signal).await?;
    Ok(v1::SignalProcessResponse {
        processes: views.iter().map(info).collect(),
        signal: signal.as_str().to_string(),
    })
}

pub fn env(
    sup: &Supervisor,
    req: v1::GetProcessEnvRequest,
) -> Result<v1::GetProcessEnvResponse, Status> {
    let envs = sup.environments(&parse_target(&req.target)?)?;
    Ok(v1::GetProcessEnvResponse {
        processes: envs
            .into_iter()
            .map(|e| v1::ProcessEnv {
                id: e.id,
                name: e.name,
                env: e.env.into_iter().collect(),
            })
            .collect(),
    })
}

pub async fn scale(
    sup: &Supervisor,
    req: v1::ScaleProcessRequest,
) -> Result<v1::ScaleProcessResponse, Status> {
    pmdaemon_proto::validate_name(&req.name).map_err(|e| Status::invalid_argument(e.0))?;
    let count = resolve_instances(req.instances)?;
    let (views, delta) = sup.scale(&req.name, count).await?;
    Ok(v1::ScaleProcessResponse {
        processes: views.iter().map(info).collect(),
        delta: delta as i32,
    })
}

pub async fn apply(
    sup: &Supervisor,
    req: v1::ApplyAppsRequest,
    transport: Transport,
) -> Result<v1::ApplyAppsResponse, Status> {
    if req.apps.is_empty() {
        return Err(Status::invalid_argument("apps is empty: nothing to apply"));
    }
    let mode = match v1::ApplyMode::try_from(req.mode) {
        Ok(v1::ApplyMode::Unspecified) => ApplyMode::Start,
        Ok(v1::ApplyMode::Restart) => ApplyMode::Restart,
        Ok(v1::ApplyMode::Reload) => ApplyMode::Reload,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "mode: {} is not an apply mode",
                req.mode
            )));
        }
    };
    let mut specs = Vec::with_capacity(req.apps.len());
    for (n, app) in req.apps.into_iter().enumerate() {
        let label = if app.name.is_empty() {
            format!("app {}", n + 1)
        } else {
            format!("app {:?}", app.name)
        };
        let spec = spec_from_proto(app, Caller::of(transport, &req.caller_cwd))
            .map_err(|e| Status::invalid_argument(format!("{label}: {e}")))?;
        specs.push(spec);
    }
    let dependency_timeout = dependency_timeout(req.dependency_timeout_ms)?;
    let ready = match req.ready_timeout_ms {
        None => DEFAULT_READY_TIMEOUT,
        Some(ms) => super::reload::ready_timeout(ms)?,
    };
    let options = ApplyOptions {
        dependency: dependency_timeout,
        ready,
        path_var: caller_path(transport, &req.caller_path),
        update_env: req.update_env,
    };
    let applied = sup.apply(specs, mode, options).await?;
    Ok(v1::ApplyAppsResponse {
        apps: applied
            .into_iter()
            .map(|(name, result)| match result {
                Ok(a) => v1::AppliedApp {
                    name,
                    outcome: match a.outcome {
                        ApplyOutcome::Created => v1::ApplyOutcome::Created,
                        ApplyOutcome::Unchanged => v1::ApplyOutcome::Unchanged,
                        ApplyOutcome::Started => v1::ApplyOutcome::Started,
                        ApplyOutcome::Updated => v1::ApplyOutcome::Updated,
                        ApplyOutcome::Restarted => v1::ApplyOutcome::Restarted,
                        ApplyOutcome::Scaled => v1::ApplyOutcome::Scaled,
                    } as i32,
                    changed_fields: a.changed_fields.iter().map(|f| f.to_string()).collect(),
                    processes: a.views.iter().map(info).collect(),
                    error: String::new(),
                },
                Err(e) => v1::AppliedApp {
                    name,
                    outcome: v1::ApplyOutcome::Failed as i32,
                    error: super::status(e).message().to_owned(),
                    ..Default::default()
                },
            })
            .collect(),
    })
}

/// A request's `dependency_timeout_ms`: 0 is the daemon's default.
fn dependency_timeout(ms: u64) -> Result<Duration, Status> {
    match ms {
        0 => Ok(DEFAULT_DEPENDENCY_TIMEOUT),
        ms => pmdaemon_proto::check_duration("dependency_timeout_ms", Duration::from_millis(ms))
            .map_err(|e| Status::invalid_argument(e.0)),
    }
}

/// A request's `caller_path`: None when empty or from a remote caller
/// (whose PATH is another host's): the daemon's PATH is used.
pub(super) fn caller_path(transport: Transport, path: &str) -> Option<std::ffi::OsString> {
    (transport == Transport::Local && !path.is_empty()).then(|| path.into())
}
