//! End-to-end tests of pmdaemon: each test starts the real `pmdaemond` on its
//! own temporary `PMDAEMON_HOME` (see `pmdaemon_tests::TestDaemon`) and drives
//! it with the real `pmd` or raw gRPC, with real processes.
//!
//! Run with `cargo build --workspace && cargo test -p pmdaemon-tests`.
//!
//! Modules, by concern:
//! - `lifecycle`: start, stop, restart, delete, list/describe output;
//! - `restart_policy`: crash loops, backoff, `errored`, autorestart modes;
//! - `logs`: log files, follow, rotation, raw bytes, missed lines;
//! - `persistence`: daemon restarts and crashes, save/resurrect, state.json;
//! - `full_disk`: a change whose state cannot be written fails and is
//!   undone; the state reserve; state.json.bak;
//! - `validation`: bad input refused with nothing created, exit codes;
//! - `security`: socket permissions, peers of another uid, secrets;
//! - `log_safety`: custom log directories (owners, links, the home),
//!   held directory handles, idle log files closed, the disk reserve;
//! - `services`: gRPC health and reflection for generic clients;
//! - `contract`: `buf lint` and `buf breaking` of `proto/` against its
//!   committed baseline (buf from npm, pinned in `tests/contract/`), and
//!   proof that the check refuses a removed or renumbered field;
//! - `ecosystem`: ecosystem files (YAML, JSON, JS), `--env`, `--only`;
//! - `export`: `pmd export kubernetes|systemd|compose` checked by
//!   kubernetes-validate (PyPI, pinned in `tests/export/`), `systemd-analyze
//!   verify` and the compose-spec schema (npm, pinned there too); safe
//!   writes into `-o DIR`; `deploy/kubernetes/` validated;
//! - `pm2_files`: PM2's files as PM2 takes them: every key accepted or
//!   warned about, JSON5, one app alone, directory and command-line
//!   scripts, spaced names, `pmd validate` and `--strict`;
//! - `pm2_logs`: PM2's log options: `log_date_format`, `merge_logs`,
//!   `log_file`, `log_type: json`, `NULL`, `~` and missing log directories;
//! - `pm2_runtime`: PM2's runtime keys: `wait_ready`/`listen_timeout` and
//!   `shutdown_with_message` over the Node IPC channel, `instance_var`,
//!   `increment_var`, `stop_exit_codes`, the descriptors an app gets;
//! - `pm2_verbs`: PM2's environment rules (captured at start,
//!   `--update-env`, values hidden from `describe` and read-only tokens),
//!   `env`, `reset`, `send-signal`, `startOrRestart` and its kin, `jlist`,
//!   `ls --sort`, `logs --json`, `--node-args`, `import pm2`;
//! - `cluster`: several instances of an app, `pmd scale`;
//! - `ports`: port ranges, `auto:` assignment, conflicts, `restart --port`;
//! - `balancer`: `--balance`: one public port in front of the instances,
//!   requests through it while the app is reloaded, restarted or scaled,
//!   health and pool membership, conflicts, PROXY protocol v2,
//!   least-connections, PM2 clusters on one port, counters and events;
//! - `reload_watch`: rolling `pmd reload` and restarts on file changes;
//! - `health`: HTTP, TCP and script checks, `--wait-ready`, liveness
//!   restarts, `{port}` in a cluster's check;
//! - `dependencies`: `depends_on` start order, stop order, cycles;
//! - `monitoring`: CPU and memory samples, `--max-memory`, `pmd monit`;
//! - `events`: `pmd events -o json` as a crash and its restart happen;
//! - `cron`: `cron_restart` schedules firing, a stopped app left alone,
//!   refusals, a daemon restart, a schedule removed by apply;
//! - `container`: `pmdaemond run FILE` (pm2-runtime): tagged, raw and JSON
//!   output, orphans reaped, SIGTERM, exit codes, `pmd list` beside it;
//! - `in_process`: the daemon run in this process through
//!   `pmdaemond::run`, stopped by its shutdown future;
//! - `leftovers`: nothing of an app escapes (the environment marker);
//! - `cgroups`: nothing escapes a run's cgroup, even without the marker;
//!   `--no-cgroups`;
//! - `limits`: the open-file limit of the daemon and of its apps;
//! - `readiness`: `ready` in list/describe and events, the WaitReady RPC;
//! - `remote`: the TCP listener: tokens and scopes for every RPC, TLS,
//!   `/healthz`, remote paths, the token verbs;
//! - `remote_cli`: `pmd --host`, the environment and contexts driving a
//!   remote daemon from a client with its own empty home: every verb, TLS,
//!   the refusals;
//! - `rest`: the REST gateway and its WebSockets on the real daemon: every
//!   route, statuses, NDJSON and WebSocket streams, the 401/403 matrix of
//!   every route from `/v1/openapi.json`, a slow WebSocket reader;
//! - `schemathesis`: a bounded property-based run of the REST API against
//!   its own `/v1/openapi.json` (schemathesis from PyPI, pinned in
//!   `tests/contract/`, in a virtualenv under `target/schemathesis-venv`);
//! - `sdk_python`: the Python client's pytest suite (sdk/python) in a
//!   virtualenv under `target/sdk-venv`, against the binaries under test;
//! - `sdk_typescript`: the TypeScript client's `node --test` suite
//!   (sdk/typescript) after `npm ci` (when its lock changed) and tsc;
//! - `boot`: `pmd startup`/`unstartup` (units verified by systemd-analyze,
//!   --install against a fake systemctl), the daemon's sd_notify,
//!   completions (run in bash, app names from the daemon) and man pages.

mod balancer;
mod boot;
mod cgroups;
mod cluster;
mod container;
mod contract;
mod cron;
mod dependencies;
mod ecosystem;
mod events;
mod export;
mod full_disk;
mod grpc_web;
mod health;
mod in_process;
mod leftovers;
mod lifecycle;
mod limits;
mod log_safety;
mod logs;
mod monitoring;
mod persistence;
mod pm2_files;
mod pm2_logs;
mod pm2_runtime;
mod pm2_verbs;
mod ports;
mod readiness;
mod reload_watch;
mod remote;
mod remote_cli;
mod rest;
mod restart_policy;
mod schemathesis;
mod sdk_python;
mod sdk_typescript;
mod security;
mod services;
mod validation;

use std::path::Path;
use std::process::Output;

/// A script that stays alive with its own command line and environment
/// (unlike `exec sleep`), for tests that read them from /proc.
pub const IDLE: &str = "#!/bin/sh\nwhile :; do sleep 1000; done\n";

/// Everything `pmd` printed, stdout then stderr.
pub fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Non-empty lines of a file (empty if the file is absent).
pub fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Nanosecond timestamps (`date +%s%N`), one a line.
pub fn timestamps_ns(path: &Path) -> Vec<u128> {
    lines_of(path)
        .iter()
        .map(|l| {
            l.trim()
                .parse()
                .unwrap_or_else(|_| panic!("not a timestamp: {l:?}"))
        })
        .collect()
}

/// Differences between consecutive timestamps, in milliseconds.
pub fn gaps_ms(stamps: &[u128]) -> Vec<f64> {
    stamps
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / 1e6)
        .collect()
}
