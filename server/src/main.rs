//! `pmdaemond`: takes systemd's `NOTIFY_SOCKET` out of the environment,
//! parses flags, sets up tracing, takes the home lock, reads config.yaml
//! (flags override it), binds the socket and calls [`pmdaemond::run`]
//! until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

/// The pmdaemon supervisor daemon. Usually started by `pmd` on demand; run
/// it by hand to keep it in the foreground.
#[derive(Parser)]
#[command(name = "pmdaemond", version)]
struct Args {
    /// State directory (socket, state.json, logs).
    #[arg(global = true, long, env = "PMDAEMON_HOME")]
    home: Option<PathBuf>,
    /// How often CPU and memory of the apps are sampled (e.g. 500ms, 2s).
    #[arg(global = true, long, default_value = "1s", value_parser = parse_interval)]
    monitor_interval: std::time::Duration,
    /// Tracing filter, e.g. `info` or `pmdaemond=debug`.
    #[arg(global = true, long, env = "PMDAEMON_LOG", default_value = "info")]
    log: String,
    /// Size of pmdaemond.log before it is rotated (e.g. 10M; default 10 MiB).
    #[arg(global = true, long, value_name = "SIZE", value_parser = parse_log_size)]
    log_max_size: Option<u64>,
    /// Rotated copies of pmdaemond.log kept (.1 .. .N; default 3).
    #[arg(global = true, long, value_name = "N", value_parser = parse_log_files)]
    log_max_files: Option<u32>,
    /// Track apps by process group and environment marker only, never by
    /// cgroup (by default each run of an app gets its own cgroup v2 where
    /// the daemon can create one: root, or a delegated subtree).
    /// PMDAEMON_NO_CGROUPS=1 (or true, yes, on) does the same.
    #[arg(global = true, long, env = "PMDAEMON_NO_CGROUPS", value_parser = clap::builder::BoolishValueParser::new())]
    no_cgroups: bool,
    /// How long a line repeated in pmdaemond.log (a crash loop's) is
    /// counted instead of written, before one line says how many times it
    /// came (e.g. 30s, 2m; 0 writes every line).
    #[arg(global = true, long, value_name = "DURATION", default_value = "30s", value_parser = parse_repeat_window)]
    log_repeat_window: std::time::Duration,
    /// Free space kept for the state file on each file system that holds
    /// logs: under it, log files (pmdaemond.log too) stop being written
    /// until it is back (e.g. 64M; default the smaller of 64 MiB and 1% of
    /// the file system; 0 turns it off).
    #[arg(global = true, long, value_name = "SIZE", value_parser = parse_reserve)]
    log_reserve: Option<u64>,
    /// Also serve gRPC, gRPC-Web and HTTP on this TCP address (repeatable,
    /// e.g. 127.0.0.1:7070 and [::1]:7070); every call needs a bearer token
    /// (the admin token is in $PMDAEMON_HOME/token). A non-loopback address
    /// needs TLS (or --insecure-remote).
    #[arg(global = true, long, value_name = "ADDR:PORT")]
    listen: Vec<std::net::SocketAddr>,
    /// TLS certificate chain (PEM) of the TCP listener.
    #[arg(global = true, long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of the TCP listener.
    #[arg(global = true, long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA certificates (PEM): TCP clients must present a certificate signed
    /// by one of them (mutual TLS).
    #[arg(global = true, long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Allow --listen on a non-loopback address without TLS (a warning is
    /// logged at every start).
    #[arg(global = true, long)]
    insecure_remote: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Container mode (PM2's pm2-runtime): run in the foreground as PID 1
    /// (or a child subreaper), start the apps of FILE as `pmd start FILE`
    /// would, print their output, stop them all on SIGTERM/SIGINT/SIGQUIT.
    /// Exits when no app is left running: 1 if one errored, else 0; 2 for
    /// an unusable FILE.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// The ecosystem file (.yaml, .yml, .json, ecosystem*.js, *.config.js).
    file: String,
    /// Each app's env_NAME section over its env.
    #[arg(long = "env", value_name = "NAME")]
    environment: Option<String>,
    /// Only these apps of the file (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    only: Vec<String>,
    /// The apps' lines without the `ID|NAME | ` tag.
    #[arg(long, conflicts_with = "json")]
    raw: bool,
    /// One JSON object per line (PM2's keys), all on stdout.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    // SAFETY: first thing in main: no other thread exists yet.
    let notify = unsafe { pmdaemond::notify::Notifier::take_from_env() };
    let args = Args::parse();
    // Before anything else: the file is checked and the init forked while
    // the process has one thread.
    let run_file = match &args.command {
        Some(Command::Run(run)) => {
            let output = match (run.raw, run.json) {
                (true, _) => pmdaemond::container::Output::Raw,
                (_, true) => pmdaemond::container::Output::Json,
                _ => pmdaemond::container::Output::Tagged,
            };
            let file = match pmdaemond::container::load(
                &run.file,
                run.environment.as_deref(),
                &run.only,
                output,
            ) {
                Ok(file) => file,
                Err(code) => return ExitCode::from(code),
            };
            if let Err(e) = pmdaemond::container::init::split() {
                eprintln!("pmdaemond run: cannot start the init process: {e}");
                return ExitCode::FAILURE;
            }
            Some(file)
        }
        None => None,
    };
    let home = args.home.clone().unwrap_or_else(pmdaemon_proto::home_dir);
    let home = if home.is_absolute() {
        home
    } else {
        std::env::current_dir()
            .map(|d| d.join(&home))
            .unwrap_or(home)
    };
    let lock = match pmdaemond::prepare_home(&home) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("pmdaemond: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log_reserve = pmdaemond::LogReserve::new(match args.log_reserve {
        Some(bytes) => pmdaemond::LogReserveSetting::Bytes(bytes),
        None => pmdaemond::LogReserveSetting::Default,
    });
    let daemon_log = match init_tracing(&home, &args, &log_reserve) {
        Ok(log) => log,
        Err(e) => {
            eprintln!(
                "pmdaemond: cannot open {}: {e}",
                home.join("pmdaemond.log").display()
            );
            return ExitCode::FAILURE;
        }
    };
    // After tracing: a bad config.yaml is in pmdaemond.log too.
    let remote = match pmdaemond::config::load(&home) {
        Ok(file) => remote_flags(&args).over(file),
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("pmdaemond: {e}");
            return ExitCode::FAILURE;
        }
    };
    pmdaemond::alloc::tune();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pmdaemond: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listener = pmdaemond::bind(&home, &lock)?;
        let config = pmdaemond::Config {
            home: home.clone(),
            monitor_interval: args.monitor_interval,
            cgroups: !args.no_cgroups,
            log_reserve,
            remote,
            notify,
        };
        match run_file {
            Some(file) => {
                pmdaemond::container::run(listener, config, file, shutdown_signal(true)).await
            }
            None => pmdaemond::run(listener, config, shutdown_signal(false))
                .await
                .map(|()| 0),
        }
    });
    // Summaries of repeats still counted go in before the daemon ends.
    if let Err(e) = daemon_log.finish() {
        eprintln!("pmdaemond: cannot write pmdaemond.log: {e}");
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("pmdaemond: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The TCP listener's flags (they override config.yaml).
fn remote_flags(args: &Args) -> pmdaemond::config::RemoteFlags {
    pmdaemond::config::RemoteFlags {
        listen: args.listen.clone(),
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(pmdaemond::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.tls_client_ca.clone(),
            }),
            _ => None,
        },
        insecure_remote: args.insecure_remote,
    }
}

fn parse_log_size(value: &str) -> Result<u64, String> {
    let bytes = pmdaemon_proto::parse_size("--log-max-size", value).map_err(|e| e.0)?;
    pmdaemon_proto::check_log_max_size("--log-max-size", bytes).map_err(|e| e.0)
}

fn parse_reserve(value: &str) -> Result<u64, String> {
    pmdaemon_proto::parse_size("--log-reserve", value).map_err(|e| e.0)
}

fn parse_log_files(value: &str) -> Result<u32, String> {
    let n: u64 = value
        .parse()
        .map_err(|_| format!("--log-max-files: {value:?} is not a whole number"))?;
    pmdaemon_proto::check_count("--log-max-files", n, pmdaemon_proto::MAX_LOG_MAX_FILES)
        .map_err(|e| e.0)
}

fn parse_repeat_window(value: &str) -> Result<std::time::Duration, String> {
    pmdaemon_proto::parse_duration("--log-repeat-window", value).map_err(|e| e.0)
}

fn parse_interval(value: &str) -> Result<std::time::Duration, String> {
    let d = pmdaemon_proto::parse_duration("--monitor-interval", value).map_err(|e| e.0)?;
    if d < pmdaemond::MIN_MONITOR_INTERVAL {
        return Err(format!(
            "--monitor-interval: {} is below the {} minimum (CPU needs two samples that far apart)",
            humantime::format_duration(d),
            humantime::format_duration(pmdaemond::MIN_MONITOR_INTERVAL)
        ));
    }
    Ok(d)
}

/// Resolves on SIGTERM or SIGINT (and SIGQUIT with `quit`: `pmdaemond
/// run`, whose init relays it). SIGHUP is ignored: a daemon started from
/// a terminal must not take its apps down when the terminal closes.
async fn shutdown_signal(quit: bool) {
    // Only when asked: a plain daemon keeps SIGQUIT's default.
    let quit_sig = if quit {
        signal(SignalKind::quit()).map(Some)
    } else {
        Ok(None)
    };
    let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut quit_sig)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        quit_sig,
    ) else {
        tracing::error!("cannot install signal handlers; stop the daemon with `pmd kill`");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received"); return; }
            _ = int.recv() => { tracing::info!("SIGINT received"); return; }
            _ = hup.recv() => tracing::info!("SIGHUP ignored"),
            Some(_) = async { quit_sig.as_mut()?.recv().await } => {
                tracing::info!("SIGQUIT received");
                return;
            }
        }
    }
}

/// Tracing to `$home/pmdaemond.log` (appended, rotated, repeats coalesced,
/// held to the disk reserve) and to stderr, which is a terminal when
/// someone watches (or nothing): every line goes there.
fn init_tracing(
    home: &std::path::Path,
    args: &Args,
    reserve: &std::sync::Arc<pmdaemond::LogReserve>,
) -> std::io::Result<pmdaemond::SharedDaemonLog> {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::fmt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let file = pmdaemond::DaemonLog::open(
        &home.join("pmdaemond.log"),
        args.log_max_size.unwrap_or(pmdaemond::DAEMON_LOG_MAX_BYTES),
        args.log_max_files
            .unwrap_or(pmdaemond::DAEMON_LOG_MAX_FILES),
    )?
    .with_repeat_window(args.log_repeat_window)
    .with_reserve(reserve.clone())?;
    let file = pmdaemond::SharedDaemonLog::new(file);
    file.spawn_window_closer()?;
    // `Targets` ("info", "warn,pmdaemond::health=debug") rather than
    // EnvFilter: no regex engine to load, which the daemon's idle RSS feels.
    let filter: Targets = args
        .log
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            fmt::layer()
                .with_writer({
                    let file = file.clone();
                    move || file.clone()
                })
                .with_ansi(false),
        )
        .with(fmt::layer().with_writer(std::io::stderr).with_ansi(
            std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        ))
        .init();
    Ok(file)
}
