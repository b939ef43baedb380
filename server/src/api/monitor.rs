//! StreamMetrics and WatchEvents: server streams fed by one producer task
//! per request into a bounded channel. Producers stop when a send fails
//! (client gone) or when the daemon shuts down.

use std::pin::Pin;

use std::time::Duration;

use pmdaemon_proto::{Target, v1};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::convert::{health_state, parse_target};
use crate::supervisor::Supervisor;
use crate::supervisor::events::{Event, EventKind};

pub type MetricsStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<v1::StreamMetricsResponse, Status>> + Send>>;
pub type EventStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<v1::WatchEventsResponse, Status>> + Send>>;

/// Below this, a metrics stream would only repeat samples.
const MIN_INTERVAL_MS: u64 = pmdaemon_proto::MIN_SAMPLE_INTERVAL_MS;

fn optional_target(target: &str) -> Result<Target, Status> {
    if target.is_empty() {
        Ok(Target::All)
    } else {
        parse_target(target)
    }
}

pub fn metrics(
    sup: &Supervisor,
    req: v1::StreamMetricsRequest,
    mut shutdown: watch::Receiver<bool>,
) -> Result<MetricsStream, Status> {
    let target = optional_target(&req.target)?;
    let interval_ms = req
        .interval_ms
        .unwrap_or(sup.monitor_interval().as_millis() as u64);
    if !(MIN_INTERVAL_MS..=3_600_000).contains(&interval_ms) {
        return Err(Status::invalid_argument(format!(
            "interval_ms: {interval_ms} is outside {MIN_INTERVAL_MS} ..= 3600000"
        )));
    }
    sup.views(&target)?;
    let (tx, rx) = mpsc::channel(4);
    let sup = sup.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
                _ = tx.closed() => return,
            }
            // A named app that was deleted ends the stream with NOT_FOUND.
            let views = match sup.views(&target) {
                Ok(v) => v,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            let processes = views
                .iter()
                .map(|v| v1::ProcessMetrics {
                    id: v.id,
                    name: v.name.clone(),
                    state: v.shared.state.to_proto() as i32,
                    pid: v.shared.pid,
                    cpu_percent: v.sample.and_then(|s| s.cpu_percent),
                    memory_bytes: v.sample.map(|s| s.memory_bytes),
                    restarts: v.shared.restarts,
                    started_at_ms: v.shared.started_at_ms,
                    health: health_state(v.shared.health) as i32,
                    port: v.plan.effective_port().map(u32::from),
                    balance: crate::api::convert::instance_balance(v),
                })
                .collect();
            let msg = v1::StreamMetricsResponse {
                at_ms: crate::supervisor::instance::now_ms(),
                processes,
            };
            if tx.send(Ok(msg)).await.is_err() {
                return;
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

fn kind_to_proto(k: EventKind) -> v1::EventKind {
    match k {
        EventKind::Started => v1::EventKind::Started,
        EventKind::Online => v1::EventKind::Online,
        EventKind::HealthChanged => v1::EventKind::HealthChanged,
        EventKind::Exited => v1::EventKind::Exited,
        EventKind::Restarting => v1::EventKind::Restarting,
        EventKind::Errored => v1::EventKind::Errored,
        EventKind::Stopped => v1::EventKind::Stopped,
        EventKind::Deleted => v1::EventKind::Deleted,
        EventKind::PortAssigned => v1::EventKind::PortAssigned,
        EventKind::Ready => v1::EventKind::Ready,
        EventKind::LogsPaused => v1::EventKind::LogsPaused,
        EventKind::LogsResumed => v1::EventKind::LogsResumed,
        EventKind::PoolJoined => v1::EventKind::PoolJoined,
        EventKind::PoolLeft => v1::EventKind::PoolLeft,
        EventKind::ConnectionsRefused => v1::EventKind::ConnectionsRefused,
        EventKind::CronRestart => v1::EventKind::CronRestart,
    }
}

fn event_to_proto(e: &Event) -> v1::Event {
    v1::Event {
        seq: e.seq,
        at_ms: e.at_ms,
        id: e.id,
        name: e.name.to_string(),
        kind: kind_to_proto(e.kind) as i32,
        state: e.state.to_proto() as i32,
        pid: e.pid,
        exit_code: e.exit_code,
        signal: e.signal.clone(),
        port: e.port.map(u32::from),
        health: health_state(e.health) as i32,
        detail: e.detail.clone(),
    }
}

pub fn events(
    sup: &Supervisor,
    req: v1::WatchEventsRequest,
    mut shutdown: watch::Receiver<bool>,
) -> Result<EventStream, Status> {
    let target = optional_target(&req.target)?;
    // Which events pass: by name for a name (instances added later
    // included), by id for an id, all for `all`.
    let ids: Option<Vec<u32>> = match &target {
        Target::Id(_) => Some(sup.views(&target)?.iter().map(|v| v.id).collect()),
        Target::Name(_) => {
            sup.views(&target)?;
            None
        }
        Target::All => None,
    };
    let wants = move |e: &Event| match &target {
        Target::All => true,
        Target::Name(n) => *e.name == **n,
        Target::Id(_) => ids.as_ref().is_some_and(|ids| ids.contains(&e.id)),
    };
    let mut events = sup.subscribe_events();
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                // Pending events first: the last ones (apps stopping at
                // shutdown) are delivered before the stream ends.
                biased;
                r = events.recv() => r,
                _ = shutdown.wait_for(|s| *s) => return,
                _ = tx.closed() => return,
            };
            let msg = match next {
                Ok(e) if wants(&e) => v1::WatchEventsResponse {
                    event: Some(event_to_proto(&e)),
                    missed_events: 0,
                },
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => v1::WatchEventsResponse {
                    event: None,
                    missed_events: n,
                },
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if tx.send(Ok(msg)).await.is_err() {
                return;
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}
