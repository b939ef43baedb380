//! Verbs for apps with several instances: `reload` (the ReloadProcess
//! server stream, one message per replaced instance, shown as a progress
//! bar on a terminal or one line per instance otherwise) and `scale`.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::bail;
use pmdaemon_proto::Target;
use pmdaemon_proto::v1::{
    ApplyMode, GetProcessRequest, ProcessInfo, ReloadProcessRequest, ScaleProcessRequest,
};

use super::lifecycle::plain;
use super::{Ctx, DaemonError, RpcResultExt, files, print_processes, wait};
use crate::cli::{OutputFormat, ReloadArgs, ScaleArgs, ScaleCount};
use crate::connect::Client;
use crate::render;
use crate::rules::MAX_INSTANCES;
use crate::term::{self, with_spinner};

pub async fn reload(ctx: &Ctx, args: ReloadArgs) -> anyhow::Result<()> {
    let environment = args.environment.environment.as_deref();
    let output = args.output.output;
    if let Some(path) = files::file_target(&args.targets, &args.only.only, environment)? {
        let loaded = files::load(path, environment, &args.only.only, false)?;
        let apply = files::ApplyOptions {
            ready_timeout_ms: ready_timeout_ms(&args),
            update_env: args.update_env.update_env,
        };
        return files::apply_with(ctx, &loaded, ApplyMode::Reload, output, args.wait, apply).await;
    }
    // --wait-timeout bounds the whole command: with --wait-ready and no
    // --ready-timeout, it is also the longest one replacement may take.
    let wait = crate::cli::WaitArg {
        since: Some(std::time::Instant::now()),
        ..args.wait
    };
    let ready_timeout_ms = ready_timeout_ms(&args);
    let update_env = args.update_env.update_env;
    let caller_env = ctx.caller_env(update_env);
    let mut client = ctx.client().await?;
    let mut replaced = Vec::new();
    for target in plain(&args.targets) {
        let request = ReloadProcessRequest {
            target: target.to_string(),
            ready_timeout_ms,
            update_env,
            caller_env: caller_env.clone(),
        };
        match reload_one(&mut client, &target, request, output).await {
            Ok(done) => replaced.extend(done),
            Err(e) => return Err(wait::explain(&mut client, &target.to_string(), e).await),
        }
    }
    if output == OutputFormat::Table && replaced.is_empty() {
        // Otherwise the lines were printed as the instances were replaced.
        term::print("no process to reload\n")?;
    }
    wait::finish(&mut client, &replaced, output, wait).await
}

/// The ReloadProcess `ready_timeout_ms`: `--ready-timeout`, else the
/// `--wait-timeout` of `--wait-ready`, else the daemon's default.
pub(super) fn ready_timeout_ms(args: &ReloadArgs) -> Option<u64> {
    args.ready_timeout
        .or(args.wait.wait_ready.then_some(args.wait.wait_timeout))
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How reload progress is shown: a bar on stderr when it is a terminal,
/// else (for tables) a line per replaced instance on stdout.
enum Progress {
    Bar(indicatif::ProgressBar),
    Lines,
    Quiet,
}

impl Progress {
    fn new(target: &Target, output: OutputFormat) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_message(format!("reloading {target}"));
            bar.enable_steady_tick(Duration::from_millis(100));
            Progress::Bar(bar)
        } else if output == OutputFormat::Table {
            Progress::Lines
        } else {
            Progress::Quiet
        }
    }

    fn replaced(&self, process: &ProcessInfo, done: u32, total: u32) -> anyhow::Result<()> {
        match self {
            Progress::Bar(bar) => {
                if bar.length() != Some(u64::from(total)) {
                    bar.set_length(u64::from(total));
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{spinner} reloading {prefix} [{bar:24}] {pos}/{len} {msg}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(process.name.clone());
                }
                bar.set_position(u64::from(done));
                let next = if done < total {
                    format!(", replacing instance {} of {total}", done + 1)
                } else {
                    String::new()
                };
                bar.set_message(format!("(id {} ready{next})", process.id));
            }
            Progress::Lines => {
                let line = render::summary("reloaded", process);
                term::print(&format!("{line} [{done}/{total}]\n"))?;
            }
            Progress::Quiet => {}
        }
        Ok(())
    }

    /// After the last instance: the bar gives way to a summary line.
    fn finish(&self, name: &str, processes: &[ProcessInfo]) -> anyhow::Result<()> {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
            if !processes.is_empty() {
                let ids = render::id_list(processes.iter().map(|p| p.id));
                let n = i64::try_from(processes.len()).unwrap_or(i64::MAX);
                let word = instances_word(n);
                term::print(&format!("reloaded {name}: {n} {word} ({ids})\n"))?;
            }
        }
        Ok(())
    }

    fn abandon(&self) {
        if let Progress::Bar(bar) = self {
            bar.abandon();
        }
    }
}

/// Reloads one target, showing progress; returns the replaced instances.
async fn reload_one(
    client: &mut Client,
    target: &Target,
    request: ReloadProcessRequest,
    output: OutputFormat,
) -> anyhow::Result<Vec<ProcessInfo>> {
    let mut stream = client.reload_process(request).await.rpc()?;
    let progress = Progress::new(target, output);
    let mut replaced: Vec<ProcessInfo> = Vec::new();
    let mut last = (0, 0);
    loop {
        let message = match stream.message().await {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(status) => {
                progress.abandon();
                let error = anyhow::Error::from(DaemonError::from(status));
                let (done, total) = last;
                return Err(if total > 0 {
                    error.context(format!(
                        "reload of {target} stopped after {done} of {total} instances"
                    ))
                } else {
                    error.context(format!("cannot reload {target}"))
                });
            }
        };
        last = (message.done, message.total);
        if let Some(process) = message.process {
            progress.replaced(&process, message.done, message.total)?;
            replaced.push(process);
        }
    }
    progress.finish(&target.to_string(), &replaced)?;
    Ok(replaced)
}

pub async fn scale(ctx: &Ctx, args: ScaleArgs) -> anyhow::Result<()> {
    let name = &args.name;
    let mut client = ctx.client().await?;
    let instances = match args.count {
        ScaleCount::To(n) => n,
        ScaleCount::By(delta) => {
            let current = client
                .get_process(GetProcessRequest {
                    target: name.clone(),
                })
                .await
                .rpc()?
                .processes
                .len();
            let current = i32::try_from(current).unwrap_or(i32::MAX);
            let has = format!("{name} has {current} {}", instances_word(current.into()));
            match current.saturating_add(delta) {
                n if n < 1 => bail!(
                    "{has}: removing {} would leave none; use `pmd stop {name}` or `pmd delete \
                     {name}`",
                    -delta
                ),
                n if n > MAX_INSTANCES => {
                    bail!("{has}: {n} would be more than the {MAX_INSTANCES} an app may have")
                }
                n => n,
            }
        }
    };
    let request = ScaleProcessRequest {
        name: name.clone(),
        instances,
    };
    let response = with_spinner(format!("scaling {name}"), client.scale_process(request))
        .await
        .rpc()?;
    if args.output.output != OutputFormat::Table {
        return print_processes("scaled", &response.processes, args.output.output, "");
    }
    let after = i64::try_from(response.processes.len()).unwrap_or(i64::MAX);
    let before = after - i64::from(response.delta);
    let line = if response.delta == 0 {
        format!("{name} already has {after} {}\n", instances_word(after))
    } else {
        format!(
            "scaled {name}: {before} → {after} {}\n",
            instances_word(after)
        )
    };
    term::print(&line)?;
    Ok(())
}

fn instances_word(n: i64) -> &'static str {
    if n == 1 { "instance" } else { "instances" }
}
