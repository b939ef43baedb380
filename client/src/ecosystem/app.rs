//! The shape of an ecosystem file, read by hand-written serde visitors:
//! the top level (`apps:` and an ignored `deploy:`, or a bare list of
//! apps), the list of apps, and each app's fields with PM2's names.
//!
//! Every check runs inside the deserializer's visit call for the key or
//! value it is about ([`Check`], [`KeySeed`]), so the error carries that
//! node's line and column. [`Ctx`] is shared by the visitors of one file:
//! which app is being read (for "app 2 (api)" in messages) and the names
//! taken so far (duplicates are refused at the second `name`).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use pmdaemon_proto::PortSpec;
use pmdaemon_proto::v1::health_check::Probe;
use pmdaemon_proto::v1::{AppSpec, Dependency, DependencyCondition, HealthCheck, RestartPolicy};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::raw::{self, Check, Raw};
use crate::rules;

/// One app of the file, checked; `spec.env` is left empty: the base `env`
/// and the `env_<name>` sections are merged when an environment is chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct AppDef {
    pub spec: AppSpec,
    pub env: BTreeMap<String, String>,
    /// `env_production` → `production` → its variables.
    pub environments: BTreeMap<String, BTreeMap<String, String>>,
}

/// State shared by the visitors of one file.
#[derive(Debug, Default)]
pub struct Ctx {
    /// Index of the app being read. Set before an app is read and cleared
    /// after it was read whole, so an error leaves it pointing at the app
    /// the error is in.
    pub app: Cell<Option<usize>>,
    /// Name → index of the app that has it.
    names: RefCell<HashMap<String, usize>>,
    /// Fixed ports and ranges taken by apps read so far: (first, last,
    /// app name). `auto:` ranges pick free ports and may overlap.
    ports: RefCell<Vec<(u16, u16, String)>>,
    /// Things to tell the user that are not errors.
    pub notes: RefCell<Vec<String>>,
    /// A file-level error found after a first read (a dependency cycle, a
    /// missing dependency), to raise at `depends_on` entry `.1` of app `.0`
    /// on a second read, so that it gets that entry's line and column.
    pub fail_at: Option<(usize, usize, String)>,
}

impl Ctx {
    /// Takes the ports of fixed port or range `port` for app `name`, or
    /// says which app of the file has one of them already.
    fn claim_ports(&self, port: &str, name: &str) -> Result<(), String> {
        // What a spec reserves is the shared rule's; an auto range reserves
        // nothing, and an empty or bad spec was refused at its own line.
        let Some(reserved) = port.parse::<PortSpec>().ok().and_then(|s| s.reserved()) else {
            return Ok(());
        };
        let (first, last) = (*reserved.start(), *reserved.end());
        let mut ports = self.ports.borrow_mut();
        if let Some((f, l, other)) = ports
            .iter()
            .find(|(f, l, other)| first <= *l && *f <= last && other != name)
        {
            let theirs = if f == l {
                f.to_string()
            } else {
                format!("{f}-{l}")
            };
            return Err(format!(
                "`port`: {port} overlaps port {theirs} of app {other} in this file; one port \
                 serves one app (use auto: ranges to share a pool)"
            ));
        }
        ports.push((first, last, name.to_string()));
        Ok(())
    }

    /// Takes `name` for app `index`, or says which app has it already.
    fn claim(&self, name: &str, index: usize) -> Result<(), usize> {
        let mut names = self.names.borrow_mut();
        match names.get(name) {
            Some(&other) => Err(other),
            None => {
                names.insert(name.to_string(), index);
                Ok(())
            }
        }
    }
}

/// The fields of an app, with PM2's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Field {
    Name,
    Script,
    Args,
    Interpreter,
    InterpreterArgs,
    Cwd,
    Instances,
    ExecMode,
    Env,
    Autorestart,
    MaxRestarts,
    StartLimitBurst,
    StartLimitInterval,
    MinUptime,
    RestartDelay,
    ExpBackoffRestartDelay,
    ExpBackoffMax,
    KillTimeout,
    StopSignal,
    KillSignal,
    Time,
    Watch,
    IgnoreWatch,
    WatchDelay,
    OutFile,
    ErrorFile,
    Port,
    PortEnv,
    LogMaxSize,
    LogMaxFiles,
    HealthCheck,
    MaxMemoryRestart,
    DependsOn,
}

/// Every accepted key, as written in files (plus `env_<name>` sections).
const FIELDS: &[(&str, Field)] = &[
    ("name", Field::Name),
    ("script", Field::Script),
    ("args", Field::Args),
    ("interpreter", Field::Interpreter),
    ("interpreter_args", Field::InterpreterArgs),
    ("cwd", Field::Cwd),
    ("instances", Field::Instances),
    ("exec_mode", Field::ExecMode),
    ("env", Field::Env),
    ("autorestart", Field::Autorestart),
    ("max_restarts", Field::MaxRestarts),
    ("start_limit_burst", Field::StartLimitBurst),
    ("start_limit_interval", Field::StartLimitInterval),
    ("min_uptime", Field::MinUptime),
    ("restart_delay", Field::RestartDelay),
    ("exp_backoff_restart_delay", Field::ExpBackoffRestartDelay),
    ("exp_backoff_max", Field::ExpBackoffMax),
    ("kill_timeout", Field::KillTimeout),
    ("stop_signal", Field::StopSignal),
    ("kill_signal", Field::KillSignal),
    ("time", Field::Time),
    ("watch", Field::Watch),
    ("ignore_watch", Field::IgnoreWatch),
    ("watch_delay", Field::WatchDelay),
    ("out_file", Field::OutFile),
    ("error_file", Field::ErrorFile),
    ("port", Field::Port),
    ("port_env", Field::PortEnv),
    ("log_max_size", Field::LogMaxSize),
    ("log_max_files", Field::LogMaxFiles),
    ("health_check", Field::HealthCheck),
    ("max_memory_restart", Field::MaxMemoryRestart),
    ("depends_on", Field::DependsOn),
];

/// The accepted field names, for documentation and suggestions.
pub fn field_names() -> impl Iterator<Item = &'static str> {
    FIELDS.iter().map(|(key, _)| *key)
}

impl Field {
    fn key(self) -> &'static str {
        FIELDS
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(key, _)| key)
    }

    /// The setting a key writes: `kill_signal` is PM2's `stop_signal`.
    fn slot(self) -> Field {
        match self {
            Field::KillSignal => Field::StopSignal,
            other => other,
        }
    }
}

/// PM2 fields that pmd does not take, with what to do instead.
const PM2_ONLY: &[(&str, &str)] = &[
    ("node_args", "use `interpreter_args`"),
    ("output", "use `out_file`"),
    ("out", "use `out_file`"),
    ("error", "use `error_file`"),
    ("err_file", "use `error_file`"),
    (
        "log_file",
        "pmd keeps stdout and stderr apart; use `out_file` and `error_file`",
    ),
    ("log", "use `out_file` and `error_file`"),
    (
        "merge_logs",
        "pmd keeps one log per instance (with `out_file`, -INDEX is added)",
    ),
    (
        "combine_logs",
        "pmd keeps one log per instance (with `out_file`, -INDEX is added)",
    ),
    ("log_date_format", "use `time: true` to timestamp each line"),
    ("watch_options", "use `watch_delay` and `ignore_watch`"),
    (
        "wait_ready",
        "give the app a `health_check` and run `pmd start FILE --wait-ready`",
    ),
    (
        "listen_timeout",
        "give the app a `health_check` and bound the wait with `pmd start FILE --wait-ready \
         --wait-timeout 30s`",
    ),
    (
        "<<",
        "YAML merge keys are not supported; repeat the fields in each app",
    ),
];

/// PM2 fields with no pmd equivalent (yet).
const PM2_UNSUPPORTED: &[&str] = &[
    "cron_restart",
    "shutdown_with_message",
    "namespace",
    "instance_var",
    "increment_var",
    "source_map_support",
    "vizion",
    "autostart",
    "force",
    "pid_file",
    "filter_env",
    "append_env_to_name",
    "treekill",
    "disable_logs",
    "automation",
    "pmx",
];

/// Why a key is refused: PM2-only fields get their alternative, others the
/// nearest known field when one is close.
fn unknown_field(key: &str) -> String {
    if let Some((_, hint)) = PM2_ONLY.iter().find(|(k, _)| *k == key) {
        return format!("`{key}` is not supported by pmd: {hint}");
    }
    if PM2_UNSUPPORTED.contains(&key) {
        return format!("`{key}` is a PM2 field that pmd does not support; remove it");
    }
    let suggestion = suggest(key, field_names());
    match suggestion {
        Some(best) => format!("unknown field `{key}`, did you mean `{best}`?"),
        None => format!(
            "unknown field `{key}`; pmd takes {}, and env_<name> sections",
            field_names()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The candidate nearest to `word`, if it is near enough to be a typo.
/// Near enough: a few edits (a transposition is one) for the length, or a
/// long shared prefix (Jaro-Winkler); the fewest edits win.
pub fn suggest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .filter_map(|c| {
            let edits = strsim::damerau_levenshtein(word, c);
            let similarity = strsim::jaro_winkler(word, c);
            let near = edits <= (c.len() / 4).max(1) || similarity > 0.85;
            near.then_some((edits, similarity, c))
        })
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, _, c)| c)
}

// ---- keys ------------------------------------------------------------------

enum Key {
    Field(Field),
    /// An `env_<name>` section, by its name.
    Environment(String),
}

/// Reads one key of an app, refusing unknown and repeated keys at the key.
struct KeySeed<'a> {
    seen: &'a HashSet<Field>,
    seen_environments: &'a HashSet<String>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        if let Some(section) = key.strip_prefix("env_") {
            rules::check_environment_name(&format!("`{key}`"), section).map_err(E::custom)?;
            if self.seen_environments.contains(section) {
                return Err(E::custom(format!("`{key}` is given twice")));
            }
            return Ok(Key::Environment(section.to_string()));
        }
        let Some(&(_, field)) = FIELDS.iter().find(|(k, _)| *k == key) else {
            return Err(E::custom(unknown_field(key)));
        };
        if self.seen.contains(&field.slot()) {
            return Err(E::custom(match field {
                Field::StopSignal | Field::KillSignal => {
                    "`kill_signal` is PM2's name for `stop_signal`; give only one of them"
                        .to_string()
                }
                _ => format!("`{key}` is given twice"),
            }));
        }
        Ok(Key::Field(field))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
        Err(E::custom(format!("field names are words, found {v}")))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
        Err(E::custom(format!("field names are words, found {v}")))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
        Err(E::custom(format!("field names are words, found {v}")))
    }
}

// ---- one app -----------------------------------------------------------------

/// `exec_mode`: PM2's cluster mode is N instances here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExecMode {
    Fork,
    Cluster,
}

fn exec_mode(what: &str, raw: Raw) -> Result<ExecMode, String> {
    match &raw {
        Raw::Str(s) => match s.as_str() {
            "fork" | "fork_mode" => Ok(ExecMode::Fork),
            "cluster" | "cluster_mode" => Ok(ExecMode::Cluster),
            _ => Err(format!(
                "{what}: {s:?} is not an exec mode; use fork or cluster"
            )),
        },
        other => Err(format!(
            "{what}: expected fork or cluster, found {}",
            other.describe()
        )),
    }
}

fn autorestart(what: &str, raw: Raw) -> Result<RestartPolicy, String> {
    match &raw {
        Raw::Bool(true) => Ok(RestartPolicy::Always),
        Raw::Bool(false) => Ok(RestartPolicy::Never),
        Raw::Str(s) => match s.as_str() {
            "always" => Ok(RestartPolicy::Always),
            "on-failure" => Ok(RestartPolicy::OnFailure),
            "never" => Ok(RestartPolicy::Never),
            _ => Err(format!(
                "{what}: {s:?} is not a restart policy; use true, false, always, on-failure \
                 or never"
            )),
        },
        other => Err(format!(
            "{what}: expected true, false, always, on-failure or never, found {}",
            other.describe()
        )),
    }
}

/// `watch: true|false`, one path, or a list of paths (which means true).
fn watch(what: &str, raw: Raw) -> Result<(bool, Vec<String>), String> {
    match raw {
        Raw::Bool(on) => Ok((on, Vec::new())),
        Raw::Seq(ref items) if items.is_empty() => Err(format!(
            "{what}: the list is empty; use true to watch the working directory, or false"
        )),
        Raw::Str(_) | Raw::Seq(_) => Ok((true, raw::paths(what, raw)?)),
        other => Err(format!(
            "{what}: expected true, false or a list of paths, found {}",
            other.describe()
        )),
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Reads the app at `index` of the list.
pub struct AppSeed<'c> {
    pub ctx: &'c Ctx,
    pub index: usize,
}

impl<'de> DeserializeSeed<'de> for AppSeed<'_> {
    type Value = AppDef;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<AppDef, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AppSeed<'_> {
    type Value = AppDef;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an app: a map of fields such as name and script")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AppDef, A::Error> {
        let mut app = AppDef {
            spec: AppSpec::default(),
            env: BTreeMap::new(),
            environments: BTreeMap::new(),
        };
        let mut exec = None;
        let mut seen = HashSet::new();
        let mut seen_environments = HashSet::new();
        loop {
            let key = map.next_key_seed(KeySeed {
                seen: &seen,
                seen_environments: &seen_environments,
            })?;
            match key {
                None => break,
                Some(Key::Environment(section)) => {
                    let what = format!("`env_{section}`");
                    let vars = map.next_value_seed(Check::new(|r| raw::env_map(&what, r)))?;
                    seen_environments.insert(section.clone());
                    app.environments.insert(section, vars);
                }
                Some(Key::Field(field)) => {
                    seen.insert(field.slot());
                    self.read_field(field, &mut map, &mut app, &mut exec)?;
                }
            }
        }
        self.finish(app, exec).map_err(de::Error::custom)
    }
}

impl AppSeed<'_> {
    /// Reads the value of `field` into `app`.
    fn read_field<'de, A: MapAccess<'de>>(
        &self,
        field: Field,
        map: &mut A,
        app: &mut AppDef,
        exec: &mut Option<ExecMode>,
    ) -> Result<(), A::Error> {
        let what = format!("`{}`", field.key());
        let what = what.as_str();
        // Reads the value with `check(what, raw)`.
        macro_rules! value {
            ($check:expr) => {
                map.next_value_seed(Check::new(|r| $check(what, r)))?
            };
        }
        let duration = |what: &str, r| raw::duration(what, r).map(millis);
        let spec = &mut app.spec;
        match field {
            Field::Name => {
                let (ctx, index) = (self.ctx, self.index);
                spec.name = value!(|what: &str, r| -> Result<String, String> {
                    let name = raw::string(what, r)?;
                    pmdaemon_proto::validate_name(&name).map_err(|e| format!("{what}: {e}"))?;
                    ctx.claim(&name, index).map_err(|other| {
                        format!("{what}: {name:?} is already the name of app {}", other + 1)
                    })?;
                    Ok(name)
                });
            }
            Field::Script => spec.script = value!(raw::string),
            Field::Args => spec.args = value!(raw::words),
            Field::Interpreter => spec.interpreter = Some(value!(raw::string)),
            Field::InterpreterArgs => spec.interpreter_args = value!(raw::words),
            Field::Cwd => spec.cwd = value!(raw::string),
            Field::Instances => spec.instances = Some(value!(raw::instances)),
            Field::ExecMode => *exec = Some(value!(exec_mode)),
            Field::Env => app.env = value!(raw::env_map),
            Field::Autorestart => spec.set_autorestart(value!(autorestart)),
            Field::MaxRestarts => {
                let n = value!(|w, r| raw::count(w, r, pmdaemon_proto::MAX_MAX_RESTARTS.into()));
                spec.max_restarts = Some(u32::try_from(n).unwrap_or(u32::MAX));
            }
            Field::StartLimitBurst => {
                let n =
                    value!(|w, r| raw::count(w, r, pmdaemon_proto::MAX_START_LIMIT_BURST.into()));
                spec.start_limit_burst = Some(u32::try_from(n).unwrap_or(u32::MAX));
            }
            Field::StartLimitInterval => spec.start_limit_interval_ms = Some(value!(duration)),
            Field::MinUptime => spec.min_uptime_ms = Some(value!(duration)),
            Field::RestartDelay => spec.restart_delay_ms = Some(value!(duration)),
            Field::ExpBackoffRestartDelay => spec.exp_backoff_initial_ms = Some(value!(duration)),
            Field::ExpBackoffMax => spec.exp_backoff_max_ms = Some(value!(duration)),
            Field::KillTimeout => spec.kill_timeout_ms = Some(value!(duration)),
            Field::WatchDelay => spec.watch_delay_ms = Some(value!(duration)),
            Field::StopSignal | Field::KillSignal => spec.stop_signal = value!(raw::stop_signal),
            Field::Time => spec.time = value!(raw::boolean),
            Field::Watch => (spec.watch, spec.watch_paths) = value!(watch),
            Field::IgnoreWatch => spec.ignore_watch = value!(raw::paths),
            Field::OutFile => spec.out_file = value!(raw::string),
            Field::ErrorFile => spec.error_file = value!(raw::string),
            Field::Port => spec.port = value!(raw::port),
            Field::PortEnv => {
                spec.port_env = value!(|what: &str, r| -> Result<String, String> {
                    let name = raw::string(what, r)?;
                    rules::check_port_env(what, &name)?;
                    Ok(name)
                });
            }
            Field::LogMaxSize => {
                spec.log_max_bytes = Some(value!(|w, r| {
                    let bytes = raw::size(w, r)?;
                    pmdaemon_proto::check_log_max_size(w, bytes).map_err(|e| e.0)
                }));
            }
            Field::LogMaxFiles => {
                let n = value!(|w, r| raw::count(w, r, rules::MAX_LOG_FILES.into()));
                spec.log_max_files = Some(u32::try_from(n).unwrap_or(rules::MAX_LOG_FILES));
            }
            Field::HealthCheck => spec.health_check = Some(map.next_value_seed(HealthCheckSeed)?),
            Field::MaxMemoryRestart => spec.max_memory_bytes = Some(value!(raw::size)),
            Field::DependsOn => {
                spec.depends_on = map.next_value_seed(DependsOnSeed {
                    ctx: self.ctx,
                    index: self.index,
                })?;
            }
        }
        Ok(())
    }

    /// What needs the whole app: `script` is required, the name defaults
    /// to the script's file stem (as the daemon does), and cluster mode
    /// without `instances` means one per CPU (as PM2 does).
    fn finish(&self, mut app: AppDef, exec: Option<ExecMode>) -> Result<AppDef, String> {
        let spec = &mut app.spec;
        if spec.script.is_empty() {
            return Err("missing `script`: the file or command to run".into());
        }
        if spec.name.is_empty() {
            let stem = pmdaemon_proto::default_name(&spec.script).map_err(|e| {
                format!("no `name`, and the script's file name cannot be one ({e}); set `name`")
            })?;
            self.ctx.claim(&stem, self.index).map_err(|other| {
                format!(
                    "no `name`, and the script's file name {stem:?} is already the name of app \
                     {}; set `name`",
                    other + 1
                )
            })?;
            spec.name = stem;
        }
        if exec == Some(ExecMode::Cluster) && spec.instances.is_none() {
            spec.instances = Some(0);
        }
        if let Some(check) = &spec.health_check {
            rules::check_health_check("`health_check`", check, !spec.port.is_empty())?;
        }
        rules::check_port_room("`port`", &spec.port, spec.instances)?;
        if spec.interpreter.as_deref() == Some("none") && !spec.interpreter_args.is_empty() {
            return Err(
                "`interpreter_args` with `interpreter: none`: the script runs directly, so \
                 nothing would receive them; give an interpreter, or pass them as `args`"
                    .into(),
            );
        }
        self.ctx.claim_ports(&spec.port, &spec.name)?;
        Ok(app)
    }
}

// ---- health_check ----------------------------------------------------------------

/// The keys of a `health_check` map.
const HEALTH_KEYS: &[&str] = &[
    "http",
    "tcp",
    "script",
    "interval",
    "timeout",
    "retries",
    "start_period",
    "expected_status",
];

/// Keys people reach for, with the one to use.
const HEALTH_HINTS: &[(&str, &str)] = &[
    ("url", "http"),
    ("command", "script"),
    ("cmd", "script"),
    ("exec", "script"),
    ("address", "tcp"),
    ("port", "tcp"),
    ("status", "expected_status"),
];

/// Why a `health_check` key is refused.
fn unknown_health_key(key: &str) -> String {
    if let Some((_, instead)) = HEALTH_HINTS.iter().find(|(k, _)| *k == key) {
        return format!("`health_check`: unknown key `{key}`, did you mean `{instead}`?");
    }
    match suggest(key, HEALTH_KEYS.iter().copied()) {
        Some(best) => format!("`health_check`: unknown key `{key}`, did you mean `{best}`?"),
        None => format!(
            "`health_check`: unknown key `{key}`; a check takes one of `http`, `tcp`, `script` \
             and `interval`, `timeout`, `retries`, `start_period`, `expected_status`"
        ),
    }
}

/// Reads one key of a `health_check` map, refusing unknown and repeated
/// keys and a second probe at the key.
struct HealthKeySeed<'a> {
    seen: &'a [&'static str],
}

impl<'de> DeserializeSeed<'de> for HealthKeySeed<'_> {
    type Value = &'static str;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<&'static str, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HealthKeySeed<'_> {
    type Value = &'static str;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key of `health_check`")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<&'static str, E> {
        let Some(&known) = HEALTH_KEYS.iter().find(|k| **k == key) else {
            return Err(E::custom(unknown_health_key(key)));
        };
        if self.seen.contains(&known) {
            return Err(E::custom(format!("`health_check`: `{key}` is given twice")));
        }
        let probes = ["http", "tcp", "script"];
        if probes.contains(&known)
            && let Some(other) = self.seen.iter().find(|k| probes.contains(k))
        {
            return Err(E::custom(format!(
                "`health_check`: `{other}` and `{key}` are both given; a check has one probe"
            )));
        }
        Ok(known)
    }
}

/// Reads a `health_check` map.
struct HealthCheckSeed;

impl<'de> DeserializeSeed<'de> for HealthCheckSeed {
    type Value = HealthCheck;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<HealthCheck, D::Error> {
        d.deserialize_any(self)
    }
}

const HEALTH_EXPECTED: &str =
    "a map with one probe, such as {http: \"http://127.0.0.1:{port}/health\", interval: 5s}";

impl HealthCheckSeed {
    fn not_a_map<E: de::Error>(found: &Raw) -> E {
        E::custom(format!(
            "`health_check`: expected {HEALTH_EXPECTED}, found {}",
            found.describe()
        ))
    }
}

impl<'de> Visitor<'de> for HealthCheckSeed {
    type Value = HealthCheck;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HEALTH_EXPECTED)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HealthCheck, A::Error> {
        let mut check = HealthCheck::default();
        let mut seen: Vec<&'static str> = Vec::new();
        let timing = |what: &str, r: Raw| -> Result<u64, String> {
            rules::check_health_duration(what, millis(raw::duration(what, r)?))
        };
        while let Some(key) = map.next_key_seed(HealthKeySeed { seen: &seen })? {
            seen.push(key);
            let what = format!("`health_check.{key}`");
            let what = what.as_str();
            macro_rules! value {
                ($check:expr) => {
                    map.next_value_seed(Check::new(|r| $check(what, r)))?
                };
            }
            match key {
                "http" => {
                    check.probe = Some(Probe::Http(value!(|w: &str, r| {
                        let url = raw::string(w, r)?;
                        rules::check_http_probe(w, &url).map(|()| url)
                    })));
                }
                "tcp" => {
                    check.probe = Some(Probe::Tcp(value!(|w: &str, r| {
                        let address = match r {
                            Raw::Str(_) => raw::string(w, r)?,
                            other => {
                                return Err(format!(
                                    "{w}: expected HOST:PORT such as \"127.0.0.1:{{port}}\", \
                                     found {}",
                                    other.describe()
                                ));
                            }
                        };
                        rules::check_tcp_probe(w, &address).map(|()| address)
                    })));
                }
                "script" => {
                    check.probe = Some(Probe::Script(value!(|w: &str, r| {
                        let command = raw::string(w, r)?;
                        rules::check_script_probe(w, &command).map(|()| command)
                    })));
                }
                "interval" => check.interval_ms = Some(value!(timing)),
                "timeout" => check.timeout_ms = Some(value!(timing)),
                "start_period" => {
                    check.start_period_ms = Some(value!(|w, r| raw::duration(w, r).map(millis)));
                }
                "retries" => {
                    check.retries = Some(value!(|w: &str, r| {
                        rules::check_health_retries(w, raw::count(w, r, u64::MAX)?)
                    }));
                }
                "expected_status" => {
                    check.expected_status = Some(value!(|w: &str, r| {
                        rules::check_status_code(w, raw::count(w, r, u64::MAX)?)
                    }));
                }
                _ => unreachable!("HealthKeySeed only returns HEALTH_KEYS"),
            }
        }
        rules::check_health_check("`health_check`", &check, true).map_err(de::Error::custom)?;
        rules::check_health_timeout("`health_check`", &check).map_err(de::Error::custom)?;
        Ok(check)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<HealthCheck, E> {
        Err(Self::not_a_map(&Raw::Str(v.to_string())))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<HealthCheck, E> {
        Err(Self::not_a_map(&Raw::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<HealthCheck, E> {
        Err(Self::not_a_map(&Raw::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<HealthCheck, E> {
        Err(Self::not_a_map(&Raw::UInt(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<HealthCheck, E> {
        Err(Self::not_a_map(&Raw::Float(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<HealthCheck, E> {
        Err(Self::not_a_map(&Raw::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<HealthCheck, E> {
        Err(Self::not_a_map(&Raw::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<HealthCheck, A::Error> {
        Err(Self::not_a_map(&Raw::Seq(Vec::new())))
    }
}

// ---- depends_on ------------------------------------------------------------------

/// One entry: `db` (started) or `{cache: healthy}`.
fn dependency(what: &str, raw: Raw) -> Result<Dependency, String> {
    let (name, condition) = match raw {
        Raw::Str(name) => (name, DependencyCondition::Started),
        Raw::Map(mut entries) if entries.len() == 1 => {
            let (key, value) = entries.remove(0);
            let Raw::Str(name) = key else {
                return Err(format!(
                    "{what}: app names are words, found {}",
                    key.describe()
                ));
            };
            let word = match value {
                Raw::Str(word) => word,
                other => {
                    return Err(format!(
                        "{what}: {name}: expected started, healthy or completed, found {}",
                        other.describe()
                    ));
                }
            };
            let Ok(condition) = word.parse::<pmdaemon_proto::DependencyCondition>() else {
                let words = pmdaemon_proto::DependencyCondition::ALL.map(|c| c.word());
                let hint = suggest(&word, words.into_iter())
                    .map(|best| format!(" (did you mean {best}?)"))
                    .unwrap_or_default();
                return Err(format!(
                    "{what}: {name}: {word:?} is not a condition{hint}; use started, healthy or \
                     completed"
                ));
            };
            (name, condition.into())
        }
        Raw::Map(entries) if entries.is_empty() => {
            return Err(format!(
                "{what}: an empty map; write NAME or {{NAME: healthy}}"
            ));
        }
        Raw::Map(_) => {
            return Err(format!(
                "{what}: one app per entry; write each as NAME or {{NAME: CONDITION}} on its own \
                 line of the list"
            ));
        }
        other => {
            return Err(format!(
                "{what}: expected an app name or {{NAME: healthy}}, found {}",
                other.describe()
            ));
        }
    };
    pmdaemon_proto::validate_name(&name).map_err(|e| format!("{what}: {e}"))?;
    let mut dep = Dependency {
        app: name,
        ..Default::default()
    };
    dep.set_condition(condition);
    Ok(dep)
}

/// Reads `depends_on`: a list of entries (or one app name), each checked
/// at its own line and column.
struct DependsOnSeed<'c> {
    ctx: &'c Ctx,
    index: usize,
}

impl DependsOnSeed<'_> {
    /// Entry `entry` read as `raw`, unless a file-level error is to be
    /// raised here.
    fn entry(&self, entry: usize, raw: Raw, seen: &[Dependency]) -> Result<Dependency, String> {
        if let Some((app, at, message)) = &self.ctx.fail_at
            && (*app, *at) == (self.index, entry)
        {
            return Err(message.clone());
        }
        let dep = dependency("`depends_on`", raw)?;
        if seen.iter().any(|d| d.app == dep.app) {
            return Err(format!("`depends_on`: {} is given twice", dep.app));
        }
        Ok(dep)
    }
}

impl<'de> DeserializeSeed<'de> for DependsOnSeed<'_> {
    type Value = Vec<Dependency>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Dependency>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DependsOnSeed<'_> {
    type Value = Vec<Dependency>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of app names, such as [db, {cache: healthy}]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Dependency>, A::Error> {
        let mut deps: Vec<Dependency> = Vec::new();
        loop {
            let entry = deps.len();
            let seen = &deps;
            let next = seq.next_element_seed(Check::new(|r| self.entry(entry, r, seen)))?;
            match next {
                Some(dep) => deps.push(dep),
                None => break,
            }
        }
        Ok(deps)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<Dependency>, E> {
        let dep = self
            .entry(0, Raw::Str(v.to_string()), &[])
            .map_err(E::custom)?;
        Ok(vec![dep])
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<Dependency>, A::Error> {
        let raw = super::raw::RawVisitor.visit_map(map)?;
        Err(de::Error::custom(format!(
            "`depends_on`: expected a list such as [db, {{cache: healthy}}], found {}; put each \
             app in a list entry",
            raw.describe()
        )))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Vec<Dependency>, E> {
        Err(E::custom(format!(
            "`depends_on`: expected a list of app names, found {}",
            Raw::Bool(v).describe()
        )))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<Dependency>, E> {
        Err(E::custom(format!(
            "`depends_on`: expected a list of app names, found {}",
            Raw::UInt(v).describe()
        )))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<Dependency>, E> {
        Err(E::custom(format!(
            "`depends_on`: expected a list of app names, found {}",
            Raw::Int(v).describe()
        )))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Vec<Dependency>, E> {
        Err(E::custom(
            "`depends_on`: expected a list of app names, found no value (null)",
        ))
    }
    fn visit_none<E: de::Error>(self) -> Result<Vec<Dependency>, E> {
        self.visit_unit()
    }
}

// ---- the list and the file ---------------------------------------------------

/// The `apps` list.
struct AppsSeed<'c> {
    ctx: &'c Ctx,
}

impl<'de> DeserializeSeed<'de> for AppsSeed<'_> {
    type Value = Vec<AppDef>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<AppDef>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AppsSeed<'_> {
    type Value = Vec<AppDef>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of apps")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<AppDef>, A::Error> {
        let mut apps = Vec::new();
        loop {
            let index = apps.len();
            self.ctx.app.set(Some(index));
            let seed = AppSeed {
                ctx: self.ctx,
                index,
            };
            match seq.next_element_seed(seed)? {
                Some(app) => apps.push(app),
                None => break,
            }
        }
        self.ctx.app.set(None);
        if apps.is_empty() {
            return Err(de::Error::custom("the list of apps is empty"));
        }
        Ok(apps)
    }
}

/// The whole file: `{apps: [...], deploy: ...}` or a bare list of apps.
pub struct FileSeed<'c> {
    pub ctx: &'c Ctx,
}

impl<'de> DeserializeSeed<'de> for FileSeed<'_> {
    type Value = Vec<AppDef>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<AppDef>, D::Error> {
        d.deserialize_any(self)
    }
}

/// A top-level key.
struct TopKey;

impl<'de> DeserializeSeed<'de> for TopKey {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopKey {
    /// True for `apps`, false for `deploy`.
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`apps`")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        match key {
            "apps" => Ok(true),
            "deploy" => Ok(false),
            _ if FIELDS.iter().any(|(k, _)| *k == key) => Err(E::custom(format!(
                "`{key}` is a field of an app, but apps go in a list under `apps:` \
                 (apps:\\n  - name: ...\\n    script: ...)"
            ))),
            _ => Err(E::custom(
                match suggest(key, ["apps", "deploy"].into_iter()) {
                    Some(best) => format!("unknown top-level key `{key}`, did you mean `{best}`?"),
                    None => format!("unknown top-level key `{key}`; the apps go under `apps:`"),
                },
            )),
        }
    }
}

impl<'de> Visitor<'de> for FileSeed<'_> {
    type Value = Vec<AppDef>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`apps:` and a list of apps")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<AppDef>, A::Error> {
        let mut apps = None;
        while let Some(is_apps) = map.next_key_seed(TopKey)? {
            if !is_apps {
                map.next_value::<de::IgnoredAny>()?;
                self.ctx
                    .notes
                    .borrow_mut()
                    .push("the `deploy` section is ignored: pmd does not deploy".into());
                continue;
            }
            if apps.is_some() {
                return Err(de::Error::custom("`apps` is given twice"));
            }
            apps = Some(map.next_value_seed(AppsSeed { ctx: self.ctx })?);
        }
        apps.ok_or_else(|| {
            de::Error::custom("no `apps:` list: an ecosystem file lists its apps under `apps:`")
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<AppDef>, A::Error> {
        AppsSeed { ctx: self.ctx }.visit_seq(seq)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<AppDef>, E> {
        Err(E::custom(
            "the file is empty: an ecosystem file lists its apps under `apps:`",
        ))
    }

    /// An empty YAML document.
    fn visit_none<E: de::Error>(self) -> Result<Vec<AppDef>, E> {
        self.visit_unit()
    }
}
