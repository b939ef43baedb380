//! One log file on disk and what its writers share: the open handle, its
//! size, rotation, and which writer's line is open at its end. A file has
//! one [`LogFile`] in the daemon however many sinks write it (the
//! instances of an app with `merge_logs`, the two streams of an app's
//! `log_file`): the hub hands out the same one for the same directory and
//! name ([`super::LogHub`]'s registry), and only sinks of one app may
//! share it.
//!
//! Locks: the file's `Mutex<FileState>` is held for one chunk's write (or
//! a flush, or a tail read), never across an await; a sink takes it while
//! holding its own lock (sink, then file: never the other way). Each
//! chunk is whole lines, written in one piece under that lock, so lines
//! of concurrent writers never interleave inside a line; a writer whose
//! line was left open (a piece of an over-long line, a prompt) has it
//! ended with a newline before another writer's line goes in.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use memchr::{memchr, memrchr};

use crate::sync::LockExt;

use super::files::LogDir;
use super::{HubInner, cache, paths, reserve};

/// `open_by` of a line that an earlier run or daemon left open in the file.
pub(super) const PREVIOUS_WRITER: u64 = 0;

/// Which file: its directory's (st_dev, st_ino) and its name there.
pub(super) type FileKey = (u64, u64, OsString);

/// A log file shared by the sinks that write it.
pub(crate) struct LogFile {
    pub(super) hub: Arc<HubInner>,
    /// The app whose file it is: no other app's sink may write it.
    pub(super) app: Arc<str>,
    /// As the user or the hub named it (for messages); rotated ones are
    /// `path.1 .. path.N`. Never opened by this path: every file operation
    /// goes through `dir`.
    pub(super) path: PathBuf,
    /// The handle of the file's directory, opened once.
    pub(super) dir: Arc<LogDir>,
    /// The file's name in `dir`.
    pub(super) name: OsString,
    /// What the open-file cache knows of this file without its lock.
    pub(super) cached: cache::Entry,
    pub(super) state: Mutex<FileState>,
}

pub(super) struct FileState {
    /// Size at which the file is rotated.
    pub(super) max_bytes: u64,
    /// Rotated files kept (`.1` newest .. `.max_files` oldest).
    pub(super) max_files: u32,
    /// Opened with `O_APPEND`, so a truncation (flush, rotation with
    /// `max_files == 0`) never leaves the handle writing at an old offset.
    /// `None` until the first write for a default log file that did not
    /// exist, after the file was idle (the cache closed it) and after a
    /// rotation could not open the new file; the next write opens (creates)
    /// it through the directory handle.
    file: Option<File>,
    /// The file is a regular one: only regular files are rotated,
    /// truncated and held to the disk reserve.
    pub(super) regular: bool,
    /// Bytes in the current file, as far as the daemon knows (it is the
    /// only writer).
    size: u64,
    /// The writer whose line is open at the end of the file (it ends in
    /// the middle of a line): no rotation, and no other writer's line,
    /// until that line ends. [`PREVIOUS_WRITER`] for a line an earlier run
    /// left open.
    pub(super) open_by: Option<u64>,
    /// In a streak of failed file writes: warn once at its start.
    failing: bool,
}

/// Who writes a chunk (for the open line, the reserve and messages).
pub(super) struct Writer<'a> {
    /// Unique per sink in this daemon (never [`PREVIOUS_WRITER`]).
    pub(super) key: u64,
    pub(super) id: u32,
    pub(super) name: &'a Arc<str>,
    /// This writer's own stream has a line open (its last chunk ended
    /// without a newline) and its run did not end since.
    pub(super) line_open: bool,
    /// Its run ended since its last chunk: a line it left open is over.
    pub(super) run_ended: bool,
}

impl LogFile {
    pub(super) fn new(
        hub: &Arc<HubInner>,
        app: &Arc<str>,
        path: PathBuf,
        dir: Arc<LogDir>,
        name: OsString,
        limits: (u64, u32),
    ) -> LogFile {
        LogFile {
            hub: Arc::clone(hub),
            app: Arc::clone(app),
            path,
            dir,
            name,
            cached: cache::Entry::default(),
            state: Mutex::new(FileState {
                max_bytes: limits.0,
                max_files: limits.1,
                file: None,
                regular: true,
                size: 0,
                open_by: None,
                failing: false,
            }),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, FileState> {
        self.state.locked()
    }

    /// Opens the file now and learns whether an earlier run left its last
    /// line open (a file the user named is opened at once, so that one
    /// that cannot be written is refused at once).
    pub(super) fn open_now(&self) -> io::Result<()> {
        let mut st = self.lock();
        st.open(self)?;
        let mut last = [b'\n'];
        if st.size > 0
            && let Some(f) = self.dir.open_read(&self.name)?
        {
            use std::os::unix::fs::FileExt;
            let _ = f.read_at(&mut last, st.size - 1);
        }
        st.open_by = (last[0] != b'\n').then_some(PREVIOUS_WRITER);
        Ok(())
    }

    /// Writes one chunk of `writer` (complete lines, or one piece of an
    /// over-long line), rendered by `render(continuing, body, out)` into
    /// `scratch` (when it says false, `body` goes as it is).
    /// Under the disk reserve nothing is written and the file keeps its
    /// line state.
    pub(super) fn write_chunk(
        &self,
        writer: &Writer<'_>,
        data: &[u8],
        scratch: &mut Vec<u8>,
        render: impl Fn(bool, &[u8], &mut Vec<u8>) -> bool,
    ) {
        let mut st = self.lock();
        if st.regular && !self.admitted(writer, data.len()) {
            return;
        }
        let continuing = writer.line_open && !writer.run_ended && st.open_by == Some(writer.key);
        let mut body = data;
        if st.open_by.is_some() && !continuing {
            // Another writer's line (or an ended run's) is open: end it, so
            // that two lines never share one.
            let ended = st.write_file(self, b"\n", true);
            st.note_write(self, ended);
            st.open_by = None;
            // This writer's own line was cut: the newline that would end
            // it is already there.
            if writer.line_open && !writer.run_ended && body.first() == Some(&b'\n') {
                body = &body[1..];
            }
        }
        if body.is_empty() {
            return;
        }
        // Lines as printed are written from the read buffer, uncopied.
        let out: &[u8] = if render(continuing, body, scratch) {
            scratch
        } else {
            body
        };
        let written = st.write_file(self, out, continuing);
        st.open_by = match out.last() {
            Some(b'\n') => None,
            _ => Some(writer.key),
        };
        st.note_write(self, written);
        self.hub.cache.touch_file(self);
    }

    /// Whether the disk reserve lets `len` more bytes into this file's
    /// file system.
    fn admitted(&self, writer: &Writer<'_>, len: usize) -> bool {
        self.hub.reserve.admit(
            self.dir.fd(),
            self.dir.dev(),
            self.dir.path(),
            len,
            reserve::Writer::App {
                id: writer.id,
                name: writer.name,
            },
        )
    }

    /// Empties the file and removes rotated ones.
    pub(super) fn flush(&self) -> io::Result<()> {
        let mut st = self.lock();
        if !st.regular {
            return Ok(());
        }
        st.truncate(self)?;
        st.open_by = None;
        self.dir.remove_rotated(&self.name, 0)
    }
}

impl fmt::Debug for LogFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileState {
    /// Opens (creates) the file through its directory handle and counts it
    /// in the open-file cache.
    fn open(&mut self, lf: &LogFile) -> io::Result<()> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let file = match lf.dir.open_append(&lf.name) {
            // Out of descriptors: idle log files are the ones the daemon
            // can give back; close the older half of them and try again.
            Err(e) if e.raw_os_error() == Some(nix::libc::EMFILE) => {
                lf.hub.cache.shed(lf);
                lf.dir.open_append(&lf.name)?
            }
            opened => opened?,
        };
        let meta = file.metadata()?;
        // On the open handle, so no swap between a check and the open
        // counts: in a directory others may write, only our own file.
        let me = nix::unistd::geteuid().as_raw();
        paths::check_file_owner(&lf.dir, &lf.path, meta.uid(), me)?;
        // Ours, made by an older daemon or by hand with a looser mode.
        if Arc::ptr_eq(&lf.dir, &lf.hub.dir)
            && meta.is_file()
            && meta.permissions().mode() & 0o077 != 0
        {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        self.regular = meta.is_file();
        self.size = meta.len();
        self.close(lf);
        self.file = Some(file);
        lf.hub.cache.opened(lf);
        Ok(())
    }

    /// Closes the file (the next write reopens it).
    pub(super) fn close(&mut self, lf: &LogFile) {
        if self.file.take().is_some() {
            lf.hub.cache.closed(lf);
        }
    }

    /// Appends `out` (already formatted) to the file, rotating first
    /// whenever the next bytes would take it past `max_bytes`. Rotation
    /// happens between lines, so a file starts with a line and is at most
    /// `max_bytes`, or a single longer line, plus the rest of a line that
    /// was open when it filled up; but never more than twice `max_bytes`:
    /// output without newlines (a progress bar, a binary dump) is cut
    /// there, so the disk stays bounded whatever an app writes.
    fn write_file(&mut self, lf: &LogFile, mut out: &[u8], mut open: bool) -> io::Result<()> {
        while !out.is_empty() {
            if self.file.is_none() {
                self.open(lf)?;
            }
            let room = self.max_bytes.saturating_sub(self.size);
            let take = if out.len() as u64 <= room {
                out.len()
            } else if let Some(nl) = memrchr(b'\n', &out[..room as usize]) {
                // The lines that fit (room < out.len(), so it fits usize).
                nl + 1
            } else if open || self.size == 0 {
                // Finish the open line, or a line longer than max_bytes
                // gets a fresh file to itself, up to the hard cap.
                let hard_room = self.max_bytes.saturating_mul(2).saturating_sub(self.size);
                if hard_room == 0 {
                    self.rotate(lf)?;
                    continue;
                }
                let line = memchr(b'\n', out).map_or(out.len(), |nl| nl + 1);
                line.min(usize::try_from(hard_room).unwrap_or(usize::MAX))
            } else {
                self.rotate(lf)?;
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
    fn rotate(&mut self, lf: &LogFile) -> io::Result<()> {
        // A non-regular file (only /dev/null gets here) is never renamed
        // or truncated: it just keeps discarding.
        if !self.regular {
            self.size = 0;
            return Ok(());
        }
        let keep = self.max_files;
        if keep == 0 {
            return self.truncate(lf);
        }
        if let Err(e) = lf.dir.shift_rotated(&lf.name, keep) {
            // Keep the disk bounded even so: lose this file's lines instead.
            tracing::warn!(path = %lf.path.display(), error = %e, "cannot rotate log file, truncating it");
            return self.truncate(lf);
        }
        self.close(lf);
        self.size = 0;
        self.open(lf)
    }

    fn truncate(&mut self, lf: &LogFile) -> io::Result<()> {
        if self.file.is_none() {
            self.open(lf)?;
        }
        if let Some(file) = &self.file {
            file.set_len(0)?;
        }
        self.size = 0;
        Ok(())
    }

    fn note_write(&mut self, lf: &LogFile, result: io::Result<()>) {
        let path = &lf.path;
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
