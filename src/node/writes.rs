//! Where a batch of writes goes: proposed to the local Raft if this node
//! leads, forwarded to the leader otherwise, following leadership changes
//! for as long as retrying cannot duplicate anything.

use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};

use crate::error::{Error, Result};
use crate::node::leader::LeaderReply;
use crate::raft::network::{PeerError, PeerRpc, Peers};
use crate::raft::{Batch, NodeId, Raft, Response};
use crate::store::command::Outcome;

/// Routes write batches of one node.
#[derive(Clone)]
pub struct WriteRouter {
    pub id: NodeId,
    pub raft: Raft,
    pub peers: Peers,
    /// How long a forwarded batch may take at the leader.
    pub request_timeout: Duration,
    /// How long to wait for a new leader before trying again.
    pub leader_wait: Duration,
}

impl WriteRouter {
    /// Orders `batch` through the log; returns one outcome per command.
    pub async fn route(&self, batch: Batch) -> Result<Vec<Outcome>> {
        loop {
            match self.raft.client_write(batch.clone()).await {
                Ok(written) => return response_outcomes(written.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                    // Not appended here: trying elsewhere cannot duplicate it.
                    let Some(leader) = forward.leader_id.filter(|l| *l != self.id) else {
                        self.wait_for_leader_change(None).await;
                        continue;
                    };
                    match self.forward(leader, &batch).await? {
                        Some(outcomes) => return Ok(outcomes),
                        None => self.wait_for_leader_change(Some(leader)).await,
                    }
                }
                Err(RaftError::APIError(other)) => {
                    return Err(Error::Internal(format!("raft refused a write: {other}")));
                }
                Err(RaftError::Fatal(fatal)) => {
                    return Err(Error::Unavailable(format!("raft is not running: {fatal}")));
                }
            }
        }
    }

    /// Sends a batch to the leader. `Ok(None)`: it was not delivered, or the
    /// leader says it no longer leads, so nothing was applied and it may be
    /// retried.
    async fn forward(&self, leader: NodeId, batch: &Batch) -> Result<Option<Vec<Outcome>>> {
        let Some(addr) = member_addr(&self.raft, leader) else {
            return Ok(None);
        };
        let reply: Result<LeaderReply<Vec<Outcome>>, PeerError> = self
            .peers
            .call(leader, &addr, PeerRpc::ForwardWrite, batch, self.request_timeout)
            .await;
        match reply {
            Ok(LeaderReply::Done(outcomes)) => Ok(Some(outcomes)),
            Ok(LeaderReply::NotLeader) | Err(PeerError::NotSent { .. }) => Ok(None),
            Ok(LeaderReply::Failed(e)) => Err(e),
            Err(e) => Err(Error::Unavailable(format!(
                "lost contact with the leader while it handled the write; it may or may not have been applied: {e}"
            ))),
        }
    }

    /// Waits (a bounded time) for the known leader to differ from `current`.
    async fn wait_for_leader_change(&self, current: Option<NodeId>) {
        let mut metrics = self.raft.metrics();
        let wait = async {
            loop {
                let leader = metrics.borrow().current_leader;
                if leader.is_some() && leader != current {
                    return;
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(self.leader_wait, wait).await;
    }
}

/// The leader-side half of a forwarded batch: propose it here and never
/// forward again (two nodes that each think the other leads would bounce
/// it for ever).
pub async fn propose_as_leader(raft: &Raft, batch: Batch) -> LeaderReply<Vec<Outcome>> {
    match raft.client_write(batch).await {
        Ok(written) => match response_outcomes(written.data) {
            Ok(outcomes) => LeaderReply::Done(outcomes),
            Err(e) => LeaderReply::Failed(e),
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => LeaderReply::NotLeader,
        Err(e) => LeaderReply::Failed(Error::Unavailable(format!("raft refused a forwarded write: {e}"))),
    }
}

/// A member's address from the Raft membership.
pub fn member_addr(raft: &Raft, id: NodeId) -> Option<String> {
    let metrics = raft.metrics();
    let membership = metrics.borrow().membership_config.clone();
    membership.membership().get_node(&id).map(|n| n.addr.clone())
}

/// The outcomes inside a log entry's response.
fn response_outcomes(response: Response) -> Result<Vec<Outcome>> {
    match response {
        Response::Applied(outcomes) => Ok(outcomes),
        Response::Nothing => Err(Error::Internal("a batch's entry produced no outcomes".into())),
    }
}
