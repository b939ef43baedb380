//! The catalogue of app keys: every key PM2 knows for an app (its
//! `lib/API/schema.json` and the documented ones), pmd's own keys, their
//! aliases, and what pmd does with each. This table is the one place that
//! says it: the reader in `app.rs` looks keys up here, the README's
//! "Coming from PM2" key table is checked against [`readme_table`] by a
//! test, and a key that pmd starts honouring gets its [`Field`] here and
//! the arm that reads it in `app.rs` (every PM2 key pmd had not honoured
//! yet is honoured now: `cron_restart` was the last).
//!
//! Keys are also accepted in PM2's camelCase spelling (`max_restarts` as
//! `maxRestarts`), as PM2 derives one for each key. A key that neither pmd
//! nor PM2 knows is a warning with a suggestion from [`suggest_key`], whose
//! threshold is tight and which knows the usual confusions (`cmd` is not
//! `cwd`).
//!
//! Pure data and lookups; talks to nothing.

/// A setting that pmd reads into the app's spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
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
    Time,
    Watch,
    IgnoreWatch,
    WatchDelay,
    OutFile,
    ErrorFile,
    LogFile,
    MergeLogs,
    LogDateFormat,
    LogType,
    Port,
    PortEnv,
    LogMaxSize,
    LogMaxFiles,
    HealthCheck,
    MaxMemoryRestart,
    DependsOn,
    WaitReady,
    ListenTimeout,
    ShutdownWithMessage,
    InstanceVar,
    IncrementVar,
    StopExitCodes,
    Balance,
    CronRestart,
}

/// What pmd does with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Read into the spec and honoured.
    Honoured(Field),
    /// Means nothing to pmd (PM2's internals, Keymetrics, Windows...):
    /// accepted with a warning that says so.
    Ignored(&'static str),
}

/// One key of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The name pmd writes (PM2's, or pmd's own for its extensions).
    pub name: &'static str,
    /// Other names for the same setting (PM2's aliases), each also in
    /// camelCase.
    pub aliases: &'static [&'static str],
    /// Whether PM2 knows the key; false for pmd's own keys.
    #[cfg_attr(not(test), allow(dead_code))]
    pub pm2: bool,
    pub handling: Handling,
}

const fn honoured(name: &'static str, aliases: &'static [&'static str], field: Field) -> Key {
    Key {
        name,
        aliases,
        pm2: true,
        handling: Handling::Honoured(field),
    }
}

const fn own(name: &'static str, field: Field) -> Key {
    Key {
        name,
        aliases: &[],
        pm2: false,
        handling: Handling::Honoured(field),
    }
}

const fn ignored(name: &'static str, aliases: &'static [&'static str], text: &'static str) -> Key {
    Key {
        name,
        aliases,
        pm2: true,
        handling: Handling::Ignored(text),
    }
}

/// Every app key, in the order the README lists them.
pub const KEYS: &[Key] = &[
    // -- PM2's keys that pmd honours --
    honoured("name", &[], Field::Name),
    honoured("script", &["exec", "command"], Field::Script),
    honoured("args", &[], Field::Args),
    honoured("interpreter", &["exec_interpreter"], Field::Interpreter),
    honoured("interpreter_args", &["node_args"], Field::InterpreterArgs),
    honoured("cwd", &[], Field::Cwd),
    honoured("instances", &[], Field::Instances),
    honoured("exec_mode", &[], Field::ExecMode),
    honoured("env", &[], Field::Env),
    honoured("autorestart", &[], Field::Autorestart),
    honoured("max_restarts", &[], Field::MaxRestarts),
    honoured("min_uptime", &[], Field::MinUptime),
    honoured("restart_delay", &[], Field::RestartDelay),
    honoured(
        "exp_backoff_restart_delay",
        &[],
        Field::ExpBackoffRestartDelay,
    ),
    honoured("kill_timeout", &[], Field::KillTimeout),
    honoured("stop_signal", &["kill_signal"], Field::StopSignal),
    honoured("time", &[], Field::Time),
    honoured("watch", &[], Field::Watch),
    honoured("ignore_watch", &[], Field::IgnoreWatch),
    honoured("watch_delay", &[], Field::WatchDelay),
    honoured("out_file", &["out", "output", "out_log"], Field::OutFile),
    honoured(
        "error_file",
        &["error", "err", "err_file", "err_log"],
        Field::ErrorFile,
    ),
    honoured("log_file", &["log"], Field::LogFile),
    honoured("merge_logs", &["combine_logs"], Field::MergeLogs),
    honoured("log_date_format", &[], Field::LogDateFormat),
    honoured("log_type", &[], Field::LogType),
    honoured("port", &[], Field::Port),
    honoured("max_memory_restart", &[], Field::MaxMemoryRestart),
    honoured("wait_ready", &[], Field::WaitReady),
    honoured("listen_timeout", &[], Field::ListenTimeout),
    honoured("shutdown_with_message", &[], Field::ShutdownWithMessage),
    honoured("instance_var", &[], Field::InstanceVar),
    honoured("increment_var", &[], Field::IncrementVar),
    honoured("stop_exit_codes", &[], Field::StopExitCodes),
    honoured("cron_restart", &["cron"], Field::CronRestart),
    // -- pmd's own keys --
    own("start_limit_burst", Field::StartLimitBurst),
    own("start_limit_interval", Field::StartLimitInterval),
    own("exp_backoff_max", Field::ExpBackoffMax),
    own("port_env", Field::PortEnv),
    own("log_max_size", Field::LogMaxSize),
    own("log_max_files", Field::LogMaxFiles),
    own("health_check", Field::HealthCheck),
    own("depends_on", Field::DependsOn),
    own("balance", Field::Balance),
    // -- PM2's keys that mean nothing to pmd --
    ignored(
        "watch_options",
        &[],
        "chokidar's options; use `watch_delay` and `ignore_watch`",
    ),
    ignored(
        "disable_logs",
        &[],
        "to discard output, set `out_file` and `error_file` to /dev/null",
    ),
    ignored(
        "pid_file",
        &["pid"],
        "pmd writes no pid files; `pmd list -o json` gives each instance's pid",
    ),
    ignored(
        "autostart",
        &[],
        "the app is started; `pmd stop NAME` after the start stops it",
    ),
    ignored(
        "treekill",
        &[],
        "pmd always stops an app's whole process group",
    ),
    ignored(
        "kill_retry_time",
        &[],
        "pmd sends SIGKILL once, after `kill_timeout`",
    ),
    ignored(
        "uid",
        &["user"],
        "apps run as the daemon's user; run pmdaemond as that user",
    ),
    ignored(
        "gid",
        &[],
        "apps run as the daemon's group; run pmdaemond as that user",
    ),
    ignored("username", &[], "apps run as the daemon's user"),
    ignored(
        "namespace",
        &[],
        "pmd has no namespaces; `--only` picks apps of a file",
    ),
    ignored("name_prefix", &[], "write the whole `name`"),
    ignored(
        "filter_env",
        &[],
        "apps get the daemon's environment with the file's `env` over it",
    ),
    ignored(
        "append_env_to_name",
        &[],
        "names stay as written; give each environment's apps their own `name`",
    ),
    ignored("force", &[], "a file's apps are started once, by name"),
    ignored(
        "source_map_support",
        &[],
        "a Node.js wrapper option of PM2's",
    ),
    ignored(
        "disable_source_map_support",
        &[],
        "a Node.js wrapper option of PM2's",
    ),
    ignored("vizion", &[], "PM2's version-control metadata"),
    ignored("post_update", &[], "a Keymetrics option"),
    ignored("trace", &[], "a Keymetrics option"),
    ignored("disable_trace", &[], "a Keymetrics option"),
    ignored("v8", &[], "a Keymetrics option"),
    ignored("event_loop_inspector", &[], "a Keymetrics option"),
    ignored("deep_monitoring", &[], "a Keymetrics option"),
    ignored("pmx", &[], "a Keymetrics option"),
    ignored("automation", &[], "a Keymetrics option"),
    ignored("io", &[], "a Keymetrics option"),
    ignored("install_url", &[], "a PM2 module option"),
    ignored("execute_command", &[], "a PM2 internal option"),
    ignored("write", &[], "a PM2 internal option"),
    ignored("windowsHide", &[], "a Windows option"),
];

/// PM2's camelCase spelling of a key (`max_restarts` → `maxRestarts`): a
/// part after the first is capitalized when it has more than one letter.
pub fn camel(key: &str) -> String {
    key.split('_')
        .enumerate()
        .map(|(i, part)| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) if i > 0 && part.len() > 1 => {
                    first.to_ascii_uppercase().to_string() + chars.as_str()
                }
                _ => part.to_string(),
            }
        })
        .collect()
}

/// The catalogue entry of a key as written in a file: its name, an alias,
/// or the camelCase of either.
pub fn lookup(written: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| {
        std::iter::once(k.name)
            .chain(k.aliases.iter().copied())
            .any(|name| name == written || (name.contains('_') && camel(name) == written))
    })
}

/// The setting a key writes, if pmd honours it.
pub fn field(written: &str) -> Option<Field> {
    match lookup(written)?.handling {
        Handling::Honoured(field) => Some(field),
        Handling::Ignored(_) => None,
    }
}

/// Keys people write for another one, where spelling distance would
/// suggest something wrong or nothing (`cmd` is one edit from `cwd`, but
/// means the command).
const CONFUSIONS: &[(&str, &str)] = &[
    ("cmd", "script"),
    ("run", "script"),
    ("file", "script"),
    ("main", "script"),
    ("argv", "args"),
    ("arguments", "args"),
    ("environment", "env"),
    ("envs", "env"),
    ("variables", "env"),
    ("dir", "cwd"),
    ("workdir", "cwd"),
    ("working_dir", "cwd"),
    ("directory", "cwd"),
    ("instance", "instances"),
    ("workers", "instances"),
    ("mode", "exec_mode"),
    ("restart", "autorestart"),
    ("auto_restart", "autorestart"),
    ("max_memory", "max_memory_restart"),
    ("memory_limit", "max_memory_restart"),
    ("stdout", "out_file"),
    ("stderr", "error_file"),
    ("signal", "stop_signal"),
    ("healthcheck", "health_check"),
    ("health", "health_check"),
    ("depends", "depends_on"),
    ("dependencies", "depends_on"),
];

/// The key to suggest for an unknown `written` key, if one is close enough
/// not to mislead: a known confusion, else one edit away (two for keys
/// longer than eight letters); keys of three letters or fewer get no
/// guess. Never more than one.
pub fn suggest_key(written: &str) -> Option<&'static str> {
    let lower = written.to_ascii_lowercase();
    if let Some((_, instead)) = CONFUSIONS.iter().find(|(k, _)| *k == lower) {
        return Some(instead);
    }
    let budget = match written.chars().count() {
        0..=3 => return None,
        4..=8 => 1,
        _ => 2,
    };
    KEYS.iter()
        .flat_map(|k| std::iter::once(k.name).chain(k.aliases.iter().copied()))
        .map(|name| (strsim::damerau_levenshtein(&lower, name), name))
        .filter(|(edits, _)| *edits <= budget)
        .min_by_key(|(edits, _)| *edits)
        .map(|(_, name)| name)
}

/// The README's "Coming from PM2" key table, as the catalogue says it
/// (a test checks that the README has it).
#[cfg(test)]
pub fn readme_table() -> String {
    let mut text = String::from("| key | aliases | pmd |\n| --- | --- | --- |\n");
    for key in KEYS {
        let aliases = key
            .aliases
            .iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let what = match key.handling {
            Handling::Honoured(_) if key.pm2 => "honoured".to_string(),
            Handling::Honoured(_) => "honoured (pmd's own)".to_string(),
            Handling::Ignored(text) => format!("ignored, warns: {text}"),
        };
        text += &format!("| `{}` | {aliases} | {what} |\n", key.name);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_across_keys_and_aliases() {
        let mut all: Vec<String> = KEYS
            .iter()
            .flat_map(|k| std::iter::once(k.name).chain(k.aliases.iter().copied()))
            .flat_map(|n| [n.to_string(), camel(n)])
            .collect();
        all.sort();
        let before = all.len();
        all.dedup();
        // camel("name") == "name": a key without `_` is its own camelCase.
        let plain = KEYS
            .iter()
            .flat_map(|k| std::iter::once(k.name).chain(k.aliases.iter().copied()))
            .filter(|n| !n.contains('_'))
            .count();
        assert_eq!(before - all.len(), plain, "a name appears twice");
    }

    /// Every key of PM2's lib/API/schema.json (PM2 7) is in the catalogue.
    #[test]
    fn every_pm2_schema_key_is_known() {
        let schema = [
            "script",
            "name",
            "name_prefix",
            "filter_env",
            "namespace",
            "install_url",
            "cwd",
            "args",
            "exec_interpreter",
            "node_args",
            "out_file",
            "error_file",
            "log_file",
            "disable_logs",
            "log_type",
            "log_date_format",
            "time",
            "env",
            "max_memory_restart",
            "pid_file",
            "restart_delay",
            "exp_backoff_restart_delay",
            "source_map_support",
            "disable_source_map_support",
            "wait_ready",
            "instances",
            "kill_timeout",
            "shutdown_with_message",
            "listen_timeout",
            "cron_restart",
            "merge_logs",
            "vizion",
            "autostart",
            "autorestart",
            "stop_exit_codes",
            "watch_delay",
            "watch",
            "ignore_watch",
            "watch_options",
            "min_uptime",
            "max_restarts",
            "execute_command",
            "exec_mode",
            "force",
            "append_env_to_name",
            "post_update",
            "trace",
            "disable_trace",
            "v8",
            "event_loop_inspector",
            "deep_monitoring",
            "increment_var",
            "instance_var",
            "pmx",
            "automation",
            "treekill",
            "port",
            "username",
            "uid",
            "gid",
            "windowsHide",
            "kill_retry_time",
            "write",
            "io",
            // schema aliases
            "exec",
            "interpreter",
            "interpreterArgs",
            "interpreter_args",
            "out",
            "output",
            "out_log",
            "error",
            "err",
            "err_file",
            "err_log",
            "log",
            "pid",
            "cron",
            "combine_logs",
            "user",
        ];
        for key in schema {
            assert!(lookup(key).is_some(), "{key} is not in the catalogue");
        }
    }

    #[test]
    fn camel_case_spellings_are_the_same_key() {
        assert_eq!(camel("max_restarts"), "maxRestarts");
        assert_eq!(camel("exp_backoff_restart_delay"), "expBackoffRestartDelay");
        assert_eq!(field("maxRestarts"), Some(Field::MaxRestarts));
        assert_eq!(field("errFile"), Some(Field::ErrorFile));
        assert_eq!(field("node_args"), Some(Field::InterpreterArgs));
        assert_eq!(field("nodeArgs"), Some(Field::InterpreterArgs));
        assert_eq!(field("logDateFormat"), Some(Field::LogDateFormat));
        assert_eq!(field("combine_logs"), Some(Field::MergeLogs));
        assert_eq!(field("log"), Some(Field::LogFile));
        assert!(lookup("max_restart").is_none());
    }

    #[test]
    fn suggestions_are_tight_and_know_the_confusions() {
        assert_eq!(suggest_key("max_restart"), Some("max_restarts"));
        assert_eq!(suggest_key("intances"), Some("instances"));
        assert_eq!(suggest_key("scrpt"), Some("script"));
        assert_eq!(suggest_key("cmd"), Some("script"));
        assert_eq!(suggest_key("run"), Some("script"));
        // PM2's JSON takes `command` for `script` (lib/Common.js).
        assert_eq!(field("command"), Some(Field::Script));
        assert_eq!(suggest_key("cdw"), None);
        assert_eq!(suggest_key("zzzzzz"), None);
        assert_eq!(suggest_key("foo"), None);
        assert_eq!(suggest_key("colour"), None);
        assert_eq!(suggest_key("max_memory"), Some("max_memory_restart"));
    }

    /// Every honoured field has exactly one key.
    #[test]
    fn each_field_has_one_key() {
        for key in KEYS {
            if let Handling::Honoured(field) = key.handling {
                let owners = KEYS
                    .iter()
                    .filter(|k| k.handling == Handling::Honoured(field))
                    .count();
                assert_eq!(owners, 1, "{}", key.name);
            }
        }
    }
}
