//! What the cluster looks like: each member's own view (`local`), the
//! whole cluster assembled by asking every member (`cluster`), and health.

use std::time::Duration;

use futures::future::join_all;
use openraft::ServerState;
use tonic::transport::Channel;

use crate::admin::PROBE_TIMEOUT;
use crate::error::{Error, Result};
use crate::node::{Consistency, Node};
use crate::proto::berth::cluster::v1::cluster_client::ClusterClient;
use crate::proto::berth::cluster::v1::{
    HealthResponse, LocalStatusRequest, MemberStatus, StatusResponse,
};
use crate::raft::NodeId;

/// A cluster-service client to a peer, over the node's cached channel.
pub fn cluster_client(node: &Node, addr: &str) -> Result<ClusterClient<Channel>> {
    let channel = node.peers().channel(addr).map_err(Error::InvalidArgument)?;
    Ok(ClusterClient::new(channel))
}

/// This node's own status.
pub fn local(node: &Node) -> MemberStatus {
    let metrics = node.raft().metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let voter = membership.voter_ids().any(|v| v == node.id());
    let address = membership
        .get_node(&node.id())
        .map(|n| n.addr.clone())
        .unwrap_or_default();
    let role = if voter {
        "voter"
    } else if membership.get_node(&node.id()).is_some() {
        "learner"
    } else {
        ""
    };
    MemberStatus {
        id: node.id(),
        address,
        role: role.into(),
        leader: metrics.state == ServerState::Leader,
        reachable: true,
        term: metrics.current_term,
        last_log_index: metrics.last_log_index.unwrap_or(0),
        applied_index: metrics.last_applied.map(|l| l.index).unwrap_or(0),
        lag: 0,
        snapshot_index: metrics.snapshot.map(|l| l.index).unwrap_or(0),
        data_bytes: dir_size(node.data_dir()),
        state: format!("{:?}", metrics.state),
        error: String::new(),
        known_leader: metrics.current_leader.unwrap_or(0),
        retired: node.is_retired(),
    }
}

/// Asks member `id` at `addr` for its status (this node answers itself).
pub async fn probe(node: &Node, id: NodeId, addr: &str) -> Result<MemberStatus> {
    if id == node.id() {
        return Ok(local(node));
    }
    let mut client = cluster_client(node, addr)?;
    let mut request = tonic::Request::new(LocalStatusRequest {});
    request.set_timeout(PROBE_TIMEOUT);
    let status = tokio::time::timeout(PROBE_TIMEOUT, client.local_status(request))
        .await
        .map_err(|_| {
            Error::Unavailable(format!(
                "node {id} at {addr} did not answer within {PROBE_TIMEOUT:?}"
            ))
        })?
        .map_err(|s| Error::Unavailable(format!("node {id} at {addr}: {}", s.message())))?
        .into_inner();
    if status.id != id {
        return Err(Error::FailedPrecondition(format!(
            "{addr} answers as node {}, not node {id}",
            status.id
        )));
    }
    Ok(status)
}

/// The members among `ids` that answer now and still serve.
pub async fn live_members(node: &Node, ids: &[NodeId]) -> Vec<NodeId> {
    let membership = node.membership();
    let membership = &membership;
    let probes = ids.iter().map(|id| async move {
        let addr = membership
            .nodes
            .get(id)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        let alive = matches!(probe(node, *id, &addr).await, Ok(s) if !s.retired);
        alive.then_some(*id)
    });
    join_all(probes).await.into_iter().flatten().collect()
}

/// The whole cluster: every member asked in parallel.
pub async fn cluster(node: &Node) -> StatusResponse {
    let membership = node.membership();
    let probes = membership.nodes.iter().map(|(id, member)| async move {
        match probe(node, *id, &member.addr).await {
            Ok(mut status) => {
                status.address = member.addr.clone();
                status
            }
            Err(e) => MemberStatus {
                id: *id,
                address: member.addr.clone(),
                reachable: false,
                error: e.to_string(),
                ..Default::default()
            },
        }
    });
    let mut members: Vec<MemberStatus> = join_all(probes).await;
    let leader_id = node.raft().metrics().borrow().current_leader.unwrap_or(0);
    let leader_applied = members
        .iter()
        .find(|m| m.id == leader_id)
        .map(|m| m.applied_index);
    for member in &mut members {
        member.role = if membership.voters.contains(&member.id) {
            "voter"
        } else {
            "learner"
        }
        .into();
        member.leader = member.id == leader_id;
        if let (Some(leader_applied), true) = (leader_applied, member.reachable) {
            member.lag = leader_applied.saturating_sub(member.applied_index);
        }
    }
    let local = local(node);
    StatusResponse {
        cluster_id: node.store().cluster_id().ok().flatten().unwrap_or_default(),
        leader_id,
        term: local.term,
        members,
        answered_by: node.id(),
    }
}

/// Healthy when this node can pass a linearizable read barrier: the leader
/// confirmed its leadership with a live quorum just now.
pub async fn health(node: &Node) -> HealthResponse {
    let leader_id = node.raft().metrics().borrow().current_leader.unwrap_or(0);
    let check = tokio::time::timeout(
        Duration::from_secs(3),
        node.read_barrier(Consistency::Linearizable),
    )
    .await;
    match check {
        Ok(Ok(())) => HealthResponse {
            healthy: true,
            reason: format!("leader {leader_id} confirmed a quorum"),
            leader_id,
        },
        Ok(Err(e)) => HealthResponse {
            healthy: false,
            reason: e.to_string(),
            leader_id,
        },
        Err(_) => HealthResponse {
            healthy: false,
            reason: "no quorum confirmation within 3s".into(),
            leader_id,
        },
    }
}

/// Bytes of files under `dir` (recursively); 0 for what cannot be read.
fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}
