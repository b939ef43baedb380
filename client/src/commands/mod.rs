//! One async function per verb, grouped by file: `lifecycle` (start, stop,
//! restart, delete), `files` (the same verbs on an ecosystem FILE),
//! `cluster` (reload, scale), `inspect` (list, jlist, describe, env),
//! `import` (`import pm2`: PM2's dump.pm2), `export` (`export
//! kubernetes|systemd|compose FILE`, no daemon), `logs` (logs,
//! flush), `monit`, `events`, `daemon` (save, resurrect, kill, ping,
//! version), `tokens` (token create, list, revoke), `context` (the
//! contexts file), `startup` (startup, unstartup: the systemd unit) and
//! `shell` (completions, man); `wait` is the `--wait-ready` of start, restart and
//! reload. [`dispatch`] is the one exhaustive match over [`Command`]; it
//! picks the daemon first ([`crate::remote::choose`]): the local socket,
//! or a remote daemon that every verb reaches the same way through
//! [`Ctx::client`].
//!
//! Every RPC error goes through [`RpcResultExt::rpc`], which keeps the
//! daemon's message (written for people) and drops tonic's Debug dump.
//! For a remote daemon, [`explain_refusal`] says which token a refusal
//! was about (its file or PMD_TOKEN, never its value).
//!
//! A remote daemon has no caller directory or PATH: requests to one carry
//! neither, and a script or cwd that only means something on this machine
//! is refused here before anything is sent ([`remote_path_problem`]); the
//! daemon refuses them too.

mod cluster;
mod context;
mod daemon;
mod events;
mod export;
mod files;
mod import;
mod inspect;
mod lifecycle;
mod logs;
mod monit;
mod shell;
mod startup;
mod tokens;
mod wait;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::UsageError;
use crate::cli::{Cli, Command, OutputFormat};
use crate::connect::{self, Client, Home};
use crate::contexts::Contexts;
use crate::remote::{self, Choice, Remote};
use crate::render::{self, ProcessView};
use crate::term::{self, Colours};
use pmdaemon_proto::v1::{ApplyMode, ProcessInfo};

/// What `pmdaemond run` reuses: its file loaded and started exactly as
/// `pmd start FILE` does it, its apps' lines written as `pmd logs` writes
/// them.
pub use files::{Loaded, load_file, start_file};
pub use logs::LineFormat;

/// What every command needs besides its own arguments.
pub struct Ctx {
    pub home: Home,
    /// Styling for stdout.
    pub colours: Colours,
    /// The remote daemon, if `pmd` drives one; None: the local socket.
    pub remote: Option<Remote>,
}

impl Ctx {
    /// The daemon: the local one, started first if it is not running; or
    /// the remote one (never started from here).
    pub async fn client(&self) -> anyhow::Result<Client> {
        match &self.remote {
            Some(remote) => connect::connect_remote(remote).await,
            None => connect::connect_or_start(&self.home).await,
        }
    }

    /// The daemon if it is running, without starting one (`kill`, `ping`,
    /// `version`): a remote daemon that cannot be reached is an error.
    pub async fn running_client(&self) -> anyhow::Result<Option<Client>> {
        match &self.remote {
            Some(remote) => connect::connect_remote(remote).await.map(Some),
            None => connect::connect_running(&self.home).await,
        }
    }

    /// The caller's PATH for the daemon's command lookups: this process's
    /// for the local daemon, none for a remote one (its PATH is its own).
    pub fn caller_path(&self) -> String {
        if self.remote.is_some() {
            String::new()
        } else {
            caller_path()
        }
    }

    /// The environment a new app captures (`pmd start`, as PM2 does), or
    /// that `--update-env` merges over an app's: this process's, without
    /// what must not travel (`pmdaemon_proto::is_captured`). A remote
    /// daemon gets it only when asked (`update_env`): a laptop's
    /// environment is not what a server's apps should run with.
    pub fn caller_env(&self, update_env: bool) -> std::collections::HashMap<String, String> {
        if self.remote.is_some() && !update_env {
            return Default::default();
        }
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, v)| pmdaemon_proto::is_captured(k, v))
            .collect()
    }

    /// The directory relative paths resolve against: this process's for
    /// the local daemon, none for a remote one.
    pub fn caller_cwd(&self) -> anyhow::Result<String> {
        if self.remote.is_some() {
            return Ok(String::new());
        }
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        Ok(cwd
            .to_str()
            .with_context(|| format!("the current directory {cwd:?} is not UTF-8"))?
            .to_string())
    }
}

/// Runs one parsed command line.
pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let colours = Colours::for_stdout(cli.no_color);
    let command = match cli.command {
        Command::Context(cmd) => return context::context(cmd, &cli.remote, colours),
        Command::Validate(args) => return files::validate(&args),
        Command::Export(args) => return export::export(&args),
        Command::Startup(args) => return startup::startup(&args, &cli.remote),
        Command::Unstartup(args) => return startup::unstartup(&args, &cli.remote),
        Command::Completions(args) => return shell::completions(&args),
        Command::Man(args) => return shell::man(&args),
        command => command,
    };
    let env = remote::Env::from_process()?;
    let remote = match remote::choose(&cli.remote, &env, load_contexts)? {
        Choice::Local => None,
        Choice::Remote(plan) => {
            if let Command::Token(_) = command {
                let instead = match plan.origin {
                    remote::Origin::Context { .. } => format!(
                        " ({} comes from {}; --context local picks this machine's daemon)",
                        plan.url, plan.origin
                    ),
                    _ => ", without --host".to_string(),
                };
                return Err(UsageError(format!(
                    "tokens are managed on the daemon's host over its Unix socket: run `pmd token \
                     ...` there{instead}"
                ))
                .into());
            }
            Some(plan.load()?)
        }
    };
    let ctx = Ctx {
        home: Home::from_env(),
        colours,
        remote,
    };
    let result = run(&ctx, command).await;
    match (&ctx.remote, result) {
        (Some(remote), Err(e)) => Err(explain_refusal(remote, e).await),
        (_, result) => result,
    }
}

/// The contexts file, for [`remote::choose`]. Without a configuration
/// directory (no HOME, as for some services) there are no contexts.
fn load_contexts() -> anyhow::Result<(Contexts, PathBuf)> {
    let Ok(path) = Contexts::default_path() else {
        return Ok((
            Contexts::default(),
            PathBuf::from("$XDG_CONFIG_HOME/pmdaemon/contexts.yaml"),
        ));
    };
    let contexts = Contexts::load(&path).map_err(|e| UsageError(e.to_string()))?;
    Ok((contexts, path))
}

/// A remote daemon's UNAUTHENTICATED or PERMISSION_DENIED, with which
/// token it was about (see the module header); a connection that failed
/// under a call (a client certificate refused after the TLS handshake,
/// say), explained as a failed connection is.
pub async fn explain_refusal(remote: &Remote, err: anyhow::Error) -> anyhow::Error {
    let Some(daemon) = err.chain().find_map(|c| c.downcast_ref::<DaemonError>()) else {
        return err;
    };
    if let Some(status) = &daemon.transport {
        return remote::dial::diagnose(remote, status).await;
    }
    let code = daemon.code;
    let host = format!("{}{}", remote.url, remote.from_where());
    match (code, &remote.token_source) {
        (tonic::Code::Unauthenticated, None) => err.context(format!(
            "{host} needs a token: --token-file FILE or PMD_TOKEN (the admin token is \
                $PMDAEMON_HOME/token on the daemon's host; `pmd token create NAME` there makes \
                another)"
        )),
        (tonic::Code::Unauthenticated, Some(source)) => err.context(format!(
            "{host} refused {source} (unknown, revoked or expired)"
        )),
        (tonic::Code::PermissionDenied, Some(source)) => {
            err.context(format!("{host} does not allow this with {source}"))
        }
        _ => err,
    }
}

/// What a remote daemon cannot use: a `cwd` or `script` that means a path
/// on this machine (relative, or a bare name of a file in `base`, the
/// directory it would resolve against here). `label` names the value,
/// e.g. `script` or `ecosystem.yaml: app api: script`.
pub(crate) fn remote_path_problem(
    label: &str,
    cwd_label: &str,
    script: &str,
    cwd: &str,
    base: &Path,
) -> Option<String> {
    const WHY: &str = "relative to this machine; a remote daemon runs what is on its host: give \
        an absolute path on that host or a bare command on its PATH";
    if !cwd.is_empty() && !Path::new(cwd).is_absolute() {
        return Some(format!(
            "{cwd_label} {cwd:?} is relative to this machine; a remote daemon runs what is on its \
                host: give an absolute path on that host"
        ));
    }
    if Path::new(script).is_absolute() {
        return None;
    }
    if script.contains('/') {
        return Some(format!("{label} {script:?} is {WHY}"));
    }
    // A bare name is a command on the daemon's PATH, unless it is a file
    // right here: then this machine's file is what was meant.
    if cwd.is_empty() && base.join(script).is_file() {
        return Some(format!(
            "{label} {script:?} is the file {}, {WHY}",
            base.join(script).display()
        ));
    }
    None
}

/// One verb.
async fn run(ctx: &Ctx, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Start(args) => lifecycle::start(ctx, &args).await,
        Command::Stop(args) => lifecycle::stop(ctx, args).await,
        Command::Restart(args) => lifecycle::restart(ctx, args).await,
        Command::Reload(args) => cluster::reload(ctx, args).await,
        Command::Scale(args) => cluster::scale(ctx, args).await,
        Command::StartOrRestart(args) => files::start_or(ctx, args, ApplyMode::Restart).await,
        Command::StartOrReload(args) | Command::StartOrGracefulReload(args) => {
            files::start_or(ctx, args, ApplyMode::Reload).await
        }
        Command::Delete(args) => lifecycle::delete(ctx, args).await,
        Command::List(args) => inspect::list(ctx, args).await,
        Command::Jlist => inspect::json_list(ctx, false).await,
        Command::Prettylist => inspect::json_list(ctx, true).await,
        Command::Describe(args) => inspect::describe(ctx, args).await,
        Command::Env(args) => inspect::env(ctx, args).await,
        Command::Reset(args) => lifecycle::reset(ctx, args).await,
        Command::SendSignal(args) => lifecycle::send_signal(ctx, args).await,
        Command::Import(crate::cli::ImportCommand::Pm2(args)) => import::pm2(ctx, args).await,
        Command::Logs(args) => logs::logs(ctx, args).await,
        Command::Flush(args) => logs::flush(ctx, args).await,
        Command::Monit(args) => monit::monit(ctx, args).await,
        Command::Events(args) => events::events(ctx, args).await,
        Command::Save => daemon::save(ctx).await,
        Command::Resurrect => daemon::resurrect(ctx).await,
        Command::Kill => daemon::kill(ctx).await,
        Command::Ping => daemon::ping(ctx).await,
        Command::Version => daemon::version(ctx).await,
        Command::Token(cmd) => tokens::token(ctx, cmd).await,
        // Handled by `dispatch`: it needs no daemon.
        Command::Context(_) => unreachable!("pmd context is dispatched before a daemon is chosen"),
        Command::Validate(_) | Command::Export(_) => {
            unreachable!("pmd validate and export are dispatched before a daemon is chosen")
        }
        Command::Startup(_) | Command::Unstartup(_) | Command::Completions(_) | Command::Man(_) => {
            unreachable!("dispatched before a daemon is chosen")
        }
    }
}

/// An error status from the daemon, shown as its message alone.
#[derive(Debug)]
pub struct DaemonError {
    pub code: tonic::Code,
    pub message: String,
    /// The status itself when the connection failed under it (it has a
    /// source: an I/O or TLS error), for [`explain_refusal`] to say what
    /// went wrong with a remote daemon.
    pub transport: Option<tonic::Status>,
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.message.is_empty()) {
            (tonic::Code::Unavailable, _) => {
                write!(f, "the daemon is unavailable: {}", self.message)
            }
            (code, true) => write!(f, "the daemon answered: {}", code.description()),
            (_, false) => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DaemonError {}

impl From<tonic::Status> for DaemonError {
    fn from(status: tonic::Status) -> Self {
        DaemonError {
            code: status.code(),
            message: status.message().to_string(),
            transport: std::error::Error::source(&status)
                .is_some()
                .then_some(status),
        }
    }
}

/// Unwraps a tonic response into its message, or a [`DaemonError`].
pub trait RpcResultExt<T> {
    fn rpc(self) -> anyhow::Result<T>;
}

impl<T> RpcResultExt<T> for Result<tonic::Response<T>, tonic::Status> {
    fn rpc(self) -> anyhow::Result<T> {
        self.map(tonic::Response::into_inner)
            .map_err(|status| DaemonError::from(status).into())
    }
}

/// This process's PATH for the daemon's command lookups (StartProcess,
/// ApplyApps, Resurrect), so `pmd start mycmd` runs what this shell would.
/// Empty (the daemon's PATH) when unset or not UTF-8.
fn caller_path() -> String {
    std::env::var("PATH").unwrap_or_default()
}

/// Prints the processes a verb acted on: one summary line each, or JSON /
/// YAML arrays for scripts.
fn print_processes(
    verb: &str,
    processes: &[ProcessInfo],
    output: OutputFormat,
    none: &str,
) -> anyhow::Result<()> {
    let text = match output {
        OutputFormat::Json => render::json(&ProcessView::all(processes, render::now_ms()), false)?,
        OutputFormat::Yaml => render::yaml(&ProcessView::all(processes, render::now_ms()), false)?,
        OutputFormat::Table if processes.is_empty() => format!("{none}\n"),
        OutputFormat::Table => processes
            .iter()
            .map(|p| render::summary(verb, p) + "\n")
            .collect(),
    };
    term::print(&text)?;
    Ok(())
}
