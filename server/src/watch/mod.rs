//! File watching for hot reload (PM2's `watch`, `ignore_watch`,
//! `watch_delay`): owns one inotify watcher (the `notify` crate) per app
//! with watch enabled, the ignore rules, and the trailing debounce that
//! turns a burst of changes into one `on_change` call.
//!
//! Talks to: the supervisor, which calls [`watch`] for each app with watch
//! enabled, restarts the app from `on_change`, and drops the
//! [`WatchHandle`] when the app is stopped, deleted or its watch turned
//! off. Nothing here forks or signals.
//!
//! Threads and channels: notify runs one thread per watcher that reads the
//! inotify fd and calls our handler. The handler filters events (ignored
//! paths, reads, chmod) and records the relevant ones in a small
//! [`Mutex`]-guarded `Pending` (at most [`MAX_REPORTED_PATHS`] paths), then
//! wakes the debounce task through a [`tokio::sync::Notify`]. The task owns
//! the watcher: it adds watches for new directories, waits for
//! [`WatchConfig::delay`] of quiet and calls `on_change`. Neither side holds
//! the lock across a blocking call or an await, and the handler never
//! blocks, so a burst of events costs no memory beyond that bounded set.
//!
//! Directories are watched one by one (non-recursive inotify watches) by
//! walking the tree ourselves, so ignored directories such as
//! `node_modules` or `.git` are never watched at all: they cost no inotify
//! watch (a per-user kernel limit) and their churn wakes nobody. New
//! directories inside a watched tree are walked and watched when their
//! creation (or rename into the tree) is seen. Symbolic links to
//! directories are not followed.

mod filter;
#[cfg(test)]
mod tests;

use std::mem;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::sync::LockExt;
use std::time::Duration;

use nix::libc;
use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use self::filter::Filter;

/// Ignored in every watched tree, on top of the user's globs: matched like
/// a glob without a `/`, against every path component below the watched
/// root (so `logs` hides a `logs/` directory at any depth, `*.log` any log
/// file). Dependencies, VCS data, logs, editor swap/backup/lock files and
/// Python bytecode change without the app's source changing.
pub const BUILTIN_IGNORES: &[&str] = &[
    "node_modules",
    ".git",
    "logs",
    "__pycache__",
    "*.log",
    "*.pyc",
    "*.swp",
    "*.swo",
    "*.swx",
    "*~",
    ".#*",
];

/// `on_change` gets at most this many paths per burst (the first ones
/// seen); a burst of more is still one call.
pub const MAX_REPORTED_PATHS: usize = 20;

/// New directories queued for watching between two wakes of the task;
/// beyond this the task walks every root again instead (as after an
/// inotify queue overflow), which keeps the queue bounded.
const MAX_NEW_DIRS: usize = 1024;

/// What to watch and what to leave alone; one per app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchConfig {
    /// Absolute files or directories to watch (recursively for
    /// directories). PM2's `watch: true` is the app's cwd; relative paths
    /// must be resolved against the cwd before they get here.
    pub paths: Vec<PathBuf>,
    /// User globs (PM2's `ignore_watch`), e.g. `"*.tmp"`, `"data/**"`,
    /// `"node_modules"`. A glob without a `/` matches any path component or
    /// file name at any depth (like .gitignore); with a `/`, it matches
    /// relative to each watched root (a leading `./` or `/` is dropped; a
    /// glob starting with `/` is also tried as an absolute path). A
    /// directory that matches hides everything below it. `*` does not
    /// cross a `/`, `**` does. Invalid globs are an error at construction.
    pub ignore: Vec<String>,
    /// Absolute paths whose events are always ignored (the daemon's home
    /// with its log files, the app's own log files when they live inside
    /// the tree): everything below them, and their dot-suffixed siblings
    /// (`app-out.log.1`, rotated copies of `app-out.log`).
    pub ignore_paths: Vec<PathBuf>,
    /// Quiet time after the last relevant event before `on_change` fires
    /// (trailing debounce). PM2's `watch_delay`.
    pub delay: Duration,
}

/// Why watching could not start. Each message names the path or glob and,
/// where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("watch is enabled but there is no path to watch")]
    NoPaths,
    #[error("watch path {} is relative; resolve it against the app's cwd first", .path.display())]
    RelativePath { path: PathBuf },
    #[error("watch path {} does not exist", .path.display())]
    PathNotFound { path: PathBuf },
    #[error("ignore_watch: invalid glob {glob:?}: {reason}")]
    InvalidGlob { glob: String, reason: String },
    #[error(
        "cannot watch {}: the inotify watch limit is reached; raise it with \
         `sysctl fs.inotify.max_user_watches=524288` (persist it in /etc/sysctl.d/) \
         or ignore large directories with ignore_watch",
        .path.display()
    )]
    WatchLimit { path: PathBuf },
    #[error(
        "cannot start a file watcher: too many inotify instances or open files; \
         raise `sysctl fs.inotify.max_user_instances` (or the open files limit)"
    )]
    InstanceLimit,
    #[error("cannot watch {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch {}: {source}", .path.display())]
    Notify {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("the file watcher must be started inside a tokio runtime")]
    NoRuntime,
}

impl WatchError {
    fn from_notify(err: notify::Error, path: &Path) -> Self {
        let path = path.to_path_buf();
        match err.kind {
            notify::ErrorKind::MaxFilesWatch => WatchError::WatchLimit { path },
            notify::ErrorKind::PathNotFound => WatchError::PathNotFound { path },
            notify::ErrorKind::Io(source) => match source.raw_os_error() {
                Some(libc::ENOSPC) => WatchError::WatchLimit { path },
                _ if source.kind() == std::io::ErrorKind::NotFound => {
                    WatchError::PathNotFound { path }
                }
                _ => WatchError::Io { path, source },
            },
            _ => WatchError::Notify { path, source: err },
        }
    }
}

/// Checks a config without watching anything: every path is absolute and
/// exists, every glob compiles. [`watch`] runs the same checks.
pub fn validate(cfg: &WatchConfig) -> Result<(), WatchError> {
    Filter::new(cfg).map(drop)
}

/// Starts watching. `on_change` is called from a tokio task with the
/// changed paths (deduplicated, at most [`MAX_REPORTED_PATHS`]) once per
/// debounced burst; it is never called concurrently with itself. An empty
/// list means events were lost (inotify queue overflow) and something may
/// have changed. `on_change` runs on a runtime worker: it should only hand
/// the restart off (send on a channel, spawn), not block.
///
/// Must be called inside a tokio runtime. Watches are in place when this
/// returns. It walks the watched trees synchronously (skipping ignored
/// directories), which is quick for a source tree; call it from
/// `spawn_blocking` if the tree may be huge.
///
/// Dropping the returned handle stops the watcher, its thread and its task
/// (a call already running finishes; no call starts afterwards).
pub fn watch(
    cfg: WatchConfig,
    on_change: impl Fn(Vec<PathBuf>) + Send + Sync + 'static,
) -> Result<WatchHandle, WatchError> {
    let filter = Filter::new(&cfg)?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| WatchError::NoRuntime)?;
    let shared = Arc::new(Shared {
        filter,
        pending: Mutex::new(Pending::default()),
        wake: Notify::new(),
    });

    let handler_shared = Arc::clone(&shared);
    let mut watcher = RecommendedWatcher::new(
        move |res: notify::Result<notify::Event>| match res {
            Ok(event) => handler_shared.record(event),
            Err(e) => {
                let path = e.paths.first().cloned().unwrap_or_default();
                log_runtime_error(&WatchError::from_notify(e, &path));
            }
        },
        notify::Config::default(),
    )
    .map_err(|e| {
        if let notify::ErrorKind::Io(io) = &e.kind
            && matches!(io.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
        {
            return WatchError::InstanceLimit;
        }
        WatchError::from_notify(e, &cfg.paths[0])
    })?;

    let mut watched_dirs = 0;
    for root in &shared.filter.roots {
        watched_dirs += watch_root(&mut watcher, &shared.filter, root)?;
    }
    tracing::debug!(paths = ?cfg.paths, watched_dirs, "watching");

    let task = runtime.spawn(debounce(shared, watcher, cfg.delay, on_change));
    Ok(WatchHandle { task })
}

/// A running watcher; dropping it stops it.
#[derive(Debug)]
pub struct WatchHandle {
    /// The debounce task. It owns the notify watcher, so aborting it drops
    /// the watcher, which stops notify's thread and closes the inotify fd.
    task: JoinHandle<()>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Shared by notify's thread (which records) and the debounce task (which
/// drains).
struct Shared {
    /// Read-only after construction.
    filter: Filter,
    /// Held only to record one event or to take the batch; never across a
    /// blocking call or an await.
    pending: Mutex<Pending>,
    /// Wakes the task after `pending` changed. One stored permit is
    /// enough: the task looks at everything pending on each wake.
    wake: Notify,
}

/// What happened since the task last looked.
#[derive(Default)]
struct Pending {
    /// A relevant event arrived since the last `on_change`.
    dirty: bool,
    /// Changed paths for `on_change`: deduplicated, at most
    /// [`MAX_REPORTED_PATHS`].
    changed: Vec<PathBuf>,
    /// New directories to walk and watch; at most [`MAX_NEW_DIRS`].
    new_dirs: Vec<PathBuf>,
    /// Walk every root again: events were lost or `new_dirs` overflowed.
    rescan: bool,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.locked()
    }

    /// Called on notify's thread for every event.
    fn record(&self, event: notify::Event) {
        if event.need_rescan() {
            tracing::warn!("file watcher lost events (inotify queue overflow); rescanning");
            let mut pending = self.pending();
            pending.dirty = true;
            pending.rescan = true;
            drop(pending);
            self.wake.notify_one();
            return;
        }
        let Some(may_be_new_dir) = relevance(&event.kind) else {
            return;
        };
        let mut woke = false;
        for path in event.paths {
            if self.filter.is_ignored(&path) {
                continue;
            }
            let root_gone = matches!(
                event.kind,
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From))
            ) && self.filter.is_dir_root(&path);
            if root_gone {
                tracing::warn!(
                    path = %path.display(),
                    "watched directory was removed or moved; watching resumes when it is back"
                );
            }
            let new_dir = may_be_new_dir
                && std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_dir());
            let mut pending = self.pending();
            pending.dirty = true;
            if new_dir {
                if pending.new_dirs.len() < MAX_NEW_DIRS {
                    pending.new_dirs.push(path.clone());
                } else {
                    pending.rescan = true;
                }
            }
            if pending.changed.len() < MAX_REPORTED_PATHS && !pending.changed.contains(&path) {
                pending.changed.push(path);
            }
            woke = true;
        }
        if woke {
            self.wake.notify_one();
        }
    }
}

/// Whether an event kind means the tree changed: `None` for reads and
/// metadata-only changes (chmod, atime, ...), else whether its path may be
/// a new directory to watch. Closing a file opened for writing counts (it
/// is how `touch` on an existing file shows up).
fn relevance(kind: &EventKind) -> Option<bool> {
    match kind {
        EventKind::Create(CreateKind::File) => Some(false),
        EventKind::Create(_) => Some(true),
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => Some(false),
        EventKind::Modify(ModifyKind::Name(_)) => Some(true),
        EventKind::Modify(ModifyKind::Metadata(_)) => None,
        EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any => Some(false),
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(false),
        EventKind::Access(_) | EventKind::Other => None,
    }
}

/// The debounce task: wait for a relevant event, then for `delay` without
/// one, then report the burst. Keeps new directories watched meanwhile.
async fn debounce(
    shared: Arc<Shared>,
    mut watcher: RecommendedWatcher,
    delay: Duration,
    on_change: impl Fn(Vec<PathBuf>),
) {
    loop {
        shared.wake.notified().await;
        sync_watches(&shared, &mut watcher);
        if !shared.pending().dirty {
            continue;
        }
        while tokio::time::timeout(delay, shared.wake.notified())
            .await
            .is_ok()
        {
            sync_watches(&shared, &mut watcher);
        }
        let changed = {
            let mut pending = shared.pending();
            pending.dirty = false;
            mem::take(&mut pending.changed)
        };
        tracing::debug!(changed = ?changed, "watched files changed");
        on_change(changed);
    }
}

/// Watches the new directories recorded since the last call, or every root
/// again after a rescan request. Blocks briefly (one round trip to notify's
/// thread per directory).
fn sync_watches(shared: &Shared, watcher: &mut RecommendedWatcher) {
    let (new_dirs, rescan) = {
        let mut pending = shared.pending();
        (
            mem::take(&mut pending.new_dirs),
            mem::replace(&mut pending.rescan, false),
        )
    };
    if rescan {
        for root in &shared.filter.roots {
            if let Err(e) = watch_root(watcher, &shared.filter, root) {
                log_runtime_error(&e);
                if matches!(e, WatchError::WatchLimit { .. }) {
                    return;
                }
            }
        }
        return;
    }
    for dir in &new_dirs {
        match watch_tree(watcher, &shared.filter, dir) {
            Ok(_) => {}
            Err(e @ WatchError::WatchLimit { .. }) => {
                // Every further watch would fail the same way.
                log_runtime_error(&e);
                return;
            }
            // The directory is gone again, or unreadable: nothing to
            // watch there.
            Err(e) => tracing::debug!(error = %e, "not watching new directory"),
        }
    }
}

/// Watches one root: a directory tree, or a file through its parent
/// directory. A directory root's parent is watched too (its other entries
/// are filtered out), so that a root deleted and created again (`rm -rf
/// dist && build`) is seen coming back and watched again. Returns the
/// number of directories watched.
fn watch_root(
    watcher: &mut RecommendedWatcher,
    filter: &Filter,
    root: &filter::Root,
) -> Result<usize, WatchError> {
    if root.is_dir {
        let watched = watch_tree(watcher, filter, &root.path)?;
        let parent = root.path.parent().filter(|p| *p != root.path);
        if let Some(parent) = parent
            && let Err(e) = watcher.watch(parent, RecursiveMode::NonRecursive)
        {
            tracing::debug!(path = %parent.display(), error = %e, "cannot watch the parent of a watched directory");
        }
        return Ok(watched);
    }
    let parent = root.path.parent().unwrap_or(Path::new("/"));
    watcher
        .watch(parent, RecursiveMode::NonRecursive)
        .map_err(|e| WatchError::from_notify(e, &root.path))?;
    Ok(1)
}

/// Watches `top` and every directory below it that is not ignored, one
/// non-recursive watch each. An error on `top` itself, or the watch limit,
/// is returned; a subdirectory that vanished or cannot be read is skipped.
fn watch_tree(
    watcher: &mut RecommendedWatcher,
    filter: &Filter,
    top: &Path,
) -> Result<usize, WatchError> {
    let mut stack = vec![top.to_path_buf()];
    let mut watched = 0;
    while let Some(dir) = stack.pop() {
        let is_top = watched == 0;
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            let err = WatchError::from_notify(e, &dir);
            if is_top || matches!(err, WatchError::WatchLimit { .. }) {
                return Err(err);
            }
            tracing::debug!(error = %err, "skipping directory");
            continue;
        }
        watched += 1;
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(source) if is_top => return Err(WatchError::Io { path: dir, source }),
            Err(e) => {
                tracing::debug!(path = %dir.display(), error = %e, "cannot list directory");
                continue;
            }
        };
        for entry in entries.flatten() {
            // `file_type` does not follow symlinks: linked directories are
            // not entered (no loops, no watching outside the tree).
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let path = entry.path();
                if !filter.is_ignored(&path) {
                    stack.push(path);
                }
            }
        }
    }
    Ok(watched)
}

fn log_runtime_error(err: &WatchError) {
    match err {
        WatchError::WatchLimit { .. } => {
            tracing::warn!(error = %err, "some directories are not watched");
        }
        _ => tracing::warn!(error = %err, "file watcher error"),
    }
}
