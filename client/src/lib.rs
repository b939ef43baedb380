//! `pmd`, the command line of pmdaemon: PM2's verbs over the
//! `pmdaemon.v1.ProcessManager` gRPC service on `$PMDAEMON_HOME/pmd.sock`,
//! or on a remote daemon's TCP port (`--host`, `PMD_HOST`, contexts).
//!
//! Layout:
//! - [`cli`]: the clap definition; every flag value is validated there;
//! - [`connect`]: the Unix-socket channel and the daemon auto-start, the
//!   remote client, the one [`connect::Client`] type of both;
//! - [`remote`]: which daemon (flags, environment, contexts), its token and
//!   TLS files, and the TCP/TLS connection ([`remote::dial`]);
//! - [`contexts`]: the contexts file (`pmd context`);
//! - [`commands`]: one function per verb, one dispatch;
//! - [`ecosystem`]: ecosystem files (YAML, JSON, PM2's JS) into checked specs;
//! - [`export`]: those specs as Kubernetes manifests, systemd units or a
//!   compose file (`pmd export`);
//! - [`rules`]: value rules shared by flags and ecosystem files;
//! - [`home`]: `~` in an app's paths, expanded before anything is sent;
//! - [`monit`]: the `pmd monit` screen (state, drawing, terminal guard);
//! - [`pm2dump`]: PM2's saved process list (dump.pm2) into app specs;
//! - [`render`]: the `ProcessView` keys (JSON/YAML), table, describe block;
//! - [`term`]: colour, the broken-pipe-aware stdout, spinners;
//! - [`systemd`]: the unit of `pmd startup` (name, place, text);
//! - [`writefile`]: whole files written by temporary file and rename,
//!   never through a symbolic link (the unit, man pages);
//! - [`completion`]: dynamic shell completion (`COMPLETE=bash pmd`), app
//!   names from the running daemon.
//!
//! `main` only answers a shell's completion request
//! ([`completion::complete_from_env`]), parses, calls [`run`] and turns the result into an exit code
//! with [`exit_code`]: 0 success (also when stdout's reader went away), 1
//! failure, 2 usage.

pub mod cli;
pub mod commands;
pub mod completion;
pub mod connect;
pub mod contexts;
pub mod ecosystem;
pub mod export;
pub mod home;
pub mod monit;
pub mod pm2dump;
pub mod remote;
pub mod render;
pub mod rules;
pub mod systemd;
pub mod term;
pub mod writefile;

use std::process::ExitCode;

use anyhow::Context;

/// A usage mistake found after parsing; exits 2 like clap's own errors.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Runs one command line on a current-thread runtime (enough for a CLI and
/// the cheapest to start).
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(commands::dispatch(cli))
}

/// Reports the outcome on stderr (one line, then its causes) and picks the
/// exit code.
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    let Err(err) = result else {
        return ExitCode::SUCCESS;
    };
    if term::is_stdout_closed(&err) {
        return ExitCode::SUCCESS;
    }
    eprint!("{}", error_text(&err));
    if err.chain().any(|cause| cause.is::<UsageError>()) {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

/// `error: top message` and `  caused by: …` for each cause.
pub fn error_text(err: &anyhow::Error) -> String {
    let mut text = format!("error: {err}\n");
    for cause in err.chain().skip(1) {
        text += &format!("  caused by: {cause}\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_print_their_chain_without_debug() {
        let status = tonic::Status::not_found("no app named \"api\"");
        let err = anyhow::Error::from(commands::DaemonError::from(status)).context("stopping api");
        assert_eq!(
            error_text(&err),
            "error: stopping api\n  caused by: no app named \"api\"\n"
        );
    }

    #[test]
    fn usage_errors_exit_2_and_failures_1() {
        let usage = exit_code(Err(UsageError("bad".into()).into()));
        assert_eq!(usage, ExitCode::from(2));
        assert_eq!(exit_code(Err(anyhow::anyhow!("boom"))), ExitCode::FAILURE);
        assert_eq!(exit_code(Ok(())), ExitCode::SUCCESS);
    }
}
