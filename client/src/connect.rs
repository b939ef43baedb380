//! The connection to `pmdaemond`: a tonic channel over the Unix socket
//! `$PMDAEMON_HOME/pmd.sock`, and the auto-start of a daemon when none
//! answers; or, for `--host`, over TCP/TLS to a remote daemon
//! ([`connect_remote`], dialled by [`crate::remote::dial`]), which is
//! never started from here. Either way the [`Client`] is the same type:
//! its [`Bearer`] interceptor adds the token to every call of a remote
//! client and nothing to a local one.
//!
//! Auto-start spawns `pmdaemond` (found next to the `pmd` executable, else
//! on PATH) in a new session with stdio on /dev/null and the caller's
//! environment, then retries the socket with a short backoff. The child is
//! never waited on beyond an early-exit check: it is a daemon, and once `pmd`
//! exits init adopts and reaps it. Two racing `pmd`s may both spawn one;
//! the daemon's own lock makes the loser exit.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper_util::rt::TokioIo;
use pmdaemon_proto::v1::process_manager_client::ProcessManagerClient;
use tokio::net::UnixStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::remote::{self, Remote};
use crate::term;

/// A connected gRPC client, local or remote.
pub type Client = ProcessManagerClient<InterceptedService<Channel, Bearer>>;

/// Adds `Authorization: Bearer TOKEN` to every call when there is a token
/// (a remote daemon); the value is a sensitive header, and Debug shows
/// only whether there is one.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.0.is_some() {
            "Bearer(..)"
        } else {
            "Bearer(none)"
        };
        f.write_str(shown)
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A client of `channel` with `bearer`.
fn client(channel: Channel, bearer: Bearer) -> Client {
    ProcessManagerClient::with_interceptor(channel, bearer)
}

/// The remote daemon (never started from here): a connection, or an
/// error that names the URL and says what to do.
pub async fn connect_remote(remote: &Remote) -> anyhow::Result<Client> {
    let channel = remote::dial::channel(remote).await?;
    Ok(client(channel, Bearer(remote.authorization())))
}

/// Where the daemon lives, from `PMDAEMON_HOME`.
#[derive(Debug, Clone)]
pub struct Home {
    pub dir: PathBuf,
    pub socket: PathBuf,
}

impl Home {
    pub fn from_env() -> Home {
        let dir = pmdaemon_proto::home_dir();
        let socket = pmdaemon_proto::socket_path(&dir);
        Home { dir, socket }
    }

    /// The daemon's own log, where start-up failures are explained.
    pub fn daemon_log(&self) -> PathBuf {
        self.dir.join("pmdaemond.log")
    }
}

/// How long an auto-started daemon may take to answer.
const AUTOSTART_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to keep trying once the spawned daemon has exited: long enough
/// for the winner of a start race to bind its socket.
const AFTER_EXIT_GRACE: Duration = Duration::from_secs(1);
/// Backoff between connection attempts while a daemon starts: 1 ms
/// doubling up to this.
const AUTOSTART_MAX_BACKOFF: Duration = Duration::from_millis(50);

/// Whether a connect error means "no daemon is listening" (as opposed to,
/// say, a permission problem that a new daemon would not fix).
fn is_not_running(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

/// Connects to the socket once; `Ok(None)` when no daemon listens there.
async fn try_socket(socket: &Path) -> anyhow::Result<Option<UnixStream>> {
    match UnixStream::connect(socket).await {
        Ok(stream) => Ok(Some(stream)),
        Err(e) if is_not_running(&e) => Ok(None),
        Err(e) => Err(e)
            .with_context(|| format!("cannot connect to the daemon's socket {}", socket.display())),
    }
}

/// Whether something accepts connections on the socket (the connection is
/// closed at once).
pub async fn socket_answers(socket: &Path) -> bool {
    UnixStream::connect(socket).await.is_ok()
}

/// Builds the gRPC channel on an already connected stream. Should the
/// channel need to reconnect later, it dials the socket again.
async fn channel(stream: UnixStream, socket: &Path) -> anyhow::Result<Client> {
    // The first connection hands out the stream that proved the daemon is
    // there, so the daemon never sees a throw-away probe connection.
    let first = Arc::new(Mutex::new(Some(stream)));
    let path = socket.to_path_buf();
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let first = first.clone();
            let path = path.clone();
            async move {
                let ready = first.lock().unwrap_or_else(|e| e.into_inner()).take();
                let stream = match ready {
                    Some(stream) => stream,
                    None => UnixStream::connect(&path).await?,
                };
                Ok::<_, io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .with_context(|| format!("cannot talk to the daemon on {}", socket.display()))?;
    Ok(client(channel, Bearer::default()))
}

/// The running daemon, or `None` if none answers. Never starts one (for
/// `kill`, `ping`, `version`).
pub async fn connect_running(home: &Home) -> anyhow::Result<Option<Client>> {
    match try_socket(&home.socket).await? {
        Some(stream) => Ok(Some(channel(stream, &home.socket).await?)),
        None => Ok(None),
    }
}

/// The running daemon, starting one first if none answers.
pub async fn connect_or_start(home: &Home) -> anyhow::Result<Client> {
    if let Some(stream) = try_socket(&home.socket).await? {
        return channel(stream, &home.socket).await;
    }
    let (stream, spawned) = term::with_spinner("starting the daemon", start_daemon(home)).await?;
    let mut client = channel(stream, &home.socket).await?;
    // Said only by the pmd whose daemon answers: several started at once
    // race for the home's lock and one daemon wins. What it found wrong at
    // start-up (a state file it moved aside, say) is news to that pmd.
    if let Ok(pong) = client.ping(pmdaemon_proto::v1::PingRequest {}).await {
        let pong = pong.into_inner();
        if pong.daemon_pid == spawned {
            eprintln!("[pmd] daemon started (home {})", home.dir.display());
            for notice in pong.notices {
                eprintln!("[pmd] warning: {notice}");
            }
        }
    }
    Ok(client)
}

/// Spawns `pmdaemond` and waits until a daemon's socket accepts a
/// connection (ours, or that of a pmd starting one at the same time).
/// Returns the connection and the pid of the daemon this call spawned.
async fn start_daemon(home: &Home) -> anyhow::Result<(UnixStream, u32)> {
    let binary = daemon_binary()?;
    let mut child = spawn_detached(&binary, home)
        .with_context(|| format!("cannot start the daemon {}", binary.display()))?;
    let spawned = child.id();
    let mut deadline = Instant::now() + AUTOSTART_TIMEOUT;
    let mut backoff = Duration::from_millis(1);
    let mut exited = None;
    loop {
        if let Some(stream) = try_socket(&home.socket).await? {
            // Dropping `child` neither kills nor waits: the daemon runs on.
            drop(child);
            return Ok((stream, spawned));
        }
        if exited.is_none() {
            // Reaps a daemon that gave up at once: it lost the lock to a
            // racing start (whose daemon is about to answer), or it cannot
            // run at all. Either way the answer comes soon or never.
            exited = reap_if_exited(&mut child);
            if exited.is_some() {
                deadline = deadline.min(Instant::now() + AFTER_EXIT_GRACE);
            }
        }
        if Instant::now() >= deadline {
            let why = match exited {
                Some(status) => format!("{} exited ({status})", binary.display()),
                None => format!("no answer within {}s", AUTOSTART_TIMEOUT.as_secs()),
            };
            let log = home.daemon_log();
            if exited.is_some() && !log.exists() {
                bail!(
                    "could not start the daemon: {why} before it could write {}; run `{} --home {}` \
                     in a terminal to see why",
                    log.display(),
                    binary.display(),
                    home.dir.display()
                );
            }
            bail!("could not start the daemon: {why}; see {}", log.display());
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(AUTOSTART_MAX_BACKOFF);
    }
}

fn reap_if_exited(child: &mut Child) -> Option<std::process::ExitStatus> {
    child.try_wait().ok().flatten()
}

/// `pmdaemond` next to the running `pmd`, else on PATH: the one pmd
/// auto-starts, and the `ExecStart=` of `pmd startup`.
pub(crate) fn daemon_binary() -> anyhow::Result<PathBuf> {
    const NAME: &str = "pmdaemond";
    let exe = std::env::current_exe().ok();
    if let Some(sibling) = exe.as_ref().map(|e| e.with_file_name(NAME))
        && is_executable(&sibling)
    {
        return Ok(sibling);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(NAME);
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    let beside = exe
        .as_ref()
        .and_then(|e| e.parent())
        .map_or_else(|| "pmd".to_string(), |d| d.display().to_string());
    bail!("cannot find {NAME} in {beside} or on PATH; install it next to pmd")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Starts the daemon in its own session, stdio on /dev/null, same
/// environment (so `PMDAEMON_HOME` passes through), cwd `/` so it never
/// pins the caller's directory.
fn spawn_detached(binary: &Path, home: &Home) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(binary);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/");
    // A relative PMDAEMON_HOME would mean something else from `/`.
    if std::env::var_os(pmdaemon_proto::HOME_ENV).is_some() && home.dir.is_relative() {
        cmd.env(pmdaemon_proto::HOME_ENV, std::path::absolute(&home.dir)?);
    }
    // SAFETY: setsid is async-signal-safe and touches no memory shared with
    // the parent; the forked child is not a group leader, so it succeeds.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(io::Error::from)?;
            Ok(())
        });
    }
    cmd.spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_missing_socket_means_not_running() {
        let dir = std::env::temp_dir().join(format!("pmd-connect-test-{}", std::process::id()));
        let home = Home {
            socket: dir.join("pmd.sock"),
            dir,
        };
        assert!(connect_running(&home).await.unwrap().is_none());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_stale_socket_means_not_running() {
        let dir = std::env::temp_dir().join(format!("pmd-stale-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("pmd.sock");
        let _ = std::fs::remove_file(&socket);
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        let home = Home {
            socket,
            dir: dir.clone(),
        };
        assert!(connect_running(&home).await.unwrap().is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
