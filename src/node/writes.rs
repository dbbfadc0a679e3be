//! Where a batch of writes goes: proposed to the local Raft if this node
//! leads, forwarded to the leader otherwise, following leadership changes
//! for as long as retrying cannot duplicate anything.
//!
//! Commands travel with a flag saying whether they may be forwarded:
//! commands that a follower forwarded to this node may not (two nodes that
//! each think the other leads would bounce them for ever); they are answered
//! `NotLeader` instead, and their follower tries again. On the leader,
//! forwarded commands and its own clients' commands share one batcher, so
//! they share log entries and fsyncs.

use std::time::Duration;

use openraft::ServerState;
use openraft::error::{ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::raft::network::{PeerError, PeerRpc, Peers};
use crate::raft::{Batch, NodeId, Raft, Response};
use crate::store::command::{Command, Outcome};

/// What became of one command of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// Applied; this is its outcome.
    Applied(Outcome),
    /// Not proposed: the node is not the leader (safe to retry elsewhere).
    NotLeader,
    /// Could not be delivered, or its fate is unknown (the error says which).
    Failed(Error),
}

/// A command on its way, and whether this node may forward it.
pub struct Routed {
    pub command: Command,
    pub may_forward: bool,
}

/// Routes write batches of one node.
#[derive(Clone)]
pub struct WriteRouter {
    pub id: NodeId,
    pub raft: Raft,
    pub peers: Peers,
    /// How long a batch may take, end to end.
    pub request_timeout: Duration,
    /// How long to wait for a new leader before trying again.
    pub leader_wait: Duration,
}

impl WriteRouter {
    /// Orders `batch` through the log; returns what became of each command.
    pub async fn route(&self, batch: Vec<Routed>) -> Vec<Delivery> {
        let deadline = Instant::now() + self.request_timeout;
        let mut results: Vec<Option<Delivery>> = vec![None; batch.len()];
        // Indexes of the commands still to place, in batch order.
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        while !pending.is_empty() {
            if Instant::now() >= deadline {
                fail_all(&mut results, &pending, self.timed_out());
                break;
            }
            // Only a node that leads proposes. A follower that knows its
            // leader forwards at once (asking its own Raft would only queue
            // the batch behind the core's current log fsync to learn the
            // same leader); one that knows none waits for an election.
            let cut_may_survive = match self.role() {
                Role::Leading { cut_may_survive } => cut_may_survive,
                Role::Following(leader) => {
                    pending = self
                        .hand_to_leader(leader, &batch, pending, &mut results, deadline)
                        .await;
                    continue;
                }
            };
            let proposal = Batch {
                commands: pending.iter().map(|&i| batch[i].command.clone()).collect(),
            };
            let written =
                match tokio::time::timeout_at(deadline, self.raft.client_write(proposal)).await {
                    Ok(written) => written,
                    Err(_) => {
                        fail_all(&mut results, &pending, self.timed_out());
                        break;
                    }
                };
            match written {
                Ok(written) => {
                    match response_outcomes(written.data, pending.len()) {
                        Ok(outcomes) => {
                            for (&i, outcome) in pending.iter().zip(outcomes) {
                                results[i] = Some(Delivery::Applied(outcome));
                            }
                        }
                        Err(e) => fail_all(&mut results, &pending, e),
                    }
                    break;
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))
                    if cut_may_survive =>
                {
                    fail_all(&mut results, &pending, Error::Unavailable(
                        "leadership moved while this write was in flight; it may or may not have been applied".into(),
                    ));
                    break;
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                    let leader = forward.leader_id.filter(|l| *l != self.id);
                    pending = self
                        .hand_to_leader(leader, &batch, pending, &mut results, deadline)
                        .await;
                }
                Err(refused) => {
                    let error = match refused {
                        RaftError::APIError(other) => {
                            Error::Internal(format!("raft refused a write: {other}"))
                        }
                        RaftError::Fatal(fatal) => {
                            Error::Unavailable(format!("raft is not running: {fatal}"))
                        }
                    };
                    fail_all(&mut results, &pending, error);
                    break;
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Delivery::Failed(Error::Internal("a write was left unrouted".into()))
                })
            })
            .collect()
    }

    /// Whether this node leads, from openraft's metrics (which may lag the
    /// core by a moment: a write then meets `ForwardToLeader`).
    fn role(&self) -> Role {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        if m.state != ServerState::Leader {
            return Role::Following(m.current_leader.filter(|leader| *leader != self.id));
        }
        let membership = m.membership_config.membership();
        Role::Leading {
            cut_may_survive: cut_entries_may_survive(
                membership.voter_ids().count(),
                membership.get_joint_config().len() > 1,
            ),
        }
    }

    /// Deals with `pending` commands this node did not append (it does not
    /// lead, so trying elsewhere cannot duplicate them): those that came
    /// forwarded are answered `NotLeader`, the rest go to `leader` if known.
    /// Returns those still to place, after waiting (a bounded time, never
    /// past the deadline) for the leadership to change.
    async fn hand_to_leader(
        &self,
        leader: Option<NodeId>,
        batch: &[Routed],
        pending: Vec<usize>,
        results: &mut [Option<Delivery>],
        deadline: Instant,
    ) -> Vec<usize> {
        let (mut pending, bound): (Vec<usize>, Vec<usize>) =
            pending.iter().partition(|&&i| batch[i].may_forward);
        for i in bound {
            results[i] = Some(Delivery::NotLeader);
        }
        if pending.is_empty() {
            return pending;
        }
        if let Some(leader) = leader {
            pending = self
                .forward(leader, batch, pending, results, deadline)
                .await;
        }
        if !pending.is_empty() {
            self.wait_for_leader_change(leader, deadline).await;
        }
        pending
    }

    /// Sends the `pending` commands of `batch` to the leader, records what
    /// it did with them, and returns those it did not take (not delivered,
    /// or it no longer leads): they were not applied and may be retried.
    async fn forward(
        &self,
        leader: NodeId,
        batch: &[Routed],
        pending: Vec<usize>,
        results: &mut [Option<Delivery>],
        deadline: Instant,
    ) -> Vec<usize> {
        let Some(addr) = member_addr(&self.raft, leader) else {
            return pending;
        };
        // The leader decodes these as `Vec<Command>`: the same encoding as
        // the slice.
        let commands: Vec<&Command> = pending.iter().map(|&i| &batch[i].command).collect();
        let timeout = deadline.saturating_duration_since(Instant::now());
        let reply: Result<Vec<Delivery>, PeerError> = self
            .peers
            .call(leader, &addr, PeerRpc::ForwardWrite, &commands, timeout)
            .await;
        match reply {
            Ok(deliveries) if deliveries.len() == pending.len() => {
                let mut retry = Vec::new();
                for (i, delivery) in pending.into_iter().zip(deliveries) {
                    match delivery {
                        Delivery::NotLeader => retry.push(i),
                        other => results[i] = Some(other),
                    }
                }
                retry
            }
            Ok(deliveries) => {
                let e = Error::Internal(format!(
                    "the leader answered {} deliveries for {} commands",
                    deliveries.len(),
                    pending.len()
                ));
                fail_all(results, &pending, e);
                Vec::new()
            }
            Err(PeerError::NotSent { .. }) => pending,
            Err(e) => {
                let e = Error::Unavailable(format!(
                    "lost contact with the leader while it handled the write; it may or may not have been applied: {e}"
                ));
                fail_all(results, &pending, e);
                Vec::new()
            }
        }
    }

    fn timed_out(&self) -> Error {
        Error::DeadlineExceeded(format!(
            "write not confirmed within {:?}; it may or may not have been applied",
            self.request_timeout
        ))
    }

    /// Waits (a bounded time) for the known leader to differ from `current`.
    async fn wait_for_leader_change(&self, current: Option<NodeId>, deadline: Instant) {
        let until = deadline.min(Instant::now() + self.leader_wait);
        wait_for_leader(&self.raft, current, until).await;
    }
}

/// This node's part in placing a write.
enum Role {
    /// It leads; see [`cut_entries_may_survive`].
    Leading { cut_may_survive: bool },
    /// It follows the leader it knows of, if any.
    Following(Option<NodeId>),
}

/// Whether an entry that a leader appended and then had cut from its log by
/// a new leader may still be on other nodes and be committed later.
/// openraft 0.9 answers such a write `ForwardToLeader`, exactly as it
/// answers one it never appended, so a retry elsewhere is safe only if the
/// cut copy can never come back: with at most three voters (and no joint
/// configuration) it cannot, because an entry that reached a second node is
/// on a majority, which every later leader's log includes, so it is never
/// cut; and one that only the old leader had is gone once cut. With more
/// voters, a minority holding it can still elect one of its own later.
fn cut_entries_may_survive(voters: usize, joint: bool) -> bool {
    joint || voters > 3
}

/// Waits until `until` for this node to know a leader other than `current`
/// (an election in progress, or a node that has just started). Returns the
/// leader, if one became known in time.
pub async fn wait_for_leader(
    raft: &Raft,
    current: Option<NodeId>,
    until: Instant,
) -> Option<NodeId> {
    let mut metrics = raft.metrics();
    let wait = async {
        loop {
            let leader = metrics.borrow().current_leader;
            if leader.is_some() && leader != current {
                return leader;
            }
            if metrics.changed().await.is_err() {
                // Raft has stopped: nothing will change; wait out the
                // bound rather than let callers retry in a tight loop.
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::time::timeout_at(until, wait).await.ok().flatten()
}

fn fail_all(results: &mut [Option<Delivery>], which: &[usize], error: Error) {
    for &i in which {
        results[i] = Some(Delivery::Failed(error.clone()));
    }
}

/// A member's address from the Raft membership.
pub fn member_addr(raft: &Raft, id: NodeId) -> Option<String> {
    let metrics = raft.metrics();
    let membership = metrics.borrow().membership_config.clone();
    membership
        .membership()
        .get_node(&id)
        .map(|n| n.addr.clone())
}

/// The outcomes inside a log entry's response, one per command.
fn response_outcomes(response: Response, expected: usize) -> Result<Vec<Outcome>> {
    match response {
        Response::Applied(outcomes) if outcomes.len() == expected => Ok(outcomes),
        Response::Applied(outcomes) => Err(Error::Internal(format!(
            "a batch of {expected} commands produced {} outcomes",
            outcomes.len()
        ))),
        Response::Nothing => Err(Error::Internal(
            "a batch's entry produced no outcomes".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::cut_entries_may_survive;

    #[test]
    fn retrying_a_cut_write_is_safe_only_with_at_most_three_voters() {
        for voters in 1..=3 {
            assert!(!cut_entries_may_survive(voters, false), "{voters} voters");
        }
        for voters in 4..=7 {
            assert!(cut_entries_may_survive(voters, false), "{voters} voters");
        }
        // A joint configuration (a membership change) is never assumed safe.
        assert!(cut_entries_may_survive(3, true));
    }
}
