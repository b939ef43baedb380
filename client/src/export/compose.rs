//! A compose file: one service per app, in file order, with
//! `deploy.replicas`, the command (`entrypoint` and `command`), env,
//! working_dir, the published ports, a healthcheck from the health check,
//! `depends_on` with conditions, the restart policy, the stop signal and
//! grace period, and the memory limit. Typed structs serialized with
//! serde_yaml.
//!
//! Compose substitutes `$VAR` and `${VAR}` in every value of the file;
//! every `$` is written `$$` so a value stays as written.

use std::collections::BTreeMap;

use pmdaemon_proto::v1::health_check::Probe;
use pmdaemon_proto::v1::{AppSpec, DependencyCondition, RestartPolicy};
use serde::Serialize;
use serde::ser::SerializeMap;

use super::{App, ExportError, MARKER, Notes, Output, Target, Timing, dependencies};

/// The compose file's name in an output directory.
pub const FILE_NAME: &str = "compose.yaml";

/// Entries serialized as a map in the order given (file order).
struct Ordered<T>(Vec<(String, T)>);

impl<T: Serialize> Serialize for Ordered<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct File {
    services: Ordered<Service>,
}

#[derive(Serialize, Default)]
struct Service {
    image: String,
    entrypoint: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    command: Vec<String>,
    working_dir: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    environment: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck: Option<Healthcheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    depends_on: Option<Ordered<Condition>>,
    restart: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_signal: Option<String>,
    stop_grace_period: String,
    deploy: Deploy,
}

#[derive(Serialize)]
struct Healthcheck {
    test: Vec<String>,
    interval: String,
    timeout: String,
    retries: u32,
    start_period: String,
}

#[derive(Serialize)]
struct Condition {
    condition: &'static str,
}

#[derive(Serialize, Default)]
struct Deploy {
    replicas: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<Resources>,
}

#[derive(Serialize)]
struct Resources {
    limits: BTreeMap<String, String>,
}

/// `$` as compose reads it back as `$` (see the module header).
fn literal(text: &str) -> String {
    text.replace('$', "$$")
}

/// `ms` as a compose duration.
fn duration(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// `bytes` as a compose size: g, m or k when whole, else bytes.
pub fn size(bytes: u64) -> String {
    for (unit, size) in [("g", 1u64 << 30), ("m", 1 << 20), ("k", 1 << 10)] {
        if bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// A shell word in single quotes.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The compose file of `specs` (loaded from a file in `dir`, named
/// `source` in its header line), each service running `image`.
pub fn export(
    specs: &[AppSpec],
    dir: &std::path::Path,
    source: &str,
    image: &str,
    notes: &mut Notes,
) -> Result<Output, ExportError> {
    let apps = super::apps(specs, dir, Target::Compose, notes)?;
    let mut services = Vec::new();
    for app in &apps {
        super::unmapped(app, Target::Compose, notes);
        services.push((app.name.clone(), service(app, &apps, image, notes)));
    }
    let file = File {
        services: Ordered(services),
    };
    let text = serde_yaml::to_string(&file)
        .map(|t| super::yaml11_safe(&t))
        .map_err(|e| ExportError::App {
            app: String::new(),
            message: format!("cannot write YAML: {e}"),
        })?;
    Ok(Output {
        files: vec![(
            FILE_NAME.to_string(),
            format!("# {MARKER} compose from {source}\n{text}"),
        )],
    })
}

fn service(app: &App, apps: &[App], image: &str, notes: &mut Notes) -> Service {
    let spec = app.spec;
    let name = &spec.name;
    let command = app.command();
    let mut service = Service {
        image: literal(image),
        entrypoint: std::iter::once(&command.program)
            .chain(&command.leading)
            .map(|s| literal(s))
            .collect(),
        command: command.args.iter().map(|s| literal(s)).collect(),
        working_dir: literal(&app.cwd.to_string_lossy()),
        environment: app
            .container_env()
            .into_iter()
            .map(|(k, v)| (k, literal(&v)))
            .collect(),
        restart: match app.policy {
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "no",
            _ => "always",
        },
        stop_signal: app.stop_signal().map(str::to_string),
        stop_grace_period: duration(app.kill_timeout_ms()),
        deploy: Deploy {
            replicas: app.replicas,
            resources: spec
                .max_memory_bytes
                .filter(|b| *b > 0)
                .map(|bytes| Resources {
                    limits: BTreeMap::from([("memory".to_string(), size(bytes))]),
                }),
        },
        ..Service::default()
    };
    if let Some(port) = app.container_port {
        // One host port per replica: the ports pmd gives the instances on
        // one host (a balanced app's public port and the ones after it).
        let last = u32::from(port) + app.replicas.saturating_sub(1);
        if app.replicas > 1 {
            service.ports.push(format!("{port}-{last}:{port}"));
            if spec.balance.is_some() {
                notes.add(
                    name,
                    "balance",
                    format!(
                        "compose has no balancer: the replicas are published on host ports \
                         {port}-{last}; put a proxy service on {port} in front of them"
                    ),
                );
            }
        } else {
            service.ports.push(format!("{port}:{port}"));
        }
    }
    if let Some((probe, check)) = app.probe(app.container_port) {
        let timing = Timing::of(check);
        let test = match probe {
            Probe::Http(url) => {
                notes.add(
                    name,
                    "health_check",
                    "the healthcheck runs curl in the container: the image needs curl",
                );
                match check.expected_status {
                    Some(code) => format!(
                        "test \"$(curl -sS -o /dev/null -w '%{{http_code}}' {})\" = {code}",
                        sh_quote(&url)
                    ),
                    None => format!("curl -fsS -o /dev/null {} || exit 1", sh_quote(&url)),
                }
            }
            Probe::Tcp(target) => {
                notes.add(
                    name,
                    "health_check",
                    "the healthcheck connects with bash's /dev/tcp: the image needs bash",
                );
                let (host, port) = target.rsplit_once(':').unwrap_or((&target, ""));
                let host = host.trim_start_matches('[').trim_end_matches(']');
                format!(
                    "bash -c {}",
                    sh_quote(&format!("exec 3<>/dev/tcp/{host}/{port}"))
                )
            }
            Probe::Script(script) => script,
        };
        service.healthcheck = Some(Healthcheck {
            test: vec!["CMD-SHELL".into(), literal(&test)],
            interval: duration(timing.interval_ms),
            timeout: duration(timing.timeout_ms),
            retries: timing.retries,
            start_period: duration(timing.start_period_ms),
        });
    }
    let mut depends_on = Vec::new();
    for (dependency, target) in dependencies(app, apps, notes) {
        let condition = match dependency.condition() {
            DependencyCondition::Completed => "service_completed_successfully",
            DependencyCondition::Healthy if target.spec.health_check.is_some() => "service_healthy",
            _ => "service_started",
        };
        depends_on.push((target.name.clone(), Condition { condition }));
    }
    if !depends_on.is_empty() {
        service.depends_on = Some(Ordered(depends_on));
    }
    if !spec.stop_exit_codes.is_empty() {
        notes.add(
            name,
            "stop_exit_codes",
            "not mapped: the restart policy applies whatever the exit code",
        );
    }
    if app.replicas > 1 {
        notes.add(
            name,
            "instances",
            format!(
                "replicas have no index: {} (and PMD_INSTANCE_ID) is not set",
                app.instance_var()
            ),
        );
    }
    if !spec.increment_var.is_empty() {
        notes.add(
            name,
            "increment_var",
            format!(
                "not mapped: every replica gets {} as written (replicas have no index)",
                spec.increment_var
            ),
        );
    }
    service
}
