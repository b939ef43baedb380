//! Kubernetes manifests: per app a Deployment (`instances` → replicas,
//! the command, env, workingDir, probes from the health check, the memory
//! limit from `max_memory_restart`, the kill timeout as the grace period,
//! init containers that wait for `depends_on` Services) and, for an app
//! with a port, a Service in front of its pods. Typed structs serialized
//! with serde_yaml, so quoting is serde's; one file per app.
//!
//! Kubernetes expands `$(VAR)` in a container's command, args and env
//! values; every `$` is written `$$` there so a value stays as written.

use std::collections::BTreeMap;

use pmdaemon_proto::health;
use pmdaemon_proto::v1::DependencyCondition;
use pmdaemon_proto::v1::health_check::Probe;
use pmdaemon_proto::v1::{AppSpec, RestartPolicy};
use serde::Serialize;

use super::{App, ExportError, MARKER, Notes, Output, Target, Timing, dependencies, seconds};

/// The image of the init containers that wait for a dependency's Service
/// (`nc -z` in a loop).
pub const WAIT_IMAGE: &str = "busybox:1.36";

/// The label that ties a Deployment's pods to their Service.
const NAME_LABEL: &str = "app.kubernetes.io/name";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<S> {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    spec: S,
}

#[derive(Serialize)]
struct Metadata {
    name: String,
    labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentSpec {
    replicas: u32,
    selector: Selector,
    template: PodTemplate,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Selector {
    match_labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct PodTemplate {
    metadata: PodMetadata,
    spec: PodSpec,
}

#[derive(Serialize)]
struct PodMetadata {
    labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    restart_policy: &'static str,
    termination_grace_period_seconds: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    init_containers: Vec<Container>,
    containers: Vec<Container>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: String,
    image: String,
    command: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    args: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    working_dir: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    env: Vec<EnvVar>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<ContainerPort>,
    #[serde(skip_serializing_if = "Option::is_none")]
    readiness_probe: Option<ProbeSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    liveness_probe: Option<ProbeSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<Resources>,
}

#[derive(Serialize)]
struct EnvVar {
    name: String,
    value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContainerPort {
    name: &'static str,
    container_port: u16,
    protocol: &'static str,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct ProbeSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    http_get: Option<HttpGet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_socket: Option<TcpSocket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exec: Option<Exec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    initial_delay_seconds: Option<u64>,
    period_seconds: u64,
    timeout_seconds: u64,
    failure_threshold: u32,
}

#[derive(Serialize, Clone)]
struct HttpGet {
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    path: String,
    port: u16,
}

#[derive(Serialize, Clone)]
struct TcpSocket {
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    port: u16,
}

#[derive(Serialize, Clone)]
struct Exec {
    command: Vec<String>,
}

#[derive(Serialize)]
struct Resources {
    limits: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct ServiceSpec {
    selector: BTreeMap<String, String>,
    ports: Vec<ServicePort>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServicePort {
    name: &'static str,
    port: u16,
    target_port: u16,
    protocol: &'static str,
}

/// The port's name in the pod and the Service (an IANA service name).
const PORT_NAME: &str = "app";

/// `$` as Kubernetes reads it back as `$` (see the module header).
fn literal(text: &str) -> String {
    text.replace('$', "$$")
}

/// `bytes` as a Kubernetes quantity: Gi, Mi or Ki when whole, else bytes.
pub fn quantity(bytes: u64) -> String {
    for (unit, size) in [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The manifests of `specs` (loaded from a file in `dir`, named `source`
/// in the header line), running `image`.
pub fn export(
    specs: &[AppSpec],
    dir: &std::path::Path,
    source: &str,
    image: &str,
    notes: &mut Notes,
) -> Result<Output, ExportError> {
    let apps = super::apps(specs, dir, Target::Kubernetes, notes)?;
    let mut output = Output::default();
    for app in &apps {
        super::unmapped(app, Target::Kubernetes, notes);
        let mut text = format!(
            "# {MARKER} kubernetes from {source} (app {}): a Deployment{}.\n",
            app.spec.name,
            if app.container_port.is_some() {
                " and its Service"
            } else {
                ""
            }
        );
        text += &yaml(&deployment(app, &apps, image, notes))?;
        if let Some(port) = app.container_port {
            text += "---\n";
            text += &yaml(&service(app, port))?;
        }
        output.files.push((format!("{}.yaml", app.name), text));
    }
    Ok(output)
}

fn yaml<T: Serialize>(value: &T) -> Result<String, ExportError> {
    serde_yaml::to_string(value)
        .map(|t| super::yaml11_safe(&t))
        .map_err(|e| ExportError::App {
            app: String::new(),
            message: format!("cannot write YAML: {e}"),
        })
}

fn labels(app: &App) -> BTreeMap<String, String> {
    BTreeMap::from([(NAME_LABEL.to_string(), app.name.clone())])
}

fn deployment(app: &App, apps: &[App], image: &str, notes: &mut Notes) -> Manifest<DeploymentSpec> {
    let spec = app.spec;
    let name = &spec.name;
    let command = app.command();
    let mut container = Container {
        name: app.name.clone(),
        image: image.to_string(),
        command: std::iter::once(&command.program)
            .chain(&command.leading)
            .map(|s| literal(s))
            .collect(),
        args: command.args.iter().map(|s| literal(s)).collect(),
        working_dir: Some(app.cwd.to_string_lossy().into_owned()),
        env: app
            .container_env()
            .into_iter()
            .map(|(name, value)| EnvVar {
                name,
                value: literal(&value),
            })
            .collect(),
        ..Container::default()
    };
    if let Some(port) = app.container_port {
        container.ports.push(ContainerPort {
            name: PORT_NAME,
            container_port: port,
            protocol: "TCP",
        });
        if spec.balance.is_some() {
            notes.add(
                name,
                "balance",
                format!(
                    "the Service spreads connections over the pods, as pmd's balancer did; \
                     each pod listens on {port} itself"
                ),
            );
        } else if app.replicas > 1 || app.instance_ports.len() > 1 {
            notes.add(
                name,
                "port",
                format!(
                    "{}: every pod has its own network and listens on {port}; the Service \
                     spreads connections over them",
                    spec.port
                ),
            );
        }
    }
    if let Some((probe, check)) = app.probe(app.container_port) {
        let timing = Timing::of(check);
        let period = seconds(timing.interval_ms, 1, name, "health_check.interval", notes);
        let timeout = seconds(timing.timeout_ms, 1, name, "health_check.timeout", notes);
        let start = seconds(
            timing.start_period_ms,
            0,
            name,
            "health_check.start_period",
            notes,
        );
        let mut readiness = ProbeSpec {
            http_get: None,
            tcp_socket: None,
            exec: None,
            initial_delay_seconds: None,
            period_seconds: period,
            timeout_seconds: timeout,
            failure_threshold: timing.retries,
        };
        match probe {
            Probe::Http(url) => match health::parse_http_url(&url, false) {
                Ok(parts) => {
                    readiness.http_get = Some(HttpGet {
                        host: (!is_loopback(parts.host)).then(|| parts.host.to_string()),
                        path: parts.path.clone(),
                        port: if parts.port == 0 { 80 } else { parts.port },
                    });
                    if check.expected_status.is_some() {
                        notes.add(
                            name,
                            "health_check.expected_status",
                            "not mapped: an httpGet probe passes on any status from 200 to 399",
                        );
                    }
                }
                Err(e) => notes.add(name, "health_check", format!("not mapped: {e}")),
            },
            Probe::Tcp(target) => match health::parse_tcp_target(&target, false) {
                Ok((host, port)) => {
                    readiness.tcp_socket = Some(TcpSocket {
                        host: (!is_loopback(host)).then(|| host.to_string()),
                        port,
                    });
                }
                Err(e) => notes.add(name, "health_check", format!("not mapped: {e}")),
            },
            Probe::Script(script) => {
                readiness.exec = Some(Exec {
                    command: vec!["sh".into(), "-c".into(), script],
                });
            }
        }
        if readiness.http_get.is_some()
            || readiness.tcp_socket.is_some()
            || readiness.exec.is_some()
        {
            let mut liveness = readiness.clone();
            // pmd does not count failures within start_period after a
            // start; readiness may pass early, as pmd's does.
            liveness.initial_delay_seconds = (start > 0).then_some(start);
            container.readiness_probe = Some(readiness);
            container.liveness_probe = Some(liveness);
        }
    }
    if let Some(bytes) = spec.max_memory_bytes.filter(|b| *b > 0) {
        container.resources = Some(Resources {
            limits: BTreeMap::from([("memory".to_string(), quantity(bytes))]),
        });
    }
    if let Some(signal) = app.stop_signal() {
        notes.add(
            name,
            "stop_signal",
            format!(
                "Kubernetes has no stop signal field: a container is stopped with its image's \
                 STOPSIGNAL; put `STOPSIGNAL {signal}` in the image's Dockerfile"
            ),
        );
    }
    if app.policy != RestartPolicy::Always {
        notes.add(
            name,
            "autorestart",
            "a Deployment's pods always restart: run a one-shot app as a Job instead",
        );
    }
    if !spec.stop_exit_codes.is_empty() {
        notes.add(
            name,
            "stop_exit_codes",
            "not mapped: a Deployment's pods restart whatever their exit code",
        );
    }
    if app.replicas > 1 {
        notes.add(
            name,
            "instances",
            format!(
                "the pods of a Deployment have no index: {} (and PMD_INSTANCE_ID) is not set",
                app.instance_var()
            ),
        );
    }
    if !spec.increment_var.is_empty() {
        notes.add(
            name,
            "increment_var",
            format!(
                "not mapped: every pod gets {} as written (pods have no index)",
                spec.increment_var
            ),
        );
    }
    let grace = seconds(app.kill_timeout_ms(), 0, name, "kill_timeout", notes);
    let mut init_containers = Vec::new();
    for (dependency, target) in dependencies(app, apps, notes) {
        if dependency.condition() == DependencyCondition::Completed {
            notes.add(
                name,
                "depends_on",
                format!(
                    "{}: completed: a Deployment never completes; run {} as a Job and apply \
                     {} once it has succeeded",
                    dependency.app, dependency.app, app.name
                ),
            );
            continue;
        }
        let Some(port) = target.container_port else {
            notes.add(
                name,
                "depends_on",
                format!(
                    "{} has no port, so no Service to wait for: start it first",
                    dependency.app
                ),
            );
            continue;
        };
        // A Service accepts connections only once one of its pods is
        // ready (its readiness probe is the dependency's health check).
        init_containers.push(Container {
            // A container name is a DNS label too (63 characters).
            name: super::dns_label(&format!("wait-for-{}", target.name))
                .unwrap_or_else(|| "wait-for-dependency".into()),
            image: WAIT_IMAGE.to_string(),
            command: vec![
                "sh".into(),
                "-c".into(),
                literal(&format!(
                    "until nc -z -w 2 {svc} {port}; do echo waiting for {svc}:{port}; sleep 2; done",
                    svc = target.name
                )),
            ],
            ..Container::default()
        });
    }
    Manifest {
        api_version: "apps/v1",
        kind: "Deployment",
        metadata: Metadata {
            name: app.name.clone(),
            labels: labels(app),
        },
        spec: DeploymentSpec {
            replicas: app.replicas,
            selector: Selector {
                match_labels: labels(app),
            },
            template: PodTemplate {
                metadata: PodMetadata {
                    labels: labels(app),
                },
                spec: PodSpec {
                    restart_policy: "Always",
                    termination_grace_period_seconds: grace,
                    init_containers,
                    containers: vec![container],
                },
            },
        },
    }
}

fn service(app: &App, port: u16) -> Manifest<ServiceSpec> {
    Manifest {
        api_version: "v1",
        kind: "Service",
        metadata: Metadata {
            name: app.name.clone(),
            labels: labels(app),
        },
        spec: ServiceSpec {
            selector: labels(app),
            ports: vec![ServicePort {
                name: PORT_NAME,
                port,
                target_port: port,
                protocol: "TCP",
            }],
        },
    }
}
