//! Container events: what each applied command announces, and the bus that
//! carries them to `Events.Subscribe` streams.
//!
//! Events come from *applied* commands, never from request handlers, so
//! every replica derives the same events in the same (log) order and a
//! subscriber on any node sees every change. An event's timestamp is the
//! command's own timestamp, decided by its proposer: identical everywhere.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::store::command::{Applied, Command};
use crate::store::model::{Container, Runtime, Timestamp};

/// How many events a slow subscriber may fall behind before it is cut off.
pub const SUBSCRIBER_BUFFER: usize = 4096;

/// One published event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub timestamp: Timestamp,
    pub namespace: String,
    pub kind: EventKind,
}

/// The payload of an event (containerd's `containerd.events` messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    ContainerCreate {
        id: String,
        image: String,
        runtime: Runtime,
    },
    ContainerUpdate {
        id: String,
        image: String,
        labels: std::collections::BTreeMap<String, String>,
        snapshot_key: String,
    },
    ContainerDelete {
        id: String,
    },
}

impl Event {
    /// The event a successfully applied command announces, if any (lease
    /// changes announce nothing, as in containerd).
    pub fn of(command: &Command, applied: &Applied) -> Option<Event> {
        let kind = match (command, applied) {
            (Command::CreateContainer { .. }, Applied::Container(c)) => {
                EventKind::ContainerCreate {
                    id: c.id.clone(),
                    image: c.image.clone(),
                    runtime: c.runtime.clone(),
                }
            }
            (Command::UpdateContainer { .. }, Applied::Container(c)) => update_event(c),
            (Command::DeleteContainer { id, .. }, Applied::ContainerDeleted) => {
                EventKind::ContainerDelete { id: id.clone() }
            }
            _ => return None,
        };
        Some(Event {
            timestamp: command.issued_at(),
            namespace: command.namespace().to_string(),
            kind,
        })
    }

    /// containerd's topic for the event.
    pub fn topic(&self) -> &'static str {
        match self.kind {
            EventKind::ContainerCreate { .. } => "/containers/create",
            EventKind::ContainerUpdate { .. } => "/containers/update",
            EventKind::ContainerDelete { .. } => "/containers/delete",
        }
    }
}

fn update_event(c: &Container) -> EventKind {
    EventKind::ContainerUpdate {
        id: c.id.clone(),
        image: c.image.clone(),
        labels: c.labels.clone(),
        snapshot_key: c.snapshot_key.clone(),
    }
}

/// Fan-out of events to every subscriber of this node.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<Event>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            sender: broadcast::channel(SUBSCRIBER_BUFFER).0,
        }
    }
}

impl EventBus {
    /// Publishes an event to the current subscribers (none is fine).
    pub fn publish(&self, event: Event) {
        let _ = self.sender.send(Arc::new(event));
    }

    /// A new subscription: it sees events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }
}
