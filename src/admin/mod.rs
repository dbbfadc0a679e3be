//! Cluster administration: status, health, adding and removing members,
//! backups (snapshot save) and offline restore. The gRPC edge
//! (`api::cluster`) forwards calls that need the leader; the functions here
//! that change membership run on the leader.
//!
//! Safety rules, as etcd's:
//! - a new node joins as a learner (it never counts towards quorum) and is
//!   promoted only once it has really caught up, not when openraft's lag
//!   threshold says so;
//! - a voter is removed only if the voters that remain, counting those that
//!   answer right now, still form a quorum (`--force` overrides);
//! - a removed node is told so, and stops serving and campaigning.

pub mod restore;
pub mod status;

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::node::Node;
use crate::proto::berth::cluster::v1::{AddNodeProgress, RemoveNodeResponse, RetireRequest};
use crate::raft::NodeId;
use crate::store::command::{Applied, Command};

/// How long add-node waits for a learner to catch up, by default.
pub const DEFAULT_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How far (in log entries) a learner may trail the leader when promoted, by default.
pub const DEFAULT_MAX_LAG: u64 = 64;
/// How long a member has to answer a liveness check.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Checks a node id and address given by an operator.
pub fn validate_member(id: NodeId, address: &str) -> Result<()> {
    if id == 0 {
        return Err(Error::InvalidArgument(
            "node ids are positive integers; 0 is not one".into(),
        ));
    }
    crate::node::bootstrap::parse_members(&format!("{id}={address}")).map(|_| ())
}

/// Adds node `id` at `address`: as a learner, then, once caught up, as a
/// voter. Idempotent for the same id and address. Progress goes to
/// `progress` as it happens. Runs on the leader.
pub async fn add_node(
    node: &Node,
    id: NodeId,
    address: &str,
    timeout: Duration,
    max_lag: u64,
    progress: &(dyn Fn(AddNodeProgress) + Send + Sync),
) -> Result<()> {
    validate_member(id, address)?;
    let report = |phase: &str, learner_applied: u64, leader_applied: u64, message: String| {
        progress(AddNodeProgress {
            phase: phase.into(),
            learner_applied,
            leader_applied,
            message,
        });
    };
    let membership = node.membership();
    match membership.nodes.get(&id) {
        Some(existing) if existing.addr != address => {
            return Err(Error::FailedPrecondition(format!(
                "node {id} is already a member with address {}; remove it first to give it another address",
                existing.addr
            )));
        }
        Some(_) if membership.voters.contains(&id) => {
            report(
                "already-member",
                0,
                0,
                format!("node {id} at {address} is already a voter"),
            );
            return Ok(());
        }
        Some(_) => report(
            "learner-added",
            0,
            0,
            format!("node {id} is already a learner; waiting for it to catch up"),
        ),
        None => {
            node.raft()
                .add_learner(id, BasicNode::new(address), false)
                .await
                .map_err(|e| membership_error(e, "adding a learner"))?;
            report(
                "learner-added",
                0,
                0,
                format!("node {id} at {address} added as a learner"),
            );
        }
    }

    // Caught up means: the learner has applied everything the leader had
    // applied when catching up began (at least), and trails the leader by
    // at most `max_lag` now.
    let floor = node.applied_index();
    let deadline = Instant::now() + timeout;
    loop {
        let leader_applied = node.applied_index();
        let learner = status::probe(node, id, address).await;
        let learner_applied = learner.as_ref().map(|s| s.applied_index).unwrap_or(0);
        let message = match &learner {
            Ok(_) => format!("node {id} applied {learner_applied} of {leader_applied}"),
            Err(e) => format!("node {id} does not answer yet: {e}"),
        };
        report("catching-up", learner_applied, leader_applied, message);
        if learner.is_ok()
            && learner_applied >= floor
            && learner_applied + max_lag >= leader_applied
        {
            break;
        }
        if Instant::now() >= deadline {
            return Err(Error::DeadlineExceeded(format!(
                "node {id} at {address} did not catch up within {timeout:?} (applied {learner_applied} of \
                 {leader_applied}); it stays a learner, which never counts towards quorum: run add-node again to \
                 keep waiting, or remove-node --id {id} to drop it"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    node.raft()
        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
        .await
        .map_err(|e| membership_error(e, "promoting the learner"))?;
    report(
        "promoted",
        node.applied_index(),
        node.applied_index(),
        format!("node {id} is now a voter"),
    );
    Ok(())
}

/// Removes node `id` (voter or learner, the leader included). Runs on the
/// leader.
pub async fn remove_node(node: &Node, id: NodeId, force: bool) -> Result<RemoveNodeResponse> {
    if id == 0 {
        return Err(Error::InvalidArgument(
            "node ids are positive integers; 0 is not one".into(),
        ));
    }
    let membership = node.membership();
    let Some(removed) = membership.nodes.get(&id).cloned() else {
        return Err(Error::NotFound(format!(
            "node {id} is not a member of the cluster"
        )));
    };
    let mut warnings = Vec::new();
    let change = if membership.voters.contains(&id) {
        let remaining: Vec<NodeId> = membership
            .voters
            .iter()
            .copied()
            .filter(|v| *v != id)
            .collect();
        if remaining.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "node {id} is the last voter; a cluster cannot remove it"
            )));
        }
        let live = status::live_members(node, &remaining).await;
        let quorum = remaining.len() / 2 + 1;
        if live.len() < quorum {
            let text = format!(
                "removing node {id} leaves {} voters of which {} answer now ({:?}); a quorum needs {quorum}",
                remaining.len(),
                live.len(),
                live
            );
            if !force {
                return Err(Error::FailedPrecondition(format!(
                    "{text}: refusing; bring members back first, or use --force"
                )));
            }
            tracing::warn!("forced removal: {text}");
            warnings.push(format!(
                "forced: {text}; the cluster may be unavailable until members return"
            ));
        }
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    };
    node.raft()
        .change_membership(change, false)
        .await
        .map_err(|e| membership_error(e, "removing the node"))?;

    // Tell the removed node, so that it stops serving and campaigning.
    if id == node.id() {
        node.retire()?;
    } else if let Err(e) = tell_retired(node, id, &removed.addr).await {
        warnings.push(format!(
            "node {id} could not be told it was removed ({e}); stop it and wipe its data dir"
        ));
    }
    Ok(RemoveNodeResponse {
        message: format!("node {id} ({}) removed", removed.addr),
        warnings,
    })
}

async fn tell_retired(node: &Node, id: NodeId, addr: &str) -> Result<()> {
    let mut client = status::cluster_client(node, addr)?;
    let mut request = tonic::Request::new(RetireRequest { id });
    request.set_timeout(PROBE_TIMEOUT);
    client
        .retire(request)
        .await
        .map_err(|s| Error::Unavailable(s.message().to_string()))?;
    Ok(())
}

/// Maps openraft's membership-change errors to berth's categories.
fn membership_error(
    err: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
    doing: &str,
) -> Error {
    match err {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
            Error::Unavailable(format!("{doing}: leadership changed; retry"))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::InProgress(e),
        )) => Error::Unavailable(format!(
            "{doing}: another membership change is in progress ({e}); retry"
        )),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            Error::FailedPrecondition(format!("{doing}: {e}"))
        }
        RaftError::Fatal(e) => Error::Unavailable(format!("{doing}: raft is not running: {e}")),
    }
}

/// Gives the cluster an id once it has a leader and none is stored: the
/// leader proposes a random one (applying it twice keeps the first).
pub async fn ensure_cluster_id(node: Node) {
    let mut metrics = node.raft().metrics();
    loop {
        let leading = metrics.borrow().current_leader == Some(node.id());
        if leading && matches!(node.store().cluster_id(), Ok(None)) {
            let bytes: [u8; 8] = rand::random();
            let cluster_id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            match node.write(Command::InitCluster { cluster_id }).await {
                Ok(Applied::ClusterId(id)) => tracing::info!(cluster_id = %id, "cluster id set"),
                Ok(other) => tracing::warn!("cluster id command applied as {other:?}"),
                Err(e) => tracing::warn!("setting the cluster id: {e}; will retry"),
            }
            continue;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
