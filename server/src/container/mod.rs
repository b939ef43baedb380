//! `pmdaemond run FILE`: the container mode (PM2's `pm2-runtime`). The
//! daemon runs in the foreground as usual (home lock, socket, state), starts
//! the apps of FILE exactly as `pmd start FILE` would (the `pmd` library's
//! loader and ApplyApps, over the daemon's own socket), prints every app's
//! lines on its own stdout/stderr, and ends when its apps cannot be kept up.
//!
//! Talks to: `init.rs` (the PID 1 process forked first: reaper and signal
//! relay), the daemon's [`crate::serve_with`] (it runs inside it, through
//! a hook called once the socket serves), the supervisor (its log broadcast
//! and instance records, read in-process), and `pmd`'s library.
//!
//! Output: each line as `pmd logs` writes it (`ID|NAME | line`, bytes as
//! the app wrote them), an app's stdout lines on stdout and its stderr
//! lines on stderr; `--raw` without the tag; `--json` one object per line
//! with PM2's keys (`message`, `timestamp`, `type`, `process_id`,
//! `app_name`), all on stdout. Lines of apps started later (`pmd start`
//! in the container) come too. A reader too slow for the broadcast misses
//! lines (they are in the log files) and is told so on stderr.
//!
//! The end: once the file is applied, whenever an instance record changes,
//! the run checks whether any instance is still to be kept up (should run,
//! or is not yet stopped or errored). When none is, it says why on stderr
//! and shuts the daemon down: exit 1 if any instance is errored (the
//! restart policy gave up, or a failed exit with `autorestart: false`),
//! else 0 (one-shot jobs that exited 0, apps stopped with `pmd stop`).
//! SIGTERM/SIGINT/SIGQUIT stop every app gracefully (stop signal, then
//! SIGKILL after `kill_timeout`, which is still a clean stop) and exit 0.

pub mod init;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use pmdaemon_proto::v1;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::logs::{LogLine, Stream};
use crate::supervisor::InstanceView;
use crate::supervisor::Supervisor;
use crate::supervisor::instance::State;

/// Exit code of a usage error (an unusable FILE).
pub const USAGE: u8 = 2;

/// How the apps' lines are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// `ID|NAME | line`.
    #[default]
    Tagged,
    /// The line alone.
    Raw,
    /// One JSON object per line, on stdout.
    Json,
}

/// A loaded FILE and how to print its apps' output.
pub struct RunFile {
    loaded: pmd::commands::Loaded,
    output: Output,
}

/// Loads `path` as `pmd start FILE --env NAME --only ...` would (notes and
/// warnings on stderr). An unusable file: the error on stderr and the exit
/// code ([`USAGE`]); nothing is started.
pub fn load(
    path: &str,
    environment: Option<&str>,
    only: &[String],
    output: Output,
) -> Result<RunFile, u8> {
    match pmd::commands::load_file(path, environment, only) {
        Ok(loaded) => Ok(RunFile { loaded, output }),
        Err(e) => {
            eprint!("pmdaemond run: {}", pmd::error_text(&e));
            Err(USAGE)
        }
    }
}

/// Serves the daemon as [`crate::run`] does, starts the file's apps and
/// prints their output until `shutdown` or until no app is left to keep
/// up. Returns the exit code.
pub async fn run(
    listener: tokio::net::UnixListener,
    config: crate::Config,
    file: RunFile,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<u8, crate::StartError> {
    let code = Arc::new(AtomicU8::new(0));
    // The file is the container's truth: of a persistent home's saved
    // apps, only the file's start again before it is applied.
    let running_only = file.loaded.specs.iter().map(|s| s.name.clone()).collect();
    let hook: crate::Hook = {
        let code = code.clone();
        Box::new(move |started| tokio::spawn(drive(started, file, code)))
    };
    let driver = crate::Driver { hook, running_only };
    crate::serve_with(listener, config, shutdown, Some(driver)).await?;
    Ok(code.load(Ordering::Acquire))
}

/// Prints the lines, applies the file, watches for the end.
async fn drive(started: crate::Started, file: RunFile, code: Arc<AtomicU8>) {
    let crate::Started {
        sup,
        shutdown,
        stopped,
        home,
    } = started;
    // Before the apps start: no line of theirs is missed.
    let printer = tokio::spawn(print_lines(sup.clone(), file.output, stopped));
    let end = |exit: u8, why: String| {
        eprintln!("[pmdaemond] {why}");
        code.store(exit, Ordering::Release);
        shutdown.send_replace(true);
    };
    match apply(&home, &file).await {
        Ok(lines) => {
            for line in lines.lines() {
                eprintln!("[pmdaemond] {line}");
            }
        }
        Err((exit, e)) => {
            eprint!("pmdaemond run: {}", pmd::error_text(&e));
            end(
                exit,
                "nothing of the file could be started; stopping".into(),
            );
            let _ = printer.await;
            return;
        }
    }
    let mut closing = shutdown.subscribe();
    loop {
        // Taken before the records are read: a change after the read
        // wakes the wait below.
        let mut changes = sup.changes();
        if let Some((exit, why)) = verdict(&sup.settled_views().await) {
            end(exit, why);
            break;
        }
        let far = tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
        tokio::select! {
            _ = changes.next(far) => {}
            _ = closing.wait_for(|s| *s) => break,
        }
    }
    let _ = printer.await;
}

/// `pmd start FILE` over the daemon's own socket. On failure, the exit
/// code: [`USAGE`] when the daemon refused the file's content.
async fn apply(home: &std::path::Path, file: &RunFile) -> Result<String, (u8, anyhow::Error)> {
    let socket = pmdaemon_proto::socket_path(home);
    let home = pmd::connect::Home {
        dir: home.to_path_buf(),
        socket,
    };
    let mut client = match pmd::connect::connect_running(&home).await {
        Ok(Some(client)) => client,
        Ok(None) => return Err((1, anyhow::anyhow!("the daemon's socket does not answer"))),
        Err(e) => return Err((1, e)),
    };
    pmd::commands::start_file(&mut client, &file.loaded)
        .await
        .map_err(|e| {
            let usage = e.chain().any(|c| {
                c.is::<pmd::UsageError>()
                    || c.downcast_ref::<pmd::commands::DaemonError>()
                        .is_some_and(|d| d.code == tonic::Code::InvalidArgument)
            });
            (if usage { USAGE } else { 1 }, e)
        })
}

/// The end of the run, if it has come: no instance should run or is still
/// running. Exit 1 naming the errored instances, else 0.
/// A restart passes through `stopped` with `desired_running` kept, so it
/// never looks like an end.
fn verdict(views: &[InstanceView]) -> Option<(u8, String)> {
    let kept_up = views.iter().any(|v| {
        v.shared.desired_running || !matches!(v.shared.state, State::Stopped | State::Errored)
    });
    if kept_up {
        return None;
    }
    let errored: Vec<String> = views
        .iter()
        .filter(|v| v.shared.state == State::Errored)
        .map(|v| format!("{}[{}] errored: {}", v.name, v.id, v.shared.reason))
        .collect();
    if errored.is_empty() {
        Some((0, "no app is left running; stopping".into()))
    } else {
        Some((
            1,
            format!("no app is left running ({}); stopping", errored.join("; ")),
        ))
    }
}

fn to_proto(line: &LogLine) -> v1::LogLine {
    v1::LogLine {
        seq: line.seq,
        id: line.id,
        name: line.name.to_string(),
        stream: match line.stream {
            Stream::Out => v1::LogStream::Stdout,
            Stream::Err => v1::LogStream::Stderr,
        }
        .into(),
        data: line.data.to_vec(),
        timestamp_ms: line.timestamp_ms,
    }
}

/// Follows the daemon's log broadcast until every app is stopped at
/// shutdown, then prints what is left and returns.
async fn print_lines(
    sup: Supervisor,
    output: Output,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut lines = sup.logs().subscribe();
    let format = pmd::commands::LineFormat {
        tag: output != Output::Raw,
        time: false,
        json: output == Output::Json,
        colours: pmd::term::Colours::OFF,
    };
    let (mut out, mut err) = (tokio::io::stdout(), tokio::io::stderr());
    let (mut out_buf, mut err_buf) = (Vec::new(), Vec::new());
    let mut last = false;
    loop {
        let first = if last {
            None
        } else {
            tokio::select! {
                line = lines.recv() => Some(line),
                _ = stopped.wait_for(|s| *s) => { last = true; None }
            }
        };
        let mut missed = 0;
        let mut take = |line: Arc<LogLine>| {
            let to_err = line.stream == Stream::Err && output != Output::Json;
            format.write(
                if to_err { &mut err_buf } else { &mut out_buf },
                &to_proto(&line),
            );
        };
        match first {
            Some(Ok(line)) => take(line),
            Some(Err(RecvError::Lagged(n))) => missed += n,
            Some(Err(RecvError::Closed)) => last = true,
            None => {}
        }
        // What else is there now, in one write per stream.
        for _ in 0..512 {
            match lines.try_recv() {
                Ok(line) => take(line),
                Err(TryRecvError::Lagged(n)) => missed += n,
                Err(_) => break,
            }
        }
        if missed > 0 {
            err_buf.extend_from_slice(
                format!("[pmdaemond] missed {missed} lines (output too slow); they are in the log files\n").as_bytes(),
            );
        }
        // A closed stdout (a reader gone) stops the printing, not the apps.
        if !out_buf.is_empty() {
            let _ = out.write_all(&out_buf).await;
            let _ = out.flush().await;
            out_buf.clear();
        }
        if !err_buf.is_empty() {
            let _ = err.write_all(&err_buf).await;
            let _ = err.flush().await;
            err_buf.clear();
        }
        if last && lines.is_empty() {
            return;
        }
    }
}
