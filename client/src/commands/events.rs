//! `events`: the WatchEvents server stream, one line per event as it
//! happens, until Ctrl-C or the daemon ends the stream.
//!
//! Text lines read `TIME NAME[ID] KIND DETAILS → STATE: DETAIL`; `-o json`
//! prints one [`EventView`] object per line (keys are stable API, like
//! `list -o json`). Output is flushed after every event, and a closed stdout
//! ends the command quietly with exit 0 (`pmd events | head -3`). Events the
//! daemon dropped because this reader fell behind are announced on stderr.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use pmdaemon_proto::v1::{Event, EventKind, ProcessState, WatchEventsRequest};
use serde::Serialize;

use super::{Ctx, DaemonError, RpcResultExt};
use crate::cli::{EventsArgs, EventsFormat};
use crate::render;
use crate::term::{self, Colours, Style};

pub async fn events(ctx: &Ctx, args: EventsArgs) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let request = WatchEventsRequest {
        target: args
            .target
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    };
    let mut stream = client.watch_events(request).await.rpc()?;
    let mut out = term::Stdout::new();
    while let Some(response) = stream.message().await.map_err(DaemonError::from)? {
        if response.missed_events > 0 {
            out.flush()?;
            eprintln!(
                "[pmd] missed {} events (reader too slow)",
                response.missed_events
            );
        }
        if let Some(event) = &response.event {
            let line = match args.output {
                EventsFormat::Text => text_line(event, ctx.colours),
                EventsFormat::Json => json_line(event)?,
            };
            out.write_all(line.as_bytes())?;
            out.flush()?;
        }
    }
    eprintln!("[pmd] the daemon ended the event stream (was it stopped?)");
    Ok(())
}

/// The word for an event kind, in text and JSON alike.
pub fn kind_word(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Unspecified => "unknown",
        EventKind::Started => "started",
        EventKind::Online => "online",
        EventKind::HealthChanged => "health_changed",
        EventKind::Exited => "exited",
        EventKind::Restarting => "restarting",
        EventKind::Errored => "errored",
        EventKind::Stopped => "stopped",
        EventKind::Deleted => "deleted",
        EventKind::PortAssigned => "port_assigned",
        EventKind::Ready => "ready",
        EventKind::LogsPaused => "logs_paused",
        EventKind::LogsResumed => "logs_resumed",
        EventKind::PoolJoined => "pool_joined",
        EventKind::PoolLeft => "pool_left",
        EventKind::ConnectionsRefused => "connections_refused",
        EventKind::CronRestart => "cron_restart",
    }
}

/// One event as `pmd events -o json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventView {
    /// Daemon-wide, increasing.
    pub seq: u64,
    pub at_ms: i64,
    pub id: u32,
    pub name: String,
    /// started, online, health_changed, ready, exited, restarting,
    /// errored, stopped, deleted, port_assigned, logs_paused or
    /// logs_resumed.
    pub kind: &'static str,
    /// The state word after the event (as `status` in `list -o json`).
    pub state: &'static str,
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    /// Signal name that ended the process, e.g. SIGKILL.
    pub signal: Option<String>,
    pub port: Option<u32>,
    /// unknown, healthy or unhealthy; null when the app has no check.
    pub health: Option<&'static str>,
    /// Why (reason of a restart, a health error...); null when none.
    pub detail: Option<String>,
}

impl EventView {
    pub fn new(event: &Event) -> EventView {
        EventView {
            seq: event.seq,
            at_ms: event.at_ms,
            id: event.id,
            name: event.name.clone(),
            kind: kind_word(event.kind()),
            state: event.state().word(),
            pid: event.pid,
            exit_code: event.exit_code,
            signal: event.signal.clone(),
            port: event.port,
            health: render::health_word(event.health()),
            detail: (!event.detail.is_empty()).then(|| event.detail.clone()),
        }
    }
}

/// `{...}\n`: one compact JSON object.
pub fn json_line(event: &Event) -> anyhow::Result<String> {
    let mut line = serde_json::to_string(&EventView::new(event))?;
    line.push('\n');
    Ok(line)
}

/// `2026-11-26T05:00:00.123Z api[0] exited code=1 → waiting-restart:
/// exited with code 1; restarting in 0 ms`, with a newline.
pub fn text_line(event: &Event, colours: Colours) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(event.at_ms).unwrap_or(0));
    let stamp = humantime::format_rfc3339_millis(at).to_string();
    let kind = event.kind();
    let word = kind_word(kind);
    let style = match kind {
        EventKind::Online | EventKind::Ready => Some(Style::Green),
        EventKind::Errored => Some(Style::Red),
        EventKind::Exited | EventKind::Restarting | EventKind::LogsPaused => Some(Style::Yellow),
        EventKind::HealthChanged => render::health_word(event.health()).map(render::health_style),
        EventKind::Stopped | EventKind::Deleted => Some(Style::Dim),
        _ => None,
    };
    let mut line = format!(
        "{} {}[{}] {}",
        colours.paint(&stamp, Style::Dim),
        colours.paint(&event.name, Style::Cyan),
        event.id,
        match style {
            Some(style) => colours.paint(word, style),
            None => word.into(),
        }
    );
    // The daemon's detail may repeat what a key=value already says (`pid
    // 1234`, `healthy`, `unhealthy: why`): that part is left out.
    let mut said: Vec<String> = Vec::new();
    let mut extra = |key: &str, value: String| {
        line += &format!(" {key}={value}");
        said.push(if key == "health" {
            value
        } else {
            format!("{key} {value}")
        });
    };
    match kind {
        EventKind::Started | EventKind::Online => {
            if let Some(pid) = event.pid {
                extra("pid", pid.to_string());
            }
        }
        EventKind::Exited => {
            if let Some(code) = event.exit_code {
                extra("code", code.to_string());
            }
            if let Some(signal) = &event.signal {
                extra("signal", signal.clone());
            }
        }
        EventKind::PortAssigned => {
            if let Some(port) = event.port {
                extra("port", port.to_string());
            }
        }
        EventKind::HealthChanged => {
            let health = render::health_word(event.health()).unwrap_or("none");
            extra("health", health.to_string());
        }
        _ => {}
    }
    if event.state() != ProcessState::Unspecified {
        let state = event.state().word();
        line += &format!(" → {}", colours.paint(state, render::state_style(state)));
    }
    let mut detail = event.detail.as_str();
    for prefix in &said {
        if detail == prefix {
            detail = "";
        } else if let Some(rest) = detail.strip_prefix(&format!("{prefix}: ")) {
            detail = rest;
        }
    }
    if !detail.is_empty() {
        line += &format!(": {detail}");
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmdaemon_proto::v1::HealthState;

    fn exited() -> Event {
        let mut event = Event {
            seq: 42,
            at_ms: 1_795_669_200_123,
            id: 0,
            name: "api".into(),
            pid: Some(1234),
            exit_code: Some(1),
            detail: "exited with code 1; restarting in 0 ms".into(),
            ..Default::default()
        };
        event.set_kind(EventKind::Exited);
        event.set_state(ProcessState::WaitingRestart);
        event
    }

    #[test]
    fn text_lines_read_like_a_log() {
        assert_eq!(
            text_line(&exited(), Colours::OFF),
            "2026-11-26T05:00:00.123Z api[0] exited code=1 → waiting-restart: exited with code \
             1; restarting in 0 ms\n"
        );
        let mut started = exited();
        started.set_kind(EventKind::Started);
        started.set_state(ProcessState::Starting);
        started.exit_code = None;
        started.detail.clear();
        assert_eq!(
            text_line(&started, Colours::OFF),
            "2026-11-26T05:00:00.123Z api[0] started pid=1234 → starting\n"
        );
        // A detail that repeats the pid or the health is left out.
        started.detail = "pid 1234".into();
        assert!(text_line(&started, Colours::OFF).ends_with(" started pid=1234 → starting\n"));
        let mut health = started.clone();
        health.set_kind(EventKind::HealthChanged);
        health.set_state(ProcessState::Online);
        health.set_health(HealthState::Unhealthy);
        health.detail = "unhealthy: connection refused".into();
        assert_eq!(
            text_line(&health, Colours::OFF),
            "2026-11-26T05:00:00.123Z api[0] health_changed health=unhealthy → online: \
             connection refused\n"
        );
        health.set_health(HealthState::Healthy);
        health.detail = "healthy".into();
        assert!(
            text_line(&health, Colours::OFF).ends_with(" health_changed health=healthy → online\n")
        );
        started.detail.clear();
        let mut port = started.clone();
        port.set_kind(EventKind::PortAssigned);
        port.port = Some(3000);
        assert!(text_line(&port, Colours::OFF).contains(" port_assigned port=3000 → starting\n"));
        let mut killed = exited();
        killed.exit_code = None;
        killed.signal = Some("SIGKILL".into());
        assert!(text_line(&killed, Colours::OFF).contains(" exited signal=SIGKILL → "));
        let mut deleted = started;
        deleted.set_kind(EventKind::Deleted);
        deleted.set_state(ProcessState::Unspecified);
        assert!(text_line(&deleted, Colours::OFF).ends_with(" api[0] deleted\n"));
    }

    #[test]
    fn text_lines_colour_kind_and_state_on_a_terminal() {
        let line = text_line(&exited(), Colours { enabled: true });
        assert!(line.contains("\x1b[33mexited\x1b[0m code=1"), "{line:?}");
        assert!(
            line.contains("→ \x1b[33mwaiting-restart\x1b[0m"),
            "{line:?}"
        );
    }

    #[test]
    fn json_lines_have_every_key() {
        let line = json_line(&exited()).unwrap();
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "seq": 42,
                "at_ms": 1_795_669_200_123_i64,
                "id": 0,
                "name": "api",
                "kind": "exited",
                "state": "waiting-restart",
                "pid": 1234,
                "exit_code": 1,
                "signal": null,
                "port": null,
                "health": null,
                "detail": "exited with code 1; restarting in 0 ms",
            })
        );
        let mut healthy = exited();
        healthy.set_kind(EventKind::HealthChanged);
        healthy.set_health(HealthState::Healthy);
        healthy.detail.clear();
        let value: serde_json::Value = serde_json::from_str(&json_line(&healthy).unwrap()).unwrap();
        assert_eq!(value["kind"], "health_changed");
        assert_eq!(value["health"], "healthy");
        assert!(value["detail"].is_null());
    }

    #[test]
    fn every_kind_has_a_word() {
        let words: Vec<&str> = (1..=10)
            .map(|n| kind_word(EventKind::try_from(n).unwrap()))
            .collect();
        assert_eq!(
            words,
            [
                "started",
                "online",
                "health_changed",
                "exited",
                "restarting",
                "errored",
                "stopped",
                "deleted",
                "port_assigned",
                "ready"
            ]
        );
    }
}
