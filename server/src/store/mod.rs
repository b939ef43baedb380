//! Persisted state: `state.json` (desired apps + runtime records, rewritten
//! on every change) and `dump.json` (`pmd save` / `pmd resurrect`).
//!
//! Writes are atomic: temp file, fsync, rename, fsync of the directory, so a
//! crash leaves either the old or the new file. A failed write removes its
//! temp file (on a full disk it holds the space the next try needs). Before
//! each replace of `state.json`, the file being replaced becomes
//! `state.json.bak` (a hard link: no space, atomic), the previous good
//! state that [`load_with_backup`] falls back to when `state.json` cannot
//! be read. A file that cannot be read is moved aside (never silently
//! replaced) and the caller is told.
//!
//! [`Persister`] coalesces bursts of changes: callers bump a generation
//! number and the writer task (owned by the supervisor) writes the latest
//! snapshot, so a crash loop or 50 starts in a row cost one write per batch,
//! not per change; `flushed` waits until a generation is on disk and says
//! whether the write that covered it succeeded. It also keeps the last
//! state that did reach the disk, which the supervisor goes back to when a
//! write fails.
//!
//! `reserve.rs`: the preallocated `state.reserve` that keeps the state
//! writable when something else (logs) fills the disk.

mod reserve;

pub use reserve::{RESERVE_FILE, Reserve, is_out_of_space};

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::supervisor::spec::{AppSpec, Launch};
use crate::sync::LockExt;

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

/// A state file that could not be used: where it was moved and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Unusable {
    pub path: PathBuf,
    pub moved_to: PathBuf,
    pub error: String,
}

/// What [`load_with_backup`] found.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// The state to start from; None: start empty.
    pub state: Option<StateFile>,
    /// `state` came from the backup, which is also put back as the state
    /// file (so that a daemon killed before its first write finds it too).
    pub from_backup: Option<PathBuf>,
    /// The state file, and the backup when it was tried, that could not be
    /// used (each moved aside).
    pub unusable: Vec<Unusable>,
}

/// `NAME.bak` next to `path`: the state the last replace of `path`
/// replaced.
pub fn backup_path(path: &Path) -> PathBuf {
    sibling(path, ".bak")
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Reads the state file at `path`; when it exists but cannot be used (moved
/// aside as [`load`] does), reads its backup ([`backup_path`]) instead. A
/// missing state file is a fresh home (or one the user emptied on purpose):
/// the backup is not used then.
pub fn load_with_backup(path: &Path) -> LoadReport {
    let (moved_to, error) = match load(path) {
        Loaded::Missing => return LoadReport::default(),
        Loaded::Ok(state) => {
            return LoadReport {
                state: Some(state),
                ..LoadReport::default()
            };
        }
        Loaded::Corrupt { moved_to, error } => (moved_to, error),
    };
    let mut report = LoadReport {
        unusable: vec![Unusable {
            path: path.to_path_buf(),
            moved_to,
            error,
        }],
        ..LoadReport::default()
    };
    let backup = backup_path(path);
    match load(&backup) {
        Loaded::Missing => {}
        Loaded::Ok(state) => {
            // Best effort: a link costs no space; when it fails, the
            // daemon's first write puts a state file back anyway.
            let _ = std::fs::hard_link(&backup, path);
            report.state = Some(state);
            report.from_backup = Some(backup);
        }
        Loaded::Corrupt { moved_to, error } => report.unusable.push(Unusable {
            path: backup,
            moved_to,
            error,
        }),
    }
    report
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

/// Atomically replaces `path` with `state` (temp + fsync + rename + fsync
/// dir); returns the bytes written.
pub fn write_atomic(path: &Path, state: &StateFile) -> std::io::Result<u64> {
    write_file(path, state, false)
}

/// [`write_atomic`], keeping the file it replaces as [`backup_path`].
pub fn write_state(path: &Path, state: &StateFile) -> std::io::Result<u64> {
    write_file(path, state, true)
}

/// How a write of the state file went, with the reserve's part in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveUse {
    /// Not needed, and in place.
    Untouched,
    /// The disk was full: the reserve was deleted to make this write.
    Spent,
    /// It was missing (or too small) and was made again.
    Remade,
}

/// [`write_state`]; on a full disk (ENOSPC, EDQUOT) deletes the reserve and
/// tries once more. After a write that succeeded, remakes the reserve when
/// it is missing or smaller than the state needs and the space is there
/// ([`Reserve::ensure`]).
pub fn write_state_with_reserve(
    path: &Path,
    state: &StateFile,
    reserve: &Reserve,
) -> std::io::Result<(u64, ReserveUse)> {
    let (written, used) = match write_state(path, state) {
        Ok(written) => (written, ReserveUse::Untouched),
        Err(e) if reserve::is_out_of_space(&e) && reserve.release()? => {
            (write_state(path, state)?, ReserveUse::Spent)
        }
        Err(e) => return Err(e),
    };
    // What does not fit now is tried again after the next write.
    let remade = reserve
        .ensure(reserve::reserve_bytes(written))
        .unwrap_or(false);
    let used = match used {
        ReserveUse::Untouched if remade => ReserveUse::Remade,
        other => other,
    };
    Ok((written, used))
}

fn write_file(path: &Path, state: &StateFile, keep_backup: bool) -> std::io::Result<u64> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut json = serde_json::to_vec(state).map_err(std::io::Error::other)?;
    json.push(b'\n');
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = sibling(path, ".tmp");
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        // A partial temp file on a full disk holds the space the next try
        // (or the reserve) needs.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if keep_backup {
        rotate_backup(path);
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(dir)?.sync_all()?;
    Ok(json.len() as u64)
}

/// Makes the current `path` its backup: a hard link renamed over the old
/// backup (atomic, no space), else a copy. Best effort: a backup that
/// cannot be made must not stop the state from being written.
fn rotate_backup(path: &Path) {
    let backup = backup_path(path);
    let tmp = sibling(&backup, ".tmp");
    let _ = std::fs::remove_file(&tmp);
    match std::fs::hard_link(path, &tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        // A file system without hard links.
        Err(_) => {
            if let Err(e) = std::fs::copy(path, &tmp) {
                let _ = std::fs::remove_file(&tmp);
                tracing::warn!(file = %backup.display(), error = %e, "cannot keep a backup of the state");
                return;
            }
        }
    }
    if let Err(e) = std::fs::rename(&tmp, &backup) {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(file = %backup.display(), error = %e, "cannot keep a backup of the state");
    }
}

/// A write of the state file that failed: the file and the error.
#[derive(Debug, Clone)]
pub struct WriteFailure {
    pub path: PathBuf,
    pub error: Arc<std::io::Error>,
}

/// One write by the writer task: the generations it covered (`after`
/// exclusive, `upto` inclusive) and how it went.
#[derive(Debug, Clone)]
struct Attempt {
    after: u64,
    upto: u64,
    outcome: Result<(), WriteFailure>,
}

/// How many recent writes [`Persister`] remembers for its waiters: a
/// waiter looks its write up right after the write, so a few suffice.
const ATTEMPTS_KEPT: usize = 256;

/// Change counter between the supervisor (producers) and its writer task.
pub struct Persister {
    requested: AtomicU64,
    wake: Notify,
    done_tx: watch::Sender<u64>,
    /// Someone waits for the next write: skip the batching window.
    urgent: AtomicBool,
    urgent_wake: Notify,
    /// The latest writes and how they went, oldest first.
    attempts: Mutex<VecDeque<Attempt>>,
    /// The last state that reached the disk.
    on_disk: Mutex<Option<Arc<StateFile>>>,
}

impl Default for Persister {
    fn default() -> Self {
        Persister {
            requested: AtomicU64::new(0),
            wake: Notify::new(),
            done_tx: watch::channel(0).0,
            urgent: AtomicBool::new(false),
            urgent_wake: Notify::new(),
            attempts: Mutex::new(VecDeque::new()),
            on_disk: Mutex::new(None),
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
    /// An error: the write that covered this state failed, so the state as
    /// the caller left it is not on disk.
    pub async fn flush(&self) -> Result<(), WriteFailure> {
        let generation = self.request();
        self.urgent.store(true, Ordering::Release);
        self.urgent_wake.notify_one();
        self.flushed(generation).await
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

    /// Waits until generation `generation` (or a later one) is written, and
    /// returns how the first write that covered it went. Not a later one:
    /// when that write failed, the supervisor undoes what it did not
    /// record, so a later success does not make it recorded.
    pub async fn flushed(&self, generation: u64) -> Result<(), WriteFailure> {
        let mut rx = self.done_tx.subscribe();
        let _ = rx.wait_for(|done| *done >= generation).await;
        self.attempts
            .locked()
            .iter()
            .find(|a| a.after < generation && generation <= a.upto)
            .map_or(Ok(()), |a| a.outcome.clone())
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

    /// The writer side: the write of the snapshot covering `generation`
    /// went as `outcome`. Its waiters are released either way (a failed
    /// one learns it from [`Persister::flushed`]); `state` is what a write
    /// that succeeded put on disk.
    pub fn mark_done(&self, generation: u64, outcome: Result<Arc<StateFile>, WriteFailure>) {
        let after = *self.done_tx.borrow();
        if generation <= after {
            return;
        }
        let outcome = outcome.map(|state| {
            *self.on_disk.locked() = Some(state);
        });
        {
            let mut attempts = self.attempts.locked();
            if attempts.len() == ATTEMPTS_KEPT {
                attempts.pop_front();
            }
            attempts.push_back(Attempt {
                after,
                upto: generation,
                outcome,
            });
        }
        self.done_tx.send_if_modified(|done| {
            let advanced = generation > *done;
            if advanced {
                *done = generation;
            }
            advanced
        });
    }

    /// The last state that reached the disk (or was read from it at daemon
    /// start); None before either.
    pub fn on_disk(&self) -> Option<Arc<StateFile>> {
        self.on_disk.locked().clone()
    }

    /// What the daemon found on disk at start.
    pub fn set_on_disk(&self, state: StateFile) {
        *self.on_disk.locked() = Some(Arc::new(state));
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

    fn state(next_id: u32) -> StateFile {
        StateFile {
            version: FORMAT_VERSION,
            next_id,
            apps: vec![],
        }
    }

    fn failure() -> WriteFailure {
        WriteFailure {
            path: PathBuf::from("/x/state.json"),
            error: Arc::new(std::io::Error::from_raw_os_error(28)),
        }
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
        p.mark_done(g2, Ok(Arc::new(state(7))));
        waiter.await.unwrap().unwrap();
        assert_eq!(p.on_disk().unwrap().next_id, 7);
    }

    #[tokio::test]
    async fn a_failed_write_fails_the_generations_it_covered_only() {
        let p = Persister::default();
        p.set_on_disk(state(1));
        let g1 = p.request();
        p.mark_done(g1, Err(failure()));
        let g2 = p.request();
        let g3 = p.request();
        p.mark_done(g3, Ok(Arc::new(state(3))));
        // g1's write failed: a later success does not record what the
        // supervisor undid for it.
        let err = p.flushed(g1).await.unwrap_err();
        assert_eq!(err.error.raw_os_error(), Some(28));
        assert!(p.flushed(g2).await.is_ok());
        assert!(p.flushed(g3).await.is_ok());
        assert_eq!(p.on_disk().unwrap().next_id, 3);
        // A failure keeps the last state that did reach the disk.
        let g4 = p.request();
        p.mark_done(g4, Err(failure()));
        assert!(p.flushed(g4).await.is_err());
        assert_eq!(p.on_disk().unwrap().next_id, 3);
    }

    #[test]
    fn each_replace_keeps_the_previous_state_as_backup() {
        let dir = temp();
        let path = dir.join(STATE_FILE);
        let backup = backup_path(&path);
        write_state(&path, &state(1)).unwrap();
        assert!(!backup.exists(), "nothing to keep on the first write");
        write_state(&path, &state(2)).unwrap();
        assert_eq!(load_dump(&backup).unwrap(), state(1));
        write_state(&path, &state(3)).unwrap();
        assert_eq!(load_dump(&backup).unwrap(), state(2));
        assert_eq!(load_dump(&path).unwrap(), state(3));
        assert!(!sibling(&backup, ".tmp").exists());
        assert!(!sibling(&path, ".tmp").exists());
        // A dump keeps no backup.
        let dump = dir.join(DUMP_FILE);
        write_atomic(&dump, &state(1)).unwrap();
        write_atomic(&dump, &state(2)).unwrap();
        assert!(!backup_path(&dump).exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unreadable_state_falls_back_to_its_backup() {
        let dir = temp().join("bak");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(STATE_FILE);
        // Missing: a fresh home, the backup is not used.
        assert!(load_with_backup(&path).state.is_none());
        write_state(&path, &state(1)).unwrap();
        write_state(&path, &state(2)).unwrap();
        std::fs::write(&path, b"{ trunc").unwrap();
        let report = load_with_backup(&path);
        assert_eq!(report.state, Some(state(1)));
        assert_eq!(report.from_backup, Some(backup_path(&path)));
        assert_eq!(report.unusable.len(), 1);
        assert_eq!(
            std::fs::read(&report.unusable[0].moved_to).unwrap(),
            b"{ trunc"
        );
        // Put back as the state file, so the next daemon reads it too.
        assert_eq!(load_dump(&path).unwrap(), state(1));

        // Both unusable: each moved aside, nothing loaded.
        std::fs::write(&path, b"{ a").unwrap();
        std::fs::write(backup_path(&path), b"{ b").unwrap();
        let report = load_with_backup(&path);
        assert!(report.state.is_none() && report.from_backup.is_none());
        assert_eq!(report.unusable.len(), 2, "{:?}", report.unusable);
        assert!(!path.exists() && !backup_path(&path).exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_write_takes_the_reserve_back_when_it_can() {
        let dir = temp().join("reserve");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(STATE_FILE);
        let reserve = Reserve::in_dir(&dir);
        let (_, used) = write_state_with_reserve(&path, &state(1), &reserve).unwrap();
        assert_eq!(used, ReserveUse::Remade, "made on the first write");
        assert!(reserve.allocated_bytes() >= reserve::MIN_RESERVE_BYTES);
        let (_, used) = write_state_with_reserve(&path, &state(2), &reserve).unwrap();
        assert_eq!(used, ReserveUse::Untouched);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
