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
use std::path::Path;

use pmdaemon_proto::v1::{AppSpec, RestartPolicy};
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
    /// Things to tell the user that are not errors.
    pub notes: RefCell<Vec<String>>,
}

impl Ctx {
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
        "<<",
        "YAML merge keys are not supported; repeat the fields in each app",
    ),
];

/// PM2 fields with no pmd equivalent (yet).
const PM2_UNSUPPORTED: &[&str] = &[
    "max_memory_restart",
    "cron_restart",
    "wait_ready",
    "listen_timeout",
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
                let n = value!(|w, r| raw::count(w, r, u32::MAX.into()));
                spec.max_restarts = Some(u32::try_from(n).unwrap_or(u32::MAX));
            }
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
                    rules::check_env_name(what, &name)?;
                    Ok(name)
                });
            }
            Field::LogMaxSize => spec.log_max_bytes = Some(value!(raw::size)),
            Field::LogMaxFiles => {
                let n = value!(|w, r| raw::count(w, r, rules::MAX_LOG_FILES.into()));
                spec.log_max_files = Some(u32::try_from(n).unwrap_or(rules::MAX_LOG_FILES));
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
            let stem = Path::new(&spec.script)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            pmdaemon_proto::validate_name(&stem).map_err(|e| {
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
        Ok(app)
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
