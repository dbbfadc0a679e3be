//! berth's domain error: one enum of *categories* (not call sites), shared by
//! the store and the node layers, serialisable so that a deterministic apply
//! error can travel through the Raft log's response path and come out the same
//! on every replica. The gRPC edge (`api::status`) is the only place that turns
//! it into a `tonic::Status`.

use serde::{Deserialize, Serialize};

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error, by category. Each variant carries the full human-readable
/// message; for containerd-compatible errors that message ends with
/// containerd's class suffix (`: not found`, `: invalid argument`, …) exactly
/// as containerd's own server would send it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Error {
    /// The request is malformed or violates a validation rule.
    #[error("{0}")]
    InvalidArgument(String),
    /// The object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// An object with that identity exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is well-formed but the system is not in a state to run it
    /// (missing namespace, unsafe membership change, …).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A size limit was exceeded.
    #[error("{0}")]
    ResourceExhausted(String),
    /// Transient: no leader, leader changed, node not ready. Safe to retry
    /// for reads; for writes the caller learns the outcome is unknown only
    /// through `DeadlineExceeded`.
    #[error("{0}")]
    Unavailable(String),
    /// The deadline passed before the outcome was known. For a write this is
    /// *indeterminate*: it may or may not have been applied.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A bug or a storage failure on this node.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// An `InvalidArgument` whose message ends in containerd's class suffix.
    pub fn invalid(msg: impl std::fmt::Display) -> Self {
        Error::InvalidArgument(format!("{msg}: invalid argument"))
    }

    /// A `NotFound` whose message ends in containerd's class suffix.
    pub fn not_found(msg: impl std::fmt::Display) -> Self {
        Error::NotFound(format!("{msg}: not found"))
    }

    /// An `AlreadyExists` whose message ends in containerd's class suffix.
    pub fn already_exists(msg: impl std::fmt::Display) -> Self {
        Error::AlreadyExists(format!("{msg}: already exists"))
    }

    /// A `FailedPrecondition` whose message ends in containerd's class suffix.
    pub fn failed_precondition(msg: impl std::fmt::Display) -> Self {
        Error::FailedPrecondition(format!("{msg}: failed precondition"))
    }

    /// Prefixes the message with context, keeping the category: containerd
    /// wraps errors the same way (`create container failed validation: …`).
    pub fn context(self, ctx: impl std::fmt::Display) -> Self {
        let wrap = |m: String| format!("{ctx}: {m}");
        match self {
            Error::InvalidArgument(m) => Error::InvalidArgument(wrap(m)),
            Error::NotFound(m) => Error::NotFound(wrap(m)),
            Error::AlreadyExists(m) => Error::AlreadyExists(wrap(m)),
            Error::FailedPrecondition(m) => Error::FailedPrecondition(wrap(m)),
            Error::ResourceExhausted(m) => Error::ResourceExhausted(wrap(m)),
            Error::Unavailable(m) => Error::Unavailable(wrap(m)),
            Error::DeadlineExceeded(m) => Error::DeadlineExceeded(wrap(m)),
            Error::Internal(m) => Error::Internal(wrap(m)),
        }
    }
}

impl From<sled::Error> for Error {
    fn from(err: sled::Error) -> Self {
        Error::Internal(format!("storage (sled): {err}"))
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::Internal(format!("io: {err}"))
    }
}
