//! Where a log file the user names (`out_file`/`error_file`) may be, judged
//! on the resolved path and on the directory handle the sink will hold, not
//! on the text of the path: [`place_custom`] opens the directory once and
//! checks who could swap the file under the daemon; [`taken_by`] finds
//! another app's file however the path spells it.
//!
//! Talks to: the supervisor (`check_log_paths`, before an app is placed,
//! answers INVALID_ARGUMENT with these errors) and [`super::LogHub`], which
//! places every custom sink the same way when it opens it, so a directory
//! that became unsafe since (or since the last daemon) is refused then too.
//!
//! The rule, as sshd's `StrictModes` and systemd's safe path resolution
//! decide it: a directory on the way to a log file (as the user wrote the
//! path, and as it resolves) must belong to root or to the daemon's user,
//! and must not be writable by group or others, unless it has the sticky
//! bit. Anyone else who may write such a directory could put a link (or a
//! directory of links) where the daemon, possibly root, will append to and
//! empty the file. A sticky world-writable directory such as /tmp is
//! allowed, as the kernel's `protected_*` rules allow it: others cannot
//! rename or remove the daemon's files there, but they can create theirs
//! first, so a file that already exists there must belong to the daemon's
//! user (it is opened with O_NOFOLLOW, and the owner is checked again on
//! the open handle). Links along the path must belong to root or the
//! daemon's user too.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::files::{self, LogDir};

/// Why a log path is refused.
#[derive(Debug, thiserror::Error)]
pub enum LogPathError {
    #[error("cannot open the directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{dir} belongs to uid {uid}, neither root nor the daemon's user (uid {me}): its owner \
         could swap the log file for a link to any file the daemon may write; choose a \
         directory of your own"
    )]
    ForeignOwner { dir: PathBuf, uid: u32, me: u32 },
    #[error(
        "{dir} is writable by {who} (mode {mode:04o}) without the sticky bit: anyone who may \
         write it could swap the log file for a link; remove that permission (chmod go-w) or \
         choose another directory"
    )]
    OpenToOthers {
        dir: PathBuf,
        who: &'static str,
        mode: u32,
    },
    #[error(
        "{link} is a symbolic link of uid {uid}, neither root nor the daemon's user (uid {me}); \
         name the real directory"
    )]
    ForeignLink { link: PathBuf, uid: u32, me: u32 },
    #[error(
        "{path} belongs to uid {uid}, in {dir} that others may write: the daemon appends only \
         to its own files there; remove it or choose another name"
    )]
    ForeignFile {
        path: PathBuf,
        dir: PathBuf,
        uid: u32,
    },
    #[error(
        "{path} is a symbolic link; log files are never opened through one (remove it, or name \
         the real file)"
    )]
    Symlink { path: PathBuf },
    #[error("{path} is not a regular file; logs go to files (use {discard} to discard the output)")]
    NotRegular {
        path: PathBuf,
        discard: &'static str,
    },
    #[error("{path} is in the daemon's home ({home}), next to its own files; choose another path")]
    InHome { path: PathBuf, home: PathBuf },
}

impl From<LogPathError> for io::Error {
    fn from(e: LogPathError) -> Self {
        let kind = match &e {
            LogPathError::Dir { source, .. } if source.kind() != io::ErrorKind::NotFound => {
                source.kind()
            }
            _ => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e)
    }
}

/// A custom log file, placed: the directory handle its sink will hold,
/// the file's name in it, and its resolved path.
#[derive(Debug)]
pub(crate) struct Placement {
    pub dir: LogDir,
    pub name: OsString,
    /// The directory's resolved path joined with the name: the same file
    /// always has the same `resolved`, whichever links the user's path
    /// went through.
    pub resolved: PathBuf,
    /// The file, when it exists.
    pub file: Option<FileFacts>,
}

/// What `fstatat` said of an existing log file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileFacts {
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub regular: bool,
}

impl Placement {
    /// Refuses a file that exists and is not a regular one (a FIFO would
    /// block logging, a device or directory break it); the caller lets
    /// /dev/null through before.
    pub(crate) fn check_regular(&self, path: &Path) -> Result<(), LogPathError> {
        match self.file {
            Some(f) if !f.regular => Err(LogPathError::NotRegular {
                path: path.to_path_buf(),
                discard: crate::supervisor::spec::DISCARD,
            }),
            _ => Ok(()),
        }
    }
}

/// Opens the directory of `path` and checks it by the rule of this module
/// (links in the path are followed once, here), refuses the daemon's home
/// (compared by identity, so `.../link-to-home/state.json` is refused like
/// `$PMDAEMON_HOME/state.json`), and looks at the file when it exists: a
/// link, or a stranger's file in a directory others may write, is refused
/// (a non-regular file is [`Placement::check_regular`]'s). A missing
/// directory is created ([`create_missing`]); the file is not.
pub(crate) fn place_custom(path: &Path, home: &Path) -> Result<Placement, LogPathError> {
    let (dir_path, name) = files::split(path).map_err(|source| LogPathError::Dir {
        dir: path.to_path_buf(),
        source,
    })?;
    let me = nix::unistd::geteuid().as_raw();
    // The path as written: each directory a name is looked up in, and each
    // link on the way. Missing components are the open's to report.
    let absolute = std::path::absolute(dir_path).unwrap_or_else(|_| dir_path.to_path_buf());
    for ancestor in absolute.ancestors() {
        let Ok(meta) = std::fs::symlink_metadata(ancestor) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            if meta.uid() != 0 && meta.uid() != me {
                return Err(LogPathError::ForeignLink {
                    link: ancestor.to_path_buf(),
                    uid: meta.uid(),
                    me,
                });
            }
        } else if meta.is_dir() {
            check_dir(ancestor, meta.uid(), meta.mode(), me)?;
        }
    }
    // PM2 makes a missing directory (mkdir -p); so does pmd, only below
    // what the loop above accepted, and never through a link.
    create_missing(&absolute, me)?;
    let dir = LogDir::open_resolving(dir_path).map_err(|source| LogPathError::Dir {
        dir: dir_path.to_path_buf(),
        source,
    })?;
    // The handle itself (what the links led to), then the directories
    // above it as resolved.
    check_dir(dir.path(), dir.owner_uid(), dir.mode(), me)?;
    for ancestor in dir.path().ancestors().skip(1) {
        if let Ok(meta) = std::fs::metadata(ancestor) {
            check_dir(ancestor, meta.uid(), meta.mode(), me)?;
        }
    }
    let resolved = dir.display(name);
    if let Ok(home_meta) = std::fs::metadata(home)
        && (home_meta.dev(), home_meta.ino()) == dir.id()
    {
        return Err(LogPathError::InHome {
            path: path.to_path_buf(),
            home: home.to_path_buf(),
        });
    }
    let file = inspect_file(&dir, name, path, me)?;
    Ok(Placement {
        name: name.to_owned(),
        resolved,
        file,
        dir,
    })
}

/// Mode of a log directory pmd creates: PM2's `mkdir -p`, but not open
/// to others (app output often carries secrets).
pub(crate) const CREATED_DIR_MODE: u32 = 0o750;

/// Creates the missing directories of `dir` (absolute), each with
/// [`CREATED_DIR_MODE`]: from the deepest one that exists (opened once,
/// links followed there: [`place_custom`] has checked the links' owners,
/// and the directory they lead to is checked here, with those above it),
/// each next one is made and opened relative to
/// its parent's handle with `O_NOFOLLOW`, so a link planted in between is
/// refused rather than followed, and each one opened is checked by the
/// rule of this module before anything is made in it.
fn create_missing(dir: &Path, me: u32) -> Result<(), LogPathError> {
    use nix::fcntl::{OFlag, open, openat};
    use nix::sys::stat::{Mode, fstat, mkdirat};
    use std::os::fd::AsRawFd;
    let mut existing = dir;
    let mut missing = Vec::new();
    while std::fs::symlink_metadata(existing).is_err() {
        let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
            return Ok(()); // the root always exists; nothing to do
        };
        missing.push(name);
        existing = parent;
    }
    if missing.is_empty() {
        return Ok(());
    }
    let failed = |at: &Path| {
        let dir = at.to_path_buf();
        move |source: io::Error| LogPathError::Dir { dir, source }
    };
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut fd = open(existing, flags, Mode::empty()).map_err(|e| failed(existing)(e.into()))?;
    // Where the links on the way led (the checks above saw the links'
    // owners, not their targets): that directory and those above it
    // must pass the rule before anything is made in it.
    let resolved = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(failed(existing))?;
    let st = fstat(&fd).map_err(|e| failed(existing)(e.into()))?;
    check_dir(&resolved, st.st_uid, st.st_mode, me)?;
    for ancestor in resolved.ancestors().skip(1) {
        let meta = std::fs::metadata(ancestor).map_err(failed(ancestor))?;
        check_dir(ancestor, meta.uid(), meta.mode(), me)?;
    }
    let mut at = resolved;
    for name in missing.into_iter().rev() {
        at.push(name);
        match mkdirat(&fd, name, Mode::from_bits_truncate(CREATED_DIR_MODE)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(failed(&at)(e.into())),
        }
        fd = match openat(&fd, name, flags | OFlag::O_NOFOLLOW, Mode::empty()) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR) => {
                return Err(failed(&at)(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "it appeared as a symbolic link or a file while the directory was being \
                     made; log directories are never reached through one",
                )));
            }
            Err(e) => return Err(failed(&at)(e.into())),
        };
        // Someone else's directory made first, in a sticky one: refused
        // before anything goes into it.
        let st = fstat(&fd).map_err(|e| failed(&at)(e.into()))?;
        check_dir(&at, st.st_uid, st.st_mode, me)?;
    }
    Ok(())
}

/// The file `name` in `dir` when it exists, refused as [`place_custom`]
/// says.
fn inspect_file(
    dir: &LogDir,
    name: &OsStr,
    path: &Path,
    me: u32,
) -> Result<Option<FileFacts>, LogPathError> {
    use nix::fcntl::AtFlags;
    use nix::sys::stat::{SFlag, fstatat};
    let st = match fstatat(dir.fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(_) => return Ok(None),
    };
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    if kind == SFlag::S_IFLNK {
        return Err(LogPathError::Symlink {
            path: path.to_path_buf(),
        });
    }
    check_file_owner(dir, path, st.st_uid, me)?;
    Ok(Some(FileFacts {
        dev: st.st_dev,
        ino: st.st_ino,
        nlink: st.st_nlink,
        regular: kind == SFlag::S_IFREG,
    }))
}

/// In a directory others may write (sticky, or the check above would have
/// refused it), the file must be the daemon's user's own.
pub(crate) fn check_file_owner(
    dir: &LogDir,
    path: &Path,
    uid: u32,
    me: u32,
) -> Result<(), LogPathError> {
    if dir.mode() & 0o022 != 0 && uid != me {
        return Err(LogPathError::ForeignFile {
            path: path.to_path_buf(),
            dir: dir.path().to_path_buf(),
            uid,
        });
    }
    Ok(())
}

/// A directory the daemon may keep log files in: root's or the daemon
/// user's, and not open to writes of others unless sticky.
fn check_dir(dir: &Path, uid: u32, mode: u32, me: u32) -> Result<(), LogPathError> {
    if uid != 0 && uid != me {
        return Err(LogPathError::ForeignOwner {
            dir: dir.to_path_buf(),
            uid,
            me,
        });
    }
    const STICKY: u32 = 0o1000;
    if mode & 0o022 != 0 && mode & STICKY == 0 {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "group and others",
            (true, false) => "its group",
            _ => "others",
        };
        return Err(LogPathError::OpenToOthers {
            dir: dir.to_path_buf(),
            who,
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

/// The resolved form of a log path in use (see [`Placement::resolved`]):
/// its directory resolved, or the path as it is when that fails (a
/// directory gone since).
fn resolve(path: &Path, dirs: &mut std::collections::HashMap<PathBuf, Option<PathBuf>>) -> PathBuf {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return path.to_path_buf();
    };
    let resolved = dirs
        .entry(dir.to_path_buf())
        .or_insert_with(|| std::fs::canonicalize(dir).ok());
    match resolved {
        Some(d) => d.join(name),
        None => path.to_path_buf(),
    }
}

/// Who already writes the file `placed` names, among `taken` (log paths in
/// use, with who uses them): compared by resolved path, and by identity
/// when the file has other hard links. Each directory of `taken` is
/// resolved once, so this stays linear in `taken`.
pub(crate) fn taken_by<'a>(placed: &Placement, taken: &'a [(PathBuf, String)]) -> Option<&'a str> {
    let mut dirs = std::collections::HashMap::new();
    if let Some((_, user)) = taken
        .iter()
        .find(|(p, _)| resolve(p, &mut dirs) == placed.resolved)
    {
        return Some(user);
    }
    // A file with one link is only ever reached by its one resolved path:
    // only a hard-linked one needs a look at each file in use.
    let file = placed.file?;
    if file.nlink < 2 {
        return None;
    }
    taken
        .iter()
        .find(|(p, _)| {
            std::fs::metadata(p).is_ok_and(|m| m.dev() == file.dev && m.ino() == file.ino)
        })
        .map(|(_, user)| user.as_str())
}
