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
