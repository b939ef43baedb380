//! File-system helpers of the log sinks: the directory handle every log
//! file is reached through ([`LogDir`]), rotated file names, removal and
//! reading lines back from the end of a file. No state but the handle;
//! the callers hold the sink's lock.
//!
//! Why a directory handle: a log directory is resolved once, when it is
//! opened (the user's path may go through symbolic links, the daemon's own
//! `logs/` never does), and from then on every open, rename and removal is
//! relative to that handle (`openat`, `renameat`, `unlinkat`) and never
//! follows a link in the final component. Swapping a parent directory for
//! a link later changes nothing for a running sink.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use memchr::{memchr_iter, memrchr};
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, unlinkat};

/// Block size of backwards reads.
const TAIL_BLOCK_BYTES: u64 = 64 * 1024;

/// An open log directory: every file of a sink is reached relative to it.
#[derive(Debug)]
pub(crate) struct LogDir {
    fd: OwnedFd,
    /// What the handle was opened as, with symbolic links resolved: for
    /// messages and for comparing directories.
    path: PathBuf,
    /// (st_dev, st_ino) of the directory.
    id: (u64, u64),
    /// Owner and mode, as `fstat` saw them when it was opened.
    uid: u32,
    mode: u32,
}

impl LogDir {
    /// The daemon's own directory (`$PMDAEMON_HOME/logs`): refused when it
    /// is a symbolic link.
    pub(crate) fn open_own(path: &Path) -> io::Result<LogDir> {
        Self::open_with(path, OFlag::O_NOFOLLOW)
    }

    /// A directory the user named: symbolic links in its path are
    /// followed, once, here; the handle then pins what they led to.
    pub(crate) fn open_resolving(path: &Path) -> io::Result<LogDir> {
        Self::open_with(path, OFlag::empty())
    }

    fn open_with(path: &Path, extra: OFlag) -> io::Result<LogDir> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | extra,
            Mode::empty(),
        )
        .map_err(|e| crate::fds::explain_exhaustion(e.into()))?;
        let st = nix::sys::stat::fstat(&fd)?;
        // The kernel's name for what the handle is: the resolved path.
        let resolved = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap_or_else(|_| path.to_path_buf());
        Ok(LogDir {
            fd,
            path: resolved,
            id: (st.st_dev, st.st_ino),
            uid: st.st_uid,
            mode: st.st_mode,
        })
    }

    /// The directory's path with links resolved, as it was opened.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// (st_dev, st_ino): which directory this is, whatever path led to it.
    pub(crate) fn id(&self) -> (u64, u64) {
        self.id
    }

    pub(crate) fn dev(&self) -> u64 {
        self.id.0
    }

    pub(crate) fn owner_uid(&self) -> u32 {
        self.uid
    }

    pub(crate) fn mode(&self) -> u32 {
        self.mode
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `name` in this directory, for messages.
    pub(crate) fn display(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// Opens `name` for appending (`O_APPEND`: every write lands at the
    /// current end, even after the file was truncated), creating it if
    /// needed, readable by its owner only: app output often carries
    /// secrets.
    ///
    /// A symbolic link at `name` is refused (O_NOFOLLOW), dangling or not:
    /// a daemon that may run as root must not append an app's output to, or
    /// empty, whatever file another user points a link at.
    pub(crate) fn open_append(&self, name: &OsStr) -> io::Result<File> {
        // O_NONBLOCK: a FIFO put at a log path fails to open (ENXIO) rather
        // than block the daemon until something reads it. Regular files and
        // /dev/null ignore the flag.
        let flags = OFlag::O_WRONLY
            | OFlag::O_APPEND
            | OFlag::O_CREAT
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC;
        match openat(self.fd(), name, flags, Mode::from_bits_truncate(0o600)) {
            Ok(fd) => Ok(File::from(fd)),
            Err(nix::errno::Errno::ELOOP) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is a symbolic link; log files are never opened through one (remove \
                     it, or name the real file)",
                    self.display(name).display()
                ),
            )),
            Err(e) => Err(crate::fds::explain_exhaustion(e.into())),
        }
    }

    /// Opens `name` for reading, never through a link; `None` when it does
    /// not exist.
    pub(crate) fn open_read(&self, name: &OsStr) -> io::Result<Option<File>> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        match openat(self.fd(), name, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(nix::errno::Errno::ENOENT) => Ok(None),
            Err(e) => Err(crate::fds::explain_exhaustion(e.into())),
        }
    }

    /// Whether `name` leads to a file: a link counts when its target
    /// exists (only looked at, never opened through).
    pub(crate) fn leads_to_file(&self, name: &OsStr) -> bool {
        nix::sys::stat::fstatat(self.fd(), name, nix::fcntl::AtFlags::empty()).is_ok()
    }

    /// Renames `from` to `to`, both in this directory.
    pub(crate) fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        Ok(renameat(self.fd(), from, self.fd(), to)?)
    }

    /// Removes `name` (a link is removed, never followed); a missing file
    /// is not an error.
    pub(crate) fn remove_if_exists(&self, name: &OsStr) -> io::Result<()> {
        match unlinkat(self.fd(), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Rotates the files of `base`: `.keep` goes, `.1 .. .keep-1` move up
    /// one, and `base` becomes `.1` (a new `base` is the caller's to open).
    /// The oldest goes first, so that no rename below replaces a file: ext4
    /// (auto_da_alloc) flushes a file renamed over another one to disk
    /// synchronously, which would stall the writer at each rotation. A
    /// missing copy (fewer rotations so far) is expected; any other failure
    /// of those renames only means an older file is overwritten sooner.
    /// Fails when `base` itself cannot be renamed.
    pub(crate) fn shift_rotated(&self, base: &OsStr, keep: u32) -> io::Result<()> {
        let _ = self.remove_if_exists(&rotated_name(base, keep));
        for i in (1..keep).rev() {
            let _ = self.rename(&rotated_name(base, i), &rotated_name(base, i + 1));
        }
        self.rename(base, &rotated_name(base, 1))
    }

    /// Removes the rotated files `base.N` with `N > keep`. Scans the
    /// directory rather than counting up, so gaps and files left by a
    /// larger `max_files` are found too.
    pub(crate) fn remove_rotated(&self, base: &OsStr, keep: u32) -> io::Result<()> {
        // The handle's own entry in /proc names the directory it holds, not
        // the path it was opened by: no path is walked again.
        let listing = PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()));
        let entries = match std::fs::read_dir(&listing) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            entries => entries?,
        };
        let base = base.as_bytes();
        let mut first_err = None;
        for entry in entries {
            let name = entry?.file_name();
            let Some(n) = rotation_number(name.as_bytes(), base) else {
                continue;
            };
            if n > u64::from(keep)
                && let Err(e) = self.remove_if_exists(&name)
            {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Splits a log file's path into its directory and its name.
pub(crate) fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok((
            if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            },
            name,
        )),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not name a file", path.display()),
        )),
    }
}

/// Opens `path` for appending through a handle of its directory (see
/// [`LogDir::open_append`]).
pub(super) fn open_append(path: &Path) -> io::Result<File> {
    let (dir, name) = split(path)?;
    LogDir::open_resolving(dir)?.open_append(name)
}

/// `X.log` -> `X.log.N`.
pub(crate) fn rotated_name(base: &OsStr, n: u32) -> OsString {
    let mut name = base.to_owned();
    name.push(format!(".{n}"));
    name
}

/// `X.log` -> `X.log.N`.
#[cfg(test)]
pub(super) fn rotated_path(path: &Path, n: u32) -> PathBuf {
    PathBuf::from(rotated_name(path.as_os_str(), n))
}

/// Rotates `path` (see [`LogDir::shift_rotated`]) through a handle of its
/// directory.
pub(super) fn shift_rotated(path: &Path, keep: u32) -> io::Result<()> {
    let (dir, name) = split(path)?;
    LogDir::open_resolving(dir)?.shift_rotated(name, keep)
}

/// `N` when `name` is `base.N`.
fn rotation_number(name: &[u8], base: &[u8]) -> Option<u64> {
    let digits = name.strip_prefix(base)?.strip_prefix(b".")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The last `n` lines of `file` (`None`: it does not exist), oldest
/// first, without their newlines, reading backwards at most `budget`
/// bytes (which is reduced by what was read). Also says whether the file
/// was read to its start, i.e. whether it holds no more lines than
/// returned. A missing file has no lines. A line cut by the budget is left
/// out.
pub(super) fn tail_lines(
    file: Option<File>,
    n: usize,
    budget: &mut u64,
) -> io::Result<(Vec<Bytes>, bool)> {
    let Some(file) = file else {
        return Ok((Vec::new(), true));
    };
    let len = file.metadata()?.len();
    let mut pos = len;
    // Read backwards, newest block first.
    let mut blocks = Vec::new();
    let mut newlines = 0;
    while pos > 0 && *budget > 0 && newlines < n {
        let step = TAIL_BLOCK_BYTES.min(pos).min(*budget);
        pos -= step;
        *budget -= step;
        let mut block = vec![0; step as usize];
        file.read_exact_at(&mut block, pos)?;
        newlines += memchr_iter(b'\n', &block).count();
        if blocks.is_empty() && block.last() == Some(&b'\n') {
            // The file's final newline ends the last line; it does not
            // start another.
            newlines -= 1;
        }
        blocks.push(block);
    }
    let whole = pos == 0;
    let mut data = Vec::with_capacity((len - pos) as usize);
    for block in blocks.iter().rev() {
        data.extend_from_slice(block);
    }
    if data.is_empty() {
        return Ok((Vec::new(), whole));
    }
    if data.last() == Some(&b'\n') {
        data.pop();
    }
    // One buffer for all the lines returned: slices, no copies.
    let data = Bytes::from(data);
    let mut lines = Vec::with_capacity(n.min(1024));
    let mut end = data.len();
    while lines.len() < n {
        match memrchr(b'\n', &data[..end]) {
            Some(nl) => {
                lines.push(data.slice(nl + 1..end));
                end = nl;
            }
            None => {
                if whole {
                    lines.push(data.slice(..end));
                }
                break;
            }
        }
    }
    lines.reverse();
    Ok((lines, whole))
}
