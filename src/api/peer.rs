//! `berth.raft.v1.Raft`: the peer service. Raft messages go to openraft;
//! forwarded writes and read-index requests go to the node's leader-side
//! handlers. Every request names its target node: a message meant for
//! another id is refused, and malformed payloads are InvalidArgument —
//! nothing a peer sends can crash a node.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use crate::node::Node;
use crate::proto::berth::raft::v1::raft_server::Raft as RaftRpc;
use crate::proto::berth::raft::v1::{RaftReply, RaftRequest};
use crate::raft::codec;
use crate::store::command::Command;

/// The peer service of one node.
pub struct PeerService {
    node: Node,
}

impl PeerService {
    pub fn new(node: Node) -> Self {
        PeerService { node }
    }

    /// Checks the envelope and decodes its payload.
    fn open<T: DeserializeOwned>(&self, request: Request<RaftRequest>) -> Result<T, Status> {
        let request = request.into_inner();
        if request.target != self.node.id() {
            return Err(Status::failed_precondition(format!(
                "this is node {}, not node {} (message from node {})",
                self.node.id(),
                request.target,
                request.source
            )));
        }
        Ok(codec::decode(&request.payload)?)
    }
}

fn reply<T: Serialize>(value: &T) -> Result<Response<RaftReply>, Status> {
    Ok(Response::new(RaftReply {
        payload: codec::encode(value)?,
    }))
}

#[tonic::async_trait]
impl RaftRpc for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = self.open(request)?;
        reply(&self.node.raft().append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc = self.open(request)?;
        reply(&self.node.raft().vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc = self.open(request)?;
        reply(&self.node.raft().install_snapshot(rpc).await)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(node = self.node.id()))]
    async fn forward_write(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let commands: Vec<Command> = self.open(request)?;
        reply(&self.node.write_as_leader(commands).await)
    }

    async fn read_index(
        &self,
        request: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let () = self.open(request)?;
        reply(&self.node.read_index_as_leader().await)
    }
}
