//! The disk reserve for logs: when the free space of a file system that
//! holds log files falls under the reserve, log writes to it stop (app
//! logs and `pmdaemond.log` alike), so that the state file can still be
//! written when an app floods its log. Lines still reach the in-memory tail
//! and followers. One change is reported when writes stop and one when
//! they resume, above the reserve plus a hysteresis, so that a disk at the
//! edge does not flap.
//!
//! Talks to: each [`super::LogSink`] and the [`super::DaemonLog`], which
//! ask [`DiskReserve::admit`] before each write; `run` in lib.rs, which
//! takes the changes ([`DiskReserve::take_changes`]), logs one warning
//! each and publishes the `logs_paused`/`logs_resumed` events.
//!
//! Cost: free space is asked (`fstatvfs`) at most once per
//! [`DiskReserve`] step of bytes written (an eighth of the reserve, between
//! 4 KiB and 1 MiB) or per second while writes go on, and at most every
//! [`PAUSED_RECHECK`] while they are paused; never per write otherwise.

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::sync::LockExt;

/// The default reserve is the smaller of this...
///
/// 64 MiB holds the state file of thousands of apps (about 1 KiB each),
/// its backup, a dump and a rotation of pmdaemond.log many times over,
/// and is noise on any disk where it is under 1%.
pub const DEFAULT_RESERVE_MAX_BYTES: u64 = 64 << 20;
/// ...and this share of the file system (in percent): on a small one (an
/// SD card, a tmpfs) 64 MiB would stop logs for good on most of it, and
/// 1% still holds a state file of tens of apps on a 2 MB file system.
pub const DEFAULT_RESERVE_PERCENT: u64 = 1;

/// While writes are paused, free space is asked at most this often.
pub const PAUSED_RECHECK: Duration = Duration::from_millis(250);
/// While writes go on, free space is asked at least this often (when
/// something is written): others may fill the disk too.
const ACTIVE_RECHECK: Duration = Duration::from_secs(1);

/// How big the reserve is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveSetting {
    /// The smaller of [`DEFAULT_RESERVE_MAX_BYTES`] and
    /// [`DEFAULT_RESERVE_PERCENT`] of each file system.
    Default,
    /// This many bytes on every file system; 0 turns the reserve off.
    Bytes(u64),
}

/// A pause or a resume of log writes on one file system.
#[derive(Debug, Clone)]
pub struct ReserveChange {
    pub paused: bool,
    /// The file system (st_dev).
    pub dev: u64,
    /// The directory whose write noticed it.
    pub dir: PathBuf,
    pub free_bytes: u64,
    pub reserve_bytes: u64,
    /// Writes resume once this much is free.
    pub resume_bytes: u64,
    /// The instance (id, app name) whose write noticed it; `None` for
    /// pmdaemond.log.
    pub app: Option<(u32, Arc<str>)>,
}

impl std::fmt::Display for ReserveChange {
    /// The warning (or notice) in pmdaemond.log and the event's detail.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dir = self.dir.display();
        let (free, reserve, resume) = (
            kib(self.free_bytes),
            kib(self.reserve_bytes),
            kib(self.resume_bytes),
        );
        if self.paused {
            write!(
                f,
                "log files paused: {free} KiB free on the file system of {dir}, under the \
                 {reserve} KiB log reserve (pmdaemond --log-reserve); log lines are not \
                 written to files there until {resume} KiB are free, followers still get them"
            )
        } else {
            write!(
                f,
                "log files resumed: {free} KiB free on the file system of {dir}, above the \
                 {reserve} KiB log reserve"
            )
        }
    }
}

fn kib(bytes: u64) -> u64 {
    bytes >> 10
}

/// The reserve, shared by every log writer of a daemon.
#[derive(Debug)]
pub struct DiskReserve {
    setting: ReserveSetting,
    /// Per file system (st_dev).
    gates: Mutex<HashMap<u64, Gate>>,
    tx: mpsc::UnboundedSender<ReserveChange>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<ReserveChange>>>,
}

#[derive(Debug, Default)]
struct Gate {
    paused: bool,
    /// The warning of this pause was written to pmdaemond.log: from now on
    /// that log is paused too (it is let through until then, so that the
    /// one warning lands).
    announced: bool,
    /// Written since free space was last asked.
    since_check_bytes: u64,
    checked_at: Option<Instant>,
    /// Free space is asked again after this many bytes.
    step_bytes: u64,
}

/// Who writes.
pub(crate) enum Writer<'a> {
    App { id: u32, name: &'a Arc<str> },
    DaemonLog,
}

impl DiskReserve {
    pub fn new(setting: ReserveSetting) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        Arc::new(DiskReserve {
            setting,
            gates: Mutex::new(HashMap::new()),
            tx,
            rx: Mutex::new(Some(rx)),
        })
    }

    /// The pauses and resumes from now on; `None` after the first call.
    pub fn take_changes(&self) -> Option<mpsc::UnboundedReceiver<ReserveChange>> {
        self.rx.locked().take()
    }

    /// The warning of the pause on `dev` is written: pmdaemond.log pauses
    /// too.
    pub fn announced(&self, dev: u64) {
        if let Some(gate) = self.gates.locked().get_mut(&dev)
            && gate.paused
        {
            gate.announced = true;
        }
    }

    /// Whether `len` bytes may be written to a file of the directory `dir`
    /// (`fd`, on file system `dev`). Asks the file system only now and
    /// then (see the module header).
    pub(crate) fn admit(
        &self,
        fd: BorrowedFd<'_>,
        dev: u64,
        dir: &Path,
        len: usize,
        writer: Writer<'_>,
    ) -> bool {
        if self.setting == ReserveSetting::Bytes(0) {
            return true;
        }
        let len = len as u64;
        let mut gates = self.gates.locked();
        let gate = gates.entry(dev).or_default();
        let now = Instant::now();
        let due = match gate.checked_at {
            None => true,
            Some(at) if gate.paused => now.duration_since(at) >= PAUSED_RECHECK,
            Some(at) => {
                gate.since_check_bytes + len >= gate.step_bytes
                    || now.duration_since(at) >= ACTIVE_RECHECK
            }
        };
        if due && let Some(change) = self.check(gate, fd, dev, dir, len, now, &writer) {
            // Unbounded, but a change only comes with a crossing of the
            // hysteresis band.
            let _ = self.tx.send(change);
        }
        if !gate.paused {
            gate.since_check_bytes += len;
            return true;
        }
        match writer {
            Writer::App { .. } => false,
            Writer::DaemonLog => !gate.announced,
        }
    }

    /// Asks the file system, updates `gate` and says what changed.
    #[allow(clippy::too_many_arguments)]
    fn check(
        &self,
        gate: &mut Gate,
        fd: BorrowedFd<'_>,
        dev: u64,
        dir: &Path,
        len: u64,
        now: Instant,
        writer: &Writer<'_>,
    ) -> Option<ReserveChange> {
        gate.checked_at = Some(now);
        gate.since_check_bytes = 0;
        let Ok(st) = nix::sys::statvfs::fstatvfs(fd) else {
            gate.step_bytes = 1 << 20;
            return None;
        };
        let unit = st.fragment_size();
        let total = st.blocks().saturating_mul(unit);
        let free = st.blocks_available().saturating_mul(unit);
        let reserve = match self.setting {
            ReserveSetting::Default => {
                DEFAULT_RESERVE_MAX_BYTES.min(total / 100 * DEFAULT_RESERVE_PERCENT)
            }
            ReserveSetting::Bytes(bytes) => bytes,
        };
        gate.step_bytes = (reserve / 8).clamp(4 << 10, 1 << 20);
        let resume = resume_bytes(reserve);
        // A file system without blocks (/dev, /proc) has nothing to keep.
        let paused = if total == 0 || reserve == 0 {
            false
        } else if gate.paused {
            free < resume
        } else {
            free.saturating_sub(len) < reserve
        };
        if paused == gate.paused {
            return None;
        }
        gate.paused = paused;
        gate.announced = false;
        Some(ReserveChange {
            paused,
            dev,
            dir: dir.to_path_buf(),
            free_bytes: free,
            reserve_bytes: reserve,
            resume_bytes: resume,
            app: match writer {
                Writer::App { id, name } => Some((*id, Arc::clone(name))),
                Writer::DaemonLog => None,
            },
        })
    }
}

/// Writes resume once the reserve plus a quarter of it (at least 64 KiB)
/// is free: a disk hovering at the reserve does not flap.
pub fn resume_bytes(reserve: u64) -> u64 {
    reserve.saturating_add((reserve / 4).max(64 << 10))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn dir() -> (tempfile::TempDir, std::fs::File) {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::open(dir.path()).unwrap();
        (dir, file)
    }

    /// A reserve larger than any disk pauses at the first write, once;
    /// later writes are dropped without another change, and pmdaemond.log
    /// is let through until the warning is announced.
    #[test]
    fn a_reserve_above_the_free_space_pauses_once() {
        let (d, f) = dir();
        let reserve = DiskReserve::new(ReserveSetting::Bytes(u64::MAX / 2));
        let mut changes = reserve.take_changes().unwrap();
        let name: Arc<str> = Arc::from("app");
        let app = || Writer::App { id: 3, name: &name };
        assert!(!reserve.admit(f.as_fd(), 1, d.path(), 10, app()));
        assert!(!reserve.admit(f.as_fd(), 1, d.path(), 10, app()));
        let change = changes.try_recv().unwrap();
        assert!(change.paused);
        assert_eq!(change.app.as_ref().map(|a| a.0), Some(3));
        assert!(changes.try_recv().is_err(), "a second change");
        assert!(reserve.admit(f.as_fd(), 1, d.path(), 10, Writer::DaemonLog));
        reserve.announced(1);
        assert!(!reserve.admit(f.as_fd(), 1, d.path(), 10, Writer::DaemonLog));
    }

    /// 0 turns the reserve off: everything is admitted, nothing reported.
    #[test]
    fn a_zero_reserve_admits_everything() {
        let (d, f) = dir();
        let reserve = DiskReserve::new(ReserveSetting::Bytes(0));
        let mut changes = reserve.take_changes().unwrap();
        assert!(reserve.admit(f.as_fd(), 1, d.path(), 1 << 30, Writer::DaemonLog));
        assert!(changes.try_recv().is_err());
    }

    /// The default is 64 MiB or 1%, whichever is smaller, and a small
    /// reserve still resumes with some room.
    #[test]
    fn the_hysteresis_has_a_floor() {
        assert_eq!(resume_bytes(64 << 20), 80 << 20);
        assert_eq!(resume_bytes(1000), 1000 + (64 << 10));
    }
}
