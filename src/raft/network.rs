//! The client side of `berth.raft.v1.Raft`: how this node reaches its peers.
//!
//! One lazily-connected tonic channel per peer address is cached and shared
//! by every caller (openraft creates a "client" per replication stream and
//! per read-index round; none of them may open a connection of its own).
//! Requests carry openraft's messages postcard-encoded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};

use crate::proto::berth::raft::v1::RaftRequest;
use crate::proto::berth::raft::v1::raft_client::RaftClient;
use crate::raft::{NodeId, TypeConfig, codec};
use crate::transport;

/// Largest message on the peer service. An AppendEntries request is cut to
/// `APPEND_BYTES_BUDGET` (openraft takes a prefix as partial success), so
/// only one very large entry can come near this.
pub const MAX_PEER_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Bytes of entries one AppendEntries carries, at most (one entry more if
/// a single entry is larger than this).
pub const APPEND_BYTES_BUDGET: usize = 8 * 1024 * 1024;

/// How long to wait for a peer to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Which RPC of the peer service to call.
#[derive(Clone, Copy, Debug)]
pub enum PeerRpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
    ForwardWrite,
    ReadIndex,
}

/// Why a peer call failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The request never left this node (no connection could be made):
    /// retrying cannot duplicate it.
    #[error("cannot reach node {target} at {addr}: {message}")]
    NotSent {
        target: NodeId,
        addr: String,
        message: String,
    },
    /// The request may have reached the peer; its effect is unknown.
    #[error("call to node {target} at {addr} failed: {message}")]
    Failed {
        target: NodeId,
        addr: String,
        message: String,
    },
    /// The peer answered with something that does not decode.
    #[error("bad answer from node {target}: {message}")]
    BadReply { target: NodeId, message: String },
}

/// Cached channels to every peer, shared by all of this node's callers.
#[derive(Clone)]
pub struct Peers {
    source: NodeId,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Peers {
    /// Peers as seen from node `source`.
    pub fn new(source: NodeId) -> Peers {
        Peers {
            source,
            channels: Arc::default(),
        }
    }

    /// The cached channel to `addr`, created lazily (never connects here).
    pub fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad peer address {addr:?}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let channel = transport::lazy_channel(endpoint);
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// Calls `rpc` on node `target` at `addr` with an encoded request,
    /// decoding the reply.
    pub async fn call<Req: Serialize, Reply: DeserializeOwned>(
        &self,
        target: NodeId,
        addr: &str,
        rpc: PeerRpc,
        request: &Req,
        timeout: Duration,
    ) -> Result<Reply, PeerError> {
        let payload = codec::encode(request).map_err(|e| PeerError::Failed {
            target,
            addr: addr.into(),
            message: e.to_string(),
        })?;
        let channel = self.channel(addr).map_err(|message| PeerError::NotSent {
            target,
            addr: addr.into(),
            message,
        })?;
        let mut client = RaftClient::new(channel)
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
        let mut request = tonic::Request::new(RaftRequest {
            target,
            source: self.source,
            payload,
        });
        request.set_timeout(timeout);
        let reply = match rpc {
            PeerRpc::AppendEntries => client.append_entries(request).await,
            PeerRpc::Vote => client.vote(request).await,
            PeerRpc::InstallSnapshot => client.install_snapshot(request).await,
            PeerRpc::ForwardWrite => client.forward_write(request).await,
            PeerRpc::ReadIndex => client.read_index(request).await,
        };
        match reply {
            Ok(reply) => {
                codec::decode(&reply.into_inner().payload).map_err(|e| PeerError::BadReply {
                    target,
                    message: e.to_string(),
                })
            }
            Err(status) if never_sent(&status) => Err(PeerError::NotSent {
                target,
                addr: addr.into(),
                message: status_text(&status),
            }),
            Err(status) => Err(PeerError::Failed {
                target,
                addr: addr.into(),
                message: status_text(&status),
            }),
        }
    }
}

/// Whether a failed call provably never reached the peer: the connection
/// itself could not be made. Anything else may have been delivered.
pub fn never_sent(status: &tonic::Status) -> bool {
    if status.code() != tonic::Code::Unavailable {
        return false;
    }
    let text = status_text(status);
    text.contains("error trying to connect")
        || text.contains("Connection refused")
        || text.contains("tcp connect error")
}

/// A status with its error sources, on one line.
fn status_text(status: &tonic::Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// openraft's factory of per-target network clients.
pub struct NetworkFactory {
    peers: Peers,
}

impl NetworkFactory {
    pub fn new(peers: Peers) -> Self {
        NetworkFactory { peers }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerConnection {
        PeerConnection {
            target,
            addr: node.addr.clone(),
            peers: self.peers.clone(),
        }
    }
}

/// openraft's client for one target node.
pub struct PeerConnection {
    target: NodeId,
    addr: String,
    peers: Peers,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerConnection {
    async fn raft_call<
        Req: Serialize,
        Resp: DeserializeOwned,
        E: DeserializeOwned + std::error::Error,
    >(
        &self,
        rpc: PeerRpc,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E> {
        let reply: Result<Resp, RaftError<NodeId, E>> = self
            .peers
            .call(self.target, &self.addr, rpc, request, option.hard_ttl())
            .await
            .map_err(|e| match e {
                PeerError::NotSent { .. } => RPCError::Unreachable(Unreachable::new(&e)),
                _ => RPCError::Network(NetworkError::new(&e)),
            })?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        mut request: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        // Send at most APPEND_BYTES_BUDGET of entries; openraft accepts the
        // prefix as a partial success and sends the rest next.
        let keep = entries_within_budget(&request.entries);
        let cut = keep < request.entries.len();
        if cut {
            request.entries.truncate(keep);
        }
        let last_sent = request.entries.last().map(|e| e.log_id);
        let response: AppendEntriesResponse<NodeId> = self
            .raft_call::<_, _, openraft::error::Infallible>(
                PeerRpc::AppendEntries,
                &request,
                &option,
            )
            .await?;
        Ok(match response {
            AppendEntriesResponse::Success if cut => {
                AppendEntriesResponse::PartialSuccess(last_sent)
            }
            other => other,
        })
    }

    async fn install_snapshot(
        &mut self,
        request: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.raft_call(PeerRpc::InstallSnapshot, &request, &option)
            .await
    }

    async fn vote(
        &mut self,
        request: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.raft_call::<_, _, openraft::error::Infallible>(PeerRpc::Vote, &request, &option)
            .await
    }
}

/// How many leading entries fit the byte budget (always at least one).
fn entries_within_budget(entries: &[crate::raft::Entry]) -> usize {
    let mut total = 0usize;
    for (i, entry) in entries.iter().enumerate() {
        total += postcard::experimental::serialized_size(entry).unwrap_or(APPEND_BYTES_BUDGET);
        if total > APPEND_BYTES_BUDGET && i > 0 {
            return i;
        }
    }
    entries.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forwarding retries a write elsewhere only on `NotSent`, so the
    /// connector's refusal must still read as one.
    #[tokio::test]
    async fn a_refused_connection_is_never_sent() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let addr = format!("127.0.0.1:{port}");
        let peers = Peers::new(1);
        let result: Result<(), PeerError> = peers
            .call(2, &addr, PeerRpc::Vote, &(), Duration::from_secs(2))
            .await;
        match result {
            Err(PeerError::NotSent { .. }) => {}
            other => panic!("expected NotSent, got {other:?}"),
        }
    }
}
