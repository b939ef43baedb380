//! pmdaemond: the pmdaemon supervisor daemon as a library, so that the thin
//! binary and tests run the same code: [`prepare_home`], [`bind`] and
//! [`run`]. Everything else is private to the crate.
//!
//! Modules, one per concern (`ARCHITECTURE.md` at the repository root draws
//! how they fit together):
//! - `supervisor` — the core: the process table and each instance's
//!   lifecycle, whose public operations own their transactions (serialized
//!   where they reshape the table, answered once on disk); the only place
//!   that forks or signals;
//! - `health` — HTTP, TCP and script probes;
//! - `metrics` — CPU/memory sampling of the managed processes;
//! - `logs` — stdout/stderr capture, log files, rotation, tail, followers;
//! - `ports` — port specs, assignment and conflict checks against apps and
//!   the host;
//! - `watch` — file watching that restarts apps on changes;
//! - `store` — `state.json` / `dump.json`, atomic writes;
//! - `api` — the tonic service over the core: converts and hands off; the
//!   one error mapping;
//! - `serve` — the listeners (the Unix socket; TCP with `--listen`), each
//!   with its checks, composed by [`run`];
//! - `auth` — who may call: peer credentials on the Unix socket; bearer
//!   tokens and scopes on TCP;
//! - `balancer` — balanced apps' public ports: pools of ready instances,
//!   TCP forwarding, draining;
//! - `config` — `$PMDAEMON_HOME/config.yaml` (the TCP listener's settings);
//! - `container` — `pmdaemond run FILE` (pm2-runtime): its init process,
//!   the file applied through `pmd`'s library, the apps' lines printed;
//! - `notify` — systemd's sd_notify protocol (`READY=1`, `STOPPING=1`) for
//!   a `Type=notify` service (public: the binary takes `NOTIFY_SOCKET` out
//!   of the environment before any thread starts);
//! - `lazy` — services built by their first call (gRPC reflection);
//! - `fds` — the open-file limit (raised for the daemon, given back to
//!   apps); `sync` — the poisoned-mutex rule; `alloc` — glibc allocator
//!   settings and trims, so bursts do not leave the RSS high (public: the
//!   binary calls [`alloc::tune`] before its runtime starts).

pub mod alloc;
pub(crate) mod api;
pub(crate) mod auth;
pub(crate) mod balancer;
pub mod config;
pub mod container;
pub(crate) mod error;
pub(crate) mod fds;
pub(crate) mod gateway;
pub(crate) mod health;
pub(crate) mod lazy;
pub(crate) mod logs;
pub(crate) mod metrics;
pub mod notify;
pub(crate) mod ports;
pub(crate) mod serve;
pub(crate) mod store;
pub(crate) mod supervisor;
pub(crate) mod sync;
pub(crate) mod watch;

/// `pmdaemond.log`, rotated like an app's log, with repeated lines
/// coalesced, and its default size, number of rotated copies and repeat
/// window.
pub use logs::daemon_log::{
    DEFAULT_MAX_BYTES as DAEMON_LOG_MAX_BYTES, DEFAULT_MAX_FILES as DAEMON_LOG_MAX_FILES,
    DEFAULT_REPEAT_WINDOW as DAEMON_LOG_REPEAT_WINDOW, DaemonLog, SharedDaemonLog,
};

/// The disk reserve of log writes (`--log-reserve`), shared by
/// pmdaemond.log and the app logs.
pub use logs::reserve::{DiskReserve as LogReserve, ReserveSetting as LogReserveSetting};
/// This home's cgroup directory as a daemon started in the caller's cgroup
/// makes it (None without a usable cgroup2): for cleaning up after one.
pub use supervisor::cgroup::home_dir_of as cgroup_dir_of;

/// The shortest CPU/memory sampling period (`--monitor-interval`).
pub use metrics::MIN_INTERVAL as MIN_MONITOR_INTERVAL;

use std::fs::File;
use std::future::Future;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use pmdaemon_proto::v1::process_manager_server::ProcessManagerServer;
use tokio::net::UnixListener;

use crate::supervisor::Supervisor;

pub use serve::tcp::{Grpc, Limits, RemoteOptions, TlsFiles};
pub use serve::unix::bind;

/// Exclusive ownership of a `PMDAEMON_HOME`: an flock on
/// `pmdaemond.lock`, held for the daemon's life (dropping it releases it).
pub struct HomeLock {
    _lock: nix::fcntl::Flock<File>,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("another pmdaemond is already running for {home}{pid}")]
    AlreadyRunning { home: PathBuf, pid: String },
    #[error("{0}")]
    Remote(String),
    #[error(transparent)]
    Tokens(#[from] auth::token::TokenError),
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn io_err<'a>(
    context: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StartError + 'a {
    move |source| StartError::Io {
        context,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `home` (mode 0700) and takes its lock, so that exactly one
/// daemon serves a home; two racing auto-starts leave one daemon.
pub fn prepare_home(home: &Path) -> Result<HomeLock, StartError> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(home)
        .map_err(io_err("cannot create", home))?;
    let lock_path = home.join("pmdaemond.lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io_err("cannot open", &lock_path))?;
    let mut lock = match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
    {
        Ok(lock) => lock,
        Err((mut file, _)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(StartError::AlreadyRunning {
                home: home.to_path_buf(),
                pid: if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                },
            });
        }
    };
    let _ = lock.set_len(0);
    let _ = lock.rewind();
    let _ = writeln!(lock, "{}", std::process::id());
    Ok(HomeLock { _lock: lock })
}

/// How a daemon runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PMDAEMON_HOME`.
    pub home: PathBuf,
    /// CPU/memory sampling period of the managed processes.
    pub monitor_interval: std::time::Duration,
    /// Give each run of an instance its own cgroup v2 where the daemon can
    /// (`--no-cgroups` turns it off: process group and marker only).
    pub cgroups: bool,
    /// The disk reserve of log writes; give pmdaemond.log the same one.
    pub log_reserve: std::sync::Arc<LogReserve>,
    /// The TCP listener (`--listen`, TLS, limits); off when it lists no
    /// address.
    pub remote: RemoteOptions,
    /// The service manager to tell `READY=1` and `STOPPING=1` (systemd's
    /// `NOTIFY_SOCKET`); None: nobody asked.
    pub notify: Option<notify::Notifier>,
}

/// Each pause and resume of log writes under the disk reserve: one
/// warning (or notice) in pmdaemond.log and one event. pmdaemond.log
/// pauses only once its warning is written.
fn report_log_reserve(sup: &Supervisor, reserve: &std::sync::Arc<LogReserve>) {
    let Some(mut changes) = reserve.take_changes() else {
        return;
    };
    let (sup, reserve) = (sup.clone(), reserve.clone());
    tokio::spawn(async move {
        while let Some(change) = changes.recv().await {
            if change.paused {
                tracing::warn!("{change}");
                reserve.announced(change.dev);
            } else {
                tracing::info!("{change}");
            }
            sup.log_reserve_event(&change);
        }
    });
}

/// Serves the daemon on `listener` until `shutdown` resolves or a client
/// calls Shutdown; then stops every app gracefully (they are started again by
/// the next daemon), ends open streams and returns.
pub async fn run(
    listener: UnixListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    serve_with(listener, config, shutdown, None).await
}

/// What a mode of the daemon that drives it from inside (`pmdaemond run`,
/// `container`) gets once the daemon serves.
pub(crate) struct Started {
    pub sup: Supervisor,
    /// Send true to begin the shutdown (stop every app, then return).
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// True once every app is stopped at shutdown.
    pub stopped: tokio::sync::watch::Receiver<bool>,
    pub home: PathBuf,
}

/// Called once the daemon serves; the task it returns is awaited before
/// [`serve_with`] returns.
pub(crate) type Hook = Box<dyn FnOnce(Started) -> tokio::task::JoinHandle<()> + Send>;

/// A mode that drives the daemon from inside (`pmdaemond run`).
pub(crate) struct Driver {
    /// Called once the socket serves.
    pub hook: Hook,
    /// The only saved apps started again (see [`Supervisor::restore`]).
    pub running_only: std::collections::HashSet<String>,
}

/// [`run`], driven by `driver` when there is one.
pub(crate) async fn serve_with(
    listener: UnixListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    driver: Option<Driver>,
) -> Result<(), StartError> {
    let (hook, running_only) = match driver {
        Some(Driver { hook, running_only }) => (Some(hook), Some(running_only)),
        None => (None, None),
    };
    let Config {
        home,
        monitor_interval,
        cgroups,
        log_reserve,
        remote,
        notify,
    } = config;
    // At every start, listener or not: the admin token is where the user
    // expects it, and the token verbs work on the socket. Then the TCP
    // addresses are bound before anything starts: a bad token file,
    // address or TLS file, or a non-loopback address without TLS, stops
    // the daemon here, leaving no socket behind.
    let remote_setup = auth::token::TokenStore::load(&home)
        .map_err(StartError::from)
        .and_then(|tokens| Ok((tokens, serve::tcp::bind(&remote)?)));
    let (tokens, (tcp_listeners, tls)) = match remote_setup {
        Ok(ready) => ready,
        Err(e) => {
            let _ = std::fs::remove_file(pmdaemon_proto::socket_path(&home));
            return Err(e);
        }
    };
    // Descriptors the daemon inherited open (a jobserver's, a shell's)
    // would reach every app; apps get 0-2 (and their IPC channel) only.
    if let Err(e) = fds::cloexec_inherited() {
        tracing::warn!(error = %e, "cannot mark inherited descriptors close-on-exec; apps may inherit them");
    }
    match fds::raise_limit() {
        Ok(Some((before, after))) => tracing::info!(
            before,
            after,
            "raised the open-file limit; apps get the one the daemon was started with"
        ),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    alloc::spawn_trimmer();
    let logs_dir = home.join("logs");
    let hub = logs::LogHub::with_reserve(logs_dir.clone(), log_reserve.clone())
        .map_err(io_err("cannot create", &logs_dir))?;
    let cgroups = tracking(&home, cgroups);
    let sup = Supervisor::new(home.clone(), hub, monitor_interval, cgroups.clone());
    report_log_reserve(&sup, &log_reserve);

    // state.json, else its backup; each unusable file is moved aside and
    // named in the notices.
    let (state, mut notices) = supervisor::load_state(&home);
    // Always, even with no usable state: what a previous daemon life left
    // running is found by its marker and stopped before anything starts.
    match sup.restore(state, running_only.as_ref()) {
        Ok(skipped) => notices.extend(skipped),
        Err(e) => {
            tracing::error!(error = %e, "cannot restore the saved apps");
            notices.push(format!("cannot restore the saved apps: {e}"));
        }
    }

    // true = begin shutdown. Senders: the external signal (below) and the
    // Shutdown RPC; receivers: this function and every open stream.
    let (shutdown_tx, mut shutdown_rx) = tokio::sync::watch::channel(false);
    {
        let tx = shutdown_tx.clone();
        tokio::spawn(async move {
            shutdown.await;
            tx.send_replace(true);
        });
    }

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ProcessManagerServer<api::Api>>()
        .await;
    // Python's reflection client speaks v1alpha, grpcurl v1: serve both,
    // each built (its descriptor sets decoded) by its first call: most
    // daemons are never asked.
    fn reflection() -> tonic_reflection::server::Builder<'static> {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pmdaemon_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    }
    let reflection_v1 = lazy::Lazy::new(|| reflection().build_v1());
    let reflection_v1alpha = lazy::Lazy::new(|| reflection().build_v1alpha());

    // Serving stops only after the apps are stopped, so `pmd kill` and
    // followers see the daemon until the end.
    let (served_tx, mut served_rx) = tokio::sync::watch::channel(false);
    let stopped_rx = served_rx.clone();
    let listen = tcp_listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    let api = api::Api::new(
        sup.clone(),
        shutdown_tx.clone(),
        served_rx.clone(),
        notices,
        tokens.clone(),
        listen,
    );
    // One set of services; each listener serves it behind its own
    // interceptor.
    let routes = serve::Routes::new(ProcessManagerServer::new(api))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let mut tcp_servers = Vec::new();
    if !tcp_listeners.is_empty() {
        tokens.spawn_persister();
        let grpc = serve::tcp::grpc(routes.clone());
        // Built (and the full descriptor decoded) only here: a daemon
        // without a TCP listener never pays for the gateway.
        let extra = gateway::router(grpc.clone())
            .map_err(|e| StartError::Remote(format!("cannot build the REST gateway: {e}")))?;
        let app = serve::tcp::app(
            grpc,
            extra,
            serve::metrics::router(sup.clone()),
            tokens.clone(),
            remote.cors_origins.clone(),
        );
        for tcp in tcp_listeners {
            tcp_servers.push(tokio::spawn(serve::tcp::serve(
                tcp,
                app.clone(),
                tls.clone(),
                remote.limits,
                served_rx.clone(),
            )));
        }
    }
    let server = tokio::spawn(serve::unix::serve(listener, routes, async move {
        let _ = served_rx.wait_for(|s| *s).await;
    }));
    tracing::info!(home = %home.display(), pid = std::process::id(), "pmdaemond ready");
    // Ready: the socket is bound (a connection made from now on waits in
    // its backlog for the server task just spawned) and the saved apps are
    // restored, their starts under way. Not their readiness: one app's
    // slow start (or crash loop) must not make systemd time the daemon
    // out and kill every other app with it.
    if let Some(notify) = &notify {
        notify.notify(notify::State::Ready);
    }
    let driver = hook.map(|hook| {
        hook(Started {
            sup: sup.clone(),
            shutdown: shutdown_tx.clone(),
            stopped: stopped_rx.clone(),
            home: home.clone(),
        })
    });

    let _ = shutdown_rx.wait_for(|s| *s).await;
    if let Some(notify) = &notify {
        notify.notify(notify::State::Stopping);
    }
    tracing::info!("shutting down: stopping every app");
    sup.shutdown().await;
    served_tx.send_replace(true);
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "server error"),
        Err(e) => tracing::error!(error = %e, "server task failed"),
    }
    for tcp in tcp_servers {
        let _ = tcp.await;
    }
    if let Some(driver) = driver {
        let _ = driver.await;
    }
    tokens.flush().await;
    let _ = std::fs::remove_file(pmdaemon_proto::socket_path(&home));
    if let Some(tree) = cgroups {
        tree.remove();
    }
    tracing::info!("pmdaemond stopped");
    Ok(())
}

/// How the apps' processes are tracked, decided once at start and logged:
/// a cgroup per run where the daemon can make them, else process group and
/// marker.
fn tracking(home: &Path, wanted: bool) -> Option<std::sync::Arc<supervisor::cgroup::Tree>> {
    if !wanted {
        tracing::info!("tracking apps by process group and marker (--no-cgroups)");
        return None;
    }
    match supervisor::cgroup::Tree::detect(home) {
        Ok(tree) => {
            tracing::info!(dir = %tree.dir().display(), "tracking apps by cgroup, one per run");
            Some(std::sync::Arc::new(tree))
        }
        Err(e) => {
            tracing::info!(reason = %e, "tracking apps by process group and marker: no usable cgroup v2");
            None
        }
    }
}
