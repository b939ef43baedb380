//! Reading what a command printed: whole outputs for assertion messages,
//! `pmd ... -o json` documents, and the fields of a list/describe entry.
//!
//! Talks to: nothing; pure functions over outputs and JSON values.

use std::process::Output;

use serde_json::Value;

/// Formats an [`Output`] for assertion messages.
pub fn describe_output(out: &Output) -> String {
    format!(
        "status: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Parses `pmd ... -o json` output, with the command line in the panic.
pub fn parse_json(what: &str, stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {stdout:?}"))
}

/// The `pid` of a list/describe entry, `None` when null.
pub fn pid_of(app: &Value) -> Option<u32> {
    app["pid"].as_u64().map(|p| p as u32)
}

/// The pids of list/describe entries, in their order (panics on a null).
pub fn pids_of(apps: &[Value]) -> Vec<u32> {
    apps.iter()
        .map(|a| pid_of(a).unwrap_or_else(|| panic!("no pid: {a}")))
        .collect()
}

/// The `port` of a list/describe entry, `None` when null.
pub fn port_of(app: &Value) -> Option<u16> {
    app["port"].as_u64().map(|p| p as u16)
}
