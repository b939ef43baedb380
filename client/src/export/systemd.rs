//! systemd units: `NAME.service` for an app with one instance; for several,
//! a template `NAME@.service` (the instance number `%i` in the app's
//! instance variable and PMD_INSTANCE_ID), a `NAME.target` that wants each
//! instance, and a drop-in per instance for what differs between them
//! (`NAME@0.service.d/instance.conf`: its port, its `increment_var`).
//!
//! Unit files are text, so the quoting is written here ([`quote_exec`],
//! [`quote_environment`], [`escape_specifiers`]): systemd expands
//! specifiers (`%n`) in every value and variables (`$X`) in `ExecStart=`;
//! both are escaped so a value means what the ecosystem file says.
//! `ExecStart=` names its program by an absolute path, found on PATH now
//! (the app's own PATH first, as the daemon looks), else `/usr/bin/env
//! NAME` with a note.

use std::fmt::Write as _;
use std::path::Path;

use pmdaemon_proto::v1::{AppSpec, DependencyCondition, RestartPolicy};

use super::{App, ExportError, MARKER, Notes, Output, Target, dependencies};

/// `%` as `%%`: systemd expands specifiers in unit values.
pub fn escape_specifiers(text: &str) -> String {
    text.replace('%', "%%")
}

/// The inside of a double-quoted word: `\` and `"` escaped, control
/// characters as C escapes (systemd unescapes quoted words of
/// `ExecStart=` and `Environment=`), `%` as `%%`.
fn quoted_inside(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '%' => out.push_str("%%"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for byte in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\x{byte:02x}");
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// One word of `ExecStart=`: double-quoted, with `$` as `$$` (systemd
/// substitutes `$NAME` and `${NAME}` there).
pub fn quote_exec(word: &str) -> String {
    format!("\"{}\"", quoted_inside(word).replace('$', "$$"))
}

/// One `Environment=` assignment, `"NAME=VALUE"`. `$` stays as it is:
/// systemd does not expand variables in `Environment=`.
pub fn quote_environment(name: &str, value: &str) -> String {
    format!("\"{}\"", quoted_inside(&format!("{name}={value}")))
}

/// `ms` as a systemd time span.
fn span(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The program's absolute path: as written when absolute, against the
/// working directory when a relative path, else on PATH.
fn absolute_program(program: &str, app: &App, notes: &mut Notes) -> Vec<String> {
    if Path::new(program).is_absolute() {
        return vec![program.to_string()];
    }
    if program.contains('/') {
        return vec![
            super::absolute(&app.cwd.join(program))
                .to_string_lossy()
                .into_owned(),
        ];
    }
    let path = app
        .env
        .get("PATH")
        .cloned()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    let found = std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate));
    match found {
        Some(path) => vec![path.to_string_lossy().into_owned()],
        None => {
            notes.add(
                &app.spec.name,
                "script",
                format!(
                    "{program} is not on this machine's PATH: ExecStart runs /usr/bin/env \
                     {program}, which finds it on the service's PATH"
                ),
            );
            vec!["/usr/bin/env".into(), program.to_string()]
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The units of `specs` (loaded from a file in `dir`, named `source` in
/// each header line).
pub fn export(
    specs: &[AppSpec],
    dir: &Path,
    source: &str,
    notes: &mut Notes,
) -> Result<Output, ExportError> {
    let apps = super::apps(specs, dir, Target::Systemd, notes)?;
    let mut output = Output::default();
    for app in &apps {
        super::unmapped(app, Target::Systemd, notes);
        unit_files(app, &apps, source, notes, &mut output);
    }
    Ok(output)
}

/// The unit another unit orders itself after for app `app`.
fn unit_of(app: &App) -> String {
    if app.replicas > 1 {
        format!("{}.target", app.name)
    } else {
        format!("{}.service", app.name)
    }
}

/// Whether some app waits for `app` to complete, and `app` runs once: it
/// is then a oneshot unit, which is "started" only once it exited 0.
fn is_job(app: &App, apps: &[App]) -> bool {
    app.policy == RestartPolicy::Never
        && apps.iter().any(|other| {
            other
                .spec
                .depends_on
                .iter()
                .any(|d| d.app == app.spec.name && d.condition() == DependencyCondition::Completed)
        })
}

fn unit_files(app: &App, apps: &[App], source: &str, notes: &mut Notes, output: &mut Output) {
    let spec = app.spec;
    let name = &spec.name;
    let template = app.replicas > 1;
    let header = format!(
        "# {MARKER} systemd from {source} (app {})\n",
        escape_line(name)
    );
    let mut unit = header.clone();
    // [Unit]
    unit += "[Unit]\n";
    let _ = writeln!(
        unit,
        "Description={}",
        escape_specifiers(&escape_line(&format!("{name} (pmd export of {source})")))
    );
    let mut after = vec!["network.target".to_string()];
    let mut requires = Vec::new();
    for (dependency, target) in dependencies(app, apps, notes) {
        match dependency.condition() {
            DependencyCondition::Healthy if target.spec.health_check.is_some() => notes.add(
                name,
                "depends_on",
                format!(
                    "{}: healthy: systemd waits for its start only (it has no health checks)",
                    dependency.app
                ),
            ),
            DependencyCondition::Completed if !is_job(target, apps) => notes.add(
                name,
                "depends_on",
                format!(
                    "{}: completed: it restarts (autorestart), so it never completes; ordered \
                     after its start",
                    dependency.app
                ),
            ),
            _ => {}
        }
        after.push(unit_of(target));
        requires.push(unit_of(target));
    }
    let _ = writeln!(unit, "After={}", after.join(" "));
    if !requires.is_empty() {
        let _ = writeln!(unit, "Requires={}", requires.join(" "));
    }
    if template {
        let _ = writeln!(unit, "PartOf={}.target", app.name);
    }
    let burst = spec
        .start_limit_burst
        .unwrap_or(pmdaemon_proto::DEFAULT_START_LIMIT_BURST);
    let interval_ms = spec
        .start_limit_interval_ms
        .unwrap_or(pmdaemon_proto::DEFAULT_START_LIMIT_INTERVAL_MS);
    if burst == 0 {
        unit += "StartLimitIntervalSec=0\n";
    } else {
        let _ = writeln!(unit, "StartLimitIntervalSec={}", span(interval_ms));
        let _ = writeln!(unit, "StartLimitBurst={burst}");
    }
    // [Service]
    unit += "\n[Service]\n";
    let job = is_job(app, apps);
    if job {
        unit += "Type=oneshot\nRemainAfterExit=yes\n";
    } else {
        unit += "Type=exec\n";
    }
    let command = app.command();
    let words: Vec<String> = absolute_program(&command.program, app, notes)
        .into_iter()
        .chain(command.leading.iter().cloned())
        .chain(command.args.iter().cloned())
        .collect();
    let _ = writeln!(
        unit,
        "ExecStart={}",
        words
            .iter()
            .map(|w| quote_exec(w))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(
        unit,
        "WorkingDirectory={}",
        escape_specifiers(&escape_line(&app.cwd.to_string_lossy()))
    );
    let mut env = app.env.clone();
    let instance = if template { "%i" } else { "0" };
    env.insert("PMD_APP_NAME".into(), spec.name.clone());
    if !template && let Some(port) = app.instance_ports.first() {
        env.insert(app.port_env.clone(), port.to_string());
    }
    for (key, value) in &env {
        let _ = writeln!(unit, "Environment={}", quote_environment(key, value));
    }
    // `%i` is the specifier this unit means: written after the escaping.
    for key in ["PMD_INSTANCE_ID", app.instance_var()] {
        let _ = writeln!(unit, "Environment=\"{key}={instance}\"");
    }
    let restart = match app.policy {
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::Never => "no",
        _ => "always",
    };
    let _ = writeln!(unit, "Restart={restart}");
    let delay_ms = spec
        .restart_delay_ms
        .filter(|ms| *ms > 0)
        .or(spec.exp_backoff_initial_ms)
        .unwrap_or(pmdaemon_proto::DEFAULT_BACKOFF_INITIAL_MS);
    if app.policy != RestartPolicy::Never {
        let _ = writeln!(unit, "RestartSec={}", span(delay_ms));
    }
    if !spec.stop_exit_codes.is_empty() {
        let codes: Vec<String> = spec.stop_exit_codes.iter().map(i32::to_string).collect();
        let _ = writeln!(unit, "RestartPreventExitStatus={}", codes.join(" "));
    }
    let _ = writeln!(unit, "TimeoutStopSec={}", span(app.kill_timeout_ms()));
    if let Some(signal) = app.stop_signal() {
        let _ = writeln!(unit, "KillSignal={signal}");
    }
    if let Some(bytes) = spec.max_memory_bytes.filter(|b| *b > 0) {
        let _ = writeln!(unit, "MemoryMax={bytes}");
        notes.add(
            name,
            "max_memory_restart",
            "MemoryMax= has the kernel kill the service above it (then Restart= applies), \
             rather than pmd's restart",
        );
    }
    if spec.health_check.is_some() {
        notes.add(
            name,
            "health_check",
            "not mapped: systemd has no health probe (a service may report with sd_notify's \
             watchdog)",
        );
    }
    if !template {
        unit += "\n[Install]\nWantedBy=default.target\n";
        output.files.push((format!("{}.service", app.name), unit));
        return;
    }
    output.files.push((format!("{}@.service", app.name), unit));
    // The target: `systemctl start NAME.target` starts every instance.
    let mut target = header.clone();
    target += "[Unit]\n";
    let _ = writeln!(
        target,
        "Description={}",
        escape_specifiers(&escape_line(&format!(
            "{name}: {} instances (pmd export of {source})",
            app.replicas
        )))
    );
    let wants: Vec<String> = (0..app.replicas)
        .map(|i| format!("{}@{i}.service", app.name))
        .collect();
    let _ = writeln!(target, "Wants={}", wants.join(" "));
    target += "\n[Install]\nWantedBy=default.target\n";
    output.files.push((format!("{}.target", app.name), target));
    // What differs per instance.
    let increment = (!spec.increment_var.is_empty())
        .then(|| {
            let base: i64 = app.env.get(&spec.increment_var)?.trim().parse().ok()?;
            Some((spec.increment_var.as_str(), base))
        })
        .flatten();
    if spec.balance.is_some()
        && let (Some(public), Some(first), Some(last)) = (
            app.container_port,
            app.instance_ports.first(),
            app.instance_ports.last(),
        )
    {
        notes.add(
            name,
            "balance",
            format!(
                "systemd has no balancer: the instances listen on ports {first}-{last} in {}; \
                 put a proxy (nginx, haproxy) on port {public} in front of them",
                app.port_env
            ),
        );
    }
    for i in 0..app.replicas {
        let mut lines = Vec::new();
        if let Some(port) = app.instance_ports.get(i as usize) {
            lines.push(quote_environment(&app.port_env, &port.to_string()));
        }
        if let Some((var, base)) = increment {
            lines.push(quote_environment(var, &(base + i64::from(i)).to_string()));
        }
        if lines.is_empty() {
            continue;
        }
        let mut dropin = header.clone();
        dropin += "[Service]\n";
        for line in lines {
            let _ = writeln!(dropin, "Environment={line}");
        }
        output
            .files
            .push((format!("{}@{i}.service.d/instance.conf", app.name), dropin));
    }
}

/// A value on one line of a unit file: line breaks as spaces.
fn escape_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}
