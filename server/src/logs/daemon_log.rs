//! The daemon's own log, `pmdaemond.log`: appended, and rotated like an
//! app's log (size and count bounded), so that an app in a long crash loop
//! cannot grow it without bound. The tracing subscriber writes to it
//! through a `Mutex`; nothing here may log (that would re-enter the
//! subscriber). Held to the disk reserve of the app logs
//! ([`DaemonLog::with_reserve`]).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::files;
use super::reserve::{DiskReserve, Writer};

/// The default size of `pmdaemond.log` before it is rotated.
pub const DEFAULT_MAX_BYTES: u64 = 10 << 20;
/// The default number of rotated copies kept (`.1` .. `.3`).
pub const DEFAULT_MAX_FILES: u32 = 3;

/// `pmdaemond.log`, rotated at `max_bytes` into `.1` .. `.max_files`.
pub struct DaemonLog {
    path: PathBuf,
    file: File,
    /// Bytes in the current file.
    size: u64,
    max_bytes: u64,
    max_files: u32,
    /// The disk reserve, and the file system (st_dev) of the file.
    reserve: Option<(Arc<DiskReserve>, u64)>,
}

impl DaemonLog {
    /// Opens (creates, mode 0600) `path` for appending.
    pub fn open(path: &Path, max_bytes: u64, max_files: u32) -> io::Result<Self> {
        let file = files::open_append(path)?;
        let size = file.metadata()?.len();
        Ok(DaemonLog {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes,
            max_files,
            reserve: None,
        })
    }

    /// Drops writes while the file system of the log is under `reserve`
    /// (once the warning of the pause is written: see `reserve`).
    pub fn with_reserve(mut self, reserve: Arc<DiskReserve>) -> io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let dev = self.file.metadata()?.dev();
        self.reserve = Some((reserve, dev));
        Ok(self)
    }

    /// The oldest copy goes, the others move up one, the file becomes
    /// `.1`, and a new one starts. When a rename fails, the file is
    /// truncated instead: the disk stays bounded, at the price of its
    /// lines.
    fn rotate(&mut self) -> io::Result<()> {
        if self.max_files > 0 && files::shift_rotated(&self.path, self.max_files).is_ok() {
            self.file = files::open_append(&self.path)?;
            self.size = 0;
            return Ok(());
        }
        self.file.set_len(0)?;
        self.size = 0;
        Ok(())
    }
}

impl Write for DaemonLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use std::os::fd::AsFd;
        if let Some((reserve, dev)) = &self.reserve {
            let dir = self.path.parent().unwrap_or(&self.path);
            if !reserve.admit(self.file.as_fd(), *dev, dir, buf.len(), Writer::DaemonLog) {
                // Dropped, as app lines are: the state file needs the room.
                return Ok(buf.len());
            }
        }
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past its size the log moves to `.1`, `.1` to `.2`...; no more than
    /// `max_files` copies are kept and no file grows past the limit.
    #[test]
    fn the_daemon_log_rotates_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pmdaemond.log");
        let mut log = DaemonLog::open(&path, 1024, 2).unwrap();
        let line = [b'x'; 99];
        for n in 0..100 {
            log.write_all(&line).unwrap();
            log.write_all(format!("{n}\n").as_bytes()).unwrap();
        }
        let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).ok();
        for p in [
            path.clone(),
            files::rotated_path(&path, 1),
            files::rotated_path(&path, 2),
        ] {
            let n = len(&p).unwrap_or_else(|| panic!("{} is missing", p.display()));
            assert!(n <= 1024, "{} holds {n} bytes", p.display());
        }
        assert_eq!(len(&files::rotated_path(&path, 3)), None);
        // The newest line is in the live file.
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("99\n"));
    }

    /// Reopened, it counts what the file already holds.
    #[test]
    fn a_reopened_log_counts_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pmdaemond.log");
        std::fs::write(&path, vec![b'y'; 1000]).unwrap();
        let mut log = DaemonLog::open(&path, 1024, 1).unwrap();
        log.write_all(&[b'z'; 100]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), vec![b'z'; 100]);
        assert_eq!(
            std::fs::metadata(files::rotated_path(&path, 1))
                .unwrap()
                .len(),
            1000
        );
    }
}
