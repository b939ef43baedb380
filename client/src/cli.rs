//! The command-line surface of `pmd`: clap derive types only, no I/O.
//!
//! Every flag value is checked here, in a `value_parser` built on the shared
//! helpers of `pmdaemon_proto` (names, targets, durations, sizes, signals)
//! and [`crate::rules`] (instances, ports), so a bad value is a usage error
//! (exit 2) whose message names the flag and nothing reaches the daemon.
//! The daemon validates again. The one I/O here is the `stat` that tells an
//! ecosystem file from an app name in [`TargetArg`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pmdaemon_proto::Target;
use pmdaemon_proto::v1::health_check::Probe;
use pmdaemon_proto::v1::{HealthCheck, ProcessState, RestartPolicy};

use crate::remote::url::HostUrl;

mod boot;
pub use boot::{
    CompletionShell, CompletionsArgs, ManArgs, Platform, StartupArgs, UnitArgs, UnstartupArgs,
};

/// pmd drives pmdaemond, a process manager for Linux with PM2's verbs.
///
/// TARGET is an app name, a numeric process id, `all`, or an ecosystem file
/// (ecosystem.yaml, .json, ecosystem.config.js). Every command but `kill`,
/// `ping` and `version` starts the daemon when none is running.
///
/// With --host URL (or PMD_HOST, or a context: `pmd context --help`) pmd
/// drives a remote daemon over TCP instead, with a bearer token; a remote
/// daemon is never started by pmd.
#[derive(Debug, Parser)]
#[command(name = "pmd", version = pmdaemon_proto::VERSION)]
pub struct Cli {
    /// Never colour the output (NO_COLOR is honoured too).
    #[arg(long, global = true)]
    pub no_color: bool,

    #[command(flatten)]
    pub remote: RemoteArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start an app from a script or command, the apps of an ecosystem
    /// file, or existing apps again.
    ///
    /// A script file runs with the interpreter from its shebang, else by
    /// extension (.js node, .py python3, .sh bash), else directly; a bare
    /// command name is looked up on PATH; a directory runs its
    /// package.json `main` (else index.js); a quoted command line that is
    /// not a file (`"npm run start"`) is split like a shell. Arguments
    /// after `--` go to the app: `pmd start sleep -- 1000`. `pmd start TARGET` (an existing
    /// name, an id or `all`) with no spec flags starts stopped apps.
    /// `pmd start ecosystem.yaml [--env production] [--only api,web]`
    /// creates what is missing, applies what changed and leaves the rest
    /// running. With `--wait-ready` it returns once every instance is
    /// ready (healthy, for an app with a health check).
    Start(Box<StartArgs>),
    /// Stop apps (stop signal, then SIGKILL after the kill timeout); they
    /// stay in the list.
    Stop(StopArgs),
    /// Restart apps; stopped or errored apps are started. With an ecosystem
    /// file, every app of the file is restarted with its definition.
    Restart(RestartArgs),
    /// Rolling restart: instance by instance, each replacement ready before
    /// the next old instance goes, so the app keeps serving.
    Reload(ReloadArgs),
    /// Change the number of instances of an app.
    Scale(ScaleArgs),
    /// PM2's startOrRestart FILE: start the file's apps that do not exist,
    /// restart the others with their definition (= `pmd restart FILE`).
    #[command(name = "startOrRestart", hide = true)]
    StartOrRestart(StartOrArgs),
    /// PM2's startOrReload FILE: start the file's apps that do not exist,
    /// reload the others (= `pmd reload FILE`).
    #[command(name = "startOrReload", hide = true)]
    StartOrReload(StartOrArgs),
    /// PM2's startOrGracefulReload FILE: as startOrReload (every reload of
    /// pmd is graceful).
    #[command(name = "startOrGracefulReload", hide = true)]
    StartOrGracefulReload(StartOrArgs),
    /// Stop apps and forget them, with their log files.
    #[command(visible_alias = "del")]
    Delete(DeleteArgs),
    /// List every app instance.
    #[command(visible_alias = "ls", alias = "ps", alias = "status", alias = "l")]
    List(ListArgs),
    /// PM2's jlist: the list as compact JSON (= `pmd list -o json`).
    #[command(hide = true)]
    Jlist,
    /// PM2's prettylist: the list as indented JSON.
    #[command(hide = true)]
    Prettylist,
    /// Show everything known about apps; environment values only with
    /// --env-values.
    #[command(visible_alias = "info", alias = "show", alias = "desc")]
    Describe(DescribeArgs),
    /// Print the environment of an app's processes, values included, as
    /// they got it: the daemon's, the one captured at start, the app's
    /// `env`, its port.
    Env(EnvArgs),
    /// Set the restart counters of apps back to 0 (nothing is restarted).
    Reset(ResetArgs),
    /// Send a signal to the process of each running instance of an app:
    /// `pmd send-signal SIGUSR2 api`.
    #[command(name = "send-signal", alias = "sendSignal")]
    SendSignal(SendSignalArgs),
    /// Print the last log lines of apps, and follow new ones with -f.
    Logs(LogsArgs),
    /// Empty the log files of an app (of every app without TARGET).
    Flush(FlushArgs),
    /// Live view of every instance: status, CPU, memory, restarts, uptime,
    /// health, and the selected one's latest log lines (up/down or j/k to
    /// select, q to quit). Not on a terminal: one snapshot table.
    Monit(MonitArgs),
    /// Print state changes as they happen (started, online, exited,
    /// restarting, health changed...), until Ctrl-C.
    Events(EventsArgs),
    /// Write the current app list to dump.json, for `pmd resurrect`.
    #[command(alias = "dump")]
    Save,
    /// Start the apps saved by `pmd save` that are not already known.
    Resurrect,
    /// Stop every app and the daemon (apps that were online come back with
    /// the next daemon).
    Kill,
    /// Check that the daemon answers (never starts one).
    Ping,
    /// Print the versions of pmd and of the running daemon.
    Version,
    /// Bearer tokens of the daemon's TCP listener (`pmdaemond --listen`):
    /// create, list, revoke. On the local socket only.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Named remote daemons: add, use, list, remove. The current one is
    /// what pmd drives when no --host, PMD_HOST or --context is given;
    /// `local` is this machine's daemon.
    #[command(subcommand)]
    Context(ContextCommand),
    /// Bring apps over from another process manager: `pmd import pm2`
    /// reads PM2's saved process list (dump.pm2).
    #[command(subcommand)]
    Import(ImportCommand),
    /// Check an ecosystem file without starting anything: exit 0 when it
    /// is clean; else exit 1 with every warning (a key pmd ignores or does
    /// not know) and the error, if any, each with FILE:LINE:COL. Needs no
    /// daemon; for CI.
    Validate(ValidateArgs),
    /// Translate an ecosystem file into Kubernetes manifests, systemd
    /// units or a compose file (stdout, or files in -o DIR), with what
    /// cannot be mapped listed on stderr. Needs no daemon.
    Export(ExportArgs),
    /// Print the systemd unit that starts pmdaemond at boot for this
    /// PMDAEMON_HOME (PM2's `pm2 startup`); --install writes and enables it.
    Startup(StartupArgs),
    /// Disable and remove the unit `pmd startup --install` wrote.
    Unstartup(UnstartupArgs),
    /// Print the completion script of a shell: `pmd completions bash >
    /// ~/.local/share/bash-completion/completions/pmd`.
    Completions(CompletionsArgs),
    /// Print the pmd(1) man page, or write every page with --dir.
    Man(ManArgs),
}

/// `pmd import ...`.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Create the apps of PM2's saved process list (`pm2 save` writes it):
    /// DUMP, else $PM2_HOME/dump.pm2, else ~/.pm2/dump.pm2. Each app is
    /// created whole or not at all, with a line saying what could not be
    /// mapped; an app whose name pmd already knows is left alone.
    Pm2(ImportPm2Args),
}

#[derive(Debug, Args)]
pub struct ImportPm2Args {
    /// PM2's dump file (default: $PM2_HOME/dump.pm2, else ~/.pm2/dump.pm2).
    #[arg(value_name = "DUMP")]
    pub dump: Option<PathBuf>,

    /// Print what would be created, and what cannot be mapped, without
    /// creating anything.
    #[arg(long)]
    pub dry_run: bool,

    /// Output format of the created processes.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// `pmd validate FILE`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The ecosystem file (.yaml, .yml, .json, ecosystem.config.js...).
    #[arg(value_name = "FILE")]
    pub file: String,
}

/// `pmd export TARGET FILE`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// What to write: Kubernetes manifests, systemd units or a compose file.
    #[arg(value_enum, value_name = "TARGET")]
    pub target: crate::export::Target,

    /// The ecosystem file (.yaml, .yml, .json, ecosystem.config.js...).
    #[arg(value_name = "FILE")]
    pub file: String,

    #[command(flatten)]
    pub environment: EnvironmentArg,

    #[command(flatten)]
    pub only: OnlyArg,

    /// Write the files into DIR (made if missing) instead of stdout; a
    /// file there that an earlier export did not write is never replaced.
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,

    /// The container image of every app (kubernetes and compose need
    /// one: an ecosystem file names none).
    #[arg(long, value_name = "IMAGE", value_parser = parse_image)]
    pub image: Option<String>,
}

/// Which daemon: this machine's (the default), or a remote one. Each flag
/// has an environment variable below it in precedence: flag, then
/// environment, then --context/PMD_CONTEXT, then the current context.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Remote daemon")]
pub struct RemoteArgs {
    /// Drive the daemon at URL: https://HOST:PORT (TLS), http://HOST:PORT
    /// (no TLS: safe on loopback only) or HOST:PORT (https) [env: PMD_HOST]
    #[arg(long, global = true, value_name = "URL", value_parser = parse_host, conflicts_with = "context")]
    pub host: Option<HostUrl>,

    /// File holding the bearer token (mode 600) [env: PMD_TOKEN_FILE; or
    /// PMD_TOKEN with the token itself]
    #[arg(long, global = true, value_name = "FILE", value_parser = file_parser("--token-file"))]
    pub token_file: Option<PathBuf>,

    /// PEM file of the CA that signed the daemon's certificate, trusted
    /// instead of the system's CAs [env: PMD_CA_CERT]
    #[arg(long, global = true, value_name = "FILE", value_parser = file_parser("--ca-cert"))]
    pub ca_cert: Option<PathBuf>,

    /// PEM client certificate, for a daemon with --tls-client-ca (mutual
    /// TLS)
    #[arg(long, global = true, value_name = "FILE", requires = "client_key", value_parser = file_parser("--client-cert"))]
    pub client_cert: Option<PathBuf>,

    /// PEM private key of --client-cert
    #[arg(long, global = true, value_name = "FILE", requires = "client_cert", value_parser = file_parser("--client-key"))]
    pub client_key: Option<PathBuf>,

    /// Use the saved context NAME (`local`: this machine's daemon) [env:
    /// PMD_CONTEXT]
    #[arg(long, global = true, value_name = "NAME", value_parser = parse_context_choice)]
    pub context: Option<String>,
}

impl RemoteArgs {
    /// The flags given, by name (for verbs that take none of them).
    pub fn given(&self) -> Vec<&'static str> {
        [
            ("--host", self.host.is_some()),
            ("--token-file", self.token_file.is_some()),
            ("--ca-cert", self.ca_cert.is_some()),
            ("--client-cert", self.client_cert.is_some()),
            ("--client-key", self.client_key.is_some()),
            ("--context", self.context.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect()
    }
}

#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// Save a remote daemon as NAME, from --host and the file flags:
    /// `pmd context add prod --host https://pm.example.com:7070
    /// --token-file ~/.pmd/prod.token --ca-cert ~/.pmd/ca.pem`. Paths are
    /// stored absolute; the token stays in its file, the contexts file
    /// only names it.
    Add {
        /// A name for it (app-name rules; `local` is reserved).
        #[arg(value_parser = parse_context_name)]
        name: String,
    },
    /// Make NAME the current context (`local`: this machine's daemon).
    Use {
        #[arg(value_parser = parse_context_choice)]
        name: String,
    },
    /// List the contexts, the current one marked: host, token file, CA.
    #[command(visible_alias = "ls")]
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Forget the context NAME (its files are left alone).
    #[command(visible_alias = "rm")]
    Remove {
        #[arg(value_parser = parse_context_name)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token and print its secret, once, on stdout (the daemon keeps
    /// only its hash).
    Create {
        /// A name for it (app-name rules; `admin` is $PMDAEMON_HOME/token).
        #[arg(value_parser = parse_name)]
        name: String,
        /// Only the read RPCs (list, describe, logs, metrics, events,
        /// wait-ready, ping).
        #[arg(long)]
        read_only: bool,
        /// Lifetime, e.g. 12h, 30d (at most 366 days; default: no expiry).
        #[arg(long, value_name = "DURATION", value_parser = parse_token_lifetime)]
        expires: Option<Duration>,
    },
    /// List tokens: name, scope, created, expires, last used (never a
    /// secret).
    #[command(visible_alias = "ls")]
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Revoke a token: refused from its next request on.
    Revoke {
        #[arg(value_parser = parse_name)]
        name: String,
    },
}

/// How `list`, `describe` and the lifecycle verbs print processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable (the default).
    #[default]
    Table,
    /// JSON, for scripts.
    Json,
    /// YAML, same keys as JSON.
    Yaml,
}

/// `--output` for verbs that print processes.
#[derive(Debug, Clone, Args)]
pub struct OutputArg {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// Script file, executable or command name; an ecosystem file; or an
    /// existing app's name, its id, or `all`.
    #[arg(value_name = "SCRIPT|FILE|TARGET")]
    pub script: String,

    /// Arguments passed to the app (after `--`).
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,

    #[command(flatten)]
    pub spec: SpecFlags,

    #[command(flatten)]
    pub only: OnlyArg,

    #[command(flatten)]
    pub wait: WaitArg,

    /// With an ecosystem file: refuse it when it has warnings (keys pmd
    /// ignores or does not know), listing every one, as `pmd validate`.
    #[arg(long)]
    pub strict: bool,

    #[command(flatten)]
    pub update_env: UpdateEnvArg,

    /// Output format. Long form only: on `start`, `-o` is PM2's
    /// `--out-file`.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// `--update-env`, PM2's flag of the same name.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct UpdateEnvArg {
    /// Merge this shell's environment over the one the apps captured when
    /// they were started (PM2's --update-env); without it they keep what
    /// they captured. To a remote daemon pmd sends its environment only
    /// with this flag.
    #[arg(long)]
    pub update_env: bool,
}

/// `--only` for verbs that take an ecosystem file.
#[derive(Debug, Clone, Default, Args)]
pub struct OnlyArg {
    /// With an ecosystem file: only these apps (comma-separated or
    /// repeated).
    #[arg(long, value_name = "NAMES", value_delimiter = ',', value_parser = parse_only)]
    pub only: Vec<String>,
}

/// `--wait-ready` for verbs that start processes.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct WaitArg {
    /// Return only when every instance concerned is ready: healthy and
    /// online with a health check, else online for min_uptime. Exits 1 if
    /// one crashes or the wait times out, with the reason and its last log
    /// lines.
    #[arg(long)]
    pub wait_ready: bool,

    /// Longest --wait-ready waits.
    #[arg(
        long,
        value_name = "DURATION",
        requires = "wait_ready",
        default_value = "30s",
        value_parser = positive_duration_parser("--wait-timeout")
    )]
    pub wait_timeout: Duration,

    /// When the --wait-timeout clock started, if before the readiness wait
    /// (ApplyApps waits for dependencies first); now when unset.
    #[arg(skip)]
    pub since: Option<std::time::Instant>,
}

impl WaitArg {
    /// What requests send as `dependency_timeout_ms`: --wait-timeout bounds
    /// the daemon's wait for dependencies too; without --wait-ready, 0 (the
    /// daemon's default).
    pub fn dependency_timeout_ms(&self) -> u64 {
        if self.wait_ready {
            u64::try_from(self.wait_timeout.as_millis()).unwrap_or(u64::MAX)
        } else {
            0
        }
    }
}

/// `--env NAME` for verbs other than `start` that take an ecosystem file.
#[derive(Debug, Clone, Default, Args)]
pub struct EnvironmentArg {
    /// With an ecosystem file: merge each app's env_NAME section over its
    /// env.
    #[arg(long = "env", value_name = "NAME", value_parser = parse_environment)]
    pub environment: Option<String>,
}

/// What the user said about a new app's spec. `None` / empty means "not
/// given": the daemon applies its defaults.
#[derive(Debug, Clone, Default, Args)]
pub struct SpecFlags {
    /// App name (default: the script's file stem).
    #[arg(short, long, value_parser = parse_name)]
    pub name: Option<String>,

    /// Working directory of the app (relative to the current directory).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,

    /// Environment variable for the app (K=V, repeatable). With an
    /// ecosystem file, `--env NAME` instead selects each app's env_NAME
    /// section.
    #[arg(long = "env", value_name = "K=V|NAME", value_parser = parse_env)]
    pub env: Vec<EnvArg>,

    /// Program that runs the script, e.g. python3; `none` runs it directly.
    #[arg(long, value_name = "PROGRAM", value_parser = parse_interpreter)]
    pub interpreter: Option<String>,

    /// Arguments for the interpreter, split like a shell would (as in
    /// ecosystem files); repeatable. PM2's --node-args too.
    #[arg(long, alias = "node-args", value_name = "ARGS", allow_hyphen_values = true, value_parser = parse_words)]
    pub interpreter_args: Vec<Words>,

    /// Restart policy; bare `--autorestart` means always.
    #[arg(
        long,
        value_enum,
        value_name = "POLICY",
        num_args = 0..=1,
        default_missing_value = "always",
        conflicts_with = "no_autorestart"
    )]
    pub autorestart: Option<AutorestartArg>,

    /// Never restart the app when it exits (same as --autorestart never).
    #[arg(long)]
    pub no_autorestart: bool,

    /// Consecutive unstable restarts before the app is errored.
    #[arg(long, value_name = "N", allow_hyphen_values = true,
          value_parser = count_parser("--max-restarts", pmdaemon_proto::MAX_MAX_RESTARTS))]
    pub max_restarts: Option<u32>,

    /// The start-rate limit: more automatic restarts than N within
    /// --start-limit-interval make the app errored, whatever --min-uptime
    /// says (default 60; 0 turns it off).
    #[arg(long, value_name = "N", allow_hyphen_values = true,
          value_parser = count_parser("--start-limit-burst", pmdaemon_proto::MAX_START_LIMIT_BURST))]
    pub start_limit_burst: Option<u32>,

    /// The window of the start-rate limit (default 1m).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = duration_parser("--start-limit-interval"))]
    pub start_limit_interval: Option<Duration>,

    /// A run shorter than this is unstable (ms, or e.g. 5s).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = duration_parser("--min-uptime"))]
    pub min_uptime: Option<Duration>,

    /// Delay before every restart (ms, or e.g. 500ms).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = duration_parser("--restart-delay"))]
    pub restart_delay: Option<Duration>,

    /// Initial exponential backoff between unstable restarts; 0 disables it.
    #[arg(
        long,
        value_name = "DURATION",
        allow_hyphen_values = true,
        value_parser = duration_parser("--exp-backoff-restart-delay")
    )]
    pub exp_backoff_restart_delay: Option<Duration>,

    /// Cap of the exponential backoff.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = duration_parser("--exp-backoff-max"))]
    pub exp_backoff_max: Option<Duration>,

    /// Wait between the stop signal and SIGKILL.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = duration_parser("--kill-timeout"))]
    pub kill_timeout: Option<Duration>,

    /// Signal that asks the app to stop, e.g. SIGINT (default SIGTERM).
    #[arg(long, value_name = "SIGNAL", value_parser = parse_stop_signal)]
    pub stop_signal: Option<String>,

    /// Prefix each log line with a timestamp.
    #[arg(long)]
    pub time: bool,

    /// Rotate a log file when it reaches this size, e.g. 10M.
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true, value_parser = parse_log_max_size)]
    pub log_max_size: Option<u64>,

    /// Rotated log files to keep.
    #[arg(long, value_name = "N", allow_hyphen_values = true,
          value_parser = count_parser("--log-max-files", pmdaemon_proto::MAX_LOG_MAX_FILES))]
    pub log_max_files: Option<u32>,

    /// Instances to run: N, `max` (one per CPU) or -1 (one less).
    #[arg(short, long, value_name = "N|max", allow_hyphen_values = true, value_parser = parse_instances)]
    pub instances: Option<i32>,

    /// Port for the app, in $PORT (or --port-env): 3000, a range
    /// 3000-3003 (one port per instance) or auto:4000-4100 (free ports).
    #[arg(long, value_name = "SPEC", value_parser = port_parser("--port"))]
    pub port: Option<String>,

    /// Environment variable that receives the port (default PORT).
    #[arg(long, value_name = "NAME", value_parser = parse_port_env)]
    pub port_env: Option<String>,

    /// Balance one public port (--port) over the instances: the daemon
    /// listens on it and forwards each connection to a ready instance;
    /// each instance gets a private port in $PORT (PM2's cluster mode,
    /// for any language).
    #[arg(long)]
    pub balance: bool,

    /// How a balanced port picks an instance: round-robin (default) or
    /// least-connections.
    #[arg(long, value_name = "STRATEGY", requires = "balance", value_parser = parse_balance_strategy)]
    pub balance_strategy: Option<pmdaemon_proto::BalanceStrategy>,

    /// The instances' private ports behind a balanced port (default
    /// auto:20000-29999).
    #[arg(long, value_name = "SPEC", requires = "balance", value_parser = port_parser("--balance-ports"))]
    pub balance_ports: Option<String>,

    /// The address of the balanced port (default: every address).
    #[arg(long, value_name = "IP", requires = "balance", value_parser = parse_balance_address)]
    pub balance_address: Option<String>,

    /// Send a PROXY protocol v2 header to the instances, so they learn the
    /// client's address.
    #[arg(long, requires = "balance")]
    pub proxy_protocol: bool,

    /// How long a stopping instance's open connections may go on before
    /// its stop signal (default: --kill-timeout).
    #[arg(long, value_name = "DURATION", requires = "balance", value_parser = duration_parser("--drain-timeout"))]
    pub drain_timeout: Option<Duration>,

    /// How long new connections wait for a ready instance while none is
    /// (default 5s; 0 refuses them at once).
    #[arg(long, value_name = "DURATION", requires = "balance", value_parser = duration_parser("--hold-timeout"))]
    pub hold_timeout: Option<Duration>,

    /// Restart the app when files change below its working directory (or
    /// the --watch-path paths).
    #[arg(long)]
    pub watch: bool,

    /// A path to watch instead of the working directory; repeatable;
    /// implies --watch.
    #[arg(long = "watch-path", value_name = "PATH", value_parser = parse_path_arg)]
    pub watch_paths: Vec<String>,

    /// Changes below paths matching this glob do not restart the app;
    /// repeatable (logs, node_modules and .git are always ignored).
    #[arg(long = "ignore-watch", value_name = "GLOB", value_parser = parse_path_arg)]
    pub ignore_watch: Vec<String>,

    /// Quiet time after a change before the restart (default 1s).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = duration_parser("--watch-delay"))]
    pub watch_delay: Option<Duration>,

    /// Write the app's stdout to this file instead of logs/NAME-ID-out.log
    /// (relative to its cwd). `-o` as in PM2.
    #[arg(short = 'o', long, value_name = "PATH", value_parser = parse_out_file)]
    pub out_file: Option<String>,

    /// Write the app's stderr to this file instead of logs/NAME-ID-err.log.
    /// `-e` as in PM2.
    #[arg(short = 'e', long, value_name = "PATH", value_parser = parse_path_arg)]
    pub error_file: Option<String>,

    /// Also write stdout and stderr together to one file (PM2's --log):
    /// PATH (relative to the app's cwd; write --log=PATH before the
    /// script), or without one logs/NAME-ID.log in the daemon's home.
    /// `-l` as in PM2.
    #[arg(
        short = 'l',
        long = "log",
        value_name = "PATH",
        num_args = 0..=1,
        default_missing_value = "",
        value_parser = parse_log_file
    )]
    pub log_file: Option<String>,

    /// All instances write the same log files (PM2's --merge-logs):
    /// logs/NAME-out.log rather than logs/NAME-ID-out.log, and no -INDEX
    /// in --out-file/--error-file/--log names.
    #[arg(long)]
    pub merge_logs: bool,

    /// Put this timestamp and ": " before each line in the log files, in
    /// PM2's dayjs tokens, e.g. "YYYY-MM-DD HH:mm:ss Z" (text in
    /// [brackets]); the daemon's local time.
    #[arg(long, value_name = "FORMAT", value_parser = parse_log_date_format)]
    pub log_date_format: Option<String>,

    /// `json`: write one JSON object per line to the log files, as PM2's
    /// --log-type json (`pmd logs` still shows the text).
    #[arg(long, value_name = "TYPE", value_parser = parse_log_type)]
    pub log_type: Option<i32>,

    /// Restart the app's running instances on this cron schedule (PM2's
    /// --cron-restart / cron_restart), in the daemon's local time: 5
    /// fields, minute hour day-of-month month day-of-week ("0 3 * * *":
    /// 03:00 daily), or 6 with a leading seconds field; names (MON, JAN),
    /// lists, ranges, steps and @daily-style macros. A stopped app stays
    /// stopped.
    #[arg(long, visible_alias = "cron", value_name = "EXPR", value_parser = parse_cron_restart)]
    pub cron_restart: Option<String>,

    /// Health check: the app is healthy while this URL answers 2xx (plain
    /// http://; `{port}` is the instance's port).
    #[arg(long, value_name = "URL", group = "health_probe", value_parser = parse_health_url)]
    pub health_check_url: Option<String>,

    /// Health check: the app is healthy while HOST:PORT accepts TCP
    /// connections (`{port}` is the instance's port).
    #[arg(long, value_name = "HOST:PORT", group = "health_probe", value_parser = parse_health_tcp)]
    pub health_check_tcp: Option<String>,

    /// Health check: the app is healthy while this shell command exits 0
    /// (run with the app's env and cwd).
    #[arg(long, value_name = "COMMAND", group = "health_probe", value_parser = parse_health_script)]
    pub health_check_script: Option<String>,

    /// Time between health checks (default 5s, at least 100ms).
    #[arg(long, value_name = "DURATION", requires = "health_probe", value_parser = health_duration_parser("--health-interval"))]
    pub health_interval: Option<Duration>,

    /// Longest one health check may take (default 2s, at most the
    /// interval).
    #[arg(long, value_name = "DURATION", requires = "health_probe", value_parser = health_duration_parser("--health-timeout"))]
    pub health_timeout: Option<Duration>,

    /// Consecutive failed checks of an online instance that restart it
    /// (default 3).
    #[arg(long, value_name = "N", requires = "health_probe", value_parser = parse_health_retries)]
    pub health_retries: Option<u32>,

    /// Failed checks in this time after a start do not count (default 0).
    #[arg(long, value_name = "DURATION", requires = "health_probe", value_parser = duration_parser("--health-start-period"))]
    pub health_start_period: Option<Duration>,

    /// HTTP status the URL check expects instead of any 2xx.
    #[arg(
        long,
        value_name = "CODE",
        requires = "health_probe",
        conflicts_with_all = ["health_check_tcp", "health_check_script"],
        value_parser = parse_expected_status
    )]
    pub health_expected_status: Option<u32>,

    /// Restart an instance whose memory (RSS of its process group) exceeds
    /// this, e.g. 200M (PM2's --max-memory-restart).
    #[arg(long, visible_alias = "max-memory-restart", value_name = "SIZE", value_parser = parse_max_memory)]
    pub max_memory: Option<u64>,

    /// The app is ready when it sends "ready" over its IPC channel
    /// (`process.send('ready')` in Node): PM2's `wait_ready`, which PM2
    /// spells `--wait-ready` (here that flag makes pmd wait for readiness).
    #[arg(long)]
    pub ready_message: bool,

    /// How long the app may take to send "ready" (default 3s, PM2's).
    #[arg(long, value_name = "DURATION", requires = "ready_message", value_parser = duration_parser("--listen-timeout"))]
    pub listen_timeout: Option<Duration>,

    /// Stop the app by sending "shutdown" over its IPC channel instead of
    /// the stop signal (SIGKILL after --kill-timeout as ever).
    #[arg(long)]
    pub shutdown_with_message: bool,

    /// Exit codes after which the app is not restarted, e.g. 0,3.
    #[arg(long, value_name = "CODES", value_delimiter = ',', value_parser = parse_stop_exit_code)]
    pub stop_exit_codes: Vec<i32>,

    /// The variable that receives the instance index (default
    /// NODE_APP_INSTANCE).
    #[arg(long, value_name = "NAME", value_parser = parse_instance_var)]
    pub instance_var: Option<String>,

    /// A variable of --env holding an integer that each instance gets
    /// raised by its index (PORT=3000: 3000, 3001...).
    #[arg(long, value_name = "NAME", value_parser = parse_increment_var)]
    pub increment_var: Option<String>,
}

/// One `--env` value of `start`: a variable, or (with an ecosystem file) the
/// name of an environment section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvArg {
    /// `--env K=V`.
    Var(String, String),
    /// `--env NAME`: the file's env_NAME sections.
    Environment(String),
}

impl SpecFlags {
    /// Whether any flag that only makes sense for a new app was given.
    pub fn any_given(&self) -> bool {
        let Self {
            name,
            cwd,
            env,
            interpreter,
            interpreter_args,
            autorestart,
            no_autorestart,
            max_restarts,
            start_limit_burst,
            start_limit_interval,
            min_uptime,
            restart_delay,
            exp_backoff_restart_delay,
            exp_backoff_max,
            kill_timeout,
            stop_signal,
            time,
            log_max_size,
            log_max_files,
            instances,
            port,
            port_env,
            balance,
            balance_strategy,
            balance_ports,
            balance_address,
            proxy_protocol,
            drain_timeout,
            hold_timeout,
            watch,
            watch_paths,
            ignore_watch,
            watch_delay,
            out_file,
            error_file,
            log_file,
            merge_logs,
            log_date_format,
            log_type,
            cron_restart,
            health_check_url,
            health_check_tcp,
            health_check_script,
            health_interval,
            health_timeout,
            health_retries,
            health_start_period,
            health_expected_status,
            max_memory,
            ready_message,
            listen_timeout,
            shutdown_with_message,
            stop_exit_codes,
            instance_var,
            increment_var,
        } = self;
        name.is_some()
            || cwd.is_some()
            || !env.is_empty()
            || interpreter.is_some()
            || !interpreter_args.is_empty()
            || autorestart.is_some()
            || *no_autorestart
            || max_restarts.is_some()
            || start_limit_burst.is_some()
            || start_limit_interval.is_some()
            || min_uptime.is_some()
            || restart_delay.is_some()
            || exp_backoff_restart_delay.is_some()
            || exp_backoff_max.is_some()
            || kill_timeout.is_some()
            || stop_signal.is_some()
            || *time
            || log_max_size.is_some()
            || log_max_files.is_some()
            || instances.is_some()
            || port.is_some()
            || port_env.is_some()
            || *balance
            || balance_strategy.is_some()
            || balance_ports.is_some()
            || balance_address.is_some()
            || *proxy_protocol
            || drain_timeout.is_some()
            || hold_timeout.is_some()
            || *watch
            || !watch_paths.is_empty()
            || !ignore_watch.is_empty()
            || watch_delay.is_some()
            || out_file.is_some()
            || error_file.is_some()
            || log_file.is_some()
            || *merge_logs
            || log_date_format.is_some()
            || log_type.is_some()
            || cron_restart.is_some()
            || health_check_url.is_some()
            || health_check_tcp.is_some()
            || health_check_script.is_some()
            || health_interval.is_some()
            || health_timeout.is_some()
            || health_retries.is_some()
            || health_start_period.is_some()
            || health_expected_status.is_some()
            || max_memory.is_some()
            || *ready_message
            || listen_timeout.is_some()
            || *shutdown_with_message
            || !stop_exit_codes.is_empty()
            || instance_var.is_some()
            || increment_var.is_some()
    }

    /// The `--env K=V` variables.
    pub fn env_vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.env.iter().filter_map(|e| match e {
            EnvArg::Var(k, v) => Some((k.as_str(), v.as_str())),
            EnvArg::Environment(_) => None,
        })
    }

    /// The `--env NAME` environments.
    pub fn environments(&self) -> impl Iterator<Item = &str> {
        self.env.iter().filter_map(|e| match e {
            EnvArg::Environment(name) => Some(name.as_str()),
            EnvArg::Var(..) => None,
        })
    }

    /// Whether any flag other than `--env NAME` was given: those describe
    /// one app and do not apply to an ecosystem file.
    pub fn any_app_flag(&self) -> bool {
        let without_environments = SpecFlags {
            env: self
                .env
                .iter()
                .filter(|e| matches!(e, EnvArg::Var(..)))
                .cloned()
                .collect(),
            ..self.clone()
        };
        without_environments.any_given()
    }

    /// The balanced port the flags describe (`--balance`).
    pub fn balance_spec(&self) -> Option<pmdaemon_proto::v1::BalanceSpec> {
        use pmdaemon_proto::v1::BalanceStrategy as S;
        self.balance.then(|| pmdaemon_proto::v1::BalanceSpec {
            strategy: self.balance_strategy.map_or(S::Unspecified, S::from) as i32,
            proxy_protocol: self.proxy_protocol,
            drain_timeout_ms: self.drain_timeout.map(millis),
            hold_timeout_ms: self.hold_timeout.map(millis),
            address: self.balance_address.clone().unwrap_or_default(),
            instance_ports: self.balance_ports.clone().unwrap_or_default(),
        })
    }

    /// The health check the flags describe, if a probe was given (clap
    /// makes the tuning flags require one).
    pub fn health_check(&self) -> Option<HealthCheck> {
        let probe = if let Some(url) = &self.health_check_url {
            Probe::Http(url.clone())
        } else if let Some(address) = &self.health_check_tcp {
            Probe::Tcp(address.clone())
        } else {
            Probe::Script(self.health_check_script.clone()?)
        };
        Some(HealthCheck {
            probe: Some(probe),
            interval_ms: self.health_interval.map(millis),
            timeout_ms: self.health_timeout.map(millis),
            retries: self.health_retries,
            start_period_ms: self.health_start_period.map(millis),
            expected_status: self.health_expected_status,
        })
    }

    /// The restart policy asked for, if any.
    pub fn restart_policy(&self) -> Option<RestartPolicy> {
        if self.no_autorestart {
            return Some(RestartPolicy::Never);
        }
        self.autorestart.map(RestartPolicy::from)
    }
}

/// `--autorestart` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AutorestartArg {
    Always,
    OnFailure,
    Never,
}

impl From<AutorestartArg> for RestartPolicy {
    fn from(arg: AutorestartArg) -> Self {
        match arg {
            AutorestartArg::Always => RestartPolicy::Always,
            AutorestartArg::OnFailure => RestartPolicy::OnFailure,
            AutorestartArg::Never => RestartPolicy::Never,
        }
    }
}

/// A target on the command line: an ecosystem file (an existing file with
/// an ecosystem file name), else an app name, an id or `all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetArg {
    Target(Target),
    /// The path as given.
    File(String),
}

impl std::fmt::Display for TargetArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetArg::Target(target) => target.fmt(f),
            TargetArg::File(path) => f.write_str(path),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct StopArgs {
    /// App name, process id, `all` or ecosystem file; several may be given.
    #[arg(required = true, value_name = "TARGET", value_parser = parse_target_arg)]
    pub targets: Vec<TargetArg>,

    #[command(flatten)]
    pub only: OnlyArg,

    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Clone, Args)]
pub struct RestartArgs {
    /// App name, process id, `all` or ecosystem file; several may be given.
    #[arg(required = true, value_name = "TARGET", value_parser = parse_target_arg)]
    pub targets: Vec<TargetArg>,

    /// Port spec for this run only (as --port of start); the app's own
    /// returns with the next plain restart.
    #[arg(long, value_name = "SPEC", value_parser = port_parser("--port"), conflicts_with = "update_env")]
    pub port: Option<String>,

    #[command(flatten)]
    pub update_env: UpdateEnvArg,

    #[command(flatten)]
    pub wait: WaitArg,

    #[command(flatten)]
    pub environment: EnvironmentArg,

    #[command(flatten)]
    pub only: OnlyArg,

    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Clone, Args)]
pub struct ReloadArgs {
    /// App name, process id, `all` or ecosystem file; several may be given.
    #[arg(required = true, value_name = "TARGET", value_parser = parse_target_arg)]
    pub targets: Vec<TargetArg>,

    /// Longest one replacement may take to become ready (default 30s).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = duration_parser("--ready-timeout"))]
    pub ready_timeout: Option<Duration>,

    #[command(flatten)]
    pub update_env: UpdateEnvArg,

    #[command(flatten)]
    pub wait: WaitArg,

    #[command(flatten)]
    pub environment: EnvironmentArg,

    #[command(flatten)]
    pub only: OnlyArg,

    #[command(flatten)]
    pub output: OutputArg,
}

/// PM2's startOrRestart / startOrReload / startOrGracefulReload.
#[derive(Debug, Clone, Args)]
pub struct StartOrArgs {
    /// The ecosystem file.
    #[arg(value_name = "FILE")]
    pub file: String,

    #[command(flatten)]
    pub update_env: UpdateEnvArg,

    #[command(flatten)]
    pub wait: WaitArg,

    #[command(flatten)]
    pub environment: EnvironmentArg,

    #[command(flatten)]
    pub only: OnlyArg,

    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    /// The app's name.
    #[arg(value_name = "NAME", value_parser = parse_name)]
    pub name: String,

    /// Instances: N, `max` (one per CPU), or +K / -K to add or remove.
    #[arg(value_name = "N|max|+K|-K", allow_hyphen_values = true, value_parser = parse_scale)]
    pub count: ScaleCount,

    #[command(flatten)]
    pub output: OutputArg,
}

/// What `pmd scale` was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleCount {
    /// An instance count as AppSpec.instances (0: one per CPU).
    To(i32),
    /// Add (positive) or remove (negative) instances.
    By(i32),
}

#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// App name, process id, `all` or ecosystem file; several may be
    /// given. Optional with --status (then: all).
    #[arg(
        value_name = "TARGET",
        value_parser = parse_target_arg,
        required_unless_present = "status"
    )]
    pub targets: Vec<TargetArg>,

    /// Only delete instances in this state, e.g. `pmd delete --status errored`.
    #[arg(long, value_name = "STATE", value_parser = parse_state)]
    pub status: Option<ProcessState>,

    #[command(flatten)]
    pub only: OnlyArg,

    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub output: OutputArg,

    /// Order by FIELD (name, id, pid, status, cpu, mem, restarts, uptime),
    /// ascending unless `:desc` follows, as in PM2: `--sort mem:desc`.
    #[arg(long, value_name = "FIELD[:asc|desc]", value_parser = parse_sort)]
    pub sort: Option<Sort>,
}

/// `list --sort`: a field and a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

/// What `list --sort` orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SortKey {
    Name,
    Id,
    Pid,
    Status,
    Cpu,
    #[value(alias = "memory")]
    Mem,
    Restarts,
    Uptime,
}

#[derive(Debug, Clone, Args)]
pub struct DescribeArgs {
    /// App name, process id or `all`.
    #[arg(value_name = "TARGET", value_parser = parse_target)]
    pub target: Target,

    /// Show the values of the environment variables (names only without
    /// it: values are often secrets).
    #[arg(long)]
    pub env_values: bool,

    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Clone, Args)]
pub struct EnvArgs {
    /// App name or process id (an app's instances are shown one after
    /// the other), or `all`.
    #[arg(value_name = "ID|NAME", value_parser = parse_target)]
    pub target: Target,

    /// Output format: `KEY=VALUE` lines (table), or JSON/YAML objects.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Args)]
pub struct ResetArgs {
    /// App name, process id or `all`.
    #[arg(value_name = "TARGET", value_parser = parse_target)]
    pub target: Target,

    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Clone, Args)]
pub struct SendSignalArgs {
    /// Signal name (SIGUSR2, USR2) or number (12).
    #[arg(value_name = "SIGNAL", value_parser = parse_signal)]
    pub signal: String,

    /// App name (each running instance), process id or `all`.
    #[arg(value_name = "TARGET", value_parser = parse_target)]
    pub target: Target,

    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// App name, process id or `all` (default: all).
    #[arg(value_name = "TARGET", value_parser = parse_target)]
    pub target: Option<Target>,

    /// History lines per log file printed first.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 15,
        allow_hyphen_values = true,
        value_parser = count_parser("--lines", pmdaemon_proto::MAX_LOG_HISTORY_LINES)
    )]
    pub lines: u32,

    /// Keep printing new lines as they are written.
    #[arg(short, long)]
    pub follow: bool,

    /// Only the apps' stdout.
    #[arg(long, conflicts_with = "err")]
    pub out: bool,

    /// Only the apps' stderr.
    #[arg(long)]
    pub err: bool,

    /// Print when the daemon read each line (live lines only).
    #[arg(long)]
    pub time: bool,

    /// Print the lines alone, without the `ID|NAME | ` tag.
    #[arg(long, conflicts_with = "json")]
    pub raw: bool,

    /// One JSON object per line, as PM2's `logs --json`: message,
    /// timestamp, type (out or err), process_id, app_name.
    #[arg(long)]
    pub json: bool,

    /// PM2's flag: print and exit, which pmd does without -f.
    #[arg(long, hide = true, conflicts_with = "follow")]
    pub nostream: bool,
}

#[derive(Debug, Clone, Args)]
pub struct MonitArgs {
    /// App name, process id or `all` (default: all).
    #[arg(value_name = "TARGET", value_parser = parse_target)]
    pub target: Option<Target>,

    /// Time between samples (at least 200ms).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "1s",
        value_parser = parse_monit_interval
    )]
    pub interval: Duration,
}

/// How `pmd events` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum EventsFormat {
    /// One line per event, for people.
    #[default]
    Text,
    /// One JSON object per line, for scripts.
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// App name, process id or `all` (default: all).
    #[arg(value_name = "TARGET", value_parser = parse_target)]
    pub target: Option<Target>,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = EventsFormat::Text)]
    pub output: EventsFormat,
}

#[derive(Debug, Clone, Args)]
pub struct FlushArgs {
    /// App name, process id or `all` (default: all).
    #[arg(value_name = "TARGET", value_parser = parse_target)]
    pub target: Option<Target>,
}

// ---- value parsers: each error names its flag -----------------------------

fn parse_name(value: &str) -> Result<String, String> {
    pmdaemon_proto::validate_name(value).map_err(|e| e.to_string())?;
    Ok(value.to_string())
}

fn parse_image(value: &str) -> Result<String, String> {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "--image: {value:?} is not an image reference (e.g. registry.example/app:1.2)"
        ));
    }
    Ok(value.to_string())
}

fn parse_host(value: &str) -> Result<HostUrl, String> {
    HostUrl::parse(value).map_err(|e| e.to_string())
}

/// A file flag: not empty (the file itself is read later, with the
/// message naming the flag).
fn file_parser(flag: &'static str) -> impl Fn(&str) -> Result<PathBuf, String> + Clone {
    move |value: &str| {
        if value.trim().is_empty() {
            Err(format!("{flag} is empty: give a file path"))
        } else {
            Ok(PathBuf::from(value))
        }
    }
}

/// A stored context's name (not `local`).
fn parse_context_name(value: &str) -> Result<String, String> {
    crate::contexts::ContextName::new(value).map(String::from)
}

/// A context to use: a stored one's name or `local`.
fn parse_context_choice(value: &str) -> Result<String, String> {
    if value == crate::contexts::LOCAL {
        return Ok(value.to_string());
    }
    parse_context_name(value)
}

fn parse_token_lifetime(value: &str) -> Result<Duration, String> {
    pmdaemon_proto::parse_token_lifetime("--expires", value).map_err(|e| e.0)
}

fn parse_target(value: &str) -> Result<Target, String> {
    value.parse().map_err(|e: pmdaemon_proto::InvalidInput| e.0)
}

fn parse_target_arg(value: &str) -> Result<TargetArg, String> {
    if crate::ecosystem::is_file_target(value) {
        return Ok(TargetArg::File(value.to_string()));
    }
    parse_target(value).map(TargetArg::Target)
}

fn parse_env(value: &str) -> Result<EnvArg, String> {
    let Some((key, val)) = value.split_once('=') else {
        crate::rules::check_environment_name("--env", value).map_err(|_| {
            format!(
                "--env: {value:?} is neither K=V (a variable of the app) nor the name of an \
                 ecosystem file's environment, such as production"
            )
        })?;
        return Ok(EnvArg::Environment(value.to_string()));
    };
    crate::rules::check_env_var(&format!("--env: {value:?}"), key, val)?;
    Ok(EnvArg::Var(key.to_string(), val.to_string()))
}

fn parse_environment(value: &str) -> Result<String, String> {
    if value.contains('=') {
        return Err(format!(
            "--env: {value:?} looks like K=V; here --env NAME selects an ecosystem file's \
             env_NAME section (variables are set with `pmd start SCRIPT --env K=V`)"
        ));
    }
    crate::rules::check_environment_name("--env", value)?;
    Ok(value.to_string())
}

fn parse_only(value: &str) -> Result<String, String> {
    pmdaemon_proto::validate_name(value).map_err(|e| format!("--only: {e}"))?;
    Ok(value.to_string())
}

fn parse_instances(value: &str) -> Result<i32, String> {
    crate::rules::parse_instances("--instances", value)
}

fn port_parser(
    flag: &'static str,
) -> impl Fn(&str) -> Result<String, String> + Clone + Send + Sync + 'static {
    move |value| crate::rules::parse_port_spec(flag, value)
}

fn parse_balance_strategy(value: &str) -> Result<pmdaemon_proto::BalanceStrategy, String> {
    value
        .parse()
        .map_err(|e: pmdaemon_proto::InvalidInput| e.named("--balance-strategy").0)
}

fn parse_balance_address(value: &str) -> Result<String, String> {
    pmdaemon_proto::parse_balance_address(value)
        .map(|ip| ip.to_string())
        .map_err(|e| e.named("--balance-address").0)
}

fn parse_port_env(value: &str) -> Result<String, String> {
    crate::rules::check_port_env("--port-env", value)?;
    Ok(value.to_string())
}

fn parse_path_arg(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        return Err("empty path".into());
    }
    if value.contains('\0') {
        return Err("paths cannot contain NUL bytes".into());
    }
    Ok(value.to_string())
}

/// `-o json` on `start` is most likely `--output json` from another verb's
/// habit: refuse it rather than write the app's stdout to a file `json`.
fn parse_out_file(value: &str) -> Result<String, String> {
    if matches!(value, "json" | "yaml" | "table") {
        return Err(format!(
            "on `start`, -o is --out-file (the app's stdout file, as in PM2); for the output \
             format use --output {value}, for a file named {value} write ./{value}"
        ));
    }
    parse_path_arg(value)
}

fn parse_scale(value: &str) -> Result<ScaleCount, String> {
    let relative = |digits: &str, sign: i32| -> Result<ScaleCount, String> {
        match digits.parse::<i32>() {
            Ok(n) if n > 0 && n <= crate::rules::MAX_INSTANCES => Ok(ScaleCount::By(sign * n)),
            _ => Err(format!(
                "{value:?}: +K and -K take a count from 1 to {}",
                crate::rules::MAX_INSTANCES
            )),
        }
    };
    if let Some(digits) = value.strip_prefix('+') {
        return relative(digits, 1);
    }
    if let Some(digits) = value.strip_prefix('-') {
        return relative(digits, -1);
    }
    // `instances: 0` is PM2's max in a file and for --instances, but
    // "scale to 0" reads as "no instance": refused rather than guessed.
    if value.trim() == "0" {
        return Err(
            "0: an app keeps at least one instance; `pmd stop NAME` stops it, `max` is one per \
             CPU"
            .into(),
        );
    }
    crate::rules::parse_instances("instances", value)
        .map(ScaleCount::To)
        .map_err(|e| format!("{e} (or +K / -K)"))
}

fn parse_interpreter(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        return Err("--interpreter: empty; give a program such as python3, or `none`".into());
    }
    Ok(value.to_string())
}

/// One flag value split into words like a shell would: `-X 'a b'` is two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Words(pub Vec<String>);

/// The same split as the ecosystem loader's, so a value means the same on
/// the command line and in a file.
fn parse_words(value: &str) -> Result<Words, String> {
    shell_words::split(value)
        .map(Words)
        .map_err(|e| format!("cannot split {value:?} into words: {e}"))
}

/// `--log`'s PATH; empty (the flag alone) is the default file.
fn parse_log_file(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Ok(String::new());
    }
    parse_path_arg(value)
}

fn parse_log_date_format(value: &str) -> Result<String, String> {
    crate::rules::check_date_format("--log-date-format", value)
}

fn parse_cron_restart(value: &str) -> Result<String, String> {
    crate::rules::check_cron("--cron-restart", value)
}

fn parse_log_type(value: &str) -> Result<i32, String> {
    crate::rules::parse_log_type("--log-type", value)
}

/// Any signal `kill` takes, by name or number, as its canonical name.
fn parse_signal(value: &str) -> Result<String, String> {
    pmdaemon_proto::parse_signal(value)
        .map(|sig| sig.as_str().to_string())
        .map_err(|e| e.0)
}

/// `name`, `mem:desc`: PM2's `--sort` syntax.
fn parse_sort(value: &str) -> Result<Sort, String> {
    let (field, order) = value.split_once(':').unwrap_or((value, "asc"));
    let key = SortKey::from_str(field, true).map_err(|_| {
        format!(
            "--sort: {field:?} is not a field; use name, id, pid, status, cpu, mem, restarts \
             or uptime (with :asc or :desc)"
        )
    })?;
    let descending = match order.to_ascii_lowercase().as_str() {
        "asc" => false,
        "desc" => true,
        _ => {
            return Err(format!(
                "--sort: {order:?} is not an order; use asc or desc"
            ));
        }
    };
    Ok(Sort { key, descending })
}

fn parse_stop_signal(value: &str) -> Result<String, String> {
    pmdaemon_proto::parse_stop_signal("--stop-signal", value)
        .map(|sig| sig.as_str().to_string())
        .map_err(|e| e.0)
}

fn parse_stop_exit_code(value: &str) -> Result<i32, String> {
    pmdaemon_proto::parse_stop_exit_code(value).map_err(|e| e.named("--stop-exit-codes").0)
}

fn parse_instance_var(value: &str) -> Result<String, String> {
    crate::rules::check_instance_var("--instance-var", value).map(|()| value.to_string())
}

fn parse_increment_var(value: &str) -> Result<String, String> {
    crate::rules::check_increment_var("--increment-var", value).map(|()| value.to_string())
}

fn parse_log_max_size(value: &str) -> Result<u64, String> {
    pmdaemon_proto::parse_size("--log-max-size", value)
        .and_then(|size| pmdaemon_proto::check_log_max_size("--log-max-size", size))
        .map_err(|e| e.0)
}

/// A count flag with a maximum: `--max-restarts`, `--log-max-files`.
fn count_parser(flag: &'static str, max: u32) -> impl Fn(&str) -> Result<u32, String> + Clone {
    move |value| {
        let n: u64 = value
            .trim()
            .parse()
            .map_err(|_| format!("{flag}: {value:?} is not a whole number of 0 or more"))?;
        pmdaemon_proto::check_count(flag, n, max).map_err(|e| e.0)
    }
}

fn parse_state(value: &str) -> Result<ProcessState, String> {
    ProcessState::from_word(value).ok_or_else(|| {
        format!(
            "--status: {value:?} is not a state; use stopped, errored, online, starting, \
             stopping or waiting-restart"
        )
    })
}

fn duration_parser(
    flag: &'static str,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |value| pmdaemon_proto::parse_duration(flag, value).map_err(|e| e.0)
}

/// A duration that must be more than zero.
fn positive_duration_parser(
    flag: &'static str,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |value| match pmdaemon_proto::parse_duration(flag, value) {
        Ok(d) if d.is_zero() => Err(format!("{flag}: must be more than 0")),
        Ok(d) => Ok(d),
        Err(e) => Err(e.0),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn parse_health_url(value: &str) -> Result<String, String> {
    crate::rules::check_http_probe("--health-check-url", value)?;
    Ok(value.to_string())
}

fn parse_health_tcp(value: &str) -> Result<String, String> {
    crate::rules::check_tcp_probe("--health-check-tcp", value)?;
    Ok(value.to_string())
}

fn parse_health_script(value: &str) -> Result<String, String> {
    crate::rules::check_script_probe("--health-check-script", value)?;
    Ok(value.to_string())
}

/// A health-check interval or timeout (at least 100ms).
fn health_duration_parser(
    flag: &'static str,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |value| {
        let d = pmdaemon_proto::parse_duration(flag, value).map_err(|e| e.0)?;
        crate::rules::check_health_duration(flag, millis(d))?;
        Ok(d)
    }
}

fn parse_health_retries(value: &str) -> Result<u32, String> {
    match value.trim().parse::<u64>() {
        Ok(n) => crate::rules::check_health_retries("--health-retries", n),
        Err(_) => Err(format!(
            "--health-retries: {value:?} is not a count of failed checks (1 to 100)"
        )),
    }
}

fn parse_expected_status(value: &str) -> Result<u32, String> {
    let code = value.trim().parse::<u64>().map_err(|_| {
        format!("--health-expected-status: {value:?} is not an HTTP status code (100-599)")
    })?;
    crate::rules::check_status_code("--health-expected-status", code)
}

fn parse_max_memory(value: &str) -> Result<u64, String> {
    pmdaemon_proto::parse_size("--max-memory", value)
        .and_then(|size| {
            pmdaemon_proto::check_max_memory(size).map_err(|e| e.named("--max-memory"))
        })
        .map_err(|e| e.0)
}

/// The daemon samples at most every [`pmdaemon_proto::MIN_SAMPLE_INTERVAL_MS`].
fn parse_monit_interval(value: &str) -> Result<Duration, String> {
    let interval = pmdaemon_proto::parse_duration("--interval", value).map_err(|e| e.0)?;
    let min = Duration::from_millis(pmdaemon_proto::MIN_SAMPLE_INTERVAL_MS);
    if interval < min {
        return Err(format!(
            "--interval: {} is too short; the daemon samples at most every {}",
            humantime::format_duration(interval),
            humantime::format_duration(min)
        ));
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    /// Every verb of `pm2 --help` (PM2 7.0.4), aliases included.
    const PM2_VERBS: &[&str] = &[
        "start",
        "trigger",
        "deploy",
        "startOrRestart",
        "startOrReload",
        "pid",
        "create",
        "startOrGracefulReload",
        "stop",
        "restart",
        "scale",
        "profile:mem",
        "profile:cpu",
        "reload",
        "id",
        "inspect",
        "delete",
        "del",
        "sendSignal",
        "ping",
        "updatePM2",
        "update",
        "install",
        "module:install",
        "module:update",
        "module:generate",
        "uninstall",
        "module:uninstall",
        "package",
        "publish",
        "module:publish",
        "set",
        "multiset",
        "get",
        "conf",
        "config",
        "unset",
        "report",
        "link",
        "unlink",
        "monitor",
        "unmonitor",
        "open",
        "plus",
        "register",
        "login",
        "logout",
        "dump",
        "save",
        "cleardump",
        "send",
        "attach",
        "resurrect",
        "unstartup",
        "startup",
        "logrotate",
        "ecosystem",
        "init",
        "reset",
        "describe",
        "desc",
        "info",
        "show",
        "env",
        "list",
        "ls",
        "l",
        "ps",
        "status",
        "jlist",
        "slist",
        "sysinfos",
        "prettylist",
        "monit",
        "imonit",
        "dashboard",
        "dash",
        "flush",
        "reloadLogs",
        "logs",
        "kill",
        "pull",
        "forward",
        "backward",
        "deepUpdate",
        "serve",
        "expose",
        "autoinstall",
        "examples",
        "install-otel",
        "uninstall-otel",
    ];

    /// The README's verb table (issue 11) names every verb and alias of
    /// pmd's CLI as `pmd VERB`, and has a row for every verb of PM2's.
    #[test]
    fn the_readme_verb_table_covers_pmd_and_pm2() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("| PM2 verb | pmd |")
            .expect("README.md has the verb table");
        let table: Vec<&str> = readme[start..]
            .lines()
            .take_while(|l| l.starts_with('|'))
            .collect();
        let text = table.join("\n");
        let cli = Cli::command();
        let mut pmd_verbs = vec!["help".to_string()];
        for sub in cli.get_subcommands() {
            pmd_verbs.push(sub.get_name().to_string());
            pmd_verbs.extend(sub.get_all_aliases().map(str::to_string));
        }
        let missing: Vec<&String> = pmd_verbs
            .iter()
            .filter(|v| {
                !text.contains(&format!("`pmd {v}`")) && !text.contains(&format!("`pmd {v} "))
            })
            .collect();
        assert!(missing.is_empty(), "README's verb table lacks {missing:?}");
        let first_cells: Vec<&str> = table
            .iter()
            .filter_map(|row| row.split(" | ").next())
            .collect();
        let absent: Vec<&&str> = PM2_VERBS
            .iter()
            .filter(|v| !first_cells.iter().any(|c| c.contains(&format!("`{v}`"))))
            .collect();
        assert!(
            absent.is_empty(),
            "README's verb table has no row for {absent:?}"
        );
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("pmd").chain(args.iter().copied()))
    }

    fn start(args: &[&str]) -> StartArgs {
        match parse(args).unwrap().command {
            Command::Start(s) => *s,
            other => panic!("not start: {other:?}"),
        }
    }

    /// PM2's runtime flags on start; --listen-timeout needs
    /// --ready-message, and bad codes and names are usage errors.
    #[test]
    fn pm2_runtime_flags() {
        let s = start(&[
            "start",
            "app.js",
            "--ready-message",
            "--listen-timeout",
            "5s",
            "--shutdown-with-message",
            "--stop-exit-codes",
            "0,3",
            "--instance-var",
            "W",
            "--increment-var",
            "PORT",
        ]);
        assert!(s.spec.ready_message && s.spec.shutdown_with_message);
        assert_eq!(s.spec.listen_timeout, Some(Duration::from_secs(5)));
        assert_eq!(s.spec.stop_exit_codes, [0, 3]);
        assert_eq!(s.spec.instance_var.as_deref(), Some("W"));
        assert_eq!(s.spec.increment_var.as_deref(), Some("PORT"));
        assert!(s.spec.any_given());
        for bad in [
            &["start", "a.js", "--listen-timeout", "5s"][..],
            &["start", "a.js", "--stop-exit-codes", "0,x"],
            &["start", "a.js", "--instance-var", "PATH"],
            &["start", "a.js", "--increment-var", "1X"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn start_takes_app_args_after_double_dash() {
        let s = start(&["start", "sleep", "--", "1000", "--flag"]);
        assert_eq!(s.script, "sleep");
        assert_eq!(s.args, ["1000", "--flag"]);
        assert!(!s.spec.any_given());
    }

    #[test]
    fn start_parses_spec_flags() {
        let s = start(&[
            "start",
            "./server.py",
            "--name",
            "api",
            "--env",
            "A=1",
            "--env",
            "B=x=y",
            "--kill-timeout",
            "2s",
            "--restart-delay",
            "250",
            "--stop-signal",
            "int",
            "--log-max-size",
            "10M",
            "--max-restarts",
            "3",
            "--interpreter-args",
            "-u -X 'dev mode'",
            "--time",
        ]);
        assert_eq!(s.spec.name.as_deref(), Some("api"));
        assert_eq!(
            s.spec.env,
            [
                EnvArg::Var("A".into(), "1".into()),
                EnvArg::Var("B".into(), "x=y".into())
            ]
        );
        assert_eq!(s.spec.kill_timeout, Some(Duration::from_secs(2)));
        assert_eq!(s.spec.restart_delay, Some(Duration::from_millis(250)));
        assert_eq!(s.spec.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(s.spec.log_max_size, Some(10 << 20));
        assert_eq!(s.spec.max_restarts, Some(3));
        assert_eq!(
            s.spec.interpreter_args,
            [Words(vec!["-u".into(), "-X".into(), "dev mode".into()])]
        );
        assert!(s.spec.time);
        assert!(s.spec.any_given());
    }

    #[test]
    fn autorestart_is_optional_valued_and_conflicts_with_no_autorestart() {
        let bare = start(&["start", "x.sh", "--autorestart"]);
        assert_eq!(bare.spec.restart_policy(), Some(RestartPolicy::Always));
        let valued = start(&["start", "x.sh", "--autorestart", "on-failure"]);
        assert_eq!(valued.spec.restart_policy(), Some(RestartPolicy::OnFailure));
        let eq = start(&["start", "x.sh", "--autorestart=never"]);
        assert_eq!(eq.spec.restart_policy(), Some(RestartPolicy::Never));
        let no = start(&["start", "x.sh", "--no-autorestart"]);
        assert_eq!(no.spec.restart_policy(), Some(RestartPolicy::Never));
        assert_eq!(start(&["start", "x.sh"]).spec.restart_policy(), None);
        let err = parse(&["start", "x.sh", "--autorestart", "--no-autorestart"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn bad_values_are_usage_errors_naming_the_flag() {
        for (args, flag) in [
            (
                &["start", "x", "--kill-timeout", "soon"][..],
                "--kill-timeout",
            ),
            (&["start", "x", "--min-uptime", "-5"][..], "--min-uptime"),
            (
                &["start", "x", "--restart-delay", "48h"][..],
                "--restart-delay",
            ),
            (
                &["start", "x", "--stop-signal", "SIGSTOP"][..],
                "--stop-signal",
            ),
            (
                &["start", "x", "--stop-signal", "NOPE"][..],
                "--stop-signal",
            ),
            (
                &["start", "x", "--log-max-size", "lots"][..],
                "--log-max-size",
            ),
            (&["start", "x", "--name", "all"][..], "--name"),
            (&["start", "x", "--name", "a/b"][..], "--name"),
            (&["start", "x", "--env", "NO SPACES"][..], "--env"),
            (&["start", "x", "--env", "=1"][..], "--env"),
            (&["start", "x", "--port", "70000"][..], "--port"),
            (&["start", "x", "--port", "3003-3000"][..], "--port"),
            (&["start", "x", "-i", "-2"][..], "--instances"),
            (&["start", "x", "--port-env", "1X"][..], "--port-env"),
            (
                &["start", "x", "--watch-delay", "soon"][..],
                "--watch-delay",
            ),
            (&["restart", "x", "--port", "auto:1"][..], "--port"),
            (&["start", "x", "--only", "a/b"][..], "--only"),
            (
                &["start", "x", "--interpreter-args", "-X 'open"][..],
                "--interpreter-args",
            ),
            (
                &["start", "x", "--log-max-size", "100"][..],
                "--log-max-size",
            ),
            (
                &["start", "x", "--max-restarts", "5000000"][..],
                "--max-restarts",
            ),
            (
                &["start", "x", "--log-max-files", "101"][..],
                "--log-max-files",
            ),
            (&["logs", "x", "--lines", "100001"][..], "--lines"),
            (
                &["start", "x", "--max-restarts", "-1"][..],
                "--max-restarts",
            ),
            (&["delete", "--status", "sleeping"][..], "--status"),
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
            assert!(err.to_string().contains(flag), "{args:?}: {err}");
        }
    }

    #[test]
    fn targets_are_validated() {
        let err = parse(&["stop", "../etc"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        match parse(&["stop", "api", "3", "all"]).unwrap().command {
            Command::Stop(t) => assert_eq!(
                t.targets,
                [Target::Name("api".into()), Target::Id(3), Target::All].map(TargetArg::Target)
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_existing_ecosystem_file_is_a_file_target() {
        let dir = std::env::temp_dir().join(format!("pmd-cli-target-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ecosystem.yaml");
        std::fs::write(&file, "apps: []\n").unwrap();
        let file = file.to_str().unwrap();
        match parse(&["stop", file, "--only", "api,web"]).unwrap().command {
            Command::Stop(t) => {
                assert_eq!(t.targets, [TargetArg::File(file.into())]);
                assert_eq!(t.only.only, ["api", "web"]);
            }
            other => panic!("{other:?}"),
        }
        // The same name without the file is an app name.
        match parse(&["delete", "ecosystem.yaml"]).unwrap().command {
            Command::Delete(d) => assert_eq!(
                d.targets,
                [TargetArg::Target(Target::Name("ecosystem.yaml".into()))]
            ),
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn start_parses_cluster_port_watch_and_log_file_flags() {
        let s = start(&[
            "start",
            "app.js",
            "-i",
            "max",
            "--port",
            "auto:4000-4100",
            "--port-env",
            "HTTP_PORT",
            "--watch",
            "--watch-path",
            "src",
            "--watch-path",
            "lib",
            "--ignore-watch",
            "*.log",
            "--watch-delay",
            "2s",
            "-o",
            "out.log",
            "-e",
            "err.log",
            "--output",
            "json",
        ]);
        assert_eq!(s.spec.instances, Some(0));
        assert_eq!(s.spec.port.as_deref(), Some("auto:4000-4100"));
        assert_eq!(s.spec.port_env.as_deref(), Some("HTTP_PORT"));
        assert!(s.spec.watch);
        assert_eq!(s.spec.watch_paths, ["src", "lib"]);
        assert_eq!(s.spec.ignore_watch, ["*.log"]);
        assert_eq!(s.spec.watch_delay, Some(Duration::from_secs(2)));
        assert_eq!(s.spec.out_file.as_deref(), Some("out.log"));
        assert_eq!(s.spec.error_file.as_deref(), Some("err.log"));
        assert_eq!(s.output, OutputFormat::Json);
        assert!(s.spec.any_app_flag());
        // The script is not swallowed by --watch, and -1 is a count.
        let s = start(&["start", "--watch", "app.js", "--instances", "-1"]);
        assert_eq!(s.script, "app.js");
        assert_eq!(s.spec.instances, Some(-1));
        let s = start(&["start", "--instances=4", "app.js"]);
        assert_eq!(s.spec.instances, Some(4));
    }

    #[test]
    fn start_env_takes_variables_or_an_environment_name() {
        let s = start(&["start", "ecosystem.yaml", "--env", "production"]);
        assert_eq!(s.spec.env, [EnvArg::Environment("production".into())]);
        assert_eq!(s.spec.environments().collect::<Vec<_>>(), ["production"]);
        assert!(!s.spec.any_app_flag());
        assert!(s.spec.any_given());
        let s = start(&["start", "x.js", "--env", "A=1", "--only", "a,b"]);
        assert_eq!(s.spec.env_vars().collect::<Vec<_>>(), [("A", "1")]);
        assert_eq!(s.only.only, ["a", "b"]);
        assert!(s.spec.any_app_flag());
    }

    #[test]
    fn start_o_json_is_caught() {
        let err = parse(&["start", "x.js", "-o", "json"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--output json"), "{err}");
    }

    #[test]
    fn scale_counts() {
        let count = |c: &str| match parse(&["scale", "api", c]).map(|cli| cli.command) {
            Ok(Command::Scale(s)) => Ok(s.count),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(count("4").unwrap(), ScaleCount::To(4));
        assert_eq!(count("max").unwrap(), ScaleCount::To(0));
        assert_eq!(count("+2").unwrap(), ScaleCount::By(2));
        assert_eq!(count("-1").unwrap(), ScaleCount::By(-1));
        for bad in ["0", "+0", "-0", "x", "+", "2000"] {
            assert_eq!(count(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
        assert!(parse(&["scale", "7", "2"]).is_err());
    }

    #[test]
    fn restart_and_reload_flags() {
        match parse(&["restart", "api", "--port", "3001"])
            .unwrap()
            .command
        {
            Command::Restart(r) => assert_eq!(r.port.as_deref(), Some("3001")),
            other => panic!("{other:?}"),
        }
        match parse(&[
            "reload",
            "api",
            "web",
            "--ready-timeout",
            "10s",
            "-o",
            "json",
        ])
        .unwrap()
        .command
        {
            Command::Reload(r) => {
                assert_eq!(r.targets.len(), 2);
                assert_eq!(r.ready_timeout, Some(Duration::from_secs(10)));
                assert_eq!(r.output.output, OutputFormat::Json);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["reload", "api", "--env", "production"])
            .unwrap()
            .command
        {
            Command::Reload(r) => {
                assert_eq!(r.environment.environment.as_deref(), Some("production"))
            }
            other => panic!("{other:?}"),
        }
        let err = parse(&["restart", "x", "--env", "A=1"]).unwrap_err();
        assert!(err.to_string().contains("looks like K=V"), "{err}");
    }

    #[test]
    fn aliases_and_output_formats() {
        assert!(matches!(parse(&["ls"]).unwrap().command, Command::List(_)));
        assert!(matches!(
            parse(&["del", "x"]).unwrap().command,
            Command::Delete(_)
        ));
        match parse(&["info", "api", "-o", "json"]).unwrap().command {
            Command::Describe(d) => assert_eq!(d.output.output, OutputFormat::Json),
            other => panic!("{other:?}"),
        }
        match parse(&["list", "--output", "yaml"]).unwrap().command {
            Command::List(l) => assert_eq!(l.output.output, OutputFormat::Yaml),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["list", "-o", "xml"]).is_err());
    }

    #[test]
    fn delete_needs_a_target_unless_status_is_given() {
        assert!(parse(&["delete"]).is_err());
        match parse(&["delete", "--status", "stopped"]).unwrap().command {
            Command::Delete(d) => {
                assert!(d.targets.is_empty());
                assert_eq!(d.status, Some(ProcessState::Stopped));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn logs_defaults_and_stream_flags() {
        match parse(&["logs"]).unwrap().command {
            Command::Logs(l) => {
                assert_eq!(l.lines, 15);
                assert!(l.target.is_none() && !l.follow);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["logs", "api", "-f", "--lines", "3", "--err"])
            .unwrap()
            .command
        {
            Command::Logs(l) => assert!(l.follow && l.err && l.lines == 3),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["logs", "--out", "--err"]).is_err());
    }
    /// Issue #4: probes (one of three), their tuning, the memory limit.
    #[test]
    fn health_check_and_memory_flags() {
        let s = start(&[
            "start",
            "app.js",
            "--port",
            "3000",
            "--health-check-url",
            "http://127.0.0.1:{port}/health",
            "--health-interval",
            "5s",
            "--health-timeout",
            "500ms",
            "--health-retries",
            "3",
            "--health-start-period",
            "10s",
            "--health-expected-status",
            "204",
            "--max-memory",
            "200M",
        ]);
        assert_eq!(
            s.spec.health_check(),
            Some(HealthCheck {
                probe: Some(Probe::Http("http://127.0.0.1:{port}/health".into())),
                interval_ms: Some(5000),
                timeout_ms: Some(500),
                retries: Some(3),
                start_period_ms: Some(10_000),
                expected_status: Some(204),
            })
        );
        assert_eq!(s.spec.max_memory, Some(200 << 20));
        assert!(s.spec.any_app_flag());
        let tcp = start(&["start", "db.sh", "--health-check-tcp", "localhost:5432"]);
        assert_eq!(
            tcp.spec.health_check().unwrap().probe,
            Some(Probe::Tcp("localhost:5432".into()))
        );
        let script = start(&[
            "start",
            "x.sh",
            "--health-check-script",
            "./check.sh --quick",
        ]);
        assert_eq!(
            script.spec.health_check().unwrap().probe,
            Some(Probe::Script("./check.sh --quick".into()))
        );
        assert_eq!(start(&["start", "x.sh"]).spec.health_check(), None);
        let pm2 = start(&["start", "x.sh", "--max-memory-restart", "1G"]);
        assert_eq!(pm2.spec.max_memory, Some(1 << 30));
        assert!(pm2.spec.any_given());
    }

    /// Two probes conflict; tuning needs a probe; bad values name the flag.
    #[test]
    fn health_check_flag_errors() {
        let err = parse(&[
            "start",
            "x",
            "--health-check-url",
            "http://x/",
            "--health-check-tcp",
            "x:1",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        for args in [
            &["start", "x", "--health-interval", "5s"][..],
            &["start", "x", "--health-retries", "2"][..],
            &["start", "x", "--health-expected-status", "200"][..],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument, "{args:?}");
        }
        let err = parse(&[
            "start",
            "x",
            "--health-check-tcp",
            "x:1",
            "--health-expected-status",
            "200",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        for (args, flag, why) in [
            (
                &["start", "x", "--health-check-url", "https://x/"][..],
                "--health-check-url",
                "does not speak TLS",
            ),
            (
                &["start", "x", "--health-check-url", "x:3000/health"][..],
                "--health-check-url",
                "is not a URL",
            ),
            (
                &["start", "x", "--health-check-tcp", "localhost"][..],
                "--health-check-tcp",
                "has no port",
            ),
            (
                &["start", "x", "--health-check-script", " "][..],
                "--health-check-script",
                "empty",
            ),
            (
                &[
                    "start",
                    "x",
                    "--health-check-tcp",
                    "x:1",
                    "--health-retries",
                    "0",
                ][..],
                "--health-retries",
                "at least 1",
            ),
            (
                &[
                    "start",
                    "x",
                    "--health-check-tcp",
                    "x:1",
                    "--health-interval",
                    "50ms",
                ][..],
                "--health-interval",
                "below the 100ms minimum",
            ),
            (
                &[
                    "start",
                    "x",
                    "--health-check-url",
                    "http://x/",
                    "--health-expected-status",
                    "42",
                ][..],
                "--health-expected-status",
                "100-599",
            ),
            (
                &["start", "x", "--max-memory", "0"][..],
                "--max-memory",
                "more than 0",
            ),
            (
                &["start", "x", "--max-memory", "big"][..],
                "--max-memory",
                "not a size",
            ),
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
            let text = err.to_string();
            assert!(
                text.contains(flag) && text.contains(why),
                "{args:?}: {text}"
            );
        }
    }

    /// --wait-ready on start, restart and reload; --wait-timeout needs it.
    #[test]
    fn wait_ready_flags() {
        let s = start(&["start", "app.js", "--wait-ready"]);
        assert!(s.wait.wait_ready);
        assert_eq!(s.wait.wait_timeout, Duration::from_secs(30));
        assert!(!s.spec.any_given(), "waiting is not part of the spec");
        let s = start(&["start", "e.yaml", "--wait-ready", "--wait-timeout", "2m"]);
        assert_eq!(s.wait.wait_timeout, Duration::from_secs(120));
        match parse(&["restart", "api", "--wait-ready"]).unwrap().command {
            Command::Restart(r) => assert!(r.wait.wait_ready),
            other => panic!("{other:?}"),
        }
        match parse(&["reload", "api", "--wait-ready", "--wait-timeout", "10s"])
            .unwrap()
            .command
        {
            Command::Reload(r) => {
                assert!(r.wait.wait_ready);
                assert_eq!(r.wait.wait_timeout, Duration::from_secs(10));
            }
            other => panic!("{other:?}"),
        }
        let err = parse(&["start", "x", "--wait-timeout", "5s"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        let err = parse(&["start", "x", "--wait-ready", "--wait-timeout", "0"]).unwrap_err();
        assert!(err.to_string().contains("--wait-timeout"), "{err}");
    }

    #[test]
    fn monit_and_events_flags() {
        match parse(&["monit"]).unwrap().command {
            Command::Monit(m) => {
                assert_eq!(m.interval, Duration::from_secs(1));
                assert!(m.target.is_none());
            }
            other => panic!("{other:?}"),
        }
        match parse(&["monit", "api", "--interval", "500ms"])
            .unwrap()
            .command
        {
            Command::Monit(m) => {
                assert_eq!(m.interval, Duration::from_millis(500));
                assert_eq!(m.target, Some(Target::Name("api".into())));
            }
            other => panic!("{other:?}"),
        }
        let err = parse(&["monit", "--interval", "100ms"]).unwrap_err();
        assert!(err.to_string().contains("at most every 200ms"), "{err}");
        match parse(&["events"]).unwrap().command {
            Command::Events(e) => {
                assert_eq!(e.output, EventsFormat::Text);
                assert!(e.target.is_none());
            }
            other => panic!("{other:?}"),
        }
        match parse(&["events", "3", "-o", "json"]).unwrap().command {
            Command::Events(e) => {
                assert_eq!(e.output, EventsFormat::Json);
                assert_eq!(e.target, Some(Target::Id(3)));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["events", "-o", "yaml"]).is_err());
    }
}
