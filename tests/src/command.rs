//! Running a command under a deadline: its output captured in files (never
//! pipes), exec retried while the kernel says ETXTBSY, the child killed
//! when the deadline passes.
//!
//! Talks to: child processes it spawns (and only those).

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::Instant;

use crate::wait::{Timeout, WAIT, wait_child};

/// Runs `cmd` with stdout/stderr captured into anonymous files (not pipes,
/// so a process that inherits them, such as an auto-started daemon, cannot
/// hang the caller) and kills it after `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Timeout) -> Output {
    let out = tempfile::tempfile().expect("temp file for stdout");
    let err = tempfile::tempfile().expect("temp file for stderr");
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup stdout file"))
        .stderr(err.try_clone().expect("dup stderr file"));
    let mut child = spawn_retrying_busy(cmd);
    let status = wait_child(&mut child, timeout).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} did not finish within {timeout:?}")
    });
    let read_all = |mut f: fs::File| {
        let mut buf = Vec::new();
        f.seek(SeekFrom::Start(0)).expect("rewind output file");
        f.read_to_end(&mut buf).expect("read output file");
        buf
    };
    Output {
        status,
        stdout: read_all(out),
        stderr: read_all(err),
    }
}

/// Spawns `cmd`, retrying while exec fails with ETXTBSY: an executable that
/// a test has just written may still be open for writing in a child that
/// another test thread forked at that moment (until that child's exec).
pub fn spawn_retrying_busy(cmd: &mut Command) -> Child {
    let deadline = WAIT.div(30).deadline();
    loop {
        match cmd.spawn() {
            Ok(child) => return child,
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && Instant::now() < deadline => {
                // The other child execs within moments; retry soon.
                thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("cannot spawn {cmd:?}: {e}"),
        }
    }
}

/// Convenience: a UTF-8 path as a `&str` for `pmd` argument lists.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}
