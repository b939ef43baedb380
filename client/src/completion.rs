//! Dynamic shell completion: `source <(COMPLETE=bash pmd)` (zsh, fish,
//! elvish and PowerShell alike) registers a completion that calls `pmd`
//! back on every TAB, through clap_complete's `CompleteEnv` (its
//! `unstable-dynamic` feature). Subcommands and flags come from the clap
//! definition; the TARGET of the verbs that take one (stop, restart,
//! delete, logs...) also completes with the names of the running daemon's
//! apps.
//!
//! The name completer asks the local daemon over its socket, with a short
//! timeout ([`NAMES_TIMEOUT`]); it never starts a daemon, never reaches a
//! remote one, and returns nothing, silently, when none answers: a TAB
//! must neither hang nor print errors into the command line.
//!
//! Why the unstable engine is acceptable: the registration script and the
//! binary must match, which `source <(COMPLETE=bash pmd)` in the shell's
//! rc file guarantees (the script is made by the pmd it calls, at each
//! shell start); the static `pmd completions SHELL` scripts stay for those
//! who want a file and no callbacks.
//!
//! Talks to: the daemon's Unix socket (ListProcesses), stdout.

use std::ffi::OsStr;
use std::time::Duration;

use clap::CommandFactory;
use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};

use crate::cli::Cli;

/// How long a TAB may wait for the daemon's app list.
pub const NAMES_TIMEOUT: Duration = Duration::from_millis(500);

/// When the shell calls pmd to complete (`COMPLETE` is set), answers and
/// exits; otherwise returns at once. Call first thing in `main`, before
/// any thread starts (it changes the environment).
pub fn complete_from_env() {
    clap_complete::CompleteEnv::with_factory(command).complete();
}

/// The clap definition with the app-name completer on every TARGET
/// argument.
pub fn command() -> clap::Command {
    with_targets(Cli::command())
}

fn with_targets(cmd: clap::Command) -> clap::Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    let mut cmd = cmd;
    for name in names {
        cmd = cmd.mut_subcommand(name, with_targets);
    }
    let targets: Vec<clap::Id> = cmd
        .get_arguments()
        .filter(|a| {
            a.get_value_names()
                .is_some_and(|v| v.iter().any(|n| n.as_str() == "TARGET"))
        })
        .map(|a| a.get_id().clone())
        .collect();
    for id in targets {
        cmd = cmd.mut_arg(id, |a| a.add(ArgValueCompleter::new(app_names)));
    }
    cmd
}

/// The running daemon's app names (and `all`) that start with `current`.
fn app_names(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(prefix) = current.to_str() else {
        return Vec::new();
    };
    let mut names = daemon_app_names().unwrap_or_default();
    names.push("all".into());
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .map(CompletionCandidate::new)
        .collect()
}

/// The app names of the local daemon, or None when none answers in time.
fn daemon_app_names() -> Option<Vec<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime.block_on(async {
        tokio::time::timeout(NAMES_TIMEOUT, async {
            let home = crate::connect::Home::from_env();
            let mut client = crate::connect::connect_running(&home).await.ok()??;
            let list = client
                .list_processes(pmdaemon_proto::v1::ListProcessesRequest::default())
                .await
                .ok()?
                .into_inner();
            Some(list.processes.into_iter().map(|p| p.name).collect())
        })
        .await
        .ok()?
    })
}
