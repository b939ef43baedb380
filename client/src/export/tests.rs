//! The mappers on specs as the loader makes them, the names, the systemd
//! quoting and the YAML 1.1 guard.

use std::path::Path;

use super::*;
use crate::ecosystem::{Format, parse};

/// The specs of `yaml` (an ecosystem file), with `--env production`.
fn specs(yaml: &str) -> Vec<AppSpec> {
    let parsed = parse("e.yaml", Format::Yaml, yaml).expect("a valid file");
    parsed
        .apps
        .iter()
        .map(|a| a.spec_for(Some("production")))
        .collect()
}

const FILE: &str = "apps:
  - name: db
    script: /bin/sleep
    args: ['1000']
    port: 5432
    health_check: {tcp: '127.0.0.1:5432'}
  - name: migrate
    script: /bin/true
    autorestart: false
  - name: Web_API
    script: /usr/bin/python3
    args: [-m, http.server]
    cwd: /srv/web
    instances: 3
    port: 3000-3002
    max_memory_restart: 200M
    kill_timeout: 1500
    stop_signal: SIGINT
    stop_exit_codes: [3]
    watch: true
    env: {GREETING: 'a \"b\" 100% $HOME', FLAG: 'on'}
    env_production: {MODE: prod}
    health_check:
      http: http://127.0.0.1:{port}/health
      interval: 2s
      timeout: 500ms
      retries: 4
      start_period: 10s
    depends_on: [{db: healthy}, {migrate: completed}]
";

fn text_of<'o>(output: &'o Output, name: &str) -> &'o str {
    output
        .files
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t.as_str())
        .unwrap_or_else(|| panic!("no {name} in {:?}", output.files))
}

fn all_notes(notes: &Notes) -> String {
    notes.lines(&["db", "migrate", "Web_API"]).join("\n")
}

#[test]
fn kubernetes_maps_replicas_probes_limits_and_dependencies() {
    let specs = specs(FILE);
    let mut notes = Notes::default();
    let out =
        kubernetes::export(&specs, Path::new("/srv"), "e.yaml", "reg/app:1", &mut notes).unwrap();
    let names: Vec<&str> = out.files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["db.yaml", "migrate.yaml", "web-api.yaml"]);
    let text = text_of(&out, "web-api.yaml");
    assert!(
        text.starts_with(&format!("# {MARKER} kubernetes")),
        "{text}"
    );
    let docs: Vec<serde_yaml::Value> = text
        .split("\n---\n")
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect();
    let deployment = &docs[0];
    assert_eq!(deployment["kind"], "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 2);
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "reg/app:1");
    assert_eq!(container["workingDir"], "/srv/web");
    assert_eq!(container["command"][0], "/usr/bin/python3");
    assert_eq!(container["args"][1], "http.server");
    assert_eq!(container["resources"]["limits"]["memory"], "200Mi");
    let probe = &container["readinessProbe"];
    assert_eq!(probe["httpGet"]["path"], "/health");
    assert_eq!(probe["httpGet"]["port"], 3000);
    assert_eq!(probe["periodSeconds"], 2);
    assert_eq!(probe["timeoutSeconds"], 1);
    assert_eq!(probe["failureThreshold"], 4);
    assert_eq!(container["livenessProbe"]["initialDelaySeconds"], 10);
    let env: Vec<(String, String)> = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Sorted; `$` doubled against Kubernetes' $(VAR) expansion; `on`
    // stays a string.
    assert_eq!(
        env,
        [
            ("FLAG".into(), "on".into()),
            ("GREETING".into(), "a \"b\" 100% $$HOME".into()),
            ("MODE".into(), "prod".into()),
            ("PORT".into(), "3000".into()),
        ]
    );
    assert!(text.contains("value: 'on'"), "{text}");
    // db has a Service to wait for; migrate is a note.
    assert_eq!(pod["initContainers"][0]["name"], "wait-for-db");
    assert_eq!(docs[1]["kind"], "Service");
    assert_eq!(docs[1]["spec"]["ports"][0]["port"], 3000);
    let said = all_notes(&notes);
    for expected in [
        "app Web_API: `name`: Kubernetes names allow only",
        "app Web_API: `watch`: not mapped",
        "app Web_API: `stop_signal`: Kubernetes has no stop signal field",
        "app Web_API: `stop_exit_codes`: not mapped",
        "app Web_API: `depends_on`: migrate: completed",
        "app Web_API: `kill_timeout`: 1.5s is not a whole number of seconds",
        "app migrate: `autorestart`",
    ] {
        assert!(said.contains(expected), "{expected:?} not in\n{said}");
    }
}

#[test]
fn systemd_writes_a_template_target_and_drop_ins() {
    let specs = specs(FILE);
    let mut notes = Notes::default();
    let out = systemd::export(&specs, Path::new("/srv"), "e.yaml", &mut notes).unwrap();
    let names: Vec<&str> = out.files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "db.service",
            "migrate.service",
            "Web_API@.service",
            "Web_API.target",
            "Web_API@0.service.d/instance.conf",
            "Web_API@1.service.d/instance.conf",
            "Web_API@2.service.d/instance.conf",
        ]
    );
    let unit = text_of(&out, "Web_API@.service");
    for line in [
        "After=network.target db.service migrate.service",
        "Requires=db.service migrate.service",
        "PartOf=Web_API.target",
        "ExecStart=\"/usr/bin/python3\" \"-m\" \"http.server\"",
        "WorkingDirectory=/srv/web",
        "Environment=\"GREETING=a \\\"b\\\" 100%% $HOME\"",
        "Environment=\"NODE_APP_INSTANCE=%i\"",
        "Restart=always",
        "RestartPreventExitStatus=3",
        "TimeoutStopSec=1500ms",
        "KillSignal=SIGINT",
        "MemoryMax=209715200",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line:?} not in\n{unit}");
    }
    assert!(
        text_of(&out, "Web_API.target")
            .contains("Wants=Web_API@0.service Web_API@1.service Web_API@2.service")
    );
    assert!(
        text_of(&out, "Web_API@2.service.d/instance.conf").contains("Environment=\"PORT=3002\"")
    );
    // The job another app waits to complete is a oneshot.
    let job = text_of(&out, "migrate.service");
    assert!(job.contains("Type=oneshot\nRemainAfterExit=yes\n"), "{job}");
    assert!(job.contains("Restart=no\n"), "{job}");
    let said = all_notes(&notes);
    assert!(
        said.contains("app db: `health_check`: not mapped"),
        "{said}"
    );
    assert!(
        said.contains("app Web_API: `depends_on`: db: healthy"),
        "{said}"
    );
}

#[test]
fn compose_maps_replicas_healthcheck_and_conditions() {
    let specs = specs(FILE);
    let mut notes = Notes::default();
    let out =
        compose::export(&specs, Path::new("/srv"), "e.yaml", "reg/app:1", &mut notes).unwrap();
    let text = text_of(&out, compose::FILE_NAME);
    let file: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
    let order: Vec<&str> = file["services"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(order, ["db", "migrate", "web-api"], "file order");
    let web = &file["services"]["web-api"];
    assert_eq!(web["deploy"]["replicas"], 3);
    assert_eq!(web["deploy"]["resources"]["limits"]["memory"], "200m");
    assert_eq!(web["ports"][0], "3000-3002:3000");
    assert_eq!(web["environment"]["GREETING"], "a \"b\" 100% $$HOME");
    assert_eq!(web["stop_signal"], "SIGINT");
    assert_eq!(web["stop_grace_period"], "1500ms");
    assert_eq!(web["healthcheck"]["interval"], "2s");
    assert_eq!(web["healthcheck"]["timeout"], "500ms");
    assert_eq!(web["healthcheck"]["retries"], 4);
    assert_eq!(web["healthcheck"]["start_period"], "10s");
    assert!(
        web["healthcheck"]["test"][1]
            .as_str()
            .unwrap()
            .contains("'http://127.0.0.1:3000/health'")
    );
    assert_eq!(web["depends_on"]["db"]["condition"], "service_healthy");
    assert_eq!(
        web["depends_on"]["migrate"]["condition"],
        "service_completed_successfully"
    );
    assert_eq!(file["services"]["migrate"]["restart"], "no");
    assert!(
        text.contains("restart: 'no'"),
        "YAML 1.1 reads a bare no as false:\n{text}"
    );
}

#[test]
fn names_become_labels_and_clashes_are_refused() {
    assert_eq!(dns_label("Web_API").as_deref(), Some("web-api"));
    assert_eq!(dns_label("my  api.v2").as_deref(), Some("my-api-v2"));
    assert_eq!(dns_label("--x--").as_deref(), Some("x"));
    assert_eq!(dns_label("___"), None);
    assert_eq!(dns_label(&"a".repeat(70)).map(|l| l.len()), Some(63));
    assert_eq!(unit_name("my api").as_deref(), Some("my_api"));
    let specs =
        specs("apps:\n  - {name: Api, script: /bin/true}\n  - {name: api, script: /bin/true}\n");
    let err = kubernetes::export(&specs, Path::new("/"), "e.yaml", "i", &mut Notes::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("apps Api and api both become \"api\""),
        "{err}"
    );
}

#[test]
fn systemd_quoting_escapes_what_systemd_expands() {
    use systemd::{escape_specifiers, quote_environment, quote_exec};
    assert_eq!(quote_exec("plain"), "\"plain\"");
    assert_eq!(quote_exec("a b"), "\"a b\"");
    assert_eq!(quote_exec("$HOME ${X}"), "\"$$HOME $${X}\"");
    assert_eq!(quote_exec("50%"), "\"50%%\"");
    assert_eq!(quote_exec("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
    assert_eq!(quote_exec("a\nb\tc\u{1}"), "\"a\\nb\\tc\\x01\"");
    // No variable expansion in Environment=: `$` stays.
    assert_eq!(
        quote_environment("K", "a b \"c\" 100% $X"),
        "\"K=a b \\\"c\\\" 100%% $X\""
    );
    assert_eq!(escape_specifiers("/srv/%h"), "/srv/%%h");
}

#[test]
fn yaml11_words_and_numbers_are_quoted_and_nothing_else() {
    let text = "a: on\nb:\n- yes\n- plain\n- -c\nc: 12:30\nd: 2026-01-01\ne: |-\n  on\n  no\nf: off\ng: http://x:1/\nh: '1000'\nON: 1\nk: [3, -2.5e3, 0x1f, true, 1_000]\ni: -1.5\nj: 1.2.3\n";
    assert_eq!(
        yaml11_safe(text),
        "a: 'on'\nb:\n- 'yes'\n- plain\n- -c\nc: '12:30'\nd: '2026-01-01'\ne: |-\n  on\n  no\nf: 'off'\ng: http://x:1/\nh: '1000'\n'ON': 1\nk: [3, -2.5e3, 0x1f, true, 1_000]\ni: -1.5\nj: '1.2.3'\n"
    );
}

#[test]
fn a_script_file_runs_with_its_shebang_or_extension() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.py"), "#!/usr/bin/env python3 -u\n").unwrap();
    std::fs::write(dir.path().join("b.js"), "console.log(1)\n").unwrap();
    let yaml = "apps:\n  - {name: a, script: ./a.py, args: [x]}\n  - {name: b, script: b.js, interpreter_args: [--inspect]}\n  - {name: c, script: sleep}\n";
    let specs = specs(yaml);
    let mut notes = Notes::default();
    let commands: Vec<Command> = specs
        .iter()
        .map(|s| App::new(s, dir.path(), s.name.clone(), &mut notes).command())
        .collect();
    let root = dir.path().to_string_lossy();
    assert_eq!(commands[0].program, "/usr/bin/env");
    assert_eq!(
        commands[0].leading,
        ["python3 -u".to_string(), format!("{root}/a.py")]
    );
    assert_eq!(commands[0].args, ["x"]);
    assert_eq!(commands[1].program, "node");
    assert_eq!(
        commands[1].leading,
        ["--inspect".to_string(), format!("{root}/b.js")]
    );
    assert_eq!(commands[2].program, "sleep");
    assert!(commands[2].leading.is_empty());
}

#[test]
fn instances_max_is_this_machines_count_with_a_note() {
    let specs = specs("apps:\n  - {name: a, script: /bin/true, instances: max}\n");
    let mut notes = Notes::default();
    let app = App::new(&specs[0], Path::new("/"), "a".into(), &mut notes);
    assert!(app.replicas >= 1);
    assert!(
        all_notes(&notes).contains("max means one per CPU"),
        "{notes:?}"
    );
}
