//! The daemon's typed error. Every failure a client can cause or see is one
//! of these variants; `api::status` maps them to gRPC codes in one place.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: a name, path, signal, duration... The message names the
    /// field and says what would be accepted.
    #[error("{0}")]
    InvalidArgument(String),

    #[error("no app or process matches {target:?}; `pmd list` shows what exists")]
    NotFound { target: String },

    #[error(
        "an app named {name:?} already exists (id {id}); use `pmd restart {name}` or pick another --name"
    )]
    AlreadyExists { name: String, id: u32 },

    /// The request is valid but the current state does not allow it.
    #[error("{0}")]
    FailedPrecondition(String),

    /// A finite resource ran out (free ports of an auto range...).
    #[error("{0}")]
    ResourceExhausted(String),

    #[error("the daemon is shutting down")]
    ShuttingDown,

    /// The state of a mutating call could not be written to `path`: the
    /// call's change was undone (the table is back to what the file
    /// holds), never acknowledged. `kept` names what the call removed and
    /// is back because the file still has it.
    #[error("{}", state_not_written(path, source, kept))]
    StateNotWritten {
        path: PathBuf,
        source: std::sync::Arc<std::io::Error>,
        kept: Vec<String>,
    },

    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            context,
            path: path.into(),
            source,
        }
    }
}

/// `cannot write /home/x/.pmdaemon/state.json: No space left on device (os
/// error 28); nothing was changed: free some space and retry`.
fn state_not_written(path: &std::path::Path, source: &std::io::Error, kept: &[String]) -> String {
    let kept = match kept {
        [] => String::new(),
        kept => format!(
            " ({} could not be removed from the state file and {} back as it was)",
            kept.join(", "),
            if kept.len() == 1 { "is" } else { "are" }
        ),
    };
    let fix = if crate::store::is_out_of_space(source) {
        "free some space and retry"
    } else {
        "check that file system and retry"
    };
    format!(
        "cannot write {}: {source}; nothing was changed{kept}: {fix}",
        path.display()
    )
}

impl From<crate::ports::PortError> for Error {
    fn from(e: crate::ports::PortError) -> Self {
        use crate::ports::PortError as P;
        let msg = e.to_string();
        match e {
            P::Invalid(_) | P::Conflict { .. } => Error::InvalidArgument(msg),
            P::Bound { .. } | P::HostCheck { .. } => Error::FailedPrecondition(msg),
            P::Exhausted { .. } => Error::ResourceExhausted(msg),
        }
    }
}

impl From<pmdaemon_proto::InvalidInput> for Error {
    fn from(e: pmdaemon_proto::InvalidInput) -> Self {
        Error::InvalidArgument(e.0)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
