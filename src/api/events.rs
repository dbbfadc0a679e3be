//! `containerd.services.events.v1.Events`: Subscribe streams the container
//! events this node applies, in log order, from every namespace unless
//! filtered. Events are produced by applied commands only, so Publish and
//! Forward (clients injecting events) are not supported.

use std::borrow::Cow;
use std::pin::Pin;

use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use crate::api::convert::event_payload;
use crate::events::{Event, EventKind};
use crate::node::Node;
use crate::proto::containerd::services::events::v1::events_server::Events;
use crate::proto::containerd::services::events::v1::{
    Envelope, ForwardRequest, PublishRequest, SubscribeRequest,
};
use crate::store::containers::present;
use crate::store::filter::{Adaptor, FilterSet};

/// The events service of one node.
pub struct EventsService {
    node: Node,
}

impl EventsService {
    pub fn new(node: Node) -> Self {
        EventsService { node }
    }
}

#[tonic::async_trait]
impl Events for EventsService {
    async fn publish(&self, _request: Request<PublishRequest>) -> Result<Response<()>, Status> {
        Err(Status::unimplemented(
            "berth publishes only the events of its own containers store",
        ))
    }

    async fn forward(&self, _request: Request<ForwardRequest>) -> Result<Response<()>, Status> {
        Err(Status::unimplemented(
            "berth publishes only the events of its own containers store",
        ))
    }

    type SubscribeStream = Pin<Box<dyn Stream<Item = Result<Envelope, Status>> + Send>>;

    #[tracing::instrument(skip_all)]
    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        // containerd reports a bad subscription filter as UNKNOWN.
        let filters = FilterSet::parse(&request.get_ref().filters)
            .map_err(|e| Status::unknown(e.subscribe_message()))?;
        let mut events = self.node.events().subscribe();
        let stream = async_stream::stream! {
            loop {
                match events.recv().await {
                    Ok(event) if filters.matches(event.as_ref()) => yield Ok(envelope(&event)),
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => {
                        yield Err(Status::resource_exhausted(format!(
                            "subscriber too slow: {missed} events were dropped; subscribe again"
                        )));
                        break;
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }
}

fn envelope(event: &Event) -> Envelope {
    Envelope {
        timestamp: Some(event.timestamp.into()),
        namespace: event.namespace.clone(),
        topic: event.topic().to_string(),
        event: Some(event_payload(event)),
    }
}

/// Envelope fields a subscription filter can name (spec §8): `namespace`,
/// `topic`, and `event.<path>` into the payload.
impl Adaptor for Event {
    fn field(&self, path: &[String]) -> Option<Cow<'_, str>> {
        let (first, rest) = path.split_first()?;
        match (first.as_str(), rest) {
            ("namespace", []) => present(&self.namespace),
            ("topic", []) => present(self.topic()),
            ("event", rest) => event_field(&self.kind, rest),
            _ => None,
        }
    }
}

fn event_field<'a>(kind: &'a EventKind, path: &[String]) -> Option<Cow<'a, str>> {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    match (kind, path.as_slice()) {
        (EventKind::ContainerCreate { id, .. }, ["id"])
        | (EventKind::ContainerUpdate { id, .. }, ["id"])
        | (EventKind::ContainerDelete { id }, ["id"]) => present(id),
        (EventKind::ContainerCreate { image, .. }, ["image"])
        | (EventKind::ContainerUpdate { image, .. }, ["image"]) => present(image),
        (EventKind::ContainerCreate { runtime, .. }, ["runtime", "name"]) => present(&runtime.name),
        (EventKind::ContainerUpdate { snapshot_key, .. }, ["snapshot_key"]) => {
            present(snapshot_key)
        }
        (EventKind::ContainerUpdate { labels, .. }, ["labels", key @ ..]) if !key.is_empty() => {
            labels
                .get(&key.join("."))
                .map(|v| Cow::Borrowed(v.as_str()))
        }
        _ => None,
    }
}
