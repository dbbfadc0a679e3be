//! `containerd.services.leases.v1.Leases`: Create, Delete and List, enough
//! for `ctr c create`, which wraps its Create in a lease.

use tonic::{Request, Response, Status};

use crate::api::listing::{self, Listing};
use crate::api::request;
use crate::error::Error;
use crate::node::Node;
use crate::proto::containerd::services::leases::v1::leases_server::Leases;
use crate::proto::containerd::services::leases::v1::{
    CreateRequest, CreateResponse, DeleteRequest, ListRequest, ListResponse,
};
use crate::store::command::{Applied, Command};
use crate::store::leases::validate;
use crate::store::model::{Lease, Timestamp};

/// The leases service of one node.
pub struct LeasesService {
    node: Node,
}

impl LeasesService {
    pub fn new(node: Node) -> Self {
        LeasesService { node }
    }
}

#[tonic::async_trait]
impl Leases for LeasesService {
    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn create(
        &self,
        request: Request<CreateRequest>,
    ) -> Result<Response<CreateResponse>, Status> {
        let namespace = request::namespace(&request)?;
        let message = request.into_inner();
        let lease = Lease {
            id: message.id,
            created_at: Timestamp::now(),
            labels: message.labels,
        };
        validate(&lease)?;
        match self
            .node
            .write(Command::CreateLease { namespace, lease })
            .await?
        {
            Applied::Lease(lease) => Ok(Response::new(CreateResponse {
                lease: Some(lease.into()),
            })),
            other => Err(Error::Internal(format!("a lease create applied as {other:?}")).into()),
        }
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn delete(&self, request: Request<DeleteRequest>) -> Result<Response<()>, Status> {
        let namespace = request::namespace(&request)?;
        let id = request.into_inner().id;
        self.node
            .write(Command::DeleteLease {
                namespace,
                id,
                now: Timestamp::now(),
            })
            .await?;
        Ok(Response::new(()))
    }

    #[tracing::instrument(skip_all)]
    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let listing = Listing::prepare(&self.node, &request, &request.get_ref().filters).await?;
        let store = self.node.store().clone();
        let leases = listing::collect_bounded(move || {
            store
                .leases(&listing.namespace)
                .filter(move |l| listing.keep(l))
                .map(|l| l.map(Into::into))
        })
        .await?;
        Ok(Response::new(ListResponse { leases }))
    }
}
