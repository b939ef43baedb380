//! What an app is: the validated, defaulted [`AppSpec`] the supervisor keeps
//! and persists, and the [`Launch`] it resolves to (absolute program, argv,
//! working directory). Resolution happens once, when the app is created, so
//! a restored app does not depend on the cwd of the client that created it.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ports::PortSpec;

/// When an exited instance is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Autorestart {
    #[default]
    Always,
    /// Only after a non-zero exit code or a signal.
    OnFailure,
    Never,
}

impl Autorestart {
    pub fn word(self) -> &'static str {
        match self {
            Autorestart::Always => "always",
            Autorestart::OnFailure => "on-failure",
            Autorestart::Never => "never",
        }
    }
}

// Defaults and limits are value rules of the shared crate.
pub use pmdaemon_proto::{
    DEFAULT_BACKOFF_INITIAL_MS, DEFAULT_BACKOFF_MAX_MS, DEFAULT_KILL_TIMEOUT_MS,
    DEFAULT_LOG_MAX_BYTES, DEFAULT_LOG_MAX_FILES, DEFAULT_MAX_RESTARTS, DEFAULT_MIN_UPTIME_MS,
    DEFAULT_PORT_ENV, DEFAULT_WATCH_DELAY_MS, MAX_LOG_MAX_FILES, MAX_MAX_RESTARTS,
};
/// The one non-regular file `out_file`/`error_file` may name: output is
/// discarded (PM2's idiom).
pub const DISCARD: &str = "/dev/null";
/// Longest wait for one replacement to be ready during a reload (1 h).
pub const MAX_READY_TIMEOUT_MS: u64 = 3_600_000;

/// A validated app definition with every default filled in. Durations are
/// milliseconds so the persisted JSON is plain numbers.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSpec {
    pub name: String,
    /// As the user gave it (path or command name).
    pub script: String,
    pub args: Vec<String>,
    /// `None`: from the shebang or extension; `Some("none")`: exec directly.
    pub interpreter: Option<String>,
    pub interpreter_args: Vec<String>,
    /// Absolute working directory.
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    pub autorestart: Autorestart,
    pub max_restarts: u32,
    pub min_uptime_ms: u64,
    pub restart_delay_ms: u64,
    pub exp_backoff_initial_ms: u64,
    pub exp_backoff_max_ms: u64,
    pub kill_timeout_ms: u64,
    /// Canonical signal name, e.g. `SIGTERM`.
    pub stop_signal: String,
    pub time: bool,
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    // Fields added after the first state format: `serde(default)` keeps
    // older state files loadable.
    /// Number of instances (resolved: `max` is already the CPU count).
    #[serde(default = "one")]
    pub instances: u32,
    /// Port request, e.g. `3000`, `3000-3003`, `auto:4000-4100`.
    #[serde(default)]
    pub port: Option<PortSpec>,
    /// Environment variable that receives the port.
    #[serde(default = "default_port_env")]
    pub port_env: String,
    #[serde(default)]
    pub watch: bool,
    /// Absolute paths to watch (the cwd when `watch` is set without paths).
    #[serde(default)]
    pub watch_paths: Vec<PathBuf>,
    #[serde(default)]
    pub ignore_watch: Vec<String>,
    #[serde(default = "default_watch_delay")]
    pub watch_delay_ms: u64,
    /// Absolute log file paths replacing `logs/NAME-ID-{out,err}.log`.
    #[serde(default)]
    pub out_file: Option<PathBuf>,
    #[serde(default)]
    pub error_file: Option<PathBuf>,
    /// Readiness/liveness probe; None: online once spawned.
    #[serde(default)]
    pub health_check: Option<crate::health::HealthCheck>,
    /// Restart an instance whose process group's RSS exceeds this.
    #[serde(default)]
    pub max_memory_bytes: Option<u64>,
    /// Apps that must meet a condition before this one starts.
    #[serde(default)]
    pub depends_on: Vec<Dependency>,
    /// The start-rate limit: more automatic restarts than this within
    /// `start_limit_interval_ms` make the instance errored (0: no limit).
    #[serde(default = "default_start_limit_burst")]
    pub start_limit_burst: u32,
    #[serde(default = "default_start_limit_interval")]
    pub start_limit_interval_ms: u64,
    /// The caller's environment captured when the app was created (`pmd
    /// start` sends its shell's, as PM2 does), under `env`. Only a restart,
    /// reload or apply with `update_env` replaces it. Values are secrets
    /// as much as `env`'s: never logged.
    #[serde(default)]
    pub caller_env: BTreeMap<String, String>,
    /// Ready when the app sends "ready" over its IPC channel (PM2's
    /// `wait_ready`; see `ipc.rs`), within `listen_timeout_ms`.
    #[serde(default)]
    pub wait_ready: bool,
    #[serde(default = "default_listen_timeout")]
    pub listen_timeout_ms: u64,
    /// Stop by sending "shutdown" over the IPC channel instead of the stop
    /// signal (SIGKILL after kill_timeout as ever).
    #[serde(default)]
    pub shutdown_with_message: bool,
    /// The variable that receives the instance index.
    #[serde(default = "default_instance_var")]
    pub instance_var: String,
    /// A variable of `env` (an integer) that instance N gets plus N.
    #[serde(default)]
    pub increment_var: Option<String>,
    /// Exit codes after which an instance stays stopped, whatever
    /// `autorestart` says.
    #[serde(default)]
    pub stop_exit_codes: Vec<i32>,
    /// PM2's `log_date_format` (dayjs tokens), checked by
    /// [`pmdaemon_proto::DateFormat`]: each line in the files gets it and
    /// `": "` before it. Wins over `time`.
    #[serde(default)]
    pub log_date_format: Option<String>,
    /// PM2's `merge_logs`: the instances share their files.
    #[serde(default)]
    pub merge_logs: bool,
    /// PM2's `log_file`: both streams also go to this file.
    #[serde(default)]
    pub log_file: Option<CombinedLog>,
    /// PM2's `log_type`: `json` writes one JSON object per line.
    #[serde(default, with = "log_type_word")]
    pub log_type: pmdaemon_proto::LogType,
    /// A balanced port: the daemon listens on `port` (one port) and hands
    /// each connection to a ready instance; the instances get private
    /// ports from `Balance::instance_ports` (see `balancer/`).
    #[serde(default)]
    pub balance: Option<Balance>,
    /// PM2's `cron_restart`: when the app's running instances restart, in
    /// the daemon's local time (see `cron.rs`).
    #[serde(default)]
    pub cron_restart: Option<pmdaemon_proto::CronSchedule>,
}

/// A balanced app's settings (its public port is the app's `port`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub strategy: pmdaemon_proto::BalanceStrategy,
    /// A PROXY protocol v2 header before the client's bytes.
    pub proxy_protocol: bool,
    /// None: the app's kill timeout.
    pub drain_timeout_ms: Option<u64>,
    pub hold_timeout_ms: u64,
    /// None: every address (`::` dual-stack, else `0.0.0.0`).
    pub address: Option<std::net::IpAddr>,
    /// The instances' private ports.
    pub instance_ports: PortSpec,
}

/// Where an app's combined log (PM2's `log_file`) goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CombinedLog {
    /// `logs/NAME-ID.log` (merged: `logs/NAME.log`), PM2's `log: true`.
    Default,
    /// An absolute path.
    File(PathBuf),
}

/// `log_type` in the state file: its word (`text`, `json`).
mod log_type_word {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &pmdaemon_proto::LogType, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(t)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<pmdaemon_proto::LogType, D::Error> {
        let word = String::deserialize(d)?;
        word.parse().map_err(serde::de::Error::custom)
    }
}

/// What an app waits for in another before it starts: a value rule of the
/// shared crate (serialized as its word).
pub use pmdaemon_proto::DependencyCondition as Condition;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub app: String,
    pub condition: Condition,
}

fn one() -> u32 {
    1
}

fn default_port_env() -> String {
    DEFAULT_PORT_ENV.to_string()
}

fn default_watch_delay() -> u64 {
    DEFAULT_WATCH_DELAY_MS
}

fn default_start_limit_burst() -> u32 {
    pmdaemon_proto::DEFAULT_START_LIMIT_BURST
}

fn default_start_limit_interval() -> u64 {
    pmdaemon_proto::DEFAULT_START_LIMIT_INTERVAL_MS
}

fn default_listen_timeout() -> u64 {
    pmdaemon_proto::DEFAULT_LISTEN_TIMEOUT_MS
}

fn default_instance_var() -> String {
    pmdaemon_proto::DEFAULT_INSTANCE_VAR.to_string()
}

/// `Debug` redacts environment values: they are often secrets, and specs
/// end up in logs.
impl fmt::Debug for AppSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |vars: &BTreeMap<String, String>| -> BTreeMap<String, &str> {
            vars.keys().map(|k| (k.clone(), "<redacted>")).collect()
        };
        let env = redacted(&self.env);
        let caller_env = redacted(&self.caller_env);
        f.debug_struct("AppSpec")
            .field("name", &self.name)
            .field("script", &self.script)
            .field("args", &self.args)
            .field("interpreter", &self.interpreter)
            .field("cwd", &self.cwd)
            .field("env", &env)
            .field("caller_env", &caller_env)
            .field("autorestart", &self.autorestart)
            .field("max_restarts", &self.max_restarts)
            .field("min_uptime_ms", &self.min_uptime_ms)
            .field("restart_delay_ms", &self.restart_delay_ms)
            .field("kill_timeout_ms", &self.kill_timeout_ms)
            .field("stop_signal", &self.stop_signal)
            .field("instances", &self.instances)
            .field("port", &self.port)
            .field("watch", &self.watch)
            .field("wait_ready", &self.wait_ready)
            .field("shutdown_with_message", &self.shutdown_with_message)
            .field("instance_var", &self.instance_var)
            .field("increment_var", &self.increment_var)
            .field("stop_exit_codes", &self.stop_exit_codes)
            .field("balance", &self.balance)
            .field(
                "cron_restart",
                &self.cron_restart.as_ref().map(|c| c.as_str()),
            )
            .finish_non_exhaustive()
    }
}

impl AppSpec {
    pub fn min_uptime(&self) -> Duration {
        Duration::from_millis(self.min_uptime_ms)
    }

    pub fn kill_timeout(&self) -> Duration {
        Duration::from_millis(self.kill_timeout_ms)
    }

    /// Where the instances' ports come from: a balanced app's private
    /// range, else its `port`.
    pub fn instance_ports(&self) -> Option<PortSpec> {
        match &self.balance {
            Some(b) => Some(b.instance_ports),
            None => self.port,
        }
    }

    /// A balanced app's public port (validated: one port).
    pub fn public_port(&self) -> Option<u16> {
        match (&self.balance, self.port) {
            (Some(_), Some(PortSpec::Fixed(port))) => Some(port),
            _ => None,
        }
    }

    /// Whether readiness waits for a health check (the app's or, balanced,
    /// the implied one: see [`AppSpec::effective_health_check`]).
    pub fn checked(&self) -> bool {
        self.health_check.is_some() || self.balance.is_some()
    }

    /// How long a stopping balanced instance's connections may go on.
    pub fn drain_timeout(&self) -> Duration {
        self.balance
            .as_ref()
            .and_then(|b| b.drain_timeout_ms)
            .map_or(self.kill_timeout(), Duration::from_millis)
    }

    /// The check that decides readiness: the app's, or for a balanced app
    /// without one a TCP connect to the instance's private port, so that
    /// an instance joins its pool when it accepts connections, not before
    /// (and leaves it when it stops accepting them).
    pub fn effective_health_check(
        &self,
    ) -> Option<std::borrow::Cow<'_, crate::health::HealthCheck>> {
        use std::borrow::Cow;
        match (&self.health_check, &self.balance) {
            (Some(check), _) => Some(Cow::Borrowed(check)),
            (None, Some(_)) => Some(Cow::Owned(crate::health::HealthCheck {
                probe: crate::health::Probe::Tcp {
                    target: format!("127.0.0.1:{}", pmdaemon_proto::health::PORT_PLACEHOLDER),
                },
                interval_ms: pmdaemon_proto::health::DEFAULT_INTERVAL_MS,
                timeout_ms: pmdaemon_proto::health::DEFAULT_TIMEOUT_MS,
                retries: pmdaemon_proto::health::DEFAULT_RETRIES,
                start_period_ms: pmdaemon_proto::health::DEFAULT_START_PERIOD_MS,
            })),
            (None, None) => None,
        }
    }

    pub fn stop_signal(&self) -> nix::sys::signal::Signal {
        // Validated when the spec was built; SIGTERM only if a hand-edited
        // state file holds garbage.
        pmdaemon_proto::parse_signal(&self.stop_signal).unwrap_or(nix::sys::signal::Signal::SIGTERM)
    }

    pub fn log_config(&self) -> crate::logs::LogConfig {
        use crate::logs::LineFormat;
        // Validated when the spec was built; a hand-edited state file with
        // a bad format loses its timestamps, not its logs.
        let date = self
            .log_date_format
            .as_deref()
            .and_then(|f| f.parse::<pmdaemon_proto::DateFormat>().ok())
            .map(std::sync::Arc::new);
        let format = match (self.log_type, date) {
            (pmdaemon_proto::LogType::Json, date) => LineFormat::Json(date),
            (_, Some(date)) => LineFormat::Date(date),
            (_, None) if self.time => LineFormat::Rfc3339,
            _ => LineFormat::Plain,
        };
        crate::logs::LogConfig {
            max_bytes: self.log_max_bytes,
            max_files: self.log_max_files,
            format,
            merged: self.merge_logs,
        }
    }

    /// Where one instance's stream goes: its own file (default, the
    /// app's path, or discarded) and the app's combined file.
    pub fn log_targets(&self, stream: crate::logs::Stream, index: u32) -> crate::logs::SinkTargets {
        use crate::logs::LogTarget;
        let file = match self.custom_log_path(stream, index) {
            None => LogTarget::Default,
            Some(path) if path == Path::new(DISCARD) => LogTarget::Discard,
            Some(path) => LogTarget::Custom(path),
        };
        let combined = self.log_file.as_ref().map(|c| match c {
            CombinedLog::Default => LogTarget::Default,
            CombinedLog::File(_) => match self.combined_log_path(index) {
                Some(path) if path != Path::new(DISCARD) => LogTarget::Custom(path),
                _ => LogTarget::Discard,
            },
        });
        crate::logs::SinkTargets { file, combined }
    }

    /// Delay before the next spawn, given how many consecutive unstable runs
    /// preceded it (1 for the first crash). The first restart is immediate
    /// (plus `restart_delay`); from the second on, backoff doubles from
    /// `exp_backoff_initial` up to `exp_backoff_max`.
    pub fn restart_delay(&self, unstable_runs: u32) -> Duration {
        let backoff = if unstable_runs <= 1 || self.exp_backoff_initial_ms == 0 {
            0
        } else {
            let shift = (unstable_runs - 2).min(40);
            self.exp_backoff_initial_ms
                .saturating_mul(1u64 << shift)
                .min(self.exp_backoff_max_ms.max(self.exp_backoff_initial_ms))
        };
        Duration::from_millis(self.restart_delay_ms.saturating_add(backoff))
    }

    /// Checks every field; used for specs from clients and from files.
    pub fn validate(&self) -> Result<()> {
        pmdaemon_proto::validate_name(&self.name)?;
        if self.script.is_empty() {
            return Err(Error::InvalidArgument(
                "script is empty: give a file or command to run".into(),
            ));
        }
        if self.script.contains('\0') || self.args.iter().any(|a| a.contains('\0')) {
            return Err(Error::InvalidArgument(
                "script and args cannot contain NUL bytes".into(),
            ));
        }
        // No path or word handed to the OS may hold a NUL byte: it cannot
        // be passed on, and would otherwise surface as an internal error.
        let nul = |field: &str, text: &[u8]| -> Result<()> {
            match text.contains(&0) {
                true => Err(Error::InvalidArgument(format!(
                    "{field} cannot contain a NUL byte"
                ))),
                false => Ok(()),
            }
        };
        use std::os::unix::ffi::OsStrExt;
        nul("cwd", self.cwd.as_os_str().as_bytes())?;
        for (field, path) in [
            ("out_file", &self.out_file),
            ("error_file", &self.error_file),
            (
                "log_file",
                &match &self.log_file {
                    Some(CombinedLog::File(path)) => Some(path.clone()),
                    _ => None,
                },
            ),
        ] {
            if let Some(path) = path {
                nul(field, path.as_os_str().as_bytes())?;
            }
        }
        if let Some(format) = &self.log_date_format {
            format
                .parse::<pmdaemon_proto::DateFormat>()
                .map_err(|e| e.named("log_date_format"))?;
        }
        for path in &self.watch_paths {
            nul("watch", path.as_os_str().as_bytes())?;
        }
        for glob in &self.ignore_watch {
            nul("ignore_watch", glob.as_bytes())?;
        }
        if let Some(interpreter) = &self.interpreter {
            nul("interpreter", interpreter.as_bytes())?;
        }
        for arg in &self.interpreter_args {
            nul("interpreter_args", arg.as_bytes())?;
        }
        for (k, v) in &self.env {
            pmdaemon_proto::check_env_var(k, v).map_err(|e| e.named("env"))?;
        }
        for (k, v) in &self.caller_env {
            pmdaemon_proto::check_env_var(k, v).map_err(|e| e.named("caller_env"))?;
        }
        pmdaemon_proto::check_count("max_restarts", self.max_restarts.into(), MAX_MAX_RESTARTS)?;
        for (flag, ms) in [
            ("min_uptime", self.min_uptime_ms),
            ("restart_delay", self.restart_delay_ms),
            ("exp_backoff_restart_delay", self.exp_backoff_initial_ms),
            ("exp_backoff_max", self.exp_backoff_max_ms),
            ("kill_timeout", self.kill_timeout_ms),
            ("start_limit_interval", self.start_limit_interval_ms),
            ("listen_timeout", self.listen_timeout_ms),
        ] {
            pmdaemon_proto::check_duration(flag, Duration::from_millis(ms))?;
        }
        pmdaemon_proto::parse_stop_signal("stop_signal", &self.stop_signal)?;
        pmdaemon_proto::check_log_max_size("log_max_size", self.log_max_bytes)?;
        pmdaemon_proto::check_instance_count(self.instances.into())
            .map_err(|e| e.named("instances"))?;
        pmdaemon_proto::check_port_env(&self.port_env).map_err(|e| e.named("port_env"))?;
        pmdaemon_proto::check_duration("watch_delay", Duration::from_millis(self.watch_delay_ms))?;
        if let Some(check) = &self.health_check {
            check
                .validate()
                .map_err(|e| Error::InvalidArgument(format!("health_check: {e}")))?;
            let text = match &check.probe {
                crate::health::Probe::Http { url, .. } => url,
                crate::health::Probe::Tcp { target } => target,
                crate::health::Probe::Script { command } => command,
            };
            pmdaemon_proto::health::check_port_placeholder(text, self.port.is_some())
                .map_err(|e| e.named("health_check"))?;
        }
        if let Some(bytes) = self.max_memory_bytes {
            pmdaemon_proto::check_max_memory(bytes).map_err(|e| e.named("max_memory_restart"))?;
        }
        for dep in &self.depends_on {
            pmdaemon_proto::check_dependency(&self.name, &dep.app)
                .map_err(|e| e.named("depends_on"))?;
        }
        pmdaemon_proto::check_count(
            "start_limit_burst",
            self.start_limit_burst.into(),
            pmdaemon_proto::MAX_START_LIMIT_BURST,
        )?;
        pmdaemon_proto::check_count(
            "log_max_files",
            self.log_max_files.into(),
            MAX_LOG_MAX_FILES,
        )?;
        self.validate_instance_env()?;
        self.validate_balance()?;
        for &code in &self.stop_exit_codes {
            pmdaemon_proto::check_stop_exit_code(code.into())
                .map_err(|e| e.named("stop_exit_codes"))?;
        }
        Ok(())
    }

    /// A balanced app: one public port, a private range with room for the
    /// instances that does not hold the public port, durations in range.
    fn validate_balance(&self) -> Result<()> {
        let Some(balance) = &self.balance else {
            return Ok(());
        };
        let public =
            pmdaemon_proto::check_public_port(self.port).map_err(|e| e.named("balance"))?;
        balance
            .instance_ports
            .check_room(self.instances)
            .map_err(|e| e.named("balance.instance_ports"))?;
        if balance.instance_ports.ports().contains(&public) {
            return Err(Error::InvalidArgument(format!(
                "balance.instance_ports: {} holds the public port {public}; give the instances \
                 a range without it",
                balance.instance_ports
            )));
        }
        if let Some(ms) = balance.drain_timeout_ms {
            pmdaemon_proto::check_duration("balance.drain_timeout", Duration::from_millis(ms))?;
        }
        pmdaemon_proto::check_duration(
            "balance.hold_timeout",
            Duration::from_millis(balance.hold_timeout_ms),
        )?;
        Ok(())
    }

    /// `instance_var` and `increment_var`: names of their own (not the
    /// port's variable, not each other), and the increment's base an
    /// integer in `env`.
    fn validate_instance_env(&self) -> Result<()> {
        pmdaemon_proto::check_instance_var(&self.instance_var)
            .map_err(|e| e.named("instance_var"))?;
        if self.port.is_some() && self.instance_var == self.port_env {
            return Err(Error::InvalidArgument(format!(
                "instance_var: {} already receives the port (port_env); name another variable",
                self.instance_var
            )));
        }
        let Some(var) = &self.increment_var else {
            return Ok(());
        };
        pmdaemon_proto::check_increment_var(var).map_err(|e| e.named("increment_var"))?;
        if *var == self.instance_var {
            return Err(Error::InvalidArgument(format!(
                "increment_var: {var} is also instance_var, which receives the index; name \
                 another variable"
            )));
        }
        if self.port.is_some() && *var == self.port_env {
            return Err(Error::InvalidArgument(format!(
                "increment_var: {var} receives the port of `port` already (port_env); use \
                 either a port range or increment_var, not both"
            )));
        }
        pmdaemon_proto::increment_base(var, &self.env, self.instances)
            .map_err(|e| e.named("increment_var"))?;
        Ok(())
    }

    /// The variables that tell instance `index` who it is: the instance
    /// variable with the index, and `increment_var` with its base + index.
    pub fn instance_env(&self, index: u32) -> Vec<(String, String)> {
        let mut vars = vec![(self.instance_var.clone(), index.to_string())];
        if let Some(var) = &self.increment_var
            && let Some(base) = self.env.get(var).and_then(|v| v.trim().parse::<i64>().ok())
        {
            // Checked at validation for the instances of then; a scale up
            // beyond i64 saturates rather than wraps.
            vars.push((var.clone(), base.saturating_add(index.into()).to_string()));
        }
        vars
    }

    /// Whether the instance stays stopped after exiting with `code`.
    pub fn stops_on(&self, code: Option<i32>) -> bool {
        code.is_some_and(|c| self.stop_exit_codes.contains(&c))
    }

    /// Whether the app gets an IPC channel (see `ipc.rs`): for its keys,
    /// and for every Node.js run (`launch`), as PM2 gives each app it
    /// forks one: Node apps call `process.send('ready')` unguarded, which
    /// throws where Node has no channel.
    pub fn ipc(&self, launch: &Launch) -> bool {
        self.wait_ready || self.shutdown_with_message || launch.is_node()
    }
}

impl AppSpec {
    /// Every log file the app names (`out_file`/`error_file`/`log_file`,
    /// for each instance; once with `merge_logs`), with its field.
    pub fn custom_log_paths(&self) -> impl Iterator<Item = (&'static str, PathBuf)> + '_ {
        use crate::logs::Stream;
        let count = if self.merge_logs {
            1
        } else {
            self.instances.max(1)
        };
        (0..count).flat_map(move |index| {
            [
                ("out_file", self.custom_log_path(Stream::Out, index)),
                ("error_file", self.custom_log_path(Stream::Err, index)),
                ("log_file", self.combined_log_path(index)),
            ]
            .into_iter()
            .filter_map(|(field, path)| Some((field, path?)))
        })
    }

    /// The log file of one instance's stream when the app sets
    /// `out_file`/`error_file`; with several instances each gets its own
    /// file, `-INDEX` before the extension (`api.log` → `api-2.log`),
    /// unless `merge_logs`.
    pub fn custom_log_path(&self, stream: crate::logs::Stream, index: u32) -> Option<PathBuf> {
        let path = match stream {
            crate::logs::Stream::Out => self.out_file.as_ref()?,
            crate::logs::Stream::Err => self.error_file.as_ref()?,
        };
        Some(self.instance_path(path, index))
    }

    /// The combined file of one instance when the app sets `log_file` to a
    /// path, named as [`AppSpec::custom_log_path`] names the others.
    pub fn combined_log_path(&self, index: u32) -> Option<PathBuf> {
        match self.log_file.as_ref()? {
            CombinedLog::Default => None,
            CombinedLog::File(path) => Some(self.instance_path(path, index)),
        }
    }

    /// `path` for instance `index`: itself with one instance, with
    /// `merge_logs` or for /dev/null, else `-INDEX` before the extension.
    fn instance_path(&self, path: &Path, index: u32) -> PathBuf {
        // /dev/null discards for every instance alike.
        if self.instances <= 1 || self.merge_logs || path == Path::new(DISCARD) {
            return path.to_path_buf();
        }
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        let name = match path.extension() {
            Some(ext) => format!("{stem}-{index}.{}", ext.to_string_lossy()),
            None => format!("{stem}-{index}"),
        };
        path.with_file_name(name)
    }

    /// Names of the fields that differ between two definitions (for
    /// "updated api: env, args changed").
    pub fn changed_fields(&self, other: &AppSpec) -> Vec<&'static str> {
        let a = serde_json::to_value(self).unwrap_or_default();
        let b = serde_json::to_value(other).unwrap_or_default();
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            return Vec::new();
        };
        FIELD_NAMES
            .iter()
            .copied()
            .filter(|f| a.get(*f) != b.get(*f))
            .collect()
    }
}

/// Every field of [`AppSpec`], in declaration order, for `changed_fields`.
const FIELD_NAMES: &[&str] = &[
    "name",
    "script",
    "args",
    "interpreter",
    "interpreter_args",
    "cwd",
    "env",
    "autorestart",
    "max_restarts",
    "min_uptime_ms",
    "restart_delay_ms",
    "exp_backoff_initial_ms",
    "exp_backoff_max_ms",
    "kill_timeout_ms",
    "stop_signal",
    "time",
    "log_max_bytes",
    "log_max_files",
    "instances",
    "port",
    "port_env",
    "watch",
    "watch_paths",
    "ignore_watch",
    "watch_delay_ms",
    "out_file",
    "error_file",
    "health_check",
    "max_memory_bytes",
    "depends_on",
    "start_limit_burst",
    "start_limit_interval_ms",
    "log_date_format",
    "merge_logs",
    "log_file",
    "log_type",
    "wait_ready",
    "listen_timeout_ms",
    "shutdown_with_message",
    "instance_var",
    "increment_var",
    "stop_exit_codes",
    "caller_env",
    "balance",
    "cron_restart",
];

/// What exactly gets executed for an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    /// Absolute path of the executable (the interpreter for scripts).
    pub program: PathBuf,
    /// Full argv, `argv[0]` being `program`.
    pub argv: Vec<String>,
    pub cwd: PathBuf,
}

impl Launch {
    /// Whether the program is Node.js (`node`, or Debian's `nodejs`).
    pub fn is_node(&self) -> bool {
        self.program
            .file_name()
            .is_some_and(|name| name == "node" || name == "nodejs")
    }
}

/// Resolves a spec to the command to execute. `path_var` is the PATH used
/// for bare command names (the app's own PATH if its env sets one).
pub fn resolve(spec: &AppSpec, path_var: Option<&std::ffi::OsStr>) -> Result<Launch> {
    let cwd = &spec.cwd;
    if !cwd.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "cwd: {} is not an existing directory",
            cwd.display()
        )));
    }
    let path_var = spec
        .env
        .get("PATH")
        .map(std::ffi::OsString::from)
        .or_else(|| path_var.map(Into::into));

    let as_path = cwd.join(&spec.script);
    let script_is_path = spec.script.contains('/') || as_path.is_file();
    if !script_is_path {
        // A bare command name: PATH lookup, executed directly (or through an
        // explicit interpreter).
        let program = find_on_path(&spec.script, path_var.as_deref()).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{:?} is neither a file in {} nor a command on PATH",
                spec.script,
                cwd.display()
            ))
        })?;
        return with_interpreter(spec, program, path_var.as_deref(), cwd);
    }

    let script = absolute(&as_path);
    let meta = std::fs::metadata(&script).map_err(|e| {
        Error::InvalidArgument(format!("script {} cannot be used: {e}", script.display()))
    })?;
    if !meta.is_file() {
        return Err(Error::InvalidArgument(format!(
            "script {} is not a regular file",
            script.display()
        )));
    }
    with_interpreter(spec, script, path_var.as_deref(), cwd)
}

fn with_interpreter(
    spec: &AppSpec,
    script: PathBuf,
    path_var: Option<&std::ffi::OsStr>,
    cwd: &Path,
) -> Result<Launch> {
    let script_str = script.to_string_lossy().into_owned();
    let interpreter: Option<(PathBuf, Vec<String>)> = match spec.interpreter.as_deref() {
        Some("none") | Some("") => None,
        Some(name) => {
            let program = find_program(name, path_var, cwd).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "interpreter: {name:?} is not an executable file or a command on PATH"
                ))
            })?;
            Some((program, spec.interpreter_args.clone()))
        }
        None => match read_shebang(&script) {
            Some((interp, arg)) => {
                let program = find_program(&interp, path_var, cwd).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "the shebang of {} names {interp:?}, which does not exist; fix it or give --interpreter",
                        script.display()
                    ))
                })?;
                let mut args: Vec<String> = arg.into_iter().collect();
                args.extend(spec.interpreter_args.iter().cloned());
                Some((program, args))
            }
            None => match by_extension(&script) {
                Some(name) => {
                    let program = find_on_path(name, path_var).ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "{} needs {name}, which is not on PATH; install it or give --interpreter",
                            script.display()
                        ))
                    })?;
                    Some((program, spec.interpreter_args.clone()))
                }
                None => None,
            },
        },
    };

    let (program, argv) = match interpreter {
        Some((program, interp_args)) => {
            let mut argv = vec![program.to_string_lossy().into_owned()];
            argv.extend(interp_args);
            argv.push(script_str);
            (program, argv)
        }
        None => {
            if !is_executable(&script) {
                return Err(Error::InvalidArgument(format!(
                    "{} is not executable: chmod +x it, or give --interpreter",
                    script.display()
                )));
            }
            // Run directly, nothing would receive them: say so rather than
            // drop them.
            if !spec.interpreter_args.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "interpreter_args: {} runs directly, without an interpreter, so nothing \
                     would receive {:?}; give an interpreter, or pass them as args",
                    script.display(),
                    spec.interpreter_args
                )));
            }
            (script, vec![script_str])
        }
    };
    let mut argv = argv;
    argv.extend(spec.args.iter().cloned());
    Ok(Launch {
        program,
        argv,
        cwd: cwd.to_path_buf(),
    })
}

fn by_extension(script: &Path) -> Option<&'static str> {
    pmdaemon_proto::interpreter_by_extension(script)
}

/// The script's shebang (see [`pmdaemon_proto::parse_shebang`]).
fn read_shebang(script: &Path) -> Option<(String, Option<String>)> {
    use std::io::Read;
    let mut head = [0u8; pmdaemon_proto::SHEBANG_HEAD_BYTES];
    let n = std::fs::File::open(script).ok()?.read(&mut head).ok()?;
    pmdaemon_proto::parse_shebang(&head[..n])
}

/// A program given as a path (relative to `cwd`) or a bare name on PATH.
fn find_program(name: &str, path_var: Option<&std::ffi::OsStr>, cwd: &Path) -> Option<PathBuf> {
    if name.contains('/') {
        let p = absolute(&cwd.join(name));
        return is_executable(&p).then_some(p);
    }
    find_on_path(name, path_var)
}

fn find_on_path(name: &str, path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let path_var = path_var?;
    std::env::split_paths(path_var)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
        && nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok()
}

/// Absolute and without `.`/`..` components, without resolving symlinks.
pub fn absolute(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
#[path = "spec_proptests.rs"]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(script: &str, cwd: &Path) -> AppSpec {
        AppSpec {
            name: "t".into(),
            script: script.into(),
            args: vec!["a1".into()],
            interpreter: None,
            interpreter_args: vec![],
            cwd: cwd.to_path_buf(),
            env: BTreeMap::new(),
            autorestart: Autorestart::Always,
            max_restarts: DEFAULT_MAX_RESTARTS,
            min_uptime_ms: DEFAULT_MIN_UPTIME_MS,
            restart_delay_ms: 0,
            exp_backoff_initial_ms: DEFAULT_BACKOFF_INITIAL_MS,
            exp_backoff_max_ms: DEFAULT_BACKOFF_MAX_MS,
            kill_timeout_ms: DEFAULT_KILL_TIMEOUT_MS,
            stop_signal: "SIGTERM".into(),
            time: false,
            log_max_bytes: DEFAULT_LOG_MAX_BYTES,
            log_max_files: DEFAULT_LOG_MAX_FILES,
            instances: 1,
            port: None,
            port_env: DEFAULT_PORT_ENV.into(),
            watch: false,
            watch_paths: vec![],
            ignore_watch: vec![],
            watch_delay_ms: DEFAULT_WATCH_DELAY_MS,
            out_file: None,
            error_file: None,
            health_check: None,
            max_memory_bytes: None,
            depends_on: vec![],
            start_limit_burst: pmdaemon_proto::DEFAULT_START_LIMIT_BURST,
            start_limit_interval_ms: pmdaemon_proto::DEFAULT_START_LIMIT_INTERVAL_MS,
            log_date_format: None,
            merge_logs: false,
            log_file: None,
            log_type: pmdaemon_proto::LogType::Text,
            wait_ready: false,
            listen_timeout_ms: pmdaemon_proto::DEFAULT_LISTEN_TIMEOUT_MS,
            shutdown_with_message: false,
            instance_var: pmdaemon_proto::DEFAULT_INSTANCE_VAR.into(),
            increment_var: None,
            stop_exit_codes: vec![],
            caller_env: BTreeMap::new(),
            balance: None,
            cron_restart: None,
        }
    }

    #[test]
    fn field_names_cover_the_struct_and_changes_are_named() {
        let a = spec("x", Path::new("/"));
        let json = serde_json::to_value(&a).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected: Vec<&str> = FIELD_NAMES.to_vec();
        expected.sort_unstable();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort_unstable();
        assert_eq!(keys_sorted, expected);
        let mut b = a.clone();
        b.env.insert("K".into(), "v".into());
        b.args.push("more".into());
        assert_eq!(a.changed_fields(&b), vec!["args", "env"]);
    }

    #[test]
    fn custom_log_paths_get_an_index_with_several_instances() {
        let mut s = spec("x", Path::new("/"));
        s.out_file = Some("/var/log/api.log".into());
        assert_eq!(
            s.custom_log_path(crate::logs::Stream::Out, 0),
            Some("/var/log/api.log".into())
        );
        assert_eq!(s.custom_log_path(crate::logs::Stream::Err, 0), None);
        s.instances = 3;
        assert_eq!(
            s.custom_log_path(crate::logs::Stream::Out, 2),
            Some("/var/log/api-2.log".into())
        );
        s.log_file = Some(CombinedLog::File("/var/log/all.log".into()));
        assert_eq!(s.combined_log_path(1), Some("/var/log/all-1.log".into()));
        // PM2's merge_logs: one file for every instance.
        s.merge_logs = true;
        assert_eq!(
            s.custom_log_path(crate::logs::Stream::Out, 2),
            Some("/var/log/api.log".into())
        );
        assert_eq!(s.combined_log_path(1), Some("/var/log/all.log".into()));
        assert_eq!(s.custom_log_paths().count(), 2);
    }

    #[test]
    fn dev_null_discards_and_log_type_round_trips() {
        use crate::logs::{LogTarget, Stream};
        let mut s = spec("x", Path::new("/"));
        s.out_file = Some(DISCARD.into());
        s.log_file = Some(CombinedLog::Default);
        s.log_type = pmdaemon_proto::LogType::Json;
        let targets = s.log_targets(Stream::Out, 0);
        assert_eq!(targets.file, LogTarget::Discard);
        assert_eq!(targets.combined, Some(LogTarget::Default));
        assert_eq!(s.log_targets(Stream::Err, 0).file, LogTarget::Default);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["log_type"], "json");
        assert_eq!(json["log_file"], "default");
        let back: AppSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
        s.log_date_format = Some("---".into());
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("log_date_format")
        );
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "pmd-spec-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn backoff_starts_on_the_second_unstable_run_and_is_capped() {
        let mut s = spec("x", Path::new("/"));
        s.exp_backoff_max_ms = 400;
        let ms = |n| s.restart_delay(n).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(4), ms(5), ms(60)],
            [0, 100, 200, 400, 400, 400]
        );
        s.restart_delay_ms = 50;
        assert_eq!(s.restart_delay(1).as_millis(), 50);
    }

    #[test]
    fn shebang_wins_then_extension_then_exec() {
        let dir = tempdir();
        std::fs::write(dir.join("a.py"), "#!/bin/sh -e\necho hi\n").unwrap();
        let l = resolve(&spec("a.py", &dir), std::env::var_os("PATH").as_deref()).unwrap();
        assert_eq!(l.argv[0], "/bin/sh");
        assert_eq!(l.argv[1], "-e");
        assert!(l.argv[2].ends_with("/a.py"));
        assert_eq!(l.argv[3], "a1");

        std::fs::write(dir.join("b.sh"), "echo hi\n").unwrap();
        let l = resolve(&spec("./b.sh", &dir), std::env::var_os("PATH").as_deref()).unwrap();
        assert!(l.argv[0].ends_with("/bash"), "{l:?}");

        std::fs::write(dir.join("c"), "data").unwrap();
        let err = resolve(&spec("./c", &dir), None).unwrap_err().to_string();
        assert!(err.contains("not executable"), "{err}");

        let err = resolve(&spec("./missing", &dir), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn interpreter_args_without_an_interpreter_are_refused() {
        let mut s = spec("sleep", Path::new("/"));
        s.interpreter = Some("none".into());
        s.interpreter_args = vec!["-a".into()];
        let err = resolve(&s, std::env::var_os("PATH").as_deref())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("interpreter_args:") && err.contains("-a"),
            "{err}"
        );
        s.interpreter_args.clear();
        assert!(resolve(&s, std::env::var_os("PATH").as_deref()).is_ok());
    }

    #[test]
    fn bare_names_come_from_path() {
        let l = resolve(&spec("sh", Path::new("/")), Some("/usr/bin:/bin".as_ref())).unwrap();
        assert!(l.program.is_absolute());
        assert!(
            resolve(
                &spec("no-such-cmd-xyz", Path::new("/")),
                Some("/usr/bin".as_ref())
            )
            .is_err()
        );
    }

    #[test]
    fn a_check_naming_port_needs_a_port() {
        let mut s = spec("x", Path::new("/"));
        s.health_check = Some(crate::health::HealthCheck {
            probe: crate::health::Probe::Tcp {
                target: "127.0.0.1:{port}".into(),
            },
            interval_ms: 5000,
            timeout_ms: 2000,
            retries: 3,
            start_period_ms: 0,
        });
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("{port}") && err.contains("no port"), "{err}");
        s.port = Some("3000".parse().unwrap());
        assert!(s.validate().is_ok());
    }

    #[test]
    fn env_errors_name_the_culprit() {
        let with = |k: &str, v: &str| {
            let mut s = spec("x", Path::new("/"));
            s.env.insert(k.into(), v.into());
            s.validate().unwrap_err().to_string()
        };
        assert!(with("A=B", "1").contains("not a valid variable name"));
        let nul = with("TOKEN", "a\0b");
        assert!(
            nul.contains("value of TOKEN") && nul.contains("NUL"),
            "{nul}"
        );
        let home = with("PMDAEMON_HOME", "/elsewhere");
        assert!(home.contains("set by the daemon"), "{home}");
    }

    /// instance_var and increment_var: the index and base + index per
    /// instance; a clash with the port's variable or each other, and a
    /// base that is no integer, are refused.
    #[test]
    fn instance_variables_are_checked_and_given_per_instance() {
        let mut s = spec("x", Path::new("/"));
        s.instances = 3;
        assert_eq!(
            s.instance_env(2),
            [("NODE_APP_INSTANCE".to_string(), "2".to_string())]
        );
        s.instance_var = "W".into();
        s.increment_var = Some("PORT".into());
        let err = s.validate().unwrap_err().to_string();
        assert!(
            err.starts_with("increment_var: PORT is not in the app's env"),
            "{err}"
        );
        s.env.insert("PORT".into(), "3000".into());
        s.validate().unwrap();
        assert_eq!(
            s.instance_env(2),
            [
                ("W".to_string(), "2".to_string()),
                ("PORT".to_string(), "3002".to_string())
            ]
        );
        s.port = Some("4000-4002".parse().unwrap());
        let err = s.validate().unwrap_err().to_string();
        assert!(
            err.contains("use either a port range or increment_var"),
            "{err}"
        );
        s.port = None;
        s.instance_var = "PORT".into();
        assert!(s.validate().is_err());
        s.instance_var = "W".into();
        s.stop_exit_codes = vec![0, 256];
        let err = s.validate().unwrap_err().to_string();
        assert!(
            err.starts_with("stop_exit_codes: 256 is not an exit code"),
            "{err}"
        );
        s.stop_exit_codes = vec![0, 3];
        assert!(s.stops_on(Some(3)) && !s.stops_on(Some(1)) && !s.stops_on(None));
    }

    #[test]
    fn debug_redacts_env_values() {
        let mut s = spec("x", Path::new("/"));
        s.env.insert("TOKEN".into(), "hunter2".into());
        s.caller_env.insert("AWS_SECRET".into(), "swordfish".into());
        let dbg = format!("{s:?}");
        assert!(dbg.contains("TOKEN") && !dbg.contains("hunter2"), "{dbg}");
        assert!(
            dbg.contains("AWS_SECRET") && !dbg.contains("swordfish"),
            "{dbg}"
        );
    }
}
