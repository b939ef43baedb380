//! `pmd export ... -o DIR`: the export's files written into DIR, safely.
//!
//! - DIR is made when missing; DIR itself, and a subdirectory of it the
//!   export writes (a systemd drop-in directory), must not be a symbolic
//!   link. Everything is opened relative to a handle of DIR with
//!   `O_NOFOLLOW`, so a link planted in it is never followed.
//! - A file that is there already is replaced only when an earlier `pmd
//!   export` wrote it (its first line carries [`super::MARKER`]); any
//!   other file, a link or a directory in the way is refused, and then
//!   nothing at all is written: each problem is named.
//! - Each file is written to a new temporary file (`O_EXCL`) and renamed
//!   over its name, so a reader (or a crash) sees the old file or the new
//!   one, never half of one; a rename replaces a link, never follows it.
//!
//! Files are made 0644 (units and manifests hold no secret pmd adds; an
//! `env` value that is a secret is the user's to move into a Secret or a
//! credential). Talks to the file system only.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstatat, mkdirat};

use super::MARKER;

/// Why DIR could not take the export.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "nothing was written to {dir}:\n  {}",
        problems.join("\n  ")
    )]
    Refused { dir: PathBuf, problems: Vec<String> },
}

fn io(path: &Path) -> impl FnOnce(Errno) -> WriteError + '_ {
    move |e| WriteError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// Opens directory `name` under `parent` (or the path itself when
/// `parent` is None) without following a link.
fn open_dir(parent: Option<&OwnedFd>, name: &Path) -> Result<OwnedFd, Errno> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match parent {
        Some(parent) => openat(parent, name, flags, Mode::empty()),
        None => nix::fcntl::open(name, flags, Mode::empty()),
    }
}

/// What is at `name` in `dir`, and whether pmd export may replace it.
fn check(dir: &OwnedFd, name: &str, shown: &Path) -> Option<String> {
    let stat = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::ENOENT) => return None,
        Err(e) => return Some(format!("{}: {e}", shown.display())),
    };
    let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
    if kind == SFlag::S_IFLNK {
        return Some(format!(
            "{} is a symbolic link: pmd export never writes through one; remove it",
            shown.display()
        ));
    }
    if kind != SFlag::S_IFREG {
        return Some(format!(
            "{} is in the way and not a regular file; remove it",
            shown.display()
        ));
    }
    let ours = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()
    .and_then(|fd| {
        use std::io::Read;
        let mut head = [0u8; 256];
        let n = std::fs::File::from(fd).read(&mut head).ok()?;
        let head = String::from_utf8_lossy(&head[..n]).into_owned();
        Some(head.lines().next().unwrap_or_default().contains(MARKER))
    })
    .unwrap_or(false);
    (!ours).then(|| {
        format!(
            "{} exists and was not written by pmd export: move it away, or export into another \
             directory",
            shown.display()
        )
    })
}

/// Writes `files` (relative paths: a name, or one directory and a name)
/// into `dir`; returns the paths written.
pub fn write_all(dir: &Path, files: &[(String, String)]) -> Result<Vec<PathBuf>, WriteError> {
    std::fs::create_dir_all(dir).map_err(|source| WriteError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let root = open_dir(None, dir).map_err(|e| match e {
        Errno::ELOOP | Errno::ENOTDIR => WriteError::Refused {
            dir: dir.to_path_buf(),
            problems: vec![format!(
                "{} is a symbolic link or not a directory: give the directory itself",
                dir.display()
            )],
        },
        e => io(dir)(e),
    })?;
    // Every problem first; then everything, or nothing.
    let mut problems = Vec::new();
    for (relative, _) in files {
        let shown = dir.join(relative);
        let (sub, name) = split(relative);
        match sub {
            None => problems.extend(check(&root, name, &shown)),
            Some(sub) => match open_dir(Some(&root), Path::new(sub)) {
                Ok(fd) => problems.extend(check(&fd, name, &shown)),
                Err(Errno::ENOENT) => {}
                Err(_) => problems.push(format!(
                    "{} is a symbolic link or not a directory; remove it",
                    dir.join(sub).display()
                )),
            },
        }
    }
    if !problems.is_empty() {
        return Err(WriteError::Refused {
            dir: dir.to_path_buf(),
            problems,
        });
    }
    let mut written = Vec::new();
    for (relative, text) in files {
        let shown = dir.join(relative);
        let (sub, name) = split(relative);
        let sub_fd;
        let target: &OwnedFd = match sub {
            None => &root,
            Some(sub) => {
                match mkdirat(&root, sub, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io(&dir.join(sub))(e)),
                }
                sub_fd = open_dir(Some(&root), Path::new(sub)).map_err(io(&dir.join(sub)))?;
                &sub_fd
            }
        };
        replace(target, name, text.as_bytes(), &shown)?;
        written.push(shown);
    }
    Ok(written)
}

/// `a/b` → (Some(a), b); `b` → (None, b).
fn split(relative: &str) -> (Option<&str>, &str) {
    match relative.rsplit_once('/') {
        Some((sub, name)) => (Some(sub), name),
        None => (None, relative),
    }
}

/// Writes `bytes` over `name` in `dir` (a new temporary file, synced,
/// renamed; see `crate::writefile`), 0644.
fn replace(dir: &OwnedFd, name: &str, bytes: &[u8], shown: &Path) -> Result<(), WriteError> {
    crate::writefile::replace_at(dir.as_fd(), name.as_ref(), bytes, 0o644).map_err(|source| {
        WriteError::Io {
            path: shown.to_path_buf(),
            source,
        }
    })
}
