//! Property tests of the loader: any text, and any file shaped like an
//! ecosystem file (apps as maps of known and unknown keys with values of
//! every type, huge numbers, odd unicode, NUL bytes, deep nesting), read as
//! YAML or JSON, never panics; and every app it accepts holds only values
//! that the shared rules (`pmdaemon_proto`) accept, the same rules the
//! daemon checks a request with. Runs proptest's default 256 cases per
//! property (`PROPTEST_CASES` overrides it).

use std::collections::HashSet;
use std::time::Duration;

use pmdaemon_proto::v1::health_check::Probe;
use pmdaemon_proto::{InvalidInput, PortSpec, health};
use proptest::prelude::*;
use serde_json::{Map, Value};

use super::*;

/// Both formats; JavaScript files are node's JSON, read as JSON.
fn parse_both(text: &str) -> Vec<anyhow::Result<Vec<AppDef>>> {
    [Format::Yaml, Format::Json]
        .into_iter()
        .map(|format| parse("eco", format, text).map(|p| p.apps))
        .collect()
}

/// Stands for a number too large for any integer type: replaced, quotes
/// and all, by its digits in the text (serde_json's `Value` cannot hold
/// one).
const HUGE: &str = "hugeNUM";

/// Strings a field might hold: plausible values of every field (so that
/// some apps pass) and strange ones.
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "api", "db", "web-1", "sleep", "./server.js", "/bin/true", "3000", "3000-3003",
            "auto:4000-4100", "70000", "0", "max", "-1", "10M", "1.5G", "0.1", "5s", "500ms",
            "25h", "SIGINT", "kill", "SIGSTOP", "9", "http://127.0.0.1:{port}/health",
            "127.0.0.1:{port}", "localhost:80", "exit 0", "healthy", "completed", "fork",
            "cluster", "on-failure", "PORT", "PATH", "PMDAEMON_HOME", "all", "123", "",
            " ", "a\0b", "\u{202e}evil", "é", "日本", "\u{1F600}", "--flag \"unclosed",
        ]).prop_map(str::to_string),
        2 => any::<String>(),
        1 => "[0-9]{20,40}".prop_map(|d| format!("{HUGE}{d}")),
    ]
}

/// A scalar of any type.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..70_000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![u64::MAX, 1 << 40, 86_400_000, 86_400_001, 1024, 1025])
            .prop_map(Value::from),
        any::<f64>()
            .prop_map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)),
        string().prop_map(Value::String),
    ]
}

/// Any value: scalars, lists and maps, nested a few levels.
fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..4)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// A key: a field of an app or of a health check, an environment section,
/// a PM2-only field, a variable name, or anything.
fn key() -> impl Strategy<Value = String> {
    let known: Vec<&'static str> = super::keys::KEYS
        .iter()
        .flat_map(|k| std::iter::once(k.name).chain(k.aliases.iter().copied()))
        .chain([
            "maxRestarts",
            "log_date_format",
            "env_production",
            "env_",
            "env_a b",
            "deploy",
            "apps",
            "node_args",
            "<<",
            "http",
            "tcp",
            "script",
            "interval",
            "timeout",
            "retries",
            "start_period",
            "expected_status",
            "NODE_ENV",
            "A=B",
            "PMDAEMON_HOME",
        ])
        .collect();
    prop_oneof![
        4 => prop::sample::select(known).prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

/// A field with a value that may well pass, so that some apps are
/// accepted and their values checked.
fn plausible_field() -> impl Strategy<Value = (String, Value)> {
    use serde_json::json;
    prop::sample::select(vec![
        ("name", json!("api")),
        ("name", json!("db")),
        ("name", json!("web-1")),
        ("instances", json!(2)),
        ("instances", json!("max")),
        ("instances", json!(-1)),
        ("exec_mode", json!("cluster")),
        ("port", json!(3000)),
        ("port", json!("3000-3003")),
        ("port", json!("auto:4000-4100")),
        ("port_env", json!("HTTP_PORT")),
        ("env", json!({"A": 1, "B": "x", "C": true})),
        ("env_production", json!({"NODE_ENV": "production"})),
        ("args", json!("--a \"b c\"")),
        ("args", json!(["-p", 80])),
        ("max_restarts", json!(1_000_000)),
        ("start_limit_burst", json!(0)),
        ("min_uptime", json!("5s")),
        ("kill_timeout", json!(86_400_000)),
        ("restart_delay", json!("1h")),
        ("stop_signal", json!("int")),
        ("kill_signal", json!(15)),
        ("log_max_size", json!("1K")),
        ("log_max_files", json!(100)),
        ("max_memory_restart", json!("1.5G")),
        ("watch", json!(["src"])),
        (
            "health_check",
            json!({"tcp": "127.0.0.1:{port}", "interval": "100ms"}),
        ),
        (
            "health_check",
            json!({"http": "http://localhost/h", "expected_status": 204}),
        ),
        (
            "health_check",
            json!({"script": "exit 0", "retries": 100, "timeout": 200, "interval": 200}),
        ),
        ("depends_on", json!(["db"])),
        ("depends_on", json!([{"api": "healthy"}])),
        ("depends_on", json!("web-1")),
    ])
    .prop_map(|(k, v)| (k.to_string(), v))
}

/// An app: a map of some fields, most often with a `script`.
fn app() -> impl Strategy<Value = Value> {
    (
        prop::option::weighted(
            0.9,
            prop_oneof![
                3 => prop::sample::select(vec!["./server.js", "/bin/true", "sleep", "./w.sh"])
                    .prop_map(str::to_string),
                1 => string(),
            ],
        ),
        prop::collection::vec(
            prop_oneof![3 => plausible_field(), 1 => (key(), value())],
            0..6,
        ),
    )
        .prop_map(|(script, fields)| {
            let mut app = Map::new();
            if let Some(script) = script {
                app.insert("script".into(), Value::String(script));
            }
            app.extend(fields);
            Value::Object(app)
        })
}

/// A file: `{apps: [...]}` (sometimes with `deploy`), or a bare list.
fn file() -> impl Strategy<Value = Value> {
    (prop::collection::vec(app(), 0..4), 0..4u8, value()).prop_map(|(apps, shape, other)| {
        let apps = Value::Array(apps);
        match shape {
            0 => apps,
            1 => serde_json::json!({ "apps": apps, "deploy": other }),
            2 => other,
            _ => serde_json::json!({ "apps": apps }),
        }
    })
}

/// `text` with each [`HUGE`] string replaced by its bare digits.
fn with_huge_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(HUGE) {
        let (before, after) = rest.split_at(at);
        let quoted = before.ends_with(['"', '\'']);
        out.push_str(if quoted {
            &before[..before.len() - 1]
        } else {
            before
        });
        let after = &after[HUGE.len()..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        out.push_str(&after[..digits]);
        rest = &after[digits..];
        if quoted {
            rest = rest.strip_prefix(['"', '\'']).unwrap_or(rest);
        }
    }
    out.push_str(rest);
    out
}

/// Every value of the accepted apps passes the shared rules.
fn check_accepted(apps: &[AppDef]) -> Result<(), TestCaseError> {
    let ok = |what: &str, r: Result<(), InvalidInput>| -> Result<(), TestCaseError> {
        r.map_err(|e| TestCaseError::fail(format!("accepted a bad {what}: {e}")))
    };
    let duration = |ms: Option<u64>| {
        pmdaemon_proto::check_duration("d", Duration::from_millis(ms.unwrap_or(0))).map(drop)
    };
    let no_nul = |what: &str, text: &str| -> Result<(), TestCaseError> {
        prop_assert!(
            !text.contains('\0'),
            "{} holds a NUL byte: {:?}",
            what,
            text
        );
        Ok(())
    };
    prop_assert!(!apps.is_empty());
    let mut names = HashSet::new();
    for app in apps {
        let s = &app.spec;
        ok("name", pmdaemon_proto::validate_name(&s.name))?;
        prop_assert!(names.insert(s.name.clone()), "{} twice", s.name);
        prop_assert!(!s.script.trim().is_empty());
        no_nul("script", &s.script)?;
        no_nul("cwd", &s.cwd)?;
        no_nul("out_file", &s.out_file)?;
        no_nul("error_file", &s.error_file)?;
        no_nul("interpreter", s.interpreter.as_deref().unwrap_or_default())?;
        for word in s
            .args
            .iter()
            .chain(&s.interpreter_args)
            .chain(&s.watch_paths)
            .chain(&s.ignore_watch)
        {
            no_nul("args or paths", word)?;
        }
        if let Some(n) = s.instances {
            ok(
                "instance count",
                pmdaemon_proto::Instances::from_wire(n).map(drop),
            )?;
        }
        if !s.port.is_empty() {
            let spec = s.port.parse::<PortSpec>();
            ok("port", spec.map(drop))?;
            // A balanced app's port is its public one, one port for all.
            if s.balance.is_some() {
                ok(
                    "public port",
                    pmdaemon_proto::check_public_port(s.port.parse::<PortSpec>().ok()).map(drop),
                )?;
            } else if let (Ok(spec), Some(Ok(n))) =
                (s.port.parse::<PortSpec>(), s.instances.map(u32::try_from))
            {
                ok("port for its instances", spec.check_room(n))?;
            }
        }
        if !s.port_env.is_empty() {
            ok("port_env", pmdaemon_proto::check_port_env(&s.port_env))?;
        }
        for env in std::iter::once(&app.env).chain(app.environments.values()) {
            for (k, v) in env {
                ok("variable", pmdaemon_proto::check_env_var(k, v))?;
            }
        }
        if let Some(bytes) = s.log_max_bytes {
            ok(
                "log_max_size",
                pmdaemon_proto::check_log_max_size("s", bytes).map(drop),
            )?;
        }
        if let Some(bytes) = s.max_memory_bytes {
            ok(
                "max_memory_restart",
                pmdaemon_proto::check_max_memory(bytes).map(drop),
            )?;
        }
        let counts = [
            (s.log_max_files, pmdaemon_proto::MAX_LOG_MAX_FILES),
            (s.max_restarts, pmdaemon_proto::MAX_MAX_RESTARTS),
            (s.start_limit_burst, pmdaemon_proto::MAX_START_LIMIT_BURST),
        ];
        for (n, max) in counts {
            ok(
                "count",
                pmdaemon_proto::check_count("n", n.unwrap_or(0).into(), max).map(drop),
            )?;
        }
        for ms in [
            s.min_uptime_ms,
            s.restart_delay_ms,
            s.exp_backoff_initial_ms,
            s.exp_backoff_max_ms,
            s.kill_timeout_ms,
            s.watch_delay_ms,
            s.start_limit_interval_ms,
        ] {
            ok("duration", duration(ms))?;
        }
        if !s.stop_signal.is_empty() {
            ok(
                "stop_signal",
                pmdaemon_proto::parse_stop_signal("s", &s.stop_signal).map(drop),
            )?;
        }
        if let Some(check) = &s.health_check {
            ok("probe", health::probe_of(check).map(drop))?;
            match &check.probe {
                Some(Probe::Http(url)) => {
                    ok("http probe", health::parse_http_url(url, true).map(drop))?
                }
                Some(Probe::Tcp(target)) => ok(
                    "tcp probe",
                    health::parse_tcp_target(target, true).map(drop),
                )?,
                Some(Probe::Script(command)) => {
                    ok("script probe", health::check_probe_script(command))?
                }
                None => {}
            }
            let text = health::probe_text(check).unwrap_or_default();
            ok(
                "{port}",
                health::check_port_placeholder(text, !s.port.is_empty()),
            )?;
            for ms in [check.interval_ms, check.timeout_ms].into_iter().flatten() {
                ok("probe timing", health::check_probe_interval(ms).map(drop))?;
            }
            if let (Some(timeout), Some(interval)) = (check.timeout_ms, check.interval_ms) {
                ok(
                    "timeout",
                    health::check_timeout_within_interval(timeout, interval),
                )?;
            }
            ok(
                "start_period",
                health::check_start_period(check.start_period_ms.unwrap_or(0)).map(drop),
            )?;
            if let Some(n) = check.retries {
                ok("retries", health::check_retries(n.into()).map(drop))?;
            }
            if let Some(code) = check.expected_status {
                ok(
                    "expected_status",
                    health::check_expected_status(code.into()).map(drop),
                )?;
            }
        }
        for dep in &s.depends_on {
            ok(
                "dependency",
                pmdaemon_proto::check_dependency(&s.name, &dep.app),
            )?;
            prop_assert!(
                apps.iter().any(|a| a.spec.name == dep.app),
                "{} is not in the file",
                dep.app
            );
        }
    }
    let set: Vec<pmdaemon_proto::DependencyNode<'_>> = apps
        .iter()
        .map(|a| {
            (
                a.spec.name.as_str(),
                a.spec.depends_on.iter().map(|d| d.app.as_str()).collect(),
            )
        })
        .collect();
    ok(
        "dependency order",
        pmdaemon_proto::dependency_order(&set)
            .map(drop)
            .map_err(|c| InvalidInput(c.to_string())),
    )
}

proptest! {
    #[test]
    fn any_text_is_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        for apps in parse_both(&text).into_iter().flatten() {
            check_accepted(&apps)?;
        }
    }

    #[test]
    fn any_app_shaped_file_is_read_or_refused(file in file()) {
        let json = with_huge_numbers(&serde_json::to_string_pretty(&file).expect("a Value serializes"));
        let yaml = with_huge_numbers(&serde_yaml::to_string(&file).expect("a Value serializes"));
        for text in [json, yaml] {
            for result in parse_both(&text) {
                match result {
                    Ok(apps) => check_accepted(&apps)?,
                    // Every refusal names the file.
                    Err(e) => prop_assert!(e.to_string().starts_with("eco"), "{}", e),
                }
            }
        }
    }

    /// Fragments of YAML that serde_yaml treats specially (anchors,
    /// aliases, tags, merge keys, several documents), in any order.
    #[test]
    fn odd_yaml_is_read_or_refused(parts in prop::collection::vec(prop::sample::select(vec![
        "apps:\n", "  - script: ./a.js\n", "  - &a {script: x, name: a}\n", "  - *a\n",
        "  - <<: *a\n", "    name: b\n", "    instances: !!str 4\n", "    port: !!binary AAAA\n",
        "    env: {A: ~, B: .inf, C: 0x1F, D: 1e400}\n", "---\n", "...\n", "    args: [\n",
        "    depends_on: [a, {b: healthy}]\n", "  - name: b\n    script: y\n", "? [k]\n: v\n",
        "    health_check: {tcp: \"h:{port}\", timeout: 1s, interval: 100ms}\n", "\t",
        "    port: 3000-3001\n", "    instances: 2\n", "\u{0}", "\u{feff}",
    ]), 0..12)) {
        for apps in parse_both(&parts.concat()).into_iter().flatten() {
            check_accepted(&apps)?;
        }
    }

}

proptest! {
    // Each case parses up to 3000 levels twice per format: an eighth of
    // the cases keeps it near a second (libyaml scans deep flow
    // collections in quadratic time before serde_yaml's depth limit
    // refuses them).
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases.div_ceil(8),
        ..ProptestConfig::default()
    })]

    /// Nesting far past the parsers' recursion limits is refused, not a
    /// stack overflow.
    #[test]
    fn deep_nesting_is_refused(depth in 1usize..3_000, open in prop::sample::select(vec!["[", "{\"a\":", "- ", "apps: [{env: "])) {
        let text = open.repeat(depth);
        for result in parse_both(&text) {
            prop_assert!(result.is_err());
        }
    }
}

/// The placeholder swap itself, so the properties above test what they say.
#[test]
fn huge_numbers_are_spliced_in_bare() {
    assert_eq!(
        with_huge_numbers(r#"{"a": "hugeNUM123456789012345678901234567890"}"#),
        r#"{"a": 123456789012345678901234567890}"#
    );
    assert_eq!(with_huge_numbers("a: hugeNUM99\n"), "a: 99\n");
}
