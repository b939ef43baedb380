//! [`TestDaemon`]: one real `pmdaemond` on its own temporary
//! `PMDAEMON_HOME`, driven with the real `pmd`: spawning, stopping,
//! restarting and killing the daemon, running `pmd` and reading its JSON,
//! waiting for apps to reach a state, writing scripts into the work dir,
//! and cleaning up every process of the home on drop.
//!
//! Talks to: the `pmdaemond` it spawns (signals, its socket through `pmd`
//! and [`crate::grpc`]), the files of its home (state.json, logs), and the
//! processes of its home (see [`crate::procs`]).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::Instant;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::binaries::binaries;
use crate::command::run_with_timeout;
use crate::fixtures::{HEALTH_SERVER, HTTP_SERVER, python3};
use crate::grpc::{Channel, ProcessManagerClient, connect};
use crate::output::{describe_output, parse_json, pid_of};
use crate::procs::{exe_of, kill_home_processes, pids_with_home};
use crate::wait::{
    DAEMON_STOP_TIMEOUT, PMD_TIMEOUT, POLL_INTERVAL, WAIT, scale, wait_child, wait_for_value,
};

/// `pmdaemond` flags for tests of CPU and memory: a sample every 200 ms
/// (the minimum) instead of every second.
pub const FAST_MONITOR: &[&str] = &["--monitor-interval", "200ms"];

/// One daemon on its own temporary `PMDAEMON_HOME`.
pub struct TestDaemon {
    /// The tmpfs mounted on `home` ([`Self::new_stopped_on_tmpfs`]):
    /// unmounted on drop after every process using it is gone, before the
    /// directory is removed (fields drop in declaration order).
    tmpfs: Option<Tmpfs>,
    /// Removed on drop, after every process using it is gone.
    home: tempfile::TempDir,
    /// Where `pmd` runs and scripts are written (`<home>/work`).
    work: PathBuf,
    /// The daemon this harness spawned, if it is running.
    daemon: Option<Child>,
    /// Counts daemon spawns, to give each its own stderr file.
    spawns: u32,
    /// Extra environment for the daemon (and so its apps).
    daemon_env: Vec<(String, String)>,
    /// Extra `pmdaemond` flags, e.g. [`FAST_MONITOR`].
    daemon_args: Vec<String>,
    /// The open-file limits (soft, hard) the daemon starts with, when not
    /// this process's (`ulimit -n` in the shell that starts it).
    daemon_nofile: Option<(u64, u64)>,
}

impl TestDaemon {
    /// A fresh home with a running daemon that answers `pmd ping`.
    pub fn start() -> Self {
        let mut d = Self::new_stopped();
        d.spawn_daemon();
        d
    }

    /// A fresh home with a running daemon started with the extra `pmdaemond`
    /// flags `args` (kept for later spawns on this home).
    pub fn start_with_args(args: &[&str]) -> Self {
        let mut d = Self::new_stopped();
        d.set_daemon_args(args);
        d.spawn_daemon();
        d
    }

    /// A fresh home with no daemon; [`Self::spawn_daemon`] starts one.
    pub fn new_stopped() -> Self {
        // Both panic on a bad set-up, before anything is spawned.
        binaries();
        scale();
        let home = tempfile::Builder::new()
            .prefix("pmd-e2e-")
            .tempdir()
            .expect("create temp PMDAEMON_HOME");
        let work = home.path().join("work");
        fs::create_dir(&work).expect("create work dir");
        TestDaemon {
            tmpfs: None,
            home,
            work,
            daemon: None,
            spawns: 0,
            daemon_env: Vec::new(),
            daemon_nofile: None,
            daemon_args: Vec::new(),
        }
    }

    /// A fresh home on its own tmpfs of `size_bytes` (for full-disk
    /// tests), with no daemon. `None`, after printing why, when this
    /// process may not mount (not root, or no tmpfs): callers skip.
    pub fn new_stopped_on_tmpfs(size_bytes: u64) -> Option<Self> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let mut d = Self::new_stopped();
        let home = d.home().to_path_buf();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size_bytes},mode=0700"))
            .arg("tmpfs")
            .arg(&home)
            .status();
        match mounted {
            Ok(status) if status.success() => {}
            other => {
                eprintln!(
                    "skipped: cannot mount a tmpfs on {}: {other:?}",
                    home.display()
                );
                return None;
            }
        }
        d.tmpfs = Some(Tmpfs { at: home });
        fs::create_dir(&d.work).expect("create work dir on the tmpfs");
        Some(d)
    }

    /// Adds `key=value` to the environment of daemons spawned from now on.
    /// Starts the next daemons with this soft open-file limit (the hard
    /// one stays this process's), as `ulimit -Sn N; pmdaemond` would.
    pub fn set_daemon_nofile_soft(&mut self, soft: u64) {
        use nix::sys::resource::{Resource, getrlimit};
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        self.daemon_nofile = Some((soft, hard));
    }

    /// Starts the next daemons with both open-file limits at `limit`, so
    /// that the daemon cannot raise its own.
    pub fn set_daemon_nofile_limit(&mut self, limit: u64) {
        self.daemon_nofile = Some((limit, limit));
    }

    pub fn set_daemon_env(&mut self, key: &str, value: &str) {
        self.daemon_env.push((key.to_owned(), value.to_owned()));
    }

    /// Sets the extra `pmdaemond` flags of daemons spawned from now on.
    pub fn set_daemon_args(&mut self, args: &[&str]) {
        self.daemon_args = args.iter().map(|a| (*a).to_owned()).collect();
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The directory `pmd` runs in and scripts live in.
    pub fn work(&self) -> &Path {
        &self.work
    }

    pub fn socket(&self) -> PathBuf {
        pmdaemon_proto::socket_path(self.home())
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.home().join("logs")
    }

    pub fn state_path(&self) -> PathBuf {
        self.home().join("state.json")
    }

    /// state.json as it is on disk now, parsed; panics when it is missing
    /// or not JSON. A `pmd` command that changed apps answers only once its
    /// change is on disk, so right after one this is the daemon's record of
    /// it.
    pub fn state(&self) -> Value {
        let path = self.state_path();
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        parse_json("state.json", &text)
    }

    /// Polls state.json until it parses and satisfies `pred` (given its
    /// text), for changes the daemon makes on its own (a restart after a
    /// crash or a file change, a probe's result): those are written in
    /// short batches, not before anyone is answered. After a `pmd` command,
    /// read [`Self::state`] instead.
    pub fn wait_state(&self, what: &str, mut pred: impl FnMut(&str) -> bool) -> Value {
        wait_for_value(&format!("state.json {what}"), WAIT, || {
            let text = fs::read_to_string(self.state_path()).ok()?;
            let parsed: Value = serde_json::from_str(&text).ok()?;
            pred(&text).then_some(parsed)
        })
    }

    /// Waits until state.json records `pid` as a running instance's.
    pub fn wait_pid_recorded(&self, pid: u32) {
        self.wait_state(&format!("to record pid {pid}"), |s| {
            s.contains(&format!("\"pid\":{pid}")) || s.contains(&format!("\"pid\": {pid}"))
        });
    }

    /// `$PMDAEMON_HOME/pmdaemond.log`, empty if absent.
    pub fn daemon_log(&self) -> String {
        fs::read_to_string(self.home().join("pmdaemond.log")).unwrap_or_default()
    }

    /// Everything the daemons of this home wrote to stderr, in spawn order.
    pub fn daemon_stderr(&self) -> String {
        (1..=self.spawns)
            .filter_map(|n| fs::read_to_string(self.stderr_path(n)).ok())
            .collect::<Vec<_>>()
            .join("")
    }

    fn stderr_path(&self, spawn: u32) -> PathBuf {
        self.home().join(format!("daemon-stderr-{spawn}.txt"))
    }

    /// Pid of the daemon this harness spawned.
    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("no daemon running").id()
    }

    /// Spawns `pmdaemond` in the foreground on this home and waits until
    /// `pmd ping` answers.
    pub fn spawn_daemon(&mut self) {
        assert!(self.daemon.is_none(), "a daemon is already running");
        self.spawns += 1;
        let stderr = fs::File::create(self.stderr_path(self.spawns)).expect("daemon stderr file");
        let mut command = Command::new(&binaries().pmdaemond);
        if let Some((soft, hard)) = self.daemon_nofile {
            use nix::sys::resource::{Resource, setrlimit};
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches nothing
            // shared with the parent.
            unsafe {
                command.pre_exec(move || {
                    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).map_err(std::io::Error::from)
                });
            }
        }
        let child = command
            .args(&self.daemon_args)
            .env(pmdaemon_proto::HOME_ENV, self.home())
            .env("NO_COLOR", "1")
            .envs(self.daemon_env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.work)
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().expect("dup daemon stderr file"))
            .stderr(stderr)
            .spawn()
            .expect("spawn pmdaemond");
        self.daemon = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = WAIT.deadline();
        loop {
            if let Some(status) = self
                .daemon
                .as_mut()
                .and_then(|c| c.try_wait().expect("waitpid"))
            {
                self.daemon = None;
                panic!(
                    "pmdaemond exited with {status} before answering\nstderr:\n{}",
                    self.daemon_stderr()
                );
            }
            if self.socket().exists() && self.pmd(&["ping"]).status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pmdaemond did not answer `pmd ping` within {WAIT:?}\nstderr:\n{}",
                self.daemon_stderr()
            );
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Sends SIGTERM to the daemon and waits for it to exit; returns its
    /// exit status.
    pub fn stop_daemon(&mut self) -> ExitStatus {
        let mut child = self.daemon.take().expect("no daemon running");
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        wait_child(&mut child, WAIT).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pmdaemond did not exit within {WAIT:?} of SIGTERM")
        })
    }

    /// Graceful daemon restart on the same home.
    pub fn restart_daemon(&mut self) {
        let status = self.stop_daemon();
        assert!(
            status.success(),
            "pmdaemond exited with {status} on SIGTERM"
        );
        self.spawn_daemon();
    }

    /// SIGKILLs the daemon (its apps are left behind) and reaps it.
    pub fn kill9_daemon(&mut self) {
        let mut child = self.daemon.take().expect("no daemon running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Waits for the daemon spawned by this harness to exit on its own
    /// (after `pmd kill`), returning its status.
    pub fn wait_daemon_exit(&mut self) -> ExitStatus {
        let mut child = self.daemon.take().expect("no daemon running");
        match wait_child(&mut child, WAIT) {
            Some(status) => status,
            None => {
                self.daemon = Some(child);
                panic!("pmdaemond did not exit within {WAIT:?}")
            }
        }
    }

    /// A `pmd` command with this home, `NO_COLOR=1`, run in the work dir.
    pub fn pmd_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&binaries().pmd);
        cmd.args(args)
            .env(pmdaemon_proto::HOME_ENV, self.home())
            .env("NO_COLOR", "1")
            // The local daemon of this test, whatever the developer's
            // shell or ~/.config says: no PMD_HOST, no current context.
            .env("XDG_CONFIG_HOME", self.work.join(".config"))
            .current_dir(&self.work);
        for name in crate::remote_cli::REMOTE_ENV {
            cmd.env_remove(name);
        }
        cmd
    }

    /// Runs the real `pmd` and returns what it did.
    pub fn pmd(&self, args: &[&str]) -> Output {
        run_with_timeout(&mut self.pmd_command(args), PMD_TIMEOUT)
    }

    /// Runs `pmd`, asserts exit 0 and returns stdout.
    pub fn pmd_ok(&self, args: &[&str]) -> String {
        let out = self.pmd(args);
        assert!(
            out.status.success(),
            "pmd {args:?} failed\n{}",
            describe_output(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `pmd`, asserts the exit code and returns the output.
    pub fn pmd_code(&self, code: i32, args: &[&str]) -> Output {
        let out = self.pmd(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "pmd {args:?}: expected exit {code}\n{}",
            describe_output(&out)
        );
        out
    }

    /// `pmd list -o json`.
    pub fn list_json(&self) -> Vec<Value> {
        match parse_json("pmd list -o json", &self.pmd_ok(&["list", "-o", "json"])) {
            Value::Array(apps) => apps,
            other => panic!("pmd list -o json: expected an array, got {other}"),
        }
    }

    /// `pmd describe TARGET -o json`, as printed.
    pub fn describe_json(&self, target: &str) -> Value {
        parse_json(
            "pmd describe -o json",
            &self.pmd_ok(&["describe", target, "-o", "json"]),
        )
    }

    /// `pmd describe TARGET -o json` of a single-instance app: the object
    /// (unwrapping a one-element array).
    pub fn describe_one(&self, target: &str) -> Value {
        match self.describe_json(target) {
            Value::Array(mut v) => {
                assert_eq!(
                    v.len(),
                    1,
                    "describe {target}: expected one instance: {v:?}"
                );
                v.remove(0)
            }
            obj => obj,
        }
    }

    /// The `pmd list -o json` entry named `name`, if any.
    pub fn app(&self, name: &str) -> Option<Value> {
        self.list_json().into_iter().find(|a| a["name"] == name)
    }

    /// The app's status word, or `None` if it is not listed.
    pub fn status(&self, name: &str) -> Option<String> {
        self.app(name)
            .and_then(|a| a["status"].as_str().map(str::to_owned))
    }

    /// Waits until the app `name` has `status`, returning its list entry.
    pub fn wait_status(&self, name: &str, status: &str) -> Value {
        let deadline = WAIT.deadline();
        loop {
            let app = self.app(name);
            if let Some(app) = app.as_ref().filter(|a| a["status"] == status) {
                return app.clone();
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {WAIT:?} waiting for app {name} to be {status}; last seen: {app:?}"
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits until `name` is online and returns its pid.
    pub fn wait_online(&self, name: &str) -> u32 {
        let app = self.wait_status(name, "online");
        pid_of(&app).unwrap_or_else(|| panic!("online app without a pid: {app}"))
    }

    /// Live processes started by this home's daemons other than the daemons
    /// (and `pmd`) themselves: the apps and their descendants.
    pub fn app_pids(&self) -> Vec<u32> {
        let bins = binaries();
        pids_with_home(self.home())
            .into_iter()
            .filter(|&pid| {
                let exe = exe_of(pid);
                exe.as_deref() != Some(bins.pmdaemond.as_path())
                    && exe.as_deref() != Some(bins.pmd.as_path())
            })
            .collect()
    }

    /// Live `pmdaemond` processes on this home.
    pub fn daemon_pids(&self) -> Vec<u32> {
        let bins = binaries();
        pids_with_home(self.home())
            .into_iter()
            .filter(|&pid| exe_of(pid).as_deref() == Some(bins.pmdaemond.as_path()))
            .collect()
    }

    /// Writes an executable `#!/bin/sh` script into the work dir.
    pub fn write_script(&self, file_name: &str, body: &str) -> PathBuf {
        self.write_executable(file_name, &format!("#!/bin/sh\n{body}\n"))
    }

    /// Writes an executable file with exactly `contents` into the work dir
    /// (`file_name` may have directories, which are created).
    pub fn write_executable(&self, file_name: &str, contents: &str) -> PathBuf {
        let path = self.write_file(file_name, contents);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod script");
        path
    }

    /// A raw gRPC client to this daemon.
    pub async fn client(&self) -> ProcessManagerClient<Channel> {
        connect(&self.socket())
            .await
            .expect("connect to the daemon socket")
    }

    /// Reads a file of the work dir, empty if absent.
    pub fn read_work(&self, file_name: &str) -> String {
        fs::read_to_string(self.work.join(file_name)).unwrap_or_default()
    }

    /// Writes `contents` to `relative` below the work dir (creating its
    /// directories), e.g. an ecosystem file; returns the path.
    pub fn write_file(&self, relative: &str, contents: &str) -> PathBuf {
        let path = self.work.join(relative);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).expect("create directories in the work dir");
        }
        fs::write(&path, contents).expect("write file");
        path
    }

    /// Writes [`HTTP_SERVER`] as an executable run by this machine's
    /// python3 (see [`python3`]).
    pub fn write_http_server(&self, file_name: &str) -> PathBuf {
        self.write_executable(
            file_name,
            &format!("#!{}\n{HTTP_SERVER}", python3().display()),
        )
    }

    /// Writes [`HEALTH_SERVER`] as an executable run by this machine's
    /// python3.
    pub fn write_health_server(&self, file_name: &str) -> PathBuf {
        self.write_executable(
            file_name,
            &format!("#!{}\n{HEALTH_SERVER}", python3().display()),
        )
    }

    /// The `pmd list -o json` entries of app `name`, by instance index.
    pub fn instances(&self, name: &str) -> Vec<Value> {
        let mut rows: Vec<Value> = self
            .list_json()
            .into_iter()
            .filter(|a| a["name"] == name)
            .collect();
        rows.sort_by_key(|a| a["instance"].as_u64());
        rows
    }

    /// Waits until app `name` has exactly `count` instances, all online
    /// with a pid; returns them by instance index.
    pub fn wait_instances_online(&self, name: &str, count: usize) -> Vec<Value> {
        let deadline = WAIT.deadline();
        loop {
            let last = self.instances(name);
            if last.len() == count
                && last
                    .iter()
                    .all(|a| a["status"] == "online" && pid_of(a).is_some())
            {
                return last;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {WAIT:?} waiting for {count} online instances of {name}; last seen: {last:#?}"
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

/// A mounted tmpfs, unmounted on drop.
struct Tmpfs {
    at: PathBuf,
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a test that failed may still hold a file open in it.
        match Command::new("umount").arg("-l").arg(&self.at).status() {
            Ok(status) if status.success() => {}
            other => eprintln!(
                "cannot unmount the tmpfs at {}: {other:?}",
                self.at.display()
            ),
        }
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            if wait_child(&mut child, DAEMON_STOP_TIMEOUT).is_none() {
                eprintln!(
                    "pmdaemond did not exit within {DAEMON_STOP_TIMEOUT:?} of SIGTERM: SIGKILL"
                );
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        kill_home_processes(self.home());
        if thread::panicking() {
            let tail = |s: String| {
                let lines: Vec<&str> = s.lines().collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            };
            eprintln!(
                "--- PMDAEMON_HOME {} ---\n--- daemon stderr (tail) ---\n{}\n--- pmdaemond.log (tail) ---\n{}",
                self.home().display(),
                tail(self.daemon_stderr()),
                tail(self.daemon_log()),
            );
        }
        if std::env::var_os("PMDAEMON_TEST_KEEP").is_some() {
            let path =
                std::mem::replace(&mut self.home, tempfile::tempdir().expect("temp dir")).keep();
            eprintln!("kept PMDAEMON_HOME {}", path.display());
        }
    }
}
