//! `pmd import pm2 [DUMP]`: PM2's saved process list into pmd apps.
//!
//! Which file: DUMP, else `$PM2_HOME/dump.pm2`, else `~/.pm2/dump.pm2`.
//! [`crate::pm2dump`] reads it; here each app is created with its own
//! StartProcess, so one app that the daemon refuses (a script that is
//! gone) changes nothing for it and does not stop the others. An app whose
//! name the daemon already knows is left alone and said so. One line per
//! app: created (with its ids), skipped, or not imported with the reason,
//! then what could not be mapped; exit 1 when any app was not imported.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use pmdaemon_proto::v1::{ListProcessesRequest, StartProcessRequest, StopProcessRequest};

use super::{Ctx, RpcResultExt, print_processes};
use crate::UsageError;
use crate::cli::ImportPm2Args;
use crate::pm2dump::{self, Imported};

/// The dump to read, and PM2's home (whose `logs/` holds PM2's default log
/// files).
fn locate(args: &ImportPm2Args) -> anyhow::Result<(PathBuf, PathBuf)> {
    let pm2_home = match std::env::var_os("PM2_HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home),
        _ => {
            let home = std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .context("neither PM2_HOME nor HOME is set: give the dump's path")?;
            Path::new(&home).join(".pm2")
        }
    };
    Ok(match &args.dump {
        // A dump elsewhere was copied from a PM2 home: its directory is the
        // best guess of that home.
        Some(path) => (
            path.clone(),
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or(pm2_home, Path::to_path_buf),
        ),
        None => (pm2_home.join("dump.pm2"), pm2_home),
    })
}

pub async fn pm2(ctx: &Ctx, args: ImportPm2Args) -> anyhow::Result<()> {
    let (path, pm2_home) = locate(&args)?;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(UsageError(format!(
                "{}: no such file; run `pm2 save` first (it writes $PM2_HOME/dump.pm2), or give \
                 the dump's path: `pmd import pm2 PATH`",
                path.display()
            ))
            .into());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let apps = pm2dump::read(&text, &pm2_home)
        .map_err(|e| anyhow::anyhow!("{}: {e}; nothing was imported", path.display()))?;
    if apps.is_empty() {
        println!("{}: no apps (PM2 had none when it saved)", path.display());
        return Ok(());
    }
    if ctx.remote.is_some() {
        return Err(UsageError(
            "import reads PM2's dump on this machine and its apps' paths are this machine's: \
             run `pmd import pm2` on the daemon's host"
                .into(),
        )
        .into());
    }
    let mut failed = 0;
    let mut client = if args.dry_run {
        None
    } else {
        Some(ctx.client().await?)
    };
    let known: Vec<String> = match client.as_mut() {
        Some(client) => client
            .list_processes(ListProcessesRequest {})
            .await
            .rpc()?
            .processes
            .into_iter()
            .map(|p| p.name)
            .collect(),
        None => Vec::new(),
    };
    let mut created = Vec::new();
    for app in apps {
        let app = match app {
            Ok(app) => app,
            Err(refused) => {
                failed += 1;
                eprintln!(
                    "[pmd] not imported {}: {} (nothing created for it)",
                    refused.name, refused.reason
                );
                continue;
            }
        };
        let name = app.spec.name.clone();
        if known.contains(&name) {
            eprintln!("[pmd] skipped {name}: pmd already has an app of that name (left as it is)");
            continue;
        }
        let Some(client) = client.as_mut() else {
            println!("would import {}", describe(&app));
            report(&app);
            continue;
        };
        let request = StartProcessRequest {
            spec: Some(app.spec.clone()),
            caller_cwd: ctx.caller_cwd()?,
            caller_path: ctx.caller_path(),
            ..Default::default()
        };
        match client.start_process(request).await.rpc() {
            Ok(response) => {
                let mut processes = response.processes;
                if app.stopped {
                    // As PM2 had it: stopped, ready for `pmd start NAME`.
                    let stop = StopProcessRequest {
                        target: name.clone(),
                    };
                    processes = client.stop_process(stop).await.rpc()?.processes;
                }
                let ids = crate::render::id_list(processes.iter().map(|p| p.id));
                let state = if app.stopped {
                    ", stopped as in PM2"
                } else {
                    ""
                };
                eprintln!("[pmd] imported {} ({ids}{state})", describe(&app));
                report(&app);
                created.extend(processes);
            }
            Err(e) => {
                failed += 1;
                eprintln!("[pmd] not imported {name}: {e:#} (nothing created for it)");
                report(&app);
            }
        }
    }
    if !args.dry_run {
        print_processes("imported", &created, args.output, "no app imported")?;
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} app{} of {} not imported (see above); the others were",
            if failed == 1 { "" } else { "s" },
            path.display()
        );
    }
    Ok(())
}

/// `api (node /srv/api/server.js, 2 instances)`.
fn describe(app: &Imported) -> String {
    let s = &app.spec;
    let runner = match s.interpreter.as_deref() {
        Some("none") | None => String::new(),
        Some(i) => format!("{i} "),
    };
    let instances = match s.instances {
        Some(n) if n > 1 => format!(", {n} instances"),
        _ => String::new(),
    };
    format!("{} ({runner}{}{instances})", s.name, s.script)
}

/// The notes and what was not mapped, one stderr line each.
fn report(app: &Imported) {
    for note in &app.notes {
        eprintln!("[pmd]   {}: {note}", app.spec.name);
    }
    for what in &app.not_mapped {
        eprintln!("[pmd]   {}: not mapped: {what}", app.spec.name);
    }
}
