//! Rolling restart: one instance at a time, each ready (online and
//! accepting connections on its port; without a port, ready as the instance
//! decides: healthy, else online for `min_uptime`; with `wait_ready`, once
//! the app sent "ready", or listen_timeout passed, as PM2 goes on) before
//! the next is replaced; stops at the first replacement that fails.

use std::time::Duration;

use pmdaemon_proto::Target;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::ports;

use super::Supervisor;
use super::instance::{Readiness, ReadyMessage, State};
use super::lifecycle::{Action, first_error};
use super::table::InstanceView;

/// Default time a replacement may take to become ready during a reload.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Time between two connection attempts to an online replacement's port.
const PORT_RETRY: Duration = Duration::from_millis(20);

impl Supervisor {
    /// Rolling restart: one instance at a time, each ready before the next
    /// goes. `progress` receives each replaced instance with the count done.
    pub(super) async fn roll(
        &self,
        target: &Target,
        ready_timeout: Duration,
        progress: impl Fn(&InstanceView, usize, usize),
    ) -> Result<Vec<InstanceView>> {
        let ids = self.ids_of(target)?;
        let restart = Action::Restart {
            keep_override: false,
        };
        self.roll_ids(&ids, restart, ready_timeout, progress)
            .await?;
        self.views(target)
    }

    /// [`Self::roll`] of the instances `ids`, each sent `action` (a
    /// cron_restart's: [`Action::RestartIfWanted`], and an instance that
    /// stayed idle is not waited for); returns them as they are after.
    pub(super) async fn roll_ids(
        &self,
        ids: &[u32],
        action: Action,
        ready_timeout: Duration,
        progress: impl Fn(&InstanceView, usize, usize),
    ) -> Result<Vec<InstanceView>> {
        self.check_running()?;
        // Instances that are down go first: replacing a serving one while
        // another is down would leave N-2 serving.
        let mut views: Vec<InstanceView> = self
            .views(&Target::All)?
            .into_iter()
            .filter(|v| ids.contains(&v.id))
            .collect();
        views.sort_by_key(|v| v.shared.state == State::Online);
        let ids: Vec<u32> = views.iter().map(|v| v.id).collect();
        let total = ids.len();
        for (done, id) in ids.iter().enumerate() {
            let one = Target::Id(*id);
            first_error(self.act(&one, action).await?)?;
            let stayed_idle = self
                .views(&one)?
                .first()
                .is_some_and(|v| !v.shared.desired_running);
            if matches!(action, Action::RestartIfWanted) && stayed_idle {
                continue;
            }
            let view = self.wait_replacement_ready(*id, ready_timeout).await?;
            progress(&view, done + 1, total);
        }
        Ok(self
            .views(&Target::All)?
            .into_iter()
            .filter(|v| ids.contains(&v.id))
            .collect())
    }

    /// Waits until instance `id` serves: online (its health check passed,
    /// if it has one) and its port accepting connections, or, without a
    /// port, ready (see `Shared::readiness`). Looks again at each change of
    /// an instance record (see `events::Changes`), not on a timer.
    ///
    /// With a port, online is enough before connecting: accepting
    /// connections says more than min_uptime would, and waiting for both
    /// would make each step of a rolling reload last min_uptime.
    pub(super) async fn wait_replacement_ready(
        &self,
        id: u32,
        timeout: Duration,
    ) -> Result<InstanceView> {
        let started = Instant::now();
        let deadline = started + timeout;
        // Taken before the first look, so that a change in between is not
        // missed.
        let mut changes = self.changes();
        loop {
            let view = self
                .views(&Target::Id(id))?
                .pop()
                .ok_or_else(|| Error::NotFound {
                    target: id.to_string(),
                })?;
            let s = &view.shared;
            match s.state {
                // wait_ready: the app's "ready" says it serves, whatever
                // its port; after listen_timeout the reload goes on, as
                // PM2's does.
                State::Online if s.spec.wait_ready => {
                    if s.ready_message == ReadyMessage::Missed {
                        tracing::warn!(app = %view.name, id, "{}; the reload goes on to the next instance", s.reason);
                        return Ok(view);
                    }
                    if s.readiness() == Readiness::Ready {
                        return Ok(view);
                    }
                }
                // Balanced: serving means in its pool (its check, the
                // app's or the implied TCP one, passed).
                State::Online if view.balance.is_some() => {
                    if view.balance.as_ref().is_some_and(|(_, i)| i.in_pool) {
                        return Ok(view);
                    }
                }
                State::Online => {
                    let ready = match s.port {
                        // Loopback first; after a second, any address
                        // (the slower check of /proc/net/tcp).
                        Some(port) => {
                            ports::accepts_connections(port).await
                                || (started.elapsed() > Duration::from_secs(1)
                                    && ports::listening(port).await)
                        }
                        None => s.readiness() == Readiness::Ready,
                    };
                    if ready {
                        return Ok(view);
                    }
                }
                State::Errored | State::Stopped => {
                    return Err(Error::FailedPrecondition(format!(
                        "{} (id {id}) did not come back: {}",
                        view.name, s.reason
                    )));
                }
                // The replacement died: the rollout stops here rather than
                // wait out the timeout on a crash loop, leaving the other
                // instances on the old run.
                State::WaitingRestart => {
                    let how = s
                        .last_exit
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_else(|| "exited".into());
                    return Err(Error::FailedPrecondition(format!(
                        "{} (id {id}) {how} right after the reload replaced it; the reload \
                         stopped there",
                        view.name
                    )));
                }
                State::Starting | State::Stopping => {}
            }
            if Instant::now() >= deadline {
                // With a health check an instance is `starting` until it
                // passes: that is what it did not do.
                let what = match s.port {
                    _ if s.ready_message == ReadyMessage::Awaited => format!(
                        "send its 'ready' message (listen_timeout {} ms)",
                        s.spec.listen_timeout_ms
                    ),
                    _ if s.state != State::Online && s.spec.checked() => {
                        match s.last_health_error.as_str() {
                            "" => "pass its health check".to_owned(),
                            last => format!("pass its health check (last: {last})"),
                        }
                    }
                    _ if s.state != State::Online => "come online".to_owned(),
                    Some(port) => format!("accept connections on port {port}"),
                    None => format!("stay online for {} ms", s.spec.min_uptime_ms),
                };
                return Err(Error::FailedPrecondition(format!(
                    "{} (id {id}) did not {what} within {} s; the reload stopped there (state {})",
                    view.name,
                    timeout.as_secs(),
                    s.state.word()
                )));
            }
            // No event says that the app called listen(): an online
            // instance's port is tried again after PORT_RETRY, bounded by
            // the deadline; everything else waits for a change.
            let wake = match (s.state, s.port) {
                (State::Online, Some(_)) => deadline.min(Instant::now() + PORT_RETRY),
                _ => deadline,
            };
            changes.next(wake).await;
        }
    }
}
