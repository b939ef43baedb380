//! Conversions between the wire types (`pmdaemon_proto::v1`) and the
//! supervisor's own types, with the validation every client gets.

use std::path::{Path, PathBuf};

use pmdaemon_proto::{Instances, Target, v1};
use tonic::Status;

use crate::error::Error;
use crate::health::{self, HealthCheck, Probe};
use crate::ports::PortSpec;
use crate::supervisor::InstanceView;
use crate::supervisor::instance::Health;
use crate::supervisor::instance::State;
use crate::supervisor::spec::{self, AppSpec, Autorestart};

pub fn parse_target(target: &str) -> Result<Target, Status> {
    if target.is_empty() {
        return Err(Status::invalid_argument(
            "target is empty: give an app name, a process id or `all`",
        ));
    }
    target
        .parse()
        .map_err(|e: pmdaemon_proto::InvalidInput| Status::invalid_argument(e.0))
}

/// A state filter: UNSPECIFIED means none.
pub fn state_from_proto(raw: i32) -> Result<Option<State>, Status> {
    use v1::ProcessState as P;
    let state = P::try_from(raw)
        .map_err(|_| Status::invalid_argument(format!("status: {raw} is not a process state")))?;
    Ok(State::from_proto(state))
}

/// Where a spec's relative paths may resolve: a local caller's directory,
/// or nowhere (a remote caller's directories are not this host's).
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// On the Unix socket, with the caller's `caller_cwd` (may be empty).
    Local { cwd: &'a str },
    /// Over TCP or HTTP: `cwd` and `script` must be absolute paths (or the
    /// script a bare command on the daemon's PATH).
    Remote,
}

impl<'a> Caller<'a> {
    /// The caller of a request that came on `transport` with `caller_cwd`.
    pub fn of(transport: crate::serve::Transport, caller_cwd: &'a str) -> Self {
        match transport {
            crate::serve::Transport::Local => Caller::Local { cwd: caller_cwd },
            crate::serve::Transport::Remote => Caller::Remote,
        }
    }
}

/// What a remote caller is told about a relative path.
const REMOTE_PATHS: &str = "a call over TCP or HTTP has no current directory on the daemon's host: give an absolute path (or, for script, a bare command found on the daemon's PATH)";

/// Validates a client's spec and fills in defaults. Relative `script` and
/// `cwd` resolve against a local caller's cwd; a remote caller's must be
/// absolute.
pub fn spec_from_proto(p: v1::AppSpec, caller: Caller<'_>) -> Result<AppSpec, Error> {
    let invalid = |m: String| Error::InvalidArgument(m);
    let caller_cwd = match caller {
        Caller::Local { cwd } => cwd,
        Caller::Remote => {
            if !p.cwd.is_empty() && !Path::new(&p.cwd).is_absolute() {
                return Err(invalid(format!(
                    "cwd: {:?} is relative; {REMOTE_PATHS}",
                    p.cwd
                )));
            }
            if p.script.contains('/') && !Path::new(&p.script).is_absolute() {
                return Err(invalid(format!(
                    "script: {:?} is relative; {REMOTE_PATHS}",
                    p.script
                )));
            }
            ""
        }
    };
    let base = if caller_cwd.is_empty() {
        None
    } else {
        let base = PathBuf::from(caller_cwd);
        if !base.is_absolute() {
            return Err(invalid(format!(
                "caller_cwd: {caller_cwd:?} is not an absolute path"
            )));
        }
        Some(base)
    };
    let cwd = match (p.cwd.as_str(), &base) {
        ("", Some(base)) => base.clone(),
        // A remote caller without cwd: an absolute script's directory, else
        // the root (a bare command).
        ("", None) if matches!(caller, Caller::Remote) => Path::new(&p.script)
            .parent()
            .filter(|d| d.is_absolute())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/")),
        ("", None) => {
            return Err(invalid(
                "caller_cwd or cwd is required: relative paths need a directory to resolve against"
                    .into(),
            ));
        }
        (c, _) if Path::new(c).is_absolute() => PathBuf::from(c),
        (c, Some(base)) => base.join(c),
        (c, None) => {
            return Err(invalid(format!(
                "cwd: {c:?} is relative and no caller_cwd was given"
            )));
        }
    };
    let cwd = spec::absolute(&cwd);
    if p.script.trim().is_empty() {
        return Err(invalid(
            "script is empty: give a file or command to run".into(),
        ));
    }
    let name = if p.name.is_empty() {
        pmdaemon_proto::default_name(&p.script).map_err(|e| {
            invalid(format!(
                "cannot use the script's file name as app name ({e}); give --name"
            ))
        })?
    } else {
        p.name
    };
    let autorestart = match v1::RestartPolicy::try_from(p.autorestart) {
        Ok(v1::RestartPolicy::Unspecified | v1::RestartPolicy::Always) => Autorestart::Always,
        Ok(v1::RestartPolicy::OnFailure) => Autorestart::OnFailure,
        Ok(v1::RestartPolicy::Never) => Autorestart::Never,
        Err(_) => {
            return Err(invalid(format!(
                "autorestart: {} is not a restart policy",
                p.autorestart
            )));
        }
    };
    let stop_signal = if p.stop_signal.is_empty() {
        pmdaemon_proto::DEFAULT_STOP_SIGNAL.to_string()
    } else {
        pmdaemon_proto::parse_stop_signal("stop_signal", &p.stop_signal)?
            .as_str()
            .to_string()
    };
    let instances = resolve_instances(p.instances.unwrap_or(1))?;
    let port = if p.port.trim().is_empty() {
        None
    } else {
        Some(p.port.parse::<PortSpec>().map_err(Error::from)?)
    };
    let in_cwd = |path: &str| spec::absolute(&cwd.join(path));
    // A missing directory is created when the file is placed (as PM2
    // does), under the same rules as an existing one.
    let log_file = |field: &str, path: &str| -> Result<Option<PathBuf>, Error> {
        match path {
            "" => Ok(None),
            // PM2's two spellings of "discard".
            "NULL" | spec::DISCARD => Ok(Some(PathBuf::from(spec::DISCARD))),
            p if p == "~" || p.starts_with("~/") => Err(invalid(format!(
                "{field}: {p:?} starts with ~, which the daemon does not expand (whose home \
                 would it be?): give the absolute path (pmd expands ~ before sending)"
            ))),
            p => Ok(Some(in_cwd(p))),
        }
    };
    let watch_paths: Vec<PathBuf> = p.watch_paths.iter().map(|w| in_cwd(w)).collect();
    let health_check = p.health_check.map(health_from_proto).transpose()?;
    let balance = p.balance.map(balance_from_proto).transpose()?;
    let depends_on = p
        .depends_on
        .into_iter()
        .map(|d| {
            let condition = spec::Condition::from_wire(d.condition)
                .map_err(|e| e.named(format_args!("depends_on {:?}", d.app)))?;
            Ok(spec::Dependency {
                app: d.app,
                condition,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let out_file = log_file("out_file", &p.out_file)?;
    let error_file = log_file("error_file", &p.error_file)?;
    if out_file.is_some()
        && out_file == error_file
        && out_file.as_deref() != Some(Path::new(spec::DISCARD))
    {
        return Err(invalid(
            "out_file and error_file must be different files".into(),
        ));
    }
    // Unset: none; empty: the default file; a discard: none either.
    let combined = match p.log_file.as_deref() {
        None => None,
        Some("") => Some(spec::CombinedLog::Default),
        Some(path) => match log_file("log_file", path)? {
            Some(path) if path == Path::new(spec::DISCARD) => None,
            Some(path) => Some(spec::CombinedLog::File(path)),
            None => None,
        },
    };
    let log_date_format = match p.log_date_format.as_str() {
        "" => None,
        text => Some(
            text.parse::<pmdaemon_proto::DateFormat>()
                .map_err(|e| e.named("log_date_format"))?
                .to_string(),
        ),
    };
    let log_type = match v1::LogType::try_from(p.log_type) {
        Ok(v1::LogType::Unspecified | v1::LogType::Text) => pmdaemon_proto::LogType::Text,
        Ok(v1::LogType::Json) => pmdaemon_proto::LogType::Json,
        Err(_) => {
            return Err(invalid(format!(
                "log_type: {} is not a log type (LOG_TYPE_TEXT or LOG_TYPE_JSON)",
                p.log_type
            )));
        }
    };
    // Empty (PM2's `cron_restart: ""`): no schedule.
    let cron_restart = match p.cron_restart.trim() {
        "" => None,
        text => Some(
            text.parse::<pmdaemon_proto::CronSchedule>()
                .map_err(|e| e.named("cron_restart"))?,
        ),
    };
    let spec = AppSpec {
        cron_restart,
        name,
        script: p.script,
        args: p.args,
        interpreter: p.interpreter.filter(|i| !i.is_empty()),
        interpreter_args: p.interpreter_args,
        cwd,
        env: p.env.into_iter().collect(),
        caller_env: p.caller_env.into_iter().collect(),
        autorestart,
        max_restarts: p.max_restarts.unwrap_or(spec::DEFAULT_MAX_RESTARTS),
        min_uptime_ms: p.min_uptime_ms.unwrap_or(spec::DEFAULT_MIN_UPTIME_MS),
        restart_delay_ms: p.restart_delay_ms.unwrap_or(0),
        exp_backoff_initial_ms: p
            .exp_backoff_initial_ms
            .unwrap_or(spec::DEFAULT_BACKOFF_INITIAL_MS),
        exp_backoff_max_ms: p.exp_backoff_max_ms.unwrap_or(spec::DEFAULT_BACKOFF_MAX_MS),
        kill_timeout_ms: p.kill_timeout_ms.unwrap_or(spec::DEFAULT_KILL_TIMEOUT_MS),
        stop_signal,
        time: p.time,
        log_max_bytes: p.log_max_bytes.unwrap_or(spec::DEFAULT_LOG_MAX_BYTES),
        log_max_files: p.log_max_files.unwrap_or(spec::DEFAULT_LOG_MAX_FILES),
        instances,
        port,
        port_env: if p.port_env.is_empty() {
            spec::DEFAULT_PORT_ENV.to_string()
        } else {
            p.port_env
        },
        watch: p.watch || !p.watch_paths.is_empty(),
        watch_paths,
        ignore_watch: p.ignore_watch,
        watch_delay_ms: p.watch_delay_ms.unwrap_or(spec::DEFAULT_WATCH_DELAY_MS),
        out_file,
        error_file,
        health_check,
        max_memory_bytes: p.max_memory_bytes.filter(|b| *b > 0),
        depends_on,
        start_limit_burst: p
            .start_limit_burst
            .unwrap_or(pmdaemon_proto::DEFAULT_START_LIMIT_BURST),
        start_limit_interval_ms: p
            .start_limit_interval_ms
            .unwrap_or(pmdaemon_proto::DEFAULT_START_LIMIT_INTERVAL_MS),
        log_date_format,
        merge_logs: p.merge_logs,
        log_file: combined,
        log_type,
        wait_ready: p.wait_ready,
        listen_timeout_ms: p
            .listen_timeout_ms
            .unwrap_or(pmdaemon_proto::DEFAULT_LISTEN_TIMEOUT_MS),
        shutdown_with_message: p.shutdown_with_message,
        instance_var: if p.instance_var.is_empty() {
            pmdaemon_proto::DEFAULT_INSTANCE_VAR.to_string()
        } else {
            p.instance_var
        },
        increment_var: Some(p.increment_var).filter(|v| !v.is_empty()),
        stop_exit_codes: p.stop_exit_codes,
        balance,
    };
    spec.validate()?;
    Ok(spec)
}

/// PM2's instance counts (`pmdaemon_proto::Instances`): N > 0 is N, 0 is
/// one per CPU (`max`), -1 one less than the CPUs (at least one).
pub fn resolve_instances(requested: i32) -> Result<u32, Error> {
    let instances = Instances::from_wire(requested).map_err(|e| e.named("instances"))?;
    Ok(instances.resolve(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as u32
    }))
}

fn health_from_proto(h: v1::HealthCheck) -> Result<HealthCheck, Error> {
    use v1::health_check::Probe as P;
    let probe = match pmdaemon_proto::health::probe_of(&h).map_err(|e| e.named("health_check"))? {
        P::Http(url) => Probe::Http {
            url: url.clone(),
            expected_status: h.expected_status.map(|s| s.min(u32::from(u16::MAX)) as u16),
        },
        P::Tcp(target) => Probe::Tcp {
            target: target.clone(),
        },
        P::Script(command) => Probe::Script {
            command: command.clone(),
        },
    };
    let interval_ms = h.interval_ms.unwrap_or(health::DEFAULT_INTERVAL_MS);
    let check = HealthCheck {
        probe,
        interval_ms,
        // The default timeout shrinks with a short interval; only an
        // explicit timeout longer than the interval is an error.
        timeout_ms: h
            .timeout_ms
            .unwrap_or(health::DEFAULT_TIMEOUT_MS.min(interval_ms)),
        retries: h.retries.unwrap_or(health::DEFAULT_RETRIES),
        start_period_ms: h.start_period_ms.unwrap_or(health::DEFAULT_START_PERIOD_MS),
    };
    check
        .validate()
        .map_err(|e| Error::InvalidArgument(format!("health_check: {e}")))?;
    Ok(check)
}

fn health_to_proto(h: &HealthCheck) -> v1::HealthCheck {
    use v1::health_check::Probe as P;
    let (probe, expected_status) = match &h.probe {
        Probe::Http {
            url,
            expected_status,
        } => (P::Http(url.clone()), expected_status.map(u32::from)),
        Probe::Tcp { target } => (P::Tcp(target.clone()), None),
        Probe::Script { command } => (P::Script(command.clone()), None),
    };
    v1::HealthCheck {
        probe: Some(probe),
        interval_ms: Some(h.interval_ms),
        timeout_ms: Some(h.timeout_ms),
        retries: Some(h.retries),
        start_period_ms: Some(h.start_period_ms),
        expected_status,
    }
}

pub fn health_state(h: Health) -> v1::HealthState {
    match h {
        Health::None => v1::HealthState::Unspecified,
        Health::Unknown => v1::HealthState::Unknown,
        Health::Healthy => v1::HealthState::Healthy,
        Health::Unhealthy => v1::HealthState::Unhealthy,
    }
}

pub fn spec_to_proto(s: &AppSpec) -> v1::AppSpec {
    v1::AppSpec {
        name: s.name.clone(),
        script: s.script.clone(),
        args: s.args.clone(),
        interpreter: s.interpreter.clone(),
        interpreter_args: s.interpreter_args.clone(),
        cwd: s.cwd.display().to_string(),
        env: s.env.clone().into_iter().collect(),
        autorestart: match s.autorestart {
            Autorestart::Always => v1::RestartPolicy::Always,
            Autorestart::OnFailure => v1::RestartPolicy::OnFailure,
            Autorestart::Never => v1::RestartPolicy::Never,
        } as i32,
        max_restarts: Some(s.max_restarts),
        min_uptime_ms: Some(s.min_uptime_ms),
        restart_delay_ms: Some(s.restart_delay_ms),
        exp_backoff_initial_ms: Some(s.exp_backoff_initial_ms),
        exp_backoff_max_ms: Some(s.exp_backoff_max_ms),
        kill_timeout_ms: Some(s.kill_timeout_ms),
        stop_signal: s.stop_signal.clone(),
        time: s.time,
        log_max_bytes: Some(s.log_max_bytes),
        log_max_files: Some(s.log_max_files),
        instances: Some(s.instances as i32),
        port: s.port.map(|p| p.to_string()).unwrap_or_default(),
        port_env: s.port_env.clone(),
        watch: s.watch,
        watch_paths: s
            .watch_paths
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        ignore_watch: s.ignore_watch.clone(),
        watch_delay_ms: Some(s.watch_delay_ms),
        out_file: s
            .out_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        error_file: s
            .error_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        health_check: s.health_check.as_ref().map(health_to_proto),
        max_memory_bytes: s.max_memory_bytes,
        depends_on: s
            .depends_on
            .iter()
            .map(|d| v1::Dependency {
                app: d.app.clone(),
                condition: v1::DependencyCondition::from(d.condition) as i32,
            })
            .collect(),
        start_limit_burst: Some(s.start_limit_burst),
        start_limit_interval_ms: Some(s.start_limit_interval_ms),
        log_date_format: s.log_date_format.clone().unwrap_or_default(),
        merge_logs: s.merge_logs,
        log_file: s.log_file.as_ref().map(|c| match c {
            spec::CombinedLog::Default => String::new(),
            spec::CombinedLog::File(path) => path.display().to_string(),
        }),
        log_type: match s.log_type {
            pmdaemon_proto::LogType::Text => v1::LogType::Unspecified,
            pmdaemon_proto::LogType::Json => v1::LogType::Json,
        } as i32,
        wait_ready: s.wait_ready,
        listen_timeout_ms: Some(s.listen_timeout_ms),
        shutdown_with_message: s.shutdown_with_message,
        instance_var: s.instance_var.clone(),
        increment_var: s.increment_var.clone().unwrap_or_default(),
        stop_exit_codes: s.stop_exit_codes.clone(),
        caller_env: s.caller_env.clone().into_iter().collect(),
        balance: s.balance.as_ref().map(balance_to_proto),
        cron_restart: s
            .cron_restart
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}

fn balance_from_proto(b: v1::BalanceSpec) -> Result<spec::Balance, Error> {
    let strategy = match v1::BalanceStrategy::try_from(b.strategy) {
        Ok(v1::BalanceStrategy::Unspecified | v1::BalanceStrategy::RoundRobin) => {
            pmdaemon_proto::BalanceStrategy::RoundRobin
        }
        Ok(v1::BalanceStrategy::LeastConnections) => {
            pmdaemon_proto::BalanceStrategy::LeastConnections
        }
        Err(_) => {
            return Err(Error::InvalidArgument(format!(
                "balance.strategy: {} is not a strategy (BALANCE_STRATEGY_ROUND_ROBIN or \
                 BALANCE_STRATEGY_LEAST_CONNECTIONS)",
                b.strategy
            )));
        }
    };
    let address = match b.address.trim() {
        "" => None,
        text => Some(
            pmdaemon_proto::parse_balance_address(text).map_err(|e| e.named("balance.address"))?,
        ),
    };
    let instance_ports = match b.instance_ports.trim() {
        "" => pmdaemon_proto::DEFAULT_INSTANCE_PORTS,
        text => text.parse::<PortSpec>().map_err(|e| {
            Error::InvalidArgument(format!("balance.instance_ports: {}", Error::from(e)))
        })?,
    };
    Ok(spec::Balance {
        strategy,
        proxy_protocol: b.proxy_protocol,
        drain_timeout_ms: b.drain_timeout_ms,
        hold_timeout_ms: b
            .hold_timeout_ms
            .unwrap_or(pmdaemon_proto::DEFAULT_HOLD_TIMEOUT_MS),
        address,
        instance_ports,
    })
}

fn balance_to_proto(b: &spec::Balance) -> v1::BalanceSpec {
    v1::BalanceSpec {
        strategy: v1::BalanceStrategy::from(b.strategy) as i32,
        proxy_protocol: b.proxy_protocol,
        drain_timeout_ms: b.drain_timeout_ms,
        hold_timeout_ms: Some(b.hold_timeout_ms),
        address: b.address.map(|a| a.to_string()).unwrap_or_default(),
        instance_ports: b.instance_ports.to_string(),
    }
}

/// A balanced instance's share, for ProcessInfo and the metrics.
pub fn instance_balance(v: &InstanceView) -> Option<v1::InstanceBalance> {
    let (_, i) = v.balance.as_ref()?;
    Some(v1::InstanceBalance {
        in_pool: i.in_pool,
        active_connections: i.active,
        total_connections: i.total,
        bytes_in: i.bytes_in,
        bytes_out: i.bytes_out,
    })
}

pub fn info(v: &InstanceView) -> v1::ProcessInfo {
    let s = &v.shared;
    v1::ProcessInfo {
        id: v.id,
        name: v.name.clone(),
        instance: v.index,
        state: s.state.to_proto() as i32,
        pid: s.pid,
        restarts: s.restarts,
        unstable_restarts: s.unstable_restarts,
        started_at_ms: s.started_at_ms,
        last_exit_code: s.last_exit.as_ref().and_then(|e| e.code),
        last_exit_signal: s.last_exit.as_ref().and_then(|e| e.signal.clone()),
        last_exit_at_ms: s.last_exit.as_ref().map(|e| e.at_ms),
        next_restart_at_ms: s.next_restart_at_ms,
        status_reason: s.reason.clone(),
        spec: Some(spec_to_proto(&v.plan.spec)),
        argv: v.plan.launch.argv.clone(),
        cwd: v.plan.launch.cwd.display().to_string(),
        out_log_path: v.out_log.display().to_string(),
        err_log_path: v.err_log.display().to_string(),
        log_path: v
            .log
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        created_at_ms: v.created_at_ms,
        port: v.plan.effective_port().map(u32::from),
        port_override: v.plan.port_override.is_some(),
        cpu_percent: v.sample.and_then(|m| m.cpu_percent),
        memory_bytes: v.sample.map(|m| m.memory_bytes),
        health: health_state(s.health) as i32,
        last_health_error: s.last_health_error.clone(),
        last_health_check_at_ms: s.last_health_check_at_ms,
        last_health_error_at_ms: s.last_health_error_at_ms,
        last_health_check_passed: s.last_health_check_passed,
        ready: s.readiness().is_done(),
        tracking: match s.tracking {
            crate::supervisor::cgroup::Tracking::Cgroup => v1::Tracking::Cgroup,
            crate::supervisor::cgroup::Tracking::ProcessGroup => v1::Tracking::ProcessGroup,
        } as i32,
        env_values_hidden: false,
        balancer: v.balance.as_ref().map(|(p, _)| v1::BalancerStatus {
            public_port: p.public_port.into(),
            address: p.address.clone(),
            listening: p.listening,
            ready_instances: p.ready_instances,
            held_connections: p.held,
            refused_connections: p.refused,
            problem: p.problem.clone(),
        }),
        balance: instance_balance(v),
        next_cron_restart_at_ms: v.next_cron_restart_at_ms,
    }
}

/// Who may read environment values in ProcessInfo: a read-only token may
/// not (values are often secrets, and such a token is what a dashboard or
/// a monitoring job holds); an admin token, and the local socket's user,
/// can start an app that prints them anyway, so hiding them there would
/// protect nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvValues {
    Shown,
    Hidden,
}

impl EnvValues {
    /// From the request's extensions: the Scope the authentication layer
    /// put there (none on the socket).
    pub fn of(extensions: &tonic::Extensions) -> Self {
        match extensions.get::<crate::auth::token::Scope>() {
            Some(crate::auth::token::Scope::ReadOnly) => EnvValues::Hidden,
            _ => EnvValues::Shown,
        }
    }

    /// Empties the values of `env` and `caller_env` for a caller that may
    /// not read them, keeping the names, and says so in the process.
    pub fn apply(self, info: &mut v1::ProcessInfo) {
        if self == EnvValues::Shown {
            return;
        }
        if let Some(spec) = info.spec.as_mut() {
            for value in spec.env.values_mut().chain(spec.caller_env.values_mut()) {
                value.clear();
            }
        }
        info.env_values_hidden = true;
    }

    /// [`info`] of each view, with [`Self::apply`].
    pub fn infos(self, views: &[InstanceView]) -> Vec<v1::ProcessInfo> {
        views
            .iter()
            .map(|v| {
                let mut i = info(v);
                self.apply(&mut i);
                i
            })
            .collect()
    }
}
