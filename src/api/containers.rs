//! `containerd.services.containers.v1.Containers`: thin handlers that check
//! the request, turn writes into `Command`s for the node, and read the local
//! store after a read barrier.

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::api::listing::{self, Listing};
use crate::api::request;
use crate::error::Error;
use crate::node::Node;
use crate::proto::containerd::services::containers::v1 as pb;
use crate::proto::containerd::services::containers::v1::containers_server::Containers;
use crate::proto::containerd::services::containers::v1::{
    CreateContainerRequest, CreateContainerResponse, DeleteContainerRequest, GetContainerRequest,
    GetContainerResponse, ListContainerMessage, ListContainersRequest, ListContainersResponse,
    UpdateContainerRequest, UpdateContainerResponse,
};
use crate::store::command::{Applied, Command};
use crate::store::containers::validate_new;
use crate::store::model::{Container, Timestamp};
use crate::store::validate::go_quote;

/// The containers service of one node.
pub struct ContainersService {
    node: Node,
}

impl ContainersService {
    pub fn new(node: Node) -> Self {
        ContainersService { node }
    }

    /// Proposes a command that answers with a container.
    async fn write_container(&self, command: Command) -> Result<Container, Status> {
        match self.node.write(command).await? {
            Applied::Container(container) => Ok(*container),
            other => Err(Error::Internal(format!("a container write applied as {other:?}")).into()),
        }
    }
}

#[tonic::async_trait]
impl Containers for ContainersService {
    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn get(
        &self,
        request: Request<GetContainerRequest>,
    ) -> Result<Response<GetContainerResponse>, Status> {
        let namespace = request::namespace(&request)?;
        self.node
            .read_barrier(request::consistency(&request)?)
            .await?;
        let id = &request.get_ref().id;
        let container = self
            .node
            .store()
            .container(&namespace, id)?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "container {} in namespace {}",
                    go_quote(id),
                    go_quote(&namespace)
                ))
            })?;
        Ok(Response::new(GetContainerResponse {
            container: Some(container.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let listing = Listing::prepare(&self.node, &request, &request.get_ref().filters).await?;
        let store = self.node.store().clone();
        let containers = listing::collect_bounded(move || {
            store
                .containers(&listing.namespace)
                .filter(move |c| listing.keep(c))
                .map(|c| c.map(pb::Container::from))
        })
        .await?;
        Ok(Response::new(ListContainersResponse { containers }))
    }

    type ListStreamStream = ReceiverStream<Result<ListContainerMessage, Status>>;

    #[tracing::instrument(skip_all)]
    async fn list_stream(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<Self::ListStreamStream>, Status> {
        let listing = Listing::prepare(&self.node, &request, &request.get_ref().filters).await?;
        let store = self.node.store().clone();
        let stream = listing::stream(move || {
            store
                .containers(&listing.namespace)
                .filter(move |c| listing.keep(c))
                .map(|c| {
                    c.map(|c| ListContainerMessage {
                        container: Some(c.into()),
                    })
                })
        });
        Ok(Response::new(stream))
    }

    #[tracing::instrument(skip_all, fields(id))]
    async fn create(
        &self,
        request: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        let namespace = request::namespace(&request)?;
        let mut container = Container::from(request.into_inner().container.unwrap_or_default());
        tracing::Span::current().record("id", container.id.as_str());
        validate_new(&container)?;
        let now = Timestamp::now();
        container.created_at = now;
        container.updated_at = now;
        let created = self
            .write_container(Command::CreateContainer {
                namespace,
                container,
            })
            .await?;
        Ok(Response::new(CreateContainerResponse {
            container: Some(created.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(id))]
    async fn update(
        &self,
        request: Request<UpdateContainerRequest>,
    ) -> Result<Response<UpdateContainerResponse>, Status> {
        let message = request.get_ref();
        let id = message
            .container
            .as_ref()
            .map(|c| c.id.as_str())
            .unwrap_or_default();
        tracing::Span::current().record("id", id);
        if id.is_empty() {
            // containerd checks this before the namespace.
            return Err(Status::invalid_argument("Container.ID required"));
        }
        let namespace = request::namespace(&request)?;
        let message = request.into_inner();
        let container = Container::from(message.container.unwrap_or_default());
        let mask = message.update_mask.map(|m| m.paths).unwrap_or_default();
        let command = Command::UpdateContainer {
            namespace,
            container,
            mask,
            now: Timestamp::now(),
        };
        let updated = self.write_container(command).await?;
        Ok(Response::new(UpdateContainerResponse {
            container: Some(updated.into()),
        }))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn delete(
        &self,
        request: Request<DeleteContainerRequest>,
    ) -> Result<Response<()>, Status> {
        let namespace = request::namespace(&request)?;
        let id = request.into_inner().id;
        self.node
            .write(Command::DeleteContainer {
                namespace,
                id,
                now: Timestamp::now(),
            })
            .await?;
        Ok(Response::new(()))
    }
}
