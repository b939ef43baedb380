//! `list` and `describe`: read-only views of the process table.

use anyhow::bail;
use pmdaemon_proto::v1::{GetProcessRequest, ListProcessesRequest};

use super::{Ctx, RpcResultExt};
use crate::cli::{DescribeArgs, ListArgs, OutputFormat};
use crate::render::{self, ProcessView};
use crate::term;

pub async fn list(ctx: &Ctx, args: ListArgs) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let processes = client
        .list_processes(ListProcessesRequest {})
        .await
        .rpc()?
        .processes;
    let views = ProcessView::all(&processes, render::now_ms());
    let text = match args.output.output {
        OutputFormat::Table => render::table(&views, ctx.colours),
        OutputFormat::Json => render::json(&views, false)?,
        OutputFormat::Yaml => render::yaml(&views, false)?,
    };
    term::print(&text)?;
    Ok(())
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
    let now = render::now_ms();
    let views = ProcessView::all(&processes, now);
    let text = match args.output.output {
        OutputFormat::Table => render::describe_all(&views, ctx.colours, now),
        OutputFormat::Json => render::json(&views, true)?,
        OutputFormat::Yaml => render::yaml(&views, true)?,
    };
    term::print(&text)?;
    Ok(())
}
