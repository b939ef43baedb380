//! PM2's `cron_restart`: one timer task per app with a schedule
//! ([`CronTimer`], held by the app's table entry beside its file watcher:
//! made when the app is created, restored or given a new definition,
//! dropped, and so stopped, when it is deleted or redefined), and what a
//! firing does ([`Supervisor::cron_restart`]).
//!
//! The schedule runs in the daemon's local time zone (chrono's `Local`:
//! TZ, else /etc/localtime, as the log date formats). The task never
//! trusts one long monotonic sleep: it sleeps at most [`STEP`] at a time
//! and reads the wall clock after each wake, so a clock that was set, a
//! zone that changed or a machine that was suspended is noticed within a
//! step. A time is made when the wall clock reaches it while the daemon
//! runs, at most [`STEP`] late; one missed by more (the machine was
//! suspended, the clock jumped forward) is skipped, never made up, and
//! neither are times that passed while the daemon was down: no restart
//! storm after a long sleep. A clock set back never fires a time twice
//! (the next time is always after the last one fired).
//!
//! Talks to the core through a weak handle (the task ends with the
//! supervisor) and to the event bus.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{DateTime, Local};
use pmdaemon_proto::{CronSchedule, Target};

use crate::error::Result;

use super::events::EventKind;
use super::lifecycle::Action;
use super::spec::AppSpec;
use super::{Inner, Supervisor};

/// The longest the timer sleeps before it looks at the wall clock again,
/// and how late a time may be made.
pub(super) const STEP: Duration = Duration::from_secs(60);

/// An app's schedule at work. Dropping it stops the timer (a restart it
/// already began runs to its end).
pub(super) struct CronTimer {
    task: tokio::task::AbortHandle,
    /// When it fires next, in ms since the epoch; 0 while it knows none.
    next_at_ms: Arc<AtomicI64>,
}

impl Drop for CronTimer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CronTimer {
    /// When the schedule fires next (None before the first computation, or
    /// when it never fires again).
    pub(super) fn next_at_ms(&self) -> Option<i64> {
        Some(self.next_at_ms.load(Ordering::Acquire)).filter(|&ms| ms != 0)
    }
}

/// What the timer does at each wake, given the wall clock `now`, the
/// time it was armed for and the last time it fired.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wake<T> {
    /// `armed` has come, at most [`STEP`] ago: restart now.
    Fire,
    /// `armed` passed more than [`STEP`] ago (a suspend, a clock set
    /// forward): skip it.
    Missed,
    /// Not yet: the time to wait for now (recomputed, so that a clock set
    /// back or a new zone is followed).
    Wait(T),
}

fn wake<Tz: chrono::TimeZone>(
    schedule: &CronSchedule,
    now: &DateTime<Tz>,
    armed: &DateTime<Tz>,
    last_fired: Option<&DateTime<Tz>>,
) -> Wake<Option<DateTime<Tz>>> {
    if now >= armed {
        let late = now.clone().signed_duration_since(armed.clone());
        return match late.to_std() {
            Ok(late) if late > STEP => Wake::Missed,
            _ => Wake::Fire,
        };
    }
    Wake::Wait(next_from(schedule, now, last_fired))
}

/// The next time after `now`, and after the last time fired (a clock set
/// back must not fire the same time again).
fn next_from<Tz: chrono::TimeZone>(
    schedule: &CronSchedule,
    now: &DateTime<Tz>,
    last_fired: Option<&DateTime<Tz>>,
) -> Option<DateTime<Tz>> {
    let from = match last_fired {
        Some(last) if last > now => last,
        _ => now,
    };
    schedule.next_after(from)
}

impl Supervisor {
    /// Starts the timer of an app with `cron_restart` (None without one).
    pub(super) fn start_cron(&self, spec: &AppSpec) -> Option<CronTimer> {
        let schedule = spec.cron_restart.clone()?;
        let next_at_ms = Arc::new(AtomicI64::new(0));
        let task = tokio::spawn(run_timer(
            Arc::downgrade(&self.inner),
            spec.name.clone(),
            schedule,
            next_at_ms.clone(),
        ));
        Some(CronTimer {
            task: task.abort_handle(),
            next_at_ms,
        })
    }

    /// The schedule of app `name` fired: its instances that should be
    /// running restart, as `pmd restart NAME` restarts them (dependencies'
    /// conditions, ports checked again), each with a `cron_restart`
    /// event; a balanced app's one at a time, each back in its pool before
    /// the next goes (a scheduled restart fails no request). Instances that
    /// are stopped or errored stay so.
    pub(super) async fn cron_restart(&self, name: &str, schedule: &CronSchedule) -> Result<()> {
        let target = Target::Name(name.to_string());
        let views = self.views(&target)?;
        let ids: Vec<u32> = views
            .iter()
            .filter(|v| v.shared.desired_running)
            .map(|v| v.id)
            .collect();
        if ids.is_empty() {
            tracing::info!(app = %name, %schedule, "cron_restart: nothing running, nothing restarted");
            return Ok(());
        }
        tracing::info!(app = %name, %schedule, ids = ?ids, "cron_restart: restarting");
        let app: Arc<str> = Arc::from(name);
        for v in views.iter().filter(|v| ids.contains(&v.id)) {
            self.inner.events.emit(
                v.id,
                &app,
                EventKind::CronRestart,
                &v.shared,
                format!("cron_restart {schedule}"),
            );
        }
        let balanced = views.first().is_some_and(|v| v.plan.spec.balance.is_some());
        if balanced && ids.len() > 1 {
            let ready = super::DEFAULT_READY_TIMEOUT;
            let restart = Action::RestartIfWanted;
            self.serialized(self.roll_ids(&ids, restart, ready, |_, _, _| {}))
                .await
                .map(drop)
        } else {
            // The task decides again: one stopped since the look above
            // stays stopped.
            let deps = super::DEFAULT_DEPENDENCY_TIMEOUT;
            self.durably(self.in_levels(&ids, Action::RestartIfWanted, deps))
                .await
        }
    }
}

/// The timer of app `name`: waits for each time of `schedule` in bounded
/// steps, restarts the app then, and publishes the time it waits for in
/// `next_at_ms`. Ends with the supervisor (or when aborted).
async fn run_timer(
    inner: Weak<Inner>,
    name: String,
    schedule: CronSchedule,
    next_at_ms: Arc<AtomicI64>,
) {
    let publish = |at: Option<&DateTime<Local>>| {
        next_at_ms.store(at.map_or(0, DateTime::timestamp_millis), Ordering::Release);
    };
    let mut last_fired: Option<DateTime<Local>> = None;
    let mut armed = next_from(&schedule, &Local::now(), None);
    publish(armed.as_ref());
    loop {
        let Some(at) = armed else {
            tracing::warn!(app = %name, %schedule, "cron_restart never fires again");
            return;
        };
        let now = Local::now();
        match wake(&schedule, &now, &at, last_fired.as_ref()) {
            Wake::Wait(next) => {
                armed = next;
                publish(armed.as_ref());
                let Some(at) = &armed else { continue };
                let left = (*at)
                    .signed_duration_since(now)
                    .to_std()
                    .unwrap_or_default();
                tokio::time::sleep(left.min(STEP)).await;
            }
            Wake::Missed => {
                tracing::warn!(app = %name, %schedule, missed = %at.to_rfc3339(), "cron_restart: the time passed while the daemon could not act (suspended, or the clock jumped); skipped");
                last_fired = Some(at);
                armed = next_from(&schedule, &now, last_fired.as_ref());
                publish(armed.as_ref());
            }
            Wake::Fire => {
                last_fired = Some(at);
                armed = next_from(&schedule, &now, last_fired.as_ref());
                publish(armed.as_ref());
                let Some(inner) = inner.upgrade() else { return };
                let sup = Supervisor { inner };
                let (name, schedule) = (name.clone(), schedule.clone());
                // A task of its own: a timer stopped meanwhile (the app
                // redefined) does not cut a restart in half. Waited for,
                // so that a slow restart never overlaps the next one.
                let restart = tokio::spawn(async move {
                    if let Err(e) = sup.cron_restart(&name, &schedule).await {
                        tracing::warn!(app = %name, %schedule, error = %e, "cron_restart failed");
                    }
                });
                let _ = restart.await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, TimeZone};

    fn t(h: u32, m: u32, s: u32) -> DateTime<FixedOffset> {
        FixedOffset::east_opt(3600)
            .unwrap()
            .with_ymd_and_hms(2026, 12, 6, h, m, s)
            .unwrap()
    }

    #[test]
    fn fires_when_the_time_comes_and_skips_what_a_suspend_missed() {
        let daily: CronSchedule = "0 3 * * *".parse().unwrap();
        let armed = t(3, 0, 0);
        assert_eq!(wake(&daily, &t(3, 0, 0), &armed, None), Wake::Fire);
        assert_eq!(wake(&daily, &t(3, 0, 59), &armed, None), Wake::Fire);
        // Woken at 08:00 after a night suspended: not made up.
        assert_eq!(wake(&daily, &t(8, 0, 0), &armed, None), Wake::Missed);
        // Before it: wait for it.
        assert_eq!(
            wake(&daily, &t(2, 59, 0), &armed, None),
            Wake::Wait(Some(armed))
        );
    }

    /// The clock set back an hour after 03:00 fired: 03:00 is not fired
    /// again that day.
    #[test]
    fn a_clock_set_back_does_not_fire_twice() {
        let daily: CronSchedule = "0 3 * * *".parse().unwrap();
        let fired = t(3, 0, 0);
        let next = next_from(&daily, &t(2, 0, 0), Some(&fired)).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-12-07T03:00:00+01:00");
        // Armed for the 7th, then set back to the 5th: the 6th's time is
        // waited for, not skipped.
        let armed = FixedOffset::east_opt(3600)
            .unwrap()
            .with_ymd_and_hms(2026, 12, 7, 3, 0, 0)
            .unwrap();
        let set_back = FixedOffset::east_opt(3600)
            .unwrap()
            .with_ymd_and_hms(2026, 12, 5, 12, 0, 0)
            .unwrap();
        assert_eq!(
            wake(&daily, &set_back, &armed, None),
            Wake::Wait(Some(t(3, 0, 0)))
        );
    }
}
