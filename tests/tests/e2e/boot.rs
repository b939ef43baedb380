//! Start at boot and shell comfort: `pmd startup` units checked by
//! `systemd-analyze verify`, `--install`/`unstartup` against a fake
//! systemctl in a temp unit directory (never the real /etc/systemd or
//! ~/.config), the daemon's sd_notify messages on a datagram socket the
//! test binds, completions (static and dynamic, run in bash) and man pages.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;

use pmdaemon_tests::*;

use crate::said;

/// `systemd-analyze`, or None (printed) where it is missing.
fn systemd_analyze() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("systemd-analyze"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        eprintln!("skipped: systemd-analyze is not installed");
    }
    found
}

/// A fake `systemctl` first on PATH: records its argv, one call a line.
fn fake_systemctl(d: &TestDaemon) -> (String, PathBuf) {
    let bin = d.work().join("fakebin");
    let log = d.work().join("systemctl.log");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("systemctl");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$*\" >> '{}'\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (path, log)
}

/// The one `*.service` file of `dir`.
fn only_unit(dir: &Path) -> PathBuf {
    let units: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .collect();
    assert_eq!(units.len(), 1, "{units:?}");
    units[0].clone()
}

/// The user and the system unit `pmd startup` prints pass
/// `systemd-analyze verify`, with ExecStart the pmdaemond beside pmd.
#[test]
fn printed_units_pass_systemd_analyze_verify() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let d = TestDaemon::new_stopped();
    for scope in ["--user", "--system"] {
        let out = d.pmd_code(0, &["startup", "systemd", scope]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains("Type=notify\n"), "{text}");
        assert!(
            text.contains(&format!("ExecStart={}\n", binaries().pmdaemond.display())),
            "{text}"
        );
        assert!(
            text.contains(&format!("PMDAEMON_HOME={}\"", d.home().display())),
            "{text}"
        );
        assert_eq!(text.contains("\nUser="), scope == "--system", "{text}");
        let file = d.work().join(format!("pmdaemond-verify{scope}.service"));
        std::fs::write(&file, &text).unwrap();
        let verify = Command::new(&analyze)
            .arg("verify")
            .arg(&file)
            .output()
            .unwrap();
        assert!(verify.status.success(), "{scope}: {}", said(&verify));
    }
    let refused = d.pmd_code(2, &["startup", "upstart"]);
    assert!(said(&refused).contains("not supported; systemd only"));
}

/// --install writes the unit (content, 0644) into --unit-dir and calls
/// daemon-reload and enable; a symbolic link planted at the unit path is
/// refused and nothing is written through it; unstartup disables and
/// removes it, and a second unstartup says there is nothing to remove.
#[test]
fn install_and_unstartup_with_a_fake_systemctl() {
    let d = TestDaemon::new_stopped();
    let (path, log) = fake_systemctl(&d);
    let units = d.work().join("units");
    let units_arg = units.to_str().unwrap();
    let run = |args: &[&str], code: i32| {
        let out = run_with_timeout(d.pmd_command(args).env("PATH", &path), PMD_TIMEOUT);
        assert_eq!(out.status.code(), Some(code), "{args:?}\n{}", said(&out));
        out
    };
    run(
        &[
            "startup",
            "systemd",
            "--user",
            "--install",
            "--unit-dir",
            units_arg,
        ],
        0,
    );
    let unit = only_unit(&units);
    let name = unit.file_name().unwrap().to_str().unwrap().to_owned();
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.starts_with("# Written by `pmd startup`"), "{text}");
    assert!(text.contains(&format!("PMDAEMON_HOME={}\"", d.home().display())));
    assert_eq!(
        std::fs::metadata(&unit).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(calls.contains("--user daemon-reload\n"), "{calls}");
    assert!(
        calls.contains(&format!("--user enable {name}\n")),
        "{calls}"
    );

    // A link planted where the unit goes: refused, its target untouched.
    let planted = d.work().join("planted");
    std::fs::create_dir_all(&planted).unwrap();
    let victim = d.work().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::os::unix::fs::symlink(&victim, planted.join(&name)).unwrap();
    let out = run(
        &[
            "startup",
            "--user",
            "--install",
            "--unit-dir",
            planted.to_str().unwrap(),
        ],
        1,
    );
    assert!(said(&out).contains("symbolic link"), "{}", said(&out));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

    run(
        &["unstartup", "systemd", "--user", "--unit-dir", units_arg],
        0,
    );
    assert!(!unit.exists(), "the unit is still there");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls.contains(&format!("--user disable {name}\n")),
        "{calls}"
    );
    let again = run(&["unstartup", "--user", "--unit-dir", units_arg], 0);
    assert!(
        said(&again).contains("nothing to remove"),
        "{}",
        said(&again)
    );
}

/// Without systemctl on PATH, --install fails and writes nothing.
#[test]
fn install_without_systemctl_writes_nothing() {
    let d = TestDaemon::new_stopped();
    let units = d.work().join("units");
    let empty = d.work().join("nobin");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run_with_timeout(
        d.pmd_command(&[
            "startup",
            "--user",
            "--install",
            "--unit-dir",
            units.to_str().unwrap(),
        ])
        .env("PATH", &empty),
        PMD_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        said(&out).contains("systemctl is not on PATH"),
        "{}",
        said(&out)
    );
    assert!(!units.exists() || std::fs::read_dir(&units).unwrap().count() == 0);
}

/// The real pmdaemond with NOTIFY_SOCKET: READY=1 arrives and the daemon
/// answers then; an app it starts does not see NOTIFY_SOCKET; SIGTERM
/// sends STOPPING=1.
#[test]
fn the_daemon_speaks_sd_notify_and_apps_do_not_inherit_it() {
    let mut d = TestDaemon::new_stopped();
    let socket_path = d.home().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(WAIT.get())).unwrap();
    d.set_daemon_env("NOTIFY_SOCKET", socket_path.to_str().unwrap());
    d.spawn_daemon();
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("READY=1 within the wait");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(ready.contains("READY=1\n"), "{ready}");
    assert!(
        ready.contains(&format!("MAINPID={}\n", d.daemon_pid())),
        "{ready}"
    );
    d.pmd_ok(&["ping"]);

    let env_file = d.work().join("app-env.txt");
    d.write_script(
        "envdump.sh",
        &format!(
            "env > '{}.tmp' && mv '{0}.tmp' '{0}'\nexec sleep 1000",
            env_file.display()
        ),
    );
    d.pmd_ok(&["start", "./envdump.sh", "--name", "envdump"]);
    wait_for("the app's environment dump", WAIT, || env_file.exists());
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(env.contains("PMD_APP_NAME=envdump"), "{env}");
    assert!(!env.contains("NOTIFY_SOCKET"), "{env}");

    let status = d.stop_daemon();
    assert!(status.success(), "{status}");
    let n = socket.recv(&mut buf).expect("STOPPING=1 after SIGTERM");
    assert_eq!(&buf[..n], b"STOPPING=1\n");
}

/// Completions generate for every shell and name the subcommands; bash's
/// static script completes `pmd sto` to `stop`.
#[test]
fn completion_scripts_for_every_shell() {
    let d = TestDaemon::new_stopped();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = d.pmd_ok(&["completions", shell]);
        for verb in ["stop", "startup", "completions"] {
            assert!(script.contains(verb), "{shell}: no {verb}");
        }
    }
    let script = d.work().join("pmd.bash");
    std::fs::write(&script, d.pmd_ok(&["completions", "bash"])).unwrap();
    let out = bash_complete(
        &d,
        &format!("source '{}'", script.display()),
        "_pmd",
        &["pmd", "sto"],
    );
    assert_eq!(out.trim(), "stop", "{out}");
}

/// Runs a bash completion function on `words` and prints COMPREPLY.
fn bash_complete(d: &TestDaemon, setup: &str, function: &str, words: &[&str]) -> String {
    let words_q: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let pmd = binaries().pmd.display().to_string();
    let program = format!(
        "{setup}\nCOMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{line}'; \
         COMP_POINT=${{#COMP_LINE}}; COMP_TYPE=9\n{function} pmd '{cur}' '{prev}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        words = words_q.join(" "),
        cword = words.len() - 1,
        line = words.join(" "),
        cur = words[words.len() - 1],
        prev = words[words.len().saturating_sub(2)],
    );
    let dir = Path::new(&pmd).parent().unwrap().display().to_string();
    let cmd = d.pmd_command(&[]);
    let mut bash = Command::new("bash");
    bash.arg("-c").arg(program);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => bash.env(k, v),
            None => bash.env_remove(k),
        };
    }
    let path = format!("{dir}:{}", std::env::var("PATH").unwrap_or_default());
    bash.env("PATH", path).current_dir(d.work());
    let out = run_with_timeout(&mut bash, PMD_TIMEOUT);
    assert!(out.status.success(), "{}", said(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The dynamic completion (`source <(COMPLETE=bash pmd)`) completes app
/// names from the running daemon: `pmd stop w<TAB>` gives `web`.
#[test]
fn dynamic_completion_names_the_daemons_apps() {
    let d = TestDaemon::start();
    d.pmd_ok(&["start", "sleep", "--name", "web", "--", "1000"]);
    d.pmd_ok(&["start", "sleep", "--name", "api", "--", "1000"]);
    let out = bash_complete(
        &d,
        "source <(COMPLETE=bash pmd)",
        "_clap_complete_pmd",
        &["pmd", "stop", "w"],
    );
    assert_eq!(out.trim(), "web", "{out}");
    let out = bash_complete(
        &d,
        "source <(COMPLETE=bash pmd)",
        "_clap_complete_pmd",
        &["pmd", "sto"],
    );
    assert_eq!(out.trim(), "stop", "{out}");
}

/// `pmd man --dir` writes pmd.1 and one page per subcommand with its
/// options; `man -l` renders them where man is installed.
#[test]
fn man_pages_name_the_options() {
    let d = TestDaemon::new_stopped();
    assert!(d.pmd_ok(&["man"]).contains(".TH pmd 1"));
    let dir = d.work().join("man");
    d.pmd_ok(&["man", "--dir", dir.to_str().unwrap()]);
    let start = std::fs::read_to_string(dir.join("pmd-start.1")).unwrap();
    assert!(start.contains("kill\\-timeout"), "{start}");
    let startup = std::fs::read_to_string(dir.join("pmd-startup.1")).unwrap();
    assert!(startup.contains("unit\\-dir"), "{startup}");
    assert!(dir.join("pmd.1").is_file() && dir.join("pmd-token-create.1").is_file());
    if Command::new("man").arg("--version").output().is_err() {
        eprintln!("skipped: man is not installed");
        return;
    }
    let out = Command::new("man")
        .args(["-l", "-P", "cat"])
        .arg(dir.join("pmd-start.1"))
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--kill-timeout"));
}

/// The documented units of deploy/systemd/ pass `systemd-analyze verify`
/// (ExecStart pointed at the built daemon, which verify needs to exist).
#[test]
fn deploy_units_pass_systemd_analyze_verify() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let d = TestDaemon::new_stopped();
    let daemon = binaries().pmdaemond.display().to_string();
    for (file, installed) in [
        ("pmdaemond.service", "pmdaemond.service"),
        ("pmdaemond@.service", "pmdaemond@root.service"),
    ] {
        let text = std::fs::read_to_string(repo_root().join("deploy/systemd").join(file)).unwrap();
        assert!(text.contains("Type=notify\n"), "{file}");
        let text = text
            .replace("%h/.cargo/bin/pmdaemond", &daemon)
            .replace("/usr/local/bin/pmdaemond", &daemon);
        let path = d.work().join(installed);
        std::fs::write(&path, text).unwrap();
        let verify = Command::new(&analyze)
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        assert!(verify.status.success(), "{file}: {}", said(&verify));
    }
}
