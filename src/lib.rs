//! The `pmdaemon.v1` API crate: the generated protobuf/gRPC module, the
//! descriptor set for reflection, where `PMDAEMON_HOME` and the socket are,
//! and the value rules that the daemon and the CLI must agree on
//! ([`rules`], re-exported here: names, targets, durations, sizes, signals,
//! limits and defaults, port specs, environment variable names, health
//! checks, state words, dependency conditions and order), and the words
//! both print ([`wording`]: ages, the not-ready report).
//!
//! Layout of the workspace:
//! - this crate (`pmdaemon-proto`): contract + shared validation;
//! - `server/` (`pmdaemond`): the daemon, `run(listener, shutdown)`;
//! - `client/` (`pmd`): the CLI;
//! - `tests/`: end-to-end tests against the real binaries.

use std::path::PathBuf;

pub mod rules;
pub mod wording;

pub use rules::*;

pub mod v1 {
    #![allow(clippy::all)]
    tonic::include_proto!("pmdaemon.v1");
}

/// Encoded `FileDescriptorSet` of the contract, for gRPC reflection: the
/// pmdaemon.v1 file without its `google.api.http` options (see build.rs).
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("pmdaemon_descriptor");

/// Version of the workspace, reported by `pmd version` and `Ping`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Environment variable naming the state directory.
pub const HOME_ENV: &str = "PMDAEMON_HOME";

/// The state directory: `$PMDAEMON_HOME`, else `~/.pmdaemon`.
pub fn home_dir() -> PathBuf {
    if let Some(home) = std::env::var_os(HOME_ENV).filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    let user_home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into());
    PathBuf::from(user_home).join(".pmdaemon")
}

/// A short, stable name for a home: the FNV-1a 64-bit hash of its path's
/// bytes in 16 hex digits (the same in every build and release, so names
/// made from it outlive upgrades). The daemon's cgroup directory and the
/// systemd unit of a home other than the default are named by it.
pub fn home_hash(home: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in home.as_os_str().as_bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The daemon's gRPC Unix socket inside `home`.
pub fn socket_path(home: &std::path::Path) -> PathBuf {
    home.join("pmd.sock")
}

/// Encoded `FileDescriptorSet` of the whole contract with every option
/// (`google.api.http` routes, `pmdaemon.v1.access`) and the files it
/// imports: what the HTTP gateway builds its routes and its OpenAPI
/// document from. Static data: it costs memory only once decoded.
pub const API_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/pmdaemon_api_descriptor.bin"));

mod access {
    use crate::v1::Access;
    include!(concat!(env!("OUT_DIR"), "/access.rs"));
}
pub use access::METHOD_ACCESS;

/// Who may call the RPC at gRPC path `path`
/// (`/pmdaemon.v1.ProcessManager/ListProcesses`); None when the path is not
/// an RPC of the contract.
pub fn method_access(path: &str) -> Option<v1::Access> {
    METHOD_ACCESS
        .iter()
        .find(|(p, _)| *p == path)
        .map(|&(_, access)| access)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The access table covers exactly the RPCs of the served contract,
    /// with the reads marked as such and everything else admin-only.
    #[test]
    fn every_rpc_has_its_declared_access() {
        let set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
        let mut served: Vec<String> = set
            .file
            .iter()
            .flat_map(|f| {
                let package = f.package().to_string();
                f.service.iter().flat_map(move |s| {
                    let service = format!("{package}.{}", s.name());
                    s.method
                        .iter()
                        .map(move |m| format!("/{service}/{}", m.name()))
                })
            })
            .collect();
        let mut listed: Vec<String> = METHOD_ACCESS.iter().map(|(p, _)| p.to_string()).collect();
        served.sort();
        listed.sort();
        assert_eq!(served, listed);
        use v1::Access::*;
        for (method, access) in [
            ("ListProcesses", ReadOnly),
            ("StreamLogs", ReadOnly),
            ("Ping", ReadOnly),
            ("StartProcess", Admin),
            ("DeleteProcess", Admin),
            ("Shutdown", Admin),
        ] {
            let path = format!("/pmdaemon.v1.ProcessManager/{method}");
            assert_eq!(method_access(&path), Some(access), "{method}");
        }
        assert_eq!(method_access("/pmdaemon.v1.ProcessManager/Nope"), None);
    }
}
