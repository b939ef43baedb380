//! Persisted state: `state.json` (desired apps + runtime records, rewritten
//! on every change) and `dump.json` (`pmd save` / `pmd resurrect`).
//!
//! Writes are atomic: temp file, fsync, rename, fsync of the directory, so a
//! crash leaves either the old or the new file. A file that cannot be read
//! is moved aside (never silently replaced) and the caller is told.
//!
//! [`Persister`] coalesces bursts of changes: callers bump a generation
//! number and the writer task (owned by the supervisor) writes the latest
//! snapshot, so a crash loop or 50 starts in a row cost one write per batch,
//! not per change; `flushed` waits until a generation is on disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::supervisor::spec::{AppSpec, Launch};

pub const STATE_FILE: &str = "state.json";
pub const DUMP_FILE: &str = "dump.json";
/// Bumped on incompatible format changes; older files are moved aside.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    pub version: u32,
    /// Next process id to hand out (ids are never reused within a table).
    pub next_id: u32,
    pub apps: Vec<AppRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppRecord {
    pub spec: AppSpec,
    pub launch: Launch,
    pub created_at_ms: i64,
    pub instances: Vec<InstanceRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InstanceRecord {
    pub id: u32,
    pub index: u32,
    /// Start this instance when the daemon starts.
    pub desired_running: bool,
    /// State word at the time of writing.
    pub state: String,
    /// pid, /proc start time and boot id of the running process: a later
    /// daemon terminates it only if all three still match.
    pub pid: Option<u32>,
    pub start_ticks: Option<u64>,
    pub boot_id: Option<String>,
    pub restarts: u32,
    pub unstable_restarts: u32,
    pub last_exit_code: Option<i32>,
    pub last_exit_signal: Option<String>,
    pub last_exit_at_ms: Option<i64>,
    pub reason: String,
    /// The port assigned to this instance; kept across daemon restarts.
    #[serde(default)]
    pub port: Option<u16>,
}

/// What reading a state file found.
#[derive(Debug)]
pub enum Loaded {
    Missing,
    Ok(StateFile),
    /// Unreadable or invalid: moved to `moved_to`.
    Corrupt {
        moved_to: PathBuf,
        error: String,
    },
}

/// Reads `path`; a file that does not parse is renamed to
/// `NAME.corrupt-<unix seconds>` next to it (`-2`, `-3`... added when that
/// name is taken: an earlier corrupt copy is never replaced).
pub fn load(path: &Path) -> Loaded {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Missing,
        Err(e) => return move_aside(path, format!("cannot read it: {e}")),
    };
    match serde_json::from_slice::<StateFile>(&bytes) {
        Ok(state) if state.version == FORMAT_VERSION => Loaded::Ok(state),
        Ok(state) => move_aside(
            path,
            format!("format version {} is not {FORMAT_VERSION}", state.version),
        ),
        Err(e) => move_aside(path, format!("invalid JSON: {e}")),
    }
}

fn move_aside(path: &Path, error: String) -> Loaded {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = path.file_name().unwrap_or_default().to_os_string();
    let moved_to = (1u32..)
        .map(|n| {
            let mut name = base.clone();
            name.push(format!(".corrupt-{secs}"));
            if n > 1 {
                name.push(format!("-{n}"));
            }
            path.with_file_name(name)
        })
        .find(|candidate| !candidate.exists())
        .expect("some suffix is free");
    match std::fs::rename(path, &moved_to) {
        Ok(()) => Loaded::Corrupt { moved_to, error },
        Err(e) => Loaded::Corrupt {
            moved_to: path.to_path_buf(),
            error: format!("{error}; moving it aside failed too ({e}), so it is left in place"),
        },
    }
}

/// Reads a dump written by `pmd save` without moving it on error (the user
/// owns that file and asked for it).
pub fn load_dump(path: &Path) -> std::io::Result<StateFile> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// Atomically replaces `path` with `state` (temp + fsync + rename + fsync dir).
pub fn write_atomic(path: &Path, state: &StateFile) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let json = serde_json::to_vec(state).map_err(std::io::Error::other)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&json)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Change counter between the supervisor (producers) and its writer task.
pub struct Persister {
    requested: AtomicU64,
    wake: Notify,
    done_tx: watch::Sender<u64>,
    /// Someone waits for the next write: skip the batching window.
    urgent: AtomicBool,
    urgent_wake: Notify,
}

impl Default for Persister {
    fn default() -> Self {
        Persister {
            requested: AtomicU64::new(0),
            wake: Notify::new(),
            done_tx: watch::channel(0).0,
            urgent: AtomicBool::new(false),
            urgent_wake: Notify::new(),
        }
    }
}

impl Persister {
    /// Marks the state dirty; returns the generation to wait for.
    pub fn request(&self) -> u64 {
        let generation = self.requested.fetch_add(1, Ordering::AcqRel) + 1;
        self.wake.notify_one();
        generation
    }

    /// The latest generation requested.
    pub fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// Writes the current state now (no batching window) and waits until
    /// it is on disk: for changes a caller is about to be told about, so
    /// that a daemon killed right after answering does not forget them.
    pub async fn flush(&self) {
        let generation = self.request();
        self.urgent.store(true, Ordering::Release);
        self.urgent_wake.notify_one();
        self.flushed(generation).await;
    }

    /// The writer side: waits out the batching `window`, or less when a
    /// caller waits in [`Persister::flush`].
    pub async fn batch_window(&self, window: std::time::Duration) {
        if !self.urgent.swap(false, Ordering::AcqRel) {
            tokio::select! {
                () = tokio::time::sleep(window) => {}
                () = self.urgent_wake.notified() => {}
            }
            // Consumed by this write. A flush that sets it again from here
            // on also leaves a Notify permit, so its write does not wait
            // out a window either.
            self.urgent.store(false, Ordering::Release);
        }
    }

    /// Waits until generation `generation` (or a later one) is on disk.
    pub async fn flushed(&self, generation: u64) {
        let mut rx = self.done_tx.subscribe();
        let _ = rx.wait_for(|done| *done >= generation).await;
    }

    /// The writer side: waits for a request, returns the generation that a
    /// snapshot taken now covers.
    pub async fn next_batch(&self) -> u64 {
        loop {
            let requested = self.requested.load(Ordering::Acquire);
            if requested > *self.done_tx.borrow() {
                return requested;
            }
            self.wake.notified().await;
        }
    }

    /// The writer side: `generation` is on disk (or failed and was logged;
    /// waiters are released either way, the next change retries).
    pub fn mark_done(&self, generation: u64) {
        self.done_tx.send_if_modified(|done| {
            let advanced = generation > *done;
            if advanced {
                *done = generation;
            }
            advanced
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "pmd-store-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trip_and_corrupt_file_is_moved_aside() {
        let dir = temp();
        let path = dir.join(STATE_FILE);
        assert!(matches!(load(&path), Loaded::Missing));
        let state = StateFile {
            version: FORMAT_VERSION,
            next_id: 3,
            apps: vec![],
        };
        write_atomic(&path, &state).unwrap();
        match load(&path) {
            Loaded::Ok(s) => assert_eq!(s, state),
            other => panic!("{other:?}"),
        }
        std::fs::write(&path, b"{ not json").unwrap();
        match load(&path) {
            Loaded::Corrupt { moved_to, error } => {
                assert!(error.contains("invalid JSON"), "{error}");
                assert_eq!(std::fs::read(&moved_to).unwrap(), b"{ not json");
                assert!(!path.exists());
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn persister_coalesces_and_releases_waiters() {
        let p = std::sync::Arc::new(Persister::default());
        let g1 = p.request();
        let g2 = p.request();
        assert_eq!(p.next_batch().await, g2);
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move { p.flushed(g1).await })
        };
        p.mark_done(g2);
        waiter.await.unwrap();
    }
}
