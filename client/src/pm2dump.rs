//! PM2's saved process list (`dump.pm2`, written by `pm2 save`: a JSON
//! array with one object per process, PM2's `pm2_env`, so one per instance
//! of a cluster) read into pmd app specs for `pmd import pm2`.
//!
//! An app is the entries that share a name, and it maps whole or not at
//! all: a value that cannot be read (no script, a name pmd refuses, a
//! number where a list is due) refuses that app with the reason, and the
//! others are imported. A file that is not a JSON array of objects is
//! refused as a whole. What PM2 had that pmd does not do is listed per app
//! ("not mapped"), never silently dropped; PM2's bookkeeping (ids,
//! counters, Keymetrics state) is left out without a word.
//!
//! PM2 keeps one environment per process: the shell's at `pm2 start` and
//! the file's `env`, merged. It becomes the app's captured environment
//! (`caller_env`), which is what pmd keeps from the shell that starts an
//! app, less PM2's own variables.
//!
//! Pure: the caller reads the file and sends the specs. Talks to nothing.

use std::collections::HashMap;
use std::path::Path;

use pmdaemon_proto::v1::{AppSpec, RestartPolicy};
use serde_json::{Map, Value};

/// One app of the dump, ready to create.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub spec: AppSpec,
    /// Stopped (or errored) under PM2: created, then stopped.
    pub stopped: bool,
    /// PM2 settings of this app that pmd does not carry over, each with
    /// what to do instead.
    pub not_mapped: Vec<String>,
    /// How something was carried over, where it differs from PM2.
    pub notes: Vec<String>,
}

/// An app of the dump that cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The app's name, or `entry N` when it has none.
    pub name: String,
    pub reason: String,
}

/// Each app of `text` (a dump.pm2), in the order PM2 listed them.
/// `pm2_home` is where PM2 keeps its own logs (`PM2_HOME/logs`), unless an
/// entry's environment names its PM2_HOME: log paths there are PM2's
/// defaults, and the app gets pmd's own log files instead.
pub fn read(text: &str, pm2_home: &Path) -> Result<Vec<Result<Imported, Refused>>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        format!("not PM2's saved process list: not JSON ({e}); `pm2 save` writes it")
    })?;
    let Value::Array(entries) = value else {
        return Err(
            "not PM2's saved process list: the file is JSON but not a list of processes".into(),
        );
    };
    // Entries by name, in the order names first appear.
    let mut groups: Vec<(String, Vec<&Map<String, Value>>)> = Vec::new();
    let mut refused = Vec::new();
    for (n, entry) in entries.iter().enumerate() {
        let label = format!("entry {}", n + 1);
        let Value::Object(entry) = entry else {
            refused.push(Refused {
                name: label,
                reason: "not an object".into(),
            });
            continue;
        };
        match entry.get("name") {
            Some(Value::String(name)) => match groups.iter_mut().find(|(n, _)| n == name) {
                Some((_, group)) => group.push(entry),
                None => groups.push((name.clone(), vec![entry])),
            },
            _ => refused.push(Refused {
                name: label,
                reason: "it has no `name`".into(),
            }),
        }
    }
    let mut apps: Vec<Result<Imported, Refused>> = groups
        .into_iter()
        .map(|(name, entries)| {
            app(&name, &entries, pm2_home).map_err(|reason| Refused { name, reason })
        })
        .collect();
    apps.extend(refused.into_iter().map(Err));
    Ok(apps)
}

/// PM2's own variables in a process environment: not the app's.
fn is_pm2_variable(name: &str, app: &str) -> bool {
    name.starts_with("PM2_")
        || matches!(name, "unique_id" | "pm_id" | "NODE_APP_INSTANCE")
        // PM2 adds one variable named after the app (its env section).
        || name == app
}

/// Keys of a dump entry that are PM2's bookkeeping or defaults that pmd
/// has anyway: left out without a word.
const BOOKKEEPING: &[&str] = &[
    "pm_id",
    "status",
    "restart_time",
    "unstable_restarts",
    "created_at",
    "pm_uptime",
    "axm_actions",
    "axm_monitor",
    "axm_options",
    "axm_dynamic",
    "km_link",
    "vizion_running",
    "vizion",
    "node_version",
    "unique_id",
    "pm_pid_path",
    "username",
    "windowsHide",
    "treekill",
    "automation",
    "pmx",
    "version",
    "_pm2_version",
    "kill_retry_time",
    "autostart",
    "filter_env",
    "exit_code",
    "prev_restart_delay",
    "versioning",
    "env",
    "exec_mode",
    "instances",
    "namespace",
];

/// Keys pmd maps (read in [`app`]).
const MAPPED: &[&str] = &[
    "name",
    "args",
    "exec_interpreter",
    "node_args",
    "interpreter_args",
    "pm_exec_path",
    "pm_cwd",
    "pm_out_log_path",
    "pm_err_log_path",
    "autorestart",
    "max_restarts",
    "min_uptime",
    "restart_delay",
    "kill_timeout",
    "exp_backoff_restart_delay",
    "max_memory_restart",
    "watch",
    "ignore_watch",
    "watch_delay",
    "time",
    "merge_logs",
    "pm_log_path",
    "log_date_format",
    "log_type",
    "wait_ready",
    "listen_timeout",
    "shutdown_with_message",
    "instance_var",
    "increment_var",
    "stop_exit_codes",
    "cron_restart",
];

/// PM2 features pmd does not have (yet), with what to do instead: named
/// when an app sets them.
const NOT_MAPPED: &[(&str, &str)] = &[
    ("uid", "apps run as the daemon's user"),
    ("gid", "apps run as the daemon's group"),
    (
        "disable_logs",
        "set out_file and error_file to /dev/null to discard output",
    ),
    ("source_map_support", "a Node.js wrapper option of PM2's"),
    ("deep_monitoring", "a Keymetrics option"),
    ("trace", "a Keymetrics option"),
];

/// One app from its entries (one per instance).
fn app(name: &str, entries: &[&Map<String, Value>], pm2_home: &Path) -> Result<Imported, String> {
    pmdaemon_proto::validate_name(name).map_err(|e| e.to_string())?;
    let first = entries[0];
    let mut not_mapped = Vec::new();
    let mut notes = Vec::new();
    let text = |key: &str| -> Result<Option<String>, String> {
        match first.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("`{key}` is {other}, not a string")),
        }
    };
    let words = |key: &str| -> Result<Vec<String>, String> {
        match first.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) => shell_words::split(s)
                .map_err(|e| format!("`{key}`: cannot split {s:?} into words: {e}")),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    other => Err(format!("`{key}` holds {other}, not a string")),
                })
                .collect(),
            Some(other) => Err(format!("`{key}` is {other}, not a list of words")),
        }
    };
    let millis = |key: &str| -> Result<Option<u64>, String> {
        match first.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .map(Some)
                .ok_or_else(|| format!("`{key}`: {n} is not a duration in milliseconds")),
            Some(Value::String(s)) => pmdaemon_proto::parse_duration(key, s)
                .map(|d| Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
                .map_err(|e| e.0),
            Some(other) => Err(format!("`{key}` is {other}, not a duration")),
        }
    };
    let script = text("pm_exec_path")?.ok_or("it has no `pm_exec_path` (the script PM2 ran)")?;
    let cwd = text("pm_cwd")?.unwrap_or_default();
    let interpreter = text("exec_interpreter")?;
    // PM2 keeps node's arguments under node_args whatever the interpreter.
    let mut interpreter_args = words("node_args")?;
    interpreter_args.extend(words("interpreter_args")?);
    // PM2's merged environment, less its own variables.
    let mut caller_env = HashMap::new();
    if let Some(env) = first.get("env") {
        let Value::Object(env) = env else {
            return Err(format!("`env` is {env}, not an object"));
        };
        for (k, v) in env {
            if is_pm2_variable(k, name) {
                continue;
            }
            let value = match v {
                Value::Null => continue,
                Value::String(s) => s.clone(),
                Value::Bool(_) | Value::Number(_) => v.to_string(),
                other => other.to_string(),
            };
            if pmdaemon_proto::is_captured(k, &value) {
                caller_env.insert(k.clone(), value);
            }
        }
    }
    let instances = entries.len();
    let cluster = matches!(text("exec_mode")?.as_deref(), Some("cluster_mode"));
    // PM2's workers shared the socket of the one PORT they had: that port
    // is balanced over the instances (each gets a private one in PORT).
    let shared_port = caller_env
        .get("PORT")
        .and_then(|p| p.trim().parse::<u16>().ok())
        .filter(|_| cluster && instances > 1);
    if let Some(port) = shared_port {
        notes.push(format!(
            "cluster mode: {instances} instances balanced on port {port}, as PM2's workers \
             shared it (each listens on a private port in PORT)"
        ));
    } else if cluster {
        notes.push(format!(
            "cluster mode: {instances} separate processes; they do not share one listening \
             socket as under PM2 (give them a port range with `port`, or one port and \
             `--balance`)"
        ));
    } else if instances > 1 {
        notes.push(format!(
            "{instances} processes of this name: {instances} instances"
        ));
    }
    // Where that PM2 kept its default logs: its own PM2_HOME, as the
    // process's environment says, else the caller's guess.
    let pm2_home = match first.get("env").and_then(|env| env.get("PM2_HOME")) {
        Some(Value::String(home)) if !home.is_empty() => Path::new(home),
        _ => pm2_home,
    };
    let log_path = |key: &str, stream: &str, notes: &mut Vec<String>| -> Result<String, String> {
        let Some(path) = text(key)? else {
            return Ok(String::new());
        };
        if path == "/dev/null" || path == "NULL" {
            return Ok("/dev/null".into());
        }
        let path = Path::new(&path);
        if path.starts_with(pm2_home.join("logs")) {
            notes.push(format!(
                "{stream} log: pmd's own file (PM2 kept it at {})",
                path.display()
            ));
            return Ok(String::new());
        }
        // PM2 numbers each instance's file with its process id; pmd adds
        // `-INDEX` itself.
        if instances > 1 {
            let stem = path.file_stem().unwrap_or_default().to_string_lossy();
            if let Some((base, digits)) = stem.rsplit_once('-')
                && !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
            {
                let name = match path.extension() {
                    Some(ext) => format!("{base}.{}", ext.to_string_lossy()),
                    None => base.to_string(),
                };
                return Ok(path.with_file_name(name).display().to_string());
            }
        }
        Ok(path.display().to_string())
    };
    let out_file = log_path("pm_out_log_path", "out", &mut notes)?;
    let error_file = log_path("pm_err_log_path", "error", &mut notes)?;
    // PM2 sets pm_log_path only for an app with `log_file`.
    let log_file = match first.get("pm_log_path") {
        None | Some(Value::Null) => None,
        Some(_) => Some(log_path("pm_log_path", "combined", &mut notes)?),
    };
    let flag = |key: &str| -> Result<bool, String> {
        match first.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(format!("`{key}` is {other}, not true or false")),
        }
    };
    // PM2 merges the logs of every fork-mode app, where one instance makes
    // it moot; pmd's file names stay its own unless several instances share.
    let merge_logs = instances > 1 && flag("merge_logs")?;
    let log_type = match text("log_type")? {
        Some(word) => crate::rules::parse_log_type("log_type", &word)?,
        None => 0,
    };
    // PM2's default, which is pmd's too.
    let instance_var = text("instance_var")?.filter(|v| v != "NODE_APP_INSTANCE");
    // A number, or a list of numbers; PM2's CLI stores the list as strings.
    let code = |c: &Value| -> Result<i64, String> {
        match c {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| format!("`stop_exit_codes` holds {c}, not an exit code"))
    };
    let stop_exit_codes: Vec<i64> = match first.get("stop_exit_codes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(codes)) => codes.iter().map(code).collect::<Result<_, _>>()?,
        Some(one) => vec![code(one)?],
    };
    let stop_exit_codes = stop_exit_codes
        .into_iter()
        .map(|c| crate::rules::check_stop_exit_code("stop_exit_codes", c))
        .collect::<Result<Vec<_>, _>>()?;
    let autorestart = match first.get("autorestart") {
        Some(Value::Bool(false)) => RestartPolicy::Never,
        None | Some(Value::Null | Value::Bool(true)) => RestartPolicy::Unspecified,
        Some(other) => return Err(format!("`autorestart` is {other}, not true or false")),
    };
    let max_restarts = match first.get("max_restarts") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("`max_restarts` is {v}, not a count"))?,
        ),
    };
    let max_memory_bytes = match first.get("max_memory_restart") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .ok_or_else(|| format!("`max_memory_restart`: {n} is not a size in bytes"))?,
        ),
        Some(Value::String(s)) => {
            Some(pmdaemon_proto::parse_size("max_memory_restart", s).map_err(|e| e.0)?)
        }
        Some(other) => return Err(format!("`max_memory_restart` is {other}, not a size")),
    };
    let (watch, watch_paths) = match first.get("watch") {
        None | Some(Value::Null | Value::Bool(false)) => (false, Vec::new()),
        Some(Value::Bool(true)) => (true, Vec::new()),
        Some(Value::String(_) | Value::Array(_)) => (true, words("watch")?),
        Some(other) => return Err(format!("`watch` is {other}, not true, a path or a list")),
    };
    let ignore_watch = if watch {
        words("ignore_watch")?
    } else {
        Vec::new()
    };
    let time = matches!(first.get("time"), Some(Value::Bool(true)));
    let stopped = matches!(
        text("status")?.as_deref(),
        Some("stopped" | "stopping" | "errored")
    );
    // What PM2 had that pmd does not carry over.
    for (key, instead) in NOT_MAPPED {
        if first.get(*key).is_some_and(is_set) {
            not_mapped.push(format!("{key} ({instead})"));
        }
    }
    if let Some(Value::String(ns)) = first.get("namespace")
        && ns != "default"
    {
        not_mapped.push(format!(
            "namespace {ns:?} (pmd has no namespaces; `--only` picks apps of a file)"
        ));
    }
    let env_keys: Vec<&String> = match first.get("env") {
        Some(Value::Object(env)) => env.keys().collect(),
        _ => Vec::new(),
    };
    let mut unknown: Vec<&str> = first
        .keys()
        .map(String::as_str)
        .filter(|k| {
            !MAPPED.contains(k)
                && !BOOKKEEPING.contains(k)
                && !NOT_MAPPED.iter().any(|(n, _)| n == k)
                && !env_keys.iter().any(|e| e.as_str() == *k)
                && !is_pm2_variable(k, name)
                // PM2's internals (`_tree_pids` of a stopped process...).
                && !k.starts_with('_')
                // PM2 copies every variable to the top level as well.
                && !k.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        })
        .filter(|k| first.get(*k).is_some_and(is_set))
        .collect();
    unknown.sort_unstable();
    not_mapped.extend(unknown.iter().map(|k| format!("{k} (not known to pmd)")));
    let spec = AppSpec {
        name: name.to_string(),
        script,
        args: words("args")?,
        interpreter,
        interpreter_args,
        cwd,
        caller_env,
        autorestart: autorestart.into(),
        max_restarts,
        min_uptime_ms: millis("min_uptime")?,
        restart_delay_ms: millis("restart_delay")?,
        exp_backoff_initial_ms: millis("exp_backoff_restart_delay")?,
        kill_timeout_ms: millis("kill_timeout")?,
        time,
        instances: Some(i32::try_from(instances).map_err(|_| "too many instances")?),
        watch,
        watch_paths,
        ignore_watch,
        watch_delay_ms: millis("watch_delay")?,
        out_file,
        error_file,
        max_memory_bytes,
        merge_logs,
        log_file,
        log_date_format: text("log_date_format")?.unwrap_or_default(),
        log_type,
        wait_ready: flag("wait_ready")?,
        listen_timeout_ms: millis("listen_timeout")?,
        shutdown_with_message: flag("shutdown_with_message")?,
        instance_var: instance_var.unwrap_or_default(),
        increment_var: text("increment_var")?.unwrap_or_default(),
        stop_exit_codes,
        cron_restart: match text("cron_restart")? {
            Some(expr) => crate::rules::check_cron("cron_restart", &expr)?,
            None => String::new(),
        },
        port: shared_port.map(|p| p.to_string()).unwrap_or_default(),
        balance: shared_port.map(|_| Default::default()),
        ..Default::default()
    };
    Ok(Imported {
        spec,
        stopped,
        not_mapped,
        notes,
    })
}

/// Whether a PM2 setting holds something (not null, false, empty or 0).
fn is_set(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::Bool(true) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(json: &str) -> Result<Imported, Refused> {
        let mut apps = read(json, Path::new("/home/u/.pm2")).unwrap();
        assert_eq!(apps.len(), 1, "{apps:?}");
        apps.remove(0)
    }

    #[test]
    fn a_fork_app_maps_its_settings() {
        let app = one(
            r#"[{"name":"api","pm_exec_path":"/srv/api/server.js","pm_cwd":"/srv/api",
            "args":["--port","80"],"exec_interpreter":"node","node_args":["--inspect"],
            "exec_mode":"fork_mode","status":"online","autorestart":true,"max_restarts":7,
            "min_uptime":2000,"restart_delay":"1s","kill_timeout":3000,
            "max_memory_restart":209715200,"pm_out_log_path":"/var/log/api.out",
            "pm_err_log_path":"/home/u/.pm2/logs/api-error.log","pm_id":0,
            "env":{"NODE_ENV":"production","PM2_HOME":"/home/u/.pm2","api":"{}",
            "unique_id":"x","PATH":"/usr/bin","PMD_TOKEN":"secret"},
            "NODE_ENV":"production","cron_restart":"0 3 * * *","axm_options":{"a":1}}]"#,
        )
        .unwrap();
        let s = &app.spec;
        assert_eq!(s.name, "api");
        assert_eq!(s.script, "/srv/api/server.js");
        assert_eq!(s.cwd, "/srv/api");
        assert_eq!(s.args, ["--port", "80"]);
        assert_eq!(s.interpreter.as_deref(), Some("node"));
        assert_eq!(s.interpreter_args, ["--inspect"]);
        assert_eq!(s.max_restarts, Some(7));
        assert_eq!(s.min_uptime_ms, Some(2000));
        assert_eq!(s.restart_delay_ms, Some(1000));
        assert_eq!(s.kill_timeout_ms, Some(3000));
        assert_eq!(s.max_memory_bytes, Some(200 << 20));
        assert_eq!(s.instances, Some(1));
        assert_eq!(s.out_file, "/var/log/api.out");
        assert_eq!(s.error_file, "", "PM2's default log: pmd's own");
        let mut env: Vec<_> = s.caller_env.iter().collect();
        env.sort();
        assert_eq!(
            env,
            [
                (&"NODE_ENV".to_string(), &"production".to_string()),
                (&"PATH".to_string(), &"/usr/bin".to_string())
            ]
        );
        assert!(!app.stopped);
        assert_eq!(s.cron_restart, "0 3 * * *");
        assert!(app.not_mapped.is_empty(), "{:?}", app.not_mapped);
    }

    #[test]
    fn pm2s_log_and_runtime_keys_are_mapped() {
        let apps = read(
            r#"[{"name":"q","pm_exec_path":"/q.js","exec_mode":"cluster_mode","merge_logs":true,
                 "pm_log_path":"/var/log/q.log","log_date_format":"YYYY-MM-DD HH:mm Z",
                 "log_type":"json","wait_ready":true,"listen_timeout":8000,
                 "shutdown_with_message":true,"instance_var":"INSTANCE_ID",
                 "increment_var":"PORT","stop_exit_codes":[0,3]},
                {"name":"q","pm_exec_path":"/q.js","exec_mode":"cluster_mode","merge_logs":true},
                {"name":"solo","pm_exec_path":"/s.js","merge_logs":true,
                 "instance_var":"NODE_APP_INSTANCE","pm_log_path":"/home/u/.pm2/logs/solo.log",
                 "stop_exit_codes":"7"}]"#,
            Path::new("/home/u/.pm2"),
        )
        .unwrap();
        let q = apps[0].as_ref().unwrap();
        let s = &q.spec;
        assert!(s.merge_logs, "several instances share their files");
        assert_eq!(s.log_file.as_deref(), Some("/var/log/q.log"));
        assert_eq!(s.log_date_format, "YYYY-MM-DD HH:mm Z");
        assert_eq!(s.log_type, pmdaemon_proto::v1::LogType::Json as i32);
        assert!(s.wait_ready && s.shutdown_with_message);
        assert_eq!(s.listen_timeout_ms, Some(8000));
        assert_eq!(
            (s.instance_var.as_str(), s.increment_var.as_str()),
            ("INSTANCE_ID", "PORT")
        );
        assert_eq!(s.stop_exit_codes, [0, 3]);
        assert!(q.not_mapped.is_empty(), "{:?}", q.not_mapped);
        // PM2's fork-mode merge_logs and default instance_var are pmd's
        // defaults; its default combined file becomes pmd's own.
        let solo = apps[1].as_ref().unwrap();
        assert!(!solo.spec.merge_logs);
        assert_eq!(solo.spec.instance_var, "");
        assert_eq!(solo.spec.log_file.as_deref(), Some(""));
        assert_eq!(solo.spec.stop_exit_codes, [7]);
        assert!(
            solo.notes
                .iter()
                .any(|n| n.starts_with("combined log: pmd's own file")),
            "{:?}",
            solo.notes
        );
    }

    #[test]
    fn cluster_entries_are_one_app_with_instances() {
        let apps = read(
            r#"[{"name":"web","pm_exec_path":"/w/web.js","exec_mode":"cluster_mode",
                 "pm_out_log_path":"/var/log/web-out-1.log","status":"stopped"},
                {"name":"other","pm_exec_path":"/bin/sleep","args":"1000"},
                {"name":"web","pm_exec_path":"/w/web.js","exec_mode":"cluster_mode",
                 "pm_out_log_path":"/var/log/web-out-3.log"}]"#,
            Path::new("/p"),
        )
        .unwrap();
        let web = apps[0].as_ref().unwrap();
        assert_eq!(web.spec.instances, Some(2));
        assert_eq!(web.spec.out_file, "/var/log/web-out.log");
        assert!(web.stopped);
        assert!(web.notes[0].starts_with("cluster mode: 2 separate processes"));
        assert!(web.spec.balance.is_none());
        let other = apps[1].as_ref().unwrap();
        assert_eq!(other.spec.args, ["1000"]);
    }

    #[test]
    fn a_cluster_on_one_port_is_balanced_on_it() {
        let entry = r#"{"name":"web","pm_exec_path":"/w/web.js","exec_mode":"cluster_mode",
                        "env":{"PORT":"3000"}}"#;
        let apps = read(&format!("[{entry},{entry}]"), Path::new("/p")).unwrap();
        let web = apps[0].as_ref().unwrap();
        assert_eq!(web.spec.port, "3000");
        assert!(web.spec.balance.is_some());
        assert!(
            web.notes[0].contains("balanced on port 3000"),
            "{:?}",
            web.notes
        );
    }

    #[test]
    fn an_unreadable_app_is_refused_alone() {
        let apps = read(
            r#"[{"name":"ok","pm_exec_path":"/bin/true"},
                {"name":"bad","pm_exec_path":"/bin/true","args":{"a":1}},
                {"name":"noscript"},
                {"pm_exec_path":"/bin/true"},
                "junk",
                {"name":"bad/name","pm_exec_path":"/bin/true"}]"#,
            Path::new("/p"),
        )
        .unwrap();
        assert!(apps[0].is_ok());
        let reasons: Vec<String> = apps[1..]
            .iter()
            .map(|a| {
                let r = a.as_ref().unwrap_err();
                format!("{}: {}", r.name, r.reason)
            })
            .collect();
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(reasons[0].starts_with("bad: `args` is"), "{reasons:?}");
        assert!(reasons[1].starts_with("noscript: it has no `pm_exec_path`"));
        assert!(reasons[2].starts_with("bad/name: "), "{reasons:?}");
        assert_eq!(reasons[3], "entry 4: it has no `name`");
        assert_eq!(reasons[4], "entry 5: not an object");
    }

    #[test]
    fn a_file_that_is_not_a_list_is_refused_whole() {
        for (text, want) in [
            ("{not json", "not JSON"),
            (r#"{"name":"x"}"#, "not a list of processes"),
        ] {
            let err = read(text, Path::new("/p")).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }
}
