//! Replication: openraft glue between the API's commands and the store.
//!
//! Every node runs an openraft `Raft` whose log lives in berth's own
//! write-ahead log ([`crate::wal`], via [`log_store`]) and whose state machine
//! is the sled [`crate::store::Store`] (via [`state_machine`]). Peers talk over
//! the internal gRPC service `berth.raft.v1.Raft` ([`network`] is the client,
//! `api::peer` the server), which also carries writes forwarded from
//! followers and the ReadIndex followers need for linearizable reads.
//!
//! Nothing here knows containerd: the log carries opaque `Command`s and
//! returns their `Outcome`s.

pub mod codec;
pub mod log_store;
pub mod network;
pub mod snapshot;
pub mod state_machine;

use serde::{Deserialize, Serialize};

use crate::store::command::{Command, Outcome};

/// Node ids: small positive integers chosen by the operator.
pub type NodeId = u64;

/// What a log entry produced when applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A `Command`'s outcome.
    Applied(Outcome),
    /// Blank and membership entries produce nothing.
    Nothing,
}

openraft::declare_raft_types!(
    /// berth's openraft type configuration.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = snapshot::SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log id (term, leader, index).
pub type LogId = openraft::LogId<NodeId>;
/// A vote.
pub type Vote = openraft::Vote<NodeId>;
/// Membership as stored with the log id that set it.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// openraft's storage error.
pub type StorageError = openraft::StorageError<NodeId>;

/// A storage error about `subject`, for openraft.
pub fn storage_error(
    subject: openraft::ErrorSubject<NodeId>,
    verb: openraft::ErrorVerb,
    err: impl std::fmt::Display,
) -> StorageError {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::error(err.to_string())).into()
}
