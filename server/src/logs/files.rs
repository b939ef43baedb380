//! File-system helpers of the log sinks: opening, rotated file names,
//! removal and reading lines back from the end of a file. No state; the
//! callers hold the sink's lock.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use memchr::{memchr_iter, memrchr};

/// Block size of backwards reads.
const TAIL_BLOCK_BYTES: u64 = 64 * 1024;

/// Opens for appending (`O_APPEND`: every write lands at the current end,
/// even after the file was truncated), creating it if needed, readable by
/// its owner only: app output often carries secrets.
///
/// A symbolic link at `path` is refused (O_NOFOLLOW), dangling or not: a
/// daemon that may run as root must not append an app's output to, or
/// empty, whatever file another user points a link at.
pub(super) fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: a FIFO put at a log path fails to open (ENXIO) rather
    // than block the daemon until something reads it. Regular files and
    // /dev/null ignore the flag.
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is a symbolic link; log files are never opened through one (remove \
                     it, or name the real file)",
                    path.display()
                ),
            ),
            _ => crate::fds::explain_exhaustion(e),
        })
}

/// Like [`open_append`], emptying the file.
pub(super) fn open_append_truncate(path: &Path) -> io::Result<File> {
    let file = open_append(path)?;
    file.set_len(0)?;
    Ok(file)
}

/// `X.log` -> `X.log.N`.
pub(super) fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Rotates the files of `path`: `.keep` goes, `.1 .. .keep-1` move up one,
/// and `path` becomes `.1` (a new `path` is the caller's to open). The
/// oldest goes first, so that no rename below replaces a file: ext4
/// (auto_da_alloc) flushes a file renamed over another one to disk
/// synchronously, which would stall the writer at each rotation. A missing
/// copy (fewer rotations so far) is expected; any other failure of those
/// renames only means an older file is overwritten sooner. Fails when
/// `path` itself cannot be renamed.
pub(super) fn shift_rotated(path: &Path, keep: u32) -> io::Result<()> {
    let _ = remove_if_exists(&rotated_path(path, keep));
    for i in (1..keep).rev() {
        let _ = std::fs::rename(rotated_path(path, i), rotated_path(path, i + 1));
    }
    std::fs::rename(path, rotated_path(path, 1))
}

pub(super) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes the rotated files `X.log.N` with `N > keep`. Scans the
/// directory rather than counting up, so gaps and files left by a larger
/// `max_files` are found too. A missing directory is not an error.
pub(super) fn remove_rotated(path: &Path, keep: u32) -> io::Result<()> {
    let (Some(dir), Some(base)) = (path.parent(), path.file_name()) else {
        return Ok(());
    };
    let base = base.as_encoded_bytes();
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        entries => entries?,
    };
    let mut first_err = None;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(n) = rotation_number(name.as_encoded_bytes(), base) else {
            continue;
        };
        if n > u64::from(keep)
            && let Err(e) = remove_if_exists(&entry.path())
        {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// `N` when `name` is `base.N`.
fn rotation_number(name: &[u8], base: &[u8]) -> Option<u64> {
    let digits = name.strip_prefix(base)?.strip_prefix(b".")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The last `n` lines of the file at `path`, oldest first, without their
/// newlines, reading backwards at most `budget` bytes (which is reduced by
/// what was read). Also says whether the file was read to its start, i.e.
/// whether it holds no more lines than returned. A missing file has no
/// lines. A line cut by the budget is left out.
pub(super) fn tail_lines(
    path: &Path,
    n: usize,
    budget: &mut u64,
) -> io::Result<(Vec<Bytes>, bool)> {
    let file = match File::open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), true)),
        file => file?,
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
