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

/// The daemon's gRPC Unix socket inside `home`.
pub fn socket_path(home: &std::path::Path) -> PathBuf {
    home.join("pmd.sock")
}
