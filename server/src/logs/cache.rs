//! The open-file cache of the log sinks: a log file is open only while it
//! is written. A file not written for [`IDLE_CLOSE`] is closed by the
//! janitor task, and at most a budget of files (from the open-file limit,
//! `fds::log_file_budget`) is open daemon-wide: past it, the least recently
//! written ones are closed. A closed file is reopened through its
//! directory handle on the next write, so an app's descriptors in the
//! daemon are its pipes and a pidfd, not its files. When an open still
//! runs out of descriptors, the older half of the open files is closed
//! and the open tried once more.
//!
//! Talks to: [`LogFile`] (one per file, however many sinks write it),
//! which reports opens, closes and writes; the janitor closes files with
//! `try_lock` only, so it never waits for a writer (a file being written
//! is not idle anyway).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::sync::LockExt;

use super::HubInner;
use super::logfile::LogFile;

/// A log file not written for this long is closed. Reopening one is an
/// `openat` relative to a held directory and an `fstat`: cheap next to
/// keeping hundreds of idle descriptors. Short, so that an app printing a
/// line every few seconds (the usual worker) holds no file between lines.
pub const IDLE_CLOSE: Duration = Duration::from_secs(2);
/// How often the janitor looks (a file is closed between `IDLE_CLOSE` and
/// this much later).
const JANITOR_PERIOD: Duration = Duration::from_secs(1);

/// Per file, readable without its lock.
#[derive(Debug, Default)]
pub(super) struct Entry {
    /// Milliseconds since the cache's epoch of the last write.
    last_write_ms: AtomicU64,
    open: AtomicBool,
}

pub(super) struct FileCache {
    /// Most files open at once.
    max_open: usize,
    open: AtomicUsize,
    /// Every file opened (dead ones are pruned on each pass).
    sinks: Mutex<Vec<Weak<LogFile>>>,
    epoch: Instant,
    janitor: AtomicBool,
}

impl FileCache {
    pub(super) fn new(max_open: usize) -> Self {
        FileCache {
            max_open: max_open.max(1),
            open: AtomicUsize::new(0),
            sinks: Mutex::new(Vec::new()),
            epoch: Instant::now(),
            janitor: AtomicBool::new(false),
        }
    }

    pub(super) fn register(&self, sink: &Arc<LogFile>) {
        let mut sinks = self.sinks.locked();
        // Amortized pruning: the list stays within twice the live sinks.
        if sinks.len() >= 64 && sinks.len().is_power_of_two() {
            sinks.retain(|s| s.strong_count() > 0);
        }
        sinks.push(Arc::downgrade(sink));
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn touch_file(&self, sink: &LogFile) {
        sink.cached
            .last_write_ms
            .store(self.now_ms(), Ordering::Relaxed);
    }

    /// `sink` (whose lock the caller holds) was opened.
    pub(super) fn opened(&self, sink: &LogFile) {
        self.touch_file(sink);
        sink.cached.open.store(true, Ordering::Relaxed);
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        if open > self.max_open {
            // Down to 90%, so that eviction is not paid on every open.
            self.evict(self.max_open - self.max_open / 10, |s| {
                std::ptr::eq(s, sink)
            });
        }
    }

    /// The daemon is out of descriptors: closes the least recently written
    /// half of the open files (but `sink`'s, whose lock the caller holds).
    pub(super) fn shed(&self, sink: &LogFile) {
        let half = self.open.load(Ordering::Relaxed) / 2;
        self.evict(half, |s| std::ptr::eq(s, sink));
    }

    /// `sink` (whose lock the caller holds) was closed.
    pub(super) fn closed(&self, sink: &LogFile) {
        sink.cached.open.store(false, Ordering::Relaxed);
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(super) fn open_count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Closes the least recently written files until at most `keep` are
    /// open (as far as sinks not being written let it).
    fn evict(&self, keep: usize, skip: impl Fn(&LogFile) -> bool) {
        let mut open: Vec<(u64, Arc<LogFile>)> = self
            .sinks
            .locked()
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|s| s.cached.open.load(Ordering::Relaxed) && !skip(s))
            .map(|s| (s.cached.last_write_ms.load(Ordering::Relaxed), s))
            .collect();
        open.sort_unstable_by_key(|(at, _)| *at);
        for (_, sink) in open {
            if self.open.load(Ordering::Relaxed) <= keep {
                break;
            }
            close_if_free(&sink);
        }
    }

    /// Closes every file not written for `idle`.
    pub(super) fn close_idle(&self, idle: Duration) {
        let cutoff = self
            .now_ms()
            .saturating_sub(u64::try_from(idle.as_millis()).unwrap_or(u64::MAX));
        let idle_sinks: Vec<Arc<LogFile>> = {
            let mut sinks = self.sinks.locked();
            sinks.retain(|s| s.strong_count() > 0);
            sinks
                .iter()
                .filter_map(Weak::upgrade)
                .filter(|s| {
                    s.cached.open.load(Ordering::Relaxed)
                        && s.cached.last_write_ms.load(Ordering::Relaxed) <= cutoff
                })
                .collect()
        };
        for sink in idle_sinks {
            close_if_free(&sink);
        }
    }

    /// Starts the task that closes idle files, once per hub; it ends with
    /// the hub. Needs a tokio runtime.
    pub(super) fn start_janitor(hub: &Arc<HubInner>) {
        if hub.cache.janitor.swap(true, Ordering::Relaxed) {
            return;
        }
        let hub: Weak<HubInner> = Arc::downgrade(hub);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(JANITOR_PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(hub) = hub.upgrade() else { return };
                if hub.cache.open.load(Ordering::Relaxed) > 0 {
                    hub.cache.close_idle(IDLE_CLOSE);
                }
            }
        });
    }
}

/// Closes the file unless a write holds its lock.
fn close_if_free(file: &LogFile) {
    if let Ok(mut st) = file.state.try_lock() {
        st.close(file);
    }
}
