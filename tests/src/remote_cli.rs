//! `pmd` driving a daemon from elsewhere: [`RemoteClient`] runs the real
//! `pmd` with its own empty `PMDAEMON_HOME` and `XDG_CONFIG_HOME`, in its
//! own work directory, and without the `PMD_*` variables of this process
//! (a test sets those it means). A wrong fall-back to the local socket
//! would auto-start a daemon in that home:
//! [`RemoteClient::assert_no_local_daemon`] catches it, and dropping the
//! client SIGKILLs whatever was started there. [`LineStream`] follows the
//! stdout of a long-running `pmd` (`logs -f`, `events`) line by line.
//!
//! Talks to: the `pmd` processes it spawns, and (to clean up) the
//! processes of its own home.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use crate::binaries::binaries;
use crate::command::{run_with_timeout, spawn_retrying_busy};
use crate::output::describe_output;
use crate::procs::{kill_home_processes, pids_with_home};
use crate::wait::{PMD_TIMEOUT, Timeout, WAIT};

/// The variables `pmd` reads to pick a remote daemon, cleared from every
/// command unless set with [`RemoteClient::set_env`].
pub(crate) const REMOTE_ENV: &[&str] = &[
    "PMD_HOST",
    "PMD_TOKEN",
    "PMD_TOKEN_FILE",
    "PMD_CA_CERT",
    "PMD_CONTEXT",
];

/// A `pmd` user on "another machine": its own home, config and work dir.
pub struct RemoteClient {
    /// Holds `home/`, `config/` and `work/`; removed on drop.
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl RemoteClient {
    pub fn new() -> Self {
        binaries();
        let dir = tempfile::Builder::new()
            .prefix("pmd-e2e-client-")
            .tempdir()
            .expect("create the client's directory");
        for sub in ["home", "config", "work"] {
            std::fs::create_dir(dir.path().join(sub)).expect("create a client directory");
        }
        RemoteClient {
            dir,
            env: Vec::new(),
        }
    }

    /// The client's `PMDAEMON_HOME`: stays without a socket or a daemon.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The client's `XDG_CONFIG_HOME` (contexts live below it).
    pub fn config_home(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// `$XDG_CONFIG_HOME/pmdaemon/contexts.yaml`.
    pub fn contexts_file(&self) -> PathBuf {
        self.config_home().join("pmdaemon").join("contexts.yaml")
    }

    /// Where `pmd` runs (relative paths resolve here).
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Writes `text` to `name` in the client's directory with `mode`
    /// (created with it: a token file is never wider for a moment).
    pub fn write_file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.path().join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        file.write_all(text.as_bytes()).expect("write the file");
        path
    }

    /// Sets `key=value` for every later command.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_string(), value.to_string()));
    }

    /// A `pmd` command of this client (see the module header).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&binaries().pmd);
        for var in REMOTE_ENV {
            cmd.env_remove(var);
        }
        cmd.args(args)
            .env(pmdaemon_proto::HOME_ENV, self.home())
            .env("XDG_CONFIG_HOME", self.config_home())
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.work());
        cmd
    }

    pub fn pmd(&self, args: &[&str]) -> Output {
        run_with_timeout(&mut self.command(args), PMD_TIMEOUT)
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

    /// Runs `pmd`, asserts the exit code, returns stdout and stderr.
    pub fn pmd_code(&self, code: i32, args: &[&str]) -> String {
        let out = self.pmd(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "pmd {args:?}: expected exit {code}\n{}",
            describe_output(&out)
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// The client's home has no socket and no process: nothing fell back
    /// to a local daemon.
    pub fn assert_no_local_daemon(&self) {
        let socket = pmdaemon_proto::socket_path(&self.home());
        assert!(
            !socket.exists(),
            "a local daemon was started in the client's home: {} exists",
            socket.display()
        );
        let pids = pids_with_home(&self.home());
        assert!(pids.is_empty(), "processes of the client's home: {pids:?}");
    }

    /// Spawns `pmd args` with its stdout read line by line.
    pub fn spawn_lines(&self, args: &[&str]) -> LineStream {
        LineStream::spawn(&mut self.command(args))
    }
}

impl Default for RemoteClient {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RemoteClient {
    fn drop(&mut self) {
        kill_home_processes(&self.home());
    }
}

/// A running command whose stdout lines arrive as they are printed; the
/// process is SIGKILLed on drop.
pub struct LineStream {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: tempfile::NamedTempFile,
}

impl LineStream {
    pub fn spawn(cmd: &mut Command) -> LineStream {
        let stderr = tempfile::NamedTempFile::new().expect("temp file for stderr");
        let mut child = spawn_retrying_busy(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(stderr.reopen().expect("reopen stderr file")),
        );
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        LineStream {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// The next line that satisfies `pred` within `timeout`, or None.
    pub fn next_matching(
        &mut self,
        timeout: Timeout,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Option<String> {
        let deadline = timeout.deadline();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            self.seen.push(line.clone());
            if pred(&line) {
                return Some(line);
            }
        }
    }

    /// Waits up to [`WAIT`] for a line that satisfies `pred`; panics naming
    /// `what`, with the lines seen and stderr.
    pub fn wait_line(&mut self, what: &str, pred: impl FnMut(&str) -> bool) -> String {
        self.next_matching(WAIT, pred).unwrap_or_else(|| {
            panic!(
                "no line {what} within {WAIT:?}; seen:\n{}\nstderr: {}",
                self.seen.join("\n"),
                self.stderr()
            )
        })
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LineStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `path` is mode 0600 exactly.
pub fn is_private_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o600)
}
