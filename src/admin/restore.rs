//! Backups: a fresh snapshot streamed from any node (`snapshot save`), and
//! the offline restore that turns a backup into the data dir of a member of
//! a new cluster (`snapshot restore`), like etcd's.
//!
//! Restore writes, for one member, a state that every member restored from
//! the same file with the same member list shares exactly: the store holds
//! the backup's data and records it as applied at the backup's log index;
//! the Raft log is empty and purged up to that index; the membership is the
//! new member list; and the snapshot directory holds a snapshot of it, so a
//! member that falls behind can be sent it. The cluster gets a new id,
//! derived from the backup and the member list, so restored clusters never
//! mistake themselves for the original.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::time::Duration;

use openraft::{BasicNode, CommittedLeaderId, Membership};

use crate::error::{Error, Result};
use crate::node::{Consistency, Node};
use crate::raft::log_store::PURGED;
use crate::raft::snapshot::{self, SnapshotDir, SnapshotReader};
use crate::raft::state_machine::{APPLIED_KEY, install_image};
use crate::raft::{LogId, NodeId, SnapshotMeta, StoredMembership, codec};
use crate::store::image::DataTree;
use crate::store::schema::CLUSTER_ID_KEY;
use crate::store::{Store, StoreOptions};
use crate::wal::{Wal, WalOptions};

/// How long `snapshot save` waits for a fresh snapshot to be built.
const BUILD_TIMEOUT: Duration = Duration::from_secs(120);

/// Builds a snapshot on `node` that covers every write acknowledged before
/// the call (a linearizable point), and opens it for streaming.
pub async fn fresh_snapshot(node: &Node) -> Result<(SnapshotMeta, File)> {
    // Wait until this node has applied every write acknowledged before the
    // request: a backup taken from a follower must not miss them.
    node.read_barrier(Consistency::Linearizable).await?;
    let applied = node.raft().metrics().borrow().last_applied;
    let Some(applied) = applied else {
        return Err(Error::FailedPrecondition(
            "this node has applied nothing yet; nothing to back up".into(),
        ));
    };
    node.raft()
        .trigger()
        .snapshot()
        .await
        .map_err(|e| Error::Unavailable(format!("triggering a snapshot: {e}")))?;
    node.raft()
        .wait(Some(BUILD_TIMEOUT))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= applied.index),
            "snapshot covering the applied index",
        )
        .await
        .map_err(|e| Error::Unavailable(format!("waiting for the snapshot: {e}")))?;
    let (meta, _, file) = node
        .snapshots()
        .open_current()?
        .ok_or_else(|| Error::Internal("the snapshot was built but cannot be found".into()))?;
    Ok((meta, file))
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    pub records: u64,
    pub log_index: u64,
    pub cluster_id: String,
}

/// Prepares `data_dir` (absent or empty) for node `node_id` of a new
/// cluster of `members`, holding exactly the data of the backup `file`.
pub fn restore(
    file: &Path,
    data_dir: &Path,
    node_id: NodeId,
    members: &BTreeMap<NodeId, String>,
) -> Result<Restored> {
    if !members.contains_key(&node_id) {
        return Err(Error::InvalidArgument(format!(
            "--initial-cluster does not list node {node_id}"
        )));
    }
    if data_dir.exists() && std::fs::read_dir(data_dir)?.next().is_some() {
        return Err(Error::FailedPrecondition(format!(
            "{} is not empty; restore needs a new, empty data dir",
            data_dir.display()
        )));
    }
    let mut backup = File::open(file)
        .map_err(|e| Error::InvalidArgument(format!("opening {}: {e}", file.display())))?;
    let (backup_meta, records) = snapshot::verify(&mut backup)
        .map_err(|e| e.context(format!("{} is not a valid berth backup", file.display())))?;
    let log_index = backup_meta.last_log_id.map(|l| l.index).unwrap_or(0);

    // Term 0: a fresh cluster's first election is term 1, so every entry it
    // appends sorts after the restored position.
    let log_id = LogId::new(CommittedLeaderId::new(0, 0), log_index);
    let voters: BTreeSet<NodeId> = members.keys().copied().collect();
    let nodes: BTreeMap<NodeId, BasicNode> = members
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr)))
        .collect();
    let membership = StoredMembership::new(Some(log_id), Membership::new(vec![voters], nodes));
    let cluster_id = derived_cluster_id(&mut backup, members)?;
    let meta = SnapshotMeta {
        last_log_id: Some(log_id),
        last_membership: membership,
        snapshot_id: format!("restored-{log_index}"),
    };

    std::fs::create_dir_all(data_dir)?;
    let store = Store::open(&data_dir.join("state"), &StoreOptions::default())?;
    let (_, image) = SnapshotReader::open(BufReader::new(backup))?;
    let image = image.map(|record| match record {
        Ok((DataTree::Cluster, key, _)) if key.as_ref() == CLUSTER_ID_KEY => {
            Ok((DataTree::Cluster, key, cluster_id.as_bytes().into()))
        }
        other => other,
    });
    install_image(&store, &meta, image)?;
    if store.cluster_id()?.is_none() {
        let command = crate::store::command::Command::InitCluster {
            cluster_id: cluster_id.clone(),
        };
        let applied = codec::encode(&Some(log_id))?;
        store.apply(&[&command], &[(APPLIED_KEY, &applied)])?;
    }
    store.flush_durably()?;

    let snapshots = SnapshotDir::open(&data_dir.join("snapshots"))?;
    let (temp, mut out) = snapshots.create_temp()?;
    snapshot::write_snapshot(&mut out, &meta, store.dump())?;
    snapshots.commit(&temp, &meta)?;

    let wal = Wal::open(data_dir.join("wal"), WalOptions::default())
        .map_err(|e| Error::Internal(format!("creating the raft log: {e}")))?;
    wal.save_meta(PURGED, &codec::encode(&log_id)?)
        .map_err(|e| Error::Internal(e.to_string()))?;
    wal.purge(log_index)
        .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Restored {
        records,
        log_index,
        cluster_id,
    })
}

/// The restored cluster's id: the same for every member restored from the
/// same backup with the same member list, different from the original's.
fn derived_cluster_id(backup: &mut File, members: &BTreeMap<NodeId, String>) -> Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut hasher = crc32fast::Hasher::new();
    backup.seek(SeekFrom::End(-4))?;
    let mut checksum = [0u8; 4];
    backup.read_exact(&mut checksum)?;
    backup.seek(SeekFrom::Start(0))?;
    hasher.update(&checksum);
    let mut second = crc32fast::Hasher::new_with_initial(0x5eed);
    for (id, addr) in members {
        let item = format!("{id}={addr};");
        hasher.update(item.as_bytes());
        second.update(item.as_bytes());
    }
    second.update(&checksum);
    Ok(format!(
        "{:08x}{:08x}",
        hasher.finalize(),
        second.finalize()
    ))
}
