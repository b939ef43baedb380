//! Verbs about the daemon itself: `save`, `resurrect`, `kill`, `ping`,
//! `version`. `kill`, `ping` and `version` never start a daemon. For a
//! remote daemon they name its URL, and `kill` waits until its port stops
//! accepting connections (there is no local pid to watch).

use std::time::{Duration, Instant};

use anyhow::bail;
use pmdaemon_proto::v1::{PingRequest, ResurrectRequest, SaveProcessesRequest, ShutdownRequest};

use super::{Ctx, DaemonError, RpcResultExt};
use crate::connect::{self, Client, Home};
use crate::remote::dial;
use crate::remote::url::HostUrl;
use crate::render;
use crate::term::{self, with_spinner};

pub async fn save(ctx: &Ctx) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let saved = client.save_processes(SaveProcessesRequest {}).await.rpc()?;
    let apps = if saved.apps == 1 { "app" } else { "apps" };
    term::print(&format!("saved {} {apps} to {}\n", saved.apps, saved.path))?;
    Ok(())
}

pub async fn resurrect(ctx: &Ctx) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let request = ResurrectRequest {
        caller_path: ctx.caller_path(),
    };
    let response = with_spinner("resurrecting apps", client.resurrect(request))
        .await
        .rpc()?;
    let mut text = String::new();
    for process in &response.processes {
        text += &render::summary("resurrected", process);
        text.push('\n');
    }
    for name in &response.skipped {
        text += &format!("skipped {name} (already known)\n");
    }
    if text.is_empty() && response.failed.is_empty() {
        text = "nothing to resurrect\n".into();
    }
    term::print(&text)?;
    if !response.failed.is_empty() {
        anyhow::bail!(
            "{} of the dump could not be resurrected:\n  {}",
            if response.failed.len() == 1 {
                "1 app"
            } else {
                "some apps"
            },
            response.failed.join("\n  ")
        );
    }
    Ok(())
}

/// How long `kill` waits for the daemon to go away.
const KILL_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn kill(ctx: &Ctx) -> anyhow::Result<()> {
    if let Some(remote) = &ctx.remote {
        let client = ctx.client().await?;
        let wait = async {
            shutdown(client).await?;
            wait_until_unreachable(&remote.url).await
        };
        let label = format!("stopping the apps and the daemon at {}", remote.url);
        with_spinner(label, wait).await?;
        term::print(&format!("daemon at {} stopped\n", remote.url))?;
        return Ok(());
    }
    let Some(mut client) = connect::connect_running(&ctx.home).await? else {
        term::print("no daemon is running\n")?;
        return Ok(());
    };
    // The pid lets us wait for the process itself, not just its socket.
    let pid = client
        .ping(PingRequest {})
        .await
        .ok()
        .map(|r| r.into_inner().daemon_pid)
        .filter(|&pid| pid > 0);
    let wait = async {
        shutdown(client).await?;
        wait_until_gone(&ctx.home, pid).await
    };
    with_spinner("stopping the apps and the daemon", wait).await?;
    term::print("daemon stopped\n")?;
    Ok(())
}

/// Asks the daemon to shut down, then closes this connection (an open one
/// must not hold up its graceful exit).
async fn shutdown(mut client: Client) -> anyhow::Result<()> {
    match client.shutdown(ShutdownRequest {}).await {
        Ok(_) => Ok(()),
        // The daemon may close our connection as it exits.
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown
            ) =>
        {
            Ok(())
        }
        Err(status) => Err(DaemonError::from(status).into()),
    }
}

/// Polls until nothing accepts connections at `url` any more.
async fn wait_until_unreachable(url: &HostUrl) -> anyhow::Result<()> {
    let deadline = Instant::now() + KILL_TIMEOUT;
    while dial::answers(url).await {
        if Instant::now() >= deadline {
            bail!(
                "the daemon at {url} still accepts connections {}s after it was asked to stop; \
                 see pmdaemond.log in its home on that host",
                KILL_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Polls until the socket no longer answers and the daemon's process is
/// gone (or a zombie its parent has yet to reap).
async fn wait_until_gone(home: &Home, pid: Option<u32>) -> anyhow::Result<()> {
    let deadline = Instant::now() + KILL_TIMEOUT;
    loop {
        let answers = connect::socket_answers(&home.socket).await;
        let alive = pid.is_some_and(process_alive);
        if !answers && !alive {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let who = pid.map_or_else(
                || "the daemon".to_string(),
                |p| format!("the daemon (pid {p})"),
            );
            bail!(
                "{who} is still running {}s after it was asked to stop; see {}",
                KILL_TIMEOUT.as_secs(),
                home.daemon_log().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `pid` is a live (non-zombie) process.
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| !matches!(state, 'Z' | 'X')),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(_) => i32::try_from(pid)
            .is_ok_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()),
    }
}

pub async fn ping(ctx: &Ctx) -> anyhow::Result<()> {
    let Some(mut client) = ctx.running_client().await? else {
        bail!(
            "no daemon is running (nothing answers on {})",
            ctx.home.socket.display()
        );
    };
    let pong = client.ping(PingRequest {}).await.rpc()?;
    term::print(&format!(
        "pong: pmdaemond {} (pid {}){}{}\n",
        pong.version,
        pong.daemon_pid,
        at(ctx),
        listening(&pong.listen)
    ))?;
    for notice in &pong.notices {
        eprintln!("[pmd] warning: {notice}");
    }
    Ok(())
}

/// ` at URL` for a remote daemon ("" for the local one).
fn at(ctx: &Ctx) -> String {
    ctx.remote
        .as_ref()
        .map(|r| format!(" at {}", r.url))
        .unwrap_or_default()
}

/// Where the daemon listens on TCP, for ping and version ("" when it does
/// not).
fn listening(listen: &[String]) -> String {
    if listen.is_empty() {
        String::new()
    } else {
        format!(", listening on {}", listen.join(", "))
    }
}

pub async fn version(ctx: &Ctx) -> anyhow::Result<()> {
    let mut text = format!("pmd {}\n", pmdaemon_proto::VERSION);
    let at = at(ctx);
    let daemon = match ctx.running_client().await {
        Ok(Some(mut client)) => match client.ping(PingRequest {}).await.rpc() {
            Ok(pong) => format!(
                "pmdaemond {} (pid {}){at}{}",
                pong.version,
                pong.daemon_pid,
                listening(&pong.listen)
            ),
            Err(e) => format!("pmdaemond{at}: no answer ({e})"),
        },
        Ok(None) => "pmdaemond: not running".to_string(),
        Err(e) => format!("pmdaemond{at}: no answer ({e:#})"),
    };
    text += &daemon;
    text.push('\n');
    term::print(&text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_of_pids() {
        assert!(process_alive(std::process::id()));
        // Reaped children are gone.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_alive(pid));
    }

    #[test]
    fn zombies_count_as_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Wait for it to exit without reaping it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!process_alive(pid));
        child.wait().unwrap();
    }
}
