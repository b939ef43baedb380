//! The end-to-end harness: a [`TestDaemon`] runs the real `pmdaemond` on its
//! own temporary `PMDAEMON_HOME` and drives it with the real `pmd` (or raw
//! gRPC over the Unix socket, see [`connect`]). Everything is re-exported
//! here, so a test needs only `use pmdaemon_tests::*`.
//!
//! Layout, one module per concern:
//! - `binaries`: which `pmdaemond` and `pmd` are under test ([`binaries`]):
//!   those next to the running test executable (`target/<host-tuple>/debug/`),
//!   never from `PATH`, refused when older than their sources; build them
//!   first with `cargo build --workspace`;
//! - `daemon`: [`TestDaemon`]. Dropping it stops its daemon (SIGTERM, then
//!   SIGKILL after [`DAEMON_STOP_TIMEOUT`]) and then SIGKILLs every process
//!   whose environment carries this daemon's `PMDAEMON_HOME` (apps inherit
//!   it), so no process survives a test, even one that panicked or
//!   `kill -9`ed its daemon. [`TestDaemon::start_with_args`] passes extra
//!   flags to `pmdaemond`, e.g. [`FAST_MONITOR`];
//! - `wait`: deadlines and polling. There are no fixed sleeps: [`wait_for`]
//!   polls a condition every 20 ms until a deadline and panics naming what
//!   it waited for. Every deadline derives from [`WAIT`] (30 s);
//! - `events`: [`TestDaemon::events`] runs `pmd events -o json` in the
//!   background and hands its lines over as JSON ([`EventStream`]); it only
//!   returns once the stream is seen to be live, so no event is missed;
//! - `command`: running a command under a deadline ([`run_with_timeout`]);
//! - `output`: reading what `pmd` printed ([`parse_json`], [`pid_of`]);
//! - `grpc`: raw gRPC clients over the socket ([`connect`], [`block_on`]);
//! - `procs`: apps as the kernel sees them: [`env_of`], [`cmdline_of`] and
//!   [`cwd_of`] read `/proc`, so a test checks what a process really got;
//!   [`pid_alive`], [`pids_with_home`];
//! - `fixtures`: [`HTTP_SERVER`], run by python3, answers a GET with its
//!   instance index, pid and port, read back with [`http_get`];
//!   [`HEALTH_SERVER`] is the app of the health-check tests (late to
//!   listen, failing on demand);
//! - `disk`: [`fill_disk`] fills a file system to the last byte (a home on
//!   its own tmpfs, `TestDaemon::new_stopped_on_tmpfs`), [`free_bytes`];
//! - `ports`: [`free_ports`] gives each test its own block of free TCP
//!   ports (tests run in parallel);
//! - `remote`: clients of the TCP listener: gRPC over TCP or TLS with a
//!   bearer token ([`call_empty`] calls any method), raw HTTP/1.1
//!   ([`http_raw`]), the admin token ([`admin_token`]), a test CA
//!   ([`TestCa`]); the REST gateway ([`Rest`], NDJSON streams read line by
//!   line with [`NdjsonLines`]) and its WebSockets ([`websocket`],
//!   [`ws_next`]; over HTTP/2: [`h2_connect`], [`websocket_h2`]);
//! - `remote_cli`: [`RemoteClient`], the real `pmd` with its own empty
//!   home and config driving a daemon over `--host` (it checks that no
//!   local daemon was started instead), and [`LineStream`] for the stdout
//!   of a long-running `pmd` (`logs -f`, `events`);
//! - `tools`: tools from other ecosystems installed from lock files in
//!   `tests/contract/` into the target dir and reused while the lock is
//!   unchanged: buf from npm ([`npm_tools`]), schemathesis from PyPI
//!   ([`python_venv`]); [`repo_root`], [`target_dir`], [`output_text`].
//!
//! Environment:
//! - `PMDAEMON_TEST_TIMEOUT_SCALE` (a float, default 1) multiplies every
//!   deadline of the harness, for a slow or loaded machine, e.g.
//!   `PMDAEMON_TEST_TIMEOUT_SCALE=3 cargo test -p pmdaemon-tests`. Durations
//!   that are part of a scenario (`--kill-timeout 1s`, `--wait-timeout 2s`
//!   meant to expire, a bound that must stay below one of the daemon's own
//!   defaults) are not scaled;
//! - `PMDAEMON_TEST_KEEP` (any value) keeps each test's `PMDAEMON_HOME`
//!   instead of removing it, and prints where it is.

mod binaries;
mod command;
mod daemon;
mod disk;
mod events;
mod fixtures;
mod grpc;
mod output;
mod ports;
mod procs;
mod remote;
mod remote_cli;
mod tools;
mod wait;

pub use binaries::{Binaries, binaries};
pub use command::{arg, run_with_timeout, spawn_retrying_busy};
pub use daemon::{FAST_MONITOR, TestDaemon};
pub use disk::{fill_disk, free_bytes};
pub use events::{EVENTS_SYNC_APP, EventStream, kind_of};
pub use fixtures::{
    HEALTH_SERVER, HTTP_SERVER, HttpReply, http_get, node, now_ns, python3, wait_http,
};
pub use grpc::{Channel, ProcessManagerClient, block_on, connect, connect_channel, v1};
pub use output::{describe_output, parse_json, pid_of, pids_of, port_of};
pub use ports::{free_ports, port_free};
pub use procs::{
    cgroups_usable, cmdline_of, cwd_of, env_of, exe_of, home_cgroup_dir, is_root,
    kill_home_processes, kill_homes_under, pid_alive, pids_with_home, ppid_of, run_cgroups,
    zombie_children,
};
pub use remote::{
    H2, H2WebSocket, NdjsonLines, Rest, RestReply, TestCa, WebSocket, admin_token, call_empty,
    h2_connect, http_raw, http_raw_with_body, read_until_closed, tcp_channel, tls_channel,
    websocket, websocket_h2, ws_next,
};
pub use remote_cli::{LineStream, RemoteClient, is_private_file};
pub use tools::{
    npm, npm_package, npm_tools, output_text, python_package_venv, python_venv, repo_root,
    target_dir,
};
pub use wait::{
    DAEMON_STOP_TIMEOUT, PMD_TIMEOUT, TIMEOUT_SCALE_ENV, Timeout, WAIT, scale, wait_child,
    wait_for, wait_for_value,
};
