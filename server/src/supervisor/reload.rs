//! Rolling restart: one instance at a time, each ready (accepting
//! connections on its port, else online for `min_uptime`) before the next
//! is replaced; stops at the first replacement that fails.

use super::Supervisor;
use super::instance::State;
use super::lifecycle::Action;
use super::lifecycle::first_error;
use super::table::InstanceView;
use crate::error::{Error, Result};
use pmdaemon_proto::Target;

use crate::ports::{self};
use std::time::Duration;
use tokio::time::Instant;

/// Default time a replacement may take to become ready during a reload.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

impl Supervisor {
    /// Rolling restart: one instance at a time, each ready before the next
    /// goes. `progress` receives each replaced instance with the count done.
    pub(super) async fn roll(
        &self,
        target: &Target,
        ready_timeout: Duration,
        progress: impl Fn(&InstanceView, usize, usize),
    ) -> Result<Vec<InstanceView>> {
        self.check_running()?;
        // Instances that are down go first: replacing a serving one while
        // another is down would leave N-2 serving.
        let mut views = self.views(target)?;
        views.sort_by_key(|v| v.shared.state == State::Online);
        let ids: Vec<u32> = views.iter().map(|v| v.id).collect();
        let total = ids.len();
        for (done, id) in ids.iter().enumerate() {
            let one = Target::Id(*id);
            first_error(
                self.act(
                    &one,
                    Action::Restart {
                        keep_override: false,
                    },
                )
                .await?,
            )?;
            let view = self.wait_ready(*id, ready_timeout).await?;
            progress(&view, done + 1, total);
        }
        self.views(target)
    }

    /// Waits until instance `id` serves: its port accepts connections, or,
    /// without a port, it has been online for min_uptime.
    pub(super) async fn wait_ready(&self, id: u32, timeout: Duration) -> Result<InstanceView> {
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            let view = self
                .views(&Target::Id(id))?
                .pop()
                .ok_or_else(|| Error::NotFound {
                    target: id.to_string(),
                })?;
            let s = &view.shared;
            match s.state {
                State::Online => {
                    let ready = match s.effective_port() {
                        // Loopback first; after a second, any address
                        // (the slower check of /proc/net/tcp).
                        Some(port) => {
                            ports::accepts_connections(port).await
                                || (started.elapsed() > Duration::from_secs(1)
                                    && ports::listening(port).await)
                        }
                        None => s.started_at_ms.is_some_and(|t| {
                            super::instance::now_ms() - t >= s.spec.min_uptime_ms as i64
                        }),
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
                let what = match s.effective_port() {
                    _ if s.state != State::Online && s.spec.health_check.is_some() => {
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
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
