//! The command boundary: every change to the store is a `Command` value, and
//! applying one yields an `Outcome`.
//!
//! A command carries everything non-deterministic (timestamps) decided by
//! its proposer, so applying the same command to the same state gives the
//! same result on every replica. That is what lets the Raft layer move
//! commands through its log without knowing what they mean: the API builds
//! a command, the replication layer orders it, `Store::apply` performs it.
//!
//! The encoding is postcard via serde. Variants are only ever appended, never
//! reordered or removed: a log written by an older berth must still decode.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::store::model::{Container, Lease, Timestamp};

/// A write to the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Create `container` in `namespace`; its `created_at`/`updated_at` are
    /// already set by the proposer.
    CreateContainer {
        namespace: String,
        container: Container,
    },
    /// Update the stored container `container.id` from `container` along
    /// `mask` (empty: full replace of the mutable fields), stamping
    /// `updated_at = now`. The merge happens at apply time, against the
    /// state the log order gives, so concurrent updates never lose each
    /// other's changes.
    UpdateContainer {
        namespace: String,
        container: Container,
        mask: Vec<String>,
        now: Timestamp,
    },
    /// Delete container `id`; `now` stamps the event.
    DeleteContainer {
        namespace: String,
        id: String,
        now: Timestamp,
    },
    /// Create a lease (its `created_at` set by the proposer).
    CreateLease { namespace: String, lease: Lease },
    /// Delete lease `id`.
    DeleteLease {
        namespace: String,
        id: String,
        now: Timestamp,
    },
    /// Give the cluster its id, unless it has one: proposed by a leader that
    /// finds none. Applying it twice keeps the first id.
    InitCluster { cluster_id: String },
}

impl Command {
    /// The namespace the command writes to.
    pub fn namespace(&self) -> &str {
        match self {
            Command::CreateContainer { namespace, .. }
            | Command::UpdateContainer { namespace, .. }
            | Command::DeleteContainer { namespace, .. }
            | Command::CreateLease { namespace, .. }
            | Command::DeleteLease { namespace, .. } => namespace,
            Command::InitCluster { .. } => "",
        }
    }

    /// When the proposer issued the command: the timestamp of its event.
    pub fn issued_at(&self) -> Timestamp {
        match self {
            Command::CreateContainer { container, .. } => container.created_at,
            Command::UpdateContainer { now, .. }
            | Command::DeleteContainer { now, .. }
            | Command::DeleteLease { now, .. } => *now,
            Command::CreateLease { lease, .. } => lease.created_at,
            Command::InitCluster { .. } => Timestamp::default(),
        }
    }
}

/// What a successfully applied command produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// The container as stored after a create or update.
    Container(Box<Container>),
    /// A container was deleted.
    ContainerDeleted,
    /// The lease as stored after a create.
    Lease(Lease),
    /// A lease was deleted.
    LeaseDeleted,
    /// The cluster's id (the one in effect after the command).
    ClusterId(String),
}

/// The deterministic result of applying a command: the same on every
/// replica. "Not found" or "already exists" are outcomes, not failures of the
/// node; a storage failure is reported separately and stops the node.
pub type Outcome = Result<Applied, Error>;
