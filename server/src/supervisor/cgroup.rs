//! Exact membership of an instance's processes with cgroup v2: each run of
//! an instance gets its own cgroup, which every process it starts stays in
//! whatever it does (setsid, a cleared environment, a double fork), and is
//! stopped with `cgroup.kill`. Owns the home's cgroup directory and the
//! per-run cgroups in it; talks to the cgroup2 filesystem only. Used by
//! `instance.rs` (spawn, terminate, the exit sweep), `process.rs` (a fresh
//! child starts in its run's cgroup through clone3's `CLONE_INTO_CGROUP`
//! on the directory [`RunCgroup::open`] gives, or, on a kernel before 5.7,
//! is moved in after posix_spawn) and `persistence.rs` (the restore
//! sweep). Where this is
//! not available, the process group plus the marker in the environment
//! (`process::marked`) is the tracking, decided once at daemon start.
//!
//! Layout, under the daemon's own cgroup (from `/proc/self/cgroup`, found
//! on the cgroup2 mount from `/proc/self/mountinfo`: pure v2 at
//! `/sys/fs/cgroup`, hybrid at `/sys/fs/cgroup/unified`):
//!
//! ```text
//! <daemon's cgroup>/pmdaemon-<16 hex digits>/i<ID>-<serial>
//! ```
//!
//! The per-home directory is named by a hash (FNV-1a, 64 bits: stable
//! across builds, unlike std's hasher) of the canonical home: a home path
//! may be longer than a cgroup name may be and has slashes, two daemons of
//! different homes in one cgroup (the tests run many) never share it, and
//! the next daemon of the same home, started in the same cgroup, finds what
//! the previous one left there (the restore sweep). One cgroup per run,
//! not per instance, so that what a run that exited leaves behind is swept
//! in the background while the next run already starts in a fresh one; the
//! serial counts runs in this daemon's life, and a name still taken by a
//! previous life's cgroup is skipped. No controller is enabled anywhere:
//! membership is all the daemon needs, and the daemon's own cgroup may then
//! hold the daemon and these children at once. The daemon never moves
//! itself. Starting a child in a cgroup, like writing to `cgroup.procs`,
//! needs write access to the daemon's own cgroup (root, or a delegated
//! subtree: systemd's `Delegate=yes`, a user session's `user@.service`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

/// Why the daemon tracks apps by process group and marker instead.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("no cgroup2 file system is mounted")]
    NoCgroup2,
    #[error("the daemon's cgroup v2 is not in /proc/self/cgroup")]
    NoOwnCgroup,
    #[error("the daemon's cgroup {0} is not under the cgroup2 mount")]
    OutsideMount(String),
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} has no cgroup.kill (needs Linux 5.14 or later)")]
    NoKill(PathBuf),
    #[error("cannot move processes through {path}: {source}")]
    NotWritable {
        path: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
}

/// How an instance's processes are tracked: `ProcessInfo.tracking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracking {
    Cgroup,
    ProcessGroup,
}

/// This home's cgroup directory: where every run's cgroup is made.
#[derive(Debug)]
pub struct Tree {
    dir: PathBuf,
    /// Runs started in this daemon's life, for the run cgroups' names.
    serial: AtomicU64,
}

/// The cgroup of one run of an instance.
#[derive(Debug)]
pub struct RunCgroup {
    dir: PathBuf,
}

/// A run cgroup a previous daemon life left in this home's directory.
#[derive(Debug)]
pub struct Stale {
    pub cgroup: RunCgroup,
    /// The instance it ran, from its name.
    pub id: Option<u32>,
}

impl Tree {
    /// Finds the daemon's own cgroup v2, makes this home's directory in it
    /// and checks that the daemon can move processes into it and kill them
    /// there. `home` must exist.
    pub fn detect(home: &Path) -> Result<Tree, Unavailable> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let own = own_cgroup(&own).ok_or_else(|| {
            if cgroup2_mounts(&mountinfo).is_empty() {
                Unavailable::NoCgroup2
            } else {
                Unavailable::NoOwnCgroup
            }
        })?;
        let own_dir = own_dir(&mountinfo, own)?;
        // Moving a process needs write access to cgroup.procs of the common
        // ancestor of where it is and where it goes: the daemon's cgroup.
        let procs = own_dir.join("cgroup.procs");
        nix::unistd::access(&procs, nix::unistd::AccessFlags::W_OK).map_err(|source| {
            Unavailable::NotWritable {
                path: procs.clone(),
                source,
            }
        })?;
        let home = home.canonicalize().unwrap_or_else(|_| home.to_path_buf());
        let dir = own_dir.join(home_dir_name(&home));
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(Unavailable::Create { path: dir, source }),
        }
        if !dir.join("cgroup.kill").exists() {
            let _ = std::fs::remove_dir(&dir);
            return Err(Unavailable::NoKill(dir));
        }
        Ok(Tree {
            dir,
            serial: AtomicU64::new(0),
        })
    }

    /// This home's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh, empty cgroup for a run of instance `id`.
    pub fn create(&self, id: u32) -> std::io::Result<RunCgroup> {
        loop {
            let serial = self.serial.fetch_add(1, Ordering::Relaxed);
            let dir = self.dir.join(run_name(id, serial));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(RunCgroup { dir }),
                // A previous life's, not swept yet: take the next serial.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The run cgroups in this home's directory now. Called at daemon start
    /// before anything runs, they are all a previous life's.
    pub fn stale(&self) -> Vec<Stale> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| Stale {
                id: e.file_name().to_str().and_then(run_id),
                cgroup: RunCgroup { dir: e.path() },
            })
            .collect()
    }

    /// Removes this home's directory if it is empty (daemon shutdown).
    pub fn remove(&self) {
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            tracing::debug!(dir = %self.dir.display(), error = %e, "cgroup directory kept");
        }
    }
}

impl RunCgroup {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its directory, opened for clone3's `CLONE_INTO_CGROUP`.
    pub fn open(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECTORY)
            .open(&self.dir)
            .map(std::os::fd::OwnedFd::from)
    }

    /// Moves `pid` (and only it: its threads go along, not its children)
    /// into this cgroup. A process that is already gone is no error.
    pub fn adopt(&self, pid: u32) -> std::io::Result<()> {
        let mut procs = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))?;
        match procs.write_all(pid.to_string().as_bytes()) {
            Err(e) if e.raw_os_error() == Some(nix::libc::ESRCH) => Ok(()),
            other => other,
        }
    }

    /// The processes in it now.
    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Whether any process is in it; a cgroup that is gone is empty.
    pub fn populated(&self) -> bool {
        std::fs::read_to_string(self.dir.join("cgroup.events"))
            .ok()
            .and_then(|text| populated(&text))
            .unwrap_or(false)
    }

    /// Sends `signal` to every process in it: the graceful stop, before
    /// `cgroup.kill`. A pid read here may exit before the signal; the
    /// window is as narrow as killpg's.
    pub fn signal_all(&self, signal: Signal) {
        for pid in self.pids() {
            if let Ok(raw) = i32::try_from(pid)
                && raw > 1
            {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), signal);
            }
        }
    }

    /// SIGKILLs every process in it, including those that fork meanwhile
    /// (`cgroup.kill`).
    pub fn kill(&self) {
        let written = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.kill"))
            .and_then(|mut f| f.write_all(b"1"));
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(cgroup = %self.dir.display(), error = %e, "cannot write cgroup.kill")
            }
        }
    }

    /// Waits until no process is left in it, up to `deadline`. Returns
    /// whether it is empty.
    pub async fn wait_empty(&self, deadline: Instant) -> bool {
        let mut pause = Duration::from_millis(2);
        loop {
            if !self.populated() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Ends everything in it and removes it: `signal` to each process, up
    /// to `grace` for them to go, then `cgroup.kill`, then a bounded wait
    /// for it to be empty. A cgroup that cannot be removed (a process stuck
    /// in the kernel) is left for the next daemon's restore sweep.
    pub async fn end(self, signal: Signal, grace: Duration) {
        if self.populated() {
            self.signal_all(signal);
            if !self.wait_empty(Instant::now() + grace).await {
                self.kill();
                self.wait_empty(Instant::now() + KILL_WAIT).await;
            }
        }
        self.rmdir();
    }

    /// `cgroup.kill` now, a bounded wait, removal: after the graceful stop
    /// went elsewhere (terminate's deadline has passed).
    pub async fn kill_and_remove(self) {
        if self.populated() {
            self.kill();
            self.wait_empty(Instant::now() + KILL_WAIT).await;
        }
        self.rmdir();
    }

    /// Removes it unused (a spawn that failed, a process that could not
    /// be moved in).
    pub fn discard(self) {
        self.rmdir();
    }

    fn rmdir(&self) {
        match std::fs::remove_dir(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(cgroup = %self.dir.display(), error = %e, "cannot remove cgroup")
            }
        }
    }
}

/// How long a SIGKILLed cgroup may take to empty (exit of every process)
/// before the daemon gives up waiting on it.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// The name of this home's directory: `pmdaemon-` and the FNV-1a hash of
/// the canonical home, in 16 hex digits.
pub fn home_dir_name(canonical_home: &Path) -> String {
    format!("pmdaemon-{}", pmdaemon_proto::home_hash(canonical_home))
}

/// This home's cgroup directory as the daemon would make it, without
/// making it: for tests and tools that clean up after a daemon.
pub fn home_dir_of(home: &Path) -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own_dir = own_dir(&mountinfo, own_cgroup(&own)?).ok()?;
    let home = home.canonicalize().ok()?;
    Some(own_dir.join(home_dir_name(&home)))
}

/// `i<ID>-<serial>`.
fn run_name(id: u32, serial: u64) -> String {
    format!("i{id}-{serial}")
}

/// The instance id in a run cgroup's name.
fn run_id(name: &str) -> Option<u32> {
    let (id, serial) = name.strip_prefix('i')?.split_once('-')?;
    serial.parse::<u64>().ok()?;
    id.parse().ok()
}

/// The daemon's cgroup v2 path from `/proc/self/cgroup` (the `0::/path`
/// line).
fn own_cgroup(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::trim)
        .filter(|p| p.starts_with('/'))
}

/// The directory of cgroup `own` (a path from the cgroup2 root as this
/// process sees it) on the first cgroup2 mount that shows it.
fn own_dir(mountinfo: &str, own: &str) -> Result<PathBuf, Unavailable> {
    let mounts = cgroup2_mounts(mountinfo);
    if mounts.is_empty() {
        return Err(Unavailable::NoCgroup2);
    }
    mounts
        .into_iter()
        .find_map(|(root, point)| {
            let rest = if root == "/" {
                own
            } else {
                own.strip_prefix(root.as_str())
                    .filter(|r| r.is_empty() || r.starts_with('/'))?
            };
            let rest = rest.trim_start_matches('/');
            Some(if rest.is_empty() {
                point
            } else {
                point.join(rest)
            })
        })
        .ok_or_else(|| Unavailable::OutsideMount(own.to_owned()))
}

/// (root in the file system, mount point) of each cgroup2 mount in
/// `/proc/self/mountinfo`, in its order.
fn cgroup2_mounts(mountinfo: &str) -> Vec<(String, PathBuf)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER
            let (left, right) = line.split_once(" - ")?;
            if right.split_whitespace().next()? != "cgroup2" {
                return None;
            }
            let fields: Vec<&str> = left.split_whitespace().collect();
            Some((
                unescape(fields.get(3)?),
                PathBuf::from(unescape(fields.get(4)?)),
            ))
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(code) = bytes
                .get(i + 1..i + 4)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        {
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `populated` line of `cgroup.events`.
fn populated(events: &str) -> Option<bool> {
    events
        .lines()
        .find_map(|l| match l.strip_prefix("populated ")? {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const PURE: &str = "\
22 1 0:21 / / rw - ext4 /dev/sda1 rw
30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn the_cgroup2_mount_is_found_in_hybrid_and_pure_layouts() {
        assert_eq!(
            own_dir(HYBRID, "/").unwrap(),
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        assert_eq!(
            own_dir(
                PURE,
                "/user.slice/user-1000.slice/user@1000.service/app.slice/pmd.service"
            )
            .unwrap(),
            PathBuf::from(
                "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/pmd.service"
            )
        );
        assert!(matches!(
            own_dir("22 1 0:21 / / rw - ext4 /dev/sda1 rw\n", "/"),
            Err(Unavailable::NoCgroup2)
        ));
    }

    #[test]
    fn a_mount_of_a_subtree_is_used_only_for_cgroups_under_it() {
        let info = "50 22 0:26 /system.slice /mnt/cg\\040x rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            own_dir(info, "/system.slice/pmd.service").unwrap(),
            PathBuf::from("/mnt/cg x/pmd.service")
        );
        assert_eq!(
            own_dir(info, "/system.slice").unwrap(),
            PathBuf::from("/mnt/cg x")
        );
        assert!(matches!(
            own_dir(info, "/system.slicey"),
            Err(Unavailable::OutsideMount(_))
        ));
    }

    #[test]
    fn the_own_cgroup_is_the_v2_line() {
        let text = "9:name=systemd:/\n4:memory:/process_api/17\n0::/a/b\n";
        assert_eq!(own_cgroup(text), Some("/a/b"));
        assert_eq!(own_cgroup("4:memory:/x\n"), None);
        assert_eq!(own_cgroup("0::\n"), None);
    }

    #[test]
    fn populated_is_read_from_cgroup_events() {
        assert_eq!(populated("populated 1\nfrozen 0\n"), Some(true));
        assert_eq!(populated("populated 0\nfrozen 0\n"), Some(false));
        assert_eq!(populated("frozen 0\n"), None);
    }

    #[test]
    fn names_are_stable_distinct_and_parsed_back() {
        // FNV-1a of the empty string is its offset basis: the hash is the
        // documented one, not a build's.
        assert_eq!(home_dir_name(Path::new("")), "pmdaemon-cbf29ce484222325");
        let a = home_dir_name(Path::new("/home/a/.pmdaemon"));
        assert_eq!(a, home_dir_name(Path::new("/home/a/.pmdaemon")));
        assert_ne!(a, home_dir_name(Path::new("/home/b/.pmdaemon")));
        assert_eq!(a.len(), "pmdaemon-".len() + 16);
        assert_eq!(run_name(12, 7), "i12-7");
        assert_eq!(run_id("i12-7"), Some(12));
        assert_eq!(run_id("i12"), None);
        assert_eq!(run_id("x12-7"), None);
        assert_eq!(run_id("i-7"), None);
    }
}
