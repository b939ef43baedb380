//! Log capture: owns each instance's log files (`logs/NAME-ID-out.log`,
//! `-err.log`, rotated `.1 .. .N`; with PM2's `merge_logs` one set for
//! all instances, `logs/NAME-out.log`; PM2's `log_file`, a combined file
//! of both streams), the bounded in-memory tail of recent lines, and the
//! daemon-wide broadcast that `StreamLogs` followers subscribe to.
//!
//! Talks to: the supervisor, which opens a [`LogSink`] per instance and
//! stream and hands the child's pipes to [`capture`]; the API, which reads
//! history with [`LogSink::tail`] and follows [`LogHub::subscribe`].
//!
//! Locks: each sink has one `std::sync::Mutex` around its ring and line
//! state, each file ([`logfile`], shared by every sink that writes it) one
//! around its handle and size; a write takes the sink's, then the file's,
//! never across an await. The broadcast never blocks a writer: a slow
//! follower lags and is told how many lines it missed.
//!
//! Data path: [`capture`] reads a pipe in chunks of up to
//! [`MAX_LINE_BYTES`], cuts each chunk after its last newline and hands the
//! complete lines to the sink in one piece, so the file gets one
//! `write(2)` per chunk (per rotation boundary) rather than one per line.
//! The lines are formatted for the files ([`format`]: a timestamp, JSON),
//! written to each file under its lock (so writers of a shared file never
//! mix inside a line), then, under the sink lock, numbered from
//! the hub's counter, copied into the ring (only the newest ones, which
//! survive eviction) and, when anyone is subscribed, sent on the broadcast
//! as slices of one exact-size copy of the chunk. Bytes are never decoded:
//! output that is not UTF-8 passes through untouched.
//!
//! A line longer than [`MAX_LINE_BYTES`] is written to the file intact,
//! but followers and the ring see it as several pieces of at most that
//! size: memory per capture stays bounded even for an app that never
//! writes a newline.

mod cache;
pub(crate) mod daemon_log;
mod files;
pub(crate) mod format;
mod logfile;
pub(crate) mod paths;
pub(crate) mod reserve;
mod ring;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::sync::LockExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes};
use memchr::{memchr, memchr_iter, memrchr};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use self::files::LogDir;
pub use self::format::LineFormat;
use self::logfile::{FileKey, LogFile, Writer};
use self::reserve::DiskReserve;
#[cfg(test)]
use self::reserve::ReserveSetting;
use self::ring::Ring;

/// Capacity of the daemon-wide broadcast, in lines. A follower further
/// behind than this gets `RecvError::Lagged(missed)` instead of the lines.
/// Its slots are allocated up front (32 bytes each), so this is idle
/// memory of every daemon: followers drain up to 512 lines per message, so
/// 1024 is enough to ride out a burst.
pub const BROADCAST_CAPACITY: usize = 1024;

/// Largest read from a pipe, and the longest piece of a line that the ring
/// and the broadcast carry (longer lines reach them in pieces; the file
/// gets them whole). 64 KiB is the default Linux pipe buffer.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The ring of each sink keeps at most this many recent lines...
pub const RING_MAX_LINES: usize = 200;

/// ...and at most this many bytes of line data: one fixed buffer of this
/// size per instance stream that has written anything, plus 24 bytes of
/// bookkeeping a line.
pub const RING_MAX_BYTES: usize = 64 * 1024;

/// [`LogSink::tail`] reads at most this much from the end of the files.
pub const TAIL_MAX_READ_BYTES: u64 = 8 * 1024 * 1024;

/// Length of the `time` prefix: `2026-11-26T04:26:30.123Z` and a space.
#[cfg(test)]
const TIME_PREFIX_LEN: usize = 25;

/// The scratch buffer used to prefix lines with a timestamp is shrunk back
/// to this after a chunk of many tiny lines made it grow.
const SCRATCH_KEEP_BYTES: usize = 256 * 1024;

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

impl Stream {
    /// `"out"` or `"err"`, as in the file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Out => "out",
            Stream::Err => "err",
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line as followers see it.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// Daemon-wide, increasing in write order within one sink.
    pub seq: u64,
    pub id: u32,
    pub name: Arc<str>,
    pub stream: Stream,
    /// The line without its trailing newline, bytes as the app wrote them.
    /// A line longer than [`MAX_LINE_BYTES`] comes as several consecutive
    /// `LogLine`s of at most that size (the file has it whole).
    pub data: Bytes,
    pub timestamp_ms: i64,
}

/// Per-app logging options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Size at which the file is rotated.
    pub max_bytes: u64,
    /// Rotated files kept (`.1` newest .. `.max_files` oldest).
    pub max_files: u32,
    /// How lines look in the files (a timestamp, JSON).
    pub format: LineFormat,
    /// Every instance of the app writes the same files (PM2's
    /// `merge_logs`): default names lose their `-ID`.
    pub merged: bool,
}

/// Where one instance stream's lines are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// In the daemon's `logs/`, under a name made from the app's.
    Default,
    /// A file the user named (`out_file`, `error_file`, `log_file`).
    Custom(PathBuf),
    /// Nowhere (`/dev/null`, PM2's `NULL`): no file is opened; followers
    /// still get the lines.
    Discard,
}

/// The files of one instance stream: its own, and the app's combined
/// file (PM2's `log_file`) that both streams write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkTargets {
    pub file: LogTarget,
    pub combined: Option<LogTarget>,
}

/// Shared by every sink: the log directory, the sequence counter, the
/// broadcast sender, the disk reserve, the files open by name and the
/// cache of open log files. Cheap to clone.
#[derive(Clone)]
pub struct LogHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    /// `$PMDAEMON_HOME/logs`, as given.
    dir_path: PathBuf,
    /// Its handle: default log files are reached through it only.
    dir: Arc<LogDir>,
    /// `$PMDAEMON_HOME`: no custom log file may be in it.
    home: PathBuf,
    /// Handles of the directories of custom log files, shared by the sinks
    /// of one directory (one descriptor per directory, not per file).
    dirs: Mutex<HashMap<(u64, u64), Weak<LogDir>>>,
    /// Every log file written, by directory and name: a second sink of the
    /// same file (another instance with `merge_logs`, the other stream of
    /// a `log_file`) shares its [`LogFile`], so the file has one writer
    /// state (size, rotation, open line) in the daemon. Taken only while a
    /// sink is opened.
    files: Mutex<HashMap<FileKey, Weak<LogFile>>>,
    /// The last writer key handed out ([`logfile::PREVIOUS_WRITER`] is 0).
    last_writer: AtomicU64,
    /// The last sequence number handed out (0: none yet). Sinks reserve a
    /// block of numbers while holding their own lock, so within a sink the
    /// numbers follow the file order.
    last_seq: AtomicU64,
    /// Every line written by any sink. The receivers belong to followers
    /// (`subscribe`); this sender lives as long as the hub, so a receiver
    /// never sees `Closed` while the daemon runs: followers must watch the
    /// daemon's shutdown signal themselves.
    tx: broadcast::Sender<Arc<LogLine>>,
    reserve: Arc<DiskReserve>,
    /// The open-file cache (see [`cache`]).
    cache: cache::FileCache,
}

impl LogHub {
    /// `dir` is `$PMDAEMON_HOME/logs`, created if missing, and kept
    /// private (0700) whatever the home's own mode: app output often
    /// carries secrets. It is never reached through a symbolic link. The
    /// default disk reserve applies.
    #[cfg(test)]
    pub fn new(dir: PathBuf) -> std::io::Result<Self> {
        Self::with_reserve(dir, DiskReserve::new(ReserveSetting::Default))
    }

    /// [`LogHub::new`] with the daemon's disk reserve (shared with
    /// pmdaemond.log).
    pub fn with_reserve(dir: PathBuf, reserve: Arc<DiskReserve>) -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let handle = LogDir::open_own(&dir)?;
        if handle.mode() & 0o077 != 0 {
            // Through the handle: the path is not walked again.
            nix::sys::stat::fchmod(handle.fd(), nix::sys::stat::Mode::from_bits_truncate(0o700))?;
        }
        let home = dir.parent().map_or_else(|| dir.clone(), Path::to_path_buf);
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        Ok(LogHub {
            inner: Arc::new(HubInner {
                dir_path: dir,
                dir: Arc::new(handle),
                home,
                dirs: Mutex::new(HashMap::new()),
                files: Mutex::new(HashMap::new()),
                last_writer: AtomicU64::new(logfile::PREVIOUS_WRITER),
                last_seq: AtomicU64::new(0),
                tx,
                reserve,
                cache: cache::FileCache::new(crate::fds::log_file_budget()),
            }),
        })
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir_path
    }

    /// The default file of an instance's stream (unmerged).
    #[cfg(test)]
    pub fn path(&self, name: &str, id: u32, stream: Stream) -> PathBuf {
        self.inner.dir_path.join(default_name(name, id, stream))
    }

    /// The default file of a target: `Some(stream)` for an instance's
    /// stream, `None` for its combined file.
    pub fn default_path(
        &self,
        name: &str,
        id: u32,
        stream: Option<Stream>,
        merged: bool,
    ) -> PathBuf {
        self.inner
            .dir_path
            .join(default_file_name(name, id, stream, merged))
    }

    /// Opens (appending, creating if needed) the sink for one instance
    /// stream, its file being the default one or `path`. See
    /// [`LogHub::open_sink_with`].
    #[cfg(test)]
    pub fn open_sink(
        &self,
        name: &str,
        id: u32,
        stream: Stream,
        path: Option<PathBuf>,
        config: LogConfig,
    ) -> std::io::Result<Arc<LogSink>> {
        let file = path.map_or(LogTarget::Default, LogTarget::Custom);
        let targets = SinkTargets {
            file,
            combined: None,
        };
        self.open_sink_with(name, id, stream, &targets, config)
    }

    /// Opens the sink for one instance stream: its own file and the
    /// combined one, per `targets`. The supervisor keeps it for the
    /// instance's whole life, across restarts, so the ring and the file
    /// survive respawns.
    ///
    /// A custom path (an app's `out_file`/`error_file`/`log_file`) has its
    /// directory placed by the rules of [`paths`] (a directory another
    /// user could write is refused, so is the daemon's home; a missing one
    /// is created) and held open from then on. A file another sink of the
    /// same app already writes is shared with it; one of another app is
    /// refused.
    pub fn open_sink_with(
        &self,
        name: &str,
        id: u32,
        stream: Stream,
        targets: &SinkTargets,
        config: LogConfig,
    ) -> std::io::Result<Arc<LogSink>> {
        let app: Arc<str> = Arc::from(name);
        let limits = (config.max_bytes, config.max_files);
        let file = self.open_file(&app, id, Some(stream), &targets.file, config.merged, limits)?;
        let combined = match &targets.combined {
            None => None,
            Some(target) => self.open_file(&app, id, None, target, config.merged, limits)?,
        };
        let path = match &file {
            Some(f) => f.path.clone(),
            None => match &targets.file {
                LogTarget::Custom(path) => path.clone(),
                _ => PathBuf::from(crate::supervisor::spec::DISCARD),
            },
        };
        let writer = self.inner.last_writer.fetch_add(1, Ordering::Relaxed) + 1;
        let json = format::JsonWho::new(stream, id, name);
        let sink = Arc::new(LogSink {
            hub: Arc::clone(&self.inner),
            name: app,
            id,
            stream,
            writer,
            path,
            file,
            combined,
            json,
            state: Mutex::new(SinkState::new(config.format)),
        });
        Ok(sink)
    }

    /// The shared file for `target` (None: discarded). `stream` None is
    /// the combined file.
    fn open_file(
        &self,
        app: &Arc<str>,
        id: u32,
        stream: Option<Stream>,
        target: &LogTarget,
        merged: bool,
        limits: (u64, u32),
    ) -> std::io::Result<Option<Arc<LogFile>>> {
        let (dir, file_name, path) = match target {
            LogTarget::Discard => return Ok(None),
            LogTarget::Default => {
                let file_name = default_file_name(app, id, stream, merged);
                let path = self.inner.dir_path.join(&file_name);
                (Arc::clone(&self.inner.dir), OsString::from(file_name), path)
            }
            LogTarget::Custom(path) => {
                let placed = paths::place_custom(path, &self.inner.home)?;
                (self.share_dir(placed.dir), placed.name, path.clone())
            }
        };
        let id_of_dir = dir.id();
        let key: FileKey = (id_of_dir.0, id_of_dir.1, file_name.clone());
        let mut files = self.inner.files.locked();
        if let Some(open) = files.get(&key).and_then(Weak::upgrade) {
            if open.app != *app {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is already the log file of app {}; give this app its own file \
                         (`out_file`, `error_file`, `log_file`) or another name",
                        path.display(),
                        open.app
                    ),
                ));
            }
            // The app's latest definition sets the rotation.
            let mut st = open.lock();
            (st.max_bytes, st.max_files) = limits;
            drop(st);
            return Ok(Some(open));
        }
        files.retain(|_, f| f.strong_count() > 0);
        let custom = !Arc::ptr_eq(&dir, &self.inner.dir);
        let lf = Arc::new(LogFile::new(&self.inner, app, path, dir, file_name, limits));
        // A default log file that does not exist yet is created by the
        // first write: many apps never write to one of their streams, and
        // creating a file is the costliest step of starting an app (ext4
        // searches for a free inode). A path the user gave is opened now,
        // so that one that cannot be written is refused at once.
        if custom || lf.dir.leads_to_file(&lf.name) {
            lf.open_now()?;
        }
        self.inner.cache.register(&lf);
        files.insert(key, Arc::downgrade(&lf));
        Ok(Some(lf))
    }

    /// One handle per directory: a sink of a directory that is already
    /// open shares its handle.
    fn share_dir(&self, dir: LogDir) -> Arc<LogDir> {
        let mut dirs = self.inner.dirs.locked();
        dirs.retain(|_, d| d.strong_count() > 0);
        if let Some(open) = dirs.get(&dir.id()).and_then(Weak::upgrade) {
            return open;
        }
        let dir = Arc::new(dir);
        dirs.insert(dir.id(), Arc::downgrade(&dir));
        dir
    }

    /// A receiver of every line written from now on, by any sink.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogLine>> {
        self.inner.tx.subscribe()
    }

    /// Log files open now, daemon-wide.
    #[cfg(test)]
    pub fn open_files(&self) -> usize {
        self.inner.cache.open_count()
    }

    /// Closes the files that were not written for `idle` (the janitor's
    /// pass, for tests).
    #[cfg(test)]
    pub fn close_idle(&self, idle: Duration) {
        self.inner.cache.close_idle(idle);
    }

    /// Removes an instance's files, rotated ones included (on delete).
    /// Missing files are not an error; the first other error is returned
    /// after trying every file.
    #[cfg(test)]
    pub fn remove_files(&self, name: &str, id: u32) -> std::io::Result<()> {
        remove_log_files([Stream::Out, Stream::Err].map(|s| self.path(name, id, s)))
    }
}

/// `NAME-ID-out.log` / `-err.log`, NAME in its file-safe form: a name
/// may hold spaces or any letter, never a path; the id keeps two names
/// with one safe form apart.
#[cfg(test)]
fn default_name(name: &str, id: u32, stream: Stream) -> String {
    default_file_name(name, id, Some(stream), false)
}

/// The default file names, as PM2 makes them: `NAME-ID-out.log`,
/// `NAME-ID-err.log` and the combined `NAME-ID.log`; with `merged`, one
/// for every instance: `NAME-out.log`, `NAME-err.log`, `NAME.log`.
fn default_file_name(name: &str, id: u32, stream: Option<Stream>, merged: bool) -> String {
    let safe = pmdaemon_proto::file_safe_name(name);
    let id = if merged {
        String::new()
    } else {
        format!("-{id}")
    };
    match stream {
        Some(stream) => format!("{safe}{id}-{}.log", stream.as_str()),
        None => format!("{safe}{id}.log"),
    }
}

/// Removes log files and their rotated siblings, through a handle of their
/// directory (never following a link). Missing files are not an error; the
/// first other error is returned after trying every file.
pub fn remove_log_files(paths: impl IntoIterator<Item = PathBuf>) -> std::io::Result<()> {
    let mut first_err = None;
    for path in paths {
        let result = files::split(&path).and_then(|(dir, name)| {
            let dir = match LogDir::open_own(dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                dir => dir?,
            };
            dir.remove_if_exists(name)?;
            dir.remove_rotated(name, 0)
        });
        if let Err(e) = result {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

impl fmt::Debug for LogHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogHub")
            .field("dir", &self.inner.dir_path)
            .field("last_seq", &self.inner.last_seq.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// One instance stream: where its lines go (its own file, the combined
/// one, or none) plus its in-memory ring of recent lines.
pub struct LogSink {
    hub: Arc<HubInner>,
    name: Arc<str>,
    id: u32,
    stream: Stream,
    /// Which writer this is, in the files' open-line bookkeeping.
    writer: u64,
    /// Its own file as the user or the hub named it (for messages and
    /// views); `/dev/null` when discarded.
    path: PathBuf,
    /// Its own file; None when discarded.
    file: Option<Arc<LogFile>>,
    /// The app's combined file (PM2's `log_file`), shared with the other
    /// stream (and, merged, with the other instances).
    combined: Option<Arc<LogFile>>,
    /// Who this is in a JSON line.
    json: format::JsonWho,
    /// Held for one chunk's write (files, seq, ring, broadcast) or one tail
    /// read; never across an await. Taken before a file's lock.
    state: Mutex<SinkState>,
}

struct SinkState {
    format: LineFormat,
    /// This stream's output ends in the middle of a line (a piece of an
    /// over-long line, or output that waited for its newline too long,
    /// was written). In a file, no rotation and no timestamp until that
    /// line ends, unless another writer ended it first.
    line_open: bool,
    /// A run's output ended there (EOF): if its last line is open, the
    /// next run's output first gets a newline of its own in the files, so
    /// two runs never share a line, while each file keeps exactly what
    /// each run wrote.
    run_ended: bool,
    /// Seq of the last line written by this sink (0: none yet).
    last_seq: u64,
    ring: Ring,
    /// Reused to build formatted output.
    scratch: Vec<u8>,
}

impl LogSink {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The combined file (PM2's `log_file`), if the app has one.
    pub fn combined_path(&self) -> Option<&Path> {
        self.combined.as_ref().map(|f| f.path.as_path())
    }

    /// Whether `other` writes the same own file (instances of an app with
    /// `merge_logs`): its history is the same file's.
    pub fn shares_file_with(&self, other: &LogSink) -> bool {
        match (&self.file, &other.file) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// The sequence number of the last line this sink wrote.
    pub fn last_seq(&self) -> u64 {
        self.lock().last_seq
    }

    #[cfg(test)]
    pub fn config(&self) -> (u64, u32) {
        let file = self.file.as_ref().expect("a file");
        let st = file.lock();
        (st.max_bytes, st.max_files)
    }

    /// Applies new rotation limits from the next write on. Rotated files
    /// beyond a lowered `max_files` are removed now.
    #[cfg(test)]
    pub fn set_config(&self, config: LogConfig) -> std::io::Result<()> {
        let file = self.file.as_ref().expect("a file");
        let mut st = file.lock();
        let lowered = config.max_files < st.max_files;
        (st.max_bytes, st.max_files) = (config.max_bytes, config.max_files);
        drop(st);
        self.lock().format = config.format;
        if lowered {
            file.dir.remove_rotated(&file.name, config.max_files)?;
        }
        Ok(())
    }

    /// The last `lines` lines of the file (oldest first, without newlines)
    /// and the sequence number of the last line written so far; lines with a
    /// higher seq that arrive on the broadcast are new. Reads at most a
    /// bounded amount from the end of the file.
    ///
    /// Lines come from the file, so with `time` or a date format on they
    /// carry the timestamp prefix ([`split_time_prefix`] takes pmd's
    /// apart); a JSON file's lines are given back as their text. When the
    /// current file holds fewer than `lines` lines (it was just rotated),
    /// the rest come from `.1`. Both reads together stay within
    /// [`TAIL_MAX_READ_BYTES`]; a line cut by that bound is left out. A
    /// discarded stream has no history.
    pub fn tail(&self, lines: usize) -> std::io::Result<(Vec<Bytes>, u64)> {
        // The lock makes the file contents and `last_seq` one snapshot.
        let st = self.lock();
        let last_seq = st.last_seq;
        let Some(file) = &self.file else {
            return Ok((Vec::new(), last_seq));
        };
        if lines == 0 {
            return Ok((Vec::new(), last_seq));
        }
        // Other writers of a shared file wait meanwhile.
        let _writes = file.lock();
        let mut budget = TAIL_MAX_READ_BYTES;
        let current = file.dir.open_read(&file.name)?;
        let (mut out, whole) = files::tail_lines(current, lines, &mut budget)?;
        if out.len() < lines && whole && budget > 0 {
            let older = file.dir.open_read(&files::rotated_name(&file.name, 1))?;
            let (mut before, _) = files::tail_lines(older, lines - out.len(), &mut budget)?;
            before.append(&mut out);
            out = before;
        }
        if st.format.is_json() {
            for line in &mut out {
                if let Some(text) = format::json_message(line) {
                    *line = Bytes::from(text);
                }
            }
        }
        Ok((out, last_seq))
    }

    /// Retained lines with `seq > after`, oldest first (for resuming).
    /// The ring holds at most [`RING_MAX_LINES`] lines and
    /// [`RING_MAX_BYTES`] of data; older lines are only in the file.
    pub fn retained_after(&self, after: u64) -> Vec<Arc<LogLine>> {
        self.lock().ring.after(after, |seq, timestamp_ms, data| {
            Arc::new(LogLine {
                seq,
                id: self.id,
                name: Arc::clone(&self.name),
                stream: self.stream,
                data,
                timestamp_ms,
            })
        })
    }

    /// Empties the file and removes rotated ones, through the directory
    /// handle (the combined file too). The ring is cleared too: a flush
    /// means "forget these logs" (e.g. a leaked secret), so they must not
    /// come back through a resume. Sequence numbers go on.
    pub fn flush(&self) -> std::io::Result<()> {
        let mut st = self.lock();
        st.ring.clear();
        st.line_open = false;
        let mut first_err = None;
        for file in self.file.iter().chain(&self.combined) {
            if let Err(e) = file.flush() {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn lock(&self) -> MutexGuard<'_, SinkState> {
        // A panic under the lock cannot leave the state torn in a way that
        // matters more than losing the logs; keep logging.
        self.state.locked()
    }

    /// Writes `data`: either complete lines (it ends with `\n`) or one piece
    /// of an over-long line (no `\n` at all).
    fn append(&self, data: &[u8]) {
        debug_assert!(!data.is_empty());
        let now = SystemTime::now();
        let timestamp_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));

        let mut guard = self.lock();
        let st = &mut *guard;
        // As the followers see it: a run that ended starts a new line.
        let was_open = st.line_open && !st.run_ended;
        if self.file.is_some() || self.combined.is_some() {
            let stamp = st.format.stamp(now).unwrap_or_default();
            let writer = Writer {
                key: self.writer,
                id: self.id,
                name: &self.name,
                line_open: st.line_open,
                run_ended: st.run_ended,
            };
            let mut scratch = std::mem::take(&mut st.scratch);
            let format = &st.format;
            for file in self.file.iter().chain(&self.combined) {
                file.write_chunk(&writer, data, &mut scratch, |continuing, body, out| {
                    format.render(out, body, &stamp, continuing, &self.json)
                });
            }
            scratch.clear();
            scratch.shrink_to(SCRATCH_KEEP_BYTES);
            st.scratch = scratch;
        }
        st.run_ended = false;
        st.line_open = data.last() != Some(&b'\n');

        // The newline that ends an over-long line, alone, is not a line of
        // its own for followers: they already have every piece of it.
        let body = if was_open && data[0] == b'\n' {
            &data[1..]
        } else {
            data
        };
        self.emit(st, body, timestamp_ms);
    }

    /// Numbers the lines of `body`, keeps the newest in the ring and sends
    /// them all to followers. Called with the sink lock held.
    fn emit(&self, st: &mut SinkState, body: &[u8], timestamp_ms: i64) {
        if body.is_empty() {
            return;
        }
        let terminated = body.last() == Some(&b'\n');
        let count = memchr_iter(b'\n', body).count() as u64 + u64::from(!terminated);
        let first = self.hub.last_seq.fetch_add(count, Ordering::Relaxed) + 1;
        st.last_seq = first + count - 1;

        let line = |seq, data| {
            Arc::new(LogLine {
                seq,
                id: self.id,
                name: Arc::clone(&self.name),
                stream: self.stream,
                data,
                timestamp_ms,
            })
        };

        // Nobody listening: build nothing. Else one copy of the chunk, exactly
        // its size, that the lines slice: the channel keeps the last
        // BROADCAST_CAPACITY lines whether or not they were received, and a
        // slice of the 64 KiB read buffer would keep all of it alive for
        // one short line. `send` only takes the channel's own lock and never
        // waits for a receiver.
        if self.hub.tx.receiver_count() > 0 {
            let chunk = Bytes::copy_from_slice(body);
            for (seq, (start, end)) in (first..).zip(LineRanges::new(body)) {
                // No receivers left is not an error here.
                let _ = self.hub.tx.send(line(seq, chunk.slice(start..end)));
            }
        }

        // Only the newest lines of the chunk would survive in the ring: copy
        // just those, into its own buffer.
        let (from, kept) = ring::newest_fitting(body, RING_MAX_LINES, RING_MAX_BYTES);
        let kept_body = &body[from..];
        for (seq, (start, end)) in (st.last_seq + 1 - kept..).zip(LineRanges::new(kept_body)) {
            st.ring.push(seq, timestamp_ms, &kept_body[start..end]);
        }
    }

    /// End of a pipe: `rest` is a final line without a newline (possibly
    /// empty), written as it is; the next run starts on a new line.
    fn finish(&self, rest: Vec<u8>) {
        if !rest.is_empty() {
            self.append(&rest);
        }
        self.lock().run_ended = true;
    }
}

impl fmt::Debug for LogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogSink")
            .field("path", &self.path)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl SinkState {
    fn new(format: LineFormat) -> Self {
        SinkState {
            format,
            line_open: false,
            run_ended: false,
            last_seq: 0,
            ring: Ring::default(),
            scratch: Vec::new(),
        }
    }
}

/// Splits the `time` prefix off a line read from a file: its timestamp in
/// milliseconds since the epoch and the rest of the line. `None` when the
/// line does not start with one.
#[cfg(test)]
pub fn split_time_prefix(line: &[u8]) -> Option<(i64, &[u8])> {
    if line.len() < TIME_PREFIX_LEN || line[TIME_PREFIX_LEN - 1] != b' ' {
        return None;
    }
    let stamp = std::str::from_utf8(&line[..TIME_PREFIX_LEN - 1]).ok()?;
    let at = humantime::parse_rfc3339(stamp).ok()?;
    let ms = at.duration_since(UNIX_EPOCH).ok()?.as_millis();
    Some((i64::try_from(ms).ok()?, &line[TIME_PREFIX_LEN..]))
}

/// `(start, end)` of each line in a buffer, newline excluded; a last piece
/// without a newline counts as a line.
struct LineRanges<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> LineRanges<'a> {
    fn new(buf: &'a [u8]) -> Self {
        LineRanges { buf, pos: 0 }
    }
}

impl Iterator for LineRanges<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        let end = match memchr(b'\n', &self.buf[start..]) {
            Some(nl) => {
                self.pos = start + nl + 1;
                start + nl
            }
            None => {
                self.pos = self.buf.len();
                self.buf.len()
            }
        };
        Some((start, end))
    }
}

/// Spawns a task that reads `pipe` to EOF, splitting lines and writing them
/// to `sink`. A final line without a newline is written at EOF. The handle
/// resolves when the pipe is closed (the app and every process holding the
/// pipe have exited).
///
/// Must be called within a tokio runtime. The task keeps reading whatever
/// happens to the file (disk full, deleted directory), so the app never
/// blocks on a full pipe; file errors are logged once per streak. A read
/// error other than EINTR ends the task like EOF.
pub fn capture<R>(pipe: R, sink: Arc<LogSink>) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    cache::FileCache::start_janitor(&sink.hub);
    tokio::spawn(async move { pump(pipe, &sink).await })
}

async fn pump<R: AsyncRead + Unpin>(mut pipe: R, sink: &LogSink) {
    // The one buffer of this capture, never reallocated. Between reads it
    // holds the unfinished end of the stream, always fewer than
    // MAX_LINE_BYTES bytes, so a read never makes it hold more than one
    // line piece.
    let mut buf = Vec::with_capacity(MAX_LINE_BYTES);
    loop {
        let room = MAX_LINE_BYTES - buf.len();
        let read = match read_or_flush(&mut pipe, &mut buf, room, sink).await {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(path = %sink.path.display(), error = %e, "cannot read app output");
                break;
            }
        };
        // The new bytes end the buffer (an unfinished line may have been
        // flushed before the read).
        let before = buf.len() - read;
        if let Some(nl) = memrchr(b'\n', &buf[before..]) {
            let complete = before + nl + 1;
            sink.append(&buf[..complete]);
            // Moves the unfinished line (usually short) to the front.
            buf.drain(..complete);
        } else if buf.len() == MAX_LINE_BYTES {
            sink.append(&buf);
            buf.clear();
        }
    }
    sink.finish(buf);
}

/// How long an unfinished line (a prompt, a progress dot) waits for its
/// newline before it is written and sent as it is.
pub const PARTIAL_LINE_WAIT: Duration = Duration::from_millis(100);

/// The next read of `pipe` into `buf`; while `buf` holds an unfinished
/// line, at most [`PARTIAL_LINE_WAIT`]: then that line goes to `sink` as a
/// piece and the wait goes on without a limit.
async fn read_or_flush<R: AsyncRead + Unpin>(
    pipe: &mut R,
    buf: &mut Vec<u8>,
    room: usize,
    sink: &LogSink,
) -> io::Result<usize> {
    if !buf.is_empty() {
        match tokio::time::timeout(
            PARTIAL_LINE_WAIT,
            pipe.read_buf(&mut (&mut *buf).limit(room)),
        )
        .await
        {
            Ok(read) => return read,
            Err(_) => {
                sink.append(buf);
                buf.clear();
            }
        }
    }
    pipe.read_buf(&mut (&mut *buf).limit(MAX_LINE_BYTES)).await
}
