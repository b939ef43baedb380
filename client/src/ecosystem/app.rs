//! The shape of an ecosystem file, read by hand-written serde visitors:
//! the top level (`apps:` with an ignored `deploy:`, a bare list of apps,
//! or one app alone, as PM2 takes them), the list of apps, and each app's
//! keys, looked up in the catalogue ([`keys`]).
//!
//! Every check runs inside the deserializer's visit call for the key or
//! value it is about ([`Check`], [`KeySeed`]), so the error carries that
//! node's line and column. A key pmd does not honour is not an error: it
//! is recorded as a [`Finding`] and its value skipped; the caller finds
//! its line and column by a second read that stops there
//! ([`Ctx::locate`]). [`Ctx`] is shared by the visitors of one file: which
//! app is being read (for "app 2 (api)" in messages), the names taken so
//! far (duplicates are refused at the second `name`), and the findings.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use pmdaemon_proto::PortSpec;
use pmdaemon_proto::v1::health_check::Probe;
use pmdaemon_proto::v1::{
    AppSpec, BalanceSpec, BalanceStrategy, Dependency, DependencyCondition, HealthCheck,
    RestartPolicy,
};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::keys::{self, Field, Handling};
use super::raw::{self, Check, Raw};
use crate::rules;

/// The error a locating read stops with (see [`Ctx::locate`]).
pub const LOCATED: &str = "\u{0}located";

/// How the top level of a file holds its apps, decided by a lenient first
/// read (a map with `apps:` and a map that is an app look alike to a
/// streaming reader).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Shape {
    /// `{apps: [...], deploy: ...}` (or PM2's `pm2:` for `apps:`).
    #[default]
    Wrapped,
    /// A map without `apps:` whose keys are an app's.
    OneApp,
}

/// A key that is accepted but not honoured, or not known: a warning,
/// which `--strict` turns into an error.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The app it is in; None at the top level.
    pub app: Option<usize>,
    /// The key as written, to find it again.
    pub key: String,
    /// What makes two findings the same warning: the catalogue's name of
    /// the key, or the unknown key itself.
    pub group: String,
    pub message: String,
}

/// One app of the file, checked; `spec.env` is left empty: the base `env`
/// and the `env_<name>` sections are merged when an environment is chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct AppDef {
    pub spec: AppSpec,
    pub env: BTreeMap<String, String>,
    /// `env_production` → `production` → its variables.
    pub environments: BTreeMap<String, BTreeMap<String, String>>,
    /// `balance: false`: never balanced, not even a PM2 cluster on one
    /// port.
    pub balance_off: bool,
    /// A PM2 cluster whose `env` sets one fixed port in this variable: its
    /// public port comes from the environment chosen at start.
    pub balance_env: Option<String>,
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
    /// The top level's shape.
    pub shape: Shape,
    /// Whether the top level has an `apps:` (or `pm2:`) key.
    pub has_apps: bool,
    /// The file's directory, against which (with the app's `cwd`) a
    /// `script` is looked at; None: only its text is.
    pub dir: Option<std::path::PathBuf>,
    /// Keys accepted with a warning, in file order.
    pub findings: RefCell<Vec<Finding>>,
    /// On a locating read: the key (app, key as written) at which to stop
    /// with [`LOCATED`], so that the error gives its line and column.
    pub locate: Option<(Option<usize>, String)>,
    /// Keys (app, key as written) whose value an earlier read refused:
    /// skipped, so that this read finds the next error.
    pub skip: Vec<(Option<usize>, String)>,
    /// The key whose value is being read, if any: what an error is about.
    pub reading: RefCell<Option<(Option<usize>, String)>>,
}

impl Ctx {
    /// Records a warning about `key` of the app being read.
    fn warn(&self, key: &str, group: &str, message: String) {
        self.findings.borrow_mut().push(Finding {
            app: self.app.get(),
            key: key.to_string(),
            group: group.to_string(),
            message,
        });
    }

    /// Stops a locating read at the key it looks for.
    fn stop_if_located<E: de::Error>(&self, key: &str) -> Result<(), E> {
        match &self.locate {
            Some((app, wanted)) if *app == self.app.get() && wanted == key => {
                Err(E::custom(LOCATED))
            }
            _ => Ok(()),
        }
    }

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

/// The candidate nearest to `word`, if it is near enough to be a typo
/// (app names, conditions, health-check keys; app keys have their own,
/// tighter [`keys::suggest_key`]). Near enough: a few edits (a
/// transposition is one) for the length, or a long shared prefix
/// (Jaro-Winkler); the fewest edits win.
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

/// The warning for a key that neither pmd nor PM2 knows: the key and at
/// most one suggestion.
fn unknown_key(key: &str) -> String {
    match keys::suggest_key(key) {
        Some(best) => format!("unknown field `{key}`, did you mean `{best}`? (ignored)"),
        None => format!("unknown field `{key}`, ignored (PM2 does not know it either)"),
    }
}

// ---- keys ------------------------------------------------------------------

enum Key {
    /// A setting pmd reads, and the key as written.
    Field(Field, String),
    /// An `env_<name>` section, by its name.
    Environment(String),
    /// A key that is accepted and not read (it was warned about).
    Skip,
}

/// Reads one key of an app: refuses repeated keys at the key, and records
/// a warning for keys pmd does not honour.
struct KeySeed<'a> {
    ctx: &'a Ctx,
    /// Each field read so far, with the key that set it.
    seen: &'a HashMap<Field, String>,
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
        self.ctx.stop_if_located(key)?;
        if let Some(section) = key.strip_prefix("env_") {
            rules::check_environment_name(&format!("`{key}`"), section).map_err(E::custom)?;
            if self.seen_environments.contains(section) {
                return Err(E::custom(format!("`{key}` is given twice")));
            }
            return Ok(Key::Environment(section.to_string()));
        }
        if key == "<<" {
            return Err(E::custom(
                "YAML merge keys (`<<`) are not supported; repeat the fields in each app",
            ));
        }
        let Some(entry) = keys::lookup(key) else {
            self.ctx.warn(key, key, unknown_key(key));
            return Ok(Key::Skip);
        };
        let named = if entry.name == key {
            format!("`{key}`")
        } else {
            format!("`{key}` (`{}`)", entry.name)
        };
        match entry.handling {
            Handling::Honoured(field) => {
                if let Some(earlier) = self.seen.get(&field) {
                    return Err(E::custom(if earlier == key {
                        format!("`{key}` is given twice")
                    } else {
                        format!(
                            "`{key}` and `{earlier}` both set `{}`; give only one of them",
                            entry.name
                        )
                    }));
                }
                Ok(Key::Field(field, key.to_string()))
            }
            Handling::Ignored(why) => {
                self.ctx
                    .warn(key, entry.name, format!("{named} is ignored by pmd: {why}"));
                Ok(Key::Skip)
            }
        }
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

/// `stop_exit_codes`: one exit code or a list of them (PM2 takes both),
/// each 0-255; digit strings too, as PM2 parses them.
fn exit_codes(what: &str, raw: Raw) -> Result<Vec<i32>, String> {
    let one = |what: &str, raw: Raw| -> Result<i32, String> {
        let n = raw::count(what, raw, 255)?;
        rules::check_stop_exit_code(what, i64::try_from(n).unwrap_or(i64::MAX))
    };
    match raw {
        Raw::Seq(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| one(&format!("{what} item {}", i + 1), item))
            .collect(),
        other => Ok(vec![one(what, other)?]),
    }
}

/// The keys of a `balance` map.
const BALANCE_KEYS: &[&str] = &[
    "strategy",
    "proxy_protocol",
    "drain_timeout",
    "hold_timeout",
    "address",
    "instance_ports",
];

/// `balance: true` (the defaults), `false` (not balanced: `None`), or a
/// map of the settings.
fn balance(what: &str, raw: Raw) -> Result<Option<BalanceSpec>, String> {
    let entries = match raw {
        Raw::Bool(true) => return Ok(Some(BalanceSpec::default())),
        Raw::Bool(false) => return Ok(None),
        Raw::Map(entries) => entries,
        other => {
            return Err(format!(
                "{what}: expected true, false or a map such as {{strategy: least-connections, \
                 drain_timeout: 10s}}, found {}",
                other.describe()
            ));
        }
    };
    let mut spec = BalanceSpec::default();
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in entries {
        let Raw::Str(key) = key else {
            return Err(format!("{what}: keys are words, found {}", key.describe()));
        };
        if seen.contains(&key) {
            return Err(format!("{what}: `{key}` is given twice"));
        }
        let field = format!("`{}.{key}`", what.trim_matches('`'));
        let field = field.as_str();
        let duration = |r| raw::duration(field, r).map(millis);
        match key.as_str() {
            "strategy" => {
                let word = raw::string(field, value)?;
                let strategy = word
                    .parse::<pmdaemon_proto::BalanceStrategy>()
                    .map_err(|e| e.named(field).0)?;
                spec.strategy = BalanceStrategy::from(strategy) as i32;
            }
            "proxy_protocol" => spec.proxy_protocol = raw::boolean(field, value)?,
            "drain_timeout" => spec.drain_timeout_ms = Some(duration(value)?),
            "hold_timeout" => spec.hold_timeout_ms = Some(duration(value)?),
            "address" => {
                let text = raw::string(field, value)?;
                spec.address = pmdaemon_proto::parse_balance_address(&text)
                    .map_err(|e| e.named(field).0)?
                    .to_string();
            }
            "instance_ports" => spec.instance_ports = raw::port(field, value)?,
            other => {
                return Err(format!(
                    "{what}: `{other}` is not a balance setting; use {}",
                    BALANCE_KEYS.join(", ")
                ));
            }
        }
        seen.push(key);
    }
    Ok(Some(spec))
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
            balance_off: false,
            balance_env: None,
        };
        let mut exec = None;
        let mut seen = HashMap::new();
        let mut seen_environments = HashSet::new();
        loop {
            let key = map.next_key_seed(KeySeed {
                ctx: self.ctx,
                seen: &seen,
                seen_environments: &seen_environments,
            })?;
            match key {
                None => break,
                Some(Key::Environment(section)) => {
                    let what = format!("`env_{section}`");
                    if self.reading(&what[1..what.len() - 1]) {
                        map.next_value::<de::IgnoredAny>()?;
                        continue;
                    }
                    let vars = map.next_value_seed(Check::new(|r| raw::env_map(&what, r)))?;
                    self.ctx.reading.take();
                    seen_environments.insert(section.clone());
                    app.environments.insert(section, vars);
                }
                Some(Key::Field(field, written)) => {
                    if self.reading(&written) {
                        map.next_value::<de::IgnoredAny>()?;
                        continue;
                    }
                    self.read_field(field, &written, &mut map, &mut app, &mut exec)?;
                    self.ctx.reading.take();
                    seen.insert(field, written);
                }
                Some(Key::Skip) => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        self.finish(app, exec).map_err(de::Error::custom)
    }
}

impl AppSeed<'_> {
    /// Notes that the value of `key` is read next (what an error would be
    /// about); true when an earlier read refused it and it is to be
    /// skipped.
    fn reading(&self, key: &str) -> bool {
        let at = (self.ctx.app.get(), key.to_string());
        if self.ctx.skip.contains(&at) {
            return true;
        }
        *self.ctx.reading.borrow_mut() = Some(at);
        false
    }

    /// Reads the value of `field` into `app`.
    fn read_field<'de, A: MapAccess<'de>>(
        &self,
        field: Field,
        written: &str,
        map: &mut A,
        app: &mut AppDef,
        exec: &mut Option<ExecMode>,
    ) -> Result<(), A::Error> {
        let what = format!("`{written}`");
        let what = what.as_str();
        // Reads the value with `check(what, raw)`. A null leaves the field
        // unset, as in PM2, where a key set to null (`out_file: null`, or
        // YAML's bare `NULL` and `~`) is a key not given.
        macro_rules! value {
            ($check:expr) => {
                match map.next_value_seed(Check::new(|r| match r {
                    Raw::Null => Ok(None),
                    r => $check(what, r).map(Some),
                }))? {
                    Some(value) => value,
                    None => return Ok(()),
                }
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
            Field::StopSignal => spec.stop_signal = value!(raw::stop_signal),
            Field::Time => spec.time = value!(raw::boolean),
            Field::Watch => (spec.watch, spec.watch_paths) = value!(watch),
            Field::IgnoreWatch => spec.ignore_watch = value!(raw::paths),
            Field::OutFile => spec.out_file = value!(raw::string),
            Field::ErrorFile => spec.error_file = value!(raw::string),
            Field::LogFile => spec.log_file = value!(raw::log_file),
            Field::MergeLogs => spec.merge_logs = value!(raw::boolean),
            Field::LogDateFormat => {
                spec.log_date_format = value!(|w: &str, r| {
                    let text = raw::string(w, r)?;
                    rules::check_date_format(w, &text)
                });
            }
            Field::LogType => {
                spec.log_type = value!(|w: &str, r| {
                    let text = raw::string(w, r)?;
                    rules::parse_log_type(w, &text)
                });
            }
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
            Field::WaitReady => spec.wait_ready = value!(raw::boolean),
            Field::ListenTimeout => spec.listen_timeout_ms = Some(value!(duration)),
            Field::ShutdownWithMessage => spec.shutdown_with_message = value!(raw::boolean),
            Field::InstanceVar => {
                spec.instance_var = value!(|what: &str, r| -> Result<String, String> {
                    let name = raw::string(what, r)?;
                    rules::check_instance_var(what, &name)?;
                    Ok(name)
                });
            }
            Field::IncrementVar => {
                spec.increment_var = value!(|what: &str, r| -> Result<String, String> {
                    let name = raw::string(what, r)?;
                    rules::check_increment_var(what, &name)?;
                    Ok(name)
                });
            }
            Field::StopExitCodes => spec.stop_exit_codes = value!(exit_codes),
            Field::CronRestart => {
                // PM2 files write `cron_restart: ""` for none: unset.
                spec.cron_restart = value!(|w: &str, r| -> Result<String, String> {
                    match r {
                        Raw::Str(text) if text.trim().is_empty() => Ok(String::new()),
                        r => rules::check_cron(w, &raw::string(w, r)?),
                    }
                });
            }
            Field::Balance => {
                spec.balance = value!(balance);
                app.balance_off = app.spec.balance.is_none();
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
        // With `~` as the CLI will expand it before sending.
        let cwd = crate::home::expand(&spec.cwd).unwrap_or(std::borrow::Cow::Borrowed(&spec.cwd));
        let base = self.ctx.dir.as_ref().map(|dir| dir.join(&*cwd));
        let shaped = super::script::shape("`script`", &spec.script, base.as_deref())?;
        if !shaped.leading_args.is_empty() {
            spec.args = shaped
                .leading_args
                .into_iter()
                .chain(spec.args.drain(..))
                .collect();
        }
        spec.script = shaped.script;
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
        self.balance_shared_port(&mut app);
        let spec = &mut app.spec;
        if let Some(check) = &spec.health_check {
            rules::check_health_check("`health_check`", check, !spec.port.is_empty())?;
        }
        if spec.balance.is_some() && app.balance_env.is_none() {
            let port = spec.port.parse::<pmdaemon_proto::PortSpec>().ok();
            pmdaemon_proto::check_public_port(port).map_err(|e| e.named("`balance`").0)?;
        } else {
            rules::check_port_room("`port`", &spec.port, spec.instances)?;
        }
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

impl AppSeed<'_> {
    /// PM2's cluster mode shares one listening socket between instances
    /// (Node's cluster module); pmd's instances are separate processes, so
    /// several instances on one fixed port (`port: 3000`, or PORT=3000 in
    /// `env`) mean a balanced port: pmd listens on it and each instance
    /// gets a private one, with a note. `balance: false` keeps them
    /// unbalanced, and warns that all but one would fail to bind.
    fn balance_shared_port(&self, app: &mut AppDef) {
        let spec = &app.spec;
        if spec.balance.is_some() || spec.instances.is_none_or(|n| n == 1) {
            return;
        }
        let count = match spec.instances {
            Some(n) if n > 1 => format!("{n} instances"),
            _ => "one instance per CPU".to_string(),
        };
        if let Ok(pmdaemon_proto::PortSpec::Fixed(port)) = spec.port.parse() {
            if !app.balance_off {
                self.ctx.notes.borrow_mut().push(format!(
                    "app {}: `port: {port}` for {count}, as PM2's cluster mode: pmd balances \
                     port {port} over them, each instance listening on a private port in its \
                     {}; `balance: false` turns this off",
                    spec.name,
                    if spec.port_env.is_empty() {
                        "PORT"
                    } else {
                        &spec.port_env
                    },
                ));
                app.spec.balance = Some(Default::default());
            }
            return;
        }
        if !spec.port.is_empty() {
            return;
        }
        let var = if spec.port_env.is_empty() {
            "PORT"
        } else {
            spec.port_env.as_str()
        };
        // `increment_var` gives each instance its own value of it.
        if spec.increment_var == var {
            return;
        }
        let sections = std::iter::once(("env".to_string(), &app.env)).chain(
            app.environments
                .iter()
                .map(|(name, vars)| (format!("env_{name}"), vars)),
        );
        for (key, vars) in sections {
            let Some(port) = vars.get(var).and_then(|p| p.trim().parse::<u16>().ok()) else {
                continue;
            };
            if !app.balance_off {
                self.ctx.notes.borrow_mut().push(format!(
                    "app {}: `{key}` sets {var}={port} for {count}, as PM2's cluster mode: pmd \
                     balances that port over them, each instance listening on a private port \
                     in its {var}; `balance: false` turns this off",
                    spec.name
                ));
                let var = var.to_string();
                app.balance_env = Some(var);
                app.spec.balance = Some(Default::default());
                return;
            }
            let range = match spec.instances {
                Some(n) if n > 1 => format!(
                    "`port: {port}-{}`",
                    u32::from(port) + u32::try_from(n - 1).unwrap_or(0)
                ),
                _ => format!("`port: auto:{port}-{}`", u32::from(port) + 99),
            };
            self.ctx.warn(
                &key,
                &format!("shared port of app {}", self.index),
                format!(
                    "`{key}` sets {var}={port} for {count}: pmd's instances are separate \
                     processes, so all but one would fail to bind it; give each its own with \
                     {range} ({var} is set per instance) and drop {var} from `{key}`"
                ),
            );
            return;
        }
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

/// The `apps` list (or, as PM2 takes it, one app instead of a list).
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

    /// One app where a list was expected.
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<AppDef>, A::Error> {
        self.ctx.app.set(Some(0));
        let app = AppSeed {
            ctx: self.ctx,
            index: 0,
        }
        .visit_map(map)?;
        self.ctx.app.set(None);
        Ok(vec![app])
    }
}

/// The whole file: `{apps: [...], deploy: ...}`, a bare list of apps, or
/// one app (see [`Shape`]).
pub struct FileSeed<'c> {
    pub ctx: &'c Ctx,
}

impl<'de> DeserializeSeed<'de> for FileSeed<'_> {
    type Value = Vec<AppDef>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<AppDef>, D::Error> {
        d.deserialize_any(self)
    }
}

/// Top-level keys PM2 reads.
const TOP_KEYS: &[&str] = &["apps", "pm2", "deploy", "static"];

/// A top-level key of a wrapped file.
enum Top {
    Apps,
    /// Read and ignored, with a note.
    Ignored(&'static str),
    /// Unknown, warned about.
    Skip,
}

struct TopKey<'c> {
    ctx: &'c Ctx,
    /// Whether the file has an `apps:` list (else an unknown key is likely
    /// where the list was meant to be, and an error).
    has_apps: bool,
}

impl<'de> DeserializeSeed<'de> for TopKey<'_> {
    type Value = Top;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Top, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopKey<'_> {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`apps`")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Top, E> {
        self.ctx.stop_if_located(key)?;
        match key {
            "apps" | "pm2" => return Ok(Top::Apps),
            "deploy" => {
                return Ok(Top::Ignored(
                    "the `deploy` section is ignored: pmd does not deploy",
                ));
            }
            "static" => {
                return Ok(Top::Ignored(
                    "the `static` section is ignored: pmd does not serve files",
                ));
            }
            _ => {}
        }
        let suggestion = suggest(key, TOP_KEYS.iter().copied());
        if !self.has_apps {
            return Err(E::custom(match suggestion {
                Some(best) => format!("unknown top-level key `{key}`, did you mean `{best}`?"),
                None => format!("unknown top-level key `{key}`; the apps go under `apps:`"),
            }));
        }
        let message = match suggestion {
            Some(best) => {
                format!("unknown top-level key `{key}`, did you mean `{best}`? (ignored)")
            }
            None if keys::lookup(key).is_some() => format!(
                "`{key}` is a key of an app, but it is beside `apps:`; ignored (move it into \
                 each app)"
            ),
            None => format!("unknown top-level key `{key}`, ignored"),
        };
        self.ctx.warn(key, key, message);
        Ok(Top::Skip)
    }
}

impl<'de> Visitor<'de> for FileSeed<'_> {
    type Value = Vec<AppDef>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`apps:` and a list of apps, a list of apps, or one app")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<AppDef>, A::Error> {
        if self.ctx.shape == Shape::OneApp {
            return AppsSeed { ctx: self.ctx }.visit_map(map);
        }
        let mut apps = None;
        let has_apps = self.ctx.has_apps;
        while let Some(key) = map.next_key_seed(TopKey {
            ctx: self.ctx,
            has_apps,
        })? {
            match key {
                Top::Apps => {
                    if apps.is_some() {
                        return Err(de::Error::custom(
                            "the apps are given twice (`apps` and `pm2` are the same key)",
                        ));
                    }
                    apps = Some(map.next_value_seed(AppsSeed { ctx: self.ctx })?);
                }
                Top::Ignored(note) => {
                    map.next_value::<de::IgnoredAny>()?;
                    self.ctx.notes.borrow_mut().push(note.into());
                }
                Top::Skip => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        apps.ok_or_else(|| {
            de::Error::custom(
                "no `apps:` list and no `script`: an ecosystem file lists its apps under \
                 `apps:` (or is one app, with its `script`)",
            )
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
