//! Property tests of spec validation: any `v1::AppSpec` a client can send
//! (every field of the prost message drawn at random, plausible values
//! mixed with strange ones) is either refused with a typed error or turned
//! into an [`AppSpec`] whose every field passes the shared rules
//! (`pmdaemon_proto`), and that converts back to the same spec. Never a
//! panic. Runs proptest's default 256 cases per property
//! (`PROPTEST_CASES` overrides it).

use std::time::Duration;

use pmdaemon_proto::{InvalidInput, health as rule, v1};
use proptest::prelude::*;

use crate::api::convert::{spec_from_proto, spec_to_proto};
use crate::error::Error;
use crate::health::Probe;
use crate::supervisor::spec::AppSpec;

/// Text for any string field: plausible values of the fields and strange
/// ones (NUL, controls, any unicode, huge digits).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "", "api", "db", "all", "123", "sleep", "./a.js", "/bin/true", "x/../y", "3000",
            "3000-3003", "auto:4000-4100", "0", "65536", "SIGINT", "kill", "9", "SIGSTOP", "PORT",
            "PATH", "PMD_ID", "PMDAEMON_HOME", "A=B", "http://127.0.0.1:{port}/h",
            "127.0.0.1:{port}", "localhost:80", "exit 0", "/tmp/out.log", "out.log",
            "/dev/null", "/no/such/dir/x.log", "a\0b", "\u{202e}", "é", " ", "{port}",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
        1 => "[0-9]{1,30}",
    ]
}

/// A number of milliseconds: small, around the limits, or anything.
fn ms() -> impl Strategy<Value = Option<u64>> {
    prop::option::of(prop_oneof![
        0..10_000u64,
        prop::sample::select(vec![99, 100, 86_400_000, 86_400_001, u64::MAX]),
        any::<u64>(),
    ])
}

/// A count: small, around the limits, or anything.
fn count() -> impl Strategy<Value = Option<u32>> {
    prop::option::of(prop_oneof![
        0..200u32,
        prop::sample::select(vec![1_000_000, 1_000_001, u32::MAX]),
        any::<u32>(),
    ])
}

fn health_check() -> impl Strategy<Value = Option<v1::HealthCheck>> {
    use v1::health_check::Probe as P;
    let probe = prop_oneof![
        Just(None),
        text().prop_map(|t| Some(P::Http(t))),
        text().prop_map(|t| Some(P::Tcp(t))),
        text().prop_map(|t| Some(P::Script(t))),
    ];
    prop::option::of(
        (
            probe,
            ms(),
            ms(),
            count(),
            ms(),
            prop::option::of(prop_oneof![100..600u32, any::<u32>()]),
        )
            .prop_map(
                |(probe, interval_ms, timeout_ms, retries, start_period_ms, expected_status)| {
                    v1::HealthCheck {
                        probe,
                        interval_ms,
                        timeout_ms,
                        retries,
                        start_period_ms,
                        expected_status,
                    }
                },
            ),
    )
}

/// Any `v1::AppSpec`, every field drawn.
fn wire_spec() -> impl Strategy<Value = v1::AppSpec> {
    let words = || prop::collection::vec(text(), 0..3);
    let names = (
        text(),
        text(),
        words(),
        prop::option::of(text()),
        words(),
        text(),
    );
    let env = prop::collection::btree_map(text(), text(), 0..3);
    let restart = (-1..5i32, count(), ms(), ms(), ms(), ms(), ms(), text());
    let logs = (any::<bool>(), ms(), count(), text(), text());
    let ports = (
        prop::option::of(prop_oneof![-3..8i32, any::<i32>()]),
        text(),
        text(),
    );
    let watch = (any::<bool>(), words(), words(), ms());
    let deps = prop::collection::vec(
        (text(), prop_oneof![0..4i32, any::<i32>()])
            .prop_map(|(app, condition)| v1::Dependency { app, condition }),
        0..3,
    );
    let rest = (
        health_check(),
        prop::option::of(any::<u64>()),
        deps,
        count(),
        ms(),
    );
    let pm2 = (
        any::<bool>(),
        prop::option::of(any::<u64>()),
        any::<bool>(),
        text(),
        text(),
        prop::collection::vec(prop_oneof![0..256i32, any::<i32>()], 0..3),
    );
    (names, env, restart, logs, ports, watch, rest, pm2).prop_map(
        |(
            (name, script, args, interpreter, interpreter_args, cwd),
            env,
            (
                autorestart,
                max_restarts,
                min_uptime_ms,
                restart_delay_ms,
                exp_backoff_initial_ms,
                exp_backoff_max_ms,
                kill_timeout_ms,
                stop_signal,
            ),
            (time, log_max_bytes, log_max_files, out_file, error_file),
            (instances, port, port_env),
            (watch, watch_paths, ignore_watch, watch_delay_ms),
            (
                health_check,
                max_memory_bytes,
                depends_on,
                start_limit_burst,
                start_limit_interval_ms,
            ),
            (
                wait_ready,
                listen_timeout_ms,
                shutdown_with_message,
                instance_var,
                increment_var,
                stop_exit_codes,
            ),
        )| v1::AppSpec {
            name,
            script,
            args,
            interpreter,
            interpreter_args,
            cwd,
            // The captured environment takes the same values: one rule.
            env: env.clone().into_iter().collect(),
            caller_env: env.into_iter().collect(),
            autorestart,
            max_restarts,
            min_uptime_ms,
            restart_delay_ms,
            exp_backoff_initial_ms,
            exp_backoff_max_ms,
            kill_timeout_ms,
            stop_signal,
            time,
            log_max_bytes,
            log_max_files,
            instances,
            port,
            port_env,
            watch,
            watch_paths,
            ignore_watch,
            watch_delay_ms,
            out_file,
            error_file,
            health_check,
            max_memory_bytes,
            depends_on,
            start_limit_burst,
            start_limit_interval_ms,
            wait_ready,
            listen_timeout_ms,
            shutdown_with_message,
            instance_var,
            increment_var,
            stop_exit_codes,
            ..Default::default()
        },
    )
}

/// Every field of an accepted spec passes the shared rules.
fn check_accepted(s: &AppSpec) -> Result<(), TestCaseError> {
    let ok = |what: &str, r: Result<(), InvalidInput>| -> Result<(), TestCaseError> {
        r.map_err(|e| TestCaseError::fail(format!("accepted a bad {what}: {e}")))
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
    ok("name", pmdaemon_proto::validate_name(&s.name))?;
    prop_assert!(!s.script.trim().is_empty());
    prop_assert!(s.cwd.is_absolute(), "{:?}", s.cwd);
    let paths = s.out_file.iter().chain(&s.error_file).chain(&s.watch_paths);
    for path in paths.chain(std::iter::once(&s.cwd)) {
        prop_assert!(path.is_absolute(), "{:?}", path);
        no_nul("path", &path.to_string_lossy())?;
    }
    prop_assert!(s.out_file.is_none() || s.out_file != s.error_file);
    let words = s
        .args
        .iter()
        .chain(&s.interpreter_args)
        .chain(&s.ignore_watch);
    for word in words
        .chain(std::iter::once(&s.script))
        .chain(&s.interpreter)
    {
        no_nul("word", word)?;
    }
    for (k, v) in s.env.iter().chain(&s.caller_env) {
        ok("variable", pmdaemon_proto::check_env_var(k, v))?;
    }
    ok(
        "instances",
        pmdaemon_proto::check_instance_count(s.instances.into()).map(drop),
    )?;
    ok("port_env", pmdaemon_proto::check_port_env(&s.port_env))?;
    ok(
        "stop_signal",
        pmdaemon_proto::parse_stop_signal("s", &s.stop_signal).map(drop),
    )?;
    ok(
        "log_max_size",
        pmdaemon_proto::check_log_max_size("s", s.log_max_bytes).map(drop),
    )?;
    let counts = [
        (s.log_max_files, pmdaemon_proto::MAX_LOG_MAX_FILES),
        (s.max_restarts, pmdaemon_proto::MAX_MAX_RESTARTS),
        (s.start_limit_burst, pmdaemon_proto::MAX_START_LIMIT_BURST),
    ];
    for (n, max) in counts {
        ok(
            "count",
            pmdaemon_proto::check_count("n", n.into(), max).map(drop),
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
        s.listen_timeout_ms,
    ] {
        ok(
            "duration",
            pmdaemon_proto::check_duration("d", Duration::from_millis(ms)).map(drop),
        )?;
    }
    ok(
        "instance_var",
        pmdaemon_proto::check_instance_var(&s.instance_var),
    )?;
    if let Some(var) = &s.increment_var {
        ok("increment_var", pmdaemon_proto::check_increment_var(var))?;
        ok(
            "increment base",
            pmdaemon_proto::increment_base(var, &s.env, s.instances).map(drop),
        )?;
    }
    for &code in &s.stop_exit_codes {
        prop_assert!((0..=255).contains(&code), "stop exit code {}", code);
    }
    if let Some(bytes) = s.max_memory_bytes {
        ok(
            "max_memory",
            pmdaemon_proto::check_max_memory(bytes).map(drop),
        )?;
    }
    if let Some(check) = &s.health_check {
        let text = match &check.probe {
            Probe::Http {
                url,
                expected_status,
            } => {
                ok("http probe", rule::parse_http_url(url, true).map(drop))?;
                if let Some(code) = expected_status {
                    ok(
                        "expected_status",
                        rule::check_expected_status((*code).into()).map(drop),
                    )?;
                }
                url
            }
            Probe::Tcp { target } => {
                ok("tcp probe", rule::parse_tcp_target(target, true).map(drop))?;
                target
            }
            Probe::Script { command } => {
                ok("script probe", rule::check_probe_script(command))?;
                command
            }
        };
        ok(
            "{port}",
            rule::check_port_placeholder(text, s.port.is_some()),
        )?;
        ok(
            "interval",
            rule::check_probe_interval(check.interval_ms).map(drop),
        )?;
        ok(
            "timeout",
            rule::check_probe_interval(check.timeout_ms).map(drop),
        )?;
        ok(
            "timeout",
            rule::check_timeout_within_interval(check.timeout_ms, check.interval_ms),
        )?;
        ok(
            "start_period",
            rule::check_start_period(check.start_period_ms).map(drop),
        )?;
        ok(
            "retries",
            rule::check_retries(check.retries.into()).map(drop),
        )?;
    }
    for dep in &s.depends_on {
        ok(
            "dependency",
            pmdaemon_proto::check_dependency(&s.name, &dep.app),
        )?;
    }
    Ok(())
}

proptest! {
    #[test]
    fn any_wire_spec_is_refused_or_valid(
        wire in wire_spec(),
        caller_cwd in prop_oneof![Just(String::new()), Just("/".to_string()), Just("/tmp".to_string()), text()],
    ) {
        match spec_from_proto(wire, crate::api::convert::Caller::Local { cwd: &caller_cwd }) {
            Ok(spec) => {
                check_accepted(&spec)?;
                // What the daemon reports reads back as the same spec.
                let again = spec_from_proto(spec_to_proto(&spec), crate::api::convert::Caller::Local { cwd: "" });
                prop_assert!(again.as_ref().is_ok_and(|a| *a == spec), "{:?} -> {:?}", spec, again);
            }
            Err(Error::InvalidArgument(message)) => prop_assert!(!message.is_empty()),
            Err(other) => prop_assert!(false, "not a validation error: {other:?}"),
        }
    }

    /// A spec close to one `pmd start` sends, with one field drawn at
    /// random: most pass, so the checks above see many accepted specs.
    #[test]
    fn one_odd_field_is_refused_or_valid(wire in wire_spec(), field in 0..13usize) {
        let mut base = v1::AppSpec {
            name: "api".into(),
            script: "/bin/true".into(),
            cwd: "/".into(),
            ..Default::default()
        };
        match field {
            0 => base.name = wire.name,
            1 => base.env = wire.env,
            2 => base.stop_signal = wire.stop_signal,
            3 => base.instances = wire.instances,
            4 => (base.port, base.instances) = (wire.port, wire.instances),
            5 => base.port_env = wire.port_env,
            6 => (base.health_check, base.port) = (wire.health_check, wire.port),
            7 => base.depends_on = wire.depends_on,
            8 => (base.out_file, base.error_file) = (wire.out_file, wire.error_file),
            9 => (base.log_max_bytes, base.log_max_files) = (wire.log_max_bytes, wire.log_max_files),
            10 => (base.min_uptime_ms, base.kill_timeout_ms, base.max_restarts) =
                (wire.min_uptime_ms, wire.kill_timeout_ms, wire.max_restarts),
            11 => (base.max_memory_bytes, base.start_limit_burst, base.start_limit_interval_ms) =
                (wire.max_memory_bytes, wire.start_limit_burst, wire.start_limit_interval_ms),
            _ => (
                base.wait_ready,
                base.listen_timeout_ms,
                base.shutdown_with_message,
                base.instance_var,
                base.increment_var,
                base.stop_exit_codes,
                base.env,
            ) = (
                wire.wait_ready,
                wire.listen_timeout_ms,
                wire.shutdown_with_message,
                wire.instance_var,
                wire.increment_var,
                wire.stop_exit_codes,
                wire.env,
            ),
        }
        match spec_from_proto(base, crate::api::convert::Caller::Local { cwd: "" }) {
            Ok(spec) => {
                check_accepted(&spec)?;
                let again = spec_from_proto(spec_to_proto(&spec), crate::api::convert::Caller::Local { cwd: "" });
                prop_assert!(again.as_ref().is_ok_and(|a| *a == spec), "{:?} -> {:?}", spec, again);
            }
            Err(Error::InvalidArgument(message)) => prop_assert!(!message.is_empty()),
            Err(other) => prop_assert!(false, "not a validation error: {other:?}"),
        }
    }
}
