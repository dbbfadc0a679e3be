//! The node: where the API's writes are ordered and applied, and where reads
//! wait until they may see the latest state.
//!
//! The API layer talks only to `Node::write` and `Node::read_barrier`, so the
//! way writes are ordered can change under it without touching it.

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::error::{Error, Result};
use crate::events::{Event, EventBus};
use crate::store::Store;
use crate::store::command::{Applied, Command};

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// The read sees every write acknowledged before it started (default).
    #[default]
    Linearizable,
    /// The read sees this node's local state, which may lag.
    Serializable,
}

/// A running node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    events: EventBus,
    /// Serialises applies: commands take effect one batch at a time, in the
    /// order they acquire it.
    apply_lock: Mutex<()>,
}

impl Node {
    /// A node over `store`.
    pub fn new(store: Arc<Store>) -> Node {
        Node {
            inner: Arc::new(Inner { store, events: EventBus::default(), apply_lock: Mutex::new(()) }),
        }
    }

    /// Orders and applies a write, returning its outcome once it is durable.
    #[tracing::instrument(level = "debug", skip_all, fields(namespace = command.namespace()))]
    pub async fn write(&self, command: Command) -> Result<Applied> {
        let _ordered = self.inner.apply_lock.lock().await;
        let store = self.inner.store.clone();
        let command = Arc::new(command);
        let applying = command.clone();
        let mut outcomes = tokio::task::spawn_blocking(move || {
            let outcomes = store.apply(&[&applying], &[])?;
            store.flush_durably()?;
            Ok::<_, Error>(outcomes)
        })
        .await
        .map_err(|e| Error::Internal(format!("apply task: {e}")))??;
        let outcome = outcomes.pop().ok_or_else(|| Error::Internal("apply returned no outcome".into()))?;
        if let Ok(applied) = &outcome {
            if let Some(event) = Event::of(&command, applied) {
                self.inner.events.publish(event);
            }
        }
        outcome
    }

    /// Waits until a read at `consistency` may run against the local store.
    pub async fn read_barrier(&self, _consistency: Consistency) -> Result<()> {
        Ok(())
    }

    /// The local store, for reads after a barrier.
    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    /// The node's event bus.
    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }
}
