//! `start`, `stop`, `restart`, `delete`, and PM2's `reset` and
//! `send-signal`: build the request, wait for the
//! daemon (with a spinner on a terminal), print what changed. Ecosystem
//! FILE targets go through [`super::files`], `--wait-ready` through
//! [`super::wait`].

use anyhow::{Context, bail};
use pmdaemon_proto::Target;
use pmdaemon_proto::v1::health_check::Probe;
use pmdaemon_proto::v1::{
    AppSpec, ApplyMode, DeleteProcessRequest, ListProcessesRequest, ProcessInfo,
    ResetProcessRequest, RestartPolicy, RestartProcessRequest, SignalProcessRequest,
    StartProcessRequest, StopProcessRequest,
};

use super::{Ctx, RpcResultExt, files, print_processes, remote_path_problem, wait};
use crate::cli::{
    DeleteArgs, OutputFormat, ResetArgs, RestartArgs, SendSignalArgs, StartArgs, StopArgs,
    TargetArg, WaitArg,
};
use crate::connect::Client;
use crate::term::with_spinner;
use crate::{UsageError, ecosystem, rules};

pub async fn start(ctx: &Ctx, args: &StartArgs) -> anyhow::Result<()> {
    if ecosystem::is_file_target(&args.script) {
        return files::start(ctx, args).await;
    }
    if args.strict {
        return Err(UsageError(format!(
            "--strict checks an ecosystem file, and {} is not one",
            args.script
        ))
        .into());
    }
    // --wait-timeout counts from here: the daemon's wait for dependencies,
    // then the readiness wait.
    let wait = WaitArg {
        since: Some(std::time::Instant::now()),
        ..args.wait
    };
    if let Some(name) = args.spec.environments().next() {
        return Err(UsageError(format!(
            "--env {name} selects the env_{name} section of an ecosystem file, and {} is not \
             one; to set a variable of this app use --env K=V",
            args.script
        ))
        .into());
    }
    if !args.only.only.is_empty() {
        return Err(UsageError(format!(
            "--only selects apps of an ecosystem file, and {} is not one",
            args.script
        ))
        .into());
    }
    let caller_cwd = ctx.caller_cwd()?;
    let is_spec = args.spec.any_given() || !args.args.is_empty();
    if is_spec && args.script == "all" {
        return Err(UsageError(
            "`pmd start all` starts every existing app and takes no app flags or arguments".into(),
        )
        .into());
    }
    // For a remote daemon, what only this machine has is refused before
    // anything is sent: a relative script (no app name has a '/') or cwd.
    let here = std::env::current_dir().context("cannot read the current directory")?;
    let remote_problem = |script: &str| {
        let cwd = args.spec.cwd.as_deref().unwrap_or_default();
        remote_path_problem("script", "--cwd", script, cwd, &here)
    };
    // `~` is expanded here (a remote daemon's is refused), before any
    // other look at the paths.
    let mut flagged = app_spec(args);
    crate::home::resolve_paths(&mut flagged, ctx.remote.is_some(), "pmd start")
        .map_err(UsageError)?;
    if ctx.remote.is_some()
        && (args.script.contains('/') || args.spec.cwd.is_some())
        && let Some(problem) = remote_problem(&args.script)
    {
        return Err(UsageError(problem).into());
    }
    let mut client = ctx.client().await?;
    let request = match existing_target(&mut client, &args.script, is_spec).await? {
        Some(target) if args.update_env.update_env => {
            return Err(UsageError(format!(
                "{target} exists: `pmd restart {target} --update-env` gives it this shell's \
                 environment (start --update-env is for new apps and ecosystem files)"
            ))
            .into());
        }
        Some(target) => StartProcessRequest {
            target,
            caller_cwd,
            caller_path: ctx.caller_path(),
            dependency_timeout_ms: wait.dependency_timeout_ms(),
            ..Default::default()
        },
        None => {
            // `pmd start ecosytem.yaml` (a typo) is not a script to run.
            if ecosystem::format_of(args.script.as_ref()).is_some()
                && !std::path::Path::new(&args.script).exists()
            {
                bail!("{}: no such ecosystem file", args.script);
            }
            let mut spec = flagged;
            // PM2's shapes of a script: a directory, a command line. A
            // remote daemon's paths are not this machine's: only the
            // command line is looked at then.
            let base = if spec.cwd.is_empty() {
                here.clone()
            } else {
                here.join(&spec.cwd)
            };
            let base = ctx.remote.is_none().then_some(base.as_path());
            let shaped =
                ecosystem::script::shape("script", &spec.script, base).map_err(UsageError)?;
            spec.args = shaped.leading_args.into_iter().chain(spec.args).collect();
            spec.script = shaped.script;
            // As PM2: the app runs with this shell's environment (under
            // its own --env), captured now.
            spec.caller_env = ctx.caller_env(args.update_env.update_env);
            check_spec(&spec)?;
            if ctx.remote.is_some()
                && let Some(problem) = remote_problem(&args.script)
            {
                return Err(UsageError(problem).into());
            }
            StartProcessRequest {
                spec: Some(spec),
                caller_cwd,
                caller_path: ctx.caller_path(),
                dependency_timeout_ms: wait.dependency_timeout_ms(),
                ..Default::default()
            }
        }
    };
    let label = format!("starting {}", args.script);
    let response = with_spinner(label, client.start_process(request))
        .await
        .rpc()?;
    if wait.wait_ready {
        return wait::print_and_wait(
            &mut client,
            "started",
            &response.processes,
            args.output,
            wait,
        )
        .await;
    }
    print_processes(
        "started",
        &response.processes,
        args.output,
        "no process to start",
    )
}

/// What only the whole spec can tell: a `{port}` probe needs a port; a
/// balanced app one public port.
fn check_spec(spec: &AppSpec) -> Result<(), UsageError> {
    if spec.balance.is_some() {
        let port = (!spec.port.is_empty())
            .then(|| spec.port.parse::<pmdaemon_proto::PortSpec>().ok())
            .flatten();
        pmdaemon_proto::check_public_port(port).map_err(|e| UsageError(e.named("--balance").0))?;
    } else {
        rules::check_port_room("--port", &spec.port, spec.instances).map_err(UsageError)?;
    }
    let Some(check) = &spec.health_check else {
        return Ok(());
    };
    let flag = match check.probe {
        Some(Probe::Http(_)) => "--health-check-url",
        Some(Probe::Tcp(_)) => "--health-check-tcp",
        _ => "--health-check-script",
    };
    rules::check_health_check(flag, check, !spec.port.is_empty()).map_err(UsageError)?;
    rules::check_health_timeout("--health-timeout", check).map_err(UsageError)
}

/// PM2 behaviour: `pmd start X` with no app flags starts existing apps when
/// X is `all`, an id, or the name of a known app. Otherwise X is a script.
async fn existing_target(
    client: &mut Client,
    script: &str,
    is_spec: bool,
) -> anyhow::Result<Option<String>> {
    if is_spec {
        return Ok(None);
    }
    match script.parse::<Target>() {
        Ok(Target::All | Target::Id(_)) => Ok(Some(script.to_string())),
        Ok(Target::Name(name)) => {
            let known = client
                .list_processes(ListProcessesRequest {})
                .await
                .rpc()?
                .processes
                .iter()
                .any(|p| p.name == name);
            Ok(known.then_some(name))
        }
        Err(_) => Ok(None),
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The spec for a new app: the script as typed (the daemon resolves it
/// against `caller_cwd`), the flags given, and nothing else, so the daemon's
/// defaults apply to the rest.
pub fn app_spec(args: &StartArgs) -> AppSpec {
    let flags = &args.spec;
    AppSpec {
        name: flags.name.clone().unwrap_or_default(),
        script: args.script.clone(),
        args: args.args.clone(),
        interpreter: flags.interpreter.clone(),
        interpreter_args: flags
            .interpreter_args
            .iter()
            .flat_map(|words| words.0.iter().cloned())
            .collect(),
        cwd: flags.cwd.clone().unwrap_or_default(),
        env: flags
            .env_vars()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        autorestart: flags
            .restart_policy()
            .unwrap_or(RestartPolicy::Unspecified)
            .into(),
        max_restarts: flags.max_restarts,
        start_limit_burst: flags.start_limit_burst,
        start_limit_interval_ms: flags.start_limit_interval.map(millis),
        min_uptime_ms: flags.min_uptime.map(millis),
        restart_delay_ms: flags.restart_delay.map(millis),
        exp_backoff_initial_ms: flags.exp_backoff_restart_delay.map(millis),
        exp_backoff_max_ms: flags.exp_backoff_max.map(millis),
        kill_timeout_ms: flags.kill_timeout.map(millis),
        stop_signal: flags.stop_signal.clone().unwrap_or_default(),
        time: flags.time,
        log_max_bytes: flags.log_max_size,
        log_max_files: flags.log_max_files,
        instances: flags.instances,
        port: flags.port.clone().unwrap_or_default(),
        port_env: flags.port_env.clone().unwrap_or_default(),
        watch: flags.watch || !flags.watch_paths.is_empty(),
        watch_paths: flags.watch_paths.clone(),
        ignore_watch: flags.ignore_watch.clone(),
        watch_delay_ms: flags.watch_delay.map(millis),
        out_file: flags.out_file.clone().unwrap_or_default(),
        error_file: flags.error_file.clone().unwrap_or_default(),
        health_check: flags.health_check(),
        max_memory_bytes: flags.max_memory,
        depends_on: Vec::new(),
        log_file: flags.log_file.clone(),
        merge_logs: flags.merge_logs,
        log_date_format: flags.log_date_format.clone().unwrap_or_default(),
        log_type: flags.log_type.unwrap_or_default(),
        wait_ready: flags.ready_message,
        listen_timeout_ms: flags.listen_timeout.map(millis),
        shutdown_with_message: flags.shutdown_with_message,
        instance_var: flags.instance_var.clone().unwrap_or_default(),
        increment_var: flags.increment_var.clone().unwrap_or_default(),
        stop_exit_codes: flags.stop_exit_codes.clone(),
        caller_env: Default::default(),
        balance: flags.balance_spec(),
        cron_restart: flags.cron_restart.clone().unwrap_or_default(),
    }
}

/// A verb that acts on existing processes by target.
#[derive(Debug, Clone)]
enum Action {
    Stop,
    /// With the port spec of `restart --port` (empty: the app's own) and
    /// how long dependencies may take (0: the daemon's default).
    Restart {
        port: String,
        dependency_timeout_ms: u64,
        /// `--update-env`: this shell's environment, merged over the
        /// captured one.
        update_env: Option<std::collections::HashMap<String, String>>,
    },
    /// With the state filter of `delete --status` (0: any).
    Delete {
        status: i32,
    },
}

impl Action {
    fn verb(&self) -> &'static str {
        match self {
            Action::Stop => "stop",
            Action::Restart { .. } => "restart",
            Action::Delete { .. } => "delete",
        }
    }

    fn doing(&self) -> &'static str {
        match self {
            Action::Stop => "stopping",
            Action::Restart { .. } => "restarting",
            Action::Delete { .. } => "deleting",
        }
    }

    fn done(&self) -> &'static str {
        match self {
            Action::Stop => "stopped",
            Action::Restart { .. } => "restarted",
            Action::Delete { .. } => "deleted",
        }
    }

    async fn send(&self, client: &mut Client, target: String) -> anyhow::Result<Vec<ProcessInfo>> {
        Ok(match self {
            Action::Stop => {
                let request = StopProcessRequest { target };
                client.stop_process(request).await.rpc()?.processes
            }
            Action::Restart {
                port,
                dependency_timeout_ms,
                update_env,
            } => {
                let request = RestartProcessRequest {
                    target,
                    port: port.clone(),
                    dependency_timeout_ms: *dependency_timeout_ms,
                    update_env: update_env.is_some(),
                    caller_env: update_env.clone().unwrap_or_default(),
                };
                client.restart_process(request).await.rpc()?.processes
            }
            Action::Delete { status } => {
                let request = DeleteProcessRequest {
                    target,
                    status: *status,
                };
                let response = client.delete_process(request).await.rpc()?;
                for why in &response.kept {
                    eprintln!("[pmd] not deleted: {why}");
                }
                response.processes
            }
        })
    }
}

/// Applies `action` to each target in turn. On a failure, what was already
/// done is printed before the error.
async fn act(
    ctx: &Ctx,
    action: Action,
    targets: &[Target],
    output: OutputFormat,
    wait: WaitArg,
) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    // `pmd stop db db` acts (and reports) once.
    let mut unique: Vec<Target> = Vec::with_capacity(targets.len());
    for target in targets {
        if !unique.contains(target) {
            unique.push(target.clone());
        }
    }
    act_with(&mut client, action, &unique, output, wait).await
}

/// [`act`] on a connected client; `wait` waits for what was done to be
/// ready (only `restart` takes `--wait-ready`).
async fn act_with(
    client: &mut Client,
    action: Action,
    targets: &[Target],
    output: OutputFormat,
    wait: WaitArg,
) -> anyhow::Result<()> {
    let mut done: Vec<ProcessInfo> = Vec::new();
    let mut failure = None;
    for target in targets {
        let label = format!("{} {target}", action.doing());
        match with_spinner(label, action.send(client, target.to_string())).await {
            Ok(processes) => done.extend(processes),
            Err(e) if targets.len() > 1 => {
                failure = Some(e.context(format!("cannot {} {target}", action.verb())));
                break;
            }
            Err(e) => return Err(e),
        }
    }
    if wait.wait_ready && failure.is_none() {
        return wait::print_and_wait(client, action.done(), &done, output, wait).await;
    }
    if failure.is_none() || !done.is_empty() {
        let none = format!("no process to {}", action.verb());
        print_processes(action.done(), &done, output, &none)?;
    }
    failure.map_or(Ok(()), Err)
}

pub async fn stop(ctx: &Ctx, args: StopArgs) -> anyhow::Result<()> {
    let output = args.output.output;
    let no_wait = WaitArg::default();
    match files::file_target(&args.targets, &args.only.only, None)? {
        Some(path) => {
            let mut client = ctx.client().await?;
            let targets = files::existing_apps(&mut client, path, &args.only.only).await?;
            act_with(&mut client, Action::Stop, &targets, output, no_wait).await
        }
        None => act(ctx, Action::Stop, &plain(&args.targets), output, no_wait).await,
    }
}

pub async fn restart(ctx: &Ctx, args: RestartArgs) -> anyhow::Result<()> {
    let environment = args.environment.environment.as_deref();
    match files::file_target(&args.targets, &args.only.only, environment)? {
        Some(path) => {
            if args.port.is_some() {
                return Err(UsageError(
                    "--port overrides the port of apps for one run; an ecosystem file sets \
                     `port` for each app"
                        .into(),
                )
                .into());
            }
            let specs = files::load(path, environment, &args.only.only, false)?;
            let options = files::ApplyOptions {
                update_env: args.update_env.update_env,
                ..Default::default()
            };
            files::apply_with(
                ctx,
                &specs,
                ApplyMode::Restart,
                args.output.output,
                args.wait,
                options,
            )
            .await
        }
        None => {
            let port = args.port.clone().unwrap_or_default();
            let targets = plain(&args.targets);
            let output = args.output.output;
            let wait = WaitArg {
                since: Some(std::time::Instant::now()),
                ..args.wait
            };
            let restart = Action::Restart {
                port,
                dependency_timeout_ms: wait.dependency_timeout_ms(),
                update_env: args.update_env.update_env.then(|| ctx.caller_env(true)),
            };
            act(ctx, restart, &targets, output, wait).await
        }
    }
}

pub async fn delete(ctx: &Ctx, args: DeleteArgs) -> anyhow::Result<()> {
    let status = args.status.map_or(0, i32::from);
    let output = args.output.output;
    if let Some(path) = files::file_target(&args.targets, &args.only.only, None)? {
        let mut client = ctx.client().await?;
        let targets = files::existing_apps(&mut client, path, &args.only.only).await?;
        let delete = Action::Delete { status };
        return act_with(&mut client, delete, &targets, output, WaitArg::default()).await;
    }
    // `pmd delete --status errored` alone is a bulk delete over all apps.
    let mut targets = if args.targets.is_empty() {
        vec![Target::All]
    } else {
        plain(&args.targets)
    };
    // Ids highest first: `pmd delete 1 2` of a three-instance app removes
    // its top instances one by one, never leaving a gap in between.
    if targets.iter().all(|t| matches!(t, Target::Id(_))) {
        targets.sort_by_key(|t| match t {
            Target::Id(id) => std::cmp::Reverse(*id),
            _ => std::cmp::Reverse(0),
        });
    }
    let delete = Action::Delete { status };
    act(ctx, delete, &targets, output, WaitArg::default()).await
}

/// `pmd reset TARGET`: restart counters back to 0.
pub async fn reset(ctx: &Ctx, args: ResetArgs) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let request = ResetProcessRequest {
        target: args.target.to_string(),
    };
    let processes = client.reset_process(request).await.rpc()?.processes;
    print_processes(
        "reset",
        &processes,
        args.output.output,
        "no process to reset",
    )
}

/// `pmd send-signal SIGNAL TARGET` (PM2's sendSignal).
pub async fn send_signal(ctx: &Ctx, args: SendSignalArgs) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let request = SignalProcessRequest {
        target: args.target.to_string(),
        signal: args.signal.clone(),
    };
    let response = client.signal_process(request).await.rpc()?;
    let verb = format!("sent {} to", response.signal);
    print_processes(&verb, &response.processes, args.output.output, "")
}

/// The targets once [`files::file_target`] said none is a file.
pub(super) fn plain(targets: &[TargetArg]) -> Vec<Target> {
    targets
        .iter()
        .filter_map(|t| match t {
            TargetArg::Target(target) => Some(target.clone()),
            TargetArg::File(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn spec_of(args: &[&str]) -> AppSpec {
        let cli = Cli::try_parse_from(std::iter::once("pmd").chain(args.iter().copied())).unwrap();
        match cli.command {
            Command::Start(s) => app_spec(&s),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unset_flags_stay_unset() {
        let spec = spec_of(&["start", "./server.py"]);
        assert_eq!(
            spec,
            AppSpec {
                script: "./server.py".into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn flags_fill_the_spec() {
        let spec = spec_of(&[
            "start",
            "app.js",
            "--name",
            "api",
            "--cwd",
            "srv",
            "--env",
            "PORT=80",
            "--min-uptime",
            "5s",
            "--exp-backoff-restart-delay",
            "100ms",
            "--exp-backoff-max",
            "10s",
            "--kill-timeout",
            "1500",
            "--autorestart",
            "on-failure",
            "--interpreter",
            "node",
            "--interpreter-args",
            "--inspect  --max-old-space-size=64",
            "--log-max-files",
            "2",
            "--",
            "-p",
            "80",
        ]);
        assert_eq!(spec.name, "api");
        assert_eq!(spec.cwd, "srv");
        assert_eq!(spec.args, ["-p", "80"]);
        assert_eq!(spec.env.get("PORT").map(String::as_str), Some("80"));
        assert_eq!(spec.min_uptime_ms, Some(5000));
        assert_eq!(spec.exp_backoff_initial_ms, Some(100));
        assert_eq!(spec.exp_backoff_max_ms, Some(10_000));
        assert_eq!(spec.kill_timeout_ms, Some(1500));
        assert_eq!(spec.autorestart(), RestartPolicy::OnFailure);
        assert_eq!(spec.interpreter.as_deref(), Some("node"));
        assert_eq!(
            spec.interpreter_args,
            ["--inspect", "--max-old-space-size=64"]
        );
        assert_eq!(spec.log_max_files, Some(2));
        assert_eq!(spec.restart_delay_ms, None);
    }

    #[test]
    fn cluster_port_watch_and_log_flags_fill_the_spec() {
        let spec = spec_of(&[
            "start",
            "app.js",
            "-i",
            "3",
            "--port",
            "3000-3002",
            "--port-env",
            "HTTP_PORT",
            "--watch-path",
            "src",
            "--ignore-watch",
            "*.tmp",
            "--watch-delay",
            "500ms",
            "-o",
            "out.log",
            "--error-file",
            "err.log",
        ]);
        assert_eq!(spec.instances, Some(3));
        assert_eq!(spec.port, "3000-3002");
        assert_eq!(spec.port_env, "HTTP_PORT");
        assert!(spec.watch, "--watch-path implies --watch");
        assert_eq!(spec.watch_paths, ["src"]);
        assert_eq!(spec.ignore_watch, ["*.tmp"]);
        assert_eq!(spec.watch_delay_ms, Some(500));
        assert_eq!(spec.out_file, "out.log");
        assert_eq!(spec.error_file, "err.log");
        let bare = spec_of(&["start", "app.js", "--watch"]);
        assert!(bare.watch && bare.watch_paths.is_empty());
    }
    /// Health and memory flags reach the spec; a `{port}` probe needs a
    /// port.
    #[test]
    fn health_and_memory_flags_fill_the_spec() {
        let spec = spec_of(&[
            "start",
            "app.js",
            "--port",
            "auto:4000-4100",
            "--health-check-tcp",
            "127.0.0.1:{port}",
            "--health-retries",
            "5",
            "--max-memory",
            "512K",
        ]);
        let check = spec.health_check.as_ref().unwrap();
        assert_eq!(check.probe, Some(Probe::Tcp("127.0.0.1:{port}".into())));
        assert_eq!(check.retries, Some(5));
        assert_eq!(check.interval_ms, None);
        assert_eq!(spec.max_memory_bytes, Some(512 << 10));
        assert!(check_spec(&spec).is_ok());
        let spec = spec_of(&["start", "app.js", "--health-check-url", "http://x:{port}/"]);
        let err = check_spec(&spec).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "--health-check-url: \"http://x:{port}/\" uses {port}, but the app has no port"
            ),
            "{err}"
        );
        assert!(check_spec(&spec_of(&["start", "app.js"])).is_ok());
    }
}
