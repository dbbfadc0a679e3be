//! How a fresh node joins or forms a cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{InitializeError, RaftError};

use crate::error::{Error, Result};
use crate::raft::{NodeId, Raft};

/// What a node with an empty data dir does at start. A node with data
/// ignores this: its persisted membership wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// Form a one-member cluster of itself (the default).
    SingleNode,
    /// Form a cluster of these members; every member is started with the
    /// same list, and the cluster elects once a majority is up. The member
    /// with the lowest id initializes it (see [`maybe_initialize`]).
    InitialCluster(BTreeMap<NodeId, String>),
    /// Wait to be added by an administrator.
    Join,
}

/// Initializes Raft membership on a pristine node, per `bootstrap`.
///
/// With an initial cluster, only the member with the lowest id initializes
/// at once. openraft's `initialize` makes a node campaign immediately; when
/// every member did, their term-1 candidacies crossed, and openraft 0.9 lets
/// an uncommitted term-1 vote outrank the term-1 leader's, so about every
/// second start had a second election a second or two later. The others
/// become members when that node's vote request or its first entries reach
/// them. Should it not come up, each other member initializes by itself
/// after `fallback_after` times its rank among the members (the second
/// lowest first), unless by then it has heard from a candidate or leader.
pub(super) async fn maybe_initialize(
    raft: &Raft,
    id: NodeId,
    advertise: &str,
    bootstrap: &Bootstrap,
    fallback_after: Duration,
) -> Result<()> {
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| Error::Internal(format!("raft: {e}")))?;
    if initialized {
        tracing::info!("existing cluster state found; start-up membership flags are ignored");
        return Ok(());
    }
    let members: BTreeMap<NodeId, BasicNode> = match bootstrap {
        Bootstrap::Join => {
            tracing::info!("waiting to be added to a cluster");
            return Ok(());
        }
        Bootstrap::SingleNode => BTreeMap::from([(id, BasicNode::new(advertise))]),
        Bootstrap::InitialCluster(members) => {
            if !members.contains_key(&id) {
                return Err(Error::InvalidArgument(format!(
                    "--initial-cluster does not list this node's id {id}"
                )));
            }
            let members: BTreeMap<NodeId, BasicNode> = members
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr)))
                .collect();
            let rank = members.keys().position(|m| *m == id).unwrap_or(0);
            if rank > 0 {
                let delay = fallback_after.saturating_mul(rank as u32);
                tracing::info!(
                    ?delay,
                    "waiting for the member with the lowest id to form the cluster"
                );
                tokio::spawn(initialize_later(raft.clone(), members, delay));
                return Ok(());
            }
            members
        }
    };
    initialize(raft, members).await
}

/// The fallback of a member other than the lowest: after `delay`,
/// initializes the cluster unless this node has heard from a candidate or
/// leader by then.
async fn initialize_later(raft: Raft, members: BTreeMap<NodeId, BasicNode>, delay: Duration) {
    tokio::time::sleep(delay).await;
    match raft.is_initialized().await {
        Ok(false) => {
            tracing::warn!("no member has formed the cluster yet; initializing it from here");
            if let Err(e) = initialize(&raft, members).await {
                tracing::error!(error = %e, "could not initialize the cluster");
            }
        }
        Ok(true) => {
            let voters = raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .count();
            if voters == 0 {
                // Granted a vote to the first member, which then went away
                // before sending any entry. openraft refuses to initialize a
                // node that has voted; it joins when that member (restarted
                // with or without its data) or another initialized member
                // reaches it.
                tracing::warn!(
                    "this node voted for a candidate but has received no membership yet; \
                     it waits for the member with the lowest id to come back"
                );
            }
        }
        Err(e) => tracing::debug!(error = %e, "raft stopped before start-up ended"),
    }
}

/// `Raft::initialize`, where "already initialized" is success.
async fn initialize(raft: &Raft, members: BTreeMap<NodeId, BasicNode>) -> Result<()> {
    tracing::info!(?members, "initializing a new cluster");
    match raft.initialize(members).await {
        Ok(()) => Ok(()),
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(Error::Internal(format!("initializing the cluster: {e}"))),
    }
}

/// Parses `1=host:port,2=host:port,…`.
pub fn parse_members(list: &str) -> Result<BTreeMap<NodeId, String>> {
    let mut members = BTreeMap::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item.split_once('=').ok_or_else(|| {
            Error::InvalidArgument(format!("member {item:?} is not ID=HOST:PORT"))
        })?;
        let id: NodeId = id.trim().parse().ok().filter(|id| *id > 0).ok_or_else(|| {
            Error::InvalidArgument(format!("member id {id:?} is not a positive integer"))
        })?;
        let addr = addr.trim();
        if addr
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            return Err(Error::InvalidArgument(format!(
                "member address {addr:?} is not HOST:PORT"
            )));
        }
        if members.insert(id, addr.to_string()).is_some() {
            return Err(Error::InvalidArgument(format!(
                "member id {id} appears twice"
            )));
        }
    }
    if members.is_empty() {
        return Err(Error::InvalidArgument("the member list is empty".into()));
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_lists() {
        let parsed = parse_members("1=127.0.0.1:7071, 2=node-2:7070,3=[::1]:7073").unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[&2], "node-2:7070");
        for bad in [
            "",
            "1",
            "x=a:1",
            "0=a:1",
            "1=a",
            "1=:1",
            "1=a:99999",
            "1=a:1,1=b:2",
        ] {
            assert!(parse_members(bad).is_err(), "{bad:?}");
        }
    }
}
