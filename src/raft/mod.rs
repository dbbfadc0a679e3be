//! Replication: openraft glue between the API's commands and the store.
//!
//! Every node runs an openraft `Raft` whose log lives in berth's own
//! write-ahead log ([`crate::wal`], via [`log_store`]) and whose state machine
//! is the sled [`crate::store::Store`] (via [`state_machine`]). Peers talk over
//! the internal gRPC service `berth.raft.v1.Raft` ([`network`] is the client,
//! `api::peer` the server), which also carries writes forwarded from
//! followers and the ReadIndex followers need for linearizable reads.
//!
//! Nothing here knows containerd: a log entry carries a [`Batch`] of opaque
//! `Command`s and returns their `Outcome`s.

pub mod codec;
pub mod log_store;
pub mod network;
pub mod recent_entries;
pub mod snapshot;
pub mod state_machine;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::store::command::{Command, Outcome};

/// Node ids: small positive integers chosen by the operator.
pub type NodeId = u64;

/// The payload of a normal log entry: commands proposed together.
///
/// openraft 0.9's core appends one client write at a time and waits for it
/// to be durable before taking the next, so one command per entry would
/// cost one fsync per command. The node's write batcher
/// (`node::batcher`) instead gathers the commands that arrive while a batch
/// is in flight into the next entry: under load, many commands share one
/// append, one fsync on every node, one replication round and one store
/// transaction. Commands of a batch are applied in order, independently:
/// one's refusal does not affect the others.
///
/// The commands are shared, not owned: an entry is read back from the log
/// by the state machine and by each follower's replication stream, and
/// those reads clone it out of the log store's cache of recent entries
/// (`recent_entries`). The encoding is that of a plain sequence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub commands: Arc<[Command]>,
}

/// What a log entry produced when applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The outcome of each command of the entry's batch, in order.
    Applied(Vec<Outcome>),
    /// Blank and membership entries produce nothing.
    Nothing,
}

openraft::declare_raft_types!(
    /// berth's openraft type configuration.
    pub TypeConfig:
        D = Batch,
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
