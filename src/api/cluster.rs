//! `berth.cluster.v1.Cluster`: administration. Membership changes need the
//! leader; a node that is not the leader forwards them to it (streaming
//! add-node progress back), so an operator may call any node.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::admin::{self, status};
use crate::error::Error;
use crate::node::Node;
use crate::proto::berth::cluster::v1::cluster_server::Cluster;
use crate::proto::berth::cluster::v1::{
    AddNodeProgress, AddNodeRequest, HealthRequest, HealthResponse, LocalStatusRequest,
    MemberStatus, RemoveNodeRequest, RemoveNodeResponse, RetireRequest, RetireResponse,
    SaveSnapshotRequest, SnapshotChunk, StatusRequest, StatusResponse,
};

/// Size of one backup chunk on the wire.
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// The administration service of one node.
pub struct ClusterService {
    node: Node,
}

impl ClusterService {
    pub fn new(node: Node) -> Self {
        ClusterService { node }
    }

    /// The leader's address when it is another node; `None` when this node leads.
    fn leader_elsewhere(&self) -> Result<Option<String>, Status> {
        let leader = self.node.raft().metrics().borrow().current_leader;
        match leader {
            Some(id) if id == self.node.id() => Ok(None),
            Some(id) => self.node.node_addr(id).map(Some).ok_or_else(|| {
                Status::unavailable(format!("the leader (node {id}) has no known address"))
            }),
            None => Err(Status::unavailable(
                "the cluster has no leader right now; retry",
            )),
        }
    }
}

type ProgressStream = Pin<Box<dyn Stream<Item = Result<AddNodeProgress, Status>> + Send>>;
type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(status::cluster(&self.node).await))
    }

    async fn health(
        &self,
        _request: Request<HealthRequest>,
    ) -> Result<Response<HealthResponse>, Status> {
        Ok(Response::new(status::health(&self.node).await))
    }

    type AddNodeStream = ProgressStream;

    #[tracing::instrument(skip_all, fields(id = request.get_ref().id, address = %request.get_ref().address))]
    async fn add_node(
        &self,
        request: Request<AddNodeRequest>,
    ) -> Result<Response<ProgressStream>, Status> {
        let message = request.into_inner();
        admin::validate_member(message.id, &message.address)?;
        if let Some(leader) = self.leader_elsewhere()? {
            let mut client = status::cluster_client(&self.node, &leader)?;
            let upstream = client.add_node(message).await?.into_inner();
            return Ok(Response::new(Box::pin(upstream)));
        }
        let timeout = match message.timeout_seconds {
            0 => admin::DEFAULT_CATCH_UP_TIMEOUT,
            s => Duration::from_secs(u64::from(s)),
        };
        let max_lag = if message.max_lag == 0 {
            admin::DEFAULT_MAX_LAG
        } else {
            message.max_lag
        };
        let (sender, receiver) = mpsc::channel(64);
        let node = self.node.clone();
        tokio::spawn(async move {
            // Progress is best effort (a slow reader misses updates); the
            // final error, if any, is always delivered.
            let report = |update: AddNodeProgress| {
                let _ = sender.try_send(Ok(update));
            };
            let result = admin::add_node(
                &node,
                message.id,
                &message.address,
                timeout,
                max_lag,
                &report,
            )
            .await;
            if let Err(e) = result {
                let _ = sender.send(Err(Status::from(e))).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    #[tracing::instrument(skip_all, fields(id = request.get_ref().id, force = request.get_ref().force))]
    async fn remove_node(
        &self,
        request: Request<RemoveNodeRequest>,
    ) -> Result<Response<RemoveNodeResponse>, Status> {
        let message = request.into_inner();
        if let Some(leader) = self.leader_elsewhere()? {
            let mut client = status::cluster_client(&self.node, &leader)?;
            return client.remove_node(message).await;
        }
        Ok(Response::new(
            admin::remove_node(&self.node, message.id, message.force).await?,
        ))
    }

    type SaveSnapshotStream = SnapshotStream;

    #[tracing::instrument(skip_all)]
    async fn save_snapshot(
        &self,
        _request: Request<SaveSnapshotRequest>,
    ) -> Result<Response<SnapshotStream>, Status> {
        let (_meta, file) = admin::restore::fresh_snapshot(&self.node).await?;
        let file = tokio::fs::File::from_std(file);
        let chunks = futures::stream::try_unfold(file, |mut file| async move {
            let mut data = vec![0u8; SNAPSHOT_CHUNK_BYTES];
            let n = read_full(&mut file, &mut data)
                .await
                .map_err(|e| Status::from(Error::from(e)))?;
            if n == 0 {
                return Ok(None);
            }
            data.truncate(n);
            Ok(Some((SnapshotChunk { data }, file)))
        });
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn local_status(
        &self,
        _request: Request<LocalStatusRequest>,
    ) -> Result<Response<MemberStatus>, Status> {
        Ok(Response::new(status::local(&self.node)))
    }

    async fn retire(
        &self,
        request: Request<RetireRequest>,
    ) -> Result<Response<RetireResponse>, Status> {
        let id = request.into_inner().id;
        if id != self.node.id() {
            return Err(Status::failed_precondition(format!(
                "this is node {}, not node {id}",
                self.node.id()
            )));
        }
        self.node.retire()?;
        Ok(Response::new(RetireResponse {}))
    }
}

/// Reads until `buf` is full or the file ends.
async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}
