//! The data model the store keeps: containers and leases as plain Rust values.
//!
//! These types are what the Raft log carries (inside `Command`s) and what sled
//! stores, so they derive serde and know nothing of gRPC; `api::convert` maps
//! them to and from containerd's protobuf messages. Maps are `BTreeMap`s so
//! that encoding is deterministic: every replica writes identical bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A `google.protobuf.Any`: an opaque, typed blob (spec, runtime options,
/// extensions). berth never looks inside.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnyValue {
    pub type_url: String,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// A point in time with nanosecond precision, as `google.protobuf.Timestamp`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanos: i32,
}

impl Timestamp {
    /// The current wall-clock time. Only the proposer of a command calls
    /// this; replicas never read their own clock while applying.
    pub fn now() -> Self {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            seconds: since_epoch.as_secs() as i64,
            nanos: since_epoch.subsec_nanos() as i32,
        }
    }
}

/// The runtime a container runs under.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    /// e.g. `io.containerd.runc.v2`; required.
    pub name: String,
    /// Runtime options; kept as given, never updated after create.
    pub options: Option<AnyValue>,
}

/// A container: containerd's metadata object, one per (namespace, id).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    /// Labels with non-empty values (an empty value means "delete").
    pub labels: BTreeMap<String, String>,
    pub image: String,
    pub runtime: Runtime,
    /// The runtime spec; `None` only in requests (validation requires it).
    pub spec: Option<AnyValue>,
    pub snapshotter: String,
    pub snapshot_key: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub extensions: BTreeMap<String, AnyValue>,
    /// Sandbox id (containerd 2.x); stored as given at create.
    pub sandbox: String,
}

/// A lease: containerd clients take one around `ctr c create` so that
/// garbage collection leaves new resources alone. berth stores leases so the
/// Leases API behaves, but runs no garbage collector.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub id: String,
    pub created_at: Timestamp,
    pub labels: BTreeMap<String, String>,
}
