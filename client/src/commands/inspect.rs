//! `list` (with PM2's `--sort`, `jlist` and `prettylist`), `describe` and
//! `env`: read-only views of the process table. Environment values are
//! shown by `env` and by `describe --env-values` only: a terminal or a
//! pasted `describe` should not spill secrets.

use std::collections::BTreeMap;

use anyhow::bail;
use pmdaemon_proto::v1::{GetProcessEnvRequest, GetProcessRequest, ListProcessesRequest};

use super::{Ctx, RpcResultExt};
use crate::cli::{DescribeArgs, EnvArgs, ListArgs, OutputFormat, Sort, SortKey};
use crate::render::{self, ProcessView};
use crate::term;

pub async fn list(ctx: &Ctx, args: ListArgs) -> anyhow::Result<()> {
    let mut views = list_views(ctx).await?;
    if let Some(sort) = args.sort {
        sort_views(&mut views, sort);
    }
    let text = match args.output.output {
        OutputFormat::Table => render::table(&views, ctx.colours),
        OutputFormat::Json => render::json(&views, false)?,
        OutputFormat::Yaml => render::yaml(&views, false)?,
    };
    term::print(&text)?;
    Ok(())
}

/// PM2's `jlist` (one line of JSON) and `prettylist` (indented): the
/// same objects as `pmd list -o json`.
pub async fn json_list(ctx: &Ctx, pretty: bool) -> anyhow::Result<()> {
    let views = list_views(ctx).await?;
    let text = if pretty {
        render::json(&views, false)?
    } else {
        serde_json::to_string(&views)? + "\n"
    };
    term::print(&text)?;
    Ok(())
}

async fn list_views(ctx: &Ctx) -> anyhow::Result<Vec<ProcessView>> {
    let mut client = ctx.client().await?;
    let processes = client
        .list_processes(ListProcessesRequest {})
        .await
        .rpc()?
        .processes;
    Ok(ProcessView::all(&processes, render::now_ms()))
}

/// Orders `views` as `--sort` says; ties keep id order (the sort is
/// stable), and instances without a value (no pid, no sample) come last
/// whichever the direction, as a `-` reads best at the bottom.
pub fn sort_views(views: &mut [ProcessView], sort: Sort) {
    use std::cmp::Ordering;
    fn by<T: PartialOrd>(a: Option<T>, b: Option<T>, descending: bool) -> Ordering {
        match (a, b) {
            (Some(a), Some(b)) => {
                let o = a.partial_cmp(&b).unwrap_or(Ordering::Equal);
                if descending { o.reverse() } else { o }
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }
    let d = sort.descending;
    views.sort_by(|a, b| match sort.key {
        SortKey::Name => by(Some(&a.name), Some(&b.name), d),
        SortKey::Id => by(Some(a.id), Some(b.id), d),
        SortKey::Pid => by(a.pid, b.pid, d),
        SortKey::Status => by(Some(a.status), Some(b.status), d),
        SortKey::Cpu => by(a.cpu_percent, b.cpu_percent, d),
        SortKey::Mem => by(a.memory_bytes, b.memory_bytes, d),
        SortKey::Restarts => by(Some(a.restarts), Some(b.restarts), d),
        SortKey::Uptime => by(a.uptime_ms, b.uptime_ms, d),
    });
}

pub async fn describe(ctx: &Ctx, args: DescribeArgs) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let processes = client
        .get_process(GetProcessRequest {
            target: args.target.to_string(),
        })
        .await
        .rpc()?
        .processes;
    if processes.is_empty() {
        bail!("no process matches {}", args.target);
    }
    if args.env_values && processes.iter().any(|p| p.env_values_hidden) {
        bail!(
            "the daemon did not send environment values: this token is read-only, and values \
             are for admin tokens (`pmd env {}` needs one too)",
            args.target
        );
    }
    let now = render::now_ms();
    let mut views = ProcessView::all(&processes, now);
    for (view, info) in views.iter_mut().zip(&processes) {
        if args.env_values {
            view.show_captured_values(info);
        } else {
            view.hide_env_values();
        }
    }
    let text = match args.output.output {
        OutputFormat::Table => render::describe_all(&views, ctx.colours, now),
        OutputFormat::Json => render::json(&views, true)?,
        OutputFormat::Yaml => render::yaml(&views, true)?,
    };
    term::print(&text)?;
    Ok(())
}

/// `pmd env ID|NAME`: each instance's environment, `KEY=VALUE` per line
/// (an app's instances under a `NAME (id N)` title each, when there are
/// several), or JSON / YAML.
pub async fn env(ctx: &Ctx, args: EnvArgs) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let processes = client
        .get_process_env(GetProcessEnvRequest {
            target: args.target.to_string(),
        })
        .await
        .rpc()?
        .processes;
    if processes.is_empty() {
        bail!("no process matches {}", args.target);
    }
    #[derive(serde::Serialize)]
    struct EnvView {
        id: u32,
        name: String,
        env: BTreeMap<String, String>,
    }
    let views: Vec<EnvView> = processes
        .into_iter()
        .map(|p| EnvView {
            id: p.id,
            name: p.name,
            env: p.env.into_iter().collect(),
        })
        .collect();
    let text = match args.output {
        OutputFormat::Json => match views.as_slice() {
            [one] => serde_json::to_string_pretty(one)? + "\n",
            all => serde_json::to_string_pretty(all)? + "\n",
        },
        OutputFormat::Yaml => match views.as_slice() {
            [one] => serde_yaml::to_string(one)?,
            all => serde_yaml::to_string(all)?,
        },
        OutputFormat::Table => {
            let titled = views.len() > 1;
            let mut out = String::new();
            for (n, view) in views.iter().enumerate() {
                if titled {
                    if n > 0 {
                        out.push('\n');
                    }
                    out.push_str(&format!("{} (id {})\n", view.name, view.id));
                }
                for (k, v) in &view.env {
                    out.push_str(&format!("{k}={v}\n"));
                }
            }
            out
        }
    };
    term::print(&text)?;
    Ok(())
}
