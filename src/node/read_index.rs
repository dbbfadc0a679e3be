//! Where a linearizable read gets its read index: from this node's own
//! leadership (a quorum heartbeat round), or from the leader over the peer
//! service. The index is the leader's commit index confirmed after the read
//! arrived; the caller then waits for its own state machine to apply it.
//!
//! Asking for a read index is idempotent, so unlike a write it can be
//! retried freely: across an election, a leader that died, or a node that
//! has just started, the read waits for the next leader (bounded by the
//! request timeout) instead of failing a request that a leader elected a
//! moment later could serve.

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::time::Instant;

use super::leader::LeaderReply;
use super::reads::ReadRounds;
use super::writes;
use crate::error::{Error, Result};
use crate::raft::network::{PeerRpc, Peers};
use crate::raft::{NodeId, Raft};

/// A read index confirmed by this node as leader. `FailedPrecondition`
/// means it is not the leader.
pub async fn as_leader(raft: &Raft) -> Result<u64> {
    match raft.get_read_log_id().await {
        Ok((read_log_id, _applied)) => Ok(read_log_id.map(|id| id.index).unwrap_or(0)),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => {
            Err(Error::FailedPrecondition("not the leader".into()))
        }
        Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
            Err(Error::Unavailable(format!(
                "the leader cannot confirm its leadership with a quorum: {e}"
            )))
        }
        Err(RaftError::Fatal(fatal)) => {
            Err(Error::Unavailable(format!("raft is not running: {fatal}")))
        }
    }
}

/// Obtains read indexes for any node, following leadership changes.
pub struct ReadIndexSource {
    pub raft: Raft,
    pub peers: Peers,
    /// This node's own leader-side rounds.
    pub leader_reads: Arc<ReadRounds>,
    /// The whole budget of one read index, retries included.
    pub timeout: Duration,
    /// How long to wait for a leader to become known before trying again
    /// (about one election).
    pub leader_wait: Duration,
}

impl ReadIndexSource {
    /// A read index from whichever node leads, retried across leadership
    /// changes until the timeout.
    pub async fn read_index(&self) -> Result<u64> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let (failed_leader, error) = match self.attempt(deadline).await {
                Attempt::Done(index) => return Ok(index),
                Attempt::Fatal(error) => return Err(error),
                Attempt::Retry { leader, error } => (leader, error),
            };
            let until = deadline.min(Instant::now() + self.leader_wait);
            writes::wait_for_leader(&self.raft, failed_leader, until).await;
            if Instant::now() >= deadline {
                return Err(error);
            }
            tracing::debug!(%error, "read index: retrying");
        }
    }

    /// One try against the leader this node knows now.
    async fn attempt(&self, deadline: Instant) -> Attempt {
        let (id, state, leader) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            (m.id, m.state, m.current_leader)
        };
        if state == ServerState::Leader {
            match self.leader_reads.read_index().await {
                Ok(index) => return Attempt::Done(index),
                // Leadership was lost meanwhile: look for the new leader.
                Err(Error::FailedPrecondition(_)) => {}
                // The leader could not reach a quorum: retrying sooner than
                // the next election changes nothing.
                Err(error) => return Attempt::Fatal(error),
            }
        }
        let Some(leader) = leader.filter(|l| *l != id) else {
            return Attempt::Retry {
                leader,
                error: Error::Unavailable(
                    "no leader is known; cannot serve a linearizable read".into(),
                ),
            };
        };
        let Some(addr) = writes::member_addr(&self.raft, leader) else {
            return Attempt::Retry {
                leader: Some(leader),
                error: Error::Unavailable(format!(
                    "the leader (node {leader}) has no known address"
                )),
            };
        };
        let timeout = deadline.saturating_duration_since(Instant::now());
        let error = match self
            .peers
            .call(leader, &addr, PeerRpc::ReadIndex, &(), timeout)
            .await
        {
            Ok(LeaderReply::Done(index)) => return Attempt::Done(index),
            Ok(LeaderReply::Failed(error)) => return Attempt::Fatal(error),
            Ok(LeaderReply::NotLeader) => {
                Error::Unavailable(format!("node {leader} is no longer the leader"))
            }
            Err(e) => Error::Unavailable(format!("cannot get a read index from the leader: {e}")),
        };
        Attempt::Retry {
            leader: Some(leader),
            error,
        }
    }
}

/// How one try ended.
enum Attempt {
    Done(u64),
    /// Worth retrying once another leader is known (or after a pause).
    Retry {
        leader: Option<NodeId>,
        error: Error,
    },
    /// Retrying would not help within this request.
    Fatal(Error),
}
