//! How processes look on stdout: the [`ProcessView`] that `-o json` and
//! `-o yaml` serialize, the `list` table, the `describe` key/value block and
//! the one-line summaries printed by the lifecycle verbs.
//!
//! [`ProcessView`] is the single place that decides the keys: a new field
//! there shows up in JSON, YAML and `describe` at once. Rendering is pure
//! (the current time is passed in), so it is unit-tested here; writing to
//! stdout is the caller's job.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pmdaemon_proto::v1::health_check::Probe;
use pmdaemon_proto::v1::{
    AppliedApp, ApplyMode, ApplyOutcome, Dependency, DependencyCondition, HealthCheck, HealthState,
    ProcessInfo, ProcessState, RestartPolicy,
};
use serde::Serialize;

use crate::term::{Colours, Style};

/// Milliseconds since the Unix epoch, the unit of every `*_at_ms` field.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One process instance as `pmd` shows it: runtime state first, then the
/// app's spec with the effective values the daemon reported. Keys are
/// stable API for scripts (`pmd list -o json`); add, never rename.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessView {
    pub id: u32,
    pub name: String,
    /// Index of the instance within its app.
    pub instance: u32,
    /// Null when not running.
    pub pid: Option<u32>,
    /// State word: starting, online, stopping, stopped, errored, waiting-restart.
    pub status: &'static str,
    /// Ready as the daemon decides it: online and healthy with a health
    /// check, else online for min_uptime; also true for a one-shot job that
    /// exited 0 (completed).
    pub ready: bool,
    /// unknown (not passed yet), healthy or unhealthy; null when the app
    /// has no health check.
    pub health: Option<&'static str>,
    /// How the daemon finds every process of the run to stop it: `cgroup`
    /// (its own cgroup v2) or `process-group` (its process group and the
    /// environment marker).
    pub tracking: &'static str,
    /// Why the last failed check failed (kept after recovery).
    pub last_health_error: Option<String>,
    /// When that failed check ran.
    pub last_health_error_at_ms: Option<i64>,
    /// When the instance was last checked, and whether that check passed.
    pub last_health_check_at_ms: Option<i64>,
    pub last_health_check_passed: Option<bool>,
    /// The port assigned to this instance; null when its app has none.
    pub port: Option<u32>,
    /// True when `port` comes from `restart --port` and holds for this run
    /// only.
    pub port_override: bool,
    /// A balanced app's public port (then `port` is this instance's
    /// private one); null when the app is not balanced.
    pub public_port: Option<u32>,
    /// A balanced app's public port, its settings and this instance's
    /// part; null when the app is not balanced.
    pub balancer: Option<BalancerView>,
    pub restarts: u32,
    pub unstable_restarts: u32,
    /// Null when not running.
    pub uptime_ms: Option<u64>,
    pub started_at_ms: Option<i64>,
    /// CPU use of the instance's process group in percent of one core, at
    /// the latest sample; null when not running or not sampled yet.
    pub cpu_percent: Option<f64>,
    /// Resident memory of the instance's process group; null when not
    /// running or not sampled yet.
    pub memory_bytes: Option<u64>,
    pub exit_code: Option<i32>,
    /// Signal name that ended the last run, e.g. SIGKILL.
    pub exit_signal: Option<String>,
    pub last_exit_at_ms: Option<i64>,
    pub next_restart_at_ms: Option<i64>,
    /// Why the process is in its state (null when the daemon gave none).
    pub status_reason: Option<String>,
    pub created_at_ms: i64,
    /// The script or command as given at start.
    pub script: String,
    pub args: Vec<String>,
    /// The resolved command line; argv[0] is the absolute executable path.
    pub argv: Vec<String>,
    pub interpreter: Option<String>,
    pub interpreter_args: Vec<String>,
    /// Absolute working directory.
    pub cwd: String,
    /// The app's own variables (`--env`, a file's `env`); a value is null
    /// where it is not shown (`describe` without `--env-values`, a
    /// read-only token).
    pub env: BTreeMap<String, Option<String>>,
    /// The environment captured from the shell that started the app, under
    /// `env`; values null unless asked for (`describe --env-values`): they
    /// are a whole shell's, secrets included.
    pub captured_env: BTreeMap<String, Option<String>>,
    /// always, on-failure or never.
    pub autorestart: &'static str,
    pub max_restarts: Option<u32>,
    /// The start-rate limit: automatic restarts within the interval.
    pub start_limit_burst: Option<u32>,
    pub start_limit_interval_ms: Option<u64>,
    pub min_uptime_ms: Option<u64>,
    pub restart_delay_ms: Option<u64>,
    pub exp_backoff_initial_ms: Option<u64>,
    pub exp_backoff_max_ms: Option<u64>,
    pub kill_timeout_ms: Option<u64>,
    pub stop_signal: Option<String>,
    /// Whether log lines get a timestamp prefix.
    pub time: bool,
    pub log_max_bytes: Option<u64>,
    pub log_max_files: Option<u32>,
    /// Instances asked for: null = 1, 0 = one per CPU (`max`), -1 = one
    /// less than the CPUs.
    pub instances: Option<i32>,
    /// The app's port spec (`3000`, `3000-3003`, `auto:4000-4100`); null
    /// when it has none.
    pub port_spec: Option<String>,
    /// Variable that receives the port (null: the daemon's default, PORT).
    pub port_env: Option<String>,
    pub watch: bool,
    pub watch_paths: Vec<String>,
    pub ignore_watch: Vec<String>,
    pub watch_delay_ms: Option<u64>,
    /// The app's own stdout / stderr file, if set (null: logs/NAME-ID-*.log).
    pub out_file: Option<String>,
    pub error_file: Option<String>,
    /// All instances write the same log files (PM2's merge_logs).
    pub merge_logs: bool,
    /// The timestamp before each line in the files, in dayjs tokens
    /// (PM2's log_date_format); null: none (or `time`'s).
    pub log_date_format: Option<String>,
    /// `text` (lines as printed) or `json` (one object per line).
    pub log_type: &'static str,
    /// The app's probe; null when it has none.
    pub health_check: Option<HealthCheckView>,
    /// Memory above which an instance is restarted; null: no limit.
    pub max_memory_bytes: Option<u64>,
    /// Apps that must meet a condition before this one starts.
    pub depends_on: Vec<DependencyView>,
    /// Ready when the app sends "ready" over its IPC channel, within
    /// `listen_timeout_ms`.
    pub wait_ready: bool,
    pub listen_timeout_ms: Option<u64>,
    /// Stopped by a "shutdown" message instead of the stop signal.
    pub shutdown_with_message: bool,
    /// The variable that receives the instance index (null: the default,
    /// NODE_APP_INSTANCE).
    pub instance_var: Option<String>,
    /// The variable of env raised by the instance index; null: none.
    pub increment_var: Option<String>,
    /// Exit codes after which the app is not restarted.
    pub stop_exit_codes: Vec<i32>,
    /// PM2's cron_restart: the schedule (cron expression, the daemon's
    /// local time) on which running instances restart; null: none.
    pub cron_restart: Option<String>,
    /// When it fires next; null without one, or while the instance is not
    /// meant to run (a stopped instance is not restarted by it).
    pub next_cron_restart_at_ms: Option<i64>,
    pub out_log_path: String,
    pub err_log_path: String,
    /// The file that gets both streams (PM2's log_file); null: none.
    pub log_path: Option<String>,
}

/// A balanced app's public port as `pmd` shows it: the settings, the
/// port's state, and this instance's part.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BalancerView {
    pub public_port: u32,
    /// The address it is bound on (`::` is every address).
    pub address: String,
    /// Whether the daemon listens on it (while an instance should run).
    pub listening: bool,
    /// round-robin or least-connections.
    pub strategy: &'static str,
    pub proxy_protocol: bool,
    /// Null: the app's kill timeout.
    pub drain_timeout_ms: Option<u64>,
    pub hold_timeout_ms: Option<u64>,
    /// Where the instances' private ports come from.
    pub instance_ports: String,
    /// Instances of the app in the pool now.
    pub ready_instances: u32,
    /// Connections waiting for a ready instance.
    pub held_connections: u32,
    /// Connections refused since the app was created.
    pub refused_connections: u64,
    /// Why connections are refused or the port is not bound; null when all
    /// is well.
    pub problem: Option<String>,
    /// This instance takes new connections.
    pub in_pool: bool,
    /// Its connections open now, and since the daemon started.
    pub active_connections: u32,
    pub total_connections: u64,
    /// Bytes from clients to it, and from it to clients.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl BalancerView {
    fn new(info: &ProcessInfo, spec: &pmdaemon_proto::v1::AppSpec) -> Option<BalancerView> {
        let settings = spec.balance.as_ref()?;
        let status = info.balancer.clone().unwrap_or_default();
        let part = info.balance.unwrap_or_default();
        Some(BalancerView {
            public_port: status.public_port,
            address: status.address,
            listening: status.listening,
            strategy: match settings.strategy() {
                pmdaemon_proto::v1::BalanceStrategy::LeastConnections => "least-connections",
                _ => "round-robin",
            },
            proxy_protocol: settings.proxy_protocol,
            drain_timeout_ms: settings.drain_timeout_ms,
            hold_timeout_ms: settings.hold_timeout_ms,
            instance_ports: settings.instance_ports.clone(),
            ready_instances: status.ready_instances,
            held_connections: status.held_connections,
            refused_connections: status.refused_connections,
            problem: non_empty(&status.problem),
            in_pool: part.in_pool,
            active_connections: part.active_connections,
            total_connections: part.total_connections,
            bytes_in: part.bytes_in,
            bytes_out: part.bytes_out,
        })
    }

    /// One line for `describe`: `3000 on ::, round-robin, in the pool (2 of
    /// 4 ready), 1 open / 52 connections, 3.1 KiB in, 12 KiB out`.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} on {}, {}",
            self.public_port,
            if self.address.is_empty() {
                "every address"
            } else {
                &self.address
            },
            self.strategy
        );
        if !self.listening {
            line.push_str(", not listening (no instance should run)");
        }
        let _ = write!(
            line,
            ", {} ({} of the app's instances ready), {} open / {} connections, {} in, {} out",
            if self.in_pool {
                "in the pool"
            } else {
                "out of the pool"
            },
            self.ready_instances,
            self.active_connections,
            self.total_connections,
            format_memory(Some(self.bytes_in)),
            format_memory(Some(self.bytes_out)),
        );
        if self.held_connections > 0 {
            let _ = write!(line, ", {} waiting", self.held_connections);
        }
        if self.refused_connections > 0 {
            let _ = write!(line, ", {} refused", self.refused_connections);
        }
        if self.proxy_protocol {
            line.push_str(", PROXY protocol v2");
        }
        if let Some(problem) = &self.problem {
            let _ = write!(line, "; {problem}");
        }
        line
    }
}

/// An app's health check: exactly one of `http`, `tcp`, `script` is set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthCheckView {
    pub http: Option<String>,
    pub tcp: Option<String>,
    pub script: Option<String>,
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub retries: Option<u32>,
    pub start_period_ms: Option<u64>,
    pub expected_status: Option<u32>,
}

impl HealthCheckView {
    pub fn new(check: &HealthCheck) -> HealthCheckView {
        let (mut http, mut tcp, mut script) = (None, None, None);
        match &check.probe {
            Some(Probe::Http(url)) => http = Some(url.clone()),
            Some(Probe::Tcp(address)) => tcp = Some(address.clone()),
            Some(Probe::Script(command)) => script = Some(command.clone()),
            None => {}
        }
        HealthCheckView {
            http,
            tcp,
            script,
            interval_ms: check.interval_ms,
            timeout_ms: check.timeout_ms,
            retries: check.retries,
            start_period_ms: check.start_period_ms,
            expected_status: check.expected_status,
        }
    }

    /// One line for `describe`: `http http://x/health, every 5s, timeout
    /// 2s, 3 retries, start period 10s, expects 204`.
    pub fn summary(&self) -> String {
        let probe = match (&self.http, &self.tcp, &self.script) {
            (Some(url), _, _) => format!("http {url}"),
            (_, Some(address), _) => format!("tcp {address}"),
            (_, _, Some(command)) => format!("script {}", shell_quote(command)),
            _ => "no probe".into(),
        };
        let ms = |ms: u64| humantime::format_duration(Duration::from_millis(ms)).to_string();
        let mut parts = vec![probe];
        parts.extend(self.interval_ms.map(|v| format!("every {}", ms(v))));
        parts.extend(self.timeout_ms.map(|v| format!("timeout {}", ms(v))));
        parts.extend(self.retries.map(|n| match n {
            1 => "1 retry".to_string(),
            n => format!("{n} retries"),
        }));
        parts.extend(
            self.start_period_ms
                .map(|v| format!("start period {}", ms(v))),
        );
        parts.extend(self.expected_status.map(|code| format!("expects {code}")));
        parts.join(", ")
    }
}

/// One entry of an app's `depends_on`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DependencyView {
    pub app: String,
    /// started, healthy or completed.
    pub condition: &'static str,
}

/// The word for a dependency condition, as ecosystem files write it.
pub fn condition_word(condition: DependencyCondition) -> &'static str {
    pmdaemon_proto::DependencyCondition::from(condition).word()
}

/// The word for a health state; `None` when there is no check.
pub fn health_word(health: HealthState) -> Option<&'static str> {
    health.word()
}

/// CPU as `list` shows it: `12.5%`; `-` when unknown.
pub fn format_cpu(cpu_percent: Option<f64>) -> String {
    match cpu_percent {
        Some(cpu) if cpu.is_finite() && cpu >= 0.0 => format!("{cpu:.1}%"),
        _ => "-".into(),
    }
}

/// Memory as `list` shows it: `512B`, `12.0K`, `34.2M`, `1.5G` (binary
/// units, as sizes are written in flags and files); `-` when unknown.
pub fn format_memory(bytes: Option<u64>) -> String {
    let Some(bytes) = bytes else {
        return "-".into();
    };
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    for unit in ["K", "M", "G"] {
        // 1023.96 would print as 1024.0: that is the next unit.
        if value < 1023.95 {
            return format!("{value:.1}{unit}");
        }
        value /= 1024.0;
    }
    format!("{value:.1}T")
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// The word for a restart policy, as `--autorestart` takes it.
pub fn policy_word(policy: RestartPolicy) -> &'static str {
    match policy {
        RestartPolicy::Unspecified | RestartPolicy::Always => "always",
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::Never => "never",
    }
}

impl ProcessView {
    pub fn new(info: &ProcessInfo, now_ms: i64) -> ProcessView {
        let spec = info.spec.clone().unwrap_or_default();
        // started_at is set exactly while a run is in progress.
        let uptime_ms = info
            .started_at_ms
            .map(|started| u64::try_from(now_ms.saturating_sub(started)).unwrap_or(0));
        let cwd = if info.cwd.is_empty() {
            spec.cwd.clone()
        } else {
            info.cwd.clone()
        };
        // Samples describe a running process only.
        let running = info.pid.is_some();
        ProcessView {
            id: info.id,
            name: info.name.clone(),
            instance: info.instance,
            pid: info.pid,
            status: info.state().word(),
            ready: info.ready,
            health: health_word(info.health()),
            tracking: info.tracking().word(),
            last_health_error: non_empty(&info.last_health_error),
            last_health_error_at_ms: info.last_health_error_at_ms,
            last_health_check_at_ms: info.last_health_check_at_ms,
            last_health_check_passed: info.last_health_check_passed,
            port: info.port,
            port_override: info.port_override,
            public_port: info.balancer.as_ref().map(|b| b.public_port),
            balancer: BalancerView::new(info, &spec),
            restarts: info.restarts,
            unstable_restarts: info.unstable_restarts,
            uptime_ms,
            started_at_ms: info.started_at_ms,
            cpu_percent: info.cpu_percent.filter(|_| running),
            memory_bytes: info.memory_bytes.filter(|_| running),
            exit_code: info.last_exit_code,
            exit_signal: info.last_exit_signal.clone(),
            last_exit_at_ms: info.last_exit_at_ms,
            next_restart_at_ms: info.next_restart_at_ms,
            status_reason: non_empty(&info.status_reason),
            created_at_ms: info.created_at_ms,
            autorestart: policy_word(spec.autorestart()),
            script: spec.script,
            args: spec.args,
            argv: info.argv.clone(),
            interpreter: spec.interpreter,
            interpreter_args: spec.interpreter_args,
            cwd,
            env: spec
                .env
                .into_iter()
                .map(|(k, v)| (k, (!info.env_values_hidden).then_some(v)))
                .collect(),
            captured_env: spec.caller_env.into_keys().map(|k| (k, None)).collect(),
            max_restarts: spec.max_restarts,
            start_limit_burst: spec.start_limit_burst,
            start_limit_interval_ms: spec.start_limit_interval_ms,
            min_uptime_ms: spec.min_uptime_ms,
            restart_delay_ms: spec.restart_delay_ms,
            exp_backoff_initial_ms: spec.exp_backoff_initial_ms,
            exp_backoff_max_ms: spec.exp_backoff_max_ms,
            kill_timeout_ms: spec.kill_timeout_ms,
            stop_signal: non_empty(&spec.stop_signal),
            time: spec.time,
            log_max_bytes: spec.log_max_bytes,
            log_max_files: spec.log_max_files,
            instances: spec.instances,
            port_spec: non_empty(&spec.port),
            port_env: non_empty(&spec.port_env),
            watch: spec.watch,
            watch_paths: spec.watch_paths,
            ignore_watch: spec.ignore_watch,
            watch_delay_ms: spec.watch_delay_ms,
            out_file: non_empty(&spec.out_file),
            error_file: non_empty(&spec.error_file),
            merge_logs: spec.merge_logs,
            log_date_format: non_empty(&spec.log_date_format),
            log_type: if spec.log_type == pmdaemon_proto::v1::LogType::Json as i32 {
                "json"
            } else {
                "text"
            },
            health_check: spec.health_check.as_ref().map(HealthCheckView::new),
            max_memory_bytes: spec.max_memory_bytes.filter(|&n| n > 0),
            depends_on: spec
                .depends_on
                .iter()
                .map(|d: &Dependency| DependencyView {
                    app: d.app.clone(),
                    condition: condition_word(d.condition()),
                })
                .collect(),
            wait_ready: spec.wait_ready,
            listen_timeout_ms: spec.listen_timeout_ms,
            shutdown_with_message: spec.shutdown_with_message,
            instance_var: non_empty(&spec.instance_var),
            increment_var: non_empty(&spec.increment_var),
            stop_exit_codes: spec.stop_exit_codes.clone(),
            cron_restart: non_empty(&spec.cron_restart),
            next_cron_restart_at_ms: info.next_cron_restart_at_ms,
            out_log_path: info.out_log_path.clone(),
            err_log_path: info.err_log_path.clone(),
            log_path: non_empty(&info.log_path),
        }
    }

    /// Shows the values of the captured environment, as `info` has them
    /// (`describe --env-values`).
    pub fn show_captured_values(&mut self, info: &ProcessInfo) {
        if info.env_values_hidden {
            return;
        }
        if let Some(spec) = &info.spec {
            self.captured_env = spec
                .caller_env
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect();
        }
    }

    /// Leaves the names of every variable and drops their values.
    pub fn hide_env_values(&mut self) {
        for value in self.env.values_mut().chain(self.captured_env.values_mut()) {
            *value = None;
        }
    }

    pub fn all(infos: &[ProcessInfo], now_ms: i64) -> Vec<ProcessView> {
        infos.iter().map(|i| ProcessView::new(i, now_ms)).collect()
    }
}

/// JSON: an array, or the lone object when `single` and there is exactly one.
pub fn json(views: &[ProcessView], single: bool) -> anyhow::Result<String> {
    let mut text = match views {
        [one] if single => serde_json::to_string_pretty(one)?,
        _ => serde_json::to_string_pretty(views)?,
    };
    text.push('\n');
    Ok(text)
}

/// YAML with the same keys and shape as [`json`].
pub fn yaml(views: &[ProcessView], single: bool) -> anyhow::Result<String> {
    Ok(match views {
        [one] if single => serde_yaml::to_string(one)?,
        _ => serde_yaml::to_string(views)?,
    })
}

/// PM2-style compact uptime: `12s`, `5m`, `3h`, `2D`.
pub use pmdaemon_proto::wording::short_duration;

/// The colour of a state word.
pub fn state_style(status: &str) -> Style {
    match ProcessState::from_word(status) {
        Some(ProcessState::Online) => Style::Green,
        Some(ProcessState::Errored) => Style::Red,
        Some(ProcessState::Stopped) | None => Style::Dim,
        Some(_) => Style::Yellow,
    }
}

/// The colour of a health word.
pub fn health_style(health: &str) -> Style {
    match health {
        "healthy" => Style::Green,
        "unhealthy" => Style::Red,
        _ => Style::Yellow,
    }
}

/// Lays out rows under headers, two spaces between columns, the last
/// column unpadded; `style_of(column, cell)` colours a body cell.
pub fn columns(
    headers: &[&str],
    rows: &[Vec<String>],
    colours: Colours,
    style_of: &dyn Fn(usize, &str) -> Option<Style>,
) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str], style_of: &dyn Fn(usize, &str) -> Option<Style>| {
        for (i, cell) in cells.iter().enumerate() {
            let painted = match style_of(i, cell) {
                Some(style) => colours.paint(cell, style),
                None => (*cell).into(),
            };
            out.push_str(&painted);
            if i + 1 < cells.len() {
                let pad = widths[i] - cell.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    };
    line(headers, &|_, _| Some(Style::Bold));
    for row in rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells, style_of);
    }
    out
}

/// The `pmd list` table: id, name, pid, status, (health, when an app has
/// a check), port, restarts, uptime, CPU, memory.
pub fn table(views: &[ProcessView], colours: Colours) -> String {
    let with_health = views.iter().any(|v| v.health.is_some());
    let dash = || "-".to_string();
    let mut headers = vec!["ID", "NAME", "PID", "STATUS"];
    if with_health {
        headers.push("HEALTH");
    }
    headers.extend(["PORT", "RESTARTS", "UPTIME", "CPU", "MEM"]);
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let mut row = vec![
                v.id.to_string(),
                v.name.clone(),
                v.pid.map_or_else(dash, |p| p.to_string()),
                v.status.to_string(),
            ];
            if with_health {
                row.push(v.health.map_or_else(dash, str::to_string));
            }
            // A balanced instance: the public port, then its own.
            let port = match (v.public_port, v.port) {
                (Some(public), Some(own)) => format!("{public}→{own}"),
                (Some(public), None) => public.to_string(),
                (None, port) => port.map_or_else(dash, |p| p.to_string()),
            };
            row.extend([
                port,
                v.restarts.to_string(),
                v.uptime_ms.map_or_else(dash, short_duration),
                format_cpu(v.cpu_percent),
                format_memory(v.memory_bytes),
            ]);
            row
        })
        .collect();
    columns(&headers, &rows, colours, &|i, cell| match (i, cell) {
        (1, _) => Some(Style::Cyan),
        (3, _) => Some(state_style(cell)),
        (4, "-") if with_health => None,
        (4, _) if with_health => Some(health_style(cell)),
        _ => None,
    })
}

/// Quotes a word for display the way a shell would need it.
pub fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if n >= size && n.is_multiple_of(size) {
            return format!("{} {unit}", n / size);
        }
    }
    format!("{n} B")
}

fn human_time(at_ms: i64, now_ms: i64) -> String {
    let Ok(at) = u64::try_from(at_ms) else {
        return at_ms.to_string();
    };
    let stamp = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(at));
    let delta = now_ms.saturating_sub(at_ms);
    let rel = short_duration(delta.unsigned_abs());
    if delta >= 0 {
        format!("{stamp} ({rel} ago)")
    } else {
        format!("{stamp} (in {rel})")
    }
}

/// `at_ms` on this machine's wall clock, with its offset
/// (`2026-12-06 03:00:00 +01:00`): the local time zone (TZ, else
/// /etc/localtime), the daemon's when it runs here; the offset keeps it
/// exact for a remote one.
fn local_stamp(at_ms: i64) -> String {
    stamp_in(at_ms, &chrono::Local)
}

fn stamp_in<Tz: chrono::TimeZone>(at_ms: i64, zone: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    match zone.timestamp_millis_opt(at_ms).single() {
        Some(at) => at.format("%Y-%m-%d %H:%M:%S %:z").to_string(),
        None => at_ms.to_string(),
    }
}

/// A YAML scalar or sequence as one line of text for `describe`.
fn plain_value(key: &str, value: &serde_yaml::Value, now_ms: i64) -> String {
    use serde_yaml::Value;
    match value {
        Value::Null => "-".into(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            _ if key == "cpu_percent" => format_cpu(n.as_f64()),
            (_, Some(bytes)) if key == "memory_bytes" => format_memory(Some(bytes)),
            (Some(at), _) if key.ends_with("_at_ms") => human_time(at, now_ms),
            (_, Some(ms)) if key == "uptime_ms" => {
                humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
            }
            (_, Some(ms)) if key.ends_with("_ms") => {
                humantime::format_duration(Duration::from_millis(ms)).to_string()
            }
            (_, Some(bytes)) if key.ends_with("_bytes") => human_bytes(bytes),
            _ => n.to_string(),
        },
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Sequence(items) if items.is_empty() => "-".into(),
        Value::Sequence(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => shell_quote(s),
                other => plain_value(key, other, now_ms),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Value::Mapping(m) if m.is_empty() => "-".into(),
        Value::Mapping(_) | Value::Tagged(_) => serde_yaml::to_string(value)
            .unwrap_or_default()
            .trim_end()
            .to_string(),
    }
}

/// The `describe` block for one process: a title line, then one `label
/// value` line per key of [`ProcessView`] (maps one entry per line).
pub fn describe(view: &ProcessView, colours: Colours, now_ms: i64) -> String {
    let mut out = String::new();
    let title = format!("{} (id {})", view.name, view.id);
    let _ = writeln!(out, "{}", colours.paint(&title, Style::Bold));
    let Ok(serde_yaml::Value::Mapping(map)) = serde_yaml::to_value(view) else {
        return out;
    };
    let label = |key: &str| match key {
        "cpu_percent" => "cpu".to_string(),
        "memory_bytes" => "memory".to_string(),
        _ => key.strip_suffix("_ms").unwrap_or(key).replace('_', " "),
    };
    let width = map
        .keys()
        .filter_map(|k| k.as_str())
        .map(|k| label(k).len())
        .max()
        .unwrap_or(0);
    for (key, value) in &map {
        let Some(key) = key.as_str() else { continue };
        // `port_override` is shown on the `port` line, the next cron
        // restart on the `cron restart` line.
        if matches!(
            key,
            "id" | "name" | "port_override" | "next_cron_restart_at_ms"
        ) {
            continue;
        }
        let name = label(key);
        // Structured spec fields read better as one line.
        let line = match key {
            "health_check" => match (&view.health_check, &view.balancer) {
                (Some(check), _) => Some(check.summary()),
                // The daemon's readiness check of a balanced instance.
                (None, Some(_)) => Some(
                    "tcp 127.0.0.1:{port}, implied by the balanced port (give one to replace it)"
                        .into(),
                ),
                (None, None) => None,
            },
            "balancer" => view.balancer.as_ref().map(BalancerView::summary),
            "cron_restart" => {
                view.cron_restart
                    .as_ref()
                    .map(|expr| match view.next_cron_restart_at_ms {
                        Some(at) => format!("{expr}  (next {})", local_stamp(at)),
                        None => format!("{expr}  (not while {})", view.status),
                    })
            }
            "depends_on" if !view.depends_on.is_empty() => Some(
                view.depends_on
                    .iter()
                    .map(|d| format!("{} ({})", d.app, d.condition))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            // A whole shell's variables, names only: a count reads better
            // than sixty names (`--env-values` lists them with values).
            "captured_env"
                if !view.captured_env.is_empty()
                    && view.captured_env.values().all(Option::is_none) =>
            {
                let n = view.captured_env.len();
                Some(format!(
                    "{n} variable{} from the shell that started it (names and values: \
                     --env-values, or `pmd env {}`)",
                    if n == 1 { "" } else { "s" },
                    view.id
                ))
            }
            _ => None,
        };
        if let Some(line) = line {
            let _ = writeln!(out, "  {name:<width$}  {line}");
            continue;
        }
        match value {
            serde_yaml::Value::Mapping(entries) if !entries.is_empty() => {
                let _ = writeln!(out, "  {name}");
                for (k, v) in entries {
                    let k = k.as_str().unwrap_or_default();
                    // A variable whose value is not shown: its name.
                    if v.is_null() {
                        let _ = writeln!(out, "    {k}");
                        continue;
                    }
                    let v = v
                        .as_str()
                        .map_or_else(|| plain_value(k, v, now_ms), str::to_string);
                    let _ = writeln!(out, "    {k}={v}");
                }
            }
            _ => {
                let text = plain_value(key, value, now_ms);
                let text = match key {
                    "status" => colours.paint(&text, state_style(&text)),
                    "health" if value.is_string() => colours.paint(&text, health_style(&text)),
                    "port" if view.port_override => {
                        format!("{text} (override, this run only)").into()
                    }
                    _ => text.into(),
                };
                let _ = writeln!(out, "  {name:<width$}  {text}");
            }
        }
    }
    out
}

/// Several `describe` blocks, separated by blank lines.
pub fn describe_all(views: &[ProcessView], colours: Colours, now_ms: i64) -> String {
    views
        .iter()
        .map(|v| describe(v, colours, now_ms))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `started api (id 0, pid 1234)`; a process that did not reach the state
/// the verb aims at says where it is instead: `started api (id 0):
/// errored (script not found)`. `deleted` only names the process: the daemon reports it as it was just
/// before deletion.
pub fn summary(verb: &str, info: &ProcessInfo) -> String {
    let mut line = format!("{verb} {} (id {}", info.name, info.id);
    if verb == "deleted" {
        line.push(')');
        return line;
    }
    if let Some(pid) = info.pid {
        let _ = write!(line, ", pid {pid}");
    }
    line.push(')');
    let state = info.state();
    let expected = match verb {
        "stopped" => matches!(state, ProcessState::Stopped | ProcessState::Errored),
        _ => matches!(state, ProcessState::Online | ProcessState::Starting),
    };
    if !expected {
        let _ = write!(line, ": {}", state.word());
        if !info.status_reason.is_empty() {
            let _ = write!(line, " ({})", info.status_reason);
        }
    }
    line
}

/// Ids as a short list: `id 3`, `ids 0-2`, `ids 0, 4-5`.
pub fn id_list(ids: impl IntoIterator<Item = u32>) -> String {
    let mut ids: Vec<u32> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for id in &ids {
        match runs.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(*id) => *last = *id,
            _ => runs.push((*id, *id)),
        }
    }
    let text = runs
        .iter()
        .map(|&(first, last)| {
            if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() == 1 {
        format!("id {text}")
    } else {
        format!("ids {text}")
    }
}

/// One line per app of an ecosystem file after ApplyApps: `created api
/// (ids 0-2)`, `api already running (ids 0-2), unchanged`, `started api
/// (id 3)`, `updated api: env, args changed; restarted (ids 0-2)`,
/// `restarted api (id 0)` (`reloaded` in reload mode). Instances that did
/// not come up say so: `...; id 2 errored (script not found)`.
pub fn applied(app: &AppliedApp, mode: ApplyMode) -> String {
    let ids = if app.processes.is_empty() {
        String::new()
    } else {
        format!(" ({})", id_list(app.processes.iter().map(|p| p.id)))
    };
    let name = &app.name;
    let mut line = match app.outcome() {
        ApplyOutcome::Created => format!("created {name}{ids}"),
        ApplyOutcome::Unchanged => format!("{name} already running{ids}, unchanged"),
        ApplyOutcome::Started => format!("started {name}{ids}"),
        ApplyOutcome::Updated => {
            let how = if mode == ApplyMode::Reload {
                "reloaded"
            } else {
                "restarted"
            };
            if app.changed_fields.is_empty() {
                format!("updated {name}: {how}{ids}")
            } else {
                format!(
                    "updated {name}: {} changed; {how}{ids}",
                    app.changed_fields.join(", ")
                )
            }
        }
        ApplyOutcome::Restarted if mode == ApplyMode::Reload => format!("reloaded {name}{ids}"),
        ApplyOutcome::Restarted => format!("restarted {name}{ids}"),
        ApplyOutcome::Scaled => format!("scaled {name}: instances changed{ids}"),
        ApplyOutcome::Failed => format!("failed {name}: {}", app.error),
        ApplyOutcome::Unspecified => format!("applied {name}{ids}"),
    };
    for process in &app.processes {
        let state = process.state();
        if !matches!(state, ProcessState::Online | ProcessState::Starting) {
            let _ = write!(line, "; id {} {}", process.id, state.word());
            if !process.status_reason.is_empty() {
                let _ = write!(line, " ({})", process.status_reason);
            }
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmdaemon_proto::v1::AppSpec;

    const NOW: i64 = 1_700_000_000_000;

    fn online(id: u32, name: &str) -> ProcessInfo {
        let mut info = ProcessInfo {
            id,
            name: name.into(),
            pid: Some(4242),
            restarts: 2,
            started_at_ms: Some(NOW - 12_500),
            created_at_ms: NOW - 60_000,
            cwd: "/srv/api".into(),
            argv: vec!["/usr/bin/python3".into(), "/srv/api/server.py".into()],
            out_log_path: "/h/logs/api-0-out.log".into(),
            err_log_path: "/h/logs/api-0-err.log".into(),
            spec: Some(AppSpec {
                name: name.into(),
                script: "server.py".into(),
                args: vec!["--port".into(), "8080".into()],
                env: [("A".to_string(), "1".to_string())].into(),
                kill_timeout_ms: Some(5000),
                log_max_bytes: Some(10 << 20),
                stop_signal: "SIGTERM".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        info.set_state(ProcessState::Online);
        info
    }

    fn stopped(id: u32, name: &str) -> ProcessInfo {
        let mut info = ProcessInfo {
            id,
            name: name.into(),
            last_exit_code: Some(0),
            ..Default::default()
        };
        info.set_state(ProcessState::Stopped);
        info
    }

    #[test]
    fn uptime_is_compact() {
        assert_eq!(short_duration(999), "0s");
        assert_eq!(short_duration(12_000), "12s");
        assert_eq!(short_duration(5 * 60_000 + 1), "5m");
        assert_eq!(short_duration(3 * 3_600_000), "3h");
        assert_eq!(short_duration(2 * 86_400_000 + 5), "2D");
    }

    #[test]
    fn view_has_nulls_when_not_running() {
        let v = ProcessView::new(&stopped(1, "worker"), NOW);
        assert_eq!(v.pid, None);
        assert_eq!(v.uptime_ms, None);
        assert_eq!(v.status, "stopped");
        assert_eq!(v.autorestart, "always");
        let json: serde_json::Value = serde_json::from_str(&json(&[v], false).unwrap()).unwrap();
        let obj = &json[0];
        for key in [
            "id",
            "name",
            "pid",
            "status",
            "restarts",
            "uptime_ms",
            "exit_code",
        ] {
            assert!(obj.get(key).is_some(), "missing {key}");
        }
        assert!(obj["pid"].is_null() && obj["uptime_ms"].is_null());
        assert_eq!(obj["exit_code"], 0);
    }

    /// `ready` is the daemon's word: a key of `list -o json` and a line of
    /// `describe`.
    #[test]
    fn ready_is_shown_in_json_and_describe() {
        let mut info = online(0, "api");
        let json_of = |info: &ProcessInfo| -> serde_json::Value {
            serde_json::from_str(&json(&[ProcessView::new(info, NOW)], true).unwrap()).unwrap()
        };
        assert_eq!(json_of(&info)["ready"], false);
        let text = describe(&ProcessView::new(&info, NOW), Colours::OFF, NOW);
        assert!(text.contains("  ready "), "{text}");
        assert!(text.contains(" no\n"), "{text}");
        info.ready = true;
        assert_eq!(json_of(&info)["ready"], true);
        let text = describe(&ProcessView::new(&info, NOW), Colours::OFF, NOW);
        let line = text.lines().find(|l| l.trim_start().starts_with("ready "));
        assert_eq!(
            line.map(|l| l.split_whitespace().last()),
            Some(Some("yes")),
            "{text}"
        );
    }

    /// `tracking` is the daemon's word: a key of `list -o json` and a line
    /// of `describe`.
    #[test]
    fn tracking_is_shown_in_json_and_describe() {
        use pmdaemon_proto::v1::Tracking;
        let mut info = online(0, "api");
        for (tracking, word) in [
            (Tracking::Cgroup, "cgroup"),
            (Tracking::ProcessGroup, "process-group"),
        ] {
            info.set_tracking(tracking);
            let view = ProcessView::new(&info, NOW);
            let json: serde_json::Value =
                serde_json::from_str(&json(std::slice::from_ref(&view), true).unwrap()).unwrap();
            assert_eq!(json["tracking"], word);
            let text = describe(&view, Colours::OFF, NOW);
            let line = text
                .lines()
                .find(|l| l.trim_start().starts_with("tracking "));
            assert_eq!(
                line.map(|l| l.split_whitespace().last()),
                Some(Some(word)),
                "{text}"
            );
        }
    }

    #[test]
    fn json_single_is_an_object_and_list_an_array() {
        let views = ProcessView::all(&[online(0, "api")], NOW);
        let one: serde_json::Value = serde_json::from_str(&json(&views, true).unwrap()).unwrap();
        assert_eq!(one["name"], "api");
        assert_eq!(one["uptime_ms"], 12_500);
        assert_eq!(one["status"], "online");
        assert_eq!(one["env"]["A"], "1");
        let list: serde_json::Value = serde_json::from_str(&json(&views, false).unwrap()).unwrap();
        assert!(list.is_array());
        let empty: serde_json::Value = serde_json::from_str(&json(&[], false).unwrap()).unwrap();
        assert_eq!(empty, serde_json::json!([]));
    }

    #[test]
    fn yaml_has_the_same_keys() {
        let views = ProcessView::all(&[online(0, "api")], NOW);
        let y: serde_yaml::Value = serde_yaml::from_str(&yaml(&views, true).unwrap()).unwrap();
        assert_eq!(y["status"], "online");
        assert_eq!(y["pid"], 4242);
    }

    #[test]
    fn table_aligns_and_shows_dashes_for_stopped() {
        let mut api = online(0, "api");
        api.port = Some(3000);
        let views = ProcessView::all(&[api, stopped(13, "long-worker")], NOW);
        let text = table(&views, Colours::OFF);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "ID  NAME         PID   STATUS   PORT  RESTARTS  UPTIME  CPU  MEM"
        );
        assert_eq!(
            lines[1],
            "0   api          4242  online   3000  2         12s     -    -"
        );
        assert_eq!(
            lines[2],
            "13  long-worker  -     stopped  -     0         -       -    -"
        );
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn table_colours_status_without_breaking_alignment() {
        let views = ProcessView::all(&[online(0, "api")], NOW);
        let text = table(&views, Colours { enabled: true });
        assert!(text.contains("\x1b[32monline\x1b[0m  -     2"), "{text:?}");
    }

    #[test]
    fn describe_block_is_readable() {
        let view = ProcessView::new(&online(0, "api"), NOW);
        let text = describe(&view, Colours::OFF, NOW);
        assert!(text.starts_with("api (id 0)\n"), "{text}");
        let has = |needle: &str| assert!(text.contains(needle), "{needle:?} in\n{text}");
        has("  status ");
        has(" online\n");
        has("  kill timeout ");
        has(" 5s\n");
        has(" 10 MiB\n");
        has(" --port 8080\n");
        has("  env\n    A=1\n");
        has(" 12s\n"); // uptime
        has("(1m ago)"); // created at
        has("  exit code ");
        assert!(!text.contains("_ms"));
    }

    /// The schedule and its next run on one line, in local time with the
    /// offset; a stopped instance says it is not restarted.
    #[test]
    fn describe_shows_the_cron_schedule_and_its_next_run() {
        let mut info = online(0, "api");
        info.spec.as_mut().unwrap().cron_restart = "0 3 * * *".into();
        info.next_cron_restart_at_ms = Some(NOW + 3_600_000);
        let view = ProcessView::new(&info, NOW);
        let text = describe(&view, Colours::OFF, NOW);
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("cron restart"))
            .unwrap_or_else(|| panic!("no cron restart line in\n{text}"));
        assert!(
            line.ends_with(&format!(
                "0 3 * * *  (next {})",
                local_stamp(NOW + 3_600_000)
            )),
            "{line}"
        );
        assert!(!text.contains("next cron restart"), "{text}");
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["cron_restart"], "0 3 * * *");
        assert_eq!(json["next_cron_restart_at_ms"], NOW + 3_600_000);

        let mut info = stopped(1, "w");
        info.spec.get_or_insert_default().cron_restart = "@daily".into();
        let text = describe(&ProcessView::new(&info, NOW), Colours::OFF, NOW);
        assert!(text.contains("@daily  (not while stopped)"), "{text}");

        let plus_one = chrono::FixedOffset::east_opt(3600).unwrap();
        // 2026-12-06T02:00:00Z
        assert_eq!(
            stamp_in(1_796_522_400_000, &plus_one),
            "2026-12-06 03:00:00 +01:00"
        );
    }

    #[test]
    fn summaries_name_the_process_and_surprises() {
        assert_eq!(
            summary("started", &online(0, "api")),
            "started api (id 0, pid 4242)"
        );
        assert_eq!(summary("stopped", &stopped(3, "w")), "stopped w (id 3)");
        assert_eq!(summary("deleted", &online(0, "api")), "deleted api (id 0)");
        let mut bad = stopped(3, "w");
        bad.set_state(ProcessState::Errored);
        bad.status_reason = "script not found".into();
        assert_eq!(
            summary("started", &bad),
            "started w (id 3): errored (script not found)"
        );
    }

    #[test]
    fn ports_and_spec_fields_in_json_and_describe() {
        let stopped = ProcessView::new(&stopped(1, "w"), NOW);
        let json_of = |v: &ProcessView| -> serde_json::Value {
            serde_json::from_str(&json(std::slice::from_ref(v), true).unwrap()).unwrap()
        };
        let plain = json_of(&stopped);
        for key in [
            "port",
            "port_spec",
            "port_env",
            "out_file",
            "error_file",
            "instances",
            "watch_delay_ms",
        ] {
            assert!(plain[key].is_null(), "{key} should be null: {plain}");
        }
        assert_eq!(plain["port_override"], false);
        assert_eq!(plain["watch"], false);
        assert_eq!(plain["watch_paths"], serde_json::json!([]));

        let mut info = online(0, "api");
        info.port = Some(3001);
        info.port_override = true;
        let spec = info.spec.as_mut().unwrap();
        spec.instances = Some(0);
        spec.port = "3000-3003".into();
        spec.port_env = "HTTP_PORT".into();
        spec.watch = true;
        spec.watch_paths = vec!["src".into()];
        spec.ignore_watch = vec!["*.log".into()];
        spec.watch_delay_ms = Some(2000);
        spec.out_file = "out.log".into();
        let view = ProcessView::new(&info, NOW);
        let full = json_of(&view);
        assert_eq!(full["port"], 3001);
        assert_eq!(full["port_override"], true);
        assert_eq!(full["port_spec"], "3000-3003");
        assert_eq!(full["port_env"], "HTTP_PORT");
        assert_eq!(full["instances"], 0);
        assert_eq!(full["watch_paths"], serde_json::json!(["src"]));
        assert_eq!(full["out_file"], "out.log");
        assert!(full["error_file"].is_null());

        let text = describe(&view, Colours::OFF, NOW);
        let has = |needle: &str| assert!(text.contains(needle), "{needle:?} in\n{text}");
        has(" 3001 (override, this run only)\n");
        has(" 3000-3003\n");
        has(" 2s\n"); // watch delay
        assert!(!text.contains("port override"), "{text}");
        info.port_override = false;
        let text = describe(&ProcessView::new(&info, NOW), Colours::OFF, NOW);
        assert!(!text.contains("override"), "{text}");
    }

    #[test]
    fn id_lists_collapse_runs() {
        assert_eq!(id_list([3]), "id 3");
        assert_eq!(id_list([2, 0, 1]), "ids 0-2");
        assert_eq!(id_list([0, 4, 5, 7]), "ids 0, 4-5, 7");
    }

    #[test]
    fn apply_lines_say_what_happened_to_each_app() {
        let app = |outcome: ApplyOutcome, changed: &[&str], ids: &[u32]| AppliedApp {
            name: "api".into(),
            outcome: outcome.into(),
            changed_fields: changed.iter().map(|s| s.to_string()).collect(),
            processes: ids.iter().map(|&id| online(id, "api")).collect(),
            error: String::new(),
        };
        let line = |a: &AppliedApp| applied(a, ApplyMode::Unspecified);
        assert_eq!(
            line(&app(ApplyOutcome::Created, &[], &[0, 1, 2])),
            "created api (ids 0-2)"
        );
        assert_eq!(
            line(&app(ApplyOutcome::Unchanged, &[], &[0, 1, 2])),
            "api already running (ids 0-2), unchanged"
        );
        assert_eq!(
            line(&app(ApplyOutcome::Started, &[], &[3])),
            "started api (id 3)"
        );
        assert_eq!(
            line(&app(ApplyOutcome::Updated, &["env", "args"], &[0])),
            "updated api: env, args changed; restarted (id 0)"
        );
        assert_eq!(
            line(&app(ApplyOutcome::Restarted, &[], &[0])),
            "restarted api (id 0)"
        );
        assert_eq!(
            applied(&app(ApplyOutcome::Restarted, &[], &[0]), ApplyMode::Reload),
            "reloaded api (id 0)"
        );
        assert_eq!(
            line(&app(ApplyOutcome::Scaled, &["instances"], &[0, 1, 2])),
            "scaled api: instances changed (ids 0-2)"
        );
        let mut failed = app(ApplyOutcome::Failed, &[], &[]);
        failed.error = "api waited 3.0 s for db to be healthy; it is starting".into();
        assert_eq!(
            line(&failed),
            "failed api: api waited 3.0 s for db to be healthy; it is starting"
        );
        let mut broken = app(ApplyOutcome::Created, &[], &[0, 1]);
        broken.processes[1].set_state(ProcessState::Errored);
        broken.processes[1].status_reason = "script not found".into();
        assert_eq!(
            line(&broken),
            "created api (ids 0-1); id 1 errored (script not found)"
        );
    }

    #[test]
    fn quoting_for_display() {
        assert_eq!(shell_quote("--port=80"), "--port=80");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
    #[test]
    fn cpu_and_memory_are_compact() {
        assert_eq!(format_cpu(Some(12.46)), "12.5%");
        assert_eq!(format_cpu(Some(0.0)), "0.0%");
        assert_eq!(format_cpu(Some(250.0)), "250.0%");
        assert_eq!(format_cpu(None), "-");
        assert_eq!(format_cpu(Some(f64::NAN)), "-");
        assert_eq!(format_memory(Some(512)), "512B");
        assert_eq!(format_memory(Some(1024)), "1.0K");
        assert_eq!(format_memory(Some(35_861_709)), "34.2M");
        assert_eq!(format_memory(Some((1 << 20) - 1)), "1.0M");
        assert_eq!(format_memory(Some(3 << 29)), "1.5G");
        assert_eq!(format_memory(Some(5 << 40)), "5.0T");
        assert_eq!(format_memory(None), "-");
    }

    fn checked(mut info: ProcessInfo) -> ProcessInfo {
        info.cpu_percent = Some(12.5);
        info.memory_bytes = Some(35_861_709);
        info.set_health(HealthState::Unhealthy);
        info.last_health_error = "GET /health: 503".into();
        info.last_health_check_at_ms = Some(NOW - 2000);
        let spec = info.spec.as_mut().unwrap();
        spec.health_check = Some(HealthCheck {
            probe: Some(Probe::Http("http://127.0.0.1:{port}/health".into())),
            interval_ms: Some(5000),
            retries: Some(3),
            ..Default::default()
        });
        spec.max_memory_bytes = Some(200 << 20);
        let mut db = Dependency {
            app: "db".into(),
            ..Default::default()
        };
        db.set_condition(DependencyCondition::Healthy);
        spec.depends_on = vec![db];
        info
    }

    /// `list -o json` has cpu_percent and memory_bytes (null unless
    /// running and sampled), health keys and the new spec fields.
    #[test]
    fn json_has_metrics_health_and_spec_keys() {
        let json_of = |info: &ProcessInfo| -> serde_json::Value {
            let views = [ProcessView::new(info, NOW)];
            serde_json::from_str(&json(&views, true).unwrap()).unwrap()
        };
        let plain = json_of(&online(0, "api"));
        for key in [
            "cpu_percent",
            "memory_bytes",
            "health",
            "last_health_error",
            "last_health_check_at_ms",
            "health_check",
            "max_memory_bytes",
        ] {
            assert!(plain[key].is_null(), "{key} should be null: {plain}");
        }
        assert_eq!(plain["depends_on"], serde_json::json!([]));
        let full = json_of(&checked(online(0, "api")));
        assert_eq!(full["cpu_percent"], 12.5);
        assert_eq!(full["memory_bytes"], 35_861_709);
        assert_eq!(full["health"], "unhealthy");
        assert_eq!(full["last_health_error"], "GET /health: 503");
        assert_eq!(full["last_health_check_at_ms"], NOW - 2000);
        assert_eq!(
            full["health_check"],
            serde_json::json!({
                "http": "http://127.0.0.1:{port}/health",
                "tcp": null,
                "script": null,
                "interval_ms": 5000,
                "timeout_ms": null,
                "retries": 3,
                "start_period_ms": null,
                "expected_status": null,
            })
        );
        assert_eq!(full["max_memory_bytes"], 200 << 20);
        assert_eq!(
            full["depends_on"],
            serde_json::json!([{"app": "db", "condition": "healthy"}])
        );
        // A stale sample of a process that is not running is not shown.
        let mut stopped = stopped(1, "w");
        stopped.cpu_percent = Some(1.0);
        stopped.memory_bytes = Some(4096);
        let gone = json_of(&stopped);
        assert!(gone["cpu_percent"].is_null() && gone["memory_bytes"].is_null());
    }

    /// The table gains CPU and MEM, and HEALTH when an app has a check.
    #[test]
    fn table_has_cpu_mem_and_health_when_checked() {
        let mut api = checked(online(0, "api"));
        api.port = Some(3000);
        let views = ProcessView::all(&[api, stopped(13, "long-worker")], NOW);
        let text = table(&views, Colours::OFF);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "ID  NAME         PID   STATUS   HEALTH     PORT  RESTARTS  UPTIME  CPU    MEM",
                "0   api          4242  online   unhealthy  3000  2         12s     12.5%  34.2M",
                "13  long-worker  -     stopped  -          -     0         -       -      -",
            ]
        );
        let coloured = table(&views, Colours { enabled: true });
        assert!(
            coloured.contains("\x1b[31munhealthy\x1b[0m  3000"),
            "{coloured:?}"
        );
    }

    /// `describe` shows the sample, the health state and the last check,
    /// and the check and dependencies on one line each.
    #[test]
    fn describe_shows_metrics_and_health() {
        let view = ProcessView::new(&checked(online(0, "api")), NOW);
        let text = describe(&view, Colours::OFF, NOW);
        let has = |needle: &str| assert!(text.contains(needle), "{needle:?} in\n{text}");
        has("  cpu ");
        has(" 12.5%\n");
        has("  memory ");
        has(" 34.2M\n");
        has("  health ");
        has(" unhealthy\n");
        has("  last health error ");
        has(" GET /health: 503\n");
        has("  last health check at ");
        has("(2s ago)\n");
        has("  health check ");
        has(" http http://127.0.0.1:{port}/health, every 5s, 3 retries\n");
        has("  max memory bytes ");
        has(" 200 MiB\n");
        has("  depends on ");
        has(" db (healthy)\n");
        let plain = describe(&ProcessView::new(&online(0, "api"), NOW), Colours::OFF, NOW);
        assert!(plain.contains("  health check "), "{plain}");
    }
}
