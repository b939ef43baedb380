//! Writing a whole file where a careful installer would: a temporary file
//! in the target directory (O_CREAT|O_EXCL|O_NOFOLLOW, the mode set
//! explicitly, whatever the umask), synced, then renamed over the target,
//! and the directory synced. Nobody sees a half-written file, a kill -9
//! leaves at most a stray `.NAME.*.tmp`, and a symbolic link planted at the
//! target is refused, never written through (a link that appears after the
//! check is replaced by the rename, not followed).
//!
//! Used by `pmd startup --install` (the unit file), `pmd man --dir` and
//! `pmd export -o DIR` (through [`replace_at`], relative to DIR's handle).
//! Talks to the file system only.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, unlinkat};

/// Why a file was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(
        "{path} is a symbolic link (to {target}): pmd does not write through it; remove it if it is \
         not yours, then run this again"
    )]
    Linked { path: PathBuf, target: String },
    #[error("{path} exists and is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What is at `path` without following a link: None when nothing is;
/// a symbolic link or a non-file is an error.
pub fn existing_file(path: &Path) -> Result<Option<std::fs::Metadata>, WriteError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(WriteError::Linked {
            path: path.to_path_buf(),
            target: std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into()),
        }),
        Ok(meta) if !meta.is_file() => Err(WriteError::NotAFile {
            path: path.to_path_buf(),
        }),
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(WriteError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `bytes` to `path` (see the module header) with `mode`.
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> Result<(), WriteError> {
    existing_file(path)?;
    let io = |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file name",
        ))
    })?;
    let dir = std::fs::File::open(dir).map_err(io)?;
    replace_at(dir.as_fd(), name, bytes, mode).map_err(io)
}

/// Writes `bytes` to `name` in the directory `dir` (see the module
/// header) with `mode`. Everything is relative to `dir`'s handle, so a
/// caller that opened it without following links (`pmd export -o DIR`)
/// keeps that guarantee down to the file.
pub fn replace_at(
    dir: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    bytes: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    let mut temp = std::ffi::OsString::from(".");
    temp.push(name);
    temp.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let temp = temp.as_os_str();
    let fd = openat(
        dir,
        temp,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )?;
    let written = (|| {
        let mut file = std::fs::File::from(fd);
        // The umask may have narrowed the mode at creation.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        renameat(dir, temp, dir, name)?;
        nix::unistd::fsync(dir)?;
        Ok(())
    })();
    if written.is_err() {
        let _ = unlinkat(dir, temp, UnlinkatFlags::NoRemoveDir);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_a_file_with_its_mode_and_refuses_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.service");
        replace(&path, b"one", 0o644).unwrap();
        replace(&path, b"two", 0o644).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let link = dir.path().join("b.service");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = replace(&link, b"evil", 0o644).unwrap_err();
        assert!(matches!(err, WriteError::Linked { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        // Nothing left behind: the two files, the victim and the link.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }
}
