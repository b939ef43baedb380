//! One async function per verb, grouped by file: `lifecycle` (start, stop,
//! restart, delete), `files` (the same verbs on an ecosystem FILE),
//! `cluster` (reload, scale), `inspect` (list, describe), `logs` (logs,
//! flush), `monit`, `events`, `daemon` (save, resurrect, kill, ping,
//! version) and `tokens` (token create, list, revoke); `wait` is the `--wait-ready` of start, restart and reload.
//! [`dispatch`] is the one exhaustive match over [`Command`].
//!
//! Every RPC error goes through [`RpcResultExt::rpc`], which keeps the
//! daemon's message (written for people) and drops tonic's Debug dump.

mod cluster;
mod daemon;
mod events;
mod files;
mod inspect;
mod lifecycle;
mod logs;
mod monit;
mod tokens;
mod wait;

use std::fmt;

use crate::cli::{Cli, Command, OutputFormat};
use crate::connect::{self, Client, Home};
use crate::render::{self, ProcessView};
use crate::term::{self, Colours};
use pmdaemon_proto::v1::ProcessInfo;

/// What every command needs besides its own arguments.
pub struct Ctx {
    pub home: Home,
    /// Styling for stdout.
    pub colours: Colours,
}

impl Ctx {
    /// The daemon, started first if it is not running.
    pub async fn client(&self) -> anyhow::Result<Client> {
        connect::connect_or_start(&self.home).await
    }
}

/// Runs one parsed command line.
pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let ctx = Ctx {
        home: Home::from_env(),
        colours: Colours::for_stdout(cli.no_color),
    };
    match cli.command {
        Command::Start(args) => lifecycle::start(&ctx, &args).await,
        Command::Stop(args) => lifecycle::stop(&ctx, args).await,
        Command::Restart(args) => lifecycle::restart(&ctx, args).await,
        Command::Reload(args) => cluster::reload(&ctx, args).await,
        Command::Scale(args) => cluster::scale(&ctx, args).await,
        Command::Delete(args) => lifecycle::delete(&ctx, args).await,
        Command::List(args) => inspect::list(&ctx, args).await,
        Command::Describe(args) => inspect::describe(&ctx, args).await,
        Command::Logs(args) => logs::logs(&ctx, args).await,
        Command::Flush(args) => logs::flush(&ctx, args).await,
        Command::Monit(args) => monit::monit(&ctx, args).await,
        Command::Events(args) => events::events(&ctx, args).await,
        Command::Save => daemon::save(&ctx).await,
        Command::Resurrect => daemon::resurrect(&ctx).await,
        Command::Kill => daemon::kill(&ctx).await,
        Command::Ping => daemon::ping(&ctx).await,
        Command::Version => daemon::version(&ctx).await,
        Command::Token(cmd) => tokens::token(&ctx, cmd).await,
    }
}

/// An error status from the daemon, shown as its message alone.
#[derive(Debug)]
pub struct DaemonError {
    pub code: tonic::Code,
    pub message: String,
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
