//! `state.reserve`: space set aside on the home's file system so that
//! `state.json` can still be written when something else (app logs, the
//! user) fills the disk. The file is preallocated (`fallocate`, real
//! blocks, not a sparse file); the state writer deletes it when a write
//! fails for want of space and tries again, and makes it again after a
//! later write once the space is back (`store::write_state_with_reserve`).
//!
//! Talks to: the file system only. The writer task in
//! `supervisor/persistence.rs` logs when the reserve is spent or remade.

use std::path::{Path, PathBuf};

/// The reserve's file name in the home.
pub const RESERVE_FILE: &str = "state.reserve";
/// The smallest reserve: a few hundred state files of a small table.
pub const MIN_RESERVE_BYTES: u64 = 256 * 1024;
/// The largest reserve, whatever the state's size.
pub const MAX_RESERVE_BYTES: u64 = 16 * 1024 * 1024;

/// How large the reserve should be for a state file of `state_bytes`:
/// twice that (the temp file and the file it replaces exist at once), at
/// least [`MIN_RESERVE_BYTES`], at most [`MAX_RESERVE_BYTES`].
pub fn reserve_bytes(state_bytes: u64) -> u64 {
    state_bytes
        .saturating_mul(2)
        .clamp(MIN_RESERVE_BYTES, MAX_RESERVE_BYTES)
}

/// A write that failed for want of space (ENOSPC) or of quota (EDQUOT).
pub fn is_out_of_space(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        e.raw_os_error(),
        Some(code) if code == Errno::ENOSPC as i32 || code == Errno::EDQUOT as i32
    )
}

/// The reserve file of one home.
#[derive(Debug, Clone)]
pub struct Reserve {
    path: PathBuf,
}

impl Reserve {
    /// The reserve in directory `home`.
    pub fn in_dir(home: &Path) -> Self {
        Reserve {
            path: home.join(RESERVE_FILE),
        }
    }

    /// Bytes the reserve holds on disk (0 when it is missing).
    pub fn allocated_bytes(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&self.path).map_or(0, |m| m.blocks() * 512)
    }

    /// Makes the reserve hold at least `bytes` on disk; true when it was
    /// made or grown. Only when the file system has room for it twice
    /// over: a reserve that took the last free bytes would be spent again
    /// by the next write, and remade after it, at every write of a nearly
    /// full disk. When the space is not there, nothing is kept of the
    /// attempt (a reserve is whole or as it was).
    pub fn ensure(&self, bytes: u64) -> std::io::Result<bool> {
        use std::os::unix::fs::OpenOptionsExt;
        let before = std::fs::metadata(&self.path).ok().map(|m| m.len());
        let missing = bytes.saturating_sub(self.allocated_bytes());
        if missing == 0 {
            return Ok(false);
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let stat = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
        let available = stat.blocks_available() * stat.fragment_size();
        if available < missing.saturating_mul(2) {
            return Ok(false);
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&self.path)?;
        let len = i64::try_from(bytes).unwrap_or(i64::MAX);
        let allocated =
            match nix::fcntl::fallocate(&file, nix::fcntl::FallocateFlags::empty(), 0, len) {
                Ok(()) => Ok(()),
                // A file system without fallocate: written zeros hold blocks
                // too.
                Err(nix::errno::Errno::EOPNOTSUPP) => write_zeros(&file, bytes),
                Err(e) => Err(std::io::Error::from(e)),
            };
        if let Err(e) = allocated {
            match before {
                None => {
                    let _ = std::fs::remove_file(&self.path);
                }
                Some(len) => {
                    let _ = file.set_len(len);
                }
            }
            return Err(e);
        }
        file.sync_all()?;
        Ok(true)
    }

    /// Deletes the reserve, giving its space back; true when there was
    /// one.
    pub fn release(&self) -> std::io::Result<bool> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn write_zeros(mut file: &std::fs::File, bytes: u64) -> std::io::Result<()> {
    use std::io::{Seek, Write};
    let block = [0u8; 64 * 1024];
    file.seek(std::io::SeekFrom::Start(0))?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_size_is_twice_the_state_within_bounds() {
        assert_eq!(reserve_bytes(0), MIN_RESERVE_BYTES);
        assert_eq!(reserve_bytes(200 * 1024), 400 * 1024);
        assert_eq!(reserve_bytes(u64::MAX), MAX_RESERVE_BYTES);
    }

    #[test]
    fn out_of_space_is_enospc_or_edquot_only() {
        let err = |e: nix::errno::Errno| std::io::Error::from_raw_os_error(e as i32);
        assert!(is_out_of_space(&err(nix::errno::Errno::ENOSPC)));
        assert!(is_out_of_space(&err(nix::errno::Errno::EDQUOT)));
        assert!(!is_out_of_space(&err(nix::errno::Errno::EIO)));
        assert!(!is_out_of_space(&std::io::Error::other("x")));
    }

    #[test]
    fn reserve_is_made_grown_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let reserve = Reserve::in_dir(dir.path());
        assert!(!reserve.release().unwrap());
        assert!(reserve.ensure(MIN_RESERVE_BYTES).unwrap());
        assert!(reserve.allocated_bytes() >= MIN_RESERVE_BYTES);
        assert!(!reserve.ensure(MIN_RESERVE_BYTES).unwrap(), "already there");
        assert!(reserve.ensure(2 * MIN_RESERVE_BYTES).unwrap());
        assert!(reserve.allocated_bytes() >= 2 * MIN_RESERVE_BYTES);
        assert!(reserve.release().unwrap());
        assert!(!reserve.path.exists());
    }
}
