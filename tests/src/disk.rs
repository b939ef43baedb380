//! A full file system for the full-disk tests: [`fill_disk`] writes a plain
//! file until the file system says ENOSPC, [`free_bytes`] says what is
//! left (see `TestDaemon::new_stopped_on_tmpfs` for a home on its own small
//! tmpfs).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `dir/NAME` until the file system holding `dir` is full (the
/// write fails with ENOSPC), to the last byte; returns the file's path.
/// Panics on any other error.
pub fn fill_disk(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    let chunk = vec![b'x'; 64 * 1024];
    // Large writes first, then smaller ones for what a large one cannot
    // take, down to one byte.
    let mut size = chunk.len();
    while size > 0 {
        match file.write(&chunk[..size]) {
            Ok(0) => size /= 2,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOSPC as i32) => size /= 2,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    path
}

/// Bytes an unprivileged writer could still use on the file system that
/// holds `path`.
pub fn free_bytes(path: &Path) -> u64 {
    let stat = nix::sys::statvfs::statvfs(path)
        .unwrap_or_else(|e| panic!("statvfs {}: {e}", path.display()));
    stat.blocks_available() * stat.fragment_size()
}
