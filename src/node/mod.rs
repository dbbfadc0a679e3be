//! The node: one member of a berth cluster. It owns the Raft instance, the
//! store and the event bus, and gives the API layer exactly two operations:
//!
//! - [`Node::write`]: order a `Command` through the Raft log and return its
//!   outcome once a quorum has it durably and it is applied. Concurrent
//!   writes are gathered into batches, one log entry each (`batcher`); on a
//!   follower a batch is forwarded to the leader (`writes`), so the client
//!   never sees "not leader".
//! - [`Node::read_barrier`]: wait until a read may run against the local
//!   store. Linearizable (default): ReadIndex from the leader (a quorum
//!   heartbeat round, shared by concurrent reads), then wait until this
//!   node has applied up to it. Serializable: no wait.

mod batcher;
pub mod bootstrap;
pub mod leader;
mod read_index;
pub mod reads;
mod writes;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use openraft::BasicNode;
use tokio::time::Instant;

pub use bootstrap::Bootstrap;
use leader::LeaderReply;

use crate::error::{Error, Result};
use crate::events::EventBus;
use crate::raft::log_store::LogStore;
use crate::raft::network::{NetworkFactory, Peers};
use crate::raft::snapshot::SnapshotDir;
use crate::raft::state_machine::StateMachine;
use crate::raft::{NodeId, Raft};
use crate::store::command::{Applied, Command};
use crate::store::{Store, StoreOptions};
use crate::wal::{Wal, WalOptions};
use batcher::WriteBatcher;
use read_index::ReadIndexSource;
use reads::ReadRounds;
use writes::{Delivery, WriteRouter};

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// The read sees every write acknowledged before it started (default).
    #[default]
    Linearizable,
    /// The read sees this node's local state, which may lag.
    Serializable,
}

/// Raft timings and policies, with documented defaults.
#[derive(Clone, Debug)]
pub struct RaftOptions {
    /// Leader heartbeat period; also the time a read-index round may take.
    pub heartbeat_ms: u64,
    /// Election timeout (a random value in `[min, 2*min)` per election).
    pub election_timeout_ms: u64,
    /// Log entries since the last snapshot that trigger a new one.
    pub snapshot_threshold: u64,
    /// Timeout for sending one snapshot chunk to a peer.
    pub snapshot_chunk_timeout_ms: u64,
}

impl Default for RaftOptions {
    fn default() -> Self {
        RaftOptions {
            heartbeat_ms: 100,
            election_timeout_ms: 1000,
            snapshot_threshold: 10_000,
            snapshot_chunk_timeout_ms: 10_000,
        }
    }
}

impl RaftOptions {
    fn openraft_config(&self) -> Result<openraft::Config> {
        let config = openraft::Config {
            cluster_name: "berth".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_ms,
            election_timeout_max: self.election_timeout_ms * 2,
            install_snapshot_timeout: self.snapshot_chunk_timeout_ms,
            snapshot_max_chunk_size: 4 * 1024 * 1024,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_threshold),
            max_in_snapshot_log_to_keep: (self.snapshot_threshold / 2).min(1000),
            // A lagging follower is sent a snapshot rather than a long log;
            // this must stay above the snapshot threshold.
            replication_lag_threshold: self.snapshot_threshold * 2,
            // Purge in batches, but small enough relative to the threshold
            // that a small threshold still bounds the log.
            purge_batch_size: (self.snapshot_threshold / 4).clamp(1, 256),
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| Error::InvalidArgument(format!("raft options: {e}")))
    }
}

/// Everything needed to start a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    /// The address peers and clients reach this node at.
    pub advertise: String,
    pub data_dir: PathBuf,
    pub store: StoreOptions,
    pub bootstrap: Bootstrap,
    pub raft: RaftOptions,
    /// How long a write or a read barrier may take before it fails.
    pub request_timeout: Duration,
}

/// Who is in the cluster.
#[derive(Clone, Debug, Default)]
pub struct Membership {
    /// Voters (in a joint configuration: of either config).
    pub voters: BTreeSet<NodeId>,
    /// Every member, voters and learners, with its address.
    pub nodes: BTreeMap<NodeId, BasicNode>,
}

/// A running node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    /// Gathers concurrent writes into log entries.
    writes: Arc<WriteBatcher>,
    raft: Raft,
    store: Arc<Store>,
    events: EventBus,
    peers: Peers,
    /// Reads of any kind on this node: one round per batch.
    reads: Arc<ReadRounds>,
    /// Read-index rounds this node runs as leader (for itself and for
    /// followers that ask over the peer service).
    leader_reads: Arc<ReadRounds>,
    request_timeout: Duration,
    data_dir: PathBuf,
    snapshots: Arc<SnapshotDir>,
    /// Set once this node has been removed from the cluster: it then
    /// refuses clients and never campaigns.
    retired: AtomicBool,
}

/// Marker file of a removed node, so that it stays retired across restarts.
const RETIRED_MARKER: &str = "removed";

impl Node {
    /// Opens the node's storage, starts Raft and bootstraps the cluster if
    /// this is a fresh node that should.
    pub async fn start(config: NodeConfig) -> Result<Node> {
        let store = Arc::new(Store::open(&config.data_dir.join("state"), &config.store)?);
        let events = EventBus::default();
        let snapshots = Arc::new(SnapshotDir::open(&config.data_dir.join("snapshots"))?);
        let state_machine = StateMachine::open(store.clone(), snapshots.clone(), events.clone())?;
        let wal = Arc::new(
            Wal::open(config.data_dir.join("wal"), WalOptions::default())
                .map_err(|e| Error::Internal(format!("opening the raft log: {e}")))?,
        );
        let peers = Peers::new(config.id);
        let log_store = LogStore::new(wal);
        if let Some(vote) = log_store
            .forget_leadership(config.id)
            .map_err(|e| Error::Internal(format!("reading the saved vote: {e}")))?
        {
            tracing::info!(%vote, "this node led before it stopped; it will campaign for a new term");
        }
        let raft = Raft::new(
            config.id,
            Arc::new(config.raft.openraft_config()?),
            NetworkFactory::new(peers.clone()),
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| Error::Internal(format!("starting raft: {e}")))?;
        // Long enough for the first member's election to reach this one (a
        // randomized timeout of up to twice the election timeout, plus a vote).
        let bootstrap_fallback = Duration::from_millis(config.raft.election_timeout_ms) * 3;
        bootstrap::maybe_initialize(
            &raft,
            config.id,
            &config.advertise,
            &config.bootstrap,
            bootstrap_fallback,
        )
        .await?;

        let heartbeat = Duration::from_millis(config.raft.heartbeat_ms);
        let leader_reads = {
            let raft = raft.clone();
            ReadRounds::new(move || {
                let raft = raft.clone();
                Box::pin(async move { read_index::as_leader(&raft).await })
            })
        };
        let reads = {
            let source = Arc::new(ReadIndexSource {
                raft: raft.clone(),
                peers: peers.clone(),
                leader_reads: leader_reads.clone(),
                timeout: config.request_timeout,
                // Long enough for an election to finish (a randomized
                // timeout of up to twice the election timeout, plus a vote).
                leader_wait: Duration::from_millis(config.raft.election_timeout_ms) * 3,
            });
            ReadRounds::new(move || {
                let source = source.clone();
                Box::pin(async move { source.read_index().await })
            })
        };
        let router = WriteRouter {
            id: config.id,
            raft: raft.clone(),
            peers: peers.clone(),
            request_timeout: config.request_timeout,
            leader_wait: heartbeat * 5,
        };
        let writes = WriteBatcher::start(move |batch| {
            let router = router.clone();
            Box::pin(async move { router.route(batch).await })
        });
        let node = Node {
            inner: Arc::new(Inner {
                id: config.id,
                writes,
                raft,
                store,
                events,
                peers,
                reads,
                leader_reads,
                request_timeout: config.request_timeout,
                retired: AtomicBool::new(false),
                data_dir: config.data_dir.clone(),
                snapshots,
            }),
        };
        if config.data_dir.join(RETIRED_MARKER).exists() {
            node.retire_in_memory();
        }
        tokio::spawn(watch_own_removal(node.clone()));
        Ok(node)
    }

    /// Marks this node as removed from the cluster, durably: it refuses
    /// clients from now on and never starts an election.
    pub fn retire(&self) -> Result<()> {
        crate::fsutil::write_atomic(
            &self.inner.data_dir.join(RETIRED_MARKER),
            b"this node was removed from its cluster; wipe the data dir to reuse it\n",
        )?;
        self.retire_in_memory();
        Ok(())
    }

    fn retire_in_memory(&self) {
        if !self.inner.retired.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                node = self.inner.id,
                "this node has been removed from the cluster; it no longer serves"
            );
        }
        self.inner.raft.runtime_config().elect(false);
    }

    /// Whether this node has been removed from its cluster.
    pub fn is_retired(&self) -> bool {
        self.inner.retired.load(Ordering::SeqCst)
    }

    /// Refuses work on a removed node.
    fn check_serving(&self) -> Result<()> {
        if self.is_retired() {
            return Err(Error::FailedPrecondition(format!(
                "node {} has been removed from the cluster and no longer serves; use another node",
                self.inner.id
            )));
        }
        Ok(())
    }

    /// Orders a write through the log and returns its outcome. Within the
    /// request timeout it follows leadership changes; past it, the write is
    /// reported as timed out: it may or may not have been applied.
    #[tracing::instrument(level = "debug", skip_all, fields(node = self.inner.id, namespace = command.namespace()))]
    pub async fn write(&self, command: Command) -> Result<Applied> {
        self.check_serving()?;
        let timeout = self.inner.request_timeout;
        match tokio::time::timeout(timeout, self.inner.writes.submit(command, true)).await {
            Ok(Ok(Delivery::Applied(outcome))) => outcome,
            Ok(Ok(Delivery::Failed(e))) => Err(e),
            Ok(Ok(Delivery::NotLeader)) | Ok(Err(_)) => {
                Err(Error::Internal("a write was dropped unrouted".into()))
            }
            Err(_) => Err(Error::DeadlineExceeded(format!(
                "write not confirmed within {timeout:?}; it may or may not have been applied"
            ))),
        }
    }

    /// The leader-side half of commands a follower forwarded: they join
    /// this node's own batches, but are never forwarded again.
    pub async fn write_as_leader(&self, commands: Vec<Command>) -> Vec<Delivery> {
        if self.is_retired() {
            return commands.iter().map(|_| Delivery::NotLeader).collect();
        }
        let receivers: Vec<_> = commands
            .into_iter()
            .map(|c| self.inner.writes.submit(c, false))
            .collect();
        let mut deliveries = Vec::with_capacity(receivers.len());
        for receiver in receivers {
            deliveries.push(receiver.await.unwrap_or_else(|_| {
                Delivery::Failed(Error::Internal("a write was dropped unrouted".into()))
            }));
        }
        deliveries
    }

    /// Waits until a read at `consistency` may run against the local store.
    #[tracing::instrument(level = "debug", skip_all, fields(node = self.inner.id))]
    pub async fn read_barrier(&self, consistency: Consistency) -> Result<()> {
        self.check_serving()?;
        if consistency == Consistency::Serializable {
            return Ok(());
        }
        let timeout = self.inner.request_timeout;
        let deadline = Instant::now() + timeout;
        let index = tokio::time::timeout_at(deadline, self.inner.reads.read_index())
            .await
            .map_err(|_| {
                Error::Unavailable(format!("no read index from the leader within {timeout:?}"))
            })??;
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.inner
            .raft
            .wait(Some(remaining))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map_err(|e| {
                Error::Unavailable(format!(
                    "this node did not apply up to the read index {index}: {e}"
                ))
            })?;
        Ok(())
    }

    /// The leader-side half of a follower's read: a read index from a
    /// quorum round on this node, or `NotLeader`.
    pub async fn read_index_as_leader(&self) -> LeaderReply<u64> {
        match self.inner.leader_reads.read_index().await {
            Ok(index) => LeaderReply::Done(index),
            Err(Error::FailedPrecondition(_)) => LeaderReply::NotLeader,
            Err(e) => LeaderReply::Failed(e),
        }
    }

    /// The address of a member, from the current membership.
    pub fn node_addr(&self, id: NodeId) -> Option<String> {
        writes::member_addr(&self.inner.raft, id)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The Raft handle (for the peer service and administration).
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The local store, for reads after a barrier.
    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    /// The node's event bus.
    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }

    /// The node's snapshot directory.
    pub fn snapshots(&self) -> &Arc<SnapshotDir> {
        &self.inner.snapshots
    }

    /// The node's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.inner.data_dir
    }

    /// The membership as this node knows it (the effective config).
    pub fn membership(&self) -> Membership {
        let metrics = self.inner.raft.metrics();
        let config = metrics.borrow().membership_config.clone();
        let membership = config.membership();
        Membership {
            voters: membership.voter_ids().collect(),
            nodes: membership
                .nodes()
                .map(|(id, node)| (*id, node.clone()))
                .collect(),
        }
    }

    /// The index of the last entry this node applied.
    pub fn applied_index(&self) -> u64 {
        self.inner
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0)
    }

    /// Channels to peers.
    pub fn peers(&self) -> &Peers {
        &self.inner.peers
    }

    /// Stops Raft and makes the store durable.
    pub async fn shutdown(&self) -> Result<()> {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || store.flush_durably())
            .await
            .map_err(|e| Error::Internal(format!("flush task: {e}")))?
    }
}

/// Retires the node when a membership it applies no longer lists it, after
/// one that did. (A learner that installs a snapshot older than its own
/// addition sees a membership without itself first; that is not removal.)
async fn watch_own_removal(node: Node) {
    let mut metrics = node.inner.raft.metrics();
    let mut member_since: Option<openraft::LogId<NodeId>> = None;
    loop {
        let (listed, log_id) = {
            let m = metrics.borrow();
            let membership = m.membership_config.clone();
            (
                membership.membership().get_node(&node.inner.id).is_some(),
                membership.log_id().to_owned(),
            )
        };
        if listed {
            member_since = member_since.max(log_id);
        } else if member_since.is_some()
            && log_id > member_since
            && !node.is_retired()
            && let Err(e) = node.retire()
        {
            tracing::error!("recording this node's removal: {e}");
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
