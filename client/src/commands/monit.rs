//! `monit`: the live view. StreamMetrics (one sample per `--interval`)
//! feeds the instance table; a StreamLogs follow stream (the last
//! [`LOG_HISTORY`] lines, then new ones) feeds the selected instance's log
//! panel, and is replaced whenever the selection changes. Keys come from
//! crossterm's event stream; the loop redraws after every input.
//!
//! The log stream runs in a task that sends into a bounded channel tagged
//! with the selection's generation: the task ends when the channel is
//! closed or it is aborted on a new selection, and lines of an older
//! generation that were already queued are dropped.
//!
//! When stdout is not a terminal, `monit` prints one sample as `list`'s
//! table and exits 0.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use crossterm::event::{Event, EventStream, KeyCode, KeyEventKind, KeyModifiers};
use pmdaemon_proto::v1::{LogLine, StreamLogsRequest, StreamMetricsRequest};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;

use super::{Ctx, DaemonError, RpcResultExt};
use crate::cli::MonitArgs;
use crate::connect::Client;
use crate::monit::{LOG_HISTORY, Screen, TerminalGuard, as_process_info, draw};
use crate::render::{self, ProcessView};
use crate::term;

/// What the log task sends.
struct LogMessage {
    /// The selection this stream belongs to.
    generation: u64,
    lines: Vec<LogLine>,
    missed: u64,
    /// Set when the stream failed (then it ends).
    error: Option<String>,
}

pub async fn monit(ctx: &Ctx, args: MonitArgs) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let request = StreamMetricsRequest {
        target: args
            .target
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        interval_ms: Some(u64::try_from(args.interval.as_millis()).unwrap_or(u64::MAX)),
    };
    let mut samples = client.stream_metrics(request).await.rpc()?;
    if !std::io::stdout().is_terminal() {
        return snapshot(ctx, &mut samples, args.interval).await;
    }
    let mut screen = Screen::new(args.interval);
    let guard = TerminalGuard::enter().context("cannot take over the terminal")?;
    let outcome = run(guard, client, &mut samples, &mut screen).await;
    // The guard is dropped: the terminal is back, messages can be printed.
    match outcome? {
        End::Quit => Ok(()),
        End::StreamEnded => {
            eprintln!("[pmd] the daemon ended the metrics stream (was it stopped?)");
            Ok(())
        }
    }
}

/// Prints the first sample as a table.
async fn snapshot(
    ctx: &Ctx,
    samples: &mut tonic::Streaming<pmdaemon_proto::v1::StreamMetricsResponse>,
    interval: Duration,
) -> anyhow::Result<()> {
    let first = tokio::time::timeout(interval + Duration::from_secs(5), samples.message())
        .await
        .context("the daemon sent no metrics sample in time")?
        .map_err(DaemonError::from)?
        .context("the daemon ended the metrics stream before its first sample")?;
    let infos: Vec<_> = first.processes.iter().map(as_process_info).collect();
    let views = ProcessView::all(&infos, render::now_ms());
    term::print(&render::table(&views, ctx.colours))?;
    Ok(())
}

/// How the live view ended.
enum End {
    Quit,
    StreamEnded,
}

async fn run(
    mut guard: TerminalGuard,
    client: Client,
    samples: &mut tonic::Streaming<pmdaemon_proto::v1::StreamMetricsResponse>,
    screen: &mut Screen,
) -> anyhow::Result<End> {
    let mut keys = EventStream::new();
    // Ctrl-C arrives as a key in raw mode; these are `kill`s.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let (log_tx, mut log_rx) = mpsc::channel::<LogMessage>(64);
    let mut follower: Option<JoinHandle<()>> = None;
    let mut generation = 0_u64;
    let end = loop {
        guard
            .terminal
            .draw(|frame| draw(frame, screen, render::now_ms()))
            .context("cannot draw the screen")?;
        let mut selection_changed = false;
        tokio::select! {
            key = keys.next() => match key {
                Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => {
                    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
                    match key.code {
                        KeyCode::Char('q') | KeyCode::Esc => break End::Quit,
                        KeyCode::Char('c') if ctrl => break End::Quit,
                        KeyCode::Up | KeyCode::Char('k') => {
                            selection_changed = screen.move_selection(-1);
                        }
                        KeyCode::Down | KeyCode::Char('j') => {
                            selection_changed = screen.move_selection(1);
                        }
                        KeyCode::Home | KeyCode::Char('g') => {
                            selection_changed = screen.move_selection(isize::MIN);
                        }
                        KeyCode::End | KeyCode::Char('G') => {
                            selection_changed = screen.move_selection(isize::MAX);
                        }
                        _ => {}
                    }
                }
                Some(Ok(_)) => {} // resize and others: redraw
                Some(Err(e)) => return Err(anyhow::Error::from(e).context("reading the keyboard")),
                None => break End::Quit,
            },
            sample = samples.message() => match sample {
                Ok(Some(sample)) => selection_changed = screen.update(&sample),
                Ok(None) => break End::StreamEnded,
                Err(status) => return Err(DaemonError::from(status).into()),
            },
            Some(message) = log_rx.recv() => {
                if message.generation == generation {
                    screen.push_logs(&message.lines, message.missed);
                    if message.error.is_some() {
                        screen.log_error = message.error;
                    }
                }
            },
            _ = sigint.recv() => break End::Quit,
            _ = sigterm.recv() => break End::Quit,
            _ = sighup.recv() => break End::Quit,
        }
        if selection_changed {
            if let Some(task) = follower.take() {
                task.abort();
            }
            generation += 1;
            screen.reset_logs();
            follower = screen
                .selected_id()
                .map(|id| follow_logs(client.clone(), id, generation, log_tx.clone()));
        }
    };
    if let Some(task) = follower {
        task.abort();
    }
    Ok(end)
}

/// Follows instance `id`'s logs into `tx` until the stream ends, the task
/// is aborted or the receiver is gone.
fn follow_logs(
    mut client: Client,
    id: u32,
    generation: u64,
    tx: mpsc::Sender<LogMessage>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let request = StreamLogsRequest {
            target: id.to_string(),
            lines: LOG_HISTORY,
            follow: true,
            ..Default::default()
        };
        let failed = |error: String| LogMessage {
            generation,
            lines: Vec::new(),
            missed: 0,
            error: Some(error),
        };
        let mut stream = match client.stream_logs(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                let error = DaemonError::from(status).to_string();
                let _ = tx
                    .send(failed(format!("cannot read the logs: {error}")))
                    .await;
                return;
            }
        };
        loop {
            let message = match stream.message().await {
                Ok(Some(m)) => LogMessage {
                    generation,
                    lines: m.lines,
                    missed: m.missed_lines,
                    error: None,
                },
                Ok(None) => break,
                Err(status) => {
                    let error = DaemonError::from(status).to_string();
                    failed(format!("the log stream failed: {error}"))
                }
            };
            let last = message.error.is_some();
            if tx.send(message).await.is_err() || last {
                break;
            }
        }
    })
}
