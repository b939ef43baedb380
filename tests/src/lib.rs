//! The end-to-end harness: a [`TestDaemon`] runs the real `pmdaemond` on its
//! own temporary `PMDAEMON_HOME` and drives it with the real `pmd` (or raw
//! gRPC over the Unix socket, see [`connect`]).
//!
//! Binaries: `pmdaemond` and `pmd` are taken from the target directory of the
//! running test executable (`target/<profile>/`), never from `PATH`; build
//! them first with `cargo build --workspace`.
//!
//! Cleanup: dropping a [`TestDaemon`] stops its daemon (SIGTERM, then SIGKILL
//! after 10 s) and then SIGKILLs every process whose environment carries this
//! daemon's `PMDAEMON_HOME` (apps inherit it), so no process survives a test,
//! even one that panicked or `kill -9`ed its daemon.
//!
//! Waiting: there are no fixed sleeps; [`wait_for`] polls a condition every
//! 20 ms until a deadline and panics naming what it waited for.
//!
//! Events: [`TestDaemon::events`] runs `pmd events -o json` in the
//! background and hands its lines over as JSON ([`EventStream`]); it only
//! returns once the stream is seen to be live, so no event of the test is
//! missed.
//!
//! Daemon flags: [`TestDaemon::start_with_args`] passes extra flags to
//! `pmdaemond`, e.g. [`FAST_MONITOR`] for CPU and memory samples every
//! 200 ms.
//!
//! Apps as the kernel sees them: [`env_of`], [`cmdline_of`] and [`cwd_of`]
//! read `/proc`, so a test checks what a process really got. Ports:
//! [`free_ports`] gives each test its own block of free TCP ports (tests
//! run in parallel); [`HTTP_SERVER`], run by python3, answers a GET with
//! its instance index, pid and port, read back with [`http_get`];
//! [`HEALTH_SERVER`] is the app of the health-check tests (late to listen,
//! failing on demand).

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;

pub use pmdaemon_proto::v1;
pub use pmdaemon_proto::v1::process_manager_client::ProcessManagerClient;
pub use tonic::transport::Channel;

/// Default patience for a state change: generous, because the suite runs in
/// parallel on small machines.
pub const WAIT: Duration = Duration::from_secs(30);

/// How long a single `pmd` invocation may take before the harness kills it.
pub const PMD_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a daemon gets to exit after SIGTERM before it is SIGKILLed.
const DAEMON_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `pmdaemond` flags for tests of CPU and memory: a sample every 200 ms
/// (the minimum) instead of every second.
pub const FAST_MONITOR: &[&str] = &["--monitor-interval", "200ms"];

/// The app [`TestDaemon::events`] starts and deletes to see that its event
/// stream is live; tests filter events by their own app names.
pub const EVENTS_SYNC_APP: &str = "events-sync";

/// Paths of the binaries under test.
#[derive(Debug)]
pub struct Binaries {
    pub pmdaemond: PathBuf,
    pub pmd: PathBuf,
}

/// The workspace's `pmdaemond` and `pmd`, next to this test executable
/// (`target/<host-tuple>/debug/deps/e2e-HASH` → `target/<host-tuple>/debug/`). Panics with a hint when
/// they have not been built.
pub fn binaries() -> &'static Binaries {
    static BINS: OnceLock<Binaries> = OnceLock::new();
    BINS.get_or_init(|| {
        let exe = std::env::current_exe().expect("path of the test executable");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable lives in target/<profile>/deps/");
        let bins = Binaries {
            pmdaemond: dir.join("pmdaemond"),
            pmd: dir.join("pmd"),
        };
        for bin in [&bins.pmdaemond, &bins.pmd] {
            assert!(
                bin.is_file(),
                "{} is missing: build the workspace first: cargo build --workspace",
                bin.display()
            );
            if let Some(newer) = newer_source(bin) {
                panic!(
                    "{} is older than {}: rebuild first: cargo build --workspace",
                    bin.display(),
                    newer.display()
                );
            }
        }
        bins
    })
}

/// A source file of `bin` modified after it was linked, according to the
/// dep-info file cargo writes next to it (`target/debug/pmd.d`).
fn newer_source(bin: &Path) -> Option<PathBuf> {
    let built = fs::metadata(bin).and_then(|m| m.modified()).ok()?;
    let mut dep_info = bin.as_os_str().to_owned();
    dep_info.push(".d");
    let text = fs::read_to_string(dep_info).ok()?;
    // `target: dep dep ...`, spaces inside paths escaped as `\ `.
    let (_, deps) = text.lines().next()?.split_once(": ")?;
    let deps = deps.replace("\\ ", "\0");
    deps.split_whitespace()
        .map(|d| PathBuf::from(d.replace('\0', " ")))
        .find(|dep| {
            fs::metadata(dep)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t > built)
        })
}

/// Polls `cond` every 20 ms until it returns true; panics after `timeout`
/// saying what was awaited.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    wait_for_value(what, timeout, || cond().then_some(()))
}

/// Polls `probe` every 20 ms until it yields a value; panics after `timeout`
/// saying what was awaited.
pub fn wait_for_value<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// True if `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 follows the parenthesised command name, which may itself
        // contain spaces and parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// Zombie children of `parent`: processes it has not reaped.
pub fn zombie_children(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let mut fields = stat
                    .rsplit_once(')')
                    .map(|(_, r)| r)
                    .unwrap_or("")
                    .split_whitespace();
                fields.next() == Some("Z") && fields.next() == Some(parent.to_string().as_str())
            })
        })
        .collect()
}

/// Pids of live (non-zombie) processes whose environment contains exactly
/// the entry `PMDAEMON_HOME=<home>`.
pub fn pids_with_home(home: &Path) -> Vec<u32> {
    let mut needle = b"PMDAEMON_HOME=".to_vec();
    needle.extend_from_slice(home.as_os_str().as_encoded_bytes());
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|entry| entry == needle))
        })
        .filter(|&pid| pid_alive(pid))
        .collect()
}

/// The executable of `pid`, if it can be read.
pub fn exe_of(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// Parses `pmd ... -o json` output, with the command line in the panic.
pub fn parse_json(what: &str, stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {stdout:?}"))
}

/// Runs a future to completion on a fresh current-thread runtime (for the
/// tests that speak raw gRPC).
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(fut)
}

/// A raw gRPC client over the daemon's Unix socket.
pub async fn connect(
    socket: &Path,
) -> Result<ProcessManagerClient<Channel>, tonic::transport::Error> {
    Ok(ProcessManagerClient::new(connect_channel(socket).await?))
}

/// A gRPC channel over the daemon's Unix socket, for any service on it.
pub async fn connect_channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    use hyper_util::rt::TokioIo;
    use tonic::transport::{Endpoint, Uri};
    let socket = socket.to_path_buf();
    // The authority is ignored: every connection goes to the socket.
    let channel = Endpoint::try_from("http://localhost")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await?;
    Ok(channel)
}

/// Runs `cmd` with stdout/stderr captured into anonymous files (not pipes,
/// so a process that inherits them, such as an auto-started daemon, cannot
/// hang the caller) and kills it after `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
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
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Ok(child) => return child,
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && tries < 100 => {
                tries += 1;
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("cannot spawn {cmd:?}: {e}"),
        }
    }
}

/// Waits for `child` up to `timeout`; `None` if it is still running.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait().expect("waitpid") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Formats an [`Output`] for assertion messages.
pub fn describe_output(out: &Output) -> String {
    format!(
        "status: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One daemon on its own temporary `PMDAEMON_HOME`.
pub struct TestDaemon {
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
        binaries();
        let home = tempfile::Builder::new()
            .prefix("pmd-e2e-")
            .tempdir()
            .expect("create temp PMDAEMON_HOME");
        let work = home.path().join("work");
        fs::create_dir(&work).expect("create work dir");
        TestDaemon {
            home,
            work,
            daemon: None,
            spawns: 0,
            daemon_env: Vec::new(),
            daemon_args: Vec::new(),
        }
    }

    /// Adds `key=value` to the environment of daemons spawned from now on.
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

    /// Polls state.json until it parses and satisfies `pred`. The daemon
    /// writes it in short batches after a change, so a test must not expect
    /// it on disk the moment an RPC returns.
    pub fn wait_state(&self, what: &str, mut pred: impl FnMut(&str) -> bool) -> Value {
        wait_for_value(
            &format!("state.json {what}"),
            Duration::from_secs(5),
            || {
                let text = fs::read_to_string(self.state_path()).ok()?;
                let parsed: Value = serde_json::from_str(&text).ok()?;
                pred(&text).then_some(parsed)
            },
        )
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
        let child = Command::new(&binaries().pmdaemond)
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
        let deadline = Instant::now() + WAIT;
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
            thread::sleep(Duration::from_millis(20));
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
            .current_dir(&self.work);
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
        let deadline = Instant::now() + WAIT;
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
            thread::sleep(Duration::from_millis(20));
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
        let deadline = Instant::now() + WAIT;
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
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts `pmd events -o json` in the background and returns once its
    /// stream is live: it starts and deletes [`EVENTS_SYNC_APP`] until an
    /// event of that app comes through (the daemon replays nothing, and an
    /// event published before the stream is subscribed is never seen).
    pub fn events(&self) -> EventStream {
        let mut stream = EventStream::spawn(self);
        let deadline = Instant::now() + WAIT;
        loop {
            self.pmd_ok(&[
                "start",
                "sleep",
                "--name",
                EVENTS_SYNC_APP,
                "--no-autorestart",
                "--",
                "100000",
            ]);
            let live = stream
                .next_matching(Duration::from_millis(500), |e| e["name"] == EVENTS_SYNC_APP)
                .is_some();
            self.pmd_ok(&["delete", EVENTS_SYNC_APP]);
            if live {
                return stream;
            }
            assert!(
                Instant::now() < deadline,
                "pmd events showed no event within {WAIT:?}; stderr: {}",
                stream.stderr()
            );
        }
    }

    /// SIGKILLs every process of this home and waits until they are gone.
    fn kill_everything(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = pids_with_home(self.home());
            if pids.is_empty() || Instant::now() >= deadline {
                return;
            }
            for pid in pids {
                let p = Pid::from_raw(pid as i32);
                // Apps lead their own process groups; grandchildren share them.
                let _ = killpg(p, Signal::SIGKILL);
                let _ = kill(p, Signal::SIGKILL);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A running `pmd events -o json`. A reader thread parses each line of its
/// stdout and sends it here; the process is SIGKILLed on drop.
pub struct EventStream {
    child: Child,
    /// Fed by the reader thread, which ends at EOF (when `child` is gone).
    lines: mpsc::Receiver<Result<Value, String>>,
    /// Every event received so far, in order (for messages and filters).
    seen: Vec<Value>,
    /// `pmd events`' stderr (a file, so that it can never block it).
    stderr: tempfile::NamedTempFile,
}

impl EventStream {
    fn spawn(d: &TestDaemon) -> EventStream {
        let stderr = tempfile::NamedTempFile::new().expect("temp file for stderr");
        let mut child = spawn_retrying_busy(
            d.pmd_command(&["events", "-o", "json"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(stderr.reopen().expect("reopen stderr file")),
        );
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let parsed =
                    serde_json::from_str(&line).map_err(|e| format!("not JSON ({e}): {line:?}"));
                if tx.send(parsed).is_err() {
                    return;
                }
            }
        });
        EventStream {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// The next event, waiting up to `timeout`; `None` when none came (or
    /// the stream ended). Panics on a line that is not JSON.
    pub fn next(&mut self, timeout: Duration) -> Option<Value> {
        match self.lines.recv_timeout(timeout) {
            Ok(Ok(event)) => {
                self.seen.push(event.clone());
                Some(event)
            }
            Ok(Err(bad)) => panic!("pmd events -o json printed a line that is {bad}"),
            Err(_) => None,
        }
    }

    /// The next event that satisfies `pred` within `timeout` (the others
    /// are kept in [`Self::seen`]).
    pub fn next_matching(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self.next(left)?;
            if pred(&event) {
                return Some(event);
            }
        }
    }

    /// Waits up to [`WAIT`] for an event that satisfies `pred`; panics
    /// naming `what` and listing the events seen.
    pub fn wait_event(&mut self, what: &str, pred: impl FnMut(&Value) -> bool) -> Value {
        self.next_matching(WAIT, pred).unwrap_or_else(|| {
            panic!(
                "timed out after {WAIT:?} waiting for the event: {what}; events seen:\n{}\nstderr: {}",
                self.seen_lines(),
                self.stderr()
            )
        })
    }

    /// Every event received so far.
    pub fn seen(&self) -> &[Value] {
        &self.seen
    }

    /// The events received so far about app `name`.
    pub fn seen_of(&self, name: &str) -> Vec<Value> {
        self.seen
            .iter()
            .filter(|e| e["name"] == name)
            .cloned()
            .collect()
    }

    /// The events received so far, one a line, for messages.
    pub fn seen_lines(&self) -> String {
        self.seen
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// What `pmd events` wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `kind` of a `pmd events -o json` event.
pub fn kind_of(event: &Value) -> &str {
    event["kind"].as_str().unwrap_or("")
}

/// Wall-clock time in nanoseconds since the epoch, comparable with what an
/// app writes with `date +%s%N` or Python's `time.time_ns()`.
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos()
}

/// The `pid` of a list/describe entry, `None` when null.
pub fn pid_of(app: &Value) -> Option<u32> {
    app["pid"].as_u64().map(|p| p as u32)
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
        self.kill_everything();
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

/// Convenience: a UTF-8 path as a `&str` for `pmd` argument lists.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// Whether the test runs as root (for the tests that switch uid).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The pids of list/describe entries, in their order (panics on a null).
pub fn pids_of(apps: &[Value]) -> Vec<u32> {
    apps.iter()
        .map(|a| pid_of(a).unwrap_or_else(|| panic!("no pid: {a}")))
        .collect()
}

/// The `port` of a list/describe entry, `None` when null.
pub fn port_of(app: &Value) -> Option<u16> {
    app["port"].as_u64().map(|p| p as u16)
}

/// The environment a process was started with (`/proc/PID/environ`).
pub fn env_of(pid: u32) -> HashMap<String, String> {
    let raw = fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_else(|e| panic!("cannot read the environment of pid {pid}: {e}"));
    raw.split(|&b| b == 0)
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (k, v) = entry.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// The command line of a process (`/proc/PID/cmdline`).
pub fn cmdline_of(pid: u32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_else(|e| panic!("cannot read the command line of pid {pid}: {e}"));
    // Each argument ends with a NUL.
    raw.strip_suffix(&[0])
        .unwrap_or(&raw)
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The working directory of a process (`/proc/PID/cwd`).
pub fn cwd_of(pid: u32) -> PathBuf {
    fs::read_link(format!("/proc/{pid}/cwd"))
        .unwrap_or_else(|e| panic!("cannot read the cwd of pid {pid}: {e}"))
}

/// The python3 interpreter itself (`sys.executable`), not a wrapper such as
/// a pyenv shim, so that apps start fast and their pid is python's. Panics
/// when python3 is not on PATH: the HTTP tests need it.
pub fn python3() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .stdin(Stdio::null())
            .output()
            .expect("python3 must be on PATH for the HTTP app of the port tests");
        assert!(
            out.status.success(),
            "python3 failed: {}",
            describe_output(&out)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// `node` on PATH, if any (for `ecosystem.config.js`).
pub fn node() -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join("node"))
        .find(|p| p.is_file())
}

/// A tiny HTTP app: listens on `127.0.0.1:$PORT` (on the variable named by
/// `$PORT_VAR` instead, when set, for `port_env`) and answers every GET with
/// `instance=<PMD_INSTANCE_ID> pid=<pid> port=<port>`. SIGTERM ends it at
/// once.
pub const HTTP_SERVER: &str = r#"
import http.server, os
port_var = os.environ.get("PORT_VAR", "PORT")
port = int(os.environ[port_var])
body = "instance={} pid={} port={}".format(
    os.environ.get("PMD_INSTANCE_ID", "-"), os.getpid(), port).encode()

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"#;

/// An HTTP app for health checks, driven by its environment: it waits
/// `LISTEN_AFTER_MS` (default 0) before it binds `127.0.0.1:$PORT`, then
/// appends `time.time_ns()` as a line to `$STAMP_FILE` (if set) and prints
/// `listening on PORT`; it answers every GET with 200 `ok`, or with 500
/// while the file `$FAIL_FLAG` exists (relative to its cwd; `{i}` in it is
/// replaced by its `PMD_INSTANCE_ID`). SIGTERM ends it at once.
pub const HEALTH_SERVER: &str = r#"
import http.server, os, time
port = int(os.environ["PORT"])
instance = os.environ.get("PMD_INSTANCE_ID", "0")
fail_flag = os.environ.get("FAIL_FLAG", "").replace("{i}", instance)
time.sleep(int(os.environ.get("LISTEN_AFTER_MS", "0")) / 1000)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        failing = fail_flag != "" and os.path.exists(fail_flag)
        body = b"failing" if failing else b"ok"
        self.send_response(500 if failing else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
stamp = os.environ.get("STAMP_FILE")
if stamp:
    with open(stamp, "a") as f:
        f.write("{}\n".format(time.time_ns()))
print("listening on {}".format(port), flush=True)
server.serve_forever()
"#;

/// What [`HTTP_SERVER`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    pub instance: String,
    pub pid: u32,
    pub port: u16,
}

/// `GET /` on `127.0.0.1:port` with a hand-written HTTP/1.0 request; the
/// parsed body of a 200 from [`HTTP_SERVER`], `None` if nothing answered
/// (refused, timed out, closed early, another status).
pub fn http_get(port: u16) -> Option<HttpReply> {
    let timeout = Duration::from_secs(2);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let field = |key: &str| {
        body.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
    };
    Some(HttpReply {
        instance: field("instance")?,
        pid: field("pid")?.parse().ok()?,
        port: field("port")?.parse().ok()?,
    })
}

/// Waits until [`http_get`] on `port` answers, returning the reply.
pub fn wait_http(port: u16) -> HttpReply {
    wait_for_value(&format!("an HTTP answer on port {port}"), WAIT, || {
        http_get(port)
    })
}

/// The first of `count` consecutive TCP ports that nothing binds now (on
/// `0.0.0.0` and `[::]`), for one test's fixed ports, ranges and `auto:`
/// ranges.
///
/// Tests run in parallel, and so may several runs of this suite: blocks
/// are handed out once per process from a cursor that starts at a
/// pid-dependent place, on 32-port boundaries, below the kernel's
/// ephemeral range (so outgoing connections never take them meanwhile).
/// Another process could still bind one between this check and the app's
/// bind; `auto:` ranges tolerate that by design.
pub fn free_ports(count: u16) -> u16 {
    const LOW: u32 = 10_000;
    const BLOCK: u32 = 32;
    static CURSOR: Mutex<Option<u32>> = Mutex::new(None);
    assert!(
        (1..=BLOCK as u16).contains(&count),
        "ask for 1 to {BLOCK} ports"
    );
    let high = ephemeral_low().clamp(LOW + 64 * BLOCK, 65_536);
    let blocks = (high - LOW) / BLOCK;
    let mut cursor = CURSOR.lock().unwrap_or_else(PoisonError::into_inner);
    let mut block = cursor.unwrap_or_else(|| std::process::id().wrapping_mul(7919) % blocks);
    for _ in 0..blocks {
        block = (block + 1) % blocks;
        let first = LOW + block * BLOCK;
        let all_free = (first..first + u32::from(count)).all(|p| port_free(p as u16));
        if all_free {
            *cursor = Some(block);
            return first as u16;
        }
    }
    panic!("no {count} consecutive free ports between {LOW} and {high}");
}

/// Whether nothing binds TCP `port` on `0.0.0.0` or `[::]` right now.
pub fn port_free(port: u16) -> bool {
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
    // The IPv4 probe is dropped before the IPv6 one: [::] is dual-stack by
    // default and would see it.
    let v4_free = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok();
    v4_free
        && match TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)) {
            Ok(_) => true,
            // No IPv6 here: nothing can listen there either.
            Err(e) => e.kind() != std::io::ErrorKind::AddrInUse,
        }
}

/// The first port of the kernel's ephemeral range (32768 by default).
fn ephemeral_low() -> u32 {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    /// A binary is stale when a file in its dep-info changed after it.
    #[test]
    fn newer_source_reads_cargo_dep_info() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("pmd");
        let dep = dir.path().join("with space.rs");
        fs::write(&bin, "").unwrap();
        fs::write(&dep, "").unwrap();
        let dep_line = dep.to_str().unwrap().replace(' ', "\\ ");
        fs::write(
            dir.path().join("pmd.d"),
            format!("{}: {dep_line}\n", bin.display()),
        )
        .unwrap();
        let set = |path: &Path, t: SystemTime| {
            fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(t)
                .unwrap()
        };
        let now = SystemTime::now();
        set(&bin, now);
        set(&dep, now - Duration::from_secs(60));
        assert_eq!(newer_source(&bin), None);
        set(&dep, now + Duration::from_secs(60));
        assert_eq!(newer_source(&bin), Some(dep));
    }
}
