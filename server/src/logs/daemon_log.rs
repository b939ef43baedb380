//! The daemon's own log, `pmdaemond.log`: appended, and rotated like an
//! app's log (size and count bounded), so that an app in a long crash loop
//! cannot grow it without bound. The tracing subscriber writes to it
//! through [`SharedDaemonLog`] (a `Mutex`); nothing here may log (that
//! would re-enter the subscriber). Held to the disk reserve of the app logs
//! ([`DaemonLog::with_reserve`]).
//!
//! Repeated lines are coalesced, as syslog's "last message repeated N
//! times" does, but across interleaved lines: a crash loop alternates
//! `spawned` and `exited`, which never repeat back to back. The first
//! occurrence of a line is written and opens a window (`--log-repeat-window`,
//! 30 s by default); the same line again within it is only counted; when
//! the window closes (checked at every write, by a thread that sleeps
//! until the window of a counted repeat closes, and at shutdown) one
//! summary line says how many were not written. At most [`MAX_TRACKED`]
//! lines of at most [`MAX_TRACKED_BYTES`] each are tracked: memory stays
//! bounded whatever the apps do.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::files;
use super::reserve::{DiskReserve, Writer};
use crate::sync::LockExt;

/// The default size of `pmdaemond.log` before it is rotated.
pub const DEFAULT_MAX_BYTES: u64 = 10 << 20;
/// The default number of rotated copies kept (`.1` .. `.3`).
pub const DEFAULT_MAX_FILES: u32 = 3;
/// The default window in which a repeated line is counted, not written.
pub const DEFAULT_REPEAT_WINDOW: Duration = Duration::from_secs(30);
/// Most distinct lines whose repeats are counted at once; a new line past
/// that closes the window of the oldest.
pub const MAX_TRACKED: usize = 32;
/// Longer lines are always written (and not kept in memory).
pub const MAX_TRACKED_BYTES: usize = 2048;

/// `pmdaemond.log`, rotated at `max_bytes` into `.1` .. `.max_files`.
pub struct DaemonLog {
    path: PathBuf,
    file: File,
    /// Bytes in the current file.
    size: u64,
    max_bytes: u64,
    max_files: u32,
    repeats: Repeats,
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
            repeats: Repeats::new(DEFAULT_REPEAT_WINDOW),
            reserve: None,
        })
    }

    /// How long a repeated line is counted instead of written; zero writes
    /// every line.
    pub fn with_repeat_window(mut self, window: Duration) -> Self {
        self.repeats = Repeats::new(window);
        self
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

    /// Writes `buf` to the file, rotating first when it would not fit.
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        use std::os::fd::AsFd;
        if let Some((reserve, dev)) = &self.reserve {
            let dir = self.path.parent().unwrap_or(&self.path);
            if !reserve.admit(self.file.as_fd(), *dev, dir, buf.len(), Writer::DaemonLog) {
                // Dropped, as app lines are: the state file needs the room.
                return Ok(());
            }
        }
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }

    /// [`Write::write`] at time `now`. tracing's fmt layer writes each
    /// event as one whole line in one call: such a write goes through the
    /// repeat check; anything else (several lines, part of one) is written
    /// as it is.
    pub fn write_at(&mut self, buf: &[u8], now: Instant) -> io::Result<()> {
        self.close_windows(now, false)?;
        match buf.iter().position(|&b| b == b'\n') {
            Some(end) if end + 1 == buf.len() => self.line(buf, now),
            _ => self.append(buf),
        }
    }

    fn line(&mut self, line: &[u8], now: Instant) -> io::Result<()> {
        let Some(parts) = std::str::from_utf8(line).ok().and_then(LineParts::of) else {
            return self.append(line);
        };
        match self.repeats.observe(parts, now) {
            Observed::Repeat => Ok(()),
            Observed::New { closed } => {
                if let Some(summary) = closed {
                    self.append(summary.as_bytes())?;
                }
                self.append(line)
            }
        }
    }

    /// When the earliest window that counted a repeat closes.
    fn next_summary_due(&self) -> Option<Instant> {
        let window = self.repeats.window;
        self.repeats
            .seen
            .iter()
            .filter(|s| s.repeated > 0)
            .map(|s| s.since + window)
            .min()
    }

    /// Writes the summary of every window that has closed by `now` (of
    /// every window with `all`, at shutdown).
    pub fn close_windows(&mut self, now: Instant, all: bool) -> io::Result<()> {
        for summary in self.repeats.close(now, all) {
            self.append(summary.as_bytes())?;
        }
        Ok(())
    }
}

impl Write for DaemonLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_at(buf, Instant::now())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The daemon log as the tracing subscriber and the window closer share
/// it: each write takes the lock for one whole event.
#[derive(Clone)]
pub struct SharedDaemonLog(Arc<Shared>);

struct Shared {
    log: Mutex<DaemonLog>,
    /// Signalled when a write counted a repeat: the closer then has a
    /// summary to write when that window closes.
    counted: Condvar,
}

impl SharedDaemonLog {
    pub fn new(log: DaemonLog) -> Self {
        SharedDaemonLog(Arc::new(Shared {
            log: Mutex::new(log),
            counted: Condvar::new(),
        }))
    }

    /// Starts the thread that writes a window's summary when it closes, so
    /// that a crash loop's count is written even when nothing is logged
    /// after it. It sleeps until a repeat is counted, then until that
    /// window closes: an idle daemon never wakes it.
    pub fn spawn_window_closer(&self) -> io::Result<()> {
        let shared = self.0.clone();
        std::thread::Builder::new()
            .name("pmdaemond-log".into())
            .stack_size(64 << 10)
            .spawn(move || {
                let mut log = shared.log.locked();
                loop {
                    log = match log.next_summary_due() {
                        None => shared
                            .counted
                            .wait(log)
                            .unwrap_or_else(PoisonError::into_inner),
                        Some(due) => {
                            let now = Instant::now();
                            if due <= now {
                                // A failed write is the next event's to report.
                                let _ = log.close_windows(now, false);
                                log
                            } else {
                                shared
                                    .counted
                                    .wait_timeout(log, due - now)
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .0
                            }
                        }
                    };
                }
            })
            .map(drop)
    }

    /// Writes every pending summary (at shutdown, so none is lost).
    pub fn finish(&self) -> io::Result<()> {
        let mut log = self.0.log.locked();
        log.close_windows(Instant::now(), true)?;
        log.flush()
    }
}

impl Write for SharedDaemonLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut log = self.0.log.locked();
        let repeats_before = log.repeats.counted;
        let written = log.write(buf)?;
        if log.repeats.counted != repeats_before {
            self.0.counted.notify_one();
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.log.locked().flush()
    }
}

/// A line as tracing's fmt layer writes it: `TIMESTAMP LEVEL TARGET: TEXT`.
struct LineParts<'a> {
    /// ` INFO pmdaemond::supervisor::instance` (level and target).
    head: &'a str,
    /// The message and its fields, without the newline.
    body: &'a str,
    /// What makes two lines the same: head and body without the
    /// timestamp and without `pid=N`. Each run of a crash loop has a new
    /// pid, so with the pid no `spawned` line would ever repeat; the pid of
    /// a run that already ended is of no use in the log (events and `pmd
    /// describe` have the live one), and the first line of each window is
    /// still written with its pid. Every other field counts: a different
    /// app, id, state, reason or exit code is a different line.
    key: String,
}

impl<'a> LineParts<'a> {
    fn of(line: &'a str) -> Option<Self> {
        if line.len() > MAX_TRACKED_BYTES {
            return None;
        }
        let line = line.strip_suffix('\n').unwrap_or(line);
        let (timestamp, rest) = line.split_once(' ')?;
        if !timestamp.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        let (head, body) = rest.split_once(": ")?;
        let is_pid = |word: &str| {
            word.strip_prefix("pid=")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        };
        let body_key: Vec<&str> = body.split(' ').filter(|w| !is_pid(w)).collect();
        let key = format!("{head}: {}", body_key.join(" "));
        Some(LineParts { head, body, key })
    }
}

/// One tracked line: written at `since`, seen `repeated` more times since.
struct Seen {
    key: String,
    head: String,
    body: String,
    since: Instant,
    repeated: u64,
}

impl Seen {
    /// `TIMESTAMP LEVEL TARGET: message repeated N more times in 30s: TEXT`.
    fn summary(&self, window: Duration) -> String {
        use tracing_subscriber::fmt::format::Writer;
        use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
        let mut timestamp = String::new();
        let _ = SystemTime.format_time(&mut Writer::new(&mut timestamp));
        format!(
            "{timestamp} {}: message repeated {} more times in {}: {}\n",
            self.head,
            self.repeated,
            humantime::format_duration(window),
            self.body
        )
    }
}

enum Observed {
    /// Counted, not to be written.
    Repeat,
    /// To be written, after the summary of a window it closed to make room.
    New { closed: Option<String> },
}

/// The lines whose window is open, oldest first.
struct Repeats {
    window: Duration,
    seen: VecDeque<Seen>,
    /// Repeats counted in this daemon's life (tells a writer that the
    /// window closer has something to wait for).
    counted: u64,
}

impl Repeats {
    fn new(window: Duration) -> Self {
        Repeats {
            window,
            seen: VecDeque::new(),
            counted: 0,
        }
    }

    fn observe(&mut self, line: LineParts<'_>, now: Instant) -> Observed {
        if self.window.is_zero() {
            return Observed::New { closed: None };
        }
        if let Some(seen) = self.seen.iter_mut().find(|s| s.key == line.key) {
            seen.repeated += 1;
            self.counted += 1;
            return Observed::Repeat;
        }
        let closed = match self.seen.len() >= MAX_TRACKED {
            true => self
                .seen
                .pop_front()
                .filter(|oldest| oldest.repeated > 0)
                .map(|oldest| oldest.summary(self.window)),
            false => None,
        };
        self.seen.push_back(Seen {
            key: line.key,
            head: line.head.to_string(),
            body: line.body.to_string(),
            since: now,
            repeated: 0,
        });
        Observed::New { closed }
    }

    /// Ends the windows that closed by `now` (all with `all`): the
    /// summaries of those that counted repeats.
    fn close(&mut self, now: Instant, all: bool) -> Vec<String> {
        let mut summaries = Vec::new();
        while let Some(oldest) = self.seen.front() {
            if !all && now.saturating_duration_since(oldest.since) < self.window {
                break;
            }
            let oldest = self.seen.pop_front().expect("front exists");
            if oldest.repeated > 0 {
                summaries.push(oldest.summary(self.window));
            }
        }
        summaries
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

    /// A line as tracing writes it, at a made-up wall time.
    fn event(level: &str, body: &str) -> String {
        format!("2026-01-01T00:00:00.000000Z {level:>5} pmdaemond::supervisor::instance: {body}\n")
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    /// A crash loop's alternating lines, pid aside, are written once per
    /// window; when it closes, one line per message says how many were
    /// left out.
    #[test]
    fn repeated_lines_are_counted_and_summarized_when_the_window_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pmdaemond.log");
        let mut log = DaemonLog::open(&path, 1 << 20, 1)
            .unwrap()
            .with_repeat_window(Duration::from_secs(30));
        let t0 = Instant::now();
        for n in 0..100u64 {
            let now = t0 + Duration::from_millis(n * 10);
            let spawned = event("INFO", &format!("spawned app=loop id=0 pid={}", 1000 + n));
            log.write_at(spawned.as_bytes(), now).unwrap();
            let exited = event(
                "INFO",
                "exited app=loop id=0 state=waiting-restart reason=exit code 1",
            );
            log.write_at(exited.as_bytes(), now).unwrap();
        }
        let text = read(&path);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.contains("pid=1000"),
            "the first is written whole: {text}"
        );
        // The window closes: one summary per message, no more lines.
        log.close_windows(t0 + Duration::from_secs(31), false)
            .unwrap();
        let text = read(&path);
        let summaries: Vec<&str> = text.lines().skip(2).collect();
        assert_eq!(summaries.len(), 2, "{text}");
        assert!(
            summaries[0].contains("INFO pmdaemond::supervisor::instance: message repeated 99 more times in 30s: spawned app=loop id=0 pid=1000"),
            "{text}"
        );
        assert!(
            summaries[1].contains("message repeated 99 more times in 30s: exited app=loop"),
            "{text}"
        );
        // After the window, the next one is written again.
        let again = event("INFO", "spawned app=loop id=0 pid=5000");
        log.write_at(again.as_bytes(), t0 + Duration::from_secs(32))
            .unwrap();
        assert!(read(&path).ends_with(&again));
    }

    /// Only the pid and the timestamp are ignored: another level, target,
    /// app, reason or field value is another line.
    #[test]
    fn lines_that_differ_beyond_the_pid_are_all_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pmdaemond.log");
        let mut log = DaemonLog::open(&path, 1 << 20, 1).unwrap();
        let now = Instant::now();
        let lines = [
            event("INFO", "spawned app=a id=0 pid=1"),
            event("WARN", "spawned app=a id=0 pid=1"),
            event("INFO", "spawned app=b id=1 pid=1"),
            event("INFO", "exited app=a id=0 reason=exit code 1"),
            event("INFO", "exited app=a id=0 reason=exit code 2"),
            event("INFO", "exited app=a id=0 reason=pid=x"),
            "2026-01-01T00:00:00.000000Z  INFO pmdaemond::api: spawned app=a id=0 pid=1\n".into(),
            "not a tracing line\n".into(),
            "not a tracing line\n".into(),
        ];
        for line in &lines {
            log.write_at(line.as_bytes(), now).unwrap();
        }
        assert_eq!(read(&path), lines.concat());
        // Nothing was counted, so closing writes nothing.
        log.close_windows(now, true).unwrap();
        assert_eq!(read(&path), lines.concat());
    }

    /// At most MAX_TRACKED lines are tracked: a new one closes the window
    /// of the oldest, with its summary, and long lines are never kept.
    #[test]
    fn tracking_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pmdaemond.log");
        let mut log = DaemonLog::open(&path, 1 << 20, 1).unwrap();
        let now = Instant::now();
        let first = event("WARN", "first");
        log.write_at(first.as_bytes(), now).unwrap();
        log.write_at(first.as_bytes(), now).unwrap();
        for n in 0..MAX_TRACKED {
            log.write_at(event("INFO", &format!("line {n}")).as_bytes(), now)
                .unwrap();
        }
        assert_eq!(log.repeats.seen.len(), MAX_TRACKED);
        let text = read(&path);
        assert!(
            text.contains(
                "WARN pmdaemond::supervisor::instance: message repeated 1 more times in 30s: first"
            ),
            "{text}"
        );
        let long = event("INFO", &"x".repeat(MAX_TRACKED_BYTES));
        log.write_at(long.as_bytes(), now).unwrap();
        log.write_at(long.as_bytes(), now).unwrap();
        assert_eq!(read(&path).matches(&long).count(), 2);
    }

    /// `--log-repeat-window 0` writes every line; shutdown writes what is
    /// pending.
    #[test]
    fn a_zero_window_writes_every_line_and_finish_writes_pending_summaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pmdaemond.log");
        let line = event("INFO", "same");
        let mut off = DaemonLog::open(&path, 1 << 20, 1)
            .unwrap()
            .with_repeat_window(Duration::ZERO);
        for _ in 0..3 {
            off.write_all(line.as_bytes()).unwrap();
        }
        assert_eq!(read(&path), line.repeat(3));
        drop(off);
        let mut shared = SharedDaemonLog::new(DaemonLog::open(&path, 1 << 20, 1).unwrap());
        for _ in 0..3 {
            shared.write_all(line.as_bytes()).unwrap();
        }
        shared.finish().unwrap();
        let text = read(&path);
        assert!(
            text.ends_with("message repeated 2 more times in 30s: same\n"),
            "{text}"
        );
    }
}
