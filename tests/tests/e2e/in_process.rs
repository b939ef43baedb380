//! The daemon in-process: `pmdaemond::prepare_home`, `bind` and `run` on a
//! tokio runtime of this test, with a oneshot channel as the shutdown
//! future (mini-redis's `start_server` pattern), driven over raw gRPC. The
//! one test that does not run the built `pmdaemond`: it shows that the
//! library's entry points are the whole daemon (a real app is started and
//! stopped for real) and that `run` returns once its shutdown future
//! resolves.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pmdaemon_tests::*;

/// SIGKILLs whatever the apps of `home` left running when the test ends,
/// even when it panics: apps carry `PMDAEMON_HOME`, this process does not.
struct KillOnDrop(PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill_home_processes(&self.0);
    }
}

/// The `ListProcesses` entry of app `name`.
fn listed(
    runtime: &tokio::runtime::Runtime,
    client: &mut ProcessManagerClient<Channel>,
    name: &str,
) -> Option<v1::ProcessInfo> {
    let list = runtime
        .block_on(client.list_processes(v1::ListProcessesRequest {}))
        .expect("ListProcesses")
        .into_inner();
    list.processes.into_iter().find(|p| p.name == name)
}

#[test]
fn run_serves_until_its_shutdown_future_resolves_then_stops_the_apps() {
    // Panics on a bad PMDAEMON_TEST_TIMEOUT_SCALE before any app runs.
    scale();
    let dir = tempfile::Builder::new()
        .prefix("pmd-inproc-")
        .tempdir()
        .expect("temp dir");
    // `prepare_home` creates the home itself (mode 0700).
    let home = dir.path().join("home");
    let _cleanup = KillOnDrop(home.clone());
    // `run` spawns tasks (the server, the state writer, the supervisor's)
    // that go on while this thread waits outside the runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    // The lock is held for as long as the daemon runs, as in pmdaemond's
    // main: it is what makes this daemon the only one of its home.
    let lock = pmdaemond::prepare_home(&home).expect("prepare the home");
    let listener = runtime
        .block_on(async { pmdaemond::bind(&home, &lock) })
        .expect("bind the socket");
    let socket = pmdaemon_proto::socket_path(&home);
    assert!(socket.exists(), "no socket at {}", socket.display());
    let config = pmdaemond::Config {
        home: home.clone(),
        monitor_interval: Duration::from_secs(1),
        cgroups: true,
        log_reserve: pmdaemond::LogReserve::new(pmdaemond::LogReserveSetting::Default),
        remote: pmdaemond::RemoteOptions::default(),
        notify: None,
    };
    let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = runtime.spawn(pmdaemond::run(listener, config, async move {
        // A dropped sender (a panic below) shuts the daemon down too.
        let _ = shutdown_rx.await;
    }));

    let mut client = runtime
        .block_on(connect(&socket))
        .expect("connect to the in-process daemon");
    let cwd = dir.path().to_str().expect("UTF-8 temp dir").to_owned();
    runtime
        .block_on(client.start_process(v1::StartProcessRequest {
            spec: Some(v1::AppSpec {
                name: "inproc".into(),
                script: "sleep".into(),
                args: vec!["100000".into()],
                ..Default::default()
            }),
            caller_cwd: cwd,
            ..Default::default()
        }))
        .expect("StartProcess");
    let pid = wait_for_value("inproc online with a pid", WAIT, || {
        listed(&runtime, &mut client, "inproc")
            .filter(|p| p.state == v1::ProcessState::Online as i32)
            .and_then(|p| p.pid)
    });
    assert!(pid_alive(pid), "pid {pid} is not running");
    let argv = cmdline_of(pid);
    assert!(
        argv.len() == 2 && argv[0].ends_with("sleep") && argv[1] == "100000",
        "pid {pid} runs {argv:?}"
    );
    assert_eq!(
        env_of(pid).get("PMDAEMON_HOME").map(Path::new),
        Some(home.as_path())
    );
    drop(client);

    shutdown
        .send(())
        .expect("the daemon still awaits its shutdown future");
    let ended = runtime
        .block_on(async { tokio::time::timeout(WAIT.get(), daemon).await })
        .unwrap_or_else(|_| panic!("run did not return within {WAIT:?} of its shutdown"))
        .expect("the run task panicked");
    assert!(ended.is_ok(), "run returned {ended:?}");
    assert!(!pid_alive(pid), "the app (pid {pid}) outlived its daemon");
    assert!(
        !socket.exists(),
        "the socket {} was left behind",
        socket.display()
    );
    // Another daemon may take the home now.
    drop(lock);
    pmdaemond::prepare_home(&home).expect("the home is free again");
}
