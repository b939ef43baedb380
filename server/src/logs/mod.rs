//! Log capture: owns each instance's log files (`logs/NAME-ID-out.log`,
//! `-err.log`, rotated `.1 .. .N`), the bounded in-memory tail of recent
//! lines, and the daemon-wide broadcast that `StreamLogs` followers
//! subscribe to.
//!
//! Talks to: the supervisor, which opens a [`LogSink`] per instance and
//! stream and hands the child's pipes to [`capture`]; the API, which reads
//! history with [`LogSink::tail`] and follows [`LogHub::subscribe`].
//!
//! Locks: each sink has one `std::sync::Mutex` around its file and ring;
//! it is held only for a write (or a bounded tail read), never across an
//! await. The broadcast never blocks a writer: a slow follower lags and is
//! told how many lines it missed.
//!
//! Data path: [`capture`] reads a pipe in chunks of up to
//! [`MAX_LINE_BYTES`], cuts each chunk after its last newline and hands the
//! complete lines to the sink in one piece, so the file gets one
//! `write(2)` per chunk (per rotation boundary) rather than one per line.
//! Under the sink lock the lines are written to the file, numbered from
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
pub(crate) mod paths;
pub(crate) mod reserve;
mod ring;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// Size at which the file is rotated.
    pub max_bytes: u64,
    /// Rotated files kept (`.1` newest .. `.max_files` oldest).
    pub max_files: u32,
    /// Prefix each line in the file with an RFC 3339 timestamp.
    pub time: bool,
}

/// Shared by every sink: the log directory, the sequence counter, the
/// broadcast sender, the disk reserve and the cache of open log files.
/// Cheap to clone.
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

    /// The file a given instance's stream is written to.
    pub fn path(&self, name: &str, id: u32, stream: Stream) -> PathBuf {
        self.inner.dir_path.join(default_name(name, id, stream))
    }

    /// Opens (appending, creating if needed) the sink for one instance
    /// stream. The supervisor keeps it for the instance's whole life, across
    /// restarts, so the ring and the file survive respawns.
    ///
    /// `path` overrides the default file (an app's `out_file`/`error_file`):
    /// its directory is placed by the rules of [`paths`] (a directory
    /// another user could write is refused, so is the daemon's home) and
    /// held open from then on.
    pub fn open_sink(
        &self,
        name: &str,
        id: u32,
        stream: Stream,
        path: Option<PathBuf>,
        config: LogConfig,
    ) -> std::io::Result<Arc<LogSink>> {
        let (dir, file_name, path) = match path {
            None => (
                Arc::clone(&self.inner.dir),
                OsString::from(default_name(name, id, stream)),
                self.path(name, id, stream),
            ),
            Some(path) => {
                let placed = paths::place_custom(&path, &self.inner.home)?;
                (self.share_dir(placed.dir), placed.name, path)
            }
        };
        let sink = Arc::new(LogSink {
            hub: Arc::clone(&self.inner),
            name: Arc::from(name),
            id,
            stream,
            path,
            dir,
            file_name,
            cached: cache::Entry::default(),
            state: Mutex::new(SinkState::new(config)),
        });
        // A default log file that does not exist yet is created by the
        // first write: many apps never write to one of their streams, and
        // creating a file is the costliest step of starting an app (ext4
        // searches for a free inode). A path the user gave is opened now,
        // so that one that cannot be written is refused at once.
        let custom = !Arc::ptr_eq(&sink.dir, &self.inner.dir);
        if custom || sink.dir.leads_to_file(&sink.file_name) {
            let mut st = sink.lock();
            st.open(&sink)?;
            // A previous run (of an earlier daemon, say) may have ended
            // without a newline.
            let mut last = [b'\n'];
            if st.size > 0
                && let Some(f) = sink.dir.open_read(&sink.file_name)?
            {
                use std::os::unix::fs::FileExt;
                let _ = f.read_at(&mut last, st.size - 1);
            }
            st.line_open = last[0] != b'\n';
            st.run_ended = st.line_open;
        }
        self.inner.cache.register(&sink);
        Ok(sink)
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
fn default_name(name: &str, id: u32, stream: Stream) -> String {
    let safe = pmdaemon_proto::file_safe_name(name);
    format!("{safe}-{id}-{}.log", stream.as_str())
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

/// One instance stream's file plus its in-memory ring of recent lines.
pub struct LogSink {
    hub: Arc<HubInner>,
    name: Arc<str>,
    id: u32,
    stream: Stream,
    /// The current file as the user or the hub named it (for messages);
    /// rotated ones are `path.1 .. path.N`. Never opened by this path:
    /// every file operation goes through `dir`.
    path: PathBuf,
    /// The handle of the file's directory, opened once.
    dir: Arc<LogDir>,
    /// The file's name in `dir`.
    file_name: OsString,
    /// What the open-file cache knows of this sink without its lock.
    cached: cache::Entry,
    /// Held for one chunk's write (file, seq, ring, broadcast) or one tail
    /// read; never across an await.
    state: Mutex<SinkState>,
}

struct SinkState {
    config: LogConfig,
    /// Opened with `O_APPEND`, so a truncation (flush, rotation with
    /// `max_files == 0`) never leaves the handle writing at an old offset.
    /// `None` until the first write for a default log file that did not
    /// exist, after the file was idle (the cache closed it) and after a
    /// rotation could not open the new file; the next write opens (creates)
    /// it through the directory handle.
    file: Option<File>,
    /// The file is a regular one (false for /dev/null): only regular files
    /// are rotated, truncated and held to the disk reserve.
    regular: bool,
    /// Bytes in the current file, as far as this sink knows (it is the
    /// only writer).
    size: u64,
    /// The file ends in the middle of a line (a piece of an over-long line,
    /// or output that waited for its newline too long, was written). No
    /// rotation and no timestamp until that line ends.
    line_open: bool,
    /// A run's output ended there (EOF): if its last line is open, the
    /// next run's output first gets a newline of its own, so two runs never
    /// share a line, while the file keeps exactly what each run wrote.
    run_ended: bool,
    /// Seq of the last line written by this sink (0: none yet).
    last_seq: u64,
    ring: Ring,
    /// In a streak of failed file writes: warn once at its start.
    failing: bool,
    /// Reused to build timestamp-prefixed output.
    scratch: Vec<u8>,
}

impl LogSink {
    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)]
    pub fn config(&self) -> LogConfig {
        self.lock().config
    }

    /// Applies new options from the next write on (e.g. when an app is
    /// restarted with an updated spec). Rotated files beyond a lowered
    /// `max_files` are removed now.
    #[cfg(test)]
    pub fn set_config(&self, config: LogConfig) -> std::io::Result<()> {
        let mut st = self.lock();
        let lowered = config.max_files < st.config.max_files;
        st.config = config;
        if lowered {
            self.dir.remove_rotated(&self.file_name, config.max_files)?;
        }
        Ok(())
    }

    /// The last `lines` lines of the file (oldest first, without newlines)
    /// and the sequence number of the last line written so far; lines with a
    /// higher seq that arrive on the broadcast are new. Reads at most a
    /// bounded amount from the end of the file.
    ///
    /// Lines come from the file, so with `time` on they carry the
    /// timestamp prefix ([`split_time_prefix`] takes it apart). When the
    /// current file holds fewer than `lines` lines (it was just rotated),
    /// the rest come from `.1`. Both reads together stay within
    /// [`TAIL_MAX_READ_BYTES`]; a line cut by that bound is left out.
    pub fn tail(&self, lines: usize) -> std::io::Result<(Vec<Bytes>, u64)> {
        // The lock makes the file contents and `last_seq` one snapshot.
        let st = self.lock();
        let last_seq = st.last_seq;
        if lines == 0 {
            return Ok((Vec::new(), last_seq));
        }
        let mut budget = TAIL_MAX_READ_BYTES;
        let current = self.dir.open_read(&self.file_name)?;
        let (mut out, whole) = files::tail_lines(current, lines, &mut budget)?;
        if out.len() < lines && whole && budget > 0 {
            let older = self
                .dir
                .open_read(&files::rotated_name(&self.file_name, 1))?;
            let (mut before, _) = files::tail_lines(older, lines - out.len(), &mut budget)?;
            before.append(&mut out);
            out = before;
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
    /// handle. The ring is cleared too: a flush means "forget these logs"
    /// (e.g. a leaked secret), so they must not come back through a resume.
    /// Sequence numbers go on.
    pub fn flush(&self) -> std::io::Result<()> {
        let mut st = self.lock();
        st.ring.clear();
        if !st.regular {
            return Ok(()); // /dev/null: nothing to empty
        }
        st.truncate(self)?;
        self.dir.remove_rotated(&self.file_name, 0)
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
        // As the followers see it: a run that ended gets its own newline
        // in the file, not in their lines.
        let was_open = st.line_open && !st.run_ended;
        // Under the disk reserve the file gets nothing (the ring and the
        // followers still do) and keeps its line state.
        if !st.regular || self.admitted(data.len()) {
            if std::mem::take(&mut st.run_ended) && st.line_open {
                let ended = st.write_file(self, b"\n", true);
                st.note_write(self, ended);
                st.line_open = false;
            }
            let was_open = st.line_open;
            let written = if st.config.time {
                let stamp = humantime::format_rfc3339_millis(now).to_string();
                let mut scratch = std::mem::take(&mut st.scratch);
                prefix_lines(&mut scratch, data, stamp.as_bytes(), was_open);
                let written = st.write_file(self, &scratch, was_open);
                scratch.clear();
                scratch.shrink_to(SCRATCH_KEEP_BYTES);
                st.scratch = scratch;
                written
            } else {
                st.write_file(self, data, was_open)
            };
            st.line_open = data.last() != Some(&b'\n');
            st.note_write(self, written);
            self.hub.cache.touch(self);
        }

        // The newline that ends an over-long line, alone, is not a line of
        // its own for followers: they already have every piece of it.
        let body = if was_open && data[0] == b'\n' {
            &data[1..]
        } else {
            data
        };
        self.emit(st, body, timestamp_ms);
    }

    /// Whether the disk reserve lets `len` more bytes into this sink's
    /// file system.
    fn admitted(&self, len: usize) -> bool {
        self.hub.reserve.admit(
            self.dir.fd(),
            self.dir.dev(),
            self.dir.path(),
            len,
            reserve::Writer::App {
                id: self.id,
                name: &self.name,
            },
        )
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
    fn new(config: LogConfig) -> Self {
        SinkState {
            config,
            file: None,
            regular: true,
            size: 0,
            line_open: false,
            run_ended: false,
            last_seq: 0,
            ring: Ring::default(),
            failing: false,
            scratch: Vec::new(),
        }
    }

    /// Opens (creates) the sink's file through its directory handle and
    /// counts it in the open-file cache.
    fn open(&mut self, sink: &LogSink) -> io::Result<()> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let file = match sink.dir.open_append(&sink.file_name) {
            // Out of descriptors: idle log files are the ones the daemon
            // can give back; close the older half of them and try again.
            Err(e) if e.raw_os_error() == Some(nix::libc::EMFILE) => {
                sink.hub.cache.shed(sink);
                sink.dir.open_append(&sink.file_name)?
            }
            opened => opened?,
        };
        let meta = file.metadata()?;
        // On the open handle, so no swap between a check and the open
        // counts: in a directory others may write, only our own file.
        let me = nix::unistd::geteuid().as_raw();
        paths::check_file_owner(&sink.dir, &sink.path, meta.uid(), me)?;
        // Ours, made by an older daemon or by hand with a looser mode.
        if Arc::ptr_eq(&sink.dir, &sink.hub.dir)
            && meta.is_file()
            && meta.permissions().mode() & 0o077 != 0
        {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        self.regular = meta.is_file();
        self.size = meta.len();
        self.close(sink);
        self.file = Some(file);
        sink.hub.cache.opened(sink);
        Ok(())
    }

    /// Closes the file (the next write reopens it).
    fn close(&mut self, sink: &LogSink) {
        if self.file.take().is_some() {
            sink.hub.cache.closed(sink);
        }
    }

    /// Appends `out` (timestamps already added) to the file, rotating
    /// first whenever the next bytes would take it past `max_bytes`.
    /// Rotation happens between lines, so a file starts with a line and is
    /// at most `max_bytes`, or a single longer line, plus the rest of a
    /// line that was open when it filled up; but never more than twice
    /// `max_bytes`: output without newlines (a progress bar, a binary dump)
    /// is cut there, so the disk stays bounded whatever an app writes.
    fn write_file(&mut self, sink: &LogSink, mut out: &[u8], mut open: bool) -> io::Result<()> {
        while !out.is_empty() {
            if self.file.is_none() {
                self.open(sink)?;
            }
            let room = self.config.max_bytes.saturating_sub(self.size);
            let take = if out.len() as u64 <= room {
                out.len()
            } else if let Some(nl) = memrchr(b'\n', &out[..room as usize]) {
                // The lines that fit (room < out.len(), so it fits usize).
                nl + 1
            } else if open || self.size == 0 {
                // Finish the open line, or a line longer than max_bytes
                // gets a fresh file to itself, up to the hard cap.
                let hard_room = self
                    .config
                    .max_bytes
                    .saturating_mul(2)
                    .saturating_sub(self.size);
                if hard_room == 0 {
                    self.rotate(sink)?;
                    continue;
                }
                let line = memchr(b'\n', out).map_or(out.len(), |nl| nl + 1);
                line.min(usize::try_from(hard_room).unwrap_or(usize::MAX))
            } else {
                self.rotate(sink)?;
                continue;
            };
            let file = self.file.as_mut().expect("opened above");
            if let Err(e) = file.write_all(&out[..take]) {
                // Part of it may have landed: ask the file.
                self.size = file.metadata().map_or(self.size, |m| m.len());
                return Err(e);
            }
            self.size += take as u64;
            open = out[take - 1] != b'\n';
            out = &out[take..];
        }
        Ok(())
    }

    /// `X.log` becomes `X.log.1`, `.1` becomes `.2` ..., the oldest
    /// (`.max_files`) is removed; `max_files == 0` just empties `X.log`.
    /// All of it through the directory handle.
    fn rotate(&mut self, sink: &LogSink) -> io::Result<()> {
        // /dev/null (the one non-regular log file allowed) is never renamed
        // or truncated: it just keeps discarding.
        if !self.regular {
            self.size = 0;
            return Ok(());
        }
        let keep = self.config.max_files;
        if keep == 0 {
            return self.truncate(sink);
        }
        if let Err(e) = sink.dir.shift_rotated(&sink.file_name, keep) {
            // Keep the disk bounded even so: lose this file's lines instead.
            tracing::warn!(path = %sink.path.display(), error = %e, "cannot rotate log file, truncating it");
            return self.truncate(sink);
        }
        self.close(sink);
        self.size = 0;
        self.open(sink)
    }

    fn truncate(&mut self, sink: &LogSink) -> io::Result<()> {
        if self.file.is_none() {
            self.open(sink)?;
        }
        if let Some(file) = &self.file {
            file.set_len(0)?;
        }
        self.size = 0;
        Ok(())
    }

    fn note_write(&mut self, sink: &LogSink, result: io::Result<()>) {
        let path = &sink.path;
        match result {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!(path = %path.display(), "writing log file again");
            }
            Ok(()) => {}
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "cannot write log file; lines still reach followers but are \
                     missing from the file until a write succeeds"
                );
            }
            Err(_) => {}
        }
    }
}

/// `out` = `data` with `stamp` and a space before each line, except the
/// first when it continues an open line.
fn prefix_lines(out: &mut Vec<u8>, data: &[u8], stamp: &[u8], open: bool) {
    out.clear();
    let mut start = 0;
    while start < data.len() {
        let end = memchr(b'\n', &data[start..]).map_or(data.len(), |nl| start + nl + 1);
        if !(open && start == 0) {
            out.extend_from_slice(stamp);
            out.push(b' ');
        }
        out.extend_from_slice(&data[start..end]);
        start = end;
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
