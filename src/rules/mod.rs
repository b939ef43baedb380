//! Value rules: what a value the user writes means and which values are
//! accepted, written once for the daemon and the CLI. Each rule is a type
//! with `FromStr`/`Display` where it is a value, else a checking function;
//! a refusal is an [`InvalidInput`] that says what is wrong and what to
//! write instead. Callers put their own context at its head: the CLI its
//! flag (`--port: ...`), the ecosystem loader `FILE:LINE:COL` and the field,
//! the daemon the field of the request (and INVALID_ARGUMENT).
//!
//! One module per subject, re-exported at the crate root: app names and
//! targets, durations, sizes and signals, limits and defaults (with the
//! instance count), port specs, environment variables, PM2's per-instance settings
//! (instance_var, increment_var, stop_exit_codes, listen_timeout), state words,
//! the interpreter of a script (shebang, extension), dependency conditions
//! and order, cron schedules. Health checks stay under
//! `pmdaemon_proto::health`, whose names (`DEFAULT_INTERVAL_MS`...) only
//! read right there.
//!
//! Pure: no I/O, no clock, no state. Talks to nothing; the daemon and the
//! CLI call it.

mod balance;
mod cron;
mod deps;
mod env;
pub mod health;
mod instance_env;
mod launch;
mod limits;
mod logs;
mod names;
mod ports;
#[cfg(test)]
mod proptests;
mod states;
mod values;

pub use balance::*;
pub use cron::*;
pub use deps::*;
pub use env::*;
pub use instance_env::*;
pub use launch::*;
pub use limits::*;
pub use logs::*;
pub use names::*;
pub use ports::*;
pub use values::*;

/// A validation failure of user input, naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

impl InvalidInput {
    /// The same refusal with `what` (a flag, a field, a place) at its
    /// head: `--port: invalid port "0": ...`.
    pub fn named(self, what: impl std::fmt::Display) -> InvalidInput {
        InvalidInput(crate::wording::bounded(format!("{what}: {}", self.0)))
    }
}

/// A refusal, [bounded](crate::wording::bounded) so that echoing a huge
/// value never makes an unsendable message.
pub(crate) fn invalid(msg: impl Into<String>) -> InvalidInput {
    InvalidInput(crate::wording::bounded(msg.into()))
}
